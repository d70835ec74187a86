#include "cli/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/json.h"

/* One request, kept until it has an answer that is not a 401 an exec plugin
 * could cure. */
struct pt_conn_req {
  struct pt_conn *c;
  enum pt_target target;
  char *path, *last_id;
  pt_conn_json_cb json_cb;
  pt_httpc_data_cb data_cb;
  pt_conn_done_cb done_cb;
  void *ud;
  bool retried, stream;
  bool sent_token; /* carried the user's token to pulltrace-server */
  uint64_t http_id;
  struct pt_conn_req *next;
};

struct refresh_work {
  uv_work_t work;
  struct pt_conn *c;
  char *token;
  int r;
  char err[512];
};

void pt_conn_escape(struct pt_buf *out, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        strchr("-._~", *p)) {
      pt_buf_append(out, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      pt_buf_append(out, e, 3);
    }
  }
}

static char *default_kubeconfig(void)
{
  const char *home = getenv("HOME");
  if (!home || !*home)
    return NULL;
  size_t n = strlen(home) + 16;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/.kube/config", home);
  return p;
}

/* Where exec tokens are kept between runs: $XDG_CACHE_HOME/kubectl-pulltrace,
 * else ~/.cache/kubectl-pulltrace (0700, files 0600). */
static char *cache_dir(void)
{
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char buf[4096];
  if (xdg && *xdg)
    snprintf(buf, sizeof(buf), "%s/kubectl-pulltrace", xdg);
  else if (home && *home)
    snprintf(buf, sizeof(buf), "%s/.cache/kubectl-pulltrace", home);
  else
    return NULL;
  /* The parent of a fresh home may be missing too. */
  char parent[4096];
  snprintf(parent, sizeof(parent), "%s", buf);
  char *slash = strrchr(parent, '/');
  if (slash) {
    *slash = '\0';
    mkdir(parent, 0700);
  }
  return strdup(buf);
}

/* Opens the kubeconfig the options name (no plugin runs yet). */
static int open_kubeconfig(struct pt_kubeconfig *k, const struct pt_conn_options *o, char *err, size_t errlen)
{
  char **files = NULL;
  size_t n = 0;
  bool skip_missing = false;
  const char *env = getenv("KUBECONFIG");
  int r;
  if (o->kubeconfig && *o->kubeconfig) {
    r = pt_kubeconfig_split_list(o->kubeconfig, &files, &n);
    /* --kubeconfig names one file, which must exist (as in kubectl). */
    if (r == 0 && n != 1) {
      snprintf(err, errlen, "--kubeconfig: give one file");
      pt_kubeconfig_free_list(files);
      return -EINVAL;
    }
  } else if (env && *env) {
    r = pt_kubeconfig_split_list(env, &files, &n);
    skip_missing = true;
  } else {
    files = calloc(2, sizeof(*files));
    r = files && (files[0] = default_kubeconfig()) ? 0 : -ENOMEM;
    n = 1;
  }
  if (r) {
    pt_kubeconfig_free_list(files);
    return r;
  }
  char *cache = cache_dir();
  struct pt_kubeconfig_options ko = {
    .files = (const char *const *)files, .nfiles = n, .skip_missing = skip_missing,
    .context = o->context, .allow_exec = true, .cache_dir = cache,
  };
  r = pt_kubeconfig_open(k, &ko, err, errlen);
  free(cache);
  pt_kubeconfig_free_list(files);
  return r;
}

static int load_kube(struct pt_conn *c, const struct pt_conn_options *o, char *err, size_t errlen)
{
  int r = open_kubeconfig(&c->kube, o, err, errlen);
  if (r)
    return r;
  c->have_kube = true;
  return pt_kubeconfig_credential(&c->kube, false, &c->token, err, errlen);
}

/* With --server and no API server to ask, the kubeconfig still gives the
 * context's namespace, as kubectl users expect. It is only read: a missing
 * one means "default", unless --kubeconfig or --context named it. */
static int context_namespace(const struct pt_conn_options *o, char **out, char *err, size_t errlen)
{
  struct pt_kubeconfig k;
  *out = NULL;
  int r = open_kubeconfig(&k, o, err, errlen);
  if (r)
    return (o->kubeconfig && *o->kubeconfig) || (o->context && *o->context) ? r : 0;
  if (k.namespace && !(*out = strdup(k.namespace)))
    r = -ENOMEM;
  pt_kubeconfig_clear(&k);
  return r;
}

int pt_conn_init(struct pt_conn *c, uv_loop_t *loop, const struct pt_conn_options *o, bool need_kube,
                 char *err, size_t errlen)
{
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  c->insecure = o->insecure;
  c->timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
  int r = 0;
  struct pt_buf b;
  pt_buf_init(&b);
  if (need_kube || !o->server) {
    if ((r = load_kube(c, o, err, errlen)))
      goto fail;
    c->insecure |= c->kube.insecure_skip_tls_verify;
  }
  char *context_ns = NULL;
  if (!c->have_kube && !(o->namespace && *o->namespace) && (r = context_namespace(o, &context_ns, err, errlen)))
    goto fail;
  const char *ns = o->namespace && *o->namespace ? o->namespace
                   : c->have_kube && c->kube.namespace ? c->kube.namespace
                   : context_ns ? context_ns : "default";
  c->namespace = strdup(ns);
  free(context_ns);
  if (o->server) {
    pt_buf_puts(&b, o->server);
    while (b.len && b.data[b.len - 1] == '/')
      b.data[--b.len] = '\0';
    if (strncmp(b.data, "http://", 7) != 0 && strncmp(b.data, "https://", 8) != 0) {
      snprintf(err, errlen, "--server: \"%s\" is not an http(s) URL", o->server);
      r = -EINVAL;
      goto fail;
    }
    c->where = strdup(b.data);
  } else {
    const char *pns = o->pt_namespace && *o->pt_namespace ? o->pt_namespace : PT_CLI_DEFAULT_NAMESPACE;
    const char *svc = o->pt_service && *o->pt_service ? o->pt_service : PT_CLI_DEFAULT_SERVICE;
    const char *colon = strchr(svc, ':');
    /* The API server reads two parts as NAME:PORT: "https:NAME" would be the
     * Service "https". */
    if (colon && !strchr(colon + 1, ':') &&
        (strncmp(svc, "http:", 5) == 0 || strncmp(svc, "https:", 6) == 0)) {
      snprintf(err, errlen, "--pulltrace-service: with a scheme give the port too: %s:PORT", svc);
      r = -EINVAL;
      goto fail;
    }
    pt_buf_printf(&b, "%s/api/v1/namespaces/", c->kube.server);
    pt_conn_escape(&b, pns);
    pt_buf_puts(&b, "/services/");
    /* NAME[:PORT] keeps its colon: it is the proxy path's syntax. */
    for (const char *p = svc; *p; p++) {
      if (*p == ':')
        pt_buf_puts(&b, ":");
      else {
        char one[2] = {*p, 0};
        pt_conn_escape(&b, one);
      }
    }
    pt_buf_puts(&b, "/proxy");
    char where[1024];
    snprintf(where, sizeof(where), "service %s/%s through %s", pns, svc, c->kube.server);
    c->where = strdup(where);
    if (!(c->service = strdup(svc)))
      r = -ENOMEM;
  }
  c->pt_base = pt_buf_steal(&b, NULL);
  c->http = pt_httpc_create(loop);
  if (r || !c->pt_base || !c->where || !c->namespace || !c->http) {
    r = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  return 0;
fail:
  pt_buf_close(&b);
  pt_conn_close(c);
  return r;
}

void pt_conn_close(struct pt_conn *c)
{
  pt_httpc_destroy(c->http);
  c->http = NULL;
  while (c->waiting) {
    struct pt_conn_req *q = c->waiting;
    c->waiting = q->next;
    free(q->path);
    free(q->last_id);
    free(q);
  }
  if (c->have_kube)
    pt_kubeconfig_clear(&c->kube);
  free(c->pt_base);
  free(c->where);
  free(c->service);
  free(c->token);
  free(c->namespace);
  c->have_kube = false;
  c->pt_base = c->where = c->service = c->token = c->namespace = NULL;
}

static void req_free(struct pt_conn_req *q)
{
  free(q->path);
  free(q->last_id);
  free(q);
}

/* Whether pulltrace-server is reached through the API server (the service
 * proxy), which authenticates the user: only then does the user's token go
 * with its requests. */
static bool via_proxy(const struct pt_conn *c)
{
  if (!c->have_kube)
    return false;
  /* The whole authority, not a prefix of it: https://10.0.0.1:64430 is not
   * https://10.0.0.1:6443. */
  size_t n = strlen(c->kube.server);
  while (n && c->kube.server[n - 1] == '/')
    n--;
  return strncmp(c->pt_base, c->kube.server, n) == 0 && (c->pt_base[n] == '/' || c->pt_base[n] == '\0');
}

/* The message of an error answer: a Kubernetes Status (the API server's own
 * errors and its proxy's; *status_doc set) or pulltrace's {"error": ...}.
 * NULL when it is neither; free doc after use. */
static const char *error_message(const struct pt_http_response *r, json_t **doc, bool *status_doc)
{
  *doc = json_loadb(r->body, r->body_len, 0, NULL);
  const char *kind = pt_json_str(*doc, "kind");
  *status_doc = kind && strcmp(kind, "Status") == 0;
  return *status_doc ? pt_json_str(*doc, "message") : pt_json_str(*doc, "error");
}

/* pulltrace-server's own refusal of a reader behind the service proxy
 * (PULLTRACE_READ_AUTH=kubernetes): what the user can do about it. False
 * when r is not one. */
static bool describe_reader_refusal(const struct pt_conn_req *q, const struct pt_http_response *r,
                                    const char *msg, char *err, size_t errlen)
{
  const struct pt_conn *c = q->c;
  if (r->status == 403) {
    snprintf(err, errlen, "pulltrace-server (%s) does not let the user of %s read (HTTP 403): %s; reading needs "
             "`get` on pulls.pulltrace.io (a ClusterRole, see docs/security.md#readers)", c->where, c->kube.source,
             msg);
    return true;
  }
  if (r->status != 401)
    return false;
  if (q->sent_token)
    snprintf(err, errlen, "pulltrace-server (%s) refused the token of %s (HTTP 401): %s. A server with "
             "PULLTRACE_READ_AUDIENCE set accepts only tokens made for that audience, which a kubeconfig's token "
             "is not (docs/cli.md#reader-authentication)", c->where, c->kube.source, msg);
  else if (!via_proxy(c))
    snprintf(err, errlen, "pulltrace-server (%s) needs a reader token (HTTP 401: %s); kubectl pulltrace sends "
             "the kubeconfig's token only through the API server's service proxy: leave out --server", c->where,
             msg);
  else
    snprintf(err, errlen, "pulltrace-server (%s) needs a reader token (HTTP 401), and the user of %s has none: "
             "%s, which cannot be passed on through the API server's proxy. Use a kubeconfig user with a "
             "token (docs/cli.md#reader-authentication)", c->where, c->kube.source,
             c->kube.client_cert ? "it signs in with a client certificate" : "it has no bearer token");
  return true;
}

/* When the API server could not talk to pulltrace-server because the
 * scheme in the proxy path does not match the server's port: a plain request
 * to a TLS port, which the server closes unanswered (the proxy then reports
 * "EOF" or a reset connection), or TLS to a plain port. What to give
 * --pulltrace-service instead, appended to err; nothing otherwise. */
static void scheme_hint(const struct pt_conn *c, const char *msg, char *err, size_t errlen)
{
  static const char prefix[] = "error trying to reach service: ";
  if (!c->service || !msg || strncmp(msg, prefix, sizeof(prefix) - 1) != 0)
    return;
  const char *why = msg + sizeof(prefix) - 1;
  size_t len = strlen(err);
  bool https = strncmp(c->service, "https:", 6) == 0;
  if (https && strstr(why, "does not look like a TLS handshake")) {
    snprintf(err + len, errlen - len, ". The port does not serve TLS: use --pulltrace-service %s", c->service + 6);
    return;
  }
  if (https || !(strcmp(why, "EOF") == 0 || strstr(why, "connection reset by peer") ||
                 strstr(why, "malformed HTTP response")))
    return;
  const char *name = strncmp(c->service, "http:", 5) == 0 ? c->service + 5 : c->service;
  snprintf(err + len, errlen - len, ". If pulltrace-server serves TLS on that port (PULLTRACE_TLS_CERT, the chart's "
           "tls.enabled), use --pulltrace-service https:%s%s", name, strchr(name, ':') ? "" : ":PORT");
}

/* A one-line reason from an error answer: a Kubernetes Status (the API
 * server's own errors and its proxy's), pulltrace's {"error": ...}, or the
 * start of the body. */
static void describe(const struct pt_conn_req *q, const struct pt_http_response *r, char *err, size_t errlen)
{
  const struct pt_conn *c = q->c;
  const char *who = q->target == PT_TARGET_KUBE ? "the Kubernetes API" : "pulltrace-server";
  if (r->status == 0) {
    snprintf(err, errlen, "cannot reach %s (%s): %s", who,
             q->target == PT_TARGET_KUBE ? c->kube.server : c->where, r->error ? r->error : "no answer");
    return;
  }
  json_t *doc;
  bool status_doc;
  const char *msg = error_message(r, &doc, &status_doc);
  char body[200] = "";
  if (msg && q->target == PT_TARGET_PULLTRACE && !status_doc && describe_reader_refusal(q, r, msg, err, errlen)) {
    json_decref(doc);
    return;
  }
  if (!msg) {
    snprintf(body, sizeof(body), "%.*s", (int)(r->body_len < 160 ? r->body_len : 160), r->body);
    body[strcspn(body, "\r\n")] = '\0';
    msg = body[0] ? body : NULL;
  }
  if (r->status == 401)
    snprintf(err, errlen, "%s: unauthorized (HTTP 401)%s%s: check the credentials of %s", who, msg ? ": " : "",
             msg ? msg : "", c->have_kube ? c->kube.source : "the request");
  else if (q->target == PT_TARGET_PULLTRACE && !msg && r->status == 404)
    snprintf(err, errlen, "pulltrace-server not found at %s (HTTP 404)", c->where);
  else {
    snprintf(err, errlen, "%s (%s): HTTP %ld%s%s", who,
             q->target == PT_TARGET_KUBE ? c->kube.server : c->where, r->status, msg ? ": " : "", msg ? msg : "");
    if (q->target == PT_TARGET_PULLTRACE && status_doc && r->status == 503)
      scheme_hint(c, msg, err, errlen);
  }
  json_decref(doc);
}

static int start(struct pt_conn_req *q);

static void refreshed(uv_work_t *w, int status)
{
  struct refresh_work *rw = (struct refresh_work *)w;
  struct pt_conn *c = rw->c;
  c->refreshing = false;
  if (rw->r == 0) {
    free(c->token);
    c->token = rw->token;
  } else {
    free(rw->token);
  }
  struct pt_conn_req *q = c->waiting;
  c->waiting = NULL;
  while (q) {
    struct pt_conn_req *next = q->next;
    q->next = NULL;
    int r = rw->r ? rw->r : start(q);
    if (r) {
      const char *e = rw->r ? rw->err : "cannot start the request";
      if (q->stream)
        q->done_cb(q->ud, 0, e);
      else
        q->json_cb(q->ud, NULL, 0, e);
      req_free(q);
    }
    q = next;
  }
  free(rw);
}

static void refresh_run(uv_work_t *w)
{
  struct refresh_work *rw = (struct refresh_work *)w;
  rw->r = pt_kubeconfig_credential(&rw->c->kube, true, &rw->token, rw->err, sizeof(rw->err));
}

/* After a 401 to an exec plugin's token: run the plugin again (off the loop)
 * and send the request once more. Returns false when that does not apply. */
static bool retry_after_401(struct pt_conn_req *q, long status)
{
  struct pt_conn *c = q->c;
  if (status != 401 || q->retried || !c->have_kube || !c->kube.exec || !c->http)
    return false;
  q->retried = true;
  q->next = c->waiting;
  c->waiting = q;
  if (c->refreshing)
    return true;
  struct refresh_work *rw = calloc(1, sizeof(*rw));
  if (!rw) {
    c->waiting = q->next;
    return false;
  }
  rw->c = c;
  c->refreshing = true;
  if (uv_queue_work(c->loop, &rw->work, refresh_run, refreshed) != 0) {
    c->refreshing = false;
    c->waiting = q->next;
    free(rw);
    return false;
  }
  return true;
}

/* pulltrace-server's own 401 behind the service proxy (the API server's is
 * a Kubernetes Status): it wants a reader token. The request goes again with
 * the user's token, and so do all later ones. */
static bool resend_with_token(struct pt_conn_req *q, const struct pt_http_response *r)
{
  struct pt_conn *c = q->c;
  if (r->status != 401 || q->target != PT_TARGET_PULLTRACE || q->sent_token || !c->token || !via_proxy(c))
    return false;
  json_t *doc;
  bool status_doc;
  error_message(r, &doc, &status_doc);
  json_decref(doc);
  if (status_doc)
    return false;
  c->reader_token = true;
  return start(q) == 0;
}

static void json_done(void *ud, const struct pt_http_response *r)
{
  struct pt_conn_req *q = ud;
  if (resend_with_token(q, r) || retry_after_401(q, r->status))
    return;
  char err[1024];
  if (r->result == 0 && r->status >= 200 && r->status < 300) {
    json_error_t je;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &je);
    if (doc) {
      q->json_cb(q->ud, doc, r->status, NULL);
      json_decref(doc);
    } else {
      snprintf(err, sizeof(err), "%s answered something that is not JSON: %s",
               q->target == PT_TARGET_KUBE ? "the Kubernetes API" : q->c->where, je.text);
      q->json_cb(q->ud, NULL, r->status, err);
    }
  } else {
    describe(q, r, err, sizeof(err));
    q->json_cb(q->ud, NULL, r->status, err);
  }
  req_free(q);
}

static void stream_done(void *ud, const struct pt_http_response *r)
{
  struct pt_conn_req *q = ud;
  if (resend_with_token(q, r) || retry_after_401(q, r->status))
    return;
  char err[1024];
  if (r->result == -ECANCELED)
    q->done_cb(q->ud, r->status, "cancelled");
  else if (r->result == 0 && r->status >= 200 && r->status < 300)
    q->done_cb(q->ud, r->status, NULL);
  else {
    describe(q, r, err, sizeof(err));
    q->done_cb(q->ud, r->status, err);
  }
  req_free(q);
}

static int stream_data(void *ud, const char *data, size_t len)
{
  struct pt_conn_req *q = ud;
  return q->data_cb(q->ud, data, len);
}

static int start(struct pt_conn_req *q)
{
  struct pt_conn *c = q->c;
  struct pt_buf url;
  pt_buf_init(&url);
  pt_buf_printf(&url, "%s%s", q->target == PT_TARGET_KUBE ? c->kube.server : c->pt_base, q->path);
  char last[128];
  if (q->last_id)
    snprintf(last, sizeof(last), "Last-Event-ID: %s", q->last_id);
  /* The token goes to the API server only: a direct --server gets none. */
  bool via_kube = q->target == PT_TARGET_KUBE || via_proxy(c);
  q->sent_token = q->target == PT_TARGET_PULLTRACE && via_kube && c->reader_token && c->token;
  struct pt_buf token_line;
  pt_buf_init(&token_line);
  if (q->sent_token)
    pt_buf_printf(&token_line, "%s: Bearer %s", PT_PROXY_TOKEN_HEADER, c->token);
  const char *headers[4];
  size_t nh = 0;
  if (q->stream)
    headers[nh++] = "Accept: text/event-stream";
  if (q->stream && q->last_id)
    headers[nh++] = last;
  if (q->sent_token)
    headers[nh++] = token_line.data;
  headers[nh] = NULL;
  struct pt_http_request req = {
    .url = url.data,
    .bearer_token = via_kube ? c->token : NULL,
    .ca_file = via_kube ? c->kube.ca_file : NULL,
    .client_cert = via_kube ? c->kube.client_cert : NULL,
    .client_key = via_kube ? c->kube.client_key : NULL,
    .insecure_skip_verify = c->insecure,
    .timeout_ms = q->stream ? 0 : c->timeout_ms,
    /* The server's heartbeats arrive every 15 s: a minute of silence is a dead stream. */
    .low_speed_time_s = q->stream ? 60 : 0,
    .on_data = q->stream ? stream_data : NULL,
    .buffer_errors = q->stream,
    .headers = headers,
  };
  int r = url.oom || token_line.oom ? -ENOMEM
                  : pt_httpc_request(c->http, &req, q->stream ? stream_done : json_done, q, &q->http_id);
  pt_buf_close(&url);
  /* The line held a credential: not left in freed memory. */
  if (token_line.data)
    memset(token_line.data, 0, token_line.len);
  pt_buf_close(&token_line);
  return r;
}

static struct pt_conn_req *req_new(struct pt_conn *c, enum pt_target t, const char *path, void *ud)
{
  struct pt_conn_req *q = calloc(1, sizeof(*q));
  if (!q || !(q->path = strdup(path))) {
    free(q);
    return NULL;
  }
  q->c = c;
  q->target = t;
  q->ud = ud;
  return q;
}

static int req_start(struct pt_conn_req *q)
{
  int r = start(q);
  if (r)
    req_free(q);
  return r;
}

int pt_conn_get(struct pt_conn *c, enum pt_target t, const char *path, pt_conn_json_cb cb, void *ud)
{
  struct pt_conn_req *q = req_new(c, t, path, ud);
  if (!q)
    return -ENOMEM;
  q->json_cb = cb;
  return req_start(q);
}

int pt_conn_stream(struct pt_conn *c, const char *path, const char *last_event_id, pt_httpc_data_cb on_data,
                   pt_conn_done_cb done, void *ud, uint64_t *id)
{
  struct pt_conn_req *q = req_new(c, PT_TARGET_PULLTRACE, path, ud);
  if (!q || (last_event_id && !(q->last_id = strdup(last_event_id)))) {
    if (q)
      req_free(q);
    return -ENOMEM;
  }
  q->stream = true;
  q->data_cb = on_data;
  q->done_cb = done;
  int r = req_start(q);
  if (r == 0 && id)
    *id = q->http_id;
  return r;
}

void pt_conn_cancel(struct pt_conn *c, uint64_t id)
{
  if (c->http)
    pt_httpc_cancel(c->http, id);
}
