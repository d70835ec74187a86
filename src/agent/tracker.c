#include "agent/tracker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/manifest.h"
#include "core/clock.h"
#include "core/log.h"

#define LAYER_LABEL "containerd.io/gc.ref.content.l."
#define MANIFEST_LABEL "containerd.io/gc.ref.content.m."
#define MAX_LAYER_LABELS 128   /* overlayfs cannot stack more layers than this */
#define MAX_INDEX_LABELS 64
#define MAX_MANIFEST_BYTES (4u << 20)
#define MAX_PENDING 256
#define MAX_FINISHED 256

void pt_tracker_init(struct pt_tracker *t, const struct pt_tracker_config *cfg)
{
  memset(t, 0, sizeof(*t));
  t->cfg = *cfg;
  if (t->cfg.max_pulls == 0)
    t->cfg.max_pulls = 256;
  if (t->cfg.forget_after <= 0)
    t->cfg.forget_after = 600;
}

static void pull_free(struct pt_tracked_pull *p)
{
  free(p->layers);
  free(p);
}

void pt_tracker_close(struct pt_tracker *t)
{
  while (t->pulls) {
    struct pt_tracked_pull *n = t->pulls->next;
    pull_free(t->pulls);
    t->pulls = n;
  }
  free(t->ingests);
  free(t->pending);
  free(t->finished);
  memset(t, 0, sizeof(*t));
}

struct pt_tracked_pull *pt_tracker_find(const struct pt_tracker *t, const char *manifest_digest)
{
  for (struct pt_tracked_pull *p = t->pulls; p; p = p->next)
    if (strcmp(p->manifest_digest, manifest_digest) == 0)
      return p;
  return NULL;
}

static const struct pt_ingest *find_ingest(const struct pt_tracker *t, const char *digest)
{
  for (size_t i = 0; i < t->n_ingests; i++)
    if (t->ingests[i].digest[0] && strcmp(t->ingests[i].digest, digest) == 0)
      return &t->ingests[i];
  return NULL;
}

/* Whether any pull in flight names the digest as a layer or its config. A
 * completed pull does not: a new ingest of one of its blobs means the image is
 * being pulled again (after it was removed), which is a new pull. */
static int attributed(const struct pt_tracker *t, const char *digest)
{
  for (struct pt_tracked_pull *p = t->pulls; p; p = p->next) {
    if (p->completed_at > 0 || p->dead)
      continue;
    if (strcmp(p->config_digest, digest) == 0 || strcmp(p->manifest_digest, digest) == 0 ||
        strcmp(p->index_digest, digest) == 0)
      return 1;
    for (size_t i = 0; i < p->n_layers; i++)
      if (strcmp(p->layers[i].digest, digest) == 0)
        return 1;
  }
  return 0;
}

static void make_id(char *out, size_t len, const char *manifest_digest, double created_at)
{
  const char *hex = strchr(manifest_digest, ':');
  hex = hex ? hex + 1 : manifest_digest;
  snprintf(out, len, "%.16s-%lld", hex, (long long)created_at);
}

static int was_finished(const struct pt_tracker *t, const char *id)
{
  for (size_t i = 0; i < t->n_finished; i++)
    if (strcmp(t->finished[i], id) == 0)
      return 1;
  return 0;
}

static void remember_finished(struct pt_tracker *t, const char *id)
{
  if (!t->finished) {
    t->finished = calloc(MAX_FINISHED, sizeof(*t->finished));
    if (!t->finished)
      return;
  }
  snprintf(t->finished[t->finished_pos], sizeof(t->finished[0]), "%s", id);
  t->finished_pos = (t->finished_pos + 1) % MAX_FINISHED;
  if (t->n_finished < MAX_FINISHED)
    t->n_finished++;
}

static struct pt_pending *pending_get(struct pt_tracker *t, const char *digest)
{
  for (size_t i = 0; i < t->n_pending; i++)
    if (strcmp(t->pending[i].digest, digest) == 0)
      return &t->pending[i];
  return NULL;
}

/* Schedules another attempt to attribute a digest, backing off up to 16 s so
 * an ingest without a manifest does not cost a List call every tick. */
static void pending_defer(struct pt_tracker *t, const char *digest, double now)
{
  struct pt_pending *p = pending_get(t, digest);
  if (!p) {
    if (t->n_pending >= MAX_PENDING)
      return;
    if (!t->pending) {
      t->pending = calloc(MAX_PENDING, sizeof(*t->pending));
      if (!t->pending)
        return;
    }
    p = &t->pending[t->n_pending++];
    snprintf(p->digest, sizeof(p->digest), "%s", digest);
    p->backoff = 1;
  } else {
    p->backoff = p->backoff * 2 > 16 ? 16 : p->backoff * 2;
  }
  p->next_try = now + p->backoff;
}

/* Forgets pending digests that are no longer ingesting. */
static void pending_prune(struct pt_tracker *t)
{
  size_t w = 0;
  for (size_t i = 0; i < t->n_pending; i++) {
    if (find_ingest(t, t->pending[i].digest) && !attributed(t, t->pending[i].digest))
      t->pending[w++] = t->pending[i];
  }
  t->n_pending = w;
}

/* Most recently created blob of a list. */
static const struct pt_blob *newest(const struct pt_blob *v, size_t n)
{
  const struct pt_blob *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (!best || v[i].created_at > best->created_at)
      best = &v[i];
  return best;
}

static int id_taken(const struct pt_tracker *t, const char *id)
{
  for (struct pt_tracked_pull *p = t->pulls; p; p = p->next)
    if (strcmp(p->id, id) == 0)
      return 1;
  return was_finished(t, id);
}

static int create_pull(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx,
                       const struct pt_blob *mf, double now)
{
  char id[64];
  double started = mf->created_at > 0 ? mf->created_at : now;
  make_id(id, sizeof(id), mf->digest, started);
  if (id_taken(t, id)) {
    /* The manifest outlived an earlier pull of the same image (removed, then
     * pulled again): this pull starts now, and what is present now is cached. */
    started = now;
    make_id(id, sizeof(id), mf->digest, started);
    if (id_taken(t, id))
      return -EALREADY;
  }
  if (t->n_pulls >= t->cfg.max_pulls) {
    PT_LOG_WARN("too many pulls tracked; ignoring a new one", "{s:s,s:I}", "manifest", mf->digest,
                "max", (json_int_t)t->cfg.max_pulls);
    return -ENOSPC;
  }
  char *data = NULL;
  size_t len = 0;
  int rc = ops->read(ctx, mf->digest, MAX_MANIFEST_BYTES, &data, &len);
  if (rc) {
    PT_LOG_DEBUG("cannot read manifest yet", "{s:s,s:i}", "manifest", mf->digest, "rc", rc);
    return rc;
  }
  struct pt_manifest m;
  char err[256];
  rc = pt_manifest_parse(data, len, &m, err, sizeof(err));
  free(data);
  if (rc) {
    PT_LOG_WARN("unreadable manifest", "{s:s,s:s}", "manifest", mf->digest, "error", err);
    return rc;
  }
  if (m.type != PT_MANIFEST_IMAGE) {
    pt_manifest_free(&m);
    return -EINVAL;
  }
  struct pt_tracked_pull *p = calloc(1, sizeof(*p));
  if (!p) {
    pt_manifest_free(&m);
    return -ENOMEM;
  }
  p->layers = calloc(m.n_items ? m.n_items : 1, sizeof(*p->layers));
  if (!p->layers) {
    free(p);
    pt_manifest_free(&m);
    return -ENOMEM;
  }
  snprintf(p->id, sizeof(p->id), "%s", id);
  snprintf(p->image_ref, sizeof(p->image_ref), "%s", mf->source);
  snprintf(p->manifest_digest, sizeof(p->manifest_digest), "%s", mf->digest);
  snprintf(p->config_digest, sizeof(p->config_digest), "%s", m.config.digest);
  p->started_at = started;
  p->last_activity = now;
  p->total_known = true;
  p->n_layers = m.n_items;
  for (size_t i = 0; i < m.n_items; i++) {
    snprintf(p->layers[i].digest, sizeof(p->layers[i].digest), "%s", m.items[i].digest);
    snprintf(p->layers[i].media_type, sizeof(p->layers[i].media_type), "%s",
             m.items[i].media_type);
    p->layers[i].total = m.items[i].size;
  }
  pt_manifest_free(&m);

  /* A multi-platform image reaches its manifest through an index, which
   * containerd labels with the manifests it names before fetching them. */
  struct pt_blob *idx = NULL;
  size_t nidx = 0;
  if (ops->find_referrers(ctx, MANIFEST_LABEL, MAX_INDEX_LABELS, p->manifest_digest, &idx,
                          &nidx) == 0) {
    const struct pt_blob *b = newest(idx, nidx);
    if (b) {
      snprintf(p->index_digest, sizeof(p->index_digest), "%s", b->digest);
      if (!p->image_ref[0])
        snprintf(p->image_ref, sizeof(p->image_ref), "%s", b->source);
    }
    free(idx);
  }
  p->next = t->pulls;
  t->pulls = p;
  t->n_pulls++;
  PT_LOG_INFO("pull started", "{s:s,s:s,s:s,s:I}", "id", p->id, "image", p->image_ref,
              "manifest", p->manifest_digest, "layers", (json_int_t)p->n_layers);
  return 0;
}

/* Finds the pull a layer ingest belongs to through the manifests that name it. */
static void attribute(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx,
                      const char *digest, double now)
{
  struct pt_pending *pend = pending_get(t, digest);
  if (pend && now < pend->next_try)
    return;
  struct pt_blob *refs = NULL;
  size_t n = 0;
  if (ops->find_referrers(ctx, LAYER_LABEL, MAX_LAYER_LABELS, digest, &refs, &n) != 0) {
    pending_defer(t, digest, now);
    return;
  }
  const struct pt_blob *mf = newest(refs, n);
  int rc = mf ? create_pull(t, ops, ctx, mf, now) : -ENOENT;
  free(refs);
  if (rc)
    pending_defer(t, digest, now);
}

/* Returns 1 when the layer's ingest went away without its blob appearing. */
static int update_layer(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx,
                        struct pt_tracked_pull *p, struct pt_tracked_layer *l, double now)
{
  const struct pt_ingest *in = find_ingest(t, l->digest);
  if (in) {
    l->downloaded = in->offset < 0 ? 0 : in->offset;
    if (l->total > 0 && l->downloaded > l->total)
      l->downloaded = l->total;
    l->started_at = in->started_at;
    l->updated_at = in->updated_at;
    /* containerd's updated_at only moves when bytes are written, so a frozen
     * value means the transfer is stuck (or the pull was interrupted). */
    l->state = now - in->updated_at > t->cfg.stall_threshold ? PT_LAYER_STALLED
                                                              : PT_LAYER_DOWNLOADING;
    p->last_activity = now;
    return 0;
  }
  if (l->state == PT_LAYER_DONE || l->state == PT_LAYER_CACHED)
    return 0; /* content is immutable: present stays present */
  struct pt_blob b;
  int rc = ops->info(ctx, l->digest, &b);
  if (rc == 0) {
    l->state = b.created_at < p->started_at ? PT_LAYER_CACHED : PT_LAYER_DONE;
    l->downloaded = l->total;
    if (b.created_at > l->updated_at && l->state == PT_LAYER_DONE)
      l->updated_at = b.created_at;
  } else if (rc == -ENOENT) {
    if (l->started_at > 0 && (l->state == PT_LAYER_DOWNLOADING || l->state == PT_LAYER_STALLED)) {
      /* The ingest went away without committing: the transfer broke (containerd
       * drops a failed pull's partial ingest) and nothing moves until kubelet
       * retries. That is a stall, shown with the bytes last seen. */
      l->state = now - l->updated_at > t->cfg.stall_threshold ? PT_LAYER_STALLED
                                                               : PT_LAYER_DOWNLOADING;
      return 1;
    }
    l->state = PT_LAYER_WAITING;
    l->downloaded = 0;
  }
  /* Other errors keep the previous state until the next tick. */
  return 0;
}

static void update_pull(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx,
                        struct pt_tracked_pull *p, double now)
{
  if (p->completed_at > 0)
    return;
  if (p->dead) {
    for (size_t i = 0; i < p->n_layers; i++) {
      struct pt_tracked_layer *l = &p->layers[i];
      if (l->state == PT_LAYER_DOWNLOADING && now - l->updated_at > t->cfg.stall_threshold)
        l->state = PT_LAYER_STALLED;
    }
    return;
  }
  int present = 0, vanished = 0;
  double last_commit = 0;
  for (size_t i = 0; i < p->n_layers; i++) {
    struct pt_tracked_layer *l = &p->layers[i];
    vanished += update_layer(t, ops, ctx, p, l, now);
    if (l->state == PT_LAYER_DONE || l->state == PT_LAYER_CACHED) {
      present++;
      if (l->state == PT_LAYER_DONE && l->updated_at > last_commit)
        last_commit = l->updated_at;
    }
  }
  if ((size_t)present == p->n_layers) {
    p->completed_at = last_commit > p->started_at && last_commit <= now ? last_commit : now;
    PT_LOG_INFO("pull completed", "{s:s,s:s,s:f}", "id", p->id, "image", p->image_ref,
                "seconds", p->completed_at - p->started_at);
    return;
  }
  if (vanished) {
    /* Blobs went away without being committed. If the manifest went too, its
     * content was garbage-collected: the pull failed (containerd drops a failed
     * pull's ingests and lease at once) or the image was removed between two
     * polls. Whatever comes next is another pull. */
    struct pt_blob b;
    if (ops->info(ctx, p->manifest_digest, &b) == -ENOENT) {
      p->dead = true;
      PT_LOG_WARN("pull interrupted: its content was garbage-collected before it finished",
                  "{s:s,s:s}", "id", p->id, "image", p->image_ref);
    }
  }
}

/* Drops interrupted pulls once a new pull of the same manifest has started. */
static void drop_superseded(struct pt_tracker *t)
{
  struct pt_tracked_pull **pp = &t->pulls;
  while (*pp) {
    struct pt_tracked_pull *p = *pp, *q = NULL;
    if (p->dead)
      for (q = t->pulls; q; q = q->next)
        if (q != p && !q->dead && strcmp(q->manifest_digest, p->manifest_digest) == 0)
          break;
    if (q) {
      remember_finished(t, p->id);
      *pp = p->next;
      pull_free(p);
      t->n_pulls--;
    } else {
      pp = &p->next;
    }
  }
}

static void expire_pulls(struct pt_tracker *t, double now)
{
  struct pt_tracked_pull **pp = &t->pulls;
  while (*pp) {
    struct pt_tracked_pull *p = *pp;
    int drop = 0;
    if (p->completed_at > 0 && now - p->completed_at > t->cfg.linger)
      drop = 1;
    else if (p->completed_at == 0 && now - p->last_activity > t->cfg.forget_after)
      drop = 2;
    if (drop) {
      if (drop == 2)
        PT_LOG_WARN("forgetting an unfinished pull without activity", "{s:s,s:s}", "id", p->id,
                    "image", p->image_ref);
      remember_finished(t, p->id);
      *pp = p->next;
      pull_free(p);
      t->n_pulls--;
    } else {
      pp = &p->next;
    }
  }
}

int pt_tracker_tick(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx, double now)
{
  struct pt_ingest *ingests = NULL;
  size_t n = 0;
  if (ops->list_ingests(ctx, &ingests, &n) != 0)
    return -EIO;
  free(t->ingests);
  t->ingests = ingests;
  t->n_ingests = n;

  for (size_t i = 0; i < n; i++) {
    const struct pt_ingest *in = &ingests[i];
    if (in->kind == PT_KIND_LAYER && !attributed(t, in->digest))
      attribute(t, ops, ctx, in->digest, now);
  }
  for (struct pt_tracked_pull *p = t->pulls; p; p = p->next)
    update_pull(t, ops, ctx, p, now);
  drop_superseded(t);
  expire_pulls(t, now);
  pending_prune(t);
  return 0;
}

static json_t *time_or_null(double t)
{
  char buf[40];
  return t > 0 ? json_string(pt_time_format(t, buf, sizeof(buf))) : json_null();
}

static json_t *str_or_null(const char *s)
{
  return s && *s ? json_string(s) : json_null();
}

json_t *pt_tracker_pulls_json(const struct pt_tracker *t)
{
  json_t *arr = json_array();
  for (const struct pt_tracked_pull *p = t->pulls; p; p = p->next) {
    json_t *layers = json_array();
    json_int_t total = 0, done = 0;
    for (size_t i = 0; i < p->n_layers; i++) {
      const struct pt_tracked_layer *l = &p->layers[i];
      total += l->total;
      done += l->downloaded;
      json_array_append_new(
          layers, json_pack("{s:s,s:s,s:I,s:I,s:s,s:o,s:o}", "digest", l->digest, "mediaType",
                            l->media_type, "totalBytes", (json_int_t)l->total, "downloadedBytes",
                            (json_int_t)l->downloaded, "state", pt_layer_state_name(l->state),
                            "startedAt", time_or_null(l->started_at), "updatedAt",
                            time_or_null(l->updated_at)));
    }
    json_array_append_new(
        arr, json_pack("{s:s,s:o,s:s,s:o,s:o,s:o,s:b,s:I,s:I,s:o}", "id", p->id, "imageRef",
                       str_or_null(p->image_ref), "manifestDigest", p->manifest_digest,
                       "indexDigest", str_or_null(p->index_digest), "startedAt",
                       time_or_null(p->started_at), "completedAt", time_or_null(p->completed_at),
                       "totalKnown", p->total_known, "totalBytes", total, "downloadedBytes", done,
                       "layers", layers));
  }
  return arr;
}

json_t *pt_tracker_unattributed_json(const struct pt_tracker *t)
{
  json_t *arr = json_array();
  for (size_t i = 0; i < t->n_ingests; i++) {
    const struct pt_ingest *in = &t->ingests[i];
    if (in->digest[0] && attributed(t, in->digest))
      continue;
    json_array_append_new(
        arr, json_pack("{s:s,s:s,s:o,s:I,s:I,s:o,s:o}", "ref", in->ref, "kind",
                       pt_ingest_kind_name(in->kind), "digest", str_or_null(in->digest),
                       "totalBytes", (json_int_t)(in->total < 0 ? 0 : in->total),
                       "downloadedBytes", (json_int_t)(in->offset < 0 ? 0 : in->offset),
                       "startedAt", time_or_null(in->started_at), "updatedAt",
                       time_or_null(in->updated_at)));
  }
  return arr;
}
