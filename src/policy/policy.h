/* The policy host: runs the operator-facing Lua hooks (correlation, rate,
 * eviction, alerts) in a sandboxed Lua 5.4 VM and hands their decisions back
 * as plain C values. docs/policy.md is the operator-facing reference.
 *
 * Nothing here exposes Lua types: only this module includes lua.h.
 *
 * Ownership: the caller (the server) owns every piece of state. Hooks get
 * copies of their inputs and return decisions that are validated here; a
 * decision that is missing, of the wrong type or nonsensical (NaN, negative
 * ETA, a pod without a name, ...) is replaced by the built-in C default and
 * counted as an error of that hook and script. Every hook function below
 * therefore always fills its output, and returns a negative errno only for
 * caller mistakes (NULL arguments) or out-of-memory in C.
 *
 * Times are double seconds since the Unix epoch (pt_clock_now()); 0 means
 * "unknown / not applicable". Byte counts are int64_t; negative means unknown.
 *
 * Structured inputs of the correlation and alert hooks are jansson values,
 * copied into Lua tables (objects -> tables with string keys, arrays ->
 * sequences, null -> nil). Give times there as numbers (epoch seconds), not
 * RFC 3339 strings, so that scripts can do arithmetic on them.
 *
 * Threading: a struct pt_policy belongs to one thread (the server's loop
 * thread). Calls are not re-entrant: a hook cannot call back into the host.
 * Once pt_policy_watch() gave it a loop, reloads are built on that loop's
 * thread pool and swapped in on the loop between callbacks, never inside a
 * hook call. */
#ifndef PT_POLICY_POLICY_H
#define PT_POLICY_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "core/config.h"

struct pt_policy;

/* The policy's environment variables (docs/configuration.md): the override
 * directory, the built-in settings, the VM's limits and the
 * PULLTRACE_POLICY_SETTING_<key> family. pulltrace-server --help prints it. */
extern const struct pt_config_var pt_policy_config_vars[];

/* ---- Creation ---------------------------------------------------------- */

/* Settings the operator passes to the scripts, readable there as
 * pulltrace.settings.<key> (strings). The built-in ones (historyTTL,
 * nodeLostGrace, rateHalfLife, stallAlertAfter, alertRepeat, slowPullFactor,
 * slowPullMinPulls, slowPullMinDuration: the entries of
 * pt_policy_config_vars that name a setting) are also parsed by C for the
 * C-side defaults, so a bad value is a creation error, and scripts always see
 * them, with their defaults when not given. PULLTRACE_POLICY_SETTING_<key>=
 * <value> adds any other key for the operator's own scripts. */
struct pt_policy_setting {
  const char *key;
  const char *value;
};

#define PT_POLICY_MAX_SETTINGS 64

struct pt_policy_alert {
  const char *name;       /* non-empty, e.g. "PullStalled" */
  const char *severity;   /* "info", "warning" or "critical" */
  const char *summary;    /* one line of text */
  const json_t *labels;   /* object whose values are all strings; never NULL */
  const char *event_type; /* the event that produced it, e.g. "pull.stalled" */
  const char *script;     /* the script whose handler returned it */
  /* The alert's kubernetesEvent, validated with its defaults filled in:
   * {"reason","type","note","action"} and optionally "resolvedReason",
   * "resolvedNote"; NULL when the alert asks for none. */
  const json_t *kube_event;
};

/* Receives each validated alert. The pointers live only during the call. */
typedef void (*pt_policy_alert_cb)(void *ud, const struct pt_policy_alert *alert);

struct pt_policy_options {
  /* Override directory (PULLTRACE_POLICY_DIR) or NULL for the built-in
   * scripts only. Its *.lua files (symlinks followed, dot files skipped) are
   * loaded after the built-in ones, in lexical order; a file named like a
   * built-in script ("rate.lua") replaces it. */
  const char *dir;
  /* Copied by pt_policy_create(). */
  struct pt_policy_setting settings[PT_POLICY_MAX_SETTINGS];
  size_t n_settings;
  /* Storage for keys that pt_policy_options_from_env() derives from
   * PULLTRACE_POLICY_SETTING_<key> names; not used otherwise. */
  char key_storage[PT_POLICY_MAX_SETTINGS][64];
  /* Lua VM instructions per hook call (PULLTRACE_POLICY_INSTRUCTION_BUDGET);
   * 0 = 1,000,000. */
  uint64_t instruction_budget;
  /* Wall-clock limit for loading all scripts of one VM, seconds; 0 = 2 s. */
  double load_deadline;
  /* Cap on the VM's heap in bytes (PULLTRACE_POLICY_MEMORY_LIMIT, MiB in the
   * environment); 0 = 64 MiB. */
  size_t memory_limit;
  /* Debounce of directory change events before a reload, seconds; 0 = 0.5 s. */
  double reload_debounce;
  /* Periodic re-check of the directory contents (catches missed events),
   * seconds; 0 = 30 s, negative = off. */
  double reload_poll;
  /* Skip the built-in scripts (tests and operators who replace everything).
   * The C defaults still apply when no hook is registered. */
  bool no_builtin;
  /* When the directory's scripts do not load at creation (a syntax error, an
   * error while a script runs at load, a limit, an unreadable directory), run
   * the built-in scripts (the compiled-in defaults) instead of failing, with
   * the error kept in the status exactly as for a failed reload; the next good
   * version of the directory is picked up by the reload watch. A bad setting
   * still fails creation. The server sets it; --check-policy never does. */
  bool defaults_on_error;
  pt_policy_alert_cb alert_cb; /* may be NULL: alerts are then only counted */
  void *alert_ud;
};

/* Fills opts from the environment (envp like `environ`; NULL = environ)
 * through pt_policy_config_vars: the directory, the limits, and the settings
 * the environment sets. Zeroes opts first, so set alert_cb afterwards. The
 * strings point into envp. Returns 0 or -EINVAL with "VARIABLE: reason" in
 * err.
 *
 * A zeroed struct pt_policy_options is valid too: pt_policy_create() of it
 * gives the policy a server runs with an empty environment (the built-in
 * scripts, every default; under a millisecond to create), which is what the
 * store's unit tests run with. */
int pt_policy_options_from_env(struct pt_policy_options *opts, char **envp, char *err,
                               size_t errlen);

/* The value of a built-in setting of p as C uses it: a duration (e.g.
 * "nodeLostGrace") in seconds, an integer (e.g. "slowPullFactor") as is.
 * Returns 0, or -ENOENT for another key. */
int pt_policy_setting_number(const struct pt_policy *p, const char *key, double *out);

/* Builds the VM and loads the built-in and directory scripts. On any error
 * (bad setting, unreadable directory, syntax or runtime error while loading,
 * load deadline, memory cap) returns NULL with every error written into err,
 * each as "script:line: message" on its own line. */
struct pt_policy *pt_policy_create(const struct pt_policy_options *opts, char *err,
                                   size_t errlen);

/* Accepts NULL. After pt_policy_watch() the watcher's handles are closed
 * and a reload still compiling on the thread pool is waited for by the loop,
 * which releases the memory: run the loop (uv_run) once more before
 * uv_loop_close(). */
void pt_policy_destroy(struct pt_policy *p);

/* Loads and validates a directory the way the server would (built-in
 * scripts, settings from the environment) and also calls every registered
 * hook once with sample inputs, checking the returns. Writes "ok: ..." or
 * every error, one per line, to report. Returns 0 when the policy is valid,
 * -EINVAL when not, another negative errno when the check itself failed.
 * For `pulltrace-server --check-policy DIR` (exit 0 / 1). */
int pt_policy_check_dir(const char *dir, FILE *report);
/* The same with explicit options (opts->dir is the directory checked). */
int pt_policy_check(const struct pt_policy_options *opts, FILE *report);

/* ---- Hooks ------------------------------------------------------------- */

/* rate: per-pull state kept by the caller inside its pull record.
 * Zero-initialise it when the pull appears; release with
 * pt_policy_rate_state_clear() when the pull leaves. It survives reloads.
 * It may point into itself: it is used where it is, never copied. */
struct pt_policy_rate_state {
  /* The hook's returned state, kept in C (so that it survives reloads): a
   * flat table of numbers and booleans (what a rate hook keeps, every report
   * of every pull in flight) packed as key/value pairs; anything else as
   * JSON. In `small` when it fits (the default hook's does), so that it is
   * read with the pull rather than from a block of its own. */
  char *script_state;
  size_t state_len;
  bool state_packed;
  char small[48];
  /* The C default's own EWMA, always updated so a fallback is continuous. */
  double c_time, c_bytes, c_rate;
  bool c_primed;
};
void pt_policy_rate_state_clear(struct pt_policy_rate_state *st);
/* The state as JSON text (malloc'ed; NULL when there is none or without
 * memory): for status and tests. */
char *pt_policy_rate_state_json(const struct pt_policy_rate_state *st);

struct pt_policy_rate_sample {
  const char *pull_id;
  const char *node;
  double now;         /* time of the sample */
  int64_t downloaded; /* bytes present so far (cached layers included) */
  int64_t total;      /* total bytes, negative when not known yet */
  bool stalled;       /* every active layer is stalled */
  bool completed;
};

struct pt_policy_rate_result {
  double bytes_per_sec; /* >= 0 */
  double eta_seconds;   /* >= 0, or -1 when unknown */
  bool fallback;        /* the C default was used for this call */
};

int pt_policy_rate(struct pt_policy *p, const struct pt_policy_rate_sample *sample,
                   struct pt_policy_rate_state *st, struct pt_policy_rate_result *out);

/* evict */
enum pt_policy_pull_phase {
  PT_POLICY_PULL_ACTIVE = 0,
  PT_POLICY_PULL_COMPLETED,
  PT_POLICY_PULL_FAILED,
  PT_POLICY_PULL_LOST,
};

struct pt_policy_evict_input {
  const char *pull_id;
  const char *node;
  const char *image_ref;    /* may be NULL */
  enum pt_policy_pull_phase phase;
  double started_at;
  double finished_at;       /* completed or failed at (0 while active) */
  double lost_at;           /* when it was marked lost (0 otherwise) */
  double last_seen_at;      /* last report that contained the pull */
  double node_last_report;  /* last report of the pull's node */
  double now;
};

enum pt_policy_evict_decision {
  PT_POLICY_KEEP = 0,
  PT_POLICY_EVICT,
  PT_POLICY_MARK_LOST,
};

int pt_policy_evict(struct pt_policy *p, const struct pt_policy_evict_input *in,
                    enum pt_policy_evict_decision *out);

/* correlate.
 * pull:   {id, node, imageRef, manifestDigest, indexDigest, startedAt,
 *          completedAt, totalBytes, downloadedBytes, layers: [{digest, ...}]}
 * pods:   [{namespace, name, uid, node, containers: [{name, image}],
 *          initContainers: [...]}] candidate pods on the pull's node
 * events: [{namespace, pod, reason, message, firstTimestamp, lastTimestamp,
 *          count}] recent kubelet events on that node
 * Any of them may carry more members; scripts see them all. */
struct pt_policy_target {
  char *ns;
  char *pod;
  char *container;
};

struct pt_policy_correlation {
  struct pt_policy_target *targets;
  size_t n_targets;
  char *image_ref; /* full reference with tag from an event, or NULL */
  bool fallback;
};
void pt_policy_correlation_clear(struct pt_policy_correlation *c);

int pt_policy_correlate(struct pt_policy *p, const json_t *pull, const json_t *pods,
                        const json_t *events, struct pt_policy_correlation *out);

/* alerts: runs every `pulltrace.on(event_type, fn)` handler registered for
 * event_type (and for "*") with a copy of event, and passes each valid alert
 * to opts->alert_cb. The same alert (name and labels) is delivered at most
 * once per alertRepeat. Returns the number delivered, or a negative errno. */
int pt_policy_emit(struct pt_policy *p, const char *event_type, const json_t *event);

/* The identity of an alert: "<name>\x1f<labels as sorted compact JSON>", the
 * key of de-duplication (free() it; NULL without memory). */
char *pt_policy_alert_key(const char *name, const json_t *labels);

/* The condition of an alert cleared (the server resolved it): the same alert
 * (name and labels) is delivered again at once the next time a hook returns
 * it, instead of being suppressed until alertRepeat has passed. */
void pt_policy_alert_forget(struct pt_policy *p, const char *name, const json_t *labels);

/* Replaces the alert callback given in the options (cb NULL: alerts are only
 * counted). The server's store takes the alerts this way, since it exists
 * only after the policy. */
void pt_policy_set_alert_cb(struct pt_policy *p, pt_policy_alert_cb cb, void *ud);

/* True when the running policy has a handler for event_type (or for "*"), so
 * that the caller can skip building events nobody listens to (the server's
 * frequent pull.progress). The answer may change after a reload. */
bool pt_policy_listens(const struct pt_policy *p, const char *event_type);

/* ---- Reload ------------------------------------------------------------ */

/* Gives the policy its loop: from now on reloads run off it (read and
 * compiled on the loop's thread pool, swapped in on the loop), and opts->dir
 * is watched (policy/watch.h: ConfigMap symlink swaps, a periodic check every
 * reload_poll); a change schedules a reload, which builds only when the
 * scripts' contents differ from the running ones and from the last failed
 * attempt. Returns 0; -EINVAL without a directory or when already watching;
 * or the error of the directory watch, in which case the periodic check still
 * runs. */
int pt_policy_watch(struct pt_policy *p, uv_loop_t *loop);

/* Builds a complete new VM from the built-in scripts and the directory and
 * swaps it in; on failure the running policy stays and the error is kept in
 * the status, the log and the reload counters.
 * With a loop (pt_policy_watch) the reload is scheduled: returns 0 at once
 * and the old VM answers until the loop swaps the new one in (requests made
 * while one is being built are merged into one more build after it, which
 * builds only if the scripts changed meanwhile).
 * Without a loop (tools, tests) it runs now and returns 0 or a negative
 * errno (-EINVAL for a bad script), or -EBUSY when called from inside a hook
 * call (the alert callback). */
int pt_policy_reload(struct pt_policy *p);

/* ---- Status and counters (for /readyz and /metrics) -------------------- */

enum pt_policy_hook {
  PT_POLICY_HOOK_CORRELATE = 0,
  PT_POLICY_HOOK_RATE,
  PT_POLICY_HOOK_EVICT,
  PT_POLICY_HOOK_ALERT,
  PT_POLICY_HOOK_COUNT,
};
/* "correlate", "rate", "evict", "alert". */
const char *pt_policy_hook_name(enum pt_policy_hook hook);

struct pt_policy_status {
  bool loaded;            /* a policy is running (always true after create) */
  int last_reload;        /* 1 ok, 0 failed, -1 no reload attempted yet */
  double loaded_at;       /* when the running policy was loaded */
  double last_reload_at;  /* when the last reload was attempted (0 = never) */
  char error[2048];       /* why the last reload failed, "" otherwise */
  size_t n_scripts;       /* scripts in the running policy */
  bool reloading;         /* a reload is being built on the thread pool */
  /* The directory's scripts failed at creation and the built-in defaults run
   * (defaults_on_error), until a reload succeeds. */
  bool defaults_only;
  /* The first error of `error` taken apart ("script:line: message"): script
   * is "" and line 0 when the error names no script (an unreadable
   * directory), message is then the whole first line. */
  char error_script[128];
  int error_line;
  char error_message[512];
};
void pt_policy_status(const struct pt_policy *p, struct pt_policy_status *out);

/* The status plus the scripts of the running policy, for /readyz:
 * {"loaded":true,"lastReload":"ok|failed|none","error":...,"loadedAt":...,
 *  "scripts":[{"name":"rate.lua","origin":"builtin|<path>"}],
 *  "hooks":{"correlate":"correlate.lua",...}}. Caller owns the result. */
json_t *pt_policy_status_json(const struct pt_policy *p);

struct pt_policy_counters {
  uint64_t calls[PT_POLICY_HOOK_COUNT];     /* calls into a Lua hook */
  uint64_t errors[PT_POLICY_HOOK_COUNT];    /* of which fell back to the default */
  double seconds[PT_POLICY_HOOK_COUNT];     /* time spent in Lua, per hook */
  uint64_t reloads_ok, reloads_failed;
  uint64_t alerts_delivered, alerts_suppressed;
  size_t memory_bytes;                      /* the running VM's heap */
};
void pt_policy_counters(const struct pt_policy *p, struct pt_policy_counters *out);

/* Errors broken down for pulltrace_policy_errors_total{hook,script,reason}.
 * reason is "runtime", "budget", "memory" or "invalid_return". Script names
 * are file names, so the label set stays bounded. */
typedef void (*pt_policy_error_fn)(void *ud, const char *hook, const char *script,
                                   const char *reason, uint64_t count);
void pt_policy_foreach_error(const struct pt_policy *p, pt_policy_error_fn fn, void *ud);

#endif
