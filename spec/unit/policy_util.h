/* Helpers shared by the policy host's unit tests: temporary script
 * directories and one-line hook calls. */
#ifndef PT_SPEC_POLICY_UTIL_H
#define PT_SPEC_POLICY_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"

/* Creates an empty temporary directory; returns a heap path. */
static inline char *tdir_new(void)
{
  char tmpl[] = "/tmp/pt-policy-XXXXXX";
  char *d = mkdtemp(tmpl);
  return d ? strdup(d) : NULL;
}

static inline void tdir_write(const char *dir, const char *name, const char *src)
{
  char path[8400];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    abort();
  fputs(src, f);
  fclose(f);
}

static inline void tdir_remove(char *dir)
{
  char cmd[4200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    abort();
  free(dir);
}

/* Options for a test VM: no built-in scripts unless asked, small limits. */
static inline struct pt_policy_options topts(const char *dir)
{
  struct pt_policy_options o;
  memset(&o, 0, sizeof(o));
  o.dir = dir;
  o.no_builtin = true;
  o.instruction_budget = 200000;
  o.memory_limit = (size_t)16 << 20;
  o.load_deadline = 0.5;
  return o;
}

/* Loads one script as t.lua with a load deadline in seconds; returns the
 * policy or NULL with err filled. */
static inline struct pt_policy *load_one_deadline(const char *src, double deadline, char *err,
                                                  size_t errlen)
{
  char *dir = tdir_new();
  tdir_write(dir, "t.lua", src);
  struct pt_policy_options o = topts(dir);
  o.load_deadline = deadline;
  struct pt_policy *p = pt_policy_create(&o, err, errlen);
  tdir_remove(dir);
  return p;
}

static inline struct pt_policy *load_one(const char *src, char *err, size_t errlen)
{
  return load_one_deadline(src, 0.5, err, errlen);
}

static inline struct pt_policy_rate_result rate_once(struct pt_policy *p, double now,
                                                     int64_t bytes, int64_t total,
                                                     struct pt_policy_rate_state *st)
{
  struct pt_policy_rate_sample s = {"n/p-1", "n", now, bytes, total, false, false};
  struct pt_policy_rate_result r;
  memset(&r, 0, sizeof(r));
  if (pt_policy_rate(p, &s, st, &r) != 0)
    abort();
  return r;
}

struct err_seen {
  char hook[32], script[64], reason[32];
  unsigned long long count;
};

static inline void last_error_cb(void *ud, const char *hook, const char *script,
                                 const char *reason, uint64_t count)
{
  struct err_seen *e = ud;
  snprintf(e->hook, sizeof(e->hook), "%s", hook);
  snprintf(e->script, sizeof(e->script), "%s", script);
  snprintf(e->reason, sizeof(e->reason), "%s", reason);
  e->count = count;
}

#endif
