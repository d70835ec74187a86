#include "server/event.h"

#include <errno.h>
#include <string.h>

#include "server/store.h"

static const char *const type_names[PT_CHANGE_TYPE_COUNT] = {
  "pull.started", "pull.progress", "pull.completed", "pull.failed", "pull.stalled",
  "pull.evicted", "node.updated",  "node.removed",   "alert",       "rollout.summary",
};

const char *pt_change_type_name(enum pt_change_type t)
{
  return (unsigned)t < PT_CHANGE_TYPE_COUNT ? type_names[t] : "unknown";
}

void pt_event_open(struct pt_jsonw *w, const char *type, double time)
{
  pt_jsonw_object_open(w);
  pt_jsonw_key(w, "v");
  pt_jsonw_int(w, 1);
  pt_jsonw_key(w, "type");
  pt_jsonw_string(w, type);
  pt_jsonw_key(w, "time");
  pt_jsonw_time(w, time);
}

static void pull_ref(struct pt_jsonw *w, const struct pt_pull *p)
{
  pt_jsonw_key(w, "pullId");
  pt_jsonw_string(w, p->id);
  pt_jsonw_key(w, "node");
  pt_jsonw_string(w, p->node);
}

static void evicted_event(struct pt_jsonw *w, const struct pt_change *c)
{
  pull_ref(w, c->pull);
  if (c->reason) {
    pt_jsonw_key(w, "reason");
    pt_jsonw_string(w, c->reason);
  }
  if (c->superseded_by) {
    pt_jsonw_key(w, "supersededBy");
    pt_jsonw_string(w, c->superseded_by->id);
  }
}

/* Alerts are rare and carry the policy's labels (a jansson object): jansson
 * writes that member. */
static int alert_event(struct pt_jsonw *w, const struct pt_change *c)
{
  const struct pt_policy_alert *a = c->alert;
  const char *node = json_string_value(json_object_get(a->labels, "node"));
  const char *pull = json_string_value(json_object_get(a->labels, "pull"));
  const char *summary = a->summary ? a->summary : "";
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:O,s:o,s:o,s:s?}", "name", a->name, "severity", a->severity, "summary",
                        summary, "description", summary, "labels", a->labels, "pullId",
                        pull ? json_string(pull) : json_null(), "node", node ? json_string(node) : json_null(),
                        "eventType", a->event_type);
  char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) : NULL;
  json_decref(o);
  if (!text)
    return -ENOMEM;
  pt_jsonw_key(w, "alert");
  pt_jsonw_raw(w, text, strlen(text));
  free(text);
  return 0;
}

int pt_event_write(struct pt_buf *out, const struct pt_change *c)
{
  struct pt_jsonw w;
  pt_jsonw_init(&w, out);
  pt_event_open(&w, pt_change_type_name(c->type), c->time);
  int r = 0;
  switch (c->type) {
  case PT_CHANGE_PULL_STARTED:
  case PT_CHANGE_PULL_PROGRESS:
  case PT_CHANGE_PULL_COMPLETED:
  case PT_CHANGE_PULL_FAILED:
  case PT_CHANGE_PULL_STALLED:
    pt_jsonw_key(&w, "pull");
    pt_store_pull_write(&w, c->pull, c->layers == PT_LAYERS_ALL, c->time);
    if (c->layers == PT_LAYERS_MOVED) {
      pt_jsonw_key(&w, "layerChanges");
      pt_store_layer_changes_write(&w, c->pull);
    }
    break;
  case PT_CHANGE_PULL_EVICTED:
    evicted_event(&w, c);
    break;
  case PT_CHANGE_NODE_UPDATED:
    pt_jsonw_key(&w, "node");
    pt_store_node_write(&w, c->node, false);
    break;
  case PT_CHANGE_NODE_REMOVED:
    pt_jsonw_key(&w, "node");
    pt_jsonw_string(&w, c->node->name);
    break;
  case PT_CHANGE_ALERT:
    r = alert_event(&w, c);
    break;
  case PT_CHANGE_ROLLOUT_SUMMARY:
    pt_jsonw_key(&w, "rollout");
    pt_store_rollout_write(&w, c->rollout);
    break;
  default:
    break;
  }
  pt_jsonw_object_close(&w);
  return r ? r : out->oom ? -ENOMEM : 0;
}

json_t *pt_event_json(const struct pt_change *c)
{
  struct pt_buf b;
  pt_buf_init(&b);
  json_t *v = pt_event_write(&b, c) == 0 ? json_loadb(b.data, b.len, 0, NULL) : NULL;
  pt_buf_close(&b);
  return v;
}
