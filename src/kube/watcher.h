/* The Kubernetes watcher of pulltrace-server: lists then watches pods and
 * kubelet events (all namespaces, or each of PULLTRACE_WATCH_NAMESPACES) over
 * the core HTTP client, and hands slim copies to its sink (pulltrace-server's
 * store, where the policy's correlation hook uses them). It knows nothing of
 * the server: the sink's callbacks and its readiness callback are all it
 * calls.
 *
 * Per resource and namespace a reflector runs: list (paginated) -> watch from
 * the list's resourceVersion with allowWatchBookmarks -> on a normal end
 * watch again from the last resourceVersion; on 410 Gone or an ERROR event
 * relist; on any other error back off (0.5 s doubling to 30 s, with jitter)
 * and watch again. A relist deletes pods that disappeared meanwhile and never
 * re-delivers an event already seen (events are remembered by uid and count),
 * so drops, 410s and API server restarts lose and duplicate nothing.
 *
 * Events whose last occurrence is before the watcher started are recorded for
 * correlation (a Pulling event of a pull in flight) but marked "historic":
 * they never create or fail a pull.
 *
 * The readiness callback turns ok once every reflector has completed its first
 * list (pulltrace-server shows it as the "kubernetes" check of /readyz).
 *
 * The loop never parses a list: its body (up to 256 MiB) is parsed and cut
 * into slim objects on libuv's thread pool, and only the slim objects come
 * back to the loop. The token file is re-read on the thread pool too. */
#ifndef PT_KUBE_WATCHER_H
#define PT_KUBE_WATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/httpc.h"
#include "kube/config.h"
#include "kube/parse.h"

#include <jansson.h>

struct pt_kube;

/* Where the watcher delivers what it learns; every callback runs on the loop
 * and gets borrowed objects (copy what you keep). Any callback may be NULL. */
struct pt_kube_sink {
  void *ud;
  /* A pod was added or changed: the slim pod of pt_kube_pod_slim() without
   * its resourceVersion. */
  void (*pod_upsert)(void *ud, const json_t *pod);
  void (*pod_delete)(void *ud, const char *ns, const char *name);
  /* An image-related kubelet event: pt_kube_event_slim(), plus
   * "historic": true when it happened before the watcher started (context
   * for correlation, never a new pull or failure). */
  void (*kube_event)(void *ud, const json_t *event, double now);
  /* Sync state changed: ok once every first list is done; detail says what
   * is missing. */
  void (*ready)(void *ud, bool ok, const char *detail);
};

enum pt_kube_resource { PT_KUBE_PODS = 0, PT_KUBE_EVENTS, PT_KUBE_RESOURCES };

struct pt_kube_options {
  const char *namespaces;   /* comma-separated; NULL or "" = all namespaces */
  double token_refresh;     /* seconds between token file re-reads; 60 when 0 */
  double backoff_max;       /* seconds; 30 when 0 */
  long watch_timeout;       /* timeoutSeconds asked per watch; 300 when 0 */
  long page_size;           /* list limit per page; 500 when 0 */
  size_t max_events_seen;   /* event uids remembered for de-duplication; 100000 when 0 */
};

struct pt_kube_stats {
  bool synced;
  uint64_t watch_restarts[PT_KUBE_RESOURCES];
  uint64_t relists[PT_KUBE_RESOURCES];  /* lists after the first one */
  uint64_t lists[PT_KUBE_RESOURCES];
  uint64_t errors[PT_KUBE_RESOURCES];   /* failed requests */
  uint64_t events_applied;              /* kubelet events handed to the store as new */
  uint64_t events_historic;             /* recorded, but from before the start */
  uint64_t events_duplicate;            /* seen again after a relist: ignored */
  uint64_t stream_bad_lines;            /* watch lines that were not an event */
  size_t pods_cached, events_cached;    /* objects the watcher remembers */
};

/* Takes over cfg (cleared on return) and copies sink. Reads the token once
 * (startup, before the loop runs). Does not start anything. */
struct pt_kube *pt_kube_create(uv_loop_t *loop, const struct pt_kube_sink *sink, struct pt_kubeconfig *cfg,
                               const struct pt_kube_options *opts);
/* Starts every reflector. Returns 0 or a negative errno. */
int pt_kube_start(struct pt_kube *k);
/* Cancels requests and work and closes the handles; memory is freed in their
 * close and after-work callbacks (run the loop afterwards). The sink is not
 * called any more. Accepts NULL. */
void pt_kube_destroy(struct pt_kube *k);
void pt_kube_stats(const struct pt_kube *k, struct pt_kube_stats *out);
/* One more request to the API server with the watcher's credentials (its
 * token, CA and client certificate), for writers such as the Kubernetes
 * Events and the token reviews of pulltrace-server: method and path ("/apis/..."; the server's URL
 * is prepended), an optional body with its content type. done runs exactly
 * once, on the loop (with -ECANCELED when the watcher is destroyed first).
 * Returns 0 (and, when id is not NULL, an id for pt_kube_cancel()),
 * -ESHUTDOWN once the watcher is closing, or another negative errno. */
int pt_kube_request(struct pt_kube *k, const char *method, const char *path, const char *body, size_t body_len,
                    const char *content_type, pt_httpc_done_cb done, void *ud, uint64_t *id);
/* Cancels a request of pt_kube_request() (id from its last argument): its done
 * callback runs now with -ECANCELED. Unknown ids are ignored. */
void pt_kube_cancel(struct pt_kube *k, uint64_t id);
/* For a client of its own to the same API server as the same user (the
 * leader lease, which needs its own timeouts and cancellation): a request
 * carrying the current credentials (token, CA, client
 * certificate; set its url and the rest), and the API server's base URL as
 * the return value. Borrowed strings: start the request at once (the HTTP
 * client copies them), and never after pt_kube_destroy(). */
struct pt_http_request;
const char *pt_kube_credentials(const struct pt_kube *k, struct pt_http_request *req);
const char *pt_kube_resource_name(enum pt_kube_resource r);

#endif
