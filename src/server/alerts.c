#include "server/alerts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/map.h"

const char *const pt_alert_severity_names[PT_ALERT_SEVERITIES] = {"info", "warning", "critical", "other"};

/* One active alert, also in its pull's list (by_pull). */
struct active {
  char *key;        /* its key in active (name + labels) */
  char *name;
  json_t *labels;   /* copy of the alert's labels */
  char *pull_id;    /* the pull whose event raised it */
  char *state;      /* that pull's state then */
  json_t *am;       /* its Alertmanager object, without endsAt */
  json_t *context;  /* the deliverer's, for on_resolved; may be NULL */
  struct active *pull_prev, *pull_next;
};

struct pt_alerts {
  uv_timer_t resend;
  struct pt_alerts_options opts;
  uint64_t by_severity[PT_ALERT_SEVERITIES];
  uint64_t resolved;
  struct pt_webhook *webhook; /* NULL without a URL */
  struct pt_map active;       /* name + labels -> struct active */
  /* pull id -> the first of its active alerts (a list through pull_next):
   * the change of a pull costs one lookup and a walk over its own alerts,
   * never over all of them (100,000 pulls failing at once, each with its
   * alert, would otherwise be quadratic). */
  struct pt_map by_pull;
  bool stopped;
  bool follower;               /* another replica delivers (docs/ha.md) */
  uint64_t not_leader, after_takeover;
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
  a->opts = *opts;
  if (a->opts.resend <= 0)
    a->opts.resend = 60;
  if (opts->webhook_url && *opts->webhook_url) {
    struct pt_webhook_options wo = {
      .url = opts->webhook_url, .timeout = opts->webhook_timeout, .queue_max = opts->webhook_queue};
    a->webhook = pt_webhook_create(loop, httpc, &wo);
    if (!a->webhook) {
      free(a);
      return NULL;
    }
  }
  pt_map_init(&a->active);
  pt_map_init(&a->by_pull);
  uv_timer_init(loop, &a->resend);
  a->resend.data = a;
  return a;
}

/* Alertmanager API v2's alert object, without endsAt: the alert's labels with
 * alertname and severity, its summary as an annotation. */
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

/* Hands one copy of am with the given endsAt to the webhook. */
static void send_alert(struct pt_alerts *a, const json_t *am, double ends_at)
{
  if (!a->webhook || a->stopped || a->follower || !am)
    return;
  char tb[40];
  json_t *copy = json_copy((json_t *)am);
  if (!copy)
    return;
  json_object_set_new(copy, "endsAt", json_string(pt_time_format(ends_at, tb, sizeof(tb))));
  pt_webhook_enqueue(a->webhook, copy);
}

static double ends_ahead(const struct pt_alerts *a, double now)
{
  return now + PT_ALERTS_ENDS_AFTER * a->opts.resend;
}

static void resend_cb(uv_timer_t *t)
{
  struct pt_alerts *a = t->data;
  double now = pt_clock_now();
  for (struct pt_map_entry *e = pt_map_first(&a->active); e; e = pt_map_next(&a->active, e))
    send_alert(a, ((struct active *)e->value)->am, ends_ahead(a, now));
}

static void active_free(struct active *x)
{
  if (!x)
    return;
  free(x->key);
  free(x->name);
  json_decref(x->labels);
  free(x->pull_id);
  free(x->state);
  json_decref(x->am);
  json_decref(x->context);
  free(x);
}

/* Puts x at the head of its pull's list. Returns 0 or -ENOMEM (then x is in
 * no list). */
static int pull_link(struct pt_alerts *a, struct active *x)
{
  struct active *head = pt_map_get(&a->by_pull, x->pull_id);
  if (pt_map_put(&a->by_pull, x->pull_id, x))
    return -ENOMEM;
  x->pull_prev = NULL;
  x->pull_next = head;
  if (head)
    head->pull_prev = x;
  return 0;
}

static void pull_unlink(struct pt_alerts *a, struct active *x)
{
  if (x->pull_next)
    x->pull_next->pull_prev = x->pull_prev;
  if (x->pull_prev)
    x->pull_prev->pull_next = x->pull_next;
  else if (x->pull_next)
    pt_map_put(&a->by_pull, x->pull_id, x->pull_next); /* replaces: no allocation */
  else
    pt_map_del(&a->by_pull, x->pull_id);
  x->pull_prev = x->pull_next = NULL;
}

static void untracked(const char *pull_id)
{
  PT_LOG_WARN("out of memory tracking an alert: it resolves by its endsAt", "{s:s}", "pull", pull_id);
}

/* Starts tracking a new active alert, or moves a tracked one to the pull of
 * its latest event. Without memory it is not tracked (it then expires by
 * its endsAt). */
static void track(struct pt_alerts *a, const char *key, const struct pt_policy_alert *alert, json_t *am,
                  const char *pull_id, const char *pull_state, const json_t *context)
{
  struct active *x = pt_map_get(&a->active, key);
  if (x) {
    json_decref(x->context);
    x->context = json_incref((json_t *)context);
    pull_unlink(a, x);
    free(x->pull_id);
    free(x->state);
    x->pull_id = strdup(pull_id);
    x->state = strdup(pull_state);
    json_decref(x->am);
    x->am = json_incref(am);
    if (!x->pull_id || !x->state || pull_link(a, x)) {
      untracked(pull_id);
      active_free(pt_map_del(&a->active, key));
    }
    return;
  }
  if (a->active.count >= PT_ALERTS_MAX_ACTIVE)
    return;
  x = calloc(1, sizeof(*x));
  if (!x || !(x->key = strdup(key)) || !(x->name = strdup(alert->name)) ||
      !(x->labels = json_deep_copy(alert->labels)) || !(x->pull_id = strdup(pull_id)) ||
      !(x->state = strdup(pull_state)) || pt_map_put(&a->active, key, x)) {
    untracked(pull_id);
    active_free(x);
    return;
  }
  if (pull_link(a, x)) {
    untracked(pull_id);
    active_free(pt_map_del(&a->active, key));
    return;
  }
  x->am = json_incref(am);
  x->context = json_incref((json_t *)context);
  if (a->webhook && !a->stopped && !uv_is_active((uv_handle_t *)&a->resend)) {
    uint64_t ms = (uint64_t)(a->opts.resend * 1000);
    uv_timer_start(&a->resend, resend_cb, ms, ms);
  }
}

void pt_alerts_deliver(struct pt_alerts *a, const struct pt_policy_alert *alert, const char *pull_id,
                       const char *pull_state, const json_t *context, double time)
{
  a->by_severity[severity_index(alert->severity)]++;
  PT_LOG_WARN("alert", "{s:s,s:s,s:s,s:O,s:s?,s:s?}", "alert", alert->name, "severity", alert->severity, "summary",
              alert->summary ? alert->summary : "", "labels", alert->labels, "event", alert->event_type, "script",
              alert->script);
  if (a->follower && a->webhook && !a->stopped)
    a->not_leader++;
  json_t *am = alertmanager_json(alert, time);
  char *key = pull_id && pull_state ? pt_policy_alert_key(alert->name, alert->labels) : NULL;
  if (key && am)
    track(a, key, alert, am, pull_id, pull_state, context);
  send_alert(a, am, ends_ahead(a, time));
  json_decref(am);
  free(key);
}

/* Resolves one alert at time: sent once more with endsAt = time. */
static void resolve(struct pt_alerts *a, const char *key, double time)
{
  struct active *x = pt_map_del(&a->active, key);
  if (!x)
    return;
  a->resolved++;
  pull_unlink(a, x);
  PT_LOG_INFO("alert resolved", "{s:s,s:O,s:s}", "alert", x->name, "labels", x->labels, "pull", x->pull_id);
  send_alert(a, x->am, time);
  if (a->opts.on_resolved)
    a->opts.on_resolved(a->opts.ud, x->name, x->labels, x->context, time);
  active_free(x);
  if (a->active.count == 0)
    uv_timer_stop(&a->resend);
}

void pt_alerts_set_leader(struct pt_alerts *a, bool leader)
{
  if (!a || a->follower == !leader)
    return;
  a->follower = !leader;
  if (!leader || !a->webhook || a->stopped || a->active.count == 0)
    return;
  /* Taking over: the previous leader may have missed what was raised since
   * its last renewal, so every active alert goes out now, as a re-send would
   * (Alertmanager merges a repeat of an alert it has). */
  a->after_takeover += a->active.count;
  PT_LOG_INFO("leading: sending the active alerts", "{s:I}", "count", (json_int_t)a->active.count);
  resend_cb(&a->resend);
}

void pt_alerts_pull_changed(struct pt_alerts *a, const char *pull_id, const char *state, double time)
{
  if (!a || !pull_id)
    return;
  /* resolve() unlinks (and frees) x: its successor is taken first. */
  struct active *next;
  for (struct active *x = pt_map_get(&a->by_pull, pull_id); x; x = next) {
    next = x->pull_next;
    if (!state || strcmp(x->state, state) != 0)
      resolve(a, x->key, time);
  }
}

void pt_alerts_stop(struct pt_alerts *a)
{
  a->stopped = true;
  uv_timer_stop(&a->resend);
  pt_webhook_stop(a->webhook);
}

void pt_alerts_stats(const struct pt_alerts *a, struct pt_alerts_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (!a)
    return;
  memcpy(out->by_severity, a->by_severity, sizeof(out->by_severity));
  out->resolved = a->resolved;
  out->not_leader = a->not_leader;
  out->after_takeover = a->after_takeover;
  out->active = a->active.count;
  if (a->webhook)
    pt_webhook_stats(a->webhook, &out->webhook);
}

static void closed_cb(uv_handle_t *h)
{
  free(h->data);
}

void pt_alerts_destroy(struct pt_alerts *a)
{
  if (!a)
    return;
  pt_webhook_destroy(a->webhook);
  for (struct pt_map_entry *e = pt_map_first(&a->active); e; e = pt_map_next(&a->active, e))
    active_free(e->value);
  pt_map_close(&a->active);
  pt_map_close(&a->by_pull);
  uv_close((uv_handle_t *)&a->resend, closed_cb);
}
