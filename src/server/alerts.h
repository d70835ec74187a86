/* Alerts of the policy's alert hooks, on their way out: counted by severity
 * (pulltrace_alerts_total), logged, and, with a webhook URL, delivered in
 * Alertmanager's format. They reach this object as the store's
 * PT_CHANGE_ALERT records; the event stream gets them like any other change.
 *
 * An alert has a lifetime, as in Prometheus: it is active from the moment a
 * hook raised it while the pull whose event raised it stays in the state it
 * was in then (a PullStalled alert while the pull is stalled, a PullFailed
 * alert while it is failed or lost), and it resolves when that pull changes
 * state (a stalled pull moves again, a failed pull is retried successfully)
 * or leaves the tables (evicted, superseded). While active it is re-sent to
 * the webhook every `resend` seconds with endsAt a few intervals ahead, so
 * that Alertmanager (which resolves an alert it has not heard of by its
 * endsAt) keeps it firing, and a server that stops sending lets it expire
 * instead of leaving it firing forever. When it resolves it is sent once more
 * with endsAt set to when it cleared. */
#ifndef PT_SERVER_ALERTS_H
#define PT_SERVER_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/httpc.h"
#include "policy/policy.h"
#include "server/webhook.h"

#define PT_ALERT_SEVERITIES 4 /* info, warning, critical, other */
/* "info", "warning", "critical", "other". */
extern const char *const pt_alert_severity_names[PT_ALERT_SEVERITIES];

/* Active alerts tracked at most; beyond it a new alert is delivered once,
 * with an endsAt that lets Alertmanager resolve it by itself. */
#define PT_ALERTS_MAX_ACTIVE 10000
/* endsAt of an active alert: this many resend intervals ahead. */
#define PT_ALERTS_ENDS_AFTER 4

/* An alert that resolved at time: its name and labels, and the context its
 * deliverer gave it (NULL without one); all borrowed, for the call. */
typedef void (*pt_alerts_resolved_fn)(void *ud, const char *name, const json_t *labels, const json_t *context,
                                      double time);

struct pt_alerts_options {
  const char *webhook_url;   /* NULL or "": no webhook; borrowed */
  double webhook_timeout;    /* seconds */
  size_t webhook_queue;      /* 256 when 0 */
  double resend;             /* seconds between re-sends of an active alert; 60 when 0 */
  pt_alerts_resolved_fn on_resolved; /* may be NULL */
  void *ud;
};

struct pt_alerts_stats {
  uint64_t by_severity[PT_ALERT_SEVERITIES];
  uint64_t resolved;               /* alerts whose condition cleared */
  uint64_t not_leader;             /* raised while another replica delivers (not sent) */
  uint64_t after_takeover;         /* active alerts sent at once on becoming the leader */
  size_t active;                   /* alerts active now */
  struct pt_webhook_stats webhook; /* zero without a webhook */
};

struct pt_alerts;

/* httpc is borrowed (used only with a webhook URL). NULL without memory. */
struct pt_alerts *pt_alerts_create(uv_loop_t *loop, struct pt_httpc *httpc, const struct pt_alerts_options *opts);
/* One alert raised at time by an event of the pull pull_id, then in state
 * pull_state (pt_pull_state_name(); both NULL when no pull raised it: such
 * an alert is sent once and expires by its endsAt): counted, logged, handed
 * to the webhook, and tracked while active. Raised again while active (the
 * policy repeats an alert after alertRepeat), it is counted and logged again
 * and follows the pull of the new event. context (may be NULL; a reference
 * is taken) is kept with the active alert and handed to on_resolved. */
void pt_alerts_deliver(struct pt_alerts *a, const struct pt_policy_alert *alert, const char *pull_id,
                       const char *pull_state, const json_t *context, double time);
/* A pull changed: now in state (NULL: it left the tables). Resolves, at
 * time, the active alerts it raised in another state. Cheap for a pull
 * without alerts (one hash lookup). */
void pt_alerts_pull_changed(struct pt_alerts *a, const char *pull_id, const char *state, double time);
/* Only the leader among replicas delivers (docs/ha.md): a follower counts,
 * logs and tracks alerts like the leader (the event stream still carries
 * them) but sends nothing to the webhook. On becoming the leader it sends
 * every active alert at once, which covers what was raised while nobody led.
 * A new alerts object leads. */
void pt_alerts_set_leader(struct pt_alerts *a, bool leader);
/* Stops webhook delivery (shutdown); later alerts are only counted and logged. */
void pt_alerts_stop(struct pt_alerts *a);
void pt_alerts_stats(const struct pt_alerts *a, struct pt_alerts_stats *out);
/* Accepts NULL. The timers are closed in the loop: run it once more. */
void pt_alerts_destroy(struct pt_alerts *a);

#endif
