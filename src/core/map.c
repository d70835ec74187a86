#include "core/map.h"

#include "core/hash.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_str(const char *s)
{
  return (size_t)pt_fnv1a_str(PT_FNV1A_INIT, s);
}

void pt_map_init(struct pt_map *m)
{
  memset(m, 0, sizeof(*m));
}

void pt_map_close(struct pt_map *m)
{
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct pt_map_entry *e = m->buckets[i];
    while (e) {
      struct pt_map_entry *n = e->next;
      free(e);
      e = n;
    }
  }
  free(m->buckets);
  pt_map_init(m);
}

static struct pt_map_entry *find(const struct pt_map *m, const char *key, size_t h)
{
  if (!m->nbuckets)
    return NULL;
  for (struct pt_map_entry *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && strcmp(e->key, key) == 0)
      return e;
  return NULL;
}

void *pt_map_get(const struct pt_map *m, const char *key)
{
  struct pt_map_entry *e = find(m, key, hash_str(key));
  return e ? e->value : NULL;
}

static int grow(struct pt_map *m)
{
  size_t nb = m->nbuckets ? m->nbuckets * 2 : 16;
  struct pt_map_entry **b = calloc(nb, sizeof(*b));
  if (!b)
    return -ENOMEM;
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct pt_map_entry *e = m->buckets[i];
    while (e) {
      struct pt_map_entry *n = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = n;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
  return 0;
}

int pt_map_put(struct pt_map *m, const char *key, void *value)
{
  size_t h = hash_str(key);
  struct pt_map_entry *e = find(m, key, h);
  if (e) {
    e->value = value;
    return 0;
  }
  if (m->count >= m->nbuckets && grow(m))
    return -ENOMEM;
  /* The key is stored right after its entry: a lookup reads one block,
   * not two (the tables of pulls and their logs are read on every report). */
  size_t klen = strlen(key) + 1;
  e = malloc(sizeof(*e) + klen);
  if (!e)
    return -ENOMEM;
  e->key = memcpy(e + 1, key, klen);
  e->value = value;
  e->hash = h;
  e->next = m->buckets[h & (m->nbuckets - 1)];
  m->buckets[h & (m->nbuckets - 1)] = e;
  m->count++;
  return 0;
}

void *pt_map_del(struct pt_map *m, const char *key)
{
  if (!m->nbuckets)
    return NULL;
  size_t h = hash_str(key);
  struct pt_map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    struct pt_map_entry *e = *pp;
    if (e->hash == h && strcmp(e->key, key) == 0) {
      void *v = e->value;
      *pp = e->next;
      free(e);
      m->count--;
      return v;
    }
  }
  return NULL;
}

struct pt_map_entry *pt_map_first(const struct pt_map *m)
{
  for (size_t i = 0; i < m->nbuckets; i++)
    if (m->buckets[i])
      return m->buckets[i];
  return NULL;
}

struct pt_map_entry *pt_map_next(const struct pt_map *m, const struct pt_map_entry *e)
{
  if (e->next)
    return e->next;
  for (size_t i = (e->hash & (m->nbuckets - 1)) + 1; i < m->nbuckets; i++)
    if (m->buckets[i])
      return m->buckets[i];
  return NULL;
}
