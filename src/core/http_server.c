/* The HTTP/1.1 server of core/http_server.h: the listener, connections and
 * their lifecycle on libuv (reading, deadlines, keep-alive, streaming, close);
 * requests are parsed by http_parser.c. */
#include "core/http_server.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/send_batch.h"
#include "core/shared_buf.h"
#include "core/tls.h"

/* ------------------------------------------------------------------------ */
/* Server                                                                     */

/* CONN_CLOSING: the last answer is being flushed; CONN_LINGERING: the write
 * side is shut down and whatever the client still sends is read and dropped
 * (bounded), so that its unread bytes do not make the kernel reset the
 * connection before the client has read the answer. */
enum conn_state { CONN_READING, CONN_DEFERRED, CONN_STREAMING, CONN_CLOSING, CONN_LINGERING };

struct pt_http_conn {
  struct pt_http_server *srv;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown;
  int handles;            /* libuv handles still open (tcp, timer) */
  enum conn_state state;
  bool in_request;        /* some bytes of a request arrived: request deadline armed */
  bool continue_sent;
  bool chunked;           /* streaming with chunked transfer-encoding */
  bool handles_closing;
  bool deferred_keep, deferred_head; /* of the request a deferred answer is for */
  bool peer_done;         /* the client closed its side: nothing to linger for */
  size_t linger_bytes;    /* bytes dropped since the close began */
  struct pt_tls_conn *tls; /* NULL on a plain-text server */
  struct pt_http_parser parser;
  size_t queued;
  pt_http_conn_close_cb close_cb;
  void *close_ud;
  char peer[64];
  struct pt_http_conn *prev, *next;
};

struct pt_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bool listener_closed;
  bool destroying;
  struct pt_http_server_options opts;
  pt_http_handler handler;
  void *ud;
  struct pt_http_conn *conns;
  struct pt_http_server_stats stats;
  struct pt_send_batch *send_batch; /* made at the first pt_http_conns_write_shared */
  char readbuf[65536];
};

struct wreq {
  uv_write_t req;
  struct pt_http_conn *conn;
  size_t len;
  char data[];
};

static void conn_really_close(struct pt_http_conn *c);

static void maybe_free_server(struct pt_http_server *srv)
{
  if (!srv->destroying || !srv->listener_closed || srv->conns || srv->stats.connections_open != 0)
    return;
  pt_send_batch_destroy(srv->send_batch);
  free(srv);
}

/* A write of shared buffers (pt_http_conn_write_shared): no copy, a
 * reference to each until the kernel has taken them. */
struct swreq {
  uv_write_t req;
  struct pt_http_conn *conn;
  size_t len, n;
  char chunk_head[20];
  struct pt_shared_buf *bufs[];
};

static void write_done(struct pt_http_conn *c, size_t len, int status)
{
  c->queued -= len;
  if (status < 0)
    conn_really_close(c);
}

static void write_cb(uv_write_t *req, int status)
{
  struct wreq *w = (struct wreq *)req;
  struct pt_http_conn *c = w->conn;
  size_t len = w->len;
  free(w);
  write_done(c, len, status);
}

static void shared_write_cb(uv_write_t *req, int status)
{
  struct swreq *w = (struct swreq *)req;
  struct pt_http_conn *c = w->conn;
  size_t len = w->len;
  for (size_t i = 0; i < w->n; i++)
    pt_shared_buf_unref(w->bufs[i]);
  free(w);
  write_done(c, len, status);
}

/* The pieces to the socket: straight away when nothing is queued before
 * them (an answer, nearly always), else, or for what the kernel did not
 * take, copied into one queued write. See queue_shared_rest for why not
 * always uv_write. */
static int queue_write(struct pt_http_conn *c, const uv_buf_t *bufs, int n)
{
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += bufs[i].len;
  if (len == 0)
    return 0;
  size_t sent = 0;
  if (c->queued == 0) {
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (r >= 0)
      sent = (size_t)r; /* errors: uv_write's callback closes the connection */
  }
  if (sent == len)
    return 0;
  struct wreq *w = malloc(sizeof(*w) + len - sent);
  if (!w)
    return -ENOMEM;
  w->conn = c;
  w->len = len - sent;
  size_t at = 0, skip = sent;
  for (int i = 0; i < n; i++) {
    size_t k = skip < bufs[i].len ? skip : bufs[i].len;
    skip -= k;
    memcpy(w->data + at, bufs[i].base + k, bufs[i].len - k);
    at += bufs[i].len - k;
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (r < 0) {
    free(w);
    return r;
  }
  c->queued += w->len;
  return 0;
}

/* Sends the cipher text TLS has produced (handshake answers, records). */
static int flush_tls(struct pt_http_conn *c)
{
  struct pt_buf out;
  pt_buf_init(&out);
  int r = pt_tls_conn_take(c->tls, &out);
  if (r == 0 && out.len) {
    uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
    r = queue_write(c, &b, 1);
  }
  pt_buf_close(&out);
  return r;
}

/* Writes plain-text pieces, through TLS when the server has it. */
static int conn_writev(struct pt_http_conn *c, const uv_buf_t *bufs, int n)
{
  if (c->handles_closing)
    return -EPIPE;
  if (!c->tls)
    return queue_write(c, bufs, n);
  for (int i = 0; i < n; i++) {
    int r = pt_tls_conn_write(c->tls, bufs[i].base, bufs[i].len);
    if (r < 0)
      return r;
  }
  return flush_tls(c);
}

static int conn_write_raw(struct pt_http_conn *c, const void *data, size_t len)
{
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  return conn_writev(c, &b, 1);
}

static void conn_handle_closed(uv_handle_t *h)
{
  struct pt_http_conn *c = h->data;
  if (--c->handles > 0)
    return;
  struct pt_http_server *srv = c->srv;
  pt_http_parser_close(&c->parser);
  pt_tls_conn_destroy(c->tls);
  free(c);
  srv->stats.connections_open--;
  maybe_free_server(srv);
}

static void conn_really_close(struct pt_http_conn *c)
{
  if (c->handles_closing)
    return;
  c->handles_closing = true;
  c->state = CONN_CLOSING;
  struct pt_http_server *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  if (c->close_cb) {
    pt_http_conn_close_cb cb = c->close_cb;
    c->close_cb = NULL;
    cb(c->close_ud, c);
  }
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void arm_timer(struct pt_http_conn *c, double seconds);
static void send_error(struct pt_http_conn *c, int status, const char *reason);

/* The answer is out and the write side shut down: linger, as nginx's
 * lingering_close does, unless the client has closed its side already. */
static void shutdown_cb(uv_shutdown_t *req, int status)
{
  struct pt_http_conn *c = req->data;
  if (status < 0 || c->peer_done || c->handles_closing) {
    conn_really_close(c);
    return;
  }
  c->state = CONN_LINGERING;
  c->srv->stats.lingering_closes++;
  arm_timer(c, c->srv->opts.linger_timeout);
}

/* Bytes arriving while closing are dropped, up to the bound. */
static void linger_drop(struct pt_http_conn *c, size_t n)
{
  c->linger_bytes += n;
  if (c->linger_bytes > c->srv->opts.linger_max_bytes) {
    c->srv->stats.linger_cutoffs++;
    conn_really_close(c);
  }
}

void pt_http_conn_close(struct pt_http_conn *c, bool abort)
{
  if (c->handles_closing)
    return;
  if (c->state == CONN_CLOSING && !abort)
    return;
  if (c->state == CONN_STREAMING && c->chunked && !abort)
    conn_write_raw(c, "0\r\n\r\n", 5);
  c->state = CONN_CLOSING;
  if (abort) {
    conn_really_close(c);
    return;
  }
  if (c->tls) {
    pt_tls_conn_shutdown(c->tls);
    flush_tls(c);
  }
  /* The shutdown completes once everything queued is written. */
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_cb) < 0) {
    conn_really_close(c);
    return;
  }
  /* A client that never reads would keep the shutdown pending forever. */
  arm_timer(c, c->srv->opts.idle_timeout);
}

static void timer_cb(uv_timer_t *t)
{
  struct pt_http_conn *c = t->data;
  if (c->state == CONN_CLOSING || c->state == CONN_LINGERING) {
    if (c->state == CONN_LINGERING)
      c->srv->stats.linger_cutoffs++;
    conn_really_close(c);
    return;
  }
  if (c->state == CONN_DEFERRED) {
    /* The answer did not come in time: the owner hears of it through the
     * close callback. */
    c->srv->stats.timeouts++;
    send_error(c, 503, "the answer took too long");
    return;
  }
  if (c->state != CONN_READING)
    return;
  c->srv->stats.timeouts++;
  if (c->in_request) {
    struct pt_http_resp resp;
    pt_http_resp_init(&resp);
    pt_http_resp_error(&resp, 408, "request not received in time", NULL);
    struct pt_buf out;
    pt_buf_init(&out);
    pt_http_format_head(&out, &resp, resp.body.len, false, false, c->srv->opts.default_headers);
    pt_buf_append(&out, resp.body.data, resp.body.len);
    conn_write_raw(c, out.data, out.len);
    pt_buf_close(&out);
    pt_http_resp_close(&resp);
    pt_http_conn_close(c, false);
  } else {
    pt_http_conn_close(c, true);
  }
}

static void arm_timer(struct pt_http_conn *c, double seconds)
{
  uint64_t ms = (uint64_t)(seconds * 1000.0);
  uv_timer_start(&c->timer, timer_cb, ms ? ms : 1, 0);
}

static void send_response(struct pt_http_conn *c, struct pt_http_resp *resp, bool keep_alive, bool head)
{
  struct pt_buf out;
  pt_buf_init(&out);
  pt_http_format_head(&out, resp, resp->body.len, keep_alive, false, c->srv->opts.default_headers);
  if (!head && resp->body.len)
    pt_buf_append(&out, resp->body.data, resp->body.len);
  if (out.oom || conn_write_raw(c, out.data, out.len) < 0)
    keep_alive = false;
  pt_buf_close(&out);
  if (!keep_alive)
    pt_http_conn_close(c, false);
}

static void send_error(struct pt_http_conn *c, int status, const char *reason)
{
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  pt_http_resp_error(&resp, status, reason ? reason : pt_http_status_text(status), NULL);
  send_response(c, &resp, false, false);
  pt_http_resp_close(&resp);
}

static void start_stream(struct pt_http_conn *c, struct pt_http_resp *resp)
{
  bool http11 = c->parser.ll.http_major == 1 && c->parser.ll.http_minor >= 1;
  if (http11)
    pt_buf_puts(&resp->headers, "Transfer-Encoding: chunked\r\n");
  struct pt_buf out;
  pt_buf_init(&out);
  pt_http_format_head(&out, resp, 0, http11, true, c->srv->opts.default_headers);
  int r = out.oom ? -ENOMEM : conn_write_raw(c, out.data, out.len);
  pt_buf_close(&out);
  if (r < 0) {
    resp->stream_start(resp->stream_ud, NULL);
    pt_http_conn_close(c, true);
  } else {
    c->state = CONN_STREAMING;
    c->chunked = http11;
    uv_timer_stop(&c->timer);
    resp->stream_start(resp->stream_ud, c);
  }
}

static void dispatch(struct pt_http_conn *c)
{
  struct pt_http_server *srv = c->srv;
  struct pt_http_req req;
  pt_http_parser_request(&c->parser, &req);
  req.peer = c->peer;
  srv->stats.requests++;
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  srv->handler(srv->ud, &req, &resp);
  if (!resp.status)
    resp.status = 200;
  bool keep = req.keep_alive && !resp.close && !srv->listener_closed;
  if (resp.defer) {
    c->state = CONN_DEFERRED;
    c->deferred_keep = keep;
    c->deferred_head = req.head;
    /* The request deadline also bounds the wait for the answer. */
    arm_timer(c, srv->opts.request_timeout);
    resp.defer(resp.stream_ud, c);
  } else if (resp.stream_start && !req.head) {
    start_stream(c, &resp);
  } else {
    if (resp.stream_start)
      resp.stream_start(resp.stream_ud, NULL);
    send_response(c, &resp, keep, req.head);
  }
  pt_http_resp_close(&resp);
}

/* The connection waits for its next request. */
static void next_request(struct pt_http_conn *c)
{
  pt_http_parser_next(&c->parser);
  c->in_request = false;
  c->continue_sent = false;
  arm_timer(c, c->srv->opts.idle_timeout);
}

int pt_http_conn_respond(struct pt_http_conn *c, struct pt_http_resp *resp)
{
  if (c->state != CONN_DEFERRED)
    return -EPIPE;
  c->close_cb = NULL;
  c->close_ud = NULL;
  if (!resp->status)
    resp->status = 200;
  if (resp->defer) {
    /* Answered by yet another piece of work (an authorised request whose
     * route itself answers later): still waiting, same deadline. */
    resp->defer(resp->stream_ud, c);
    return 0;
  }
  c->state = CONN_READING;
  if (resp->stream_start && !c->deferred_head) {
    start_stream(c, resp);
    return 0;
  }
  if (resp->stream_start)
    resp->stream_start(resp->stream_ud, NULL);
  bool keep = c->deferred_keep && !resp->close && !c->srv->listener_closed;
  send_response(c, resp, keep, c->deferred_head);
  if (c->state == CONN_READING)
    next_request(c);
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct pt_http_conn *c = h->data;
  buf->base = c->srv->readbuf;
  buf->len = sizeof(c->srv->readbuf);
}

/* The request head is complete and a body follows: the owner may refuse it
 * now (e.g. 401), before the client has sent the body. Returns true when it
 * did; the connection then closes lingeringly. */
static bool refused_on_head(struct pt_http_conn *c)
{
  struct pt_http_server *srv = c->srv;
  struct pt_http_req req;
  pt_http_parser_request(&c->parser, &req);
  req.peer = c->peer;
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  srv->opts.check_head(srv->ud, &req, &resp);
  bool refused = resp.status != 0;
  if (refused) {
    srv->stats.requests++;
    srv->stats.refused_early++;
    send_response(c, &resp, false, req.head);
  }
  pt_http_resp_close(&resp);
  return refused;
}

/* Plain text from the client: requests are parsed and dispatched. */
static void conn_input(struct pt_http_conn *c, const char *d, size_t n)
{
  while (n > 0 && c->state == CONN_READING) {
    size_t used;
    int r = pt_http_parser_feed(&c->parser, d, n, &used);
    if (c->parser.started && !c->in_request) {
      c->in_request = true;
      arm_timer(c, c->srv->opts.request_timeout);
    }
    if (r < 0) {
      c->srv->stats.bad_requests++;
      send_error(c, c->parser.error_status, c->parser.error_reason);
      return;
    }
    if (r == 2) {
      d += used;
      n -= used;
      if (refused_on_head(c))
        return;
      if (pt_http_parser_resume(&c->parser) < 0) {
        c->srv->stats.bad_requests++;
        send_error(c, c->parser.error_status, c->parser.error_reason);
        return;
      }
      if (c->parser.expect_continue && !c->continue_sent) {
        c->continue_sent = true;
        conn_write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
      }
      continue;
    }
    if (r == 0) {
      if (c->parser.expect_continue && !c->continue_sent) {
        c->continue_sent = true;
        conn_write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
      }
      break;
    }
    d += used;
    n -= used;
    dispatch(c);
    if (c->state == CONN_READING)
      next_request(c);
  }
}

/* Cipher text from the client: decrypted and handed on while the
 * connection reads requests; the handshake's answers are sent. */
static void tls_input(struct pt_http_conn *c, const char *d, size_t n)
{
  if (pt_tls_conn_feed(c->tls, d, n) < 0) {
    pt_http_conn_close(c, true);
    return;
  }
  char plain[16384];
  for (;;) {
    ssize_t k = pt_tls_conn_read(c->tls, plain, sizeof(plain));
    if (k == 0)
      break;
    if (k < 0) {
      if (k == -EPROTO) {
        c->srv->stats.tls_errors++;
        PT_LOG_DEBUG("TLS failed", "{s:s,s:s}", "peer", c->peer, "error", pt_tls_conn_error(c->tls));
      }
      flush_tls(c); /* the alert, if any */
      pt_http_conn_close(c, k == -EPROTO);
      return;
    }
    if (c->state == CONN_READING)
      conn_input(c, plain, (size_t)k);
    if (c->handles_closing || c->state == CONN_CLOSING || c->state == CONN_LINGERING)
      return;
  }
  flush_tls(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct pt_http_conn *c = s->data;
  bool closing = c->state == CONN_CLOSING || c->state == CONN_LINGERING;
  if (nread < 0) {
    if (closing && nread == UV_EOF) {
      /* The client has finished sending: the answer still goes out. */
      c->peer_done = true;
      uv_read_stop(s);
      if (c->state == CONN_LINGERING)
        conn_really_close(c);
      return;
    }
    pt_http_conn_close(c, true);
    return;
  }
  if (closing) {
    linger_drop(c, (size_t)nread);
    return;
  }
  if (c->tls) {
    tls_input(c, buf->base, (size_t)nread);
    return;
  }
  if (c->state != CONN_READING)
    return; /* streaming clients have nothing more to say */
  conn_input(c, buf->base, (size_t)nread);
}

static void on_connection(uv_stream_t *l, int status)
{
  struct pt_http_server *srv = l->data;
  if (status < 0)
    return;
  struct pt_http_conn *c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->srv = srv;
  uv_tcp_init(srv->loop, &c->tcp);
  uv_timer_init(srv->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->handles = 2;
  pt_http_parser_init(&c->parser, srv->opts.max_header_bytes, srv->opts.max_body_bytes);
  c->parser.pause_on_head = srv->opts.check_head != NULL;
  srv->stats.connections_open++;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
    conn_really_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    char ip[48] = "";
    int port = 0;
    if (ss.ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
  }
  if (srv->stats.connections_open > srv->opts.max_connections) {
    srv->stats.connections_rejected++;
    /* Over TLS no answer can be sent before a handshake: just close. */
    if (srv->opts.tls)
      conn_really_close(c);
    else
      send_error(c, 503, "too many connections");
    return;
  }
  if (srv->opts.tls && !(c->tls = pt_tls_conn_create(srv->opts.tls))) {
    conn_really_close(c);
    return;
  }
  srv->stats.connections_accepted++;
  uv_tcp_nodelay(&c->tcp, 1);
  arm_timer(c, srv->opts.request_timeout);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
    conn_really_close(c);
}

struct pt_http_server *pt_http_server_create(uv_loop_t *loop, const struct pt_http_server_options *opts,
                                             pt_http_handler handler, void *ud)
{
  struct pt_http_server *srv = calloc(1, sizeof(*srv));
  if (!srv)
    return NULL;
  srv->loop = loop;
  if (opts)
    srv->opts = *opts;
  if (!srv->opts.max_header_bytes) srv->opts.max_header_bytes = 16384;
  if (!srv->opts.max_body_bytes) srv->opts.max_body_bytes = 1048576;
  if (!srv->opts.max_connections) srv->opts.max_connections = 4096;
  if (srv->opts.request_timeout <= 0) srv->opts.request_timeout = 10;
  if (srv->opts.idle_timeout <= 0) srv->opts.idle_timeout = 60;
  if (srv->opts.linger_timeout <= 0) srv->opts.linger_timeout = 5;
  if (!srv->opts.linger_max_bytes) srv->opts.linger_max_bytes = 16u << 20;
  srv->handler = handler;
  srv->ud = ud;
  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  return srv;
}

int pt_http_server_listen(struct pt_http_server *srv, const char *host, int port)
{
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  const char *h = host && *host ? host : "0.0.0.0";
  int r;
  if (strchr(h, ':'))
    r = uv_ip6_addr(h, port, (struct sockaddr_in6 *)&ss);
  else
    r = uv_ip4_addr(h, port, (struct sockaddr_in *)&ss);
  if (r < 0) {
    /* A host name: resolve it once, before the loop serves anything. */
    uv_getaddrinfo_t gai;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    r = uv_getaddrinfo(srv->loop, &gai, NULL, h, portstr, &hints);
    if (r < 0)
      return r;
    memcpy(&ss, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
    uv_freeaddrinfo(gai.addrinfo);
  }
  r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
  if (r < 0)
    return r;
  return uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
}

int pt_http_server_port(const struct pt_http_server *srv)
{
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

static void listener_closed(uv_handle_t *h)
{
  struct pt_http_server *srv = h->data;
  srv->listener_closed = true;
  maybe_free_server(srv);
}

void pt_http_server_use_tls(struct pt_http_server *srv, struct pt_tls_ctx *ctx)
{
  srv->opts.tls = ctx;
}

void pt_http_server_stop(struct pt_http_server *srv)
{
  if (!uv_is_closing((uv_handle_t *)&srv->listener))
    uv_close((uv_handle_t *)&srv->listener, listener_closed);
}

void pt_http_server_stats(const struct pt_http_server *srv, struct pt_http_server_stats *out)
{
  *out = srv->stats;
}

void pt_http_server_destroy(struct pt_http_server *srv)
{
  if (!srv)
    return;
  srv->destroying = true;
  while (srv->conns)
    conn_really_close(srv->conns);
  pt_http_server_stop(srv);
  maybe_free_server(srv);
}

void pt_http_conn_set_close_cb(struct pt_http_conn *c, pt_http_conn_close_cb cb, void *ud)
{
  c->close_cb = cb;
  c->close_ud = ud;
}

int pt_http_conn_write(struct pt_http_conn *c, const void *data, size_t len)
{
  if (c->state != CONN_STREAMING)
    return -EPIPE;
  if (len == 0)
    return 0;
  if (!c->chunked)
    return conn_write_raw(c, data, len);
  char hdr[24];
  int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
  uv_buf_t b[3] = {uv_buf_init(hdr, (unsigned)hl), uv_buf_init((char *)data, (unsigned)len),
                   uv_buf_init("\r\n", 2)};
  return conn_writev(c, b, 3);
}

/* Pieces of one write on the stack up to this many (a client's events of
 * one loop pass); more take an allocation. */
#define SHARED_STACK_BUFS 64
#define CHUNK_HEAD_MAX sizeof(((struct swreq *)0)->chunk_head)

/* Lays out a shared write of len bytes in b (room for n + 2 pieces): the
 * chunk's size line, written into head, the buffers, CRLF. Returns the
 * number of pieces and sets *total to their bytes. */
static size_t shared_pieces(const struct pt_http_conn *c, struct pt_shared_buf *const *bufs, size_t n, size_t len,
                            uv_buf_t *b, char *head, size_t *total)
{
  size_t nb = 0;
  *total = len;
  if (c->chunked) {
    b[nb++] = uv_buf_init(head, (unsigned)snprintf(head, CHUNK_HEAD_MAX, "%zx\r\n", len));
    *total += b[0].len + 2;
  }
  for (size_t i = 0; i < n; i++)
    b[nb++] = uv_buf_init(bufs[i]->data, (unsigned)bufs[i]->len);
  if (c->chunked)
    b[nb++] = uv_buf_init("\r\n", 2);
  return nb;
}

/* What the kernel did not take of a plain connection's shared write (the
 * first `sent` bytes went out): queued, holding references to the buffers.
 * Going to the socket first, with no request and no callback, is what
 * matters: a completed uv_write makes libuv re-arm the socket with an
 * epoll_ctl on the next loop iteration, with 10,000 readers a tenth of the
 * server's work per event. */
static int queue_shared_rest(struct pt_http_conn *c, struct pt_shared_buf *const *bufs, size_t n, uv_buf_t *b,
                             size_t nb, size_t total, size_t sent)
{
  if (sent == total)
    return 0;
  struct swreq *w = malloc(sizeof(*w) + n * sizeof(w->bufs[0]));
  if (!w)
    return -ENOMEM;
  size_t first = 0, skip = sent;
  while (skip >= b[first].len) {
    skip -= b[first].len;
    first++;
  }
  b[first].base += skip;
  b[first].len -= (unsigned)skip;
  if (first == 0 && c->chunked) {
    /* The chunk's size line was the caller's. */
    memcpy(w->chunk_head, b[0].base, b[0].len);
    b[0].base = w->chunk_head;
  }
  w->conn = c;
  w->n = n;
  w->len = total - sent;
  for (size_t i = 0; i < n; i++)
    w->bufs[i] = pt_shared_buf_ref(bufs[i]);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, b + first, (unsigned)(nb - first), shared_write_cb);
  if (r < 0) {
    for (size_t i = 0; i < n; i++)
      pt_shared_buf_unref(w->bufs[i]);
    free(w);
    return r;
  }
  c->queued += w->len;
  return 0;
}

/* Bytes of a shared write, or -EPIPE when the connection takes no more. */
static ssize_t shared_len(const struct pt_http_conn *c, struct pt_shared_buf *const *bufs, size_t n)
{
  if (c->state != CONN_STREAMING || c->handles_closing)
    return -EPIPE;
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += bufs[i]->len;
  return (ssize_t)len;
}

/* What a straight write to the socket took: its errors count as nothing
 * taken, and are left to uv_write, whose callback closes the connection
 * (closing it here would free the caller's client under its feet). */
static size_t taken(ssize_t r)
{
  return r > 0 ? (size_t)r : 0;
}

int pt_http_conn_write_shared(struct pt_http_conn *c, struct pt_shared_buf *const *bufs, size_t n)
{
  ssize_t len = shared_len(c, bufs, n);
  if (len <= 0)
    return (int)len;
  uv_buf_t stack[SHARED_STACK_BUFS + 2];
  uv_buf_t *b = n <= SHARED_STACK_BUFS ? stack : malloc((n + 2) * sizeof(*b));
  if (!b)
    return -ENOMEM;
  char head[CHUNK_HEAD_MAX];
  size_t total;
  size_t nb = shared_pieces(c, bufs, n, (size_t)len, b, head, &total);
  int r;
  if (c->tls) {
    r = conn_writev(c, b, (int)nb); /* TLS encrypts into its own records: a copy anyway */
  } else {
    size_t sent = c->queued == 0 ? taken(uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)nb)) : 0;
    r = queue_shared_rest(c, bufs, n, b, nb, total, sent);
  }
  if (b != stack)
    free(b);
  return r;
}

/* libuv's buffers are laid out as struct iovec on Unix: the pieces go to
 * the kernel as they are. */
_Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec) && offsetof(uv_buf_t, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(uv_buf_t, len) == offsetof(struct iovec, iov_len),
               "uv_buf_t is not struct iovec");

static struct pt_send_batch *server_send_batch(struct pt_http_server *srv)
{
  if (srv->send_batch)
    return srv->send_batch;
  srv->send_batch = pt_send_batch_create(!srv->opts.no_io_uring);
  if (!srv->send_batch)
    return NULL;
  int err;
  if (pt_send_batch_uses_io_uring(srv->send_batch, &err))
    PT_LOG_INFO("event streams: each pass of writes goes to the kernel in one io_uring submission", NULL);
  else
    PT_LOG_INFO("event streams: one system call per reader and pass", "{s:s}", "reason",
                err ? strerror(err) : "turned off by configuration");
  return srv->send_batch;
}

/* Closes the connection from the loop's next timers, not now: the owner's
 * close callback must not run under its caller's feet. Nothing more is
 * written to it meanwhile (it is no longer streaming). */
static void conn_abort_later(struct pt_http_conn *c)
{
  c->state = CONN_CLOSING;
  arm_timer(c, 0);
}

/* One write of the batch: where its pieces are, and its send. */
struct batch_slot {
  uv_buf_t *b;
  size_t nb, total;
  ssize_t item; /* index in the send items, or -1 when not sent straight */
  char head[CHUNK_HEAD_MAX];
};

void pt_http_conns_write_shared(struct pt_http_shared_write *w, size_t n)
{
  if (n == 0)
    return;
  size_t npieces = 0;
  for (size_t i = 0; i < n; i++)
    npieces += w[i].n + 2;
  struct batch_slot *slots = malloc(n * sizeof(*slots));
  uv_buf_t *pieces = malloc(npieces * sizeof(*pieces));
  struct pt_send_item *items = malloc(n * sizeof(*items));
  struct pt_send_batch *batch = server_send_batch(w[0].conn->srv);
  if (!slots || !pieces || !items || !batch) {
    free(slots);
    free(pieces);
    free(items);
    for (size_t i = 0; i < n; i++)
      w[i].result = pt_http_conn_write_shared(w[i].conn, w[i].bufs, w[i].n);
    return;
  }
  size_t at = 0, nitems = 0;
  for (size_t i = 0; i < n; i++) {
    struct pt_http_conn *c = w[i].conn;
    struct batch_slot *s = &slots[i];
    s->item = -1;
    s->nb = 0;
    ssize_t len = shared_len(c, w[i].bufs, w[i].n);
    w[i].result = len < 0 ? (int)len : 0;
    if (len <= 0)
      continue;
    s->b = pieces + at;
    s->nb = shared_pieces(c, w[i].bufs, w[i].n, (size_t)len, s->b, s->head, &s->total);
    at += s->nb;
    if (c->tls || c->queued != 0)
      continue;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
      continue;
    s->item = (ssize_t)nitems;
    /* A resumed stream may have thousands of frames: the kernel takes at
     * most 1,024 pieces a call (UIO_MAXIOV), and the rest is queued. */
    items[nitems++] = (struct pt_send_item){
        .fd = fd, .iov = (const struct iovec *)s->b, .iovcnt = (int)(s->nb < 1024 ? s->nb : 1024)};
  }
  int err = pt_send_batch_run(batch, items, nitems);
  if (err)
    PT_LOG_WARN("event streams: io_uring failed; one system call per reader and pass from now on", "{s:s}",
                "reason", strerror(err));
  for (size_t i = 0; i < n; i++) {
    struct pt_http_conn *c = w[i].conn;
    struct batch_slot *s = &slots[i];
    if (s->nb == 0)
      continue;
    ssize_t sent = s->item >= 0 ? items[s->item].result : 0;
    if (c->tls) {
      w[i].result = conn_writev(c, s->b, (int)s->nb);
    } else if (sent == PT_SEND_LOST) {
      conn_abort_later(c);
      w[i].result = -EPIPE;
    } else {
      w[i].result = queue_shared_rest(c, w[i].bufs, w[i].n, s->b, s->nb, s->total, taken(sent));
    }
  }
  free(slots);
  free(pieces);
  free(items);
}

size_t pt_http_conn_queued(const struct pt_http_conn *c)
{
  return c->queued;
}

const char *pt_http_conn_peer(const struct pt_http_conn *c)
{
  return c->peer;
}
