/* Private to history.c and history_query.c. */
#ifndef PT_SERVER_HISTORY_IMPL_H
#define PT_SERVER_HISTORY_IMPL_H

#include <sqlite3.h>

#include "server/history.h"

struct history_item;

struct pt_history {
  uv_loop_t *loop;
  struct pt_history_options opts;
  char *path;            /* dir/history.db */
  int lock_fd;           /* flock of dir/history.lock: one process per data directory */
  sqlite3 *db;           /* the writer's connection (used by the loop thread only at startup) */
  uv_thread_t thread;
  bool thread_running;
  uv_async_t async;
  int refs;              /* the async handle and the queries in flight */
  bool closing;

  /* Shared with the writer thread, under mu. */
  uv_mutex_t mu;
  uv_cond_t cond;
  struct history_item *head, *tail;
  size_t queued;
  double head_queued_at; /* monotonic time the first queued record arrived */
  bool stop;
  uint64_t committed;    /* mark of the last record the writer finished */
  struct pt_history_stats stats;

  /* Loop side. */
  uint64_t mark;         /* mark of the last queued record */
  uint64_t reported;     /* last mark handed to commit_cb */
  uint64_t first_event_id;
  uint64_t reserved;     /* event ids up to this one are reserved (queued) */
  pt_history_commit_fn commit_cb;
  void *commit_ud;

  /* Queries: one read-only connection, one query at a time on it. */
  uv_mutex_t read_mu;
  sqlite3 *rdb;
};

/* Drops a reference taken by a query; frees the history after close. */
void history_unref(struct pt_history *h);
/* Sets err to "what: PATH: sqlite's message". */
void history_error(char *err, size_t errlen, const char *what, const char *path, sqlite3 *db, int rc);

#endif
