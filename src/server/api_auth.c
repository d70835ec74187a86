/* Who may report and who may read (docs/security.md): the bearer token of a
 * request checked by the Kubernetes API server (server/authn.h), the agent
 * rule "a report names the node of the token's pod", and the answers 401,
 * 403 and 503 when a request does not pass. A token not in the cache makes
 * the request wait (a deferred response) until the API server answered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "kube/watcher.h"
#include "server/server_impl.h"

#define TOKEN_COOKIE "pulltrace_token"

/* What a reader needs (docs/security.md): `get` on the virtual resource
 * pulls.pulltrace.io, granted by a ClusterRole. */
static const struct pt_access read_access = {.verb = "get", .group = "pulltrace.io", .resource = "pulls"};

int pt_server_auth_validate(const struct pt_server_config *cfg, bool kube_on, char *err, size_t errlen)
{
  bool agent = cfg->agent_auth && strcmp(cfg->agent_auth, "kubernetes") == 0;
  bool read = cfg->read_auth && strcmp(cfg->read_auth, "kubernetes") == 0;
  if (agent && !kube_on) {
    snprintf(err, errlen, "PULLTRACE_AGENT_AUTH: kubernetes needs the Kubernetes API (in a cluster, or "
                          "PULLTRACE_KUBECONFIG), and PULLTRACE_KUBERNETES is off or finds none");
    return -EINVAL;
  }
  if (read && !kube_on) {
    snprintf(err, errlen, "PULLTRACE_READ_AUTH: kubernetes needs the Kubernetes API (in a cluster, or "
                          "PULLTRACE_KUBECONFIG), and PULLTRACE_KUBERNETES is off or finds none");
    return -EINVAL;
  }
  if (agent) {
    char buf[512];
    const char *ns, *name;
    char user[600];
    snprintf(user, sizeof(user), "system:serviceaccount:%s", cfg->agent_service_account ? cfg->agent_service_account : "");
    if (pt_identity_service_account(user, buf, sizeof(buf), &ns, &name) < 0) {
      snprintf(err, errlen, "PULLTRACE_AGENT_SERVICE_ACCOUNT: must be NAMESPACE:NAME, the agents' service account "
                            "(got \"%s\")", cfg->agent_service_account ? cfg->agent_service_account : "");
      return -EINVAL;
    }
  }
  if (agent && cfg->agent_token && *cfg->agent_token) {
    snprintf(err, errlen, "PULLTRACE_AGENT_TOKEN: set, but PULLTRACE_AGENT_AUTH is kubernetes: remove the shared "
                          "token (or choose PULLTRACE_AGENT_AUTH=token)");
    return -EINVAL;
  }
  return 0;
}

/* ---- the transport of the reviews: the watcher's API connection ----------- */

static int kube_post(void *ud, const char *path, const char *body, pt_httpc_done_cb done, void *done_ud,
                     uint64_t *id)
{
  struct pt_server *srv = ud;
  if (!srv->kube)
    return -ENOTCONN;
  return pt_kube_request(srv->kube, "POST", path, body, strlen(body), "application/json", done, done_ud, id);
}

static void kube_cancel(void *ud, uint64_t id)
{
  struct pt_server *srv = ud;
  pt_kube_cancel(srv->kube, id);
}

int pt_server_auth_init(struct pt_server *srv)
{
  const struct pt_server_config *cfg = &srv->cfg;
  struct pt_authn_transport t = {.ud = srv, .post = kube_post, .cancel = kube_cancel};
  if (cfg->agent_auth && strcmp(cfg->agent_auth, "kubernetes") == 0) {
    struct pt_authn_options o = {
      .audience = cfg->agent_audience,
      .ttl = cfg->auth_cache_ttl,
      .max_entries = (size_t)cfg->auth_cache_size,
    };
    char user[600];
    snprintf(user, sizeof(user), "system:serviceaccount:%s", cfg->agent_service_account ? cfg->agent_service_account : "");
    if (pt_identity_service_account(user, srv->agent_sa, sizeof(srv->agent_sa), &srv->agent_sa_ns,
                                    &srv->agent_sa_name) < 0)
      return -EINVAL;
    if (!(srv->agent_authn = pt_authn_create(&o)))
      return -ENOMEM;
    pt_authn_set_transport(srv->agent_authn, &t);
  }
  if (cfg->read_auth && strcmp(cfg->read_auth, "kubernetes") == 0) {
    struct pt_authn_options o = {
      .audience = cfg->read_audience,
      .access = &read_access,
      .ttl = cfg->auth_cache_ttl,
      .max_entries = (size_t)cfg->auth_cache_size,
    };
    if (!(srv->read_authn = pt_authn_create(&o)))
      return -ENOMEM;
    pt_authn_set_transport(srv->read_authn, &t);
  }
  return 0;
}

void pt_server_auth_close(struct pt_server *srv)
{
  pt_authn_destroy(srv->agent_authn);
  pt_authn_destroy(srv->read_authn);
  srv->agent_authn = srv->read_authn = NULL;
}

void pt_server_auth_kube_gone(struct pt_server *srv)
{
  /* Reviews in flight end now (their clients get 503), while the watcher
   * that carries them still exists. */
  struct pt_authn_transport t = {.ud = srv, .post = kube_post, .cancel = kube_cancel};
  if (srv->agent_authn)
    pt_authn_set_transport(srv->agent_authn, &t);
  if (srv->read_authn)
    pt_authn_set_transport(srv->read_authn, &t);
}

/* ---- the agent rule ------------------------------------------------------------ */

static const char *pod_node(void *ud, const char *ns, const char *name, const char *uid)
{
  struct pt_server *srv = ud;
  const json_t *pod = pt_store_pod(srv->store, ns, name);
  const char *puid = json_string_value(json_object_get(pod, "uid"));
  /* A pod deleted and created again under the same name is another pod:
   * the old one's token must not speak for the new one's node. */
  if (!pod || (uid && puid && strcmp(uid, puid) != 0))
    return NULL;
  return json_string_value(json_object_get(pod, "node"));
}

bool pt_server_agent_may_report(struct pt_server *srv, const struct pt_identity *who, const char *node,
                                struct pt_http_resp *resp)
{
  if (!who)
    return true;
  const char *own = NULL;
  char why[400];
  int r = pt_identity_agent_node(who, srv->agent_sa_ns, srv->agent_sa_name, pod_node, srv, &own, why, sizeof(why));
  if (r == -ENOENT) {
    struct pt_kube_stats ks;
    pt_kube_stats(srv->kube, &ks);
    if (!ks.synced && pt_identity_extra(who, PT_EXTRA_POD_NAME)) {
      /* The pod cache is still being listed: ask again shortly. */
      srv->reports_rejected[PT_REJECT_AUTH_UNAVAILABLE]++;
      pt_buf_puts(&resp->headers, "Retry-After: 2\r\n");
      pt_server_reply_error(resp, 503, "the server is still listing pods: cannot tell this agent's node yet", NULL);
      return false;
    }
  }
  if (r < 0) {
    srv->reports_rejected[PT_REJECT_FORBIDDEN]++;
    PT_LOG_WARN("agent report refused", "{s:s,s:s}", "user", who->username, "reason", why);
    pt_server_reply_error(resp, 403, why, NULL);
    return false;
  }
  if (strcmp(own, node) != 0) {
    srv->reports_rejected[PT_REJECT_WRONG_NODE]++;
    snprintf(why, sizeof(why), "this agent's token belongs to a pod on node \"%.120s\": it may not report for node \"%.120s\"",
             own, node);
    PT_LOG_WARN("agent report for another node refused", "{s:s,s:s,s:s}", "user", who->username, "tokenNode", own,
                "reportNode", node);
    pt_server_reply_error(resp, 403, why, "nodeName");
    return false;
  }
  return true;
}

/* ---- the gate ---------------------------------------------------------------------- */

/* The token of an "Authorization"-style value "Bearer <token>", copied into
 * buf: NULL when it is another scheme, empty or too long. */
static const char *bearer(const char *h, char *buf, size_t len)
{
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  h += 7;
  while (*h == ' ')
    h++;
  if (!*h || strlen(h) >= len)
    return NULL;
  snprintf(buf, len, "%s", h);
  return buf;
}

/* The bearer token of req: the Authorization header; else, for readers only,
 * the header kubectl-pulltrace sends through the API server's service proxy
 * (which removes Authorization, core/httpc.h), or the cookie the web UI
 * sets, as a browser's EventSource sends no headers of its own. Copied into
 * buf; NULL when there is none. */
static const char *request_token(const struct pt_http_req *req, bool reader, char *buf, size_t len)
{
  const char *h = pt_http_req_header(req, "authorization");
  if (h && strncasecmp(h, "Bearer ", 7) == 0)
    return bearer(h, buf, len);
  if (!reader)
    return NULL;
  if ((h = pt_http_req_header(req, PT_PROXY_TOKEN_HEADER)))
    return bearer(h, buf, len);
  const char *c = pt_http_req_header(req, "cookie");
  for (const char *p = c; p && *p;) {
    while (*p == ' ' || *p == ';')
      p++;
    size_t n = strcspn(p, ";");
    size_t kl = sizeof(TOKEN_COOKIE) - 1;
    if (n > kl + 1 && strncmp(p, TOKEN_COOKIE "=", kl + 1) == 0 && n - kl - 1 < len) {
      /* The UI writes the cookie percent-encoded. */
      if (pt_http_url_decode(p + kl + 1, n - kl - 1, buf, len, false) > 0)
        return buf;
      return NULL;
    }
    p += n;
  }
  return NULL;
}

static void refuse(struct pt_server *srv, struct pt_authn *a, const struct pt_authn_result *res,
                   struct pt_http_resp *resp)
{
  bool agent = a == srv->agent_authn;
  switch (res->status) {
  case PT_AUTHN_UNAUTHENTICATED:
    if (agent)
      srv->reports_rejected[PT_REJECT_UNAUTHORIZED]++;
    else
      srv->reads_refused[PT_READ_UNAUTHENTICATED]++;
    pt_buf_puts(&resp->headers, "WWW-Authenticate: Bearer realm=\"pulltrace\"\r\n");
    pt_server_reply_error(resp, 401, res->reason && *res->reason ? res->reason : "missing or invalid bearer token",
                          NULL);
    return;
  case PT_AUTHN_FORBIDDEN:
    if (agent)
      srv->reports_rejected[PT_REJECT_FORBIDDEN]++;
    else
      srv->reads_refused[PT_READ_FORBIDDEN]++;
    pt_server_reply_error(resp, 403, res->reason, NULL);
    return;
  default:
    if (agent)
      srv->reports_rejected[PT_REJECT_AUTH_UNAVAILABLE]++;
    else
      srv->reads_refused[PT_READ_UNAVAILABLE]++;
    pt_buf_puts(&resp->headers, "Retry-After: 2\r\n");
    pt_server_reply_error(resp, 503, res->reason && *res->reason ? res->reason : "cannot check the token now", NULL);
    return;
  }
}

/* A request waiting for its token's review. The request (pointers into the
 * connection's parser, which keeps it while the answer is deferred) is
 * copied by value. */
struct gate {
  struct pt_server *srv;
  struct pt_authn *authn;
  pt_server_route route;
  struct pt_http_req req;
  struct pt_http_conn *conn;
  struct pt_authn_wait *wait;
};

static void gate_answered(void *ud, const struct pt_authn_result *res)
{
  struct gate *g = ud;
  g->wait = NULL;
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  if (res->status == PT_AUTHN_OK)
    g->route(g->srv, &g->req, &resp, res->who);
  else
    refuse(g->srv, g->authn, res, &resp);
  if (g->conn)
    pt_http_conn_respond(g->conn, &resp);
  else if (resp.stream_start)
    resp.stream_start(resp.stream_ud, NULL);
  pt_http_resp_close(&resp);
  free(g);
}

static void gate_conn_closed(void *ud, struct pt_http_conn *conn)
{
  struct gate *g = ud;
  pt_authn_cancel(g->wait);
  free(g);
}

static void gate_defer(void *ud, struct pt_http_conn *conn)
{
  struct gate *g = ud;
  g->conn = conn;
  pt_http_conn_set_close_cb(conn, gate_conn_closed, g);
}

void pt_server_auth_run(struct pt_server *srv, struct pt_authn *a, const struct pt_http_req *req,
                        struct pt_http_resp *resp, pt_server_route route)
{
  bool reader = a == srv->read_authn;
  char token[8192], why[400] = "missing bearer token";
  const char *tok = request_token(req, reader, token, sizeof(token));
  const char *aud = srv->cfg.read_audience;
  if (reader && aud && *aud)
    snprintf(why, sizeof(why), "missing bearer token: send one made for the audience \"%.100s\" "
             "(kubectl create token SERVICEACCOUNT --audience %.100s)", aud, aud);
  struct pt_authn_result res = {.status = PT_AUTHN_UNAUTHENTICATED, .reason = why};
  if (!tok)
    return refuse(srv, a, &res, resp);
  struct gate *g = calloc(1, sizeof(*g));
  if (!g) {
    res.status = PT_AUTHN_UNAVAILABLE;
    res.reason = "out of memory";
    return refuse(srv, a, &res, resp);
  }
  *g = (struct gate){.srv = srv, .authn = a, .route = route, .req = *req};
  enum pt_authn_status st = pt_authn_check(a, tok, pt_clock_now(), gate_answered, g, &res, &g->wait);
  if (st == PT_AUTHN_PENDING) {
    resp->defer = gate_defer;
    resp->stream_ud = g;
    return;
  }
  free(g);
  if (st == PT_AUTHN_OK)
    return route(srv, req, resp, res.who);
  refuse(srv, a, &res, resp);
}
