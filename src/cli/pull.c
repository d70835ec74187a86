#include "cli/pull.h"

#include <string.h>

#include "core/clock.h"
#include "core/json.h"

static double num(const json_t *o, const char *k, double dflt)
{
  json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

static double when(const json_t *o, const char *k)
{
  double t;
  return pt_time_parse(pt_json_str(o, k), &t) == 0 ? t : 0;
}

void pt_pull_view(const json_t *p, struct pt_pull_view *v)
{
  memset(v, 0, sizeof(*v));
  v->id = pt_json_str(p, "id");
  v->node = pt_json_str(p, "node");
  v->image = pt_json_str(p, "image");
  v->state = pt_json_str(p, "state");
  if (!v->state)
    v->state = "unknown";
  json_t *e = json_object_get(p, "error");
  v->error_reason = pt_json_str(e, "reason");
  v->error_message = pt_json_str(e, "message");
  v->total_bytes = num(p, "totalBytes", 0);
  v->downloaded_bytes = num(p, "downloadedBytes", 0);
  v->percent = num(p, "percent", -1);
  v->bytes_per_second = num(p, "bytesPerSecond", -1);
  v->eta_seconds = num(p, "etaSeconds", -1);
  v->started_at = when(p, "startedAt");
  v->completed_at = when(p, "completedAt");
  v->duration_seconds = num(p, "durationSeconds", -1);
  v->layers_total = (long)num(p, "layersTotal", 0);
  v->layers_done = (long)num(p, "layersDone", 0);
  v->pods = json_object_get(p, "pods");
  v->npods = json_is_array(v->pods) ? json_array_size(v->pods) : 0;
}

void pt_pull_pods(const struct pt_pull_view *v, const char *ns_omit, struct pt_buf *out)
{
  if (v->npods == 0)
    return;
  const json_t *p = json_array_get(v->pods, 0);
  const char *ns = pt_json_str(p, "namespace"), *name = pt_json_str(p, "name");
  if (ns && !(ns_omit && strcmp(ns, ns_omit) == 0))
    pt_buf_printf(out, "%s/", ns);
  pt_buf_puts(out, name ? name : "?");
  if (v->npods > 1)
    pt_buf_printf(out, " +%zu", v->npods - 1);
}

bool pt_pull_serves(const struct pt_pull_view *v, const char *ns, const char *name, const char *container)
{
  for (size_t i = 0; i < v->npods; i++) {
    const json_t *p = json_array_get(v->pods, i);
    const char *pns = pt_json_str(p, "namespace"), *pname = pt_json_str(p, "name");
    const char *pc = pt_json_str(p, "container");
    if (pns && pname && strcmp(pns, ns) == 0 && strcmp(pname, name) == 0 &&
        (!container || !pc || strcmp(pc, container) == 0))
      return true;
  }
  return false;
}

bool pt_pull_finished(const struct pt_pull_view *v)
{
  return strcmp(v->state, "completed") == 0 || strcmp(v->state, "failed") == 0 ||
         strcmp(v->state, "lost") == 0;
}
