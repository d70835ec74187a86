/* An immutable byte buffer shared by reference: an event frame is written
 * once and queued on every connection that gets it, and freed when the last
 * of them has handed it to the kernel (and the ring of recent events has let
 * it go). One loop thread: the count is not atomic. */
#ifndef PT_CORE_SHARED_BUF_H
#define PT_CORE_SHARED_BUF_H

#include <stddef.h>

struct pt_shared_buf {
  size_t refs;
  size_t len;
  char data[]; /* len bytes, then a NUL */
};

/* A copy of data with one reference, or NULL without memory. */
struct pt_shared_buf *pt_shared_buf_create(const void *data, size_t len);
/* Takes one more reference; returns b. */
struct pt_shared_buf *pt_shared_buf_ref(struct pt_shared_buf *b);
/* Drops a reference; the last one frees. Accepts NULL. */
void pt_shared_buf_unref(struct pt_shared_buf *b);

#endif
