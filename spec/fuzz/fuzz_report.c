/* libFuzzer: the report parser, and the store applying whatever it accepts,
 * with the store's invariants checked after every report and tick. */
#include <stddef.h>
#include <stdint.h>

#include "server/report.h"
#include "store_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static double now = 1800000000.0;
  struct pt_store *store = fuzz_store_get();
  struct pt_report r;
  char err[256], field[160];
  if (pt_report_parse((const char *)data, size, &r, err, sizeof(err), field, sizeof(field)) == 0) {
    now += 0.5;
    enum pt_apply_result res = pt_store_apply_report(store, &r, now);
    if (res == PT_APPLY_APPLIED && !pt_store_node(store, r.node))
      fuzz_fail("an applied report left no node");
    pt_report_free(&r);
    fuzz_store_check();
    json_t *all = pt_store_pulls_json(store, NULL, now);
    json_decref(all);
    /* Now and then far ahead, so that nodes get lost and pulls evicted. */
    pt_store_tick(store, size % 7 == 0 ? now + 4000 : now);
    fuzz_store_check();
  }
  return 0;
}
