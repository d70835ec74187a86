#include "policy/sandbox.h"

#include <lualib.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"

static int api_duration(lua_State *L)
{
  const char *s = luaL_checkstring(L, 1);
  double secs;
  if (pt_duration_parse(s, &secs) != 0)
    return luaL_error(L, "invalid duration \"%s\" (use e.g. 500ms, 2s, 1m30s)", s);
  lua_pushnumber(L, secs);
  return 1;
}

/* load() with text chunks only; the environment defaults to the calling
 * script's, never the host's globals. */
static int api_load(lua_State *L)
{
  size_t len;
  const char *chunk = lua_tolstring(L, 1, &len);
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "load: only strings can be loaded in policy scripts");
  const char *name = luaL_optstring(L, 2, "=(load)");
  int has_env = !lua_isnone(L, 4);
  if (luaL_loadbufferx(L, chunk, len, name, "t") != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (has_env)
    lua_pushvalue(L, 4);
  else
    lua_pushvalue(L, lua_upvalueindex(1));
  if (!lua_setupvalue(L, -2, 1))
    lua_pop(L, 1);
  return 1;
}

/* setmetatable() without __gc: finalizers run at arbitrary points of the host
 * (GC steps, lua_close), outside any hook's budget. */
static int api_setmetatable(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc metamethods are not allowed in policy scripts");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* collectgarbage("count") only: the rest lets a script fight the host's GC. */
static int api_collectgarbage(lua_State *L)
{
  const char *opt = luaL_optstring(L, 1, "count");
  if (strcmp(opt, "count") != 0)
    return luaL_error(L, "collectgarbage: only \"count\" is allowed in policy scripts");
  lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) + lua_gc(L, LUA_GCCOUNTB) / 1024.0);
  return 1;
}

static int undefined_global(lua_State *L)
{
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  luaL_where(L, 1);
  lua_pushfstring(L, "undefined global '%s'", k);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Registry keys for the host's pristine library tables. */
static const char LIBS_KEY = 0;

static void copy_table(lua_State *L, int src, const char *skip)
{
  src = lua_absindex(L, src);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, src)) {
    if (!(skip && lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), skip) == 0)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    } else {
      lua_pop(L, 1);
    }
  }
}

void sandbox_push_env(lua_State *L, const char *name, const struct pt_policy_setting *settings,
                      size_t n_settings, const struct sandbox_host *host)
{
  static const char *const base[] = {"assert", "error", "ipairs", "next", "pairs", "pcall",
                                     "rawequal", "rawget", "rawlen", "rawset", "select",
                                     "tonumber", "tostring", "type", "xpcall", "getmetatable",
                                     "_VERSION", NULL};
  luaL_checkstack(L, 10, NULL);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &LIBS_KEY);
  int libs = lua_gettop(L);
  lua_newtable(L);
  int env = lua_gettop(L);

  lua_getfield(L, libs, "_G");
  for (int i = 0; base[i]; i++) {
    lua_getfield(L, -1, base[i]);
    lua_setfield(L, env, base[i]);
  }
  lua_getfield(L, -1, "setmetatable");
  lua_pushcclosure(L, api_setmetatable, 1);
  lua_setfield(L, env, "setmetatable");
  lua_pop(L, 1);

  lua_pushvalue(L, env);
  lua_pushcclosure(L, api_load, 1);
  lua_setfield(L, env, "load");
  lua_pushcfunction(L, api_collectgarbage);
  lua_setfield(L, env, "collectgarbage");
  lua_pushstring(L, name);
  lua_pushcclosure(L, host->print, 1);
  lua_setfield(L, env, "print");

  static const char *const libnames[] = {"string", "table", "math", "utf8", NULL};
  for (int i = 0; libnames[i]; i++) {
    lua_getfield(L, libs, libnames[i]);
    copy_table(L, -1, strcmp(libnames[i], "string") == 0 ? "dump" : NULL);
    lua_setfield(L, env, libnames[i]);
    lua_pop(L, 1);
  }

  lua_createtable(L, 0, 3);
  lua_getfield(L, libs, "os");
  static const char *const osfns[] = {"clock", "time", "date", NULL};
  for (int i = 0; osfns[i]; i++) {
    lua_getfield(L, -1, osfns[i]);
    lua_setfield(L, -3, osfns[i]);
  }
  lua_pop(L, 1);
  lua_setfield(L, env, "os");

  /* Each script gets its own cjson instance: its settings (precision,
   * sparse arrays) are per instance. */
  lua_getfield(L, libs, "cjson");
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  lua_setfield(L, env, "cjson");
  lua_pop(L, 1);

  lua_createtable(L, 0, 8);
  lua_pushstring(L, name);
  luaL_setfuncs(L, host->api, 1);
  lua_pushcfunction(L, api_duration);
  lua_setfield(L, -2, "duration");
  lua_createtable(L, 0, (int)n_settings);
  for (size_t i = 0; i < n_settings; i++) {
    lua_pushstring(L, settings[i].value);
    lua_setfield(L, -2, settings[i].key);
  }
  lua_setfield(L, -2, "settings");
  lua_setfield(L, env, "pulltrace");

  lua_pushvalue(L, env);
  lua_setfield(L, env, "_G");

  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, undefined_global);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, env);

  lua_remove(L, libs);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction fn)
{
  luaL_requiref(L, name, fn, 0);
  lua_setfield(L, -2, name);
}


void sandbox_open(lua_State *L)
{
  lua_newtable(L);
  open_lib(L, "_G", luaopen_base);
  open_lib(L, "string", luaopen_string);
  open_lib(L, "table", luaopen_table);
  open_lib(L, "math", luaopen_math);
  open_lib(L, "utf8", luaopen_utf8);
  open_lib(L, "os", luaopen_os);
  open_lib(L, "cjson", luaopen_cjson);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LIBS_KEY);

  /* Strings share one metatable whose __index is the real string library;
   * getmetatable("") must not hand it out. */
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);
}

void sandbox_load(lua_State *L, const char *name, const char *source, size_t len,
                  const struct pt_policy_setting *settings, size_t n_settings,
                  const struct sandbox_host *host)
{
  char chunkname[300];
  snprintf(chunkname, sizeof(chunkname), "@%s", name);
  if (luaL_loadbufferx(L, source, len, chunkname, "t") != LUA_OK)
    lua_error(L);
  sandbox_push_env(L, name, settings, n_settings, host);
  lua_setupvalue(L, -2, 1);
}
