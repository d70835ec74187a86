/* Outbound HTTP(S) client: libcurl's multi interface driven by a libuv loop
 * (curl_multi_socket_action + uv_poll + uv_timer). Used for agent reports, the
 * Kubernetes API (list and streaming watch over TLS) and alert webhooks.
 *
 * Every request finishes with exactly one call of its done callback, on the
 * loop thread, including when it is cancelled or the client is destroyed. */
#ifndef PT_CORE_HTTPC_H
#define PT_CORE_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The header in which kubectl-pulltrace sends a reader's bearer token
 * ("Bearer <token>") to pulltrace-server through the Kubernetes API
 * server's service proxy. The API server's authentication filter removes
 * Authorization (and the X-Remote-User/-Group/-Extra-* front-proxy headers;
 * its impersonation filter the Impersonate-* ones) from a request it has
 * authenticated, before the proxy forwards it; other headers pass.
 * pulltrace-server accepts a reader's token from it (docs/security.md#readers). */
#define PT_PROXY_TOKEN_HEADER "X-Pulltrace-Authorization"

struct pt_httpc;

struct pt_http_response {
  long status;          /* HTTP status, or 0 when no response arrived */
  int result;           /* 0, or a negative errno-style code (-ECANCELED, -ETIMEDOUT, -EIO) */
  const char *error;    /* human-readable transport error, or NULL */
  const char *body;     /* buffered body, NUL-terminated (empty when streamed) */
  size_t body_len;
  void *xfer;           /* private: for pt_httpc_take_body() */
};

/* Called for each chunk of a streamed body; return non-zero to abort the request. */
typedef int (*pt_httpc_data_cb)(void *ud, const char *data, size_t len);
typedef void (*pt_httpc_done_cb)(void *ud, const struct pt_http_response *resp);

struct pt_http_request {
  const char *method;        /* "GET" when NULL */
  const char *url;
  const char *body;          /* copied */
  size_t body_len;
  const char *content_type;  /* e.g. "application/json" */
  const char *bearer_token;  /* sent as Authorization: Bearer; copied */
  const char *ca_file;       /* PEM CA bundle for TLS, NULL = system store */
  const char *client_cert;   /* PEM client certificate file, optional */
  const char *client_key;    /* PEM client key file, optional */
  int insecure_skip_verify;  /* non-zero: accept any server certificate (kubeconfig's
                                insecure-skip-tls-verify, only when the user asks for it) */
  const char *const *headers;/* extra "Name: value" lines, NULL-terminated; optional */
  long timeout_ms;           /* whole transfer; 0 = none (streaming watches) */
  long connect_timeout_ms;   /* 0 = 10 s */
  long low_speed_time_s;     /* abort if under 1 byte/s for this long; 0 = off */
  size_t max_body;           /* buffered body cap; 0 = 16 MiB */
  pt_httpc_data_cb on_data;  /* stream instead of buffering when set */
  int buffer_errors;         /* with on_data: buffer a non-2xx body into the response
                                (an error document) instead of streaming it */
  /* Connect to this address instead of resolving the URL's host: an IP
   * literal, IPv6 in brackets (libcurl's CONNECT_TO). The request still names
   * the URL's host (Host header, TLS server name and certificate check).
   * NULL = resolve as usual. */
  const char *connect_addr;
};

struct pt_httpc *pt_httpc_create(uv_loop_t *loop);
/* Cancels every request (their done callbacks run with -ECANCELED) and
 * releases the client once its libuv handles are closed. Accepts NULL. */
void pt_httpc_destroy(struct pt_httpc *c);

/* Starts a request. On success returns 0 and, when id is not NULL, an id for
 * pt_httpc_cancel(). */
int pt_httpc_request(struct pt_httpc *c, const struct pt_http_request *req,
                     pt_httpc_done_cb done, void *ud, uint64_t *id);
/* Cancels a request still in flight; its done callback runs with -ECANCELED
 * before this returns. Unknown ids are ignored. */
void pt_httpc_cancel(struct pt_httpc *c, uint64_t id);
/* Inside a done callback: takes over the buffered body, so that a big one can
 * be handed to another thread without a copy. Returns it (NUL-terminated,
 * resp->body_len bytes; free() it), or NULL when out of memory. resp->body
 * stays valid as long as the caller keeps the returned buffer. */
char *pt_httpc_take_body(const struct pt_http_response *resp);
/* Number of requests in flight. */
size_t pt_httpc_active(const struct pt_httpc *c);

#endif
