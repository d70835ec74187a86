#include "core/json_writer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void pt_jsonw_init(struct pt_jsonw *w, struct pt_buf *out)
{
  memset(w, 0, sizeof(*w));
  w->out = out;
}

static void put(struct pt_jsonw *w, const char *s, size_t n)
{
  struct pt_buf *b = w->out;
  if (b->data && b->len + n < b->cap) { /* the common case, inline */
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return;
  }
  pt_buf_append(b, s, n);
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
    if (*p >= 0x20 && *p != '"' && *p != '\\') /* most characters: one branch each */
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
  char buf[64];
  size_t n = strlen(key);
  sep(w);
  if (n + 3 > sizeof(buf)) {
    quoted(w, key);
    put(w, ":", 1);
  } else {
    /* Member names are the program's own: one append, no escaping. */
    buf[0] = '"';
    memcpy(buf + 1, key, n);
    buf[n + 1] = '"';
    buf[n + 2] = ':';
    put(w, buf, n + 3);
  }
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

/* Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar;
 * H. Hinnant's civil_from_days): integer steps, no gmtime or printf on the
 * hot path. */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  unsigned doe = (unsigned)(days - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *two(char *p, unsigned v)
{
  p[0] = (char)('0' + v / 10 % 10);
  p[1] = (char)('0' + v % 10);
  return p + 2;
}

void pt_jsonw_time(struct pt_jsonw *w, double t)
{
  if (!(t > 0) || !isfinite(t) || t >= 253402300800.0) { /* year 10000 and later: not RFC 3339 */
    pt_jsonw_null(w);
    return;
  }
  int64_t secs = (int64_t)floor(t);
  int ms = (int)((t - (double)secs) * 1000.0);
  if (ms > 999)
    ms = 999;
  int64_t y;
  unsigned mo, d, sod = (unsigned)(secs % 86400);
  civil(secs / 86400, &y, &mo, &d);
  char buf[32], *p = buf;
  *p++ = '"';
  p = two(p, (unsigned)(y / 100));
  p = two(p, (unsigned)(y % 100));
  *p++ = '-';
  p = two(p, mo);
  *p++ = '-';
  p = two(p, d);
  *p++ = 'T';
  p = two(p, sod / 3600);
  *p++ = ':';
  p = two(p, sod / 60 % 60);
  *p++ = ':';
  p = two(p, sod % 60);
  *p++ = '.';
  *p++ = (char)('0' + ms / 100);
  p = two(p, (unsigned)ms % 100);
  *p++ = 'Z';
  *p++ = '"';
  sep(w);
  put(w, buf, (size_t)(p - buf));
  w->comma = true;
}

void pt_jsonw_raw(struct pt_jsonw *w, const char *json, size_t len)
{
  sep(w);
  put(w, json, len);
  w->comma = true;
}
