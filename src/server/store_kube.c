/* Kubernetes into the store: pods and kubelet's image events, reconciled with
 * the agents' pulls. A kubelet failure fails the matching pull (or makes a
 * kubelet-only pull), kubelet's "Successfully pulled" confirms a pull and
 * resolves earlier failures, and every change marks its node for
 * re-correlation on the next tick. kubelet's messages are parsed once, by
 * the watcher (pt_kube_event_slim): this file reads the kind, image and
 * durations it extracted. */
#include "server/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "core/hash.h"
#include "core/image_ref.h"
#include "core/log.h"
#include "kube/parse.h"
#include "server/store_impl.h"

#define MAX_KUBE_EVENTS 1000

/* Seconds of slack when matching kubelet's event times (whole seconds) with
 * the agent's: kubelet posts an event after the runtime call returns, the
 * agent sees the result on its next poll and reports it a tick later. */
#define KUBELET_SLACK 30.0

const char *const pt_store_fail_reasons[PT_STORE_FAIL_REASONS] = {
  "Failed", "ErrImagePull", "ImagePullBackOff", "BackOff", "ErrImageNeverPull", "InspectFailed"};

static int failure_reason_index(const char *r)
{
  for (int i = 0; i < PT_STORE_FAIL_REASONS; i++)
    if (strcmp(r, pt_store_fail_reasons[i]) == 0)
      return i;
  return -1;
}

/* kubelet's failure messages that say nothing of the cause. */
static bool generic_failure_message(const char *m)
{
  return !m || strncmp(m, "Back-off pulling image", 22) == 0 || strncmp(m, "Error: ", 7) == 0;
}

static double num_or(const json_t *o, const char *key, double dflt)
{
  const json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

/* ------------------------------------------------------------------------ */
/* Re-correlation after Kubernetes changes                                    */

int store_kube_touch(struct pt_store *s, const char *node)
{
  if (!node || pt_map_get(&s->kube_dirty, node))
    return 0;
  return pt_map_put(&s->kube_dirty, node, s);
}

void store_kube_recorrelate(struct pt_store *s, double now)
{
  if (!s->kube_dirty.count)
    return;
  for (struct pt_map_entry *e = pt_map_first(&s->kube_dirty); e; e = pt_map_next(&s->kube_dirty, e)) {
    const struct pull_list *l = store_node_pulls(s, e->key);
    /* A finished pull keeps the pods it served even after they are gone. */
    for (size_t i = 0; i < l->n; i++)
      if (pull_is_active(l->v[i]) || l->v[i]->npods == 0)
        store_correlate(s, l->v[i], now, true);
  }
  pt_map_close(&s->kube_dirty);
  pt_map_init(&s->kube_dirty);
}

/* ------------------------------------------------------------------------ */
/* Pods                                                                       */

static const char *pod_node(const json_t *pod)
{
  return json_string_value(json_object_get(pod, "node"));
}

int pt_store_pod_upsert(struct pt_store *s, const json_t *pod)
{
  const char *ns = json_string_value(json_object_get(pod, "namespace"));
  const char *name = json_string_value(json_object_get(pod, "name"));
  if (!ns || !name)
    return -EINVAL;
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, name);
  json_t *copy = json_deep_copy(pod);
  if (!copy)
    return -ENOMEM;
  json_t *old = pt_map_get(&s->pods, key);
  /* The nodes are marked first: a failure then leaves the table as it was. */
  if (store_kube_touch(s, pod_node(copy)) || (old && store_kube_touch(s, pod_node(old))) ||
      pt_map_put(&s->pods, key, copy)) {
    json_decref(copy);
    return -ENOMEM;
  }
  json_decref(old);
  return 0;
}

const json_t *pt_store_pod(const struct pt_store *s, const char *ns, const char *name)
{
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, name);
  return pt_map_get(&s->pods, key);
}

int pt_store_pod_delete(struct pt_store *s, const char *ns, const char *name)
{
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, name);
  json_t *old = pt_map_get(&s->pods, key);
  if (!old)
    return -ENOENT;
  if (store_kube_touch(s, pod_node(old)))
    return -ENOMEM;
  pt_map_del(&s->pods, key);
  json_decref(old);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Matching kubelet's references with pulls                                   */

/* The matching key "nginx:1.25" -> "docker.io/library/nginx", "reg:5000/a/b:v1"
 * -> "reg/a/b": the agent's imageRef has no port (containerd's label key drops
 * it) and no tag. */
static void normalize_image(const char *in, char *out, size_t outlen)
{
  if (pt_image_ref_key(in, out, outlen) != 0)
    snprintf(out, outlen, "%s", in);
}

/* Whether pull p is of kubelet's reference ref: the same repository (the
 * agent's imageRef has neither port nor tag) and, when correlation or kubelet
 * named p's tag, the same tag. */
static bool pull_is_image(const struct pt_pull *p, const char *ref)
{
  if (!p->image_ref || !ref)
    return false;
  char a[1024], b[1024];
  normalize_image(p->image_ref, a, sizeof(a));
  normalize_image(ref, b, sizeof(b));
  if (strcmp(a, b) != 0)
    return false;
  if (!p->image || store_streq(p->image, p->image_ref))
    return true; /* no tag known for p: the repository decides */
  if (pt_image_ref_normalize(p->image, a, sizeof(a)) != 0 || pt_image_ref_normalize(ref, b, sizeof(b)) != 0)
    return true;
  return strcmp(a, b) == 0;
}

/* ------------------------------------------------------------------------ */
/* Successful pulls                                                           */

/* Moves failed (or kubelet-completed) kubelet-only pull k's failure into
 * agent pull a's history. */
static void take_over(struct pt_pull *a, struct pt_pull *k, double now)
{
  if (k->state == PT_PULL_FAILED) {
    store_set_str(&a->resolved_reason, k->error_reason);
    store_set_str(&a->resolved_message, k->error_message);
    a->resolved_failed_at = k->finished_at;
  } else {
    store_set_str(&a->resolved_reason, k->resolved_reason);
    store_set_str(&a->resolved_message, k->resolved_message);
    a->resolved_failed_at = k->resolved_failed_at;
  }
  a->resolved_at = now;
  if (a->kubelet_pulled_at <= 0 && k->kubelet_pulled_at > 0) {
    a->kubelet_pulled_at = k->kubelet_pulled_at;
    a->kubelet_duration = k->kubelet_duration;
    a->kubelet_waiting = k->kubelet_waiting;
  }
  if (!a->npods && k->npods) {
    a->pods = k->pods;
    a->npods = k->npods;
    k->pods = NULL;
    k->npods = 0;
  }
}

/* Resolves the kubelet-only pulls of a's image on a's node in favour of a,
 * the agent pull that kubelet's retry produced. Those pulls failed (or were
 * completed by kubelet's "Successfully pulled" before a was seen): an
 * operator wants one row for the image that says it got pulled after all,
 * with the earlier failure kept as history in a's resolvedError, not a
 * failure that stays current forever next to a successful pull. So the
 * kubelet-only pull leaves the tables (pull.evicted, reason "superseded"). */
bool store_supersede_kubelet_pulls(struct pt_store *s, struct pt_pull *a, double now)
{
  if (a->from_kubelet)
    return false;
  bool changed = false;
  const struct pull_list *l = store_node_pulls(s, a->node);
  /* Backwards: removing v[i] moves the last entry, already visited, there. */
  for (size_t i = l->n; i-- > 0;) {
    struct pt_pull *k = l->v[i];
    bool failed = k->state == PT_PULL_FAILED;
    bool resolved = k->state == PT_PULL_COMPLETED && k->resolved_reason;
    if (k == a || !k->from_kubelet || !(failed || resolved) || !pull_is_image(a, k->image))
      continue;
    /* An agent pull that had finished before the failure is not its retry. */
    if (a->completed_at > 0 && a->completed_at + KUBELET_SLACK < k->started_at)
      continue;
    take_over(a, k, now);
    PT_LOG_INFO("kubelet's retry succeeded: the failed kubelet pull is superseded", "{s:s,s:s,s:s,s:s?}", "pull",
                k->id, "by", a->id, "node", a->node, "reason", a->resolved_reason);
    s->counters.pulls_superseded++;
    store_emit_evicted(s, k, a, now);
    /* The last pull of the list may go with it: l stays valid while the
     * node has pulls, and a is one of them. */
    store_remove_pull(s, k);
    changed = true;
  }
  return changed;
}

/* The agent pull kubelet just finished: one still in flight that started
 * within the pull's duration, or one that completed about when kubelet said
 * so (older pulls of the image are other pulls); else the failed
 * kubelet-only pull of the image. */
static void pulled_targets(struct pt_store *s, const char *node, const char *image, double at, double took,
                           struct pt_pull **agent, struct pt_pull **kubelet)
{
  *agent = *kubelet = NULL;
  const struct pull_list *l = store_node_pulls(s, node);
  for (size_t i = 0; i < l->n; i++) {
    struct pt_pull *p = l->v[i];
    if (!pull_is_image(p, image))
      continue;
    if (p->from_kubelet) {
      if (p->state == PT_PULL_FAILED)
        *kubelet = p;
      continue;
    }
    bool fits = false;
    if (p->state == PT_PULL_COMPLETED)
      fits = fabs(p->completed_at - at) <= KUBELET_SLACK;
    else if (pull_is_active(p))
      fits = p->started_at <= at + KUBELET_SLACK && (took < 0 || p->started_at >= at - took - KUBELET_SLACK);
    if (fits && (!*agent || p->started_at > (*agent)->started_at))
      *agent = p;
  }
}

/* No agent saw the retry (no agent on the node, or it finished between two
 * polls and is not reported yet): kubelet's word completes the failed
 * kubelet-only pull, the failure becomes history. */
static void complete_kubelet_pull(struct pt_store *s, struct pt_pull *k, double at, double now)
{
  store_set_str(&k->resolved_reason, k->error_reason);
  store_set_str(&k->resolved_message, k->error_message);
  k->resolved_failed_at = k->finished_at;
  k->resolved_at = now;
  free(k->error_reason);
  free(k->error_message);
  k->error_reason = k->error_message = NULL;
  store_set_pull_state(s, k, PT_PULL_COMPLETED);
  k->completed_at = at;
  k->finished_at = now;
  k->updated_at = now;
  k->eta = -1;
  s->counters.pulls_completed++;
  PT_LOG_INFO("kubelet's retry succeeded: the failed kubelet pull is completed", "{s:s,s:s,s:s?}", "pull", k->id,
              "node", k->node, "reason", k->resolved_reason);
  store_emit_pull(s, PT_CHANGE_PULL_COMPLETED, k, PT_LAYERS_ALL, now);
  store_policy_emit(s, "pull.completed", k, now, -1);
}

/* kubelet's part of a finished pull: which pull a "Successfully pulled"
 * event confirms, its durations, and the failures it resolves. */
static void kubelet_pulled(struct pt_store *s, const json_t *event, const char *node, const char *image, double now)
{
  if (!image || !*image)
    return;
  double lt = num_or(event, "lastTimestamp", 0);
  double at = lt > 0 ? lt : now;
  double duration = num_or(event, "durationSeconds", -1), waiting = num_or(event, "waitingSeconds", -1);
  double took = fmax(duration, waiting); /* < 0: not given */
  struct pt_pull *a, *k;
  pulled_targets(s, node, image, at, took, &a, &k);
  struct pt_pull *target = a ? a : k;
  if (!target)
    return;
  bool changed = false;
  if (target->kubelet_pulled_at <= 0) {
    target->kubelet_pulled_at = at;
    target->kubelet_duration = duration;
    target->kubelet_waiting = waiting;
    changed = true;
  }
  if (a) {
    changed |= store_supersede_kubelet_pulls(s, a, now);
    if (changed) {
      a->updated_at = now;
      store_emit_pull(s, PT_CHANGE_PULL_PROGRESS, a, PT_LAYERS_NONE, now);
    }
  } else {
    complete_kubelet_pull(s, k, at, now);
  }
  struct pt_node *n = store_node(s, node);
  if (n)
    store_count_node_pulls(s, n);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                   */

/* The pull of kubelet's image on the node that a failure is about: the same
 * repository, and the same tag when correlation named the pull's. A rollout
 * to a tag that does not exist must not fail the pull of another tag of the
 * repository in flight beside it (and then leave no failed pull of its own
 * once that pull moves on). */
static struct pt_pull *failure_target(struct pt_store *s, const char *node, const char *image)
{
  struct pt_pull *match = NULL;
  const struct pull_list *l = store_node_pulls(s, node);
  for (size_t i = 0; i < l->n; i++) {
    struct pt_pull *p = l->v[i];
    if (!pull_is_image(p, image) || !(pull_is_active(p) || p->state == PT_PULL_FAILED || p->state == PT_PULL_LOST))
      continue;
    if (!match || p->started_at > match->started_at)
      match = p;
  }
  return match;
}

/* One kubelet-only pull per node and reference (with its tag): failures of
 * two tags of a repository are two pulls. Finds it, or creates it (*created)
 * for the event's pod. NULL without memory. */
static struct pt_pull *kubelet_only_pull(struct pt_store *s, const json_t *event, const char *node,
                                         const char *image, double now, bool *created)
{
  char norm[1024], full[1024], id[1200];
  normalize_image(image, norm, sizeof(norm));
  if (pt_image_ref_normalize(image, full, sizeof(full)) != 0)
    snprintf(full, sizeof(full), "%s", norm);
  snprintf(id, sizeof(id), "%s/kubelet-%016llx", node, (unsigned long long)pt_fnv1a_str(PT_FNV1A_INIT, full));
  *created = false;
  struct pt_pull *p = pt_map_get(&s->pulls, id);
  if (p)
    return p;
  p = store_pull_new(id, node);
  if (!p)
    return NULL;
  p->image_ref = strdup(norm);
  p->image = strdup(image);
  p->pods = calloc(1, sizeof(*p->pods));
  if (p->pods) {
    p->npods = 1;
    p->pods[0].ns = store_strdup(json_string_value(json_object_get(event, "namespace")));
    p->pods[0].name = store_strdup(json_string_value(json_object_get(event, "pod")));
  }
  if (!p->image_ref || !p->image || !p->pods || !p->pods[0].ns || !p->pods[0].name) {
    store_pull_free(s, p);
    return NULL;
  }
  p->from_kubelet = true;
  p->eta = -1;
  p->started_at = num_or(event, "firstTimestamp", now);
  if (store_add_pull(s, p))
    return NULL;
  *created = true;
  s->counters.pulls_started++;
  struct pt_node *n = store_node(s, node);
  if (n)
    n->pulls_total++;
  return p;
}

/* Fails pull p with kubelet's reason and message. */
static void fail_pull(struct pt_store *s, struct pt_pull *p, const json_t *event, const char *reason,
                      const char *message, bool created, double now)
{
  /* kubelet follows the failure that says why ("Failed to pull image ...: not
   * found") with generic ones ("Error: ErrImagePull", "Back-off pulling image
   * ..."); the reason moves on, the message keeps the cause. */
  const char *stored = message ? message : reason;
  if (p->state == PT_PULL_FAILED && p->error_message && generic_failure_message(stored) &&
      !generic_failure_message(p->error_message))
    stored = p->error_message;
  if (!created && p->state == PT_PULL_FAILED && store_streq(p->error_reason, reason) &&
      store_streq(p->error_message, stored))
    return;
  if (p->state == PT_PULL_COMPLETED && p->from_kubelet) {
    /* kubelet completed it once, and now the image fails again: a new
     * failure of the same kubelet-only pull. */
    p->started_at = num_or(event, "firstTimestamp", now);
    p->completed_at = 0;
    p->kubelet_pulled_at = 0;
  }
  bool was_failed = p->state == PT_PULL_FAILED;
  store_set_pull_state(s, p, PT_PULL_FAILED);
  p->finished_at = now;
  p->updated_at = now;
  p->stalled_since = 0;
  p->eta = -1;
  p->bytes_per_sec = 0;
  store_set_str(&p->error_reason, reason);
  if (stored != p->error_message)
    store_set_str(&p->error_message, stored);
  if (!was_failed) {
    s->counters.pulls_failed++;
    s->counters.failed_by_reason[failure_reason_index(reason)]++;
  }
  if (created)
    store_emit_pull(s, PT_CHANGE_PULL_STARTED, p, PT_LAYERS_ALL, now);
  store_emit_pull(s, PT_CHANGE_PULL_FAILED, p, PT_LAYERS_ALL, now);
  store_policy_emit(s, "pull.failed", p, now, -1);
  struct pt_node *n = store_node(s, p->node);
  if (n)
    store_count_node_pulls(s, n);
}

/* ------------------------------------------------------------------------ */
/* kubelet events                                                             */

/* Keeps a copy of the event for correlation (with the node of its pod when
 * kubelet did not name one) in the bounded list; returns the copy (borrowed)
 * or NULL without memory. */
static json_t *record_event(struct pt_store *s, const json_t *event)
{
  json_t *copy = json_deep_copy(event);
  if (!copy)
    return NULL;
  if (!json_object_get(copy, "node")) {
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(event, "namespace")),
             json_string_value(json_object_get(event, "pod")));
    const char *node = pod_node(pt_map_get(&s->pods, key));
    if (node)
      json_object_set_new(copy, "node", json_string(node));
  }
  if (store_kube_touch(s, pod_node(copy))) {
    json_decref(copy);
    return NULL;
  }
  if (json_array_append_new(s->events, copy)) /* takes copy, also on failure */
    return NULL;
  while (json_array_size(s->events) > MAX_KUBE_EVENTS) {
    /* The oldest event leaves: its node's correlation may change too. */
    store_kube_touch(s, pod_node(json_array_get(s->events, 0)));
    json_array_remove(s->events, 0);
  }
  return copy;
}

int pt_store_kube_event(struct pt_store *s, const json_t *event, double now)
{
  const char *reason = json_string_value(json_object_get(event, "reason"));
  const char *kind = json_string_value(json_object_get(event, "kind"));
  if (!json_string_value(json_object_get(event, "namespace")) || !json_string_value(json_object_get(event, "pod")) ||
      !reason || !kind)
    return -EINVAL;
  /* "already present on machine" is not a pull, and it is the most frequent
   * image event of all (every container start): recording it would only push
   * the Pulling events that correlation needs out of the bounded list. */
  if (strcmp(kind, pt_kube_msg_kind_name(PT_KUBE_MSG_PRESENT)) == 0)
    return 0;
  const json_t *copy = record_event(s, event);
  if (!copy)
    return -ENOMEM;
  const char *node = pod_node(copy);
  if (!node || json_is_true(json_object_get(event, "historic")))
    return 0;
  const char *image = json_string_value(json_object_get(event, "image"));
  if (strcmp(kind, pt_kube_msg_kind_name(PT_KUBE_MSG_PULLED)) == 0) {
    kubelet_pulled(s, event, node, image, now);
    return 0;
  }
  if (failure_reason_index(reason) < 0 || !image || !*image)
    return 0;
  bool created = false;
  struct pt_pull *p = failure_target(s, node, image);
  if (!p && !(p = kubelet_only_pull(s, event, node, image, now, &created)))
    return -ENOMEM;
  fail_pull(s, p, event, reason, json_string_value(json_object_get(event, "message")), created, now);
  return 0;
}
