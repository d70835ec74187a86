/* Human-readable text for the terminal: sizes, rates, ages, progress bars and
 * kubectl-style tables (left-aligned columns three spaces apart, upper-case
 * headers). Pure functions: no terminal access here. */
#ifndef PT_CLI_FORMAT_H
#define PT_CLI_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/buf.h"

/* Binary units with one decimal from KiB on: "512 B", "1.5 KiB", "27.0 MiB". */
char *pt_fmt_bytes(double bytes, char *buf, size_t len);
/* pt_fmt_bytes + "/s"; "-" when the rate is unknown (negative). */
char *pt_fmt_rate(double bytes_per_second, char *buf, size_t len);
/* kubectl's age style: "45s", "3m12s", "2h5m", "3d4h", "400d"; "-" when negative. */
char *pt_fmt_age(double seconds, char *buf, size_t len);
/* A duration: "0.8s", "9.5s" under ten seconds, then as pt_fmt_age(). */
char *pt_fmt_seconds(double seconds, char *buf, size_t len);
/* A progress bar of `width` cells for fraction 0..1: "█" cells with an eighths
 * cell at the edge on a UTF-8 terminal, "#" and "." otherwise. */
void pt_fmt_bar(struct pt_buf *out, double fraction, int width, bool utf8);
/* Terminal cells of a UTF-8 string (one per code point: the text here has no
 * wide characters). */
int pt_fmt_cells(const char *s);
/* s cut to `cells` cells, ending in "…" (or "~" without utf8) when cut. */
void pt_fmt_fit(struct pt_buf *out, const char *s, int cells, bool utf8);

/* A table built row by row, printed with every column as wide as its widest
 * cell. */
struct pt_table {
  size_t ncols, nrows, cap;
  char **cells; /* nrows * ncols, row-major; the first row is the header */
};
void pt_table_init(struct pt_table *t, size_t ncols);
void pt_table_close(struct pt_table *t);
/* Appends a row of ncols strings (copied; NULL prints as "<none>"). */
int pt_table_add(struct pt_table *t, const char *const *row);
void pt_table_print(const struct pt_table *t, FILE *out);

#endif
