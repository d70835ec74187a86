#include "server/alerts.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

const char *const pt_alert_severity_names[PT_ALERT_SEVERITIES] = {"info", "warning", "critical", "other"};

struct pt_alerts {
  uint64_t by_severity[PT_ALERT_SEVERITIES];
  struct pt_webhook *webhook; /* NULL without a URL */
  bool stopped;
  bool follower;
  uint64_t not_leader, after_takeover;
  /* A follower's recent alerts, oldest first, for a takeover. */
  struct kept {
    double time;
    json_t *alert;      /* Alertmanager's object */
  } *kept;
  size_t nkept, cap;
  double backlog_seconds;
};

static int severity_index(const char *s)
{
  for (int i = 0; s && i < PT_ALERT_SEVERITIES - 1; i++)
    if (strcmp(s, pt_alert_severity_names[i]) == 0)
      return i;
  return PT_ALERT_SEVERITIES - 1;
}

struct pt_alerts *pt_alerts_create(uv_loop_t *loop, struct pt_httpc *httpc, const struct pt_alerts_options *opts)
{
  struct pt_alerts *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->cap = opts->webhook_queue ? opts->webhook_queue : 256;
  a->backlog_seconds = opts->backlog_seconds;
  if (opts->webhook_url && *opts->webhook_url) {
    struct pt_webhook_options wo = {
      .url = opts->webhook_url, .timeout = opts->webhook_timeout, .queue_max = opts->webhook_queue};
    a->webhook = pt_webhook_create(loop, httpc, &wo);
    if (!a->webhook) {
      free(a);
      return NULL;
    }
  }
  return a;
}

/* Alertmanager API v2's alert object: the alert's labels with alertname and
 * severity, its summary as an annotation. */
static json_t *alertmanager_json(const struct pt_policy_alert *alert, double time)
{
  char tb[40];
  json_t *labels = json_pack("{s:s,s:s}", "alertname", alert->name, "severity", alert->severity);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)alert->labels, k, v)
    if (json_is_string(v))
      json_object_set(labels, k, v);
  return json_pack("{s:o,s:{s:s},s:s,s:s}", "labels", labels, "annotations", "summary",
                   alert->summary ? alert->summary : "", "startsAt", pt_time_format(time, tb, sizeof(tb)),
                   "generatorURL", "");
}

/* Keeps a follower's alert (taken over): the oldest goes when the backlog is
 * full, and those older than backlog_seconds go first. */
static void keep(struct pt_alerts *a, json_t *alert, double time)
{
  if (!alert)
    return;
  if (!a->kept && !(a->kept = calloc(a->cap, sizeof(*a->kept)))) {
    json_decref(alert);
    return;
  }
  size_t old = 0;
  while (old < a->nkept && (a->kept[old].time < time - a->backlog_seconds || a->nkept - old >= a->cap))
    json_decref(a->kept[old++].alert);
  memmove(a->kept, a->kept + old, (a->nkept - old) * sizeof(*a->kept));
  a->nkept -= old;
  a->kept[a->nkept++] = (struct kept){.time = time, .alert = alert};
}

void pt_alerts_deliver(struct pt_alerts *a, const struct pt_policy_alert *alert, double time)
{
  a->by_severity[severity_index(alert->severity)]++;
  PT_LOG_WARN("alert", "{s:s,s:s,s:s,s:O,s:s?,s:s?}", "alert", alert->name, "severity", alert->severity, "summary",
              alert->summary ? alert->summary : "", "labels", alert->labels, "event", alert->event_type, "script",
              alert->script);
  if (!a->webhook || a->stopped)
    return;
  if (a->follower) {
    a->not_leader++;
    keep(a, alertmanager_json(alert, time), time);
    return;
  }
  pt_webhook_enqueue(a->webhook, alertmanager_json(alert, time));
}

void pt_alerts_set_leader(struct pt_alerts *a, bool leader, double since)
{
  if (!a)
    return;
  a->follower = !leader;
  if (!leader)
    return;
  size_t handed = 0;
  for (size_t i = 0; i < a->nkept; i++) {
    if (a->kept[i].time >= since && a->webhook && !a->stopped) {
      pt_webhook_enqueue(a->webhook, a->kept[i].alert);
      handed++;
    } else {
      json_decref(a->kept[i].alert);
    }
  }
  a->nkept = 0;
  a->after_takeover += handed;
  if (handed)
    PT_LOG_INFO("leader: delivering alerts raised since the previous leader was last seen", "{s:I}", "count",
                (json_int_t)handed);
}

void pt_alerts_stop(struct pt_alerts *a)
{
  a->stopped = true;
  pt_webhook_stop(a->webhook);
}

void pt_alerts_stats(const struct pt_alerts *a, struct pt_alerts_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (!a)
    return;
  memcpy(out->by_severity, a->by_severity, sizeof(out->by_severity));
  out->not_leader = a->not_leader;
  out->after_takeover = a->after_takeover;
  if (a->webhook)
    pt_webhook_stats(a->webhook, &out->webhook);
}

void pt_alerts_destroy(struct pt_alerts *a)
{
  if (!a)
    return;
  pt_webhook_destroy(a->webhook);
  for (size_t i = 0; i < a->nkept; i++)
    json_decref(a->kept[i].alert);
  free(a->kept);
  free(a);
}
