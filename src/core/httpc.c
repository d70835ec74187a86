#include "core/httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct xfer {
  struct pt_httpc *client;
  CURL *easy;
  struct curl_slist *headers;
  struct curl_slist *connect_to;
  char *body;          /* request body copy */
  char *resp;          /* buffered response */
  size_t resp_len, resp_cap, max_body;
  bool too_big;
  bool stream_abort;
  bool buffer_errors;
  pt_httpc_data_cb on_data;
  pt_httpc_done_cb done;
  void *ud;
  uint64_t id;
  char errbuf[CURL_ERROR_SIZE];
  struct xfer *next, *prev;
};

struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  struct pt_httpc *client;
  struct sock_ctx *next, *prev;
};

struct pt_httpc {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  struct xfer *xfers;
  struct sock_ctx *socks;
  size_t active;
  uint64_t next_id;
  int open_handles; /* libuv handles not yet closed */
  bool destroying;
};

static void maybe_free(struct pt_httpc *c)
{
  if (c->destroying && c->open_handles == 0)
    free(c);
}

static void handle_closed(uv_handle_t *h)
{
  struct pt_httpc *c = h->data;
  if (h->type == UV_POLL)
    free(((struct sock_ctx *)((char *)h - offsetof(struct sock_ctx, poll))));
  c->open_handles--;
  maybe_free(c);
}

static void finish(struct xfer *x, CURLcode code)
{
  struct pt_httpc *c = x->client;
  struct pt_http_response r = {0};
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
  if (code == CURLE_OK && x->too_big) {
    r.result = -EFBIG;
    r.error = "response body too large";
  } else if (code == CURLE_OPERATION_TIMEDOUT) {
    r.result = -ETIMEDOUT;
    r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
  } else if (code == CURLE_ABORTED_BY_CALLBACK && x->stream_abort) {
    r.result = -ECANCELED;
    r.error = "aborted by the stream consumer";
  } else if (code != CURLE_OK) {
    r.result = -EIO;
    r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
  }
  r.body = x->resp ? x->resp : "";
  r.body_len = x->resp_len;
  r.xfer = x;

  curl_multi_remove_handle(c->multi, x->easy);
  if (x->prev)
    x->prev->next = x->next;
  else
    c->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  c->active--;

  x->done(x->ud, &r);

  curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  curl_slist_free_all(x->connect_to);
  free(x->body);
  free(x->resp);
  free(x);
}

char *pt_httpc_take_body(const struct pt_http_response *resp)
{
  struct xfer *x = resp->xfer;
  char *body = x->resp ? x->resp : strdup("");
  x->resp = NULL; /* finish() frees nothing now */
  return body;
}

static void check_done(struct pt_httpc *c)
{
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(c->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    struct xfer *x;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    finish(x, msg->data.result);
  }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
  struct sock_ctx *s = (struct sock_ctx *)((char *)h - offsetof(struct sock_ctx, poll));
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  int running;
  struct pt_httpc *c = s->client;
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
  check_done(c);
}

static void on_timer(uv_timer_t *t)
{
  struct pt_httpc *c = t->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static void sock_close(struct pt_httpc *c, struct sock_ctx *s)
{
  if (s->prev)
    s->prev->next = s->next;
  else
    c->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, handle_closed);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
  struct pt_httpc *c = userp;
  struct sock_ctx *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      sock_close(c, s);
      curl_multi_assign(c->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof(*s));
    if (!s)
      return -1;
    s->fd = fd;
    s->client = c;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = c;
    c->open_handles++;
    s->next = c->socks;
    if (c->socks)
      c->socks->prev = s;
    c->socks = s;
    curl_multi_assign(c->multi, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
  struct pt_httpc *c = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
  struct xfer *x = ud;
  size_t n = size * nmemb;
  long code = 0;
  if (x->on_data && x->buffer_errors)
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  if (x->on_data && !(x->buffer_errors && (code < 200 || code > 299))) {
    if (x->on_data(x->ud, ptr, n) != 0) {
      x->stream_abort = true;
      return CURL_WRITEFUNC_ERROR;
    }
    return n;
  }
  if (x->resp_len + n > x->max_body) {
    x->too_big = true;
    return CURL_WRITEFUNC_ERROR;
  }
  if (x->resp_len + n + 1 > x->resp_cap) {
    size_t cap = x->resp_cap ? x->resp_cap : 4096;
    while (cap < x->resp_len + n + 1)
      cap *= 2;
    char *p = realloc(x->resp, cap);
    if (!p)
      return CURL_WRITEFUNC_ERROR;
    x->resp = p;
    x->resp_cap = cap;
  }
  memcpy(x->resp + x->resp_len, ptr, n);
  x->resp_len += n;
  x->resp[x->resp_len] = '\0';
  return n;
}

struct pt_httpc *pt_httpc_create(uv_loop_t *loop)
{
  static bool global_done;
  if (!global_done) {
    /* curl_global_init is not thread-safe; daemons create clients on their
     * main thread at startup. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    global_done = true;
  }
  struct pt_httpc *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->loop = loop;
  c->multi = curl_multi_init();
  if (!c->multi) {
    free(c);
    return NULL;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->open_handles = 1;
  c->next_id = 1;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  return c;
}

int pt_httpc_request(struct pt_httpc *c, const struct pt_http_request *req,
                     pt_httpc_done_cb done, void *ud, uint64_t *id)
{
  if (!c || c->destroying || !req || !req->url || !done)
    return -EINVAL;
  struct xfer *x = calloc(1, sizeof(*x));
  if (!x)
    return -ENOMEM;
  x->easy = curl_easy_init();
  if (!x->easy) {
    free(x);
    return -ENOMEM;
  }
  x->client = c;
  x->done = done;
  x->ud = ud;
  x->on_data = req->on_data;
  x->buffer_errors = req->buffer_errors != 0;
  x->max_body = req->max_body ? req->max_body : 16u << 20;
  x->id = c->next_id++;

  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_URL, req->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "pulltrace/" PT_VERSION);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   req->connect_timeout_ms ? req->connect_timeout_ms : 10000L);
  if (req->low_speed_time_s > 0) {
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, req->low_speed_time_s);
  }
  if (req->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
  if (req->client_cert)
    curl_easy_setopt(e, CURLOPT_SSLCERT, req->client_cert);
  if (req->client_key)
    curl_easy_setopt(e, CURLOPT_SSLKEY, req->client_key);
  if (req->connect_addr) {
    /* "HOST:PORT:ADDR:PORT" with HOST and both ports empty: any host, same port. */
    char ct[300];
    snprintf(ct, sizeof(ct), "::%s:", req->connect_addr);
    if (!(x->connect_to = curl_slist_append(NULL, ct)))
      goto fail;
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, x->connect_to);
  }
  if (req->insecure_skip_verify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }

  const char *method = req->method ? req->method : "GET";
  if (strcmp(method, "GET") != 0)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (req->body) {
    x->body = malloc(req->body_len + 1);
    if (!x->body)
      goto fail;
    memcpy(x->body, req->body, req->body_len);
    x->body[req->body_len] = '\0';
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
  }
  /* curl copies header strings into the list. */
  x->headers = curl_slist_append(x->headers, "Expect:");
  int own_accept = 0;
  for (const char *const *h = req->headers; h && *h; h++) {
    x->headers = curl_slist_append(x->headers, *h);
    own_accept |= strncasecmp(*h, "Accept:", 7) == 0;
  }
  if (!own_accept)
    x->headers = curl_slist_append(x->headers, "Accept: application/json");
  if (req->content_type) {
    char h[256];
    snprintf(h, sizeof(h), "Content-Type: %s", req->content_type);
    x->headers = curl_slist_append(x->headers, h);
  }
  if (req->bearer_token && *req->bearer_token) {
    size_t n = strlen(req->bearer_token) + 32;
    char *h = malloc(n);
    if (!h)
      goto fail;
    snprintf(h, n, "Authorization: Bearer %s", req->bearer_token);
    x->headers = curl_slist_append(x->headers, h);
    free(h);
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

  if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
    goto fail;
  x->next = c->xfers;
  if (c->xfers)
    c->xfers->prev = x;
  c->xfers = x;
  c->active++;
  if (id)
    *id = x->id;
  return 0;
fail:
  curl_easy_cleanup(e);
  curl_slist_free_all(x->headers);
  curl_slist_free_all(x->connect_to);
  free(x->body);
  free(x);
  return -ENOMEM;
}

static void cancel_xfer(struct xfer *x)
{
  x->stream_abort = true;
  finish(x, CURLE_ABORTED_BY_CALLBACK);
}

void pt_httpc_cancel(struct pt_httpc *c, uint64_t id)
{
  if (!c)
    return;
  for (struct xfer *x = c->xfers; x; x = x->next) {
    if (x->id == id) {
      cancel_xfer(x);
      return;
    }
  }
}

size_t pt_httpc_active(const struct pt_httpc *c)
{
  return c ? c->active : 0;
}

void pt_httpc_destroy(struct pt_httpc *c)
{
  if (!c)
    return;
  c->destroying = true;
  while (c->xfers)
    cancel_xfer(c->xfers);
  /* Removing the last handles makes curl call socket_cb with CURL_POLL_REMOVE,
   * which closes the poll handles. */
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks)
    sock_close(c, c->socks);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, handle_closed);
}
