/* The alerts' lifetime without a webhook: active while the pull that raised
 * them stays in that state, resolved when it changes state or leaves the
 * tables, and the policy told so (on_resolved). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "server/alerts.h"

struct resolved {
  int n;
  char last[64];
};

static void on_resolved(void *ud, const char *name, const json_t *labels, const json_t *context, double time)
{
  (void)context;
  (void)time;
  struct resolved *r = ud;
  r->n++;
  snprintf(r->last, sizeof(r->last), "%s/%s", name, json_string_value(json_object_get(labels, "pull")));
}

static struct pt_policy_alert alert(const char *name, json_t *labels)
{
  return (struct pt_policy_alert){name, "warning", "summary", labels, "pull.stalled", "alerts.lua", NULL};
}

static void test_lifetime_follows_the_pull(void **state)
{
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct resolved r = {0};
  struct pt_alerts_options o = {.on_resolved = on_resolved, .ud = &r};
  struct pt_alerts *a = pt_alerts_create(&loop, NULL, &o);
  assert_non_null(a);
  json_t *l1 = json_pack("{s:s}", "pull", "n/p1"), *l2 = json_pack("{s:s}", "pull", "n/p2");
  struct pt_policy_alert s1 = alert("PullStalled", l1), f2 = alert("PullFailed", l2);
  pt_alerts_deliver(a, &s1, "n/p1", "stalled", NULL, 100);
  pt_alerts_deliver(a, &f2, "n/p2", "failed", NULL, 100);
  /* Raised again while active: still one. */
  pt_alerts_deliver(a, &s1, "n/p1", "stalled", NULL, 160);
  struct pt_alerts_stats st;
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, 2);
  assert_int_equal(st.by_severity[1], 3);

  /* Changes that keep the state, and changes of other pulls, resolve nothing. */
  pt_alerts_pull_changed(a, "n/p1", "stalled", 170);
  pt_alerts_pull_changed(a, "n/p3", NULL, 170);
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, 2);
  assert_int_equal(r.n, 0);

  /* The stall clears. */
  pt_alerts_pull_changed(a, "n/p1", "pulling", 180);
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, 1);
  assert_int_equal(st.resolved, 1);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.last, "PullStalled/n/p1");

  /* The failed pull leaves the tables. */
  pt_alerts_pull_changed(a, "n/p2", NULL, 190);
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, 0);
  assert_int_equal(r.n, 2);
  assert_string_equal(r.last, "PullFailed/n/p2");

  /* The same alert raised again is active again; an alert no pull raised is
   * not tracked. */
  pt_alerts_deliver(a, &s1, "n/p1", "stalled", NULL, 200);
  struct pt_policy_alert loose = alert("Loose", l2);
  pt_alerts_deliver(a, &loose, NULL, NULL, NULL, 200);
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, 1);

  json_decref(l1);
  json_decref(l2);
  pt_alerts_destroy(a);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lifetime_follows_the_pull),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
