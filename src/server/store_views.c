/* The JSON views of the tables (docs/api.md): a pull, its layers, a node, and
 * the filtered lists of the REST API and the stream's snapshot. The
 * serializer (event.c) writes events with the same views. */
#include "server/store.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "core/clock.h"
#include "core/json_writer.h"
#include "server/store_impl.h"

static double round2(double v)
{
  return round(v * 100.0) / 100.0;
}

static void key_str(struct pt_jsonw *w, const char *k, const char *v)
{
  pt_jsonw_key(w, k);
  pt_jsonw_string(w, v);
}

static void key_int(struct pt_jsonw *w, const char *k, int64_t v)
{
  pt_jsonw_key(w, k);
  pt_jsonw_int(w, v);
}

static void key_time(struct pt_jsonw *w, const char *k, double t)
{
  pt_jsonw_key(w, k);
  pt_jsonw_time(w, t);
}

static void key_real2(struct pt_jsonw *w, const char *k, double v)
{
  pt_jsonw_key(w, k);
  pt_jsonw_real2(w, v);
}

/* The members of a layer that a report can change. */
static void layer_progress_write(struct pt_jsonw *w, const struct pt_layer *l)
{
  key_str(w, "state", pt_layer_state_name(l->state));
  key_int(w, "totalBytes", l->total);
  key_int(w, "downloadedBytes", l->downloaded);
  pt_jsonw_key(w, "percent");
  if (l->total > 0)
    pt_jsonw_real2(w, 100.0 * (double)l->downloaded / (double)l->total);
  else if (l->state == PT_LAYER_DONE || l->state == PT_LAYER_CACHED)
    pt_jsonw_real(w, 100.0);
  else
    pt_jsonw_null(w);
  key_time(w, "startedAt", l->started_at);
  key_time(w, "updatedAt", l->updated_at);
}

void pt_store_layer_write(struct pt_jsonw *w, const struct pt_layer *l)
{
  pt_jsonw_object_open(w);
  char db[PT_DIGEST_TEXT_MAX];
  key_str(w, "digest", pt_layer_digest(l, db));
  key_str(w, "mediaType", l->media_type);
  layer_progress_write(w, l);
  pt_jsonw_object_close(w);
}

void pt_store_layer_changes_write(struct pt_jsonw *w, const struct pt_pull *p)
{
  pt_jsonw_array_open(w);
  for (size_t i = 0; i < p->nlayers; i++) {
    if (!p->layers[i].moved)
      continue;
    pt_jsonw_object_open(w);
    key_int(w, "index", (int64_t)i);
    layer_progress_write(w, &p->layers[i]);
    pt_jsonw_object_close(w);
  }
  pt_jsonw_array_close(w);
}

static size_t layers_done(const struct pt_pull *p)
{
  size_t n = 0;
  for (size_t i = 0; i < p->nlayers; i++)
    n += p->layers[i].state == PT_LAYER_DONE || p->layers[i].state == PT_LAYER_CACHED;
  return n;
}

void pt_store_pull_write(struct pt_jsonw *w, const struct pt_pull *p, bool with_layers, double now)
{
  pt_jsonw_object_open(w);
  key_str(w, "id", p->id);
  key_str(w, "node", p->node);
  key_str(w, "image", p->image ? p->image : p->image_ref);
  key_str(w, "manifestDigest", p->manifest_digest);
  key_str(w, "indexDigest", p->index_digest);
  key_str(w, "source", p->from_kubelet ? "kubelet" : "agent");
  key_str(w, "state", pt_pull_state_name(p->state));
  pt_jsonw_key(w, "error");
  if (p->error_reason) {
    pt_jsonw_object_open(w);
    key_str(w, "reason", p->error_reason);
    key_str(w, "message", p->error_message ? p->error_message : "");
    pt_jsonw_object_close(w);
  } else {
    pt_jsonw_null(w);
  }
  pt_jsonw_key(w, "resolvedError");
  if (p->resolved_reason) {
    pt_jsonw_object_open(w);
    key_str(w, "reason", p->resolved_reason);
    key_str(w, "message", p->resolved_message ? p->resolved_message : "");
    key_time(w, "failedAt", p->resolved_failed_at);
    key_time(w, "resolvedAt", p->resolved_at);
    pt_jsonw_object_close(w);
  } else {
    pt_jsonw_null(w);
  }
  pt_jsonw_key(w, "kubelet");
  if (p->kubelet_pulled_at > 0) {
    pt_jsonw_object_open(w);
    key_time(w, "pulledAt", p->kubelet_pulled_at);
    pt_jsonw_key(w, "durationSeconds");
    if (p->kubelet_duration >= 0)
      pt_jsonw_real(w, p->kubelet_duration);
    else
      pt_jsonw_null(w);
    pt_jsonw_key(w, "waitingSeconds");
    if (p->kubelet_waiting >= 0)
      pt_jsonw_real(w, p->kubelet_waiting);
    else
      pt_jsonw_null(w);
    pt_jsonw_object_close(w);
  } else {
    pt_jsonw_null(w);
  }
  key_time(w, "startedAt", p->started_at);
  key_time(w, "completedAt", p->completed_at);
  key_time(w, "updatedAt", p->updated_at);
  double end = p->completed_at > 0 ? p->completed_at
             : p->finished_at > 0 ? p->finished_at
             : p->lost_at > 0 ? p->lost_at : now;
  pt_jsonw_key(w, "durationSeconds");
  if (p->started_at > 0)
    pt_jsonw_real2(w, fmax(0, end - p->started_at));
  else
    pt_jsonw_null(w);
  pt_jsonw_key(w, "totalKnown");
  pt_jsonw_bool(w, p->total_known);
  key_int(w, "totalBytes", p->total);
  key_int(w, "downloadedBytes", p->downloaded);
  pt_jsonw_key(w, "percent");
  if (p->total_known && p->total > 0)
    pt_jsonw_real2(w, 100.0 * (double)p->downloaded / (double)p->total);
  else if (p->total_known && p->state == PT_PULL_COMPLETED)
    pt_jsonw_real(w, 100.0);
  else
    pt_jsonw_null(w);
  key_real2(w, "bytesPerSecond", p->bytes_per_sec);
  pt_jsonw_key(w, "etaSeconds");
  if (p->state == PT_PULL_COMPLETED)
    pt_jsonw_real(w, 0);
  else if (p->eta >= 0 && pull_is_active(p))
    pt_jsonw_real2(w, p->eta);
  else
    pt_jsonw_null(w);
  key_int(w, "layersTotal", (int64_t)p->nlayers);
  key_int(w, "layersDone", (int64_t)layers_done(p));
  pt_jsonw_key(w, "pods");
  pt_jsonw_array_open(w);
  for (size_t i = 0; i < p->npods; i++) {
    pt_jsonw_object_open(w);
    key_str(w, "namespace", p->pods[i].ns);
    key_str(w, "name", p->pods[i].name);
    if (p->pods[i].container)
      key_str(w, "container", p->pods[i].container);
    pt_jsonw_object_close(w);
  }
  pt_jsonw_array_close(w);
  if (with_layers) {
    pt_jsonw_key(w, "layers");
    pt_jsonw_array_open(w);
    for (size_t i = 0; i < p->nlayers; i++)
      pt_store_layer_write(w, &p->layers[i]);
    pt_jsonw_array_close(w);
  }
  pt_jsonw_object_close(w);
}

void pt_store_node_write(struct pt_jsonw *w, const struct pt_node *n, bool with_unattributed)
{
  pt_jsonw_object_open(w);
  key_str(w, "name", n->name);
  key_str(w, "state", pt_node_state_name(n->state));
  key_str(w, "agentVersion", n->agent_version);
  key_str(w, "bootId", n->boot_id);
  key_int(w, "seq", n->seq);
  key_int(w, "restarts", n->restarts);
  key_time(w, "firstReportAt", n->first_report);
  key_time(w, "lastReportAt", n->last_report);
  pt_jsonw_key(w, "reportIntervalSeconds");
  if (n->interval > 0)
    pt_jsonw_real(w, round2(n->interval));
  else
    pt_jsonw_null(w);
  key_int(w, "pullsActive", (int64_t)n->pulls_active);
  key_int(w, "pullsTotal", (int64_t)n->pulls_total);
  pt_jsonw_key(w, "containerd");
  pt_jsonw_object_open(w);
  pt_jsonw_key(w, "reachable");
  pt_jsonw_bool(w, !n->containerd_unreachable);
  key_time(w, "since", n->containerd_since);
  key_str(w, "error", n->containerd_error);
  pt_jsonw_object_close(w);
  if (with_unattributed) {
    pt_jsonw_key(w, "unattributed");
    char *u = n->unattributed ? json_dumps(n->unattributed, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (u)
      pt_jsonw_raw(w, u, strlen(u));
    else
      pt_jsonw_raw(w, "[]", 2);
    free(u);
  }
  pt_jsonw_object_close(w);
}

void pt_store_rollout_write(struct pt_jsonw *w, const struct pt_rollout_summary *r)
{
  pt_jsonw_object_open(w);
  key_str(w, "image", r->image);
  key_int(w, "nodes", (int64_t)r->nodes);
  key_int(w, "done", (int64_t)r->done);
  key_int(w, "pulling", (int64_t)r->pulling);
  key_int(w, "stalled", (int64_t)r->stalled);
  key_int(w, "failed", (int64_t)r->failed);
  key_int(w, "waiting", (int64_t)r->waiting);
  key_int(w, "totalBytes", r->bytes_total);
  key_int(w, "downloadedBytes", r->bytes_downloaded);
  key_real2(w, "bytesPerSecond", r->bytes_per_sec);
  pt_jsonw_key(w, "etaSeconds");
  if (r->eta >= 0)
    pt_jsonw_real2(w, r->eta);
  else
    pt_jsonw_null(w);
  key_time(w, "startedAt", r->started_at);
  key_time(w, "updatedAt", r->updated_at);
  pt_jsonw_object_close(w);
}

/* A written view parsed back into a jansson value, for the callers that
 * want one (tests, the fuzzer's checks): the same text the API sends. */
static json_t *parse_back(struct pt_buf *b)
{
  json_t *v = b->oom ? NULL : json_loadb(b->data, b->len, 0, NULL);
  pt_buf_close(b);
  return v;
}

json_t *pt_store_pull_json(const struct pt_pull *p, bool with_layers, double now)
{
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_store_pull_write(&w, p, with_layers, now);
  return parse_back(&b);
}

json_t *pt_store_node_json(const struct pt_node *n, bool with_unattributed)
{
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_store_node_write(&w, n, with_unattributed);
  return parse_back(&b);
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

/* A page of nodes is selected in one pass over the table: a heap keeps the `limit`
 * best items after the position (plus one, to know whether more follow),
 * then they are sorted. The work is linear in the table and the memory in
 * the page, so a page of a large table never holds the loop for long. */
struct heap {
  const void **v;
  size_t n, cap;
  int (*before)(const void *a, const void *b); /* a comes before b in the list */
};

/* The root is the item that comes last in the list order. */
static void heap_sift_down(struct heap *h, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->n && h->before(h->v[m], h->v[l]))
      m = l;
    if (r < h->n && h->before(h->v[m], h->v[r]))
      m = r;
    if (m == i)
      return;
    const void *t = h->v[i];
    h->v[i] = h->v[m];
    h->v[m] = t;
    i = m;
  }
}

static void heap_offer(struct heap *h, const void *item)
{
  if (h->n < h->cap) {
    size_t i = h->n++;
    h->v[i] = item;
    while (i > 0) {
      size_t parent = (i - 1) / 2;
      if (!h->before(h->v[parent], h->v[i]))
        break;
      const void *t = h->v[i];
      h->v[i] = h->v[parent];
      h->v[parent] = t;
      i = parent;
    }
  } else if (h->before(item, h->v[0])) {
    h->v[0] = item;
    heap_sift_down(h, 0);
  }
}

/* Sorts the heap in list order (heapsort: the last item goes to the end). */
static void heap_sort(struct heap *h)
{
  size_t n = h->n;
  while (h->n > 1) {
    const void *t = h->v[0];
    h->v[0] = h->v[h->n - 1];
    h->v[h->n - 1] = t;
    h->n--;
    heap_sift_down(h, 0);
  }
  h->n = n;
}

static int node_before(const void *a, const void *b)
{
  return strcmp(((const struct pt_node *)a)->name, ((const struct pt_node *)b)->name) < 0;
}

static int heap_init(struct heap *h, size_t limit, size_t table, int (*before)(const void *, const void *))
{
  h->n = 0;
  h->cap = limit && limit < table ? limit + 1 : table;
  h->before = before;
  h->v = h->cap ? malloc(h->cap * sizeof(*h->v)) : NULL;
  return h->cap && !h->v ? -ENOMEM : 0;
}

/* Keeps the first `limit` of the heap; returns whether there were more. */
static bool heap_cut(struct heap *h, size_t limit)
{
  heap_sort(h);
  if (!limit || h->n <= limit)
    return false;
  h->n = limit;
  return true;
}

/* The first pull after a position: the older neighbour of the pull there,
 * or, when that pull left the tables, the newest one older than it. */
static const struct pt_pull *cursor_next(const struct pt_store *s, const struct pt_pull_cursor *at)
{
  if (!at || !at->seq)
    return s->newest;
  const struct pt_pull *p = pt_map_get(&s->pulls, at->id);
  if (p && p->seq == at->seq)
    return p->older;
  for (p = s->newest; p && p->seq >= at->seq; p = p->older)
    ;
  return p;
}

int pt_store_pulls_items(const struct pt_store *s, struct pt_jsonw *w, const struct pt_pull_filter *f,
                         struct pt_pull_cursor *at, size_t limit, size_t max_visit, double now, bool *more)
{
  const struct pt_pull *p = cursor_next(s, at), *last = NULL;
  size_t n = 0, visited = 0;
  for (; p && (!limit || n < limit) && visited < max_visit; p = p->older, visited++) {
    last = p;
    if (pt_pull_matches(p, f)) {
      pt_store_pull_write(w, p, true, now);
      n++;
    }
  }
  *more = p != NULL;
  if (last) {
    at->seq = last->seq;
    snprintf(at->id, sizeof(at->id), "%s", last->id);
  }
  return (int)n;
}

int pt_store_pulls_write(const struct pt_store *s, struct pt_jsonw *w, const struct pt_pull_filter *f,
                         struct pt_pull_cursor *at, size_t limit, double now, bool *more)
{
  pt_jsonw_array_open(w);
  int n = pt_store_pulls_items(s, w, f, at, limit, SIZE_MAX, now, more);
  pt_jsonw_array_close(w);
  return n;
}

int pt_store_nodes_write(const struct pt_store *s, struct pt_jsonw *w, const char *node_filter, const char *after,
                         size_t limit, char **next)
{
  struct heap h;
  *next = NULL;
  if (heap_init(&h, limit, s->nodes.count, node_before))
    return -ENOMEM;
  for (struct pt_map_entry *e = pt_map_first(&s->nodes); e; e = pt_map_next(&s->nodes, e)) {
    const struct pt_node *n = e->value;
    if ((!node_filter || strcmp(n->name, node_filter) == 0) && (!after || strcmp(n->name, after) > 0))
      heap_offer(&h, n);
  }
  bool more = heap_cut(&h, limit);
  pt_jsonw_array_open(w);
  for (size_t i = 0; i < h.n; i++)
    pt_store_node_write(w, h.v[i], true);
  pt_jsonw_array_close(w);
  int n = (int)h.n;
  if (more && !(*next = strdup(((const struct pt_node *)h.v[h.n - 1])->name)))
    n = -ENOMEM;
  free(h.v);
  return n;
}

json_t *pt_store_pulls_json(const struct pt_store *s, const struct pt_pull_filter *f, double now)
{
  struct pt_buf b;
  struct pt_jsonw w;
  struct pt_pull_cursor at = {0};
  bool more;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_store_pulls_write(s, &w, f, &at, 0, now, &more);
  return parse_back(&b);
}

json_t *pt_store_nodes_json(const struct pt_store *s, const char *node_filter)
{
  struct pt_buf b;
  struct pt_jsonw w;
  char *next;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_store_nodes_write(s, &w, node_filter, NULL, 0, &next);
  return parse_back(&b);
}
