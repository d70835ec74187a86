/* The history's routes (docs/api.md, "History"): the parameters are checked
 * on the loop, the query runs off it (server/history.h) and the answer is
 * sent when it comes back (a deferred response). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "server/server_impl.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

/* A request waiting for its answer. */
struct pending {
  struct pt_http_conn *conn;
  struct pt_history_query *query;
};

static void on_answer(void *ud, int status, json_t *body)
{
  struct pending *p = ud;
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  pt_server_reply_json(&resp, status, body);
  if (p->conn)
    pt_http_conn_respond(p->conn, &resp);
  pt_http_resp_close(&resp);
  free(p);
}

static void on_conn_closed(void *ud, struct pt_http_conn *conn)
{
  struct pending *p = ud;
  pt_history_query_cancel(p->query);
  free(p);
}

static void on_defer(void *ud, struct pt_http_conn *conn)
{
  struct pending *p = ud;
  p->conn = conn;
  pt_http_conn_set_close_cb(conn, on_conn_closed, p);
}

/* A time: RFC 3339, or a duration meaning that long before now ("24h"). */
static int parse_time(const char *s, double now, double *out)
{
  double d;
  if (pt_time_parse(s, out) == 0)
    return 0;
  if (pt_duration_parse(s, &d) == 0) {
    *out = now - d;
    return 0;
  }
  return -EINVAL;
}

struct params {
  char image[512], node[256], ns[256], pod[512], state[128], since[64], until[64], limit[16], cont[128];
  struct pt_history_filter f;
  size_t limit_n;
  const char *cont_p;
};

/* Fills the filter; answers 400 and returns false on a bad parameter. */
static bool parse_params(const struct pt_http_req *req, struct params *p, struct pt_http_resp *resp)
{
  bool bad = false;
  memset(&p->f, 0, sizeof(p->f));
  p->f.image = pt_server_qparam(req, "image", p->image, sizeof(p->image), &bad);
  p->f.node = pt_server_qparam(req, "node", p->node, sizeof(p->node), &bad);
  p->f.ns = pt_server_qparam(req, "namespace", p->ns, sizeof(p->ns), &bad);
  p->f.pod = pt_server_qparam(req, "pod", p->pod, sizeof(p->pod), &bad);
  const char *st = pt_server_qparam(req, "state", p->state, sizeof(p->state), &bad);
  const char *since = pt_server_qparam(req, "since", p->since, sizeof(p->since), &bad);
  const char *until = pt_server_qparam(req, "until", p->until, sizeof(p->until), &bad);
  const char *limit = pt_server_qparam(req, "limit", p->limit, sizeof(p->limit), &bad);
  p->cont_p = pt_server_qparam(req, "continue", p->cont, sizeof(p->cont), &bad);
  if (bad) {
    pt_server_reply_error(resp, 400, "malformed query string", NULL);
    return false;
  }
  double now = pt_clock_now();
  if (since && parse_time(since, now, &p->f.since) < 0) {
    pt_server_reply_error(resp, 400, "since must be an RFC 3339 time or a duration (e.g. 24h)", "since");
    return false;
  }
  if (until && parse_time(until, now, &p->f.until) < 0) {
    pt_server_reply_error(resp, 400, "until must be an RFC 3339 time or a duration (e.g. 1h)", "until");
    return false;
  }
  if (st) {
    char *save = NULL;
    for (char *tok = strtok_r(p->state, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      enum pt_pull_state s;
      if (pt_pull_state_parse(tok, &s) < 0) {
        pt_server_reply_error(resp, 400, "state must be pulling, stalled, completed, failed or lost", "state");
        return false;
      }
      p->f.state_mask |= 1u << s;
    }
  }
  p->limit_n = DEFAULT_LIMIT;
  if (limit) {
    char *end;
    long n = strtol(limit, &end, 10);
    if (*end || n < 1 || n > MAX_LIMIT) {
      pt_server_reply_error(resp, 400, "limit must be 1 to 1000", "limit");
      return false;
    }
    p->limit_n = (size_t)n;
  }
  return true;
}

void pt_server_history_defer(struct pt_server *srv, struct pt_http_resp *resp, pt_server_history_start start,
                             const void *arg)
{
  struct pending *pd = calloc(1, sizeof(*pd));
  if (pd)
    pd->query = start(srv->history, arg, on_answer, pd);
  if (!pd || !pd->query) {
    free(pd);
    pt_server_reply_error(resp, 503, "out of memory", NULL);
    return;
  }
  resp->defer = on_defer;
  resp->stream_ud = pd;
}

static struct pt_history_query *start_list(struct pt_history *h, const void *arg, pt_history_answer_fn fn, void *ud)
{
  const struct params *p = arg;
  return pt_history_list(h, &p->f, p->limit_n, p->cont_p, fn, ud);
}

static struct pt_history_query *start_alerts(struct pt_history *h, const void *arg, pt_history_answer_fn fn, void *ud)
{
  const struct params *p = arg;
  return pt_history_alerts(h, &p->f, p->limit_n, p->cont_p, fn, ud);
}

static struct pt_history_query *start_stats(struct pt_history *h, const void *arg, pt_history_answer_fn fn, void *ud)
{
  const struct params *p = arg;
  return pt_history_stats_query(h, &p->f, fn, ud);
}

bool pt_server_history_handle(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  const char *path = req->path;
  bool list = strcmp(path, "/api/v1/history") == 0, stats = strcmp(path, "/api/v1/history/stats") == 0,
       alerts = strcmp(path, "/api/v1/history/alerts") == 0;
  if (!list && !stats && !alerts)
    return false;
  if (!srv->history) {
    pt_server_reply_error(resp, 404, "no history: the server runs without PULLTRACE_DATA_DIR", NULL);
    return true;
  }
  struct params p;
  if (!parse_params(req, &p, resp))
    return true;
  pt_server_history_defer(srv, resp, list ? start_list : alerts ? start_alerts : start_stats, &p);
  return true;
}
