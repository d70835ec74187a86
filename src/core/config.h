/* Configuration from environment variables, described by tables.
 *
 * Every variable of both daemons is one struct pt_config_var in a table: the
 * server's (src/server/server.c), the policy host's (src/policy/options.c),
 * the agent's (src/agent/agent.c). An entry says the variable's name, type,
 * default, bounds and help text and where its parsed value lives inside the
 * owner's config struct. pt_config_load() fills the struct from the
 * environment and fails with a message naming the variable; --help prints
 * the same tables, and spec/tools/check_config_docs.py checks
 * docs/configuration.md against that output, so the parser, --help and the
 * documentation cannot drift apart. */
#ifndef PT_CORE_CONFIG_H
#define PT_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum pt_config_type {
  PT_CFG_STRING,   /* const char * (points into the environment or the default) */
  PT_CFG_DURATION, /* double seconds, Go syntax: "500ms", "2s", "1m30s", "1h", plus "d" (days) */
  PT_CFG_INT,      /* long */
  PT_CFG_BOOL,     /* bool: true/false/1/0/yes/no */
  PT_CFG_LOGLEVEL, /* enum pt_log_level */
  PT_CFG_ADDR,     /* struct pt_addr: "host:port" or ":port" */
  PT_CFG_ENUM,     /* const char *, one of `choices` */
  PT_CFG_URL,      /* const char *, an http:// or https:// URL */
  PT_CFG_PREFIX,   /* a family NAME<key>=value, read by its owner: not loaded, only documented */
};

struct pt_addr {
  char host[256]; /* empty means every interface */
  int port;
  bool set;       /* parsed from a value: an optional address left empty stays false */
};

struct pt_config_var {
  const char *name;
  enum pt_config_type type;
  const char *def;  /* NULL = no default */
  bool required;    /* empty or unset is an error */
  size_t offset;    /* offsetof(your_config, field) */
  /* Bounds for DURATION (seconds) and INT; the longest value in bytes for
   * STRING and URL (max only). Both 0 = unbounded. */
  double min, max;
  const char *help;
  const char *choices; /* ENUM: the accepted values, "auto|on|off" */
  const char *setting; /* the value's name for its consumer, if it has another
                          one (the policy's pulltrace.settings.<setting>) */
};

/* Parses a Go-style duration ("300ms", "1.5s", "2m", "1h30m", "0"), plus "7d" (days). Negative
 * durations are rejected. Returns 0 or -EINVAL. */
int pt_duration_parse(const char *s, double *out_seconds);

/* Parses "host:port", ":port", "[v6]:port". Returns 0 or -EINVAL. */
int pt_addr_parse(const char *s, struct pt_addr *out);

/* Parses one value of variable v into field (the variable's place in its
 * config struct). Returns 0, or -EINVAL with "NAME: reason" in err. */
int pt_config_parse(const struct pt_config_var *v, const char *value, void *field, char *err,
                    size_t errlen);

/* Loads every variable of the table (terminated by a NULL name) into cfg:
 * the environment's value, else the default; unset strings without a default
 * are NULL. `getenv_fn` may be NULL for getenv(); tests pass their own. On
 * error returns -EINVAL and writes "NAME: reason" into err. */
int pt_config_load(const struct pt_config_var *vars, void *cfg,
                   const char *(*getenv_fn)(const char *name), char *err, size_t errlen);
/* The same from an environment block like `environ` (NULL = environ). */
int pt_config_load_envp(const struct pt_config_var *vars, void *cfg, char *const *envp,
                        char *err, size_t errlen);
/* The value of name in envp (NULL = environ), or NULL. */
const char *pt_config_getenv(char *const *envp, const char *name);

/* Prints "title:" and one line per variable: name, help, then the default
 * or "(required)". */
void pt_config_print_help(FILE *out, const char *title, const struct pt_config_var *vars);

/* The variable's type and range as --help prints them between brackets and
 * docs/configuration.md's "type" column shows them: "integer, 1 to 4096",
 * "duration, 100ms to 1h", "one of auto, on, off", "string". */
void pt_config_type_text(const struct pt_config_var *v, char *out, size_t n);

#endif
