/* The event hub: numbers events, keeps the last ones in a ring buffer for
 * Last-Event-ID resumption, and fans them out to Server-Sent Events clients.
 *
 * Each client has a byte budget for data queued on its socket; a client that
 * exceeds it is disconnected (it reconnects and resumes) so that one slow
 * reader never holds memory or time from the others. */
#ifndef PT_SERVER_HUB_H
#define PT_SERVER_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/http_server.h"

/* Writes the complete data of a "snapshot" event for the given filters
 * (either may be NULL): malloc'ed JSON text, or NULL. */
typedef char *(*pt_hub_snapshot_fn)(void *ud, const char *node, const char *ns);

/* The routing keys of an event: the hub delivers it to the subscribers whose
 * filters it matches (pt_hub_filter_match) and knows nothing else about it. */
struct pt_hub_keys {
  const char *node; /* NULL: reaches every node filter */
  const char *nss;  /* namespaces, NUL-separated and ending with "" (an empty
                       list is ""); NULL: reaches every namespace filter */
};

struct pt_hub_options {
  size_t ring_size;        /* events kept for resumption; 4096 when 0 */
  size_t client_queue_max; /* bytes queued per client before it is dropped; 1 MiB when 0 */
  double heartbeat;        /* seconds between heartbeat comments; 15 when 0 */
  size_t max_clients;      /* 0 = unlimited (the HTTP server's connection cap applies) */
  uint64_t first_id;       /* id of the first event; 1 when 0 */
  unsigned retry_ms;       /* "retry:" sent to clients; 2000 when 0 */
};

struct pt_hub_stats {
  size_t clients;
  uint64_t clients_total, dropped_slow, events, bytes;
  uint64_t resumed, snapshots;
  uint64_t last_id;
};

struct pt_hub;

struct pt_hub *pt_hub_create(uv_loop_t *loop, const struct pt_hub_options *opts,
                             pt_hub_snapshot_fn snapshot, void *ud);
/* Closes every client (they get their close callback) and frees the hub once
 * its timer is closed. Accepts NULL. */
void pt_hub_destroy(struct pt_hub *hub);

/* Numbers, frames, stores and sends one event: data is its JSON text, keys
 * (copied) say whom it is for. Returns the event id. */
uint64_t pt_hub_publish(struct pt_hub *hub, const char *type, const struct pt_hub_keys *keys, const char *data);

/* The id the next event gets. Before the first event, the next id may be
 * raised (to continue the sequence of an earlier process); later calls are
 * ignored. */
uint64_t pt_hub_next_id(const struct pt_hub *hub);
void pt_hub_set_next_id(struct pt_hub *hub, uint64_t id);
/* A copy of a NUL-separated namespace list (struct pt_hub_keys.nss), or NULL
 * for NULL or without memory. */
char *pt_hub_nss_copy(const char *nss);

/* Context of a client about to start streaming (allocated by
 * pt_hub_subscription_new(), owned by the hub afterwards). */
struct pt_hub_subscription;
struct pt_hub_subscription *pt_hub_subscription_new(struct pt_hub *hub, const char *node, const char *ns,
                                                    const char *last_event_id);
/* A pt_http_stream_start_cb: pass it with the subscription as ud. */
void pt_hub_stream_start(void *subscription, struct pt_http_conn *conn);

/* Sends a final comment to every client and closes them after their queued
 * data (graceful shutdown). */
void pt_hub_shutdown(struct pt_hub *hub, const char *comment);
void pt_hub_stats(const struct pt_hub *hub, struct pt_hub_stats *out);

/* Exposed for tests: true when the event with these filter keys is for a
 * client with these filters. nss is a NUL-separated list ending with "". */
bool pt_hub_filter_match(const char *ev_node, const char *ev_nss, const char *node, const char *ns);

#endif
