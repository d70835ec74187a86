/* The hooks through the host: built-in defaults, the C fallbacks, validation
 * of returns, errors and counters, alerts and their de-duplication. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "policy_util.h"

static struct pt_policy *builtin(const char *dir, pt_policy_alert_cb cb, void *ud)
{
  struct pt_policy_options o = topts(dir);
  o.no_builtin = false;
  o.settings[0] = (struct pt_policy_setting){"rateHalfLife", "10s"};
  o.settings[1] = (struct pt_policy_setting){"historyTTL", "30m"};
  o.settings[2] = (struct pt_policy_setting){"nodeLostGrace", "2m"};
  o.settings[3] = (struct pt_policy_setting){"stallAlertAfter", "2m"};
  o.n_settings = 4;
  o.alert_cb = cb;
  o.alert_ud = ud;
  char err[2048];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  return p;
}

static void check_rate_behaviour(struct pt_policy *p, bool want_fallback)
{
  struct pt_policy_rate_state st = {0};
  struct pt_policy_rate_result r = rate_once(p, 1000, 5000000, 100000000, &st);
  assert_int_equal(r.fallback, want_fallback);
  assert_true(r.bytes_per_sec == 0);
  assert_true(r.eta_seconds == -1);
  r = rate_once(p, 1001, 6000000, 100000000, &st);
  assert_true(fabs(r.bytes_per_sec - 1e6) < 1e-6);
  assert_true(fabs(r.eta_seconds - 94.0) < 1e-6);
  /* Ten seconds (one half-life) stalled: half the speed. */
  struct pt_policy_rate_sample s = {"n/p-1", "n", 1011, 6000000, 100000000, true, false};
  assert_int_equal(pt_policy_rate(p, &s, &st, &r), 0);
  assert_int_equal(r.fallback, want_fallback);
  assert_true(fabs(r.bytes_per_sec - 0.5e6) < 1e-3);
  assert_true(fabs(r.eta_seconds - 188.0) < 1e-3);
  /* Unknown total: no ETA. */
  r = rate_once(p, 1012, 7000000, -1, &st);
  assert_true(r.eta_seconds == -1);
  assert_true(r.bytes_per_sec > 0.5e6);
  pt_policy_rate_state_clear(&st);
  assert_null(st.script_state);
}

static void check_evict_behaviour(struct pt_policy *p)
{
  enum pt_policy_evict_decision d;
  struct pt_policy_evict_input in = {"n/p-1", "n", "docker.io/library/nginx",
                                     PT_POLICY_PULL_COMPLETED, 100, 1000, 0, 1000, 5000, 0};
  in.now = 1000 + 1800 - 0.5;
  assert_int_equal(pt_policy_evict(p, &in, &d), 0);
  assert_int_equal(d, PT_POLICY_KEEP);
  in.now = 1000 + 1800;
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_EVICT);
  in.phase = PT_POLICY_PULL_ACTIVE;
  in.finished_at = 0;
  in.node_last_report = 5000;
  in.now = 5000 + 119;
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_KEEP);
  in.now = 5000 + 120;
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_MARK_LOST);
  in.phase = PT_POLICY_PULL_LOST;
  in.lost_at = 5120;
  in.now = 5120 + 1800;
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_EVICT);
}

static json_t *sample_pods(void)
{
  return json_pack("[{s:s, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}]},"
                   " {s:s, s:s, s:s, s:[{s:s, s:s}]},"
                   " {s:s, s:s, s:s, s:[{s:s, s:s}]}]",
                   "namespace", "demo", "name", "web-0", "node", "node-a", "containers", "name",
                   "app", "image", "127.0.0.1:5001/demo/app:v1", "name", "side", "image",
                   "busybox", "namespace", "demo", "name", "other", "node", "node-a",
                   "containers", "name", "main", "image", "127.0.0.1:5001/demo/other:v1",
                   "namespace", "demo", "name", "web-1", "node", "node-b", "containers", "name",
                   "app", "image", "127.0.0.1:5001/demo/app:v1");
}

static void check_correlate_behaviour(struct pt_policy *p, bool want_fallback)
{
  json_t *pull = json_pack("{s:s, s:s, s:s, s:f}", "node", "node-a", "imageRef",
                           "127.0.0.1/demo/app", "manifestDigest", "sha256:m", "startedAt", 100.0);
  json_t *pods = sample_pods();
  json_t *events = json_pack("[{s:s, s:s, s:s, s:s, s:f}]", "namespace", "demo", "pod", "web-0",
                             "reason", "Pulling", "message",
                             "Pulling image \"127.0.0.1:5001/demo/app:v1\"", "lastTimestamp",
                             99.0);
  struct pt_policy_correlation c;
  assert_int_equal(pt_policy_correlate(p, pull, pods, events, &c), 0);
  assert_int_equal(c.fallback, want_fallback);
  assert_int_equal(c.n_targets, 1);
  assert_string_equal(c.targets[0].ns, "demo");
  assert_string_equal(c.targets[0].pod, "web-0");
  assert_string_equal(c.targets[0].container, "app");
  assert_string_equal(c.image_ref, "127.0.0.1:5001/demo/app:v1");
  pt_policy_correlation_clear(&c);
  assert_null(c.targets);
  /* Docker Hub short names. */
  json_object_set_new(pull, "imageRef", json_string("docker.io/library/busybox"));
  assert_int_equal(pt_policy_correlate(p, pull, pods, NULL, &c), 0);
  assert_int_equal(c.n_targets, 1);
  assert_string_equal(c.targets[0].container, "side");
  pt_policy_correlation_clear(&c);
  /* No pod uses it. */
  json_object_set_new(pull, "imageRef", json_string("127.0.0.1/demo/nothing"));
  assert_int_equal(pt_policy_correlate(p, pull, pods, events, &c), 0);
  assert_int_equal(c.n_targets, 0);
  assert_null(c.image_ref);
  pt_policy_correlation_clear(&c);
  json_decref(pull);
  json_decref(pods);
  json_decref(events);
}

static void test_builtin_defaults(void **state)
{
  (void)state;
  struct pt_policy *p = builtin(NULL, NULL, NULL);
  check_rate_behaviour(p, false);
  check_evict_behaviour(p);
  check_correlate_behaviour(p, false);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  for (int h = 0; h < PT_POLICY_HOOK_COUNT; h++)
    assert_int_equal(c.errors[h], 0);
  assert_true(c.calls[PT_POLICY_HOOK_RATE] == 4);
  assert_true(c.calls[PT_POLICY_HOOK_CORRELATE] == 3);
  assert_true(c.seconds[PT_POLICY_HOOK_RATE] > 0);
  json_t *s = pt_policy_status_json(p);
  json_t *hooks = json_object_get(s, "hooks");
  assert_string_equal(json_string_value(json_object_get(hooks, "rate")), "rate.lua");
  assert_string_equal(json_string_value(json_object_get(hooks, "correlate")), "correlate.lua");
  assert_int_equal(json_array_size(json_object_get(s, "scripts")), 4);
  assert_string_equal(json_string_value(json_object_get(s, "lastReload")), "none");
  json_decref(s);
  pt_policy_destroy(p);
}

static void test_c_fallbacks_without_hooks(void **state)
{
  (void)state;
  char *dir = tdir_new();
  struct pt_policy_options o = topts(dir);
  char err[512];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  check_rate_behaviour(p, true);
  check_evict_behaviour(p);
  check_correlate_behaviour(p, true);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  /* Using the defaults because no hook exists is not an error. */
  for (int h = 0; h < PT_POLICY_HOOK_COUNT; h++) {
    assert_int_equal(c.errors[h], 0);
    assert_int_equal(c.calls[h], 0);
  }
  pt_policy_destroy(p);
  tdir_remove(dir);
}

/* A script whose hooks misbehave in the way the sample's downloaded bytes
 * select. */
static const char bad_script[] =
    "pulltrace.rate(function(s, st)\n"
    "  local b = s.downloadedBytes\n"
    "  if b == 1 then error('boom') end\n"
    "  if b == 2 then return 'fast' end\n"
    "  if b == 3 then return {bytesPerSec = 0/0} end\n"
    "  if b == 4 then return {bytesPerSec = 5, etaSeconds = -1} end\n"
    "  if b == 5 then return {bytesPerSec = 5}, {f = function() end} end\n"
    "  if b == 6 then return {bytesPerSec = 5}, {big = string.rep('x', 70000)} end\n"
    "  if b == 7 then return {bytesPerSec = math.huge} end\n"
    "  if b == 8 then error({}) end\n"
    "  return {bytesPerSec = 42, etaSeconds = 7}, {n = (st and st.n or 0) + 1}\n"
    "end)\n"
    "pulltrace.evict(function(pull, now)\n"
    "  if pull.id == 'bad' then return 'maybe' end\n"
    "  if pull.id == 'lost' then return 'lost' end\n"
    "  return 'keep'\n"
    "end)\n"
    "pulltrace.correlate(function(pull, pods, events)\n"
    "  if pull.id == 'num' then return {matches = {{namespace = 'demo', pod = 5, container = 'x'}}} end\n"
    "  if pull.id == 'ref' then return {matches = {}, imageRef = 'has space'} end\n"
    "  if pull.id == 'str' then return 'web-0' end\n"
    "  return {matches = {{namespace = 'demo', pod = 'p', container = 'c'}, {namespace = 'demo', pod = 'q'}},\n"
    "          imageRef = 'x:1'}\n"
    "end)\n";

/* The state a rate hook returns comes back to it on the next call: a flat
 * table of numbers and booleans as it was (integers stay integers), anything
 * else through JSON. */
static const char *state_script =
    "pulltrace.rate(function(sample, state)\n"
    "  if not state then\n"
    "    if sample.downloadedBytes == 1 then return {bytesPerSec = 0}, {i = 2, f = 0.5, b = true} end\n"
    "    return {bytesPerSec = 0}, {nested = {x = 3}, list = {1, 2}}\n"
    "  end\n"
    "  if state.nested then return {bytesPerSec = state.nested.x + state.list[2]}, state end\n"
    "  local int = math.type(state.i) == 'integer' and 100 or 0\n"
    "  return {bytesPerSec = state.i + state.f + (state.b and 10 or 0) + int}, state\n"
    "end)\n";

static void test_rate_state_round_trip(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one(state_script, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  struct pt_policy_rate_state flat = {0}, nested = {0};
  rate_once(p, 10, 1, 1000, &flat);
  assert_true(flat.state_packed);
  struct pt_policy_rate_result r = rate_once(p, 11, 1, 1000, &flat);
  assert_false(r.fallback);
  assert_true(r.bytes_per_sec == 112.5);
  char *js = pt_policy_rate_state_json(&flat);
  assert_string_equal(js, "{\"b\":true,\"f\":0.5,\"i\":2}");
  free(js);
  rate_once(p, 10, 2, 1000, &nested);
  assert_false(nested.state_packed);
  r = rate_once(p, 11, 2, 1000, &nested);
  assert_false(r.fallback);
  assert_true(r.bytes_per_sec == 5);
  pt_policy_rate_state_clear(&flat);
  pt_policy_rate_state_clear(&nested);
  pt_policy_destroy(p);
}

/* A state of any size and form is kept whatever the size of the one before
 * it (the small ones in the state itself, the others in a block of their
 * own): a flat table of n members (n the sample's bytes), a nested one for
 * n = 0, none for n < 0. */
static const char *sizes_script =
    "pulltrace.rate(function(sample, state)\n"
    "  local seen = 0\n"
    "  if state then for _ in pairs(state) do seen = seen + 1 end end\n"
    "  if state and state.nested then seen = 100 end\n"
    "  local n = sample.downloadedBytes\n"
    "  if n < 0 then return {bytesPerSec = seen}, nil end\n"
    "  if n == 0 then return {bytesPerSec = seen}, {nested = {x = 1}} end\n"
    "  local st = {}\n"
    "  for i = 1, n do st['member' .. i] = i end\n"
    "  return {bytesPerSec = seen}, st\n"
    "end)\n";

static void test_rate_state_sizes(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one(sizes_script, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  struct pt_policy_rate_state st = {0};
  /* Each call returns how many members the previous state had (100 for
   * the nested one, 0 for none): 1 member fits in the state itself, 9 do not. */
  static const int64_t members[] = {1, 9, 9, 2, 2, 0, 1, -1, 12, 1, -1, 0, 0, 3};
  for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
    struct pt_policy_rate_result r = rate_once(p, 10 + (double)i, members[i], -1, &st);
    assert_false(r.fallback);
    int64_t before = i ? members[i - 1] : -1;
    double want = before > 0 ? (double)before : before == 0 ? 100 : 0;
    if (r.bytes_per_sec != want)
      fail_msg("call %zu: the state had %g members, %g expected", i, r.bytes_per_sec, want);
    char *js = pt_policy_rate_state_json(&st);
    if (members[i] < 0) {
      assert_null(js);
    } else if (members[i] == 0) {
      assert_string_equal(js, "{\"nested\":{\"x\":1}}");
    } else {
      assert_non_null(js);
      assert_non_null(strstr(js, "\"member1\":1"));
      char last[64];
      snprintf(last, sizeof(last), "\"member%lld\":%lld", (long long)members[i], (long long)members[i]);
      assert_non_null(strstr(js, last));
    }
    free(js);
  }
  pt_policy_rate_state_clear(&st);
  pt_policy_destroy(p);
}

static void test_errors_and_invalid_returns_fall_back(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one(bad_script, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  struct pt_policy_rate_state st = {0};
  /* A good call first: its state is kept. */
  struct pt_policy_rate_result r = rate_once(p, 10, 100, 1000, &st);
  assert_false(r.fallback);
  assert_true(r.bytes_per_sec == 42 && r.eta_seconds == 7);
  char *js = pt_policy_rate_state_json(&st);
  assert_string_equal(js, "{\"n\":1}");
  free(js);
  for (int b = 1; b <= 8; b++) {
    r = rate_once(p, 10 + b, b, 1000, &st);
    if (!r.fallback)
      fail_msg("case %d did not fall back", b);
    assert_true(r.bytes_per_sec >= 0 && isfinite(r.bytes_per_sec));
  }
  /* Failed calls leave the state as it was. */
  js = pt_policy_rate_state_json(&st);
  assert_string_equal(js, "{\"n\":1}");
  free(js);
  r = rate_once(p, 30, 100, 1000, &st);
  js = pt_policy_rate_state_json(&st);
  assert_string_equal(js, "{\"n\":2}");
  free(js);
  pt_policy_rate_state_clear(&st);

  json_t *s = pt_policy_status_json(p);
  const char *msg = json_string_value(json_object_get(json_object_get(s, "lastHookError"), "message"));
  assert_non_null(strstr(msg, "t.lua:"));
  assert_non_null(strstr(msg, "error object is a table value"));
  json_decref(s);

  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.calls[PT_POLICY_HOOK_RATE], 10);
  assert_int_equal(c.errors[PT_POLICY_HOOK_RATE], 8);

  enum pt_policy_evict_decision d = PT_POLICY_EVICT;
  struct pt_policy_evict_input in = {"bad", "n", NULL, PT_POLICY_PULL_COMPLETED, 1, 2, 0, 2, 2, 3};
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_KEEP); /* the C default: 1 s into a 30 min TTL */
  in.pull_id = "lost";
  pt_policy_evict(p, &in, &d);
  assert_int_equal(d, PT_POLICY_KEEP); /* "lost" is only for active pulls */

  json_t *pods = sample_pods();
  const char *ids[] = {"num", "ref", "str"};
  for (int i = 0; i < 3; i++) {
    json_t *pull = json_pack("{s:s, s:s, s:s}", "id", ids[i], "node", "node-a", "imageRef",
                             "127.0.0.1/demo/app");
    struct pt_policy_correlation cr;
    assert_int_equal(pt_policy_correlate(p, pull, pods, NULL, &cr), 0);
    assert_true(cr.fallback);
    /* The C default's answer, not the script's. */
    assert_int_equal(cr.n_targets, 1);
    assert_string_equal(cr.targets[0].pod, "web-0");
    pt_policy_correlation_clear(&cr);
    json_decref(pull);
  }
  json_t *pull = json_pack("{s:s, s:s}", "id", "ok", "node", "node-a");
  struct pt_policy_correlation cr;
  assert_int_equal(pt_policy_correlate(p, pull, pods, NULL, &cr), 0);
  assert_false(cr.fallback);
  assert_int_equal(cr.n_targets, 2);
  assert_null(cr.targets[1].container);
  assert_string_equal(cr.image_ref, "x:1");
  pt_policy_correlation_clear(&cr);
  json_decref(pull);
  json_decref(pods);

  pt_policy_counters(p, &c);
  assert_int_equal(c.errors[PT_POLICY_HOOK_EVICT], 1);
  assert_int_equal(c.errors[PT_POLICY_HOOK_CORRELATE], 3);
  pt_policy_destroy(p);
}

struct reasons {
  unsigned long long rate_runtime, rate_invalid, corr_invalid;
};

static void reasons_cb(void *ud, const char *hook, const char *script, const char *reason,
                       uint64_t count)
{
  struct reasons *r = ud;
  assert_string_equal(script, "t.lua");
  if (!strcmp(hook, "rate") && !strcmp(reason, "runtime"))
    r->rate_runtime = count;
  if (!strcmp(hook, "rate") && !strcmp(reason, "invalid_return"))
    r->rate_invalid = count;
  if (!strcmp(hook, "correlate") && !strcmp(reason, "invalid_return"))
    r->corr_invalid = count;
}

static void test_error_breakdown(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one(bad_script, err, sizeof(err));
  assert_non_null(p);
  struct pt_policy_rate_state st = {0};
  for (int b = 1; b <= 8; b++)
    rate_once(p, b, b, 1000, &st);
  pt_policy_rate_state_clear(&st);
  struct reasons r = {0, 0, 0};
  pt_policy_foreach_error(p, reasons_cb, &r);
  /* 1 error(), 5 unserialisable state, 8 error({}); 2, 3, 4, 6, 7 invalid. */
  assert_int_equal(r.rate_runtime, 3);
  assert_int_equal(r.rate_invalid, 5);
  assert_int_equal(r.corr_invalid, 0);
  pt_policy_destroy(p);
}

struct alerts_seen {
  int n;
  char name[8][64], severity[8][16], summary[8][256], node[8][64];
  char kube[8][512]; /* the kubernetesEvent as sorted JSON, "" without one */
};

static void alert_cb(void *ud, const struct pt_policy_alert *a)
{
  struct alerts_seen *s = ud;
  if (s->n == 8)
    fail_msg("too many alerts");
  snprintf(s->name[s->n], 64, "%s", a->name);
  snprintf(s->severity[s->n], 16, "%s", a->severity);
  snprintf(s->summary[s->n], 256, "%s", a->summary);
  const char *node = json_string_value(json_object_get(a->labels, "node"));
  snprintf(s->node[s->n], 64, "%s", node ? node : "");
  char *kube = a->kube_event ? json_dumps(a->kube_event, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  snprintf(s->kube[s->n], 512, "%s", kube ? kube : "");
  free(kube);
  s->n++;
}

/* A policy of dir's scripts alone whose alerts land in seen. */
static struct pt_policy *alerting(const char *dir, struct alerts_seen *seen)
{
  struct pt_policy_options o = topts(dir);
  o.alert_cb = alert_cb;
  o.alert_ud = seen;
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  return p;
}

static void test_default_alerts_and_dedup(void **state)
{
  (void)state;
  struct alerts_seen seen = {0};
  struct pt_policy *p = builtin(NULL, alert_cb, &seen);
  json_t *ev = json_pack("{s:{s:s, s:s, s:s}, s:f}", "pull", "id", "node-a/x-1", "node", "node-a",
                         "imageRef", "127.0.0.1/demo/app", "stalledSeconds", 119.0);
  assert_int_equal(pt_policy_emit(p, "pull.stalled", ev), 0);
  assert_int_equal(seen.n, 0);
  json_object_set_new(ev, "stalledSeconds", json_real(121.0));
  assert_int_equal(pt_policy_emit(p, "pull.stalled", ev), 1);
  assert_int_equal(seen.n, 1);
  assert_string_equal(seen.name[0], "PullStalled");
  assert_string_equal(seen.severity[0], "warning");
  assert_string_equal(seen.node[0], "node-a");
  assert_non_null(strstr(seen.summary[0], "2m1s"));
  /* The same alert again is suppressed for alertRepeat. */
  json_object_set_new(ev, "stalledSeconds", json_real(180.0));
  assert_int_equal(pt_policy_emit(p, "pull.stalled", ev), 0);
  assert_int_equal(seen.n, 1);
  json_object_set_new(ev, "message", json_string("Failed to pull image \"x\": 404"));
  assert_int_equal(pt_policy_emit(p, "pull.failed", ev), 1);
  assert_string_equal(seen.name[1], "PullFailed");
  assert_string_equal(seen.severity[1], "critical");
  assert_non_null(strstr(seen.summary[1], "404"));
  assert_int_equal(pt_policy_emit(p, "pull.completed", ev), 0);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.alerts_delivered, 2);
  assert_int_equal(c.alerts_suppressed, 1);
  json_decref(ev);
  pt_policy_destroy(p);
}

static void test_alert_validation(void **state)
{
  (void)state;
  struct alerts_seen seen = {0};
  char *dir = tdir_new();
  tdir_write(dir, "a.lua",
             "pulltrace.on('x', function(ev) return {\n"
             "  {name = 'Good', severity = 'info', summary = 's', labels = {k = 'v'}},\n"
             "  {name = 'BadSeverity', severity = 'page', summary = 's'},\n"
             "  {name = 'BadLabel', severity = 'info', summary = 's', labels = {['bad-name'] = 'v'}},\n"
             "  {name = 'BadValue', severity = 'info', summary = 's', labels = {k = 5}},\n"
             "} end)\n"
             "pulltrace.on('*', function(ev, t) if t == 'x' then error('wild') end end)\n"
             "pulltrace.on('x', function(ev) return {name = 'Second', severity = 'warning', summary = ev.what} end)\n");
  struct pt_policy *p = alerting(dir, &seen);
  json_t *ev = json_pack("{s:s}", "what", "hello");
  /* The failing "*" handler does not stop the others. */
  assert_int_equal(pt_policy_emit(p, "x", ev), 2);
  assert_int_equal(seen.n, 2);
  assert_string_equal(seen.name[0], "Good");
  assert_string_equal(seen.name[1], "Second");
  assert_string_equal(seen.summary[1], "hello");
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.calls[PT_POLICY_HOOK_ALERT], 3);
  assert_int_equal(c.errors[PT_POLICY_HOOK_ALERT], 2);
  assert_int_equal(pt_policy_emit(p, "y", ev), 0);
  json_decref(ev);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

static void test_alert_kubernetes_event(void **state)
{
  (void)state;
  struct alerts_seen seen = {0};
  char *dir = tdir_new();
  tdir_write(dir, "k.lua",
             "pulltrace.on('x', function(ev) return {\n"
             "  {name = 'Defaults', severity = 'warning', summary = 'it hangs', kubernetesEvent = true},\n"
             "  {name = 'Info', severity = 'info', summary = 'fyi', kubernetesEvent = {note = 'n'}},\n"
             "  {name = 'Full', severity = 'critical', summary = 's', kubernetesEvent = {reason = 'PullStalled',\n"
             "    type = 'Normal', note = 'layer x', action = 'Waiting', resolvedReason = 'PullResumed',\n"
             "    resolvedNote = 'moves'}},\n"
             "  {name = 'None', severity = 'info', summary = 's', kubernetesEvent = false},\n"
             /* Over 1 kB with a 2-byte character across the limit: valid, cut later by the Event writer. */
             "  {name = 'LongSummary', severity = 'info', summary = string.rep('x', 1023) .. '\xc3\xa9',\n"
             "   kubernetesEvent = true},\n"
             "  {name = 'BadType', severity = 'info', summary = 's', kubernetesEvent = {type = 'Error'}},\n"
             "  {name = 'BadReason', severity = 'info', summary = 's', kubernetesEvent = {reason = 'pull stalled'}},\n"
             "  {name = 'NoResolvedReason', severity = 'info', summary = 's', kubernetesEvent = {resolvedNote = 'x'}},\n"
             "  {name = 'LongNote', severity = 'info', summary = 's', kubernetesEvent = {note = string.rep('x', 1025)}},\n"
             "} end)\n");
  struct pt_policy *p = alerting(dir, &seen);
  json_t *ev = json_object();
  assert_int_equal(pt_policy_emit(p, "x", ev), 5);
  assert_int_equal(seen.n, 5);
  assert_string_equal(seen.kube[0],
                      "{\"action\":\"Pulling\",\"note\":\"it hangs\",\"reason\":\"Defaults\",\"type\":\"Warning\"}");
  assert_string_equal(seen.kube[1], "{\"action\":\"Pulling\",\"note\":\"n\",\"reason\":\"Info\",\"type\":\"Normal\"}");
  assert_string_equal(seen.kube[2], "{\"action\":\"Waiting\",\"note\":\"layer x\",\"reason\":\"PullStalled\","
                                    "\"resolvedNote\":\"moves\",\"resolvedReason\":\"PullResumed\",\"type\":\"Normal\"}");
  assert_string_equal(seen.name[3], "None");
  assert_string_equal(seen.kube[3], "");
  assert_string_equal(seen.name[4], "LongSummary");
  assert_true(strncmp(seen.kube[4], "{\"action\":\"Pulling\",\"note\":\"xxxx", 32) == 0);
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_int_equal(c.errors[PT_POLICY_HOOK_ALERT], 1); /* the invalid entries, counted once per call */
  json_decref(ev);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

static void test_options_from_env(void **state)
{
  (void)state;
  char *env[] = {"PULLTRACE_POLICY_DIR=/etc/pulltrace/policy",
                 "PULLTRACE_HISTORY_TTL=1h",
                 "PULLTRACE_RATE_HALF_LIFE=5s",
                 "PULLTRACE_POLICY_INSTRUCTION_BUDGET=500000",
                 "PULLTRACE_POLICY_MEMORY_LIMIT=32",
                 "PULLTRACE_POLICY_SETTING_team=payments",
                 "HOME=/root",
                 NULL};
  struct pt_policy_options o;
  char err[256];
  assert_int_equal(pt_policy_options_from_env(&o, env, err, sizeof(err)), 0);
  assert_string_equal(o.dir, "/etc/pulltrace/policy");
  assert_int_equal(o.instruction_budget, 500000);
  assert_int_equal(o.memory_limit, (size_t)32 << 20);
  assert_int_equal(o.n_settings, 3);
  assert_string_equal(o.settings[0].key, "historyTTL");
  assert_string_equal(o.settings[0].value, "1h");
  assert_string_equal(o.settings[1].key, "rateHalfLife");
  assert_string_equal(o.settings[2].key, "team");
  assert_string_equal(o.settings[2].value, "payments");

  /* Scripts see the settings. */
  o.dir = NULL;
  o.no_builtin = false;
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  assert_non_null(p);
  pt_policy_destroy(p);

  char *bad1[] = {"PULLTRACE_HISTORY_TTL=soon", NULL};
  assert_int_equal(pt_policy_options_from_env(&o, bad1, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_HISTORY_TTL"));
  char *bad2[] = {"PULLTRACE_POLICY_MEMORY_LIMIT=0", NULL};
  assert_int_equal(pt_policy_options_from_env(&o, bad2, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_POLICY_MEMORY_LIMIT"));
  char *bad3[] = {"PULLTRACE_POLICY_SETTING_a-b=1", NULL};
  assert_int_equal(pt_policy_options_from_env(&o, bad3, err, sizeof(err)), -EINVAL);
  char *bad4[] = {"PULLTRACE_RATE_HALF_LIFE=0s", NULL};
  assert_int_equal(pt_policy_options_from_env(&o, bad4, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_RATE_HALF_LIFE"));

  /* A zero half-life is refused at creation, naming the setting. */
  struct pt_policy_options z = topts(NULL);
  z.settings[0] = (struct pt_policy_setting){"rateHalfLife", "0s"};
  z.n_settings = 1;
  assert_null(pt_policy_create(&z, err, sizeof(err)));
  assert_non_null(strstr(err, "rateHalfLife"));
}

static void test_settings_reach_scripts(void **state)
{
  (void)state;
  char *dir = tdir_new();
  tdir_write(dir, "s.lua",
             "local team = pulltrace.settings.team\n"
             "assert(team == 'payments', 'team is ' .. tostring(team))\n"
             "assert(pulltrace.settings.missing == nil)\n"
             "pulltrace.log('info', 'loaded', {team = team})\n");
  struct pt_policy_options o = topts(dir);
  o.settings[0] = (struct pt_policy_setting){"team", "payments"};
  o.n_settings = 1;
  char err[512];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  pt_policy_destroy(p);
  o.settings[0].value = "other";
  assert_null(pt_policy_create(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "s.lua:2: team is other"));
  tdir_remove(dir);
}

/* The built-in settings come from the policy's configuration table: their
 * defaults are valid, scripts see them when nothing sets them, and C reads
 * the parsed values. */
static void test_builtin_settings_defaults(void **state)
{
  (void)state;
  char *empty[] = {NULL};
  struct pt_policy_options o;
  char err[512];
  assert_int_equal(pt_policy_options_from_env(&o, empty, err, sizeof(err)), 0);
  assert_int_equal(o.n_settings, 0);
  assert_int_equal(o.instruction_budget, 1000000);
  assert_int_equal(o.memory_limit, (size_t)64 << 20);
  assert_null(o.dir);

  char *dir = tdir_new();
  tdir_write(dir, "s.lua",
             "assert(pulltrace.settings.historyTTL == '30m', 'historyTTL')\n"
             "assert(pulltrace.settings.nodeLostGrace == '45s', 'nodeLostGrace')\n"
             "assert(pulltrace.settings.rateHalfLife == '10s', 'rateHalfLife')\n"
             "assert(pulltrace.settings.stallAlertAfter == '2m', 'stallAlertAfter')\n"
             "assert(pulltrace.settings.alertRepeat == '1h', 'alertRepeat')\n");
  o = topts(dir);
  o.settings[0] = (struct pt_policy_setting){"nodeLostGrace", "45s"};
  o.n_settings = 1;
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  double v = 0;
  assert_int_equal(pt_policy_setting_number(p, "historyTTL", &v), 0);
  assert_true(v == 1800);
  assert_int_equal(pt_policy_setting_number(p, "nodeLostGrace", &v), 0);
  assert_true(v == 45);
  assert_int_equal(pt_policy_setting_number(p, "alertRepeat", &v), 0);
  assert_true(v == 3600);
  assert_int_equal(pt_policy_setting_number(p, "team", &v), -ENOENT);
  pt_policy_destroy(p);

  /* A bad built-in setting given by a caller names the setting and the
   * variable it comes from. */
  o.settings[0] = (struct pt_policy_setting){"historyTTL", "forever"};
  assert_null(pt_policy_create(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "policy setting historyTTL (PULLTRACE_HISTORY_TTL: invalid duration"));
  tdir_remove(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builtin_defaults),
      cmocka_unit_test(test_c_fallbacks_without_hooks),
      cmocka_unit_test(test_errors_and_invalid_returns_fall_back),
      cmocka_unit_test(test_rate_state_round_trip),
      cmocka_unit_test(test_rate_state_sizes),
      cmocka_unit_test(test_error_breakdown),
      cmocka_unit_test(test_default_alerts_and_dedup),
      cmocka_unit_test(test_alert_validation),
    cmocka_unit_test(test_alert_kubernetes_event),
      cmocka_unit_test(test_options_from_env),
      cmocka_unit_test(test_builtin_settings_defaults),
      cmocka_unit_test(test_settings_reach_scripts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
