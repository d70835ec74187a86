/* The policy host's public API: creation, and the hook calls with their
 * validation and fallback. The alert hook is in alerts.c, reloads in
 * reload.c, configuration in options.c, status and counters in status.c. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"

#define MAX_STATE_BYTES (64u * 1024)
#define MAX_TARGETS 1024


/* ---- creation ------------------------------------------------------------- */

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

/* The directory's scripts failed to build (err says why): runs the built-in
 * scripts alone and records the failure as a failed reload would, so that
 * /readyz, the metrics and the watch treat it the same way (the failed
 * scripts' hash is the one tried, so only a changed directory is built
 * again). Returns 0, or -1 when even the defaults do not build. */
static int start_with_defaults(struct pt_policy *p, char *err, size_t errlen)
{
  char why[sizeof(p->reload_error)];
  snprintf(why, sizeof(why), "%s", err);
  /* The hash of what failed (policy_build computes it before compiling; 0
   * for an unreadable directory). */
  uint64_t tried = p->dir_hash;
  struct vm_config builtin = p->vmc;
  builtin.dir = NULL;
  if (policy_build(&builtin, NULL, 0, &p->vm, &p->dir_hash, err, errlen))
    return -1;
  /* The VM keeps a pointer to its configuration: the policy's own, whose
   * directory stays set for the reloads. */
  p->vm->cfg = &p->vmc;
  p->dir_hash = 0;
  p->tried_hash = tried;
  double now = pt_clock_now();
  p->loaded_at = p->last_reload_at = now;
  p->last_reload = 0;
  p->defaults_only = true;
  p->counters.reloads_failed++;
  snprintf(p->reload_error, sizeof(p->reload_error), "%s", why);
  struct pt_policy_status st;
  pt_policy_status(p, &st);
  PT_LOG_ERROR("policy failed to load at startup, running the built-in defaults",
               "{s:s, s:s, s:i, s:s, s:s}", "dir", p->vmc.dir, "script", st.error_script, "line", st.error_line,
               "message", st.error_message, "error", why);
  return 0;
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
  struct policy_env defaults;
  policy_env_defaults(&defaults);
  struct vm_config *c = &p->vmc;
  c->budget = opts->instruction_budget ? opts->instruction_budget : (uint64_t)defaults.budget;
  if (c->budget > INT_MAX)
    c->budget = INT_MAX;
  c->load_deadline = opts->load_deadline > 0 ? opts->load_deadline : 2.0;
  c->memory_limit = opts->memory_limit ? opts->memory_limit : (size_t)defaults.memory_mib << 20;
  c->no_builtin = opts->no_builtin;
  p->debounce = opts->reload_debounce > 0 ? opts->reload_debounce : 0.5;
  p->poll = opts->reload_poll == 0 ? 30.0 : opts->reload_poll;
  p->alert_cb = opts->alert_cb;
  p->alert_ud = opts->alert_ud;
  if (opts->dir && !(c->dir = strdup(opts->dir)))
    goto oom;
  if (policy_settings_init(p, opts, err, errlen))
    goto fail;
  /* The first build runs on the caller's thread: startup waits for it
   * anyway, and without defaults_on_error a bad policy must stop the server
   * before it listens. */
  if (policy_build(c, NULL, 0, &p->vm, &p->dir_hash, err, errlen)) {
    if (!opts->defaults_on_error || !c->dir || start_with_defaults(p, err, errlen))
      goto fail;
    return p;
  }
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

/* Runs one protected hook call with timing; on error records it. */
int run_hook(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
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

/* A C string as a Lua string. Not lua_pushstring: its cache, keyed by the
 * C string's address, compares the string with (up to) two others first,
 * and the ids of thousands of pulls, which share long prefixes, seldom hit it. */
static void push_str(lua_State *L, const char *v)
{
  lua_pushlstring(L, v, strlen(v));
}

static void set_str(lua_State *L, const char *k, const char *v)
{
  if (v) {
    push_str(L, v);
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
int rawfield(lua_State *L, int idx, const char *k)
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
const char *short_str(lua_State *L, int idx, size_t max)
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
  if (st->script_state != st->small)
    free(st->script_state);
  memset(st, 0, sizeof(*st));
}

/* The packed state: [count] then per member [key length][key][type] and,
 * for a number, its 8 bytes ('i' integer, 'd' float; 't', 'f' booleans).
 * JSON through cjson cost a printf per number and a parse per call. */
#define PACK_MAX_MEMBERS 32

static bool pack_state(lua_State *L, int idx, struct pt_buf *out)
{
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    return false;
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return false;
  }
  unsigned char n = 0;
  pt_buf_append(out, &n, 1);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t klen;
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING || n == PACK_MAX_MEMBERS ||
        (vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)) {
      lua_pop(L, 2);
      return false;
    }
    const char *k = lua_tolstring(L, -2, &klen);
    if (klen == 0 || klen > 255) {
      lua_pop(L, 2);
      return false;
    }
    /* The member, written whole and appended at once. */
    unsigned char m[1 + 255 + 1 + 8];
    size_t ml = 0;
    m[ml++] = (unsigned char)klen;
    memcpy(m + ml, k, klen);
    ml += klen;
    if (vt == LUA_TBOOLEAN) {
      m[ml++] = lua_toboolean(L, -1) ? 't' : 'f';
    } else if (lua_isinteger(L, -1)) {
      lua_Integer v = lua_tointeger(L, -1);
      m[ml++] = 'i';
      memcpy(m + ml, &v, sizeof(v));
      ml += sizeof(v);
    } else {
      lua_Number v = lua_tonumber(L, -1);
      m[ml++] = 'd';
      memcpy(m + ml, &v, sizeof(v));
      ml += sizeof(v);
    }
    pt_buf_append(out, m, ml);
    n++;
    lua_pop(L, 1);
  }
  if (out->oom)
    return false;
  out->data[0] = (char)n;
  return true;
}

static void unpack_state(lua_State *L, const char *p, size_t len)
{
  const char *end = p + len;
  unsigned char n = (unsigned char)*p++;
  lua_createtable(L, 0, n);
  for (unsigned i = 0; i < n && p < end; i++) {
    size_t kl = (unsigned char)*p++;
    lua_pushlstring(L, p, kl);
    p += kl;
    char t = *p++;
    if (t == 'i' || t == 'd') {
      if (t == 'i') {
        lua_Integer v;
        memcpy(&v, p, sizeof(v));
        lua_pushinteger(L, v);
      } else {
        lua_Number v;
        memcpy(&v, p, sizeof(v));
        lua_pushnumber(L, v);
      }
      p += 8;
    } else {
      lua_pushboolean(L, t == 't');
    }
    lua_rawset(L, -3);
  }
}

char *pt_policy_rate_state_json(const struct pt_policy_rate_state *st)
{
  if (!st || !st->script_state)
    return NULL;
  if (!st->state_packed)
    return strdup(st->script_state);
  json_t *o = json_object();
  const char *p = st->script_state;
  unsigned char n = (unsigned char)*p++;
  for (unsigned i = 0; o && i < n; i++) {
    char key[256];
    size_t kl = (unsigned char)*p++;
    memcpy(key, p, kl);
    key[kl] = '\0';
    p += kl;
    char t = *p++;
    json_t *v;
    if (t == 'i' || t == 'd') {
      lua_Integer iv;
      lua_Number dv;
      memcpy(t == 'i' ? (void *)&iv : (void *)&dv, p, 8);
      v = t == 'i' ? json_integer((json_int_t)iv) : json_real(dv);
      p += 8;
    } else {
      v = json_boolean(t == 't');
    }
    json_object_set_new(o, key, v);
  }
  char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(o);
  return s;
}

struct rate_ctx {
  struct vm *vm;
  const struct pt_policy_rate_sample *s;
  const struct pt_policy_rate_state *state;
  struct pt_policy_rate_result out;
  struct pt_buf *new_state; /* the vm's rate_scratch */
  bool new_packed, has_new;
};

/* t[name] = the value on top of the stack (popped); t at idx has no
 * metatable, so this is what lua_setfield would do. */
static void set_name(lua_State *L, int names, int t, enum vm_name name)
{
  lua_rawgeti(L, names, name);
  lua_insert(L, -2);
  lua_rawset(L, t);
}

static void rate_body(lua_State *L, void *c, const char **invalid)
{
  struct rate_ctx *x = c;
  const struct pt_policy_rate_sample *s = x->s;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->vm->names_ref);
  int names = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->vm->slot_ref[SLOT_RATE]);
  lua_createtable(L, 0, 8);
  int t = lua_gettop(L);
  if (s->pull_id) {
    push_str(L, s->pull_id);
    set_name(L, names, t, NAME_PULL_ID);
  }
  if (s->node) {
    push_str(L, s->node);
    set_name(L, names, t, NAME_NODE);
  }
  lua_pushnumber(L, s->now);
  set_name(L, names, t, NAME_NOW);
  lua_pushinteger(L, s->downloaded);
  set_name(L, names, t, NAME_DOWNLOADED_BYTES);
  if (s->total >= 0) {
    lua_pushinteger(L, s->total);
    set_name(L, names, t, NAME_TOTAL_BYTES);
  }
  lua_pushboolean(L, s->stalled);
  set_name(L, names, t, NAME_STALLED);
  lua_pushboolean(L, s->completed);
  set_name(L, names, t, NAME_COMPLETED);
  if (!x->state->script_state)
    lua_pushnil(L);
  else if (x->state->state_packed)
    unpack_state(L, x->state->script_state, x->state->state_len);
  else
    vm_decode(x->vm, L, x->state->script_state);
  lua_call(L, 2, 2);
  int res = lua_absindex(L, -2), st = lua_absindex(L, -1);
  if (lua_type(L, res) != LUA_TTABLE) {
    *invalid = "rate must return a table {bytesPerSec=, etaSeconds=} and a state";
    return;
  }
  lua_rawgeti(L, names, NAME_BYTES_PER_SEC);
  lua_rawget(L, res);
  if (!finite_nonneg(L, -1, &x->out.bytes_per_sec)) {
    *invalid = "bytesPerSec must be a finite number >= 0";
    return;
  }
  lua_rawgeti(L, names, NAME_ETA_SECONDS);
  lua_rawget(L, res);
  if (lua_isnil(L, -1)) {
    x->out.eta_seconds = -1;
  } else if (!finite_nonneg(L, -1, &x->out.eta_seconds)) {
    *invalid = "etaSeconds must be nil or a finite number >= 0";
    return;
  }
  if (!lua_isnil(L, st)) {
    x->has_new = true;
    if ((x->new_packed = pack_state(L, st, x->new_state)))
      return;
    pt_buf_reset(x->new_state);
    size_t len;
    const char *json = vm_encode(x->vm, L, st, &len);
    if (len > MAX_STATE_BYTES) {
      *invalid = "the state is larger than 64 KiB";
      return;
    }
    if (pt_buf_append(x->new_state, json, len))
      luaL_error(L, "out of memory");
  }
}

/* Keeps the hook's new state (NUL-terminated) in st: in place when it has
 * the old one's length (a hook's state keeps its shape from call to call),
 * else in the state's own `small` when it fits (the default hook's does: it
 * is then read with the pull, not from a block of its own), else in storage
 * of exactly its size. -ENOMEM leaves st unchanged. */
static int store_rate_state(struct pt_policy_rate_state *st, const struct pt_buf *b, bool packed)
{
  if (!st->script_state || st->state_len != b->len) {
    char *d = b->len < sizeof(st->small) ? st->small : malloc(b->len + 1);
    if (!d)
      return -ENOMEM;
    if (st->script_state != st->small)
      free(st->script_state);
    st->script_state = d;
    st->state_len = b->len;
  }
  if (b->len)
    memcpy(st->script_state, b->data, b->len);
  st->script_state[b->len] = '\0';
  st->state_packed = packed;
  return 0;
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
  struct rate_ctx x = {.vm = vm, .s = sample, .state = st, .new_state = &vm->rate_scratch};
  pt_buf_reset(x.new_state);
  if (run_hook(p, PT_POLICY_HOOK_RATE, vm->slot_script[SLOT_RATE], rate_body, &x) == 0) {
    *out = x.out;
    out->fallback = false;
    if (!x.has_new || x.new_state->oom || store_rate_state(st, x.new_state, x.new_packed)) {
      if (st->script_state != st->small)
        free(st->script_state);
      st->script_state = NULL;
      st->state_len = 0;
      st->state_packed = false;
    }
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

