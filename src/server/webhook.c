#include "server/webhook.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"

#define BATCH 64
#define MAX_ATTEMPTS 5

struct pt_webhook {
  uv_timer_t retry;
  struct pt_httpc *httpc;
  struct pt_webhook_options opts;
  char **ring;            /* JSON text of one Alertmanager alert each */
  size_t head, len;
  size_t inflight;        /* alerts in the request in flight */
  int attempt;
  bool busy, stopped;
  struct pt_webhook_stats stats;
};

static void send_next(struct pt_webhook *w);

static void pop(struct pt_webhook *w, size_t n)
{
  for (size_t i = 0; i < n && w->len; i++) {
    free(w->ring[w->head]);
    w->ring[w->head] = NULL;
    w->head = (w->head + 1) % w->opts.queue_max;
    w->len--;
  }
}

static void retry_cb(uv_timer_t *t)
{
  send_next(t->data);
}

static void done_cb(void *ud, const struct pt_http_response *resp)
{
  struct pt_webhook *w = ud;
  w->busy = false;
  if (resp->result == -ECANCELED || w->stopped)
    return;
  size_t n = w->inflight;
  if (resp->result == 0 && resp->status >= 200 && resp->status < 300) {
    w->stats.sent += n;
    w->attempt = 0;
    pop(w, n);
    send_next(w);
    return;
  }
  w->stats.failed++;
  w->attempt++;
  PT_LOG_WARN("alert webhook delivery failed", "{s:s,s:I,s:s,s:i}", "url", w->opts.url, "status",
              (json_int_t)resp->status, "error", resp->error ? resp->error : "", "attempt", w->attempt);
  if (w->attempt >= MAX_ATTEMPTS) {
    w->stats.dropped += n;
    w->attempt = 0;
    pop(w, n);
    send_next(w);
    return;
  }
  w->stats.retries++;
  uv_timer_start(&w->retry, retry_cb, 1000ULL << (w->attempt - 1), 0);
}

static void send_next(struct pt_webhook *w)
{
  if (w->busy || !w->len || w->stopped)
    return;
  size_t n = w->len < BATCH ? w->len : BATCH;
  struct pt_buf b;
  pt_buf_init(&b);
  pt_buf_puts(&b, "[");
  for (size_t i = 0; i < n; i++) {
    if (i)
      pt_buf_puts(&b, ",");
    pt_buf_puts(&b, w->ring[(w->head + i) % w->opts.queue_max]);
  }
  pt_buf_puts(&b, "]");
  struct pt_http_request req = {
    .method = "POST",
    .url = w->opts.url,
    .body = b.data,
    .body_len = b.len,
    .content_type = "application/json",
    .timeout_ms = (long)(w->opts.timeout * 1000),
    .max_body = 65536,
  };
  w->inflight = n;
  w->busy = true;
  if (pt_httpc_request(w->httpc, &req, done_cb, w, NULL) < 0) {
    w->busy = false;
    w->stats.failed++;
    uv_timer_start(&w->retry, retry_cb, 1000, 0);
  }
  pt_buf_close(&b);
}

struct pt_webhook *pt_webhook_create(uv_loop_t *loop, struct pt_httpc *httpc, const struct pt_webhook_options *opts)
{
  struct pt_webhook *w = calloc(1, sizeof(*w));
  if (!w)
    return NULL;
  w->httpc = httpc;
  w->opts = *opts;
  if (!w->opts.queue_max)
    w->opts.queue_max = 256;
  w->ring = calloc(w->opts.queue_max, sizeof(*w->ring));
  if (!w->ring) {
    free(w);
    return NULL;
  }
  uv_timer_init(loop, &w->retry);
  w->retry.data = w;
  return w;
}

void pt_webhook_enqueue(struct pt_webhook *w, json_t *alert)
{
  char *js = json_dumps(alert, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  json_decref(alert);
  if (!js || w->stopped) {
    free(js);
    return;
  }
  if (w->len == w->opts.queue_max) {
    /* The oldest alerts may be in flight: drop the new one instead. */
    w->stats.dropped++;
    free(js);
    return;
  }
  w->ring[(w->head + w->len) % w->opts.queue_max] = js;
  w->len++;
  send_next(w);
}

void pt_webhook_stop(struct pt_webhook *w)
{
  if (!w || w->stopped)
    return;
  w->stopped = true;
  uv_timer_stop(&w->retry);
  if (w->len)
    PT_LOG_WARN("alerts not delivered at shutdown", "{s:I}", "count", (json_int_t)w->len);
  pop(w, w->len);
}

void pt_webhook_stats(const struct pt_webhook *w, struct pt_webhook_stats *out)
{
  *out = w->stats;
  out->queued = w->len;
}

static void closed_cb(uv_handle_t *h)
{
  struct pt_webhook *w = h->data;
  free(w->ring);
  free(w);
}

void pt_webhook_destroy(struct pt_webhook *w)
{
  if (!w)
    return;
  pt_webhook_stop(w);
  uv_close((uv_handle_t *)&w->retry, closed_cb);
}
