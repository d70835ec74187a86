/* Server-Sent Events framing (WHATWG HTML, "Server-sent events"). */
#ifndef PT_CORE_SSE_H
#define PT_CORE_SSE_H

#include <stdint.h>

#include "core/buf.h"

/* Appends one event: "id: N\nevent: TYPE\ndata: ...\n\n". A data value with
 * newlines becomes several data: lines (the client joins them with '\n'); CR
 * characters are framed the same way. event may be NULL. */
int pt_sse_format_event(struct pt_buf *out, uint64_t id, const char *event, const char *data);
/* Appends a comment line ": text\n\n" (heartbeats, shutdown notice). */
int pt_sse_format_comment(struct pt_buf *out, const char *text);
/* Appends "retry: ms\n\n". */
int pt_sse_format_retry(struct pt_buf *out, unsigned ms);

#endif
