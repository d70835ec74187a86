/* The policy's status and counters: hook errors (counted per hook, script
 * and reason, logged at most once a minute each), and what /readyz and
 * /metrics show. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"

#define MAX_ERR_ENTRIES 256
/* Repeated errors of one hook and script are logged once a minute. */
#define ERROR_LOG_INTERVAL 60.0

static const char *const hook_names[] = {"correlate", "rate", "evict", "alert"};
static const char *const reason_names[] = {"runtime", "budget", "memory", "invalid_return"};

const char *pt_policy_hook_name(enum pt_policy_hook hook)
{
  return (unsigned)hook < PT_POLICY_HOOK_COUNT ? hook_names[hook] : "unknown";
}

/* ---- errors and counters -------------------------------------------------- */

void policy_record_error(struct pt_policy *p, enum pt_policy_hook hook, const char *script,
                         const struct call_result *res)
{
  if (!script)
    script = "?";
  p->counters.errors[hook]++;
  snprintf(p->last_error, sizeof(p->last_error), "%s", res->msg);
  snprintf(p->last_error_hook, sizeof(p->last_error_hook), "%s", pt_policy_hook_name(hook));
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
    fprintf(p->check_report, "error: %s hook: %s\n", pt_policy_hook_name(hook), res->msg);
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
              "{s:s, s:s, s:s, s:s, s:s, s:I}", "hook", pt_policy_hook_name(hook), "script", script,
              "reason", reason_names[res->reason], "error", res->msg, "traceback",
              res->trace ? res->trace : res->msg, "suppressed",
              (json_int_t)(e ? e->unlogged : 0));
  if (e)
    e->unlogged = 0;
}

/* ---- status and counters ------------------------------------------------------- */

/* The first line of a build error, "script:line: message" as vm.c writes
 * it, into its parts; a line of another shape is all message. */
static void split_error(const char *err, struct pt_policy_status *out)
{
  size_t len = strcspn(err, "\n");
  const char *colon = memchr(err, ':', len);
  char *end = NULL;
  long line = colon ? strtol(colon + 1, &end, 10) : 0;
  if (colon && colon > err && (size_t)(colon - err) < sizeof(out->error_script) && end != colon + 1 &&
      *end == ':' && line > 0 && line < 1000000000) {
    snprintf(out->error_script, sizeof(out->error_script), "%.*s", (int)(colon - err), err);
    out->error_line = (int)line;
    const char *msg = end + 1 + (end[1] == ' ');
    snprintf(out->error_message, sizeof(out->error_message), "%.*s", (int)(err + len - msg), msg);
    return;
  }
  snprintf(out->error_message, sizeof(out->error_message), "%.*s", (int)len, err);
}

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
  out->defaults_only = p->defaults_only;
  split_error(p->reload_error, out);
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
    json_object_set_new(hooks, pt_policy_hook_name((enum pt_policy_hook)i),
                        vm->slot_script[i] ? json_string(vm->slot_script[i]) : json_null());
  for (size_t i = 0; i < vm->n_handlers; i++)
    json_array_append_new(alerts, json_pack("{s:s, s:s}", "event", vm->handlers[i].event_type,
                                            "script", vm->handlers[i].script));
  json_object_set_new(hooks, "alerts", alerts);
  json_t *last_error = p->last_error[0]
                           ? json_pack("{s:s, s:s, s:o}", "hook", p->last_error_hook, "message",
                                       p->last_error, "at", time_or_null(p->last_error_at))
                           : json_null();
  return json_pack("{s:b, s:b, s:s, s:s?, s:o, s:o, s:o, s:o, s:o, s:I}", "loaded", vm != NULL,
                   "defaultsOnly", p->defaults_only,
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
    fn(ud, pt_policy_hook_name(p->errs[i].hook), p->errs[i].script, reason_names[p->errs[i].reason],
       p->errs[i].count);
}
