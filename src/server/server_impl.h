/* Private to src/server: the server object shared by server.c, api.c and
 * metrics.c. */
#ifndef PT_SERVER_SERVER_IMPL_H
#define PT_SERVER_SERVER_IMPL_H

#include <stdint.h>

#include "core/buf.h"
#include "core/http_server.h"
#include "core/httpc.h"
#include "server/alerts.h"
#include "server/event.h"
#include "server/history.h"
#include "server/hub.h"
#include "server/kube_events.h"
#include "server/outbox.h"
#include "server/server.h"
#include "server/store.h"

enum pt_reject_reason {
  PT_REJECT_UNAUTHORIZED = 0,
  PT_REJECT_UNSUPPORTED_MEDIA,
  PT_REJECT_INVALID,
  PT_REJECT_THROTTLED,
  PT_REJECT_TOO_MANY_NODES,
  PT_REJECT_NO_MEMORY,
  PT_REJECT_COUNT,
};
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
  struct pt_alerts *alerts;
  struct pt_buf nss; /* scratch: an event's namespaces for the hub, reused */
  struct pt_event_time event_time;
  struct pt_http_server *http, *metrics;
  struct pt_httpc *httpc;
  struct pt_kube *kube;   /* NULL when Kubernetes is off; owned by main */
  struct pt_kube_events *kube_events; /* NULL when PULLTRACE_KUBE_EVENTS_PER_MINUTE is 0 */
  struct pt_history *history; /* NULL without PULLTRACE_DATA_DIR */
  struct pt_outbox outbox;    /* events waiting for the history's commit */
  uint64_t outbox_released_late; /* events sent before their commit (a slow disk) */
  uv_timer_t tick;
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

  /* counters */
  uint64_t reports_applied, reports_stale;
  uint64_t reports_rejected[PT_REJECT_COUNT];
};

/* api.c */
void pt_server_api_handle(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
void pt_server_metrics_handle(void *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
char *pt_server_snapshot(void *srv, const char *node, const char *ns);
/* For the routes outside api.c: the JSON answers and the query parameters
 * of api.c (pt_server_qparam: NULL when absent, *bad set when malformed). */
void pt_server_reply_json(struct pt_http_resp *resp, int status, json_t *body);
void pt_server_reply_error(struct pt_http_resp *resp, int status, const char *msg, const char *field);
const char *pt_server_qparam(const struct pt_http_req *req, const char *key, char *buf, size_t len, bool *bad);
/* api_history.c: /api/v1/history...; false when the path is not one of them. */
bool pt_server_history_handle(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp);
/* metrics.c */
void pt_server_metrics_render(struct pt_server *srv, struct pt_buf *out);

#endif
