/* The policy host's public API: creation, hook calls with validation and
 * fallback, alert delivery, reload, status and counters. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "policy/internal.h"

extern char **environ;

#define MAX_STATE_BYTES (64u * 1024)
#define MAX_TARGETS 1024
#define MAX_ALERTS_PER_CALL 64
#define MAX_LABELS 32
#define MAX_SENT 4096
#define MAX_ERR_ENTRIES 256
/* Repeated errors of one hook and script are logged once a minute. */
#define ERROR_LOG_INTERVAL 60.0

static const char *const hook_names[] = {"correlate", "rate", "evict", "alert"};
static const char *const reason_names[] = {"runtime", "budget", "memory", "invalid_return"};

const char *pt_policy_hook_name(enum pt_policy_hook hook)
{
  return (unsigned)hook < PT_POLICY_HOOK_COUNT ? hook_names[hook] : "unknown";
}

/* ---- options -------------------------------------------------------------- */

static const struct {
  const char *env, *key;
} env_settings[] = {
    {"PULLTRACE_HISTORY_TTL", "historyTTL"},
    {"PULLTRACE_NODE_LOST_GRACE", "nodeLostGrace"},
    {"PULLTRACE_RATE_HALF_LIFE", "rateHalfLife"},
    {"PULLTRACE_STALL_ALERT_AFTER", "stallAlertAfter"},
    {"PULLTRACE_ALERT_REPEAT", "alertRepeat"},
};
#define N_ENV_SETTINGS (sizeof(env_settings) / sizeof(env_settings[0]))

static const char *find_env(char **envp, const char *name)
{
  size_t n = strlen(name);
  for (char **e = envp; e && *e; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
      return *e + n + 1;
  return NULL;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
    return -EINVAL;
  *out = v;
  return 0;
}

static int set_setting(struct pt_policy_options *o, const char *key, const char *value)
{
  for (size_t i = 0; i < o->n_settings; i++) {
    if (strcmp(o->settings[i].key, key) == 0) {
      o->settings[i].value = value;
      return 0;
    }
  }
  if (o->n_settings == PT_POLICY_MAX_SETTINGS)
    return -E2BIG;
  o->settings[o->n_settings].key = key;
  o->settings[o->n_settings].value = value;
  o->n_settings++;
  return 0;
}

int pt_policy_options_from_env(struct pt_policy_options *o, char **envp, char *err, size_t errlen)
{
  memset(o, 0, sizeof(*o));
  if (!envp)
    envp = environ;
  const char *v;
  if ((v = find_env(envp, "PULLTRACE_POLICY_DIR")) && *v)
    o->dir = v;
  if ((v = find_env(envp, "PULLTRACE_POLICY_INSTRUCTION_BUDGET")) && *v) {
    uint64_t n;
    if (parse_u64(v, 1000, INT_MAX, &n)) {
      snprintf(err, errlen, "PULLTRACE_POLICY_INSTRUCTION_BUDGET: \"%s\" is not an integer "
               "from 1000 to %d", v, INT_MAX);
      return -EINVAL;
    }
    o->instruction_budget = n;
  }
  if ((v = find_env(envp, "PULLTRACE_POLICY_MEMORY_LIMIT")) && *v) {
    uint64_t n;
    if (parse_u64(v, 1, 4096, &n)) {
      snprintf(err, errlen, "PULLTRACE_POLICY_MEMORY_LIMIT: \"%s\" is not a number of MiB "
               "from 1 to 4096", v);
      return -EINVAL;
    }
    o->memory_limit = (size_t)n << 20;
  }
  for (size_t i = 0; i < N_ENV_SETTINGS; i++) {
    if (!(v = find_env(envp, env_settings[i].env)) || !*v)
      continue;
    double d;
    if (pt_duration_parse(v, &d)) {
      snprintf(err, errlen, "%s: invalid duration \"%s\" (use e.g. 500ms, 2s, 1m30s)",
               env_settings[i].env, v);
      return -EINVAL;
    }
    /* The half-life divides: zero would be caught later by policy_build, but
     * without the variable's name (and as a policy error, not a configuration
     * error). */
    if (d <= 0 && strcmp(env_settings[i].key, "rateHalfLife") == 0) {
      snprintf(err, errlen, "%s: invalid duration \"%s\" (must be above zero)",
               env_settings[i].env, v);
      return -EINVAL;
    }
    set_setting(o, env_settings[i].key, v);
  }
  static const char prefix[] = "PULLTRACE_POLICY_SETTING_";
  for (char **e = envp; *e; e++) {
    if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0)
      continue;
    const char *key = *e + sizeof(prefix) - 1;
    const char *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : 0;
    bool ok = klen > 0 && klen < sizeof(o->key_storage[0]);
    for (size_t i = 0; ok && i < klen; i++)
      ok = key[i] == '_' || (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= 'A' && key[i] <= 'Z') ||
           (key[i] >= '0' && key[i] <= '9');
    if (!ok) {
      snprintf(err, errlen, "%.*s: the setting name must be 1-63 letters, digits or _",
               (int)(eq ? (size_t)(eq - *e) : strlen(*e)), *e);
      return -EINVAL;
    }
    size_t slot = o->n_settings;
    if (slot == PT_POLICY_MAX_SETTINGS) {
      snprintf(err, errlen, "%.*s: more than %d policy settings", (int)(eq - *e), *e,
               PT_POLICY_MAX_SETTINGS);
      return -EINVAL;
    }
    memcpy(o->key_storage[slot], key, klen);
    o->key_storage[slot][klen] = '\0';
    set_setting(o, o->key_storage[slot], eq + 1);
  }
  return 0;
}

/* ---- creation ------------------------------------------------------------- */

static const char *setting(const struct pt_policy *p, const char *key)
{
  for (size_t i = 0; i < p->vmc.n_settings; i++)
    if (strcmp(p->vmc.settings[i].key, key) == 0)
      return p->vmc.settings[i].value;
  return NULL;
}

static int duration_setting(struct pt_policy *p, const char *key, const char *def, bool positive,
                            double *out, char *err, size_t errlen)
{
  const char *v = setting(p, key);
  if (!v)
    v = def;
  if (pt_duration_parse(v, out) || (positive && *out <= 0)) {
    snprintf(err, errlen, "policy setting %s: invalid duration \"%s\"%s", key, v,
             positive ? " (must be above zero)" : "");
    return -EINVAL;
  }
  return 0;
}

void policy_free(struct pt_policy *p)
{
  vm_destroy(p->vm);
  for (size_t i = 0; i < p->vmc.n_settings; i++) {
    free((char *)p->vmc.settings[i].key);
    free((char *)p->vmc.settings[i].value);
  }
  free((struct pt_policy_setting *)p->vmc.settings);
  for (size_t i = 0; i < p->n_errs; i++)
    free(p->errs[i].script);
  free(p->errs);
  for (size_t i = 0; i < p->n_sent; i++)
    free(p->sent[i].key);
  free(p->sent);
  free((char *)p->vmc.dir);
  free(p);
}

struct pt_policy *pt_policy_create(const struct pt_policy_options *opts, char *err, size_t errlen)
{
  if (errlen)
    err[0] = '\0';
  if (!opts || opts->n_settings > PT_POLICY_MAX_SETTINGS) {
    snprintf(err, errlen, "invalid options");
    return NULL;
  }
  struct pt_policy *p = calloc(1, sizeof(*p));
  if (!p)
    goto oom;
  p->last_reload = -1;
  struct vm_config *c = &p->vmc;
  c->budget = opts->instruction_budget ? opts->instruction_budget : 1000000;
  if (c->budget > INT_MAX)
    c->budget = INT_MAX;
  c->load_deadline = opts->load_deadline > 0 ? opts->load_deadline : 2.0;
  c->memory_limit = opts->memory_limit ? opts->memory_limit : (size_t)64 << 20;
  c->no_builtin = opts->no_builtin;
  p->debounce = opts->reload_debounce > 0 ? opts->reload_debounce : 0.5;
  p->poll = opts->reload_poll == 0 ? 30.0 : opts->reload_poll;
  p->alert_cb = opts->alert_cb;
  p->alert_ud = opts->alert_ud;
  if (opts->dir && !(c->dir = strdup(opts->dir)))
    goto oom;
  struct pt_policy_setting *settings = NULL;
  if (opts->n_settings && !(settings = calloc(opts->n_settings, sizeof(*settings))))
    goto oom;
  c->settings = settings;
  for (size_t i = 0; i < opts->n_settings; i++) {
    const struct pt_policy_setting *s = &opts->settings[i];
    if (!s->key || !s->value)
      continue;
    char *k = strdup(s->key), *v = strdup(s->value);
    settings[c->n_settings].key = k;
    settings[c->n_settings].value = v;
    c->n_settings++;
    if (!k || !v)
      goto oom;
  }
  if (duration_setting(p, "historyTTL", "30m", false, &p->history_ttl, err, errlen) ||
      duration_setting(p, "nodeLostGrace", "2m", false, &p->node_lost_grace, err, errlen) ||
      duration_setting(p, "rateHalfLife", "10s", true, &p->rate_half_life, err, errlen) ||
      duration_setting(p, "stallAlertAfter", "2m", false, &p->stall_alert_after, err, errlen) ||
      duration_setting(p, "alertRepeat", "1h", false, &p->alert_repeat, err, errlen))
    goto fail;
  /* The first build runs on the caller's thread: startup waits for it
   * anyway, and a bad policy must stop the server before it listens. */
  if (policy_build(c, NULL, 0, &p->vm, &p->dir_hash, err, errlen))
    goto fail;
  p->loaded_at = pt_clock_now();
  p->tried_hash = p->dir_hash;
  return p;
oom:
  snprintf(err, errlen, "out of memory");
fail:
  if (p)
    policy_free(p);
  return NULL;
}

void pt_policy_destroy(struct pt_policy *p)
{
  if (!p)
    return;
  /* A build in flight on the thread pool cannot be stopped half-way; its
   * completion frees the policy. */
  if (!reload_stop(p))
    policy_free(p);
}

/* ---- errors and counters -------------------------------------------------- */

void policy_record_error(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
                         const struct call_result *res)
{
  if (!script)
    script = "?";
  p->counters.errors[hook]++;
  snprintf(p->last_error, sizeof(p->last_error), "%s", res->msg);
  snprintf(p->last_error_hook, sizeof(p->last_error_hook), "%s", hook_names[hook]);
  p->last_error_at = pt_clock_now();

  struct err_entry *e = NULL;
  for (size_t i = 0; i < p->n_errs; i++) {
    if (p->errs[i].hook == hook && p->errs[i].reason == res->reason &&
        strcmp(p->errs[i].script, script) == 0) {
      e = &p->errs[i];
      break;
    }
  }
  if (!e && p->n_errs < MAX_ERR_ENTRIES) {
    if (p->n_errs == p->cap_errs) {
      size_t cap = p->cap_errs ? p->cap_errs * 2 : 8;
      struct err_entry *n = realloc(p->errs, cap * sizeof(*n));
      if (n) {
        p->errs = n;
        p->cap_errs = cap;
      }
    }
    char *name = p->n_errs < p->cap_errs ? strdup(script) : NULL;
    if (name) {
      e = &p->errs[p->n_errs++];
      memset(e, 0, sizeof(*e));
      e->hook = hook;
      e->reason = res->reason;
      e->script = name;
      e->last_logged = -ERROR_LOG_INTERVAL;
    }
  }
  /* Check mode lists each distinct failure once. */
  if (p->check_report && (!e || e->count == 0 || strcmp(e->script, script) != 0))
    fprintf(p->check_report, "error: %s hook: %s\n", hook_names[hook], res->msg);
  double now = pt_clock_mono();
  if (e) {
    e->count++;
    if (now - e->last_logged < ERROR_LOG_INTERVAL) {
      e->unlogged++;
      return;
    }
    e->last_logged = now;
  }
  PT_LOG_WARN("policy hook failed, using the default decision",
              "{s:s, s:s, s:s, s:s, s:s, s:I}", "hook", hook_names[hook], "script", script,
              "reason", reason_names[res->reason], "error", res->msg, "traceback",
              res->trace ? res->trace : res->msg, "suppressed",
              (json_int_t)(e ? e->unlogged : 0));
  if (e)
    e->unlogged = 0;
}

/* Runs one protected hook call with timing; on error records it. */
static int run_hook(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
                    vm_body_fn body, void *ctx)
{
  struct call_result res;
  double t0 = pt_clock_mono();
  p->depth++;
  vm_call(p->vm, script, body, ctx, &res);
  p->depth--;
  p->counters.calls[hook]++;
  p->counters.seconds[hook] += pt_clock_mono() - t0;
  if (res.status)
    policy_record_error(p, hook, script, &res);
  free(res.trace);
  return res.status;
}

/* ---- helpers for bodies --------------------------------------------------- */

static void set_str(lua_State *L, const char *k, const char *v)
{
  if (v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
  }
}

static void set_num(lua_State *L, const char *k, double v)
{
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_time(lua_State *L, const char *k, double v)
{
  if (v > 0)
    set_num(L, k, v);
}

/* Raw field of the table at idx, pushed; no metamethods run. */
static int rawfield(lua_State *L, int idx, const char *k)
{
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  return lua_rawget(L, idx);
}

static bool finite_nonneg(lua_State *L, int idx, double *out)
{
  if (lua_type(L, idx) != LUA_TNUMBER)
    return false;
  double v = lua_tonumber(L, idx);
  if (!isfinite(v) || v < 0)
    return false;
  *out = v;
  return true;
}

/* A string field of at most max bytes and no control characters; NULL
 * otherwise (the caller decides whether absence is allowed). */
static const char *short_str(lua_State *L, int idx, size_t max)
{
  if (lua_type(L, idx) != LUA_TSTRING)
    return NULL;
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len == 0 || len > max || strlen(s) != len)
    return NULL;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20)
      return NULL;
  return s;
}

/* ---- rate ------------------------------------------------------------------ */

void pt_policy_rate_state_clear(struct pt_policy_rate_state *st)
{
  if (!st)
    return;
  free(st->script_state);
  memset(st, 0, sizeof(*st));
}

struct rate_ctx {
  struct vm *vm;
  const struct pt_policy_rate_sample *s;
  const char *state;
  struct pt_policy_rate_result out;
  char *new_state;
};

static void rate_body(lua_State *L, void *c, const char **invalid)
{
  struct rate_ctx *x = c;
  const struct pt_policy_rate_sample *s = x->s;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->vm->slot_ref[SLOT_RATE]);
  lua_createtable(L, 0, 8);
  set_str(L, "pullId", s->pull_id);
  set_str(L, "node", s->node);
  set_num(L, "now", s->now);
  lua_pushinteger(L, s->downloaded);
  lua_setfield(L, -2, "downloadedBytes");
  if (s->total >= 0) {
    lua_pushinteger(L, s->total);
    lua_setfield(L, -2, "totalBytes");
  }
  lua_pushboolean(L, s->stalled);
  lua_setfield(L, -2, "stalled");
  lua_pushboolean(L, s->completed);
  lua_setfield(L, -2, "completed");
  if (x->state)
    vm_decode(x->vm, L, x->state);
  else
    lua_pushnil(L);
  lua_call(L, 2, 2);
  int res = lua_absindex(L, -2), st = lua_absindex(L, -1);
  if (lua_type(L, res) != LUA_TTABLE) {
    *invalid = "rate must return a table {bytesPerSec=, etaSeconds=} and a state";
    return;
  }
  rawfield(L, res, "bytesPerSec");
  if (!finite_nonneg(L, -1, &x->out.bytes_per_sec)) {
    *invalid = "bytesPerSec must be a finite number >= 0";
    return;
  }
  rawfield(L, res, "etaSeconds");
  if (lua_isnil(L, -1)) {
    x->out.eta_seconds = -1;
  } else if (!finite_nonneg(L, -1, &x->out.eta_seconds)) {
    *invalid = "etaSeconds must be nil or a finite number >= 0";
    return;
  }
  if (!lua_isnil(L, st)) {
    size_t len;
    const char *json = vm_encode(x->vm, L, st, &len);
    if (len > MAX_STATE_BYTES) {
      *invalid = "the state is larger than 64 KiB";
      return;
    }
    if (!(x->new_state = strndup(json, len)))
      luaL_error(L, "out of memory");
  }
}

int pt_policy_rate(struct pt_policy *p, const struct pt_policy_rate_sample *sample,
                   struct pt_policy_rate_state *st, struct pt_policy_rate_result *out)
{
  if (!p || !sample || !st || !out)
    return -EINVAL;
  /* The C default always runs so that a fallback continues smoothly. */
  fallback_rate(p, sample, st, out);
  out->fallback = true;
  struct vm *vm = p->vm;
  if (vm->slot_ref[SLOT_RATE] == LUA_NOREF)
    return 0;
  struct rate_ctx x = {.vm = vm, .s = sample, .state = st->script_state};
  if (run_hook(p, PT_POLICY_HOOK_RATE, vm->slot_script[SLOT_RATE], rate_body, &x) == 0) {
    *out = x.out;
    out->fallback = false;
    free(st->script_state);
    st->script_state = x.new_state;
  } else {
    free(x.new_state);
  }
  return 0;
}

/* ---- evict ----------------------------------------------------------------- */

struct evict_ctx {
  struct vm *vm;
  const struct pt_policy_evict_input *in;
  enum pt_policy_evict_decision out;
};

static void evict_body(lua_State *L, void *c, const char **invalid)
{
  static const char *const phases[] = {"active", "completed", "failed", "lost"};
  struct evict_ctx *x = c;
  const struct pt_policy_evict_input *in = x->in;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->vm->slot_ref[SLOT_EVICT]);
  lua_createtable(L, 0, 10);
  set_str(L, "id", in->pull_id);
  set_str(L, "node", in->node);
  set_str(L, "imageRef", in->image_ref);
  set_str(L, "phase", (unsigned)in->phase < 4 ? phases[in->phase] : "active");
  set_time(L, "startedAt", in->started_at);
  set_time(L, "finishedAt", in->finished_at);
  set_time(L, "lostAt", in->lost_at);
  set_time(L, "lastSeenAt", in->last_seen_at);
  set_time(L, "nodeLastReportAt", in->node_last_report);
  lua_pushnumber(L, in->now);
  lua_call(L, 2, 1);
  const char *d = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (strcmp(d, "keep") == 0)
    x->out = PT_POLICY_KEEP;
  else if (strcmp(d, "evict") == 0)
    x->out = PT_POLICY_EVICT;
  else if (strcmp(d, "lost") == 0)
    x->out = PT_POLICY_MARK_LOST;
  else
    *invalid = "evict must return \"keep\", \"evict\" or \"lost\"";
}

int pt_policy_evict(struct pt_policy *p, const struct pt_policy_evict_input *in,
                    enum pt_policy_evict_decision *out)
{
  if (!p || !in || !out)
    return -EINVAL;
  struct vm *vm = p->vm;
  *out = fallback_evict(p, in);
  if (vm->slot_ref[SLOT_EVICT] == LUA_NOREF)
    return 0;
  struct evict_ctx x = {.vm = vm, .in = in};
  if (run_hook(p, PT_POLICY_HOOK_EVICT, vm->slot_script[SLOT_EVICT], evict_body, &x) == 0) {
    /* Lost only makes sense for an active pull. */
    if (x.out == PT_POLICY_MARK_LOST && in->phase != PT_POLICY_PULL_ACTIVE)
      x.out = PT_POLICY_KEEP;
    *out = x.out;
  }
  return 0;
}

/* ---- correlate ------------------------------------------------------------- */

void pt_policy_correlation_clear(struct pt_policy_correlation *c)
{
  if (!c)
    return;
  for (size_t i = 0; i < c->n_targets; i++) {
    free(c->targets[i].ns);
    free(c->targets[i].pod);
    free(c->targets[i].container);
  }
  free(c->targets);
  free(c->image_ref);
  memset(c, 0, sizeof(*c));
}

struct correlate_ctx {
  struct vm *vm;
  const json_t *pull, *pods, *events;
  struct pt_policy_correlation *out;
};

static void correlate_body(lua_State *L, void *c, const char **invalid)
{
  struct correlate_ctx *x = c;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->vm->slot_ref[SLOT_CORRELATE]);
  vm_push_json(L, x->pull, 0);
  if (x->pods)
    vm_push_json(L, x->pods, 0);
  else
    lua_newtable(L);
  if (x->events)
    vm_push_json(L, x->events, 0);
  else
    lua_newtable(L);
  lua_call(L, 3, 1);
  int r = lua_absindex(L, -1);
  if (lua_isnil(L, r))
    return;
  if (lua_type(L, r) != LUA_TTABLE) {
    *invalid = "correlate must return nil or {matches = {...}, imageRef = ...}";
    return;
  }
  int t = rawfield(L, r, "imageRef");
  if (t != LUA_TNIL) {
    const char *ref = short_str(L, -1, 1024);
    if (!ref || strpbrk(ref, " \t\"")) {
      *invalid = "imageRef must be nil or an image reference";
      return;
    }
    if (!(x->out->image_ref = strdup(ref)))
      luaL_error(L, "out of memory");
  }
  lua_pop(L, 1);
  t = rawfield(L, r, "matches");
  if (t == LUA_TNIL)
    return;
  if (t != LUA_TTABLE) {
    *invalid = "matches must be a list";
    return;
  }
  int m = lua_absindex(L, -1);
  lua_Unsigned n = lua_rawlen(L, m);
  if (n > MAX_TARGETS) {
    *invalid = "more than 1024 matches";
    return;
  }
  x->out->targets = calloc(n ? n : 1, sizeof(*x->out->targets));
  if (!x->out->targets)
    luaL_error(L, "out of memory");
  for (lua_Unsigned i = 1; i <= n; i++) {
    if (lua_rawgeti(L, m, (lua_Integer)i) != LUA_TTABLE) {
      *invalid = "each match must be a table {namespace=, pod=, container=}";
      return;
    }
    int e = lua_absindex(L, -1);
    rawfield(L, e, "namespace");
    rawfield(L, e, "pod");
    rawfield(L, e, "container");
    const char *ns = short_str(L, -3, 253), *pod = short_str(L, -2, 253);
    const char *container = short_str(L, -1, 253);
    if (!ns || !pod || (!container && !lua_isnil(L, -1))) {
      *invalid = "a match needs string namespace and pod and a string or nil container";
      return;
    }
    struct pt_policy_target *tg = &x->out->targets[x->out->n_targets++];
    tg->ns = strdup(ns);
    tg->pod = strdup(pod);
    tg->container = container ? strdup(container) : NULL;
    if (!tg->ns || !tg->pod || (container && !tg->container))
      luaL_error(L, "out of memory");
    lua_pop(L, 4);
  }
}

int pt_policy_correlate(struct pt_policy *p, const json_t *pull, const json_t *pods,
                        const json_t *events, struct pt_policy_correlation *out)
{
  if (!p || !json_is_object(pull) || !out || (pods && !json_is_array(pods)) ||
      (events && !json_is_array(events)))
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  struct vm *vm = p->vm;
  if (vm->slot_ref[SLOT_CORRELATE] != LUA_NOREF) {
    struct correlate_ctx x = {.vm = vm, .pull = pull, .pods = pods, .events = events, .out = out};
    int rc = run_hook(p, PT_POLICY_HOOK_CORRELATE, vm->slot_script[SLOT_CORRELATE],
                      correlate_body, &x);
    if (rc == 0)
      return 0;
    pt_policy_correlation_clear(out);
  }
  out->fallback = true;
  int rc = fallback_correlate(pull, pods, events, out);
  if (rc) {
    pt_policy_correlation_clear(out);
    out->fallback = true;
  }
  return rc;
}

/* ---- alerts ---------------------------------------------------------------- */

struct alert_buf {
  char *name, *severity, *summary;
  json_t *labels;
};

struct emit_ctx {
  struct vm *vm;
  const struct handler *h;
  const char *type;
  const json_t *event;
  struct alert_buf alerts[MAX_ALERTS_PER_CALL];
  size_t n;
};

static bool label_name_ok(const char *s, size_t len)
{
  if (len == 0 || len > 128)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool alpha = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alpha && (i == 0 || c < '0' || c > '9'))
      return false;
  }
  return true;
}

/* Validates the alert table at idx into x->alerts; returns a reason or NULL. */
static const char *take_alert(lua_State *L, int idx, struct emit_ctx *x)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return "an alert must be a table {name, severity, summary, labels}";
  if (x->n == MAX_ALERTS_PER_CALL)
    return "more than 64 alerts from one call";
  int top = lua_gettop(L);
  rawfield(L, idx, "name");
  rawfield(L, idx, "severity");
  rawfield(L, idx, "summary");
  int lt = rawfield(L, idx, "labels");
  const char *name = short_str(L, top + 1, 128);
  const char *sev = short_str(L, top + 2, 16);
  const char *summary = lua_isnil(L, top + 3) || (lua_type(L, top + 3) == LUA_TSTRING &&
                                                  lua_rawlen(L, top + 3) == 0)
                            ? ""
                            : short_str(L, top + 3, 4096);
  if (!name)
    return "alert name must be a non-empty string of at most 128 bytes";
  if (!sev || (strcmp(sev, "info") && strcmp(sev, "warning") && strcmp(sev, "critical")))
    return "alert severity must be \"info\", \"warning\" or \"critical\"";
  if (!summary)
    return "alert summary must be a string of at most 4096 bytes";
  if (lt != LUA_TNIL && lt != LUA_TTABLE)
    return "alert labels must be a table of strings";
  struct alert_buf *a = &x->alerts[x->n];
  memset(a, 0, sizeof(*a));
  a->labels = json_object();
  if (!a->labels)
    luaL_error(L, "out of memory");
  x->n++; /* owned by the context from here on, freed by the caller */
  if (lt == LUA_TTABLE) {
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, top + 4)) {
      size_t klen, vlen;
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING || ++count > MAX_LABELS)
        return "alert labels must be at most 32 string keys with string values";
      const char *k = lua_tolstring(L, -2, &klen);
      const char *v = lua_tolstring(L, -1, &vlen);
      if (!label_name_ok(k, klen) || vlen > 1024 || strlen(v) != vlen)
        return "alert label names must match [a-zA-Z_][a-zA-Z0-9_]* and values be short strings";
      if (json_object_set_new(a->labels, k, json_stringn(v, vlen)))
        return "alert label values must be UTF-8";
      lua_pop(L, 1);
    }
  }
  a->name = strdup(name);
  a->severity = strdup(sev);
  a->summary = strdup(summary);
  if (!a->name || !a->severity || !a->summary)
    luaL_error(L, "out of memory");
  lua_settop(L, top);
  return NULL;
}

static void emit_body(lua_State *L, void *c, const char **invalid)
{
  struct emit_ctx *x = c;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->h->ref);
  if (x->event)
    vm_push_json(L, x->event, 0);
  else
    lua_newtable(L);
  lua_pushstring(L, x->type);
  lua_call(L, 2, 1);
  int r = lua_absindex(L, -1);
  if (lua_isnil(L, r))
    return;
  if (lua_type(L, r) != LUA_TTABLE) {
    *invalid = "an alert handler must return nil, an alert or a list of alerts";
    return;
  }
  /* One alert has a name; otherwise it is a list. Invalid entries are
   * dropped (and counted), valid ones in the same list are still delivered. */
  if (rawfield(L, r, "name") != LUA_TNIL) {
    lua_pop(L, 1);
    const char *why = take_alert(L, r, x);
    if (why)
      *invalid = why;
    return;
  }
  lua_pop(L, 1);
  lua_Unsigned n = lua_rawlen(L, r);
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, r, (lua_Integer)i);
    const char *why = take_alert(L, lua_gettop(L), x);
    if (why)
      *invalid = why;
    lua_settop(L, r);
  }
}

static void free_alerts(struct emit_ctx *x)
{
  for (size_t i = 0; i < x->n; i++) {
    free(x->alerts[i].name);
    free(x->alerts[i].severity);
    free(x->alerts[i].summary);
    json_decref(x->alerts[i].labels);
  }
  x->n = 0;
}

/* True when the same alert went out less than alertRepeat ago; otherwise
 * remembers it as sent now. */
static bool suppressed(struct pt_policy *p, const struct alert_buf *a, double now)
{
  char *labels = json_dumps(a->labels, JSON_COMPACT | JSON_SORT_KEYS);
  if (!labels)
    return false;
  size_t len = strlen(a->name) + strlen(labels) + 2;
  char *key = malloc(len);
  if (!key) {
    free(labels);
    return false;
  }
  snprintf(key, len, "%s\x1f%s", a->name, labels);
  free(labels);
  /* Forget what expired; keeps the table bounded by the alert rate. */
  size_t w = 0;
  bool found = false;
  for (size_t i = 0; i < p->n_sent; i++) {
    if (now - p->sent[i].at >= p->alert_repeat) {
      free(p->sent[i].key);
      continue;
    }
    if (strcmp(p->sent[i].key, key) == 0)
      found = true;
    p->sent[w++] = p->sent[i];
  }
  p->n_sent = w;
  if (found) {
    free(key);
    return true;
  }
  if (p->n_sent == MAX_SENT) {
    /* Full: drop the oldest entry rather than stop de-duplicating. */
    free(p->sent[0].key);
    memmove(p->sent, p->sent + 1, (p->n_sent - 1) * sizeof(*p->sent));
    p->n_sent--;
  }
  if (p->n_sent == p->cap_sent) {
    size_t cap = p->cap_sent ? p->cap_sent * 2 : 16;
    struct sent_alert *n = realloc(p->sent, cap * sizeof(*n));
    if (!n) {
      free(key);
      return false;
    }
    p->sent = n;
    p->cap_sent = cap;
  }
  p->sent[p->n_sent].key = key;
  p->sent[p->n_sent].at = now;
  p->n_sent++;
  return false;
}

bool pt_policy_listens(const struct pt_policy *p, const char *event_type)
{
  if (!p || !event_type)
    return false;
  const struct vm *vm = p->vm;
  for (size_t i = 0; i < vm->n_handlers; i++) {
    const char *t = vm->handlers[i].event_type;
    if (strcmp(t, event_type) == 0 || strcmp(t, "*") == 0)
      return true;
  }
  return false;
}

int pt_policy_emit(struct pt_policy *p, const char *event_type, const json_t *event)
{
  if (!p || !event_type || !*event_type)
    return -EINVAL;
  int delivered = 0;
  struct vm *vm = p->vm;
  /* The VM cannot change while its handlers run: a reload asked for from the
   * alert callback is built meanwhile and swapped in on the loop later. */
  p->depth++;
  for (size_t i = 0; i < vm->n_handlers; i++) {
    const struct handler *h = &vm->handlers[i];
    if (strcmp(h->event_type, event_type) != 0 && strcmp(h->event_type, "*") != 0)
      continue;
    struct emit_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
      delivered = -ENOMEM;
      break;
    }
    x->vm = vm;
    x->h = h;
    x->type = event_type;
    x->event = event;
    run_hook(p, PT_POLICY_HOOK_ALERT, h->script, emit_body, x);
    double now = pt_clock_mono();
    for (size_t k = 0; k < x->n; k++) {
      struct alert_buf *a = &x->alerts[k];
      if (!a->name || !a->severity || !a->summary)
        continue; /* the body failed half-way through this one */
      if (suppressed(p, a, now)) {
        p->counters.alerts_suppressed++;
        continue;
      }
      p->counters.alerts_delivered++;
      delivered++;
      if (p->alert_cb) {
        struct pt_policy_alert out = {a->name, a->severity, a->summary, a->labels,
                                      event_type, h->script};
        p->alert_cb(p->alert_ud, &out);
      }
    }
    free_alerts(x);
    free(x);
  }
  p->depth--;
  return delivered;
}

/* ---- status and counters ------------------------------------------------------- */

void pt_policy_status(const struct pt_policy *p, struct pt_policy_status *out)
{
  memset(out, 0, sizeof(*out));
  if (!p)
    return;
  out->loaded = p->vm != NULL;
  out->last_reload = p->last_reload;
  out->loaded_at = p->loaded_at;
  out->last_reload_at = p->last_reload_at;
  snprintf(out->error, sizeof(out->error), "%s", p->reload_error);
  out->n_scripts = p->vm ? p->vm->scripts.n : 0;
  out->reloading = p->job != NULL;
}

static json_t *time_or_null(double t)
{
  char buf[40];
  return t > 0 ? json_string(pt_time_format(t, buf, sizeof(buf))) : json_null();
}

json_t *pt_policy_status_json(const struct pt_policy *p)
{
  if (!p)
    return NULL;
  static const char *const lr[] = {"failed", "ok"};
  json_t *scripts = json_array(), *hooks = json_object(), *alerts = json_array();
  const struct vm *vm = p->vm;
  for (size_t i = 0; i < vm->scripts.n; i++)
    json_array_append_new(scripts, json_pack("{s:s, s:s}", "name", vm->scripts.v[i].name,
                                             "origin", vm->scripts.v[i].origin));
  for (int i = 0; i < SLOT_COUNT; i++)
    json_object_set_new(hooks, hook_names[i],
                        vm->slot_script[i] ? json_string(vm->slot_script[i]) : json_null());
  for (size_t i = 0; i < vm->n_handlers; i++)
    json_array_append_new(alerts, json_pack("{s:s, s:s}", "event", vm->handlers[i].event_type,
                                            "script", vm->handlers[i].script));
  json_object_set_new(hooks, "alerts", alerts);
  json_t *last_error = p->last_error[0]
                           ? json_pack("{s:s, s:s, s:o}", "hook", p->last_error_hook, "message",
                                       p->last_error, "at", time_or_null(p->last_error_at))
                           : json_null();
  return json_pack("{s:b, s:s, s:s?, s:o, s:o, s:o, s:o, s:o, s:I}", "loaded", vm != NULL,
                   "lastReload", p->last_reload < 0 ? "none" : lr[p->last_reload != 0], "error",
                   p->reload_error[0] ? p->reload_error : NULL, "loadedAt",
                   time_or_null(p->loaded_at), "lastReloadAt", time_or_null(p->last_reload_at),
                   "scripts", scripts, "hooks", hooks, "lastHookError", last_error,
                   "memoryBytes", (json_int_t)vm->mem_used);
}

void pt_policy_counters(const struct pt_policy *p, struct pt_policy_counters *out)
{
  memset(out, 0, sizeof(*out));
  if (!p)
    return;
  *out = p->counters;
  out->memory_bytes = p->vm ? p->vm->mem_used : 0;
}

void pt_policy_foreach_error(const struct pt_policy *p, pt_policy_error_fn fn, void *ud)
{
  if (!p || !fn)
    return;
  for (size_t i = 0; i < p->n_errs; i++)
    fn(ud, hook_names[p->errs[i].hook], p->errs[i].script, reason_names[p->errs[i].reason],
       p->errs[i].count);
}
