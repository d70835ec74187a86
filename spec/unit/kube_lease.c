/* Unit tests of the leader election (src/kube/lease.c) against a Lease store
 * played by the core HTTP server on the same loop, with the API server's
 * rules for a Lease (404 when missing, 409 AlreadyExists on a second create,
 * 409 Conflict for an update with a stale resourceVersion): create and
 * renew, release with an empty holder, follow a live holder and take over
 * once its record stopped changing, keep the lead through a conflict, and
 * destroy with a request in flight (the loop then closes cleanly). The
 * credentials come from a watcher made from a kubeconfig, never started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/http_server.h"
#include "core/kubeconfig.h"
#include "kube/lease.h"
#include "kube/watcher.h"

#define PATH "/apis/coordination.k8s.io/v1/namespaces/ns/leases"

struct fixture {
  uv_loop_t loop;
  struct pt_http_server *http;
  char dir[64], config_path[128];
  struct pt_kube *kube;
  struct pt_lease *lease;
  /* the store */
  json_t *stored;     /* the Lease, NULL = none */
  int rv;
  int interfere;      /* updates still to meet another client's write */
  int writes;         /* creates and updates applied */
  int writes_before;  /* writes when a test step began */
  char last_auth[64];
  /* what the callbacks saw */
  bool leader;
  int changes;
  char holder[64];
  bool released;
};

static void reply(struct pt_http_resp *resp, int status, json_t *body)
{
  resp->status = status;
  resp->content_type = "application/json";
  char *text = json_dumps(body, JSON_COMPACT);
  pt_buf_puts(&resp->body, text);
  free(text);
  json_decref(body);
}

static json_t *status_body(int code, const char *reason)
{
  return json_pack("{s:s,s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1", "status", "Failure", "reason", reason,
                   "code", code);
}

/* Applies a write: a new resourceVersion, the spec as sent. */
static void store(struct fixture *f, json_t *obj)
{
  char rv[16];
  snprintf(rv, sizeof(rv), "%d", ++f->rv);
  json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(rv));
  json_decref(f->stored);
  f->stored = json_incref(obj);
  f->writes++;
}

static void handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct fixture *f = ud;
  const char *auth = pt_http_req_header(req, "authorization");
  snprintf(f->last_auth, sizeof(f->last_auth), "%s", auth ? auth : "");
  bool one = strcmp(req->path, PATH "/l") == 0;
  if (strcmp(req->method, "GET") == 0 && one) {
    if (!f->stored)
      reply(resp, 404, status_body(404, "NotFound"));
    else
      reply(resp, 200, json_deep_copy(f->stored));
    return;
  }
  json_t *obj = json_loadb(req->body, req->body_len, 0, NULL);
  if (!json_is_object(obj)) {
    json_decref(obj);
    reply(resp, 400, status_body(400, "BadRequest"));
    return;
  }
  if (strcmp(req->method, "POST") == 0 && strcmp(req->path, PATH) == 0) {
    if (f->stored) {
      reply(resp, 409, status_body(409, "AlreadyExists"));
    } else {
      store(f, obj);
      reply(resp, 201, json_deep_copy(f->stored));
    }
  } else if (strcmp(req->method, "PUT") == 0 && one && f->stored) {
    if (f->interfere > 0) { /* another client's write lands first */
      f->interfere--;
      char rv[16];
      snprintf(rv, sizeof(rv), "%d", ++f->rv);
      json_object_set_new(json_object_get(f->stored, "metadata"), "resourceVersion", json_string(rv));
    }
    const char *sent = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    const char *cur = json_string_value(json_object_get(json_object_get(f->stored, "metadata"), "resourceVersion"));
    if (!sent || strcmp(sent, cur) != 0) {
      reply(resp, 409, status_body(409, "Conflict"));
    } else {
      store(f, obj);
      reply(resp, 200, json_deep_copy(f->stored));
    }
  } else {
    reply(resp, 404, status_body(404, "NotFound"));
  }
  json_decref(obj);
}

static void changed(void *ud, bool leader, const char *holder)
{
  struct fixture *f = ud;
  f->leader = leader;
  f->changes++;
  snprintf(f->holder, sizeof(f->holder), "%s", holder);
}

static void released(void *ud)
{
  ((struct fixture *)ud)->released = true;
}

static void setup(struct fixture *f)
{
  memset(f, 0, sizeof(*f));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->http = pt_http_server_create(&f->loop, NULL, handle, f);
  assert_non_null(f->http);
  assert_int_equal(pt_http_server_listen(f->http, "127.0.0.1", 0), 0);
  snprintf(f->dir, sizeof(f->dir), "/tmp/pt-kube-lease-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->config_path, sizeof(f->config_path), "%s/config", f->dir);
  FILE *out = fopen(f->config_path, "w");
  assert_non_null(out);
  fprintf(out,
          "current-context: t\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
          "contexts: [{name: t, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: s3cret}}]\n",
          pt_http_server_port(f->http));
  fclose(out);
  struct pt_kubeconfig cfg;
  char err[256];
  assert_int_equal(pt_kubeconfig_load(&cfg, f->config_path, NULL, err, sizeof(err)), 0);
  struct pt_kube_sink sink = {0};
  struct pt_kube_options kopts = {0};
  f->kube = pt_kube_create(&f->loop, &sink, &cfg, &kopts);
  assert_non_null(f->kube);
}

static struct pt_lease *new_lease(struct fixture *f, const char *identity)
{
  struct pt_lease_options o = {
    .name = "l", .namespace = "ns", .identity = identity, .duration = 1, .renew_deadline = 0.6,
    .retry_period = 0.1, .changed = changed, .ud = f};
  struct pt_lease *l = pt_lease_create(&f->loop, f->kube, &o);
  assert_non_null(l);
  return l;
}

static void teardown(struct fixture *f)
{
  pt_lease_destroy(f->lease);
  pt_kube_destroy(f->kube);
  pt_http_server_destroy(f->http);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  json_decref(f->stored);
  unlink(f->config_path);
  rmdir(f->dir);
}

static void run_until(struct fixture *f, bool (*done)(struct fixture *), const char *what)
{
  for (int i = 0; i < 100000 && !done(f); i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  if (!done(f))
    fail_msg("never happened: %s", what);
}

static const char *stored_holder(struct fixture *f)
{
  const char *h = json_string_value(json_object_get(json_object_get(f->stored, "spec"), "holderIdentity"));
  return h ? h : "";
}

static bool is_leader(struct fixture *f)
{
  return f->leader;
}

static bool renewed_twice(struct fixture *f)
{
  return f->writes >= 3;
}

static bool is_released(struct fixture *f)
{
  return f->released;
}

static void test_create_renew_release(void **state)
{
  struct fixture f;
  setup(&f);
  f.lease = new_lease(&f, "pod-a");
  pt_lease_start(f.lease);
  run_until(&f, is_leader, "leading");
  assert_string_equal(f.holder, "pod-a");
  assert_string_equal(stored_holder(&f), "pod-a");
  assert_string_equal(f.last_auth, "Bearer s3cret");
  json_t *spec = json_object_get(f.stored, "spec");
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 1);
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseTransitions")), 0);
  char acquired[64];
  snprintf(acquired, sizeof(acquired), "%s", json_string_value(json_object_get(spec, "acquireTime")));
  run_until(&f, renewed_twice, "renewals");
  /* Renewals keep acquireTime and move renewTime. */
  spec = json_object_get(f.stored, "spec");
  assert_string_equal(json_string_value(json_object_get(spec, "acquireTime")), acquired);
  assert_string_not_equal(json_string_value(json_object_get(spec, "renewTime")), acquired);
  struct pt_lease_stats st;
  pt_lease_stats(f.lease, &st);
  assert_true(st.leader);
  assert_int_equal(st.acquired, 1);
  assert_int_equal(st.errors, 0);

  pt_lease_release(f.lease, released, &f);
  assert_false(f.leader); /* stops leading at once */
  run_until(&f, is_released, "the release");
  assert_string_equal(stored_holder(&f), "");
  spec = json_object_get(f.stored, "spec");
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 1);
  teardown(&f);
}

static bool took_over(struct fixture *f)
{
  return f->leader && strcmp(stored_holder(f), "pod-b") == 0;
}

static bool following_a(struct fixture *f)
{
  return f->changes > 0 && !f->leader && strcmp(f->holder, "pod-a") == 0;
}

/* A holder whose record stops changing: followed, then taken over once it
 * has not changed for leaseDurationSeconds, with a transition counted. */
static void test_follow_then_take_over_an_expired_lease(void **state)
{
  struct fixture f;
  setup(&f);
  json_t *held = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:i,s:s,s:s,s:i}}", "apiVersion",
                           "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", "l", "namespace", "ns",
                           "spec", "holderIdentity", "pod-a", "leaseDurationSeconds", 1, "acquireTime",
                           "2026-01-01T00:00:00.000000Z", "renewTime", "2026-01-01T00:00:00.000000Z",
                           "leaseTransitions", 4);
  store(&f, held);
  json_decref(held);
  f.lease = new_lease(&f, "pod-b");
  pt_lease_start(f.lease);
  run_until(&f, following_a, "following pod-a");
  assert_string_equal(stored_holder(&f), "pod-a");
  run_until(&f, took_over, "the takeover");
  json_t *spec = json_object_get(f.stored, "spec");
  assert_int_equal(json_integer_value(json_object_get(spec, "leaseTransitions")), 5);
  teardown(&f);
}

static bool conflicted(struct fixture *f)
{
  struct pt_lease_stats st;
  pt_lease_stats(f->lease, &st);
  return st.conflicts == 2 && f->writes > f->writes_before;
}

/* Updates that meet another client's write get 409; the next round reads the
 * new resourceVersion and renews: the lead is kept. */
static void test_conflict_keeps_the_lead(void **state)
{
  struct fixture f;
  setup(&f);
  f.lease = new_lease(&f, "pod-a");
  pt_lease_start(f.lease);
  run_until(&f, is_leader, "leading");
  f.interfere = 2;
  f.writes_before = f.writes;
  run_until(&f, conflicted, "two conflicts, then a renewal");
  struct pt_lease_stats st;
  pt_lease_stats(f.lease, &st);
  assert_true(st.leader);
  assert_int_equal(st.lost, 0);
  assert_int_equal(f.changes, 1);
  teardown(&f);
}

/* Destroyed while its first read is in flight: nothing is called any more
 * and every handle closes. */
static void test_destroy_in_flight(void **state)
{
  struct fixture f;
  setup(&f);
  f.lease = new_lease(&f, "pod-a");
  pt_lease_start(f.lease);
  uv_run(&f.loop, UV_RUN_NOWAIT); /* the round starts: a GET in flight */
  pt_lease_destroy(f.lease);
  f.lease = NULL;
  teardown(&f);
  assert_int_equal(f.changes, 0);
}

static void test_options_are_checked(void **state)
{
  struct fixture f;
  setup(&f);
  struct pt_lease_options o = {
    .name = "l", .namespace = "ns", .identity = "a", .duration = 10, .renew_deadline = 10, .retry_period = 2};
  assert_null(pt_lease_create(&f.loop, f.kube, &o));
  o.renew_deadline = 5;
  o.retry_period = 5;
  assert_null(pt_lease_create(&f.loop, f.kube, &o));
  o.retry_period = 1;
  o.identity = "";
  assert_null(pt_lease_create(&f.loop, f.kube, &o));
  teardown(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_create_renew_release),
    cmocka_unit_test(test_follow_then_take_over_an_expired_lease),
    cmocka_unit_test(test_conflict_keeps_the_lead),
    cmocka_unit_test(test_destroy_in_flight),
    cmocka_unit_test(test_options_are_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
