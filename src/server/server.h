/* pulltrace-server: ties the HTTP servers (API + UI, metrics, reports), the store, the
 * event hub, the policy and alert delivery to one libuv loop. */
#ifndef PT_SERVER_SERVER_H
#define PT_SERVER_SERVER_H

#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

#include "core/config.h"
#include "core/embed.h"
#include "core/log.h"
#include "policy/policy.h"

struct pt_server_config {
  struct pt_addr http_addr, metrics_addr;
  struct pt_addr report_addr; /* .set = false: reports arrive on the API port */
  enum pt_log_level log_level;
  const char *log_format;
  const char *agent_token;
  /* Who may report and read (docs/security.md) */
  const char *agent_auth;            /* token or kubernetes */
  const char *agent_service_account; /* NAMESPACE:NAME */
  const char *agent_audience;
  const char *read_auth;             /* off or kubernetes */
  const char *read_audience;         /* empty = the API server's audiences */
  double auth_cache_ttl;
  long auth_cache_size;
  const char *watch_namespaces;
  /* TLS on the API port (docs/security.md): both paths or neither */
  const char *tls_cert, *tls_key;
  double tls_reload_interval;
  /* A policy setting, parsed by the policy's table (pt_policy_config_vars):
   * main.c copies it from the policy for the store's node states. */
  double node_lost_grace;
  long max_body;
  long max_connections;
  double request_timeout, idle_timeout;
  double report_min_interval;
  long max_nodes;
  double sse_heartbeat;
  long sse_buffer;
  long sse_client_queue;
  bool sse_io_uring;
  long pull_events_max_bytes;
  const char *alert_webhook_url;
  double alert_webhook_timeout;
  double alert_resend;
  long alert_queue;
  const char *ui_dir;
  double shutdown_timeout;
  /* Kubernetes (docs/kubernetes.md) */
  const char *kubernetes;       /* auto, on or off */
  const char *kubeconfig;       /* PULLTRACE_KUBECONFIG */
  const char *kubeconfig_env;   /* KUBECONFIG */
  const char *kube_service_host, *kube_service_port; /* in-cluster, set by Kubernetes */
  const char *kube_context;
  const char *kube_sa_dir;
  double kube_token_refresh;
  double kube_watch_timeout;
  long kube_page_size;
  /* Leader election (docs/ha.md) */
  const char *leader_election;  /* auto, on or off */
  const char *lease_name, *lease_namespace;
  double lease_duration, lease_renew_deadline, lease_retry_period;
  const char *pod_name;         /* POD_NAME: the holderIdentity */
  const char *pod_namespace, *pod_uid; /* POD_NAMESPACE, POD_UID: this server's Pod, for its own Events */
  long kube_events_per_minute, kube_events_per_pod;
  /* History (docs/history.md) */
  const char *data_dir;         /* empty = memory only */
  double history_retention;
  long history_max_bytes;
};

/* The table behind pt_config_load() and --help. */
extern const struct pt_config_var pt_server_config_vars[];

/* Checks the combination of the authentication settings (PULLTRACE_AGENT_AUTH,
 * PULLTRACE_READ_AUTH, ...) once Kubernetes is known to be on (kube_on) or
 * off. Returns 0 or -EINVAL with "VARIABLE: reason" in err. */
int pt_server_auth_validate(const struct pt_server_config *cfg, bool kube_on, char *err, size_t errlen);

struct pt_server;

/* Creates the server around an already created policy (required; the server
 * does not own it: destroy it after pt_server_destroy()). The server's store
 * takes the policy's alerts. Nothing listens yet. NULL without a policy or
 * without memory (then run the loop once to close what was opened). */
struct pt_server *pt_server_create(uv_loop_t *loop, const struct pt_server_config *cfg,
                                   struct pt_policy *policy);
/* With cfg->data_dir: opens the history (server/history.h), puts the pulls
 * that were in the tables back, and continues the event-id sequence. Call
 * after pt_server_create() and before pt_server_listen(). Returns 0 (also
 * without a data directory) or a negative errno with a message in err (a
 * corrupt database, an unwritable directory, ...). */
int pt_server_open_history(struct pt_server *srv, char *err, size_t errlen);
/* Binds the listeners (API, metrics and, with cfg->report_addr, reports).
 * Returns 0 or a negative libuv error with a message in err. */
int pt_server_listen(struct pt_server *srv, char *err, size_t errlen);
int pt_server_http_port(const struct pt_server *srv);
int pt_server_metrics_port(const struct pt_server *srv);
/* The report port, or -1 when reports arrive on the API port. */
int pt_server_report_port(const struct pt_server *srv);
/* Graceful stop: stop accepting, send SSE clients a final comment, and close
 * everything within cfg->shutdown_timeout; the loop then runs out. done (may be
 * NULL) is called when every handle of the server is closed. */
void pt_server_shutdown(struct pt_server *srv, void (*done)(void *ud), void *ud);
/* Frees a server that never listened or whose shutdown completed. */
void pt_server_destroy(struct pt_server *srv);

/* ---- hooks for other parts of the server -------------------------------- */

/* The embedded web UI: a table ending with a NULL name, e.g. from
 * pt_embed_files(... pt_ui ...). index.html is served for "/" and for paths
 * without a file extension (client-side routes). */
void pt_server_set_ui(struct pt_server *srv, const struct pt_embedded_file *files);

/* Readiness checks shown on /readyz besides "policy" (e.g. "kubernetes" once
 * its caches are synced). Up to 8 names; a later call replaces the state. */
void pt_server_set_ready(struct pt_server *srv, const char *name, bool ok, const char *detail);

/* The state tables. */
struct pt_store *pt_server_store(struct pt_server *srv);
/* Where a Kubernetes watcher delivers to this server (kube_link.c): pods and
 * kubelet events into the store, its sync state into the "kubernetes" check
 * of /readyz. */
struct pt_kube_sink;
void pt_server_kube_sink(struct pt_server *srv, struct pt_kube_sink *out);
/* The Kubernetes watcher whose statistics /metrics shows (NULL = none). The
 * server does not own it: set NULL before destroying it. */
struct pt_kube;
void pt_server_set_kube(struct pt_server *srv, struct pt_kube *kube);
/* Whether this replica delivers the side effects that must happen once
 * across replicas (alert webhooks, Kubernetes Events). A server is the
 * leader until told otherwise (leader election off: it is alone); with
 * election on, main makes it a follower until its lease is acquired. holder:
 * the lease's holder as known ("" = nobody). Shown on /readyz ("leader"
 * check, always ok: followers serve everything else) and /metrics
 * (pulltrace_leader). */
void pt_server_set_leader(struct pt_server *srv, bool leader, const char *holder);
/* The lease whose statistics /metrics shows (NULL = none); not owned: set
 * NULL before destroying it. */
struct pt_lease;
void pt_server_set_lease(struct pt_server *srv, struct pt_lease *lease);

#endif
