/* libFuzzer: the history's persisted form of a pull (store_record.c). Any
 * JSON either is refused or gives a pull that writes back to a record which
 * reads again into the same record (what the history writes, it reads); a
 * restored pull keeps the store's invariants, also through a tick far ahead
 * (eviction, lost nodes). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "store_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static double now = 1800000000.0;
  struct pt_store *store = fuzz_store_get();
  json_t *rec = json_loadb((const char *)data, size, 0, NULL);
  if (!rec)
    return 0;
  int err;
  struct pt_pull *p = pt_pull_from_record(rec, &err);
  if (!p) {
    if (err != -EINVAL && err != -ENOMEM)
      fuzz_fail("a refused record without -EINVAL or -ENOMEM");
    json_decref(rec);
    return 0;
  }
  json_t *once = pt_store_pull_record(p);
  struct pt_pull *q = once ? pt_pull_from_record(once, &err) : NULL;
  if (!q)
    fuzz_fail("a record the history wrote does not read back");
  json_t *twice = pt_store_pull_record(q);
  if (!json_equal(once, twice))
    fuzz_fail("a record changes when it is read and written again");
  json_decref(pt_store_pull_json(q, true, now));
  pt_pull_free(p);
  pt_pull_free(q);
  json_decref(twice);

  now += 1;
  int r = pt_store_restore_pull(store, once, now);
  if (r == 0 && pt_store_restore_pull(store, once, now) != -EEXIST)
    fuzz_fail("a pull was restored twice under one id");
  fuzz_store_check();
  pt_store_tick(store, size % 5 == 0 ? now + 100000 : now);
  fuzz_store_check();
  json_decref(once);
  json_decref(rec);
  return 0;
}
