/* The Kubernetes watcher (kube/watcher.h): one reflector per resource (pods,
 * events) that lists, then watches from the list's resourceVersion, and relists
 * after 410 Gone, with the caches those streams feed and the token refresh
 * they share. It is over 800 lines because every part reads and changes the
 * reflector and struct pt_kube state, which stays private to this file rather
 * than spread through an internal header for the sake of a line count. */
#include "kube/watcher.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/httpc.h"
#include "core/log.h"
#include "core/map.h"
#include "core/random.h"

/* Pods that finished can no longer wait for an image: the API server leaves
 * them out (and sends DELETED when one finishes), which keeps the cache to
 * the pods that matter. Events: only those about pods. */
#define POD_FIELD_SELECTOR "status.phase!=Succeeded,status.phase!=Failed"
#define EVENT_FIELD_SELECTOR "involvedObject.kind=Pod"
#define MAX_LIST_BODY (256u << 20)
#define MAX_WATCH_LINE (8u << 20)
#define EVENT_MEMORY_SECONDS 7200.0 /* events live one hour in the API server */

struct pod_entry {
  uint64_t gen;
  char rv[];
};

struct seen_event {
  int64_t count;
  double last;
};

struct list_work;

struct reflector {
  struct pt_kube *kube;
  enum pt_kube_resource res;
  char *ns;            /* NULL = all namespaces */
  char rv[128];        /* resourceVersion to watch from */
  char *cont;          /* continue token of the list in progress */
  uint64_t req_id;
  struct list_work *work; /* a list page being parsed on the thread pool */
  bool in_flight;         /* a request, or the parse of its answer, is under way */
  bool listing, watching;
  bool synced;         /* first list completed */
  bool need_relist;    /* an ERROR event / 410 asked for a relist */
  bool unauthorized;
  uint64_t list_gen;
  double watch_started;
  double backoff;
  uv_timer_t timer;
  struct pt_kube_stream stream;
  struct pt_map objs;  /* pods: "ns/name" -> pod_entry; events: uid -> seen_event */
};

struct token_work {
  uv_work_t req;
  struct pt_kube *kube;
  char *token;
  int result;
};

struct pt_kube {
  uv_loop_t *loop;
  struct pt_kube_sink sink;
  struct pt_kubeconfig cfg;
  struct pt_kube_options opts;
  char *namespaces;
  struct pt_httpc *httpc;
  char *token;
  struct token_work *token_work; /* a token file read on the thread pool */
  uv_timer_t token_timer;
  struct reflector *refl;
  size_t nrefl;
  double started_at;
  int open_handles;
  int pending_work; /* thread-pool requests whose after-work has not run */
  bool closing;
  bool ready;
  struct pt_kube_stats st;
};

static const char *const resource_names[PT_KUBE_RESOURCES] = {"pods", "events"};

const char *pt_kube_resource_name(enum pt_kube_resource r)
{
  return (unsigned)r < PT_KUBE_RESOURCES ? resource_names[r] : "pods";
}

static void start_list(struct reflector *r);
static void start_watch(struct reflector *r);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */

static void append_escaped(char *out, size_t cap, const char *s)
{
  size_t n = strlen(out);
  static const char hex[] = "0123456789ABCDEF";
  for (; *s && n + 4 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out[n++] = (char)c;
    } else {
      out[n++] = '%';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 15];
    }
  }
  out[n] = '\0';
}

static void build_url(struct reflector *r, bool watch, char *url, size_t cap)
{
  struct pt_kube *k = r->kube;
  const char *res = resource_names[r->res];
  if (r->ns) {
    snprintf(url, cap, "%s/api/v1/namespaces/", k->cfg.server);
    append_escaped(url, cap, r->ns);
    snprintf(url + strlen(url), cap - strlen(url), "/%s?", res);
  } else {
    snprintf(url, cap, "%s/api/v1/%s?", k->cfg.server, res);
  }
  size_t n = strlen(url);
  if (watch) {
    snprintf(url + n, cap - n, "watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld&resourceVersion=",
             k->opts.watch_timeout);
    append_escaped(url, cap, r->rv);
  } else {
    snprintf(url + n, cap - n, "limit=%ld", k->opts.page_size);
    if (r->cont && *r->cont) {
      snprintf(url + strlen(url), cap - strlen(url), "&continue=");
      append_escaped(url, cap, r->cont);
    }
  }
  snprintf(url + strlen(url), cap - strlen(url), "&fieldSelector=");
  append_escaped(url, cap, r->res == PT_KUBE_PODS ? POD_FIELD_SELECTOR : EVENT_FIELD_SELECTOR);
}

static void maybe_free(struct pt_kube *k);

/* Runs on the thread pool: k->cfg does not change while the watcher lives. */
static void token_read(uv_work_t *req)
{
  struct token_work *tw = req->data;
  tw->result = pt_kubeconfig_token(&tw->kube->cfg, &tw->token);
}

static void token_read_done(uv_work_t *req, int status)
{
  struct token_work *tw = req->data;
  struct pt_kube *k = tw->kube;
  k->token_work = NULL;
  k->pending_work--;
  if (!k->closing && status == 0) {
    if (tw->result) {
      PT_LOG_WARN("cannot read the Kubernetes token; keeping the previous one", "{s:s,s:s}", "file",
                  k->cfg.token_file, "error", strerror(-tw->result));
    } else if (tw->token) {
      /* Requests already started keep the token they were sent with. */
      free(k->token);
      k->token = tw->token;
      tw->token = NULL;
    }
  }
  free(tw->token);
  free(tw);
  maybe_free(k);
}

/* Re-reads the token file (projected service-account tokens rotate) on the
 * thread pool; the next requests use the new token. A static token never
 * changes: nothing to do. */
static void refresh_token(struct pt_kube *k)
{
  if (!k->cfg.token_file || k->token_work || k->closing)
    return;
  struct token_work *tw = calloc(1, sizeof(*tw));
  if (!tw)
    return;
  tw->kube = k;
  tw->req.data = tw;
  if (uv_queue_work(k->loop, &tw->req, token_read, token_read_done) != 0) {
    free(tw);
    return;
  }
  k->token_work = tw;
  k->pending_work++;
}

static void update_ready(struct pt_kube *k)
{
  size_t synced = 0;
  for (size_t i = 0; i < k->nrefl; i++)
    synced += k->refl[i].synced;
  char detail[256];
  bool ok = synced == k->nrefl;
  if (ok)
    snprintf(detail, sizeof(detail), "pods and events synced from %s", k->cfg.server);
  else
    snprintf(detail, sizeof(detail), "listing pods and events from %s (%zu of %zu lists done)", k->cfg.server,
             synced, k->nrefl);
  if (ok && !k->ready)
    PT_LOG_INFO("Kubernetes caches synced", "{s:s,s:i}", "server", k->cfg.server, "pods",
                (int)k->st.pods_cached);
  k->ready = ok;
  k->st.synced = ok;
  if (k->sink.ready)
    k->sink.ready(k->sink.ud, ok, detail);
}

static double jitter(double v)
{
  /* Spread reconnects of many replicas: +-20 %. */
  return v * (0.8 + 0.4 * pt_random_unit());
}

static void timer_fire(uv_timer_t *t)
{
  struct reflector *r = t->data;
  if (r->kube->closing)
    return;
  if (r->need_relist || !r->synced || !r->rv[0])
    start_list(r);
  else
    start_watch(r);
}

/* Schedules the next list or watch after the backoff (or at once). */
static void retry_later(struct reflector *r, bool at_once)
{
  struct pt_kube *k = r->kube;
  double delay = 0;
  if (!at_once) {
    r->backoff = r->backoff > 0 ? fmin(r->backoff * 2, k->opts.backoff_max) : 0.5;
    delay = jitter(r->backoff);
  }
  uv_timer_start(&r->timer, timer_fire, (uint64_t)(delay * 1000.0), 0);
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                    */

/* Applies a slim pod (pt_kube_pod_slim()); takes over slim. */
static void pod_apply(struct reflector *r, json_t *slim, bool deleted)
{
  struct pt_kube *k = r->kube;
  char key[600];
  snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(slim, "namespace")),
           json_string_value(json_object_get(slim, "name")));
  struct pod_entry *e = pt_map_get(&r->objs, key);
  if (deleted) {
    if (e) {
      free(pt_map_del(&r->objs, key));
      if (k->sink.pod_delete)
        k->sink.pod_delete(k->sink.ud, json_string_value(json_object_get(slim, "namespace")),
                           json_string_value(json_object_get(slim, "name")));
    }
    json_decref(slim);
    return;
  }
  const char *rv = json_string_value(json_object_get(slim, "resourceVersion"));
  if (!rv)
    rv = "";
  if (e && strcmp(e->rv, rv) == 0) {
    e->gen = r->list_gen; /* unchanged: nothing to re-correlate */
    json_decref(slim);
    return;
  }
  struct pod_entry *ne = malloc(sizeof(*ne) + strlen(rv) + 1);
  if (ne) {
    ne->gen = r->list_gen;
    strcpy(ne->rv, rv);
    if (pt_map_put(&r->objs, key, ne) == 0)
      free(e);
    else
      free(ne);
  }
  /* Only now: rv points into the member this frees. The sink does not need
   * it (it would only make every pod update look like a change). */
  json_object_del(slim, "resourceVersion");
  if (k->sink.pod_upsert)
    k->sink.pod_upsert(k->sink.ud, slim);
  json_decref(slim);
}

static void prune_events(struct reflector *r, double now)
{
  size_t cap = r->kube->opts.max_events_seen;
  double horizon = EVENT_MEMORY_SECONDS;
  while (r->objs.count > 0) {
    size_t n = 0, i = 0;
    char **dead = calloc(r->objs.count, sizeof(*dead));
    if (!dead)
      return;
    for (struct pt_map_entry *e = pt_map_first(&r->objs); e; e = pt_map_next(&r->objs, e)) {
      struct seen_event *se = e->value;
      if (se->last < now - horizon)
        dead[n++] = e->key;
    }
    for (i = 0; i < n; i++)
      free(pt_map_del(&r->objs, dead[i]));
    free(dead);
    if (r->objs.count <= cap || horizon < 1)
      break;
    horizon /= 2; /* still too many: forget younger ones too */
  }
}

/* An event's de-duplication key: its uid, else "namespace/name". */
static json_t *event_key(const json_t *slim, const json_t *obj)
{
  const char *uid = json_string_value(json_object_get(slim, "uid"));
  if (uid)
    return json_string(uid);
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  const char *ns = json_string_value(json_object_get(slim, "namespace"));
  return json_sprintf("%s/%s", ns ? ns : "", name ? name : "");
}

/* Applies a slim event (pt_kube_event_slim()) under its key (event_key());
 * takes over slim. */
static void event_apply(struct reflector *r, json_t *slim, const char *uid, bool from_list)
{
  struct pt_kube *k = r->kube;
  int64_t count = (int64_t)json_integer_value(json_object_get(slim, "count"));
  json_t *lt = json_object_get(slim, "lastTimestamp");
  double last = json_is_number(lt) ? json_number_value(lt) : 0;
  struct seen_event *se = pt_map_get(&r->objs, uid);
  if (se && se->count >= count && se->last >= last) {
    k->st.events_duplicate++;
    json_decref(slim);
    return;
  }
  if (!se) {
    if (r->objs.count >= k->opts.max_events_seen)
      prune_events(r, pt_clock_now());
    se = calloc(1, sizeof(*se));
    if (se && pt_map_put(&r->objs, uid, se)) {
      free(se);
      se = NULL;
    }
  }
  if (se) {
    se->count = count;
    se->last = last;
  }
  /* Before the start: context for correlation, never a new pull or failure.
   * A watch only delivers changes made after the list it resumes from, so what
   * it brings is always new. What a list returns is old when its timestamp is
   * from before the start; event timestamps have one-second precision, so the
   * comparison is by whole seconds. Without a timestamp, only what the first
   * list returns is old. */
  bool historic = from_list && (last > 0 ? last < floor(k->started_at) : !r->synced);
  if (historic) {
    json_object_set_new(slim, "historic", json_true());
    k->st.events_historic++;
  } else {
    k->st.events_applied++;
  }
  PT_LOG_DEBUG("kubelet event", "{s:s?,s:s?,s:s?,s:s?,s:b}", "namespace",
               json_string_value(json_object_get(slim, "namespace")), "pod",
               json_string_value(json_object_get(slim, "pod")), "reason",
               json_string_value(json_object_get(slim, "reason")), "image",
               json_string_value(json_object_get(slim, "image")), "historic", historic);
  if (k->sink.kube_event)
    k->sink.kube_event(k->sink.ud, slim, pt_clock_now());
  json_decref(slim);
}

static void note_rv(struct reflector *r, const json_t *obj)
{
  const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  if (rv && *rv && strlen(rv) < sizeof(r->rv))
    snprintf(r->rv, sizeof(r->rv), "%s", rv);
}

static void count_cached(struct pt_kube *k)
{
  size_t pods = 0, events = 0;
  for (size_t i = 0; i < k->nrefl; i++) {
    if (k->refl[i].res == PT_KUBE_PODS)
      pods += k->refl[i].objs.count;
    else
      events += k->refl[i].objs.count;
  }
  k->st.pods_cached = pods;
  k->st.events_cached = events;
}

/* ------------------------------------------------------------------------ */
/* List                                                                       */

static void finish_list(struct reflector *r)
{
  struct pt_kube *k = r->kube;
  if (r->res == PT_KUBE_PODS) {
    /* Pods that were not in this list are gone. */
    size_t n = 0;
    char **dead = r->objs.count ? calloc(r->objs.count, sizeof(*dead)) : NULL;
    for (struct pt_map_entry *e = pt_map_first(&r->objs); e && dead; e = pt_map_next(&r->objs, e))
      if (((struct pod_entry *)e->value)->gen != r->list_gen)
        dead[n++] = strdup(e->key);
    for (size_t i = 0; i < n; i++) {
      if (!dead[i])
        continue;
      free(pt_map_del(&r->objs, dead[i]));
      char *slash = strchr(dead[i], '/');
      if (slash) {
        *slash = '\0';
        if (k->sink.pod_delete)
          k->sink.pod_delete(k->sink.ud, dead[i], slash + 1);
      }
      free(dead[i]);
    }
    free(dead);
  } else {
    prune_events(r, pt_clock_now());
  }
  free(r->cont);
  r->cont = NULL;
  r->listing = false;
  r->need_relist = false;
  r->backoff = 0;
  bool first = !r->synced;
  r->synced = true;
  count_cached(k);
  PT_LOG_INFO(first ? "Kubernetes list done" : "Kubernetes relist done", "{s:s,s:s,s:s,s:i}", "resource",
              resource_names[r->res], "namespace", r->ns ? r->ns : "*", "resourceVersion", r->rv, "objects",
              (int)r->objs.count);
  if (first)
    update_ready(k);
  start_watch(r);
}

/* A list page, parsed and cut into slim objects on the thread pool, so that
 * the loop never parses a body of up to MAX_LIST_BODY. */
struct list_work {
  uv_work_t req;
  struct reflector *r;
  enum pt_kube_resource res;
  char *body;
  size_t len;
  /* Results: [slim, key] pairs for events, slim objects for pods. */
  json_t *objs;
  char *rv, *cont;
  char error[200]; /* non-empty when the body is not a list */
};

static void list_parse(uv_work_t *req)
{
  struct list_work *w = req->data;
  json_error_t jerr;
  json_t *root = json_loadb(w->body, w->len, 0, &jerr);
  free(w->body);
  w->body = NULL;
  json_t *items = json_object_get(root, "items");
  json_t *md = json_object_get(root, "metadata");
  const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
  if (!json_is_array(items) || !rv) {
    snprintf(w->error, sizeof(w->error), "%s", root ? "no items or metadata.resourceVersion" : jerr.text);
    json_decref(root);
    return;
  }
  const char *cont = json_string_value(json_object_get(md, "continue"));
  w->rv = strdup(rv);
  w->cont = cont && *cont ? strdup(cont) : NULL;
  w->objs = json_array();
  if (!w->rv || (cont && *cont && !w->cont) || !w->objs) {
    snprintf(w->error, sizeof(w->error), "out of memory");
    json_decref(root);
    return;
  }
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) {
    if (w->res == PT_KUBE_PODS) {
      json_t *slim = pt_kube_pod_slim(item);
      if (slim)
        json_array_append_new(w->objs, slim);
    } else {
      json_t *slim = pt_kube_event_slim(item);
      if (slim)
        json_array_append_new(w->objs, json_pack("[oo]", slim, event_key(slim, item)));
    }
  }
  json_decref(root);
}

static void list_work_free(struct list_work *w)
{
  free(w->body);
  json_decref(w->objs);
  free(w->rv);
  free(w->cont);
  free(w);
}

static void list_failed(struct reflector *r)
{
  r->listing = false;
  r->need_relist = true;
  retry_later(r, false);
}

static void list_parsed(uv_work_t *req, int status)
{
  struct list_work *w = req->data;
  struct reflector *r = w->r;
  struct pt_kube *k = r->kube;
  r->work = NULL;
  r->in_flight = false;
  k->pending_work--;
  if (k->closing || status != 0) {
    list_work_free(w);
    maybe_free(k);
    return;
  }
  if (w->error[0]) {
    k->st.errors[r->res]++;
    PT_LOG_WARN("Kubernetes list answer is not a list", "{s:s,s:s}", "resource", resource_names[r->res],
                "error", w->error);
    list_work_free(w);
    list_failed(r);
    return;
  }
  size_t i;
  json_t *obj;
  json_array_foreach(w->objs, i, obj) {
    if (r->res == PT_KUBE_PODS)
      pod_apply(r, json_incref(obj), false);
    else
      event_apply(r, json_incref(json_array_get(obj, 0)), json_string_value(json_array_get(obj, 1)), true);
  }
  free(r->cont);
  r->cont = w->cont;
  w->cont = NULL;
  if (!r->cont)
    snprintf(r->rv, sizeof(r->rv), "%s", w->rv);
  list_work_free(w);
  if (r->cont)
    start_list(r);
  else
    finish_list(r);
}

static void list_done(void *ud, const struct pt_http_response *resp)
{
  struct reflector *r = ud;
  struct pt_kube *k = r->kube;
  r->in_flight = false;
  if (k->closing || resp->result == -ECANCELED)
    return;
  if (resp->result < 0 || resp->status != 200) {
    k->st.errors[r->res]++;
    if (resp->status == 401)
      refresh_token(k);
    if (resp->status == 410) {
      /* An expired continue token: start the list over. */
      free(r->cont);
      r->cont = NULL;
    }
    PT_LOG_WARN("Kubernetes list failed", "{s:s,s:s,s:i,s:s}", "resource", resource_names[r->res],
                "namespace", r->ns ? r->ns : "*", "status", (int)resp->status, "error",
                resp->error ? resp->error : (resp->body_len < 300 ? resp->body : "HTTP error"));
    list_failed(r);
    return;
  }
  struct list_work *w = calloc(1, sizeof(*w));
  if (w) {
    w->len = resp->body_len;
    w->body = pt_httpc_take_body(resp);
  }
  if (!w || !w->body) {
    free(w);
    k->st.errors[r->res]++;
    PT_LOG_WARN("Kubernetes list answer dropped: out of memory", "{s:s}", "resource", resource_names[r->res]);
    list_failed(r);
    return;
  }
  w->r = r;
  w->res = r->res;
  w->req.data = w;
  if (uv_queue_work(k->loop, &w->req, list_parse, list_parsed) != 0) {
    list_work_free(w);
    k->st.errors[r->res]++;
    list_failed(r);
    return;
  }
  r->work = w;
  r->in_flight = true; /* the page is not done until it is applied */
  k->pending_work++;
}

/* A request to the API server with its credentials (token, CA, client cert). */
static struct pt_http_request api_request(const struct pt_kube *k, const char *url)
{
  return (struct pt_http_request){
      .url = url,
      .bearer_token = k->token,
      .ca_file = k->cfg.ca_file,
      .client_cert = k->cfg.client_cert,
      .client_key = k->cfg.client_key,
  };
}

static void start_list(struct reflector *r)
{
  struct pt_kube *k = r->kube;
  if (k->closing || r->in_flight)
    return;
  if (!r->cont) {
    /* A new list, not the next page. */
    r->list_gen++;
    k->st.lists[r->res]++;
    if (r->synced)
      k->st.relists[r->res]++;
  }
  r->listing = true;
  r->watching = false;
  char url[8192];
  build_url(r, false, url, sizeof(url));
  struct pt_http_request req = api_request(k, url);
  req.timeout_ms = 120000;
  req.max_body = MAX_LIST_BODY;
  PT_LOG_DEBUG("Kubernetes list", "{s:s}", "url", url);
  int rc = pt_httpc_request(k->httpc, &req, list_done, r, &r->req_id);
  if (rc) {
    PT_LOG_WARN("cannot start a Kubernetes list", "{s:s}", "error", strerror(-rc));
    retry_later(r, false);
    return;
  }
  r->in_flight = true;
}

/* ------------------------------------------------------------------------ */
/* Watch                                                                      */

static int watch_event(void *ud, enum pt_kube_watch_type type, json_t *obj)
{
  struct reflector *r = ud;
  struct pt_kube *k = r->kube;
  switch (type) {
  case PT_KUBE_ADDED:
  case PT_KUBE_MODIFIED:
  case PT_KUBE_DELETED:
    if (r->res == PT_KUBE_PODS) {
      json_t *slim = pt_kube_pod_slim(obj);
      if (slim)
        pod_apply(r, slim, type == PT_KUBE_DELETED);
    } else if (type != PT_KUBE_DELETED) {
      json_t *slim = pt_kube_event_slim(obj);
      json_t *key = slim ? event_key(slim, obj) : NULL;
      if (key)
        event_apply(r, slim, json_string_value(key), false);
      else
        json_decref(slim);
      json_decref(key);
    }
    note_rv(r, obj);
    count_cached(k);
    return 0;
  case PT_KUBE_BOOKMARK:
    note_rv(r, obj);
    return 0;
  case PT_KUBE_ERROR: {
    int code = pt_kube_status_code(obj);
    PT_LOG_INFO("Kubernetes watch ERROR event", "{s:s,s:i,s:s?}", "resource", resource_names[r->res], "code",
                code, "message", json_string_value(json_object_get(obj, "message")));
    /* 410 (expired resourceVersion) and anything else we cannot resume from:
     * relist, which is always correct. */
    r->need_relist = true;
    return 1;
  }
  default:
    k->st.stream_bad_lines++;
    return 0;
  }
}

static int watch_data(void *ud, const char *data, size_t len)
{
  struct reflector *r = ud;
  if (r->kube->closing)
    return 1;
  int rc = pt_kube_stream_feed(&r->stream, data, len, watch_event, r);
  if (rc < 0) {
    PT_LOG_WARN("Kubernetes watch stream error; reconnecting", "{s:s,s:s}", "resource",
                resource_names[r->res], "error", strerror(-rc));
  }
  return rc != 0;
}

static void watch_done(void *ud, const struct pt_http_response *resp)
{
  struct reflector *r = ud;
  struct pt_kube *k = r->kube;
  r->in_flight = false;
  r->watching = false;
  if (k->closing)
    return;
  if (resp->result == 0 && resp->status == 200)
    pt_kube_stream_finish(&r->stream, watch_event, r);
  k->st.stream_bad_lines = 0;
  for (size_t i = 0; i < k->nrefl; i++)
    k->st.stream_bad_lines += k->refl[i].stream.bad;
  k->st.watch_restarts[r->res]++;
  double lasted = pt_clock_mono() - r->watch_started;
  if (resp->status == 410)
    r->need_relist = true;
  if (r->need_relist) {
    PT_LOG_INFO("Kubernetes resourceVersion expired; relisting", "{s:s,s:s}", "resource",
                resource_names[r->res], "namespace", r->ns ? r->ns : "*");
    /* A relist right after a fresh list means the server keeps refusing:
     * back off instead of hammering it. */
    retry_later(r, lasted > 1.0);
    return;
  }
  if (resp->result == 0 && resp->status == 200) {
    /* The server ended the watch (timeoutSeconds or shutdown). */
    PT_LOG_DEBUG("Kubernetes watch ended", "{s:s,s:f}", "resource", resource_names[r->res], "seconds", lasted);
    if (lasted >= 10)
      r->backoff = 0;
    retry_later(r, lasted > 1.0);
    return;
  }
  k->st.errors[r->res]++;
  if (resp->status == 401 || resp->status == 403)
    refresh_token(k);
  PT_LOG_WARN("Kubernetes watch failed; retrying", "{s:s,s:s,s:i,s:s}", "resource", resource_names[r->res],
              "namespace", r->ns ? r->ns : "*", "status", (int)resp->status, "error",
              resp->error ? resp->error : "HTTP error");
  if (lasted >= 10)
    r->backoff = 0;
  retry_later(r, false);
}

static void start_watch(struct reflector *r)
{
  struct pt_kube *k = r->kube;
  if (k->closing || r->in_flight)
    return;
  pt_kube_stream_reset(&r->stream);
  r->need_relist = false;
  r->watching = true;
  r->watch_started = pt_clock_mono();
  char url[8192];
  build_url(r, true, url, sizeof(url));
  struct pt_http_request req = api_request(k, url);
  /* The server ends the watch after timeoutSeconds; this only catches a
   * connection that died silently. */
  req.timeout_ms = (k->opts.watch_timeout + 60) * 1000;
  req.on_data = watch_data;
  PT_LOG_DEBUG("Kubernetes watch", "{s:s}", "url", url);
  int rc = pt_httpc_request(k->httpc, &req, watch_done, r, &r->req_id);
  if (rc) {
    r->watching = false;
    PT_LOG_WARN("cannot start a Kubernetes watch", "{s:s}", "error", strerror(-rc));
    retry_later(r, false);
    return;
  }
  r->in_flight = true;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                  */

static void token_tick(uv_timer_t *t)
{
  struct pt_kube *k = t->data;
  if (k->cfg.token_file)
    refresh_token(k);
  for (size_t i = 0; i < k->nrefl; i++)
    if (k->refl[i].res == PT_KUBE_EVENTS)
      prune_events(&k->refl[i], pt_clock_now());
  count_cached(k);
}

struct pt_kube *pt_kube_create(uv_loop_t *loop, const struct pt_kube_sink *sink, struct pt_kubeconfig *cfg,
                               const struct pt_kube_options *opts)
{
  struct pt_kube *k = calloc(1, sizeof(*k));
  if (!k)
    return NULL;
  k->loop = loop;
  if (sink)
    k->sink = *sink;
  k->cfg = *cfg;
  memset(cfg, 0, sizeof(*cfg));
  if (opts)
    k->opts = *opts;
  if (k->opts.token_refresh <= 0) k->opts.token_refresh = 60;
  if (k->opts.backoff_max <= 0) k->opts.backoff_max = 30;
  if (k->opts.watch_timeout <= 0) k->opts.watch_timeout = 300;
  if (k->opts.page_size <= 0) k->opts.page_size = 500;
  if (!k->opts.max_events_seen) k->opts.max_events_seen = 100000;
  k->namespaces = opts && opts->namespaces ? strdup(opts->namespaces) : NULL;
  k->opts.namespaces = NULL;

  /* One reflector per resource and namespace. */
  size_t nns = 0;
  char *list[256];
  if (k->namespaces) {
    char *save = NULL;
    for (char *t = strtok_r(k->namespaces, ",", &save); t && nns < 256; t = strtok_r(NULL, ",", &save)) {
      while (*t == ' ')
        t++;
      size_t n = strlen(t);
      while (n && t[n - 1] == ' ')
        t[--n] = '\0';
      bool dup = false;
      for (size_t i = 0; i < nns; i++)
        dup |= strcmp(list[i], t) == 0;
      if (*t && !dup)
        list[nns++] = t;
    }
  }
  size_t per = nns ? nns : 1;
  k->nrefl = per * PT_KUBE_RESOURCES;
  k->refl = calloc(k->nrefl, sizeof(*k->refl));
  k->httpc = pt_httpc_create(loop);
  if (!k->refl || !k->httpc) {
    pt_httpc_destroy(k->httpc);
    free(k->refl);
    free(k->namespaces);
    pt_kubeconfig_clear(&k->cfg);
    free(k);
    return NULL;
  }
  for (size_t i = 0; i < k->nrefl; i++) {
    struct reflector *r = &k->refl[i];
    r->kube = k;
    r->res = (enum pt_kube_resource)(i % PT_KUBE_RESOURCES);
    r->ns = nns ? strdup(list[i / PT_KUBE_RESOURCES]) : NULL;
    pt_map_init(&r->objs);
    pt_kube_stream_init(&r->stream, MAX_WATCH_LINE);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    k->open_handles++;
  }
  uv_timer_init(loop, &k->token_timer);
  k->token_timer.data = k;
  k->open_handles++;
  k->started_at = pt_clock_now();
  /* The first token is read here, at startup before the loop runs; every
   * later read happens on the thread pool (refresh_token()). */
  if (pt_kubeconfig_token(&k->cfg, &k->token) != 0)
    PT_LOG_WARN("cannot read the Kubernetes token yet; retrying in the background", "{s:s}", "file",
                k->cfg.token_file ? k->cfg.token_file : "");
  return k;
}

int pt_kube_start(struct pt_kube *k)
{
  if (!k)
    return -EINVAL;
  k->started_at = pt_clock_now();
  PT_LOG_INFO("watching Kubernetes", "{s:s,s:s,s:s}", "server", k->cfg.server, "source",
              k->cfg.source ? k->cfg.source : "", "namespaces",
              k->nrefl > PT_KUBE_RESOURCES || k->refl[0].ns ? "listed" : "all");
  update_ready(k);
  uint64_t every = (uint64_t)(k->opts.token_refresh * 1000.0);
  uv_timer_start(&k->token_timer, token_tick, every, every);
  for (size_t i = 0; i < k->nrefl; i++)
    start_list(&k->refl[i]);
  return 0;
}

static void maybe_free(struct pt_kube *k)
{
  if (k->open_handles > 0 || k->pending_work > 0)
    return;
  for (size_t i = 0; i < k->nrefl; i++) {
    struct reflector *r = &k->refl[i];
    for (struct pt_map_entry *e = pt_map_first(&r->objs); e; e = pt_map_next(&r->objs, e))
      free(e->value);
    pt_map_close(&r->objs);
    pt_kube_stream_close(&r->stream);
    free(r->ns);
    free(r->cont);
  }
  free(k->refl);
  free(k->namespaces);
  free(k->token);
  pt_kubeconfig_clear(&k->cfg);
  free(k);
}

static void refl_timer_closed(uv_handle_t *h)
{
  struct reflector *r = h->data;
  struct pt_kube *k = r->kube;
  k->open_handles--;
  maybe_free(k);
}

static void token_timer_closed(uv_handle_t *h)
{
  struct pt_kube *k = h->data;
  k->open_handles--;
  maybe_free(k);
}

void pt_kube_destroy(struct pt_kube *k)
{
  if (!k || k->closing)
    return;
  k->closing = true;
  /* Cancels the requests in flight; their callbacks see closing. */
  pt_httpc_destroy(k->httpc);
  k->httpc = NULL;
  for (size_t i = 0; i < k->nrefl; i++) {
    /* A parse already running finishes; its after-work sees closing. */
    if (k->refl[i].work)
      uv_cancel((uv_req_t *)&k->refl[i].work->req);
    uv_timer_stop(&k->refl[i].timer);
    uv_close((uv_handle_t *)&k->refl[i].timer, refl_timer_closed);
  }
  if (k->token_work)
    uv_cancel((uv_req_t *)&k->token_work->req);
  uv_timer_stop(&k->token_timer);
  uv_close((uv_handle_t *)&k->token_timer, token_timer_closed);
}

const char *pt_kube_credentials(const struct pt_kube *k, struct pt_http_request *req)
{
  *req = api_request(k, NULL);
  return k->cfg.server;
}

int pt_kube_request(struct pt_kube *k, const char *method, const char *path, const char *body, size_t body_len,
                    const char *content_type, pt_httpc_done_cb done, void *ud, uint64_t *id)
{
  if (!k || !path || !done)
    return -EINVAL;
  if (k->closing || !k->httpc)
    return -ESHUTDOWN;
  char url[4096];
  if ((size_t)snprintf(url, sizeof(url), "%s%s", k->cfg.server, path) >= sizeof(url))
    return -ENAMETOOLONG;
  struct pt_http_request req = api_request(k, url);
  req.method = method;
  req.body = body;
  req.body_len = body_len;
  req.content_type = content_type;
  req.timeout_ms = 30000;
  req.max_body = 1 << 20;
  return pt_httpc_request(k->httpc, &req, done, ud, id);
}

void pt_kube_cancel(struct pt_kube *k, uint64_t id)
{
  if (k && k->httpc)
    pt_httpc_cancel(k->httpc, id);
}

void pt_kube_stats(const struct pt_kube *k, struct pt_kube_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (k)
    *out = k->st;
}
