/* The policy host's public API: creation, and the hook calls with their
 * validation and fallback, alert delivery included. Reloads are in
 * reload.c, configuration in options.c, status and counters in status.c. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"

#define MAX_STATE_BYTES (64u * 1024)
#define MAX_TARGETS 1024
#define MAX_ALERTS_PER_CALL 64
#define MAX_LABELS 32
#define MAX_SENT 4096


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
  json_t *kube_event; /* the validated kubernetesEvent with its defaults, or NULL */
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

/* An Event reason: UpperCamelCase letters and digits, as Kubernetes' own. */
static bool event_reason_ok(const char *s)
{
  if (!s || !(*s >= 'A' && *s <= 'Z'))
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
      return false;
  return true;
}

/* The optional string member k of the table at idx: *out is NULL when it is
 * absent, false when it is present but not a string of 1..max bytes. */
static bool opt_str(lua_State *L, int idx, const char *k, size_t max, const char **out)
{
  /* Left on the stack (the caller resets it) so that the string stays valid. */
  int t = rawfield(L, idx, k);
  *out = t == LUA_TNIL ? NULL : short_str(L, -1, max);
  return t == LUA_TNIL || *out;
}

/* An alert's kubernetesEvent (docs/policy.md): true for every default, or a
 * table {reason, type, note, action, resolvedReason, resolvedNote}. Fills
 * the defaults from the alert; returns a reason when invalid. */
static const char *take_kube_event(lua_State *L, int idx, const char *name, const char *sev, const char *summary,
                                   json_t **out)
{
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, idx)))
    return NULL;
  const char *reason = NULL, *type = NULL, *note = NULL, *action = NULL, *rreason = NULL, *rnote = NULL;
  if (t == LUA_TTABLE) {
    if (!opt_str(L, idx, "reason", 128, &reason) || !opt_str(L, idx, "type", 16, &type) ||
        !opt_str(L, idx, "note", 1024, &note) || !opt_str(L, idx, "action", 128, &action) ||
        !opt_str(L, idx, "resolvedReason", 128, &rreason) || !opt_str(L, idx, "resolvedNote", 1024, &rnote))
      return "kubernetesEvent members must be strings (reason and action up to 128 bytes, notes up to 1024)";
  } else if (t != LUA_TBOOLEAN) {
    return "kubernetesEvent must be true or a table {reason, type, note, action, resolvedReason, resolvedNote}";
  }
  if (!reason)
    reason = name;
  if (!event_reason_ok(reason) || (rreason && !event_reason_ok(rreason)))
    return "kubernetesEvent reasons must be UpperCamelCase letters and digits, e.g. \"PullStalled\"";
  if (!type)
    type = strcmp(sev, "info") == 0 ? "Normal" : "Warning";
  if (strcmp(type, "Normal") && strcmp(type, "Warning"))
    return "kubernetesEvent type must be \"Normal\" or \"Warning\"";
  if (rnote && !rreason)
    return "kubernetesEvent resolvedNote needs a resolvedReason";
  /* A note is at most 1 kB in the API: a long summary is cut. */
  char cut[1025];
  if (!note) {
    snprintf(cut, sizeof(cut), "%s", *summary ? summary : name);
    note = cut;
  }
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "reason", reason, "type", type, "note", note, "action",
                         action ? action : "Pulling");
  if (!ev)
    return "kubernetesEvent note must be UTF-8";
  if (rreason) {
    json_object_set_new(ev, "resolvedReason", json_string(rreason));
    json_object_set_new(ev, "resolvedNote", rnote ? json_string(rnote) : json_string(rreason));
  }
  *out = ev;
  return NULL;
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
  rawfield(L, idx, "kubernetesEvent");
  const char *why = take_kube_event(L, lua_gettop(L), name, sev, summary, &a->kube_event);
  if (why)
    return why;
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
    json_decref(x->alerts[i].kube_event);
  }
  x->n = 0;
}

char *pt_policy_alert_key(const char *name, const json_t *labels)
{
  char *lj = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
  if (!lj)
    return NULL;
  size_t len = strlen(name) + strlen(lj) + 2;
  char *key = malloc(len);
  if (key)
    snprintf(key, len, "%s\x1f%s", name, lj);
  free(lj);
  return key;
}

void pt_policy_alert_forget(struct pt_policy *p, const char *name, const json_t *labels)
{
  if (!p || !name || !labels)
    return;
  char *key = pt_policy_alert_key(name, labels);
  if (!key)
    return;
  size_t w = 0;
  for (size_t i = 0; i < p->n_sent; i++) {
    if (strcmp(p->sent[i].key, key) == 0) {
      free(p->sent[i].key);
      continue;
    }
    p->sent[w++] = p->sent[i];
  }
  p->n_sent = w;
  free(key);
}

/* True when the same alert went out less than alertRepeat ago; otherwise
 * remembers it as sent now. */
static bool suppressed(struct pt_policy *p, const struct alert_buf *a, double now)
{
  char *key = pt_policy_alert_key(a->name, a->labels);
  if (!key)
    return false;
  /* Forget what expired; keeps the table bounded by the alert rate. */
  size_t w = 0;
  bool found = false;
  for (size_t i = 0; i < p->n_sent; i++) {
    if (now - p->sent[i].at >= p->set.alert_repeat) {
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

void pt_policy_set_alert_cb(struct pt_policy *p, pt_policy_alert_cb cb, void *ud)
{
  if (!p)
    return;
  p->alert_cb = cb;
  p->alert_ud = ud;
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
                                      event_type, h->script, a->kube_event};
        p->alert_cb(p->alert_ud, &out);
      }
    }
    free_alerts(x);
    free(x);
  }
  p->depth--;
  return delivered;
}
