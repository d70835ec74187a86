#include "agent/agent.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/json.h"

#define REPORT_MAX_BACKOFF 30.0
/* Short: a pull that starts and ends while the agent waits to retry is never seen, and a
 * connect attempt on a local socket costs nothing. */
#define POLL_MAX_BACKOFF 2.0

const struct pt_config_var pt_agent_config_vars[] = {
    {"PULLTRACE_NODE_NAME", PT_CFG_STRING, NULL, true,
     offsetof(struct pt_agent_config, node_name), 0, 253,
     "Kubernetes node this agent runs on (the downward API's spec.nodeName)", NULL, NULL},
    {"PULLTRACE_SERVER_URL", PT_CFG_URL, NULL, true,
     offsetof(struct pt_agent_config, server_url), 0, 8000,
     "Base URL of pulltrace-server (its report port when it has one), or comma-separated URLs; every address a "
     "host name resolves to "
     "(a headless Service: every replica) gets each report", NULL, NULL},
    {"PULLTRACE_SERVER_RESOLVE_INTERVAL", PT_CFG_DURATION, "30s", false,
     offsetof(struct pt_agent_config, resolve_interval), 1, 3600,
     "How often the server URLs' host names are resolved again (replicas come and go)", NULL, NULL},
    {"PULLTRACE_CONTAINERD_SOCKET", PT_CFG_STRING, "/run/containerd/containerd.sock", false,
     offsetof(struct pt_agent_config, containerd_socket), 0, 0, "containerd's gRPC socket", NULL, NULL},
    {"PULLTRACE_CONTAINERD_NAMESPACE", PT_CFG_STRING, "k8s.io", false,
     offsetof(struct pt_agent_config, containerd_namespace), 0, 0,
     "containerd namespace to watch (kubelet's is k8s.io)", NULL, NULL},
    {"PULLTRACE_LOG_LEVEL", PT_CFG_LOGLEVEL, "info", false,
     offsetof(struct pt_agent_config, log_level), 0, 0, "debug, info, warn or error", NULL, NULL},
    {"PULLTRACE_LOG_FORMAT", PT_CFG_ENUM, "json", false,
     offsetof(struct pt_agent_config, log_format), 0, 0, "json or logfmt", "json|logfmt", NULL},
    {"PULLTRACE_AGENT_AUTH", PT_CFG_ENUM, "token", false, offsetof(struct pt_agent_config, auth), 0, 0,
     "token (send PULLTRACE_AGENT_TOKEN) or kubernetes (send the pod's projected service-account token "
     "from PULLTRACE_AGENT_TOKEN_FILE); must match the server's", "token|kubernetes", NULL},
    {"PULLTRACE_AGENT_TOKEN", PT_CFG_STRING, NULL, false, offsetof(struct pt_agent_config, token),
     0, 0, "With PULLTRACE_AGENT_AUTH=token: bearer token sent with every report (must match the server's)", NULL,
     NULL},
    {"PULLTRACE_AGENT_TOKEN_FILE", PT_CFG_STRING, "/var/run/secrets/pulltrace/token", false,
     offsetof(struct pt_agent_config, token_file), 0, 4096,
     "With PULLTRACE_AGENT_AUTH=kubernetes: the projected service-account token (audience pulltrace)", NULL, NULL},
    {"PULLTRACE_AGENT_TOKEN_REFRESH", PT_CFG_DURATION, "1m", false,
     offsetof(struct pt_agent_config, token_refresh), 0.1, 3600,
     "With PULLTRACE_AGENT_AUTH=kubernetes: how often the token file is re-read (kubelet rotates it)", NULL, NULL},
    {"PULLTRACE_SERVER_CA", PT_CFG_STRING, NULL, false,
     offsetof(struct pt_agent_config, server_ca), 0, 0,
     "PEM CA bundle to verify an https:// server URL (default: system store)", NULL, NULL},
    {"PULLTRACE_REPORT_INTERVAL", PT_CFG_DURATION, "1s", false,
     offsetof(struct pt_agent_config, report_interval), 0.1, 3600,
     "How often containerd is polled and a report sent (Go duration)", NULL, NULL},
    {"PULLTRACE_STALL_THRESHOLD", PT_CFG_DURATION, "30s", false,
     offsetof(struct pt_agent_config, stall_threshold), 0.5, 86400,
     "A layer whose ingest has not moved for this long is stalled", NULL, NULL},
    {"PULLTRACE_COMPLETED_LINGER", PT_CFG_DURATION, "30s", false,
     offsetof(struct pt_agent_config, completed_linger), 0, 86400,
     "How long a completed pull stays in the reports", NULL, NULL},
    {NULL, 0, NULL, false, 0, 0, 0, NULL, NULL, NULL},
};

int pt_agent_config_load(struct pt_agent_config *cfg, const char *(*getenv_fn)(const char *),
                         char *err, size_t errlen)
{
  memset(cfg, 0, sizeof(*cfg));
  int rc = pt_config_load(pt_agent_config_vars, cfg, getenv_fn, err, errlen);
  if (rc == 0 && strcmp(cfg->auth, "kubernetes") == 0 && cfg->token && *cfg->token) {
    snprintf(err, errlen, "PULLTRACE_AGENT_TOKEN: set, but PULLTRACE_AGENT_AUTH is kubernetes (the agent sends "
                          "its service-account token): remove one of them");
    return -EINVAL;
  }
  if (rc == 0 && pt_targets_parse(cfg->server_url, NULL, err, errlen) < 0)
    rc = -EINVAL;
  return rc;
}

static void read_boot_id(char *out, size_t len)
{
  FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");
  if (f && fgets(out, (int)len, f)) {
    out[strcspn(out, "\n")] = '\0';
  } else {
    /* Unique enough to tell agent restarts apart. */
    snprintf(out, len, "%08lx-%08lx", (unsigned long)pt_clock_now(), (unsigned long)getpid());
  }
  if (f)
    fclose(f);
}

/* The report's `containerd` member (docs/api.md): while the polls fail, since
 * when and gRPC's status of the last one, so that the server can tell a node
 * whose pulls are frozen from one whose pulls merely make no progress. */
static json_t *containerd_json(const struct pt_agent *a)
{
  if (a->ctrd_down_since == 0)
    return json_pack("{s:b}", "reachable", 1);
  /* The server refuses control characters and jansson invalid UTF-8 (gRPC's
   * message may be cut inside a character): keep printable ASCII only, so
   * that the report is never lost over its error text. */
  char msg[sizeof(a->ctrd.last.message) + 32];
  int n = snprintf(msg, sizeof(msg), "gRPC code %d: %s", a->ctrd.last.code,
                   a->ctrd.last.message[0] ? a->ctrd.last.message : "no message");
  for (int i = 0; i < n && msg[i]; i++)
    if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
      msg[i] = '?';
  char ts[40];
  return json_pack("{s:b,s:s,s:s}", "reachable", 0, "since", pt_time_format(a->ctrd_down_since, ts, sizeof(ts)),
                   "error", msg);
}

/* Runs on the threadpool: polls containerd, updates the tracker, builds the
 * report. Nothing on the loop thread touches the tracker meanwhile. */
static void work_cb(uv_work_t *w)
{
  struct pt_agent *a = w->data;
  double now = pt_clock_now();
  a->work_rc = pt_tracker_tick(&a->tracker, &pt_containerd_ops, &a->ctrd, now);
  if (a->work_rc == 0)
    a->ctrd_down_since = 0;
  else if (a->ctrd_down_since == 0)
    a->ctrd_down_since = now;
  char ts[40];
  json_t *report = json_pack(
      "{s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:o,s:o}", "schemaVersion", "v1", "nodeName", a->cfg.node_name,
      "agentVersion", PT_VERSION, "bootId", a->boot_id, "seq", (json_int_t)++a->seq, "timestamp",
      pt_time_format(now, ts, sizeof(ts)), "pulls", pt_tracker_pulls_json(&a->tracker),
      "unattributed", pt_tracker_unattributed_json(&a->tracker), "containerd", containerd_json(a));
  a->work_report = report ? pt_json_dump(report) : NULL;
  json_decref(report);
}

static void after_work_cb(uv_work_t *w, int status)
{
  struct pt_agent *a = w->data;
  a->work_busy = false;
  double now = pt_clock_mono();
  if (a->work_rc == 0) {
    if (a->ctrd_state != 1)
      PT_LOG_INFO("containerd reachable", "{s:s,s:s}", "socket", a->cfg.containerd_socket,
                  "namespace", a->cfg.containerd_namespace);
    a->ctrd_state = 1;
    a->poll_backoff = 0;
    a->next_poll = 0;
  } else {
    if (a->ctrd_state != 0)
      PT_LOG_WARN("containerd unreachable; retrying with backoff", "{s:s,s:i,s:s}", "socket",
                  a->cfg.containerd_socket, "code", a->ctrd.last.code, "error",
                  a->ctrd.last.message);
    a->ctrd_state = 0;
    a->poll_backoff = a->poll_backoff == 0 ? a->cfg.report_interval : a->poll_backoff * 2;
    if (a->poll_backoff > POLL_MAX_BACKOFF)
      a->poll_backoff = POLL_MAX_BACKOFF;
    a->next_poll = now + a->poll_backoff;
  }
  if (a->stopping) {
    free(a->work_report);
    a->work_report = NULL;
    return;
  }
  /* Only the newest state matters: an unsent older report is replaced. */
  if (a->work_report) {
    pt_targets_offer(&a->targets, a->work_report);
    a->work_report = NULL;
  }
}

static void on_tick(uv_timer_t *t)
{
  struct pt_agent *a = t->data;
  if (a->stopping)
    return;
  if (a->work_busy) {
    PT_LOG_DEBUG("previous poll still running; skipping a tick", "{}");
    return;
  }
  /* Targets whose back-off ended catch up with the newest report; while
   * containerd is down that keeps the servers informed with the last known
   * state. */
  pt_targets_kick(&a->targets);
  if (pt_clock_mono() < a->next_poll)
    return;
  a->work_busy = true;
  if (uv_queue_work(a->loop, &a->work, work_cb, after_work_cb) != 0)
    a->work_busy = false;
}

static void on_signal(uv_signal_t *s, int signum)
{
  struct pt_agent *a = s->data;
  PT_LOG_INFO("shutting down", "{s:i}", "signal", signum);
  pt_agent_stop(a);
}

int pt_agent_init(struct pt_agent *a, uv_loop_t *loop, const struct pt_agent_config *cfg, char *err, size_t errlen)
{
  memset(a, 0, sizeof(*a));
  a->loop = loop;
  a->cfg = *cfg;
  a->ctrd_state = -1;
  read_boot_id(a->boot_id, sizeof(a->boot_id));
  struct pt_tracker_config tc = {
      .stall_threshold = cfg->stall_threshold,
      .linger = cfg->completed_linger,
      .forget_after = cfg->stall_threshold * 10 > 600 ? cfg->stall_threshold * 10 : 600,
  };
  pt_tracker_init(&a->tracker, &tc);
  if (pt_containerd_init(&a->ctrd, cfg->containerd_socket, cfg->containerd_namespace)) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  /* Calls must finish well inside a tick so shutdown stays prompt. */
  a->ctrd.timeout_s = 3;
  a->http = pt_httpc_create(loop);
  if (!a->http) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  bool sa = strcmp(cfg->auth ? cfg->auth : "token", "kubernetes") == 0;
  if (pt_agent_token_init(&a->token, loop, sa ? NULL : cfg->token, sa ? cfg->token_file : NULL,
                          cfg->token_refresh) < 0) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  struct pt_targets_options to = {
    .urls = cfg->server_url,
    .token = &a->token,
    .ca_file = cfg->server_ca,
    .report_interval = cfg->report_interval,
    .resolve_interval = cfg->resolve_interval,
  };
  int rc = pt_targets_init(&a->targets, loop, a->http, &to, err, errlen);
  if (rc < 0)
    return rc;
  uv_timer_init(loop, &a->tick);
  a->tick.data = a;
  a->work.data = a;
  uv_signal_init(loop, &a->sigterm);
  uv_signal_init(loop, &a->sigint);
  a->sigterm.data = a->sigint.data = a;
  return 0;
}

void pt_agent_start(struct pt_agent *a)
{
  uint64_t ms = (uint64_t)(a->cfg.report_interval * 1000);
  uv_timer_start(&a->tick, on_tick, 0, ms);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  pt_targets_start(&a->targets);
  PT_LOG_INFO("agent started", "{s:s,s:s,s:s,s:s,s:f}", "node", a->cfg.node_name, "server",
              a->cfg.server_url, "containerd", a->cfg.containerd_socket, "bootId", a->boot_id,
              "interval_seconds", a->cfg.report_interval);
}

void pt_agent_stop(struct pt_agent *a)
{
  if (a->stopping)
    return;
  a->stopping = true;
  uv_close((uv_handle_t *)&a->tick, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  pt_targets_stop(&a->targets);
  pt_httpc_destroy(a->http);
  a->http = NULL;
  pt_agent_token_stop(&a->token);
}

void pt_agent_close(struct pt_agent *a)
{
  pt_targets_close(&a->targets);
  free(a->work_report);
  a->work_report = NULL;
  pt_tracker_close(&a->tracker);
  pt_agent_token_close(&a->token);
  pt_containerd_close(&a->ctrd);
}
