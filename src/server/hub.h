/* The event hub: numbers events, keeps the last ones in a ring buffer for
 * Last-Event-ID resumption, and fans them out to Server-Sent Events clients.
 *
 * Each event is framed once; every client it is for queues that frame by
 * reference, and before the loop polls again the clients with frames get
 * them in one write each (a slice of clients per loop iteration).
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

#include "core/prom.h"

#include "core/http_server.h"

/* The routing keys of an event: the hub delivers it to the subscribers whose
 * filters it matches (pt_hub_filter_match) and knows nothing else about it. */
struct pt_hub_keys {
  const char *node;  /* NULL: reaches every node filter */
  const char *nss;   /* namespaces, NUL-separated and ending with "" (an empty
                        list is ""); NULL: reaches every namespace filter */
  const char *image; /* NULL: reaches every image filter */
};

/* What a subscriber asked for (GET /api/v1/events's query); NULL members
 * filter nothing. */
struct pt_hub_filter {
  char *node;   /* the events of this node (and those of no node) */
  char *ns;     /* the events of this namespace (and those not namespaced) */
  char *image;  /* the events whose image contains this (and those of no image) */
  char *types;  /* event types, NUL-separated and ending with "": an exact
                   type, or a prefix ending with ".*" ("pull.*") */
};

/* Writes the complete data of a "snapshot" event for a subscriber's filter:
 * malloc'ed JSON text, or NULL. */
typedef char *(*pt_hub_snapshot_fn)(void *ud, const struct pt_hub_filter *filter);

struct pt_hub_options {
  size_t ring_size;        /* events kept for resumption; 4096 when 0 */
  size_t client_queue_max; /* bytes queued per client before it is dropped; 1 MiB when 0 */
  double heartbeat;        /* seconds between heartbeat comments; 15 when 0 */
  size_t max_clients;      /* 0 = unlimited (the HTTP server's connection cap applies) */
  uint64_t first_id;       /* id of the first event; 1 when 0 */
  unsigned retry_ms;       /* "retry:" sent to clients; 2000 when 0 */
  size_t flush_slice;      /* clients written per loop iteration; 500 when 0 */
};

/* The wait of a reader's frames, from the publication of the first of them
 * to their write: the upper bounds of the histogram's buckets, seconds. */
#define PT_HUB_WAIT_BUCKETS 11
extern const double pt_hub_wait_bounds[PT_HUB_WAIT_BUCKETS];

struct pt_hub_stats {
  size_t clients;
  uint64_t clients_total, dropped_slow, events, bytes;
  uint64_t resumed, snapshots;
  uint64_t last_id;
  /* One observation per write to a reader: how long its oldest frame in it
   * waited since it was published (the fan-out's own delay, before the
   * network's). Its counts are the hub's: read them on the loop's thread. */
  struct pt_prom_histogram wait;
};

struct pt_hub;

struct pt_hub *pt_hub_create(uv_loop_t *loop, const struct pt_hub_options *opts,
                             pt_hub_snapshot_fn snapshot, void *ud);
/* Closes every client (they get their close callback) and frees the hub once
 * its timer is closed. Accepts NULL. */
void pt_hub_destroy(struct pt_hub *hub);

/* Numbers, frames, stores and sends one event: type is a static string (the
 * event type), data its JSON text, keys (copied) say whom it is for. Returns
 * the event id. */
uint64_t pt_hub_publish(struct pt_hub *hub, const char *type, const struct pt_hub_keys *keys, const char *data);

/* Whether events are worth writing: a client is connected, or one left less
 * than PT_HUB_RESUME_WINDOW seconds ago (it may come back and resume). */
#define PT_HUB_RESUME_WINDOW 60
bool pt_hub_has_readers(const struct pt_hub *hub);
/* Numbers an event without writing it (when pt_hub_has_readers() is false):
 * the ring forgets the events it held, so a client resuming from before
 * this event gets a snapshot and loses nothing. An event nobody reads then
 * costs no serialisation. Returns its id. */
uint64_t pt_hub_skip(struct pt_hub *hub);

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
struct pt_hub_subscription *pt_hub_subscription_new(struct pt_hub *hub, const struct pt_hub_filter *filter,
                                                    const char *last_event_id);
/* A pt_http_stream_start_cb: pass it with the subscription as ud. */
void pt_hub_stream_start(void *subscription, struct pt_http_conn *conn);

/* Sends a final comment to every client and closes them after their queued
 * data (graceful shutdown). */
void pt_hub_shutdown(struct pt_hub *hub, const char *comment);
void pt_hub_stats(const struct pt_hub *hub, struct pt_hub_stats *out);

/* True when an event of this type with these keys is for a subscriber with
 * this filter. */
bool pt_hub_filter_match(const struct pt_hub_filter *filter, const char *type, const struct pt_hub_keys *keys);
/* True when the filter lets events of this type through (its types only). */
bool pt_hub_filter_wants(const struct pt_hub_filter *filter, const char *type);
/* A copy of a filter (members copied; NULL and "" become NULL), and its
 * release. Return 0 or -ENOMEM. */
int pt_hub_filter_copy(struct pt_hub_filter *dst, const struct pt_hub_filter *src);
void pt_hub_filter_clear(struct pt_hub_filter *f);

#endif
