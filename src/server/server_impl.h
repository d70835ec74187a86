/* Private to src/server: the server object shared by server.c, api.c and
 * metrics.c. */
#ifndef PT_SERVER_SERVER_IMPL_H
#define PT_SERVER_SERVER_IMPL_H

#include <stdint.h>

#include "core/buf.h"
#include "core/http_server.h"
#include "core/loop_metrics.h"
#include "core/httpc.h"
#include "core/tls.h"
#include "server/alerts.h"
#include "server/authn.h"
#include "server/event.h"
#include "server/history.h"
#include "server/typical.h"
#include "server/hub.h"
#include "server/kube_events.h"
#include "server/outbox.h"
#include "server/pull_events.h"
#include "server/server.h"
#include "server/store.h"

enum pt_reject_reason {
  PT_REJECT_UNAUTHORIZED = 0,
  PT_REJECT_UNSUPPORTED_MEDIA,
  PT_REJECT_INVALID,
  PT_REJECT_THROTTLED,
  PT_REJECT_TOO_MANY_NODES,
  PT_REJECT_NO_MEMORY,
  PT_REJECT_FORBIDDEN,        /* not the agents' service account, or its node unknown */
  PT_REJECT_WRONG_NODE,       /* a report for another node than the token's */
  PT_REJECT_AUTH_UNAVAILABLE, /* the token could not be checked now (503) */
  PT_REJECT_WRONG_PORT,       /* sent to the API port while reports have a port of their own (421) */
  PT_REJECT_COUNT,
};

/* Why a reader was refused (PULLTRACE_READ_AUTH=kubernetes). */
enum pt_read_refusal {
  PT_READ_UNAUTHENTICATED = 0,
  PT_READ_FORBIDDEN,
  PT_READ_UNAVAILABLE,
  PT_READ_REFUSAL_COUNT,
};
extern const char *const pt_read_refusal_names[PT_READ_REFUSAL_COUNT];
extern const char *const pt_reject_reason_names[PT_REJECT_COUNT];

#define PT_MAX_READY 8

struct pt_ready_check {
  char name[32];
  bool ok;
  char detail[256];
};

struct pt_server {
  uv_loop_t *loop;
  struct pt_server_config cfg;
  struct pt_policy *policy;
  struct pt_store *store;
  struct pt_hub *hub;
  struct pt_buf event_text; /* the event being published (reused: no allocation per event) */
  struct pt_alerts *alerts;
  struct pt_pull_events *pull_events; /* each pull's own past (GET /api/v1/pulls/{id}/events) */
  struct pt_buf nss; /* scratch: an event's namespaces for the hub, reused */
  struct pt_http_server *http, *metrics;
  struct pt_http_server *report; /* NULL without PULLTRACE_REPORT_ADDR: reports arrive on http */
  struct pt_httpc *httpc;
  struct pt_tls_ctx *tls; /* NULL without PULLTRACE_TLS_CERT */
  struct pt_kube *kube;   /* NULL when Kubernetes is off; owned by main */
  struct pt_lease *lease; /* NULL when leader election is off; owned by main */
  bool leader;            /* delivers side effects (pt_server_set_leader) */
  struct pt_kube_events *kube_events; /* NULL when PULLTRACE_KUBE_EVENTS_PER_MINUTE is 0 */
  struct pt_history *history; /* NULL without PULLTRACE_DATA_DIR */
  struct pt_typical *typical; /* images' usual pull times, from the history (NULL without) */
  /* The policy's load state as last told in Kubernetes Events (policy_events.c). */
  struct server_policy_events {
    bool started;          /* the startup state was looked at */
    bool failing;          /* the last load told about failed */
    double seen_reload_at; /* the policy status's last_reload_at looked at */
    bool pending;          /* an Event waits for a Kubernetes connection and the lead */
    char reason[32];
    char type[8];
    char note[1024];
    double at;
  } policy_events;
  struct pt_outbox outbox;    /* events waiting for the history's commit */
  uint64_t outbox_released_late; /* events sent before their commit (a slow disk) */
  uv_timer_t tick;
  uv_timer_t sweep;       /* the rest of the store's tick, a slice per iteration */
  uv_timer_t publish;     /* the rollout summaries, a slice per iteration */
  double summaries_at;    /* pt_clock_mono() when the last pass of summaries began */
  struct pt_loop_metrics loop_metrics;
  bool loop_metrics_on;
  uv_timer_t shutdown_timer;
  int handles_open;
  bool shutting_down;
  double shutdown_started;
  void (*shutdown_done)(void *);
  void *shutdown_ud;
  const struct pt_embedded_file *ui;
  struct pt_ui_dir *ui_dir; /* PULLTRACE_UI_DIR, read off the loop; NULL when unset */
  uint64_t *ui_etags;
  char default_headers[512];
  struct pt_ready_check ready[PT_MAX_READY];
  size_t nready;
  double started_at;

  /* Token checks (api_auth.c); NULL when the mode is not kubernetes. */
  struct pt_authn *agent_authn, *read_authn;
  char agent_sa[512];
  const char *agent_sa_ns, *agent_sa_name; /* in agent_sa */

  /* counters */
  uint64_t reports_applied, reports_stale;
  uint64_t reports_rejected[PT_REJECT_COUNT];
  uint64_t reads_refused[PT_READ_REFUSAL_COUNT];
};

/* api.c */
void pt_server_api_handle(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
/* Refuses a request from its head, before its body is read (the http
 * server's check_head): an agent report without a valid token gets its 401
 * before it uploads the report, and one sent to the API port while reports
 * have a port of their own its 421. */
void pt_server_api_check_head(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
/* The report port (PULLTRACE_REPORT_ADDR): POST /api/v1/report and /healthz. */
void pt_server_report_handle(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
void pt_server_report_check_head(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
void pt_server_metrics_handle(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
char *pt_server_snapshot(void *srv, const struct pt_hub_filter *filter);
/* For the routes outside api.c: the JSON answers and the query parameters
 * of api.c (pt_server_qparam: NULL when absent, *bad set when malformed). */
void pt_server_reply_json(struct pt_http_resp *resp, int status, json_t *body);
void pt_server_reply_error(struct pt_http_resp *resp, int status, const char *msg, const char *field);
const char *pt_server_qparam(const struct pt_http_req *req, const char *key, char *buf, size_t len, bool *bad);
/* api_history.c: /api/v1/history...; false when the path is not one of them. */
bool pt_server_history_handle(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
/* Starts a history query (arg: the route's parameters) whose answer goes to
 * fn(ud, ...). */
typedef struct pt_history_query *(*pt_server_history_start)(struct pt_history *h, const void *arg,
                                                            pt_history_answer_fn fn, void *ud);
/* Answers the request with what the query start() starts answers, once it
 * returns (a deferred response; 503 without memory). */
void pt_server_history_defer(struct pt_server *srv, struct pt_http_resp *resp, pt_server_history_start start,
                             const void *arg);
/* api_pull_events.c: GET /api/v1/pulls/{id}/events, given what follows
 * /api/v1/pulls/; false when the path is not that route. */
bool pt_server_pull_events_handle(struct pt_server *srv, const char *raw, struct pt_http_resp *resp);
/* api_auth.c: who may report and who may read (docs/security.md). */
typedef void (*pt_server_route)(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp,
                                const struct pt_identity *who);
/* Creates the token checks the configuration asks for: 0, -ENOMEM. */
int pt_server_auth_init(struct pt_server *srv);
void pt_server_auth_close(struct pt_server *srv);
/* The watcher is going away: reviews in flight end (503). */
void pt_server_auth_kube_gone(struct pt_server *srv);
/* Runs route(srv, req, resp, who) once the request's bearer token passes the
 * check a (answering later when the API server must be asked); otherwise
 * answers 401, 403 or 503. */
void pt_server_auth_run(struct pt_server *srv, struct pt_authn *a, const struct pt_http_req *req,
                        struct pt_http_resp *resp, pt_server_route route);
/* The agent rule: true when who (NULL = no identity check) may report for
 * node; otherwise answers 403 (or 503 while pods are still listed). */
bool pt_server_agent_may_report(struct pt_server *srv, const struct pt_identity *who, const char *node,
                                struct pt_http_resp *resp);
/* policy_events.c: tells, in a Kubernetes Event on this server's own Pod,
 * that the policy failed to load (at startup or on a reload) and that it
 * loaded again; called every tick. */
void pt_server_policy_events(struct pt_server *srv, double now);
/* metrics.c */
void pt_server_metrics_render(struct pt_server *srv, struct pt_buf *out);

#endif
