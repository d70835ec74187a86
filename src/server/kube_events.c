#include "server/kube_events.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/httpc.h"
#include "core/log.h"
#include "core/map.h"
#include "core/utf8.h"
#include "kube/watcher.h"

/* The API server refuses an Event whose note is longer (events.k8s.io/v1
 * validation: 1 kB); a longer note, from a script, is cut rather than lost. */
#define NOTE_MAX 1024

/* Entries kept in each table at most; beyond it the oldest are swept. */
#define MAX_ENTRIES 10000

const char *const pt_kube_event_result_names[PT_KEV_RESULTS] = {"created", "patched", "failed", "throttled",
                                                                  "skipped"};

struct bucket {
  double tokens, at;
};

/* An Event already written, for the series of its repeats. */
struct series {
  char *ns, *name;   /* the Event object */
  uint64_t count;    /* occurrences so far */
  double last;       /* last occurrence */
  bool creating;     /* its POST is in flight */
  bool dirty;        /* repeats arrived meanwhile: PATCH once it exists */
};

struct pt_kube_events {
  struct pt_kube_events_options opts;
  char *instance;
  pt_kube_events_write_fn write;
  void *write_ud;
  pt_kube_events_leader_fn is_leader;
  void *leader_ud;
  struct bucket all;
  struct pt_map pods;    /* "ns/pod" -> struct bucket */
  struct pt_map series;  /* "ns/pod/reason" -> struct series */
  size_t in_flight;
  bool closing;
  struct pt_kube_events_stats st;
};

/* One request in flight. */
struct write {
  struct pt_kube_events *ke;
  char *key;   /* of its series entry */
  bool patch;
};

static void series_free(struct series *s)
{
  if (!s)
    return;
  free(s->ns);
  free(s->name);
  free(s);
}

struct pt_kube_events *pt_kube_events_create(const struct pt_kube_events_options *opts)
{
  struct pt_kube_events *ke = calloc(1, sizeof(*ke));
  if (!ke)
    return NULL;
  ke->opts = *opts;
  if (ke->opts.per_minute <= 0)
    ke->opts.per_minute = 60;
  if (ke->opts.per_pod_per_minute <= 0)
    ke->opts.per_pod_per_minute = 5;
  if (ke->opts.series_window <= 0)
    ke->opts.series_window = 1800;
  ke->instance = strdup(opts->instance && *opts->instance ? opts->instance : "pulltrace-server");
  if (!ke->instance) {
    free(ke);
    return NULL;
  }
  ke->all.tokens = ke->opts.per_minute;
  pt_map_init(&ke->pods);
  pt_map_init(&ke->series);
  return ke;
}

static int kube_write(void *kube, const char *method, const char *path, const char *body, size_t body_len,
                      const char *content_type, pt_httpc_done_cb done, void *done_ud)
{
  return pt_kube_request(kube, method, path, body, body_len, content_type, done, done_ud, NULL);
}

void pt_kube_events_set_writer(struct pt_kube_events *ke, pt_kube_events_write_fn fn, void *ud)
{
  if (!ke)
    return;
  ke->write = fn;
  ke->write_ud = ud;
}

void pt_kube_events_set_kube(struct pt_kube_events *ke, struct pt_kube *kube)
{
  pt_kube_events_set_writer(ke, kube ? kube_write : NULL, kube);
}

void pt_kube_events_set_leader(struct pt_kube_events *ke, pt_kube_events_leader_fn fn, void *ud)
{
  if (!ke)
    return;
  ke->is_leader = fn;
  ke->leader_ud = ud;
}

/* Refills b at rate per minute (up to rate); true when it holds a token. */
static bool refill(struct bucket *b, double rate, double now)
{
  b->tokens = fmin(rate, b->tokens + (now - b->at) * rate / 60.0);
  b->at = now;
  return b->tokens >= 1;
}

/* Drops the entries of a full table that time has made useless: buckets
 * that refilled, series past their window. */
static void sweep(struct pt_kube_events *ke, double now)
{
  char *keys[256];
  size_t n = 0;
  if (ke->pods.count >= MAX_ENTRIES) {
    for (struct pt_map_entry *e = pt_map_first(&ke->pods); e && n < 256; e = pt_map_next(&ke->pods, e))
      if (now - ((struct bucket *)e->value)->at >= 60)
        keys[n++] = strdup(e->key);
    for (size_t i = 0; i < n; i++) {
      if (keys[i])
        free(pt_map_del(&ke->pods, keys[i]));
      free(keys[i]);
    }
  }
  n = 0;
  if (ke->series.count >= MAX_ENTRIES) {
    for (struct pt_map_entry *e = pt_map_first(&ke->series); e && n < 256; e = pt_map_next(&ke->series, e)) {
      const struct series *s = e->value;
      if (!s->creating && now - s->last > ke->opts.series_window)
        keys[n++] = strdup(e->key);
    }
    for (size_t i = 0; i < n; i++) {
      if (keys[i])
        series_free(pt_map_del(&ke->series, keys[i]));
      free(keys[i]);
    }
  }
}

/* The pod's bucket, refilled (NULL without memory or room). */
static struct bucket *pod_bucket(struct pt_kube_events *ke, const char *ns, const char *pod, double now)
{
  char key[512];
  snprintf(key, sizeof(key), "%s/%s", ns, pod);
  struct bucket *b = pt_map_get(&ke->pods, key);
  if (!b) {
    sweep(ke, now);
    if (ke->pods.count >= MAX_ENTRIES || !(b = calloc(1, sizeof(*b))))
      return NULL;
    b->tokens = ke->opts.per_pod_per_minute;
    b->at = now;
    if (pt_map_put(&ke->pods, key, b)) {
      free(b);
      return NULL;
    }
  }
  refill(b, ke->opts.per_pod_per_minute, now);
  return b;
}

static void count(struct pt_kube_events *ke, enum pt_kube_event_result r)
{
  ke->st.results[r]++;
}

static void maybe_free(struct pt_kube_events *ke)
{
  if (!ke->closing || ke->in_flight)
    return;
  for (struct pt_map_entry *e = pt_map_first(&ke->pods); e; e = pt_map_next(&ke->pods, e))
    free(e->value);
  for (struct pt_map_entry *e = pt_map_first(&ke->series); e; e = pt_map_next(&ke->series, e))
    series_free(e->value);
  pt_map_close(&ke->pods);
  pt_map_close(&ke->series);
  free(ke->instance);
  free(ke);
}

static void send_patch(struct pt_kube_events *ke, const char *key, struct series *s, double now);

static void written(void *ud, const struct pt_http_response *resp)
{
  struct write *w = ud;
  struct pt_kube_events *ke = w->ke;
  ke->in_flight--;
  struct series *s = ke->closing ? NULL : pt_map_get(&ke->series, w->key);
  bool ok = resp->result == 0 && (resp->status == 200 || resp->status == 201);
  /* A name already taken is an Event that exists: its series goes on. */
  bool exists = !w->patch && resp->status == 409;
  if (ok || exists) {
    count(ke, w->patch ? PT_KEV_PATCHED : PT_KEV_CREATED);
    if (s && !w->patch) {
      s->creating = false;
      if (s->dirty)
        send_patch(ke, w->key, s, s->last);
    }
  } else {
    count(ke, PT_KEV_FAILED);
    if (resp->result != -ECANCELED)
      PT_LOG_WARN("cannot write a Kubernetes Event", "{s:s,s:s,s:I,s:s,s:s#}", "verb", w->patch ? "PATCH" : "POST",
                  "event", s ? s->name : "", "status", (json_int_t)resp->status, "error",
                  resp->error ? resp->error : "", "answer", resp->body ? resp->body : "",
                  (int)(resp->body_len < 512 ? resp->body_len : 512));
    /* Forgotten: the next occurrence creates a new Event. */
    if (s)
      series_free(pt_map_del(&ke->series, w->key));
  }
  free(w->key);
  free(w);
  maybe_free(ke);
}

static int write_event(struct pt_kube_events *ke, const char *key, bool patch, const char *method, const char *path,
                json_t *body, const char *content_type)
{
  char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(body);
  struct write *w = calloc(1, sizeof(*w));
  int rc = -ENOMEM;
  if (text && w && (w->key = strdup(key))) {
    w->ke = ke;
    w->patch = patch;
    /* Counted first: a writer may answer at once, from inside this call. */
    ke->in_flight++;
    rc = ke->write(ke->write_ud, method, path, text, strlen(text), content_type, written, w);
    if (rc)
      ke->in_flight--;
  }
  if (rc) {
    if (w)
      free(w->key);
    free(w);
  }
  free(text);
  return rc;
}

static void send_patch(struct pt_kube_events *ke, const char *key, struct series *s, double now)
{
  char path[1024], tb[40];
  snprintf(path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/%s/events/%s", s->ns, s->name);
  s->dirty = false;
  json_t *body = json_pack("{s:{s:I,s:s}}", "series", "count", (json_int_t)s->count, "lastObservedTime",
                           pt_time_format_us(now, tb, sizeof(tb)));
  if (write_event(ke, key, true, "PATCH", path, body, "application/merge-patch+json") < 0) {
    count(ke, PT_KEV_FAILED);
    series_free(pt_map_del(&ke->series, key));
  }
}

static void create(struct pt_kube_events *ke, const char *key, struct series *s, const char *reason, const char *type,
                   const char *note, const char *action, const json_t *pod, double now)
{
  char path[512], tb[40];
  snprintf(path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/%s/events", s->ns);
  json_t *regarding = json_pack("{s:s,s:s,s:s,s:s}", "apiVersion", "v1", "kind", "Pod", "namespace", s->ns, "name",
                                json_string_value(json_object_get(pod, "name")));
  const char *uid = json_string_value(json_object_get(pod, "uid"));
  if (regarding && uid && *uid)
    json_object_set_new(regarding, "uid", json_string(uid));
  json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:o,s:s%,s:s}", "apiVersion",
                           "events.k8s.io/v1", "kind", "Event", "metadata", "name", s->name, "namespace", s->ns,
                           "eventTime", pt_time_format_us(now, tb, sizeof(tb)), "reportingController",
                           PT_KUBE_EVENTS_CONTROLLER, "reportingInstance", ke->instance, "action", action, "reason",
                           reason, "regarding", regarding, "note", note, pt_utf8_prefix(note, NOTE_MAX), "type", type);
  if (!body || write_event(ke, key, false, "POST", path, body, "application/json") < 0) {
    count(ke, PT_KEV_FAILED);
    series_free(pt_map_del(&ke->series, key));
  }
}

/* One Event on one pod. */
static void emit_one(struct pt_kube_events *ke, const json_t *pod, const char *reason, const char *type,
                     const char *note, const char *action, double now)
{
  const char *ns = json_string_value(json_object_get(pod, "namespace"));
  const char *name = json_string_value(json_object_get(pod, "name"));
  if (!ns || !name || !*ns || !*name)
    return;
  /* A token is taken only when both bounds allow the write. */
  struct bucket *pb = pod_bucket(ke, ns, name, now);
  bool all = refill(&ke->all, ke->opts.per_minute, now);
  if (!pb || pb->tokens < 1 || !all) {
    count(ke, PT_KEV_THROTTLED);
    PT_LOG_DEBUG("Kubernetes Event dropped: over its per-minute bound", "{s:s,s:s,s:s}", "namespace", ns, "pod",
                 name, "reason", reason);
    return;
  }
  pb->tokens -= 1;
  ke->all.tokens -= 1;
  char key[768];
  snprintf(key, sizeof(key), "%s/%s/%s", ns, name, reason);
  struct series *s = pt_map_get(&ke->series, key);
  if (s && now - s->last <= ke->opts.series_window) {
    s->count++;
    s->last = now;
    if (s->creating)
      s->dirty = true;
    else
      send_patch(ke, key, s, now);
    return;
  }
  if (s)
    series_free(pt_map_del(&ke->series, key));
  sweep(ke, now);
  s = calloc(1, sizeof(*s));
  char ename[320];
  /* As client-go names them: the object's name and the time in hex
   * nanoseconds (a pod name is at most 253 bytes; the Event's too). */
  snprintf(ename, sizeof(ename), "%.*s.%llx", 235, name, (unsigned long long)(now * 1e9));
  if (!s || !(s->ns = strdup(ns)) || !(s->name = strdup(ename)) || pt_map_put(&ke->series, key, s)) {
    series_free(s);
    count(ke, PT_KEV_FAILED);
    return;
  }
  s->count = 1;
  s->last = now;
  s->creating = true;
  create(ke, key, s, reason, type, note, action, pod, now);
}

void pt_kube_events_emit(struct pt_kube_events *ke, const char *reason, const char *type, const char *note,
                         const char *action, const json_t *regarding, double now)
{
  if (!ke || ke->closing || !reason || !type || !note || !action || !json_is_array(regarding))
    return;
  size_t i;
  const json_t *pod;
  if (!ke->write || (ke->is_leader && !ke->is_leader(ke->leader_ud))) {
    ke->st.results[PT_KEV_SKIPPED] += json_array_size(regarding);
    return;
  }
  json_array_foreach(regarding, i, pod)
    emit_one(ke, pod, reason, type, note, action, now);
}

void pt_kube_events_stats(const struct pt_kube_events *ke, struct pt_kube_events_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (!ke)
    return;
  *out = ke->st;
  out->series = ke->series.count;
}

void pt_kube_events_destroy(struct pt_kube_events *ke)
{
  if (!ke)
    return;
  ke->closing = true;
  ke->write = NULL;
  maybe_free(ke);
}
