/* Agent reports into the store: the per-node rate limit, then each pull of
 * the report, in two phases. prepare() allocates everything the report needs
 * (new pulls already in the tables, layer arrays, string copies); if any
 * allocation fails, everything prepared is taken back and nothing has
 * changed. commit() then changes the tables without an allocation that can
 * leave them half-changed (the policy's decisions and the change records
 * allocate for their own use only). Duplicate pull ids are rejected by the
 * report's validation, so each prepared pull is a different record. */
#include "server/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "core/clock.h"
#include "core/log.h"
#include "server/store_impl.h"

/* ------------------------------------------------------------------------ */
/* Rate limit: a token bucket per node                                        */

static bool take_token(struct pt_store *s, struct pt_node *n, double now)
{
  if (s->opts.report_min_interval <= 0)
    return true;
  if (n->tokens_at <= 0) {
    n->tokens = s->opts.report_burst;
  } else if (now > n->tokens_at) {
    n->tokens = fmin(s->opts.report_burst, n->tokens + (now - n->tokens_at) / s->opts.report_min_interval);
  }
  n->tokens_at = now;
  if (n->tokens < 1)
    return false;
  n->tokens -= 1;
  return true;
}

double pt_store_retry_after(struct pt_store *s, const char *node, double now)
{
  struct pt_node *n = store_node(s, node);
  if (!n || s->opts.report_min_interval <= 0)
    return 0;
  return fmax(0, (1 - n->tokens) * s->opts.report_min_interval);
}

double pt_store_clock_offset(struct pt_store *s, const char *node, double measured)
{
  struct pt_node *n = store_node(s, node);
  double current = n ? n->clock_offset : 0;
  if (fabs(measured - current) <= PT_STORE_CLOCK_TOLERANCE)
    return current;
  double next = fabs(measured) <= PT_STORE_CLOCK_TOLERANCE ? 0 : measured;
  if (n) {
    n->clock_offset = next;
    PT_LOG_WARN("the agent's clock differs from the server's: its times are converted", "{s:s,s:f}", "node",
                node, "offsetSeconds", next);
  }
  return next;
}

/* ------------------------------------------------------------------------ */
/* Prepare                                                                    */

/* A copy of a string member made ahead, when it differs from the current
 * value. */
struct copy {
  char *value;
  bool differs;
};

struct prepared {
  struct pt_pull *p;
  bool is_new;
  /* The report names the pull's layers in the same order with the same
   * digests and media types (every report but the first, usually): they are
   * updated in place, nothing is allocated. Otherwise `layers` is the new
   * array. */
  bool same_layers;
  struct pt_layer *layers;
  struct copy image_ref, image, manifest_digest, index_digest;
};

static int copy_prepare(struct copy *c, const char *cur, const char *want)
{
  c->differs = !store_streq(cur, want);
  if (!c->differs || !want)
    return 0;
  c->value = strdup(want);
  return c->value ? 0 : -ENOMEM;
}

/* Sets *dst from a prepared copy; returns true when it changed. */
static bool copy_commit(char **dst, struct copy *c)
{
  if (!c->differs)
    return false;
  free(*dst);
  *dst = c->value;
  c->value = NULL;
  return true;
}

static void prepared_clear(struct pt_store *s, struct prepared *pp, size_t nlayers)
{
  store_free_layers(s, pp->layers, pp->layers ? nlayers : 0);
  free(pp->image_ref.value);
  free(pp->image.value);
  free(pp->manifest_digest.value);
  free(pp->index_digest.value);
  memset(pp, 0, sizeof(*pp));
}

static void pull_key(const struct pt_node *node, const struct pt_report_pull *rp, char *key, size_t len)
{
  /* Both parts are validated (node <= 253, id <= 256 bytes): they fit. */
  size_t nl = strlen(node->name), il = strlen(rp->id);
  if (strncmp(rp->id, node->name, nl) == 0 && rp->id[nl] == '/' && il < len) {
    memcpy(key, rp->id, il + 1);
  } else if (nl + 1 + il < len) {
    memcpy(key, node->name, nl);
    key[nl] = '/';
    memcpy(key + nl + 1, rp->id, il + 1);
  } else {
    snprintf(key, len, "%s/%s", node->name, rp->id);
  }
}

static int prepare_pull(struct pt_store *s, const struct pt_node *node, const struct pt_report_pull *rp,
                        struct prepared *pp)
{
  char key[600];
  pull_key(node, rp, key, sizeof(key));
  pp->p = pt_map_get(&s->pulls, key);
  if (!pp->p) {
    struct pt_pull *p = store_pull_new(key, node->name);
    if (!p)
      return -ENOMEM;
    if (store_add_pull(s, p))
      return -ENOMEM;
    pp->p = p;
    pp->is_new = true;
  }
  pp->same_layers = !pp->is_new && pp->p->nlayers == rp->nlayers;
  for (size_t i = 0; pp->same_layers && i < rp->nlayers; i++)
    pp->same_layers = store_layer_is(&pp->p->layers[i], &rp->layers[i]) &&
                      store_streq(pp->p->layers[i].media_type, rp->layers[i].media_type);
  if (rp->nlayers && !pp->same_layers) {
    pp->layers = calloc(rp->nlayers, sizeof(*pp->layers));
    if (!pp->layers)
      return -ENOMEM;
    for (size_t i = 0; i < rp->nlayers; i++) {
      int dr = store_layer_set_reported(&pp->layers[i], &rp->layers[i]);
      bool failed = false;
      pp->layers[i].media_type = store_media_type_ref(s, rp->layers[i].media_type, &failed);
      if (dr || failed)
        return -ENOMEM;
    }
  }
  if (copy_prepare(&pp->image_ref, pp->p->image_ref, rp->image_ref) ||
      copy_prepare(&pp->manifest_digest, pp->p->manifest_digest, rp->manifest_digest) ||
      copy_prepare(&pp->index_digest, pp->p->index_digest, rp->index_digest))
    return -ENOMEM;
  /* The image follows imageRef unless correlation gave it a tag. */
  const struct pt_pull *p = pp->p;
  if (pp->image_ref.differs && (!p->image || store_streq(p->image, p->image_ref)) &&
      copy_prepare(&pp->image, p->image, rp->image_ref))
    return -ENOMEM;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Commit                                                                     */

static enum pt_pull_state derive_state(const struct pt_report_pull *rp)
{
  if (rp->completed_at > 0)
    return PT_PULL_COMPLETED;
  size_t downloading = 0, stalled = 0;
  for (size_t i = 0; i < rp->nlayers; i++) {
    downloading += rp->layers[i].state == PT_LAYER_DOWNLOADING;
    stalled += rp->layers[i].state == PT_LAYER_STALLED;
  }
  return stalled > 0 && downloading == 0 ? PT_PULL_STALLED : PT_PULL_PULLING;
}

static const struct pt_layer *find_layer(const struct pt_pull *p, size_t hint, const struct pt_report_layer *rl)
{
  if (hint < p->nlayers && store_layer_is(&p->layers[hint], rl))
    return &p->layers[hint];
  for (size_t i = 0; i < p->nlayers; i++)
    if (store_layer_is(&p->layers[i], rl))
      return &p->layers[i];
  return NULL;
}

/* The report's layers into the pull, and the bytes really fetched; marks the
 * layers that moved (state, size or bytes: pt_layer.moved). Returns what of
 * them the pull's one event of this report carries: all of them when the
 * report changed the list (another length, order, digest or media type),
 * those that moved otherwise, none when none did. */
static enum pt_change_layers commit_layers(struct pt_store *s, struct prepared *pp, const struct pt_report_pull *rp)
{
  struct pt_pull *p = pp->p;
  bool any_moved = false;
  for (size_t i = 0; i < rp->nlayers; i++) {
    const struct pt_report_layer *rl = &rp->layers[i];
    struct pt_layer old, *nlay;
    const struct pt_layer *ol;
    if (pp->same_layers) {
      old = p->layers[i];
      ol = &old;
      nlay = &p->layers[i];
    } else {
      ol = pp->is_new ? NULL : find_layer(p, i, rl);
      nlay = &pp->layers[i];
    }
    int64_t before = ol ? ol->downloaded : 0;
    if (rl->state != PT_LAYER_CACHED && rl->downloaded > before)
      s->counters.bytes += (uint64_t)(rl->downloaded - before);
    nlay->moved = !ol || ol->state != rl->state || ol->downloaded != rl->downloaded || ol->total != rl->total;
    any_moved |= nlay->moved;
    nlay->state = rl->state;
    nlay->total = rl->total;
    nlay->downloaded = rl->downloaded;
    nlay->started_at = rl->started_at;
    nlay->updated_at = rl->updated_at;
  }
  if (!pp->same_layers) {
    store_free_layers(s, p->layers, p->nlayers);
    p->layers = pp->layers;
    p->nlayers = rp->nlayers;
    pp->layers = NULL;
  }
  if (pp->is_new || !pp->same_layers)
    return PT_LAYERS_ALL;
  return any_moved ? PT_LAYERS_MOVED : PT_LAYERS_NONE;
}

/* The state a report gives the pull. A kubelet failure sticks until the
 * agent shows progress or completion; leaving failed or lost turns the
 * failure into history. */
static enum pt_pull_state commit_state(struct pt_store *s, struct pt_pull *p, const struct pt_report_pull *rp,
                                       bool is_new, enum pt_pull_state old_state, int64_t old_downloaded, double now)
{
  enum pt_pull_state st = derive_state(rp);
  if (old_state == PT_PULL_FAILED && !is_new && st != PT_PULL_COMPLETED && p->downloaded <= old_downloaded)
    st = PT_PULL_FAILED;
  if ((old_state == PT_PULL_LOST || old_state == PT_PULL_FAILED) && st != old_state) {
    if (old_state == PT_PULL_FAILED && p->error_reason) {
      /* kubelet's retry got going: its failure is history now. */
      store_set_str(&p->resolved_reason, p->error_reason);
      store_set_str(&p->resolved_message, p->error_message);
      p->resolved_failed_at = p->finished_at;
      p->resolved_at = now;
    }
    p->lost_at = 0;
    p->finished_at = 0;
    free(p->error_reason);
    free(p->error_message);
    p->error_reason = p->error_message = NULL;
  }
  store_set_pull_state(s, p, st);
  if (st == PT_PULL_STALLED && (is_new || old_state != PT_PULL_STALLED))
    p->stalled_since = now;
  else if (st != PT_PULL_STALLED)
    p->stalled_since = 0;
  return st;
}

static void completed(struct pt_store *s, struct pt_pull *p, double now)
{
  store_complete_pull(s, p, now);
  store_supersede_kubelet_pulls(s, p, now);
  store_emit_pull(s, PT_CHANGE_PULL_COMPLETED, p, PT_LAYERS_ALL, now);
  store_policy_emit(s, "pull.completed", p, now, -1);
}

static void commit_pull(struct pt_store *s, struct pt_node *node, struct prepared *pp,
                        const struct pt_report_pull *rp, double now)
{
  struct pt_pull *p = pp->p;
  bool is_new = pp->is_new;
  if (is_new) {
    node->pulls_total++;
    s->counters.pulls_started++;
  }
  enum pt_pull_state old_state = p->state;
  int64_t old_downloaded = p->downloaded;
  enum pt_change_layers event_layers = commit_layers(s, pp, rp);
  bool changed = event_layers != PT_LAYERS_NONE || is_new;

  if (pp->image_ref.differs) {
    copy_commit(&p->image, &pp->image);
    copy_commit(&p->image_ref, &pp->image_ref);
    changed = true;
  }
  changed |= copy_commit(&p->manifest_digest, &pp->manifest_digest);
  changed |= copy_commit(&p->index_digest, &pp->index_digest);
  if (rp->started_at > 0)
    p->started_at = rp->started_at;
  else if (p->started_at <= 0)
    p->started_at = now;
  changed |= p->total_known != rp->total_known || p->total != rp->total || p->downloaded != rp->downloaded ||
             p->completed_at != rp->completed_at;
  p->total_known = rp->total_known;
  p->total = rp->total;
  p->downloaded = rp->downloaded;
  p->completed_at = rp->completed_at;
  p->last_seen_at = now;
  p->report_gen = node->report_gen;
  p->from_kubelet = false;

  enum pt_pull_state st = commit_state(s, p, rp, is_new, old_state, old_downloaded, now);
  double old_bps = p->bytes_per_sec, old_eta = p->eta;
  store_rate_update(s, p, now);
  changed |= fabs(old_bps - p->bytes_per_sec) > 0.5 || fabs(old_eta - p->eta) > 0.5;
  if (changed)
    p->updated_at = now;

  if (is_new) {
    store_correlate(s, p, now, false);
    store_emit_pull(s, PT_CHANGE_PULL_STARTED, p, PT_LAYERS_ALL, now);
    store_policy_emit(s, "pull.started", p, now, -1);
    if (st == PT_PULL_COMPLETED) {
      completed(s, p, now);
    } else if (st == PT_PULL_STALLED) {
      s->counters.stalls++;
      store_emit_pull(s, PT_CHANGE_PULL_STALLED, p, PT_LAYERS_NONE, now);
    }
    return;
  }
  if (st == PT_PULL_COMPLETED && old_state != PT_PULL_COMPLETED) {
    completed(s, p, now);
  } else if (st == PT_PULL_STALLED && old_state != PT_PULL_STALLED) {
    s->counters.stalls++;
    store_emit_pull(s, PT_CHANGE_PULL_STALLED, p, event_layers, now);
    store_policy_emit(s, "pull.stalled", p, now, 0);
  } else if (changed || st != old_state) {
    store_emit_pull(s, PT_CHANGE_PULL_PROGRESS, p, event_layers, now);
    store_policy_emit(s, "pull.progress", p, now, -1);
  }
}

/* ------------------------------------------------------------------------ */
/* The report                                                                 */

/* Prepares every pull of the report; on failure takes back what was
 * prepared (the new pulls leave the tables again) and returns -ENOMEM. */
static int prepare_report(struct pt_store *s, const struct pt_node *n, const struct pt_report *r,
                          struct prepared *pp)
{
  size_t i;
  for (i = 0; i < r->npulls; i++)
    if (prepare_pull(s, n, &r->pulls[i], &pp[i]))
      break;
  if (i == r->npulls)
    return 0;
  for (size_t k = 0; k <= i && k < r->npulls; k++) {
    if (pp[k].is_new)
      store_remove_pull(s, pp[k].p);
    prepared_clear(s, &pp[k], r->pulls[k].nlayers);
  }
  return -ENOMEM;
}

static json_t *time_or_null(double t)
{
  char tb[40];
  return t > 0 ? json_string(pt_time_format(t, tb, sizeof(tb))) : json_null();
}

/* The node's unattributed ingests as reported (the members of docs/api.md). */
static json_t *unattributed_json(const struct pt_report *r)
{
  json_t *a = json_array();
  for (size_t i = 0; a && i < r->nunattributed; i++) {
    const struct pt_report_unattributed *u = &r->unattributed[i];
    json_array_append_new(a, json_pack("{s:s,s:s,s:s?,s:I,s:I,s:o,s:o}", "ref", u->ref, "kind", u->kind, "digest",
                                       u->digest, "totalBytes", (json_int_t)u->total, "downloadedBytes",
                                       (json_int_t)u->downloaded, "startedAt", time_or_null(u->started_at),
                                       "updatedAt", time_or_null(u->updated_at)));
  }
  return a;
}

/* The report's containerd status; returns true when the node's changed.
 * The agent's since is already on the server's clock (pt_report_shift). */
static bool commit_containerd(struct pt_store *s, struct pt_node *n, const struct pt_report *r, struct copy *error)
{
  bool unreachable = !r->containerd_reachable;
  bool changed = unreachable != n->containerd_unreachable || r->containerd_since != n->containerd_since;
  if (unreachable != n->containerd_unreachable) {
    if (unreachable)
      PT_LOG_WARN("node's containerd unreachable", "{s:s,s:s?}", "node", n->name, "error", r->containerd_error);
    else
      PT_LOG_INFO("node's containerd reachable again", "{s:s}", "node", n->name);
    s->nodes_containerd_unreachable += unreachable ? 1 : (size_t)-1;
    n->containerd_unreachable = unreachable;
  }
  n->containerd_since = r->containerd_since;
  return copy_commit(&n->containerd_error, error) || changed;
}

enum pt_apply_result pt_store_apply_report(struct pt_store *s, const struct pt_report *r, double now)
{
  struct pt_node *n = store_node(s, r->node);
  bool node_new = !n;
  if (node_new) {
    if (s->nodes.count >= s->opts.max_nodes)
      return PT_APPLY_FULL;
    if (!(n = store_add_node(s, r->node, now)))
      return PT_APPLY_NOMEM;
  }
  if (!take_token(s, n, now))
    return PT_APPLY_THROTTLED;
  if (n->boot_id && strcmp(n->boot_id, r->boot_id) == 0 && r->seq <= n->seq)
    return PT_APPLY_STALE;

  struct prepared *pp = r->npulls ? calloc(r->npulls, sizeof(*pp)) : NULL;
  struct copy boot_id = {0}, agent_version = {0}, ctrd_error = {0};
  if ((r->npulls && !pp) || copy_prepare(&boot_id, n->boot_id, r->boot_id) ||
      copy_prepare(&agent_version, n->agent_version, r->agent_version) ||
      copy_prepare(&ctrd_error, n->containerd_error, r->containerd_error) || (pp && prepare_report(s, n, r, pp))) {
    free(pp);
    free(boot_id.value);
    free(agent_version.value);
    free(ctrd_error.value);
    if (node_new)
      store_remove_node(s, n);
    PT_LOG_ERROR("out of memory applying a report: nothing applied", "{s:s,s:I}", "node", r->node, "pulls",
                 (json_int_t)r->npulls);
    return PT_APPLY_NOMEM;
  }

  /* Commit: nothing below fails. */
  bool node_changed = node_new;
  if (n->boot_id && boot_id.differs) {
    n->restarts++;
    s->counters.node_restarts++;
    node_changed = true;
    PT_LOG_INFO("agent restarted", "{s:s,s:s,s:s}", "node", n->name, "oldBootId", n->boot_id, "bootId",
                r->boot_id);
  }
  if (n->last_report > 0 && now > n->last_report) {
    double gap = now - n->last_report;
    n->interval = n->interval > 0 ? 0.8 * n->interval + 0.2 * gap : gap;
  }
  node_changed |= copy_commit(&n->boot_id, &boot_id);
  node_changed |= copy_commit(&n->agent_version, &agent_version);
  node_changed |= commit_containerd(s, n, r, &ctrd_error);
  n->seq = r->seq;
  n->last_report = now;
  if (n->state != PT_NODE_OK) {
    store_set_node_state(s, n, PT_NODE_OK);
    node_changed = true;
  }
  if (r->nunattributed || (n->unattributed && json_array_size(n->unattributed))) {
    json_decref(n->unattributed);
    n->unattributed = unattributed_json(r);
  }
  n->report_gen = ++s->report_gen;

  for (size_t i = 0; i < r->npulls; i++) {
    commit_pull(s, n, &pp[i], &r->pulls[i], now);
    prepared_clear(s, &pp[i], r->pulls[i].nlayers);
  }
  free(pp);

  /* In-flight pulls that left the report without completing: lost. */
  const struct pull_list *mine = store_node_pulls(s, n->name);
  for (size_t i = 0; i < mine->n; i++) {
    struct pt_pull *p = mine->v[i];
    if (p->report_gen == n->report_gen || p->from_kubelet)
      continue;
    if (pull_is_active(p))
      store_mark_lost(s, p, "lost", "the pull left its node's report before completing", now);
  }
  store_count_node_pulls(s, n);
  if (node_changed)
    store_emit_node(s, n, now);
  return PT_APPLY_APPLIED;
}
