/* The C-side default decisions: the one default of each hook, in one place.
 * They are used when no script registered a hook, and whenever a hook fails
 * or returns nonsense, so they mirror the default scripts in lua/ (the
 * correlation one without the tag disambiguation by event time). Their
 * parameters are the built-in settings (p->set, from the policy's
 * configuration table). The alert hooks have none: a failing handler
 * delivers no alert. Nothing else in the server decides rate, eviction or
 * correlation on its own. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/image_ref.h"
#include "policy/internal.h"

/* Below this speed an ETA is meaningless; the same constant as lua/rate.lua. */
#define MIN_RATE 1.0

void fallback_rate(const struct pt_policy *p, const struct pt_policy_rate_sample *s,
                   struct pt_policy_rate_state *st, struct pt_policy_rate_result *out)
{
  double bytes = (double)s->downloaded;
  if (!st->c_primed) {
    st->c_primed = true;
    st->c_time = s->now;
    st->c_bytes = bytes;
    st->c_rate = -1; /* no speed yet */
  } else if (s->now > st->c_time) {
    double dt = s->now - st->c_time;
    double inst = (bytes - st->c_bytes) / dt;
    if (s->stalled || inst < 0)
      inst = 0;
    if (st->c_rate < 0)
      st->c_rate = inst;
    else
      st->c_rate += (1 - exp2(-dt / p->set.rate_half_life)) * (inst - st->c_rate);
    st->c_time = s->now;
    st->c_bytes = bytes;
  }
  out->bytes_per_sec = st->c_rate > 0 ? st->c_rate : 0;
  out->eta_seconds = -1;
  if (s->completed) {
    out->eta_seconds = 0;
  } else if (s->total >= 0) {
    double left = (double)s->total - bytes;
    if (left <= 0)
      out->eta_seconds = 0;
    else if (out->bytes_per_sec >= MIN_RATE)
      out->eta_seconds = left / out->bytes_per_sec;
  }
}

enum pt_policy_evict_decision fallback_evict(const struct pt_policy *p,
                                             const struct pt_policy_evict_input *in)
{
  double now = in->now;
  switch (in->phase) {
  case PT_POLICY_PULL_COMPLETED:
  case PT_POLICY_PULL_FAILED: {
    double since = in->finished_at > 0 ? in->finished_at
                   : in->last_seen_at > 0 ? in->last_seen_at : now;
    return now - since >= p->set.history_ttl ? PT_POLICY_EVICT : PT_POLICY_KEEP;
  }
  case PT_POLICY_PULL_LOST: {
    double since = in->lost_at > 0 ? in->lost_at : in->last_seen_at > 0 ? in->last_seen_at : now;
    return now - since >= p->set.history_ttl ? PT_POLICY_EVICT : PT_POLICY_KEEP;
  }
  default: {
    double last = in->node_last_report > 0 ? in->node_last_report : in->last_seen_at;
    if (last > 0 && now - last >= p->set.node_lost_grace)
      return PT_POLICY_MARK_LOST;
    return PT_POLICY_KEEP;
  }
  }
}

/* ---- correlation ---------------------------------------------------------- */

static int add_target(struct pt_policy_correlation *out, const char *ns, const char *pod,
                      const char *container)
{
  struct pt_policy_target *t = realloc(out->targets, (out->n_targets + 1) * sizeof(*t));
  if (!t)
    return -ENOMEM;
  out->targets = t;
  t = &t[out->n_targets];
  t->ns = strdup(ns);
  t->pod = strdup(pod);
  t->container = container ? strdup(container) : NULL;
  if (!t->ns || !t->pod || (container && !t->container)) {
    free(t->ns);
    free(t->pod);
    free(t->container);
    return -ENOMEM;
  }
  out->n_targets++;
  return 0;
}

static double num(const json_t *o, const char *k)
{
  const json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : 0;
}

int fallback_correlate(const json_t *pull, const json_t *pods, const json_t *events,
                       struct pt_policy_correlation *out)
{
  struct pt_image_ref want, img;
  if (pt_image_ref_parse(json_string_value(json_object_get(pull, "imageRef")), &want))
    return 0;
  const char *node = json_string_value(json_object_get(pull, "node"));
  const char *mdig = json_string_value(json_object_get(pull, "manifestDigest"));
  const char *idig = json_string_value(json_object_get(pull, "indexDigest"));
  size_t i, j;
  const json_t *pod;
  json_array_foreach(pods, i, pod) {
    const char *pnode = json_string_value(json_object_get(pod, "node"));
    const char *ns = json_string_value(json_object_get(pod, "namespace"));
    const char *name = json_string_value(json_object_get(pod, "name"));
    if (!ns || !name || (node && pnode && strcmp(node, pnode) != 0))
      continue;
    static const char *const lists[] = {"initContainers", "containers"};
    for (int l = 0; l < 2; l++) {
      const json_t *c;
      json_array_foreach(json_object_get(pod, lists[l]), j, c) {
        const char *cname = json_string_value(json_object_get(c, "name"));
        if (pt_image_ref_parse(json_string_value(json_object_get(c, "image")), &img) ||
            !pt_image_ref_same_repo(&img, &want))
          continue;
        if (img.digest[0] && (mdig || idig) &&
            !((mdig && strcmp(img.digest, mdig) == 0) || (idig && strcmp(img.digest, idig) == 0)))
          continue;
        if (add_target(out, ns, name, cname))
          return -ENOMEM;
      }
    }
  }
  if (!out->n_targets)
    return 0;
  /* The most recent Pulling event of a matched pod names the full reference. */
  double best_t = -1;
  const char *best = NULL;
  size_t best_len = 0;
  const json_t *ev;
  json_array_foreach(events, i, ev) {
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    const char *msg = json_string_value(json_object_get(ev, "message"));
    const char *ens = json_string_value(json_object_get(ev, "namespace"));
    const char *epod = json_string_value(json_object_get(ev, "pod"));
    static const char prefix[] = "Pulling image \"";
    if (!reason || strcmp(reason, "Pulling") != 0 || !msg || !ens || !epod ||
        strncmp(msg, prefix, sizeof(prefix) - 1) != 0)
      continue;
    bool ours = false;
    for (size_t k = 0; k < out->n_targets && !ours; k++)
      ours = strcmp(out->targets[k].ns, ens) == 0 && strcmp(out->targets[k].pod, epod) == 0;
    const char *ref = msg + sizeof(prefix) - 1;
    const char *q = strchr(ref, '"');
    if (!ours || !q || q == ref || (size_t)(q - ref) >= 1024)
      continue;
    char buf[1024];
    memcpy(buf, ref, (size_t)(q - ref));
    buf[q - ref] = '\0';
    double t = num(ev, "lastTimestamp");
    if (t <= 0)
      t = num(ev, "firstTimestamp");
    if (pt_image_ref_parse(buf, &img) == 0 && pt_image_ref_same_repo(&img, &want) && t > best_t) {
      best_t = t;
      best = ref;
      best_len = (size_t)(q - ref);
    }
  }
  if (best && !(out->image_ref = strndup(best, best_len)))
    return -ENOMEM;
  return 0;
}
