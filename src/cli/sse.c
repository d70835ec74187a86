#include "cli/sse.h"

#include <errno.h>
#include <string.h>

#define MAX_LINE (16u << 20)

void pt_sse_reader_init(struct pt_sse_reader *r, pt_sse_event_cb cb, void *ud)
{
  memset(r, 0, sizeof(*r));
  pt_buf_init(&r->line);
  pt_buf_init(&r->data);
  pt_buf_init(&r->type);
  r->cb = cb;
  r->ud = ud;
}

void pt_sse_reader_close(struct pt_sse_reader *r)
{
  pt_buf_close(&r->line);
  pt_buf_close(&r->data);
  pt_buf_close(&r->type);
}

void pt_sse_reader_reset(struct pt_sse_reader *r)
{
  pt_buf_reset(&r->line);
  pt_buf_reset(&r->data);
  pt_buf_reset(&r->type);
  r->have_data = r->skip_lf = false;
}

static void line(struct pt_sse_reader *r, const char *s, size_t n)
{
  if (n == 0) {
    if (r->have_data) {
      const char *type = r->type.len ? r->type.data : "message";
      r->cb(r->ud, type, r->id, r->data.data ? r->data.data : "", r->data.len);
    }
    pt_buf_reset(&r->data);
    pt_buf_reset(&r->type);
    r->have_data = false;
    return;
  }
  if (s[0] == ':')
    return;
  const char *colon = memchr(s, ':', n);
  size_t flen = colon ? (size_t)(colon - s) : n;
  const char *v = colon ? colon + 1 : s + n;
  size_t vlen = (size_t)(s + n - v);
  if (vlen && *v == ' ') {
    v++;
    vlen--;
  }
  if (flen == 4 && memcmp(s, "data", 4) == 0) {
    if (r->have_data)
      pt_buf_append(&r->data, "\n", 1);
    pt_buf_append(&r->data, v, vlen);
    r->have_data = true;
  } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
    pt_buf_reset(&r->type);
    pt_buf_append(&r->type, v, vlen);
  } else if (flen == 2 && memcmp(s, "id", 2) == 0 && vlen < sizeof(r->id) && !memchr(v, '\0', vlen)) {
    memcpy(r->id, v, vlen);
    r->id[vlen] = '\0';
  }
}

/* The end of the line starting at p: its first CR or LF, or end. memchr
 * scans a word at a time; a byte loop here was most of a reader's cost. */
static const char *line_end(const char *p, const char *end)
{
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  const char *stop = lf ? lf : end;
  const char *cr = memchr(p, '\r', (size_t)(stop - p));
  return cr ? cr : stop;
}

/* Adds n bytes to the line being received. */
static int keep(struct pt_sse_reader *r, const char *p, size_t n)
{
  if (r->line.len + n > MAX_LINE)
    return -EMSGSIZE;
  return pt_buf_append(&r->line, p, n) ? -ENOMEM : 0;
}

int pt_sse_reader_feed(struct pt_sse_reader *r, const char *data, size_t len)
{
  const char *p = data, *end = data + len;
  while (p < end) {
    if (r->skip_lf) {
      r->skip_lf = false;
      if (*p == '\n' && ++p == end)
        break;
    }
    const char *eol = line_end(p, end);
    size_t n = (size_t)(eol - p);
    int k;
    if (eol == end) { /* the line goes on in the next bytes: keep its start */
      if ((k = keep(r, p, n)))
        return k;
      break;
    }
    r->skip_lf = *eol == '\r';
    if (r->line.len) {
      if ((k = keep(r, p, n)))
        return k;
      line(r, r->line.data, r->line.len);
      pt_buf_reset(&r->line);
    } else {
      line(r, p, n); /* whole in this chunk: read in place */
    }
    p = eol + 1;
  }
  return r->line.oom || r->data.oom || r->type.oom ? -ENOMEM : 0;
}
