/* Core helpers: RFC 3339 times, addresses, log levels, jitter, and the HTTP client
 * against a local socket that is closed (the request must fail cleanly and the
 * loop must close). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/file.h"
#include "core/httpc.h"
#include "core/log.h"
#include "core/random.h"
#include "core/utf8.h"

static void test_time_roundtrip(void **state)
{
  char buf[40];
  assert_string_equal(pt_time_format(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
  assert_string_equal(pt_time_format(1763719200.25, buf, sizeof(buf)), "2025-11-21T10:00:00.250Z");
  double t;
  assert_int_equal(pt_time_parse("2025-11-21T10:00:00.250Z", &t), 0);
  assert_true(t > 1763719200.249 && t < 1763719200.251);
  assert_int_equal(pt_time_parse("2025-11-21T12:00:00+02:00", &t), 0);
  assert_true(t == 1763719200.0);
  assert_int_equal(pt_time_parse("2025-11-21T10:00:00.123456789Z", &t), 0);
  const char *bad[] = {"", "2025-11-21", "2025-11-21T10:00:00", "2025-13-01T00:00:00Z",
                       "2025-11-21T10:00:00.Z", "2025-11-21T10:00:00Zjunk", "yesterday"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(pt_time_parse(bad[i], &t), -EINVAL);
}

static void test_addr(void **state)
{
  struct pt_addr a;
  assert_int_equal(pt_addr_parse(":8080", &a), 0);
  assert_string_equal(a.host, "");
  assert_int_equal(a.port, 8080);
  assert_int_equal(pt_addr_parse("127.0.0.1:9090", &a), 0);
  assert_string_equal(a.host, "127.0.0.1");
  assert_int_equal(pt_addr_parse("[::1]:80", &a), 0);
  assert_string_equal(a.host, "::1");
  assert_int_equal(pt_addr_parse("8080", &a), -EINVAL);
  assert_int_equal(pt_addr_parse("host:", &a), -EINVAL);
  assert_int_equal(pt_addr_parse("host:99999", &a), -EINVAL);
  assert_int_equal(pt_addr_parse("::1:80", &a), -EINVAL);
}

static void test_log_levels(void **state)
{
  enum pt_log_level l;
  assert_int_equal(pt_log_level_parse("Warning", &l), 0);
  assert_int_equal(l, PT_LOG_WARN);
  assert_int_equal(pt_log_level_parse("trace", &l), -EINVAL);
  assert_string_equal(pt_log_level_name(PT_LOG_ERROR), "error");
}

static int g_done_calls;
static struct pt_http_response g_resp;

static void on_done(void *ud, const struct pt_http_response *r)
{
  g_done_calls++;
  g_resp = *r;
  g_resp.body = NULL;
  g_resp.error = NULL;
}

static void test_httpc_refused_and_cancel(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_httpc *c = pt_httpc_create(&loop);
  assert_non_null(c);
  /* Port 1 on loopback: connection refused. */
  struct pt_http_request req = {.url = "http://127.0.0.1:1/x", .timeout_ms = 2000};
  assert_int_equal(pt_httpc_request(c, &req, on_done, NULL, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done_calls, 1);
  assert_int_equal(g_resp.result, -EIO);
  assert_int_equal(g_resp.status, 0);

  /* A request cancelled before it runs finishes exactly once. */
  uint64_t id = 0;
  assert_int_equal(pt_httpc_request(c, &req, on_done, NULL, &id), 0);
  assert_int_equal(pt_httpc_active(c), 1);
  pt_httpc_cancel(c, id);
  assert_int_equal(g_done_calls, 2);
  assert_int_equal(g_resp.result, -ECANCELED);
  assert_int_equal(pt_httpc_active(c), 0);

  /* Destroy cancels what is still in flight. */
  assert_int_equal(pt_httpc_request(c, &req, on_done, NULL, NULL), 0);
  pt_httpc_destroy(c);
  assert_int_equal(g_done_calls, 3);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Back-off jitter: uniform in [0, 1), and not the same sequence in every
 * process (rand() without a seed gave every replica the same jitter). */
static void test_random_per_process(void **state)
{
  (void)state;
  double sum = 0, lo = 1, hi = 0;
  for (int i = 0; i < 10000; i++) {
    double v = pt_random_unit();
    assert_true(v >= 0 && v < 1);
    sum += v;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  /* Mean of 10,000 uniform draws: 0.5 with a standard deviation of 0.003. */
  assert_true(sum / 10000 > 0.45 && sum / 10000 < 0.55);
  assert_true(lo < 0.01 && hi > 0.99);

  /* Two processes started from the same state (a fork, the closest thing to
   * two replicas) draw different values. */
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    double v = pt_random_unit();
    _exit(write(fds[1], &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
  }
  double mine = pt_random_unit(), theirs = -1;
  assert_int_equal(read(fds[0], &theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fds[0]);
  close(fds[1]);
  assert_true(theirs >= 0 && theirs < 1);
  assert_true(mine != theirs);
}

/* A string cut to a byte limit on a character boundary. */
static void test_utf8_prefix(void **state)
{
  (void)state;
  assert_int_equal(pt_utf8_prefix("caf\xc3\xa9", 10), 5);
  assert_int_equal(pt_utf8_prefix("caf\xc3\xa9", 5), 5);
  assert_int_equal(pt_utf8_prefix("caf\xc3\xa9", 4), 3);
  assert_int_equal(pt_utf8_prefix("\xe2\x82\xac\xe2\x82\xac", 5), 3);
  assert_int_equal(pt_utf8_prefix("\xf0\x9f\x98\x80", 3), 0);
  assert_int_equal(pt_utf8_prefix("abc", 0), 0);
}

/* Small files read whole: the limits and refusals every reader relies on. */
static void test_file_read(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-core-file-XXXXXX", path[256];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/f", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(" \n token-1\t\n", f);
  fclose(f);
  char *out;
  size_t len;
  assert_int_equal(pt_file_read(path, 64, &out, &len), 0);
  assert_int_equal(len, 12);
  assert_string_equal(out, " \n token-1\t\n");
  free(out);
  assert_int_equal(pt_file_read_trimmed(path, 64, &out), 0);
  assert_string_equal(out, "token-1");
  free(out);
  assert_int_equal(pt_file_read(path, 11, &out, &len), -EFBIG);
  assert_null(out);
  assert_int_equal(pt_file_read(path, 12, &out, NULL), 0);
  free(out);
  assert_int_equal(pt_file_read(dir, 64, &out, NULL), -EINVAL);
  f = fopen(path, "w");
  fputs(" \r\n", f);
  fclose(f);
  assert_int_equal(pt_file_read_trimmed(path, 64, &out), -ENODATA);
  assert_null(out);
  unlink(path);
  assert_int_equal(pt_file_read(path, 64, &out, NULL), -ENOENT);
  rmdir(dir);
}

int main(void)
{
  pt_log_setup("test", PT_LOG_ERROR, PT_LOG_JSON);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_time_roundtrip),
      cmocka_unit_test(test_addr),
      cmocka_unit_test(test_log_levels),
      cmocka_unit_test(test_random_per_process),
      cmocka_unit_test(test_utf8_prefix),
      cmocka_unit_test(test_file_read),
      cmocka_unit_test(test_httpc_refused_and_cancel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
