#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pt_buf_init(struct pt_buf *b)
{
  memset(b, 0, sizeof(*b));
}

void pt_buf_close(struct pt_buf *b)
{
  free(b->data);
  pt_buf_init(b);
}

void pt_buf_reset(struct pt_buf *b)
{
  b->len = 0;
  b->oom = 0;
  if (b->data)
    b->data[0] = '\0';
}

static int reserve(struct pt_buf *b, size_t extra)
{
  if (b->oom)
    return -ENOMEM;
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    b->oom = 1;
    return -ENOMEM;
  }
  b->data = d;
  b->cap = cap;
  return 0;
}

int pt_buf_append(struct pt_buf *b, const void *data, size_t len)
{
  if (reserve(b, len))
    return -ENOMEM;
  if (len)
    memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int pt_buf_puts(struct pt_buf *b, const char *s)
{
  return pt_buf_append(b, s, strlen(s));
}

int pt_buf_vprintf(struct pt_buf *b, const char *fmt, va_list ap)
{
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return -EINVAL;
  if (reserve(b, (size_t)n))
    return -ENOMEM;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int pt_buf_printf(struct pt_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int r = pt_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return r;
}

char *pt_buf_steal(struct pt_buf *b, size_t *len)
{
  if (reserve(b, 0)) {
    pt_buf_close(b);
    return NULL;
  }
  char *d = b->data;
  if (len)
    *len = b->len;
  pt_buf_init(b);
  return d;
}
