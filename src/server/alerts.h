/* Alerts of the policy's alert hooks, on their way out: counted by severity
 * (pulltrace_alerts_total), logged, and, with a webhook URL, delivered in
 * Alertmanager's format. They reach this object as the store's
 * PT_CHANGE_ALERT records; the event stream gets them like any other change. */
#ifndef PT_SERVER_ALERTS_H
#define PT_SERVER_ALERTS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/httpc.h"
#include "policy/policy.h"
#include "server/webhook.h"

#define PT_ALERT_SEVERITIES 4 /* info, warning, critical, other */
/* "info", "warning", "critical", "other". */
extern const char *const pt_alert_severity_names[PT_ALERT_SEVERITIES];

struct pt_alerts_options {
  const char *webhook_url;   /* NULL or "": no webhook; borrowed */
  double webhook_timeout;    /* seconds */
  size_t webhook_queue;      /* 256 when 0 */
  double backlog_seconds;    /* how long a follower keeps alerts for a takeover */
};

struct pt_alerts_stats {
  uint64_t by_severity[PT_ALERT_SEVERITIES];
  uint64_t not_leader;             /* not handed to the webhook: another replica leads */
  uint64_t after_takeover;         /* kept as a follower, handed to the webhook on a takeover */
  struct pt_webhook_stats webhook; /* zero without a webhook */
};

struct pt_alerts;

/* httpc is borrowed (used only with a webhook URL). NULL without memory. */
struct pt_alerts *pt_alerts_create(uv_loop_t *loop, struct pt_httpc *httpc, const struct pt_alerts_options *opts);
/* One alert raised at time: counted, logged, handed to the webhook. */
void pt_alerts_deliver(struct pt_alerts *a, const struct pt_policy_alert *alert, double time);
/* Only the leader among replicas delivers (docs/ha.md): a follower counts and
 * logs alerts (the event stream still carries them) but hands none to the
 * webhook; it keeps those of the last backlog_seconds (up to the queue size).
 * On becoming the leader it hands over the kept alerts raised at or after
 * since (Unix seconds; 0 = all), which the previous leader may have missed.
 * A new alerts object leads. */
void pt_alerts_set_leader(struct pt_alerts *a, bool leader, double since);
/* Stops webhook delivery (shutdown); later alerts are only counted and logged. */
void pt_alerts_stop(struct pt_alerts *a);
void pt_alerts_stats(const struct pt_alerts *a, struct pt_alerts_stats *out);
/* Accepts NULL. The webhook's timer is closed in the loop: run it once more. */
void pt_alerts_destroy(struct pt_alerts *a);

#endif
