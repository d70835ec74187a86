/* The store's tables and the pulls' lifecycle: creation and destruction, the
 * per-node index, the transitions every source shares (lost, completed,
 * removed), the change records, and the periodic tick. */
#include "server/store.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"
#include "server/store_impl.h"

const double pt_store_duration_buckets[8] = {1, 5, 10, 30, 60, 120, 300, 600};

static const char *const pull_states[] = {"pulling", "stalled", "completed", "failed", "lost"};
static const char *const node_states[] = {"ok", "lagging", "lost"};

const char *pt_pull_state_name(enum pt_pull_state s)
{
  return (unsigned)s < 5 ? pull_states[s] : "pulling";
}

int pt_pull_state_parse(const char *s, enum pt_pull_state *out)
{
  for (int i = 0; i < 5; i++) {
    if (strcmp(s, pull_states[i]) == 0) {
      *out = (enum pt_pull_state)i;
      return 0;
    }
  }
  return -EINVAL;
}

const char *pt_node_state_name(enum pt_node_state s)
{
  return (unsigned)s < 3 ? node_states[s] : "ok";
}

/* ------------------------------------------------------------------------ */
/* Records                                                                    */

int store_layer_set_digest(struct pt_layer *l, const char *digest)
{
  struct pt_report_layer rl = {.digest = digest};
  rl.is_sha256 = pt_digest_sha256(digest, rl.sha256);
  return store_layer_set_reported(l, &rl);
}

int store_layer_set_reported(struct pt_layer *l, const struct pt_report_layer *rl)
{
  if (rl->is_sha256) {
    memcpy(l->sha256, rl->sha256, sizeof(l->sha256));
    l->digest = NULL;
    return 0;
  }
  l->digest = strdup(rl->digest);
  return l->digest ? 0 : -ENOMEM;
}

bool store_layer_is(const struct pt_layer *l, const struct pt_report_layer *rl)
{
  if (rl->is_sha256)
    return !l->digest && memcmp(l->sha256, rl->sha256, sizeof(l->sha256)) == 0;
  return l->digest && strcmp(l->digest, rl->digest) == 0;
}

const char *pt_layer_digest(const struct pt_layer *l, char buf[PT_DIGEST_TEXT_MAX])
{
  static const char hex[] = "0123456789abcdef";
  if (l->digest)
    return l->digest;
  memcpy(buf, "sha256:", 7);
  char *p = buf + 7;
  for (size_t i = 0; i < 32; i++) {
    *p++ = hex[l->sha256[i] >> 4];
    *p++ = hex[l->sha256[i] & 15];
  }
  *p = '\0';
  return buf;
}

struct media_type {
  size_t refs;
  char name[];
};

const char *store_media_type_ref(struct pt_store *s, const char *media_type, bool *failed)
{
  if (!media_type)
    return NULL;
  if (!s) {
    char *own = strdup(media_type);
    *failed |= !own;
    return own;
  }
  struct media_type *m = pt_map_get(&s->media_types, media_type);
  if (!m) {
    size_t n = strlen(media_type) + 1;
    if (!(m = malloc(sizeof(*m) + n)) || pt_map_put(&s->media_types, media_type, m)) {
      free(m);
      *failed = true;
      return NULL;
    }
    m->refs = 0;
    memcpy(m->name, media_type, n);
  }
  m->refs++;
  return m->name;
}

void store_media_type_unref(struct pt_store *s, const char *media_type)
{
  if (!s) {
    free((char *)media_type);
    return;
  }
  struct media_type *m = media_type ? pt_map_get(&s->media_types, media_type) : NULL;
  if (m && --m->refs == 0) {
    pt_map_del(&s->media_types, media_type);
    free(m);
  }
}

void store_free_layers(struct pt_store *s, struct pt_layer *l, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(l[i].digest);
    store_media_type_unref(s, l[i].media_type);
  }
  free(l);
}

void store_free_pods(struct pt_pod_ref *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(p[i].ns);
    free(p[i].name);
    free(p[i].container);
  }
  free(p);
}

struct pt_pull *store_pull_new(const char *id, const char *node)
{
  /* The id and the node live right after the pull: the policy's hooks read
   * them with the pull, not from two more blocks (and a pull takes two
   * allocations fewer). */
  size_t il = strlen(id) + 1, nl = strlen(node) + 1;
  struct pt_pull *p = calloc(1, sizeof(*p) + il + nl);
  if (!p)
    return NULL;
  p->id = memcpy((char *)(p + 1), id, il);
  p->node = memcpy(p->id + il, node, nl);
  p->eta = -1;
  return p;
}

void store_pull_free(struct pt_store *s, struct pt_pull *p)
{
  if (!p)
    return;
  free(p->image_ref);
  free(p->image);
  free(p->manifest_digest);
  free(p->index_digest);
  store_free_layers(s, p->layers, p->nlayers);
  store_free_pods(p->pods, p->npods);
  free(p->error_reason);
  free(p->error_message);
  free(p->resolved_reason);
  free(p->resolved_message);
  pt_policy_rate_state_clear(&p->rate);
  free(p);
}

static void node_free(struct pt_node *n)
{
  if (!n)
    return;
  free(n->name);
  free(n->agent_version);
  free(n->boot_id);
  free(n->containerd_error);
  json_decref(n->unattributed);
  free(n);
}

struct pt_node *store_node(struct pt_store *s, const char *name)
{
  if (s->last_node && strcmp(s->last_node->name, name) == 0)
    return s->last_node;
  struct pt_node *n = pt_map_get(&s->nodes, name);
  if (n)
    s->last_node = n;
  return n;
}

struct pt_node *store_add_node(struct pt_store *s, const char *name, double now)
{
  struct pt_node *n = calloc(1, sizeof(*n));
  if (!n || !(n->name = strdup(name)) || pt_map_put(&s->nodes, name, n)) {
    node_free(n);
    return NULL;
  }
  n->first_report = now;
  s->nodes_in_state[n->state]++;
  return n;
}

void store_remove_node(struct pt_store *s, struct pt_node *n)
{
  s->nodes_in_state[n->state]--;
  s->nodes_containerd_unreachable -= n->containerd_unreachable;
  if (s->last_node == n)
    s->last_node = NULL;
  pt_map_del(&s->nodes, n->name);
  node_free(n);
}

void store_set_node_state(struct pt_store *s, struct pt_node *n, enum pt_node_state st)
{
  s->nodes_in_state[n->state]--;
  s->nodes_in_state[st]++;
  n->state = st;
}

/* ------------------------------------------------------------------------ */
/* The per-node index                                                         */

const struct pull_list *store_node_pulls(const struct pt_store *s, const char *node)
{
  static const struct pull_list empty;
  const struct pull_list *l = pt_map_get(&s->by_node, node);
  return l ? l : &empty;
}

static int index_pull(struct pt_store *s, struct pt_pull *p)
{
  struct pull_list *l = pt_map_get(&s->by_node, p->node);
  if (!l) {
    l = calloc(1, sizeof(*l));
    if (!l)
      return -ENOMEM;
    if (pt_map_put(&s->by_node, p->node, l)) {
      free(l);
      return -ENOMEM;
    }
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    struct pt_pull **v = realloc(l->v, cap * sizeof(*v));
    if (!v) {
      if (l->n == 0) {
        pt_map_del(&s->by_node, p->node);
        free(l);
      }
      return -ENOMEM;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = p;
  return 0;
}

static void unindex_pull(struct pt_store *s, const struct pt_pull *p)
{
  struct pull_list *l = pt_map_get(&s->by_node, p->node);
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i] == p) {
      l->v[i] = l->v[--l->n];
      break;
    }
  }
  if (l->n == 0) {
    pt_map_del(&s->by_node, p->node);
    free(l->v);
    free(l);
  }
}

int store_add_pull(struct pt_store *s, struct pt_pull *p)
{
  if (pt_map_put(&s->pulls, p->id, p)) {
    store_pull_free(s, p);
    return -ENOMEM;
  }
  if (index_pull(s, p)) {
    pt_map_del(&s->pulls, p->id);
    store_pull_free(s, p);
    return -ENOMEM;
  }
  p->seq = ++s->pull_seq;
  p->older = s->newest;
  p->newer = NULL;
  if (s->newest)
    s->newest->newer = p;
  else
    s->oldest = p;
  s->newest = p;
  s->pulls_in_state[p->state]++;
  return 0;
}

void store_set_pull_state(struct pt_store *s, struct pt_pull *p, enum pt_pull_state st)
{
  if (p->seq) { /* in the tables */
    s->pulls_in_state[p->state]--;
    s->pulls_in_state[st]++;
  }
  p->state = st;
}

void store_remove_pull(struct pt_store *s, struct pt_pull *p)
{
  store_rollout_untrack(s, p);
  if (p->seq) { /* in the list (store_add_pull succeeded) */
    s->pulls_in_state[p->state]--;
    if (p->newer)
      p->newer->older = p->older;
    else
      s->newest = p->older;
    if (p->older)
      p->older->newer = p->newer;
    else
      s->oldest = p->newer;
  }
  pt_map_del(&s->pulls, p->id);
  unindex_pull(s, p);
  store_pull_free(s, p);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                  */

struct pt_store *pt_store_create(const struct pt_store_options *opts)
{
  if (!opts || !opts->policy)
    return NULL;
  struct pt_store *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->opts = *opts;
  if (s->opts.node_lost_grace <= 0) s->opts.node_lost_grace = 120;
  if (s->opts.lag_intervals <= 0) s->opts.lag_intervals = 3;
  if (s->opts.report_burst <= 0) s->opts.report_burst = 10;
  if (!s->opts.max_nodes) s->opts.max_nodes = 10000;
  /* Settings of the policy, parsed (and checked) when it was created. */
  double min_pulls = 0;
  pt_policy_setting_number(s->opts.policy, "slowPullFactor", &s->slow.factor);
  pt_policy_setting_number(s->opts.policy, "slowPullMinPulls", &min_pulls);
  pt_policy_setting_number(s->opts.policy, "slowPullMinDuration", &s->slow.min_duration);
  s->slow.min_pulls = (size_t)min_pulls;
  pt_map_init(&s->pulls);
  pt_map_init(&s->nodes);
  pt_map_init(&s->pods);
  pt_map_init(&s->by_node);
  pt_map_init(&s->kube_dirty);
  pt_map_init(&s->rollouts);
  pt_map_init(&s->media_types);
  s->events = json_array();
  if (!s->events) {
    free(s);
    return NULL;
  }
  pt_policy_set_alert_cb(s->opts.policy, store_on_policy_alert, s);
  return s;
}

void pt_store_destroy(struct pt_store *s)
{
  if (!s)
    return;
  pt_policy_set_alert_cb(s->opts.policy, NULL, NULL);
  store_rollouts_close(s);
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e))
    store_pull_free(s, e->value);
  s->last_node = NULL;
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e))
    node_free(e->value);
  for (struct pt_map_entry *e = pt_map_first(&s->pods); e; e = pt_map_next(&s->pods, e))
    json_decref(e->value);
  for (struct pt_map_entry *e = pt_map_first(&s->by_node); e; e = pt_map_next(&s->by_node, e)) {
    struct pull_list *l = e->value;
    free(l->v);
    free(l);
  }
  pt_map_close(&s->by_node);
  pt_map_close(&s->pulls);
  pt_map_close(&s->nodes);
  pt_map_close(&s->pods);
  pt_map_close(&s->kube_dirty);
  /* Every layer gave its reference back with its pull. */
  pt_map_close(&s->media_types);
  json_decref(s->events);
  free(s);
}

/* ------------------------------------------------------------------------ */
/* Change records                                                             */

void store_emit(struct pt_store *s, const struct pt_change *c)
{
  if (s->opts.on_change)
    s->opts.on_change(s->opts.ud, c);
}

static struct pt_change_keys pull_keys(const struct pt_pull *p)
{
  return (struct pt_change_keys){.node = p->node, .image = p->image ? p->image : p->image_ref,
                                 .namespaced = true, .pods = p->pods, .npods = p->npods};
}

void store_emit_pull(struct pt_store *s, enum pt_change_type t, struct pt_pull *p, enum pt_change_layers layers,
                     double now)
{
  store_rollout_track(s, p);
  struct pt_change c = {.type = t, .time = now, .keys = pull_keys(p), .pull = p, .layers = layers};
  store_emit(s, &c);
}

void store_emit_node(struct pt_store *s, const struct pt_node *n, double now)
{
  struct pt_change c = {.type = PT_CHANGE_NODE_UPDATED, .time = now, .keys = {.node = n->name}, .node = n};
  store_emit(s, &c);
}

/* An eviction is not namespaced: a client filtering on a namespace also
 * drops the pull (it may have seen it before its pods were known). */
void store_emit_evicted(struct pt_store *s, const struct pt_pull *p, const struct pt_pull *by, double now)
{
  struct pt_change c = {.type = PT_CHANGE_PULL_EVICTED, .time = now,
                        .keys = {.node = p->node, .image = p->image ? p->image : p->image_ref}, .pull = p,
                        .reason = by ? "superseded" : NULL, .superseded_by = by};
  store_emit(s, &c);
}

/* ------------------------------------------------------------------------ */
/* Transitions shared by reports, kubelet events and the tick                 */

void store_count_node_pulls(struct pt_store *s, struct pt_node *n)
{
  size_t active = 0;
  const struct pull_list *l = store_node_pulls(s, n->name);
  for (size_t i = 0; i < l->n; i++)
    active += pull_is_active(l->v[i]);
  n->pulls_active = active;
}

void store_mark_lost(struct pt_store *s, struct pt_pull *p, const char *reason, const char *msg, double now)
{
  store_set_pull_state(s, p, PT_PULL_LOST);
  p->lost_at = now;
  p->stalled_since = 0;
  p->updated_at = now;
  p->eta = -1;
  p->bytes_per_sec = 0;
  store_set_str(&p->error_reason, reason);
  store_set_str(&p->error_message, msg);
  s->counters.pulls_lost++;
  store_emit_pull(s, PT_CHANGE_PULL_FAILED, p, PT_LAYERS_ALL, now);
  store_policy_emit(s, "pull.failed", p, now, -1);
}

static void observe_duration(struct pt_store *s, double d)
{
  struct pt_store_counters *c = &s->counters;
  for (size_t i = 0; i < 8; i++) {
    if (d <= pt_store_duration_buckets[i]) {
      c->duration_counts[i]++;
      break;
    }
  }
  c->duration_count++;
  c->duration_sum += d;
}

void store_complete_pull(struct pt_store *s, struct pt_pull *p, double now)
{
  p->finished_at = now;
  free(p->error_reason);
  free(p->error_message);
  p->error_reason = p->error_message = NULL;
  s->counters.pulls_completed++;
  if (p->started_at > 0 && p->completed_at >= p->started_at)
    observe_duration(s, p->completed_at - p->started_at);
}

/* ------------------------------------------------------------------------ */
/* Periodic work                                                              */

/* A lost node with no pull left in the tables is forgotten: autoscaling adds
 * and removes nodes all day, and a node that left the cluster must not stay
 * in /api/v1/nodes and pulltrace_agents{state="lost"} forever (nor hold a
 * place under max_nodes). Its pulls decide how long it stays: once the
 * eviction policy removed the last of them nothing more is known about it.
 * A node that reports again later is simply new. */
static void forget_node(struct pt_store *s, struct pt_node *n, double now)
{
  PT_LOG_INFO("node forgotten", "{s:s,s:f}", "node", n->name, "silenceSeconds", now - n->last_report);
  struct pt_change c = {.type = PT_CHANGE_NODE_REMOVED, .time = now, .keys = {.node = n->name}, .node = n};
  store_emit(s, &c);
  s->counters.nodes_forgotten++;
  store_remove_node(s, n);
}

static void tick_nodes(struct pt_store *s, double now)
{
  /* Collected first: the table must not change while it is iterated. Without
   * memory for the list, forgetting waits for a later tick. */
  size_t nforget = 0;
  struct pt_node **forget = s->nodes.count ? calloc(s->nodes.count, sizeof(*forget)) : NULL;
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    struct pt_node *n = e->value;
    if (n->state == PT_NODE_LOST && store_node_pulls(s, n->name)->n == 0) {
      if (forget)
        forget[nforget++] = n;
      continue;
    }
    double silence = now - n->last_report;
    double interval = n->interval > 0 ? n->interval : 1;
    enum pt_node_state st = silence >= s->opts.node_lost_grace ? PT_NODE_LOST
                          : silence >= s->opts.lag_intervals * fmax(interval, 1) + 1 ? PT_NODE_LAGGING
                          : PT_NODE_OK;
    if (st != n->state) {
      store_set_node_state(s, n, st);
      PT_LOG_INFO("node state changed", "{s:s,s:s,s:f}", "node", n->name, "state", pt_node_state_name(st),
                  "silenceSeconds", silence);
      store_emit_node(s, n, now);
    }
  }
  for (size_t i = 0; i < nforget; i++)
    forget_node(s, forget[i], now);
  free(forget);
}

/* A pull that is not in flight (completed, failed, lost) changes no more;
 * only time brings its eviction closer. The eviction hook is asked about it
 * this often rather than every tick, so that a large history costs little:
 * "only what changes costs anything". */
#define EVICT_RECHECK_SECONDS 10.0

/* One pull of the sweep: the policy's eviction decision (collected in
 * *evict, applied after the slice), node-lost marking, stall alerts. */
static void sweep_pull(struct pt_store *s, struct pt_pull *p, double now, struct pull_list *evict)
{
  bool active = pull_is_active(p);
  if (!active && now < p->evict_check_at)
    return;
  struct pt_node *n = store_node(s, p->node);
  enum pt_policy_evict_decision d = store_evict_decision(s, p, n, now);
  if (!active && d != PT_POLICY_EVICT)
    p->evict_check_at = now + EVICT_RECHECK_SECONDS;
  if (d == PT_POLICY_EVICT) {
    if (evict->n == evict->cap) {
      size_t cap = evict->cap ? evict->cap * 2 : 64;
      struct pt_pull **v = realloc(evict->v, cap * sizeof(*v));
      if (!v)
        return; /* without memory: evicted by a later sweep */
      evict->v = v;
      evict->cap = cap;
    }
    evict->v[evict->n++] = p;
    return;
  }
  if (d == PT_POLICY_MARK_LOST && pull_is_active(p)) {
    store_mark_lost(s, p, "node-lost", "the node stopped reporting", now);
    if (n)
      store_count_node_pulls(s, n);
    return;
  }
  if (p->state == PT_PULL_STALLED && p->stalled_since > 0)
    store_policy_emit(s, "pull.stalled", p, now, now - p->stalled_since);
  if (active)
    store_check_slow(s, p, now);
}

bool pt_store_tick_slice(struct pt_store *s, double now, size_t max_pulls)
{
  struct store_sweep *sw = &s->sweep;
  if (!sw->active) {
    tick_nodes(s, now);
    sw->active = true;
    sw->bucket = 0;
    sw->nbuckets = s->pulls.nbuckets;
  }
  if (sw->nbuckets != s->pulls.nbuckets) {
    /* The table grew since the last slice: its buckets moved, start over
     * (a pull may be looked at twice in this sweep, none is missed). */
    sw->bucket = 0;
    sw->nbuckets = s->pulls.nbuckets;
  }
  /* Evictions are collected first: the table must not change while it is
   * walked. A slice ends at a bucket's end. */
  struct pull_list evict = {0};
  size_t visited = 0;
  while (sw->bucket < sw->nbuckets && visited < max_pulls) {
    for (struct pt_map_entry *e = s->pulls.buckets[sw->bucket]; e; e = e->next, visited++)
      sweep_pull(s, e->value, now, &evict);
    sw->bucket++;
  }
  for (size_t i = 0; i < evict.n; i++) {
    struct pt_pull *p = evict.v[i];
    s->counters.pulls_evicted++;
    store_emit_evicted(s, p, NULL, now);
    /* A policy may evict a pull in flight: its node counts one less. */
    struct pt_node *n = pull_is_active(p) ? store_node(s, p->node) : NULL;
    store_remove_pull(s, p);
    if (n)
      store_count_node_pulls(s, n);
  }
  free(evict.v);
  if (sw->bucket < sw->nbuckets)
    return true;
  sw->active = false;
  store_kube_recorrelate(s, now);
  return false;
}

void pt_store_tick(struct pt_store *s, double now)
{
  while (pt_store_tick_slice(s, now, SIZE_MAX))
    ;
}

/* ------------------------------------------------------------------------ */
/* Lookups and figures                                                        */

const struct pt_pull *pt_store_pull(const struct pt_store *s, const char *id)
{
  return pt_map_get(&s->pulls, id);
}

const struct pt_node *pt_store_node(const struct pt_store *s, const char *name)
{
  return pt_map_get(&s->nodes, name);
}

size_t pt_store_max_nodes(const struct pt_store *s)
{
  return s->opts.max_nodes;
}

const struct pt_store_counters *pt_store_counters(const struct pt_store *s)
{
  return &s->counters;
}

void pt_store_gauges(const struct pt_store *s, struct pt_store_gauges *g)
{
  memset(g, 0, sizeof(*g));
  g->pulls_pulling = s->pulls_in_state[PT_PULL_PULLING];
  g->pulls_stalled = s->pulls_in_state[PT_PULL_STALLED];
  g->pulls_completed = s->pulls_in_state[PT_PULL_COMPLETED];
  g->pulls_failed = s->pulls_in_state[PT_PULL_FAILED];
  g->pulls_lost = s->pulls_in_state[PT_PULL_LOST];
  g->nodes_ok = s->nodes_in_state[PT_NODE_OK];
  g->nodes_lagging = s->nodes_in_state[PT_NODE_LAGGING];
  g->nodes_lost = s->nodes_in_state[PT_NODE_LOST];
  g->nodes_containerd_unreachable = s->nodes_containerd_unreachable;
  g->pods = s->pods.count;
  g->kube_events = json_array_size(s->events);
}

int pt_store_check(const struct pt_store *s, char *err, size_t errlen)
{
#define BROKEN(...)                       \
  do {                                    \
    snprintf(err, errlen, __VA_ARGS__);   \
    return -EFAULT;                       \
  } while (0)
  size_t indexed = 0;
  for (struct pt_map_entry *e = pt_map_first(&s->by_node); e; e = pt_map_next(&s->by_node, e)) {
    const struct pull_list *l = e->value;
    if (l->n == 0)
      BROKEN("node %s has an empty pull list in the index", e->key);
    for (size_t i = 0; i < l->n; i++) {
      const struct pt_pull *p = l->v[i];
      if (pt_map_get(&s->pulls, p->id) != p)
        BROKEN("pull %s is indexed under %s but not in the table", p->id, e->key);
      if (strcmp(p->node, e->key) != 0)
        BROKEN("pull %s of node %s is indexed under %s", p->id, p->node, e->key);
      for (size_t k = 0; k < i; k++)
        if (l->v[k] == p)
          BROKEN("pull %s is indexed twice", p->id);
    }
    indexed += l->n;
  }
  if (indexed != s->pulls.count)
    BROKEN("%zu pulls in the table, %zu in the index", s->pulls.count, indexed);
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    const struct pt_node *n = e->value;
    size_t active = 0;
    const struct pull_list *l = store_node_pulls(s, n->name);
    for (size_t i = 0; i < l->n; i++)
      active += pull_is_active(l->v[i]);
    if (active != n->pulls_active)
      BROKEN("node %s counts %zu active pulls, its index has %zu", n->name, n->pulls_active, active);
  }
  size_t pulls_in[PT_PULL_LOST + 1] = {0}, nodes_in[PT_NODE_LOST + 1] = {0}, unreachable = 0;
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e))
    pulls_in[((const struct pt_pull *)e->value)->state]++;
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    nodes_in[((const struct pt_node *)e->value)->state]++;
    unreachable += ((const struct pt_node *)e->value)->containerd_unreachable;
  }
  if (unreachable != s->nodes_containerd_unreachable)
    BROKEN("%zu nodes with containerd unreachable in the table, %zu counted", unreachable,
           s->nodes_containerd_unreachable);
  for (int i = 0; i <= PT_PULL_LOST; i++)
    if (pulls_in[i] != s->pulls_in_state[i])
      BROKEN("%zu pulls %s in the table, %zu counted", pulls_in[i], pt_pull_state_name(i), s->pulls_in_state[i]);
  for (int i = 0; i <= PT_NODE_LOST; i++)
    if (nodes_in[i] != s->nodes_in_state[i])
      BROKEN("%zu nodes %s in the table, %zu counted", nodes_in[i], pt_node_state_name(i), s->nodes_in_state[i]);
  const struct pt_store_counters *c = &s->counters;
  if (c->pulls_started + c->pulls_restored != s->pulls.count + c->pulls_evicted + c->pulls_superseded)
    BROKEN("%llu pulls started + %llu restored, but %zu in the table + %llu evicted + %llu superseded",
           (unsigned long long)c->pulls_started, (unsigned long long)c->pulls_restored, s->pulls.count,
           (unsigned long long)c->pulls_evicted, (unsigned long long)c->pulls_superseded);
  return 0;
#undef BROKEN
}
