/* Unit tests of the agent's report targets (src/agent/targets.c) against a
 * server played by the core HTTP server on 127.0.0.1, on the same loop: the
 * URL list is checked, a name is resolved on the thread pool and the request
 * keeps the name as its Host, every address is a target of its own, and a
 * dead address (nothing listens on [::1] at that port) backs off without
 * delaying the live one, which gets every report, and the names are resolved
 * again every resolve interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/targets.h"
#include "core/http_server.h"

struct fixture {
  uv_loop_t loop;
  struct pt_http_server *http;
  struct pt_httpc *httpc;
  struct pt_targets targets;
  int port;
  int reports;          /* reports the live server accepted */
  char last_body[64];
  char last_host[128];
};

static void handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct fixture *f = ud;
  if (strcmp(req->method, "POST") != 0 || strcmp(req->path, "/api/v1/report") != 0) {
    resp->status = 404;
    return;
  }
  f->reports++;
  snprintf(f->last_body, sizeof(f->last_body), "%s", req->body);
  const char *host = pt_http_req_header(req, "Host");
  snprintf(f->last_host, sizeof(f->last_host), "%s", host ? host : "");
  resp->status = 202;
  pt_buf_puts(&resp->body, "{}");
}

static void setup(struct fixture *f, const char *url_fmt, double resolve_interval)
{
  memset(f, 0, sizeof(*f));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->http = pt_http_server_create(&f->loop, NULL, handle, f);
  assert_non_null(f->http);
  assert_int_equal(pt_http_server_listen(f->http, "127.0.0.1", 0), 0);
  f->port = pt_http_server_port(f->http);
  f->httpc = pt_httpc_create(&f->loop);
  assert_non_null(f->httpc);
  char urls[512];
  snprintf(urls, sizeof(urls), url_fmt, f->port, f->port);
  struct pt_targets_options o = {.urls = urls, .report_interval = 0.05, .resolve_interval = resolve_interval};
  char err[256];
  assert_int_equal(pt_targets_init(&f->targets, &f->loop, f->httpc, &o, err, sizeof(err)), 0);
  pt_targets_start(&f->targets);
}

static void teardown(struct fixture *f)
{
  pt_targets_stop(&f->targets);
  pt_httpc_destroy(f->httpc);
  pt_http_server_destroy(f->http);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  pt_targets_close(&f->targets);
  assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void run_until(struct fixture *f, bool (*done)(struct fixture *), const char *what)
{
  for (int i = 0; i < 200000 && !done(f); i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  if (!done(f))
    fail_msg("never happened: %s", what);
}

struct count {
  int n, ok;
  uint64_t sent, failed;
  char addrs[4][64];
};

static void count_target(void *ud, const struct pt_target_stats *st)
{
  struct count *c = ud;
  if (c->n < 4)
    snprintf(c->addrs[c->n], sizeof(c->addrs[0]), "%s", st->address);
  c->n++;
  c->ok += st->ok;
  c->sent += st->sent;
  c->failed += st->failed;
}

static struct count counts(struct fixture *f)
{
  struct count c = {0};
  pt_targets_foreach(&f->targets, count_target, &c);
  return c;
}

static bool has_one_target(struct fixture *f)
{
  return counts(f).n == 1;
}

static bool got_report(struct fixture *f)
{
  return f->reports > 0;
}

static void offer(struct fixture *f, int seq)
{
  char body[32];
  snprintf(body, sizeof(body), "{\"seq\":%d}", seq);
  pt_targets_offer(&f->targets, strdup(body));
}

static void test_parse(void **state)
{
  char *urls[PT_TARGETS_MAX_URLS];
  char err[256];
  assert_int_equal(pt_targets_parse("http://a:8080", NULL, err, sizeof(err)), 1);
  assert_int_equal(pt_targets_parse(" http://a:8080/ , https://[::1]:9/x,http://b", urls, err, sizeof(err)), 3);
  assert_string_equal(urls[0], "http://a:8080/");
  assert_string_equal(urls[1], "https://[::1]:9/x");
  for (int i = 0; i < 3; i++)
    free(urls[i]);
  assert_int_equal(pt_targets_parse("http://a,,http://b", NULL, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_SERVER_URL: an empty URL"));
  assert_int_equal(pt_targets_parse("http://a,ftp://b", NULL, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "\"ftp://b\""));
  assert_int_equal(pt_targets_parse("http://", NULL, err, sizeof(err)), -EINVAL);
  assert_int_equal(pt_targets_parse("", NULL, err, sizeof(err)), -EINVAL);
}

/* A name is resolved off the loop; the request connects to its address and
 * still says the name as its Host. */
static void test_name_resolves_to_one_target(void **state)
{
  struct fixture f;
  setup(&f, "http://localhost:%d", 3600);
  run_until(&f, has_one_target, "localhost resolved");
  struct count c = counts(&f);
  assert_string_equal(c.addrs[0], "127.0.0.1");
  offer(&f, 1);
  run_until(&f, got_report, "a report");
  assert_string_equal(f.last_body, "{\"seq\":1}");
  char host[64];
  snprintf(host, sizeof(host), "localhost:%d", f.port);
  assert_string_equal(f.last_host, host);
  teardown(&f);
}

/* Answered, not only received: a target sends the next report only once its
 * previous request ended. */
static int g_want;
static bool live_got_all(struct fixture *f)
{
  return counts(f).sent >= (uint64_t)g_want;
}

static bool dead_failed(struct fixture *f)
{
  return counts(f).failed >= 1;
}

/* Two addresses for one name: each is a target; the dead one backs off, the
 * live one gets every report meanwhile. */
static void test_every_address_is_a_target_and_a_dead_one_delays_nothing(void **state)
{
  struct fixture f;
  setup(&f, "http://localhost:%d", 3600);
  run_until(&f, has_one_target, "localhost resolved");
  const char *two[] = {"127.0.0.1", "[::1]"};
  pt_targets_apply(&f.targets, 0, two, 2);
  assert_int_equal(counts(&f).n, 2);
  /* Each new report goes out once the previous one was answered by the live
   * server, so the dead target's failures and back-off run beside it. */
  for (int i = 1; i <= 20; i++) {
    offer(&f, i);
    g_want = i;
    run_until(&f, live_got_all, "the live server got the report");
  }
  run_until(&f, dead_failed, "the dead address failed");
  struct count c = counts(&f);
  assert_int_equal(f.reports, 20);
  assert_string_equal(f.last_body, "{\"seq\":20}");
  assert_int_equal(c.sent, 20);
  assert_int_equal(c.ok, 1);
  /* Backing off, the dead address was tried for fewer reports than sent. */
  assert_true(c.failed < 20);

  /* The dead address leaves the answer: its target goes. */
  const char *one[] = {"127.0.0.1"};
  pt_targets_apply(&f.targets, 0, one, 1);
  c = counts(&f);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.addrs[0], "127.0.0.1");
  teardown(&f);
}

/* The name is resolved again every resolve interval: addresses that left the
 * answer lose their target (a replica gone from a headless Service). Two
 * addresses are given directly, as a Service with two replicas would answer;
 * the next resolution of localhost answers one, and only the periodic
 * resolution can bring the targets back to it. */
static bool two_targets_then_one(struct fixture *f)
{
  struct count c = counts(f);
  return c.n == 1 && strcmp(c.addrs[0], "127.0.0.1") == 0;
}

static void test_name_is_resolved_again_every_interval(void **state)
{
  struct fixture f;
  setup(&f, "http://localhost:%d", 0.05);
  run_until(&f, has_one_target, "localhost resolved");
  const char *two[] = {"127.0.0.1", "[::1]"};
  pt_targets_apply(&f.targets, 0, two, 2);
  assert_int_equal(counts(&f).n, 2);
  run_until(&f, two_targets_then_one, "the next resolution");
  /* The remaining target still gets reports. */
  offer(&f, 3);
  run_until(&f, got_report, "a report");
  assert_string_equal(f.last_body, "{\"seq\":3}");
  teardown(&f);
}

/* Two URLs, each its own target (literal addresses: nothing to resolve). */
static void test_two_urls(void **state)
{
  struct fixture f;
  setup(&f, "http://127.0.0.1:%d,http://127.0.0.1:%d/", 3600);
  assert_int_equal(counts(&f).n, 2);
  offer(&f, 7);
  g_want = 2;
  run_until(&f, live_got_all, "both URLs got the report");
  assert_int_equal(f.reports, 2);
  teardown(&f);
}

/* A name that does not resolve: one target through libcurl's resolver,
 * which fails and backs off; nothing crashes and nothing is lost later. */
static bool any_failure(struct fixture *f)
{
  return counts(f).failed > 0;
}

static void test_unresolvable_name(void **state)
{
  struct fixture f;
  setup(&f, "http://pulltrace-test.invalid:%d", 3600);
  run_until(&f, has_one_target, "a fallback target");
  assert_string_equal(counts(&f).addrs[0], "");
  offer(&f, 1);
  run_until(&f, any_failure, "the report failed");
  assert_int_equal(f.reports, 0);
  teardown(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse),
    cmocka_unit_test(test_name_resolves_to_one_target),
    cmocka_unit_test(test_every_address_is_a_target_and_a_dead_one_delays_nothing),
    cmocka_unit_test(test_name_is_resolved_again_every_interval),
    cmocka_unit_test(test_two_urls),
    cmocka_unit_test(test_unresolvable_name),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
