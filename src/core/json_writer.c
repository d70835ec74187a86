#include "core/json_writer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void pt_jsonw_init(struct pt_jsonw *w, struct pt_buf *out)
{
  memset(w, 0, sizeof(*w));
  w->out = out;
  w->time_secs = -1;
}

static void put(struct pt_jsonw *w, const char *s, size_t n)
{
  pt_buf_append(w->out, s, n);
}

/* Before a value or a member: the separator from the previous one. */
static void sep(struct pt_jsonw *w)
{
  if (w->comma)
    put(w, ",", 1);
}

void pt_jsonw_object_open(struct pt_jsonw *w)
{
  sep(w);
  put(w, "{", 1);
  w->comma = false;
}

void pt_jsonw_object_close(struct pt_jsonw *w)
{
  put(w, "}", 1);
  w->comma = true;
}

void pt_jsonw_array_open(struct pt_jsonw *w)
{
  sep(w);
  put(w, "[", 1);
  w->comma = false;
}

void pt_jsonw_array_close(struct pt_jsonw *w)
{
  put(w, "]", 1);
  w->comma = true;
}

static void quoted(struct pt_jsonw *w, const char *s)
{
  static const char hex[] = "0123456789abcdef";
  put(w, "\"", 1);
  const char *run = s;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p != '"' && *p != '\\')
      continue;
    put(w, run, (size_t)((const char *)p - run));
    char esc[6] = {'\\', (char)*p, 0, 0, 0, 0};
    size_t n = 2;
    switch (*p) {
    case '"': case '\\': break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      esc[1] = 'u';
      esc[2] = '0';
      esc[3] = '0';
      esc[4] = hex[*p >> 4];
      esc[5] = hex[*p & 15];
      n = 6;
    }
    put(w, esc, n);
    run = (const char *)p + 1;
  }
  put(w, run, strlen(run));
  put(w, "\"", 1);
}

void pt_jsonw_key(struct pt_jsonw *w, const char *key)
{
  sep(w);
  quoted(w, key);
  put(w, ":", 1);
  w->comma = false;
}

void pt_jsonw_string(struct pt_jsonw *w, const char *s)
{
  if (!s) {
    pt_jsonw_null(w);
    return;
  }
  sep(w);
  quoted(w, s);
  w->comma = true;
}

/* Decimal digits of v into the end of buf; returns the first digit. */
static char *digits(uint64_t v, char *end)
{
  do {
    *--end = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return end;
}

void pt_jsonw_int(struct pt_jsonw *w, int64_t v)
{
  char buf[24];
  char *end = buf + sizeof(buf);
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  char *p = digits(u, end);
  if (v < 0)
    *--p = '-';
  sep(w);
  put(w, p, (size_t)(end - p));
  w->comma = true;
}

void pt_jsonw_real(struct pt_jsonw *w, double v)
{
  if (!isfinite(v)) {
    pt_jsonw_null(w); /* JSON has no NaN or infinity */
    return;
  }
  char buf[40];
  int n = snprintf(buf, sizeof(buf) - 2, "%.12g", v);
  if (!strpbrk(buf, ".eE")) {
    buf[n++] = '.';
    buf[n++] = '0';
  }
  sep(w);
  put(w, buf, (size_t)n);
  w->comma = true;
}

void pt_jsonw_real2(struct pt_jsonw *w, double v)
{
  double c = round(v * 100.0);
  if (!isfinite(c) || fabs(c) >= 1e12) {
    pt_jsonw_real(w, c / 100.0);
    return;
  }
  /* Hundredths as an integer: no printf on the hot path. */
  int64_t h = (int64_t)c;
  uint64_t u = h < 0 ? (uint64_t)-h : (uint64_t)h;
  char buf[32];
  char *end = buf + sizeof(buf);
  unsigned frac = (unsigned)(u % 100);
  char *p = end;
  if (frac % 10) {
    *--p = (char)('0' + frac % 10);
    *--p = (char)('0' + frac / 10);
  } else {
    *--p = (char)('0' + frac / 10);
  }
  *--p = '.';
  p = digits(u / 100, p);
  if (h < 0)
    *--p = '-';
  sep(w);
  put(w, p, (size_t)(end - p));
  w->comma = true;
}

void pt_jsonw_bool(struct pt_jsonw *w, bool v)
{
  sep(w);
  put(w, v ? "true" : "false", v ? 4 : 5);
  w->comma = true;
}

void pt_jsonw_null(struct pt_jsonw *w)
{
  sep(w);
  put(w, "null", 4);
  w->comma = true;
}

void pt_jsonw_time(struct pt_jsonw *w, double t)
{
  if (!(t > 0) || !isfinite(t)) {
    pt_jsonw_null(w);
    return;
  }
  int64_t secs = (int64_t)floor(t);
  int ms = (int)((t - (double)secs) * 1000.0);
  if (ms > 999)
    ms = 999;
  if (secs != w->time_secs) {
    /* The times of one document are mostly in the same second. */
    time_t tt = (time_t)secs;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(w->time_prefix, sizeof(w->time_prefix), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    w->time_secs = secs;
  }
  char buf[80];
  size_t n = strlen(w->time_prefix);
  buf[0] = '"';
  memcpy(buf + 1, w->time_prefix, n);
  n++;
  buf[n++] = '.';
  buf[n++] = (char)('0' + ms / 100);
  buf[n++] = (char)('0' + ms / 10 % 10);
  buf[n++] = (char)('0' + ms % 10);
  buf[n++] = 'Z';
  buf[n++] = '"';
  sep(w);
  put(w, buf, n);
  w->comma = true;
}

void pt_jsonw_raw(struct pt_jsonw *w, const char *json, size_t len)
{
  sep(w);
  put(w, json, len);
  w->comma = true;
}
