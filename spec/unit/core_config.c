/* The configuration tables (core/config.h): every type's parsing and errors
 * naming the variable, loading from an environment block, families of
 * variables, and the --help text the tables print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

struct cfg {
  const char *name, *mode, *url, *missing;
  long count;
  double wait;
};

#define F(field) offsetof(struct cfg, field)

static const struct pt_config_var vars[] = {
  {"T_NAME", PT_CFG_STRING, NULL, true, F(name), 0, 8, "A name", NULL, NULL},
  {"T_MODE", PT_CFG_ENUM, "auto", false, F(mode), 0, 0, "auto, on or off", "auto|on|off", NULL},
  {"T_URL", PT_CFG_URL, NULL, false, F(url), 0, 30, "Where to", NULL, NULL},
  {"T_MISSING", PT_CFG_STRING, NULL, false, F(missing), 0, 0, "Unset, no default", NULL, NULL},
  {"T_COUNT", PT_CFG_INT, "3", false, F(count), 1, 10, "How many", NULL, NULL},
  {"T_WAIT", PT_CFG_DURATION, "1m", false, F(wait), 0, 0, "How long", NULL, "wait"},
  {"T_EXTRA_", PT_CFG_PREFIX, NULL, false, 0, 0, 0, "Anything else", NULL, NULL},
  {NULL, 0, NULL, false, 0, 0, 0, NULL, NULL, NULL},
};

static int load(char **env, struct cfg *c, char *err)
{
  memset(c, 0xff, sizeof(*c)); /* every field must be written */
  return pt_config_load_envp(vars, c, env, err, 256);
}

static void test_defaults_and_values(void **state)
{
  (void)state;
  struct cfg c;
  char err[256];
  char *env1[] = {"T_NAME=abc", "OTHER=1", NULL};
  assert_int_equal(load(env1, &c, err), 0);
  assert_string_equal(c.name, "abc");
  assert_string_equal(c.mode, "auto");
  assert_null(c.url);
  assert_null(c.missing);
  assert_int_equal(c.count, 3);
  assert_true(c.wait == 60);

  char *env2[] = {"T_NAME=abcdefgh", "T_MODE=off", "T_URL=https://x:1/y", "T_COUNT=10",
                  "T_WAIT=1m30s", "T_EXTRA_anything=ignored by the loader", NULL};
  assert_int_equal(load(env2, &c, err), 0);
  assert_string_equal(c.mode, "off");
  assert_string_equal(c.url, "https://x:1/y");
  assert_int_equal(c.count, 10);
  assert_true(c.wait == 90);
  assert_string_equal(pt_config_getenv(env2, "T_MODE"), "off");
  assert_null(pt_config_getenv(env2, "T_MOD"));
}

static void expect(char **env, const char *msg)
{
  struct cfg c;
  char err[256] = "";
  assert_int_equal(load(env, &c, err), -EINVAL);
  if (strcmp(err, msg) != 0)
    fail_msg("got \"%s\", want \"%s\"", err, msg);
}

static void test_errors_name_the_variable(void **state)
{
  (void)state;
  char *e1[] = {"T_MODE=on", NULL};
  expect(e1, "T_NAME: required but not set");
  char *e2[] = {"T_NAME=", NULL};
  expect(e2, "T_NAME: required but not set");
  char *e3[] = {"T_NAME=abcdefghi", NULL};
  expect(e3, "T_NAME: longer than 8 characters");
  char *e4[] = {"T_NAME=a", "T_MODE=sometimes", NULL};
  expect(e4, "T_MODE: must be auto, on or off (got \"sometimes\")");
  char *e5[] = {"T_NAME=a", "T_MODE=au", NULL};
  expect(e5, "T_MODE: must be auto, on or off (got \"au\")");
  char *e6[] = {"T_NAME=a", "T_URL=ftp://x", NULL};
  expect(e6, "T_URL: must start with http:// or https:// (got \"ftp://x\")");
  char *e7[] = {"T_NAME=a", "T_URL=http://a-very-long-host-name.example/", NULL};
  expect(e7, "T_URL: longer than 30 characters");
  char *e8[] = {"T_NAME=a", "T_COUNT=11", NULL};
  expect(e8, "T_COUNT: 11 is out of range (1 to 10)");
  char *e9[] = {"T_NAME=a", "T_WAIT=soon", NULL};
  expect(e9, "T_WAIT: invalid duration \"soon\" (use e.g. 500ms, 2s, 1m30s)");
}

static void test_parse_one(void **state)
{
  (void)state;
  double d = 0;
  char err[256];
  assert_int_equal(pt_config_parse(&vars[5], "2h", &d, err, sizeof(err)), 0);
  assert_true(d == 7200);
  const char *s = NULL;
  assert_int_equal(pt_config_parse(&vars[1], "x", &s, err, sizeof(err)), -EINVAL);
  assert_null(s);
}

static void test_help(void **state)
{
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  pt_config_print_help(f, "Test", vars);
  fclose(f);
  assert_non_null(strstr(buf, "Test:\n"));
  assert_non_null(strstr(buf, "  T_NAME "));
  /* Help, [type and range], default: docs/configuration.md's columns are checked against it. */
  assert_non_null(strstr(buf, "A name [string, at most 8 bytes] (required)\n"));
  assert_non_null(strstr(buf, "auto, on or off [one of auto, on, off] (default auto)\n"));
  assert_non_null(strstr(buf, "Where to [URL, at most 30 bytes]\n"));
  assert_non_null(strstr(buf, "Unset, no default [string]\n"));
  assert_non_null(strstr(buf, "How many [integer, 1 to 10] (default 3)\n"));
  assert_non_null(strstr(buf, "How long [duration] (default 1m)\n"));
  assert_non_null(strstr(buf, "  T_EXTRA_<key> "));
  char text[64];
  struct pt_config_var d = {"T", PT_CFG_DURATION, NULL, false, 0, 0.05, 30 * 86400.0, "", NULL, NULL};
  pt_config_type_text(&d, text, sizeof(text));
  assert_string_equal(text, "duration, 50ms to 30d");
  d.min = 0;
  d.max = 90;
  pt_config_type_text(&d, text, sizeof(text));
  assert_string_equal(text, "duration, 0 to 90s");
  d.max = 5400;
  pt_config_type_text(&d, text, sizeof(text));
  assert_string_equal(text, "duration, 0 to 90m");
  free(buf);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_values),
      cmocka_unit_test(test_errors_name_the_variable),
      cmocka_unit_test(test_parse_one),
      cmocka_unit_test(test_help),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
