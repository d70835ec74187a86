#include "server/typical.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/map.h"
#include "server/history.h"

struct entry {
  struct pt_typical *t;
  char *image;
  double p50;
  size_t pulls;
  bool known;                    /* an answer arrived */
  bool stale;                    /* a pull of the image finished since */
  double fetched_at, asked_at;   /* monotonic */
  struct pt_history_query *query; /* in flight, or NULL */
};

struct pt_typical {
  struct pt_history *h;
  struct pt_map images; /* image -> struct entry */
  size_t in_flight;
};

struct pt_typical *pt_typical_create(struct pt_history *h)
{
  struct pt_typical *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->h = h;
  pt_map_init(&t->images);
  return t;
}

static void entry_free(struct entry *e)
{
  if (!e)
    return;
  pt_history_query_cancel(e->query);
  free(e->image);
  free(e);
}

static void answered(void *ud, int status, json_t *body)
{
  struct entry *e = ud;
  e->query = NULL;
  e->t->in_flight--;
  if (status == 200) {
    const json_t *p50 = json_object_get(body, "p50");
    e->known = json_is_number(p50);
    e->p50 = json_number_value(p50);
    e->pulls = (size_t)json_integer_value(json_object_get(body, "pulls"));
  } else {
    /* Tried again after PT_TYPICAL_MIN_AGE; meanwhile the last figure stands. */
    PT_LOG_DEBUG("cannot read an image's usual pull time", "{s:s,s:O?}", "image", e->image, "answer", body);
  }
  json_decref(body);
}

/* Drops images nobody asked about for a refresh period (their pulls are
 * over), a batch at a time: the table must not change while it is walked. */
static void sweep(struct pt_typical *t, double now)
{
  char *keys[256];
  size_t n = 0;
  for (struct pt_map_entry *m = pt_map_first(&t->images); m && n < 256; m = pt_map_next(&t->images, m)) {
    const struct entry *e = m->value;
    if (!e->query && now - e->asked_at > PT_TYPICAL_REFRESH)
      keys[n++] = strdup(m->key);
  }
  for (size_t i = 0; i < n; i++) {
    if (keys[i])
      entry_free(pt_map_del(&t->images, keys[i]));
    free(keys[i]);
  }
}

static struct entry *entry_of(struct pt_typical *t, const char *image, double now)
{
  struct entry *e = pt_map_get(&t->images, image);
  if (e)
    return e;
  if (t->images.count >= PT_TYPICAL_MAX_IMAGES) {
    sweep(t, now);
    if (t->images.count >= PT_TYPICAL_MAX_IMAGES)
      return NULL;
  }
  e = calloc(1, sizeof(*e));
  if (!e || !(e->image = strdup(image)) || pt_map_put(&t->images, image, e)) {
    entry_free(e);
    return NULL;
  }
  e->t = t;
  e->stale = true;
  e->fetched_at = now - PT_TYPICAL_REFRESH; /* never: due at once */
  return e;
}

bool pt_typical_get(struct pt_typical *t, const char *image, double now, double *p50, size_t *pulls)
{
  if (!t || !image)
    return false;
  struct entry *e = entry_of(t, image, now);
  if (!e)
    return false;
  e->asked_at = now;
  double age = now - e->fetched_at;
  bool due = e->stale || age >= PT_TYPICAL_REFRESH;
  if (due && !e->query && age >= PT_TYPICAL_MIN_AGE && t->in_flight < PT_TYPICAL_IN_FLIGHT) {
    e->query = pt_history_typical(t->h, image, answered, e);
    if (e->query) {
      t->in_flight++;
      e->stale = false;
      e->fetched_at = now;
    }
  }
  *p50 = e->p50;
  *pulls = e->pulls;
  return e->known;
}

void pt_typical_changed(struct pt_typical *t, const char *image)
{
  struct entry *e = t && image ? pt_map_get(&t->images, image) : NULL;
  if (e)
    e->stale = true;
}

void pt_typical_destroy(struct pt_typical *t)
{
  if (!t)
    return;
  for (struct pt_map_entry *m = pt_map_first(&t->images); m; m = pt_map_next(&t->images, m))
    entry_free(m->value);
  pt_map_close(&t->images);
  free(t);
}
