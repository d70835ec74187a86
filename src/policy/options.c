/* The policy's configuration: its table of environment variables (one
 * mechanism with the daemons' own tables, core/config.h), the options built
 * from them, and the built-in settings every VM's scripts see. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "policy/internal.h"

#define ENV(field) offsetof(struct policy_env, field)

const struct pt_config_var pt_policy_config_vars[] = {
  {"PULLTRACE_POLICY_DIR", PT_CFG_STRING, NULL, false, ENV(dir), 0, 0,
   "Directory of Lua policy scripts overriding/extending the built-in ones (reloaded on change)",
   NULL, NULL},
  {"PULLTRACE_HISTORY_TTL", PT_CFG_DURATION, "30m", false, ENV(set.history_ttl), 0, 30 * 86400,
   "How long finished pulls stay in the tables (default eviction policy)", NULL, "historyTTL"},
  {"PULLTRACE_NODE_LOST_GRACE", PT_CFG_DURATION, "2m", false, ENV(set.node_lost_grace), 1, 86400,
   "Silence after which a node is lost and its in-flight pulls become lost", NULL,
   "nodeLostGrace"},
  {"PULLTRACE_RATE_HALF_LIFE", PT_CFG_DURATION, "10s", false, ENV(set.rate_half_life), 0.001,
   86400, "Half-life of the default rate hook's moving average (above zero)", NULL,
   "rateHalfLife"},
  {"PULLTRACE_STALL_ALERT_AFTER", PT_CFG_DURATION, "2m", false, ENV(set.stall_alert_after), 0, 0,
   "Stalled time before the default PullStalled alert", NULL, "stallAlertAfter"},
  {"PULLTRACE_ALERT_REPEAT", PT_CFG_DURATION, "1h", false, ENV(set.alert_repeat), 0, 0,
   "While active, the same alert (name and labels) is delivered at most once per this", NULL, "alertRepeat"},
  {"PULLTRACE_SLOW_PULL_FACTOR", PT_CFG_INT, "3", false, ENV(set.slow_pull_factor), 2, 1000,
   "A pull in flight is slow (event pull.slow, default alert PullSlow) once it has run this many times its "
   "image's usual time (the median of its finished pulls in the history)", NULL, "slowPullFactor"},
  {"PULLTRACE_SLOW_PULL_MIN_PULLS", PT_CFG_INT, "5", false, ENV(set.slow_pull_min_pulls), 1, 100,
   "Finished pulls of an image the history must hold before its pulls can be slow", NULL, "slowPullMinPulls"},
  {"PULLTRACE_SLOW_PULL_MIN_DURATION", PT_CFG_DURATION, "30s", false, ENV(set.slow_pull_min_duration), 0, 86400,
   "A pull is never slow before it has run this long, however quick its image usually is", NULL,
   "slowPullMinDuration"},
  {"PULLTRACE_POLICY_INSTRUCTION_BUDGET", PT_CFG_INT, "1000000", false, ENV(budget), 1000, INT_MAX,
   "Lua instructions per hook call; over it the call falls back to the default decision", NULL,
   NULL},
  {"PULLTRACE_POLICY_MEMORY_LIMIT", PT_CFG_INT, "64", false, ENV(memory_mib), 1, 4096,
   "Memory cap of the Lua VM in MiB", NULL, NULL},
  {"PULLTRACE_POLICY_SETTING_", PT_CFG_PREFIX, NULL, false, 0, 0, 0,
   "Any other setting, read by scripts as pulltrace.settings.<key> (1-63 letters, digits or _)",
   NULL, NULL},
  {NULL, 0, NULL, false, 0, 0, 0, NULL, NULL, NULL},
};

void policy_env_defaults(struct policy_env *e)
{
  static char *const empty[] = {NULL};
  char err[256];
  memset(e, 0, sizeof(*e));
  /* Cannot fail: the defaults are valid (spec/unit/policy_hooks.c). */
  pt_config_load_envp(pt_policy_config_vars, e, empty, err, sizeof(err));
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

static bool setting_name_ok(const char *key, size_t klen)
{
  if (klen == 0 || klen >= sizeof(((struct pt_policy_options *)0)->key_storage[0]))
    return false;
  for (size_t i = 0; i < klen; i++)
    if (!(key[i] == '_' || (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= 'A' && key[i] <= 'Z') ||
          (key[i] >= '0' && key[i] <= '9')))
      return false;
  return true;
}

int pt_policy_options_from_env(struct pt_policy_options *o, char **envp, char *err, size_t errlen)
{
  memset(o, 0, sizeof(*o));
  struct policy_env env;
  int rc = pt_config_load_envp(pt_policy_config_vars, &env, envp, err, errlen);
  if (rc)
    return rc;
  o->dir = env.dir;
  o->instruction_budget = (uint64_t)env.budget;
  o->memory_limit = (size_t)env.memory_mib << 20;
  /* Only the settings the environment sets: the others get their defaults
   * in pt_policy_create(), also for callers that build options by hand. */
  for (const struct pt_config_var *v = pt_policy_config_vars; v->name; v++) {
    const char *val = v->setting ? pt_config_getenv(envp, v->name) : NULL;
    if (val && *val)
      set_setting(o, v->setting, val);
  }
  static const char prefix[] = "PULLTRACE_POLICY_SETTING_";
  extern char **environ;
  for (char **e = envp ? envp : environ; *e; e++) {
    if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0)
      continue;
    const char *key = *e + sizeof(prefix) - 1;
    const char *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : 0;
    if (!setting_name_ok(key, klen)) {
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

/* Appends copies of key and value to the policy's settings (room made by
 * the caller). */
static int copy_setting(struct vm_config *c, struct pt_policy_setting *settings, const char *key,
                        const char *value)
{
  char *k = strdup(key), *v = strdup(value);
  settings[c->n_settings].key = k;
  settings[c->n_settings].value = v;
  c->n_settings++;
  return k && v ? 0 : -ENOMEM;
}

int policy_settings_init(struct pt_policy *p, const struct pt_policy_options *opts, char *err,
                         size_t errlen)
{
  size_t builtin = 0;
  for (const struct pt_config_var *v = pt_policy_config_vars; v->name; v++)
    builtin += v->setting != NULL;
  struct pt_policy_setting *settings = calloc(opts->n_settings + builtin, sizeof(*settings));
  if (!settings)
    goto oom;
  struct vm_config *c = &p->vmc;
  c->settings = settings;
  for (size_t i = 0; i < opts->n_settings; i++) {
    const struct pt_policy_setting *s = &opts->settings[i];
    if (s->key && s->value && copy_setting(c, settings, s->key, s->value))
      goto oom;
  }
  /* The built-in settings: parsed by the same table entries as their
   * variables, and handed to the scripts with their defaults when unset, so
   * the defaults are written once (in the table above). */
  struct policy_env env;
  memset(&env, 0, sizeof(env));
  for (const struct pt_config_var *v = pt_policy_config_vars; v->name; v++) {
    if (!v->setting)
      continue;
    const char *val = NULL;
    for (size_t i = 0; i < c->n_settings && !val; i++)
      if (strcmp(settings[i].key, v->setting) == 0)
        val = settings[i].value;
    if (!val) {
      if (copy_setting(c, settings, v->setting, v->def))
        goto oom;
      val = v->def;
    }
    char why[512];
    if (pt_config_parse(v, val, (char *)&env + v->offset, why, sizeof(why))) {
      snprintf(err, errlen, "policy setting %s (%s)", v->setting, why);
      return -EINVAL;
    }
  }
  p->set = env.set;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -ENOMEM;
}

int pt_policy_setting_number(const struct pt_policy *p, const char *key, double *out)
{
  if (!p || !key || !out)
    return -EINVAL;
  for (const struct pt_config_var *v = pt_policy_config_vars; v->name; v++) {
    if (!v->setting || strcmp(v->setting, key) != 0)
      continue;
    /* The table's offsets are into struct policy_env, whose `set` member p
     * keeps. */
    const char *field = (const char *)&p->set + v->offset - offsetof(struct policy_env, set);
    if (v->type == PT_CFG_DURATION)
      *out = *(const double *)field;
    else if (v->type == PT_CFG_INT)
      *out = (double)*(const long *)field;
    else
      return -ENOENT;
    return 0;
  }
  return -ENOENT;
}
