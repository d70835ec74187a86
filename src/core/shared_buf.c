#include "core/shared_buf.h"

#include <stdlib.h>
#include <string.h>

struct pt_shared_buf *pt_shared_buf_create(const void *data, size_t len)
{
  struct pt_shared_buf *b = malloc(sizeof(*b) + len + 1);
  if (!b)
    return NULL;
  b->refs = 1;
  b->len = len;
  if (len)
    memcpy(b->data, data, len);
  b->data[len] = '\0';
  return b;
}

struct pt_shared_buf *pt_shared_buf_ref(struct pt_shared_buf *b)
{
  b->refs++;
  return b;
}

void pt_shared_buf_unref(struct pt_shared_buf *b)
{
  if (b && --b->refs == 0)
    free(b);
}
