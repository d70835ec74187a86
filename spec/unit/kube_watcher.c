/* Unit tests of the Kubernetes watcher against an API server played by the
 * core HTTP server on the same loop: lists (parsed on the thread pool) and
 * watches reach the sink, readiness follows the first lists, a body that is
 * not a list is an error that is retried, the token file is re-read when it
 * rotates, and destroying the watcher with work in flight frees everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/http_server.h"
#include "core/kubeconfig.h"
#include "kube/watcher.h"

#define NPODS 3000 /* the first list is one page of a few hundred KiB */

struct fake_api {
  uv_loop_t loop;
  struct pt_http_server *http;
  char dir[64], token_path[128], config_path[128];
  /* what the API server answers */
  int bad_lists_left;        /* pod lists answered with a body that is not a list */
  struct pt_http_conn *pod_watch;
  /* what it saw */
  int pod_lists, event_lists, watches;
  char last_auth[128];
  bool saw_rotated;
  /* what the sink got */
  int upserts, deletes, events, historic;
  bool ready, ready_seen_false;
  char last_pod[64];
  struct pt_kube *kube;
};

static void answer_list(struct fake_api *api, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  if (strncmp(req->path, "/api/v1/pods", 12) == 0) {
    api->pod_lists++;
    if (api->bad_lists_left > 0) {
      api->bad_lists_left--;
      pt_buf_puts(&resp->body, "{\"kind\":\"Status\",\"items\":\"not a list\"}");
      return;
    }
    pt_buf_puts(&resp->body, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"100\"},\"items\":[");
    for (int i = 0; i < NPODS; i++)
      pt_buf_printf(&resp->body,
                    "%s{\"metadata\":{\"namespace\":\"shop\",\"name\":\"web-%d\",\"uid\":\"u%d\","
                    "\"resourceVersion\":\"%d\"},\"spec\":{\"nodeName\":\"n1\",\"containers\":"
                    "[{\"name\":\"c\",\"image\":\"registry.example/shop/web:v%d\"}]},"
                    "\"status\":{\"phase\":\"Pending\"}}",
                    i ? "," : "", i, i, i + 1, i);
    pt_buf_puts(&resp->body, "]}");
  } else {
    api->event_lists++;
    /* A Pulling event from long before the watcher started: historic. */
    pt_buf_puts(&resp->body,
                "{\"kind\":\"EventList\",\"metadata\":{\"resourceVersion\":\"7\"},\"items\":[{"
                "\"metadata\":{\"namespace\":\"shop\",\"name\":\"web-0.1\",\"uid\":\"e1\"},"
                "\"involvedObject\":{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"web-0\",\"uid\":\"u0\"},"
                "\"reason\":\"Pulling\",\"message\":\"Pulling image \\\"registry.example/shop/web:v0\\\"\","
                "\"source\":{\"host\":\"n1\"},\"count\":1,"
                "\"firstTimestamp\":\"2020-01-01T00:00:00Z\",\"lastTimestamp\":\"2020-01-01T00:00:00Z\"}]}");
  }
}

static void watch_started(void *ud, struct pt_http_conn *conn)
{
  struct fake_api *api = ud;
  if (!conn)
    return;
  api->pod_watch = conn;
  /* A pod added after the list. */
  const char *line = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\",\"name\":\"late\","
                     "\"uid\":\"ul\",\"resourceVersion\":\"101\"},\"spec\":{\"nodeName\":\"n1\",\"containers\":"
                     "[{\"name\":\"c\",\"image\":\"registry.example/shop/late:v1\"}]},"
                     "\"status\":{\"phase\":\"Pending\"}}}\n";
  pt_http_conn_write(conn, line, strlen(line));
}

static void pod_watch_closed(void *ud, struct pt_http_conn *conn)
{
  struct fake_api *api = ud;
  if (api->pod_watch == conn)
    api->pod_watch = NULL;
}

static void handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct fake_api *api = ud;
  const char *auth = pt_http_req_header(req, "authorization");
  snprintf(api->last_auth, sizeof(api->last_auth), "%s", auth ? auth : "");
  api->saw_rotated |= strcmp(api->last_auth, "Bearer rotated") == 0;
  resp->content_type = "application/json";
  if (!strstr(req->query, "watch=1")) {
    answer_list(api, req, resp);
    return;
  }
  api->watches++;
  /* Pods: one ADDED event, then the stream stays open. Events: open, quiet. */
  if (strncmp(req->path, "/api/v1/pods", 12) == 0 && !api->pod_watch) {
    resp->stream_start = watch_started;
    resp->stream_ud = api;
    return;
  }
  resp->stream_start = NULL;
  pt_buf_puts(&resp->body, "");
}

static void on_upsert(void *ud, const json_t *pod)
{
  struct fake_api *api = ud;
  api->upserts++;
  /* The sink never sees resourceVersion: it would make every update a change. */
  assert_null(json_object_get(pod, "resourceVersion"));
  snprintf(api->last_pod, sizeof(api->last_pod), "%s", json_string_value(json_object_get(pod, "name")));
}

static void on_delete(void *ud, const char *ns, const char *name)
{
  ((struct fake_api *)ud)->deletes++;
}

static void on_event(void *ud, const json_t *ev, double now)
{
  struct fake_api *api = ud;
  api->events++;
  api->historic += json_is_true(json_object_get(ev, "historic"));
  assert_string_equal(json_string_value(json_object_get(ev, "kind")), "pulling");
}

static void on_ready(void *ud, bool ok, const char *detail)
{
  struct fake_api *api = ud;
  api->ready = ok;
  api->ready_seen_false |= !ok;
  assert_non_null(strstr(detail, "127.0.0.1"));
}


static void api_setup(struct fake_api *api)
{
  memset(api, 0, sizeof(*api));
  assert_int_equal(uv_loop_init(&api->loop), 0);
  api->http = pt_http_server_create(&api->loop, NULL, handle, api);
  assert_non_null(api->http);
  assert_int_equal(pt_http_server_listen(api->http, "127.0.0.1", 0), 0);
  snprintf(api->dir, sizeof(api->dir), "/tmp/pt-kube-watcher-XXXXXX");
  assert_non_null(mkdtemp(api->dir));
  snprintf(api->token_path, sizeof(api->token_path), "%s/token", api->dir);
  snprintf(api->config_path, sizeof(api->config_path), "%s/config", api->dir);
  test_write_file(api->token_path, "first\n");
  char text[512];
  snprintf(text, sizeof(text),
           "current-context: t\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
           "contexts: [{name: t, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {tokenFile: token}}]\n",
           pt_http_server_port(api->http));
  test_write_file(api->config_path, text);
}

static struct pt_kube *start_watcher(struct fake_api *api, double token_refresh)
{
  struct pt_kubeconfig cfg;
  char err[256];
  assert_int_equal(pt_kubeconfig_load(&cfg, api->config_path, NULL, err, sizeof(err)), 0);
  struct pt_kube_sink sink = {.ud = api, .pod_upsert = on_upsert, .pod_delete = on_delete,
                              .kube_event = on_event, .ready = on_ready};
  struct pt_kube_options opts = {.token_refresh = token_refresh, .page_size = 100000};
  struct pt_kube *k = pt_kube_create(&api->loop, &sink, &cfg, &opts);
  assert_non_null(k);
  assert_null(cfg.server); /* taken over */
  assert_int_equal(pt_kube_start(k), 0);
  return k;
}

static void run_until(struct fake_api *api, bool (*done)(struct fake_api *))
{
  while (!done(api))
    uv_run(&api->loop, UV_RUN_ONCE);
}

static void api_teardown(struct fake_api *api)
{
  if (api->pod_watch)
    pt_http_conn_close(api->pod_watch, true);
  pt_http_server_destroy(api->http);
  uv_run(&api->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&api->loop), 0);
  unlink(api->token_path);
  unlink(api->config_path);
  rmdir(api->dir);
}

static bool synced_and_watching(struct fake_api *api)
{
  return api->ready && api->upserts == NPODS + 1 && api->pod_watch;
}

static bool rotated_token_used(struct fake_api *api)
{
  return api->saw_rotated;
}

static void test_list_watch_token(void **state)
{
  (void)state;
  struct fake_api api;
  api_setup(&api);
  api.bad_lists_left = 1;
  struct pt_kube *k = start_watcher(&api, 0.05);
  uv_run(&api.loop, UV_RUN_NOWAIT);
  run_until(&api, synced_and_watching);
  pt_http_conn_set_close_cb(api.pod_watch, pod_watch_closed, &api);

  /* The bad answer was an error, retried with a relist; nothing was lost. */
  assert_true(api.ready_seen_false);
  assert_int_equal(api.pod_lists, 2);
  assert_int_equal(api.event_lists, 1);
  assert_string_equal(api.last_pod, "late");
  assert_int_equal(api.events, 1);
  assert_int_equal(api.historic, 1);
  assert_int_equal(api.deletes, 0);
  assert_string_equal(api.last_auth, "Bearer first");
  struct pt_kube_stats st;
  pt_kube_stats(k, &st);
  assert_true(st.synced);
  assert_int_equal(st.errors[PT_KUBE_PODS], 1);
  assert_int_equal(st.pods_cached, NPODS + 1);
  assert_int_equal(st.events_historic, 1);

  /* The token rotates: the next request (a new watch after the server ended
   * this one) carries the new one. */
  test_write_file(api.token_path, "rotated\n");
  pt_http_conn_close(api.pod_watch, false);
  run_until(&api, rotated_token_used);

  pt_kube_destroy(k);
  api_teardown(&api);
}

static bool first_list_asked(struct fake_api *api)
{
  return api->pod_lists > 0 && api->event_lists > 0;
}

static void test_destroy_in_flight(void **state)
{
  (void)state;
  struct fake_api api;
  api_setup(&api);
  struct pt_kube *k = start_watcher(&api, 0.01);
  /* Destroyed while lists are answered, parsed or applied and token reads
   * run: every request and work item ends, the sink is not called after, and
   * the loop closes with nothing left (ASan checks the memory). */
  run_until(&api, first_list_asked);
  int upserts = api.upserts;
  pt_kube_destroy(k);
  api_teardown(&api);
  assert_int_equal(api.upserts, upserts);
  assert_false(api.ready);
}

static void test_no_sink(void **state)
{
  (void)state;
  /* A watcher without callbacks (all optional) still lists and watches. */
  struct fake_api api;
  api_setup(&api);
  struct pt_kubeconfig cfg;
  char err[256];
  assert_int_equal(pt_kubeconfig_load(&cfg, api.config_path, NULL, err, sizeof(err)), 0);
  struct pt_kube *k = pt_kube_create(&api.loop, NULL, &cfg, NULL);
  assert_non_null(k);
  assert_int_equal(pt_kube_start(k), 0);
  struct pt_kube_stats st = {0};
  while (!st.synced) {
    uv_run(&api.loop, UV_RUN_ONCE);
    pt_kube_stats(k, &st);
  }
  assert_int_equal(st.pods_cached, NPODS);
  pt_kube_destroy(k);
  api_teardown(&api);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_list_watch_token),
    cmocka_unit_test(test_destroy_in_flight),
    cmocka_unit_test(test_no_sink),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
