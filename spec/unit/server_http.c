/* The whole server in-process on loopback: a client thread with blocking
 * sockets drives it while the main thread runs the loop. Covers keep-alive,
 * security headers, report answers, SSE snapshot, live events and
 * Last-Event-ID resumption, the metrics exposition, and graceful shutdown. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/clock.h"
#include "server/server.h"
#include "test_net.h"

struct ctx {
  uv_loop_t loop;
  uv_async_t stop;
  struct pt_server *srv;
  int port, mport;
  int failures;
  char why[512];
};

/* Reads until `until` appears (or EOF/timeout) into buf. */
static size_t read_until(int fd, char *buf, size_t cap, size_t have, const char *until)
{
  buf[have] = '\0';
  while (have + 1 < cap && !strstr(buf, until)) {
    ssize_t r = read(fd, buf + have, cap - 1 - have);
    if (r <= 0)
      break;
    have += (size_t)r;
    buf[have] = '\0';
  }
  return have;
}

/* One request on a fresh or given connection; returns the full response (Content-Length). */
static char *request(int fd, const char *raw)
{
  test_send_all(fd, raw, strlen(raw));
  size_t cap = 1 << 20;
  char *buf = malloc(cap);
  size_t n = read_until(fd, buf, cap, 0, "\r\n\r\n");
  char *hdr_end = strstr(buf, "\r\n\r\n");
  if (!hdr_end)
    return buf;
  char *cl = strcasestr(buf, "content-length:");
  size_t want = (size_t)(hdr_end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
  while (n < want) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return buf;
}

static char *report_body(const char *node, int seq, int downloaded)
{
  char *b = malloc(4096);
  char ts[40];
  pt_time_format(pt_clock_now(), ts, sizeof(ts));
  snprintf(b, 4096,
           "{\"schemaVersion\":\"v1\",\"nodeName\":\"%s\",\"agentVersion\":\"t\",\"bootId\":\"b\",\"seq\":%d,"
           "\"timestamp\":\"%s\",\"pulls\":[{\"id\":\"p1\",\"imageRef\":\"r/app\",\"manifestDigest\":\"sha256:ab\","
           "\"indexDigest\":null,\"startedAt\":\"%s\",\"completedAt\":null,\"totalKnown\":true,\"totalBytes\":1000,"
           "\"downloadedBytes\":%d,\"layers\":[{\"digest\":\"sha256:cd\",\"mediaType\":null,\"totalBytes\":1000,"
           "\"downloadedBytes\":%d,\"state\":\"downloading\",\"startedAt\":null,\"updatedAt\":null}]}],"
           "\"unattributed\":[]}",
           node, seq, ts, ts, downloaded, downloaded);
  return b;
}

static char *post_report(int port, const char *node, int seq, int dl, const char *auth)
{
  char *body = report_body(node, seq, dl);
  char *raw = malloc(8192);
  snprintf(raw, 8192, "POST /api/v1/report HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%s"
           "Content-Length: %zu\r\n\r\n%s", auth ? auth : "", strlen(body), body);
  int fd = test_dial(port);
  char *resp = request(fd, raw);
  close(fd);
  free(body);
  free(raw);
  return resp;
}

#define CHECK(ctx, cond)                                                              \
  do {                                                                                \
    if (!(cond) && !(ctx)->failures++)                                                \
      snprintf((ctx)->why, sizeof((ctx)->why), "line %d: %s", __LINE__, #cond);       \
  } while (0)

static uint64_t last_id_in(const char *s)
{
  uint64_t id = 0;
  for (const char *p = strstr(s, "id: "); p; p = strstr(p + 1, "\nid: "))
    id = strtoull(p[0] == '\n' ? p + 5 : p + 4, NULL, 10);
  return id;
}

static void *client(void *arg)
{
  struct ctx *c = arg;
  /* Keep-alive: two requests on one connection; security headers. */
  int fd = test_dial(c->port);
  char *r = request(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(c, strstr(r, "HTTP/1.1 200 OK") != NULL);
  CHECK(c, strstr(r, "X-Content-Type-Options: nosniff") != NULL);
  CHECK(c, strstr(r, "X-Frame-Options: DENY") != NULL);
  CHECK(c, strstr(r, "Content-Security-Policy: ") != NULL);
  free(r);
  r = request(fd, "GET /api/v1/pulls/nothing%2Fhere HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(c, strstr(r, "HTTP/1.1 404") != NULL);
  CHECK(c, strstr(r, "\"field\":\"id\"") != NULL);
  free(r);
  r = request(fd, "BROKEN\r\n\r\n");
  CHECK(c, strstr(r, "HTTP/1.1 400") != NULL);
  CHECK(c, strstr(r, "Connection: close") != NULL);
  free(r);
  close(fd);

  /* Auth. */
  r = post_report(c->port, "n1", 1, 100, NULL);
  CHECK(c, strstr(r, "HTTP/1.1 401") != NULL);
  free(r);
  r = post_report(c->port, "n1", 1, 100, "Authorization: Bearer wrong-token\r\n");
  CHECK(c, strstr(r, "HTTP/1.1 401") != NULL);
  free(r);

  /* SSE: snapshot first. */
  int sse = test_dial(c->port);
  const char *ev_req = "GET /api/v1/events HTTP/1.1\r\nHost: t\r\n\r\n";
  test_send_all(sse, ev_req, strlen(ev_req));
  char *buf = calloc(1, 1 << 20);
  size_t n = read_until(sse, buf, 1 << 20, 0, "event: snapshot");
  n = read_until(sse, buf, 1 << 20, n, "\n\n\r\n");
  CHECK(c, strstr(buf, "Content-Type: text/event-stream") != NULL);
  CHECK(c, strstr(buf, "retry: 2000") != NULL);
  uint64_t snap_id = last_id_in(buf);
  CHECK(c, snap_id > 0);

  r = post_report(c->port, "n1", 1, 100, "Authorization: Bearer s3cret\r\n");
  CHECK(c, strstr(r, "HTTP/1.1 200") != NULL && strstr(r, "\"applied\"") != NULL);
  free(r);
  n = read_until(sse, buf, 1 << 20, n, "event: pull.started");
  n = read_until(sse, buf, 1 << 20, n, "event: node.updated");
  CHECK(c, strstr(buf, "event: pull.started") != NULL);
  CHECK(c, strstr(buf, "\"id\":\"n1/p1\"") != NULL);
  uint64_t seen = last_id_in(buf);
  CHECK(c, seen > snap_id);
  close(sse);

  /* While disconnected, more happens. */
  r = post_report(c->port, "n1", 2, 500, "Authorization: Bearer s3cret\r\n");
  free(r);
  /* Resume: exactly the missed events, no snapshot. */
  sse = test_dial(c->port);
  char hdr[256];
  snprintf(hdr, sizeof(hdr), "GET /api/v1/events?node=n1 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: %llu\r\n\r\n",
           (unsigned long long)seen);
  test_send_all(sse, hdr, strlen(hdr));
  memset(buf, 0, 1 << 20);
  n = read_until(sse, buf, 1 << 20, 0, "event: pull.progress");
  n = read_until(sse, buf, 1 << 20, n, "}\n\n");
  CHECK(c, strstr(buf, "event: snapshot") == NULL);
  CHECK(c, strstr(buf, "event: layer.") == NULL); /* layers ride in the pull's event */
  CHECK(c, strstr(buf, "event: pull.progress") != NULL);
  char want[64];
  snprintf(want, sizeof(want), "id: %llu\n", (unsigned long long)seen + 1);
  CHECK(c, strstr(buf, want) != NULL);
  /* A resume from an unknown id gets a snapshot. */
  int sse2 = test_dial(c->port);
  const char *old_req = "GET /api/v1/events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 12\r\n\r\n";
  test_send_all(sse2, old_req, strlen(old_req));
  char *buf2 = calloc(1, 1 << 16);
  read_until(sse2, buf2, 1 << 16, 0, "event: snapshot");
  CHECK(c, strstr(buf2, "event: snapshot") != NULL);
  CHECK(c, strstr(buf2, "n1/p1") != NULL);
  free(buf2);
  close(sse2);

  /* Metrics. */
  int mfd = test_dial(c->mport);
  r = request(mfd, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(c, strstr(r, "text/plain; version=0.0.4") != NULL);
  CHECK(c, strstr(r, "pulltrace_agent_reports_total{result=\"applied\"} 2\n") != NULL);
  CHECK(c, strstr(r, "pulltrace_agent_reports_rejected_total{reason=\"unauthorized\"} 2\n") != NULL);
  CHECK(c, strstr(r, "pulltrace_sse_clients_active 1\n") != NULL);
  CHECK(c, strstr(r, "# TYPE pulltrace_pull_duration_seconds histogram\n") != NULL);
  CHECK(c, strstr(r, "pulltrace_pull_bytes_total 500\n") != NULL);
  free(r);
  close(mfd);

  /* Graceful shutdown: the stream gets the final comment, then EOF. */
  uv_async_send(&c->stop);
  n = read_until(sse, buf, 1 << 20, n, ": server shutting down");
  CHECK(c, strstr(buf, ": server shutting down\n\n") != NULL);
  char tmp[64];
  ssize_t rr;
  while ((rr = read(sse, tmp, sizeof(tmp))) > 0)
    ;
  CHECK(c, rr == 0);
  close(sse);
  free(buf);
  return NULL;
}

static void done_cb(void *ud)
{
  struct ctx *c = ud;
  uv_close((uv_handle_t *)&c->stop, NULL);
}

static void stop_cb(uv_async_t *a)
{
  struct ctx *c = a->data;
  pt_server_shutdown(c->srv, done_cb, c);
}

static void test_server_end_to_end(void **state)
{
  struct ctx c = {0};
  assert_int_equal(uv_loop_init(&c.loop), 0);
  struct pt_server_config cfg = {0};
  char err[512];
  setenv("PULLTRACE_HTTP_ADDR", "127.0.0.1:0", 1);
  setenv("PULLTRACE_METRICS_ADDR", "127.0.0.1:0", 1);
  setenv("PULLTRACE_AGENT_TOKEN", "s3cret", 1);
  assert_int_equal(pt_config_load(pt_server_config_vars, &cfg, NULL, err, sizeof(err)), 0);
  struct pt_policy_options po = {0};
  struct pt_policy *policy = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(policy);
  c.srv = pt_server_create(&c.loop, &cfg, policy);
  assert_non_null(c.srv);
  assert_int_equal(pt_server_listen(c.srv, err, sizeof(err)), 0);
  c.port = pt_server_http_port(c.srv);
  c.mport = pt_server_metrics_port(c.srv);
  uv_async_init(&c.loop, &c.stop, stop_cb);
  c.stop.data = &c;
  pthread_t th;
  pthread_create(&th, NULL, client, &c);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  pt_server_destroy(c.srv);
  pt_policy_destroy(policy);
  assert_int_equal(uv_loop_close(&c.loop), 0);
  if (c.failures)
    fail_msg("%d check(s) failed; first: %s", c.failures, c.why);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_server_end_to_end),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
