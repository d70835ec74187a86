#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

int pt_duration_parse(const char *s, double *out_seconds)
{
  if (!s || !*s)
    return -EINVAL;
  if (strcmp(s, "0") == 0) {
    *out_seconds = 0;
    return 0;
  }
  const char *p = s;
  double total = 0;
  while (*p) {
    /* Go's syntax: digits with an optional fraction, then a unit. strtod
     * alone would also take exponents, hex and "inf". */
    const char *q = p;
    int ndigits = 0;
    while (isdigit((unsigned char)*q)) { q++; ndigits++; }
    if (*q == '.') {
      q++;
      while (isdigit((unsigned char)*q)) { q++; ndigits++; }
    }
    if (ndigits == 0 || q - p > 40)
      return -EINVAL;
    char num[48];
    memcpy(num, p, (size_t)(q - p));
    num[q - p] = '\0';
    double v = strtod(num, NULL);
    p = q;
    double unit;
    if (strncmp(p, "ns", 2) == 0) { unit = 1e-9; p += 2; }
    else if (strncmp(p, "us", 2) == 0) { unit = 1e-6; p += 2; }
    else if (strncmp(p, "\xc2\xb5s", 3) == 0) { unit = 1e-6; p += 3; }
    else if (strncmp(p, "ms", 2) == 0) { unit = 1e-3; p += 2; }
    else if (*p == 's') { unit = 1; p++; }
    else if (*p == 'm') { unit = 60; p++; }
    else if (*p == 'h') { unit = 3600; p++; }
    else if (*p == 'd') { unit = 86400; p++; } /* not Go's: for retention periods ("7d") */
    else return -EINVAL;
    total += v * unit;
  }
  if (!isfinite(total))
    return -EINVAL;
  *out_seconds = total;
  return 0;
}

int pt_addr_parse(const char *s, struct pt_addr *out)
{
  if (!s || !*s)
    return -EINVAL;
  const char *colon;
  const char *host = s;
  size_t hostlen;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return -EINVAL;
    host = s + 1;
    hostlen = (size_t)(close - host);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return -EINVAL;
    hostlen = (size_t)(colon - s);
    if (memchr(s, ':', hostlen))
      return -EINVAL; /* bare IPv6 needs brackets */
  }
  if (hostlen >= sizeof(out->host))
    return -EINVAL;
  const char *port = colon + 1;
  if (!*port)
    return -EINVAL;
  char *end;
  long v = strtol(port, &end, 10);
  if (*end || v < 0 || v > 65535)
    return -EINVAL;
  memcpy(out->host, host, hostlen);
  out->host[hostlen] = '\0';
  out->port = (int)v;
  out->set = true;
  return 0;
}

static int parse_bool(const char *s, bool *out)
{
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
    if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
  }
  return -EINVAL;
}

static bool is_choice(const char *choices, const char *val)
{
  size_t n = strlen(val);
  for (const char *c = choices; c && *c;) {
    size_t len = strcspn(c, "|");
    if (len == n && strncmp(c, val, n) == 0)
      return true;
    c += len + (c[len] == '|');
  }
  return false;
}

/* "a|b|c" as "a, b or c". */
static void choice_list(const char *choices, char *out, size_t outlen)
{
  out[0] = '\0';
  size_t used = 0;
  for (const char *c = choices; c && *c && used < outlen;) {
    size_t len = strcspn(c, "|");
    bool last = c[len] != '|';
    int n = snprintf(out + used, outlen - used, "%s%.*s", used == 0 ? "" : last ? " or " : ", ",
                     (int)len, c);
    if (n < 0)
      break;
    used += (size_t)n;
    c += len + !last;
  }
}

int pt_config_parse(const struct pt_config_var *v, const char *val, void *fieldp, char *err,
                    size_t errlen)
{
  char *field = fieldp;
  bool bounded = v->min != 0 || v->max != 0;
  switch (v->type) {
  case PT_CFG_STRING:
    if (v->max > 0 && strlen(val) > v->max) {
      snprintf(err, errlen, "%s: longer than %.0f characters", v->name, v->max);
      return -EINVAL;
    }
    *(const char **)field = val;
    break;
  case PT_CFG_URL:
    if (strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0) {
      snprintf(err, errlen, "%s: must start with http:// or https:// (got \"%s\")", v->name, val);
      return -EINVAL;
    }
    if (v->max > 0 && strlen(val) > v->max) {
      snprintf(err, errlen, "%s: longer than %.0f characters", v->name, v->max);
      return -EINVAL;
    }
    *(const char **)field = val;
    break;
  case PT_CFG_ENUM:
    if (!is_choice(v->choices, val)) {
      char list[256];
      choice_list(v->choices, list, sizeof(list));
      snprintf(err, errlen, "%s: must be %s (got \"%s\")", v->name, list, val);
      return -EINVAL;
    }
    *(const char **)field = val;
    break;
  case PT_CFG_DURATION: {
    double d;
    if (pt_duration_parse(val, &d)) {
      snprintf(err, errlen, "%s: invalid duration \"%s\" (use e.g. 500ms, 2s, 1m30s)", v->name, val);
      return -EINVAL;
    }
    if (bounded && (d < v->min || d > v->max)) {
      snprintf(err, errlen, "%s: %s is out of range (%gs to %gs)", v->name, val, v->min, v->max);
      return -EINVAL;
    }
    *(double *)field = d;
    break;
  }
  case PT_CFG_INT: {
    char *end;
    errno = 0;
    long n = strtol(val, &end, 10);
    if (errno || *end || end == val) {
      snprintf(err, errlen, "%s: invalid integer \"%s\"", v->name, val);
      return -EINVAL;
    }
    if (bounded && (n < v->min || n > v->max)) {
      snprintf(err, errlen, "%s: %ld is out of range (%.0f to %.0f)", v->name, n, v->min, v->max);
      return -EINVAL;
    }
    *(long *)field = n;
    break;
  }
  case PT_CFG_BOOL:
    if (parse_bool(val, (bool *)field)) {
      snprintf(err, errlen, "%s: invalid boolean \"%s\" (use true or false)", v->name, val);
      return -EINVAL;
    }
    break;
  case PT_CFG_LOGLEVEL: {
    enum pt_log_level lvl;
    if (pt_log_level_parse(val, &lvl)) {
      snprintf(err, errlen, "%s: invalid log level \"%s\" (use debug, info, warn or error)", v->name, val);
      return -EINVAL;
    }
    *(enum pt_log_level *)field = lvl;
    break;
  }
  case PT_CFG_ADDR:
    if (pt_addr_parse(val, (struct pt_addr *)field)) {
      snprintf(err, errlen, "%s: invalid address \"%s\" (use host:port or :port)", v->name, val);
      return -EINVAL;
    }
    break;
  case PT_CFG_PREFIX:
    break;
  }
  return 0;
}

typedef const char *(*lookup_fn)(void *ud, const char *name);

static int load(const struct pt_config_var *vars, void *cfg, lookup_fn lookup, void *ud, char *err,
                size_t errlen)
{
  for (const struct pt_config_var *v = vars; v->name; v++) {
    if (v->type == PT_CFG_PREFIX)
      continue;
    const char *val = lookup(ud, v->name);
    if (!val || !*val) {
      if (v->required) {
        snprintf(err, errlen, "%s: required but not set", v->name);
        return -EINVAL;
      }
      val = v->def;
    }
    char *field = (char *)cfg + v->offset;
    if (!val) {
      if (v->type == PT_CFG_STRING || v->type == PT_CFG_URL || v->type == PT_CFG_ENUM)
        *(const char **)field = NULL;
      continue;
    }
    int rc = pt_config_parse(v, val, field, err, errlen);
    if (rc)
      return rc;
  }
  return 0;
}

static const char *lookup_fn_call(void *ud, const char *name)
{
  const char *(*fn)(const char *) = *(const char *(**)(const char *))ud;
  return fn(name);
}

static const char *std_getenv(const char *name)
{
  return getenv(name);
}

int pt_config_load(const struct pt_config_var *vars, void *cfg,
                   const char *(*getenv_fn)(const char *name), char *err, size_t errlen)
{
  if (!getenv_fn)
    getenv_fn = std_getenv;
  return load(vars, cfg, lookup_fn_call, &getenv_fn, err, errlen);
}

extern char **environ;

const char *pt_config_getenv(char *const *envp, const char *name)
{
  size_t n = strlen(name);
  for (char *const *e = envp ? envp : environ; e && *e; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
      return *e + n + 1;
  return NULL;
}

static const char *lookup_envp(void *ud, const char *name)
{
  return pt_config_getenv(ud, name);
}

int pt_config_load_envp(const struct pt_config_var *vars, void *cfg, char *const *envp,
                        char *err, size_t errlen)
{
  return load(vars, cfg, lookup_envp, (void *)(envp ? envp : environ), err, errlen);
}

/* "90s" -> "1m30s"-free short forms: the largest whole unit ("2h", "50ms", "7d"). */
static void format_duration(double s, char *out, size_t n)
{
  static const struct { double secs; const char *unit; } units[] = {
      {86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (s >= units[i].secs && fmod(s, units[i].secs) == 0) {
      snprintf(out, n, "%.0f%s", s / units[i].secs, units[i].unit);
      return;
    }
  if (s == 0)
    snprintf(out, n, "0");
  else if (s < 1)
    snprintf(out, n, "%gms", s * 1000);
  else
    snprintf(out, n, "%gs", s);
}

void pt_config_type_text(const struct pt_config_var *v, char *out, size_t n)
{
  bool bounded = v->min != 0 || v->max != 0;
  char lo[32], hi[32];
  switch (v->type) {
  case PT_CFG_DURATION:
    format_duration(v->min, lo, sizeof(lo));
    format_duration(v->max, hi, sizeof(hi));
    if (bounded)
      snprintf(out, n, "duration, %s to %s", lo, hi);
    else
      snprintf(out, n, "duration");
    return;
  case PT_CFG_INT:
    if (bounded)
      snprintf(out, n, "integer, %.0f to %.0f", v->min, v->max);
    else
      snprintf(out, n, "integer");
    return;
  case PT_CFG_STRING:
  case PT_CFG_URL:
  case PT_CFG_PREFIX:
    if (v->max > 0)
      snprintf(out, n, "%s, at most %.0f bytes", v->type == PT_CFG_URL ? "URL" : "string", v->max);
    else
      snprintf(out, n, "%s", v->type == PT_CFG_URL ? "URL" : "string");
    return;
  case PT_CFG_BOOL:
    snprintf(out, n, "boolean");
    return;
  case PT_CFG_LOGLEVEL:
    snprintf(out, n, "one of debug, info, warn, error");
    return;
  case PT_CFG_ENUM: {
    /* "auto|on|off" -> "one of auto, on, off" (a | would end a Markdown table cell) */
    size_t k = (size_t)snprintf(out, n, "one of ");
    for (const char *c = v->choices ? v->choices : ""; *c && k + 3 < n; c++) {
      if (*c == '|') {
        out[k++] = ',';
        out[k++] = ' ';
      } else {
        out[k++] = *c;
      }
    }
    out[k < n ? k : n - 1] = '\0';
    return;
  }
  case PT_CFG_ADDR:
    snprintf(out, n, "address, host:port or :port");
    return;
  }
  snprintf(out, n, "string");
}

void pt_config_print_help(FILE *out, const char *title, const struct pt_config_var *vars)
{
  fprintf(out, "%s:\n", title);
  for (const struct pt_config_var *v = vars; v->name; v++) {
    char name[80], type[128];
    snprintf(name, sizeof(name), "%s%s", v->name, v->type == PT_CFG_PREFIX ? "<key>" : "");
    pt_config_type_text(v, type, sizeof(type));
    fprintf(out, "  %-36s %s [%s]", name, v->help ? v->help : "", type);
    if (v->required)
      fprintf(out, " (required)");
    else if (v->def && *v->def)
      fprintf(out, " (default %s)", v->def);
    fputc('\n', out);
  }
}
