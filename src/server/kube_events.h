/* Kubernetes Events (events.k8s.io/v1) written on pods, for what kubelet
 * cannot see: an operator running `kubectl describe pod` or `kubectl get
 * events` sees that the pod's image pull stalled, and when it resumed
 * (docs/kubernetes.md, "Events on pods"). The alert policy decides which
 * alerts ask for one (an alert's kubernetesEvent); this object writes them.
 *
 * Shapes as the API server wants them: reportingController
 * "pulltrace.io/server", reportingInstance (this server), action, reason,
 * regarding (the Pod, with its uid so that `kubectl describe pod` finds it),
 * note (at most 1 kB), type Normal or Warning, eventTime. A repeat of the
 * same reason on the same pod within the series window does not create
 * another Event: the first one's series {count, lastObservedTime} is
 * PATCHed (JSON merge patch), as client-go's event recorder does; its note
 * stays the first one's (the API server keeps it immutable).
 *
 * Writes are bounded: per minute in all and per pod per minute (token
 * buckets); over a bound an Event is dropped and counted. Only one replica
 * writes: the one for which the is_leader callback answers true (every
 * server when it is NULL). Without a Kubernetes connection nothing is
 * written. */
#ifndef PT_SERVER_KUBE_EVENTS_H
#define PT_SERVER_KUBE_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/httpc.h"

struct pt_kube;

#define PT_KUBE_EVENTS_CONTROLLER "pulltrace.io/server"

/* True when this server is the one that delivers side effects. */
typedef bool (*pt_kube_events_leader_fn)(void *ud);

struct pt_kube_events_options {
  const char *instance;       /* reportingInstance; copied; "pulltrace-server" when NULL or "" */
  double per_minute;          /* writes (creates and patches) per minute in all; 60 when 0 */
  double per_pod_per_minute;  /* writes per minute on one pod; 5 when 0 */
  double series_window;       /* a repeat this soon after the last occurrence joins its series; 1800 s when 0 */
};

enum pt_kube_event_result {
  PT_KEV_CREATED = 0, /* POST answered 201 */
  PT_KEV_PATCHED,     /* series PATCH answered 200 */
  PT_KEV_FAILED,      /* a write failed (the API's answer is logged) */
  PT_KEV_THROTTLED,   /* over a per-minute bound: dropped */
  PT_KEV_SKIPPED,     /* not the leader, or no Kubernetes connection */
  PT_KEV_RESULTS,
};
/* "created", "patched", "failed", "throttled", "skipped". */
extern const char *const pt_kube_event_result_names[PT_KEV_RESULTS];

struct pt_kube_events_stats {
  uint64_t results[PT_KEV_RESULTS];
  size_t series;   /* Events remembered for their series */
};

struct pt_kube_events;

/* NULL without memory. */
struct pt_kube_events *pt_kube_events_create(const struct pt_kube_events_options *opts);
/* The connection to write through (borrowed; NULL: none, writes are
 * skipped). Set NULL before that watcher is destroyed. */
void pt_kube_events_set_kube(struct pt_kube_events *ke, struct pt_kube *kube);
/* How a write reaches the API server: pt_kube_request()'s signature, with
 * its first argument the ud given here. pt_kube_events_set_kube() sets
 * pt_kube_request and the watcher; tests give their own. fn NULL: none. */
typedef int (*pt_kube_events_write_fn)(void *ud, const char *method, const char *path, const char *body,
                                       size_t body_len, const char *content_type, pt_httpc_done_cb done,
                                       void *done_ud);
void pt_kube_events_set_writer(struct pt_kube_events *ke, pt_kube_events_write_fn fn, void *ud);
/* The leader check (NULL: this server always writes). */
void pt_kube_events_set_leader(struct pt_kube_events *ke, pt_kube_events_leader_fn fn, void *ud);
/* One Event on each pod of regarding (an array of {"namespace", "name",
 * "uid"?}), with the given reason, type ("Normal" or "Warning"), note and
 * action, observed at now. */
void pt_kube_events_emit(struct pt_kube_events *ke, const char *reason, const char *type, const char *note,
                         const char *action, const json_t *regarding, double now);
void pt_kube_events_stats(const struct pt_kube_events *ke, struct pt_kube_events_stats *out);
/* Accepts NULL. Requests still in flight finish first (their memory goes
 * with the last one). */
void pt_kube_events_destroy(struct pt_kube_events *ke);

#endif
