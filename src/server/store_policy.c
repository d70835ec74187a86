/* The store's calls into the policy: rate and ETA, eviction, correlation and
 * the alert hooks, with the views of a pull that the hooks read (times as
 * numbers, as policy.h asks). The policy always answers: when a script fails
 * its C default decides (src/policy/fallback.c), so the store keeps no
 * defaults of its own. */
#include "server/store.h"

#include <math.h>
#include <stdio.h>

#include "core/log.h"
#include "server/store_impl.h"

static json_t *jstr(const char *s)
{
  return s ? json_string(s) : json_null();
}

/* The policy's view of a pull. */
static json_t *policy_pull_json(const struct pt_pull *p)
{
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(p->id));
  json_object_set_new(o, "node", json_string(p->node));
  json_object_set_new(o, "imageRef", jstr(p->image_ref));
  json_object_set_new(o, "image", jstr(p->image ? p->image : p->image_ref));
  json_object_set_new(o, "manifestDigest", jstr(p->manifest_digest));
  json_object_set_new(o, "indexDigest", jstr(p->index_digest));
  json_object_set_new(o, "state", json_string(pt_pull_state_name(p->state)));
  json_object_set_new(o, "source", json_string(p->from_kubelet ? "kubelet" : "agent"));
  json_object_set_new(o, "startedAt", p->started_at > 0 ? json_real(p->started_at) : json_null());
  json_object_set_new(o, "completedAt", p->completed_at > 0 ? json_real(p->completed_at) : json_null());
  json_object_set_new(o, "totalBytes", json_integer(p->total));
  json_object_set_new(o, "downloadedBytes", json_integer(p->downloaded));
  json_object_set_new(o, "totalKnown", json_boolean(p->total_known));
  json_t *layers = json_array();
  char db[PT_DIGEST_TEXT_MAX];
  for (size_t i = 0; i < p->nlayers; i++)
    json_array_append_new(layers, json_pack("{s:s,s:s,s:I,s:I,s:o}", "digest", pt_layer_digest(&p->layers[i], db),
                                            "state", pt_layer_state_name(p->layers[i].state),
                                            "totalBytes", (json_int_t)p->layers[i].total,
                                            "downloadedBytes", (json_int_t)p->layers[i].downloaded,
                                            "updatedAt", p->layers[i].updated_at > 0
                                                             ? json_real(p->layers[i].updated_at)
                                                             : json_null()));
  json_object_set_new(o, "layers", layers);
  json_t *pods = json_array();
  for (size_t i = 0; i < p->npods; i++)
    json_array_append_new(pods, json_pack("{s:s,s:s}", "namespace", p->pods[i].ns, "name", p->pods[i].name));
  json_object_set_new(o, "pods", pods);
  return o;
}

/* ------------------------------------------------------------------------ */
/* rate                                                                       */

void store_rate_update(struct pt_store *s, struct pt_pull *p, double now)
{
  struct pt_policy_rate_sample smp = {
    .pull_id = p->id, .node = p->node, .now = now, .downloaded = p->downloaded,
    .total = p->total_known ? p->total : -1, .stalled = p->state == PT_PULL_STALLED,
    .completed = p->state == PT_PULL_COMPLETED,
  };
  struct pt_policy_rate_result res;
  /* Fails only without memory: the previous figures stay. */
  if (pt_policy_rate(s->opts.policy, &smp, &p->rate, &res) == 0) {
    p->bytes_per_sec = res.bytes_per_sec;
    p->eta = res.eta_seconds;
  }
}

/* ------------------------------------------------------------------------ */
/* eviction                                                                   */

static enum pt_policy_pull_phase phase_of(const struct pt_pull *p)
{
  switch (p->state) {
  case PT_PULL_COMPLETED: return PT_POLICY_PULL_COMPLETED;
  case PT_PULL_FAILED: return PT_POLICY_PULL_FAILED;
  case PT_PULL_LOST: return PT_POLICY_PULL_LOST;
  default: return PT_POLICY_PULL_ACTIVE;
  }
}

enum pt_policy_evict_decision store_evict_decision(struct pt_store *s, const struct pt_pull *p,
                                                   const struct pt_node *n, double now)
{
  struct pt_policy_evict_input in = {
    .pull_id = p->id, .node = p->node, .image_ref = p->image_ref, .phase = phase_of(p),
    .started_at = p->started_at, .finished_at = p->finished_at, .lost_at = p->lost_at,
    .last_seen_at = p->last_seen_at, .node_last_report = n ? n->last_report : 0, .now = now,
  };
  enum pt_policy_evict_decision d = PT_POLICY_KEEP;
  /* Fails only without memory: the pull is kept until the next tick. */
  if (pt_policy_evict(s->opts.policy, &in, &d) != 0)
    return PT_POLICY_KEEP;
  return d;
}

/* ------------------------------------------------------------------------ */
/* correlation                                                                */

static bool same_targets(const struct pt_policy_correlation *c, const struct pt_pull *p)
{
  if (c->n_targets != p->npods)
    return false;
  for (size_t k = 0; k < c->n_targets; k++)
    if (!store_streq(c->targets[k].ns, p->pods[k].ns) || !store_streq(c->targets[k].pod, p->pods[k].name))
      return false;
  return true;
}

/* Replaces the pull's pods with the targets; false without memory (the old
 * pods stay). */
static bool set_targets(struct pt_pull *p, const struct pt_policy_correlation *c)
{
  struct pt_pod_ref *pods = c->n_targets ? calloc(c->n_targets, sizeof(*pods)) : NULL;
  if (c->n_targets && !pods)
    return false;
  for (size_t k = 0; k < c->n_targets; k++) {
    pods[k].ns = store_strdup(c->targets[k].ns);
    pods[k].name = store_strdup(c->targets[k].pod);
    pods[k].container = store_strdup(c->targets[k].container);
    if (!pods[k].ns || !pods[k].name || (c->targets[k].container && !pods[k].container)) {
      store_free_pods(pods, k + 1);
      return false;
    }
  }
  store_free_pods(p->pods, p->npods);
  p->pods = pods;
  p->npods = c->n_targets;
  return true;
}

/* The candidates of a pull's correlation: the pods on its node and the
 * recent kubelet events of that node. */
static json_t *node_members(const struct pt_store *s, const char *node, bool pods)
{
  json_t *out = json_array();
  if (pods) {
    for (struct pt_map_entry *e = pt_map_first(&s->pods); e; e = pt_map_next(&s->pods, e))
      if (store_streq(json_string_value(json_object_get(e->value, "node")), node))
        json_array_append(out, e->value);
  } else {
    size_t i;
    json_t *ev;
    json_array_foreach(s->events, i, ev)
      if (store_streq(json_string_value(json_object_get(ev, "node")), node))
        json_array_append(out, ev);
  }
  return out;
}

void store_correlate(struct pt_store *s, struct pt_pull *p, double now, bool emit_change)
{
  if (!s->pods.count)
    return;
  json_t *pods = node_members(s, p->node, true);
  if (!json_array_size(pods)) {
    json_decref(pods);
    return;
  }
  json_t *events = node_members(s, p->node, false);
  json_t *pj = policy_pull_json(p);
  struct pt_policy_correlation c = {0};
  if (pt_policy_correlate(s->opts.policy, pj, pods, events, &c) == 0) {
    bool changed = !same_targets(&c, p) && set_targets(p, &c);
    if (c.image_ref && store_set_str(&p->image, c.image_ref))
      changed = true;
    if (changed && emit_change) {
      p->updated_at = now;
      store_emit_pull(s, PT_CHANGE_PULL_PROGRESS, p, PT_LAYERS_NONE, now);
    }
  }
  pt_policy_correlation_clear(&c);
  json_decref(pj);
  json_decref(pods);
  json_decref(events);
}

/* ------------------------------------------------------------------------ */
/* alerts                                                                     */

/* The event the alert hooks get (docs/policy.md, "alerts", lists these
 * members). */
static json_t *policy_event(const char *type, const struct pt_pull *p, double now, double stalled_seconds)
{
  json_t *ev = json_object();
  json_object_set_new(ev, "type", json_string(type));
  json_object_set_new(ev, "time", json_real(now));
  json_object_set_new(ev, "pull", policy_pull_json(p));
  json_object_set_new(ev, "bytesPerSec", json_real(p->bytes_per_sec));
  json_object_set_new(ev, "etaSeconds", p->eta >= 0 ? json_real(p->eta) : json_null());
  if (p->started_at > 0) {
    double end = p->completed_at > 0 ? p->completed_at : now;
    json_object_set_new(ev, "elapsedSeconds", json_real(fmax(0, end - p->started_at)));
  }
  if (stalled_seconds >= 0)
    json_object_set_new(ev, "stalledSeconds", json_real(stalled_seconds));
  if (p->error_reason)
    json_object_set_new(ev, "reason", json_string(p->error_reason));
  if (p->error_message)
    json_object_set_new(ev, "message", json_string(p->error_message));
  return ev;
}

/* Hands ev (consumed) to the hooks of type. */
static void hooks_call(struct pt_store *s, const char *type, const struct pt_pull *p, double now, json_t *ev)
{
  /* The alerts the hooks return come back through store_on_policy_alert()
   * during this call, stamped with this time. */
  s->alert_time = now;
  s->alert_pull = p;
  pt_policy_emit(s->opts.policy, type, ev);
  s->alert_pull = NULL;
  json_decref(ev);
}

/* Skipped when no handler listens, which keeps the frequent pull.progress
 * free for a policy that does not use it. */
void store_policy_emit(struct pt_store *s, const char *type, const struct pt_pull *p, double now,
                       double stalled_seconds)
{
  if (pt_policy_listens(s->opts.policy, type))
    hooks_call(s, type, p, now, policy_event(type, p, now, stalled_seconds));
}

void store_check_slow(struct pt_store *s, struct pt_pull *p, double now)
{
  const char *image = p->image ? p->image : p->image_ref;
  double elapsed = now - p->started_at, p50 = 0;
  size_t pulls = 0;
  /* The history is asked only about pulls past the floor, and only when
   * someone listens: most pulls end before it. */
  if (p->slow_raised || !s->opts.typical || !image || p->started_at <= 0 || elapsed < s->slow.min_duration ||
      !pt_policy_listens(s->opts.policy, "pull.slow") || !s->opts.typical(s->opts.ud, image, &p50, &pulls) ||
      pulls < s->slow.min_pulls || elapsed <= s->slow.factor * p50)
    return;
  p->slow_raised = true;
  json_t *ev = policy_event("pull.slow", p, now, -1);
  json_object_set_new(ev, "typicalSeconds", json_real(p50));
  json_object_set_new(ev, "typicalPulls", json_integer((json_int_t)pulls));
  json_object_set_new(ev, "slowFactor", json_real(s->slow.factor));
  hooks_call(s, "pull.slow", p, now, ev);
}

void store_on_policy_alert(void *ud, const struct pt_policy_alert *a)
{
  struct pt_store *s = ud;
  const char *ns = json_string_value(json_object_get(a->labels, "namespace"));
  struct pt_change c = {
    .type = PT_CHANGE_ALERT,
    .time = s->alert_time,
    .pull = s->alert_pull,
    .keys = {.node = json_string_value(json_object_get(a->labels, "node")),
             .image = json_string_value(json_object_get(a->labels, "image")), .namespaced = ns != NULL, .ns = ns},
    .alert = a,
  };
  store_emit(s, &c);
}
