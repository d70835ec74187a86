/* HTTP/1.1 server on libuv with llhttp.
 *
 * Requests are parsed by struct pt_http_parser (socket-free, so tests and
 * fuzzers can drive it directly) and handed, complete with their body, to one
 * handler that fills a struct pt_http_resp synchronously. The server writes the
 * response, keeps the connection alive when the client allows it, and applies
 * limits: header bytes, body bytes, connection count, a deadline for receiving
 * a whole request (so a slowloris client is cut off) and an idle timeout
 * between requests.
 *
 * A handler may instead turn the connection into a stream (Server-Sent
 * Events): it sets resp->stream_start, the server writes the status line and
 * headers, and then calls stream_start with the connection (or with NULL when
 * the stream could not start, e.g. a HEAD request, so the owner can free its
 * context). From then on the
 * owner writes with pt_http_conn_write(), watches pt_http_conn_queued() to
 * drop slow readers, and closes with pt_http_conn_close(); the server tells it
 * the connection is gone through the close callback, exactly once. */
#ifndef PT_CORE_HTTP_SERVER_H
#define PT_CORE_HTTP_SERVER_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "core/buf.h"

#define PT_HTTP_MAX_HEADERS 64

struct pt_http_header {
  const char *name;
  const char *value;
};

struct pt_http_req {
  const char *method;     /* "GET", "POST", ... */
  const char *target;     /* raw request target as sent */
  const char *path;       /* target up to '?', not decoded */
  const char *query;      /* after '?', not decoded; "" when absent */
  struct pt_http_header headers[PT_HTTP_MAX_HEADERS];
  size_t nheaders;
  const char *body;       /* NUL-terminated copy; body_len excludes the NUL */
  size_t body_len;
  bool keep_alive;
  bool head;              /* HEAD request: the server sends no body */
  const char *peer;       /* "ip:port" of the client, or "" */
};

struct pt_http_conn;
typedef void (*pt_http_stream_start_cb)(void *ud, struct pt_http_conn *conn);
typedef void (*pt_http_conn_close_cb)(void *ud, struct pt_http_conn *conn);

struct pt_http_resp {
  int status;               /* 200 when left 0 */
  const char *content_type; /* NULL = no Content-Type header */
  struct pt_buf headers;    /* extra header lines, each "Name: value\r\n" */
  struct pt_buf body;
  bool close;               /* close the connection after this response */
  pt_http_stream_start_cb stream_start; /* set to make this a streaming response */
  /* Set to answer later (work done off the loop): called with the
   * connection, which then waits for pt_http_conn_respond(); its close
   * callback (pt_http_conn_set_close_cb) says when the client went away or
   * the request deadline passed first (the client then gets a 503). Bytes a
   * client pipelines behind a deferred request are not read. */
  pt_http_stream_start_cb defer;
  void *stream_ud;                      /* ud of stream_start or defer */
};

typedef void (*pt_http_handler)(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp);

/* --- socket-free request parser ------------------------------------------ */

struct pt_tls_ctx;

struct pt_http_parser {
  llhttp_t ll;
  llhttp_settings_t settings;
  size_t max_header_bytes, max_body_bytes;
  struct pt_buf head;     /* "url\0name\0value\0..." */
  size_t offs[1 + 2 * PT_HTTP_MAX_HEADERS];
  size_t noffs;
  bool open;              /* an element of head is being received */
  struct pt_buf body;
  char method[24];
  int error_status;       /* set when pt_http_parser_feed() fails */
  const char *error_reason;
  bool complete;
  bool expect_continue;   /* client sent "Expect: 100-continue" */
  bool started;           /* some bytes of the current request arrived */
  bool pause_on_head;     /* stop after the head of a request with a body */
  bool head_paused;       /* stopped there; pt_http_parser_resume() goes on */
  bool query_split;       /* the target's '?' is cut: the query is at query_at */
  size_t query_at;
};

void pt_http_parser_init(struct pt_http_parser *p, size_t max_header_bytes, size_t max_body_bytes);
void pt_http_parser_close(struct pt_http_parser *p);
/* Feeds bytes. Returns 1 when a request is complete (with *consumed telling
 * how much of data it used; the rest belongs to the next request), 0 when all
 * of data was used and more is needed, or -1 on a protocol error with
 * error_status (400, 413, 431, 501, ...) and error_reason set. */
int pt_http_parser_feed(struct pt_http_parser *p, const char *data, size_t len, size_t *consumed);
/* With pause_on_head, feeding also returns 2 when the head of a request with
 * a body is complete (*consumed bytes used); call pt_http_parser_resume()
 * and feed the rest. Resuming returns -1 (error_status 413) when the
 * declared Content-Length is over the limit, else 0. */
int pt_http_parser_resume(struct pt_http_parser *p);
/* Fills req from the completed request (pointers into the parser). */
void pt_http_parser_request(struct pt_http_parser *p, struct pt_http_req *req);
/* Prepares for the next request on the same connection. */
void pt_http_parser_next(struct pt_http_parser *p);

/* --- helpers -------------------------------------------------------------- */

/* Case-insensitive header lookup; NULL when absent. */
const char *pt_http_req_header(const struct pt_http_req *req, const char *name);
/* Percent-decodes (and '+' -> ' ' when form is true) into out. Returns the
 * decoded length or -EINVAL for bad escapes, embedded NUL or overflow. */
int pt_http_url_decode(const char *in, size_t len, char *out, size_t outlen, bool form);
/* Looks up key in a query string and decodes its value. Returns 1 when found,
 * 0 when absent, -EINVAL when malformed or too long. */
int pt_http_query_get(const char *query, const char *key, char *out, size_t outlen);
const char *pt_http_status_text(int status);
/* Builds the status line and headers of resp (with Content-Length unless
 * streaming) into out. default_headers are appended verbatim. */
int pt_http_format_head(struct pt_buf *out, const struct pt_http_resp *resp, size_t content_length,
                        bool keep_alive, bool streaming, const char *default_headers);
void pt_http_resp_init(struct pt_http_resp *resp);
void pt_http_resp_close(struct pt_http_resp *resp);
/* Convenience: a JSON error body {"error": msg, "field": field or null}. */
void pt_http_resp_error(struct pt_http_resp *resp, int status, const char *msg, const char *field);

/* --- server ----------------------------------------------------------------- */

struct pt_http_server_options {
  size_t max_header_bytes;  /* 16 KiB when 0 */
  size_t max_body_bytes;    /* 1 MiB when 0 */
  size_t max_connections;   /* 4096 when 0 */
  double request_timeout;   /* seconds to receive a whole request; 10 when 0 */
  double idle_timeout;      /* seconds between keep-alive requests; 60 when 0 */
  /* A connection the server closes (after an error, a refusal or
   * "Connection: close") shuts down its write side once the answer is out
   * and keeps reading and dropping what the client still sends, for at most
   * linger_timeout seconds (5 when 0) and linger_max_bytes bytes (16 MiB when
   * 0), so that a client still sending its body receives the answer instead
   * of a reset (nginx's lingering_close). */
  double linger_timeout;
  size_t linger_max_bytes;
  /* When set, called with the head of a request that has a body, before the
   * body is read (req->body empty): setting resp->status refuses the request
   * at once (e.g. 401 before a large upload); leaving it 0 continues. The
   * handler still sees the whole request afterwards. */
  pt_http_handler check_head;
  /* When set, the connections speak TLS with its pair (core/tls.h); the
   * context must outlive the server. */
  struct pt_tls_ctx *tls;
  const char *default_headers; /* appended to every response, "Name: v\r\n"... */
  /* pt_http_conns_write_shared makes one sendmsg per connection instead of
   * trying io_uring (core/send_batch.h). */
  bool no_io_uring;
};

struct pt_http_server_stats {
  unsigned long long connections_accepted;
  unsigned long long connections_rejected; /* over max_connections */
  unsigned long long requests;
  unsigned long long bad_requests;         /* protocol errors answered 4xx */
  unsigned long long timeouts;             /* request deadline or idle expiry */
  unsigned long long refused_early;        /* refused by check_head before the body */
  unsigned long long lingering_closes;     /* closes that waited for the client to stop sending */
  unsigned long long linger_cutoffs;       /* of those, cut off by the time or byte bound */
  unsigned long long tls_errors;           /* failed handshakes and bad records */
  size_t connections_open;
};

struct pt_http_server;

struct pt_http_server *pt_http_server_create(uv_loop_t *loop, const struct pt_http_server_options *opts,
                                             pt_http_handler handler, void *ud);
/* Binds and listens; host "" means every interface. Returns 0 or a negative
 * libuv error. */
int pt_http_server_listen(struct pt_http_server *srv, const char *host, int port);
/* The bound port (useful after listening on port 0), or -1. */
int pt_http_server_port(const struct pt_http_server *srv);
/* Connections accepted from now on speak TLS with ctx (which must outlive
 * the server). */
void pt_http_server_use_tls(struct pt_http_server *srv, struct pt_tls_ctx *ctx);
/* Stops accepting new connections; existing ones continue. */
void pt_http_server_stop(struct pt_http_server *srv);
void pt_http_server_stats(const struct pt_http_server *srv, struct pt_http_server_stats *out);
/* Closes every connection (stream owners get their close callback) and frees
 * the server once its libuv handles are closed. Accepts NULL. */
void pt_http_server_destroy(struct pt_http_server *srv);

/* Streaming connections. */
void pt_http_conn_set_close_cb(struct pt_http_conn *conn, pt_http_conn_close_cb cb, void *ud);
/* Queues bytes (copied). Returns 0 or a negative errno (-EPIPE once closing). */
int pt_http_conn_write(struct pt_http_conn *conn, const void *data, size_t len);
struct pt_shared_buf;
/* Queues n shared buffers as one piece of the stream (one chunk when
 * chunked), by reference: no copy, each held until the kernel has taken it
 * (over TLS they are encrypted, so copied). Returns 0 or a negative errno. */
int pt_http_conn_write_shared(struct pt_http_conn *conn, struct pt_shared_buf *const *bufs, size_t n);
/* One connection's part of pt_http_conns_write_shared. */
struct pt_http_shared_write {
  struct pt_http_conn *conn;
  struct pt_shared_buf *const *bufs;
  size_t n;
  int result; /* out: what pt_http_conn_write_shared would return */
};
/* pt_http_conn_write_shared for n connections of one server: the plain
 * ones with nothing queued are written straight to their sockets together,
 * in one system call where io_uring can be had (core/send_batch.h), and
 * only what the kernel does not take is queued. The event stream's
 * fan-out: 10,000 readers are 10,000 system calls otherwise. */
void pt_http_conns_write_shared(struct pt_http_shared_write *w, size_t n);
/* Bytes queued and not yet accepted by the kernel. */
size_t pt_http_conn_queued(const struct pt_http_conn *conn);
/* Closes after queued bytes are sent (or at once when abort is true). The
 * close callback runs later, from the loop. */
void pt_http_conn_close(struct pt_http_conn *conn, bool abort);
const char *pt_http_conn_peer(const struct pt_http_conn *conn);
/* Sends the answer of a deferred request (resp->defer) and returns the
 * connection to keep-alive. resp may itself start a stream (stream_start)
 * or defer again (defer: the connection keeps waiting, under the same
 * request deadline). Returns -EPIPE when it is not waiting for one. */
int pt_http_conn_respond(struct pt_http_conn *conn, struct pt_http_resp *resp);

#endif
