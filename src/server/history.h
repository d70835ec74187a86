/* The history: finished pulls, alerts and the event-id sequence in SQLite
 * (PULLTRACE_DATA_DIR/history.db, WAL mode), docs/history.md.
 *
 * The loop only queues records (pt_history_record); one writer thread owns
 * the database connection for writes and commits whatever is queued in one
 * transaction, then tells the loop (uv_async) which records are committed.
 * The loop never waits for the disk. Retention by age and by size runs on the
 * writer thread in small batches between the writes.
 *
 * A write that fails (disk full, I/O error) drops that batch, counts it and
 * puts the history in a degraded state (metric, /readyz detail, log) until a
 * later transaction succeeds; the live tables and the event stream go on.
 *
 * Queries (history_query.c) run in libuv's thread pool on a read-only
 * connection of their own; WAL lets them read while the writer writes.
 *
 * One database belongs to one server process (an exclusive lock): a second
 * replica uses a data directory of its own. */
#ifndef PT_SERVER_HISTORY_H
#define PT_SERVER_HISTORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "server/change.h"

#define PT_HISTORY_FILE "history.db"

struct pt_history_options {
  const char *dir;      /* the data directory; must exist and be writable */
  double retention;     /* seconds finished pulls and alerts are kept; 0 = forever */
  int64_t max_bytes;    /* size of the database file the retention keeps under; 0 = no limit */
  double retention_interval; /* seconds between retention passes; 10 when 0 */
  size_t queue_max;     /* records queued before new ones are dropped (counted); 100000 when 0 */
};

struct pt_history_stats {
  uint64_t records_written;  /* committed */
  uint64_t transactions;
  uint64_t errors;           /* failed transactions */
  uint64_t records_dropped;  /* lost with a failed transaction or a full queue */
  uint64_t deleted_age, deleted_size; /* removed by retention */
  size_t queue_depth;
  int64_t db_bytes;          /* size of the database file (pages in use and free) */
  bool degraded;
  char last_error[256];
};

struct pt_history;

/* Committed: records up to this mark (pt_history_mark) are in the database,
 * or were dropped by a failed transaction. Runs on the loop. */
typedef void (*pt_history_commit_fn)(void *ud, uint64_t mark);

/* Opens (creating when missing) dir/history.db and checks it (a corrupt
 * file, a newer schema or an unwritable directory fail here with a message
 * in err that names the file). NULL on error. Records queued before
 * pt_history_start() wait for it. */
struct pt_history *pt_history_open(uv_loop_t *loop, const struct pt_history_options *opts, char *err,
                                   size_t errlen);
/* Starts the writer thread (after pt_history_load_live). 0 or a negative
 * libuv error with err. */
int pt_history_start(struct pt_history *h, char *err, size_t errlen);
/* Flushes what is queued, stops the writer thread and closes the database;
 * the history is freed once its async handle is closed. Queries in flight
 * finish without calling back. Accepts NULL. */
void pt_history_close(struct pt_history *h);

/* Startup, before pt_history_start(): calls fn for the persisted record of
 * every pull that was in the server's tables (pt_store_pull_record), oldest first.
 * A record fn rejects (non-zero) is kept in the history but not restored.
 * Returns the number of records visited, or a negative errno with err. */
long pt_history_load_live(struct pt_history *h, int (*fn)(void *ud, const json_t *record), void *ud, char *err,
                          size_t errlen);

/* The first event id this process may use: above every id an earlier process
 * on this database may have used, and reserved before it returns. */
uint64_t pt_history_first_event_id(const struct pt_history *h);
/* Keeps the reservation ahead of next_id: queues a new reservation (in
 * blocks) when next_id comes near the reserved one. Cheap; call before
 * publishing. */
void pt_history_reserve_event_ids(struct pt_history *h, uint64_t next_id);

/* Queues what a change means for the history: a pull that started, changed
 * state or, once finished, changed at all is written (with live = 1 while it
 * is in the tables); an eviction keeps the pull as history (live = 0), a
 * superseded pull is deleted (its failure lives on in the pull that
 * superseded it); alerts are appended. Layer and node changes and the
 * progress of pulls in flight write nothing. */
void pt_history_record(struct pt_history *h, const struct pt_change *c);
/* Queues one event of a pull's own past (server/pull_events.h): its id in
 * the event stream, its type and its data. It stays as long as its pull. */
void pt_history_record_event(struct pt_history *h, const char *pull_id, uint64_t id, const char *type,
                             const char *data);
/* Queues the current state of a pull, whatever it is (at shutdown, so that
 * the pulls in flight come back with their last figures). */
struct pt_pull;
void pt_history_save_pull(struct pt_history *h, const struct pt_pull *p);
/* The mark of the last queued record, and of the last committed one. */
uint64_t pt_history_mark(const struct pt_history *h);
uint64_t pt_history_committed(const struct pt_history *h);
void pt_history_set_commit_cb(struct pt_history *h, pt_history_commit_fn fn, void *ud);

void pt_history_stats(struct pt_history *h, struct pt_history_stats *out);

/* ---- queries (history_query.c) ------------------------------------------ */

struct pt_history_filter {
  const char *image;    /* substring of the image */
  const char *node;     /* exact */
  const char *ns;       /* a pod of the pull in this namespace */
  const char *pod;      /* "name" or "namespace/name" of a pod of the pull */
  unsigned state_mask;  /* bit (1 << enum pt_pull_state); 0 = any */
  double since, until;  /* started at or after / before; 0 = open */
};

/* The answer of a query: an HTTP status and its JSON body (owned by the
 * callee; NULL when the query was cancelled). Runs on the loop. */
typedef void (*pt_history_answer_fn)(void *ud, int status, json_t *body);

struct pt_history_query;

/* GET /api/v1/history: a page of at most limit pulls, newest first, and a
 * "continue" token for the next page ("" = first page). A malformed token
 * answers 400. Returns NULL without memory (nothing is called then). */
struct pt_history_query *pt_history_list(struct pt_history *h, const struct pt_history_filter *f, size_t limit,
                                         const char *cont, pt_history_answer_fn fn, void *ud);
/* GET /api/v1/history/stats: per image, the pulls finished in [since,
 * until) (image, node and namespace filters apply). */
struct pt_history_query *pt_history_stats_query(struct pt_history *h, const struct pt_history_filter *f,
                                                pt_history_answer_fn fn, void *ud);
/* GET /api/v1/history/alerts: alerts, newest first, paged like the list. */
struct pt_history_query *pt_history_alerts(struct pt_history *h, const struct pt_history_filter *f, size_t limit,
                                           const char *cont, pt_history_answer_fn fn, void *ud);
/* GET /api/v1/pulls/{id}/events: the pull's own events the history kept
 * (the newest PT_PULL_EVENTS_PER_PULL, oldest first, and how many earlier
 * ones it holds as "dropped"); 404 when it knows neither the pull nor an
 * event of it, unless live (the pull is in the tables, its record maybe not
 * committed yet). */
struct pt_history_query *pt_history_pull_events(struct pt_history *h, const char *pull_id, bool live,
                                                pt_history_answer_fn fn, void *ud);
/* How long image's pulls usually take: the median (nearest rank) duration
 * of its last PT_HISTORY_TYPICAL_SAMPLE completed pulls that downloaded
 * bytes (image compared exactly). Answers {"image", "p50" (seconds; null
 * without any), "pulls" (how many the median is of)}. NULL without memory
 * or image. */
#define PT_HISTORY_TYPICAL_SAMPLE 100
struct pt_history_query *pt_history_typical(struct pt_history *h, const char *image, pt_history_answer_fn fn,
                                            void *ud);
/* The caller no longer wants the answer (its client went away). */
void pt_history_query_cancel(struct pt_history_query *q);

#endif
