/* The socket-free HTTP request parser, SSE framing and Prometheus helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/http_server.h"
#include "core/prom.h"
#include "core/sse.h"

static int feed_all(struct pt_http_parser *p, const char *s, size_t *used)
{
  return pt_http_parser_feed(p, s, strlen(s), used);
}

static void test_simple_get(void **state)
{
  struct pt_http_parser p;
  pt_http_parser_init(&p, 0, 0);
  size_t used;
  const char *req = "GET /api/v1/pulls?node=a%2Fb&state=pulling HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n";
  assert_int_equal(feed_all(&p, req, &used), 1);
  assert_int_equal(used, strlen(req));
  struct pt_http_req r;
  pt_http_parser_request(&p, &r);
  assert_string_equal(r.method, "GET");
  assert_string_equal(r.path, "/api/v1/pulls");
  assert_string_equal(r.query, "node=a%2Fb&state=pulling");
  assert_string_equal(pt_http_req_header(&r, "host"), "x");
  assert_string_equal(pt_http_req_header(&r, "x-empty"), "");
  assert_true(r.keep_alive);
  char v[64];
  assert_int_equal(pt_http_query_get(r.query, "node", v, sizeof(v)), 1);
  assert_string_equal(v, "a/b");
  assert_int_equal(pt_http_query_get(r.query, "namespace", v, sizeof(v)), 0);
  pt_http_parser_close(&p);
}

static void test_pipelined_and_fragmented(void **state)
{
  struct pt_http_parser p;
  pt_http_parser_init(&p, 0, 0);
  const char *two = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.0\r\n\r\n";
  size_t used;
  /* One byte at a time for the first request. */
  size_t off = 0;
  int r = 0;
  while (r == 0) {
    r = pt_http_parser_feed(&p, two + off, 1, &used);
    off += used;
  }
  assert_int_equal(r, 1);
  struct pt_http_req req;
  pt_http_parser_request(&p, &req);
  assert_string_equal(req.method, "POST");
  assert_int_equal(req.body_len, 5);
  assert_memory_equal(req.body, "hello", 5);
  pt_http_parser_next(&p);
  assert_int_equal(pt_http_parser_feed(&p, two + off, strlen(two + off), &used), 1);
  pt_http_parser_request(&p, &req);
  assert_string_equal(req.path, "/b");
  assert_false(req.keep_alive); /* HTTP/1.0 without keep-alive */
  pt_http_parser_close(&p);
}

static void test_chunked(void **state)
{
  struct pt_http_parser p;
  pt_http_parser_init(&p, 0, 0);
  size_t used;
  assert_int_equal(feed_all(&p, "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                            &used), 1);
  struct pt_http_req req;
  pt_http_parser_request(&p, &req);
  assert_int_equal(req.body_len, 5);
  assert_string_equal(req.body, "abcde");
  pt_http_parser_close(&p);
}

static void test_limits_and_errors(void **state)
{
  struct pt_http_parser p;
  size_t used;
  pt_http_parser_init(&p, 256, 10);
  assert_int_equal(feed_all(&p, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &used), -1);
  assert_int_equal(p.error_status, 413);
  pt_http_parser_close(&p);

  pt_http_parser_init(&p, 256, 10);
  assert_int_equal(feed_all(&p, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdef0123", &used), -1);
  assert_int_equal(p.error_status, 413);
  pt_http_parser_close(&p);

  pt_http_parser_init(&p, 64, 10);
  char big[300];
  snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Long: %0200d\r\n\r\n", 0);
  assert_int_equal(feed_all(&p, big, &used), -1);
  assert_int_equal(p.error_status, 431);
  pt_http_parser_close(&p);

  static const char *const bad[] = {"GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                                    "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                    "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    pt_http_parser_init(&p, 0, 0);
    assert_int_equal(feed_all(&p, bad[i], &used), -1);
    assert_int_equal(p.error_status, 400);
    assert_non_null(p.error_reason);
    pt_http_parser_close(&p);
  }
}

static void test_expect_continue(void **state)
{
  struct pt_http_parser p;
  pt_http_parser_init(&p, 0, 0);
  size_t used;
  assert_int_equal(feed_all(&p, "POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", &used), 0);
  assert_true(p.expect_continue);
  assert_int_equal(feed_all(&p, "{}", &used), 1);
  pt_http_parser_close(&p);
}

static void test_url_decode(void **state)
{
  char out[16];
  assert_int_equal(pt_http_url_decode("a%2Fb+c", 7, out, sizeof(out), true), 5);
  assert_string_equal(out, "a/b c");
  assert_int_equal(pt_http_url_decode("a+c", 3, out, sizeof(out), false), 3);
  assert_string_equal(out, "a+c");
  assert_int_equal(pt_http_url_decode("%zz", 3, out, sizeof(out), false), -EINVAL);
  assert_int_equal(pt_http_url_decode("%2", 2, out, sizeof(out), false), -EINVAL);
  assert_int_equal(pt_http_url_decode("%00", 3, out, sizeof(out), false), -EINVAL);
  assert_int_equal(pt_http_url_decode("0123456789abcdef", 16, out, sizeof(out), false), -EINVAL);
}

static void test_sse_framing(void **state)
{
  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_event(&b, 7, "pull.progress", "{\"a\":1}");
  assert_string_equal(b.data, "id: 7\nevent: pull.progress\ndata: {\"a\":1}\n\n");
  pt_buf_reset(&b);
  pt_sse_format_event(&b, 8, "x\ny", "l1\nl2\r\nl3\rl4");
  assert_string_equal(b.data, "id: 8\nevent: x\ndata: l1\ndata: l2\ndata: l3\ndata: l4\n\n");
  pt_buf_reset(&b);
  pt_sse_format_comment(&b, "heartbeat");
  pt_sse_format_retry(&b, 2000);
  assert_string_equal(b.data, ": heartbeat\n\nretry: 2000\n\n");
  pt_buf_close(&b);
}

static void test_prom(void **state)
{
  struct pt_buf b, l;
  pt_buf_init(&b);
  pt_buf_init(&l);
  pt_prom_family(&b, "x_total", "counter", "Help with \\ and\nnewline");
  pt_prom_label(&l, "a", "q\"u\\o\nte");
  pt_prom_label(&l, "b", "2");
  pt_prom_sample(&b, "x_total", l.data, 3);
  pt_prom_sample(&b, "x_total", NULL, 0.25);
  assert_string_equal(b.data, "# HELP x_total Help with \\\\ and\\nnewline\n# TYPE x_total counter\n"
                              "x_total{a=\"q\\\"u\\\\o\\nte\",b=\"2\"} 3\nx_total 0.25\n");
  pt_buf_reset(&b);
  static const double bounds[] = {1, 5};
  uint64_t counts[2];
  struct pt_prom_histogram h;
  pt_prom_histogram_init(&h, bounds, 2, counts);
  pt_prom_histogram_observe(&h, 0.5);
  pt_prom_histogram_observe(&h, 3);
  pt_prom_histogram_observe(&h, 9);
  pt_prom_histogram_write(&b, "d_seconds", NULL, &h);
  assert_string_equal(b.data, "d_seconds_bucket{le=\"1\"} 1\nd_seconds_bucket{le=\"5\"} 2\n"
                              "d_seconds_bucket{le=\"+Inf\"} 3\nd_seconds_sum 12.5\nd_seconds_count 3\n");
  pt_buf_close(&b);
  pt_buf_close(&l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_simple_get),
    cmocka_unit_test(test_pipelined_and_fragmented),
    cmocka_unit_test(test_chunked),
    cmocka_unit_test(test_limits_and_errors),
    cmocka_unit_test(test_expect_continue),
    cmocka_unit_test(test_url_decode),
    cmocka_unit_test(test_sse_framing),
    cmocka_unit_test(test_prom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
