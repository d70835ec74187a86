/* String-keyed hash table (separate chaining, power-of-two buckets, grows at
 * load factor 1). Keys are copied (each into its entry); values are borrowed pointers. */
#ifndef PT_CORE_MAP_H
#define PT_CORE_MAP_H

#include <stddef.h>

struct pt_map_entry {
  char *key;
  void *value;
  size_t hash;
  struct pt_map_entry *next;
};

struct pt_map {
  struct pt_map_entry **buckets;
  size_t nbuckets;
  size_t count;
};

void pt_map_init(struct pt_map *m);
/* Frees the table and keys, not the values. */
void pt_map_close(struct pt_map *m);
void *pt_map_get(const struct pt_map *m, const char *key);
/* Inserts or replaces. Returns 0 or -ENOMEM. */
int pt_map_put(struct pt_map *m, const char *key, void *value);
/* Removes and returns the value, or NULL. */
void *pt_map_del(struct pt_map *m, const char *key);

/* Iteration: for (it = pt_map_first(m); it; it = pt_map_next(m, it)).
 * Do not delete during iteration; collect keys first. */
struct pt_map_entry *pt_map_first(const struct pt_map *m);
struct pt_map_entry *pt_map_next(const struct pt_map *m, const struct pt_map_entry *e);

#endif
