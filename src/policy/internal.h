/* Internals of the policy host, shared by its source files. Only this module
 * sees Lua types. */
#ifndef PT_POLICY_INTERNAL_H
#define PT_POLICY_INTERNAL_H

#include <lua.h>

#include "core/buf.h"
#include "policy/policy.h"

/* Single-hook kinds that a script registers once (a later one replaces). */
enum hook_slot { SLOT_CORRELATE = 0, SLOT_RATE, SLOT_EVICT, SLOT_COUNT };

enum err_reason { REASON_RUNTIME = 0, REASON_BUDGET, REASON_MEMORY, REASON_INVALID, REASON_COUNT };

/* The names the rate hook's tables use, made Lua strings once per VM (a
 * table in the registry, vm->names_ref, indexed by these): lua_setfield and
 * lua_pushstring of a C string look the string up again on every call, and
 * the rate hook runs for every pull in flight of every report. */
enum vm_name {
  NAME_PULL_ID = 1, NAME_NODE, NAME_NOW, NAME_DOWNLOADED_BYTES, NAME_TOTAL_BYTES, NAME_STALLED, NAME_COMPLETED,
  NAME_BYTES_PER_SEC, NAME_ETA_SECONDS, NAME_COUNT
};

struct script {
  char *name;   /* file name, also the chunk name in error messages */
  char *origin; /* "builtin" or the file's path */
  char *source;
  size_t len;
};

struct script_set {
  struct script *v;
  size_t n;
};

struct handler {
  char *event_type;
  char *script;
  int ref; /* registry reference of the function */
};

/* The policy's variables once parsed (pt_policy_config_vars in options.c
 * describes them, and where each lands here). */
struct policy_env {
  const char *dir;
  long budget, memory_mib;
  struct policy_settings {
    double history_ttl, node_lost_grace, rate_half_life, stall_alert_after, alert_repeat;
    double slow_pull_min_duration;
    long slow_pull_factor, slow_pull_min_pulls;
  } set;
};

/* What a VM is built from. Fixed by pt_policy_create() and read-only from
 * then on, so that a reload can build a VM on the thread pool while the loop
 * thread keeps calling hooks. */
struct vm_config {
  const char *dir;                      /* override directory or NULL */
  bool no_builtin;
  const struct pt_policy_setting *settings; /* what scripts see as pulltrace.settings */
  size_t n_settings;
  uint64_t budget;
  double load_deadline;
  size_t memory_limit;
};

/* One Lua VM with everything loaded into it. Reloads build a new one and
 * swap it in, so a VM is immutable after loading (apart from Lua state). */
struct vm {
  lua_State *L;
  const struct vm_config *cfg;
  size_t mem_used, mem_limit;
  bool mem_refused;
  uint64_t budget;
  bool over_budget;
  bool loading;
  double deadline;
  bool deadline_hit;
  int slot_ref[SLOT_COUNT];
  char *slot_script[SLOT_COUNT];
  struct handler *handlers;
  size_t n_handlers, cap_handlers;
  int enc_ref, dec_ref; /* the host's own cjson instance, for rate state */
  int names_ref;        /* enum vm_name's strings */
  /* The rate hook's new state is written here, then copied into the pull's
   * own exact-size (usually same-size, so reused) storage: no allocation per
   * call, and no pull keeps a buffer's spare capacity. */
  struct pt_buf rate_scratch;
  struct script_set scripts;
};

/* Result of one protected call. */
struct call_result {
  int status;          /* 0 ok, else an error */
  enum err_reason reason;
  char msg[1024];      /* first line "script:line: message" */
  char *trace;         /* full traceback (heap) or NULL */
};

/* A body runs inside lua_pcall: builds the inputs, calls the hook, and
 * extracts the outputs into C. It may raise Lua errors. It sets *invalid to a
 * static description when the hook's return is not acceptable. */
typedef void (*vm_body_fn)(lua_State *L, void *ctx, const char **invalid);

struct reload_job;
struct pt_watch;

struct pt_policy {
  struct vm *vm;
  struct vm_config vmc; /* its strings and settings are owned here */
  double debounce, poll;
  pt_policy_alert_cb alert_cb;
  void *alert_ud;

  /* The built-in settings, parsed: what the C defaults (fallback.c) and
   * alert de-duplication use. */
  struct policy_settings set;

  /* Hook calls running (a reload without a loop cannot run during one). */
  int depth;

  /* Status. */
  int last_reload;
  bool defaults_only; /* the directory failed at creation: built-in scripts run */
  double loaded_at, last_reload_at;
  char reload_error[2048];
  char last_error[1024];
  char last_error_hook[16];
  double last_error_at;

  /* Counters. */
  struct pt_policy_counters counters;
  struct err_entry {
    enum pt_policy_hook hook;
    char *script;
    enum err_reason reason;
    uint64_t count;
    double last_logged;
    uint64_t unlogged;
  } *errs;
  size_t n_errs, cap_errs;

  /* Alert de-duplication: key -> last delivery. */
  struct sent_alert {
    char *key;
    double at;
  } *sent;
  size_t n_sent, cap_sent;

  /* Check mode writes hook errors here too. */
  FILE *check_report;

  /* Reloads (reload.c). With a loop they are built on its thread pool. */
  uv_loop_t *loop;
  struct pt_watch *watch;
  struct reload_job *job; /* the build in flight, or NULL */
  bool again;               /* another reload was asked for during it */
  bool destroyed;           /* pt_policy_destroy() ran while a build was in flight */
  uint64_t dir_hash;        /* scripts of the running VM */
  uint64_t tried_hash;      /* scripts of the last reload tried */
};

/* vm.c */
/* Builds a VM; safe on any thread (it reads only cfg and scripts). */
struct vm *vm_create(const struct vm_config *cfg, const struct script_set *scripts, char *err,
                     size_t errlen);
void vm_destroy(struct vm *vm);
/* Runs body in protected mode with the instruction budget; `script` names the
 * script blamed for errors. */
void vm_call(struct vm *vm, const char *script, vm_body_fn body, void *ctx,
             struct call_result *res);
void vm_push_json(lua_State *L, const json_t *v, int depth);
/* Serialises the value at idx with the host's cjson instance (raises). */
const char *vm_encode(struct vm *vm, lua_State *L, int idx, size_t *len);
/* Pushes the decoded value of a JSON text, or nil when it does not parse. */
void vm_decode(struct vm *vm, lua_State *L, const char *text);
/* Converts the table at idx to a jansson object via JSON text (raises). */
json_t *vm_to_json(struct vm *vm, lua_State *L, int idx);

/* scripts.c */
void script_set_free(struct script_set *s);
int script_set_builtin(struct script_set *s);
/* Adds the directory's *.lua files, replacing built-ins of the same name.
 * Returns 0 or a negative errno with a message. */
int script_set_add_dir(struct script_set *s, const char *dir, char *err, size_t errlen);
uint64_t script_set_hash(const struct script_set *s);

/* fallback.c: the C-side defaults. */
void fallback_rate(const struct pt_policy *p, const struct pt_policy_rate_sample *s,
                   struct pt_policy_rate_state *st, struct pt_policy_rate_result *out);
enum pt_policy_evict_decision fallback_evict(const struct pt_policy *p,
                                             const struct pt_policy_evict_input *in);
int fallback_correlate(const json_t *pull, const json_t *pods, const json_t *events,
                       struct pt_policy_correlation *out);

/* policy.c */
void policy_record_error(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
                         const struct call_result *res);
/* Frees everything; the watcher and any build in flight must be gone. */
void policy_free(struct pt_policy *p);

/* options.c */
/* The defaults of every policy variable. */
void policy_env_defaults(struct policy_env *e);
/* Copies opts' settings into p, adds the built-in ones that are missing with
 * their defaults, and parses those into p->set. Returns 0 or a negative
 * errno with "policy setting <key> (...)" in err. */
int policy_settings_init(struct pt_policy *p, const struct pt_policy_options *opts, char *err,
                         size_t errlen);

/* reload.c */
/* Reads the scripts of cfg and builds a VM from them; safe on any thread.
 * *hash identifies the scripts read (0 when they could not be read). When
 * that hash is one of skip[0..n_skip), nothing is built: returns 0 with *out
 * NULL. Otherwise returns 0 with the VM, or a negative errno with the reason
 * in err. */
int policy_build(const struct vm_config *cfg, const uint64_t *skip, size_t n_skip,
                 struct vm **out, uint64_t *hash, char *err, size_t errlen);
/* pt_policy_destroy()'s part: stops the watcher and the build in flight.
 * Returns true when a build is still running: its completion frees p. */
bool reload_stop(struct pt_policy *p);

/* Helpers of the hook calls (policy.c), shared with the alert hook
 * (alerts.c). run_hook() runs one protected hook call with timing and records
 * an error; rawfield() pushes t[k] without metamethods and returns its type;
 * short_str() returns a string of at most max bytes without control
 * characters, or NULL. */
int run_hook(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
             vm_body_fn body, void *ctx);
int rawfield(lua_State *L, int idx, const char *k);
const char *short_str(lua_State *L, int idx, size_t max);

#endif
