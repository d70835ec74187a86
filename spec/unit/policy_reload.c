/* Startup errors, explicit reloads (at once without a loop, built off the
 * loop with one), the ConfigMap symlink swap seen through the directory
 * watch, the watcher on its own, and the --check-policy mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "policy/watch.h"
#include "policy_util.h"

static const char v1[] = "pulltrace.rate(function() return {bytesPerSec = 1} end)\n";
static const char v2[] = "pulltrace.rate(function() return {bytesPerSec = 2} end)\n";

static double current_rate(struct pt_policy *p)
{
  struct pt_policy_rate_state st = {0};
  struct pt_policy_rate_result r = rate_once(p, 1, 1, 10, &st);
  pt_policy_rate_state_clear(&st);
  return r.fallback ? -1 : r.bytes_per_sec;
}

static void test_startup_errors_name_file_and_line(void **state)
{
  (void)state;
  char err[2048];
  assert_null(load_one("local x = 1\nlocal y = = 2\n", err, sizeof(err)));
  assert_non_null(strstr(err, "t.lua:2:"));
  assert_non_null(strstr(err, "unexpected symbol near '='"));
  assert_null(load_one("local t = nil\nlocal x = t.field\n", err, sizeof(err)));
  assert_non_null(strstr(err, "t.lua:2: attempt to index a nil value (local 't')"));
  assert_null(load_one("pulltrace.rate(42)\n", err, sizeof(err)));
  assert_non_null(strstr(err, "t.lua:1: bad argument #1 to 'rate' (function expected"));

  /* Every broken script is reported, not just the first. */
  char *dir = tdir_new();
  tdir_write(dir, "a.lua", "error('first broken')\n");
  tdir_write(dir, "b.lua", "return 1\n");
  tdir_write(dir, "c.lua", "\n\nlocal = 3\n");
  tdir_write(dir, "notes.txt", "not a script\n");
  tdir_write(dir, ".hidden.lua", "error('dot files are skipped')\n");
  struct pt_policy_options o = topts(dir);
  assert_null(pt_policy_create(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "a.lua:1: first broken"));
  assert_non_null(strstr(err, "\nc.lua:3:"));
  assert_null(strstr(err, "dot files"));
  tdir_remove(dir);

  /* A missing directory is a startup error too. */
  o = topts("/nonexistent/pulltrace-policy");
  assert_null(pt_policy_create(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "/nonexistent/pulltrace-policy: No such file or directory"));
}

/* The server's start (defaults_on_error): a broken directory runs the
 * built-in defaults with the failure in the status, and the next good version
 * takes over; bad settings still fail. */
static void test_startup_failure_runs_the_defaults(void **state)
{
  (void)state;
  char *dir = tdir_new();
  tdir_write(dir, "a.lua", v1);
  tdir_write(dir, "c.lua", "\n\nlocal = 3\n");
  struct pt_policy_options o = topts(dir);
  o.defaults_on_error = true;
  char err[2048];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  assert_true(current_rate(p) == -1); /* a.lua is not running: the C default answers */
  struct pt_policy_status st;
  pt_policy_status(p, &st);
  assert_true(st.loaded && st.defaults_only);
  assert_int_equal(st.last_reload, 0);
  assert_string_equal(st.error_script, "c.lua");
  assert_int_equal(st.error_line, 3);
  assert_string_equal(st.error_message, "<name> expected near '='");
  assert_non_null(strstr(st.error, "c.lua:3:"));
  json_t *js = pt_policy_status_json(p);
  assert_true(json_is_true(json_object_get(js, "defaultsOnly")));
  assert_string_equal(json_string_value(json_object_get(js, "lastReload")), "failed");
  json_decref(js);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.reloads_failed, 1);

  /* The fix takes over. */
  tdir_write(dir, "c.lua", "return 1\n");
  assert_int_equal(pt_policy_reload(p), 0);
  assert_true(current_rate(p) == 1);
  pt_policy_status(p, &st);
  assert_false(st.defaults_only);
  assert_int_equal(st.last_reload, 1);
  assert_string_equal(st.error_script, "");
  pt_policy_destroy(p);

  /* Without the option the same directory stops creation. */
  tdir_write(dir, "c.lua", "\n\nlocal = 3\n");
  o.defaults_on_error = false;
  assert_null(pt_policy_create(&o, err, sizeof(err)));
  tdir_remove(dir);

  /* A missing directory: no script to name. */
  o = topts("/nonexistent/pulltrace-policy");
  o.defaults_on_error = true;
  p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  pt_policy_status(p, &st);
  assert_true(st.defaults_only);
  assert_string_equal(st.error_script, "");
  assert_int_equal(st.error_line, 0);
  assert_non_null(strstr(st.error_message, "No such file or directory"));
  pt_policy_destroy(p);

  /* A bad setting is a configuration error, not a script's. */
  o = topts(NULL);
  o.defaults_on_error = true;
  o.settings[0] = (struct pt_policy_setting){"historyTTL", "soon"};
  o.n_settings = 1;
  assert_null(pt_policy_create(&o, err, sizeof(err)));
}

static void test_override_replaces_builtin_by_name(void **state)
{
  (void)state;
  char *dir = tdir_new();
  tdir_write(dir, "rate.lua", v2);
  struct pt_policy_options o = topts(dir);
  o.no_builtin = false;
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  assert_true(current_rate(p) == 2);
  json_t *s = pt_policy_status_json(p);
  json_t *scripts = json_object_get(s, "scripts");
  assert_int_equal(json_array_size(scripts), 4);
  size_t i;
  json_t *sc;
  int found = 0;
  json_array_foreach(scripts, i, sc) {
    if (!strcmp(json_string_value(json_object_get(sc, "name")), "rate.lua")) {
      found = 1;
      assert_non_null(strstr(json_string_value(json_object_get(sc, "origin")), dir));
    }
  }
  assert_true(found);
  json_decref(s);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

static void test_reload_keeps_old_on_failure(void **state)
{
  (void)state;
  char *dir = tdir_new();
  tdir_write(dir, "r.lua", v1);
  struct pt_policy_options o = topts(dir);
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  assert_true(current_rate(p) == 1);

  tdir_write(dir, "r.lua", "pulltrace.rate(function() return {bytesPerSec = 3} end)\nbroken(\n");
  assert_int_equal(pt_policy_reload(p), -EINVAL);
  assert_true(current_rate(p) == 1);
  struct pt_policy_status st;
  pt_policy_status(p, &st);
  assert_true(st.loaded);
  assert_int_equal(st.last_reload, 0);
  assert_non_null(strstr(st.error, "r.lua:3:"));
  json_t *js = pt_policy_status_json(p);
  assert_string_equal(json_string_value(json_object_get(js, "lastReload")), "failed");
  assert_non_null(strstr(json_string_value(json_object_get(js, "error")), "r.lua:3:"));
  json_decref(js);

  tdir_write(dir, "r.lua", v2);
  assert_int_equal(pt_policy_reload(p), 0);
  assert_true(current_rate(p) == 2);
  pt_policy_status(p, &st);
  assert_int_equal(st.last_reload, 1);
  assert_string_equal(st.error, "");
  assert_int_equal(st.n_scripts, 1);

  /* Removing the hook's script falls back to the C default. */
  char path[4200];
  snprintf(path, sizeof(path), "%s/r.lua", dir);
  unlink(path);
  assert_int_equal(pt_policy_reload(p), 0);
  assert_true(current_rate(p) == -1);

  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.reloads_ok, 2);
  assert_int_equal(c.reloads_failed, 1);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

/* ---- ConfigMap-style directory watched on a loop ------------------------- */

static void write_version(const char *dir, const char *version, const char *src)
{
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, version);
  assert_int_equal(mkdir(path, 0755), 0);
  tdir_write(path, "rate.lua", src);
}

/* kubelet's atomic writer: new timestamped directory, `..data_tmp` symlink
 * renamed over `..data`, old directory removed. */
static void swap_data(const char *dir, const char *version, const char *old)
{
  char tmp[4200], data[4200], oldpath[4200];
  snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
  snprintf(data, sizeof(data), "%s/..data", dir);
  assert_int_equal(symlink(version, tmp), 0);
  assert_int_equal(rename(tmp, data), 0);
  if (old) {
    snprintf(oldpath, sizeof(oldpath), "rm -rf '%s/%s'", dir, old);
    assert_int_equal(system(oldpath), 0);
  }
}

struct wait {
  struct pt_policy *p;
  double want; /* a rate, or -2 for "the last reload failed" */
  int ticks;
  uv_timer_t timer;
};

static bool reached(struct wait *w)
{
  if (w->want == -2) {
    struct pt_policy_status st;
    pt_policy_status(w->p, &st);
    return st.last_reload == 0;
  }
  return current_rate(w->p) == w->want;
}

static void tick(uv_timer_t *t)
{
  struct wait *w = t->data;
  if (reached(w) || ++w->ticks > 100)
    uv_timer_stop(t);
}

/* Runs the loop until the condition holds, at most 5 s. */
static void wait_for(uv_loop_t *loop, struct pt_policy *p, double want)
{
  struct wait w = {p, want, 0, {0}};
  uv_timer_init(loop, &w.timer);
  w.timer.data = &w;
  uv_timer_start(&w.timer, tick, 50, 50);
  /* The watcher's handles keep the loop alive; stop when the timer stops. */
  while (uv_is_active((uv_handle_t *)&w.timer))
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&w.timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  assert_true(reached(&w));
}

static void test_configmap_symlink_swap(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *dir = tdir_new();
  write_version(dir, "..2026_11_21_10_00_00.1", v1);
  swap_data(dir, "..2026_11_21_10_00_00.1", NULL);
  char link[4200];
  snprintf(link, sizeof(link), "%s/rate.lua", dir);
  assert_int_equal(symlink("..data/rate.lua", link), 0);

  struct pt_policy_options o = topts(dir);
  o.reload_debounce = 0.1;
  o.reload_poll = -1; /* only the fs events, to test them */
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  assert_true(current_rate(p) == 1);
  assert_int_equal(pt_policy_watch(p, &loop), 0);

  write_version(dir, "..2026_11_21_10_05_00.2", v2);
  swap_data(dir, "..2026_11_21_10_05_00.2", "..2026_11_21_10_00_00.1");
  wait_for(&loop, p, 2);

  /* A broken update keeps version 2 running and says why. */
  write_version(dir, "..2026_11_21_10_10_00.3", "pulltrace.rate(function() end\n");
  swap_data(dir, "..2026_11_21_10_10_00.3", "..2026_11_21_10_05_00.2");
  wait_for(&loop, p, -2);
  struct pt_policy_status st;
  pt_policy_status(p, &st);
  assert_int_equal(st.last_reload, 0);
  assert_non_null(strstr(st.error, "rate.lua:"));
  assert_true(current_rate(p) == 2);

  /* And the next good one is picked up. */
  write_version(dir, "..2026_11_21_10_15_00.4",
                "pulltrace.rate(function() return {bytesPerSec = 4} end)\n");
  swap_data(dir, "..2026_11_21_10_15_00.4", "..2026_11_21_10_10_00.3");
  wait_for(&loop, p, 4);

  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.reloads_ok, 2);
  assert_int_equal(c.reloads_failed, 1);

  pt_policy_destroy(p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tdir_remove(dir);
}

static void test_poll_catches_changes_without_events(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *dir = tdir_new();
  char *other = tdir_new();
  /* The script is a symlink to a file in another directory: editing that
   * file gives no event in the watched one. */
  tdir_write(other, "real.lua", v1);
  char link[4200], target[4200];
  snprintf(link, sizeof(link), "%s/rate.lua", dir);
  snprintf(target, sizeof(target), "%s/real.lua", other);
  assert_int_equal(symlink(target, link), 0);
  struct pt_policy_options o = topts(dir);
  o.reload_poll = 0.2;
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  assert_int_equal(pt_policy_watch(p, &loop), 0);
  tdir_write(other, "real.lua", v2);
  wait_for(&loop, p, 2);
  pt_policy_destroy(p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tdir_remove(dir);
  tdir_remove(other);
}

struct reload_in_cb {
  struct pt_policy *p;
  int rc;
};

static void reloading_cb(void *ud, const struct pt_policy_alert *a)
{
  struct reload_in_cb *r = ud;
  (void)a;
  r->rc = pt_policy_reload(r->p);
}

/* Runs the loop until no reload is being built any more; then the policy
 * must have finished exactly `want` reloads (good or bad). */
static void wait_reloads(uv_loop_t *loop, struct pt_policy *p, uint64_t want)
{
  struct pt_policy_status st;
  for (int i = 0; i < 100000; i++) {
    pt_policy_status(p, &st);
    if (!st.reloading)
      break;
    uv_run(loop, UV_RUN_ONCE);
  }
  pt_policy_status(p, &st);
  assert_false(st.reloading);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.reloads_ok + c.reloads_failed, want);
}

static void test_reload_from_alert_callback_is_deferred(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *dir = tdir_new();
  tdir_write(dir, "a.lua",
             "pulltrace.on('x', function() return {name = 'A', severity = 'info', summary = ''} end)\n"
             "pulltrace.on('x', function() return {name = 'B', severity = 'info', summary = ''} end)\n");
  struct reload_in_cb r = {NULL, 1};
  struct pt_policy_options o = topts(dir);
  o.alert_cb = reloading_cb;
  o.alert_ud = &r;
  o.reload_poll = -1;
  char err[512];
  r.p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(r.p);
  assert_int_equal(pt_policy_watch(r.p, &loop), 0);
  /* Both handlers of the old VM run; the reload is only scheduled by the
   * callback, and swapped in by the loop afterwards. */
  assert_int_equal(pt_policy_emit(r.p, "x", NULL), 2);
  assert_int_equal(r.rc, 0);
  struct pt_policy_counters c;
  pt_policy_counters(r.p, &c);
  assert_int_equal(c.reloads_ok, 0);
  wait_reloads(&loop, r.p, 1);
  pt_policy_counters(r.p, &c);
  assert_int_equal(c.reloads_ok, 1);
  pt_policy_destroy(r.p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tdir_remove(dir);
}

/* Without a loop a reload runs on the caller's thread, so it cannot run from
 * inside a hook call. */
static void test_reload_without_loop_refused_inside_a_call(void **state)
{
  (void)state;
  char *dir = tdir_new();
  tdir_write(dir, "a.lua",
             "pulltrace.on('x', function() return {name = 'A', severity = 'info', summary = ''} end)\n");
  struct reload_in_cb r = {NULL, 1};
  struct pt_policy_options o = topts(dir);
  o.alert_cb = reloading_cb;
  o.alert_ud = &r;
  char err[512];
  r.p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(r.p);
  assert_int_equal(pt_policy_emit(r.p, "x", NULL), 1);
  assert_int_equal(r.rc, -EBUSY);
  struct pt_policy_counters c;
  pt_policy_counters(r.p, &c);
  assert_int_equal(c.reloads_ok + c.reloads_failed, 0);
  pt_policy_destroy(r.p);
  tdir_remove(dir);
}

/* With a loop, a reload is a job: the scripts are read and compiled on the
 * thread pool, the old VM answers until the loop swaps the new one in, a bad
 * reload keeps the old one, and requests during a build are merged. */
static void test_reload_with_loop_is_built_off_the_loop(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *dir = tdir_new();
  tdir_write(dir, "r.lua", v1);
  struct pt_policy_options o = topts(dir);
  o.reload_poll = -1;
  o.reload_debounce = 60; /* no watcher-triggered reload in this test */
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  assert_int_equal(pt_policy_watch(p, &loop), 0);

  tdir_write(dir, "r.lua", v2);
  assert_int_equal(pt_policy_reload(p), 0);
  /* Scheduled, not run: nothing changes until the loop runs. */
  struct pt_policy_status st;
  pt_policy_status(p, &st);
  assert_true(st.reloading);
  assert_true(current_rate(p) == 1);
  wait_reloads(&loop, p, 1);
  assert_true(current_rate(p) == 2);

  /* A bad script: the job fails, the running VM stays, the status says why. */
  tdir_write(dir, "r.lua", "pulltrace.rate(function() return {bytesPerSec = 3} end)\nbroken(\n");
  assert_int_equal(pt_policy_reload(p), 0);
  wait_reloads(&loop, p, 2);
  assert_true(current_rate(p) == 2);
  pt_policy_status(p, &st);
  assert_int_equal(st.last_reload, 0);
  assert_non_null(strstr(st.error, "r.lua:3:"));

  /* Three requests while one is being built: they are merged into one
   * more job, which finds the scripts unchanged and builds nothing. */
  tdir_write(dir, "r.lua", "pulltrace.rate(function() return {bytesPerSec = 4} end)\n");
  assert_int_equal(pt_policy_reload(p), 0);
  assert_int_equal(pt_policy_reload(p), 0);
  assert_int_equal(pt_policy_reload(p), 0);
  wait_reloads(&loop, p, 3);
  assert_true(current_rate(p) == 4);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.reloads_ok, 2);
  assert_int_equal(c.reloads_failed, 1);
  pt_policy_status(p, &st);
  assert_int_equal(st.last_reload, 1);
  assert_string_equal(st.error, "");

  /* Destroyed with a build in flight: the loop finishes it and frees all
   * (the sanitizer build checks that nothing leaks). */
  assert_int_equal(pt_policy_reload(p), 0);
  pt_policy_destroy(p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tdir_remove(dir);
}

/* ---- the directory watcher on its own ------------------------------------ */

static void count_cb(void *ud)
{
  (*(int *)ud)++;
}

/* Runs the loop until *n reaches want (at most 100,000 iterations). */
static void run_until(uv_loop_t *loop, const int *n, int want)
{
  for (int i = 0; i < 100000 && *n < want; i++)
    uv_run(loop, UV_RUN_ONCE);
  assert_true(*n >= want);
}

static void test_watch_object(void **state)
{
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *dir = tdir_new();

  /* Events in the directory: one callback after the debounce. */
  int n = 0;
  struct pt_watch *w = pt_watch_create(&loop, dir, 0.05, -1, count_cb, &n);
  assert_non_null(w);
  assert_int_equal(pt_watch_start(w), 0);
  tdir_write(dir, "a.lua", "-- 1\n");
  tdir_write(dir, "b.lua", "-- 2\n");
  run_until(&loop, &n, 1);
  pt_watch_destroy(w);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* A directory that does not exist yet: start says why, and the periodic
   * tick still calls back (and starts watching once it appears). */
  char missing[4200];
  snprintf(missing, sizeof(missing), "%s/later", dir);
  n = 0;
  w = pt_watch_create(&loop, missing, 0.05, 0.05, count_cb, &n);
  assert_non_null(w);
  assert_int_equal(pt_watch_start(w), -ENOENT);
  run_until(&loop, &n, 2);
  pt_watch_destroy(w);
  pt_watch_destroy(NULL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tdir_remove(dir);
}

static char *check(const char *dir, int *rc)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  *rc = pt_policy_check_dir(dir, f);
  fclose(f);
  return buf;
}

static void test_check_policy(void **state)
{
  (void)state;
  char *dir = tdir_new();
  int rc;
  char *out = check(dir, &rc);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "ok: 4 scripts"));
  free(out);

  tdir_write(dir, "zz-custom.lua",
             "pulltrace.evict(function(pull, now) return 'later' end)\n"
             "pulltrace.on('pull.failed', function(ev) return {name = 'X', severity = 'loud'} end)\n");
  out = check(dir, &rc);
  assert_int_equal(rc, -EINVAL);
  assert_non_null(strstr(out, "error: evict hook: zz-custom.lua: invalid return"));
  assert_non_null(strstr(out, "error: alert hook: zz-custom.lua: invalid return: alert severity"));
  free(out);

  tdir_write(dir, "zz-custom.lua", "local x = \n");
  tdir_write(dir, "zz-other.lua", "pulltrace.on(nil, print)\n");
  out = check(dir, &rc);
  assert_int_equal(rc, -EINVAL);
  assert_non_null(strstr(out, "error: zz-custom.lua:2:"));
  assert_non_null(strstr(out, "error: zz-other.lua:1: bad argument #1 to 'on'"));
  free(out);

  tdir_write(dir, "zz-custom.lua", "pulltrace.rate(function(s) error('no rate today') end)\n");
  char path[4200];
  snprintf(path, sizeof(path), "%s/zz-other.lua", dir);
  unlink(path);
  out = check(dir, &rc);
  assert_int_equal(rc, -EINVAL);
  assert_non_null(strstr(out, "error: rate hook: zz-custom.lua:1: no rate today"));
  free(out);
  tdir_remove(dir);
}

/* The worked examples of docs/policy.md load and pass the check. */
static void test_docs_examples(void **state)
{
  (void)state;
  FILE *f = fopen(PT_SOURCE_DIR "/docs/policy.md", "r");
  assert_non_null(f);
  char *dir = tdir_new();
  char line[1024], name[256] = "";
  FILE *out = NULL;
  int examples = 0;
  while (fgets(line, sizeof(line), f)) {
    if (!out && strncmp(line, "-- policy/", 10) == 0) {
      /* "-- policy/NAME.lua" or "-- policy/NAME.lua: what it does" */
      snprintf(name, sizeof(name), "%s/%.*s", dir, (int)strcspn(line + 10, ": \t\n"), line + 10);
      out = fopen(name, "w");
      assert_non_null(out);
      examples++;
    }
    if (out && strncmp(line, "```", 3) == 0) {
      fclose(out);
      out = NULL;
      continue;
    }
    if (out)
      fputs(line, out);
  }
  fclose(f);
  assert_int_equal(examples, 3);
  int rc;
  char *report = check(dir, &rc);
  if (rc != 0)
    fail_msg("%s", report);
  free(report);

  /* Example 3 does what it says: with the built-in scripts loaded, its alerts.lua replaces
   * theirs, so a failed pull pages only for a production namespace. */
  struct pt_policy_options o = topts(dir);
  o.no_builtin = false;
  o.settings[0] = (struct pt_policy_setting){"stallAlertAfter", "2m"};
  o.settings[1] = (struct pt_policy_setting){"prodNamespaces", "prod,payments"};
  o.n_settings = 2;
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  json_t *ev = json_pack("{s:{s:s, s:s, s:s, s:[{s:s, s:s}]}, s:s, s:s}", "pull", "id", "n1/x-1", "node", "n1",
                         "imageRef", "docker.io/library/nginx", "pods", "namespace", "dev", "name", "web-1",
                         "reason", "ErrImagePull", "message", "not found");
  assert_int_equal(pt_policy_emit(p, "pull.failed", ev), 0);
  json_object_set_new(json_array_get(json_object_get(json_object_get(ev, "pull"), "pods"), 0), "namespace",
                      json_string("payments"));
  assert_int_equal(pt_policy_emit(p, "pull.failed", ev), 1);
  json_object_del(ev, "reason");
  json_object_set_new(ev, "stalledSeconds", json_real(121.0));
  assert_int_equal(pt_policy_emit(p, "pull.stalled", ev), 1);
  json_decref(ev);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_startup_errors_name_file_and_line),
      cmocka_unit_test(test_startup_failure_runs_the_defaults),
      cmocka_unit_test(test_override_replaces_builtin_by_name),
      cmocka_unit_test(test_reload_keeps_old_on_failure),
      cmocka_unit_test(test_configmap_symlink_swap),
      cmocka_unit_test(test_poll_catches_changes_without_events),
      cmocka_unit_test(test_reload_from_alert_callback_is_deferred),
      cmocka_unit_test(test_reload_without_loop_refused_inside_a_call),
      cmocka_unit_test(test_reload_with_loop_is_built_off_the_loop),
      cmocka_unit_test(test_watch_object),
      cmocka_unit_test(test_check_policy),
      cmocka_unit_test(test_docs_examples),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
