/* What `watch` is asked about: pod/NAME, a workload by its kind and name
 * (its pods are the ones its selector matches), or a label selector. */
#ifndef PT_CLI_WORKLOAD_H
#define PT_CLI_WORKLOAD_H

#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"

struct pt_workload_kind {
  const char *name;     /* canonical, singular: "deployment" */
  const char *aliases;  /* space-separated, as kubectl accepts them */
  const char *api;      /* "api/v1" or "apis/apps/v1" */
  const char *resource; /* plural: "deployments" */
  int map_selector;     /* spec.selector is a plain map (ReplicationController) */
};

/* "deployment/web", "deploy/web", "pod/web-1", "sts/db"... Returns 0 with
 * the kind and the name (a pointer into arg), or -EINVAL. */
int pt_workload_parse(const char *arg, const struct pt_workload_kind **kind, const char **name);
/* The kinds, NULL-terminated by name (for --help and completion). */
extern const struct pt_workload_kind pt_workload_kinds[];

/* The label selector string (the API's labelSelector parameter) of a
 * workload object's spec.selector: a metav1.LabelSelector (matchLabels and
 * matchExpressions with In, NotIn, Exists, DoesNotExist) or, for
 * map_selector kinds, a plain map. Returns 0, or -EINVAL with the reason in
 * err (no selector, an unknown operator). An empty selector is refused: it
 * would select every pod. */
int pt_workload_selector(const struct pt_workload_kind *kind, const json_t *object, struct pt_buf *out,
                         char *err, size_t errlen);

#endif
