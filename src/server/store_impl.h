/* Private to the store's files (store*.c): the tables, the per-node index and
 * the helpers the parts share. Nothing outside the store includes this. */
#ifndef PT_SERVER_STORE_IMPL_H
#define PT_SERVER_STORE_IMPL_H

#include <stdlib.h>
#include <string.h>

#include "core/map.h"
#include "server/store.h"

/* The pulls of one node (agent and kubelet ones, also for nodes without an
 * agent), so that the work of a report or a kubelet event is proportional to
 * that node's pulls rather than to every pull in the tables (the history of a
 * big cluster holds many thousands). */
struct pull_list {
  struct pt_pull **v;
  size_t n, cap;
};

struct pt_store {
  struct pt_store_options opts;
  struct pt_map pulls;   /* id -> struct pt_pull */
  struct pt_map nodes;   /* name -> struct pt_node */
  struct pt_node *last_node; /* the node store_node() found last (see there) */
  struct pt_map pods;    /* "ns/name" -> json_t */
  struct pt_map by_node; /* node name -> struct pull_list: that node's pulls (borrowed) */
  struct pt_map rollouts; /* image -> struct store_rollout (store_rollout.c) */
  /* Media types, one copy each however many layers name them (a handful of
   * strings, ~50 bytes each, in every layer of every pull): media type ->
   * struct media_type, counted references. */
  struct pt_map media_types;
  /* Nodes whose pods or kubelet events changed since the last tick: only
   * their pulls can correlate differently (correlation looks at the pull's
   * node only). Values are unused (non-NULL). */
  struct pt_map kube_dirty;
  json_t *events;        /* recent kubelet events, oldest first */
  uint64_t report_gen;
  uint64_t pull_seq;     /* the last pull's seq */
  struct pt_pull *newest, *oldest; /* the pulls by seq (pt_pull.older/newer) */
  /* The tick's walk over the pulls, possibly in slices (pt_store_tick_slice):
   * the next bucket of the pulls table, and its bucket count when the walk
   * began. */
  struct store_sweep {
    bool active;
    size_t bucket, nbuckets;
  } sweep;
  /* The rollout summaries' pass, possibly in slices
   * (pt_store_rollouts_publish_slice): its number, and whether it is under
   * way. A rollout is summed at most once a pass. */
  struct store_publish {
    bool active;
    uint64_t pass;
  } publish;
  /* When a pull in flight is slow (pull.slow): the policy's settings
   * slowPullFactor, slowPullMinPulls, slowPullMinDuration. */
  struct store_slow {
    double factor, min_duration;
    size_t min_pulls;
  } slow;
  double alert_time; /* "now" of the alert hooks' call in progress */
  const struct pt_pull *alert_pull; /* the pull whose event the hooks are given */
  struct pt_store_counters counters;
  /* The pulls and nodes in each state, kept as they change so that /metrics
   * reads them instead of walking the tables: the walk of 100,000 pulls took
   * 20 ms of the loop on every scrape. */
  size_t pulls_in_state[PT_PULL_LOST + 1];
  size_t nodes_in_state[PT_NODE_LOST + 1];
  size_t nodes_containerd_unreachable;
};

static inline char *store_strdup(const char *s)
{
  return s ? strdup(s) : NULL;
}

static inline bool store_streq(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Replaces *dst with a copy of src; returns true when the value changed. */
static inline bool store_set_str(char **dst, const char *src)
{
  if (store_streq(*dst, src))
    return false;
  free(*dst);
  *dst = store_strdup(src);
  return true;
}

static inline bool pull_is_active(const struct pt_pull *p)
{
  return p->state == PT_PULL_PULLING || p->state == PT_PULL_STALLED;
}

/* --- store.c: tables, index, lifecycle ----------------------------------- */
/* A new pull of that id and node (copied into its own block), eta unknown;
 * NULL without memory. */
struct pt_pull *store_pull_new(const char *id, const char *node);
void store_pull_free(struct pt_store *s, struct pt_pull *p);
void store_free_layers(struct pt_store *s, struct pt_layer *l, size_t n);
/* Sets a new layer's digest (its bytes, or a copy of the text); -ENOMEM. */
int store_layer_set_digest(struct pt_layer *l, const char *digest);
/* The same from a reported layer, whose sha256 bytes the parser decoded. */
int store_layer_set_reported(struct pt_layer *l, const struct pt_report_layer *rl);
/* Whether the layer has the reported layer's digest. */
bool store_layer_is(const struct pt_layer *l, const struct pt_report_layer *rl);

/* The shared copy of a media type, one more reference to it (NULL for NULL,
 * and without memory: *failed is set). Without a store (s NULL: a pull read
 * from the history for a query) the layer owns a copy of its own. */
const char *store_media_type_ref(struct pt_store *s, const char *media_type, bool *failed);
void store_media_type_unref(struct pt_store *s, const char *media_type);
void store_free_pods(struct pt_pod_ref *p, size_t n);
/* A new node in the table, or NULL without memory. */
/* The node of that name, or NULL. The one found last is kept aside: a
 * report asks for its node three times in a row (its admission, its clock,
 * applying it), each a lookup with cache misses in a table of thousands. */
struct pt_node *store_node(struct pt_store *s, const char *name);
struct pt_node *store_add_node(struct pt_store *s, const char *name, double now);
void store_remove_node(struct pt_store *s, struct pt_node *n);
void store_set_node_state(struct pt_store *s, struct pt_node *n, enum pt_node_state st);
/* The node's pulls (an empty list when it has none). */
const struct pull_list *store_node_pulls(const struct pt_store *s, const char *node);
/* Inserts a new pull in the tables and the index; on failure the pull is
 * freed and -ENOMEM returned. */
int store_add_pull(struct pt_store *s, struct pt_pull *p);
/* Takes the pull out of the tables and the index and frees it. */
void store_remove_pull(struct pt_store *s, struct pt_pull *p);
/* Every change of a pull's state goes through here (pulls_in_state); a pull
 * not in the tables yet is counted by the state it has when it is added. */
void store_set_pull_state(struct pt_store *s, struct pt_pull *p, enum pt_pull_state st);
void store_count_node_pulls(struct pt_store *s, struct pt_node *n);
void store_mark_lost(struct pt_store *s, struct pt_pull *p, const char *reason, const char *msg, double now);
/* A pull reached completed: counters and the duration histogram. */
void store_complete_pull(struct pt_store *s, struct pt_pull *p, double now);

/* Change records with the pull's keys. */
void store_emit_pull(struct pt_store *s, enum pt_change_type t, struct pt_pull *p, enum pt_change_layers layers,
                     double now);
void store_emit_node(struct pt_store *s, const struct pt_node *n, double now);
void store_emit_evicted(struct pt_store *s, const struct pt_pull *p, const struct pt_pull *by, double now);
void store_emit(struct pt_store *s, const struct pt_change *c);

/* --- store_rollout.c: the pulls of an image across the nodes -------------- */
/* Files a pull that changed under its image (or moves it when its image
 * changed); called for every pull.* change record. */
void store_rollout_track(struct pt_store *s, struct pt_pull *p);
/* Takes a pull out of its rollout (it leaves the tables). */
void store_rollout_untrack(struct pt_store *s, struct pt_pull *p);
void store_rollouts_close(struct pt_store *s);

/* --- store_policy.c: the policy's decisions ------------------------------- */
void store_rate_update(struct pt_store *s, struct pt_pull *p, double now);
enum pt_policy_evict_decision store_evict_decision(struct pt_store *s, const struct pt_pull *p,
                                                   const struct pt_node *n, double now);
/* Re-runs correlation; emits pull.progress when the pods or the image changed
 * and emit_change is set. */
void store_correlate(struct pt_store *s, struct pt_pull *p, double now, bool emit_change);
/* Hands a pull event to the policy's alert hooks (stalled_seconds < 0: none). */
void store_policy_emit(struct pt_store *s, const char *type, const struct pt_pull *p, double now,
                       double stalled_seconds);
/* Raises pull.slow for a pull in flight, once, when it has run slowPullFactor
 * times its image's usual time (opts.typical) and at least
 * slowPullMinDuration, and that usual time is of slowPullMinPulls pulls or
 * more. */
void store_check_slow(struct pt_store *s, struct pt_pull *p, double now);
/* The policy's alerts come back through here as PT_CHANGE_ALERT records. */
void store_on_policy_alert(void *store, const struct pt_policy_alert *alert);

/* --- store_kube.c: kubelet reconciliation -------------------------------- */
/* Resolves the failed kubelet-only pulls of agent pull a's image on its node
 * in a's favour; returns true when a changed. */
bool store_supersede_kubelet_pulls(struct pt_store *s, struct pt_pull *a, double now);
/* Marks a node's pulls for re-correlation on the next tick. */
int store_kube_touch(struct pt_store *s, const char *node);
/* Re-correlates the pulls of the nodes touched since the last call. */
void store_kube_recorrelate(struct pt_store *s, double now);

#endif
