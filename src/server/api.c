/* Routes of the API port (REST, SSE, health, UI), of the report port and of
 * the metrics port. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/json_writer.h"
#include "core/prom.h"
#include "server/event.h"
#include "server/list_stream.h"
#include "server/report.h"
#include "server/server_impl.h"
#include "server/ui_dir.h"

#define JSON_TYPE "application/json; charset=utf-8"

const char *const pt_reject_reason_names[PT_REJECT_COUNT] = {
  "unauthorized", "unsupported_media_type", "invalid", "throttled", "too_many_nodes", "out_of_memory",
  "forbidden", "wrong_node", "auth_unavailable", "wrong_port",
};

const char *const pt_read_refusal_names[PT_READ_REFUSAL_COUNT] = {"unauthenticated", "forbidden", "unavailable"};

static void reply_json(struct pt_http_resp *resp, int status, json_t *body)
{
  resp->status = status;
  resp->content_type = JSON_TYPE;
  pt_buf_puts(&resp->headers, "Cache-Control: no-store\r\n");
  char *s = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  pt_buf_puts(&resp->body, s ? s : "{}");
  pt_buf_puts(&resp->body, "\n");
  free(s);
  json_decref(body);
}

static void reply_error(struct pt_http_resp *resp, int status, const char *msg, const char *field)
{
  pt_http_resp_error(resp, status, msg, field);
  pt_buf_puts(&resp->headers, "Cache-Control: no-store\r\n");
}

void pt_server_reply_json(struct pt_http_resp *resp, int status, json_t *body)
{
  reply_json(resp, status, body);
}

void pt_server_reply_error(struct pt_http_resp *resp, int status, const char *msg, const char *field)
{
  reply_error(resp, status, msg, field);
}

/* A 200 JSON answer written member by member: opens its object (the caller
 * adds members) and closes it. */
static void json_answer_open(struct pt_http_resp *resp, struct pt_jsonw *w)
{
  resp->status = 200;
  resp->content_type = JSON_TYPE;
  pt_buf_puts(&resp->headers, "Cache-Control: no-store\r\n");
  pt_jsonw_init(w, &resp->body);
  pt_jsonw_object_open(w);
}

static void json_answer_close(struct pt_http_resp *resp, struct pt_jsonw *w)
{
  pt_jsonw_object_close(w);
  pt_buf_puts(&resp->body, "\n");
  if (resp->body.oom) {
    pt_buf_reset(&resp->body);
    reply_error(resp, 500, "out of memory", NULL);
  }
}

/* Constant-time comparison: the time depends only on the lengths. */
static bool token_equal(const char *given, size_t glen, const char *want)
{
  size_t wlen = strlen(want);
  unsigned char diff = (unsigned char)(glen != wlen);
  for (size_t i = 0; i < wlen; i++)
    diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? given[i] : 0);
  return diff == 0;
}

static bool authorized(struct pt_server *srv, const struct pt_http_req *req)
{
  const char *want = srv->cfg.agent_token;
  if (!want || !*want)
    return true;
  const char *h = pt_http_req_header(req, "authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return false;
  const char *tok = h + 7;
  while (*tok == ' ')
    tok++;
  return token_equal(tok, strlen(tok), want);
}

/* Answers 401 and returns true when the report's shared token is wrong. */
static bool refuse_unauthorized(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  if (authorized(srv, req))
    return false;
  srv->reports_rejected[PT_REJECT_UNAUTHORIZED]++;
  pt_buf_puts(&resp->headers, "WWW-Authenticate: Bearer realm=\"pulltrace\"\r\n");
  reply_error(resp, 401, "missing or invalid bearer token", NULL);
  return true;
}

static void handle_report(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp,
                          const struct pt_identity *who)
{
  if (!who && refuse_unauthorized(srv, req, resp))
    return;
  const char *ct = pt_http_req_header(req, "content-type");
  if (!ct || strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
    srv->reports_rejected[PT_REJECT_UNSUPPORTED_MEDIA]++;
    reply_error(resp, 415, "content type must be application/json", NULL);
    return;
  }
  struct pt_report r;
  char err[256], field[160];
  if (pt_report_parse(req->body, req->body_len, &r, err, sizeof(err), field, sizeof(field)) < 0) {
    srv->reports_rejected[PT_REJECT_INVALID]++;
    PT_LOG_DEBUG("report rejected", "{s:s,s:s,s:s}", "peer", req->peer, "error", err, "field", field);
    reply_error(resp, 400, err, *field ? field : NULL);
    return;
  }
  if (!pt_server_agent_may_report(srv, who, r.node, resp)) {
    pt_report_free(&r);
    return;
  }
  double now = pt_clock_now();
  pt_report_shift(&r, pt_store_clock_offset(srv->store, r.node, now - r.timestamp));
  enum pt_apply_result res = pt_store_apply_report(srv->store, &r, now);
  switch (res) {
  case PT_APPLY_APPLIED: {
    /* The answer to every report of every agent: written, not built. */
    srv->reports_applied++;
    struct pt_jsonw w;
    json_answer_open(resp, &w);
    pt_jsonw_key(&w, "status");
    pt_jsonw_string(&w, "applied");
    pt_jsonw_key(&w, "pulls");
    pt_jsonw_int(&w, (int64_t)r.npulls);
    json_answer_close(resp, &w);
    break;
  }
  case PT_APPLY_STALE:
    srv->reports_stale++;
    reply_json(resp, 200, json_pack("{s:s,s:s}", "status", "ignored", "reason", "stale seq"));
    break;
  case PT_APPLY_THROTTLED: {
    srv->reports_rejected[PT_REJECT_THROTTLED]++;
    double ra = pt_store_retry_after(srv->store, r.node, now);
    pt_buf_printf(&resp->headers, "Retry-After: %d\r\n", (int)ceil(ra > 0 ? ra : 1));
    reply_error(resp, 429, "too many reports from this node", "nodeName");
    break;
  }
  case PT_APPLY_FULL:
    srv->reports_rejected[PT_REJECT_TOO_MANY_NODES]++;
    reply_error(resp, 503, "too many nodes", "nodeName");
    break;
  case PT_APPLY_NOMEM:
    /* Nothing was applied: the agent sends its full state again. */
    srv->reports_rejected[PT_REJECT_NO_MEMORY]++;
    pt_buf_puts(&resp->headers, "Retry-After: 1\r\n");
    reply_error(resp, 503, "out of memory: report not applied", NULL);
    break;
  }
  pt_report_free(&r);
}

/* Query parameter into buf; returns NULL when absent, sets *bad on errors. */
static const char *qparam(const struct pt_http_req *req, const char *key, char *buf, size_t len, bool *bad)
{
  int r = pt_http_query_get(req->query, key, buf, len);
  if (r < 0)
    *bad = true;
  return r == 1 && *buf ? buf : NULL;
}

/* ---- lists, one page at a time ----------------------------------------------
 *
 * `limit` (1 to PT_LIST_MAX_LIMIT, PT_LIST_DEFAULT_LIMIT when absent) and
 * `continue` as the Kubernetes API has them: a page bounds the time one
 * request holds the loop however large the tables are. The continue token
 * is opaque to clients: a prefix naming the list and the position after
 * which the next page starts (hex of a pull's seq, or of a node's name). */

#define PT_LIST_DEFAULT_LIMIT 500
#define PT_LIST_MAX_LIMIT 1000

/* limit and continue; false after replying 400. */
/* The paging parameters (limit, continue) of a list; bad says whether the
 * list's own parameters were malformed. Answers 400 and returns false when
 * any of them is. */
static bool page_params(const struct pt_http_req *req, struct pt_http_resp *resp, bool bad, size_t *limit,
                        char *cont, size_t contlen, const char **token)
{
  char lim[32];
  const char *l = qparam(req, "limit", lim, sizeof(lim), &bad);
  *token = qparam(req, "continue", cont, contlen, &bad);
  if (bad) {
    reply_error(resp, 400, "malformed query string", NULL);
    return false;
  }
  *limit = PT_LIST_DEFAULT_LIMIT;
  if (l) {
    char *end;
    errno = 0;
    long v = strtol(l, &end, 10);
    if (errno || *end || v < 1 || v > PT_LIST_MAX_LIMIT) {
      reply_error(resp, 400, "limit must be an integer from 1 to 1000", "limit");
      return false;
    }
    *limit = (size_t)v;
  }
  return true;
}

static void list_open(struct pt_jsonw *w, struct pt_http_resp *resp, const char *member)
{
  json_answer_open(resp, w);
  pt_jsonw_key(w, "apiVersion");
  pt_jsonw_string(w, "v1");
  pt_jsonw_key(w, "generatedAt");
  pt_jsonw_time(w, pt_clock_now());
  pt_jsonw_key(w, member);
}

/* Closes the list document: "metadata" with "continue" when more items
 * follow, as the Kubernetes API and /api/v1/history have it. */
static void list_close(struct pt_jsonw *w, struct pt_http_resp *resp, const struct pt_buf *next)
{
  pt_list_metadata(w, next->len ? next->data : NULL);
  json_answer_close(resp, w);
}

const char *pt_server_qparam(const struct pt_http_req *req, const char *key, char *buf, size_t len, bool *bad)
{
  return qparam(req, key, buf, len, bad);
}

static void handle_pulls(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  char node[256], ns[256], image[512], state[128], cont[1300];
  bool bad = false;
  struct pt_pull_filter f = {0};
  f.node = qparam(req, "node", node, sizeof(node), &bad);
  f.ns = qparam(req, "namespace", ns, sizeof(ns), &bad);
  f.image = qparam(req, "image", image, sizeof(image), &bad);
  const char *st = qparam(req, "state", state, sizeof(state), &bad);
  size_t limit;
  const char *token;
  if (!page_params(req, resp, bad, &limit, cont, sizeof(cont), &token))
    return;
  struct pt_pull_cursor after = {0};
  if (token && pt_list_pulls_token_read(token, &after) < 0) {
    reply_error(resp, 400, "malformed continue token", "continue");
    return;
  }
  if (st) {
    char *save = NULL;
    for (char *tok = strtok_r(state, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      enum pt_pull_state s;
      if (pt_pull_state_parse(tok, &s) < 0) {
        reply_error(resp, 400, "state must be pulling, stalled, completed, failed or lost", "state");
        return;
      }
      f.state_mask |= 1u << s;
    }
  }
  /* Written in chunks, one per loop iteration (list_stream.c). */
  resp->status = 200;
  resp->content_type = JSON_TYPE;
  pt_buf_puts(&resp->headers, "Cache-Control: no-store\r\n");
  if (req->head)
    return;
  resp->stream_ud = pt_list_stream_new(srv->loop, srv->store, &f, &after, limit);
  if (!resp->stream_ud) {
    reply_error(resp, 500, "out of memory", NULL);
    return;
  }
  resp->stream_start = pt_list_stream_start;
}

static void handle_pull(struct pt_server *srv, const char *raw_id, struct pt_http_resp *resp)
{
  char id[1024];
  if (pt_http_url_decode(raw_id, strlen(raw_id), id, sizeof(id), false) < 0) {
    reply_error(resp, 400, "malformed pull id", "id");
    return;
  }
  const struct pt_pull *p = pt_store_pull(srv->store, id);
  if (!p) {
    reply_error(resp, 404, "pull not found", "id");
    return;
  }
  struct pt_jsonw w;
  json_answer_open(resp, &w);
  pt_jsonw_key(&w, "apiVersion");
  pt_jsonw_string(&w, "v1");
  pt_jsonw_key(&w, "pull");
  pt_store_pull_write(&w, p, true, pt_clock_now());
  json_answer_close(resp, &w);
}

static void handle_nodes(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  char node[256], cont[600];
  bool bad = false;
  const char *n = qparam(req, "node", node, sizeof(node), &bad);
  size_t limit;
  const char *token;
  if (!page_params(req, resp, bad, &limit, cont, sizeof(cont), &token))
    return;
  unsigned char after[300];
  if (token && pt_list_token_read(token, "n1.", after, sizeof(after)) < 0) {
    reply_error(resp, 400, "malformed continue token", "continue");
    return;
  }
  struct pt_jsonw w;
  list_open(&w, resp, "nodes");
  char *next = NULL;
  pt_store_nodes_write(srv->store, &w, n, token ? (const char *)after : NULL, limit, &next);
  struct pt_buf tok;
  pt_buf_init(&tok);
  if (next)
    pt_list_token_write(&tok, "n1.", next, strlen(next));
  free(next);
  list_close(&w, resp, &tok);
  pt_buf_close(&tok);
}

/* The snapshot holds what the subscriber's types ask for: the pulls for
 * pull.* events, the nodes for node.updated, the rollouts in flight for
 * rollout.summary (all three without types). */
char *pt_server_snapshot(void *ud, const struct pt_hub_filter *filter)
{
  struct pt_server *srv = ud;
  struct pt_pull_filter f = {.node = filter->node, .ns = filter->ns, .image = filter->image};
  double now = pt_clock_now();
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  pt_event_open(&w, "snapshot", now);
  struct pt_pull_cursor at = {0};
  bool more;
  char *next_node = NULL;
  pt_jsonw_key(&w, "pulls");
  if (pt_hub_filter_wants(filter, "pull.progress")) {
    pt_store_pulls_write(srv->store, &w, &f, &at, 0, now, &more);
  } else {
    pt_jsonw_array_open(&w);
    pt_jsonw_array_close(&w);
  }
  pt_jsonw_key(&w, "nodes");
  if (pt_hub_filter_wants(filter, "node.updated")) {
    pt_store_nodes_write(srv->store, &w, filter->node, NULL, 0, &next_node);
  } else {
    pt_jsonw_array_open(&w);
    pt_jsonw_array_close(&w);
  }
  pt_jsonw_key(&w, "rollouts");
  if (pt_hub_filter_wants(filter, "rollout.summary")) {
    pt_store_rollouts_write(srv->store, &w, filter->image);
  } else {
    pt_jsonw_array_open(&w);
    pt_jsonw_array_close(&w);
  }
  pt_jsonw_object_close(&w);
  if (b.oom) {
    pt_buf_close(&b);
    return NULL;
  }
  return pt_buf_steal(&b, NULL);
}

/* "pull.*,rollout.summary" into a NUL-separated list ending with "";
 * false when a name is not one an event type can have. */
static bool parse_types(char *s, size_t cap)
{
  size_t len = strlen(s);
  if (len + 2 > cap)
    return false;
  s[len + 1] = '\0';
  for (char *t = s; *t; t += strlen(t) + 1) {
    char *comma = strchr(t, ',');
    if (comma)
      *comma = '\0';
    size_t n = strlen(t);
    if (n == 0 || strspn(t, "abcdefghijklmnopqrstuvwxyz.*") != n || (strchr(t, '*') && strchr(t, '*') != t + n - 1))
      return false;
  }
  return true;
}

static void handle_events(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  char node[256], ns[256], image[512], types[256], last[64];
  bool bad = false;
  struct pt_hub_filter f = {0};
  f.node = (char *)qparam(req, "node", node, sizeof(node), &bad);
  f.ns = (char *)qparam(req, "namespace", ns, sizeof(ns), &bad);
  f.image = (char *)qparam(req, "image", image, sizeof(image), &bad);
  f.types = (char *)qparam(req, "types", types, sizeof(types) - 1, &bad);
  const char *l = pt_http_req_header(req, "last-event-id");
  if (!l)
    l = qparam(req, "lastEventId", last, sizeof(last), &bad);
  if (bad) {
    reply_error(resp, 400, "malformed query string", NULL);
    return;
  }
  if (f.types && !parse_types(types, sizeof(types))) {
    reply_error(resp, 400, "types must be a comma-separated list of event types (a prefix may end with .*)",
                "types");
    return;
  }
  if (srv->shutting_down) {
    reply_error(resp, 503, "shutting down", NULL);
    return;
  }
  resp->status = 200;
  resp->content_type = "text/event-stream; charset=utf-8";
  pt_buf_puts(&resp->headers, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
  if (req->head)
    return;
  resp->stream_ud = pt_hub_subscription_new(srv->hub, &f, l);
  if (!resp->stream_ud) {
    reply_error(resp, 500, "out of memory", NULL);
    return;
  }
  resp->stream_start = pt_hub_stream_start;
}

static void handle_readyz(struct pt_server *srv, struct pt_http_resp *resp)
{
  json_t *checks = json_array();
  bool ok = true;
  struct pt_policy_status st;
  pt_policy_status(srv->policy, &st);
  char detail[2300];
  /* Running the defaults after a failed start is ready: they are a complete
   * policy, and failing readiness would take the API, the UI and the agents'
   * reports away over a script error (docs/policy.md). The detail says it. */
  if (st.defaults_only)
    snprintf(detail, sizeof(detail), "%zu scripts loaded; the policy directory failed to load at startup, "
             "running the built-in defaults: %s", st.n_scripts, st.error);
  else if (st.last_reload == 0)
    snprintf(detail, sizeof(detail), "%zu scripts loaded; last reload failed, old policy kept: %s", st.n_scripts,
             st.error);
  else
    snprintf(detail, sizeof(detail), "%zu scripts loaded", st.n_scripts);
  json_t *c = json_pack("{s:s,s:b,s:s}", "name", "policy", "ok", st.loaded, "detail", detail);
  json_object_set_new(c, "status", pt_policy_status_json(srv->policy));
  json_array_append_new(checks, c);
  ok &= st.loaded;
  for (size_t i = 0; i < srv->nready; i++) {
    json_array_append_new(checks, json_pack("{s:s,s:b,s:s}", "name", srv->ready[i].name, "ok",
                                            srv->ready[i].ok, "detail", srv->ready[i].detail));
    ok &= srv->ready[i].ok;
  }
  if (srv->history) {
    /* Degraded history does not make the server unready: the live view
     * works, and taking the replica out of service would lose it too. */
    struct pt_history_stats hs;
    pt_history_stats(srv->history, &hs);
    char hd[400];
    snprintf(hd, sizeof(hd), hs.degraded ? "degraded: %s" : "ok", hs.last_error);
    json_array_append_new(checks, json_pack("{s:s,s:b,s:s,s:b}", "name", "history", "ok", true, "detail", hd,
                                            "degraded", hs.degraded));
  }
  if (srv->shutting_down)
    ok = false;
  reply_json(resp, ok ? 200 : 503,
             json_pack("{s:s,s:b,s:o}", "status", ok ? "ready" : "not ready", "leader", srv->leader, "checks", checks));
}

/* ---- UI ------------------------------------------------------------------ */

static const char *mime_of(const char *name)
{
  const char *dot = strrchr(name, '.');
  if (!dot)
    return "application/octet-stream";
  static const char *const map[][2] = {
    {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
    {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
    {".ico", "image/x-icon"}, {".woff2", "font/woff2"}, {".woff", "font/woff"},
    {".txt", "text/plain; charset=utf-8"}, {".map", "application/json"}, {".webmanifest", "application/manifest+json"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcasecmp(dot, map[i][0]) == 0)
      return map[i][1];
  return "application/octet-stream";
}

static void serve_bytes(const struct pt_http_req *req, struct pt_http_resp *resp, const char *name,
                        const void *data, size_t size, uint64_t etag)
{
  char tag[32];
  snprintf(tag, sizeof(tag), "\"%016" PRIx64 "\"", etag);
  bool immutable = strncmp(name, "assets/", 7) == 0;
  pt_buf_printf(&resp->headers, "ETag: %s\r\nCache-Control: %s\r\n", tag,
                immutable ? "public, max-age=31536000, immutable" : "no-cache");
  const char *inm = pt_http_req_header(req, "if-none-match");
  if (inm && strstr(inm, tag)) {
    resp->status = 304;
    return;
  }
  resp->status = 200;
  resp->content_type = mime_of(name);
  pt_buf_append(&resp->body, data, size);
}

static bool safe_rel_path(const char *p)
{
  if (strstr(p, "..") || strchr(p, '\\') || *p == '/')
    return false;
  return true;
}

/* A file of a UI table (embedded, or the snapshot of PULLTRACE_UI_DIR). */
static bool serve_file(const struct pt_embedded_file *files, const uint64_t *etags,
                       const struct pt_http_req *req, struct pt_http_resp *resp, const char *rel)
{
  for (size_t i = 0; files && files[i].name; i++) {
    if (strcmp(files[i].name, rel) == 0) {
      serve_bytes(req, resp, rel, files[i].data, files[i].size, etags ? etags[i] : 0);
      return true;
    }
  }
  return false;
}

static const char placeholder[] =
  "<!doctype html><html><head><meta charset=\"utf-8\"><title>Pulltrace</title></head><body>"
  "<h1>Pulltrace</h1><p>The web UI is not built into this binary. The API is here:</p><ul>"
  "<li><a href=\"/api/v1/pulls\">/api/v1/pulls</a></li><li><a href=\"/api/v1/nodes\">/api/v1/nodes</a></li>"
  "<li><a href=\"/api/v1/events\">/api/v1/events</a> (Server-Sent Events)</li>"
  "<li><a href=\"/readyz\">/readyz</a></li></ul></body></html>\n";

static void handle_ui(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  char rel[1024];
  const char *p = req->path + 1;
  if (pt_http_url_decode(p, strlen(p), rel, sizeof(rel), false) < 0 || !safe_rel_path(rel)) {
    reply_error(resp, 400, "bad path", NULL);
    return;
  }
  if (!*rel)
    snprintf(rel, sizeof(rel), "index.html");
  bool has_ext = strchr(strrchr(rel, '/') ? strrchr(rel, '/') : rel, '.') != NULL;
  bool from_dir = srv->cfg.ui_dir && *srv->cfg.ui_dir;
  bool have_ui = from_dir || srv->ui;
  const uint64_t *etags = srv->ui_etags;
  const struct pt_embedded_file *files = srv->ui;
  if (from_dir) {
    /* The directory is read on the thread pool; only its first read can
     * still be under way. */
    files = pt_ui_dir_files(srv->ui_dir, &etags);
    if (!files) {
      pt_buf_puts(&resp->headers, "Retry-After: 1\r\n");
      reply_error(resp, 503, "the web UI directory is being read", NULL);
      return;
    }
  }
  if (serve_file(files, etags, req, resp, rel) || (!has_ext && serve_file(files, etags, req, resp, "index.html")))
    return;
  if (!have_ui && strcmp(rel, "index.html") == 0) {
    resp->status = 200;
    resp->content_type = "text/html; charset=utf-8";
    pt_buf_puts(&resp->headers, "Cache-Control: no-cache\r\n");
    pt_buf_puts(&resp->body, placeholder);
    return;
  }
  reply_error(resp, 404, "not found", NULL);
}

/* ---- routing --------------------------------------------------------------- */

static bool method_is(const struct pt_http_req *req, const char *m)
{
  return strcmp(req->method, m) == 0;
}

static bool get_like(const struct pt_http_req *req)
{
  return method_is(req, "GET") || method_is(req, "HEAD");
}

static void not_allowed(struct pt_http_resp *resp, const char *allow)
{
  pt_buf_printf(&resp->headers, "Allow: %s\r\n", allow);
  reply_error(resp, 405, "method not allowed", NULL);
}

static bool is_report(const struct pt_http_req *req)
{
  return strcmp(req->path, "/api/v1/report") == 0;
}

/* With a report port, the API port takes no reports: a NetworkPolicy admits
 * only agents to that port, and an agent still configured with the API
 * port's URL is told where to go instead of being accepted past the policy. */
static void refuse_wrong_port(struct pt_server *srv, struct pt_http_resp *resp)
{
  char msg[256];
  srv->reports_rejected[PT_REJECT_WRONG_PORT]++;
  snprintf(msg, sizeof(msg), "reports are accepted on the report port (%d, PULLTRACE_REPORT_ADDR), not on this one: "
           "point the agent's PULLTRACE_SERVER_URL there", pt_server_report_port(srv));
  reply_error(resp, 421, msg, NULL);
}

void pt_server_report_check_head(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct pt_server *srv = ud;
  if (!is_report(req) || !method_is(req, "POST"))
    return;
  /* A Kubernetes review answers later: such a report's body is read meanwhile. */
  if (!srv->agent_authn)
    refuse_unauthorized(srv, req, resp);
}

void pt_server_api_check_head(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct pt_server *srv = ud;
  if (srv->report && is_report(req))
    return refuse_wrong_port(srv, resp);
  pt_server_report_check_head(srv, req, resp);
}

/* POST /api/v1/report, on whichever port takes reports. */
static void route_report(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  if (!method_is(req, "POST"))
    return not_allowed(resp, "POST");
  if (srv->agent_authn)
    return pt_server_auth_run(srv, srv->agent_authn, req, resp, handle_report);
  handle_report(srv, req, resp, NULL);
}

void pt_server_report_handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct pt_server *srv = ud;
  if (is_report(req))
    return route_report(srv, req, resp);
  if (strcmp(req->path, "/healthz") == 0 && get_like(req))
    return reply_json(resp, 200, json_pack("{s:s}", "status", "ok"));
  reply_error(resp, 404, "not found: this port takes only agent reports (POST /api/v1/report)", NULL);
}

static void route_read(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp,
                       const struct pt_identity *who);

void pt_server_api_handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct pt_server *srv = ud;
  const char *path = req->path;
  if (is_report(req))
    return srv->report ? refuse_wrong_port(srv, resp) : route_report(srv, req, resp);
  if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
    if (!get_like(req))
      return not_allowed(resp, "GET, HEAD");
    if (strcmp(path, "/healthz") == 0)
      return reply_json(resp, 200, json_pack("{s:s}", "status", "ok"));
    if (strcmp(path, "/readyz") == 0)
      return handle_readyz(srv, resp);
    if (srv->read_authn)
      return pt_server_auth_run(srv, srv->read_authn, req, resp, route_read);
    return route_read(srv, req, resp, NULL);
  }
  if (!get_like(req))
    return not_allowed(resp, "GET, HEAD");
  if (path[0] != '/') {
    reply_error(resp, 400, "bad request target", NULL);
    return;
  }
  handle_ui(srv, req, resp);
}

/* The read API (GET /api/...), behind PULLTRACE_READ_AUTH when it is on. */
static void route_read(struct pt_server *srv, const struct pt_http_req *req, struct pt_http_resp *resp,
                       const struct pt_identity *who)
{
  const char *path = req->path;
  (void)who;
  if (strcmp(path, "/api/v1/pulls") == 0)
    return handle_pulls(srv, req, resp);
  if (strncmp(path, "/api/v1/pulls/", 14) == 0 && path[14]) {
    if (pt_server_pull_events_handle(srv, path + 14, resp))
      return;
    return handle_pull(srv, path + 14, resp);
  }
  if (strcmp(path, "/api/v1/nodes") == 0)
    return handle_nodes(srv, req, resp);
  if (strcmp(path, "/api/v1/events") == 0)
    return handle_events(srv, req, resp);
  if (strncmp(path, "/api/v1/history", 15) == 0 && pt_server_history_handle(srv, req, resp))
    return;
  return reply_error(resp, 404, "not found", NULL);
}

void pt_server_metrics_handle(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct pt_server *srv = ud;
  if (strcmp(req->path, "/metrics") == 0) {
    if (!get_like(req))
      return not_allowed(resp, "GET, HEAD");
    resp->status = 200;
    resp->content_type = PT_PROM_CONTENT_TYPE;
    pt_server_metrics_render(srv, &resp->body);
    return;
  }
  if (strcmp(req->path, "/healthz") == 0 && get_like(req))
    return reply_json(resp, 200, json_pack("{s:s}", "status", "ok"));
  reply_error(resp, 404, "not found", NULL);
}
