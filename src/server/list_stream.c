#include "server/list_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json_writer.h"

#define QUEUE_HIGH (1u << 20) /* bytes queued on the socket before writing waits */

static const char hexdigits[] = "0123456789abcdef";

void pt_list_token_write(struct pt_buf *out, const char *prefix, const void *data, size_t len)
{
  pt_buf_puts(out, prefix);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = ((const unsigned char *)data)[i];
    char two[2] = {hexdigits[c >> 4], hexdigits[c & 15]};
    pt_buf_append(out, two, 2);
  }
}

int pt_list_token_read(const char *token, const char *prefix, unsigned char *out, size_t len)
{
  size_t pl = strlen(prefix);
  if (strncmp(token, prefix, pl) != 0)
    return -1;
  const char *h = token + pl;
  size_t n = strlen(h);
  if (n == 0 || n % 2 || n / 2 >= len)
    return -1;
  for (size_t i = 0; i < n / 2; i++) {
    const char *a = strchr(hexdigits, h[2 * i]), *b = strchr(hexdigits, h[2 * i + 1]);
    if (!h[2 * i] || !h[2 * i + 1] || !a || !b)
      return -1;
    out[i] = (unsigned char)(((a - hexdigits) << 4) | (b - hexdigits));
  }
  out[n / 2] = '\0';
  return (int)(n / 2);
}

void pt_list_metadata(struct pt_jsonw *w, const char *token)
{
  pt_jsonw_key(w, "metadata");
  pt_jsonw_object_open(w);
  if (token) {
    pt_jsonw_key(w, "continue");
    pt_jsonw_string(w, token);
  }
  pt_jsonw_object_close(w);
}

void pt_list_pulls_token(struct pt_buf *out, const struct pt_pull_cursor *at)
{
  unsigned char raw[8 + sizeof(at->id)];
  size_t idlen = strlen(at->id);
  for (int i = 0; i < 8; i++)
    raw[i] = (unsigned char)(at->seq >> (56 - 8 * i));
  memcpy(raw + 8, at->id, idlen);
  pt_list_token_write(out, "p1.", raw, 8 + idlen);
}

int pt_list_pulls_token_read(const char *token, struct pt_pull_cursor *at)
{
  unsigned char raw[8 + sizeof(at->id)];
  int n = pt_list_token_read(token, "p1.", raw, sizeof(raw));
  if (n < 8)
    return -1;
  at->seq = 0;
  for (int i = 0; i < 8; i++)
    at->seq = at->seq << 8 | raw[i];
  memcpy(at->id, raw + 8, (size_t)n - 8);
  at->id[n - 8] = '\0';
  return at->seq ? 0 : -1;
}

struct pt_list_stream {
  uv_loop_t *loop;
  struct pt_store *store;
  struct pt_http_conn *conn;
  uv_timer_t timer;
  struct pt_pull_filter filter;
  char *node, *ns, *image;   /* the filter's copies */
  struct pt_pull_cursor at;  /* the last pull looked at */
  size_t left;               /* pulls still to write in this page */
  struct pt_buf out;
  struct pt_jsonw w;         /* one writer for the whole page: commas across chunks */
};

static void stream_free(struct pt_list_stream *s)
{
  pt_buf_close(&s->out);
  free(s->node);
  free(s->ns);
  free(s->image);
  free(s);
}

static void timer_closed(uv_handle_t *h)
{
  stream_free(h->data);
}

static void conn_closed(void *ud, struct pt_http_conn *conn)
{
  struct pt_list_stream *s = ud;
  (void)conn;
  s->conn = NULL;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, timer_closed);
}

static void send_out(struct pt_list_stream *s)
{
  if (s->out.len)
    pt_http_conn_write(s->conn, s->out.data, s->out.len);
  pt_buf_reset(&s->out);
}

/* One chunk per loop iteration; the last one closes the page (with a
 * continue token when more pulls follow) and the connection. */
static void chunk_cb(uv_timer_t *t)
{
  struct pt_list_stream *s = t->data;
  if (!s->conn)
    return;
  if (pt_http_conn_queued(s->conn) > QUEUE_HIGH) {
    uv_timer_start(&s->timer, chunk_cb, 5, 0); /* a slow reader: wait, do not pile up */
    return;
  }
  size_t want = s->left < PT_LIST_STREAM_CHUNK ? s->left : PT_LIST_STREAM_CHUNK;
  bool more = false;
  int n = pt_store_pulls_items(s->store, &s->w, &s->filter, &s->at, want, PT_LIST_STREAM_VISIT, pt_clock_now(),
                               &more);
  if (n < 0 || s->out.oom) {
    pt_http_conn_close(s->conn, true); /* without memory: the client sees a cut answer */
    return;
  }
  s->left -= (size_t)n;
  if (more && s->left > 0) {
    send_out(s);
    /* 1 ms, not 0: a timer due at once would run again in the same pass over
     * the loop's timers, and the chunks would add up to one long iteration. */
    uv_timer_start(&s->timer, chunk_cb, 1, 0);
    return;
  }
  pt_jsonw_array_close(&s->w);
  /* When the page is full and pulls follow: the position after its last one. */
  struct pt_buf tok;
  pt_buf_init(&tok);
  if (more)
    pt_list_pulls_token(&tok, &s->at);
  pt_list_metadata(&s->w, more && tok.data ? tok.data : NULL);
  pt_buf_close(&tok);
  pt_jsonw_object_close(&s->w);
  pt_buf_puts(&s->out, "\n");
  send_out(s);
  pt_http_conn_close(s->conn, false);
}

struct pt_list_stream *pt_list_stream_new(uv_loop_t *loop, struct pt_store *store, const struct pt_pull_filter *f,
                                          const struct pt_pull_cursor *after, size_t limit)
{
  struct pt_list_stream *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->loop = loop;
  s->store = store;
  s->filter = *f;
  s->node = f->node ? strdup(f->node) : NULL;
  s->ns = f->ns ? strdup(f->ns) : NULL;
  s->image = f->image ? strdup(f->image) : NULL;
  if ((f->node && !s->node) || (f->ns && !s->ns) || (f->image && !s->image)) {
    stream_free(s);
    return NULL;
  }
  s->filter.node = s->node;
  s->filter.ns = s->ns;
  s->filter.image = s->image;
  if (after)
    s->at = *after;
  s->left = limit;
  pt_buf_init(&s->out);
  pt_jsonw_init(&s->w, &s->out);
  return s;
}

void pt_list_stream_start(void *ud, struct pt_http_conn *conn)
{
  struct pt_list_stream *s = ud;
  if (!conn) {
    stream_free(s);
    return;
  }
  s->conn = conn;
  uv_timer_init(s->loop, &s->timer);
  s->timer.data = s;
  pt_http_conn_set_close_cb(conn, conn_closed, s);
  pt_jsonw_object_open(&s->w);
  pt_jsonw_key(&s->w, "apiVersion");
  pt_jsonw_string(&s->w, "v1");
  pt_jsonw_key(&s->w, "generatedAt");
  pt_jsonw_time(&s->w, pt_clock_now());
  pt_jsonw_key(&s->w, "pulls");
  pt_jsonw_array_open(&s->w);
  chunk_cb(&s->timer);
}
