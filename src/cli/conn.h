/* How the client reaches the pulltrace server and the Kubernetes API.
 *
 * Normally through the API server's service proxy
 * (/api/v1/namespaces/<ns>/services/[https:]<name>:<port>/proxy/...) with the
 * user's kubeconfig, so that Kubernetes RBAC (services/proxy) decides who may
 * look; with --server, directly. The API server speaks TLS to pulltrace-server
 * only for the https: scheme, and verifies no certificate then. Requests run on the caller's libuv loop through
 * pt_httpc; an exec plugin's token is renewed off the loop after a 401.
 *
 * The proxy does not pass the user's Authorization header on. When
 * pulltrace-server itself answers 401 (PULLTRACE_READ_AUTH=kubernetes), the
 * request is sent again with the kubeconfig's bearer token in
 * PT_PROXY_TOKEN_HEADER (core/httpc.h), and so is every later one: a server
 * that does not ask never sees the user's credential. */
#ifndef PT_CLI_CONN_H
#define PT_CLI_CONN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/httpc.h"
#include "core/kubeconfig.h"

#define PT_CLI_DEFAULT_NAMESPACE "pulltrace"
#define PT_CLI_DEFAULT_SERVICE "pulltrace-server:http"

struct pt_conn_options {
  const char *kubeconfig;   /* --kubeconfig, else $KUBECONFIG, else ~/.kube/config */
  const char *context;      /* --context */
  const char *namespace;    /* -n; NULL = the context's, else "default" */
  const char *server;       /* --server URL of pulltrace-server: no service proxy */
  const char *pt_namespace; /* --pulltrace-namespace */
  const char *pt_service;   /* --pulltrace-service [SCHEME:]NAME[:PORT] */
  bool insecure;            /* --insecure-skip-tls-verify */
  long request_timeout_ms;  /* --request-timeout; 0 = 30 s for plain requests */
};

enum pt_target { PT_TARGET_PULLTRACE, PT_TARGET_KUBE };

struct pt_conn {
  uv_loop_t *loop;
  struct pt_httpc *http;
  struct pt_kubeconfig kube;
  bool have_kube, insecure;
  char *pt_base;     /* pulltrace-server's URL prefix ("" paths appended) */
  char *where;       /* how the server is reached, for messages */
  char *service;     /* [SCHEME:]NAME[:PORT] in the proxy path; NULL with --server */
  char *token;       /* the Kubernetes bearer token now */
  char *namespace;   /* the namespace pods are looked up in */
  long timeout_ms;
  bool refreshing;   /* an exec token renewal is running on the thread pool */
  bool reader_token; /* pulltrace-server asked for the user's token: send it */
  struct pt_conn_req *waiting; /* requests waiting for the renewal */
};

/* Sets the connection up. need_kube: the command reads Kubernetes objects
 * (a kubeconfig is required even with --server). Returns 0 or a negative
 * errno with the reason in err. */
int pt_conn_init(struct pt_conn *c, uv_loop_t *loop, const struct pt_conn_options *o, bool need_kube,
                 char *err, size_t errlen);
/* Cancels what is in flight (callbacks run with an error) and frees. */
void pt_conn_close(struct pt_conn *c);

/* A JSON GET. doc is the parsed 2xx body (borrowed: valid during the
 * callback), or NULL with a one-line reason in err (HTTP status, the
 * Kubernetes Status or pulltrace error message, transport error). */
typedef void (*pt_conn_json_cb)(void *ud, json_t *doc, long status, const char *err);
int pt_conn_get(struct pt_conn *c, enum pt_target t, const char *path, pt_conn_json_cb cb, void *ud);
/* A list of pulltrace-server (path: /api/v1/pulls, /api/v1/nodes,
 * /api/v1/history... with its filters), page after page (list.c): cb gets
 * the first page's document with `member` holding every page's items, at
 * most `limit` of them (0: all; pages stop being read once there are
 * enough). */
int pt_conn_get_list(struct pt_conn *c, const char *path, const char *member, long limit, pt_conn_json_cb cb,
                     void *ud);

/* A Server-Sent Events stream from pulltrace-server: on_data gets the body's
 * bytes; done is called once with the reason it ended (NULL err when the
 * server closed it normally). last_event_id may be NULL. */
typedef void (*pt_conn_done_cb)(void *ud, long status, const char *err);
int pt_conn_stream(struct pt_conn *c, const char *path, const char *last_event_id, pt_httpc_data_cb on_data,
                   pt_conn_done_cb done, void *ud, uint64_t *id);
void pt_conn_cancel(struct pt_conn *c, uint64_t id);

/* Appends s percent-encoded for a URL query value or path segment. */
void pt_conn_escape(struct pt_buf *out, const char *s);

#endif
