#include "server/server_impl.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hash.h"
#include "server/event.h"
#include "server/ui_dir.h"

#define CFG(field) offsetof(struct pt_server_config, field)

const struct pt_config_var pt_server_config_vars[] = {
  {"PULLTRACE_HTTP_ADDR", PT_CFG_ADDR, ":8080", false, CFG(http_addr), 0, 0,
   "Listen address of the API, the event stream and the web UI (host:port or :port)", NULL, NULL},
  {"PULLTRACE_METRICS_ADDR", PT_CFG_ADDR, ":9090", false, CFG(metrics_addr), 0, 0,
   "Listen address of /metrics (Prometheus)", NULL, NULL},
  {"PULLTRACE_REPORT_ADDR", PT_CFG_ADDR, NULL, false, CFG(report_addr), 0, 0,
   "Listen address of agent reports (POST /api/v1/report), with the API port's TLS; the API port then refuses "
   "reports (421), so that a NetworkPolicy can admit only agents here; empty = reports on the API port", NULL, NULL},
  {"PULLTRACE_LOG_LEVEL", PT_CFG_LOGLEVEL, "info", false, CFG(log_level), 0, 0,
   "debug, info, warn or error", NULL, NULL},
  {"PULLTRACE_LOG_FORMAT", PT_CFG_ENUM, "json", false, CFG(log_format), 0, 0,
   "json (one object per line) or logfmt", "json|logfmt", NULL},
  {"PULLTRACE_AGENT_TOKEN", PT_CFG_STRING, NULL, false, CFG(agent_token), 0, 0,
   "Bearer token agents must send with reports; empty = no authentication", NULL, NULL},
  {"PULLTRACE_AGENT_AUTH", PT_CFG_ENUM, "token", false, CFG(agent_auth), 0, 0,
   "How agents prove who they are: token (the shared PULLTRACE_AGENT_TOKEN) or kubernetes (their pod's "
   "service-account token, checked by TokenReview; a report must name the pod's node)", "token|kubernetes", NULL},
  {"PULLTRACE_AGENT_SERVICE_ACCOUNT", PT_CFG_STRING, NULL, false, CFG(agent_service_account), 0, 253,
   "With PULLTRACE_AGENT_AUTH=kubernetes: the agents' service account as NAMESPACE:NAME (required then)", NULL, NULL},
  {"PULLTRACE_AGENT_AUDIENCE", PT_CFG_STRING, "pulltrace", false, CFG(agent_audience), 0, 253,
   "With PULLTRACE_AGENT_AUTH=kubernetes: the audience the agents' projected tokens are made for", NULL, NULL},
  {"PULLTRACE_READ_AUTH", PT_CFG_ENUM, "off", false, CFG(read_auth), 0, 0,
   "off (anyone reaching the port reads) or kubernetes (the API and event stream need a bearer token allowed to "
   "get pulls.pulltrace.io, checked by TokenReview and SubjectAccessReview)", "off|kubernetes", NULL},
  {"PULLTRACE_READ_AUDIENCE", PT_CFG_STRING, NULL, false, CFG(read_audience), 0, 253,
   "With PULLTRACE_READ_AUTH=kubernetes: accept only reader tokens made for this audience (kubectl create token "
   "--audience), useless against the API server; empty = the API server's own audiences", NULL, NULL},
  {"PULLTRACE_AUTH_CACHE_TTL", PT_CFG_DURATION, "5m", false, CFG(auth_cache_ttl), 1, 86400,
   "Longest time an accepted token (and its access review) is cached; never past the token's expiry", NULL, NULL},
  {"PULLTRACE_AUTH_CACHE_SIZE", PT_CFG_INT, "10000", false, CFG(auth_cache_size), 16, 1000000,
   "Tokens remembered per cache (agents, readers); the oldest go first", NULL, NULL},
  {"PULLTRACE_TLS_CERT", PT_CFG_STRING, NULL, false, CFG(tls_cert), 0, 0,
   "PEM certificate (then its chain) for TLS on the API port; with PULLTRACE_TLS_KEY; empty = plain HTTP", NULL, NULL},
  {"PULLTRACE_TLS_KEY", PT_CFG_STRING, NULL, false, CFG(tls_key), 0, 0,
   "PEM private key of PULLTRACE_TLS_CERT", NULL, NULL},
  {"PULLTRACE_TLS_RELOAD_INTERVAL", PT_CFG_DURATION, "10s", false, CFG(tls_reload_interval), 0.1, 3600,
   "How often the certificate and key files are checked for changes (a changed pair is loaded; a bad one keeps the old)",
   NULL, NULL},
  {"PULLTRACE_WATCH_NAMESPACES", PT_CFG_STRING, NULL, false, CFG(watch_namespaces), 0, 0,
   "Comma-separated namespaces to watch for pods and events; empty = all", NULL, NULL},
  {"PULLTRACE_MAX_BODY", PT_CFG_INT, "1048576", false, CFG(max_body), 1024, 67108864,
   "Largest accepted request body in bytes (agent reports)", NULL, NULL},
  {"PULLTRACE_MAX_CONNECTIONS", PT_CFG_INT, "4096", false, CFG(max_connections), 1, 1000000,
   "Concurrent connections on the API port, event streams included", NULL, NULL},
  {"PULLTRACE_REQUEST_TIMEOUT", PT_CFG_DURATION, "10s", false, CFG(request_timeout), 0.1, 3600,
   "Time a client has to send a complete request (cuts off slow clients)", NULL, NULL},
  {"PULLTRACE_IDLE_TIMEOUT", PT_CFG_DURATION, "60s", false, CFG(idle_timeout), 0.1, 86400,
   "Keep-alive connections idle longer than this are closed", NULL, NULL},
  {"PULLTRACE_REPORT_MIN_INTERVAL", PT_CFG_DURATION, "100ms", false, CFG(report_min_interval), 0, 3600,
   "Sustained minimum spacing of reports per node (burst of 10); faster ones get 429; 0 = no limit", NULL, NULL},
  {"PULLTRACE_MAX_NODES", PT_CFG_INT, "100000", false, CFG(max_nodes), 1, 10000000,
   "Nodes the server keeps; a report from a new node beyond it gets 503 \"too many nodes\"", NULL, NULL},
  {"PULLTRACE_SSE_HEARTBEAT", PT_CFG_DURATION, "15s", false, CFG(sse_heartbeat), 0.05, 3600,
   "Interval of heartbeat comments on the event stream", NULL, NULL},
  {"PULLTRACE_SSE_BUFFER", PT_CFG_INT, "4096", false, CFG(sse_buffer), 16, 1000000,
   "Events kept for Last-Event-ID resumption", NULL, NULL},
  {"PULLTRACE_SSE_CLIENT_QUEUE", PT_CFG_INT, "1048576", false, CFG(sse_client_queue), 4096, 1073741824,
   "Bytes queued for one event-stream client before it is dropped as too slow", NULL, NULL},
  {"PULLTRACE_SSE_IO_URING", PT_CFG_BOOL, "true", false, CFG(sse_io_uring), 0, 0,
   "Write each pass of event-stream frames to the readers in one io_uring submission where the kernel and the "
   "seccomp profile allow it (else, or when false, one system call per reader)", NULL, NULL},
  {"PULLTRACE_PULL_EVENTS_MAX_BYTES", PT_CFG_INT, "16777216", false, CFG(pull_events_max_bytes), 0, 1073741824,
   "Memory for the pulls' own events (GET /api/v1/pulls/{id}/events): the oldest go first; 0 = keep none", NULL,
   NULL},
  {"PULLTRACE_ALERT_WEBHOOK_URL", PT_CFG_STRING, NULL, false, CFG(alert_webhook_url), 0, 0,
   "POST alerts here as Alertmanager API v2 JSON (e.g. http://alertmanager:9093/api/v2/alerts); empty = off", NULL, NULL},
  {"PULLTRACE_ALERT_WEBHOOK_TIMEOUT", PT_CFG_DURATION, "5s", false, CFG(alert_webhook_timeout), 0.1, 600,
   "Timeout of one webhook delivery attempt", NULL, NULL},
  {"PULLTRACE_ALERT_RESEND", PT_CFG_DURATION, "1m", false, CFG(alert_resend), 1, 3600,
   "While an alert is active it is re-sent to the webhook this often, with endsAt 4 intervals ahead", NULL, NULL},
  {"PULLTRACE_ALERT_QUEUE", PT_CFG_INT, "256", false, CFG(alert_queue), 1, 100000,
   "Alerts waiting for webhook delivery before new ones are dropped", NULL, NULL},
  {"PULLTRACE_UI_DIR", PT_CFG_STRING, NULL, false, CFG(ui_dir), 0, 0,
   "Serve the web UI from this directory instead of the embedded copy (development)", NULL, NULL},
  {"PULLTRACE_SHUTDOWN_TIMEOUT", PT_CFG_DURATION, "1500ms", false, CFG(shutdown_timeout), 0, 60,
   "On SIGTERM, time given to event-stream clients to receive the final comment", NULL, NULL},
  {"PULLTRACE_KUBERNETES", PT_CFG_ENUM, "auto", false, CFG(kubernetes), 0, 0,
   "auto (watch when in a cluster or a kubeconfig is given), on (fail without one) or off",
   "auto|on|off", NULL},
  {"KUBERNETES_SERVICE_HOST", PT_CFG_STRING, NULL, false, CFG(kube_service_host), 0, 0,
   "Set by Kubernetes in a pod: the API server's address (in-cluster mode)", NULL, NULL},
  {"KUBERNETES_SERVICE_PORT", PT_CFG_STRING, NULL, false, CFG(kube_service_port), 0, 0,
   "Set by Kubernetes in a pod: the API server's port", NULL, NULL},
  {"PULLTRACE_KUBECONFIG", PT_CFG_STRING, NULL, false, CFG(kubeconfig), 0, 0,
   "kubeconfig file for running outside a cluster (token or client-certificate user); else KUBECONFIG", NULL, NULL},
  {"KUBECONFIG", PT_CFG_STRING, NULL, false, CFG(kubeconfig_env), 0, 0,
   "kubeconfig used (its first file) when neither PULLTRACE_KUBECONFIG nor the in-cluster environment is set", NULL, NULL},
  {"PULLTRACE_KUBE_CONTEXT", PT_CFG_STRING, NULL, false, CFG(kube_context), 0, 0,
   "Context of the kubeconfig to use; empty = its current-context", NULL, NULL},
  {"PULLTRACE_KUBE_SA_DIR", PT_CFG_STRING, "/var/run/secrets/kubernetes.io/serviceaccount", false,
   CFG(kube_sa_dir), 0, 0, "In-cluster service-account directory (token, ca.crt, namespace)", NULL, NULL},
  {"PULLTRACE_KUBE_TOKEN_REFRESH", PT_CFG_DURATION, "1m", false, CFG(kube_token_refresh), 1, 3600,
   "How often the service-account token file is re-read (bound tokens rotate)", NULL, NULL},
  {"PULLTRACE_KUBE_WATCH_TIMEOUT", PT_CFG_DURATION, "5m", false, CFG(kube_watch_timeout), 1, 3600,
   "timeoutSeconds of each watch request; the watch then resumes from its resourceVersion", NULL, NULL},
  {"PULLTRACE_KUBE_PAGE_SIZE", PT_CFG_INT, "500", false, CFG(kube_page_size), 1, 100000,
   "Objects per page when listing pods and events", NULL, NULL},
  {"PULLTRACE_LEADER_ELECTION", PT_CFG_ENUM, "auto", false, CFG(leader_election), 0, 0,
   "Elect the replica that delivers alert webhooks and Kubernetes Events with a Lease: auto (on in a pod), on or off",
   "auto|on|off", NULL},
  {"PULLTRACE_LEASE_NAME", PT_CFG_STRING, "pulltrace-server", false, CFG(lease_name), 0, 253,
   "Name of the coordination.k8s.io Lease the replicas compete for", NULL, NULL},
  {"PULLTRACE_LEASE_NAMESPACE", PT_CFG_STRING, NULL, false, CFG(lease_namespace), 0, 63,
   "Namespace of the Lease; empty = the service account's (in-cluster) or the kubeconfig context's, else default",
   NULL, NULL},
  {"PULLTRACE_LEASE_DURATION", PT_CFG_DURATION, "15s", false, CFG(lease_duration), 1, 3600,
   "A lease not renewed for this long is taken over by another replica (whole seconds)", NULL, NULL},
  {"PULLTRACE_LEASE_RENEW_DEADLINE", PT_CFG_DURATION, "10s", false, CFG(lease_renew_deadline), 0.1, 3600,
   "A leader that cannot renew for this long stops delivering side effects (shorter than the lease duration)", NULL, NULL},
  {"PULLTRACE_LEASE_RETRY_PERIOD", PT_CFG_DURATION, "2s", false, CFG(lease_retry_period), 0.05, 3600,
   "Time between two reads or renewals of the Lease (shorter than the renew deadline)", NULL, NULL},
  {"POD_NAME", PT_CFG_STRING, NULL, false, CFG(pod_name), 0, 253,
   "This replica's identity in the Lease (the downward API's metadata.name); empty = the host name", NULL, NULL},
  {"POD_NAMESPACE", PT_CFG_STRING, NULL, false, CFG(pod_namespace), 0, 63,
   "This replica's Pod namespace (downward API's metadata.namespace): with POD_NAME, where the policy's load "
   "Events (PolicyLoadFailed, PolicyLoaded) go; empty = none", NULL, NULL},
  {"POD_UID", PT_CFG_STRING, NULL, false, CFG(pod_uid), 0, 64,
   "This replica's Pod uid (downward API's metadata.uid), so that kubectl describe pod lists those Events", NULL,
   NULL},
  {"PULLTRACE_KUBE_EVENTS_PER_MINUTE", PT_CFG_INT, "60", false, CFG(kube_events_per_minute), 0, 100000,
   "Kubernetes Events written on pods per minute at most (alerts asking for one); 0 = none", NULL, NULL},
  {"PULLTRACE_KUBE_EVENTS_PER_POD", PT_CFG_INT, "5", false, CFG(kube_events_per_pod), 1, 1000,
   "Kubernetes Events written on one pod per minute at most", NULL, NULL},
  {"PULLTRACE_DATA_DIR", PT_CFG_STRING, NULL, false, CFG(data_dir), 0, 0,
   "Directory of the pull history (SQLite); empty = memory only, nothing survives a restart", NULL, NULL},
  {"PULLTRACE_HISTORY_RETENTION", PT_CFG_DURATION, "7d", false, CFG(history_retention), 0, 3650 * 86400.0,
   "How long the history keeps finished pulls and alerts; 0 = no age limit", NULL, NULL},
  {"PULLTRACE_HISTORY_MAX_BYTES", PT_CFG_INT, "1073741824", false, CFG(history_max_bytes), 0, 1099511627776.0,
   "Size the history database is kept under (oldest pulls go first); 0 = no size limit", NULL, NULL},
  {NULL, 0, NULL, false, 0, 0, 0, NULL, NULL, NULL},
};

static const char security_headers[] =
  "X-Content-Type-Options: nosniff\r\n"
  "X-Frame-Options: DENY\r\n"
  "Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"
  "Referrer-Policy: no-referrer\r\n";

/* An alert that asks for a Kubernetes Event (its kubernetesEvent) gets one on
 * each pod of its pull (with the pod's uid, so that `kubectl describe pod`
 * lists it). Returns what its resolution needs ({"kube", "regarding"}), or
 * NULL. */
static json_t *kube_event_raised(struct pt_server *srv, const struct pt_change *c)
{
  const json_t *ke = c->alert->kube_event;
  if (!ke || !c->pull || !c->pull->npods || !srv->kube_events)
    return NULL;
  json_t *regarding = json_array();
  for (size_t i = 0; i < c->pull->npods; i++) {
    const struct pt_pod_ref *r = &c->pull->pods[i];
    const json_t *pod = pt_store_pod(srv->store, r->ns, r->name);
    const char *uid = json_string_value(json_object_get(pod, "uid"));
    json_array_append_new(regarding, json_pack("{s:s,s:s,s:s?}", "namespace", r->ns, "name", r->name, "uid", uid));
  }
  pt_kube_events_emit(srv->kube_events, json_string_value(json_object_get(ke, "reason")),
                      json_string_value(json_object_get(ke, "type")), json_string_value(json_object_get(ke, "note")),
                      json_string_value(json_object_get(ke, "action")), regarding, c->time);
  return json_pack("{s:O,s:o}", "kube", ke, "regarding", regarding);
}

/* Alerts live while the pull whose event raised them stays in the state it
 * had then (alerts.h): every pull change is shown to them. */
static void track_alerts(struct pt_server *srv, const struct pt_change *c)
{
  switch (c->type) {
  case PT_CHANGE_ALERT: {
    json_t *context = kube_event_raised(srv, c);
    pt_alerts_deliver(srv->alerts, c->alert, c->pull ? c->pull->id : NULL,
                      c->pull ? pt_pull_state_name(c->pull->state) : NULL, context, c->time);
    json_decref(context);
    break;
  }
  case PT_CHANGE_PULL_STARTED:
  case PT_CHANGE_PULL_PROGRESS:
  case PT_CHANGE_PULL_COMPLETED:
  case PT_CHANGE_PULL_FAILED:
  case PT_CHANGE_PULL_STALLED:
    pt_alerts_pull_changed(srv->alerts, c->pull->id, pt_pull_state_name(c->pull->state), c->time);
    break;
  case PT_CHANGE_PULL_EVICTED:
    pt_alerts_pull_changed(srv->alerts, c->pull->id, NULL, c->time);
    break;
  default:
    break;
  }
}

/* A resolved alert may be raised again at once (not only after alertRepeat),
 * and its pods get the resolvedReason Event its kubernetesEvent asked for. */
static void alert_resolved(void *ud, const char *name, const json_t *labels, const json_t *context, double time)
{
  struct pt_server *srv = ud;
  pt_policy_alert_forget(srv->policy, name, labels);
  const json_t *ke = json_object_get(context, "kube");
  const char *reason = json_string_value(json_object_get(ke, "resolvedReason"));
  if (reason)
    pt_kube_events_emit(srv->kube_events, reason, "Normal", json_string_value(json_object_get(ke, "resolvedNote")),
                        json_string_value(json_object_get(ke, "action")), json_object_get(context, "regarding"),
                        time);
}

/* Events wait this long at most for the history's commit: a stalled disk
 * must not freeze the live view. */
#define OUTBOX_MAX_WAIT 2.0

/* The rollout summaries, one slice per loop iteration (about 5,000 members:
 * a millisecond), so that requests and event-stream writes are not held
 * behind 100,000 pulls' summaries; 1 ms between slices as for the sweep
 * (sweep_cb). */
#define PUBLISH_SLICE 5000
/* At most one rollout.summary per image in this many seconds: a rollout on
 * thousands of nodes reads as one line per image. */
#define SUMMARY_INTERVAL 1.0

static void publish_cb(uv_timer_t *t)
{
  struct pt_server *srv = t->data;
  if (pt_store_rollouts_publish_slice(srv->store, pt_clock_now(), PUBLISH_SLICE))
    uv_timer_start(&srv->publish, publish_cb, 1, 0);
}

/* Whether a pass of summaries may start: the last one began an interval
 * ago and is over. */
static bool summaries_due(const struct pt_server *srv)
{
  return !uv_is_active((const uv_handle_t *)&srv->publish) && pt_clock_mono() - srv->summaries_at >= SUMMARY_INTERVAL;
}

/* A pass of summaries, from the next loop iteration's timers: after the
 * change that called for it, before the hub writes what that change
 * published, so that the summaries go to each reader in the same write as
 * the pull events of the report that moved them (one pass over the readers
 * instead of two). */
static void summaries_start(struct pt_server *srv)
{
  srv->summaries_at = pt_clock_mono();
  uv_timer_start(&srv->publish, publish_cb, 0, 0);
}

static void publish(void *ud, const char *type, const struct pt_hub_keys *keys, const char *data)
{
  struct pt_server *srv = ud;
  if (!srv->hub)
    return;
  if (srv->history)
    pt_history_reserve_event_ids(srv->history, pt_hub_next_id(srv->hub));
  /* No text (it could not be written): the id is taken all the same, so the
   * ids already given to the pulls' own events stay the stream's. */
  if (data)
    pt_hub_publish(srv->hub, type, keys, data);
  else
    pt_hub_skip(srv->hub);
}

static void on_history_commit(void *ud, uint64_t mark)
{
  struct pt_server *srv = ud;
  pt_outbox_release(&srv->outbox, mark, publish, srv);
}

/* The store's change records, at the edge: an alert also goes to delivery,
 * the history queues what it keeps, and every change is serialized once and
 * handed to the hub with its keys (through the outbox while the history has
 * records of it to commit). */
static void on_change(void *ud, const struct pt_change *c)
{
  struct pt_server *srv = ud;
  /* The id this event gets: the hub numbers events in the order they come
   * here, those still waiting in the outbox first. */
  if (srv->hub) {
    uint64_t id = pt_hub_next_id(srv->hub) + srv->outbox.count;
    const char *kept = pt_pull_events_record(srv->pull_events, c, id);
    if (kept && srv->history)
      pt_history_record_event(srv->history, c->pull->id, id, pt_change_type_name(c->type), kept);
  }
  if (srv->alerts)
    track_alerts(srv, c);
  if (srv->history)
    pt_history_record(srv->history, c);
  if (c->type == PT_CHANGE_PULL_COMPLETED)
    pt_typical_changed(srv->typical, c->pull->image ? c->pull->image : c->pull->image_ref);
  if (c->type != PT_CHANGE_ROLLOUT_SUMMARY && summaries_due(srv))
    summaries_start(srv);
  if (!srv->hub)
    return;
  uint64_t mark = srv->history ? pt_history_mark(srv->history) : 0;
  bool held = mark > (srv->history ? pt_history_committed(srv->history) : 0);
  if (!held && !pt_hub_has_readers(srv->hub)) {
    /* Nobody to send it to, nor back soon: numbered, not written (a late
     * resume gets a snapshot). */
    if (srv->history)
      pt_history_reserve_event_ids(srv->history, pt_hub_next_id(srv->hub));
    pt_hub_skip(srv->hub);
    return;
  }
  const char *type = pt_change_type_name(c->type);
  struct pt_buf *text = &srv->event_text;
  pt_buf_reset(text);
  if (pt_event_write(text, c) != 0) {
    PT_LOG_ERROR("out of memory writing an event: not sent", "{s:s}", "type", type);
    if (!held)
      publish(srv, type, NULL, NULL);
    else if (pt_outbox_push(&srv->outbox, mark, pt_clock_mono(), type, NULL, NULL) < 0)
      PT_LOG_ERROR("out of memory holding an event's id: later ids shift", "{s:s}", "type", type);
    return;
  }
  /* The namespaces as the hub wants them: NUL-separated, ending with "". */
  struct pt_buf *nss = &srv->nss;
  pt_buf_reset(nss);
  if (c->keys.namespaced) {
    for (size_t i = 0; i < c->keys.npods; i++)
      pt_buf_append(nss, c->keys.pods[i].ns, strlen(c->keys.pods[i].ns) + 1);
    if (c->keys.ns)
      pt_buf_append(nss, c->keys.ns, strlen(c->keys.ns) + 1);
    pt_buf_append(nss, "", 1);
  }
  struct pt_hub_keys keys = {.node = c->keys.node, .nss = c->keys.namespaced && !nss->oom ? nss->data : NULL,
                             .image = c->keys.image};
  if (held) {
    if (pt_outbox_push(&srv->outbox, mark, pt_clock_mono(), type, &keys, text->data) < 0)
      PT_LOG_ERROR("out of memory holding an event: not sent", "{s:s}", "type", type);
  } else {
    publish(srv, type, &keys, text->data);
  }
}

/* The store's question for pull.slow: how long this image's pulls usually
 * take, from memory (server/typical.h). */
static bool typical_of(void *ud, const char *image, double *p50, size_t *pulls)
{
  struct pt_server *srv = ud;
  return pt_typical_get(srv->typical, image, pt_clock_mono(), p50, pulls);
}

/* The store's periodic work, a slice per loop iteration: with 100,000 pulls
 * (each an eviction-hook call) it takes many milliseconds, which must not
 * hold requests and event-stream writes for that long. */
#define SWEEP_SLICE 250

static void sweep_cb(uv_timer_t *t)
{
  struct pt_server *srv = t->data;
  /* 1 ms, not 0: a timer due at once would run again in the same pass over
   * the loop's timers, and the slices would add up to one long iteration. */
  if (pt_store_tick_slice(srv->store, pt_clock_now(), SWEEP_SLICE))
    uv_timer_start(&srv->sweep, sweep_cb, 1, 0);
}

static void tick_cb(uv_timer_t *t)
{
  struct pt_server *srv = t->data;
  double oldest = pt_outbox_oldest(&srv->outbox);
  if (oldest > 0 && pt_clock_mono() - oldest > OUTBOX_MAX_WAIT) {
    size_t n = srv->outbox.count;
    srv->outbox_released_late += n;
    PT_LOG_WARN("history commit is late: events sent before their records are on disk", "{s:I}", "events",
                (json_int_t)n);
    pt_outbox_release(&srv->outbox, UINT64_MAX, publish, srv);
  }
  if (!uv_is_active((uv_handle_t *)&srv->sweep))
    sweep_cb(&srv->sweep);
  pt_server_policy_events(srv, pt_clock_now());
  /* Summaries go out with the pull events of the first change an interval
   * after the last pass (on_change). This is for the changes no other
   * change came after: their summaries go out one interval later than
   * that. */
  if (summaries_due(srv) && pt_clock_mono() - srv->summaries_at >= 2 * SUMMARY_INTERVAL)
    summaries_start(srv);
}

static int restore_pull(void *ud, const json_t *record)
{
  struct pt_server *srv = ud;
  return pt_store_restore_pull(srv->store, record, pt_clock_now());
}

int pt_server_open_history(struct pt_server *srv, char *err, size_t errlen)
{
  if (!srv->cfg.data_dir || !*srv->cfg.data_dir)
    return 0;
  struct pt_history_options o = {
    .dir = srv->cfg.data_dir,
    .retention = srv->cfg.history_retention,
    .max_bytes = srv->cfg.history_max_bytes,
  };
  srv->history = pt_history_open(srv->loop, &o, err, errlen);
  if (!srv->history)
    return -EIO;
  long n = pt_history_load_live(srv->history, restore_pull, srv, err, errlen);
  if (n < 0)
    return (int)n;
  int r = pt_history_start(srv->history, err, errlen);
  if (r < 0)
    return r;
  /* Above every id an earlier process used: its reservation, or the clock
   * (when that reservation did not reach the disk). */
  uint64_t first = pt_history_first_event_id(srv->history);
  if (first > pt_hub_next_id(srv->hub))
    pt_hub_set_next_id(srv->hub, first);
  pt_history_reserve_event_ids(srv->history, pt_hub_next_id(srv->hub));
  pt_history_set_commit_cb(srv->history, on_history_commit, srv);
  if (!(srv->typical = pt_typical_create(srv->history))) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  PT_LOG_INFO("history opened", "{s:s,s:I,s:I}", "dataDir", srv->cfg.data_dir, "pullsRestored", (json_int_t)n,
              "nextEventId", (json_int_t)pt_hub_next_id(srv->hub));
  return 0;
}

/* Frees what pt_server_create() made before it failed; handles that were
 * opened close in the loop. */
static void create_failed(struct pt_server *srv)
{
  PT_LOG_ERROR("out of memory creating the server", "{}");
  pt_store_destroy(srv->store);
  pt_hub_destroy(srv->hub);
  pt_http_server_destroy(srv->http);
  pt_http_server_destroy(srv->metrics);
  pt_http_server_destroy(srv->report);
  pt_alerts_destroy(srv->alerts);
  pt_kube_events_destroy(srv->kube_events);
  pt_httpc_destroy(srv->httpc);
  pt_pull_events_destroy(srv->pull_events);
  pt_server_auth_close(srv);
  pt_buf_close(&srv->nss);
  free(srv);
}

/* The Kubernetes Events' question: is this replica the one that writes? */
static bool is_leader(void *ud)
{
  return ((struct pt_server *)ud)->leader;
}

struct pt_server *pt_server_create(uv_loop_t *loop, const struct pt_server_config *cfg,
                                   struct pt_policy *policy)
{
  if (!policy)
    return NULL;
  struct pt_server *srv = calloc(1, sizeof(*srv));
  if (!srv)
    return NULL;
  srv->loop = loop;
  srv->cfg = *cfg;
  srv->policy = policy;
  srv->started_at = pt_clock_now();
  srv->leader = true;
  pt_buf_init(&srv->nss);
  pt_outbox_init(&srv->outbox);
  snprintf(srv->default_headers, sizeof(srv->default_headers), "%s", security_headers);
  struct pt_store_options so = {
    .policy = policy,
    .node_lost_grace = cfg->node_lost_grace,
    .report_min_interval = cfg->report_min_interval,
    .max_nodes = (size_t)cfg->max_nodes,
    .on_change = on_change,
    .typical = typical_of,
    .ud = srv,
  };
  /* Event ids start from the clock so that they keep increasing across
   * restarts: a client resuming with an id from an earlier process never
   * matches a wrong event, it gets a snapshot. */
  struct pt_hub_options ho = {
    .ring_size = (size_t)cfg->sse_buffer,
    .client_queue_max = (size_t)cfg->sse_client_queue,
    .heartbeat = cfg->sse_heartbeat,
    .first_id = (uint64_t)(srv->started_at * 1000.0) * 1000ULL,
  };
  struct pt_http_server_options hopts = {
    .max_body_bytes = (size_t)cfg->max_body,
    .max_connections = (size_t)cfg->max_connections,
    .request_timeout = cfg->request_timeout,
    .idle_timeout = cfg->idle_timeout,
    .default_headers = srv->default_headers,
    .check_head = pt_server_api_check_head,
    .no_io_uring = !cfg->sse_io_uring,
  };
  struct pt_http_server_options mopts = hopts;
  mopts.check_head = NULL;
  mopts.max_connections = 64;
  mopts.max_body_bytes = 4096;
  /* The report port: the API port's limits, its own routes. */
  struct pt_http_server_options ropts = hopts;
  ropts.check_head = pt_server_report_check_head;
  struct pt_alerts_options ao = {
    .webhook_url = cfg->alert_webhook_url,
    .webhook_timeout = cfg->alert_webhook_timeout,
    .webhook_queue = (size_t)(cfg->alert_queue > 0 ? cfg->alert_queue : 256),
    .resend = cfg->alert_resend,
    .on_resolved = alert_resolved,
    .ud = srv,
  };
  /* reportingInstance: the host name, which in a pod is the pod's name. */
  char host[256] = "";
  size_t hlen = sizeof(host);
  uv_os_gethostname(host, &hlen);
  struct pt_kube_events_options keo = {
    .instance = host,
    .per_minute = (double)cfg->kube_events_per_minute,
    .per_pod_per_minute = (double)cfg->kube_events_per_pod,
  };
  if (cfg->kube_events_per_minute > 0 && !(srv->kube_events = pt_kube_events_create(&keo))) {
    create_failed(srv);
    return NULL;
  }
  pt_kube_events_set_leader(srv->kube_events, is_leader, srv);
  if (!(srv->store = pt_store_create(&so)) || !(srv->hub = pt_hub_create(loop, &ho, pt_server_snapshot, srv)) ||
      !(srv->http = pt_http_server_create(loop, &hopts, pt_server_api_handle, srv)) ||
      !(srv->metrics = pt_http_server_create(loop, &mopts, pt_server_metrics_handle, srv)) ||
      (cfg->report_addr.set && !(srv->report = pt_http_server_create(loop, &ropts, pt_server_report_handle, srv))) ||
      !(srv->httpc = pt_httpc_create(loop)) ||
      !(srv->pull_events = pt_pull_events_create((size_t)cfg->pull_events_max_bytes)) ||
      !(srv->alerts = pt_alerts_create(loop, srv->httpc, &ao)) ||
      pt_server_auth_init(srv) < 0) {
    create_failed(srv);
    return NULL;
  }
  if (cfg->ui_dir && *cfg->ui_dir)
    srv->ui_dir = pt_ui_dir_create(loop, cfg->ui_dir, 1.0);
  uv_timer_init(loop, &srv->tick);
  uv_timer_init(loop, &srv->sweep);
  uv_timer_init(loop, &srv->publish);
  uv_timer_init(loop, &srv->shutdown_timer);
  srv->tick.data = srv->sweep.data = srv->publish.data = srv->shutdown_timer.data = srv;
  srv->handles_open = 4;
  if (pt_loop_metrics_init(&srv->loop_metrics, loop) == 0) {
    srv->handles_open++;
    srv->loop_metrics_on = true;
  }
  return srv;
}

/* Binds one listener; var names its address in the error. */
static int listen_on(struct pt_http_server *http, const struct pt_addr *addr, const char *var, char *err,
                     size_t errlen)
{
  int r = pt_http_server_listen(http, addr->host, addr->port);
  if (r < 0)
    snprintf(err, errlen, "%s: cannot listen on %s:%d: %s", var, addr->host, addr->port, uv_strerror(r));
  return r;
}

int pt_server_listen(struct pt_server *srv, char *err, size_t errlen)
{
  const char *cert = srv->cfg.tls_cert, *key = srv->cfg.tls_key;
  bool has_cert = cert && *cert, has_key = key && *key;
  if (has_cert != has_key) {
    snprintf(err, errlen, "%s is set but %s is not: TLS needs both", has_cert ? "PULLTRACE_TLS_CERT" : "PULLTRACE_TLS_KEY",
             has_cert ? "PULLTRACE_TLS_KEY" : "PULLTRACE_TLS_CERT");
    return -EINVAL;
  }
  if (has_cert) {
    if (!(srv->tls = pt_tls_ctx_create(srv->loop, cert, key, srv->cfg.tls_reload_interval, err, errlen)))
      return -EINVAL;
    /* Reports carry what agents see of their nodes: the same protection as the API. */
    pt_http_server_use_tls(srv->http, srv->tls);
    if (srv->report)
      pt_http_server_use_tls(srv->report, srv->tls);
  }
  int r;
  if ((r = listen_on(srv->http, &srv->cfg.http_addr, "PULLTRACE_HTTP_ADDR", err, errlen)) < 0 ||
      (r = listen_on(srv->metrics, &srv->cfg.metrics_addr, "PULLTRACE_METRICS_ADDR", err, errlen)) < 0 ||
      (srv->report && (r = listen_on(srv->report, &srv->cfg.report_addr, "PULLTRACE_REPORT_ADDR", err, errlen)) < 0))
    return r;
  uv_timer_start(&srv->tick, tick_cb, 1000, 1000);
  return 0;
}

int pt_server_http_port(const struct pt_server *srv)
{
  return pt_http_server_port(srv->http);
}

int pt_server_metrics_port(const struct pt_server *srv)
{
  return pt_http_server_port(srv->metrics);
}

int pt_server_report_port(const struct pt_server *srv)
{
  return srv->report ? pt_http_server_port(srv->report) : -1;
}

static void handle_closed(uv_handle_t *h)
{
  struct pt_server *srv = h->data;
  if (--srv->handles_open == 0 && srv->shutdown_done)
    srv->shutdown_done(srv->shutdown_ud);
}

static void loop_metrics_closed(uv_handle_t *h)
{
  struct pt_server *srv = (struct pt_server *)((char *)h - offsetof(struct pt_server, loop_metrics.prepare));
  if (--srv->handles_open == 0 && srv->shutdown_done)
    srv->shutdown_done(srv->shutdown_ud);
}

static void save_if_active(void *history, const struct pt_pull *p)
{
  if (p->state == PT_PULL_PULLING || p->state == PT_PULL_STALLED)
    pt_history_save_pull(history, p);
}

static void finish_shutdown(struct pt_server *srv)
{
  uv_timer_stop(&srv->shutdown_timer);
  pt_hub_destroy(srv->hub);
  srv->hub = NULL;
  pt_http_server_destroy(srv->http);
  srv->http = NULL;
  pt_http_server_destroy(srv->metrics);
  srv->metrics = NULL;
  pt_http_server_destroy(srv->report);
  srv->report = NULL;
  pt_tls_ctx_destroy(srv->tls); /* connections hold their own reference */
  srv->tls = NULL;
  pt_httpc_destroy(srv->httpc); /* a request in flight ends here, cancelled */
  srv->httpc = NULL;
  pt_alerts_destroy(srv->alerts);
  srv->alerts = NULL;
  pt_kube_events_destroy(srv->kube_events);
  srv->kube_events = NULL;
  /* The pulls in flight as they are now (reports do not write their
   * progress), then whatever is queued, before the history closes; events
   * still waiting for it have no clients left to go to. */
  if (srv->history)
    pt_store_foreach_pull(srv->store, save_if_active, srv->history);
  pt_typical_destroy(srv->typical);
  srv->typical = NULL;
  pt_history_close(srv->history);
  srv->history = NULL;
  pt_outbox_close(&srv->outbox);
  pt_ui_dir_destroy(srv->ui_dir);
  srv->ui_dir = NULL;
  uv_close((uv_handle_t *)&srv->tick, handle_closed);
  uv_close((uv_handle_t *)&srv->sweep, handle_closed);
  uv_close((uv_handle_t *)&srv->publish, handle_closed);
  uv_close((uv_handle_t *)&srv->shutdown_timer, handle_closed);
  if (srv->loop_metrics_on)
    pt_loop_metrics_close(&srv->loop_metrics, loop_metrics_closed);
}

static void shutdown_poll(uv_timer_t *t)
{
  struct pt_server *srv = t->data;
  struct pt_hub_stats hs;
  pt_hub_stats(srv->hub, &hs);
  if (hs.clients == 0 || pt_clock_mono() - srv->shutdown_started >= srv->cfg.shutdown_timeout)
    finish_shutdown(srv);
}

void pt_server_shutdown(struct pt_server *srv, void (*done)(void *ud), void *ud)
{
  if (srv->shutting_down)
    return;
  srv->shutting_down = true;
  srv->shutdown_done = done;
  srv->shutdown_ud = ud;
  srv->shutdown_started = pt_clock_mono();
  uv_timer_stop(&srv->tick);
  uv_timer_stop(&srv->sweep);
  uv_timer_stop(&srv->publish);
  pt_http_server_stop(srv->http);
  pt_http_server_stop(srv->metrics);
  if (srv->report)
    pt_http_server_stop(srv->report);
  pt_hub_shutdown(srv->hub, "server shutting down");
  pt_alerts_stop(srv->alerts);
  uv_timer_start(&srv->shutdown_timer, shutdown_poll, 0, 20);
}

void pt_server_destroy(struct pt_server *srv)
{
  if (!srv)
    return;
  pt_server_auth_close(srv);
  pt_store_destroy(srv->store);
  pt_pull_events_destroy(srv->pull_events);
  pt_buf_close(&srv->event_text);
  pt_ui_dir_destroy(srv->ui_dir); /* never listened: freed when the loop runs */
  pt_tls_ctx_destroy(srv->tls);
  free(srv->ui_etags);
  pt_buf_close(&srv->nss);
  free(srv);
}

void pt_server_set_ui(struct pt_server *srv, const struct pt_embedded_file *files)
{
  srv->ui = files;
  free(srv->ui_etags);
  srv->ui_etags = NULL;
  size_t n = 0;
  while (files && files[n].name)
    n++;
  if (!n)
    return;
  srv->ui_etags = calloc(n, sizeof(*srv->ui_etags));
  for (size_t i = 0; srv->ui_etags && i < n; i++) {
    srv->ui_etags[i] = pt_fnv1a(PT_FNV1A_INIT, files[i].data, files[i].size);
  }
}

void pt_server_set_ready(struct pt_server *srv, const char *name, bool ok, const char *detail)
{
  struct pt_ready_check *c = NULL;
  for (size_t i = 0; i < srv->nready; i++)
    if (strcmp(srv->ready[i].name, name) == 0)
      c = &srv->ready[i];
  if (!c) {
    if (srv->nready >= PT_MAX_READY)
      return;
    c = &srv->ready[srv->nready++];
    snprintf(c->name, sizeof(c->name), "%s", name);
  }
  c->ok = ok;
  snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
}

struct pt_store *pt_server_store(struct pt_server *srv)
{
  return srv->store;
}

void pt_server_set_kube(struct pt_server *srv, struct pt_kube *kube)
{
  if (!kube)
    pt_server_auth_kube_gone(srv);
  srv->kube = kube;
  pt_kube_events_set_kube(srv->kube_events, kube);
}

void pt_server_set_leader(struct pt_server *srv, bool leader, const char *holder)
{
  srv->leader = leader;
  pt_alerts_set_leader(srv->alerts, leader);
  char detail[256];
  if (leader)
    snprintf(detail, sizeof(detail), "leader: this replica delivers alert webhooks and Kubernetes Events");
  else
    snprintf(detail, sizeof(detail), "follower: %s%s delivers alert webhooks and Kubernetes Events",
             *holder ? "replica " : "no replica", holder);
  pt_server_set_ready(srv, "leader", true, detail);
}

void pt_server_set_lease(struct pt_server *srv, struct pt_lease *lease)
{
  srv->lease = lease;
}
