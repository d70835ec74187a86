/* A JSON text writer into a pt_buf: the event stream's and the REST API's
 * documents are written member by member, with no tree of objects to build
 * and free (the server's hot path writes thousands of them a second).
 *
 * Output is compact, members in the order written; strings are escaped as
 * JSON requires (UTF-8 passes through). Reals are written with at most 12
 * significant digits (as jansson's JSON_REAL_PRECISION(12)), and always with
 * a fraction or an exponent, so that a reader sees a real. Errors (out of
 * memory) stick in the buffer's oom flag. */
#ifndef PT_CORE_JSON_WRITER_H
#define PT_CORE_JSON_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

struct pt_jsonw {
  struct pt_buf *out;
  bool comma;          /* the next member or element needs a ',' first */
};

void pt_jsonw_init(struct pt_jsonw *w, struct pt_buf *out);

void pt_jsonw_object_open(struct pt_jsonw *w);
void pt_jsonw_object_close(struct pt_jsonw *w);
void pt_jsonw_array_open(struct pt_jsonw *w);
void pt_jsonw_array_close(struct pt_jsonw *w);
/* A member's name (the program's own: written as is, no escaping); its
 * value follows. */
void pt_jsonw_key(struct pt_jsonw *w, const char *key);

void pt_jsonw_string(struct pt_jsonw *w, const char *s); /* NULL: null */
void pt_jsonw_int(struct pt_jsonw *w, int64_t v);
void pt_jsonw_real(struct pt_jsonw *w, double v);
/* v rounded to two decimals (percentages, rates, seconds). */
void pt_jsonw_real2(struct pt_jsonw *w, double v);
void pt_jsonw_bool(struct pt_jsonw *w, bool v);
void pt_jsonw_null(struct pt_jsonw *w);
/* RFC 3339 UTC with milliseconds of epoch seconds (as pt_time_format);
 * null when t <= 0 or not a time of years 1970 to 9999. */
void pt_jsonw_time(struct pt_jsonw *w, double t);
/* A complete JSON value written elsewhere (e.g. by jansson). */
void pt_jsonw_raw(struct pt_jsonw *w, const char *json, size_t len);

#endif
