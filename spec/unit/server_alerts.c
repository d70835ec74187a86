/* The alerts' lifetime without a webhook: active while the pull that raised
 * them stays in that state, resolved when it changes state or leaves the
 * tables, and the policy told so (on_resolved). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <stdio.h>

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

/* A pull changes (state NULL: it leaves the tables); then this many alerts
 * are active and this many have resolved in all. */
static void change(struct pt_alerts *a, const char *pull, const char *state, double time, size_t active,
                   int resolved, const struct resolved *r)
{
  pt_alerts_pull_changed(a, pull, state, time);
  struct pt_alerts_stats st;
  pt_alerts_stats(a, &st);
  assert_int_equal(st.active, active);
  assert_int_equal(r->n, resolved);
}

/* Alerts without a webhook on a new loop, resolutions counted in r. */
static struct pt_alerts *alerts_new(uv_loop_t *loop, struct resolved *r)
{
  uv_loop_init(loop);
  struct pt_alerts_options o = {.on_resolved = on_resolved, .ud = r};
  struct pt_alerts *a = pt_alerts_create(loop, NULL, &o);
  assert_non_null(a);
  return a;
}

static void alerts_end(uv_loop_t *loop, struct pt_alerts *a)
{
  pt_alerts_destroy(a);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void test_lifetime_follows_the_pull(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct resolved r = {0};
  struct pt_alerts *a = alerts_new(&loop, &r);
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
  change(a, "n/p1", "stalled", 170, 2, 0, &r);
  change(a, "n/p3", NULL, 170, 2, 0, &r);

  /* The stall clears. */
  change(a, "n/p1", "pulling", 180, 1, 1, &r);
  pt_alerts_stats(a, &st);
  assert_int_equal(st.resolved, 1);
  assert_string_equal(r.last, "PullStalled/n/p1");

  /* The failed pull leaves the tables. */
  change(a, "n/p2", NULL, 190, 0, 2, &r);
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
  alerts_end(&loop, a);
}

/* Each pull's alerts are found through the pull (an index, not a walk over
 * every active alert): several alerts on one pull, an alert that moved to
 * another pull with its latest event, and many pulls each with its alert. */
static void test_alerts_indexed_by_pull(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct resolved r = {0};
  struct pt_alerts *a = alerts_new(&loop, &r);
  json_t *la = json_pack("{s:s}", "pull", "n/a"), *lb = json_pack("{s:s}", "pull", "n/b"),
         *lm = json_pack("{s:s}", "pull", "moving");
  struct pt_policy_alert stalled = alert("PullStalled", la), slow = alert("PullSlow", la),
                         failed = alert("PullFailed", lb), moving = alert("Moving", lm);
  pt_alerts_deliver(a, &stalled, "n/a", "stalled", NULL, 100);
  pt_alerts_deliver(a, &slow, "n/a", "pulling", NULL, 100);
  pt_alerts_deliver(a, &failed, "n/b", "failed", NULL, 100);
  /* Raised by n/a, then again by n/b's event: it follows n/b. */
  pt_alerts_deliver(a, &moving, "n/a", "stalled", NULL, 100);
  pt_alerts_deliver(a, &moving, "n/b", "failed", NULL, 110);
  change(a, "n/c", NULL, 100, 4, 0, &r); /* another pull: nothing */

  /* n/a moves again: its stall resolves, the alert raised while it was
   * pulling stays, the alert that moved to n/b stays. */
  change(a, "n/a", "pulling", 120, 3, 1, &r);
  assert_string_equal(r.last, "PullStalled/n/a");

  /* n/b leaves the tables: both of its alerts resolve; then n/a. */
  change(a, "n/b", NULL, 130, 1, 3, &r);
  change(a, "n/a", NULL, 140, 0, 4, &r);

  /* 5,000 failed pulls, one alert each; each pull leaving resolves its own
   * alert and no other. */
  enum { N = 5000 };
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "node-%d/p", i);
    json_t *l = json_pack("{s:s}", "pull", id);
    struct pt_policy_alert f = alert("PullFailed", l);
    pt_alerts_deliver(a, &f, id, "lost", NULL, 200);
    json_decref(l);
  }
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "node-%d/p", i);
    change(a, id, "lost", 210, (size_t)(N - i), 4 + i, &r); /* same state: stays */
    change(a, id, NULL, 210, (size_t)(N - 1 - i), 4 + i + 1, &r);
    char want[64];
    snprintf(want, sizeof(want), "PullFailed/%s", id);
    assert_string_equal(r.last, want);
  }

  json_decref(la);
  json_decref(lb);
  json_decref(lm);
  alerts_end(&loop, a);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lifetime_follows_the_pull),
    cmocka_unit_test(test_alerts_indexed_by_pull),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
