/* Alert webhook delivery: a bounded queue, one POST in flight carrying up to
 * 64 alerts as an Alertmanager API v2 body (a JSON array of alerts), retried
 * with exponential backoff. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "server/server_impl.h"

#define BATCH 64
#define MAX_ATTEMPTS 5

static void send_next(struct pt_server *srv);

static void pop(struct pt_server *srv, size_t n)
{
  for (size_t i = 0; i < n && srv->wq_len; i++) {
    free(srv->wq[srv->wq_head].json);
    srv->wq[srv->wq_head].json = NULL;
    srv->wq_head = (srv->wq_head + 1) % srv->wq_cap;
    srv->wq_len--;
  }
}

static void retry_cb(uv_timer_t *t)
{
  send_next(t->data);
}

static void done_cb(void *ud, const struct pt_http_response *resp)
{
  struct pt_server *srv = ud;
  srv->wq_busy = false;
  if (resp->result == -ECANCELED || srv->shutting_down)
    return;
  size_t n = srv->wq_inflight;
  if (resp->result == 0 && resp->status >= 200 && resp->status < 300) {
    srv->webhook_sent += n;
    srv->wq_attempt = 0;
    pop(srv, n);
    send_next(srv);
    return;
  }
  srv->webhook_failed++;
  srv->wq_attempt++;
  PT_LOG_WARN("alert webhook delivery failed", "{s:s,s:I,s:s,s:i}", "url", srv->cfg.alert_webhook_url,
              "status", (json_int_t)resp->status, "error", resp->error ? resp->error : "",
              "attempt", srv->wq_attempt);
  if (srv->wq_attempt >= MAX_ATTEMPTS) {
    srv->webhook_dropped += n;
    srv->wq_attempt = 0;
    pop(srv, n);
    send_next(srv);
    return;
  }
  srv->webhook_retries++;
  uint64_t delay = 1000ULL << (srv->wq_attempt - 1);
  uv_timer_start(&srv->webhook_timer, retry_cb, delay, 0);
}

static void send_next(struct pt_server *srv)
{
  if (srv->wq_busy || !srv->wq_len || srv->shutting_down || !srv->httpc)
    return;
  size_t n = srv->wq_len < BATCH ? srv->wq_len : BATCH;
  struct pt_buf b;
  pt_buf_init(&b);
  pt_buf_puts(&b, "[");
  for (size_t i = 0; i < n; i++) {
    if (i)
      pt_buf_puts(&b, ",");
    pt_buf_puts(&b, srv->wq[(srv->wq_head + i) % srv->wq_cap].json);
  }
  pt_buf_puts(&b, "]");
  struct pt_http_request req = {
    .method = "POST",
    .url = srv->cfg.alert_webhook_url,
    .body = b.data,
    .body_len = b.len,
    .content_type = "application/json",
    .timeout_ms = (long)(srv->cfg.alert_webhook_timeout * 1000),
    .max_body = 65536,
  };
  srv->wq_inflight = n;
  srv->wq_busy = true;
  if (pt_httpc_request(srv->httpc, &req, done_cb, srv, NULL) < 0) {
    srv->wq_busy = false;
    srv->webhook_failed++;
    uv_timer_start(&srv->webhook_timer, retry_cb, 1000, 0);
  }
  pt_buf_close(&b);
}

void pt_server_webhook_enqueue(struct pt_server *srv, json_t *alert)
{
  char *js = json_dumps(alert, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  json_decref(alert);
  if (!js)
    return;
  if (srv->wq_len == srv->wq_cap) {
    /* The oldest alerts may be in flight: drop the new one instead. */
    srv->webhook_dropped++;
    free(js);
    return;
  }
  srv->wq[(srv->wq_head + srv->wq_len) % srv->wq_cap].json = js;
  srv->wq_len++;
  send_next(srv);
}

void pt_server_webhook_close(struct pt_server *srv)
{
  uv_timer_stop(&srv->webhook_timer);
  if (srv->wq_len)
    PT_LOG_WARN("alerts not delivered at shutdown", "{s:I}", "count", (json_int_t)srv->wq_len);
  pop(srv, srv->wq_len);
}
