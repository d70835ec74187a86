#include "core/sse.h"

#include <inttypes.h>
#include <string.h>

int pt_sse_format_event(struct pt_buf *out, uint64_t id, const char *event, const char *data)
{
  pt_buf_printf(out, "id: %" PRIu64 "\n", id);
  if (event && *event) {
    /* Event names are ours, but never let a line break split the frame. */
    pt_buf_puts(out, "event: ");
    pt_buf_append(out, event, strcspn(event, "\r\n"));
    pt_buf_puts(out, "\n");
  }
  const char *p = data ? data : "";
  for (;;) {
    size_t n = strcspn(p, "\r\n");
    pt_buf_puts(out, "data: ");
    pt_buf_append(out, p, n);
    pt_buf_puts(out, "\n");
    p += n;
    if (!*p)
      break;
    if (p[0] == '\r' && p[1] == '\n')
      p += 2;
    else
      p += 1;
  }
  return pt_buf_puts(out, "\n");
}

int pt_sse_format_comment(struct pt_buf *out, const char *text)
{
  pt_buf_puts(out, ": ");
  pt_buf_append(out, text, strcspn(text, "\r\n"));
  return pt_buf_puts(out, "\n\n");
}

int pt_sse_format_retry(struct pt_buf *out, unsigned ms)
{
  return pt_buf_printf(out, "retry: %u\n\n", ms);
}
