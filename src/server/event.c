#include "server/event.h"

#include <string.h>

#include "core/clock.h"
#include "server/store.h"

static const char *const type_names[PT_CHANGE_TYPE_COUNT] = {
  "pull.started",  "pull.progress",  "pull.completed",  "pull.failed", "pull.stalled", "pull.evicted",
  "layer.started", "layer.progress", "layer.completed", "node.updated", "node.removed", "alert",
};

const char *pt_change_type_name(enum pt_change_type t)
{
  return (unsigned)t < PT_CHANGE_TYPE_COUNT ? type_names[t] : "unknown";
}

json_t *pt_event_envelope(const char *type, double time, struct pt_event_time *last)
{
  struct pt_event_time local = {0};
  if (!last)
    last = &local;
  if (time > 0 && (last->t != time || !last->text[0])) {
    pt_time_format(time, last->text, sizeof(last->text));
    last->t = time;
  }
  json_t *o = json_object();
  json_object_set_new(o, "v", json_integer(1));
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "time", time > 0 ? json_string(last->text) : json_null());
  return o;
}

static json_t *layer_event(json_t *ev, const struct pt_change *c)
{
  const struct pt_pull *p = c->pull;
  json_object_set_new(ev, "pullId", json_string(p->id));
  json_object_set_new(ev, "node", json_string(p->node));
  json_object_set_new(ev, "layer", pt_store_layer_json(c->layer));
  json_t *nss = json_array();
  for (size_t i = 0; i < p->npods; i++)
    json_array_append_new(nss, json_string(p->pods[i].ns));
  json_object_set_new(ev, "namespaces", nss);
  return ev;
}

static json_t *evicted_event(json_t *ev, const struct pt_change *c)
{
  json_object_set_new(ev, "pullId", json_string(c->pull->id));
  json_object_set_new(ev, "node", json_string(c->pull->node));
  if (c->reason)
    json_object_set_new(ev, "reason", json_string(c->reason));
  if (c->superseded_by)
    json_object_set_new(ev, "supersededBy", json_string(c->superseded_by->id));
  return ev;
}

static json_t *alert_event(json_t *ev, const struct pt_change *c)
{
  const struct pt_policy_alert *a = c->alert;
  const char *node = json_string_value(json_object_get(a->labels, "node"));
  const char *pull = json_string_value(json_object_get(a->labels, "pull"));
  const char *summary = a->summary ? a->summary : "";
  json_object_set_new(ev, "alert", json_pack("{s:s,s:s,s:s,s:s,s:O,s:o,s:o,s:s?}", "name", a->name, "severity",
                                             a->severity, "summary", summary, "description", summary, "labels",
                                             a->labels, "pullId", pull ? json_string(pull) : json_null(), "node",
                                             node ? json_string(node) : json_null(), "eventType", a->event_type));
  return ev;
}

json_t *pt_event_json(const struct pt_change *c, struct pt_event_time *last)
{
  json_t *ev = pt_event_envelope(pt_change_type_name(c->type), c->time, last);
  if (!ev)
    return NULL;
  switch (c->type) {
  case PT_CHANGE_PULL_STARTED:
  case PT_CHANGE_PULL_PROGRESS:
  case PT_CHANGE_PULL_COMPLETED:
  case PT_CHANGE_PULL_FAILED:
  case PT_CHANGE_PULL_STALLED:
    json_object_set_new(ev, "pull", pt_store_pull_json(c->pull, c->with_layers, c->time));
    return ev;
  case PT_CHANGE_PULL_EVICTED:
    return evicted_event(ev, c);
  case PT_CHANGE_LAYER_STARTED:
  case PT_CHANGE_LAYER_PROGRESS:
  case PT_CHANGE_LAYER_COMPLETED:
    return layer_event(ev, c);
  case PT_CHANGE_NODE_UPDATED:
    json_object_set_new(ev, "node", pt_store_node_json(c->node, false));
    return ev;
  case PT_CHANGE_NODE_REMOVED:
    json_object_set_new(ev, "node", json_string(c->node->name));
    return ev;
  case PT_CHANGE_ALERT:
    return alert_event(ev, c);
  default:
    return ev;
  }
}

char *pt_event_dump(const json_t *event, size_t *len)
{
  char *s = json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  if (len)
    *len = s ? strlen(s) : 0;
  return s;
}
