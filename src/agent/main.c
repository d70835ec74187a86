#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/containerd.h"

static void usage(FILE *out)
{
  fprintf(out,
          "Usage: pulltrace-agent [--help] [--version] [--check-containerd]\n\n"
          "Runs on every Kubernetes node: polls containerd for image pulls in progress\n"
          "and reports them to pulltrace-server every interval. Configured entirely\n"
          "through the environment.\n\n"
          "--check-containerd asks containerd once (Content/ListStatuses, the agent's own\n"
          "first call, 5 s timeout) at PULLTRACE_CONTAINERD_SOCKET and exits 0 when it\n"
          "answers, 1 otherwise: the chart's readiness probe.\n\n");
  pt_config_print_help(out, "Environment", pt_agent_config_vars);
  fprintf(out, "\nDocumentation: docs/agent.md and docs/configuration.md\n");
}

/* One call through the same client the agent polls with: a readiness probe run inside the
 * agent's container sees containerd exactly as the agent does (socket path, namespace). */
static int check_containerd(const struct pt_agent_config *cfg)
{
  struct pt_containerd c;
  if (pt_containerd_init(&c, cfg->containerd_socket, cfg->containerd_namespace) != 0) {
    fprintf(stderr, "pulltrace-agent: cannot create a gRPC client\n");
    return 1;
  }
  struct pt_ingest *ingests = NULL;
  size_t n = 0;
  int rc = pt_containerd_ops.list_ingests(&c, &ingests, &n);
  if (rc == 0)
    printf("containerd at %s answers (namespace %s, %zu active ingests)\n",
           cfg->containerd_socket, cfg->containerd_namespace, n);
  else
    fprintf(stderr, "containerd at %s does not answer: %s\n", cfg->containerd_socket,
            c.last.message[0] ? c.last.message : "unknown error");
  free(ingests);
  pt_containerd_close(&c);
  return rc == 0 ? 0 : 1;
}

static void log_target(void *ud, const struct pt_target_stats *st)
{
  PT_LOG_INFO("reports to one server address", "{s:s,s:s,s:I,s:I}", "url", st->url, "address", st->address,
              "reports_sent", (json_int_t)st->sent, "reports_failed", (json_int_t)st->failed);
}

int main(int argc, char **argv)
{
  bool check = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("pulltrace-agent %s\n", PT_VERSION);
      return 0;
    }
    if (strcmp(argv[i], "--check-containerd") == 0) {
      check = true;
      continue;
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
  if (check)
    return check_containerd(&cfg);
  pt_log_setup("agent", cfg.log_level,
               strcmp(cfg.log_format, "logfmt") == 0 ? PT_LOG_LOGFMT : PT_LOG_JSON);

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_agent agent;
  if (pt_agent_init(&agent, &loop, &cfg, err, sizeof(err)) != 0) {
    PT_LOG_ERROR("cannot initialise the agent", "{s:s}", "error", err);
    return 1;
  }
  pt_agent_start(&agent);
  uv_run(&loop, UV_RUN_DEFAULT);
  pt_targets_foreach(&agent.targets, log_target, NULL);
  uint64_t sent = agent.targets.sent, failed = agent.targets.failed;
  pt_agent_close(&agent);
  int rc = uv_loop_close(&loop);
  PT_LOG_INFO("stopped", "{s:I,s:I}", "reports_sent", (json_int_t)sent, "reports_failed", (json_int_t)failed);
  return rc == 0 ? 0 : 1;
}
