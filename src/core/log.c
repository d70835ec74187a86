#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"

static enum pt_log_level g_level = PT_LOG_INFO;
static enum pt_log_format g_format = PT_LOG_JSON;
static const char *g_component = "pulltrace";

static const char *const names[] = {"debug", "info", "warn", "error"};

int pt_log_level_parse(const char *s, enum pt_log_level *out)
{
  if (!s)
    return -EINVAL;
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, names[i]) == 0) {
      *out = (enum pt_log_level)i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = PT_LOG_WARN;
    return 0;
  }
  return -EINVAL;
}

const char *pt_log_level_name(enum pt_log_level level)
{
  return (unsigned)level < 4 ? names[level] : "info";
}

void pt_log_setup(const char *component, enum pt_log_level level, enum pt_log_format format)
{
  g_component = component;
  g_level = level;
  g_format = format;
}

int pt_log_enabled(enum pt_log_level level)
{
  return level >= g_level;
}

static void write_logfmt(json_t *rec)
{
  const char *key;
  json_t *v;
  int first = 1;
  json_object_foreach(rec, key, v) {
    fprintf(stderr, "%s%s=", first ? "" : " ", key);
    first = 0;
    if (json_is_string(v)) {
      const char *s = json_string_value(v);
      if (strpbrk(s, " =\"") || !*s) {
        char *q = json_dumps(v, JSON_ENCODE_ANY);
        fputs(q ? q : "\"\"", stderr);
        free(q);
      } else {
        fputs(s, stderr);
      }
    } else {
      char *q = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
      fputs(q ? q : "null", stderr);
      free(q);
    }
  }
  fputc('\n', stderr);
}

void pt_log_json(enum pt_log_level level, const char *msg, json_t *fields)
{
  char ts[40];
  pt_time_format(pt_clock_now(), ts, sizeof(ts));
  json_t *rec = json_object();
  json_object_set_new(rec, "ts", json_string(ts));
  json_object_set_new(rec, "level", json_string(pt_log_level_name(level)));
  json_object_set_new(rec, "component", json_string(g_component));
  json_object_set_new(rec, "msg", json_string(msg ? msg : ""));
  if (fields && json_is_object(fields))
    json_object_update_missing(rec, fields);
  json_decref(fields);

  flockfile(stderr);
  if (g_format == PT_LOG_LOGFMT) {
    write_logfmt(rec);
  } else {
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
      fputs(line, stderr);
      fputc('\n', stderr);
      free(line);
    }
  }
  fflush(stderr);
  funlockfile(stderr);
  json_decref(rec);
}
