#include "cli/workload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"

const struct pt_workload_kind pt_workload_kinds[] = {
  {"pod", "po pods", "api/v1", "pods", 0},
  {"deployment", "deploy deployments", "apis/apps/v1", "deployments", 0},
  {"statefulset", "sts statefulsets", "apis/apps/v1", "statefulsets", 0},
  {"daemonset", "ds daemonsets", "apis/apps/v1", "daemonsets", 0},
  {"replicaset", "rs replicasets", "apis/apps/v1", "replicasets", 0},
  {"job", "jobs", "apis/batch/v1", "jobs", 0},
  {"replicationcontroller", "rc replicationcontrollers", "api/v1", "replicationcontrollers", 1},
  {NULL, NULL, NULL, NULL, 0},
};

static int word_in(const char *w, size_t n, const char *list)
{
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, " ");
    if (len == n && strncmp(p, w, n) == 0)
      return 1;
    p += len;
    p += *p == ' ';
  }
  return 0;
}

int pt_workload_parse(const char *arg, const struct pt_workload_kind **kind, const char **name)
{
  const char *slash = strchr(arg, '/');
  if (!slash || slash == arg || !slash[1] || strchr(slash + 1, '/'))
    return -EINVAL;
  size_t n = (size_t)(slash - arg);
  /* kubectl also accepts "deployment.apps/web". */
  const char *dot = memchr(arg, '.', n);
  size_t kn = dot ? (size_t)(dot - arg) : n;
  for (const struct pt_workload_kind *k = pt_workload_kinds; k->name; k++) {
    if ((strlen(k->name) == kn && strncmp(k->name, arg, kn) == 0) || word_in(arg, kn, k->aliases)) {
      if (dot) {
        /* The group after the dot must be the kind's ("apps", "batch", "" for core). */
        const char *g = strncmp(k->api, "apis/", 5) == 0 ? k->api + 5 : "";
        size_t glen = strcspn(g, "/");
        size_t dl = n - kn - 1;
        if (dl != glen || strncmp(dot + 1, g, glen) != 0)
          return -EINVAL;
      }
      *kind = k;
      *name = slash + 1;
      return 0;
    }
  }
  return -EINVAL;
}

static void add_sep(struct pt_buf *out)
{
  if (out->len)
    pt_buf_puts(out, ",");
}

int pt_workload_selector(const struct pt_workload_kind *kind, const json_t *obj, struct pt_buf *out,
                         char *err, size_t errlen)
{
  const json_t *sel = json_object_get(json_object_get(obj, "spec"), "selector");
  const json_t *labels = kind->map_selector ? sel : json_object_get(sel, "matchLabels");
  const json_t *exprs = kind->map_selector ? NULL : json_object_get(sel, "matchExpressions");
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)labels, key, val) {
    if (!json_is_string(val)) {
      snprintf(err, errlen, "selector label \"%s\" is not a string", key);
      return -EINVAL;
    }
    add_sep(out);
    pt_buf_printf(out, "%s=%s", key, json_string_value(val));
  }
  size_t i;
  json_t *e;
  json_array_foreach((json_t *)exprs, i, e) {
    const char *k = pt_json_str(e, "key"), *op = pt_json_str(e, "operator");
    json_t *vals = json_object_get(e, "values");
    if (!k || !op) {
      snprintf(err, errlen, "selector matchExpressions[%zu] lacks key or operator", i);
      return -EINVAL;
    }
    add_sep(out);
    if (strcmp(op, "Exists") == 0) {
      pt_buf_puts(out, k);
    } else if (strcmp(op, "DoesNotExist") == 0) {
      pt_buf_printf(out, "!%s", k);
    } else if (strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0) {
      pt_buf_printf(out, "%s %s (", k, op[0] == 'I' ? "in" : "notin");
      size_t j;
      json_t *v;
      json_array_foreach(vals, j, v) {
        pt_buf_printf(out, "%s%s", j ? "," : "", json_is_string(v) ? json_string_value(v) : "");
      }
      pt_buf_puts(out, ")");
    } else {
      snprintf(err, errlen, "selector operator \"%s\" is not supported", op);
      return -EINVAL;
    }
  }
  if (out->len == 0) {
    snprintf(err, errlen, "%s has an empty selector (it would match every pod)", kind->name);
    return -EINVAL;
  }
  return out->oom ? -ENOMEM : 0;
}
