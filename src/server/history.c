/* The history's database and its writer thread (server/history.h). It is over
 * 800 lines because opening and checking the database, the schema, the writer
 * thread's batches and the retention passes all run on the one SQLite connection
 * and its prepared statements that only this file may touch; the queries, which
 * open connections of their own, are in history_query.c. */
#include "server/history_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "server/store.h"

/* 2 added pull_events (a version 1 database gets it when opened). */
#define SCHEMA_VERSION 2
/* Event ids are reserved this many at a time: one small write per block. */
#define EVENT_ID_BLOCK 100000
/* A transaction takes what is queued within GROUP_WINDOW seconds of its first
 * record, up to GROUP_MAX records. */
#define GROUP_WINDOW 0.005
#define GROUP_MAX 1000
/* Rows one retention transaction deletes at most: keeps each short. */
#define RETENTION_BATCH 500

static const char schema[] =
  "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
  "CREATE TABLE pulls("
  " seq INTEGER PRIMARY KEY,"          /* order of the first write: the key of paging */
  " id TEXT NOT NULL UNIQUE,"
  " node TEXT NOT NULL,"
  " image TEXT,"
  " state TEXT NOT NULL,"
  " started_at REAL NOT NULL,"
  " ended_at REAL,"                    /* completed, failed or lost; NULL in flight */
  " duration REAL,"
  " total_bytes INTEGER NOT NULL,"
  " downloaded_bytes INTEGER NOT NULL,"
  " cached_bytes INTEGER NOT NULL,"
  " error_reason TEXT,"
  " namespaces TEXT NOT NULL,"         /* ,ns1,ns2, */
  " pods TEXT NOT NULL,"               /* ,ns/name,ns/name, */
  " live INTEGER NOT NULL,"            /* 1 while in the server's tables */
  " record TEXT NOT NULL);"            /* pt_store_pull_record() */
  "CREATE INDEX pulls_started ON pulls(started_at, seq);"
  "CREATE INDEX pulls_ended ON pulls(live, ended_at);"
  "CREATE INDEX pulls_image_ended ON pulls(image, ended_at);"
  "CREATE TABLE alerts("
  " seq INTEGER PRIMARY KEY,"
  " time REAL NOT NULL,"
  " name TEXT NOT NULL,"
  " severity TEXT,"
  " node TEXT,"
  " pull_id TEXT,"
  " image TEXT,"
  " namespace TEXT,"
  " record TEXT NOT NULL);"
  "CREATE INDEX alerts_time ON alerts(time, seq);";

/* Version 2: each pull's own events (server/pull_events.h), gone with their
 * pull (retention, or a superseded pull). */
static const char schema_v2[] =
  "CREATE TABLE pull_events("
  " pull_id TEXT NOT NULL,"
  " id INTEGER NOT NULL,"              /* the event's id in the stream */
  " type TEXT NOT NULL,"
  " data TEXT NOT NULL,"               /* the stream's data, the pull without layers */
  " PRIMARY KEY(pull_id, id)) WITHOUT ROWID;"
  "CREATE TRIGGER pull_events_gone AFTER DELETE ON pulls BEGIN"
  " DELETE FROM pull_events WHERE pull_id = old.id; END;";

enum item_kind { ITEM_PULL, ITEM_EVICT, ITEM_DELETE, ITEM_ALERT, ITEM_RESERVE, ITEM_EVENT };

struct history_item {
  struct history_item *next;
  enum item_kind kind;
  uint64_t mark;
  /* pulls */
  char *id, *node, *image, *state, *error_reason, *nss, *pods, *record;
  double started_at, ended_at, duration;
  int64_t total, downloaded, cached;
  /* alerts (node, image and record above too) */
  char *name, *severity, *pull_id, *ns;
  double time;
  /* ITEM_RESERVE; ITEM_EVENT: the event's id (id: its pull, name: its
   * type, record: its data) */
  uint64_t value;
};

static void item_free(struct history_item *it)
{
  if (!it)
    return;
  char *strs[] = {it->id, it->node, it->image, it->state, it->error_reason, it->nss,
                  it->pods, it->record, it->name, it->severity, it->pull_id, it->ns};
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
    free(strs[i]);
  free(it);
}

void history_error(char *err, size_t errlen, const char *what, const char *path, sqlite3 *db, int rc)
{
  snprintf(err, errlen, "%s: %s: %s", what, path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static double mono(void)
{
  return (double)uv_hrtime() / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Statements of the writer                                                   */

static const char sql_upsert[] =
  "INSERT INTO pulls(id,node,image,state,started_at,ended_at,duration,total_bytes,downloaded_bytes,"
  "cached_bytes,error_reason,namespaces,pods,live,record) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,1,?14) "
  "ON CONFLICT(id) DO UPDATE SET node=excluded.node,image=excluded.image,state=excluded.state,"
  "started_at=excluded.started_at,ended_at=excluded.ended_at,duration=excluded.duration,"
  "total_bytes=excluded.total_bytes,downloaded_bytes=excluded.downloaded_bytes,cached_bytes=excluded.cached_bytes,"
  "error_reason=excluded.error_reason,namespaces=excluded.namespaces,pods=excluded.pods,live=1,"
  "record=excluded.record";
static const char sql_evict[] = "UPDATE pulls SET live=0 WHERE id=?1";
static const char sql_delete[] = "DELETE FROM pulls WHERE id=?1";
static const char sql_alert[] =
  "INSERT INTO alerts(time,name,severity,node,pull_id,image,namespace,record) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)";
static const char sql_reserve[] =
  "INSERT INTO meta(key,value) VALUES('event_id_reserved',?1) ON CONFLICT(key) DO UPDATE SET "
  "value=max(value,excluded.value)";

static const char sql_event[] = "INSERT OR REPLACE INTO pull_events(pull_id,id,type,data) VALUES(?1,?2,?3,?4)";

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static void bind_time(sqlite3_stmt *st, int i, double t)
{
  if (t > 0)
    sqlite3_bind_double(st, i, t);
  else
    sqlite3_bind_null(st, i);
}

static int run(sqlite3 *db, const char *sql, void (*bind)(sqlite3_stmt *, const struct history_item *),
               const struct history_item *it)
{
  sqlite3_stmt *st;
  /* Prepared per record: cheap next to the write itself. */
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  if (bind)
    bind(st, it);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void bind_pull(sqlite3_stmt *st, const struct history_item *it)
{
  bind_text(st, 1, it->id);
  bind_text(st, 2, it->node);
  bind_text(st, 3, it->image);
  bind_text(st, 4, it->state);
  sqlite3_bind_double(st, 5, it->started_at);
  bind_time(st, 6, it->ended_at);
  if (it->duration >= 0)
    sqlite3_bind_double(st, 7, it->duration);
  sqlite3_bind_int64(st, 8, it->total);
  sqlite3_bind_int64(st, 9, it->downloaded);
  sqlite3_bind_int64(st, 10, it->cached);
  bind_text(st, 11, it->error_reason);
  bind_text(st, 12, it->nss);
  bind_text(st, 13, it->pods);
  bind_text(st, 14, it->record);
}

static void bind_id(sqlite3_stmt *st, const struct history_item *it)
{
  bind_text(st, 1, it->id);
}

static void bind_alert(sqlite3_stmt *st, const struct history_item *it)
{
  sqlite3_bind_double(st, 1, it->time);
  bind_text(st, 2, it->name);
  bind_text(st, 3, it->severity);
  bind_text(st, 4, it->node);
  bind_text(st, 5, it->pull_id);
  bind_text(st, 6, it->image);
  bind_text(st, 7, it->ns);
  bind_text(st, 8, it->record);
}

static void bind_reserve(sqlite3_stmt *st, const struct history_item *it)
{
  sqlite3_bind_int64(st, 1, (sqlite3_int64)it->value);
}

static void bind_event(sqlite3_stmt *st, const struct history_item *it)
{
  bind_text(st, 1, it->id);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)it->value);
  bind_text(st, 3, it->name);
  bind_text(st, 4, it->record);
}

static int write_item(sqlite3 *db, const struct history_item *it)
{
  switch (it->kind) {
  case ITEM_PULL: return run(db, sql_upsert, bind_pull, it);
  case ITEM_EVICT: return run(db, sql_evict, bind_id, it);
  case ITEM_DELETE: return run(db, sql_delete, bind_id, it);
  case ITEM_ALERT: return run(db, sql_alert, bind_alert, it);
  case ITEM_RESERVE: return run(db, sql_reserve, bind_reserve, it);
  case ITEM_EVENT: return run(db, sql_event, bind_event, it);
  }
  return SQLITE_MISUSE;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
  sqlite3_stmt *st;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int64_t db_bytes(sqlite3 *db)
{
  int64_t pages = query_int(db, "PRAGMA page_count"), size = query_int(db, "PRAGMA page_size");
  return pages >= 0 && size > 0 ? pages * size : -1;
}

/* ------------------------------------------------------------------------ */
/* The writer thread                                                          */

/* After each transaction: figures for the loop, and a wake-up. */
static void finish_tx(struct pt_history *h, int rc, size_t nrecords, uint64_t mark, const char *what)
{
  int64_t bytes = db_bytes(h->db);
  uv_mutex_lock(&h->mu);
  if (mark > h->committed)
    h->committed = mark;
  if (bytes >= 0)
    h->stats.db_bytes = bytes;
  if (rc == SQLITE_OK) {
    h->stats.transactions++;
    h->stats.records_written += nrecords;
    /* Only records written prove that writes work again: a retention pass
     * that deleted nothing wrote nothing. */
    if (nrecords > 0)
      h->stats.degraded = false;
  } else {
    h->stats.errors++;
    h->stats.records_dropped += nrecords;
    bool was = h->stats.degraded;
    h->stats.degraded = true;
    snprintf(h->stats.last_error, sizeof(h->stats.last_error), "%s: %s", what, sqlite3_errstr(rc));
    if (!was)
      PT_LOG_ERROR("history write failed: history degraded, the live view goes on", "{s:s,s:s,s:I}", "file",
                   h->path, "error", h->stats.last_error, "recordsDropped", (json_int_t)nrecords);
  }
  uv_mutex_unlock(&h->mu);
  uv_async_send(&h->async);
}

static int tx(sqlite3 *db, const char *sql)
{
  return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void write_batch(struct pt_history *h, struct history_item *batch)
{
  size_t n = 0;
  uint64_t mark = 0;
  int rc = tx(h->db, "BEGIN IMMEDIATE");
  for (struct history_item *it = batch; it; it = it->next) {
    if (rc == SQLITE_OK)
      rc = write_item(h->db, it);
    mark = it->mark;
    n++;
  }
  if (rc == SQLITE_OK)
    rc = tx(h->db, "COMMIT");
  if (rc != SQLITE_OK && !sqlite3_get_autocommit(h->db))
    tx(h->db, "ROLLBACK");
  while (batch) {
    struct history_item *next = batch->next;
    item_free(batch);
    batch = next;
  }
  finish_tx(h, rc, n, mark, "writing the history");
}

static int delete_batch(sqlite3 *db, const char *sql, double bound, int64_t limit, int64_t *deleted)
{
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_double(st, 1, bound);
  sqlite3_bind_int64(st, 2, limit);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  *deleted = sqlite3_changes(db);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One small step of retention in its own transaction. Returns true when
 * there is more to do right away. */
static bool retention_step(struct pt_history *h)
{
  static const char by_age_pulls[] =
    "DELETE FROM pulls WHERE seq IN (SELECT seq FROM pulls WHERE live=0 AND ended_at < ?1 LIMIT ?2)";
  static const char by_age_alerts[] =
    "DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts WHERE time < ?1 LIMIT ?2)";
  /* By size: the oldest finished pulls first, then the oldest alerts. */
  static const char by_size_pulls[] =
    "DELETE FROM pulls WHERE seq IN (SELECT seq FROM pulls WHERE live=0 AND ended_at < ?1 "
    "ORDER BY ended_at, seq LIMIT ?2)";
  static const char by_size_alerts[] =
    "DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts WHERE time < ?1 ORDER BY time, seq LIMIT ?2)";
  double now = (double)time(NULL);
  int64_t age_p = 0, age_a = 0, size_p = 0, size_a = 0;
  int rc = tx(h->db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK && h->opts.retention > 0) {
    double bound = now - h->opts.retention;
    rc = delete_batch(h->db, by_age_pulls, bound, RETENTION_BATCH, &age_p);
    if (rc == SQLITE_OK)
      rc = delete_batch(h->db, by_age_alerts, bound, RETENTION_BATCH, &age_a);
  }
  bool over = false;
  if (rc == SQLITE_OK && h->opts.max_bytes > 0) {
    /* Rows go only when the pages in use are over the limit: free pages
     * are reused first. */
    int64_t page = query_int(h->db, "PRAGMA page_size");
    int64_t used = (query_int(h->db, "PRAGMA page_count") - query_int(h->db, "PRAGMA freelist_count")) * page;
    if (used > h->opts.max_bytes) {
      /* About as many rows as the excess holds (by the average row), so
       * that the history is not cut far below its limit. */
      int64_t rows = query_int(h->db, "SELECT count(*) FROM pulls") + query_int(h->db, "SELECT count(*) FROM alerts");
      int64_t per_row = rows > 0 ? used / rows : used;
      int64_t n = per_row > 0 ? (used - h->opts.max_bytes) / per_row + 1 : 1;
      if (n > RETENTION_BATCH)
        n = RETENTION_BATCH;
      rc = delete_batch(h->db, by_size_pulls, INFINITY, n, &size_p);
      if (rc == SQLITE_OK && size_p == 0)
        rc = delete_batch(h->db, by_size_alerts, INFINITY, n, &size_a);
      over = size_p + size_a > 0;
    }
  }
  /* Deleted rows' pages go back to the file system (auto_vacuum is
   * incremental), so the file shrinks with the history. */
  if (rc == SQLITE_OK && age_p + age_a + size_p + size_a > 0)
    rc = tx(h->db, "PRAGMA incremental_vacuum");
  if (rc == SQLITE_OK)
    rc = tx(h->db, "COMMIT");
  if (rc != SQLITE_OK && !sqlite3_get_autocommit(h->db))
    tx(h->db, "ROLLBACK");
  if (rc == SQLITE_OK) {
    uv_mutex_lock(&h->mu);
    h->stats.deleted_age += (uint64_t)(age_p + age_a);
    h->stats.deleted_size += (uint64_t)(size_p + size_a);
    uv_mutex_unlock(&h->mu);
  }
  finish_tx(h, rc, 0, 0, "retention");
  return rc == SQLITE_OK && (over || age_p == RETENTION_BATCH || age_a == RETENTION_BATCH);
}

static void writer_main(void *arg)
{
  struct pt_history *h = arg;
  double interval = h->opts.retention_interval > 0 ? h->opts.retention_interval : 10;
  double next_retention = mono() + 1;
  uv_mutex_lock(&h->mu);
  for (;;) {
    while (!h->head && !h->stop) {
      double wait = next_retention - mono();
      if (wait <= 0)
        break;
      uv_cond_timedwait(&h->cond, &h->mu, (uint64_t)(wait * 1e9));
    }
    /* Group commit: what arrives within a few milliseconds of the first
     * record shares its transaction (a commit writes whole pages, for one
     * record as for a hundred). Events wait for it: keep it short. */
    while (h->head && !h->stop && h->queued < GROUP_MAX) {
      double wait = h->head_queued_at + GROUP_WINDOW - mono();
      if (wait <= 0)
        break;
      uv_cond_timedwait(&h->cond, &h->mu, (uint64_t)(wait * 1e9));
    }
    struct history_item *batch = h->head;
    h->head = h->tail = NULL;
    h->queued = 0;
    bool stop = h->stop;
    uv_mutex_unlock(&h->mu);
    if (batch)
      write_batch(h, batch);
    else if (stop)
      return;
    if (!stop && mono() >= next_retention) {
      /* A pass that left work continues soon, but writes go first. */
      bool more = retention_step(h);
      next_retention = mono() + (more ? 0.05 : interval);
    }
    uv_mutex_lock(&h->mu);
  }
}

/* ------------------------------------------------------------------------ */
/* Open, close                                                                */

static void async_cb(uv_async_t *a)
{
  struct pt_history *h = a->data;
  uv_mutex_lock(&h->mu);
  uint64_t committed = h->committed;
  uv_mutex_unlock(&h->mu);
  if (committed > h->reported && !h->closing) {
    h->reported = committed;
    if (h->commit_cb)
      h->commit_cb(h->commit_ud, committed);
  }
}

static void history_free(struct pt_history *h)
{
  /* Records of a history whose writer never started. */
  while (h->head) {
    struct history_item *next = h->head->next;
    item_free(h->head);
    h->head = next;
  }
  sqlite3_close(h->rdb);
  sqlite3_close(h->db);
  uv_mutex_destroy(&h->mu);
  uv_mutex_destroy(&h->read_mu);
  uv_cond_destroy(&h->cond);
  if (h->lock_fd >= 0)
    close(h->lock_fd);
  free(h->path);
  free(h);
}

void history_unref(struct pt_history *h)
{
  if (--h->refs == 0)
    history_free(h);
}

static void async_closed(uv_handle_t *a)
{
  history_unref(a->data);
}

static int exec_checked(struct pt_history *h, const char *sql, const char *what, char *err, size_t errlen)
{
  int rc = tx(h->db, sql);
  if (rc != SQLITE_OK)
    history_error(err, errlen, what, h->path, h->db, rc);
  return rc;
}

/* Opens or creates the database and checks it; returns 0 or -1 with err. */
static int open_db(struct pt_history *h, char *err, size_t errlen)
{
  int rc = sqlite3_open_v2(h->path, &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    history_error(err, errlen, "cannot open the history database", h->path, h->db, rc);
    return -1;
  }
  sqlite3_busy_timeout(h->db, 5000);
  /* Before anything else: a file that is not a database (or is damaged)
   * fails here, not later on the writer thread. */
  sqlite3_stmt *st;
  rc = sqlite3_prepare_v2(h->db, "PRAGMA quick_check", -1, &st, NULL);
  if (rc != SQLITE_OK) {
    history_error(err, errlen, "the history database is corrupt or not a database", h->path, h->db, rc);
    return -1;
  }
  rc = sqlite3_step(st);
  const unsigned char *res = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
  if (!res || strcmp((const char *)res, "ok") != 0) {
    snprintf(err, errlen, "the history database is corrupt: %s: %s (move it away to start with an empty history)",
             h->path, res ? (const char *)res : sqlite3_errmsg(h->db));
    sqlite3_finalize(st);
    return -1;
  }
  sqlite3_finalize(st);
  int64_t version = query_int(h->db, "PRAGMA user_version");
  if (version > SCHEMA_VERSION) {
    snprintf(err, errlen, "the history database %s has schema version %lld, newer than this server's %d",
             h->path, (long long)version, SCHEMA_VERSION);
    return -1;
  }
  /* auto_vacuum and the page size only take effect on an empty database:
   * set them first. A stored pull is 1 to 3 KiB: 8 KiB pages hold three or
   * four, where 4 KiB pages would hold one and leave the rest empty (larger
   * pages would make every commit write more). */
  if (version == 0 &&
      exec_checked(h, "PRAGMA page_size=8192; PRAGMA auto_vacuum=INCREMENTAL", "cannot set up", err, errlen))
    return -1;
  rc = sqlite3_prepare_v2(h->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    int step = sqlite3_step(st);
    const unsigned char *mode = step == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    rc = step != SQLITE_ROW ? step : mode && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    history_error(err, errlen, "cannot switch the history database to WAL mode", h->path, h->db, rc);
    return -1;
  }
  /* NORMAL in WAL mode: a commit survives a crash of the process (kill -9);
   * only a power loss may take back the last transactions. */
  if (exec_checked(h, "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=67108864", "cannot set up", err,
                   errlen))
    return -1;
  if (version < SCHEMA_VERSION) {
    if (exec_checked(h, "BEGIN IMMEDIATE", "cannot write the history database", err, errlen))
      return -1;
    if ((version < 1 && exec_checked(h, schema, "cannot create the history schema", err, errlen)) ||
        exec_checked(h, schema_v2, "cannot add the pulls' events to the history schema", err, errlen) ||
        exec_checked(h, "PRAGMA user_version=2; COMMIT", "cannot create the history schema", err, errlen)) {
      tx(h->db, "ROLLBACK");
      return -1;
    }
  }
  return 0;
}

/* Reserves the first block of event ids, synchronously: this also proves
 * that the database is writable before the server starts. */
static int reserve_first_ids(struct pt_history *h, char *err, size_t errlen)
{
  int64_t stored = query_int(h->db, "SELECT value FROM meta WHERE key='event_id_reserved'");
  uint64_t first = stored > 0 ? (uint64_t)stored + 1 : 1;
  h->first_event_id = first;
  h->reserved = first + EVENT_ID_BLOCK - 1;
  struct history_item it = {.kind = ITEM_RESERVE, .value = h->reserved};
  int rc = tx(h->db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK)
    rc = write_item(h->db, &it);
  if (rc == SQLITE_OK)
    rc = tx(h->db, "COMMIT");
  if (rc != SQLITE_OK) {
    /* The message first: a rollback resets it. */
    history_error(err, errlen, "cannot write the history database", h->path, h->db, rc);
    if (!sqlite3_get_autocommit(h->db))
      tx(h->db, "ROLLBACK");
    return -1;
  }
  return 0;
}

static int check_dir(const char *dir, char *err, size_t errlen)
{
  struct stat st;
  if (stat(dir, &st) < 0) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: %s: %s", dir, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: %s: not a directory", dir);
    return -1;
  }
  if (access(dir, W_OK | X_OK) < 0) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: %s: not writable by this process: %s", dir, strerror(errno));
    return -1;
  }
  return 0;
}

/* One server per data directory: SQLite would let two share the file, but
 * two writers of one history would each restore the other's pulls. */
static int lock_dir(struct pt_history *h, char *err, size_t errlen)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/history.lock", h->opts.dir);
  h->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (h->lock_fd < 0) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: cannot open or create %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(h->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: %s is in use by another pulltrace-server (%s is locked); "
                          "each replica needs a data directory of its own", h->opts.dir, path);
    return -1;
  }
  return 0;
}

struct pt_history *pt_history_open(uv_loop_t *loop, const struct pt_history_options *opts, char *err,
                                   size_t errlen)
{
  if (!opts || !opts->dir || !*opts->dir) {
    snprintf(err, errlen, "PULLTRACE_DATA_DIR: empty");
    return NULL;
  }
  if (check_dir(opts->dir, err, errlen) < 0)
    return NULL;
  struct pt_history *h = calloc(1, sizeof(*h));
  size_t plen = strlen(opts->dir) + sizeof(PT_HISTORY_FILE) + 2;
  if (!h || !(h->path = malloc(plen))) {
    free(h);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  h->lock_fd = -1;
  h->loop = loop;
  h->opts = *opts;
  if (!h->opts.queue_max)
    h->opts.queue_max = 100000;
  snprintf(h->path, plen, "%s/%s", opts->dir, PT_HISTORY_FILE);
  uv_mutex_init(&h->mu);
  uv_mutex_init(&h->read_mu);
  uv_cond_init(&h->cond);
  if (lock_dir(h, err, errlen) < 0 || open_db(h, err, errlen) < 0 || reserve_first_ids(h, err, errlen) < 0) {
    history_free(h);
    return NULL;
  }
  h->stats.db_bytes = db_bytes(h->db);
  uv_async_init(loop, &h->async, async_cb);
  h->async.data = h;
  h->refs = 1;
  return h;
}

int pt_history_start(struct pt_history *h, char *err, size_t errlen)
{
  if (h->thread_running)
    return 0;
  int r = uv_thread_create(&h->thread, writer_main, h);
  if (r != 0) {
    snprintf(err, errlen, "cannot start the history writer thread: %s", uv_strerror(r));
    return r;
  }
  h->thread_running = true;
  return 0;
}

void pt_history_close(struct pt_history *h)
{
  if (!h || h->closing)
    return;
  h->closing = true;
  if (h->thread_running) {
    /* The last batch is written before the thread ends: at shutdown the
     * loop may wait for it. */
    uv_mutex_lock(&h->mu);
    h->stop = true;
    uv_cond_signal(&h->cond);
    uv_mutex_unlock(&h->mu);
    uv_thread_join(&h->thread);
    h->thread_running = false;
  }
  uv_close((uv_handle_t *)&h->async, async_closed);
}

long pt_history_load_live(struct pt_history *h, int (*fn)(void *ud, const json_t *record), void *ud, char *err,
                          size_t errlen)
{
  /* Before pt_history_start(): the writer's connection is this thread's. */
  if (h->thread_running) {
    snprintf(err, errlen, "the history's pulls are read before its writer starts");
    return -EBUSY;
  }
  sqlite3_stmt *st;
  long n = 0;
  int rc = sqlite3_prepare_v2(h->db, "SELECT id, record FROM pulls WHERE live=1 ORDER BY seq", -1, &st, NULL);
  if (rc != SQLITE_OK) {
    history_error(err, errlen, "cannot read the history", h->path, h->db, rc);
    return -EIO;
  }
  size_t nrejected = 0;
  char **rejected = NULL;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 0);
    json_error_t je;
    json_t *rec = json_loads((const char *)sqlite3_column_text(st, 1), 0, &je);
    n++;
    if (rec && fn(ud, rec) == 0) {
      json_decref(rec);
      continue;
    }
    json_decref(rec);
    PT_LOG_WARN("history: a pull could not be restored; it stays in the history only", "{s:s,s:s}", "id", id,
                "file", h->path);
    char **v = realloc(rejected, (nrejected + 1) * sizeof(*v));
    if (v && (v[nrejected] = strdup(id))) {
      rejected = v;
      nrejected++;
    } else if (v) {
      rejected = v;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    history_error(err, errlen, "cannot read the history", h->path, h->db, rc);
    n = -EIO;
  }
  for (size_t i = 0; i < nrejected; i++) {
    struct history_item it = {.kind = ITEM_EVICT, .id = rejected[i]};
    write_item(h->db, &it);
    free(rejected[i]);
  }
  free(rejected);
  return n;
}

uint64_t pt_history_first_event_id(const struct pt_history *h)
{
  return h->first_event_id;
}

void pt_history_set_commit_cb(struct pt_history *h, pt_history_commit_fn fn, void *ud)
{
  h->commit_cb = fn;
  h->commit_ud = ud;
}

uint64_t pt_history_mark(const struct pt_history *h)
{
  return h->mark;
}

uint64_t pt_history_committed(const struct pt_history *h)
{
  return h->reported;
}

void pt_history_stats(struct pt_history *h, struct pt_history_stats *out)
{
  uv_mutex_lock(&h->mu);
  *out = h->stats;
  out->queue_depth = h->queued;
  uv_mutex_unlock(&h->mu);
}

/* ------------------------------------------------------------------------ */
/* Queueing (loop)                                                            */

static void enqueue(struct pt_history *h, struct history_item *it)
{
  uv_mutex_lock(&h->mu);
  if (h->queued >= h->opts.queue_max) {
    /* The writer is far behind (a stalled disk): the live view must not
     * wait or grow without bound. */
    h->stats.records_dropped++;
    if (!h->stats.degraded)
      PT_LOG_ERROR("history queue full: records dropped, history degraded", "{s:s,s:I}", "file", h->path,
                   "queueMax", (json_int_t)h->opts.queue_max);
    h->stats.degraded = true;
    snprintf(h->stats.last_error, sizeof(h->stats.last_error), "write queue full (%zu records)", h->queued);
    uv_mutex_unlock(&h->mu);
    item_free(it);
    return;
  }
  it->mark = ++h->mark;
  if (h->tail) {
    h->tail->next = it;
  } else {
    h->head = it;
    h->head_queued_at = mono();
  }
  h->tail = it;
  /* The writer waits for the first record, then for the group to fill. */
  if (++h->queued == 1 || h->queued == GROUP_MAX)
    uv_cond_signal(&h->cond);
  uv_mutex_unlock(&h->mu);
}

void pt_history_reserve_event_ids(struct pt_history *h, uint64_t next_id)
{
  if (next_id + EVENT_ID_BLOCK / 2 < h->reserved)
    return;
  struct history_item *it = calloc(1, sizeof(*it));
  if (!it)
    return;
  h->reserved = (next_id > h->reserved ? next_id : h->reserved) + EVENT_ID_BLOCK;
  it->kind = ITEM_RESERVE;
  it->value = h->reserved;
  enqueue(h, it);
}

static char *dup_or_null(const char *s)
{
  return s ? strdup(s) : NULL;
}

/* ",a,b," from the pods' namespaces (or "ns/name" when full). */
static char *pods_list(const struct pt_pull *p, bool full)
{
  size_t len = 2;
  for (size_t i = 0; i < p->npods; i++)
    len += strlen(p->pods[i].ns) + strlen(p->pods[i].name) + 2;
  char *out = malloc(len), *w = out;
  if (!out)
    return NULL;
  *w++ = ',';
  for (size_t i = 0; i < p->npods; i++)
    w += full ? sprintf(w, "%s/%s,", p->pods[i].ns, p->pods[i].name) : sprintf(w, "%s,", p->pods[i].ns);
  *w = '\0';
  return out;
}

static struct history_item *pull_item(const struct pt_pull *p)
{
  struct history_item *it = calloc(1, sizeof(*it));
  if (!it)
    return NULL;
  it->kind = ITEM_PULL;
  json_t *rec = pt_store_pull_record(p);
  it->record = rec ? json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(rec);
  it->id = strdup(p->id);
  it->node = strdup(p->node);
  it->image = dup_or_null(p->image ? p->image : p->image_ref);
  it->state = strdup(pt_pull_state_name(p->state));
  it->error_reason = dup_or_null(p->error_reason);
  it->nss = pods_list(p, false);
  it->pods = pods_list(p, true);
  if (!it->record || !it->id || !it->node || !it->state || !it->nss || !it->pods ||
      ((p->image || p->image_ref) && !it->image) || (p->error_reason && !it->error_reason)) {
    item_free(it);
    return NULL;
  }
  it->started_at = p->started_at;
  it->ended_at = p->completed_at > 0 ? p->completed_at
               : p->finished_at > 0 ? p->finished_at
               : p->lost_at > 0 ? p->lost_at : 0;
  it->duration = it->ended_at > 0 && p->started_at > 0 ? fmax(0, it->ended_at - p->started_at) : -1;
  it->total = p->total;
  it->downloaded = p->downloaded;
  for (size_t i = 0; i < p->nlayers; i++)
    if (p->layers[i].state == PT_LAYER_CACHED)
      it->cached += p->layers[i].total;
  return it;
}

static struct history_item *alert_item(const struct pt_change *c)
{
  const struct pt_policy_alert *a = c->alert;
  struct history_item *it = calloc(1, sizeof(*it));
  if (!it)
    return NULL;
  it->kind = ITEM_ALERT;
  it->time = c->time;
  json_t *rec = json_pack("{s:s,s:s,s:s?,s:O,s:s?,s:f}", "name", a->name, "severity", a->severity, "summary",
                          a->summary, "labels", a->labels, "eventType", a->event_type, "time", c->time);
  it->record = rec ? json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(rec);
  it->name = strdup(a->name);
  it->severity = dup_or_null(a->severity);
  it->node = dup_or_null(json_string_value(json_object_get(a->labels, "node")));
  it->pull_id = dup_or_null(json_string_value(json_object_get(a->labels, "pull")));
  it->image = dup_or_null(json_string_value(json_object_get(a->labels, "image")));
  it->ns = dup_or_null(json_string_value(json_object_get(a->labels, "namespace")));
  if (!it->record || !it->name) {
    item_free(it);
    return NULL;
  }
  return it;
}

static struct history_item *id_item(enum item_kind kind, const char *id)
{
  struct history_item *it = calloc(1, sizeof(*it));
  if (it && !(it->id = strdup(id))) {
    free(it);
    return NULL;
  }
  if (it)
    it->kind = kind;
  return it;
}

void pt_history_save_pull(struct pt_history *h, const struct pt_pull *p)
{
  struct history_item *it = pull_item(p);
  if (it)
    enqueue(h, it);
}

void pt_history_record_event(struct pt_history *h, const char *pull_id, uint64_t id, const char *type,
                             const char *data)
{
  struct history_item *it = id_item(ITEM_EVENT, pull_id);
  if (it) {
    it->value = id;
    it->name = strdup(type);
    it->record = strdup(data);
  }
  if (!it || !it->name || !it->record) {
    item_free(it);
    uv_mutex_lock(&h->mu);
    h->stats.records_dropped++;
    uv_mutex_unlock(&h->mu);
    PT_LOG_ERROR("out of memory queueing a pull's event for the history: dropped", "{s:s}", "type", type);
    return;
  }
  enqueue(h, it);
}

void pt_history_record(struct pt_history *h, const struct pt_change *c)
{
  struct history_item *it = NULL;
  switch (c->type) {
  case PT_CHANGE_PULL_PROGRESS:
    /* In flight, the next report says it all again; once finished, a change
     * (kubelet's timing, pods) is part of the record. */
    if (c->pull->state == PT_PULL_PULLING || c->pull->state == PT_PULL_STALLED)
      return;
    /* fall through */
  case PT_CHANGE_PULL_STARTED:
  case PT_CHANGE_PULL_COMPLETED:
  case PT_CHANGE_PULL_FAILED:
  case PT_CHANGE_PULL_STALLED:
    it = pull_item(c->pull);
    break;
  case PT_CHANGE_PULL_EVICTED:
    it = id_item(c->superseded_by ? ITEM_DELETE : ITEM_EVICT, c->pull->id);
    break;
  case PT_CHANGE_ALERT:
    it = alert_item(c);
    break;
  default:
    return;
  }
  if (!it) {
    uv_mutex_lock(&h->mu);
    h->stats.records_dropped++;
    uv_mutex_unlock(&h->mu);
    PT_LOG_ERROR("out of memory queueing a history record: dropped", "{s:s}", "type", pt_change_type_name(c->type));
    return;
  }
  enqueue(h, it);
}
