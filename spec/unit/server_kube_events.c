/* Kubernetes Events on pods without an API server: a writer that records
 * every request and answers it (at once, or later) stands in for
 * pt_kube_request. The shapes, the series of a repeat (PATCH), a repeat
 * while the first POST is in flight, the per-pod and overall bounds, the
 * leader check and a failed write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "server/kube_events.h"

struct call {
  char method[8], path[256];
  json_t *body;
  pt_httpc_done_cb done;
  void *ud;
};

struct fake {
  struct call calls[32];
  int n;
  long status;   /* answer at once with this; 0 = hold the answer */
};

static int fake_write(void *ud, const char *method, const char *path, const char *body, size_t len,
                      const char *content_type, pt_httpc_done_cb done, void *done_ud)
{
  struct fake *f = ud;
  assert_true(f->n < 32);
  struct call *c = &f->calls[f->n++];
  snprintf(c->method, sizeof(c->method), "%s", method);
  snprintf(c->path, sizeof(c->path), "%s", path);
  c->body = json_loadb(body, len, 0, NULL);
  assert_non_null(c->body);
  assert_string_equal(content_type, strcmp(method, "PATCH") == 0 ? "application/merge-patch+json"
                                                                  : "application/json");
  c->done = done;
  c->ud = done_ud;
  if (f->status) {
    struct pt_http_response r = {.status = f->status, .body = "{}", .body_len = 2};
    done(done_ud, &r);
  }
  return 0;
}

static void answer(struct call *c, long status)
{
  struct pt_http_response r = {.status = status, .body = "{}", .body_len = 2};
  c->done(c->ud, &r);
}

static void clear(struct fake *f)
{
  for (int i = 0; i < f->n; i++)
    json_decref(f->calls[i].body);
  f->n = 0;
}

static json_t *pods(const char *name)
{
  return json_pack("[{s:s,s:s,s:s}]", "namespace", "shop", "name", name, "uid", "u-1");
}

static uint64_t result(struct pt_kube_events *ke, enum pt_kube_event_result r)
{
  struct pt_kube_events_stats st;
  pt_kube_events_stats(ke, &st);
  return st.results[r];
}

static void test_create_then_series(void **state)
{
  (void)state;
  struct fake f = {.status = 201};
  struct pt_kube_events_options o = {.instance = "pulltrace-server-0"};
  struct pt_kube_events *ke = pt_kube_events_create(&o);
  json_t *web = pods("web-1");
  /* Without a writer nothing is written. */
  pt_kube_events_emit(ke, "PullStalled", "Warning", "layer x stalled", "Pulling", web, 1000.25);
  assert_int_equal(result(ke, PT_KEV_SKIPPED), 1);
  pt_kube_events_set_writer(ke, fake_write, &f);
  pt_kube_events_emit(ke, "PullStalled", "Warning", "layer x stalled", "Pulling", web, 1000.25);
  assert_int_equal(f.n, 1);
  assert_string_equal(f.calls[0].method, "POST");
  assert_string_equal(f.calls[0].path, "/apis/events.k8s.io/v1/namespaces/shop/events");
  json_t *b = f.calls[0].body;
  assert_string_equal(json_string_value(json_object_get(b, "apiVersion")), "events.k8s.io/v1");
  assert_string_equal(json_string_value(json_object_get(b, "kind")), "Event");
  const char *name = json_string_value(json_object_get(json_object_get(b, "metadata"), "name"));
  assert_true(strncmp(name, "web-1.", 6) == 0);
  assert_string_equal(json_string_value(json_object_get(b, "eventTime")), "1970-01-01T00:16:40.250000Z");
  assert_string_equal(json_string_value(json_object_get(b, "reportingController")), "pulltrace.io/server");
  assert_string_equal(json_string_value(json_object_get(b, "reportingInstance")), "pulltrace-server-0");
  assert_string_equal(json_string_value(json_object_get(b, "action")), "Pulling");
  assert_string_equal(json_string_value(json_object_get(b, "reason")), "PullStalled");
  assert_string_equal(json_string_value(json_object_get(b, "type")), "Warning");
  assert_string_equal(json_string_value(json_object_get(b, "note")), "layer x stalled");
  json_t *reg = json_object_get(b, "regarding");
  assert_string_equal(json_string_value(json_object_get(reg, "kind")), "Pod");
  assert_string_equal(json_string_value(json_object_get(reg, "uid")), "u-1");
  assert_int_equal(result(ke, PT_KEV_CREATED), 1);

  /* The same reason on the same pod again: the first Event's series. */
  pt_kube_events_emit(ke, "PullStalled", "Warning", "another note", "Pulling", web, 1100);
  assert_int_equal(f.n, 2);
  assert_string_equal(f.calls[1].method, "PATCH");
  char path[512];
  snprintf(path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/shop/events/%s", name);
  assert_string_equal(f.calls[1].path, path);
  json_t *series = json_object_get(f.calls[1].body, "series");
  assert_int_equal(json_integer_value(json_object_get(series, "count")), 2);
  assert_string_equal(json_string_value(json_object_get(series, "lastObservedTime")), "1970-01-01T00:18:20.000000Z");
  assert_int_equal(json_object_size(f.calls[1].body), 1);
  assert_int_equal(result(ke, PT_KEV_PATCHED), 1);

  /* Another reason is another Event; so is the same one past the window. */
  pt_kube_events_emit(ke, "PullResumed", "Normal", "moves", "Pulling", web, 1101);
  assert_string_equal(f.calls[2].method, "POST");
  pt_kube_events_emit(ke, "PullStalled", "Warning", "later", "Pulling", web, 1100 + 1801);
  assert_string_equal(f.calls[3].method, "POST");
  assert_int_equal(result(ke, PT_KEV_CREATED), 3);

  /* A PATCH answered 404 (the Event expired) forgets the series. */
  f.status = 404;
  pt_kube_events_emit(ke, "PullStalled", "Warning", "later", "Pulling", web, 2950);
  assert_string_equal(f.calls[4].method, "PATCH");
  assert_int_equal(result(ke, PT_KEV_FAILED), 1);
  f.status = 201;
  pt_kube_events_emit(ke, "PullStalled", "Warning", "again", "Pulling", web, 2960);
  assert_string_equal(f.calls[5].method, "POST");

  /* A note over the API's 1 kB limit (a script's) is cut on a character
   * boundary, not refused: 1,023 ASCII bytes and a 2-byte character. */
  char longnote[1100];
  memset(longnote, 'x', 1023);
  snprintf(longnote + 1023, sizeof(longnote) - 1023, "\xc3\xa9 and more");
  json_t *api = pods("api-1");
  pt_kube_events_emit(ke, "PullStalled", "Warning", longnote, "Pulling", api, 2970);
  assert_string_equal(f.calls[6].method, "POST");
  const char *cut = json_string_value(json_object_get(f.calls[6].body, "note"));
  assert_int_equal(strlen(cut), 1023);
  assert_int_equal(strncmp(cut, longnote, 1023), 0);
  json_decref(api);
  clear(&f);
  json_decref(web);
  pt_kube_events_destroy(ke);
}

static void test_repeat_while_creating(void **state)
{
  (void)state;
  struct fake f = {.status = 0};
  struct pt_kube_events_options o = {0};
  struct pt_kube_events *ke = pt_kube_events_create(&o);
  pt_kube_events_set_writer(ke, fake_write, &f);
  json_t *web = pods("web-2");
  pt_kube_events_emit(ke, "PullStalled", "Warning", "n", "Pulling", web, 100);
  pt_kube_events_emit(ke, "PullStalled", "Warning", "n", "Pulling", web, 110);
  pt_kube_events_emit(ke, "PullStalled", "Warning", "n", "Pulling", web, 120);
  assert_int_equal(f.n, 1); /* the POST is still in flight */
  answer(&f.calls[0], 201);
  assert_int_equal(f.n, 2);
  assert_string_equal(f.calls[1].method, "PATCH");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(f.calls[1].body, "series"), "count")), 3);
  /* Destroyed with the PATCH in flight: freed once it ends. */
  pt_kube_events_destroy(ke);
  answer(&f.calls[1], 200);
  clear(&f);
  json_decref(web);
}

static bool follower(void *ud)
{
  return *(bool *)ud;
}

static void test_bounds_and_leader(void **state)
{
  (void)state;
  struct fake f = {.status = 201};
  struct pt_kube_events_options o = {.per_minute = 4, .per_pod_per_minute = 2};
  struct pt_kube_events *ke = pt_kube_events_create(&o);
  pt_kube_events_set_writer(ke, fake_write, &f);
  json_t *a = pods("a"), *b = pods("b"), *c = pods("c");
  const char *reasons[] = {"R1", "R2", "R3"};
  for (int i = 0; i < 3; i++)
    pt_kube_events_emit(ke, reasons[i], "Normal", "n", "Pulling", a, 10);
  assert_int_equal(f.n, 2); /* two per pod per minute */
  assert_int_equal(result(ke, PT_KEV_THROTTLED), 1);
  pt_kube_events_emit(ke, "R1", "Normal", "n", "Pulling", b, 10);
  pt_kube_events_emit(ke, "R2", "Normal", "n", "Pulling", b, 10);
  pt_kube_events_emit(ke, "R1", "Normal", "n", "Pulling", c, 10);
  assert_int_equal(f.n, 4); /* four in all per minute */
  assert_int_equal(result(ke, PT_KEV_THROTTLED), 2);
  /* A minute later the buckets are full again. */
  pt_kube_events_emit(ke, "R3", "Normal", "n", "Pulling", a, 70);
  assert_int_equal(f.n, 5);
  /* Not the leader: skipped. */
  bool leader = false;
  pt_kube_events_set_leader(ke, follower, &leader);
  pt_kube_events_emit(ke, "R1", "Normal", "n", "Pulling", c, 200);
  assert_int_equal(f.n, 5);
  assert_int_equal(result(ke, PT_KEV_SKIPPED), 1);
  leader = true;
  pt_kube_events_emit(ke, "R1", "Normal", "n", "Pulling", c, 200);
  assert_int_equal(f.n, 6);
  clear(&f);
  json_decref(a);
  json_decref(b);
  json_decref(c);
  pt_kube_events_destroy(ke);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_create_then_series),
    cmocka_unit_test(test_repeat_while_creating),
    cmocka_unit_test(test_bounds_and_leader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
