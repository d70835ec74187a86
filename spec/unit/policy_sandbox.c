/* The policy sandbox: escapes tried and refused, limits enforced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/clock.h"
#include "policy_util.h"

/* Asserts that loading src fails with an error containing want. Memory
 * tests get a long load deadline so that a slow (sanitizer) build still hits
 * the memory cap first. */
static void refused(const char *src, const char *want)
{
  char err[2048];
  double deadline = strstr(want, "memory") ? 30.0 : 0.5;
  struct pt_policy *p = load_one_deadline(src, deadline, err, sizeof(err));
  if (p)
    fail_msg("loaded although it should fail: %s", src);
  if (!strstr(err, want))
    fail_msg("error \"%s\" does not contain \"%s\" (script: %s)", err, want, src);
}

/* Asserts that src loads (its own asserts check what the sandbox gives). */
static void allowed(const char *src)
{
  char err[2048];
  struct pt_policy *p = load_one(src, err, sizeof(err));
  if (!p)
    fail_msg("failed to load: %s (script: %s)", err, src);
  pt_policy_destroy(p);
}

static void test_no_io_os_package_debug(void **state)
{
  (void)state;
  refused("local f = io.open('/etc/passwd')", "t.lua:1: undefined global 'io'");
  refused("os.execute('touch /tmp/pt-policy-pwned')", "t.lua:1: attempt to call a nil value (field 'execute')");
  refused("os.exit(1)", "field 'exit'");
  refused("os.getenv('HOME')", "field 'getenv'");
  refused("os.remove('/tmp/x')", "field 'remove'");
  refused("local m = require('os')", "t.lua:1: undefined global 'require'");
  refused("package.loadlib('libc.so.6', 'system')", "undefined global 'package'");
  refused("debug.sethook(function() end, 'c')", "t.lua:1: undefined global 'debug'");
  refused("dofile('/etc/passwd')", "undefined global 'dofile'");
  refused("loadfile('/etc/passwd')", "undefined global 'loadfile'");
  refused("coroutine.wrap(function() end)", "undefined global 'coroutine'");
  assert_int_equal(access("/tmp/pt-policy-pwned", F_OK), -1);
  /* What is allowed works. */
  allowed("assert(type(os.clock()) == 'number' and type(os.time()) == 'number')\n"
          "assert(os.date('!%Y', 0) == '1970')\n"
          "assert(cjson.decode(cjson.encode({a = 1})).a == 1)\n"
          "assert(string.format('%d', 3) == '3' and utf8.char(72) == 'H')\n"
          "assert(math.floor(2.5) == 2 and table.concat({'a','b'}) == 'ab')\n"
          "assert(pulltrace.duration('1m30s') == 90)\n");
}

static void test_undefined_global_read_is_an_error(void **state)
{
  (void)state;
  refused("local x = 1\nif undefined_thing then x = 2 end", "t.lua:2: undefined global 'undefined_thing'");
  /* Writing a global and reading it back is fine, and rawget checks quietly. */
  allowed("answer = 42\nassert(answer == 42)\nassert(rawget(_G, 'nope') == nil)");
  /* The strict metatable cannot be taken away. */
  refused("getmetatable(_G).__index = nil", "attempt to index a boolean value");
}

static void test_load_text_only_and_sandboxed(void **state)
{
  (void)state;
  allowed("local f, e = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n')\n"
          "assert(f == nil and e:find('binary chunk'), e)");
  allowed("assert(string.dump == nil)");
  allowed("assert(load('return 1 + 1')() == 2)");
  /* Chunks loaded at run time see the script's environment, not the host's. */
  refused("load('return io')()", "undefined global 'io'");
  refused("load(function() return nil end)", "only strings");
  allowed("local env = {x = 5}\nassert(load('return x', 'c', 't', env)() == 5)");
}

static void test_string_metatable_protected(void **state)
{
  (void)state;
  allowed("assert(getmetatable('') == false)");
  refused("getmetatable('').__index.upper = nil", "attempt to index a boolean value");
  /* One script changing its string table does not affect another. */
  char *dir = tdir_new();
  tdir_write(dir, "a.lua", "string.upper = nil\nstring.rep = function() return 'evil' end\n");
  tdir_write(dir, "b.lua", "assert(string.upper('x') == 'X')\nassert(('ab'):rep(2) == 'abab')\n");
  struct pt_policy_options o = topts(dir);
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  pt_policy_destroy(p);
  tdir_remove(dir);
}

static void test_gc_metamethods_and_collectgarbage_refused(void **state)
{
  (void)state;
  refused("setmetatable({}, {__gc = function() while true do end end})", "__gc metamethods are not allowed");
  refused("collectgarbage('stop')", "only \"count\"");
  allowed("assert(collectgarbage('count') > 0)\nlocal t = setmetatable({}, {__index = {a = 1}})\nassert(t.a == 1)");
}

static void test_string_rep_bomb_hits_memory_cap(void **state)
{
  (void)state;
  refused("local s = string.rep('x', 1 << 30)", "not enough memory");
  refused("local t = {}\nfor i = 1, 1e7 do t[i] = ('x'):rep(100) .. i end", "not enough memory");
  /* A pcall in the script can catch it, and the VM stays usable. */
  allowed("local ok, e = pcall(string.rep, 'x', 1 << 30)\nassert(not ok)\n"
          "local s = string.rep('y', 1000)\nassert(#s == 1000)");
}

static void test_load_deadline(void **state)
{
  (void)state;
  double t0 = pt_clock_mono();
  refused("while true do pcall(function() while true do end end) end", "load deadline exceeded");
  double took = pt_clock_mono() - t0;
  assert_true(took >= 0.4 && took < 5.0);
}

static void test_budget_not_swallowed_by_pcall(void **state)
{
  (void)state;
  static const char *const loops[] = {
      "while true do end",
      "while true do pcall(function() while true do end end) end",
      "while true do xpcall(function() while true do end end, function(e) return e end) end",
      "local function f() return f() end\nwhile true do pcall(f) end",
      "while true do pcall(string.gsub, string.rep('a', 100), '.', function() while true do end end) end",
      "local t = {} for i = 1, 100 do t[i] = i end\n"
      "while true do pcall(table.sort, t, function(a, b) while true do end end) end",
  };
  for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++) {
    char src[1024];
    snprintf(src, sizeof(src),
             "pulltrace.rate(function(s, st)\n%s\nend)\n"
             "pulltrace.evict(function(pull, now) return 'evict' end)\n", loops[i]);
    char err[1024];
    struct pt_policy *p = load_one(src, err, sizeof(err));
    if (!p)
      fail_msg("%s", err);
    struct pt_policy_rate_state st = {0};
    double t0 = pt_clock_mono();
    struct pt_policy_rate_result r = rate_once(p, 100, 10, 100, &st);
    assert_true(pt_clock_mono() - t0 < 5.0);
    assert_true(r.fallback);
    struct err_seen e = {0};
    pt_policy_foreach_error(p, last_error_cb, &e);
    if (strcmp(e.reason, "budget") != 0)
      fail_msg("loop %zu: reason %s", i, e.reason);
    assert_string_equal(e.hook, "rate");
    assert_string_equal(e.script, "t.lua");
    json_t *js = pt_policy_status_json(p);
    const char *m = json_string_value(json_object_get(json_object_get(js, "lastHookError"), "message"));
    if (!m || !strstr(m, "t.lua:") || !strstr(m, ": instruction budget exceeded"))
      fail_msg("message %s", m ? m : "(null)");
    json_decref(js);
    /* The VM keeps working after the kill, for this hook and others. */
    struct pt_policy_evict_input in = {"n/p-1", "n", NULL, PT_POLICY_PULL_ACTIVE, 1, 0, 0, 1, 1, 2};
    enum pt_policy_evict_decision d;
    assert_int_equal(pt_policy_evict(p, &in, &d), 0);
    assert_int_equal(d, PT_POLICY_EVICT);
    r = rate_once(p, 101, 20, 100, &st);
    assert_true(r.fallback);
    struct pt_policy_counters c;
    pt_policy_counters(p, &c);
    assert_int_equal(c.errors[PT_POLICY_HOOK_RATE], 2);
    assert_int_equal(c.calls[PT_POLICY_HOOK_EVICT], 1);
    assert_int_equal(c.errors[PT_POLICY_HOOK_EVICT], 0);
    pt_policy_rate_state_clear(&st);
    pt_policy_destroy(p);
  }
}

static void test_memory_cap_in_hook(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one(
      "pulltrace.rate(function(s, st)\n"
      "  if s.downloadedBytes == 1 then return {bytesPerSec = 7}, nil end\n"
      "  local t = {}\n"
      "  for i = 1, 1e6 do t[i] = string.rep('x', 4096) .. i end\n"
      "end)\n",
      err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  struct pt_policy_rate_state st = {0};
  struct pt_policy_rate_result r = rate_once(p, 1, 5, 10, &st);
  assert_true(r.fallback);
  struct err_seen e = {0};
  pt_policy_foreach_error(p, last_error_cb, &e);
  assert_string_equal(e.reason, "memory");
  struct pt_policy_counters c;
  pt_policy_counters(p, &c);
  assert_true(c.memory_bytes <= (size_t)16 << 20);
  /* The garbage of the failed call is collected; the next call succeeds. */
  r = rate_once(p, 2, 1, 10, &st);
  assert_false(r.fallback);
  assert_true(r.bytes_per_sec == 7);
  pt_policy_rate_state_clear(&st);
  pt_policy_destroy(p);
}

static void test_register_only_while_loading(void **state)
{
  (void)state;
  char err[1024];
  struct pt_policy *p = load_one("pulltrace.rate(function(s, st)\n"
                                 "  pulltrace.evict(function() return 'evict' end)\n"
                                 "  return {bytesPerSec = 1}\nend)\n",
                                 err, sizeof(err));
  if (!p)
    fail_msg("%s", err);
  struct pt_policy_rate_state st = {0};
  assert_true(rate_once(p, 1, 1, 10, &st).fallback);
  json_t *s = pt_policy_status_json(p);
  const char *msg = json_string_value(json_object_get(json_object_get(s, "lastHookError"), "message"));
  assert_non_null(msg);
  assert_non_null(strstr(msg, "t.lua:2: pulltrace.evict: hooks can only be registered while the script loads"));
  assert_true(json_is_null(json_object_get(json_object_get(s, "hooks"), "evict")));
  json_decref(s);
  pt_policy_rate_state_clear(&st);
  pt_policy_destroy(p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_io_os_package_debug),
      cmocka_unit_test(test_undefined_global_read_is_an_error),
      cmocka_unit_test(test_load_text_only_and_sandboxed),
      cmocka_unit_test(test_string_metatable_protected),
      cmocka_unit_test(test_gc_metamethods_and_collectgarbage_refused),
      cmocka_unit_test(test_string_rep_bomb_hits_memory_cap),
      cmocka_unit_test(test_load_deadline),
      cmocka_unit_test(test_budget_not_swallowed_by_pcall),
      cmocka_unit_test(test_memory_cap_in_hook),
      cmocka_unit_test(test_register_only_while_loading),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
