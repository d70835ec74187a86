/* pulltrace_sandbox: a Lua module for the busted specs that loads a policy
 * script into the server's sandbox (src/policy/sandbox.c, the same code the
 * server's VM uses), so a default script is specified in the environment it
 * runs in: a script that reaches for io, require or an undefined global fails
 * its spec exactly as it fails in the server.
 *
 *   local sandbox = require("pulltrace_sandbox")
 *   local module, hooks = sandbox.load(name, source, settings)
 *   local settings = sandbox.defaults() -- the built-in settings' defaults
 *
 * hooks holds what the script registered: hooks.correlate, hooks.rate,
 * hooks.evict (functions) and hooks.on[event] (a list of functions). As in
 * the server, hooks can only be registered while the script loads. What the
 * VM adds around calls (instruction budget, memory cap, validation of the
 * returns) is the policy host's, tested in spec/unit/policy_*.c. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "policy/sandbox.h"

/* Registry key of the hooks table of the script being loaded (absent
 * otherwise). */
static const char LOADING_KEY = 0;

static void push_loading(lua_State *L, const char *what)
{
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOADING_KEY) != LUA_TTABLE)
    luaL_error(L, "pulltrace.%s: hooks can only be registered while the script loads", what);
}

static int register_slot(lua_State *L, const char *what)
{
  luaL_checktype(L, 1, LUA_TFUNCTION);
  push_loading(L, what);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, what);
  return 0;
}

static int api_correlate(lua_State *L) { return register_slot(L, "correlate"); }
static int api_rate(lua_State *L) { return register_slot(L, "rate"); }
static int api_evict(lua_State *L) { return register_slot(L, "evict"); }

static int api_on(lua_State *L)
{
  size_t tlen;
  luaL_checklstring(L, 1, &tlen);
  luaL_argcheck(L, tlen > 0 && tlen < 128, 1, "event type must be a non-empty string");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  push_loading(L, "on");
  lua_getfield(L, -1, "on");
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* Logging goes nowhere in specs; the arguments are still checked. */
static int api_log(lua_State *L)
{
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  luaL_checkoption(L, 1, NULL, levels);
  luaL_checkstring(L, 2);
  return 0;
}

static int api_print(lua_State *L)
{
  (void)L;
  return 0;
}

static const luaL_Reg api[] = {{"correlate", api_correlate}, {"rate", api_rate},
                               {"evict", api_evict},         {"on", api_on},
                               {"log", api_log},             {NULL, NULL}};
static const struct sandbox_host host = {api, api_print};

/* load(name, source, settings) -> module (what the chunk returned), hooks */
static int sb_load(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  size_t len;
  const char *source = luaL_checklstring(L, 2, &len);
  struct pt_policy_setting settings[PT_POLICY_MAX_SETTINGS];
  size_t n = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "settings must map strings to strings");
      if (n == PT_POLICY_MAX_SETTINGS)
        return luaL_error(L, "too many settings");
      /* The strings stay referenced by the settings table during the call. */
      settings[n].key = lua_tostring(L, -2);
      settings[n].value = lua_tostring(L, -1);
      n++;
      lua_pop(L, 1);
    }
  }
  lua_newtable(L);
  lua_newtable(L);
  lua_setfield(L, -2, "on");
  int hooks = lua_gettop(L);
  lua_pushvalue(L, hooks);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADING_KEY);
  sandbox_load(L, name, source, len, settings, n, &host);
  int rc = lua_pcall(L, 0, 1, 0);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADING_KEY);
  if (rc != LUA_OK)
    return lua_error(L);
  lua_pushvalue(L, hooks);
  return 2;
}

/* defaults() -> {key = default} of the built-in settings, from the policy's
 * configuration table: what the server hands scripts when nothing is set. */
static int sb_defaults(lua_State *L)
{
  lua_newtable(L);
  for (const struct pt_config_var *v = pt_policy_config_vars; v->name; v++) {
    if (v->setting && v->def) {
      lua_pushstring(L, v->def);
      lua_setfield(L, -2, v->setting);
    }
  }
  return 1;
}

int luaopen_pulltrace_sandbox(lua_State *L);
int luaopen_pulltrace_sandbox(lua_State *L)
{
  sandbox_open(L);
  static const luaL_Reg fns[] = {{"load", sb_load}, {"defaults", sb_defaults}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
