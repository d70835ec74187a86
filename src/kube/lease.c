#include "kube/lease.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/httpc.h"
#include "core/json.h"
#include "core/log.h"
#include "kube/watcher.h"

enum step { STEP_NONE, STEP_GET, STEP_CREATE, STEP_UPDATE, STEP_RELEASE };

struct pt_lease {
  uv_loop_t *loop;
  const struct pt_kube *kube;
  struct pt_httpc *http;
  uv_timer_t timer;
  char *name, *ns, *identity;
  double duration, renew_deadline, retry_period;
  void (*changed)(void *ud, bool leader, const char *holder);
  void *ud;

  enum step step;        /* the request in flight */
  uint64_t req_id;
  bool leader, stopped, closing, failing;
  bool releasing;        /* release asked while a request was in flight */
  double last_renew;     /* monotonic time of the last successful write as holder */
  /* The record as last read, and when (monotonic) it was last seen to change:
   * the lease expires leaseDurationSeconds after that, by this clock. */
  json_t *observed;
  char observed_key[512];
  double observed_at;
  char holder[256];

  void (*release_done)(void *ud);
  void *release_ud;
  struct pt_lease_stats st;
};

static void start_round(struct pt_lease *l);

static char *lease_url(const struct pt_lease *l, const char *base, bool collection)
{
  size_t len = strlen(base) + strlen(l->ns) + strlen(l->name) + 64;
  char *url = malloc(len);
  if (url)
    snprintf(url, len, "%s/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", base, l->ns,
             collection ? "" : "/", collection ? "" : l->name);
  return url;
}

/* metav1.MicroTime: RFC 3339 in UTC with microseconds. */
static void micro_time(char *out, size_t len)
{
  double now = pt_clock_now();
  time_t s = (time_t)now;
  struct tm tm;
  gmtime_r(&s, &tm);
  long us = (long)((now - (double)s) * 1e6);
  if (us > 999999)
    us = 999999;
  size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, len - n, ".%06ldZ", us);
}

static const char *spec_str(const json_t *lease, const char *key)
{
  const char *s = json_string_value(json_object_get(json_object_get(lease, "spec"), key));
  return s ? s : "";
}

static json_int_t spec_int(const json_t *lease, const char *key)
{
  return json_integer_value(json_object_get(json_object_get(lease, "spec"), key));
}

static void set_leader(struct pt_lease *l, bool leader, const char *holder)
{
  bool was = l->leader;
  bool holder_changed = strcmp(l->holder, holder) != 0;
  snprintf(l->holder, sizeof(l->holder), "%s", holder);
  l->leader = leader;
  l->st.leader = leader;
  if (was == leader && !holder_changed)
    return;
  if (leader && !was) {
    l->st.acquired++;
    PT_LOG_INFO("leader election: this replica is the leader", "{s:s,s:s,s:s}", "lease", l->name, "namespace",
                l->ns, "identity", l->identity);
  } else if (!leader) {
    PT_LOG_INFO("leader election: following", "{s:s,s:s,s:s}", "lease", l->name, "namespace", l->ns, "holder",
                *holder ? holder : "(none)");
  }
  if (l->changed)
    l->changed(l->ud, leader, holder);
}

/* A leader that could not renew for the renew deadline stops leading before
 * any other replica may take over (the lease duration is longer). */
static void check_deadline(struct pt_lease *l)
{
  if (l->leader && pt_clock_mono() - l->last_renew > l->renew_deadline) {
    l->st.lost++;
    PT_LOG_WARN("leader election: lease not renewed within the renew deadline; no longer leading",
                "{s:s,s:s,s:f}", "lease", l->name, "namespace", l->ns, "renewDeadlineSeconds", l->renew_deadline);
    set_leader(l, false, "");
  }
}

static void note_failure(struct pt_lease *l, const char *what, const struct pt_http_response *r)
{
  l->st.errors++;
  if (!l->failing) {
    char body[300];
    snprintf(body, sizeof(body), "%.*s", (int)(r->body_len < 299 ? r->body_len : 299), r->body ? r->body : "");
    PT_LOG_WARN("leader election: lease request failed; retrying", "{s:s,s:s,s:s,s:i,s:s?,s:s}", "step", what,
                "lease", l->name, "namespace", l->ns, "status", (int)r->status, "error", r->error, "body", body);
  }
  l->failing = true;
  check_deadline(l);
}

/* Remembers a record read or written, and when it last changed. */
static void observe(struct pt_lease *l, json_t *lease)
{
  char key[sizeof(l->observed_key)];
  snprintf(key, sizeof(key), "%s|%s|%s", spec_str(lease, "holderIdentity"), spec_str(lease, "renewTime"),
           spec_str(lease, "acquireTime"));
  if (!l->observed || strcmp(key, l->observed_key) != 0) {
    snprintf(l->observed_key, sizeof(l->observed_key), "%s", key);
    l->observed_at = pt_clock_mono();
  }
  json_decref(l->observed);
  l->observed = lease;
}

static void done_cb(void *ud, const struct pt_http_response *r);

static int send_request(struct pt_lease *l, enum step step, const char *method, json_t *body)
{
  struct pt_http_request req;
  const char *base = pt_kube_credentials(l->kube, &req);
  char *url = lease_url(l, base, step == STEP_CREATE);
  char *text = body ? pt_json_dump(body) : NULL;
  int rc = -ENOMEM;
  if (url && (!body || text)) {
    double timeout = fmax(1.0, fmin(l->renew_deadline / 2, 10.0));
    req.method = method;
    req.url = url;
    req.body = text;
    req.body_len = text ? strlen(text) : 0;
    req.content_type = text ? "application/json" : NULL;
    req.timeout_ms = (long)(timeout * 1000);
    req.connect_timeout_ms = req.timeout_ms;
    req.max_body = 1 << 20;
    l->step = step;
    rc = pt_httpc_request(l->http, &req, done_cb, l, &l->req_id);
    if (rc < 0)
      l->step = STEP_NONE;
  }
  free(url);
  free(text);
  return rc;
}

/* The spec this replica writes as holder: acquireTime and leaseTransitions
 * carry over while it keeps the lease, and change when it takes it over. */
static json_t *holder_spec(struct pt_lease *l, const json_t *old, const char *identity, long duration)
{
  char now[40];
  micro_time(now, sizeof(now));
  bool keep = old && strcmp(spec_str(old, "holderIdentity"), identity) == 0 && *identity;
  json_int_t transitions = old ? spec_int(old, "leaseTransitions") : 0;
  if (old && !keep && *identity)
    transitions++;
  return json_pack("{s:s,s:I,s:s,s:s,s:I}", "holderIdentity", identity, "leaseDurationSeconds", (json_int_t)duration,
                   "acquireTime", keep ? spec_str(old, "acquireTime") : now, "renewTime", now, "leaseTransitions",
                   transitions);
}

static void try_create(struct pt_lease *l)
{
  json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
                           "metadata", "name", l->name, "namespace", l->ns, "spec",
                           holder_spec(l, NULL, l->identity, lround(l->duration)));
  if (!body || send_request(l, STEP_CREATE, "POST", body) < 0)
    l->st.errors++;
  json_decref(body);
}

/* PUT of the record as read with a new spec: the resourceVersion it carries
 * makes the API server refuse it (409) when another replica wrote since. */
static void try_update(struct pt_lease *l, enum step step, const char *identity, long duration)
{
  json_t *body = json_deep_copy(l->observed);
  json_t *spec = holder_spec(l, l->observed, identity, duration);
  if (!body || !spec || json_object_set_new(body, "spec", spec) < 0) {
    json_decref(body);
    l->st.errors++;
    return;
  }
  if (send_request(l, step, "PUT", body) < 0)
    l->st.errors++;
  json_decref(body);
}

/* The record read: follow a live holder, else write ourselves in. */
static void decide(struct pt_lease *l)
{
  const char *holder = spec_str(l->observed, "holderIdentity");
  double duration = (double)spec_int(l->observed, "leaseDurationSeconds");
  if (duration <= 0)
    duration = l->duration;
  bool mine = strcmp(holder, l->identity) == 0;
  if (*holder && !mine && pt_clock_mono() - l->observed_at < duration) {
    if (l->leader)
      l->st.lost++; /* another replica took over while our renewals failed */
    set_leader(l, false, holder);
    return;
  }
  if (*holder && !mine)
    PT_LOG_INFO("leader election: the lease expired; taking over", "{s:s,s:s,s:s,s:f}", "lease", l->name,
                "namespace", l->ns, "previousHolder", holder, "leaseDurationSeconds", duration);
  try_update(l, STEP_UPDATE, l->identity, lround(l->duration));
}

static void finish_release(struct pt_lease *l)
{
  void (*done)(void *) = l->release_done;
  l->release_done = NULL;
  if (done)
    done(l->release_ud);
}

/* The Lease in a 200/201 answer, or NULL. */
static json_t *answer_lease(const struct pt_http_response *r)
{
  if (r->result != 0 || (r->status != 200 && r->status != 201))
    return NULL;
  json_t *lease = json_loadb(r->body, r->body_len, 0, NULL);
  if (!json_is_object(json_object_get(lease, "spec")) ||
      !json_is_string(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"))) {
    json_decref(lease);
    return NULL;
  }
  return lease;
}

static void release_now(struct pt_lease *l);

static void done_cb(void *ud, const struct pt_http_response *r)
{
  struct pt_lease *l = ud;
  enum step step = l->step;
  l->step = STEP_NONE;
  if (r->result == -ECANCELED || l->closing)
    return;
  if (l->releasing) {
    /* The request that was in flight when the release was asked may have
     * renewed the lease: release the record it returned (release_now()
     * checks that it is still ours). */
    json_t *lease = answer_lease(r);
    if (lease)
      observe(l, lease);
    l->releasing = false;
    release_now(l);
    return;
  }
  if (step == STEP_RELEASE) {
    if (r->result == 0 && r->status == 200)
      PT_LOG_INFO("leader election: lease released", "{s:s,s:s}", "lease", l->name, "namespace", l->ns);
    else
      PT_LOG_WARN("leader election: could not release the lease; it expires instead", "{s:s,s:i,s:s?}", "lease",
                  l->name, "status", (int)r->status, "error", r->error);
    finish_release(l);
    return;
  }
  if (l->stopped)
    return;
  static const char *const names[] = {"none", "get", "create", "update", "release"};
  if (r->result == 0 && r->status == 409) {
    /* Another replica created or wrote the lease first: the next round reads
     * who holds it now. */
    l->st.conflicts++;
    PT_LOG_DEBUG("leader election: conflict; another replica wrote first", "{s:s}", "step", names[step]);
    check_deadline(l);
    return;
  }
  if (step == STEP_GET && r->result == 0 && r->status == 404) {
    l->failing = false;
    try_create(l);
    return;
  }
  json_t *lease = answer_lease(r);
  if (!lease) {
    note_failure(l, names[step], r);
    return;
  }
  l->failing = false;
  observe(l, lease);
  if (step == STEP_GET) {
    decide(l);
    return;
  }
  /* Created or updated as holder. */
  l->last_renew = pt_clock_mono();
  set_leader(l, true, l->identity);
}

static void round_cb(uv_timer_t *t)
{
  start_round(t->data);
}

static void start_round(struct pt_lease *l)
{
  check_deadline(l);
  if (l->step != STEP_NONE || l->stopped)
    return;
  if (send_request(l, STEP_GET, "GET", NULL) < 0)
    l->st.errors++;
}

struct pt_lease *pt_lease_create(uv_loop_t *loop, const struct pt_kube *kube, const struct pt_lease_options *o)
{
  if (!kube || !o->name || !*o->name || !o->namespace || !*o->namespace || !o->identity || !*o->identity ||
      o->duration < 1 || o->renew_deadline <= 0 || o->renew_deadline >= o->duration || o->retry_period <= 0 ||
      o->retry_period >= o->renew_deadline)
    return NULL;
  struct pt_lease *l = calloc(1, sizeof(*l));
  if (!l)
    return NULL;
  l->loop = loop;
  l->kube = kube;
  l->name = strdup(o->name);
  l->ns = strdup(o->namespace);
  l->identity = strdup(o->identity);
  l->duration = o->duration;
  l->renew_deadline = o->renew_deadline;
  l->retry_period = o->retry_period;
  l->changed = o->changed;
  l->ud = o->ud;
  l->http = pt_httpc_create(loop);
  if (!l->name || !l->ns || !l->identity || !l->http) {
    pt_httpc_destroy(l->http);
    free(l->name);
    free(l->ns);
    free(l->identity);
    free(l);
    return NULL;
  }
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  return l;
}

void pt_lease_start(struct pt_lease *l)
{
  uint64_t ms = (uint64_t)(l->retry_period * 1000);
  uv_timer_start(&l->timer, round_cb, 0, ms);
  PT_LOG_INFO("leader election: started", "{s:s,s:s,s:s,s:f,s:f,s:f}", "lease", l->name, "namespace", l->ns,
              "identity", l->identity, "leaseDurationSeconds", l->duration, "renewDeadlineSeconds",
              l->renew_deadline, "retryPeriodSeconds", l->retry_period);
}

/* Hands over at once: an empty holder with a one-second duration, as
 * client-go's ReleaseOnCancel writes; the resourceVersion read last makes it
 * fail harmlessly if another replica took over meanwhile. */
static void release_now(struct pt_lease *l)
{
  if (l->observed && strcmp(spec_str(l->observed, "holderIdentity"), l->identity) == 0) {
    try_update(l, STEP_RELEASE, "", 1);
    if (l->step == STEP_RELEASE)
      return;
  }
  finish_release(l);
}

void pt_lease_release(struct pt_lease *l, void (*done)(void *ud), void *ud)
{
  l->stopped = true;
  uv_timer_stop(&l->timer);
  bool was_leader = l->leader;
  if (was_leader)
    set_leader(l, false, "");
  l->release_done = done;
  l->release_ud = ud;
  if (!was_leader) {
    if (l->step != STEP_NONE)
      pt_httpc_cancel(l->http, l->req_id);
    finish_release(l);
    return;
  }
  /* A renewal in flight may land: wait for its answer, whose record is the
   * one to release (cancelling it would leave a stale resourceVersion). */
  if (l->step != STEP_NONE)
    l->releasing = true;
  else
    release_now(l);
}

void pt_lease_stats(const struct pt_lease *l, struct pt_lease_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (l)
    *out = l->st;
}

const char *pt_lease_holder(const struct pt_lease *l)
{
  return l ? l->holder : "";
}

static void timer_closed(uv_handle_t *h)
{
  struct pt_lease *l = h->data;
  json_decref(l->observed);
  free(l->name);
  free(l->ns);
  free(l->identity);
  free(l);
}

void pt_lease_destroy(struct pt_lease *l)
{
  if (!l)
    return;
  l->closing = true;
  l->stopped = true;
  l->release_done = NULL;
  pt_httpc_destroy(l->http);
  l->http = NULL;
  uv_timer_stop(&l->timer);
  uv_close((uv_handle_t *)&l->timer, timer_closed);
}
