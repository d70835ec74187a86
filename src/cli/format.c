#include "cli/format.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

char *pt_fmt_bytes(double b, char *buf, size_t len)
{
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t u = 0;
  while (b >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
    b /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%.0f B", b);
  else
    snprintf(buf, len, "%.1f %s", b, units[u]);
  return buf;
}

char *pt_fmt_rate(double bps, char *buf, size_t len)
{
  if (bps < 0 || isnan(bps)) {
    snprintf(buf, len, "-");
    return buf;
  }
  char b[32];
  snprintf(buf, len, "%s/s", pt_fmt_bytes(bps, b, sizeof(b)));
  return buf;
}

char *pt_fmt_age(double seconds, char *buf, size_t len)
{
  if (seconds < 0 || isnan(seconds)) {
    snprintf(buf, len, "-");
    return buf;
  }
  long s = (long)seconds, m = s / 60, h = s / 3600, d = s / 86400;
  if (s < 120)
    snprintf(buf, len, "%lds", s);
  else if (m < 10)
    snprintf(buf, len, s % 60 ? "%ldm%lds" : "%ldm", m, s % 60);
  else if (h < 3)
    snprintf(buf, len, "%ldm", m);
  else if (h < 8)
    snprintf(buf, len, m % 60 ? "%ldh%ldm" : "%ldh", h, m % 60);
  else if (h < 48)
    snprintf(buf, len, "%ldh", h);
  else if (h < 24 * 8)
    snprintf(buf, len, h % 24 ? "%ldd%ldh" : "%ldd", d, h % 24);
  else
    snprintf(buf, len, "%ldd", d);
  return buf;
}

char *pt_fmt_seconds(double seconds, char *buf, size_t len)
{
  if (seconds >= 0 && seconds < 10)
    snprintf(buf, len, "%.1fs", seconds);
  else
    pt_fmt_age(seconds, buf, len);
  return buf;
}

void pt_fmt_bar(struct pt_buf *out, double f, int width, bool utf8)
{
  if (width <= 0)
    return;
  if (!(f >= 0))
    f = 0;
  if (f > 1)
    f = 1;
  int eighths = (int)(f * width * 8 + 0.5);
  int full = eighths / 8, part = eighths % 8;
  static const char *const parts[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  for (int i = 0; i < width; i++) {
    if (i < full)
      pt_buf_puts(out, utf8 ? "█" : "#");
    else if (i == full && part && utf8)
      pt_buf_puts(out, parts[part]);
    else
      pt_buf_puts(out, utf8 ? "░" : ".");
  }
}

int pt_fmt_cells(const char *s)
{
  int n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

void pt_fmt_fit(struct pt_buf *out, const char *s, int cells, bool utf8)
{
  if (cells <= 0)
    return;
  if (pt_fmt_cells(s) <= cells) {
    pt_buf_puts(out, s);
    return;
  }
  int keep = cells - 1, n = 0;
  const char *p = s;
  for (; *p; p++) {
    if (((unsigned char)*p & 0xC0) != 0x80) {
      if (n == keep)
        break;
      n++;
    }
  }
  pt_buf_append(out, s, (size_t)(p - s));
  pt_buf_puts(out, utf8 ? "…" : "~");
}

void pt_table_init(struct pt_table *t, size_t ncols)
{
  memset(t, 0, sizeof(*t));
  t->ncols = ncols;
}

void pt_table_close(struct pt_table *t)
{
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof(*t));
}

int pt_table_add(struct pt_table *t, const char *const *row)
{
  if (t->nrows == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
    if (!c)
      return -ENOMEM;
    t->cells = c;
    t->cap = cap;
  }
  char **dst = t->cells + t->nrows * t->ncols;
  for (size_t i = 0; i < t->ncols; i++) {
    dst[i] = strdup(row[i] ? row[i] : "<none>");
    if (!dst[i]) {
      while (i--)
        free(dst[i]);
      return -ENOMEM;
    }
  }
  t->nrows++;
  return 0;
}

void pt_table_print(const struct pt_table *t, FILE *out)
{
  int *w = calloc(t->ncols, sizeof(*w));
  if (!w)
    return;
  for (size_t r = 0; r < t->nrows; r++)
    for (size_t c = 0; c < t->ncols; c++) {
      int n = pt_fmt_cells(t->cells[r * t->ncols + c]);
      if (n > w[c])
        w[c] = n;
    }
  for (size_t r = 0; r < t->nrows; r++) {
    const char *const *row = (const char *const *)&t->cells[r * t->ncols];
    /* No padding after the row's last non-empty cell: no trailing spaces. */
    size_t last = t->ncols ? t->ncols - 1 : 0;
    while (last > 0 && !row[last][0])
      last--;
    for (size_t c = 0; c < t->ncols; c++) {
      if (c == last) {
        fputs(row[c], out);
        break;
      }
      fprintf(out, "%s%*s", row[c], w[c] - pt_fmt_cells(row[c]) + 3, "");
    }
    fputc('\n', out);
  }
  free(w);
}
