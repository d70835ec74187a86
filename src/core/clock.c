#include "core/clock.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double pt_clock_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double pt_clock_mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* RFC 3339 UTC with `digits` fractional digits (3 or 6). */
static char *format_time(double t, int digits, char *buf, size_t len)
{
  if (!isfinite(t) || t < 0)
    t = 0;
  time_t secs = (time_t)floor(t);
  long scale = digits == 6 ? 1000000 : 1000;
  long frac = (long)((t - (double)secs) * (double)scale);
  if (frac > scale - 1)
    frac = scale - 1;
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%0*ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, digits, frac);
  return buf;
}

char *pt_time_format(double t, char *buf, size_t len)
{
  return format_time(t, 3, buf, len);
}

char *pt_time_format_us(double t, char *buf, size_t len)
{
  return format_time(t, 6, buf, len);
}

static int digits(const char **p, int n, int *out)
{
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)**p))
      return -EINVAL;
    v = v * 10 + (**p - '0');
    (*p)++;
  }
  *out = v;
  return 0;
}

int pt_time_parse(const char *s, double *out)
{
  if (!s)
    return -EINVAL;
  const char *p = s;
  int y, mo, d, h, mi, se;
  if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
      digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
    return -EINVAL;
  p++;
  if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
    return -EINVAL;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return -EINVAL;
  double frac = 0;
  if (*p == '.') {
    p++;
    double scale = 0.1;
    if (!isdigit((unsigned char)*p))
      return -EINVAL;
    while (isdigit((unsigned char)*p)) {
      frac += (*p - '0') * scale;
      scale /= 10;
      p++;
    }
  }
  long offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p == '-' ? -1 : 1, oh, om;
    p++;
    if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
      return -EINVAL;
    offset = sign * (oh * 3600L + om * 60L);
  } else {
    return -EINVAL;
  }
  if (*p)
    return -EINVAL;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  time_t t = timegm(&tm);
  *out = (double)t - (double)offset + frac;
  return 0;
}
