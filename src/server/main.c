/* pulltrace-server: configuration, signals, and the loop. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "policy/policy.h"
#include "kube/lease.h"
#include "kube/watcher.h"
#include "server/server.h"

#ifdef PT_HAVE_UI
extern const struct pt_embedded_file pt_ui_files[];
#endif

struct app {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  struct pt_server *srv;
  struct pt_policy *policy;
  struct pt_kube *kube;
  struct pt_lease *lease; /* leader election; NULL when off */
};

static void stop_kube(struct app *app)
{
  if (!app->kube)
    return;
  pt_server_set_kube(app->srv, NULL);
  pt_kube_destroy(app->kube);
  app->kube = NULL;
}

static void usage(FILE *out)
{
  fprintf(out,
          "Usage: pulltrace-server [--help] [--version] [--check-policy DIR]\n\n"
          "Receives pulltrace-agent reports and serves the REST API, the event stream,\n"
          "the web UI and Prometheus metrics. Configuration comes from the environment:\n\n");
  pt_config_print_help(out, "Environment", pt_server_config_vars);
  fputc('\n', out);
  pt_config_print_help(out, "Policy (docs/policy.md)", pt_policy_config_vars);
  fprintf(out, "\nDocumentation: docs/configuration.md\n");
}

static void all_closed(void *ud)
{
  struct app *app = ud;
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  /* The server's store gives the policy's alert callback back when it is
   * destroyed: the server goes first. The policy is destroyed in the loop
   * so that its watcher's handles close before the loop ends. */
  pt_server_destroy(app->srv);
  app->srv = NULL;
  pt_policy_destroy(app->policy);
  app->policy = NULL;
}

/* The lease is released (or there was none): the watcher whose credentials
 * it used can go, then the server. */
static void lease_released(void *ud)
{
  struct app *app = ud;
  pt_server_set_lease(app->srv, NULL);
  pt_lease_destroy(app->lease);
  app->lease = NULL;
  stop_kube(app);
  pt_server_shutdown(app->srv, all_closed, app);
}

static void on_signal(uv_signal_t *h, int signum)
{
  struct app *app = h->data;
  PT_LOG_INFO("shutting down", "{s:s}", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  uv_signal_stop(&app->sigterm);
  uv_signal_stop(&app->sigint);
  /* A leader hands the lease over first, so that another replica delivers
   * from its next round on instead of after the lease expires. */
  if (app->lease)
    pt_lease_release(app->lease, lease_released, app);
  else
    lease_released(app);
}

static void leader_changed(void *ud, bool leader, const char *holder)
{
  pt_server_set_leader(ud, leader, holder);
}

/* PULLTRACE_LEADER_ELECTION and the lease's timing; err names the variable. */
static int leader_election_config(const struct pt_server_config *cfg, bool kube_on, bool in_cluster, bool *on,
                                  char *err, size_t errlen)
{
  const char *mode = cfg->leader_election;
  *on = strcmp(mode, "on") == 0 || (strcmp(mode, "auto") == 0 && kube_on && in_cluster);
  if (strcmp(mode, "on") == 0 && !kube_on) {
    snprintf(err, errlen, "PULLTRACE_LEADER_ELECTION: on, but Kubernetes is off (the Lease lives in the API server)");
    return -EINVAL;
  }
  if (!*on)
    return 0;
  if (cfg->lease_renew_deadline >= cfg->lease_duration) {
    snprintf(err, errlen, "PULLTRACE_LEASE_RENEW_DEADLINE: must be shorter than PULLTRACE_LEASE_DURATION");
    return -EINVAL;
  }
  if (cfg->lease_retry_period >= cfg->lease_renew_deadline) {
    snprintf(err, errlen, "PULLTRACE_LEASE_RETRY_PERIOD: must be shorter than PULLTRACE_LEASE_RENEW_DEADLINE");
    return -EINVAL;
  }
  return 0;
}

int main(int argc, char **argv)
{
  /* A client that goes away while an answer or an event is being written
   * must be a write error (EPIPE) handled by the connection, not a signal
   * that kills the server: libuv writes to sockets with write(2), which
   * raises SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  /* Likewise a history file over the file-size limit (RLIMIT_FSIZE) must be
   * a failed write (EFBIG: the history degrades), not a signal that kills. */
  signal(SIGXFSZ, SIG_IGN);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("pulltrace-server %s\n", PT_VERSION);
      return 0;
    }
    if (strcmp(argv[i], "--check-policy") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "--check-policy needs a directory\n");
        return 2;
      }
      int r = pt_policy_check_dir(argv[i + 1], stdout);
      return r == 0 ? 0 : 1;
    }
    fprintf(stderr, "unknown argument: %s\n\n", argv[i]);
    usage(stderr);
    return 2;
  }

  struct pt_server_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  char err[4096];
  if (pt_config_load(pt_server_config_vars, &cfg, NULL, err, sizeof(err)) < 0) {
    fprintf(stderr, "pulltrace-server: configuration error: %s\n", err);
    return 2;
  }
  pt_log_setup("pulltrace-server", cfg.log_level,
               strcmp(cfg.log_format, "logfmt") == 0 ? PT_LOG_LOGFMT : PT_LOG_JSON);
  struct pt_policy_options popts;
  if (pt_policy_options_from_env(&popts, NULL, err, sizeof(err)) < 0) {
    fprintf(stderr, "pulltrace-server: configuration error: %s\n", err);
    return 2;
  }

  /* Kubernetes: configuration errors stop the server before anything starts. */
  struct pt_kubeconfig kcfg;
  memset(&kcfg, 0, sizeof(kcfg));
  bool kube_on = false;
  const char *kmode = cfg.kubernetes;
  if (strcmp(kmode, "off") != 0) {
    struct pt_kube_env kenv = {
      .pulltrace_kubeconfig = cfg.kubeconfig,
      .kubeconfig = cfg.kubeconfig_env,
      .context = cfg.kube_context,
      .sa_dir = cfg.kube_sa_dir,
      .service_host = cfg.kube_service_host,
      .service_port = cfg.kube_service_port,
    };
    int kr = pt_kube_config_from_env(&kenv, &kcfg, err, sizeof(err));
    if (kr == -ENOENT && strcmp(kmode, "on") == 0) {
      fprintf(stderr, "pulltrace-server: configuration error: PULLTRACE_KUBERNETES: on, but neither "
                      "KUBERNETES_SERVICE_HOST nor PULLTRACE_KUBECONFIG/KUBECONFIG is set\n");
      return 2;
    }
    if (kr < 0 && kr != -ENOENT) {
      fprintf(stderr, "pulltrace-server: configuration error: %s\n", err);
      return 2;
    }
    kube_on = kr == 0;
  }
  bool elect;
  if (pt_server_auth_validate(&cfg, kube_on, err, sizeof(err)) < 0 ||
      leader_election_config(&cfg, kube_on, kube_on && kcfg.source && strcmp(kcfg.source, "in-cluster") == 0,
                             &elect, err, sizeof(err)) < 0) {
    fprintf(stderr, "pulltrace-server: configuration error: %s\n", err);
    pt_kubeconfig_clear(&kcfg);
    return 2;
  }
  /* The lease's namespace defaults to the service account's: the watcher
   * takes the configuration over, so keep a copy. */
  char lease_ns[64];
  snprintf(lease_ns, sizeof(lease_ns), "%s",
           cfg.lease_namespace && *cfg.lease_namespace ? cfg.lease_namespace
           : kcfg.namespace && *kcfg.namespace       ? kcfg.namespace
                                                     : "default");
  char identity[256];
  if (cfg.pod_name && *cfg.pod_name)
    snprintf(identity, sizeof(identity), "%s", cfg.pod_name);
  else if (gethostname(identity, sizeof(identity)) != 0 || !*identity)
    snprintf(identity, sizeof(identity), "pulltrace-server-%ld", (long)getpid());

  struct app app;
  memset(&app, 0, sizeof(app));
  uv_loop_init(&app.loop);
  /* A broken script in the directory does not stop the server (that would
   * crash-loop it under Kubernetes, losing every pull in memory): it starts
   * with the built-in defaults and shows the failure (docs/policy.md). Bad
   * settings still stop it, like any configuration error. */
  popts.defaults_on_error = true;
  app.policy = pt_policy_create(&popts, err, sizeof(err));
  if (!app.policy) {
    fprintf(stderr, "pulltrace-server: policy error:\n%s\n", err);
    PT_LOG_ERROR("policy failed to load", "{s:s}", "error", err);
    pt_kubeconfig_clear(&kcfg);
    return 1;
  }
  /* Parsed once, by the policy's table; the store's node states use it. */
  pt_policy_setting_number(app.policy, "nodeLostGrace", &cfg.node_lost_grace);
  app.srv = pt_server_create(&app.loop, &cfg, app.policy);
  if (!app.srv) {
    fprintf(stderr, "pulltrace-server: out of memory creating the server\n");
    pt_kubeconfig_clear(&kcfg);
    uv_run(&app.loop, UV_RUN_DEFAULT); /* closes what was opened */
    pt_policy_destroy(app.policy);
    uv_loop_close(&app.loop);
    return 1;
  }
#ifdef PT_HAVE_UI
  pt_server_set_ui(app.srv, pt_ui_files);
#endif
  int rc = 0;
  if (pt_server_open_history(app.srv, err, sizeof(err)) < 0) {
    fprintf(stderr, "pulltrace-server: history error: %s\n", err);
    PT_LOG_ERROR("cannot open the history", "{s:s}", "error", err);
    rc = 1;
  } else if (pt_server_listen(app.srv, err, sizeof(err)) < 0) {
    fprintf(stderr, "pulltrace-server: %s\n", err);
    PT_LOG_ERROR("cannot listen", "{s:s}", "error", err);
    rc = 1;
  }
  uv_signal_init(&app.loop, &app.sigterm);
  uv_signal_init(&app.loop, &app.sigint);
  app.sigterm.data = app.sigint.data = &app;
  if (rc == 0) {
    if (popts.dir && pt_policy_watch(app.policy, &app.loop) < 0)
      PT_LOG_WARN("cannot watch the policy directory; reloads need a restart", "{s:s}", "dir", popts.dir);
    if (kube_on) {
      struct pt_kube_options kopts = {
        .namespaces = cfg.watch_namespaces,
        .token_refresh = cfg.kube_token_refresh,
        .watch_timeout = (long)cfg.kube_watch_timeout,
        .page_size = cfg.kube_page_size,
      };
      struct pt_kube_sink sink;
      pt_server_kube_sink(app.srv, &sink);
      app.kube = pt_kube_create(&app.loop, &sink, &kcfg, &kopts);
      if (!app.kube || pt_kube_start(app.kube) < 0) {
        PT_LOG_ERROR("cannot start the Kubernetes watcher", "{}");
        stop_kube(&app);
      } else {
        pt_server_set_kube(app.srv, app.kube);
      }
    } else {
      PT_LOG_INFO("Kubernetes off: no in-cluster environment and no kubeconfig", "{s:s}", "PULLTRACE_KUBERNETES",
                  kmode);
    }
    if (elect) {
      struct pt_lease_options lo = {
        .name = cfg.lease_name,
        .namespace = lease_ns,
        .identity = identity,
        .duration = cfg.lease_duration,
        .renew_deadline = cfg.lease_renew_deadline,
        .retry_period = cfg.lease_retry_period,
        .changed = leader_changed,
        .ud = app.srv,
      };
      /* A follower until the lease says otherwise: two replicas starting
       * together must not both deliver. */
      pt_server_set_leader(app.srv, false, "");
      app.lease = app.kube ? pt_lease_create(&app.loop, app.kube, &lo) : NULL;
      if (app.lease) {
        pt_server_set_lease(app.srv, app.lease);
        pt_lease_start(app.lease);
      } else {
        PT_LOG_ERROR("cannot start leader election: this replica delivers no alert webhooks and no Kubernetes Events", "{}");
      }
    }
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    PT_LOG_INFO("listening", "{s:i,s:i,s:i,s:s}", "httpPort", pt_server_http_port(app.srv), "metricsPort",
                pt_server_metrics_port(app.srv), "reportPort", pt_server_report_port(app.srv), "version",
                PT_VERSION);
  } else {
    pt_kubeconfig_clear(&kcfg);
    pt_server_shutdown(app.srv, all_closed, &app);
  }
  uv_run(&app.loop, UV_RUN_DEFAULT);
  pt_server_destroy(app.srv);
  pt_policy_destroy(app.policy);
  int cr = uv_loop_close(&app.loop);
  if (cr != 0)
    PT_LOG_WARN("loop closed with handles open", "{s:s}", "error", uv_strerror(cr));
  PT_LOG_INFO("stopped", "{}");
  return rc;
}
