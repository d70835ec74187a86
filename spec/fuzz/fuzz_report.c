/* libFuzzer: the report parser, and the store applying whatever it accepts,
 * with the store's invariants checked after every report and tick.
 *
 * The parser's own invariants: a body it accepts is a JSON document (jansson
 * reads it, with the same number of pulls) and every value holds what the
 * validation promises; a body it rejects gets an error and leaves nothing
 * allocated. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/report.h"
#include "store_check.h"

static bool printable(const char *s, size_t max)
{
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

static void check_accepted(const uint8_t *data, size_t size, const struct pt_report *r)
{
  json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!doc || !json_is_object(doc))
    fuzz_fail("the parser accepted what is not a JSON object");
  if (json_array_size(json_object_get(doc, "pulls")) != r->npulls)
    fuzz_fail("the parser's pulls are not the document's");
  json_decref(doc);
  if (!r->arena || !printable(r->node, 253) || !printable(r->boot_id, 128) || r->seq < 1 || r->timestamp <= 0 ||
      r->npulls > PT_REPORT_MAX_PULLS || r->nunattributed > PT_REPORT_MAX_UNATTRIBUTED)
    fuzz_fail("an accepted report breaks the report's rules");
  for (size_t i = 0; i < r->npulls; i++) {
    const struct pt_report_pull *p = &r->pulls[i];
    if (!printable(p->id, 256) || !pt_digest_valid(p->manifest_digest) || p->total < 0 || p->downloaded < 0 ||
        (p->total_known && p->downloaded > p->total) || p->nlayers > PT_REPORT_MAX_LAYERS)
      fuzz_fail("an accepted pull breaks the report's rules");
    for (size_t j = 0; j < i; j++)
      if (strcmp(r->pulls[j].id, p->id) == 0)
        fuzz_fail("an accepted report has a pull id twice");
    for (size_t k = 0; k < p->nlayers; k++) {
      const struct pt_report_layer *l = &p->layers[k];
      if (!pt_digest_valid(l->digest) || l->total < 0 || l->downloaded < 0 ||
          (l->total > 0 && l->downloaded > l->total) || (unsigned)l->state >= PT_LAYER_STATE_COUNT)
        fuzz_fail("an accepted layer breaks the report's rules");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static double now = 1800000000.0;
  struct pt_store *store = fuzz_store_get();
  struct pt_report r;
  char err[256], field[160];
  if (pt_report_parse((const char *)data, size, &r, err, sizeof(err), field, sizeof(field)) == 0) {
    check_accepted(data, size, &r);
    now += 0.5;
    enum pt_apply_result res = pt_store_apply_report(store, &r, now);
    if (res == PT_APPLY_APPLIED && !pt_store_node(store, r.node))
      fuzz_fail("an applied report left no node");
    pt_report_free(&r);
    fuzz_store_check();
    json_t *all = pt_store_pulls_json(store, NULL, now);
    json_decref(all);
    /* Now and then far ahead, so that nodes get lost and pulls evicted; the
     * tick in slices, as the server runs it. */
    double t = size % 7 == 0 ? now + 4000 : now;
    while (pt_store_tick_slice(store, t, 1 + size % 5))
      fuzz_store_check();
    pt_store_rollouts_publish(store, t);
    fuzz_store_check();
  } else if (!*err || r.arena || r.pulls) {
    fuzz_fail("a rejected report without an error, or with something left allocated");
  }
  return 0;
}
