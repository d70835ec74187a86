/* The server's state tables: nodes, pulls (with their layers) and, for the
 * Kubernetes side, pods and recent kubelet events.
 *
 * The store is plain C data keyed by hash tables; it never does I/O. It
 * applies validated agent reports, derives per-pull figures through the
 * policy (rate/ETA, correlation, eviction), and describes every change as a
 * typed change record (server/change.h) through the on_change callback; the
 * server serializes them for the event stream. Alert-worthy changes are also
 * handed to the policy's alert hooks, whose alerts come back out of the store
 * as PT_CHANGE_ALERT records.
 *
 * Its parts, one job per file: store.c (tables, the per-node index and the
 * pulls' lifecycle), store_report.c (agent reports and their rate limit),
 * store_kube.c (pods and kubelet events), store_policy.c (the calls into the
 * policy), store_views.c (the JSON views of docs/api.md).
 *
 * Times are epoch seconds passed in by the caller ("now"), so tests drive the
 * clock. */
#ifndef PT_SERVER_STORE_H
#define PT_SERVER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "server/change.h"
#include "server/report.h"

enum pt_pull_state {
  PT_PULL_PULLING = 0,
  PT_PULL_STALLED,
  PT_PULL_COMPLETED,
  PT_PULL_FAILED,
  PT_PULL_LOST,
};
const char *pt_pull_state_name(enum pt_pull_state s);
int pt_pull_state_parse(const char *s, enum pt_pull_state *out);

enum pt_node_state { PT_NODE_OK = 0, PT_NODE_LAGGING, PT_NODE_LOST };
const char *pt_node_state_name(enum pt_node_state s);

/* A layer's digest is kept as its 32 bytes when it is "sha256:" and 64
 * lowercase hex digits (nearly always), as text otherwise: a history of
 * 100,000 pulls of 8 layers holds 800,000 of them. */
#define PT_DIGEST_TEXT_MAX 264 /* a digest's text with its NUL (digests are validated to 256 bytes) */
struct pt_layer {
  unsigned char sha256[32]; /* when digest is NULL */
  char *digest;             /* any other digest */
  const char *media_type;  /* shared by the layers of every pull (store_media_type_ref) */
  enum pt_layer_state state;
  bool moved;               /* its state, size or bytes changed in the last report committed */
  int64_t total, downloaded;
  double started_at, updated_at;
};

/* The layer's digest as text: l->digest, or written into buf. */
const char *pt_layer_digest(const struct pt_layer *l, char buf[PT_DIGEST_TEXT_MAX]);

struct pt_pod_ref {
  char *ns, *name, *container;
};

struct pt_pull {
  char *id;              /* "<node>/<agent id>" */
  uint64_t seq;          /* order of arrival in the tables (1, 2, ...): the lists' order */
  struct pt_pull *older, *newer; /* the pulls in that order (the store's list) */
  char *node;
  char *image_ref;       /* from the agent; NULL when unknown */
  char *image;           /* image_ref completed with a tag by correlation, else a copy of image_ref */
  char *manifest_digest, *index_digest;
  bool from_kubelet;     /* known only from a kubelet event */
  enum pt_pull_state state;
  double started_at, completed_at, updated_at, last_seen_at;
  double finished_at;    /* completed or failed */
  double lost_at;
  double stalled_since;  /* 0 unless stalled */
  bool slow_raised;      /* pull.slow was raised for it (once per pull) */
  bool total_known;
  int64_t total, downloaded;
  double bytes_per_sec, eta;  /* eta < 0: unknown */
  struct pt_policy_rate_state rate;
  struct pt_layer *layers;
  size_t nlayers;
  struct pt_pod_ref *pods;
  size_t npods;
  struct store_rollout *rollout; /* the rollout of its image it counts in (store_rollout.c), or NULL */
  char *error_reason, *error_message;
  uint64_t report_gen;     /* generation of the node report that last named it */
  double evict_check_at;   /* not in flight: the tick asks the eviction hook again from then on */
  /* kubelet's `Successfully pulled image "X" in 1.2s (1.5s including
   * waiting)` for this pull: kubelet_pulled_at > 0 once one matched; the
   * durations are < 0 when the message did not give them. */
  double kubelet_pulled_at, kubelet_duration, kubelet_waiting;
  /* A kubelet failure of this image on this node that a later successful
   * retry resolved: history, no longer a current failure. resolved_reason is
   * NULL when there is none. */
  char *resolved_reason, *resolved_message;
  double resolved_failed_at, resolved_at;
};

struct pt_node {
  char *name;
  char *agent_version, *boot_id;
  int64_t seq;
  enum pt_node_state state;
  double first_report, last_report, interval;
  unsigned restarts;
  uint64_t report_gen;
  json_t *unattributed;  /* array as reported */
  double tokens, tokens_at; /* report rate limiter */
  double clock_offset;      /* server time minus the agent's, 0 while they agree */
  size_t pulls_active, pulls_total;
  /* The last report's `containerd`: while unreachable, since (server clock)
   * and gRPC's error of the agent's last failed poll. */
  bool containerd_unreachable;
  double containerd_since;
  char *containerd_error;
};

struct pt_store_options {
  /* Required: rate, eviction and correlation are the policy's decisions (its
   * C defaults in src/policy/fallback.c when a hook fails). The store
   * receives the policy's alerts (pt_policy_set_alert_cb) while it uses it. */
  struct pt_policy *policy;
  double node_lost_grace;       /* node lost after this silence; 120 s when 0 */
  double lag_intervals;         /* lagging after this many intervals; 3 when 0 */
  double report_min_interval;   /* rate limit per node; 0 = no limit */
  double report_burst;          /* bucket size; 10 when 0 */
  size_t max_nodes;             /* nodes in the tables (PULLTRACE_MAX_NODES); 10000 when 0 */
  pt_change_fn on_change;       /* every change, in order; may be NULL */
  /* How long pulls of image usually take (server/typical.h), asked about
   * pulls in flight: true with the median duration and how many finished
   * pulls it is of. NULL: no pull is ever slow (no pull.slow). */
  bool (*typical)(void *ud, const char *image, double *p50, size_t *pulls);
  void *ud;                     /* of on_change and typical */
};

/* kubelet reasons that fail a pull, for pulltrace_pull_errors_total{reason}. */
#define PT_STORE_FAIL_REASONS 6
extern const char *const pt_store_fail_reasons[PT_STORE_FAIL_REASONS];

struct pt_store_counters {
  uint64_t pulls_started, pulls_completed, pulls_failed, pulls_lost, pulls_evicted;
  uint64_t pulls_superseded;   /* kubelet-only pulls merged into the agent pull of their retry */
  uint64_t pulls_restored;     /* put back from the history at startup (pt_store_restore_pull) */
  uint64_t failed_by_reason[PT_STORE_FAIL_REASONS]; /* pulls_failed by kubelet reason */
  uint64_t bytes;              /* bytes downloaded (cached layers excluded) */
  uint64_t stalls;             /* transitions to stalled */
  uint64_t node_restarts;
  uint64_t nodes_forgotten;    /* lost nodes removed once their last pull was evicted */
  /* pulltrace_pull_duration_seconds of completed pulls */
  uint64_t duration_counts[8];
  uint64_t duration_count;
  double duration_sum;
};
extern const double pt_store_duration_buckets[8];

struct pt_store_gauges {
  size_t pulls_pulling, pulls_stalled, pulls_completed, pulls_failed, pulls_lost;
  size_t nodes_ok, nodes_lagging, nodes_lost;
  size_t nodes_containerd_unreachable; /* by their last report, whatever their state */
  size_t pods, kube_events;
};

struct pt_store;
struct pt_jsonw;
struct store_rollout;

/* NULL without a policy or without memory. */
struct pt_store *pt_store_create(const struct pt_store_options *opts);
/* Accepts NULL. Gives the policy's alert callback back (NULL). */
void pt_store_destroy(struct pt_store *s);

enum pt_apply_result {
  PT_APPLY_APPLIED = 0,
  PT_APPLY_STALE,      /* same bootId, seq not newer: ignored */
  PT_APPLY_THROTTLED,  /* too frequent: rejected, nothing applied */
  PT_APPLY_FULL,       /* a new node over max_nodes: rejected */
  PT_APPLY_NOMEM,      /* out of memory: rejected, nothing applied */
};
/* Replaces the node's state with a validated report, entirely or not at all:
 * everything the report needs is allocated before the first change. */
enum pt_apply_result pt_store_apply_report(struct pt_store *s, const struct pt_report *r, double now);
/* Seconds until the node may report again (for Retry-After). */
double pt_store_retry_after(struct pt_store *s, const char *node, double now);
/* Agents' clocks may be off (no NTP on a node, a wrong time zone setting in a
 * VM): the offset to add to the agent-clock times of node's report, given
 * measured = the server's time minus the report's timestamp. 0 while the
 * clocks agree within PT_STORE_CLOCK_TOLERANCE; else the node's estimate, which
 * moves only when a measurement leaves the tolerance around it (so that
 * network delays do not shift a pull's times from one report to the next). */
#define PT_STORE_CLOCK_TOLERANCE 5.0
double pt_store_clock_offset(struct pt_store *s, const char *node, double measured);

/* The node limit in effect (max_nodes, its default applied). */
size_t pt_store_max_nodes(const struct pt_store *s);

/* Periodic work: node lagging/lost, forgetting a lost node once the eviction
 * policy removed its last pull, eviction through the policy, stall
 * alerts, re-correlation of the pulls on the nodes whose pods or kubelet
 * events changed. Call every second or so. The eviction hook is asked about
 * every pull in flight each time, about a pull that is not (completed,
 * failed, lost) every 10 s. */
void pt_store_tick(struct pt_store *s, double now);
/* The same work in slices of about max_pulls pulls (each one a call of the
 * policy's eviction hook), so that a large table (100,000 pulls of history)
 * never holds the loop for long: returns true while the tick has more to do
 * (call again soon, e.g. on the next loop iteration), false once it is done.
 * The first slice of a tick does the nodes. */
bool pt_store_tick_slice(struct pt_store *s, double now, size_t max_pulls);

/* --- rollouts ------------------------------------------------------------- */

/* The pulls of one image across the nodes (store_rollout.c): the newest pull
 * of the image on each node. */
struct pt_rollout_summary {
  const char *image;
  size_t nodes;       /* nodes with a pull of the image */
  size_t done, pulling, stalled, failed, waiting; /* by the state of each node's pull:
                         completed; pulling with bytes; stalled; failed or lost;
                         pulling without a byte yet */
  int64_t bytes_total;      /* sum of the pulls' totals, where known */
  int64_t bytes_downloaded;
  double bytes_per_sec;     /* sum of the rates of the pulls in flight */
  double eta;               /* the longest ETA of the pulls in flight; < 0 unknown */
  double started_at, updated_at;
};

/* A rollout.summary change record for each image whose pulls changed since
 * the last call: the caller's period bounds the rate (one a second). */
void pt_store_rollouts_publish(struct pt_store *s, double now);
/* The same in slices: each call sums the members of rollouts until about
 * max_pulls of them (at least one rollout); returns true while images of
 * this pass are left, to be called again (a later loop iteration). A call
 * after the pass ended starts the next one. Summing 20 images of 5,000 nodes
 * at once held the loop 20 ms. */
bool pt_store_rollouts_publish_slice(struct pt_store *s, double now, size_t max_pulls);
/* The last summaries of the rollouts in flight (a node pulling, stalled or
 * waiting), whose image contains image_filter (NULL: all), as a JSON array.
 * Returns how many. */
int pt_store_rollouts_write(const struct pt_store *s, struct pt_jsonw *w, const char *image_filter);

/* --- queries -------------------------------------------------------------- */

struct pt_pull_filter {
  const char *node;       /* exact, or NULL */
  const char *ns;         /* a pod of the pull in this namespace, or NULL */
  const char *image;      /* substring of image, or NULL */
  unsigned state_mask;    /* bit (1 << state); 0 = any */
};
bool pt_pull_matches(const struct pt_pull *p, const struct pt_pull_filter *f);

const struct pt_pull *pt_store_pull(const struct pt_store *s, const char *id);
const struct pt_node *pt_store_node(const struct pt_store *s, const char *name);
/* The JSON views of docs/api.md, written into w. */
void pt_store_pull_write(struct pt_jsonw *w, const struct pt_pull *p, bool with_layers, double now);
/* The layers that moved in the pull's last report (pt_layer.moved): an array
 * of their changing members and their index in the pull's layers
 * (docs/api.md, layerChanges). */
void pt_store_layer_changes_write(struct pt_jsonw *w, const struct pt_pull *p);
void pt_store_layer_write(struct pt_jsonw *w, const struct pt_layer *l);
void pt_store_node_write(struct pt_jsonw *w, const struct pt_node *n, bool with_unattributed);
void pt_store_rollout_write(struct pt_jsonw *w, const struct pt_rollout_summary *r);

/* Lists, one page at a time. Pulls come newest first (by seq: the order the
 * tables received them; the store keeps them in that order), nodes by name.
 * A page holds the first `limit` matching items after a position (limit 0:
 * all). Positions stay valid whatever changes in between: items removed are
 * skipped, pulls added later than the position are newer and so not after
 * it. */

/* A position in the pulls: the last pull looked at (seq 0: before the
 * newest). */
struct pt_pull_cursor {
  uint64_t seq;
  char id[600];
};
/* Writes the matching pulls after *at as elements of an array the caller
 * opened, looking at max_visit pulls at most (SIZE_MAX: no bound) so that a
 * selective filter over a large table never holds the loop for long; *at
 * becomes the last pull looked at. Returns the number written (or -ENOMEM)
 * and sets *more when pulls remain after *at. */
int pt_store_pulls_items(const struct pt_store *s, struct pt_jsonw *w, const struct pt_pull_filter *f,
                         struct pt_pull_cursor *at, size_t limit, size_t max_visit, double now, bool *more);
/* A whole page as a JSON array; *at as above. */
int pt_store_pulls_write(const struct pt_store *s, struct pt_jsonw *w, const struct pt_pull_filter *f,
                         struct pt_pull_cursor *at, size_t limit, double now, bool *more);
/* Nodes: `after` a name (NULL: from the start); *next gets the name to
 * continue from (malloc'ed), NULL on the last page. */
int pt_store_nodes_write(const struct pt_store *s, struct pt_jsonw *w, const char *node_filter, const char *after,
                         size_t limit, char **next);

/* The same views as new jansson values (caller decrefs), for tests and
 * checks: the text above, parsed back. Lists are whole. */
json_t *pt_store_pull_json(const struct pt_pull *p, bool with_layers, double now);
json_t *pt_store_node_json(const struct pt_node *n, bool with_unattributed);
json_t *pt_store_pulls_json(const struct pt_store *s, const struct pt_pull_filter *f, double now);
json_t *pt_store_nodes_json(const struct pt_store *s, const char *node_filter);

const struct pt_store_counters *pt_store_counters(const struct pt_store *s);
/* Checks the store's invariants: every pull indexed once under its node and
 * nothing else in the index, nodes' active counts, the counts of pulls and
 * nodes by state, the pull count against
 * started + restored - evicted - superseded. Returns 0, or -EFAULT with the first broken
 * one in err. For tests and fuzzers: it walks every table. */
int pt_store_check(const struct pt_store *s, char *err, size_t errlen);
/* The pulls and nodes by state (kept as they change: no walk), pods and
 * kubelet events held. */
void pt_store_gauges(const struct pt_store *s, struct pt_store_gauges *out);

/* --- persistence (server/history.h) ---------------------------------------
 *
 * The persisted form of a pull: a new JSON object with every field of the
 * record (times as epoch seconds), or NULL without memory. */
json_t *pt_store_pull_record(const struct pt_pull *p);
/* Puts a pull back into the tables from its persisted form, without a change
 * record (it is part of the next snapshot). A pull in flight keeps its state
 * until its agent reports it again (then it continues under the same id with
 * no second pull.started) or its node stays silent for the lost grace.
 * Returns 0, -EINVAL for a malformed record, -EEXIST when the id is taken or
 * -ENOMEM. */
int pt_store_restore_pull(struct pt_store *s, const json_t *record, double now);
/* A pull of its own (outside any store) from a persisted record, e.g. to
 * show it with pt_store_pull_json(); NULL with *err set (-EINVAL, -ENOMEM). */
struct pt_pull *pt_pull_from_record(const json_t *record, int *err);
void pt_pull_free(struct pt_pull *p);
/* Calls fn for every pull in the tables (e.g. to save them at shutdown); fn
 * must not change the tables. */
void pt_store_foreach_pull(const struct pt_store *s, void (*fn)(void *ud, const struct pt_pull *p), void *ud);

/* --- Kubernetes data (for a watcher) --------------------------------------
 *
 * pod: {"namespace","name","uid","node","containers":[{"name","image"}],
 *       "initContainers":[...], ...} as the policy's correlation hook reads it
 *       (extra members pass through to the scripts).
 * event: the watcher's slim event (pt_kube_event_slim): {"namespace","pod",
 *         "node","reason","message","kind","image","durationSeconds",
 *         "waitingSeconds","firstTimestamp","lastTimestamp","count"} with
 *         times as epoch seconds; "node" may be omitted when the pod is
 *         known. kubelet's message is parsed once, by the watcher: the store
 *         reads its kind, image and durations from those members. "historic":
 *         true (an event from before the server started) records it for
 *         correlation only, it never creates or fails a pull.
 * Both are copied. Changes make the store re-run correlation for the pulls of
 * the affected node on the next tick. */
int pt_store_pod_upsert(struct pt_store *s, const json_t *pod);
int pt_store_pod_delete(struct pt_store *s, const char *ns, const char *name);
/* The pod as the watcher gave it (borrowed), or NULL when unknown. */
const json_t *pt_store_pod(const struct pt_store *s, const char *ns, const char *name);
/* Records a kubelet event. A failure reason (Failed, ErrImagePull,
 * ImagePullBackOff, BackOff, ErrImageNeverPull, InspectFailed) for an image
 * fails the matching active pull on that node with the kubelet's message, or
 * creates a kubelet-only pull in state failed when no agent pull matches.
 *
 * `Successfully pulled image "X" in ...` stores kubelet's durations on the
 * agent pull of X on that node that it confirms (active, or completed about
 * then). A failed kubelet-only pull of X on that node is resolved: merged into
 * that agent pull (removed with a pull.evicted whose reason is "superseded",
 * its failure kept in the agent pull's resolvedError), or, when no agent pull
 * matches, completed itself with the failure in resolvedError. An agent pull
 * that completes resolves the failed kubelet-only pulls of its image the same
 * way.
 *
 * `Container image "X" already present on machine` is not a pull: it is
 * dropped without being recorded and changes nothing. */
int pt_store_kube_event(struct pt_store *s, const json_t *event, double now);

#endif
