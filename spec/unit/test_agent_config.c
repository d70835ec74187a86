/* The agent's configuration: defaults, required variables and clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"

static const char *const *g_env;

static const char *fake_getenv(const char *name)
{
  for (const char *const *e = g_env; *e; e += 2)
    if (strcmp(e[0], name) == 0)
      return e[1];
  return NULL;
}

static int load(const char *const *env, struct pt_agent_config *cfg, char *err)
{
  g_env = env;
  return pt_agent_config_load(cfg, fake_getenv, err, 512);
}

static void test_defaults(void **state)
{
  const char *env[] = {"PULLTRACE_NODE_NAME", "n1", "PULLTRACE_SERVER_URL", "http://s:8080", NULL};
  struct pt_agent_config cfg;
  char err[512];
  assert_int_equal(load(env, &cfg, err), 0);
  assert_string_equal(cfg.node_name, "n1");
  assert_string_equal(cfg.containerd_socket, "/run/containerd/containerd.sock");
  assert_string_equal(cfg.containerd_namespace, "k8s.io");
  assert_int_equal(cfg.log_level, PT_LOG_INFO);
  assert_null(cfg.token);
  assert_true(cfg.report_interval == 1.0);
  assert_true(cfg.stall_threshold == 30.0);
}

static void test_overrides(void **state)
{
  const char *env[] = {"PULLTRACE_NODE_NAME", "n1", "PULLTRACE_SERVER_URL", "https://s",
                       "PULLTRACE_REPORT_INTERVAL", "500ms", "PULLTRACE_LOG_LEVEL", "DEBUG",
                       "PULLTRACE_AGENT_TOKEN", "t0k", "PULLTRACE_CONTAINERD_NAMESPACE", "other",
                       "PULLTRACE_STALL_THRESHOLD", "1m30s", NULL};
  struct pt_agent_config cfg;
  char err[512];
  assert_int_equal(load(env, &cfg, err), 0);
  assert_true(cfg.report_interval == 0.5);
  assert_true(cfg.stall_threshold == 90);
  assert_int_equal(cfg.log_level, PT_LOG_DEBUG);
  assert_string_equal(cfg.token, "t0k");
  assert_string_equal(cfg.containerd_namespace, "other");
}

static void expect_error(const char *const *env, const char *needle)
{
  struct pt_agent_config cfg;
  char err[512] = "";
  assert_int_equal(load(env, &cfg, err), -EINVAL);
  if (!strstr(err, needle))
    fail_msg("error \"%s\" does not name \"%s\"", err, needle);
}

static void test_errors(void **state)
{
  const char *e1[] = {"PULLTRACE_SERVER_URL", "http://s", NULL};
  expect_error(e1, "PULLTRACE_NODE_NAME: required");
  const char *e2[] = {"PULLTRACE_NODE_NAME", "n", NULL};
  expect_error(e2, "PULLTRACE_SERVER_URL: required");
  const char *e3[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "s:8080", NULL};
  expect_error(e3, "PULLTRACE_SERVER_URL: must start with");
  const char *e4[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s",
                      "PULLTRACE_REPORT_INTERVAL", "1 second", NULL};
  expect_error(e4, "PULLTRACE_REPORT_INTERVAL: invalid duration");
  const char *e5[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s",
                      "PULLTRACE_REPORT_INTERVAL", "1ms", NULL};
  expect_error(e5, "PULLTRACE_REPORT_INTERVAL: 1ms is out of range");
  const char *e6[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s",
                      "PULLTRACE_LOG_LEVEL", "loud", NULL};
  expect_error(e6, "PULLTRACE_LOG_LEVEL: invalid log level");
  const char *e7[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s",
                      "PULLTRACE_LOG_FORMAT", "xml", NULL};
  expect_error(e7, "PULLTRACE_LOG_FORMAT");
  const char *e8[] = {"PULLTRACE_NODE_NAME", "", "PULLTRACE_SERVER_URL", "http://s", NULL};
  expect_error(e8, "PULLTRACE_NODE_NAME: required");
  /* The service-account token replaces the shared one: both at once is a mistake. */
  const char *e9[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s", "PULLTRACE_AGENT_AUTH",
                      "kubernetes", "PULLTRACE_AGENT_TOKEN", "t", NULL};
  expect_error(e9, "PULLTRACE_AGENT_TOKEN: set, but PULLTRACE_AGENT_AUTH is kubernetes");
  const char *e10[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s", "PULLTRACE_AGENT_AUTH",
                       "oidc", NULL};
  expect_error(e10, "PULLTRACE_AGENT_AUTH");
}

static void test_service_account_token(void **state)
{
  const char *env[] = {"PULLTRACE_NODE_NAME", "n", "PULLTRACE_SERVER_URL", "http://s", "PULLTRACE_AGENT_AUTH",
                       "kubernetes", NULL};
  struct pt_agent_config cfg;
  char err[512];
  assert_int_equal(load(env, &cfg, err), 0);
  assert_string_equal(cfg.auth, "kubernetes");
  assert_string_equal(cfg.token_file, "/var/run/secrets/pulltrace/token");
  assert_true(cfg.token_refresh == 60.0);
}

static void test_durations(void **state)
{
  static const struct {
    const char *s;
    double v;
  } ok[] = {{"0", 0},      {"1s", 1},       {"500ms", 0.5}, {"1.5s", 1.5}, {"2m", 120},
            {"1h30m", 5400}, {"100us", 1e-4}, {"10ns", 1e-8}, {"1m0.5s", 60.5}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    double v = -1;
    assert_int_equal(pt_duration_parse(ok[i].s, &v), 0);
    assert_true(v > ok[i].v - 1e-9 && v < ok[i].v + 1e-9);
  }
  const char *bad[] = {"", "1", "s", "-1s", "1x", "1s ", " 1s", "1.s.s", "ms", "1e3s", "1sm"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    double v;
    if (pt_duration_parse(bad[i], &v) != -EINVAL)
      fail_msg("\"%s\" accepted", bad[i]);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_overrides),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_service_account_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
