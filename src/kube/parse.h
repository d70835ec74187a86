/* Pure helpers of the Kubernetes watcher: kubelet event messages, the watch stream's line framing, and the slim copies of Pod and
 * Event objects that the store keeps. Nothing here does I/O, so unit tests and
 * the fuzzer drive it directly. */
#ifndef PT_KUBE_PARSE_H
#define PT_KUBE_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- kubelet event messages --------------------------------------------- */

enum pt_kube_msg_kind {
  PT_KUBE_MSG_OTHER = 0,     /* not about an image pull */
  PT_KUBE_MSG_PULLING,       /* Pulling image "X" */
  PT_KUBE_MSG_PULLED,        /* Successfully pulled image "X" in 1.2s (...) */
  PT_KUBE_MSG_PRESENT,       /* Container image "X" already present on machine */
  PT_KUBE_MSG_FAILED,        /* Failed to pull image "X": ... */
  PT_KUBE_MSG_BACKOFF,       /* Back-off pulling image "X" */
  PT_KUBE_MSG_NEVER_PULL,    /* Container image "X" is not present with pull policy of Never */
  PT_KUBE_MSG_INSPECT_FAILED,/* Failed to inspect image "X": ... / Failed to apply default image tag */
  PT_KUBE_MSG_ERROR_STATE,   /* "Error: ErrImagePull", "Error: ImagePullBackOff" (no image) */
  PT_KUBE_MSG_KIND_COUNT,
};
/* "other", "pulling", "pulled", "present", "failed", "backoff", "never_pull",
 * "inspect_failed", "error_state". */
const char *pt_kube_msg_kind_name(enum pt_kube_msg_kind k);
/* Failed, BackOff, ErrImageNeverPull and InspectFailed kinds. */
bool pt_kube_msg_is_failure(enum pt_kube_msg_kind k);

struct pt_kube_msg {
  enum pt_kube_msg_kind kind;
  char image[1024];         /* the quoted reference, "" when none */
  double duration;          /* Pulled: seconds of the pull itself, -1 when not given */
  double waiting;           /* Pulled: seconds including waiting, -1 when not given */
};

/* Classifies a kubelet event by its reason and message (either may be NULL).
 * Always fills out; returns 0, or -EINVAL when the event is not image related
 * (kind OTHER). */
int pt_kube_message_parse(const char *reason, const char *message, struct pt_kube_msg *out);

/* ---- watch stream -------------------------------------------------------- */

enum pt_kube_watch_type {
  PT_KUBE_ADDED = 0,
  PT_KUBE_MODIFIED,
  PT_KUBE_DELETED,
  PT_KUBE_BOOKMARK,
  PT_KUBE_ERROR,
  PT_KUBE_UNKNOWN, /* a type this code does not know: skipped by callers */
};
const char *pt_kube_watch_type_name(enum pt_kube_watch_type t);

/* One watch event; object is borrowed for the duration of the call. Return
 * non-zero to stop feeding (returned by pt_kube_stream_feed). */
typedef int (*pt_kube_watch_fn)(void *ud, enum pt_kube_watch_type type, json_t *object);

/* Splits a watch body (JSON objects separated by newlines, delivered in
 * arbitrary chunks) into events. Each complete line is parsed with jansson;
 * blank lines are skipped, lines that are not a {"type":..,"object":{..}}
 * object are counted in `bad` and skipped. */
struct pt_kube_stream {
  char *buf;
  size_t len, cap;
  size_t max_line;  /* a longer line is an error: the stream must restart */
  uint64_t events, bad;
};

void pt_kube_stream_init(struct pt_kube_stream *st, size_t max_line);
void pt_kube_stream_close(struct pt_kube_stream *st);
/* Drops a partial line (before a new watch starts). */
void pt_kube_stream_reset(struct pt_kube_stream *st);
/* Returns 0, -E2BIG when a line exceeds max_line, -ENOMEM, or the callback's
 * non-zero return. */
int pt_kube_stream_feed(struct pt_kube_stream *st, const char *data, size_t len,
                        pt_kube_watch_fn fn, void *ud);
/* Handles a last line without its newline when the body ends. */
int pt_kube_stream_finish(struct pt_kube_stream *st, pt_kube_watch_fn fn, void *ud);

/* A metav1.Status object's code (e.g. 410 for an expired resourceVersion),
 * or 0 when obj is not a Status with a code. */
int pt_kube_status_code(const json_t *obj);

/* ---- slim objects -------------------------------------------------------- */

/* The store's pod: {"namespace","name","uid","node","phase","resourceVersion",
 * "containers":[{"name","image","waiting"?}],"initContainers":[...]} where
 * waiting is status.(init)containerStatuses[].state.waiting.reason. NULL when
 * pod has no namespace or name. */
json_t *pt_kube_pod_slim(const json_t *pod);

/* The store's event: {"uid","namespace","pod","podUid","node","reason",
 * "message","kind","image","count","firstTimestamp","lastTimestamp",
 * "durationSeconds"?,"waitingSeconds"?} with times as epoch seconds. node is
 * source.host or reportingInstance. NULL when the event is not about a Pod or
 * not image related. */
json_t *pt_kube_event_slim(const json_t *event);
/* The part of pt_kube_event_slim() that reads kubelet's message, the only
 * place it is parsed: from o's "reason" and "message", sets "kind", "image"
 * (when the message names one), "durationSeconds" and "waitingSeconds" (when
 * given). Returns 0, or -EINVAL when the event is not image related. */
int pt_kube_event_classify(json_t *o);

/* An event's last occurrence (lastTimestamp, series.lastObservedTime,
 * eventTime, firstTimestamp, metadata.creationTimestamp), epoch seconds; 0
 * when none parses. */
double pt_kube_event_time(const json_t *event);

#endif
