/* Out of memory while the store applies a report: the report is rejected as
 * such (PT_APPLY_NOMEM, 503 at the API) and nothing of it is applied. Every
 * allocation of the store's code is made to fail in turn (the link wraps
 * malloc, calloc, realloc and strdup); whichever fails, the tables, the
 * counters and the change records are exactly as before the report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/report.h"
#include "server/store.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

static bool armed;
static long allocations, fail_at;

static bool fail_now(void)
{
  return armed && allocations++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
  return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
  return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
  return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
  return fail_now() ? NULL : __real_strdup(s);
}

static size_t changes;

static void on_change(void *ud, const struct pt_change *c)
{
  changes++;
}

static const char first[] =
  "{\"schemaVersion\":\"v1\",\"nodeName\":\"n1\",\"agentVersion\":\"0.1.0\",\"bootId\":\"b1\",\"seq\":1,"
  "\"timestamp\":\"2027-01-15T08:00:00Z\",\"unattributed\":[],\"pulls\":[{\"id\":\"p1\",\"imageRef\":"
  "\"127.0.0.1/demo/app\",\"manifestDigest\":\"sha256:aaaa\",\"indexDigest\":null,\"startedAt\":"
  "\"2027-01-15T08:00:00Z\",\"completedAt\":null,\"totalKnown\":true,\"totalBytes\":100,\"downloadedBytes\":10,"
  "\"layers\":[{\"digest\":\"sha256:1111\",\"mediaType\":\"m\",\"totalBytes\":100,\"downloadedBytes\":10,"
  "\"state\":\"downloading\",\"startedAt\":null,\"updatedAt\":null}]}]}";

/* p1 moves on and changes image; p2 is new; the agent restarted. */
static const char second[] =
  "{\"schemaVersion\":\"v1\",\"nodeName\":\"n1\",\"agentVersion\":\"0.2.0\",\"bootId\":\"b2\",\"seq\":1,"
  "\"timestamp\":\"2027-01-15T08:00:01Z\",\"unattributed\":[],\"pulls\":[{\"id\":\"p1\",\"imageRef\":"
  "\"127.0.0.1/demo/other\",\"manifestDigest\":\"sha256:bbbb\",\"indexDigest\":\"sha256:cccc\",\"startedAt\":"
  "\"2027-01-15T08:00:00Z\",\"completedAt\":null,\"totalKnown\":true,\"totalBytes\":200,\"downloadedBytes\":90,"
  "\"layers\":[{\"digest\":\"sha256:1111\",\"mediaType\":\"m\",\"totalBytes\":100,\"downloadedBytes\":80,"
  "\"state\":\"downloading\",\"startedAt\":null,\"updatedAt\":null},{\"digest\":\"sha256:2222\",\"mediaType\":"
  "\"m\",\"totalBytes\":100,\"downloadedBytes\":10,\"state\":\"downloading\",\"startedAt\":null,\"updatedAt\":null}]},"
  "{\"id\":\"p2\",\"imageRef\":\"127.0.0.1/demo/new\",\"manifestDigest\":\"sha256:dddd\",\"indexDigest\":null,"
  "\"startedAt\":\"2027-01-15T08:00:01Z\",\"completedAt\":null,\"totalKnown\":true,\"totalBytes\":50,"
  "\"downloadedBytes\":5,\"layers\":[{\"digest\":\"sha256:3333\",\"mediaType\":\"m\",\"totalBytes\":50,"
  "\"downloadedBytes\":5,\"state\":\"downloading\",\"startedAt\":null,\"updatedAt\":null}]}]}";

static enum pt_apply_result apply(struct pt_store *s, const char *body, double now, long fail)
{
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field)), 0);
  allocations = 0;
  fail_at = fail;
  armed = fail >= 0;
  enum pt_apply_result res = pt_store_apply_report(s, &r, now);
  armed = false;
  pt_report_free(&r);
  return res;
}

/* Everything a client can see of the store. */
static json_t *state(const struct pt_store *s)
{
  const struct pt_store_counters *c = pt_store_counters(s);
  return json_pack("{s:o,s:o,s:I,s:I,s:I,s:I}", "pulls", pt_store_pulls_json(s, NULL, 1800000002.0), "nodes",
                   pt_store_nodes_json(s, NULL), "started", (json_int_t)c->pulls_started, "bytes",
                   (json_int_t)c->bytes, "restarts", (json_int_t)c->node_restarts, "changes", (json_int_t)changes);
}

static void run(const char *body, bool with_first)
{
  struct pt_policy_options po = {0};
  char err[1024];
  struct pt_policy *policy = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(policy);
  struct pt_store_options o = {.policy = policy, .on_change = on_change};
  size_t rejected = 0;
  for (long n = 0;; n++) {
    struct pt_store *s = pt_store_create(&o);
    assert_non_null(s);
    if (with_first)
      assert_int_equal(apply(s, first, 1800000000.0, -1), PT_APPLY_APPLIED);
    json_t *before = state(s);
    enum pt_apply_result res = apply(s, body, 1800000001.0, n);
    bool failed = allocations > n;
    assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);
    if (res == PT_APPLY_NOMEM) {
      rejected++;
      json_t *after = state(s);
      if (!json_equal(before, after)) {
        char *b = json_dumps(before, JSON_INDENT(1)), *a = json_dumps(after, JSON_INDENT(1));
        fail_msg("allocation %ld failed and the report was partly applied:\nbefore %s\nafter %s", n, b, a);
      }
      json_decref(after);
    } else {
      assert_int_equal(res, PT_APPLY_APPLIED);
    }
    json_decref(before);
    pt_store_destroy(s);
    if (!failed)
      break; /* every allocation of the report has had its turn */
  }
  assert_true(rejected > 5);
  pt_policy_destroy(policy);
}

static void test_update_and_new_pull(void **state)
{
  run(second, true);
}

static void test_new_node(void **state)
{
  run(first, false);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_update_and_new_pull),
    cmocka_unit_test(test_new_node),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
