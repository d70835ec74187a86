/* A growable byte buffer, always NUL-terminated, used to build HTTP responses,
 * SSE frames and the Prometheus exposition. */
#ifndef PT_CORE_BUF_H
#define PT_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct pt_buf {
  char *data; /* NULL until the first append */
  size_t len;
  size_t cap;
  int oom;    /* set when an allocation failed; later appends are ignored */
};

void pt_buf_init(struct pt_buf *b);
void pt_buf_close(struct pt_buf *b);
void pt_buf_reset(struct pt_buf *b);
/* Each returns 0 or -ENOMEM (and sets oom). */
int pt_buf_append(struct pt_buf *b, const void *data, size_t len);
int pt_buf_puts(struct pt_buf *b, const char *s);
int pt_buf_printf(struct pt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pt_buf_vprintf(struct pt_buf *b, const char *fmt, va_list ap);
/* Hands the storage to the caller (free() it); the buffer is left empty. */
char *pt_buf_steal(struct pt_buf *b, size_t *len);

#endif
