/* Configuration from environment variables, described by a table.
 *
 * Each daemon declares a table of struct pt_config_var that says the variable's
 * name, type, default and help text and where its parsed value lives inside
 * the daemon's config struct. pt_config_load() fills the struct from the
 * environment and fails with a message naming the variable; --help prints the
 * same table, so the documentation and the parser cannot drift apart. */
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
};

struct pt_addr {
  char host[256]; /* empty means every interface */
  int port;
};

struct pt_config_var {
  const char *name;
  enum pt_config_type type;
  const char *def;  /* NULL = no default */
  bool required;    /* empty or unset is an error */
  size_t offset;    /* offsetof(your_config, field) */
  double min, max;  /* bounds for DURATION (seconds) and INT; both 0 = unbounded */
  const char *help;
};

/* Parses a Go-style duration ("300ms", "1.5s", "2m", "1h30m", "0"), plus "7d" (days). Negative
 * durations are rejected. Returns 0 or -EINVAL. */
int pt_duration_parse(const char *s, double *out_seconds);

/* Parses "host:port", ":port", "[v6]:port". Returns 0 or -EINVAL. */
int pt_addr_parse(const char *s, struct pt_addr *out);

/* Loads every variable of the table (terminated by a NULL name) into cfg.
 * `getenv_fn` may be NULL for getenv(); tests pass their own. On error returns
 * -EINVAL and writes "NAME: reason" into err. */
int pt_config_load(const struct pt_config_var *vars, void *cfg,
                   const char *(*getenv_fn)(const char *name), char *err, size_t errlen);

void pt_config_print_help(FILE *out, const struct pt_config_var *vars);

#endif
