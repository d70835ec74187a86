/* The history's queries (server/history.h): each runs in libuv's thread pool
 * on the history's read-only connection and answers on the loop. */
#include "server/history_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "server/pull_events.h"
#include "server/store.h"

enum query_kind { Q_LIST, Q_STATS, Q_ALERTS, Q_EVENTS, Q_TYPICAL };

struct pt_history_query {
  uv_work_t work;
  struct pt_history *h;
  enum query_kind kind;
  char *image, *node, *ns, *pod;
  char *pull;            /* Q_EVENTS */
  bool live;             /* Q_EVENTS: the pull is in the tables */
  unsigned state_mask;
  double since, until, now;
  size_t limit;
  bool has_cont;
  double cont_time;
  int64_t cont_seq;
  bool bad_cont;
  pt_history_answer_fn fn;
  void *ud;
  bool cancelled;
  int status;
  json_t *body;
};

/* ------------------------------------------------------------------------ */
/* Continue tokens: "<seq>:<time>" of the last item of the page, the keyset
 * of the next one (newest first: time, then seq, both descending). */

static void format_token(char *buf, size_t len, int64_t seq, double t)
{
  snprintf(buf, len, "%" PRId64 ":%.17g", seq, t);
}

static bool parse_token(const char *s, int64_t *seq, double *t)
{
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end != ':' || v <= 0)
    return false;
  const char *ts = end + 1;
  double d = strtod(ts, &end);
  if (end == ts || *end || !isfinite(d))
    return false;
  *seq = v;
  *t = d;
  return true;
}

/* ------------------------------------------------------------------------ */
/* SQL with the filters                                                       */

struct sql {
  struct pt_buf text;
  const char *texts[12];   /* bound in order, then the doubles */
  char *owned[12];
  int ntexts;
};

static void add_text(struct sql *q, const char *clause, char *value)
{
  pt_buf_puts(&q->text, clause);
  q->owned[q->ntexts] = value;
  q->texts[q->ntexts++] = value;
}

static char *wrap(const char *pre, const char *v, const char *post)
{
  size_t len = strlen(pre) + strlen(v) + strlen(post) + 1;
  char *s = malloc(len);
  if (s)
    snprintf(s, len, "%s%s%s", pre, v, post);
  return s;
}

/* The filters every query of pulls shares. */
static void pull_filters(struct sql *q, const struct pt_history_query *hq)
{
  if (hq->image)
    add_text(q, " AND instr(image, ?) > 0", strdup(hq->image));
  if (hq->node)
    add_text(q, " AND node = ?", strdup(hq->node));
  if (hq->ns)
    add_text(q, " AND instr(namespaces, ?) > 0", wrap(",", hq->ns, ","));
  if (hq->pod)
    add_text(q, " AND instr(pods, ?) > 0", strchr(hq->pod, '/') ? wrap(",", hq->pod, ",") : wrap("/", hq->pod, ","));
}

static void sql_close(struct sql *q)
{
  pt_buf_close(&q->text);
  for (int i = 0; i < q->ntexts; i++)
    free(q->owned[i]);
}

static int sql_prepare(sqlite3 *db, struct sql *q, sqlite3_stmt **st, int *next)
{
  if (q->text.oom)
    return SQLITE_NOMEM;
  for (int i = 0; i < q->ntexts; i++)
    if (!q->texts[i])
      return SQLITE_NOMEM;
  int rc = sqlite3_prepare_v2(db, q->text.data, (int)q->text.len, st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  for (int i = 0; i < q->ntexts; i++)
    sqlite3_bind_text(*st, i + 1, q->texts[i], -1, SQLITE_STATIC);
  *next = q->ntexts + 1;
  return SQLITE_OK;
}

/* ------------------------------------------------------------------------ */
/* The queries (thread pool)                                                  */

static json_t *error_body(const char *msg)
{
  return json_pack("{s:s,s:n}", "error", msg, "field");
}

static json_t *page_body(const char *key, json_t *items, const char *cont, double now)
{
  char tb[40];
  json_t *meta = json_object();
  if (cont)
    json_object_set_new(meta, "continue", json_string(cont));
  return json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "v1", "generatedAt", pt_time_format(now, tb, sizeof(tb)),
                   "metadata", meta, key, items);
}

/* A row of a page: its record (column 2) turned into an item of the answer,
 * or NULL to leave it out (a record this version cannot read). */
typedef json_t *(*page_item_fn)(struct pt_history_query *hq, sqlite3_stmt *st, double time);

/* One page of a list ordered newest first by (time column, seq): q holds the
 * SELECT of seq, time and record with its filters; the window (since, until)
 * and the position after the previous page (continue) are added here, and
 * the answer is written under `key` with the next page's token. */
static int run_page(struct pt_history_query *hq, sqlite3 *db, struct sql *q, const char *time_col,
                    const char *key, page_item_fn item)
{
  if (hq->since > 0)
    pt_buf_printf(&q->text, " AND %s >= ?", time_col);
  if (hq->until > 0)
    pt_buf_printf(&q->text, " AND %s < ?", time_col);
  if (hq->has_cont)
    pt_buf_printf(&q->text, " AND (%s < ? OR (%s = ? AND seq < ?))", time_col, time_col);
  pt_buf_printf(&q->text, " ORDER BY %s DESC, seq DESC LIMIT %zu", time_col, hq->limit + 1);
  sqlite3_stmt *st = NULL;
  int i, rc = sql_prepare(db, q, &st, &i);
  if (rc != SQLITE_OK)
    goto out;
  if (hq->since > 0)
    sqlite3_bind_double(st, i++, hq->since);
  if (hq->until > 0)
    sqlite3_bind_double(st, i++, hq->until);
  if (hq->has_cont) {
    sqlite3_bind_double(st, i++, hq->cont_time);
    sqlite3_bind_double(st, i++, hq->cont_time);
    sqlite3_bind_int64(st, i++, hq->cont_seq);
  }
  json_t *items = json_array();
  size_t n = 0;
  int64_t last_seq = 0;
  double last_time = 0;
  bool more = false;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == hq->limit) {
      more = true;
      break;
    }
    last_seq = sqlite3_column_int64(st, 0);
    last_time = sqlite3_column_double(st, 1);
    n++;
    json_t *it = item(hq, st, last_time);
    if (it)
      json_array_append_new(items, it);
  }
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    char tok[64];
    format_token(tok, sizeof(tok), last_seq, last_time);
    hq->body = page_body(key, items, more ? tok : NULL, hq->now);
    rc = SQLITE_OK;
  } else {
    json_decref(items);
  }
out:
  sqlite3_finalize(st);
  sql_close(q);
  return rc;
}

static json_t *pull_item(struct pt_history_query *hq, sqlite3_stmt *st, double time)
{
  json_t *rec = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
  struct pt_pull *p = pt_pull_from_record(rec, NULL);
  json_decref(rec);
  json_t *item = p ? pt_store_pull_json(p, true, hq->now) : NULL;
  pt_pull_free(p);
  return item;
}

static json_t *alert_item(struct pt_history_query *hq, sqlite3_stmt *st, double time)
{
  json_t *rec = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
  if (!json_is_object(rec)) {
    json_decref(rec);
    return NULL;
  }
  char tb[40];
  json_object_set_new(rec, "time", json_string(pt_time_format(time, tb, sizeof(tb))));
  return rec;
}

static int list_pulls(struct pt_history_query *hq, sqlite3 *db)
{
  struct sql q = {0};
  pt_buf_init(&q.text);
  pt_buf_puts(&q.text, "SELECT seq, started_at, record FROM pulls WHERE 1");
  pull_filters(&q, hq);
  if (hq->state_mask) {
    pt_buf_puts(&q.text, " AND state IN (''");
    for (int s = PT_PULL_PULLING; s <= PT_PULL_LOST; s++)
      if (hq->state_mask & (1u << s))
        pt_buf_printf(&q.text, ",'%s'", pt_pull_state_name((enum pt_pull_state)s));
    pt_buf_puts(&q.text, ")");
  }
  return run_page(hq, db, &q, "started_at", "pulls", pull_item);
}

static int list_alerts(struct pt_history_query *hq, sqlite3 *db)
{
  struct sql q = {0};
  pt_buf_init(&q.text);
  pt_buf_puts(&q.text, "SELECT seq, time, record FROM alerts WHERE 1");
  if (hq->image)
    add_text(&q, " AND instr(image, ?) > 0", strdup(hq->image));
  if (hq->node)
    add_text(&q, " AND node = ?", strdup(hq->node));
  if (hq->ns)
    add_text(&q, " AND namespace = ?", strdup(hq->ns));
  return run_page(hq, db, &q, "time", "alerts", alert_item);
}

/* Per-image figures of the stats query. */
struct image_stats {
  char *image;
  size_t pulls, completed, failed, ndur, capdur;
  double *durations;
  int64_t bytes, total, cached;
  json_t *reasons;
};

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least q of the values at or
 * below it. */
static double percentile(const double *v, size_t n, double q)
{
  size_t rank = (size_t)ceil(q * (double)n);
  return v[rank ? rank - 1 : 0];
}

static json_t *image_stats_json(struct image_stats *s)
{
  json_t *d;
  if (s->ndur) {
    qsort(s->durations, s->ndur, sizeof(double), cmp_double);
    d = json_pack("{s:f,s:f,s:f}", "p50", round(percentile(s->durations, s->ndur, 0.5) * 100) / 100, "p95",
                  round(percentile(s->durations, s->ndur, 0.95) * 100) / 100, "max",
                  round(s->durations[s->ndur - 1] * 100) / 100);
  } else {
    d = json_pack("{s:n,s:n,s:n}", "p50", "p95", "max");
  }
  json_t *o = json_pack("{s:s?,s:I,s:I,s:I,s:O,s:o,s:I,s:o}", "image", s->image, "pulls", (json_int_t)s->pulls,
                        "completed", (json_int_t)s->completed, "failed", (json_int_t)s->failed, "failuresByReason",
                        s->reasons, "durationSeconds", d, "bytesDownloaded", (json_int_t)s->bytes, "cachedShare",
                        s->total > 0 ? json_real(round((double)s->cached / (double)s->total * 10000) / 10000)
                                     : json_null());
  return o;
}

static void image_stats_clear(struct image_stats *s)
{
  free(s->image);
  free(s->durations);
  json_decref(s->reasons);
  memset(s, 0, sizeof(*s));
}

static int stats(struct pt_history_query *hq, sqlite3 *db)
{
  struct sql q = {0};
  pt_buf_init(&q.text);
  pt_buf_puts(&q.text, "SELECT image, state, duration, downloaded_bytes, total_bytes, cached_bytes, error_reason "
                       "FROM pulls WHERE ended_at >= ? AND ended_at < ?");
  /* The window's two bounds come first: text parameters get numbers after
   * them (?3...). */
  struct sql q2 = {0};
  pt_buf_init(&q2.text);
  pull_filters(&q2, hq);
  pt_buf_append(&q.text, q2.text.data ? q2.text.data : "", q2.text.len);
  pt_buf_puts(&q.text, " ORDER BY image");
  sqlite3_stmt *st = NULL;
  int rc = q.text.oom || q2.text.oom ? SQLITE_NOMEM : sqlite3_prepare_v2(db, q.text.data, (int)q.text.len, &st, NULL);
  for (int i = 0; rc == SQLITE_OK && i < q2.ntexts; i++) {
    if (!q2.texts[i])
      rc = SQLITE_NOMEM;
    else
      sqlite3_bind_text(st, i + 3, q2.texts[i], -1, SQLITE_STATIC);
  }
  if (rc != SQLITE_OK)
    goto out;
  sqlite3_bind_double(st, 1, hq->since);
  sqlite3_bind_double(st, 2, hq->until);
  json_t *images = json_array();
  struct image_stats cur = {0};
  bool have = false;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *image = (const char *)sqlite3_column_text(st, 0);
    if (!have || (image ? !cur.image || strcmp(image, cur.image) != 0 : cur.image != NULL)) {
      if (have)
        json_array_append_new(images, image_stats_json(&cur));
      image_stats_clear(&cur);
      cur.image = image ? strdup(image) : NULL;
      cur.reasons = json_object();
      have = true;
    }
    const char *state = (const char *)sqlite3_column_text(st, 1);
    cur.pulls++;
    if (state && strcmp(state, "completed") == 0) {
      cur.completed++;
      if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
        if (cur.ndur == cur.capdur) {
          size_t cap = cur.capdur ? cur.capdur * 2 : 64;
          double *v = realloc(cur.durations, cap * sizeof(*v));
          if (!v) {
            rc = SQLITE_NOMEM;
            break;
          }
          cur.durations = v;
          cur.capdur = cap;
        }
        cur.durations[cur.ndur++] = sqlite3_column_double(st, 2);
      }
    } else if (state && (strcmp(state, "failed") == 0 || strcmp(state, "lost") == 0)) {
      cur.failed++;
      const char *reason = (const char *)sqlite3_column_text(st, 6);
      if (!reason)
        reason = state;
      json_int_t c = json_integer_value(json_object_get(cur.reasons, reason));
      json_object_set_new(cur.reasons, reason, json_integer(c + 1));
    }
    cur.bytes += sqlite3_column_int64(st, 3);
    cur.total += sqlite3_column_int64(st, 4);
    cur.cached += sqlite3_column_int64(st, 5);
  }
  if (have && (rc == SQLITE_DONE))
    json_array_append_new(images, image_stats_json(&cur));
  image_stats_clear(&cur);
  if (rc == SQLITE_DONE) {
    char a[40], b[40], g[40];
    hq->body = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "v1", "generatedAt",
                         pt_time_format(hq->now, g, sizeof(g)), "window", "since",
                         pt_time_format(hq->since, a, sizeof(a)), "until", pt_time_format(hq->until, b, sizeof(b)),
                         "images", images);
    rc = SQLITE_OK;
  } else {
    json_decref(images);
  }
out:
  sqlite3_finalize(st);
  sql_close(&q);
  sql_close(&q2);
  return rc;
}

/* A pull's own events: the newest PT_PULL_EVENTS_PER_PULL, oldest first, as
 * GET /api/v1/pulls/{id}/events has them from memory. */
static int pull_events(struct pt_history_query *hq, sqlite3 *db)
{
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT (SELECT count(*) FROM pulls WHERE id=?1),"
                              " (SELECT count(*) FROM pull_events WHERE pull_id=?1)",
                              -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_text(st, 1, hq->pull, -1, SQLITE_STATIC);
  rc = sqlite3_step(st);
  int64_t known = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  int64_t total = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW)
    return rc;
  if (!known && !total && !hq->live) {
    hq->status = 404;
    hq->body = json_pack("{s:s,s:s}", "error", "pull not found", "field", "id");
    return SQLITE_OK;
  }
  rc = sqlite3_prepare_v2(db,
                          "SELECT id, type, data FROM (SELECT id, type, data FROM pull_events WHERE pull_id=?1"
                          " ORDER BY id DESC LIMIT ?2) ORDER BY id",
                          -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_text(st, 1, hq->pull, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, PT_PULL_EVENTS_PER_PULL);
  json_t *events = json_array();
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *data = (const char *)sqlite3_column_text(st, 2);
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    json_array_append_new(events, json_pack("{s:I,s:s,s:o}", "id", (json_int_t)sqlite3_column_int64(st, 0), "type",
                                            (const char *)sqlite3_column_text(st, 1), "data", d ? d : json_null()));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    json_decref(events);
    return rc;
  }
  char tb[40];
  hq->body = json_pack("{s:s,s:s,s:s,s:o,s:I}", "apiVersion", "v1", "generatedAt", pt_time_format(hq->now, tb, sizeof(tb)),
                       "pullId", hq->pull, "events", events, "dropped", (json_int_t)(total - (int64_t)json_array_size(events)));
  return hq->body ? SQLITE_OK : SQLITE_NOMEM;
}

/* The recent completed pulls of one image (the index on image and ended_at
 * finds them), the median of their durations. Pulls that downloaded nothing
 * (every layer cached) say nothing about how long a download takes. */
static int typical(struct pt_history_query *hq, sqlite3 *db)
{
  static const char sql[] = "SELECT duration FROM pulls WHERE image = ?1 AND state = 'completed' "
                            "AND duration IS NOT NULL AND downloaded_bytes > cached_bytes "
                            "ORDER BY ended_at DESC LIMIT ?2";
  sqlite3_stmt *st = NULL;
  double v[PT_HISTORY_TYPICAL_SAMPLE];
  size_t n = 0;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_text(st, 1, hq->image, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, PT_HISTORY_TYPICAL_SAMPLE);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < PT_HISTORY_TYPICAL_SAMPLE)
    v[n++] = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return rc;
  qsort(v, n, sizeof(double), cmp_double);
  hq->body = json_pack("{s:s,s:o,s:I}", "image", hq->image, "p50", n ? json_real(percentile(v, n, 0.5)) : json_null(),
                       "pulls", (json_int_t)n);
  return hq->body ? SQLITE_OK : SQLITE_NOMEM;
}

static void work_cb(uv_work_t *w)
{
  struct pt_history_query *hq = w->data;
  struct pt_history *h = hq->h;
  if (hq->bad_cont) {
    hq->status = 400;
    hq->body = json_pack("{s:s,s:s}", "error", "malformed continue token", "field", "continue");
    return;
  }
  uv_mutex_lock(&h->read_mu);
  int rc = SQLITE_OK;
  if (!h->rdb) {
    rc = sqlite3_open_v2(h->path, &h->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
      sqlite3_busy_timeout(h->rdb, 5000);
  }
  if (rc == SQLITE_OK) {
    switch (hq->kind) {
    case Q_LIST: rc = list_pulls(hq, h->rdb); break;
    case Q_STATS: rc = stats(hq, h->rdb); break;
    case Q_ALERTS: rc = list_alerts(hq, h->rdb); break;
    case Q_EVENTS: rc = pull_events(hq, h->rdb); break;
    case Q_TYPICAL: rc = typical(hq, h->rdb); break;
    }
  }
  if (rc != SQLITE_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "cannot read the history: %s", h->rdb ? sqlite3_errmsg(h->rdb) : sqlite3_errstr(rc));
    hq->status = 503;
    json_decref(hq->body);
    hq->body = error_body(msg);
    if (rc == SQLITE_CANTOPEN || rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) {
      sqlite3_close(h->rdb);
      h->rdb = NULL;
    }
  } else if (!hq->status) {
    hq->status = 200;
  }
  uv_mutex_unlock(&h->read_mu);
}

static void query_free(struct pt_history_query *hq)
{
  free(hq->image);
  free(hq->node);
  free(hq->ns);
  free(hq->pod);
  free(hq->pull);
  json_decref(hq->body);
  free(hq);
}

static void after_work_cb(uv_work_t *w, int status)
{
  struct pt_history_query *hq = w->data;
  struct pt_history *h = hq->h;
  if (!hq->cancelled && !h->closing && hq->fn) {
    json_t *body = hq->body;
    hq->body = NULL;
    if (status < 0 || !body) {
      json_decref(body);
      hq->fn(hq->ud, 503, error_body("the history query did not run"));
    } else {
      hq->fn(hq->ud, hq->status, body);
    }
  }
  query_free(hq);
  history_unref(h);
}

static struct pt_history_query *start(struct pt_history *h, enum query_kind kind, const struct pt_history_filter *f,
                                      const char *pull, bool live, size_t limit, const char *cont,
                                      pt_history_answer_fn fn, void *ud)
{
  struct pt_history_query *hq = calloc(1, sizeof(*hq));
  if (!hq)
    return NULL;
  hq->h = h;
  hq->kind = kind;
  hq->fn = fn;
  hq->ud = ud;
  hq->limit = limit;
  hq->live = live;
  hq->now = pt_clock_now();
  hq->state_mask = f->state_mask;
  hq->since = f->since;
  hq->until = f->until;
  if ((f->image && !(hq->image = strdup(f->image))) || (f->node && !(hq->node = strdup(f->node))) ||
      (f->ns && !(hq->ns = strdup(f->ns))) || (f->pod && !(hq->pod = strdup(f->pod))) ||
      (pull && !(hq->pull = strdup(pull)))) {
    query_free(hq);
    return NULL;
  }
  if (cont && *cont) {
    hq->has_cont = true;
    hq->bad_cont = !parse_token(cont, &hq->cont_seq, &hq->cont_time);
  }
  hq->work.data = hq;
  if (uv_queue_work(h->loop, &hq->work, work_cb, after_work_cb) < 0) {
    query_free(hq);
    return NULL;
  }
  h->refs++;
  return hq;
}

struct pt_history_query *pt_history_list(struct pt_history *h, const struct pt_history_filter *f, size_t limit,
                                         const char *cont, pt_history_answer_fn fn, void *ud)
{
  return start(h, Q_LIST, f, NULL, false, limit, cont, fn, ud);
}

struct pt_history_query *pt_history_alerts(struct pt_history *h, const struct pt_history_filter *f, size_t limit,
                                           const char *cont, pt_history_answer_fn fn, void *ud)
{
  return start(h, Q_ALERTS, f, NULL, false, limit, cont, fn, ud);
}

struct pt_history_query *pt_history_stats_query(struct pt_history *h, const struct pt_history_filter *f,
                                                pt_history_answer_fn fn, void *ud)
{
  struct pt_history_filter w = *f;
  double now = pt_clock_now();
  if (w.until <= 0)
    w.until = now;
  if (w.since <= 0)
    w.since = w.until - 86400;
  return start(h, Q_STATS, &w, NULL, false, 0, NULL, fn, ud);
}

struct pt_history_query *pt_history_pull_events(struct pt_history *h, const char *pull_id, bool live,
                                                pt_history_answer_fn fn, void *ud)
{
  struct pt_history_filter none = {0};
  return start(h, Q_EVENTS, &none, pull_id, live, 0, NULL, fn, ud);
}

struct pt_history_query *pt_history_typical(struct pt_history *h, const char *image, pt_history_answer_fn fn,
                                            void *ud)
{
  struct pt_history_filter f = {.image = image};
  return image ? start(h, Q_TYPICAL, &f, NULL, false, 0, NULL, fn, ud) : NULL;
}

void pt_history_query_cancel(struct pt_history_query *q)
{
  if (q)
    q->cancelled = true;
}
