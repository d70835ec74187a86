/* Rollouts: the pulls of one image across the nodes, summed up.
 *
 * When a DaemonSet or a big Deployment rolls an image out, thousands of nodes
 * pull it at once; a reader wants the rollout (how many nodes are done,
 * pulling, stalled, failed or waiting, the bytes, the ETA), not thousands of
 * progress events. Each image with a pull in the tables has a rollout: the
 * newest pull of that image on each node (a retry replaces the pull that
 * failed). Membership follows the pulls' change records; the figures are
 * summed when a summary is published (pt_store_rollouts_publish, at most
 * once per call for an image that changed since the last one), so a report
 * costs a flag, not a recount. */
#include "server/store.h"

#include <errno.h>
#include <stdint.h>

#include "core/json_writer.h"
#include "server/store_impl.h"

struct store_rollout {
  char *image;
  struct pt_map nodes;               /* node -> struct pt_pull (its newest pull of the image) */
  bool dirty;                        /* a member changed since the last summary */
  uint64_t pass;                     /* the publishing pass that summed it last */
  struct pt_rollout_summary last;    /* the last summary published (image borrowed) */
};

static void rollout_free(struct store_rollout *r)
{
  pt_map_close(&r->nodes);
  free(r->image);
  free(r);
}

void store_rollouts_close(struct pt_store *s)
{
  for (struct pt_map_entry *e = pt_map_first(&s->rollouts); e; e = pt_map_next(&s->rollouts, e))
    rollout_free(e->value);
  pt_map_close(&s->rollouts);
}

void store_rollout_untrack(struct pt_store *s, struct pt_pull *p)
{
  struct store_rollout *r = p->rollout;
  if (!r)
    return;
  p->rollout = NULL;
  if (pt_map_get(&r->nodes, p->node) == p)
    pt_map_del(&r->nodes, p->node);
  r->dirty = true;
  if (r->nodes.count == 0) {
    /* Every pull of the image left the tables: so does its rollout. */
    pt_map_del(&s->rollouts, r->image);
    rollout_free(r);
  }
}

void store_rollout_track(struct pt_store *s, struct pt_pull *p)
{
  const char *image = p->image ? p->image : p->image_ref;
  if (p->rollout && image && strcmp(p->rollout->image, image) == 0) {
    p->rollout->dirty = true;
    return;
  }
  store_rollout_untrack(s, p); /* its image changed (correlation gave it a tag) */
  if (!image)
    return;
  struct store_rollout *r = pt_map_get(&s->rollouts, image);
  if (!r) {
    /* Without memory the pull is only left out of the summaries. */
    if (!(r = calloc(1, sizeof(*r))) || !(r->image = strdup(image)) || pt_map_put(&s->rollouts, image, r)) {
      if (r)
        free(r->image);
      free(r);
      return;
    }
    pt_map_init(&r->nodes);
  }
  struct pt_pull *cur = pt_map_get(&r->nodes, p->node);
  if (cur && cur->seq > p->seq)
    return; /* an older pull of a node that pulls the image again */
  if (pt_map_put(&r->nodes, p->node, p) != 0) {
    if (r->nodes.count == 0) {
      pt_map_del(&s->rollouts, r->image);
      rollout_free(r);
    }
    return;
  }
  if (cur && cur != p)
    cur->rollout = NULL;
  p->rollout = r;
  r->dirty = true;
}

static void summarize(const struct store_rollout *r, struct pt_rollout_summary *out)
{
  memset(out, 0, sizeof(*out));
  out->image = r->image;
  out->eta = -1;
  for (struct pt_map_entry *e = pt_map_first(&r->nodes); e; e = pt_map_next(&r->nodes, e)) {
    const struct pt_pull *p = e->value;
    out->nodes++;
    switch (p->state) {
    case PT_PULL_COMPLETED:
      out->done++;
      break;
    case PT_PULL_FAILED:
    case PT_PULL_LOST:
      out->failed++;
      break;
    case PT_PULL_STALLED:
      out->stalled++;
      break;
    case PT_PULL_PULLING:
      if (p->downloaded > 0)
        out->pulling++;
      else
        out->waiting++;
      break;
    }
    if (p->total_known)
      out->bytes_total += p->total;
    out->bytes_downloaded += p->downloaded;
    if (pull_is_active(p)) {
      out->bytes_per_sec += p->bytes_per_sec;
      if (p->eta > out->eta)
        out->eta = p->eta;
    }
    if (p->started_at > 0 && (out->started_at <= 0 || p->started_at < out->started_at))
      out->started_at = p->started_at;
    if (p->updated_at > out->updated_at)
      out->updated_at = p->updated_at;
  }
}

bool pt_store_rollouts_publish_slice(struct pt_store *s, double now, size_t max_pulls)
{
  struct store_publish *pub = &s->publish;
  if (!pub->active) {
    pub->active = true;
    pub->pass++;
  }
  /* The walk starts over each slice: the rollouts of this pass are marked,
   * and rollouts may come and go between slices. */
  size_t summed = 0;
  for (struct pt_map_entry *e = pt_map_first(&s->rollouts); e; e = pt_map_next(&s->rollouts, e)) {
    struct store_rollout *r = e->value;
    if (!r->dirty || r->pass == pub->pass)
      continue;
    if (summed >= max_pulls)
      return true;
    r->dirty = false;
    r->pass = pub->pass;
    summed += r->nodes.count;
    summarize(r, &r->last);
    struct pt_change c = {.type = PT_CHANGE_ROLLOUT_SUMMARY, .time = now, .keys = {.image = r->image},
                          .rollout = &r->last};
    store_emit(s, &c);
  }
  pub->active = false;
  return false;
}

void pt_store_rollouts_publish(struct pt_store *s, double now)
{
  while (pt_store_rollouts_publish_slice(s, now, SIZE_MAX))
    ;
}

int pt_store_rollouts_write(const struct pt_store *s, struct pt_jsonw *w, const char *image_filter)
{
  int n = 0;
  pt_jsonw_array_open(w);
  for (struct pt_map_entry *e = pt_map_first(&s->rollouts); e; e = pt_map_next(&s->rollouts, e)) {
    const struct store_rollout *r = e->value;
    const struct pt_rollout_summary *sum = &r->last;
    if (!sum->image || (image_filter && !strstr(r->image, image_filter)))
      continue; /* never summarized yet: in the next summary */
    if (sum->pulling + sum->stalled + sum->waiting == 0)
      continue; /* only rollouts in flight */
    pt_store_rollout_write(w, sum);
    n++;
  }
  pt_jsonw_array_close(w);
  return n;
}
