/* The JSON views of the tables (docs/api.md): a pull, its layers, a node, and
 * the filtered lists of the REST API and the stream's snapshot. The
 * serializer (event.c) writes events with the same views. */
#include "server/store.h"

#include <math.h>
#include <stdio.h>

#include "core/clock.h"
#include "server/store_impl.h"

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
  else if (p->eta >= 0 && pull_is_active(p))
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
