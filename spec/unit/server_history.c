/* The history (server/history.h) on a real SQLite database in a temporary
 * directory: restore after a reopen, event-id reservation, the queries and
 * their paging, an image's usual pull time and its cache, retention by age and by size, a corrupt file, a directory
 * held by another history, and a failing write (degraded, then recovered). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "core/clock.h"
#include "server/history.h"
#include "server/store.h"
#include "server/typical.h"

struct fixture {
  char dir[64];
  uv_loop_t loop;
  struct pt_history *h;
  uint64_t committed;
};

static void on_commit(void *ud, uint64_t mark)
{
  struct fixture *f = ud;
  f->committed = mark;
}

static struct pt_history *open_history(struct fixture *f, const struct pt_history_options *extra, bool start_later)
{
  struct pt_history_options o = {.dir = f->dir};
  if (extra) {
    o = *extra;
    o.dir = f->dir;
  }
  char err[512];
  struct pt_history *h = pt_history_open(&f->loop, &o, err, sizeof(err));
  if (!h)
    fail_msg("open: %s", err);
  if (!start_later && pt_history_start(h, err, sizeof(err)) != 0)
    fail_msg("start: %s", err);
  pt_history_set_commit_cb(h, on_commit, f);
  return h;
}

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/pt-history-unit-XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  uv_loop_init(&f->loop);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  pt_history_close(f->h);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* Runs the loop until pred holds; fails after 20 s (a hung writer). */
static void run_until(struct fixture *f, bool (*pred)(struct fixture *, void *), void *ud)
{
  for (int i = 0; i < 20000 && !pred(f, ud); i++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_true(pred(f, ud));
}

static bool all_committed(struct fixture *f, void *ud)
{
  return f->committed >= pt_history_mark(f->h);
}

/* A pull record as pt_store_pull_record() writes it. */
static json_t *record(const char *id, const char *node, const char *image, const char *state, double started,
                      double ended, int64_t bytes, const char *ns, const char *reason)
{
  bool completed = strcmp(state, "completed") == 0;
  json_t *r = json_pack("{s:s,s:s,s:s,s:n,s:n,s:n,s:b,s:s,s:[f,f,f,f,f,f,f],s:b,s:I,s:I,s:f,s:f,s:[],s:[[s,i,s,I,I,"
                        "f,f]],s:[],s:n,s:[f,f,f],s:n}",
                        "id", id, "node", node, "imageRef", image, "image", "manifestDigest", "indexDigest",
                        "fromKubelet", 0, "state", state, "times", started, completed ? ended : 0.0, ended, ended,
                        ended, strcmp(state, "lost") == 0 ? ended : 0.0, 0.0, "totalKnown", 1, "total",
                        (json_int_t)bytes, "downloaded", (json_int_t)bytes, "bytesPerSecond", 10.0, "eta", 0.0,
                        "mediaTypes", "layers", "sha256:aaaa", -1, completed ? "done" : "downloading", (json_int_t)bytes,
                        (json_int_t)bytes, started, ended, "pods", "error", "kubelet", 0.0, -1.0, -1.0,
                        "resolvedError");
  if (ns)
    json_array_append_new(json_object_get(r, "pods"),
                          json_pack("{s:s,s:s,s:n}", "namespace", ns, "name", "web-1", "container"));
  if (reason)
    json_object_set_new(r, "error", json_pack("{s:s,s:s}", "reason", reason, "message", "kubelet said no"));
  return r;
}

/* Records a change of type t for the pull of rec, as the server does. */
static void record_change(struct pt_history *h, enum pt_change_type t, json_t *rec)
{
  int err;
  struct pt_pull *p = pt_pull_from_record(rec, &err);
  assert_non_null(p);
  struct pt_change c = {.type = t, .time = pt_clock_now(), .keys = {.node = p->node}, .pull = p};
  pt_history_record(h, &c);
  pt_pull_free(p);
  json_decref(rec);
}

static void evict(struct pt_history *h, const char *id)
{
  struct pt_pull p = {.id = (char *)id, .node = "n"};
  struct pt_change c = {.type = PT_CHANGE_PULL_EVICTED, .pull = &p};
  pt_history_record(h, &c);
}

/* ---- restore ------------------------------------------------------------- */

struct restored {
  json_t *records;
};

static int collect(void *ud, const json_t *rec)
{
  struct restored *r = ud;
  json_array_append(r->records, (json_t *)rec);
  return 0;
}

static void test_restore_and_event_ids(void **state)
{
  struct fixture *f = *state;
  f->h = open_history(f, NULL, false);
  uint64_t first = pt_history_first_event_id(f->h);
  assert_int_equal(first, 1);
  double t = 1800000000.0;
  json_t *want = record("n1/p1", "n1", "reg/app:1", "completed", t, t + 12.5, 4096, "shop", NULL);
  /* kubelet's timing and a failure a retry resolved are part of it. */
  json_object_set_new(want, "kubelet", json_pack("[f,f,f]", t + 13, 3.25, 4.5));
  json_object_set_new(want, "resolvedError", json_pack("{s:s,s:s,s:f,s:f}", "reason", "ErrImagePull", "message",
                                                       "rpc error: connection reset", "failedAt", t - 60,
                                                       "resolvedAt", t));
  json_t *want2 = record("n1/p2", "n1", "reg/db:2", "pulling", t + 1, 0, 10, NULL, NULL);
  record_change(f->h, PT_CHANGE_PULL_COMPLETED, json_incref(want));
  record_change(f->h, PT_CHANGE_PULL_STARTED, json_incref(want2));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED, record("n1/p3", "n1", "x", "completed", t, t + 1, 1, NULL, NULL));
  evict(f->h, "n1/p3"); /* left the tables: history only */
  /* Ids used up to 5000 of the first block. */
  pt_history_reserve_event_ids(f->h, 5000);
  run_until(f, all_committed, NULL);
  pt_history_close(f->h);
  uv_run(&f->loop, UV_RUN_DEFAULT);

  f->committed = 0;
  f->h = open_history(f, NULL, true);
  assert_true(pt_history_first_event_id(f->h) > first + 5000);
  struct restored r = {json_array()};
  char err[256];
  assert_int_equal(pt_history_load_live(f->h, collect, &r, err, sizeof(err)), 2);
  assert_int_equal(pt_history_start(f->h, err, sizeof(err)), 0);
  assert_int_equal(pt_history_load_live(f->h, collect, &r, err, sizeof(err)), -EBUSY);
  assert_true(json_equal(json_array_get(r.records, 0), want));
  assert_true(json_equal(json_array_get(r.records, 1), want2));

  /* Back into a store: the same view as the original record gives. */
  struct pt_policy_options po = {0};
  struct pt_policy *pol = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(pol);
  struct pt_store_options so = {.policy = pol};
  struct pt_store *s = pt_store_create(&so);
  assert_int_equal(pt_store_restore_pull(s, want, t + 100), 0);
  assert_int_equal(pt_store_restore_pull(s, want, t + 100), -EEXIST);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_non_null(p);
  struct pt_pull *orig = pt_pull_from_record(want, NULL);
  json_t *a = pt_store_pull_json(p, true, t + 100), *b = pt_store_pull_json(orig, true, t + 100);
  assert_true(json_equal(a, b));
  assert_int_equal(json_real_value(json_object_get(a, "durationSeconds")) * 10, 125);
  assert_true(json_real_value(json_object_get(json_object_get(a, "kubelet"), "durationSeconds")) == 3.25);
  assert_string_equal(json_string_value(json_object_get(json_object_get(a, "resolvedError"), "message")),
                      "rpc error: connection reset");
  char cerr[256];
  assert_int_equal(pt_store_check(s, cerr, sizeof(cerr)), 0);
  assert_int_equal(pt_store_counters(s)->pulls_restored, 1);
  json_decref(a);
  json_decref(b);
  pt_pull_free(orig);
  pt_store_destroy(s);
  pt_policy_destroy(pol);
  json_decref(r.records);
  json_decref(want);
  json_decref(want2);
}

/* ---- queries ------------------------------------------------------------- */

struct answer {
  bool done;
  int status;
  json_t *body;
};

static void on_answer(void *ud, int status, json_t *body)
{
  struct answer *a = ud;
  a->done = true;
  a->status = status;
  a->body = body;
}

static bool answered(struct fixture *f, void *ud)
{
  return ((struct answer *)ud)->done;
}

static json_t *list(struct fixture *f, const struct pt_history_filter *flt, size_t limit, const char *cont,
                    int want_status)
{
  struct answer a = {0};
  assert_non_null(pt_history_list(f->h, flt, limit, cont, on_answer, &a));
  run_until(f, answered, &a);
  assert_int_equal(a.status, want_status);
  return a.body;
}

static void test_list_paging_and_stats(void **state)
{
  struct fixture *f = *state;
  f->h = open_history(f, NULL, false);
  double now = pt_clock_now();
  /* Seven pulls of one image ending 1..7 s after their start, one failed,
   * one lost, one of another image on another node. */
  for (int i = 1; i <= 7; i++) {
    char id[32];
    snprintf(id, sizeof(id), "n1/c%d", i);
    record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                  record(id, "n1", "reg/app:1", "completed", now - 100 + i, now - 100 + 2 * i, 1000, "shop", NULL));
  }
  record_change(f->h, PT_CHANGE_PULL_FAILED,
                record("n1/f1", "n1", "reg/app:1", "failed", now - 50, now - 40, 0, "shop", "ErrImagePull"));
  record_change(f->h, PT_CHANGE_PULL_FAILED,
                record("n1/l1", "n1", "reg/app:1", "lost", now - 30, now - 20, 0, NULL, "node-lost"));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                record("n2/o1", "n2", "reg/other:9", "completed", now - 10, now - 5, 500, "ops", NULL));
  run_until(f, all_committed, NULL);

  /* Pages of 4, newest first, every pull once. */
  struct pt_history_filter all = {0};
  json_t *seen = json_array();
  const char *cont = NULL;
  char tok[128];
  int pages = 0;
  do {
    json_t *b = list(f, &all, 4, cont, 200);
    json_t *pulls = json_object_get(b, "pulls");
    size_t i;
    json_t *p;
    json_array_foreach(pulls, i, p) json_array_append(seen, json_object_get(p, "id"));
    const char *c = json_string_value(json_object_get(json_object_get(b, "metadata"), "continue"));
    cont = c ? strcpy(tok, c) : NULL;
    pages++;
    json_decref(b);
  } while (cont);
  assert_int_equal(pages, 3);
  assert_int_equal(json_array_size(seen), 10);
  assert_string_equal(json_string_value(json_array_get(seen, 0)), "n2/o1");
  assert_string_equal(json_string_value(json_array_get(seen, 9)), "n1/c1");
  json_decref(seen);

  /* Filters. */
  struct pt_history_filter byns = {.ns = "ops"};
  json_t *b = list(f, &byns, 100, NULL, 200);
  assert_int_equal(json_array_size(json_object_get(b, "pulls")), 1);
  json_decref(b);
  struct pt_history_filter bypod = {.pod = "shop/web-1", .state_mask = 1u << PT_PULL_FAILED};
  b = list(f, &bypod, 100, NULL, 200);
  assert_int_equal(json_array_size(json_object_get(b, "pulls")), 1);
  json_t *error = json_object_get(json_array_get(json_object_get(b, "pulls"), 0), "error");
  assert_string_equal(json_string_value(json_object_get(error, "reason")), "ErrImagePull");
  json_decref(b);
  struct pt_history_filter since = {.since = now - 35};
  b = list(f, &since, 100, NULL, 200);
  assert_int_equal(json_array_size(json_object_get(b, "pulls")), 2);
  json_decref(b);
  b = list(f, &all, 10, "not-a-token", 400);
  json_decref(b);

  /* Statistics of reg/app:1: durations 1..7 s, two failures. */
  struct answer a = {0};
  struct pt_history_filter app = {.image = "app"};
  assert_non_null(pt_history_stats_query(f->h, &app, on_answer, &a));
  run_until(f, answered, &a);
  assert_int_equal(a.status, 200);
  json_t *images = json_object_get(a.body, "images");
  assert_int_equal(json_array_size(images), 1);
  json_t *st = json_array_get(images, 0);
  assert_int_equal(json_integer_value(json_object_get(st, "pulls")), 9);
  assert_int_equal(json_integer_value(json_object_get(st, "completed")), 7);
  assert_int_equal(json_integer_value(json_object_get(st, "failed")), 2);
  json_t *reasons = json_object_get(st, "failuresByReason");
  assert_int_equal(json_integer_value(json_object_get(reasons, "ErrImagePull")), 1);
  assert_int_equal(json_integer_value(json_object_get(reasons, "node-lost")), 1);
  json_t *d = json_object_get(st, "durationSeconds");
  assert_true(json_real_value(json_object_get(d, "p50")) == 4.0);
  assert_true(json_real_value(json_object_get(d, "p95")) == 7.0);
  assert_true(json_real_value(json_object_get(d, "max")) == 7.0);
  assert_int_equal(json_integer_value(json_object_get(st, "bytesDownloaded")), 7000);
  json_decref(a.body);
}

/* ---- an image's usual pull time (pull.slow) ------------------------------ */

struct typical_ask {
  struct pt_typical *t;
  double p50;
  size_t pulls;
};

static bool typical_known(struct fixture *f, void *ud)
{
  struct typical_ask *x = ud;
  return pt_typical_get(x->t, "reg/app:1", pt_clock_mono(), &x->p50, &x->pulls);
}

static void test_typical_duration(void **state)
{
  struct fixture *f = *state;
  f->h = open_history(f, NULL, false);
  double now = pt_clock_now();
  /* Five completed pulls of 1..5 s; a failed one, one that downloaded
   * nothing and one of a longer name, none of which count. */
  for (int i = 1; i <= 5; i++) {
    char id[32];
    snprintf(id, sizeof(id), "n1/c%d", i);
    record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                  record(id, "n1", "reg/app:1", "completed", now - 100, now - 100 + i, 1000, NULL, NULL));
  }
  record_change(f->h, PT_CHANGE_PULL_FAILED,
                record("n1/f1", "n1", "reg/app:1", "failed", now - 90, now - 10, 0, NULL, "ErrImagePull"));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                record("n1/z1", "n1", "reg/app:1", "completed", now - 90, now - 10, 0, NULL, NULL));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                record("n1/o1", "n1", "reg/app:10", "completed", now - 90, now - 10, 1000, NULL, NULL));
  run_until(f, all_committed, NULL);

  struct answer a = {0};
  assert_non_null(pt_history_typical(f->h, "reg/app:1", on_answer, &a));
  run_until(f, answered, &a);
  assert_int_equal(a.status, 200);
  assert_true(json_real_value(json_object_get(a.body, "p50")) == 3.0);
  assert_int_equal(json_integer_value(json_object_get(a.body, "pulls")), 5);
  json_decref(a.body);
  a = (struct answer){0};
  assert_non_null(pt_history_typical(f->h, "reg/app", on_answer, &a));
  run_until(f, answered, &a);
  assert_true(json_is_null(json_object_get(a.body, "p50")));
  assert_int_equal(json_integer_value(json_object_get(a.body, "pulls")), 0);
  json_decref(a.body);

  /* The cache: unknown at the first ask (the query runs off the loop), then
   * the figure; a finished pull makes it ask again, not sooner than
   * PT_TYPICAL_MIN_AGE after the last time. */
  struct typical_ask x = {.t = pt_typical_create(f->h)};
  assert_non_null(x.t);
  assert_false(typical_known(f, &x));
  run_until(f, typical_known, &x);
  assert_true(x.p50 == 3.0);
  assert_int_equal(x.pulls, 5);
  record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                record("n1/c6", "n1", "reg/app:1", "completed", now - 50, now - 40, 1000, NULL, NULL));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED,
                record("n1/c7", "n1", "reg/app:1", "completed", now - 50, now - 40, 1000, NULL, NULL));
  run_until(f, all_committed, NULL);
  pt_typical_changed(x.t, "reg/app:1");
  double later = pt_clock_mono() + PT_TYPICAL_MIN_AGE;
  assert_true(pt_typical_get(x.t, "reg/app:1", later, &x.p50, &x.pulls));
  assert_int_equal(x.pulls, 5); /* the last figure, while the new one is read */
  for (int i = 0; i < 20000 && x.pulls != 7; i++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    usleep(1000);
    pt_typical_get(x.t, "reg/app:1", later, &x.p50, &x.pulls);
  }
  assert_int_equal(x.pulls, 7);
  assert_true(x.p50 == 4.0);
  pt_typical_destroy(x.t);
}

/* ---- retention ----------------------------------------------------------- */

static bool deleted_by_age(struct fixture *f, void *ud)
{
  struct pt_history_stats s;
  pt_history_stats(f->h, &s);
  return s.deleted_age >= *(uint64_t *)ud;
}

static void test_retention_by_age(void **state)
{
  struct fixture *f = *state;
  struct pt_history_options o = {.retention = 3600, .retention_interval = 0.05};
  f->h = open_history(f, &o, false);
  double now = pt_clock_now();
  /* 1200 old pulls (more than one retention batch), evicted; one old pull
   * still in the tables; one recent pull. */
  for (int i = 0; i < 1200; i++) {
    char id[32];
    snprintf(id, sizeof(id), "n1/old%d", i);
    record_change(f->h, PT_CHANGE_PULL_COMPLETED, record(id, "n1", "a", "completed", now - 7300, now - 7200, 1,
                                                         NULL, NULL));
    evict(f->h, id);
  }
  record_change(f->h, PT_CHANGE_PULL_COMPLETED, record("n1/live", "n1", "a", "completed", now - 7300, now - 7200,
                                                       1, NULL, NULL));
  record_change(f->h, PT_CHANGE_PULL_COMPLETED, record("n1/new", "n1", "a", "completed", now - 60, now - 50, 1,
                                                       NULL, NULL));
  uint64_t want = 1200;
  run_until(f, deleted_by_age, &want);
  struct pt_history_filter all = {0};
  json_t *b = list(f, &all, 100, NULL, 200);
  json_t *pulls = json_object_get(b, "pulls");
  assert_int_equal(json_array_size(pulls), 2);
  json_decref(b);
}

static bool size_under(struct fixture *f, void *ud)
{
  struct pt_history_stats s;
  pt_history_stats(f->h, &s);
  return s.deleted_size > 0 && s.db_bytes <= *(int64_t *)ud && s.queue_depth == 0 &&
         f->committed >= pt_history_mark(f->h);
}

static void test_retention_by_size(void **state)
{
  struct fixture *f = *state;
  int64_t max = 256 * 1024;
  struct pt_history_options o = {.max_bytes = max, .retention_interval = 0.05};
  f->h = open_history(f, &o, false);
  double now = pt_clock_now();
  /* About 2 MB of records: a big message in each. */
  char msg[2048];
  memset(msg, 'x', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  for (int i = 0; i < 1000; i++) {
    char id[32];
    snprintf(id, sizeof(id), "n1/p%04d", i);
    json_t *r = record(id, "n1", "a", "failed", now - 5000 + i, now - 4000 + i, 1, NULL, "Failed");
    json_object_set_new(json_object_get(r, "error"), "message", json_string(msg));
    record_change(f->h, PT_CHANGE_PULL_FAILED, r);
    evict(f->h, id);
  }
  run_until(f, size_under, &max);
  /* The newest pulls are the ones kept. */
  struct pt_history_filter all = {0};
  json_t *b = list(f, &all, 1, NULL, 200);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(b, "pulls"), 0), "id")),
                      "n1/p0999");
  json_decref(b);
}

/* ---- failures ------------------------------------------------------------ */

/* ---- a pull's own events ------------------------------------------------ */

static json_t *pull_events(struct fixture *f, const char *id, bool live, int want_status)
{
  struct answer a = {0};
  assert_non_null(pt_history_pull_events(f->h, id, live, on_answer, &a));
  run_until(f, answered, &a);
  assert_int_equal(a.status, want_status);
  return a.body;
}

static void test_pull_events(void **state)
{
  struct fixture *f = *state;
  /* A database of schema version 1 (before pull_events) gets the table. */
  char path[128];
  snprintf(path, sizeof(path), "%s/" PT_HISTORY_FILE, f->dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
                                "CREATE TABLE pulls(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, node TEXT NOT "
                                "NULL, image TEXT, state TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, "
                                "duration REAL, total_bytes INTEGER NOT NULL, downloaded_bytes INTEGER NOT NULL, "
                                "cached_bytes INTEGER NOT NULL, error_reason TEXT, namespaces TEXT NOT NULL, pods "
                                "TEXT NOT NULL, live INTEGER NOT NULL, record TEXT NOT NULL);"
                                "CREATE TABLE alerts(seq INTEGER PRIMARY KEY, time REAL NOT NULL, name TEXT NOT NULL, "
                                "severity TEXT, node TEXT, pull_id TEXT, image TEXT, namespace TEXT, record TEXT NOT "
                                "NULL); PRAGMA user_version=1;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  f->h = open_history(f, NULL, false);
  double now = pt_clock_now();
  record_change(f->h, PT_CHANGE_PULL_STARTED, record("n1/p1", "n1", "a", "pulling", now - 10, 0, 1, NULL, NULL));
  pt_history_record_event(f->h, "n1/p1", 7, "pull.started", "{\"v\":1,\"type\":\"pull.started\"}");
  pt_history_record_event(f->h, "n1/p1", 9, "pull.completed", "{\"v\":1,\"type\":\"pull.completed\"}");
  for (uint64_t i = 0; i < 70; i++) /* more than an answer holds */
    pt_history_record_event(f->h, "n1/p2", 100 + i, "pull.stalled", "{\"v\":1}");
  run_until(f, all_committed, NULL);

  json_t *b = pull_events(f, "n1/p1", false, 200);
  json_t *events = json_object_get(b, "events");
  assert_int_equal(json_array_size(events), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(events, 0), "id")), 7);
  assert_string_equal(json_string_value(json_object_get(json_array_get(events, 1), "type")), "pull.completed");
  assert_string_equal(
    json_string_value(json_object_get(json_object_get(json_array_get(events, 1), "data"), "type")), "pull.completed");
  assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 0);
  assert_string_equal(json_string_value(json_object_get(b, "pullId")), "n1/p1");
  json_decref(b);
  /* The newest PT_PULL_EVENTS_PER_PULL, oldest first; the rest counted. */
  b = pull_events(f, "n1/p2", false, 200);
  events = json_object_get(b, "events");
  assert_int_equal(json_array_size(events), 64);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(events, 0), "id")), 106);
  assert_int_equal(json_integer_value(json_object_get(b, "dropped")), 6);
  json_decref(b);
  /* Unknown: 404, unless the pull is in the tables (its record on its way). */
  b = pull_events(f, "n1/none", false, 404);
  json_decref(b);
  b = pull_events(f, "n1/none", true, 200);
  assert_int_equal(json_array_size(json_object_get(b, "events")), 0);
  json_decref(b);

  /* A superseded pull is deleted, and its events with it. */
  struct pt_pull p = {.id = "n1/p1", .node = "n1"}, by = {.id = "n1/p3", .node = "n1"};
  struct pt_change c = {.type = PT_CHANGE_PULL_EVICTED, .pull = &p, .reason = "superseded", .superseded_by = &by};
  pt_history_record(f->h, &c);
  run_until(f, all_committed, NULL);
  b = pull_events(f, "n1/p1", false, 404);
  json_decref(b);

  /* Reopened: still version 2, the events of n1/p2 kept. */
  pt_history_close(f->h);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  f->h = open_history(f, NULL, false);
  b = pull_events(f, "n1/p2", false, 200);
  assert_int_equal(json_array_size(json_object_get(b, "events")), 64);
  json_decref(b);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 2);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void test_corrupt_database(void **state)
{
  struct fixture *f = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", f->dir, PT_HISTORY_FILE);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  for (int i = 0; i < 1000; i++)
    fputs("this is not a database file ", fp);
  fclose(fp);
  struct pt_history_options o = {.dir = f->dir};
  char err[512];
  assert_null(pt_history_open(&f->loop, &o, err, sizeof(err)));
  assert_non_null(strstr(err, "not a database"));
  assert_non_null(strstr(err, path));
}

static void test_one_process_per_directory(void **state)
{
  struct fixture *f = *state;
  f->h = open_history(f, NULL, false);
  struct pt_history_options o = {.dir = f->dir};
  char err[512];
  assert_null(pt_history_open(&f->loop, &o, err, sizeof(err)));
  assert_non_null(strstr(err, "in use by another pulltrace-server"));
  struct pt_history_options missing = {.dir = "/nonexistent/pulltrace"};
  assert_null(pt_history_open(&f->loop, &missing, err, sizeof(err)));
  assert_non_null(strstr(err, "PULLTRACE_DATA_DIR"));
}

static bool degraded_is(struct fixture *f, void *ud)
{
  struct pt_history_stats s;
  pt_history_stats(f->h, &s);
  return s.degraded == *(bool *)ud && f->committed >= pt_history_mark(f->h);
}

static void test_failed_write_degrades_then_recovers(void **state)
{
  struct fixture *f = *state;
  f->h = open_history(f, NULL, false);
  /* Another connection takes the alerts table away: the next alert's
   * transaction fails as a full disk would. */
  sqlite3 *db;
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", f->dir, PT_HISTORY_FILE);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "DROP TABLE alerts", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  json_t *labels = json_pack("{s:s}", "node", "n1");
  struct pt_policy_alert al = {.name = "PullStalled", .severity = "warning", .summary = "s", .labels = labels,
                               .event_type = "pull.stalled"};
  struct pt_change c = {.type = PT_CHANGE_ALERT, .time = pt_clock_now(), .alert = &al};
  pt_history_record(f->h, &c);
  bool yes = true, no = false;
  run_until(f, degraded_is, &yes);
  struct pt_history_stats s;
  pt_history_stats(f->h, &s);
  assert_int_equal(s.errors, 1);
  assert_int_equal(s.records_dropped, 1);
  assert_non_null(strstr(s.last_error, "writing the history"));
  /* The next write succeeds and ends the degraded state. */
  double now = pt_clock_now();
  record_change(f->h, PT_CHANGE_PULL_COMPLETED, record("n1/a", "n1", "a", "completed", now - 2, now - 1, 1, NULL,
                                                       NULL));
  run_until(f, degraded_is, &no);
  json_decref(labels);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_restore_and_event_ids, setup, teardown),
    cmocka_unit_test_setup_teardown(test_list_paging_and_stats, setup, teardown),
    cmocka_unit_test_setup_teardown(test_typical_duration, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retention_by_age, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retention_by_size, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pull_events, setup, teardown),
    cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
    cmocka_unit_test_setup_teardown(test_one_process_per_directory, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_write_degrades_then_recovers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
