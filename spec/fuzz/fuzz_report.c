/* libFuzzer: the report parser, and the store applying whatever it accepts. */
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "server/report.h"
#include "server/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct pt_store *store;
  static double now = 1800000000.0;
  if (!store) {
    pt_log_setup("fuzz", PT_LOG_ERROR, PT_LOG_JSON);
    struct pt_store_options o = {0};
    store = pt_store_create(&o);
  }
  struct pt_report r;
  char err[256], field[160];
  if (pt_report_parse((const char *)data, size, &r, err, sizeof(err), field, sizeof(field)) == 0) {
    now += 0.5;
    pt_store_apply_report(store, &r, now);
    pt_report_free(&r);
    json_t *all = pt_store_pulls_json(store, NULL, now);
    json_decref(all);
    pt_store_tick(store, now);
  }
  return 0;
}
