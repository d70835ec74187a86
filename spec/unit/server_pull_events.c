/* Each pull's own past (server/pull_events.h): which changes make its story,
 * the shapes kept, and both memory bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/json_writer.h"
#include "server/pull_events.h"
#include "server/store.h"

#define T0 1800000000.0

static struct pt_pull mkpull(char *id)
{
  struct pt_pull p = {0};
  p.id = id;
  p.node = "node-a";
  p.image = "reg/app:v1";
  p.state = PT_PULL_PULLING;
  p.started_at = T0;
  p.updated_at = T0;
  p.eta = -1;
  return p;
}

static void record(struct pt_pull_events *pe, enum pt_change_type type, const struct pt_pull *p, uint64_t id)
{
  struct pt_change c = {.type = type, .time = T0 + (double)id, .pull = p, .layers = PT_LAYERS_ALL};
  c.keys.node = p->node;
  pt_pull_events_record(pe, &c, id);
}

/* The pull's events as written for GET /api/v1/pulls/{id}/events, or NULL. */
static json_t *events_of(const struct pt_pull_events *pe, const char *id, uint64_t *dropped)
{
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  json_t *v = pt_pull_events_write(pe, id, &w, dropped) ? json_loadb(b.data, b.len, 0, NULL) : NULL;
  pt_buf_close(&b);
  return v;
}

static const char *type_at(const json_t *events, size_t i)
{
  return json_string_value(json_object_get(json_array_get(events, i), "type"));
}

static void test_the_story_and_not_the_bytes(void **state)
{
  struct pt_pull_events *pe = pt_pull_events_create(1 << 20);
  char id[] = "node-a/p1";
  struct pt_pull p = mkpull(id);
  record(pe, PT_CHANGE_PULL_STARTED, &p, 10);
  p.downloaded = 100;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 11); /* bytes: no */
  record(pe, PT_CHANGE_NODE_UPDATED, &p, 12);  /* not the pull's */
  p.state = PT_PULL_STALLED;
  record(pe, PT_CHANGE_PULL_STALLED, &p, 13);
  p.state = PT_PULL_PULLING;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 14); /* stalled -> pulling: yes */
  struct pt_pod_ref pod = {.ns = "shop", .name = "api-1"};
  p.pods = &pod;
  p.npods = 1;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 15); /* its pods: yes */
  p.downloaded = 200;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 16); /* bytes: no */
  p.state = PT_PULL_COMPLETED;
  p.completed_at = T0 + 17;
  record(pe, PT_CHANGE_PULL_COMPLETED, &p, 17);
  p.kubelet_pulled_at = T0 + 18;
  p.kubelet_duration = 2.5;
  p.kubelet_waiting = 3;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 18); /* kubelet's Pulled: yes */
  json_t *labels = json_pack("{s:s}", "pull", id);
  struct pt_policy_alert alert = {.name = "PullSlow", .severity = "warning", .summary = "slow",
                                  .event_type = "pull.progress", .labels = labels};
  struct pt_change ac = {.type = PT_CHANGE_ALERT, .time = T0 + 19, .pull = &p, .alert = &alert};
  pt_pull_events_record(pe, &ac, 19);
  struct pt_change ev = {.type = PT_CHANGE_PULL_EVICTED, .time = T0 + 20, .pull = &p};
  pt_pull_events_record(pe, &ev, 20);

  uint64_t dropped = 99;
  json_t *events = events_of(pe, id, &dropped);
  assert_non_null(events);
  assert_int_equal(dropped, 0);
  const char *want[] = {"pull.started", "pull.stalled", "pull.progress", "pull.progress", "pull.completed",
                        "pull.progress", "alert", "pull.evicted"};
  const json_int_t ids[] = {10, 13, 14, 15, 17, 18, 19, 20};
  assert_int_equal(json_array_size(events), 8);
  for (size_t i = 0; i < 8; i++) {
    assert_string_equal(type_at(events, i), want[i]);
    const json_t *e = json_array_get(events, i);
    assert_int_equal(json_integer_value(json_object_get(e, "id")), ids[i]);
    /* The event stream's data: its envelope, the pull without layers. */
    const json_t *data = json_object_get(e, "data");
    assert_int_equal(json_integer_value(json_object_get(data, "v")), 1);
    assert_string_equal(json_string_value(json_object_get(data, "type")), want[i]);
    const json_t *pull = json_object_get(data, "pull");
    if (pull) {
      assert_string_equal(json_string_value(json_object_get(pull, "id")), id);
      assert_null(json_object_get(pull, "layers"));
    }
  }
  const json_t *alert_data = json_object_get(json_array_get(events, 6), "data");
  assert_string_equal(json_string_value(json_object_get(json_object_get(alert_data, "alert"), "name")), "PullSlow");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(events, 7), "data"), "pullId")),
                      id);
  json_decref(events);
  assert_int_equal(pt_pull_events_kept(pe, id, NULL), 8);
  assert_int_equal(pt_pull_events_kept(pe, "node-a/other", NULL), 0);
  assert_null(events_of(pe, "node-a/other", &dropped));
  json_decref(labels);
  pt_pull_events_destroy(pe);
}

static void test_progress_without_a_past_starts_one(void **state)
{
  /* A pull restored from the history has no events: its first progress
   * cannot tell what changed, its next ones can. */
  struct pt_pull_events *pe = pt_pull_events_create(1 << 20);
  char id[] = "node-a/p1";
  struct pt_pull p = mkpull(id);
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 1);
  assert_int_equal(pt_pull_events_kept(pe, id, NULL), 0);
  p.state = PT_PULL_STALLED;
  record(pe, PT_CHANGE_PULL_PROGRESS, &p, 2);
  assert_int_equal(pt_pull_events_kept(pe, id, NULL), 1);
  pt_pull_events_destroy(pe);
}

static void test_per_pull_bound(void **state)
{
  struct pt_pull_events *pe = pt_pull_events_create(64 << 20);
  char id[] = "node-a/flappy";
  struct pt_pull p = mkpull(id);
  record(pe, PT_CHANGE_PULL_STARTED, &p, 1);
  for (uint64_t i = 0; i < 100; i++) {
    p.state = i % 2 ? PT_PULL_PULLING : PT_PULL_STALLED;
    record(pe, i % 2 ? PT_CHANGE_PULL_PROGRESS : PT_CHANGE_PULL_STALLED, &p, 2 + i);
  }
  uint64_t dropped;
  json_t *events = events_of(pe, id, &dropped);
  assert_int_equal(json_array_size(events), PT_PULL_EVENTS_PER_PULL);
  assert_int_equal(dropped, 101 - PT_PULL_EVENTS_PER_PULL);
  /* The newest stay, in order. */
  assert_int_equal(json_integer_value(json_object_get(json_array_get(events, PT_PULL_EVENTS_PER_PULL - 1), "id")),
                   101);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(events, 0), "id")),
                   101 - PT_PULL_EVENTS_PER_PULL + 1);
  json_decref(events);
  pt_pull_events_destroy(pe);
}

static void test_memory_bound(void **state)
{
  /* Room for a few events: the oldest of all pulls go first, a pull whose
   * events all went is forgotten, and the bytes never pass the bound. */
  const size_t max = 4096;
  struct pt_pull_events *pe = pt_pull_events_create(max);
  char ids[200][32];
  struct pt_pull_events_stats st;
  for (int i = 0; i < 200; i++) {
    snprintf(ids[i], sizeof(ids[i]), "node-%03d/p1", i);
    struct pt_pull p = mkpull(ids[i]);
    record(pe, PT_CHANGE_PULL_STARTED, &p, (uint64_t)(2 * i + 1));
    p.state = PT_PULL_COMPLETED;
    record(pe, PT_CHANGE_PULL_COMPLETED, &p, (uint64_t)(2 * i + 2));
    pt_pull_events_stats(pe, &st);
    assert_true(st.bytes <= max);
  }
  assert_true(st.events > 2 && st.events < 20);
  assert_int_equal(st.dropped, 400 - st.events);
  assert_int_equal(pt_pull_events_kept(pe, ids[0], NULL), 0);
  assert_int_equal(pt_pull_events_kept(pe, ids[199], NULL), 2);
  /* Forgotten pulls leave no trace in memory (kept pulls are the ones with
   * events, plus none without). */
  assert_true(st.pulls <= st.events);
  uint64_t dropped;
  assert_null(events_of(pe, ids[0], &dropped));
  pt_pull_events_destroy(pe);

  /* 0 keeps nothing. */
  pe = pt_pull_events_create(0);
  struct pt_pull p = mkpull(ids[0]);
  record(pe, PT_CHANGE_PULL_STARTED, &p, 1);
  pt_pull_events_stats(pe, &st);
  assert_int_equal(st.events + st.pulls + st.bytes, 0);
  pt_pull_events_destroy(pe);
  pt_pull_events_destroy(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_the_story_and_not_the_bytes),
    cmocka_unit_test(test_progress_without_a_past_starts_one),
    cmocka_unit_test(test_per_pull_bound),
    cmocka_unit_test(test_memory_bound),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
