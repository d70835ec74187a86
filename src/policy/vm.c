/* The Lua VM of the policy host: counting allocator, sandbox, the `pulltrace`
 * module scripts see, loading, and protected calls with an instruction
 * budget. */
#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"
#include "policy/sandbox.h"

/* While loading, the count hook fires this often to check the deadline. */
#define LOAD_HOOK_COUNT 10000
#define JSON_MAX_DEPTH 48

static struct vm *vm_of(lua_State *L)
{
  return *(struct vm **)lua_getextraspace(L);
}

/* Lua asks for every allocation here. Refusing one (returning NULL) makes Lua
 * collect garbage and retry, then raise a memory error, so the cap holds for
 * everything scripts do, string.rep bombs included. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  struct vm *vm = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    vm->mem_used -= old;
    return NULL;
  }
  if (nsize > old && vm->mem_used - old + nsize > vm->mem_limit) {
    vm->mem_refused = true;
    return NULL;
  }
  void *n = realloc(ptr, nsize);
  if (!n)
    return NULL;
  vm->mem_used = vm->mem_used - old + nsize;
  return n;
}

/* The count hook. Once a limit is hit it re-arms itself to fire on every
 * instruction: a script's own pcall can catch the first error, but the next
 * instruction after it raises again, so the error always reaches the host. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  struct vm *vm = vm_of(L);
  if (vm->loading) {
    if (!vm->deadline_hit && pt_clock_mono() < vm->deadline)
      return;
    vm->deadline_hit = true;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    /* Level 0: a hook has no call frame of its own, so this is the script. */
    luaL_where(L, 0);
    lua_pushliteral(L, "load deadline exceeded");
  } else {
    vm->over_budget = true;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_where(L, 0);
    lua_pushfstring(L, "instruction budget exceeded (%I instructions)", (lua_Integer)vm->budget);
  }
  lua_concat(L, 2);
  lua_error(L);
}

static int msgh(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);
  if (!msg || lua_type(L, 1) != LUA_TSTRING)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

struct trampoline {
  vm_body_fn body;
  void *ctx;
  const char *invalid;
};

static int trampoline(lua_State *L)
{
  struct trampoline *t = lua_touserdata(L, 1);
  lua_settop(L, 0);
  t->body(L, t->ctx, &t->invalid);
  return 0;
}

static void set_msg(struct call_result *res, const char *script, const char *text)
{
  /* The first line is the "script:line: message" part of a traceback. */
  size_t n = strcspn(text, "\n");
  if (n >= sizeof(res->msg))
    n = sizeof(res->msg) - 1;
  if (script && strncmp(text, script, strlen(script)) != 0)
    snprintf(res->msg, sizeof(res->msg), "%s: %.*s", script, (int)n, text);
  else
    snprintf(res->msg, sizeof(res->msg), "%.*s", (int)n, text);
}

void vm_call(struct vm *vm, const char *script, vm_body_fn body, void *ctx,
             struct call_result *res)
{
  lua_State *L = vm->L;
  memset(res, 0, sizeof(*res));
  struct trampoline t = {body, ctx, NULL};
  vm->over_budget = false;
  vm->mem_refused = false;
  if (!vm->loading)
    lua_sethook(L, count_hook, LUA_MASKCOUNT, (int)vm->budget);
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, trampoline);
  lua_pushlightuserdata(L, &t);
  int rc = lua_pcall(L, 1, 0, 1);
  if (rc != LUA_OK) {
    res->status = -EINVAL;
    const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "unknown error";
    char buf[256];
    if (rc == LUA_ERRMEM || vm->mem_refused) {
      res->reason = REASON_MEMORY;
      snprintf(buf, sizeof(buf), "not enough memory (policy memory limit %zu MiB)",
               vm->mem_limit >> 20);
      if (rc == LUA_ERRMEM)
        text = buf;
    } else if (vm->over_budget) {
      res->reason = REASON_BUDGET;
    } else {
      res->reason = REASON_RUNTIME;
    }
    set_msg(res, script, text);
    res->trace = strdup(text);
  } else if (t.invalid) {
    res->status = -EINVAL;
    res->reason = REASON_INVALID;
    snprintf(res->msg, sizeof(res->msg), "%s: invalid return: %s", script ? script : "?",
             t.invalid);
  }
  lua_settop(L, 0);
  if (!vm->loading)
    lua_sethook(L, count_hook, LUA_MASKCOUNT, (int)vm->budget);
  if (res->reason == REASON_MEMORY)
    lua_gc(L, LUA_GCCOLLECT);
}

/* ---- JSON <-> Lua ------------------------------------------------------- */

void vm_push_json(lua_State *L, const json_t *v, int depth)
{
  if (depth > JSON_MAX_DEPTH)
    luaL_error(L, "input nested too deeply");
  luaL_checkstack(L, 4, "input nested too deeply");
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    lua_createtable(L, 0, (int)json_object_size(v));
    const char *k;
    json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      if (json_is_null(m))
        continue;
      vm_push_json(L, m, depth + 1);
      lua_setfield(L, -2, k);
    }
    break;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    lua_createtable(L, (int)n, 0);
    lua_Integer slot = 1;
    for (size_t i = 0; i < n; i++) {
      const json_t *m = json_array_get(v, i);
      /* A null inside an array would make a hole and break `#` and ipairs;
       * scripts see the array without it. */
      if (json_is_null(m))
        continue;
      vm_push_json(L, m, depth + 1);
      lua_rawseti(L, -2, slot++);
    }
    break;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    break;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(v));
    break;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    break;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    break;
  default:
    lua_pushnil(L);
  }
}

const char *vm_encode(struct vm *vm, lua_State *L, int idx, size_t *len)
{
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->enc_ref);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  return lua_tolstring(L, -1, len);
}

void vm_decode(struct vm *vm, lua_State *L, const char *text)
{
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->dec_ref);
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

json_t *vm_to_json(struct vm *vm, lua_State *L, int idx)
{
  size_t len;
  const char *s = vm_encode(vm, L, idx, &len);
  json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
  lua_pop(L, 1);
  return j;
}

/* ---- the pulltrace module ---------------------------------------------- */

static const char *script_name(lua_State *L)
{
  return lua_tostring(L, lua_upvalueindex(1));
}

static void require_loading(lua_State *L, const char *what)
{
  if (!vm_of(L)->loading)
    luaL_error(L, "pulltrace.%s: hooks can only be registered while the script loads", what);
}

static int register_slot(lua_State *L, enum hook_slot slot, const char *what)
{
  struct vm *vm = vm_of(L);
  require_loading(L, what);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  char *name = strdup(script_name(L));
  if (!name)
    return luaL_error(L, "out of memory");
  lua_settop(L, 1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (vm->slot_ref[slot] != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, vm->slot_ref[slot]);
  free(vm->slot_script[slot]);
  vm->slot_ref[slot] = ref;
  vm->slot_script[slot] = name;
  return 0;
}

static int api_correlate(lua_State *L) { return register_slot(L, SLOT_CORRELATE, "correlate"); }
static int api_rate(lua_State *L) { return register_slot(L, SLOT_RATE, "rate"); }
static int api_evict(lua_State *L) { return register_slot(L, SLOT_EVICT, "evict"); }

static int api_on(lua_State *L)
{
  struct vm *vm = vm_of(L);
  require_loading(L, "on");
  size_t tlen;
  const char *type = luaL_checklstring(L, 1, &tlen);
  luaL_argcheck(L, tlen > 0 && tlen < 128, 1, "event type must be a non-empty string");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (vm->n_handlers == vm->cap_handlers) {
    size_t cap = vm->cap_handlers ? vm->cap_handlers * 2 : 8;
    if (cap > 1024)
      return luaL_error(L, "pulltrace.on: too many handlers");
    struct handler *h = realloc(vm->handlers, cap * sizeof(*h));
    if (!h)
      return luaL_error(L, "out of memory");
    vm->handlers = h;
    vm->cap_handlers = cap;
  }
  struct handler *h = &vm->handlers[vm->n_handlers];
  h->event_type = strdup(type);
  h->script = strdup(script_name(L));
  if (!h->event_type || !h->script) {
    free(h->event_type);
    free(h->script);
    return luaL_error(L, "out of memory");
  }
  lua_settop(L, 2);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  vm->n_handlers++;
  return 0;
}

static void log_from_lua(lua_State *L, enum pt_log_level level, const char *msg, int fields_idx)
{
  if (!pt_log_enabled(level))
    return;
  json_t *fields = NULL;
  if (fields_idx && lua_type(L, fields_idx) == LUA_TTABLE)
    fields = vm_to_json(vm_of(L), L, fields_idx);
  if (!json_is_object(fields)) {
    json_decref(fields);
    fields = json_object();
  }
  json_object_set_new(fields, "script", json_string(script_name(L)));
  pt_log_json(level, msg, fields);
}

static int api_log(lua_State *L)
{
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  const char *msg = luaL_checkstring(L, 2);
  log_from_lua(L, (enum pt_log_level)level, msg, lua_isnoneornil(L, 3) ? 0 : 3);
  return 0;
}

/* print() is kept for convenience; it logs at info instead of writing to
 * stdout, which belongs to the daemon. */
static int api_print(lua_State *L)
{
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    int t = lua_type(L, i);
    /* No __tostring: it would run script code from inside a logging call. */
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      lua_tostring(L, -1);
      luaL_addvalue(&b);
    } else if (t == LUA_TBOOLEAN) {
      luaL_addstring(&b, lua_toboolean(L, i) ? "true" : "false");
    } else {
      luaL_addstring(&b, luaL_typename(L, i));
    }
  }
  luaL_pushresult(&b);
  log_from_lua(L, PT_LOG_INFO, lua_tostring(L, -1), 0);
  return 0;
}

/* ---- building a VM ------------------------------------------------------ */

/* Runs inside the first protected call: opens the libraries into a private
 * registry table, hides the string metatable, creates the host's cjson. */
static void init_body(lua_State *L, void *ctx, const char **invalid)
{
  struct vm *vm = ctx;
  sandbox_open(L);
  /* The host's own cjson instance (each luaopen_cjson() makes a new one),
   * for rate state. */
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  /* The most this cjson allows: keeps epoch times to 0.1 ms in rate state. */
  lua_getfield(L, -1, "encode_number_precision");
  lua_pushinteger(L, 14);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode");
  vm->enc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "decode");
  vm->dec_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  static const char *const names[NAME_COUNT] = {
    [NAME_PULL_ID] = "pullId", [NAME_NODE] = "node", [NAME_NOW] = "now",
    [NAME_DOWNLOADED_BYTES] = "downloadedBytes", [NAME_TOTAL_BYTES] = "totalBytes", [NAME_STALLED] = "stalled",
    [NAME_COMPLETED] = "completed", [NAME_BYTES_PER_SEC] = "bytesPerSec", [NAME_ETA_SECONDS] = "etaSeconds",
  };
  lua_createtable(L, NAME_COUNT - 1, 0);
  for (int i = 1; i < NAME_COUNT; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i);
  }
  vm->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  (void)invalid;
}

static const luaL_Reg host_api[] = {{"correlate", api_correlate}, {"rate", api_rate},
                                    {"evict", api_evict},         {"on", api_on},
                                    {"log", api_log},             {NULL, NULL}};
static const struct sandbox_host host = {host_api, api_print};

static void load_body(lua_State *L, void *ctx, const char **invalid)
{
  const struct script *s = ctx;
  const struct vm_config *c = vm_of(L)->cfg;
  sandbox_load(L, s->name, s->source, s->len, c->settings, c->n_settings, &host);
  lua_call(L, 0, 0);
  (void)invalid;
}

static void append(char *err, size_t errlen, const char *line)
{
  size_t used = strlen(err);
  if (used + 1 >= errlen)
    return;
  snprintf(err + used, errlen - used, "%s%s", used ? "\n" : "", line);
}

struct vm *vm_create(const struct vm_config *cfg, const struct script_set *scripts, char *err,
                     size_t errlen)
{
  if (errlen)
    err[0] = '\0';
  struct vm *vm = calloc(1, sizeof(*vm));
  if (!vm) {
    append(err, errlen, "out of memory");
    return NULL;
  }
  vm->cfg = cfg;
  vm->mem_limit = cfg->memory_limit;
  vm->budget = cfg->budget;
  for (int i = 0; i < SLOT_COUNT; i++)
    vm->slot_ref[i] = LUA_NOREF;
  vm->enc_ref = vm->dec_ref = vm->names_ref = LUA_NOREF;
  pt_buf_init(&vm->rate_scratch);
  vm->L = lua_newstate(vm_alloc, vm);
  if (!vm->L) {
    append(err, errlen, "cannot create the Lua state (memory limit too small?)");
    free(vm);
    return NULL;
  }
  *(struct vm **)lua_getextraspace(vm->L) = vm;

  vm->loading = true;
  vm->deadline = pt_clock_mono() + cfg->load_deadline;
  lua_sethook(vm->L, count_hook, LUA_MASKCOUNT, LOAD_HOOK_COUNT);
  struct call_result res;
  vm_call(vm, "(host)", init_body, vm, &res);
  if (res.status) {
    append(err, errlen, res.msg);
    free(res.trace);
    goto fail;
  }

  bool failed = false;
  for (size_t i = 0; i < scripts->n; i++) {
    vm_call(vm, scripts->v[i].name, load_body, &scripts->v[i], &res);
    if (res.status) {
      /* Keep going: an operator fixing a directory wants every error at once. */
      failed = true;
      append(err, errlen, res.msg);
      if (res.trace && strchr(res.trace, '\n'))
        PT_LOG_DEBUG("policy script failed to load", "{s:s, s:s}", "script", scripts->v[i].name,
                     "traceback", res.trace);
      free(res.trace);
      if (vm->deadline_hit)
        break; /* the remaining scripts would only hit it again */
    }
  }
  if (failed)
    goto fail;
  vm->loading = false;
  lua_sethook(vm->L, count_hook, LUA_MASKCOUNT, (int)vm->budget);
  /* The scripts list is copied so /readyz can describe the running policy. */
  vm->scripts.v = calloc(scripts->n ? scripts->n : 1, sizeof(struct script));
  if (!vm->scripts.v) {
    append(err, errlen, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < scripts->n; i++) {
    vm->scripts.v[i].name = strdup(scripts->v[i].name);
    vm->scripts.v[i].origin = strdup(scripts->v[i].origin);
    vm->scripts.n++;
    if (!vm->scripts.v[i].name || !vm->scripts.v[i].origin) {
      append(err, errlen, "out of memory");
      goto fail;
    }
  }
  lua_gc(vm->L, LUA_GCCOLLECT);
  /* Hook inputs are short-lived copies: generational collection suits them
   * (measured in bench/policy). */
  lua_gc(vm->L, LUA_GCGEN, 0, 0);
  return vm;
fail:
  vm_destroy(vm);
  return NULL;
}

void vm_destroy(struct vm *vm)
{
  if (!vm)
    return;
  if (vm->L) {
    /* No script code may run during close (finalizers are refused), but the
     * hook stays armed in case. */
    lua_close(vm->L);
  }
  for (int i = 0; i < SLOT_COUNT; i++)
    free(vm->slot_script[i]);
  for (size_t i = 0; i < vm->n_handlers; i++) {
    free(vm->handlers[i].event_type);
    free(vm->handlers[i].script);
  }
  free(vm->handlers);
  for (size_t i = 0; i < vm->scripts.n; i++) {
    free(vm->scripts.v[i].name);
    free(vm->scripts.v[i].origin);
  }
  free(vm->scripts.v);
  pt_buf_close(&vm->rate_scratch);
  free(vm);
}
