/* Wall-clock and monotonic time, and RFC 3339 formatting. Times are double
 * seconds: wall-clock since the Unix epoch, monotonic since an arbitrary start. */
#ifndef PT_CORE_CLOCK_H
#define PT_CORE_CLOCK_H

#include <stddef.h>

double pt_clock_now(void);
double pt_clock_mono(void);

/* Formats t as RFC 3339 UTC with milliseconds ("2026-11-21T10:00:00.123Z").
 * buf needs at least 25 bytes. Returns buf. */
char *pt_time_format(double t, char *buf, size_t len);
/* The same with microseconds ("2026-11-21T10:00:00.123456Z"), as Kubernetes'
 * MicroTime. buf needs at least 28 bytes. */
char *pt_time_format_us(double t, char *buf, size_t len);

/* Parses RFC 3339 ("Z" or a numeric offset, optional fraction). Returns 0 or -EINVAL. */
int pt_time_parse(const char *s, double *out);

#endif
