#include "core/prom.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void escape(struct pt_buf *b, const char *s, bool quote)
{
  for (; *s; s++) {
    if (*s == '\\')
      pt_buf_puts(b, "\\\\");
    else if (*s == '\n')
      pt_buf_puts(b, "\\n");
    else if (*s == '"' && quote)
      pt_buf_puts(b, "\\\"");
    else
      pt_buf_append(b, s, 1);
  }
}

int pt_prom_family(struct pt_buf *b, const char *name, const char *type, const char *help)
{
  pt_buf_printf(b, "# HELP %s ", name);
  escape(b, help, false);
  return pt_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void value(struct pt_buf *b, double v)
{
  if (isnan(v))
    pt_buf_puts(b, "NaN");
  else if (isinf(v))
    pt_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15)
    pt_buf_printf(b, "%.0f", v);
  else
    pt_buf_printf(b, "%.17g", v);
}

int pt_prom_sample(struct pt_buf *b, const char *name, const char *labels, double v)
{
  pt_buf_puts(b, name);
  if (labels && *labels)
    pt_buf_printf(b, "{%s}", labels);
  pt_buf_puts(b, " ");
  value(b, v);
  return pt_buf_puts(b, "\n");
}

int pt_prom_label(struct pt_buf *b, const char *name, const char *v)
{
  if (b->len)
    pt_buf_puts(b, ",");
  pt_buf_printf(b, "%s=\"", name);
  escape(b, v ? v : "", true);
  return pt_buf_puts(b, "\"");
}

void pt_prom_histogram_init(struct pt_prom_histogram *h, const double *bounds, size_t nbuckets, uint64_t *counts)
{
  h->nbuckets = nbuckets;
  h->bounds = bounds;
  h->counts = counts;
  h->count = 0;
  h->sum = 0;
  memset(counts, 0, nbuckets * sizeof(*counts));
}

void pt_prom_histogram_observe(struct pt_prom_histogram *h, double v)
{
  if (isnan(v))
    return;
  for (size_t i = 0; i < h->nbuckets; i++) {
    if (v <= h->bounds[i]) {
      h->counts[i]++;
      break;
    }
  }
  h->count++;
  h->sum += v;
}

int pt_prom_histogram_write(struct pt_buf *b, const char *name, const char *labels,
                            const struct pt_prom_histogram *h)
{
  uint64_t cum = 0;
  struct pt_buf l;
  pt_buf_init(&l);
  char le[64];
  for (size_t i = 0; i <= h->nbuckets; i++) {
    pt_buf_reset(&l);
    if (labels && *labels)
      pt_buf_puts(&l, labels);
    if (i < h->nbuckets) {
      cum += h->counts[i];
      snprintf(le, sizeof(le), "%g", h->bounds[i]);
    } else {
      cum = h->count;
      snprintf(le, sizeof(le), "+Inf");
    }
    pt_prom_label(&l, "le", le);
    pt_buf_printf(b, "%s_bucket{%s} %llu\n", name, l.data, (unsigned long long)cum);
  }
  pt_buf_close(&l);
  pt_buf_printf(b, "%s_sum", name);
  if (labels && *labels)
    pt_buf_printf(b, "{%s}", labels);
  pt_buf_puts(b, " ");
  value(b, h->sum);
  pt_buf_printf(b, "\n%s_count", name);
  if (labels && *labels)
    pt_buf_printf(b, "{%s}", labels);
  return pt_buf_printf(b, " %llu\n", (unsigned long long)h->count);
}
