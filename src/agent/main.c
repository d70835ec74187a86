#include <stdio.h>
#include <string.h>

#include "agent/agent.h"

static void usage(FILE *out)
{
  fprintf(out,
          "Usage: pulltrace-agent [--help] [--version]\n\n"
          "Runs on every Kubernetes node: polls containerd for image pulls in progress\n"
          "and reports them to pulltrace-server every interval. Configured entirely\n"
          "through the environment.\n\n");
  pt_config_print_help(out, "Environment", pt_agent_config_vars);
  fprintf(out, "\nDocumentation: docs/agent.md and docs/configuration.md\n");
}

int main(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("pulltrace-agent %s\n", PT_VERSION);
      return 0;
    }
    fprintf(stderr, "pulltrace-agent: unknown argument \"%s\" (see --help)\n", argv[i]);
    return 2;
  }
  struct pt_agent_config cfg;
  char err[512];
  if (pt_agent_config_load(&cfg, NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "pulltrace-agent: configuration error: %s\n", err);
    return 2;
  }
  pt_log_setup("agent", cfg.log_level,
               strcmp(cfg.log_format, "logfmt") == 0 ? PT_LOG_LOGFMT : PT_LOG_JSON);

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_agent agent;
  if (pt_agent_init(&agent, &loop, &cfg) != 0) {
    PT_LOG_ERROR("cannot initialise the agent", "{}");
    return 1;
  }
  pt_agent_start(&agent);
  uv_run(&loop, UV_RUN_DEFAULT);
  pt_agent_close(&agent);
  int rc = uv_loop_close(&loop);
  PT_LOG_INFO("stopped", "{s:I,s:I}", "reports_sent", (json_int_t)agent.reports_sent,
              "reports_failed", (json_int_t)agent.reports_failed);
  return rc == 0 ? 0 : 1;
}
