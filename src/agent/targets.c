#include "agent/targets.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"

#define REPORT_MAX_BACKOFF 30.0

struct target {
  struct pt_targets *owner;
  size_t url;               /* index into owner->urls */
  char addr[INET6_ADDRSTRLEN + 2]; /* "" = let libcurl resolve; IPv6 in brackets */
  bool busy, gone, seen;
  uint64_t sent_seq;        /* the newest report handed to it */
  double backoff, not_before;
  int state;                /* -1 unknown, 0 failing, 1 ok: logged on change only */
  uint64_t sent, failed;
  struct target *next;
};

/* ---- configuration ------------------------------------------------------ */

static char *trimmed(const char *s, size_t n)
{
  while (n && (*s == ' ' || *s == '\t')) {
    s++;
    n--;
  }
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  char *out = malloc(n + 1);
  if (out) {
    memcpy(out, s, n);
    out[n] = '\0';
  }
  return out;
}

/* The URL's host as libcurl parses it (IPv6 without its brackets), or NULL. */
static char *url_host(const char *url)
{
  CURLU *u = curl_url();
  char *host = NULL, *out = NULL;
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      host && *host) {
    size_t n = strlen(host);
    out = host[0] == '[' && n > 2 ? trimmed(host + 1, n - 2) : strdup(host);
  }
  curl_free(host);
  curl_url_cleanup(u);
  return out;
}

int pt_targets_parse(const char *urls, char **out, char *err, size_t errlen)
{
  int n = 0;
  const char *p = urls ? urls : "";
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char *u = trimmed(p, len);
    if (!u)
      goto nomem;
    const char *why = NULL;
    char *host = NULL;
    if (!*u)
      why = "an empty URL in the list";
    else if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
      why = "must start with http:// or https://";
    else if (!(host = url_host(u)))
      why = "not a URL with a host";
    else if (n == PT_TARGETS_MAX_URLS)
      why = "too many URLs (at most 16)";
    free(host);
    if (why) {
      snprintf(err, errlen, "PULLTRACE_SERVER_URL: %s (got \"%s\")", why, u);
      free(u);
      goto fail;
    }
    if (out)
      out[n] = u;
    else
      free(u);
    n++;
    if (!comma)
      return n;
    p = comma + 1;
  }
nomem:
  snprintf(err, errlen, "PULLTRACE_SERVER_URL: out of memory");
fail:
  while (out && n > 0)
    free(out[--n]);
  return -EINVAL;
}

/* ---- sending ------------------------------------------------------------ */

static void target_free(struct pt_targets *t, struct target *x)
{
  for (struct target **pp = &t->list; *pp; pp = &(*pp)->next) {
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  }
  free(x);
}

static void send_done(void *ud, const struct pt_http_response *r)
{
  struct target *x = ud;
  struct pt_targets *t = x->owner;
  const char *url = t->urls[x->url].report_url;
  x->busy = false;
  if (r->result == -ECANCELED) { /* the agent is stopping */
    if (x->gone)
      target_free(t, x);
    return;
  }
  bool ok = r->result == 0 && r->status >= 200 && r->status < 300;
  if (ok) {
    x->sent++;
    t->sent++;
    x->backoff = 0;
    if (x->state != 1)
      PT_LOG_INFO("reporting to server", "{s:s,s:s,s:i}", "url", url, "address", x->addr, "status", (int)r->status);
    x->state = 1;
  } else {
    x->failed++;
    t->failed++;
  }
  if (x->gone) {
    target_free(t, x);
    return;
  }
  if (ok || t->stopping)
    return;
  /* A rotated service-account token: read the file now rather than at the
   * next refresh (once, however many replicas refused it). */
  if (r->status == 401 && t->opts.token)
    pt_agent_token_refresh(t->opts.token);
  bool retryable = r->result != 0 || r->status >= 500 || r->status == 429 || r->status == 0;
  if (retryable) {
    x->backoff = x->backoff == 0 ? t->opts.report_interval : x->backoff * 2;
    if (x->backoff > REPORT_MAX_BACKOFF)
      x->backoff = REPORT_MAX_BACKOFF;
    x->not_before = pt_clock_mono() + x->backoff;
  }
  if (x->state != 0) {
    /* The body of a 4xx says what the server disliked; keep it short. */
    char body[300];
    snprintf(body, sizeof(body), "%.*s", (int)(r->body_len < 299 ? r->body_len : 299), r->body ? r->body : "");
    PT_LOG_WARN("report failed; retrying with backoff", "{s:s,s:s,s:i,s:s?,s:s,s:f}", "url", url, "address", x->addr,
                "status", (int)r->status, "error", r->error, "body", body, "backoff_seconds", x->backoff);
  }
  x->state = 0;
}

static void try_send(struct pt_targets *t, struct target *x, double now)
{
  if (x->busy || x->gone || !t->latest || x->sent_seq >= t->latest_seq || now < x->not_before)
    return;
  double timeout = t->opts.report_interval * 5;
  if (timeout < 5)
    timeout = 5;
  if (timeout > 30)
    timeout = 30;
  struct pt_http_request req = {
    .method = "POST",
    .url = t->urls[x->url].report_url,
    .body = t->latest,
    .body_len = strlen(t->latest),
    .content_type = "application/json",
    .bearer_token = t->opts.token ? pt_agent_token_get(t->opts.token) : NULL,
    .ca_file = t->opts.ca_file,
    .timeout_ms = (long)(timeout * 1000),
    .connect_timeout_ms = 3000,
    .max_body = 64 * 1024,
    .connect_addr = x->addr[0] ? x->addr : NULL,
  };
  /* Only the newest state matters: a report a target missed while backing
   * off is never sent late. */
  x->sent_seq = t->latest_seq;
  if (pt_httpc_request(t->http, &req, send_done, x, NULL) == 0)
    x->busy = true;
}

void pt_targets_kick(struct pt_targets *t)
{
  if (t->stopping)
    return;
  double now = pt_clock_mono();
  for (struct target *x = t->list, *next; x; x = next) {
    next = x->next;
    try_send(t, x, now);
  }
}

void pt_targets_offer(struct pt_targets *t, char *report)
{
  if (t->stopping) {
    free(report);
    return;
  }
  free(t->latest);
  t->latest = report;
  t->latest_seq++;
  pt_targets_kick(t);
}

/* ---- resolution --------------------------------------------------------- */

static struct target *target_add(struct pt_targets *t, size_t url, const char *addr)
{
  struct target *x = calloc(1, sizeof(*x));
  if (!x)
    return NULL;
  x->owner = t;
  x->url = url;
  x->state = -1;
  snprintf(x->addr, sizeof(x->addr), "%s", addr);
  x->next = t->list;
  t->list = x;
  return x;
}

static void target_remove(struct pt_targets *t, struct target *x)
{
  PT_LOG_INFO("server address gone; no longer reporting to it", "{s:s,s:s}", "url", t->urls[x->url].report_url,
              "address", x->addr);
  if (x->busy)
    x->gone = true; /* freed when its request ends */
  else
    target_free(t, x);
}

/* The addresses of one answer, as the text targets keep, without repeats. */
static size_t answer_addrs(const struct addrinfo *res, char (*out)[INET6_ADDRSTRLEN + 2], size_t max)
{
  size_t n = 0;
  for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    if (ai->ai_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof(ip));
    else if (ai->ai_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof(ip));
    else
      continue;
    char text[INET6_ADDRSTRLEN + 2];
    snprintf(text, sizeof(text), ai->ai_family == AF_INET6 ? "[%s]" : "%s", ip);
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++)
      dup = strcmp(out[i], text) == 0;
    if (!dup)
      snprintf(out[n++], sizeof(out[0]), "%s", text);
  }
  return n;
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
  struct server_url *u = req->data;
  struct pt_targets *t = u->owner;
  size_t ui = (size_t)(u - t->urls);
  u->resolving = false;
  if (status < 0 || t->stopping) {
    if (status != UV_ECANCELED && !t->stopping) {
      if (!u->resolve_failing)
        PT_LOG_WARN(u->resolved ? "cannot resolve the server name; keeping its addresses"
                                : "cannot resolve the server name yet; reporting through the name",
                    "{s:s,s:s,s:s}", "url", u->report_url, "host", u->host, "error", uv_strerror(status));
      u->resolve_failing = true;
      /* Before any answer: one target that lets libcurl resolve. */
      bool any = false;
      for (struct target *x = t->list; x && !any; x = x->next)
        any = x->url == ui && !x->gone;
      if (!any)
        target_add(t, ui, "");
    }
    uv_freeaddrinfo(res);
    return;
  }
  u->resolve_failing = false;
  u->resolved = true;
  char addrs[64][INET6_ADDRSTRLEN + 2];
  const char *ptrs[64];
  size_t n = answer_addrs(res, addrs, 64);
  uv_freeaddrinfo(res);
  for (size_t i = 0; i < n; i++)
    ptrs[i] = addrs[i];
  pt_targets_apply(t, ui, ptrs, n);
}

void pt_targets_apply(struct pt_targets *t, size_t ui, const char *const *addrs, size_t n)
{
  for (struct target *x = t->list; x; x = x->next)
    x->seen = false;
  bool changed = false;
  for (size_t i = 0; i < n; i++) {
    struct target *found = NULL;
    for (struct target *x = t->list; x && !found; x = x->next)
      if (x->url == ui && !x->gone && strcmp(x->addr, addrs[i]) == 0)
        found = x;
    if (!found) {
      found = target_add(t, ui, addrs[i]);
      changed = true;
    }
    if (found)
      found->seen = true;
  }
  for (struct target *x = t->list, *next; x; x = next) {
    next = x->next;
    if (x->url == ui && !x->gone && !x->seen) {
      target_remove(t, x);
      changed = true;
    }
  }
  if (changed) {
    char list[1024] = "";
    for (size_t i = 0; i < n; i++)
      snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "", addrs[i]);
    PT_LOG_INFO("server addresses", "{s:s,s:s,s:s}", "url", t->urls[ui].report_url, "host", t->urls[ui].host,
                "addresses", list);
  }
  pt_targets_kick(t);
}

static void resolve_all(uv_timer_t *timer)
{
  struct pt_targets *t = timer->data;
  for (size_t i = 0; i < t->nurls; i++) {
    struct server_url *u = &t->urls[i];
    if (u->literal || u->resolving || t->stopping)
      continue;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    u->req.data = u;
    if (uv_getaddrinfo(t->loop, &u->req, resolved, u->host, NULL, &hints) == 0)
      u->resolving = true;
  }
}

/* ---- lifecycle ---------------------------------------------------------- */

int pt_targets_init(struct pt_targets *t, uv_loop_t *loop, struct pt_httpc *http, const struct pt_targets_options *opts,
                    char *err, size_t errlen)
{
  memset(t, 0, sizeof(*t));
  t->loop = loop;
  t->http = http;
  t->opts = *opts;
  char *list[PT_TARGETS_MAX_URLS];
  int n = pt_targets_parse(opts->urls, list, err, errlen);
  if (n < 0)
    return n;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    struct server_url *u = &t->urls[t->nurls++];
    u->owner = t;
    size_t bl = strlen(list[i]);
    while (bl > 0 && list[i][bl - 1] == '/')
      bl--;
    u->report_url = malloc(bl + sizeof("/api/v1/report"));
    u->host = url_host(list[i]);
    if (!u->report_url || !u->host) {
      rc = -ENOMEM;
    } else {
      snprintf(u->report_url, bl + sizeof("/api/v1/report"), "%.*s/api/v1/report", (int)bl, list[i]);
      unsigned char buf[sizeof(struct in6_addr)];
      u->literal = inet_pton(AF_INET, u->host, buf) == 1 || inet_pton(AF_INET6, u->host, buf) == 1;
      /* An address is its own target; a name gets its targets from DNS. */
      if (u->literal && !target_add(t, t->nurls - 1, ""))
        rc = -ENOMEM;
    }
    free(list[i]);
  }
  if (rc == 0)
    uv_timer_init(loop, &t->resolve_timer);
  else
    snprintf(err, errlen, "out of memory");
  t->resolve_timer.data = t;
  return rc;
}

void pt_targets_start(struct pt_targets *t)
{
  uint64_t ms = (uint64_t)(t->opts.resolve_interval * 1000);
  uv_timer_start(&t->resolve_timer, resolve_all, 0, ms ? ms : 30000);
}

void pt_targets_foreach(const struct pt_targets *t, void (*fn)(void *ud, const struct pt_target_stats *st), void *ud)
{
  for (const struct target *x = t->list; x; x = x->next) {
    if (x->gone)
      continue;
    struct pt_target_stats st = {
      .url = t->urls[x->url].report_url, .address = x->addr, .sent = x->sent, .failed = x->failed, .ok = x->state == 1};
    fn(ud, &st);
  }
}

void pt_targets_stop(struct pt_targets *t)
{
  if (t->stopping)
    return;
  t->stopping = true;
  for (size_t i = 0; i < t->nurls; i++)
    if (t->urls[i].resolving)
      uv_cancel((uv_req_t *)&t->urls[i].req);
  uv_close((uv_handle_t *)&t->resolve_timer, NULL);
}

void pt_targets_close(struct pt_targets *t)
{
  while (t->list)
    target_free(t, t->list);
  for (size_t i = 0; i < t->nurls; i++) {
    free(t->urls[i].report_url);
    free(t->urls[i].host);
  }
  free(t->latest);
  t->latest = NULL;
}
