#include "server/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "core/image_ref.h"
#include "core/log.h"
#include "kube/parse.h"
#include "server/map.h"

const double pt_store_duration_buckets[8] = {1, 5, 10, 30, 60, 120, 300, 600};
const char *const pt_store_fail_reasons[PT_STORE_FAIL_REASONS] = {
  "Failed", "ErrImagePull", "ImagePullBackOff", "BackOff", "ErrImageNeverPull", "InspectFailed"};

#define MAX_KUBE_EVENTS 1000

struct pt_store {
  struct pt_store_options opts;
  struct pt_map pulls;   /* id -> struct pt_pull */
  struct pt_map nodes;   /* name -> struct pt_node */
  struct pt_map pods;    /* "ns/name" -> json_t */
  struct pt_map by_node; /* node name -> struct pull_list: that node's pulls (borrowed) */
  json_t *events;        /* recent kubelet events, oldest first */
  uint64_t kube_gen;
  uint64_t report_gen;
  struct pt_store_counters counters;
};

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

static char *xstrdup(const char *s)
{
  return s ? strdup(s) : NULL;
}

static bool streq(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Replaces *dst with a copy of src; returns true when the value changed. */
static bool set_str(char **dst, const char *src)
{
  if (streq(*dst, src))
    return false;
  free(*dst);
  *dst = xstrdup(src);
  return true;
}

static bool is_active(const struct pt_pull *p)
{
  return p->state == PT_PULL_PULLING || p->state == PT_PULL_STALLED;
}

static void free_layers(struct pt_layer *l, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(l[i].digest);
    free(l[i].media_type);
  }
  free(l);
}

static void free_pods(struct pt_pod_ref *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(p[i].ns);
    free(p[i].name);
    free(p[i].container);
  }
  free(p);
}

static void pull_free(struct pt_pull *p)
{
  if (!p)
    return;
  free(p->id);
  free(p->node);
  free(p->image_ref);
  free(p->image);
  free(p->manifest_digest);
  free(p->index_digest);
  free_layers(p->layers, p->nlayers);
  free_pods(p->pods, p->npods);
  free(p->error_reason);
  free(p->error_message);
  free(p->resolved_reason);
  free(p->resolved_message);
  pt_policy_rate_state_clear(&p->rate);
  free(p);
}

/* The pulls of one node (agent and kubelet ones, also for nodes without an
 * agent), so that the work of a report or a kubelet event is proportional to
 * that node's pulls rather than to every pull in the tables (the history of a
 * big cluster holds many thousands). */
struct pull_list {
  struct pt_pull **v;
  size_t n, cap;
};

static struct pull_list *node_pulls(const struct pt_store *s, const char *node)
{
  static struct pull_list empty;
  struct pull_list *l = pt_map_get(&s->by_node, node);
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
    if (!v)
      return -ENOMEM;
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

/* Inserts a new pull in both tables; on failure the pull is freed. */
static int add_pull(struct pt_store *s, struct pt_pull *p)
{
  if (pt_map_put(&s->pulls, p->id, p)) {
    pull_free(p);
    return -ENOMEM;
  }
  if (index_pull(s, p)) {
    pt_map_del(&s->pulls, p->id);
    pull_free(p);
    return -ENOMEM;
  }
  return 0;
}

static void node_free(struct pt_node *n)
{
  if (!n)
    return;
  free(n->name);
  free(n->agent_version);
  free(n->boot_id);
  json_decref(n->unattributed);
  free(n);
}

struct pt_store *pt_store_create(const struct pt_store_options *opts)
{
  struct pt_store *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->opts = *opts;
  if (s->opts.node_lost_grace <= 0) s->opts.node_lost_grace = 120;
  if (s->opts.lag_intervals <= 0) s->opts.lag_intervals = 3;
  if (s->opts.report_burst <= 0) s->opts.report_burst = 10;
  if (!s->opts.max_nodes) s->opts.max_nodes = 10000;
  if (s->opts.history_ttl <= 0) s->opts.history_ttl = 1800;
  pt_map_init(&s->pulls);
  pt_map_init(&s->nodes);
  pt_map_init(&s->pods);
  pt_map_init(&s->by_node);
  s->events = json_array();
  return s;
}

void pt_store_destroy(struct pt_store *s)
{
  if (!s)
    return;
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e))
    pull_free(e->value);
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
  json_decref(s->events);
  free(s);
}

void pt_store_set_policy(struct pt_store *s, struct pt_policy *policy)
{
  s->opts.policy = policy;
}

/* ------------------------------------------------------------------------ */
/* JSON views                                                                 */

static json_t *jtime(double t)
{
  if (t <= 0)
    return json_null();
  char buf[40];
  return json_string(pt_time_format(t, buf, sizeof(buf)));
}

static json_t *jstr(const char *s)
{
  return s ? json_string(s) : json_null();
}

static double round2(double v)
{
  return round(v * 100.0) / 100.0;
}

json_t *pt_store_layer_json(const struct pt_layer *l)
{
  json_t *o = json_object();
  json_object_set_new(o, "digest", jstr(l->digest));
  json_object_set_new(o, "mediaType", jstr(l->media_type));
  json_object_set_new(o, "state", json_string(pt_layer_state_name(l->state)));
  json_object_set_new(o, "totalBytes", json_integer(l->total));
  json_object_set_new(o, "downloadedBytes", json_integer(l->downloaded));
  if (l->total > 0)
    json_object_set_new(o, "percent", json_real(round2(100.0 * (double)l->downloaded / (double)l->total)));
  else
    json_object_set_new(o, "percent", l->state == PT_LAYER_DONE || l->state == PT_LAYER_CACHED ? json_real(100.0) : json_null());
  json_object_set_new(o, "startedAt", jtime(l->started_at));
  json_object_set_new(o, "updatedAt", jtime(l->updated_at));
  return o;
}

static size_t layers_done(const struct pt_pull *p)
{
  size_t n = 0;
  for (size_t i = 0; i < p->nlayers; i++)
    n += p->layers[i].state == PT_LAYER_DONE || p->layers[i].state == PT_LAYER_CACHED;
  return n;
}

json_t *pt_store_pull_json(const struct pt_pull *p, bool with_layers, double now)
{
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(p->id));
  json_object_set_new(o, "node", json_string(p->node));
  json_object_set_new(o, "image", jstr(p->image ? p->image : p->image_ref));
  json_object_set_new(o, "manifestDigest", jstr(p->manifest_digest));
  json_object_set_new(o, "indexDigest", jstr(p->index_digest));
  json_object_set_new(o, "source", json_string(p->from_kubelet ? "kubelet" : "agent"));
  json_object_set_new(o, "state", json_string(pt_pull_state_name(p->state)));
  if (p->error_reason)
    json_object_set_new(o, "error", json_pack("{s:s,s:s}", "reason", p->error_reason, "message",
                                              p->error_message ? p->error_message : ""));
  else
    json_object_set_new(o, "error", json_null());
  if (p->resolved_reason)
    json_object_set_new(o, "resolvedError",
                        json_pack("{s:s,s:s,s:o,s:o}", "reason", p->resolved_reason, "message",
                                  p->resolved_message ? p->resolved_message : "", "failedAt",
                                  jtime(p->resolved_failed_at), "resolvedAt", jtime(p->resolved_at)));
  else
    json_object_set_new(o, "resolvedError", json_null());
  if (p->kubelet_pulled_at > 0)
    json_object_set_new(o, "kubelet",
                        json_pack("{s:o,s:o,s:o}", "pulledAt", jtime(p->kubelet_pulled_at), "durationSeconds",
                                  p->kubelet_duration >= 0 ? json_real(p->kubelet_duration) : json_null(),
                                  "waitingSeconds",
                                  p->kubelet_waiting >= 0 ? json_real(p->kubelet_waiting) : json_null()));
  else
    json_object_set_new(o, "kubelet", json_null());
  json_object_set_new(o, "startedAt", jtime(p->started_at));
  json_object_set_new(o, "completedAt", jtime(p->completed_at));
  json_object_set_new(o, "updatedAt", jtime(p->updated_at));
  double end = p->completed_at > 0 ? p->completed_at
             : p->finished_at > 0 ? p->finished_at
             : p->lost_at > 0 ? p->lost_at : now;
  if (p->started_at > 0)
    json_object_set_new(o, "durationSeconds", json_real(round2(fmax(0, end - p->started_at))));
  else
    json_object_set_new(o, "durationSeconds", json_null());
  json_object_set_new(o, "totalKnown", json_boolean(p->total_known));
  json_object_set_new(o, "totalBytes", json_integer(p->total));
  json_object_set_new(o, "downloadedBytes", json_integer(p->downloaded));
  if (p->total_known && p->total > 0)
    json_object_set_new(o, "percent", json_real(round2(100.0 * (double)p->downloaded / (double)p->total)));
  else if (p->total_known && p->state == PT_PULL_COMPLETED)
    json_object_set_new(o, "percent", json_real(100.0));
  else
    json_object_set_new(o, "percent", json_null());
  json_object_set_new(o, "bytesPerSecond", json_real(round2(p->bytes_per_sec)));
  if (p->state == PT_PULL_COMPLETED)
    json_object_set_new(o, "etaSeconds", json_real(0));
  else if (p->eta >= 0 && is_active(p))
    json_object_set_new(o, "etaSeconds", json_real(round2(p->eta)));
  else
    json_object_set_new(o, "etaSeconds", json_null());
  json_object_set_new(o, "layersTotal", json_integer((json_int_t)p->nlayers));
  json_object_set_new(o, "layersDone", json_integer((json_int_t)layers_done(p)));
  json_t *pods = json_array();
  for (size_t i = 0; i < p->npods; i++) {
    json_t *po = json_pack("{s:s,s:s}", "namespace", p->pods[i].ns, "name", p->pods[i].name);
    if (p->pods[i].container)
      json_object_set_new(po, "container", json_string(p->pods[i].container));
    json_array_append_new(pods, po);
  }
  json_object_set_new(o, "pods", pods);
  if (with_layers) {
    json_t *layers = json_array();
    for (size_t i = 0; i < p->nlayers; i++)
      json_array_append_new(layers, pt_store_layer_json(&p->layers[i]));
    json_object_set_new(o, "layers", layers);
  }
  return o;
}

json_t *pt_store_node_json(const struct pt_node *n, bool with_unattributed)
{
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(n->name));
  json_object_set_new(o, "state", json_string(pt_node_state_name(n->state)));
  json_object_set_new(o, "agentVersion", jstr(n->agent_version));
  json_object_set_new(o, "bootId", jstr(n->boot_id));
  json_object_set_new(o, "seq", json_integer(n->seq));
  json_object_set_new(o, "restarts", json_integer(n->restarts));
  json_object_set_new(o, "firstReportAt", jtime(n->first_report));
  json_object_set_new(o, "lastReportAt", jtime(n->last_report));
  json_object_set_new(o, "reportIntervalSeconds", n->interval > 0 ? json_real(round2(n->interval)) : json_null());
  json_object_set_new(o, "pullsActive", json_integer((json_int_t)n->pulls_active));
  json_object_set_new(o, "pullsTotal", json_integer((json_int_t)n->pulls_total));
  if (with_unattributed)
    json_object_set_new(o, "unattributed", n->unattributed ? json_deep_copy(n->unattributed) : json_array());
  return o;
}

/* Events: {"v":1,"type":...,"time":...} followed by the members the caller adds. */
static json_t *event_new(const char *type, double now)
{
  json_t *o = json_object();
  json_object_set_new(o, "v", json_integer(1));
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "time", jtime(now));
  return o;
}

static void emit(struct pt_store *s, json_t *ev)
{
  if (s->opts.on_event)
    s->opts.on_event(s->opts.ud, json_string_value(json_object_get(ev, "type")), ev);
  json_decref(ev);
}

static void emit_pull(struct pt_store *s, const char *type, const struct pt_pull *p, bool layers, double now)
{
  json_t *ev = event_new(type, now);
  json_object_set_new(ev, "pull", pt_store_pull_json(p, layers, now));
  emit(s, ev);
}

static void emit_layer(struct pt_store *s, const char *type, const struct pt_pull *p,
                       const struct pt_layer *l, double now)
{
  json_t *ev = event_new(type, now);
  json_object_set_new(ev, "pullId", json_string(p->id));
  json_object_set_new(ev, "node", json_string(p->node));
  json_object_set_new(ev, "layer", pt_store_layer_json(l));
  json_t *nss = json_array();
  for (size_t i = 0; i < p->npods; i++)
    json_array_append_new(nss, json_string(p->pods[i].ns));
  json_object_set_new(ev, "namespaces", nss);
  emit(s, ev);
}

static void emit_node(struct pt_store *s, const struct pt_node *n, double now)
{
  json_t *ev = event_new("node.updated", now);
  json_object_set_new(ev, "node", pt_store_node_json(n, false));
  emit(s, ev);
}

/* The policy's view of a pull: numbers for times, as policy.h asks. */
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
  for (size_t i = 0; i < p->nlayers; i++)
    json_array_append_new(layers, json_pack("{s:s,s:s,s:I,s:I}", "digest", p->layers[i].digest,
                                            "state", pt_layer_state_name(p->layers[i].state),
                                            "totalBytes", (json_int_t)p->layers[i].total,
                                            "downloadedBytes", (json_int_t)p->layers[i].downloaded));
  json_object_set_new(o, "layers", layers);
  json_t *pods = json_array();
  for (size_t i = 0; i < p->npods; i++)
    json_array_append_new(pods, json_pack("{s:s,s:s}", "namespace", p->pods[i].ns, "name", p->pods[i].name));
  json_object_set_new(o, "pods", pods);
  return o;
}

/* Hands an event to the policy's alert hooks (docs/policy.md, "alerts", lists
 * these members); skipped when no handler listens, which keeps the frequent
 * pull.progress free for a policy that does not use it. */
static void policy_emit(struct pt_store *s, const char *type, const struct pt_pull *p, double now,
                        double stalled_seconds)
{
  if (!s->opts.policy || !pt_policy_listens(s->opts.policy, type))
    return;
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
  pt_policy_emit(s->opts.policy, type, ev);
  json_decref(ev);
}

/* ------------------------------------------------------------------------ */
/* Reports                                                                    */

static void rate_update(struct pt_store *s, struct pt_pull *p, double now)
{
  if (s->opts.policy) {
    struct pt_policy_rate_sample smp = {
      .pull_id = p->id, .node = p->node, .now = now, .downloaded = p->downloaded,
      .total = p->total_known ? p->total : -1, .stalled = p->state == PT_PULL_STALLED,
      .completed = p->state == PT_PULL_COMPLETED,
    };
    struct pt_policy_rate_result res;
    if (pt_policy_rate(s->opts.policy, &smp, &p->rate, &res) == 0) {
      p->bytes_per_sec = res.bytes_per_sec;
      p->eta = res.eta_seconds;
      return;
    }
  }
  /* Minimal C behaviour without a policy: EWMA with alpha 0.5. */
  struct pt_policy_rate_state *st = &p->rate;
  if (st->c_primed && now > st->c_time) {
    double inst = fmax(0, (double)(p->downloaded - st->c_bytes)) / (now - st->c_time);
    st->c_rate = p->state == PT_PULL_STALLED ? 0 : 0.5 * st->c_rate + 0.5 * inst;
  }
  st->c_primed = true;
  st->c_time = now;
  st->c_bytes = (double)p->downloaded;
  p->bytes_per_sec = st->c_rate;
  if (p->total_known && st->c_rate > 0)
    p->eta = (double)(p->total - p->downloaded) / st->c_rate;
  else
    p->eta = p->state == PT_PULL_COMPLETED ? 0 : -1;
}

static enum pt_pull_state derive_state(const struct pt_report_pull *rp)
{
  if (rp->completed_at > 0)
    return PT_PULL_COMPLETED;
  size_t downloading = 0, stalled = 0;
  for (size_t i = 0; i < rp->nlayers; i++) {
    downloading += rp->layers[i].state == PT_LAYER_DOWNLOADING;
    stalled += rp->layers[i].state == PT_LAYER_STALLED;
  }
  return stalled > 0 && downloading == 0 ? PT_PULL_STALLED : PT_PULL_PULLING;
}

static const struct pt_layer *find_layer(const struct pt_pull *p, size_t hint, const char *digest)
{
  if (hint < p->nlayers && strcmp(p->layers[hint].digest, digest) == 0)
    return &p->layers[hint];
  for (size_t i = 0; i < p->nlayers; i++)
    if (strcmp(p->layers[i].digest, digest) == 0)
      return &p->layers[i];
  return NULL;
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

static void complete_pull(struct pt_store *s, struct pt_pull *p, double now)
{
  p->finished_at = now;
  free(p->error_reason);
  free(p->error_message);
  p->error_reason = p->error_message = NULL;
  s->counters.pulls_completed++;
  if (p->started_at > 0 && p->completed_at >= p->started_at)
    observe_duration(s, p->completed_at - p->started_at);
}

static void correlate(struct pt_store *s, struct pt_pull *p, double now, bool emit_change);
static void normalize_image(const char *in, char *out, size_t outlen);

/* Seconds of slack when matching kubelet's event times (whole seconds) with
 * the agent's: kubelet posts an event after the runtime call returns, the
 * agent sees the result on its next poll and reports it a tick later. */
#define KUBELET_SLACK 30.0

/* Whether pull p is of kubelet's reference ref: the same repository (the
 * agent's imageRef has neither port nor tag) and, when correlation or kubelet
 * named p's tag, the same tag. */
static bool pull_is_image(const struct pt_pull *p, const char *ref)
{
  if (!p->image_ref || !ref)
    return false;
  char a[1024], b[1024];
  normalize_image(p->image_ref, a, sizeof(a));
  normalize_image(ref, b, sizeof(b));
  if (strcmp(a, b) != 0)
    return false;
  if (!p->image || streq(p->image, p->image_ref))
    return true; /* no tag known for p: the repository decides */
  if (pt_image_ref_normalize(p->image, a, sizeof(a)) != 0 || pt_image_ref_normalize(ref, b, sizeof(b)) != 0)
    return true;
  return strcmp(a, b) == 0;
}

/* Resolves the kubelet-only pulls of a's image on a's node in favour of a,
 * the agent pull that kubelet's retry produced. Those pulls failed (or were
 * completed by kubelet's "Successfully pulled" before a was seen): an
 * operator wants one row for the image that says it got pulled after all,
 * with the earlier failure kept as history in a's resolvedError, not a
 * failure that stays current forever next to a successful pull. So the
 * kubelet-only pull leaves the tables (pull.evicted, reason "superseded").
 * Returns true when a changed. */
static bool supersede_kubelet_pulls(struct pt_store *s, struct pt_pull *a, double now)
{
  if (a->from_kubelet)
    return false;
  bool changed = false;
  struct pull_list *l = pt_map_get(&s->by_node, a->node);
  /* Backwards: removing v[i] moves the last entry, already visited, there. */
  for (size_t i = l ? l->n : 0; i-- > 0;) {
    struct pt_pull *k = l->v[i];
    bool failed = k->state == PT_PULL_FAILED;
    bool resolved = k->state == PT_PULL_COMPLETED && k->resolved_reason;
    if (k == a || !k->from_kubelet || !(failed || resolved) || !pull_is_image(a, k->image))
      continue;
    /* An agent pull that had finished before the failure is not its retry. */
    if (a->completed_at > 0 && a->completed_at + KUBELET_SLACK < k->started_at)
      continue;
    if (failed) {
      set_str(&a->resolved_reason, k->error_reason);
      set_str(&a->resolved_message, k->error_message);
      a->resolved_failed_at = k->finished_at;
    } else {
      set_str(&a->resolved_reason, k->resolved_reason);
      set_str(&a->resolved_message, k->resolved_message);
      a->resolved_failed_at = k->resolved_failed_at;
    }
    a->resolved_at = now;
    if (a->kubelet_pulled_at <= 0 && k->kubelet_pulled_at > 0) {
      a->kubelet_pulled_at = k->kubelet_pulled_at;
      a->kubelet_duration = k->kubelet_duration;
      a->kubelet_waiting = k->kubelet_waiting;
    }
    if (!a->npods && k->npods) {
      a->pods = k->pods;
      a->npods = k->npods;
      k->pods = NULL;
      k->npods = 0;
    }
    PT_LOG_INFO("kubelet's retry succeeded: the failed kubelet pull is superseded", "{s:s,s:s,s:s,s:s?}", "pull",
                k->id, "by", a->id, "node", a->node, "reason", a->resolved_reason);
    json_t *ev = event_new("pull.evicted", now);
    json_object_set_new(ev, "pullId", json_string(k->id));
    json_object_set_new(ev, "node", json_string(k->node));
    json_object_set_new(ev, "reason", json_string("superseded"));
    json_object_set_new(ev, "supersededBy", json_string(a->id));
    emit(s, ev);
    pt_map_del(&s->pulls, k->id);
    unindex_pull(s, k);
    pull_free(k);
    changed = true;
  }
  return changed;
}

static void apply_pull(struct pt_store *s, struct pt_node *node, const struct pt_report_pull *rp,
                       double now)
{
  char key[600];
  size_t nl = strlen(node->name);
  if (strncmp(rp->id, node->name, nl) == 0 && rp->id[nl] == '/')
    snprintf(key, sizeof(key), "%s", rp->id);
  else
    snprintf(key, sizeof(key), "%s/%s", node->name, rp->id);
  struct pt_pull *p = pt_map_get(&s->pulls, key);
  bool is_new = !p;
  if (is_new) {
    p = calloc(1, sizeof(*p));
    if (!p)
      return;
    p->id = strdup(key);
    p->node = strdup(node->name);
    p->eta = -1;
    if (!p->id || !p->node) {
      pull_free(p);
      return;
    }
    if (add_pull(s, p))
      return;
    node->pulls_total++;
    s->counters.pulls_started++;
  }
  enum pt_pull_state old_state = p->state;
  int64_t old_downloaded = p->downloaded;
  bool changed = is_new;

  /* New layers, events for the ones that moved, and bytes really fetched. */
  struct pt_layer *layers = rp->nlayers ? calloc(rp->nlayers, sizeof(*layers)) : NULL;
  for (size_t i = 0; i < rp->nlayers && (layers || !rp->nlayers); i++) {
    const struct pt_report_layer *rl = &rp->layers[i];
    struct pt_layer *nlay = &layers[i];
    nlay->digest = strdup(rl->digest);
    nlay->media_type = xstrdup(rl->media_type);
    nlay->state = rl->state;
    nlay->total = rl->total;
    nlay->downloaded = rl->downloaded;
    nlay->started_at = rl->started_at;
    nlay->updated_at = rl->updated_at;
    const struct pt_layer *ol = is_new ? NULL : find_layer(p, i, rl->digest);
    int64_t before = ol ? ol->downloaded : 0;
    if (rl->state != PT_LAYER_CACHED && rl->downloaded > before)
      s->counters.bytes += (uint64_t)(rl->downloaded - before);
    if (is_new)
      continue;
    enum pt_layer_state os = ol ? ol->state : PT_LAYER_WAITING;
    if (!ol || os != rl->state || ol->downloaded != rl->downloaded || ol->total != rl->total) {
      changed = true;
      if (rl->state == PT_LAYER_DONE && os != PT_LAYER_DONE)
        emit_layer(s, "layer.completed", p, nlay, now);
      else if (os == PT_LAYER_WAITING && rl->state != PT_LAYER_WAITING)
        emit_layer(s, "layer.started", p, nlay, now);
      else
        emit_layer(s, "layer.progress", p, nlay, now);
    }
  }
  if (rp->nlayers && !layers)
    return;
  if (!is_new && p->nlayers != rp->nlayers)
    changed = true;
  free_layers(p->layers, p->nlayers);
  p->layers = layers;
  p->nlayers = rp->nlayers;

  if (!streq(p->image_ref, rp->image_ref)) {
    /* Keep a tag that correlation added; otherwise the image follows imageRef. */
    if (!p->image || streq(p->image, p->image_ref))
      set_str(&p->image, rp->image_ref);
    set_str(&p->image_ref, rp->image_ref);
    changed = true;
  }
  changed |= set_str(&p->manifest_digest, rp->manifest_digest);
  changed |= set_str(&p->index_digest, rp->index_digest);
  if (rp->started_at > 0)
    p->started_at = rp->started_at;
  else if (p->started_at <= 0)
    p->started_at = now;
  changed |= p->total_known != rp->total_known || p->total != rp->total || p->downloaded != rp->downloaded ||
             p->completed_at != rp->completed_at;
  p->total_known = rp->total_known;
  p->total = rp->total;
  p->downloaded = rp->downloaded;
  p->completed_at = rp->completed_at;
  p->last_seen_at = now;
  p->report_gen = node->report_gen;
  p->from_kubelet = false;

  enum pt_pull_state st = derive_state(rp);
  /* A kubelet failure sticks until the agent shows progress or completion. */
  if (old_state == PT_PULL_FAILED && !is_new && st != PT_PULL_COMPLETED && p->downloaded <= old_downloaded)
    st = PT_PULL_FAILED;
  if ((old_state == PT_PULL_LOST || old_state == PT_PULL_FAILED) && st != old_state) {
    if (old_state == PT_PULL_FAILED && p->error_reason) {
      /* kubelet's retry got going: its failure is history now. */
      set_str(&p->resolved_reason, p->error_reason);
      set_str(&p->resolved_message, p->error_message);
      p->resolved_failed_at = p->finished_at;
      p->resolved_at = now;
    }
    p->lost_at = 0;
    p->finished_at = 0;
    free(p->error_reason);
    free(p->error_message);
    p->error_reason = p->error_message = NULL;
  }
  p->state = st;
  if (st == PT_PULL_STALLED && (is_new || old_state != PT_PULL_STALLED))
    p->stalled_since = now;
  else if (st != PT_PULL_STALLED)
    p->stalled_since = 0;
  double old_bps = p->bytes_per_sec, old_eta = p->eta;
  rate_update(s, p, now);
  changed |= fabs(old_bps - p->bytes_per_sec) > 0.5 || fabs(old_eta - p->eta) > 0.5;
  if (changed)
    p->updated_at = now;

  if (is_new) {
    correlate(s, p, now, false);
    emit_pull(s, "pull.started", p, true, now);
    policy_emit(s, "pull.started", p, now, -1);
    if (st == PT_PULL_COMPLETED) {
      complete_pull(s, p, now);
      supersede_kubelet_pulls(s, p, now);
      emit_pull(s, "pull.completed", p, true, now);
      policy_emit(s, "pull.completed", p, now, -1);
    } else if (st == PT_PULL_STALLED) {
      s->counters.stalls++;
      emit_pull(s, "pull.stalled", p, false, now);
    }
    return;
  }
  if (st == PT_PULL_COMPLETED && old_state != PT_PULL_COMPLETED) {
    complete_pull(s, p, now);
    supersede_kubelet_pulls(s, p, now);
    emit_pull(s, "pull.completed", p, true, now);
    policy_emit(s, "pull.completed", p, now, -1);
  } else if (st == PT_PULL_STALLED && old_state != PT_PULL_STALLED) {
    s->counters.stalls++;
    emit_pull(s, "pull.stalled", p, false, now);
    policy_emit(s, "pull.stalled", p, now, 0);
  } else if (changed || st != old_state) {
    emit_pull(s, "pull.progress", p, false, now);
    policy_emit(s, "pull.progress", p, now, -1);
  }
}

static bool take_token(struct pt_store *s, struct pt_node *n, double now)
{
  if (s->opts.report_min_interval <= 0)
    return true;
  if (n->tokens_at <= 0) {
    n->tokens = s->opts.report_burst;
  } else if (now > n->tokens_at) {
    n->tokens = fmin(s->opts.report_burst, n->tokens + (now - n->tokens_at) / s->opts.report_min_interval);
  }
  n->tokens_at = now;
  if (n->tokens < 1)
    return false;
  n->tokens -= 1;
  return true;
}

double pt_store_retry_after(struct pt_store *s, const char *node, double now)
{
  struct pt_node *n = pt_map_get(&s->nodes, node);
  if (!n || s->opts.report_min_interval <= 0)
    return 0;
  return fmax(0, (1 - n->tokens) * s->opts.report_min_interval);
}

/* kubelet's failure messages that say nothing of the cause. */
static bool generic_failure_message(const char *m)
{
  return !m || strncmp(m, "Back-off pulling image", 22) == 0 || strncmp(m, "Error: ", 7) == 0;
}

static void mark_lost(struct pt_store *s, struct pt_pull *p, const char *reason, const char *msg, double now)
{
  p->state = PT_PULL_LOST;
  p->lost_at = now;
  p->stalled_since = 0;
  p->updated_at = now;
  p->eta = -1;
  p->bytes_per_sec = 0;
  set_str(&p->error_reason, reason);
  set_str(&p->error_message, msg);
  s->counters.pulls_lost++;
  emit_pull(s, "pull.failed", p, true, now);
  policy_emit(s, "pull.failed", p, now, -1);
}

static void count_node_pulls(struct pt_store *s, struct pt_node *n)
{
  size_t active = 0;
  const struct pull_list *l = node_pulls(s, n->name);
  for (size_t i = 0; i < l->n; i++)
    active += is_active(l->v[i]);
  n->pulls_active = active;
}

enum pt_apply_result pt_store_apply_report(struct pt_store *s, const struct pt_report *r, double now)
{
  struct pt_node *n = pt_map_get(&s->nodes, r->node);
  bool node_changed = false;
  if (!n) {
    if (s->nodes.count >= s->opts.max_nodes)
      return PT_APPLY_FULL;
    n = calloc(1, sizeof(*n));
    if (!n)
      return PT_APPLY_FULL;
    n->name = strdup(r->node);
    n->first_report = now;
    if (pt_map_put(&s->nodes, r->node, n)) {
      node_free(n);
      return PT_APPLY_FULL;
    }
    node_changed = true;
  }
  if (!take_token(s, n, now))
    return PT_APPLY_THROTTLED;
  if (n->boot_id && strcmp(n->boot_id, r->boot_id) == 0 && r->seq <= n->seq)
    return PT_APPLY_STALE;
  if (n->boot_id && strcmp(n->boot_id, r->boot_id) != 0) {
    n->restarts++;
    s->counters.node_restarts++;
    node_changed = true;
    PT_LOG_INFO("agent restarted", "{s:s,s:s,s:s}", "node", n->name, "oldBootId", n->boot_id,
                "bootId", r->boot_id);
  }
  if (n->last_report > 0 && now > n->last_report) {
    double gap = now - n->last_report;
    n->interval = n->interval > 0 ? 0.8 * n->interval + 0.2 * gap : gap;
  }
  node_changed |= set_str(&n->boot_id, r->boot_id);
  node_changed |= set_str(&n->agent_version, r->agent_version);
  n->seq = r->seq;
  n->last_report = now;
  if (n->state != PT_NODE_OK) {
    n->state = PT_NODE_OK;
    node_changed = true;
  }
  json_decref(n->unattributed);
  n->unattributed = json_incref(json_object_get(r->root, "unattributed"));
  n->report_gen = ++s->report_gen;

  for (size_t i = 0; i < r->npulls; i++)
    apply_pull(s, n, &r->pulls[i], now);

  /* In-flight pulls that left the report without completing: lost. */
  const struct pull_list *mine = node_pulls(s, n->name);
  for (size_t i = 0; i < mine->n; i++) {
    struct pt_pull *p = mine->v[i];
    if (p->report_gen == n->report_gen || p->from_kubelet)
      continue;
    if (is_active(p))
      mark_lost(s, p, "lost", "the pull left its node's report before completing", now);
  }
  count_node_pulls(s, n);
  if (node_changed)
    emit_node(s, n, now);
  return PT_APPLY_APPLIED;
}

/* ------------------------------------------------------------------------ */
/* Periodic work                                                              */

static enum pt_policy_pull_phase phase_of(const struct pt_pull *p)
{
  switch (p->state) {
  case PT_PULL_COMPLETED: return PT_POLICY_PULL_COMPLETED;
  case PT_PULL_FAILED: return PT_POLICY_PULL_FAILED;
  case PT_PULL_LOST: return PT_POLICY_PULL_LOST;
  default: return PT_POLICY_PULL_ACTIVE;
  }
}

static enum pt_policy_evict_decision evict_decision(struct pt_store *s, const struct pt_pull *p,
                                                    const struct pt_node *n, double now)
{
  struct pt_policy_evict_input in = {
    .pull_id = p->id, .node = p->node, .image_ref = p->image_ref, .phase = phase_of(p),
    .started_at = p->started_at, .finished_at = p->finished_at, .lost_at = p->lost_at,
    .last_seen_at = p->last_seen_at, .node_last_report = n ? n->last_report : 0, .now = now,
  };
  enum pt_policy_evict_decision d = PT_POLICY_KEEP;
  if (s->opts.policy && pt_policy_evict(s->opts.policy, &in, &d) == 0)
    return d;
  if (in.phase == PT_POLICY_PULL_ACTIVE) {
    double last = in.node_last_report > 0 ? in.node_last_report : in.last_seen_at;
    return last > 0 && now - last >= s->opts.node_lost_grace ? PT_POLICY_MARK_LOST : PT_POLICY_KEEP;
  }
  double since = in.phase == PT_POLICY_PULL_LOST ? in.lost_at : in.finished_at;
  if (since <= 0)
    since = in.last_seen_at;
  return now - since >= s->opts.history_ttl ? PT_POLICY_EVICT : PT_POLICY_KEEP;
}

void pt_store_tick(struct pt_store *s, double now)
{
  /* Nodes: lagging, lost. */
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    struct pt_node *n = e->value;
    double silence = now - n->last_report;
    double interval = n->interval > 0 ? n->interval : 1;
    enum pt_node_state st = silence >= s->opts.node_lost_grace ? PT_NODE_LOST
                          : silence >= s->opts.lag_intervals * fmax(interval, 1) + 1 ? PT_NODE_LAGGING
                          : PT_NODE_OK;
    if (st != n->state) {
      n->state = st;
      PT_LOG_INFO("node state changed", "{s:s,s:s,s:f}", "node", n->name, "state",
                  pt_node_state_name(st), "silenceSeconds", silence);
      emit_node(s, n, now);
    }
  }
  /* Pulls: eviction decisions, stall alerts, correlation. */
  size_t cap = s->pulls.count, nevict = 0;
  char **evict = cap ? calloc(cap, sizeof(*evict)) : NULL;
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e)) {
    struct pt_pull *p = e->value;
    struct pt_node *n = pt_map_get(&s->nodes, p->node);
    enum pt_policy_evict_decision d = evict_decision(s, p, n, now);
    if (d == PT_POLICY_EVICT && evict) {
      evict[nevict++] = p->id;
      continue;
    }
    if (d == PT_POLICY_MARK_LOST && is_active(p)) {
      mark_lost(s, p, "node-lost", "the node stopped reporting", now);
      if (n)
        count_node_pulls(s, n);
      continue;
    }
    if (p->state == PT_PULL_STALLED && p->stalled_since > 0)
      policy_emit(s, "pull.stalled", p, now, now - p->stalled_since);
    /* A finished pull keeps the pods it served even after they are gone. */
    if (p->correlated_gen != s->kube_gen && (is_active(p) || p->npods == 0))
      correlate(s, p, now, true);
  }
  for (size_t i = 0; i < nevict; i++) {
    struct pt_pull *p = pt_map_del(&s->pulls, evict[i]);
    if (!p)
      continue;
    unindex_pull(s, p);
    s->counters.pulls_evicted++;
    json_t *ev = event_new("pull.evicted", now);
    json_object_set_new(ev, "pullId", json_string(p->id));
    json_object_set_new(ev, "node", json_string(p->node));
    emit(s, ev);
    pull_free(p);
  }
  free(evict);
}

/* ------------------------------------------------------------------------ */
/* Queries                                                                    */

bool pt_pull_matches(const struct pt_pull *p, const struct pt_pull_filter *f)
{
  if (!f)
    return true;
  if (f->node && strcmp(f->node, p->node) != 0)
    return false;
  if (f->state_mask && !(f->state_mask & (1u << p->state)))
    return false;
  if (f->image) {
    const char *img = p->image ? p->image : p->image_ref;
    if (!img || !strstr(img, f->image))
      return false;
  }
  if (f->ns) {
    bool found = false;
    for (size_t i = 0; i < p->npods && !found; i++)
      found = strcmp(p->pods[i].ns, f->ns) == 0;
    if (!found)
      return false;
  }
  return true;
}

const struct pt_pull *pt_store_pull(const struct pt_store *s, const char *id)
{
  return pt_map_get(&s->pulls, id);
}

const struct pt_node *pt_store_node(const struct pt_store *s, const char *name)
{
  return pt_map_get(&s->nodes, name);
}

static int cmp_pull_newest(const void *a, const void *b)
{
  const struct pt_pull *x = *(const struct pt_pull *const *)a, *y = *(const struct pt_pull *const *)b;
  if (x->started_at != y->started_at)
    return x->started_at < y->started_at ? 1 : -1;
  return strcmp(x->id, y->id);
}

json_t *pt_store_pulls_json(const struct pt_store *s, const struct pt_pull_filter *f, double now)
{
  json_t *arr = json_array();
  size_t n = 0;
  const struct pt_pull **v = s->pulls.count ? malloc(s->pulls.count * sizeof(*v)) : NULL;
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e && v; e = pt_map_next(&s->pulls, e))
    if (pt_pull_matches(e->value, f))
      v[n++] = e->value;
  if (n)
    qsort(v, n, sizeof(*v), cmp_pull_newest);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, pt_store_pull_json(v[i], true, now));
  free(v);
  return arr;
}

static int cmp_node(const void *a, const void *b)
{
  return strcmp((*(const struct pt_node *const *)a)->name, (*(const struct pt_node *const *)b)->name);
}

json_t *pt_store_nodes_json(const struct pt_store *s, const char *node_filter)
{
  json_t *arr = json_array();
  size_t n = 0;
  const struct pt_node **v = s->nodes.count ? malloc(s->nodes.count * sizeof(*v)) : NULL;
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e && v; e = pt_map_next(&s->nodes, e))
    if (!node_filter || strcmp(((struct pt_node *)e->value)->name, node_filter) == 0)
      v[n++] = e->value;
  if (n)
    qsort(v, n, sizeof(*v), cmp_node);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, pt_store_node_json(v[i], true));
  free(v);
  return arr;
}

const struct pt_store_counters *pt_store_counters(const struct pt_store *s)
{
  return &s->counters;
}

void pt_store_gauges(const struct pt_store *s, struct pt_store_gauges *g)
{
  memset(g, 0, sizeof(*g));
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e)) {
    const struct pt_pull *p = e->value;
    size_t *c[] = {&g->pulls_pulling, &g->pulls_stalled, &g->pulls_completed, &g->pulls_failed, &g->pulls_lost};
    (*c[p->state])++;
  }
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    const struct pt_node *n = e->value;
    size_t *c[] = {&g->nodes_ok, &g->nodes_lagging, &g->nodes_lost};
    (*c[n->state])++;
  }
  g->pods = s->pods.count;
  g->kube_events = json_array_size(s->events);
}

/* ------------------------------------------------------------------------ */
/* Kubernetes data                                                            */

static void correlate(struct pt_store *s, struct pt_pull *p, double now, bool emit_change)
{
  p->correlated_gen = s->kube_gen;
  if (!s->opts.policy || !s->pods.count)
    return;
  json_t *pods = json_array();
  for (struct pt_map_entry *e = pt_map_first(&s->pods); e; e = pt_map_next(&s->pods, e)) {
    const char *node = json_string_value(json_object_get(e->value, "node"));
    if (node && strcmp(node, p->node) == 0)
      json_array_append(pods, e->value);
  }
  if (!json_array_size(pods)) {
    json_decref(pods);
    return;
  }
  json_t *events = json_array();
  size_t i;
  json_t *ev;
  json_array_foreach(s->events, i, ev) {
    const char *node = json_string_value(json_object_get(ev, "node"));
    if (node && strcmp(node, p->node) == 0)
      json_array_append(events, ev);
  }
  json_t *pj = policy_pull_json(p);
  struct pt_policy_correlation c = {0};
  if (pt_policy_correlate(s->opts.policy, pj, pods, events, &c) == 0) {
    bool changed = c.n_targets != p->npods;
    for (size_t k = 0; k < c.n_targets && !changed && k < p->npods; k++)
      changed = !streq(c.targets[k].ns, p->pods[k].ns) || !streq(c.targets[k].pod, p->pods[k].name);
    if (changed) {
      free_pods(p->pods, p->npods);
      p->pods = c.n_targets ? calloc(c.n_targets, sizeof(*p->pods)) : NULL;
      p->npods = p->pods ? c.n_targets : 0;
      for (size_t k = 0; k < p->npods; k++) {
        p->pods[k].ns = xstrdup(c.targets[k].ns);
        p->pods[k].name = xstrdup(c.targets[k].pod);
        p->pods[k].container = xstrdup(c.targets[k].container);
      }
    }
    if (c.image_ref && set_str(&p->image, c.image_ref))
      changed = true;
    if (changed && emit_change) {
      p->updated_at = now;
      emit_pull(s, "pull.progress", p, false, now);
    }
  }
  pt_policy_correlation_clear(&c);
  json_decref(pj);
  json_decref(pods);
  json_decref(events);
}

int pt_store_pod_upsert(struct pt_store *s, const json_t *pod)
{
  const char *ns = json_string_value(json_object_get(pod, "namespace"));
  const char *name = json_string_value(json_object_get(pod, "name"));
  if (!ns || !name)
    return -EINVAL;
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, name);
  json_t *copy = json_deep_copy(pod);
  if (!copy)
    return -ENOMEM;
  json_t *old = pt_map_get(&s->pods, key);
  if (pt_map_put(&s->pods, key, copy)) {
    json_decref(copy);
    return -ENOMEM;
  }
  json_decref(old);
  s->kube_gen++;
  return 0;
}

int pt_store_pod_delete(struct pt_store *s, const char *ns, const char *name)
{
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, name);
  json_t *old = pt_map_del(&s->pods, key);
  if (!old)
    return -ENOENT;
  json_decref(old);
  s->kube_gen++;
  return 0;
}

/* The matching key "nginx:1.25" -> "docker.io/library/nginx", "reg:5000/a/b:v1"
 * -> "reg/a/b": the agent's imageRef has no port (containerd's label key drops
 * it) and no tag. */
static void normalize_image(const char *in, char *out, size_t outlen)
{
  if (pt_image_ref_key(in, out, outlen) != 0)
    snprintf(out, outlen, "%s", in);
}

static int failure_reason_index(const char *r)
{
  for (int i = 0; i < PT_STORE_FAIL_REASONS; i++)
    if (strcmp(r, pt_store_fail_reasons[i]) == 0)
      return i;
  return -1;
}

static bool failure_reason(const char *r)
{
  return failure_reason_index(r) >= 0;
}

/* kubelet's part of a finished pull: which pull a "Successfully pulled"
 * event confirms, its durations, and the failures it resolves. */
static void kubelet_pulled(struct pt_store *s, const json_t *event, const char *node, const char *image,
                           const struct pt_kube_msg *msg, double now)
{
  if (!image || !*image)
    return;
  json_t *lt = json_object_get(event, "lastTimestamp");
  double at = json_is_number(lt) && json_number_value(lt) > 0 ? json_number_value(lt) : now;
  double took = fmax(msg->duration, msg->waiting); /* < 0: not given */
  struct pt_pull *a = NULL, *k = NULL;
  const struct pull_list *l = node_pulls(s, node);
  for (size_t i = 0; i < l->n; i++) {
    struct pt_pull *p = l->v[i];
    if (!pull_is_image(p, image))
      continue;
    if (p->from_kubelet) {
      if (p->state == PT_PULL_FAILED)
        k = p;
      continue;
    }
    /* The agent pull kubelet just finished: one still in flight that started
     * within the pull's duration, or one that completed about when kubelet
     * said so. Older pulls of the image are other pulls. */
    bool fits = false;
    if (p->state == PT_PULL_COMPLETED)
      fits = fabs(p->completed_at - at) <= KUBELET_SLACK;
    else if (is_active(p))
      fits = p->started_at <= at + KUBELET_SLACK && (took < 0 || p->started_at >= at - took - KUBELET_SLACK);
    if (fits && (!a || p->started_at > a->started_at))
      a = p;
  }
  struct pt_pull *target = a ? a : k;
  if (!target)
    return;
  bool changed = false;
  if (target->kubelet_pulled_at <= 0) {
    target->kubelet_pulled_at = at;
    target->kubelet_duration = msg->duration;
    target->kubelet_waiting = msg->waiting;
    changed = true;
  }
  if (a) {
    changed |= supersede_kubelet_pulls(s, a, now);
    if (changed) {
      a->updated_at = now;
      emit_pull(s, "pull.progress", a, false, now);
    }
  } else {
    /* No agent saw the retry (no agent on the node, or it finished between
     * two polls and is not reported yet): kubelet's word completes the
     * failed kubelet-only pull, the failure becomes history. */
    set_str(&k->resolved_reason, k->error_reason);
    set_str(&k->resolved_message, k->error_message);
    k->resolved_failed_at = k->finished_at;
    k->resolved_at = now;
    free(k->error_reason);
    free(k->error_message);
    k->error_reason = k->error_message = NULL;
    k->state = PT_PULL_COMPLETED;
    k->completed_at = at;
    k->finished_at = now;
    k->updated_at = now;
    k->eta = -1;
    s->counters.pulls_completed++;
    PT_LOG_INFO("kubelet's retry succeeded: the failed kubelet pull is completed", "{s:s,s:s,s:s?}", "pull", k->id,
                "node", k->node, "reason", k->resolved_reason);
    emit_pull(s, "pull.completed", k, true, now);
    policy_emit(s, "pull.completed", k, now, -1);
  }
  struct pt_node *n = pt_map_get(&s->nodes, node);
  if (n)
    count_node_pulls(s, n);
}

int pt_store_kube_event(struct pt_store *s, const json_t *event, double now)
{
  const char *ns = json_string_value(json_object_get(event, "namespace"));
  const char *pod = json_string_value(json_object_get(event, "pod"));
  const char *reason = json_string_value(json_object_get(event, "reason"));
  const char *message = json_string_value(json_object_get(event, "message"));
  if (!ns || !pod || !reason)
    return -EINVAL;
  struct pt_kube_msg msg;
  pt_kube_message_parse(reason, message, &msg);
  /* "already present on machine" is not a pull, and it is the most frequent
   * image event of all (every container start): recording it would only push
   * the Pulling events that correlation needs out of the bounded list. */
  if (msg.kind == PT_KUBE_MSG_PRESENT)
    return 0;
  const char *node = json_string_value(json_object_get(event, "node"));
  json_t *copy = json_deep_copy(event);
  if (!copy)
    return -ENOMEM;
  if (!node) {
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", ns, pod);
    json_t *po = pt_map_get(&s->pods, key);
    node = po ? json_string_value(json_object_get(po, "node")) : NULL;
    if (node)
      json_object_set_new(copy, "node", json_string(node));
  }
  json_array_append_new(s->events, copy);
  while (json_array_size(s->events) > MAX_KUBE_EVENTS)
    json_array_remove(s->events, 0);
  s->kube_gen++;
  node = json_string_value(json_object_get(copy, "node"));
  if (!node || json_is_true(json_object_get(event, "historic")))
    return 0;
  if (msg.kind == PT_KUBE_MSG_PULLED) {
    const char *img = json_string_value(json_object_get(event, "image"));
    kubelet_pulled(s, event, node, img ? img : msg.image, &msg, now);
    return 0;
  }
  if (!failure_reason(reason))
    return 0;

  /* The image: an explicit member, or the quoted name in kubelet's message. */
  char image[1024] = "";
  const char *img = json_string_value(json_object_get(event, "image"));
  if (img) {
    snprintf(image, sizeof(image), "%s", img);
  } else if (message) {
    const char *q1 = strchr(message, '"');
    const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
    if (q2 && (size_t)(q2 - q1 - 1) < sizeof(image)) {
      memcpy(image, q1 + 1, (size_t)(q2 - q1 - 1));
      image[q2 - q1 - 1] = '\0';
    }
  }
  if (!*image)
    return 0;
  char norm[1024];
  normalize_image(image, norm, sizeof(norm));

  /* The pull of that image on the node: the same repository, and the same tag
   * when correlation named the pull's. A rollout to a tag that does not exist
   * must not fail the pull of another tag of the repository in flight beside
   * it (and then leave no failed pull of its own once that pull moves on). */
  struct pt_pull *match = NULL;
  const struct pull_list *l = node_pulls(s, node);
  for (size_t i = 0; i < l->n; i++) {
    struct pt_pull *p = l->v[i];
    if (!pull_is_image(p, image) || !(is_active(p) || p->state == PT_PULL_FAILED || p->state == PT_PULL_LOST))
      continue;
    if (!match || p->started_at > match->started_at)
      match = p;
  }
  bool created = false;
  if (!match) {
    /* One kubelet-only pull per node and reference (with its tag): failures
     * of two tags of a repository are two pulls. */
    char full[1024];
    if (pt_image_ref_normalize(image, full, sizeof(full)) != 0)
      snprintf(full, sizeof(full), "%s", norm);
    char id[1200];
    uint64_t h = pt_fnv1a_str(PT_FNV1A_INIT, full);
    snprintf(id, sizeof(id), "%s/kubelet-%016llx", node, (unsigned long long)h);
    match = pt_map_get(&s->pulls, id);
    if (!match) {
      match = calloc(1, sizeof(*match));
      if (!match)
        return -ENOMEM;
      match->id = strdup(id);
      match->node = strdup(node);
      match->image_ref = strdup(norm);
      match->image = strdup(image);
      match->from_kubelet = true;
      match->eta = -1;
      json_t *ft = json_object_get(event, "firstTimestamp");
      match->started_at = json_is_number(ft) ? json_number_value(ft) : now;
      if (add_pull(s, match))
        return -ENOMEM;
      match->pods = calloc(1, sizeof(*match->pods));
      if (match->pods) {
        match->pods[0].ns = strdup(ns);
        match->pods[0].name = strdup(pod);
        match->npods = 1;
      }
      match->correlated_gen = s->kube_gen;
      created = true;
      s->counters.pulls_started++;
      struct pt_node *n = pt_map_get(&s->nodes, node);
      if (n)
        n->pulls_total++;
    }
  }
  /* kubelet follows the failure that says why ("Failed to pull image ...: not
   * found") with generic ones ("Error: ErrImagePull", "Back-off pulling image
   * ..."); the reason moves on, the message keeps the cause. */
  const char *stored = message ? message : reason;
  if (match->state == PT_PULL_FAILED && match->error_message && generic_failure_message(stored) &&
      !generic_failure_message(match->error_message))
    stored = match->error_message;
  if (!created && match->state == PT_PULL_FAILED && streq(match->error_reason, reason) &&
      streq(match->error_message, stored))
    return 0;
  if (match->state == PT_PULL_COMPLETED && match->from_kubelet) {
    /* kubelet completed it once, and now the image fails again: a new
     * failure of the same kubelet-only pull. */
    json_t *ft = json_object_get(event, "firstTimestamp");
    match->started_at = json_is_number(ft) ? json_number_value(ft) : now;
    match->completed_at = 0;
    match->kubelet_pulled_at = 0;
  }
  bool was_failed = match->state == PT_PULL_FAILED;
  match->state = PT_PULL_FAILED;
  match->finished_at = now;
  match->updated_at = now;
  match->stalled_since = 0;
  match->eta = -1;
  match->bytes_per_sec = 0;
  set_str(&match->error_reason, reason);
  if (stored != match->error_message)
    set_str(&match->error_message, stored);
  if (!was_failed) {
    s->counters.pulls_failed++;
    s->counters.failed_by_reason[failure_reason_index(reason)]++;
  }
  if (created)
    emit_pull(s, "pull.started", match, true, now);
  emit_pull(s, "pull.failed", match, true, now);
  policy_emit(s, "pull.failed", match, now, -1);
  struct pt_node *n = pt_map_get(&s->nodes, node);
  if (n)
    count_node_pulls(s, n);
  return 0;
}
