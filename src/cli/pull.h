/* A pull object of the REST API and the event stream (docs/api.md), read into
 * the fields the terminal shows. The strings point into the JSON object. */
#ifndef PT_CLI_PULL_H
#define PT_CLI_PULL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct pt_pull_view {
  const char *id, *node, *image, *state, *error_reason, *error_message;
  double total_bytes, downloaded_bytes;
  double percent;           /* -1 = unknown (total not known yet) */
  double bytes_per_second;  /* -1 = unknown */
  double eta_seconds;       /* -1 = unknown */
  double started_at, completed_at; /* Unix seconds, 0 = unknown */
  double duration_seconds;  /* -1 = unknown */
  long layers_total, layers_done;
  size_t npods;
  const json_t *pods;       /* the "pods" array */
};

void pt_pull_view(const json_t *pull, struct pt_pull_view *v);
/* "ns/name" of the first pod ("name" when the namespace is ns_omit), "+N"
 * for the others; "" without pods. */
void pt_pull_pods(const struct pt_pull_view *v, const char *ns_omit, struct pt_buf *out);
/* Whether one of the pull's pods is namespace/name (and, when container is
 * not NULL and the pod entry names one, that container). */
bool pt_pull_serves(const struct pt_pull_view *v, const char *ns, const char *name, const char *container);
/* Done states: the pull will not change any more. */
bool pt_pull_finished(const struct pt_pull_view *v);

#endif
