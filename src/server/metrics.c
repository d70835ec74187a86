/* The Prometheus exposition of /metrics. Every label set is bounded: states,
 * results, reasons, hooks, severities, script file names; never pull ids or
 * node names. */
#include <stdio.h>
#include <string.h>

#include "core/prom.h"
#include "kube/lease.h"
#include "kube/watcher.h"
#include "server/server_impl.h"

static void labeled(struct pt_buf *out, const char *name, const char *label, const char *value, double v)
{
  struct pt_buf l;
  pt_buf_init(&l);
  pt_prom_label(&l, label, value);
  pt_prom_sample(out, name, l.data, v);
  pt_buf_close(&l);
}

static void counter(struct pt_buf *out, const char *name, const char *help, double v)
{
  pt_prom_family(out, name, "counter", help);
  pt_prom_sample(out, name, NULL, v);
}

static void gauge(struct pt_buf *out, const char *name, const char *help, double v)
{
  pt_prom_family(out, name, "gauge", help);
  pt_prom_sample(out, name, NULL, v);
}

/* The token checks of docs/security.md: families always present (zeros
 * when a mode is off), so dashboards and alerts need no special case. */
static void auth_metrics(struct pt_server *srv, struct pt_buf *out)
{
  struct pt_authn_stats st[2];
  const char *who[2] = {"agent", "reader"};
  pt_authn_stats(srv->agent_authn, &st[0]);
  pt_authn_stats(srv->read_authn, &st[1]);
  pt_prom_family(out, "pulltrace_auth_reviews_total", "counter",
                 "Reviews sent to the Kubernetes API server, by client kind and review (token, access)");
  for (int i = 0; i < 2; i++) {
    struct pt_buf l;
    pt_buf_init(&l);
    pt_prom_label(&l, "client", who[i]);
    pt_prom_label(&l, "review", "token");
    pt_prom_sample(out, "pulltrace_auth_reviews_total", l.data, (double)st[i].reviews);
    pt_buf_reset(&l);
    pt_prom_label(&l, "client", who[i]);
    pt_prom_label(&l, "review", "access");
    pt_prom_sample(out, "pulltrace_auth_reviews_total", l.data, (double)st[i].access_reviews);
    pt_buf_close(&l);
  }
  pt_prom_family(out, "pulltrace_auth_review_errors_total", "counter",
                 "Reviews the Kubernetes API server did not answer usefully (the client got 503), by client kind");
  for (int i = 0; i < 2; i++)
    labeled(out, "pulltrace_auth_review_errors_total", "client", who[i], (double)st[i].review_errors);
  pt_prom_family(out, "pulltrace_auth_cache_hits_total", "counter", "Token checks answered from the cache, by client kind");
  for (int i = 0; i < 2; i++)
    labeled(out, "pulltrace_auth_cache_hits_total", "client", who[i], (double)st[i].cache_hits);
  pt_prom_family(out, "pulltrace_auth_cache_tokens", "gauge", "Tokens in the check cache, by client kind");
  for (int i = 0; i < 2; i++)
    labeled(out, "pulltrace_auth_cache_tokens", "client", who[i], (double)st[i].cached);
  pt_prom_family(out, "pulltrace_read_requests_refused_total", "counter",
                 "Read requests refused by PULLTRACE_READ_AUTH, by reason");
  for (int i = 0; i < PT_READ_REFUSAL_COUNT; i++)
    labeled(out, "pulltrace_read_requests_refused_total", "reason", pt_read_refusal_names[i],
            (double)srv->reads_refused[i]);
}

struct err_ctx {
  struct pt_buf *out;
};

static void policy_error(void *ud, const char *hook, const char *script, const char *reason, uint64_t count)
{
  struct err_ctx *c = ud;
  struct pt_buf l;
  pt_buf_init(&l);
  pt_prom_label(&l, "hook", hook);
  pt_prom_label(&l, "script", script ? script : "");
  pt_prom_label(&l, "reason", reason);
  pt_prom_sample(c->out, "pulltrace_policy_errors_total", l.data, (double)count);
  pt_buf_close(&l);
}

/* The API port's connection figures, with the report port's added (one
 * set of families: the reports' share is in pulltrace_agent_reports_*). */
static void http_stats(struct pt_server *srv, struct pt_http_server_stats *st)
{
  if (srv->http)
    pt_http_server_stats(srv->http, st);
  if (!srv->report)
    return;
  struct pt_http_server_stats r;
  pt_http_server_stats(srv->report, &r);
  st->connections_accepted += r.connections_accepted;
  st->connections_rejected += r.connections_rejected;
  st->requests += r.requests;
  st->bad_requests += r.bad_requests;
  st->timeouts += r.timeouts;
  st->refused_early += r.refused_early;
  st->lingering_closes += r.lingering_closes;
  st->linger_cutoffs += r.linger_cutoffs;
  st->tls_errors += r.tls_errors;
  st->connections_open += r.connections_open;
}

/* Shown only with TLS on the API port (docs/security.md#transport). */
static void tls_metrics(struct pt_server *srv, const struct pt_http_server_stats *st, struct pt_buf *out)
{
  if (!srv->tls)
    return;
  struct pt_tls_ctx_stats ts;
  pt_tls_ctx_stats(srv->tls, &ts);
  counter(out, "pulltrace_tls_errors_total", "Failed TLS handshakes and bad TLS records on the API and report ports",
          (double)st->tls_errors);
  pt_prom_family(out, "pulltrace_tls_reloads_total", "counter",
                 "Changes of the certificate or key files, by result (ok = the new pair is in use, "
                 "error = refused, the previous pair stays; the log says why)");
  labeled(out, "pulltrace_tls_reloads_total", "result", "ok", (double)ts.reloads);
  labeled(out, "pulltrace_tls_reloads_total", "result", "error", (double)ts.reload_errors);
  gauge(out, "pulltrace_tls_certificate_expiry_timestamp_seconds",
        "notAfter of the certificate in use on the API port (Unix time)", ts.not_after);
}

/* Shown only with a data directory (docs/history.md). */
static void history_metrics(struct pt_server *srv, struct pt_buf *out)
{
  if (!srv->history)
    return;
  struct pt_history_stats s;
  pt_history_stats(srv->history, &s);
  counter(out, "pulltrace_history_records_written_total", "Records (pulls, alerts) committed to the history",
          (double)s.records_written);
  counter(out, "pulltrace_history_transactions_total", "Transactions committed by the history writer",
          (double)s.transactions);
  counter(out, "pulltrace_history_write_errors_total", "History transactions that failed (disk full, I/O error)",
          (double)s.errors);
  counter(out, "pulltrace_history_records_dropped_total",
          "Records lost with a failed transaction or a full write queue", (double)s.records_dropped);
  pt_prom_family(out, "pulltrace_history_deleted_total", "counter", "Rows removed by retention, by reason");
  labeled(out, "pulltrace_history_deleted_total", "reason", "age", (double)s.deleted_age);
  labeled(out, "pulltrace_history_deleted_total", "reason", "size", (double)s.deleted_size);
  gauge(out, "pulltrace_history_queue_depth", "Records waiting for the history writer", (double)s.queue_depth);
  gauge(out, "pulltrace_history_database_bytes", "Size of the history database file", (double)s.db_bytes);
  gauge(out, "pulltrace_history_degraded",
        "1 while history writes fail (the live view goes on, finished pulls are not kept)", s.degraded ? 1 : 0);
  gauge(out, "pulltrace_history_events_waiting", "Events held until the history commits their records",
        (double)srv->outbox.count);
  counter(out, "pulltrace_history_events_late_total",
          "Events sent before their records were committed because the writer was late",
          (double)srv->outbox_released_late);
}

/* The pulls' own events in memory (server/pull_events.h). */
static void pull_events_metrics(struct pt_server *srv, struct pt_buf *out)
{
  struct pt_pull_events_stats s;
  pt_pull_events_stats(srv->pull_events, &s);
  gauge(out, "pulltrace_pull_events_kept", "Events of the pulls' own pasts kept in memory", (double)s.events);
  gauge(out, "pulltrace_pull_events_bytes",
        "Memory those events take (text and bookkeeping), at most PULLTRACE_PULL_EVENTS_MAX_BYTES", (double)s.bytes);
  counter(out, "pulltrace_pull_events_dropped_total",
          "Events of the pulls' own pasts pushed out of memory (64 per pull, or the byte bound)", (double)s.dropped);
}

void pt_server_metrics_render(struct pt_server *srv, struct pt_buf *out)
{
  const struct pt_store_counters *c = pt_store_counters(srv->store);
  struct pt_store_gauges g;
  pt_store_gauges(srv->store, &g);
  struct pt_hub_stats hs = {0};
  if (srv->hub)
    pt_hub_stats(srv->hub, &hs);

  pt_prom_family(out, "pulltrace_build_info", "gauge", "Build information; the value is always 1");
  labeled(out, "pulltrace_build_info", "version", PT_VERSION, 1);
  gauge(out, "process_start_time_seconds", "Start time of the process since the Unix epoch in seconds",
        srv->started_at);

  pt_prom_family(out, "pulltrace_pulls_active", "gauge", "Pulls in flight, by state");
  labeled(out, "pulltrace_pulls_active", "state", "pulling", (double)g.pulls_pulling);
  labeled(out, "pulltrace_pulls_active", "state", "stalled", (double)g.pulls_stalled);
  pt_prom_family(out, "pulltrace_pulls_tracked", "gauge", "Pulls in the server's tables, by state");
  static const char *const states[] = {"pulling", "stalled", "completed", "failed", "lost"};
  size_t sv[] = {g.pulls_pulling, g.pulls_stalled, g.pulls_completed, g.pulls_failed, g.pulls_lost};
  for (int i = 0; i < 5; i++)
    labeled(out, "pulltrace_pulls_tracked", "state", states[i], (double)sv[i]);
  counter(out, "pulltrace_pulls_total", "Pulls seen since the server started (agent or kubelet)",
          (double)c->pulls_started);
  counter(out, "pulltrace_pulls_completed_total", "Pulls that completed", (double)c->pulls_completed);
  pt_prom_family(out, "pulltrace_pull_errors_total", "counter",
                 "Pulls that did not complete: by kubelet failure reason (Failed, ErrImagePull, ImagePullBackOff, "
                 "BackOff, ErrImageNeverPull, InspectFailed) or lost (vanished, node lost)");
  for (int i = 0; i < PT_STORE_FAIL_REASONS; i++)
    labeled(out, "pulltrace_pull_errors_total", "reason", pt_store_fail_reasons[i], (double)c->failed_by_reason[i]);
  labeled(out, "pulltrace_pull_errors_total", "reason", "lost", (double)c->pulls_lost);
  counter(out, "pulltrace_pull_stalls_total", "Transitions of a pull to stalled", (double)c->stalls);
  counter(out, "pulltrace_pulls_evicted_total", "Pulls removed from the tables by the eviction policy",
          (double)c->pulls_evicted);
  pt_prom_family(out, "pulltrace_pull_duration_seconds", "histogram",
                 "Duration of completed pulls, from the manifest commit to the last layer");
  struct pt_prom_histogram h = {
    .nbuckets = 8, .bounds = pt_store_duration_buckets, .counts = (uint64_t *)c->duration_counts,
    .count = c->duration_count, .sum = c->duration_sum,
  };
  pt_prom_histogram_write(out, "pulltrace_pull_duration_seconds", NULL, &h);
  counter(out, "pulltrace_pull_bytes_total", "Bytes downloaded by pulls (cached layers excluded)", (double)c->bytes);
  if (srv->loop_metrics_on) {
    const struct pt_loop_metrics *lm = &srv->loop_metrics;
    pt_prom_family(out, "pulltrace_loop_iteration_seconds", "histogram",
                   "CPU time of the event loop per iteration (between two polls for I/O)");
    struct pt_prom_histogram lh = {
      .nbuckets = PT_LOOP_METRICS_BUCKETS, .bounds = pt_loop_metrics_bounds, .counts = (uint64_t *)lm->counts,
      .count = lm->count, .sum = lm->sum,
    };
    pt_prom_histogram_write(out, "pulltrace_loop_iteration_seconds", NULL, &lh);
    gauge(out, "pulltrace_loop_iteration_max_seconds", "The most CPU time of one loop iteration since the start",
          lm->max);
    gauge(out, "pulltrace_loop_iteration_wall_max_seconds",
          "The longest wall time the loop was away from its poll since the start (other processes' time included)",
          lm->wall_max);
  }

  pt_prom_family(out, "pulltrace_agent_reports_total", "counter", "Agent reports received, by result");
  uint64_t rejected = 0;
  for (int i = 0; i < PT_REJECT_COUNT; i++)
    rejected += srv->reports_rejected[i];
  labeled(out, "pulltrace_agent_reports_total", "result", "applied", (double)srv->reports_applied);
  labeled(out, "pulltrace_agent_reports_total", "result", "ignored", (double)srv->reports_stale);
  labeled(out, "pulltrace_agent_reports_total", "result", "rejected", (double)rejected);
  pt_prom_family(out, "pulltrace_agent_reports_rejected_total", "counter", "Agent reports rejected, by reason");
  for (int i = 0; i < PT_REJECT_COUNT; i++)
    labeled(out, "pulltrace_agent_reports_rejected_total", "reason", pt_reject_reason_names[i],
            (double)srv->reports_rejected[i]);
  gauge(out, "pulltrace_agents_connected", "Agents that reported within their grace period (ok or lagging)",
        (double)(g.nodes_ok + g.nodes_lagging));
  pt_prom_family(out, "pulltrace_agents", "gauge", "Known agents (nodes), by state");
  labeled(out, "pulltrace_agents", "state", "ok", (double)g.nodes_ok);
  labeled(out, "pulltrace_agents", "state", "lagging", (double)g.nodes_lagging);
  labeled(out, "pulltrace_agents", "state", "lost", (double)g.nodes_lost);
  gauge(out, "pulltrace_nodes_containerd_unreachable",
        "Nodes whose agent's last report says it cannot reach containerd (its pulls there are frozen at their last "
        "state)", (double)g.nodes_containerd_unreachable);
  gauge(out, "pulltrace_agents_max", "Nodes the server keeps (PULLTRACE_MAX_NODES); reports of new nodes beyond it "
        "are rejected with reason too_many_nodes", (double)pt_store_max_nodes(srv->store));
  counter(out, "pulltrace_agents_forgotten_total", "Lost nodes forgotten once their last pull was evicted",
          (double)c->nodes_forgotten);
  counter(out, "pulltrace_agent_restarts_total", "New bootIds seen from known nodes", (double)c->node_restarts);

  gauge(out, "pulltrace_sse_clients_active", "Connected event-stream clients", (double)hs.clients);
  counter(out, "pulltrace_sse_clients_dropped_total", "Event-stream clients dropped for reading too slowly",
          (double)hs.dropped_slow);
  counter(out, "pulltrace_sse_events_total", "Events published on the event stream", (double)hs.events);
  pt_prom_family(out, "pulltrace_sse_write_wait_seconds", "histogram",
                 "Per write to an event-stream reader: how long its oldest frame waited since it was published");
  pt_prom_histogram_write(out, "pulltrace_sse_write_wait_seconds", NULL, &hs.wait);
  counter(out, "pulltrace_sse_resumes_total", "Event-stream reconnects resumed from the ring buffer",
          (double)hs.resumed);
  counter(out, "pulltrace_sse_snapshots_total", "Snapshots sent to event-stream clients", (double)hs.snapshots);

  struct pt_policy_counters pc = {0};
  if (srv->policy)
    pt_policy_counters(srv->policy, &pc);
  pt_prom_family(out, "pulltrace_policy_calls_total", "counter", "Calls into a Lua policy hook");
  for (int i = 0; i < PT_POLICY_HOOK_COUNT; i++)
    labeled(out, "pulltrace_policy_calls_total", "hook", pt_policy_hook_name(i), (double)pc.calls[i]);
  pt_prom_family(out, "pulltrace_policy_fallbacks_total", "counter",
                 "Policy hook calls that fell back to the built-in default");
  for (int i = 0; i < PT_POLICY_HOOK_COUNT; i++)
    labeled(out, "pulltrace_policy_fallbacks_total", "hook", pt_policy_hook_name(i), (double)pc.errors[i]);
  pt_prom_family(out, "pulltrace_policy_seconds_total", "counter", "Time spent in Lua policy hooks");
  for (int i = 0; i < PT_POLICY_HOOK_COUNT; i++)
    labeled(out, "pulltrace_policy_seconds_total", "hook", pt_policy_hook_name(i), pc.seconds[i]);
  pt_prom_family(out, "pulltrace_policy_errors_total", "counter",
                 "Policy hook errors, by hook, script and reason (runtime, budget, memory, invalid_return)");
  struct err_ctx ec = {out};
  pt_policy_foreach_error(srv->policy, policy_error, &ec);
  pt_prom_family(out, "pulltrace_policy_reloads_total", "counter", "Policy reloads, by result");
  labeled(out, "pulltrace_policy_reloads_total", "result", "success", (double)pc.reloads_ok);
  labeled(out, "pulltrace_policy_reloads_total", "result", "failure", (double)pc.reloads_failed);
  gauge(out, "pulltrace_policy_memory_bytes", "Heap of the running Lua VM", (double)pc.memory_bytes);
  struct pt_policy_status ps;
  pt_policy_status(srv->policy, &ps);
  gauge(out, "pulltrace_policy_defaults_only",
        "1 while the policy directory failed to load at startup and the built-in defaults run", ps.defaults_only);
  pt_prom_family(out, "pulltrace_policy_load_error", "gauge",
                 "1 while the last load of the policy directory (startup or reload) failed: the first error's "
                 "script, line and message");
  if (ps.last_reload == 0) {
    char line[16];
    snprintf(line, sizeof(line), "%d", ps.error_line);
    struct pt_buf l;
    pt_buf_init(&l);
    pt_prom_label(&l, "script", ps.error_script);
    pt_prom_label(&l, "line", ps.error_line > 0 ? line : "");
    pt_prom_label(&l, "message", ps.error_message);
    pt_prom_sample(out, "pulltrace_policy_load_error", l.data, 1);
    pt_buf_close(&l);
  }

  struct pt_alerts_stats as;
  pt_alerts_stats(srv->alerts, &as);
  pt_prom_family(out, "pulltrace_alerts_total", "counter", "Alerts raised by the policy, by severity");
  for (int i = 0; i < PT_ALERT_SEVERITIES; i++)
    labeled(out, "pulltrace_alerts_total", "severity", pt_alert_severity_names[i], (double)as.by_severity[i]);
  gauge(out, "pulltrace_alerts_active", "Alerts whose condition holds (the pull that raised them is still in that state)",
        (double)as.active);
  counter(out, "pulltrace_alerts_resolved_total", "Alerts whose condition cleared (sent once more with endsAt)",
          (double)as.resolved);
  counter(out, "pulltrace_alerts_suppressed_total", "Repeated alerts suppressed within the repeat interval",
          (double)pc.alerts_suppressed);
  pt_prom_family(out, "pulltrace_alert_webhook_deliveries_total", "counter",
                 "Alerts handed to the webhook, by result (sent, dropped after retries or a full queue, "
                 "not_leader = left to the leading replica, after_takeover = such alerts handed over by a "
                 "replica that became the leader)");
  labeled(out, "pulltrace_alert_webhook_deliveries_total", "result", "sent", (double)as.webhook.sent);
  labeled(out, "pulltrace_alert_webhook_deliveries_total", "result", "dropped", (double)as.webhook.dropped);
  labeled(out, "pulltrace_alert_webhook_deliveries_total", "result", "not_leader", (double)as.not_leader);
  labeled(out, "pulltrace_alert_webhook_deliveries_total", "result", "after_takeover", (double)as.after_takeover);
  counter(out, "pulltrace_alert_webhook_failures_total", "Failed webhook requests (each is retried)",
          (double)as.webhook.failed);
  gauge(out, "pulltrace_alert_webhook_queue", "Alerts waiting for webhook delivery", (double)as.webhook.queued);

  gauge(out, "pulltrace_leader",
        "1 when this replica delivers side effects (holds the Lease, or leader election is off), else 0",
        srv->leader ? 1 : 0);
  struct pt_lease_stats ls;
  pt_lease_stats(srv->lease, &ls);
  pt_prom_family(out, "pulltrace_leader_changes_total", "counter",
                 "Leadership changes of this replica, by change (acquired, lost = not renewed in time)");
  labeled(out, "pulltrace_leader_changes_total", "change", "acquired", (double)ls.acquired);
  labeled(out, "pulltrace_leader_changes_total", "change", "lost", (double)ls.lost);
  pt_prom_family(out, "pulltrace_lease_requests_failed_total", "counter",
                 "Lease requests that failed, by reason (conflict = another replica wrote first, error)");
  labeled(out, "pulltrace_lease_requests_failed_total", "reason", "conflict", (double)ls.conflicts);
  labeled(out, "pulltrace_lease_requests_failed_total", "reason", "error", (double)ls.errors);

  pt_prom_family(out, "pulltrace_kube_watch_restarts_total", "counter", "Kubernetes watch restarts, by resource");
  struct pt_kube_stats ks = {0};
  pt_kube_stats(srv->kube, &ks);
  for (int i = 0; i < PT_KUBE_RESOURCES; i++)
    labeled(out, "pulltrace_kube_watch_restarts_total", "resource", pt_kube_resource_name(i),
            (double)ks.watch_restarts[i]);
  gauge(out, "pulltrace_kube_pods", "Pods known from the Kubernetes API", (double)g.pods);
  gauge(out, "pulltrace_kube_synced", "1 once the Kubernetes pod and event caches are synced (0 also when off)",
        ks.synced ? 1 : 0);
  pt_prom_family(out, "pulltrace_kube_relists_total", "counter",
                 "Kubernetes relists after the first list (410 Gone, ERROR events, failed watches), by resource");
  for (int i = 0; i < PT_KUBE_RESOURCES; i++)
    labeled(out, "pulltrace_kube_relists_total", "resource", pt_kube_resource_name(i), (double)ks.relists[i]);
  pt_prom_family(out, "pulltrace_kube_request_errors_total", "counter",
                 "Failed Kubernetes list and watch requests, by resource");
  for (int i = 0; i < PT_KUBE_RESOURCES; i++)
    labeled(out, "pulltrace_kube_request_errors_total", "resource", pt_kube_resource_name(i), (double)ks.errors[i]);
  pt_prom_family(out, "pulltrace_kube_objects_cached", "gauge",
                 "Kubernetes objects the watcher keeps (pods; kubelet event ids for de-duplication), by resource");
  labeled(out, "pulltrace_kube_objects_cached", "resource", "pods", (double)ks.pods_cached);
  labeled(out, "pulltrace_kube_objects_cached", "resource", "events", (double)ks.events_cached);
  pt_prom_family(out, "pulltrace_kube_events_total", "counter",
                 "Image-related kubelet events, by outcome (new, historic = before the start, duplicate)");
  labeled(out, "pulltrace_kube_events_total", "outcome", "new", (double)ks.events_applied);
  labeled(out, "pulltrace_kube_events_total", "outcome", "historic", (double)ks.events_historic);
  labeled(out, "pulltrace_kube_events_total", "outcome", "duplicate", (double)ks.events_duplicate);

  history_metrics(srv, out);
  pull_events_metrics(srv, out);
  auth_metrics(srv, out);

  pt_prom_family(out, "pulltrace_kube_event_writes_total", "counter",
                 "Kubernetes Events written on pods, by result (created, patched = a repeat counted in its series, "
                 "failed, throttled = over a per-minute bound, skipped = not the leader or no Kubernetes)");
  struct pt_kube_events_stats kes;
  pt_kube_events_stats(srv->kube_events, &kes);
  for (int i = 0; i < PT_KEV_RESULTS; i++)
    labeled(out, "pulltrace_kube_event_writes_total", "result", pt_kube_event_result_names[i],
            (double)kes.results[i]);

  struct pt_http_server_stats st = {0};
  http_stats(srv, &st);
  gauge(out, "pulltrace_http_connections_open", "Open connections on the API and report ports",
        (double)st.connections_open);
  counter(out, "pulltrace_http_connections_rejected_total", "Connections refused over PULLTRACE_MAX_CONNECTIONS",
          (double)st.connections_rejected);
  counter(out, "pulltrace_http_requests_total", "Requests handled on the API and report ports", (double)st.requests);
  counter(out, "pulltrace_http_bad_requests_total",
          "Malformed or oversized requests answered with 4xx before routing", (double)st.bad_requests);
  counter(out, "pulltrace_http_timeouts_total", "Connections closed by the request or idle timeout",
          (double)st.timeouts);
  counter(out, "pulltrace_http_refused_early_total",
          "Requests refused from their head, before their body was read (e.g. a report without a valid token)",
          (double)st.refused_early);
  counter(out, "pulltrace_http_lingering_closes_total",
          "Closes that kept reading what the client still sent, so that it received the answer",
          (double)st.lingering_closes);
  counter(out, "pulltrace_http_linger_cutoffs_total",
          "Lingering closes cut off by their time or byte bound (a client that kept sending)",
          (double)st.linger_cutoffs);
  tls_metrics(srv, &st, out);
}
