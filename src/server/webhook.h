/* Alert webhook delivery: a bounded queue, one POST in flight carrying up to
 * 64 alerts as an Alertmanager API v2 body (a JSON array of alerts), retried
 * with exponential backoff (1, 2, 4, 8 s) and dropped after 5 attempts. */
#ifndef PT_SERVER_WEBHOOK_H
#define PT_SERVER_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/httpc.h"

struct pt_webhook_options {
  const char *url;   /* borrowed: must outlive the webhook */
  double timeout;    /* seconds per attempt */
  size_t queue_max;  /* alerts waiting; a new alert is dropped beyond it */
};

struct pt_webhook_stats {
  uint64_t sent, failed, dropped, retries;
  size_t queued;
};

struct pt_webhook;

/* httpc is borrowed (it must outlive the webhook's last request). NULL
 * without memory. */
struct pt_webhook *pt_webhook_create(uv_loop_t *loop, struct pt_httpc *httpc, const struct pt_webhook_options *opts);
/* Queues one Alertmanager alert object (the reference is taken). */
void pt_webhook_enqueue(struct pt_webhook *w, json_t *alert);
/* Stops delivering (shutdown): the queued alerts are dropped with a warning,
 * a request in flight is ignored when it ends. */
void pt_webhook_stop(struct pt_webhook *w);
void pt_webhook_stats(const struct pt_webhook *w, struct pt_webhook_stats *out);
/* Stops and frees; its timer is closed and the memory released in the close
 * callback (run the loop once more). Accepts NULL. */
void pt_webhook_destroy(struct pt_webhook *w);

#endif
