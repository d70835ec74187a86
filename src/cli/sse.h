/* The client side of Server-Sent Events framing (the WHATWG EventSource
 * rules): lines ending in LF, CRLF or CR; "field: value"; data lines joined
 * with LF; a blank line dispatches; comments (":") and unknown fields ignored.
 * Bytes arrive in arbitrary chunks. */
#ifndef PT_CLI_SSE_H
#define PT_CLI_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* type is "message" when the event named none; id is the last id seen on the
 * stream ("" before the first). */
typedef void (*pt_sse_event_cb)(void *ud, const char *type, const char *id, const char *data, size_t len);

struct pt_sse_reader {
  struct pt_buf line, data, type;
  char id[64];
  bool have_data, skip_lf;
  pt_sse_event_cb cb;
  void *ud;
};

void pt_sse_reader_init(struct pt_sse_reader *r, pt_sse_event_cb cb, void *ud);
void pt_sse_reader_close(struct pt_sse_reader *r);
/* Starts a new connection (keeps the last id, drops a partial event). */
void pt_sse_reader_reset(struct pt_sse_reader *r);
/* Returns 0, or -ENOMEM / -EMSGSIZE (a line over 16 MiB). */
int pt_sse_reader_feed(struct pt_sse_reader *r, const char *data, size_t len);

#endif
