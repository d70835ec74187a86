/* The sandbox policy scripts run in: which libraries exist and how each
 * script's environment is built. The server's VM (vm.c) uses it, and so does
 * the test module behind the busted specs (spec/lua/sandbox_module.c), so the
 * default scripts are specified in the very environment they run in.
 *
 * A script sees: the base functions without dofile/loadfile/require, load()
 * for text chunks only, setmetatable() without __gc, collectgarbage("count");
 * string (without dump), table, math, utf8; os.clock/time/date; its own cjson
 * instance; the `pulltrace` table; and nothing else: reading an undefined
 * global raises an error. No io, os.execute, package, debug. */
#ifndef PT_POLICY_SANDBOX_H
#define PT_POLICY_SANDBOX_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "policy/policy.h"

/* What the embedder provides to scripts: the hook registration and logging
 * functions of the pulltrace table (correlate, rate, evict, on, log), and
 * print. Each is a closure over the script's name (upvalue 1). */
struct sandbox_host {
  const luaL_Reg *api;
  lua_CFunction print;
};

/* Opens the libraries into a private registry table and hides the strings'
 * metatable. Once per lua_State, before the first sandbox_push_env(); raises
 * Lua errors (out of memory), so call it in protected mode. */
void sandbox_open(lua_State *L);

/* Pushes a fresh environment for the script `name`: its own copies of the
 * allowed libraries (so one script cannot change another's), its own
 * pulltrace table with `settings` and the host's functions, and strict reads
 * of undefined globals. Raises Lua errors. */
void sandbox_push_env(lua_State *L, const char *name, const struct pt_policy_setting *settings,
                      size_t n_settings, const struct sandbox_host *host);

/* Loads a text chunk named `name` with a fresh environment: pushes the
 * function, ready to be called. Raises the syntax error. */
void sandbox_load(lua_State *L, const char *name, const char *source, size_t len,
                  const struct pt_policy_setting *settings, size_t n_settings,
                  const struct sandbox_host *host);

#endif
