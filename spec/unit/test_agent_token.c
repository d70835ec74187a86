/* The agent's bearer token (agent/token.h): the shared one as given; the
 * projected service-account token read from its file at startup, trimmed,
 * read again on the thread pool when asked (a rotation, a 401), the previous
 * one kept while the file is missing or empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_files.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/token.h"

static char dir[] = "/tmp/pt-agent-token-XXXXXX";
static char path[256];

static void write_file(const char *text)
{
  test_replace_file(path, text);
}

/* Runs the loop until the re-read finished. */
static void refresh(uv_loop_t *loop, struct pt_agent_token *t)
{
  pt_agent_token_refresh(t);
  while (t->busy)
    uv_run(loop, UV_RUN_ONCE);
}

static void test_shared_token(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_agent_token t;
  assert_int_equal(pt_agent_token_init(&t, &loop, "s3cret", NULL, 0), 0);
  assert_string_equal(pt_agent_token_get(&t), "s3cret");
  pt_agent_token_refresh(&t); /* nothing to read */
  assert_false(t.busy);
  pt_agent_token_stop(&t);
  pt_agent_token_close(&t);
  assert_int_equal(pt_agent_token_init(&t, &loop, "", NULL, 0), 0);
  assert_null(pt_agent_token_get(&t));
  pt_agent_token_stop(&t);
  pt_agent_token_close(&t);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_file_token_rotates(void **state)
{
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/token", dir);
  write_file("  eyJ.first.sig\n");
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_agent_token t;
  assert_int_equal(pt_agent_token_init(&t, &loop, NULL, path, 3600), 0);
  assert_string_equal(pt_agent_token_get(&t), "eyJ.first.sig");

  write_file("eyJ.second.sig");
  refresh(&loop, &t);
  assert_string_equal(pt_agent_token_get(&t), "eyJ.second.sig");

  /* Empty, then gone: the last good token stays. */
  write_file(" \n");
  refresh(&loop, &t);
  assert_string_equal(pt_agent_token_get(&t), "eyJ.second.sig");
  assert_int_equal(unlink(path), 0);
  refresh(&loop, &t);
  assert_string_equal(pt_agent_token_get(&t), "eyJ.second.sig");
  assert_int_equal(t.failures, 2);
  write_file("eyJ.third.sig\r\n");
  refresh(&loop, &t);
  assert_string_equal(pt_agent_token_get(&t), "eyJ.third.sig");
  assert_int_equal(t.failures, 0);

  pt_agent_token_stop(&t);
  uv_run(&loop, UV_RUN_DEFAULT);
  pt_agent_token_close(&t);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir);
}

static void test_missing_file_at_start(void **state)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_agent_token t;
  assert_int_equal(pt_agent_token_init(&t, &loop, NULL, "/nonexistent/pulltrace/token", 3600), 0);
  assert_null(pt_agent_token_get(&t));
  pt_agent_token_stop(&t);
  uv_run(&loop, UV_RUN_DEFAULT);
  pt_agent_token_close(&t);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_token),
      cmocka_unit_test(test_file_token_rotates),
      cmocka_unit_test(test_missing_file_at_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
