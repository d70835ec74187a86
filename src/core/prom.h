/* Prometheus text exposition format 0.0.4 helpers. */
#ifndef PT_CORE_PROM_H
#define PT_CORE_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define PT_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help\n# TYPE name type\n" (help escaped). */
int pt_prom_family(struct pt_buf *b, const char *name, const char *type, const char *help);
/* One sample line. labels is NULL/"" or a pre-built 'a="x",b="y"' list
 * (build values with pt_prom_label()). */
int pt_prom_sample(struct pt_buf *b, const char *name, const char *labels, double value);
/* Appends name="escaped value" (with a leading comma when b is not empty). */
int pt_prom_label(struct pt_buf *b, const char *name, const char *value);

struct pt_prom_histogram {
  size_t nbuckets;
  const double *bounds;   /* ascending upper bounds, +Inf implied */
  uint64_t *counts;       /* nbuckets entries, non-cumulative */
  uint64_t count;
  double sum;
};

/* counts must hold nbuckets zeroed entries owned by the caller. */
void pt_prom_histogram_init(struct pt_prom_histogram *h, const double *bounds, size_t nbuckets, uint64_t *counts);
void pt_prom_histogram_observe(struct pt_prom_histogram *h, double v);
/* Writes the _bucket (cumulative, with le="+Inf"), _sum and _count lines. */
int pt_prom_histogram_write(struct pt_buf *b, const char *name, const char *labels,
                            const struct pt_prom_histogram *h);

#endif
