/* State transitions of the store, driven by reports and a test clock, with
 * the real default policy (the built-in scripts) as in the server. Events are
 * the store's change records written by the server's serializer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/clock.h"
#include "core/json_writer.h"
#include "server/event.h"
#include "kube/parse.h"
#include "server/store.h"

#define T0 1800000000.0

struct rec {
  char types[256][32];
  json_t *data[256];
  size_t n;
};

/* The state of layer i in an event's pull, or NULL when the event has no
 * layers. */
static const char *event_layer_state(const json_t *ev, size_t i)
{
  const json_t *layers = json_object_get(json_object_get(ev, "pull"), "layers");
  return layers ? json_string_value(json_object_get(json_array_get(layers, i), "state")) : NULL;
}

/* Member k of the event's layerChanges entry for layer `index`, or NULL when
 * the event has no entry for it. */
static const json_t *event_layer_change(const json_t *ev, size_t index, const char *k)
{
  size_t i;
  const json_t *e;
  json_array_foreach(json_object_get(ev, "layerChanges"), i, e)
    if (json_integer_value(json_object_get(e, "index")) == (json_int_t)index)
      return json_object_get(e, k);
  return NULL;
}

static void on_change(void *ud, const struct pt_change *c)
{
  struct rec *r = ud;
  if (r->n < 256) {
    snprintf(r->types[r->n], sizeof(r->types[0]), "%s", pt_change_type_name(c->type));
    r->data[r->n] = pt_event_json(c);
    r->n++;
  }
}

/* The default policy with the test's TTL and grace, shared by the tests
 * (group setup). */
static struct pt_policy *policy;

static int policy_setup(void **state)
{
  struct pt_policy_options po = {0};
  po.settings[0] = (struct pt_policy_setting){"historyTTL", "600s"};
  po.settings[1] = (struct pt_policy_setting){"nodeLostGrace", "60s"};
  po.n_settings = 2;
  char err[1024];
  policy = pt_policy_create(&po, err, sizeof(err));
  return policy ? 0 : -1;
}

static int policy_teardown(void **state)
{
  pt_policy_destroy(policy);
  return 0;
}

/* A kubelet event as the watcher hands it over: kubelet's message read once
 * into kind, image and durations (pt_kube_event_slim's part). */
static int kube_event(struct pt_store *s, const json_t *ev, double now)
{
  json_t *slim = json_deep_copy(ev);
  assert_int_equal(pt_kube_event_classify(slim), 0);
  int rc = pt_store_kube_event(s, slim, now);
  json_decref(slim);
  return rc;
}

static void rec_clear(struct rec *r)
{
  for (size_t i = 0; i < r->n; i++)
    json_decref(r->data[i]);
  r->n = 0;
}

static size_t count(const struct rec *r, const char *type)
{
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += strcmp(r->types[i], type) == 0;
  return n;
}

static const json_t *last_of(const struct rec *r, const char *type)
{
  for (size_t i = r->n; i-- > 0;)
    if (strcmp(r->types[i], type) == 0)
      return r->data[i];
  return NULL;
}

struct layer_spec {
  char digest_char;
  int64_t total, downloaded;
  const char *state;
};

static char *ts(double t)
{
  static char bufs[8][40];
  static int i;
  i = (i + 1) % 8;
  return pt_time_format(t, bufs[i], sizeof(bufs[i]));
}

/* A report with one pull ("p1") of the given layers, or none when nl < 0,
 * and the containerd status ctrd (JSON text; NULL: absent). */
static enum pt_apply_result report_full(struct pt_store *s, const char *node, const char *boot, int64_t seq,
                                        double now, int nl, const struct layer_spec *ls, bool completed,
                                        const char *image, const char *ctrd)
{
  json_t *pulls = json_array();
  if (nl >= 0) {
    json_t *layers = json_array();
    int64_t total = 0, dl = 0;
    for (int i = 0; i < nl; i++) {
      char dg[80];
      snprintf(dg, sizeof(dg), "sha256:%c%c%c%c", ls[i].digest_char, ls[i].digest_char, ls[i].digest_char,
               ls[i].digest_char);
      json_array_append_new(layers, json_pack("{s:s,s:s,s:I,s:I,s:s,s:n,s:n}", "digest", dg, "mediaType",
                                              "application/vnd.oci.image.layer.v1.tar+gzip", "totalBytes",
                                              (json_int_t)ls[i].total, "downloadedBytes",
                                              (json_int_t)ls[i].downloaded, "state", ls[i].state, "startedAt",
                                              "updatedAt"));
      total += ls[i].total;
      dl += ls[i].downloaded;
    }
    json_t *p = json_pack("{s:s,s:s,s:s,s:n,s:s,s:o,s:b,s:I,s:I,s:o}", "id", "p1", "imageRef",
                          image ? image : "127.0.0.1/demo/app", "manifestDigest", "sha256:cccc", "indexDigest",
                          "startedAt", ts(T0), "completedAt", completed ? json_string(ts(now)) : json_null(),
                          "totalKnown", 1, "totalBytes", (json_int_t)total, "downloadedBytes", (json_int_t)dl,
                          "layers", layers);
    json_array_append_new(pulls, p);
  }
  json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:[]}", "schemaVersion", "v1", "nodeName", node,
                           "agentVersion", "0.1.0", "bootId", boot, "seq", (json_int_t)seq, "timestamp", ts(now),
                           "pulls", pulls, "unattributed");
  if (ctrd)
    json_object_set_new(root, "containerd", json_loads(ctrd, 0, NULL));
  char *body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  struct pt_report r;
  char err[256], field[160];
  int rc = pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field));
  if (rc)
    fail_msg("bad test report: %s at %s", err, field);
  free(body);
  enum pt_apply_result res = pt_store_apply_report(s, &r, now);
  pt_report_free(&r);
  return res;
}

static enum pt_apply_result report(struct pt_store *s, const char *node, const char *boot, int64_t seq, double now,
                                   int nl, const struct layer_spec *ls, bool completed, const char *image)
{
  return report_full(s, node, boot, seq, now, nl, ls, completed, image, NULL);
}

static struct pt_store *mk(struct rec *r, double min_interval)
{
  struct pt_store_options o = {.on_change = on_change, .ud = r, .policy = policy, .node_lost_grace = 60,
                               .report_min_interval = min_interval};
  return pt_store_create(&o);
}

static void test_lifecycle(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[2] = {{'a', 100, 100, "cached"}, {'b', 200, 0, "waiting"}};
  assert_int_equal(report(s, "n1", "b1", 1, T0 + 1, 2, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(count(&r, "pull.started"), 1);
  assert_int_equal(count(&r, "node.updated"), 1);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_non_null(p);
  assert_int_equal(p->state, PT_PULL_PULLING);
  assert_int_equal(p->downloaded, 100);

  /* One event per pull per report: a layer that moved rides in the pull's
   * event (layerChanges), alone: the pull's other layers stay out. */
  l[1] = (struct layer_spec){'b', 200, 80, "downloading"};
  size_t before = r.n;
  assert_int_equal(report(s, "n1", "b1", 2, T0 + 2, 2, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(r.n - before, 1);
  assert_int_equal(count(&r, "pull.progress"), 1);
  const json_t *ev = last_of(&r, "pull.progress");
  assert_null(event_layer_state(ev, 1));
  assert_int_equal(json_array_size(json_object_get(ev, "layerChanges")), 1);
  assert_string_equal(json_string_value(event_layer_change(ev, 1, "state")), "downloading");
  assert_int_equal(json_integer_value(event_layer_change(ev, 1, "downloadedBytes")), 80);
  assert_int_equal(json_integer_value(event_layer_change(ev, 1, "totalBytes")), 200);
  assert_true(json_real_value(event_layer_change(ev, 1, "percent")) == 40.0);
  assert_null(event_layer_change(ev, 1, "digest"));
  assert_true(p->bytes_per_sec > 0);

  l[1] = (struct layer_spec){'b', 200, 150, "downloading"};
  before = r.n;
  report(s, "n1", "b1", 3, T0 + 3, 2, l, false, NULL);
  assert_int_equal(r.n - before, 1);
  assert_int_equal(count(&r, "pull.progress"), 2);
  assert_int_equal(json_integer_value(event_layer_change(last_of(&r, "pull.progress"), 1, "downloadedBytes")), 150);

  /* No layer moved (only the rate, as time passed): the event leaves the
   * layers out. */
  before = r.n;
  report(s, "n1", "b1", 4, T0 + 3.2, 2, l, false, NULL);
  assert_int_equal(r.n - before, 1);
  assert_null(event_layer_state(last_of(&r, "pull.progress"), 1));
  assert_null(json_object_get(last_of(&r, "pull.progress"), "layerChanges"));

  l[1] = (struct layer_spec){'b', 200, 200, "done"};
  report(s, "n1", "b1", 5, T0 + 4, 2, l, true, NULL);
  assert_int_equal(count(&r, "pull.completed"), 1);
  assert_string_equal(event_layer_state(last_of(&r, "pull.completed"), 1), "done");
  assert_int_equal(p->state, PT_PULL_COMPLETED);
  const struct pt_store_counters *c = pt_store_counters(s);
  assert_int_equal(c->pulls_completed, 1);
  assert_int_equal(c->bytes, 200); /* the cached layer is not counted */
  assert_int_equal(c->duration_count, 1);
  assert_int_equal(c->duration_counts[1], 1); /* 4 s: the 5 s bucket */

  /* Leaving the report after completion: still completed, no failure. */
  size_t failed_before = count(&r, "pull.failed");
  report(s, "n1", "b1", 6, T0 + 5, -1, NULL, false, NULL);
  assert_int_equal(p->state, PT_PULL_COMPLETED);
  assert_int_equal(count(&r, "pull.failed"), failed_before);

  /* JSON view */
  json_t *j = pt_store_pull_json(p, true, T0 + 5);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "completed");
  assert_int_equal(json_integer_value(json_object_get(j, "layersDone")), 2);
  assert_true(json_real_value(json_object_get(j, "percent")) == 100.0);
  assert_true(json_number_value(json_object_get(j, "etaSeconds")) == 0);
  json_decref(j);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* A report that changes the list of a pull's layers (another length, order
 * or digest) sends them all, in the pull: indexes of before would be wrong. */
static void test_layer_list_changes(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[3] = {{'a', 100, 10, "downloading"}, {'b', 100, 0, "waiting"}, {'c', 50, 0, "waiting"}};
  report(s, "n1", "b1", 1, T0 + 1, 2, l, false, NULL);
  l[0].downloaded = 20;
  report(s, "n1", "b1", 2, T0 + 2, 3, l, false, NULL);
  const json_t *ev = last_of(&r, "pull.progress");
  assert_non_null(ev);
  assert_null(json_object_get(ev, "layerChanges"));
  assert_int_equal(json_array_size(json_object_get(json_object_get(ev, "pull"), "layers")), 3);
  /* The same list again, one layer moved: that one alone. */
  l[2] = (struct layer_spec){'c', 50, 5, "downloading"};
  report(s, "n1", "b1", 3, T0 + 3, 3, l, false, NULL);
  ev = last_of(&r, "pull.progress");
  assert_null(json_object_get(json_object_get(ev, "pull"), "layers"));
  assert_int_equal(json_array_size(json_object_get(ev, "layerChanges")), 1);
  assert_int_equal(json_integer_value(event_layer_change(ev, 2, "downloadedBytes")), 5);
  rec_clear(&r);
  pt_store_destroy(s);
  (void)state;
}

static void test_stale_and_restart(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  assert_int_equal(report(s, "n1", "b1", 5, T0 + 1, 1, l, false, NULL), PT_APPLY_APPLIED);
  l[0].downloaded = 50;
  assert_int_equal(report(s, "n1", "b1", 4, T0 + 2, 1, l, false, NULL), PT_APPLY_STALE);
  assert_int_equal(report(s, "n1", "b1", 5, T0 + 2, 1, l, false, NULL), PT_APPLY_STALE);
  assert_int_equal(pt_store_pull(s, "n1/p1")->downloaded, 10);
  /* A new bootId starts again at seq 1. */
  assert_int_equal(report(s, "n1", "b2", 1, T0 + 3, 1, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(pt_store_pull(s, "n1/p1")->downloaded, 50);
  const struct pt_node *n = pt_store_node(s, "n1");
  assert_int_equal(n->restarts, 1);
  assert_string_equal(n->boot_id, "b2");
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_lost_and_back(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 1, 1, l, false, NULL);
  report(s, "n1", "b1", 2, T0 + 2, -1, NULL, false, NULL);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_int_equal(p->state, PT_PULL_LOST);
  assert_string_equal(p->error_reason, "lost");
  assert_int_equal(count(&r, "pull.failed"), 1);
  assert_int_equal(pt_store_counters(s)->pulls_lost, 1);
  l[0].downloaded = 20;
  report(s, "n1", "b1", 3, T0 + 3, 1, l, false, NULL);
  assert_int_equal(p->state, PT_PULL_PULLING);
  assert_null(p->error_reason);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_stalled(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[2] = {{'a', 100, 10, "downloading"}, {'b', 100, 0, "waiting"}};
  report(s, "n1", "b1", 1, T0 + 1, 2, l, false, NULL);
  l[0].state = "stalled";
  report(s, "n1", "b1", 2, T0 + 2, 2, l, false, NULL);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_int_equal(p->state, PT_PULL_STALLED);
  assert_int_equal(count(&r, "pull.stalled"), 1);
  assert_int_equal(pt_store_counters(s)->stalls, 1);
  report(s, "n1", "b1", 3, T0 + 3, 2, l, false, NULL);
  assert_int_equal(count(&r, "pull.stalled"), 1);
  l[0].state = "downloading";
  l[0].downloaded = 30;
  report(s, "n1", "b1", 4, T0 + 4, 2, l, false, NULL);
  assert_int_equal(p->state, PT_PULL_PULLING);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* A node's clock: no offset while it agrees within the tolerance; a jump is
 * taken, and later measurements near the estimate do not move it. */
static void test_clock_offset(void **state)
{
  (void)state;
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  assert_true(pt_store_clock_offset(s, "n1", 3600.2) == 3600.2); /* unknown node: measured */
  assert_int_equal(report(s, "n1", "b1", 1, T0 + 1, 1, l, false, NULL), PT_APPLY_APPLIED);
  assert_true(pt_store_clock_offset(s, "n1", 0.4) == 0);
  assert_true(pt_store_clock_offset(s, "n1", -PT_STORE_CLOCK_TOLERANCE) == 0);
  assert_true(pt_store_clock_offset(s, "n1", 3600.2) == 3600.2);
  assert_true(pt_store_clock_offset(s, "n1", 3601.9) == 3600.2);
  assert_true(pt_store_clock_offset(s, "n1", 3598.5) == 3600.2);
  assert_true(pt_store_clock_offset(s, "n1", 1.0) == 0); /* fixed by NTP: back to none */
  assert_true(pt_store_clock_offset(s, "n1", -7200) == -7200);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_throttle(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 1.0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  for (int i = 1; i <= 10; i++)
    assert_int_equal(report(s, "n1", "b1", i, T0 + 1, 1, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(report(s, "n1", "b1", 11, T0 + 1, 1, l, false, NULL), PT_APPLY_THROTTLED);
  assert_true(pt_store_retry_after(s, "n1", T0 + 1) > 0);
  /* Another node has its own budget. */
  assert_int_equal(report(s, "n2", "b1", 1, T0 + 1, 1, l, false, NULL), PT_APPLY_APPLIED);
  /* Tokens come back with time. */
  assert_int_equal(report(s, "n1", "b1", 11, T0 + 2.5, 1, l, false, NULL), PT_APPLY_APPLIED);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_node_lost_and_eviction(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0, 1, l, false, NULL);
  pt_store_tick(s, T0 + 10);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_LAGGING);
  pt_store_tick(s, T0 + 61);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_LOST);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_int_equal(p->state, PT_PULL_LOST);
  assert_string_equal(p->error_reason, "node-lost");
  struct pt_store_gauges g;
  pt_store_gauges(s, &g);
  assert_int_equal(g.nodes_lost, 1);
  assert_int_equal(g.pulls_lost, 1);
  pt_store_tick(s, T0 + 61 + 601);
  assert_null(pt_store_pull(s, "n1/p1"));
  assert_int_equal(count(&r, "pull.evicted"), 1);
  /* The node reports again before a tick forgot it: ok. */
  report(s, "n1", "b1", 2, T0 + 700, -1, NULL, false, NULL);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_OK);
  assert_int_equal(count(&r, "node.removed"), 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* A lost node is forgotten once its last pull is evicted, and not before;
 * the node limit counts only the nodes in the tables. */
static size_t node_updates(const struct rec *r, const char *node)
{
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += strcmp(r->types[i], "node.updated") == 0 &&
         strcmp(json_string_value(json_object_get(json_object_get(r->data[i], "node"), "name")), node) == 0;
  return n;
}

static size_t gauge_unreachable(const struct pt_store *s)
{
  struct pt_store_gauges g;
  pt_store_gauges(s, &g);
  return g.nodes_containerd_unreachable;
}

/* The containerd member of the node, as /api/v1/nodes shows it. */
static json_t *node_containerd(struct pt_store *s, const char *node)
{
  json_t *nodes = pt_store_nodes_json(s, NULL);
  json_t *c = NULL;
  for (size_t i = 0; i < json_array_size(nodes); i++) {
    json_t *n = json_array_get(nodes, i);
    if (strcmp(json_string_value(json_object_get(n, "name")), node) == 0)
      c = json_incref(json_object_get(n, "containerd"));
  }
  json_decref(nodes);
  assert_non_null(c);
  return c;
}

/* An agent that cannot reach containerd says so in its reports: the node
 * shows it (node.updated once per change, not per report), the gauge counts
 * it, its pull stays as last reported (not stalled, not lost), and all of it
 * clears when containerd answers again or the node is forgotten. */
static void test_containerd_unreachable(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  char err[256];
  assert_int_equal(report(s, "n1", "b1", 1, T0, 1, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(report(s, "n2", "b2", 1, T0, -1, NULL, false, NULL), PT_APPLY_APPLIED);
  json_t *c = node_containerd(s, "n1");
  assert_true(json_is_true(json_object_get(c, "reachable")));
  assert_true(json_is_null(json_object_get(c, "since")));
  assert_true(json_is_null(json_object_get(c, "error")));
  json_decref(c);
  assert_int_equal(gauge_unreachable(s), 0);

  char down[256];
  snprintf(down, sizeof(down), "{\"reachable\":false,\"since\":\"%s\",\"error\":\"gRPC code 14: refused\"}",
           ts(T0 + 1));
  size_t updates = node_updates(&r, "n1");
  for (int i = 0; i < 5; i++)
    assert_int_equal(report_full(s, "n1", "b1", 2 + i, T0 + 2 + i, 1, l, false, NULL, down), PT_APPLY_APPLIED);
  assert_int_equal(node_updates(&r, "n1"), updates + 1);
  const json_t *ev = json_object_get(json_object_get(last_of(&r, "node.updated"), "node"), "containerd");
  assert_true(json_is_false(json_object_get(ev, "reachable")));
  c = node_containerd(s, "n1");
  assert_true(json_is_false(json_object_get(c, "reachable")));
  assert_string_equal(json_string_value(json_object_get(c, "since")), ts(T0 + 1));
  assert_string_equal(json_string_value(json_object_get(c, "error")), "gRPC code 14: refused");
  json_decref(c);
  c = node_containerd(s, "n2");
  assert_true(json_is_true(json_object_get(c, "reachable")));
  json_decref(c);
  assert_int_equal(gauge_unreachable(s), 1);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_OK);
  pt_store_tick(s, T0 + 7);
  assert_int_equal(pt_store_pull(s, "n1/p1")->state, PT_PULL_PULLING);
  assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);

  /* Back: reachable:true and an absent member (an older agent) both clear it. */
  assert_int_equal(report_full(s, "n1", "b1", 7, T0 + 8, 1, l, false, NULL, "{\"reachable\":true}"),
                   PT_APPLY_APPLIED);
  assert_int_equal(node_updates(&r, "n1"), updates + 2);
  c = node_containerd(s, "n1");
  assert_true(json_is_true(json_object_get(c, "reachable")));
  assert_true(json_is_null(json_object_get(c, "since")));
  assert_true(json_is_null(json_object_get(c, "error")));
  json_decref(c);
  assert_int_equal(gauge_unreachable(s), 0);
  assert_int_equal(report_full(s, "n2", "b2", 2, T0 + 8, -1, NULL, false, NULL, down), PT_APPLY_APPLIED);
  assert_int_equal(gauge_unreachable(s), 1);
  assert_int_equal(report(s, "n2", "b2", 3, T0 + 9, -1, NULL, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(gauge_unreachable(s), 0);

  /* A node forgotten while unreachable leaves the gauge. */
  assert_int_equal(report_full(s, "n2", "b2", 4, T0 + 10, -1, NULL, false, NULL, down), PT_APPLY_APPLIED);
  assert_int_equal(gauge_unreachable(s), 1);
  pt_store_tick(s, T0 + 10 + 61);
  pt_store_tick(s, T0 + 10 + 62);
  assert_null(pt_store_node(s, "n2"));
  assert_int_equal(gauge_unreachable(s), 0);
  assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_lost_node_forgotten(void **state)
{
  struct rec r = {0};
  struct pt_store_options o = {.on_change = on_change, .ud = &r, .policy = policy, .node_lost_grace = 60,
                               .max_nodes = 2};
  struct pt_store *s = pt_store_create(&o);
  assert_int_equal(pt_store_max_nodes(s), 2);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  assert_int_equal(report(s, "n1", "b1", 1, T0, 1, l, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(report(s, "n2", "b2", 1, T0, -1, NULL, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(report(s, "n3", "b3", 1, T0, -1, NULL, false, NULL), PT_APPLY_FULL);
  /* Both go lost; n2 has no pull and is forgotten on the next tick, n1
   * keeps its lost pull (and its place) until the pull is evicted. */
  pt_store_tick(s, T0 + 61);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_LOST);
  assert_int_equal(pt_store_node(s, "n2")->state, PT_NODE_LOST);
  pt_store_tick(s, T0 + 62);
  assert_null(pt_store_node(s, "n2"));
  assert_non_null(pt_store_node(s, "n1"));
  assert_int_equal(count(&r, "node.removed"), 1);
  assert_string_equal(json_string_value(json_object_get(last_of(&r, "node.removed"), "node")), "n2");
  assert_int_equal(pt_store_counters(s)->nodes_forgotten, 1);
  struct pt_store_gauges g;
  pt_store_gauges(s, &g);
  assert_int_equal(g.nodes_lost, 1);
  json_t *nodes = pt_store_nodes_json(s, NULL);
  assert_int_equal(json_array_size(nodes), 1);
  json_decref(nodes);
  /* Its place is free again. */
  assert_int_equal(report(s, "n3", "b3", 1, T0 + 62, -1, NULL, false, NULL), PT_APPLY_APPLIED);
  /* n1's pull is evicted historyTTL after it was marked lost; the tick
   * after that forgets n1. */
  pt_store_tick(s, T0 + 61 + 600);
  assert_null(pt_store_pull(s, "n1/p1"));
  assert_non_null(pt_store_node(s, "n1"));
  pt_store_tick(s, T0 + 61 + 601);
  assert_null(pt_store_node(s, "n1"));
  assert_int_equal(pt_store_counters(s)->nodes_forgotten, 3); /* n1, and n3 lost meanwhile */
  char err[256];
  assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);
  /* A forgotten node that reports again is new. */
  assert_int_equal(report(s, "n1", "b1", 2, T0 + 700, -1, NULL, false, NULL), PT_APPLY_APPLIED);
  assert_int_equal(pt_store_node(s, "n1")->state, PT_NODE_OK);
  assert_int_equal(pt_store_node(s, "n1")->restarts, 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* One page of the pulls list as a JSON array; *at moves past it, *more says
 * whether pulls follow. */
static json_t *pulls_page(struct pt_store *s, const struct pt_pull_filter *f, struct pt_pull_cursor *at,
                          size_t limit, double now, bool *more)
{
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  int n = pt_store_pulls_write(s, &w, f, at, limit, now, more);
  json_t *a = json_loadb(b.data, b.len, 0, NULL);
  pt_buf_close(&b);
  assert_non_null(a);
  assert_int_equal(n, (int)json_array_size(a));
  return a;
}

/* "pn03/p1" -> 3 */
static int page_node_no(json_t *a, size_t i)
{
  return atoi(json_string_value(json_object_get(json_array_get(a, i), "node")) + 2);
}

/* Lists come in pages: newest first, a position that stays valid while the
 * tables change (removed pulls skipped, pulls added later not in the later
 * pages), filters applied before paging, nodes by name. */
static void test_paging(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  struct layer_spec done[1] = {{'a', 100, 100, "done"}};
  char name[16];
  for (int i = 0; i < 25; i++) {
    snprintf(name, sizeof(name), "pn%02d", i);
    report(s, name, "b", 1, T0, 1, l, false, NULL);
  }
  struct pt_pull_cursor at = {0};
  bool more = true;
  json_t *all = pulls_page(s, NULL, &at, 0, T0, &more);
  assert_int_equal(json_array_size(all), 25);
  assert_false(more);
  for (size_t i = 0; i < 25; i++)
    assert_int_equal(page_node_no(all, i), 24 - (int)i); /* newest first */
  json_decref(all);

  memset(&at, 0, sizeof(at));
  json_t *p1 = pulls_page(s, NULL, &at, 10, T0, &more);
  assert_int_equal(json_array_size(p1), 10);
  assert_int_equal(page_node_no(p1, 0), 24);
  assert_int_equal(page_node_no(p1, 9), 15);
  assert_true(more);
  json_decref(p1);

  /* Between the pages: pn10 and pn03 complete and are evicted, a new node
   * starts a pull. */
  report(s, "pn10", "b", 2, T0 + 1, 1, done, true, NULL);
  report(s, "pn03", "b", 2, T0 + 1, 1, done, true, NULL);
  report(s, "pn99", "b", 1, T0 + 1, 1, l, false, NULL);
  pt_store_tick(s, T0 + 1 + 601);
  assert_null(pt_store_pull(s, "pn10/p1"));
  assert_null(pt_store_pull(s, "pn03/p1"));
  json_t *p2 = pulls_page(s, NULL, &at, 10, T0 + 602, &more);
  static const int want2[] = {14, 13, 12, 11, 9, 8, 7, 6, 5, 4};
  assert_int_equal(json_array_size(p2), 10);
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(page_node_no(p2, i), want2[i]);
  assert_true(more);
  json_decref(p2);
  /* The pull at the position leaves the tables before the next page: the
   * page starts with the next older one all the same. */
  struct pt_pull_cursor gone = at;
  json_t *p3 = pulls_page(s, NULL, &at, 10, T0 + 602, &more);
  assert_int_equal(json_array_size(p3), 3);
  assert_int_equal(page_node_no(p3, 2), 0);
  assert_false(more); /* the last page */
  json_decref(p3);
  snprintf(gone.id, sizeof(gone.id), "no/such-pull");
  json_t *p3b = pulls_page(s, NULL, &gone, 10, T0 + 602, &more);
  assert_int_equal(json_array_size(p3b), 3);
  assert_int_equal(page_node_no(p3b, 0), 2);
  json_decref(p3b);

  /* A filter applies before paging: pages of the lost pulls only. */
  struct pt_pull_filter f = {.state_mask = 1u << PT_PULL_LOST};
  size_t seen = 0;
  memset(&at, 0, sizeof(at));
  do {
    json_t *pg = pulls_page(s, &f, &at, 4, T0 + 602, &more);
    for (size_t i = 0; i < json_array_size(pg); i++)
      assert_string_equal(json_string_value(json_object_get(json_array_get(pg, i), "state")), "lost");
    seen += json_array_size(pg);
    assert_true(json_array_size(pg) <= 4);
    json_decref(pg);
  } while (more);
  assert_int_equal(seen, 24); /* every pull left, lost with its silent node */

  /* A bounded look: a selective filter over a large table is walked a few
   * pulls at a time, and the walks together give the whole answer. */
  struct pt_pull_filter one = {.node = "pn05"};
  memset(&at, 0, sizeof(at));
  size_t found = 0, walks = 0;
  struct pt_buf b;
  struct pt_jsonw w;
  do {
    pt_buf_init(&b);
    pt_jsonw_init(&w, &b);
    found += (size_t)pt_store_pulls_items(s, &w, &one, &at, 10, 3, T0 + 602, &more);
    pt_buf_close(&b);
    walks++;
  } while (more);
  assert_int_equal(found, 1);
  assert_true(walks >= 8);

  /* Nodes: by name, in pages. */
  char *after = NULL, *nn = NULL;
  size_t nodes = 0;
  char prev[16] = "";
  do {
    pt_buf_init(&b);
    pt_jsonw_init(&w, &b);
    assert_true(pt_store_nodes_write(s, &w, NULL, after, 7, &nn) <= 7);
    json_t *a = json_loadb(b.data, b.len, 0, NULL);
    for (size_t i = 0; i < json_array_size(a); i++, nodes++) {
      const char *n = json_string_value(json_object_get(json_array_get(a, i), "name"));
      assert_true(strcmp(prev, n) < 0);
      snprintf(prev, sizeof(prev), "%s", n);
    }
    json_decref(a);
    pt_buf_close(&b);
    free(after);
    after = nn;
  } while (after);
  assert_int_equal(nodes, 26);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* The tick in slices does what one tick does, a bounded number of pulls at a
 * time. */
static void test_tick_slices(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec done[1] = {{'a', 100, 100, "done"}};
  char name[16];
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof(name), "sn%02d", i);
    report(s, name, "b", 1, T0, 1, done, true, NULL);
  }
  size_t evicted = count(&r, "pull.evicted"), slices = 0;
  while (pt_store_tick_slice(s, T0 + 700, 3))
    slices++;
  assert_true(slices >= 5); /* 40 pulls, about 3 a slice */
  assert_int_equal(count(&r, "pull.evicted") - evicted, 40);
  assert_int_equal(pt_store_node(s, "sn00")->state, PT_NODE_LOST); /* the nodes, too */
  assert_false(pt_store_tick_slice(s, T0 + 701, 3)); /* nothing left */
  char err[256];
  assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* The summaries of a rollout (pulls of an image across nodes) since the
 * records recorded from `from`: their image -> rollout object. */
static const json_t *summary_of(struct rec *r, size_t from, const char *image)
{
  for (size_t i = r->n; i-- > from;) {
    const json_t *ro = json_object_get(r->data[i], "rollout");
    if (strcmp(r->types[i], "rollout.summary") == 0 && strcmp(json_string_value(json_object_get(ro, "image")), image) == 0)
      return ro;
  }
  return NULL;
}

static int64_t member_int(const json_t *o, const char *k)
{
  return json_integer_value(json_object_get(o, k));
}

/* A rollout: one summary per image that changed, per publish; the newest
 * pull of each node counts, by its state. */
static void test_rollout_summaries(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec moving[1] = {{'a', 100, 40, "downloading"}};
  struct layer_spec none[1] = {{'a', 100, 0, "waiting"}};
  struct layer_spec done[1] = {{'a', 100, 100, "done"}};
  report(s, "r1", "b", 1, T0, 1, moving, false, "reg/app:v2");
  report(s, "r2", "b", 1, T0, 1, none, false, "reg/app:v2");
  report(s, "r3", "b", 1, T0, 1, done, true, "reg/app:v2");
  report(s, "r4", "b", 1, T0, 1, moving, false, "reg/db:v1");
  size_t from = r.n;
  pt_store_rollouts_publish(s, T0 + 1);
  assert_int_equal(count(&r, "rollout.summary"), 2);
  const json_t *app = summary_of(&r, from, "reg/app:v2");
  assert_non_null(app);
  assert_int_equal(member_int(app, "nodes"), 3);
  assert_int_equal(member_int(app, "done"), 1);
  assert_int_equal(member_int(app, "pulling"), 1);
  assert_int_equal(member_int(app, "waiting"), 1);
  assert_int_equal(member_int(app, "failed"), 0);
  assert_int_equal(member_int(app, "totalBytes"), 300);
  assert_int_equal(member_int(app, "downloadedBytes"), 140);

  /* Nothing changed: nothing published. */
  pt_store_rollouts_publish(s, T0 + 2);
  assert_int_equal(count(&r, "rollout.summary"), 2);

  /* r2 starts, r1's pull leaves its report (lost): one summary, of app. */
  report(s, "r2", "b", 2, T0 + 2, 1, moving, false, "reg/app:v2");
  report(s, "r1", "b", 2, T0 + 2, -1, NULL, false, NULL);
  from = r.n;
  pt_store_rollouts_publish(s, T0 + 3);
  assert_int_equal(count(&r, "rollout.summary"), 3);
  app = summary_of(&r, from, "reg/app:v2");
  assert_int_equal(member_int(app, "pulling"), 1);
  assert_int_equal(member_int(app, "waiting"), 0);
  assert_int_equal(member_int(app, "failed"), 1);

  /* The rollouts in flight, as the snapshot has them. */
  struct pt_buf b;
  struct pt_jsonw w;
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  assert_int_equal(pt_store_rollouts_write(s, &w, NULL), 2);
  pt_buf_reset(&b);
  pt_jsonw_init(&w, &b);
  assert_int_equal(pt_store_rollouts_write(s, &w, "db"), 1);
  pt_buf_close(&b);

  /* Every pull of db leaves the tables: so does its rollout. */
  report(s, "r4", "b", 2, T0 + 3, 1, done, true, "reg/db:v1");
  pt_store_tick(s, T0 + 3 + 700);
  assert_null(pt_store_pull(s, "r4/p1"));
  pt_store_rollouts_publish(s, T0 + 704);
  pt_buf_init(&b);
  pt_jsonw_init(&w, &b);
  assert_int_equal(pt_store_rollouts_write(s, &w, "db"), 0);
  pt_buf_close(&b);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* Summaries in slices: a slice sums at least one rollout and stops past
 * max_pulls members; an image that changes again while its pass is under
 * way waits for the next pass (one summary per image a pass). */
static void test_rollout_summaries_in_slices(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec moving[1] = {{'a', 100, 40, "downloading"}};
  struct layer_spec further[1] = {{'a', 100, 60, "downloading"}};
  report(s, "r1", "b", 1, T0, 1, moving, false, "reg/app:v2");
  report(s, "r2", "b", 1, T0, 1, moving, false, "reg/app:v2");
  report(s, "r3", "b", 1, T0, 1, moving, false, "reg/db:v1");
  size_t before = count(&r, "rollout.summary");
  assert_true(pt_store_rollouts_publish_slice(s, T0 + 1, 1));
  assert_int_equal(count(&r, "rollout.summary"), before + 1);
  /* Both images change again: only the one not summed yet goes out now. */
  report(s, "r1", "b", 2, T0 + 1, 1, further, false, "reg/app:v2");
  report(s, "r3", "b", 2, T0 + 1, 1, further, false, "reg/db:v1");
  assert_false(pt_store_rollouts_publish_slice(s, T0 + 1, 1));
  assert_int_equal(count(&r, "rollout.summary"), before + 2);
  assert_non_null(summary_of(&r, 0, "reg/app:v2"));
  assert_non_null(summary_of(&r, 0, "reg/db:v1"));
  /* The next pass sums the one that changed after its summary. */
  assert_false(pt_store_rollouts_publish_slice(s, T0 + 2, SIZE_MAX));
  assert_int_equal(count(&r, "rollout.summary"), before + 3);
  pt_store_rollouts_publish(s, T0 + 3);
  assert_int_equal(count(&r, "rollout.summary"), before + 3);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* Pulls are indexed per node: a report or a kubelet event only touches its
 * own node's pulls, also after evictions. */
static void test_pulls_are_per_node(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0, 1, l, false, NULL);
  report(s, "n2", "b2", 1, T0, 1, l, false, NULL);
  assert_int_equal(pt_store_node(s, "n1")->pulls_active, 1);
  assert_int_equal(pt_store_node(s, "n2")->pulls_active, 1);
  /* n2's pull leaves its report: only n2/p1 is lost. */
  report(s, "n2", "b2", 2, T0 + 1, -1, NULL, false, NULL);
  assert_int_equal(pt_store_pull(s, "n2/p1")->state, PT_PULL_LOST);
  assert_int_equal(pt_store_pull(s, "n1/p1")->state, PT_PULL_PULLING);
  assert_int_equal(pt_store_node(s, "n1")->pulls_active, 1);
  assert_int_equal(pt_store_node(s, "n2")->pulls_active, 0);
  /* n2's lost pull is evicted after the TTL while n1 keeps reporting. */
  for (int i = 2; i <= 12; i++) {
    l[0].downloaded = 10 + i;
    report(s, "n1", "b1", i, T0 + 1 + i * 60, 1, l, false, NULL);
    report(s, "n2", "b2", i + 1, T0 + 1 + i * 60, -1, NULL, false, NULL);
    pt_store_tick(s, T0 + 1 + i * 60);
  }
  assert_null(pt_store_pull(s, "n2/p1"));
  assert_int_equal(pt_store_pull(s, "n1/p1")->state, PT_PULL_PULLING);
  /* The same agent id on n2 again is a new pull; n1 is untouched. */
  report(s, "n2", "b2", 20, T0 + 800, 1, l, false, NULL);
  assert_int_equal(pt_store_pull(s, "n2/p1")->state, PT_PULL_PULLING);
  assert_int_equal(pt_store_node(s, "n2")->pulls_active, 1);
  assert_int_equal(pt_store_node(s, "n2")->pulls_total, 2);
  /* A kubelet failure on n1 fails n1's pull of that image, not n2's. */
  json_t *pod = json_pack("{s:s,s:s,s:s,s:s}", "namespace", "default", "name", "web", "uid", "u1", "node", "n1");
  assert_int_equal(pt_store_pod_upsert(s, pod), 0);
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "namespace", "default", "pod", "web", "reason", "Failed", "message",
                         "Failed to pull image \"127.0.0.1:5001/demo/app:v1\": unexpected EOF");
  assert_int_equal(kube_event(s, ev, T0 + 801), 0);
  json_decref(ev);
  json_decref(pod);
  assert_int_equal(pt_store_pull(s, "n1/p1")->state, PT_PULL_FAILED);
  assert_int_equal(pt_store_pull(s, "n2/p1")->state, PT_PULL_PULLING);
  assert_int_equal(pt_store_node(s, "n1")->pulls_active, 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_kubelet_failures(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  /* A failure for an image no agent saw: a kubelet-only pull. */
  json_t *pod = json_pack("{s:s,s:s,s:s,s:s}", "namespace", "default", "name", "web", "uid", "u1", "node", "n1");
  assert_int_equal(pt_store_pod_upsert(s, pod), 0);
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "namespace", "default", "pod", "web", "reason", "Failed", "message",
                         "Failed to pull image \"nginx:1.25\": rpc error: not found");
  assert_int_equal(kube_event(s, ev, T0 + 1), 0);
  assert_int_equal(count(&r, "pull.failed"), 1);
  const json_t *d = last_of(&r, "pull.failed");
  const json_t *pj = json_object_get(d, "pull");
  assert_string_equal(json_string_value(json_object_get(pj, "source")), "kubelet");
  assert_string_equal(json_string_value(json_object_get(pj, "state")), "failed");
  assert_string_equal(json_string_value(json_object_get(pj, "image")), "nginx:1.25");
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(pj, "pods"), 0), "namespace")),
                      "default");
  /* The same event again changes nothing. */
  assert_int_equal(kube_event(s, ev, T0 + 2), 0);
  assert_int_equal(count(&r, "pull.failed"), 1);
  json_decref(ev);

  /* A failure for an image an agent is pulling fails that pull. */
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 3, 1, l, false, "127.0.0.1:5001/demo/app");
  ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "namespace", "default", "pod", "web", "node", "n1", "reason", "Failed",
                 "message", "Failed to pull image \"127.0.0.1:5001/demo/app:v1\": connection reset");
  kube_event(s, ev, T0 + 4);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_int_equal(p->state, PT_PULL_FAILED);
  assert_string_equal(p->error_reason, "Failed");
  assert_non_null(strstr(p->error_message, "connection reset"));
  assert_int_equal(pt_store_counters(s)->pulls_failed, 2);
  /* The agent's next report without progress keeps it failed; progress revives it. */
  report(s, "n1", "b1", 2, T0 + 5, 1, l, false, "127.0.0.1:5001/demo/app");
  assert_int_equal(p->state, PT_PULL_FAILED);
  l[0].downloaded = 40;
  report(s, "n1", "b1", 3, T0 + 6, 1, l, false, "127.0.0.1:5001/demo/app");
  assert_int_equal(p->state, PT_PULL_PULLING);
  /* The failure is history now, not the pull's current error. */
  assert_null(p->error_reason);
  assert_non_null(p->resolved_reason);
  assert_string_equal(p->resolved_reason, "Failed");
  json_t *pj2 = pt_store_pull_json(p, false, T0 + 6);
  assert_true(json_is_null(json_object_get(pj2, "error")));
  assert_string_equal(json_string_value(json_object_get(json_object_get(pj2, "resolvedError"), "reason")), "Failed");
  json_decref(pj2);
  json_decref(ev);
  assert_int_equal(pt_store_pod_delete(s, "default", "web"), 0);
  assert_int_equal(pt_store_pod_delete(s, "default", "web"), -ENOENT);
  json_decref(pod);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_filters(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0, 1, l, false, "reg/one");
  report(s, "n2", "b1", 1, T0, 1, l, true, "reg/two");
  struct pt_pull_filter f = {.node = "n1"};
  json_t *a = pt_store_pulls_json(s, &f, T0);
  assert_int_equal(json_array_size(a), 1);
  json_decref(a);
  f = (struct pt_pull_filter){.state_mask = 1u << PT_PULL_COMPLETED};
  a = pt_store_pulls_json(s, &f, T0);
  assert_int_equal(json_array_size(a), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "node")), "n2");
  json_decref(a);
  f = (struct pt_pull_filter){.image = "one"};
  a = pt_store_pulls_json(s, &f, T0);
  assert_int_equal(json_array_size(a), 1);
  json_decref(a);
  f = (struct pt_pull_filter){.ns = "default"};
  a = pt_store_pulls_json(s, &f, T0);
  assert_int_equal(json_array_size(a), 0);
  json_decref(a);
  a = pt_store_nodes_json(s, NULL);
  assert_int_equal(json_array_size(a), 2);
  json_decref(a);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_policy_hooks(void **state)
{
  /* The real policy with the built-in scripts: rate from the Lua hook. */
  struct pt_policy_options po = {0};
  char err[1024];
  struct pt_policy *pol = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(pol);
  struct rec r = {0};
  struct pt_store_options o = {.on_change = on_change, .ud = &r, .policy = pol};
  struct pt_store *s = pt_store_create(&o);
  struct layer_spec l[1] = {{'a', 1000, 0, "downloading"}};
  for (int i = 1; i <= 5; i++) {
    l[0].downloaded = i * 100;
    report(s, "n1", "b1", i, T0 + i, 1, l, false, NULL);
  }
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_true(p->bytes_per_sec > 10 && p->bytes_per_sec < 1000);
  assert_true(p->eta > 0);
  struct pt_policy_counters pc;
  pt_policy_counters(pol, &pc);
  assert_true(pc.calls[PT_POLICY_HOOK_RATE] >= 5);
  pt_store_tick(s, T0 + 6);
  pt_store_destroy(s);
  rec_clear(&r);
  pt_policy_destroy(pol);
}

/* The store's view of the history for pull.slow: a figure the test sets,
 * and what the store asked. rec comes first: on_change gets the same ud. */
struct slow_rec {
  struct rec r;
  double p50;
  size_t pulls, asks;
  char image[128];
};

static bool typical(void *ud, const char *image, double *p50, size_t *pulls)
{
  struct slow_rec *x = ud;
  x->asks++;
  snprintf(x->image, sizeof(x->image), "%s", image);
  *p50 = x->p50;
  *pulls = x->pulls;
  return x->pulls > 0;
}

static size_t slow_alerts(const struct rec *r)
{
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += strcmp(r->types[i], "alert") == 0 &&
         strcmp(json_string_value(json_object_get(json_object_get(r->data[i], "alert"), "name")), "PullSlow") == 0;
  return n;
}

/* pull.slow with the default settings (factor 3, 5 pulls, 30 s): raised once,
 * by a pull in flight past the floor and past 3 times its image's median, and
 * only when that median is of enough pulls. */
static void test_slow_pull(void **state)
{
  struct pt_policy_options po = {0};
  char err[1024];
  struct pt_policy *pol = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(pol);
  struct slow_rec x = {.p50 = 5, .pulls = 4};
  struct pt_store_options o = {.on_change = on_change, .typical = typical, .ud = &x, .policy = pol};
  struct pt_store *s = pt_store_create(&o);
  struct layer_spec l[1] = {{'a', 1000, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 1, 1, l, false, NULL);
  /* Below the floor the history is not even asked. */
  pt_store_tick(s, T0 + 29);
  assert_int_equal(x.asks, 0);
  /* Past the floor and 3 times the median, but of 4 pulls only. */
  pt_store_tick(s, T0 + 31);
  assert_int_equal(x.asks, 1);
  assert_string_equal(x.image, "127.0.0.1/demo/app");
  assert_int_equal(slow_alerts(&x.r), 0);
  /* 5 pulls with a median of 20 s: slow after 60 s, not at 59. */
  x.pulls = 5;
  x.p50 = 20;
  pt_store_tick(s, T0 + 59);
  assert_int_equal(slow_alerts(&x.r), 0);
  pt_store_tick(s, T0 + 61);
  assert_int_equal(slow_alerts(&x.r), 1);
  const json_t *a = json_object_get(last_of(&x.r, "alert"), "alert");
  assert_string_equal(json_string_value(json_object_get(a, "summary")),
                      "pull of 127.0.0.1/demo/app on node n1 has run 1m1s; pulls of this image usually take 20s "
                      "(p50 of 5 pulls)");
  /* Once per pull. */
  size_t asks = x.asks;
  pt_store_tick(s, T0 + 90);
  assert_int_equal(slow_alerts(&x.r), 1);
  assert_int_equal(x.asks, asks);
  /* A finished pull is never slow. */
  rec_clear(&x.r);
  l[0].downloaded = 1000;
  l[0].state = "done";
  report(s, "n2", "b1", 1, T0 + 100, 1, l, true, NULL);
  pt_store_tick(s, T0 + 200);
  assert_int_equal(slow_alerts(&x.r), 0);
  rec_clear(&x.r);
  pt_store_destroy(s);
  pt_policy_destroy(pol);
}

/* A kubelet event about pod `pod` on n1, at kubelet time `at`. */
static void kev(struct pt_store *s, const char *pod, const char *reason, const char *message, double at, double now)
{
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:i}", "namespace", "default", "pod", pod, "node", "n1",
                         "reason", reason, "message", message, "firstTimestamp", at, "lastTimestamp", at, "count", 1);
  assert_int_equal(kube_event(s, ev, now), 0);
  json_decref(ev);
}

static size_t gauge_failed(const struct pt_store *s)
{
  struct pt_store_gauges g;
  pt_store_gauges(s, &g);
  return g.pulls_failed;
}

static size_t gauge_completed(const struct pt_store *s)
{
  struct pt_store_gauges g;
  pt_store_gauges(s, &g);
  return g.pulls_completed;
}

static const json_t *member(const json_t *o, const char *a, const char *b)
{
  return json_object_get(json_object_get(o, a), b);
}

#define REF_V1 "127.0.0.1:5001/demo/app:v1"
#define REF_V2 "127.0.0.1:5001/demo/app:v2"

static void test_already_present_is_not_a_pull(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 1, 1, l, false, "127.0.0.1/demo/app");
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  json_t *before = pt_store_pull_json(p, true, T0 + 2);
  struct pt_store_gauges g0, g1;
  pt_store_gauges(s, &g0);
  size_t nev = r.n;
  /* For the image being pulled, for another image, and for a pod's image no
   * pull has: none of them creates or changes a pull. */
  kev(s, "web", "Pulled", "Container image \"" REF_V1 "\" already present on machine", T0 + 2, T0 + 2);
  kev(s, "web", "Pulled", "Container image \"docker.io/library/busybox:1\" already present on machine", T0 + 2,
      T0 + 2);
  pt_store_tick(s, T0 + 2);
  assert_int_equal(r.n, nev);
  pt_store_gauges(s, &g1);
  assert_memory_equal(&g0, &g1, sizeof(g0));
  assert_int_equal(g1.kube_events, 0); /* not even recorded */
  json_t *after = pt_store_pull_json(p, true, T0 + 2);
  assert_true(json_equal(before, after));
  assert_true(json_is_null(json_object_get(after, "kubelet")));
  json_decref(before);
  json_decref(after);
  /* Even after a failure: "already present" does not resolve it. */
  kev(s, "other", "Failed", "Failed to pull image \"reg.example/x/y:1\": not found", T0 + 3, T0 + 3);
  assert_int_equal(gauge_failed(s), 1);
  nev = r.n;
  kev(s, "other", "Pulled", "Container image \"reg.example/x/y:1\" already present on machine", T0 + 4, T0 + 4);
  assert_int_equal(gauge_failed(s), 1);
  assert_int_equal(r.n, nev);
  rec_clear(&r);
  pt_store_destroy(s);
}

static void test_successfully_pulled_stores_kubelets_duration(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 1, 1, l, false, "127.0.0.1/demo/app");
  l[0] = (struct layer_spec){'a', 100, 100, "done"};
  report(s, "n1", "b1", 2, T0 + 3, 1, l, true, "127.0.0.1/demo/app");
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_int_equal(p->state, PT_PULL_COMPLETED);
  size_t progress = count(&r, "pull.progress");
  /* A Pulled event for another tag-less repository, and one from long after
   * this pull completed: neither is this pull's. */
  kev(s, "web", "Pulled", "Successfully pulled image \"127.0.0.1:5001/demo/other:v1\" in 1s", T0 + 4, T0 + 4);
  kev(s, "web", "Pulled", "Successfully pulled image \"" REF_V1 "\" in 2s (2s including waiting)", T0 + 900,
      T0 + 900);
  assert_true(p->kubelet_pulled_at <= 0);
  assert_int_equal(count(&r, "pull.progress"), progress);
  kev(s, "web", "Pulled",
      "Successfully pulled image \"" REF_V1 "\" in 1.234s (1.5s including waiting). Image size: 100 bytes.",
      T0 + 4, T0 + 4);
  assert_true(p->kubelet_pulled_at == T0 + 4);
  assert_int_equal(count(&r, "pull.progress"), progress + 1);
  const json_t *pj = json_object_get(last_of(&r, "pull.progress"), "pull");
  assert_true(json_real_value(member(pj, "kubelet", "durationSeconds")) == 1.234);
  assert_true(json_real_value(member(pj, "kubelet", "waitingSeconds")) == 1.5);
  assert_string_equal(json_string_value(member(pj, "kubelet", "pulledAt")), ts(T0 + 4));
  assert_string_equal(json_string_value(json_object_get(pj, "state")), "completed");
  /* Without durations in the message: null, not made up. */
  report(s, "n2", "b1", 1, T0 + 1, 1, l, false, "127.0.0.1/demo/app");
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "namespace", "default", "pod", "w2", "node", "n2", "reason",
                         "Pulled", "message", "Successfully pulled image \"" REF_V1 "\"");
  assert_int_equal(kube_event(s, ev, T0 + 2), 0);
  json_decref(ev);
  json_t *j2 = pt_store_pull_json(pt_store_pull(s, "n2/p1"), false, T0 + 2);
  assert_true(json_is_object(json_object_get(j2, "kubelet")));
  assert_true(json_is_null(member(j2, "kubelet", "durationSeconds")));
  assert_true(json_is_null(member(j2, "kubelet", "waitingSeconds")));
  json_decref(j2);
  rec_clear(&r);
  pt_store_destroy(s);
}

static char *kubelet_pull_id(const struct rec *r)
{
  const json_t *d = last_of(r, "pull.failed");
  assert_non_null(d);
  return strdup(json_string_value(member(d, "pull", "id")));
}

static void test_kubelet_failure_superseded_by_agent_pull(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  /* kubelet fails before the agent sees a byte, backs off, then retries. */
  kev(s, "web", "Failed", "Failed to pull image \"" REF_V1 "\": connection refused", T0 + 1, T0 + 1);
  char *kid = kubelet_pull_id(&r);
  kev(s, "web", "BackOff", "Back-off pulling image \"" REF_V1 "\"", T0 + 2, T0 + 2);
  assert_int_equal(gauge_failed(s), 1);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 10, 1, l, false, "127.0.0.1/demo/app");
  /* A retry in flight does not resolve the failure yet. */
  assert_non_null(pt_store_pull(s, kid));
  assert_int_equal(gauge_failed(s), 1);
  assert_int_equal(count(&r, "pull.evicted"), 0);
  /* An unrelated tag of the repository completing on another node: no. */
  report(s, "n2", "b1", 1, T0 + 10, 1, l, true, "127.0.0.1/demo/app");
  assert_non_null(pt_store_pull(s, kid));
  l[0] = (struct layer_spec){'a', 100, 100, "done"};
  report(s, "n1", "b1", 2, T0 + 12, 1, l, true, "127.0.0.1/demo/app");
  assert_null(pt_store_pull(s, kid));
  assert_int_equal(gauge_failed(s), 0);
  assert_int_equal(gauge_completed(s), 2);
  assert_int_equal(pt_store_node(s, "n1")->pulls_active, 0);
  const json_t *ev = last_of(&r, "pull.evicted");
  assert_string_equal(json_string_value(json_object_get(ev, "pullId")), kid);
  assert_string_equal(json_string_value(json_object_get(ev, "reason")), "superseded");
  assert_string_equal(json_string_value(json_object_get(ev, "supersededBy")), "n1/p1");
  /* The failure stays visible on the pull that made it, as history. */
  const json_t *pj = json_object_get(last_of(&r, "pull.completed"), "pull");
  assert_string_equal(json_string_value(json_object_get(pj, "id")), "n1/p1");
  assert_true(json_is_null(json_object_get(pj, "error")));
  assert_string_equal(json_string_value(member(pj, "resolvedError", "reason")), "BackOff");
  assert_string_equal(json_string_value(member(pj, "resolvedError", "message")),
                      "Failed to pull image \"" REF_V1 "\": connection refused");
  assert_string_equal(json_string_value(member(pj, "resolvedError", "failedAt")), ts(T0 + 2));
  assert_string_equal(json_string_value(member(pj, "resolvedError", "resolvedAt")), ts(T0 + 12));
  /* kubelet's pods moved over (no pods known here to correlate). */
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(pj, "pods"), 0), "name")),
                      "web");
  /* The counters keep the failure: it happened. */
  const struct pt_store_counters *c = pt_store_counters(s);
  assert_int_equal(c->pulls_failed, 1);
  assert_int_equal(c->failed_by_reason[0], 1);
  /* kubelet's confirmation then lands on the agent pull. */
  kev(s, "web", "Pulled", "Successfully pulled image \"" REF_V1 "\" in 3.5s (9s including waiting)", T0 + 12,
      T0 + 13);
  const struct pt_pull *a = pt_store_pull(s, "n1/p1");
  assert_true(a->kubelet_duration == 3.5 && a->kubelet_waiting == 9);
  free(kid);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* A rollout to a tag that does not exist, beside a pull of another tag of the
 * same repository on the node: kubelet's failure is a failed pull of its own
 * and leaves the other tag's pull alone. */
static void test_failure_of_another_tag_spares_the_pull_in_flight(void **state)
{
  struct pt_policy_options po = {0};
  char err[1024];
  struct pt_policy *pol = pt_policy_create(&po, err, sizeof(err));
  assert_non_null(pol);
  struct rec r = {0};
  struct pt_store_options o = {.on_change = on_change, .ud = &r, .policy = pol, .node_lost_grace = 60};
  struct pt_store *s = pt_store_create(&o);
  const char *pods[][2] = {{"web-1", REF_V1}, {"web-2", REF_V2}};
  for (int i = 0; i < 2; i++) {
    json_t *pod = json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s}]}", "namespace", "default", "name", pods[i][0], "uid",
                            pods[i][0], "node", "n1", "containers", "name", "web", "image", pods[i][1]);
    assert_int_equal(pt_store_pod_upsert(s, pod), 0);
    json_decref(pod);
  }
  kev(s, "web-1", "Pulling", "Pulling image \"" REF_V1 "\"", T0, T0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  report(s, "n1", "b1", 1, T0 + 1, 1, l, false, "127.0.0.1/demo/app");
  pt_store_tick(s, T0 + 1);
  const struct pt_pull *p = pt_store_pull(s, "n1/p1");
  assert_non_null(p);
  assert_string_equal(p->image, REF_V1);

  kev(s, "web-2", "Pulling", "Pulling image \"" REF_V2 "\"", T0 + 2, T0 + 2);
  kev(s, "web-2", "Failed", "Failed to pull image \"" REF_V2 "\": rpc error: code = NotFound desc = not found",
      T0 + 2, T0 + 2);
  char *kid = kubelet_pull_id(&r);
  kev(s, "web-2", "BackOff", "Back-off pulling image \"" REF_V2 "\"", T0 + 3, T0 + 3);
  assert_int_equal(p->state, PT_PULL_PULLING);
  assert_null(p->error_reason);
  const struct pt_pull *k = pt_store_pull(s, kid);
  assert_non_null(k);
  assert_true(k->from_kubelet);
  assert_int_equal(k->state, PT_PULL_FAILED);
  assert_string_equal(k->image, REF_V2);
  assert_string_equal(k->error_reason, "BackOff");
  /* The generic back-off message does not hide the cause. */
  assert_string_equal(k->error_message,
                      "Failed to pull image \"" REF_V2 "\": rpc error: code = NotFound desc = not found");
  /* A repeated back-off changes nothing and emits nothing. */
  size_t failed_events = count(&r, "pull.failed");
  kev(s, "web-2", "BackOff", "Back-off pulling image \"" REF_V2 "\"", T0 + 4, T0 + 4);
  assert_int_equal(count(&r, "pull.failed"), failed_events);
  assert_int_equal(gauge_failed(s), 1);

  /* v1 completing resolves nothing of v2's failure. */
  l[0] = (struct layer_spec){'a', 100, 100, "done"};
  report(s, "n1", "b1", 2, T0 + 4, 1, l, true, "127.0.0.1/demo/app");
  assert_int_equal(p->state, PT_PULL_COMPLETED);
  assert_null(p->resolved_reason);
  assert_non_null(pt_store_pull(s, kid));
  assert_int_equal(gauge_failed(s), 1);

  /* A failure of a third tag is another kubelet-only pull, not v2's. */
  kev(s, "web-2", "Failed", "Failed to pull image \"127.0.0.1:5001/demo/app:v3\": not found", T0 + 5, T0 + 5);
  char *kid3 = kubelet_pull_id(&r);
  assert_string_not_equal(kid3, kid);
  assert_string_equal(pt_store_pull(s, kid)->image, REF_V2);
  assert_string_equal(pt_store_pull(s, kid3)->image, "127.0.0.1:5001/demo/app:v3");
  assert_int_equal(gauge_failed(s), 2);
  free(kid);
  free(kid3);
  pt_store_destroy(s);
  rec_clear(&r);
  pt_policy_destroy(pol);
}

static void test_kubelet_failure_resolved_by_successfully_pulled(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  kev(s, "web", "Failed", "Failed to pull image \"" REF_V1 "\": 503 Service Unavailable", T0 + 1, T0 + 1);
  char *kid = kubelet_pull_id(&r);
  /* Another tag pulled: not this failure. */
  kev(s, "web", "Pulled", "Successfully pulled image \"" REF_V2 "\" in 1s (1s including waiting)", T0 + 5, T0 + 5);
  assert_int_equal(pt_store_pull(s, kid)->state, PT_PULL_FAILED);
  assert_int_equal(count(&r, "pull.completed"), 0);
  /* No agent saw the retry: kubelet's word completes it. */
  kev(s, "web", "Pulled", "Successfully pulled image \"" REF_V1 "\" in 2.5s (4s including waiting)", T0 + 8, T0 + 9);
  const struct pt_pull *k = pt_store_pull(s, kid);
  assert_int_equal(k->state, PT_PULL_COMPLETED);
  assert_int_equal(gauge_failed(s), 0);
  assert_int_equal(gauge_completed(s), 1);
  assert_int_equal(pt_store_counters(s)->pulls_completed, 1);
  const json_t *pj = json_object_get(last_of(&r, "pull.completed"), "pull");
  assert_string_equal(json_string_value(json_object_get(pj, "id")), kid);
  assert_string_equal(json_string_value(json_object_get(pj, "source")), "kubelet");
  assert_true(json_is_null(json_object_get(pj, "error")));
  assert_string_equal(json_string_value(member(pj, "resolvedError", "reason")), "Failed");
  assert_string_equal(json_string_value(member(pj, "resolvedError", "message")),
                      "Failed to pull image \"" REF_V1 "\": 503 Service Unavailable");
  assert_true(json_real_value(member(pj, "kubelet", "durationSeconds")) == 2.5);
  assert_string_equal(json_string_value(json_object_get(pj, "completedAt")), ts(T0 + 8));
  struct pt_pull_filter f = {.state_mask = 1u << PT_PULL_FAILED};
  json_t *a = pt_store_pulls_json(s, &f, T0 + 9);
  assert_int_equal(json_array_size(a), 0);
  json_decref(a);
  /* The agent's report of that pull arrives late: one pull for the image. */
  struct layer_spec l[1] = {{'a', 100, 100, "done"}};
  report(s, "n1", "b1", 1, T0 + 10, 1, l, true, "127.0.0.1/demo/app");
  assert_null(pt_store_pull(s, kid));
  assert_int_equal(gauge_completed(s), 1);
  const struct pt_pull *ap = pt_store_pull(s, "n1/p1");
  assert_string_equal(ap->resolved_reason, "Failed");
  assert_true(ap->kubelet_duration == 2.5);
  /* The image failing again later is a new failure. */
  kev(s, "web", "Failed", "Failed to pull image \"" REF_V1 "\": 503 again", T0 + 100, T0 + 100);
  assert_int_equal(gauge_failed(s), 1);
  assert_int_equal(pt_store_pull(s, kid)->state, PT_PULL_FAILED);
  /* A historic Pulled event (from before the start) resolves nothing. */
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "namespace", "default", "pod", "web", "node", "n1", "reason",
                         "Pulled", "message", "Successfully pulled image \"" REF_V1 "\" in 1s", "historic", 1);
  assert_int_equal(kube_event(s, ev, T0 + 101), 0);
  json_decref(ev);
  assert_int_equal(pt_store_pull(s, kid)->state, PT_PULL_FAILED);
  /* A completed kubelet-only pull failing again is failed again, not completed. */
  kev(s, "web", "Pulled", "Successfully pulled image \"" REF_V1 "\" in 1s", T0 + 102, T0 + 102);
  assert_int_equal(pt_store_pull(s, kid)->state, PT_PULL_COMPLETED);
  kev(s, "web", "Failed", "Failed to pull image \"" REF_V1 "\": 503 once more", T0 + 200, T0 + 200);
  k = pt_store_pull(s, kid);
  assert_int_equal(k->state, PT_PULL_FAILED);
  assert_true(k->completed_at == 0);
  assert_true(k->kubelet_pulled_at <= 0); /* that was the previous success */
  assert_int_equal(pt_store_counters(s)->pulls_failed, 3);
  free(kid);
  rec_clear(&r);
  pt_store_destroy(s);
}

/* A Kubernetes change re-correlates the pulls of its node only (correlation
 * looks at the pull's node alone), not every pull without pods. */
static void test_kube_change_recorrelates_its_node_only(void **state)
{
  struct rec r = {0};
  struct pt_store *s = mk(&r, 0);
  struct layer_spec l[1] = {{'a', 100, 10, "downloading"}};
  const char *nodes[] = {"n1", "n2"};
  for (int i = 0; i < 2; i++) {
    /* A pod on each node whose image is not the pull's: the pulls keep no pods. */
    json_t *pod = json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s}]}", "namespace", "default", "name", nodes[i], "uid",
                            nodes[i], "node", nodes[i], "containers", "name", "c", "image", "reg.example/other:1");
    assert_int_equal(pt_store_pod_upsert(s, pod), 0);
    json_decref(pod);
    report(s, nodes[i], "b1", 1, T0 + 1, 1, l, false, "127.0.0.1/demo/app");
  }
  pt_store_tick(s, T0 + 1);
  struct pt_policy_counters before, after;
  pt_policy_counters(policy, &before);
  pt_store_tick(s, T0 + 2); /* nothing changed: no correlation */
  pt_policy_counters(policy, &after);
  assert_int_equal(after.calls[PT_POLICY_HOOK_CORRELATE], before.calls[PT_POLICY_HOOK_CORRELATE]);
  /* A pod of n2 changes: n2's pull is correlated again, n1's is not. */
  json_t *pod = json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s}]}", "namespace", "default", "name", "n2", "uid", "n2",
                          "node", "n2", "containers", "name", "c", "image", "reg.example/other:2");
  assert_int_equal(pt_store_pod_upsert(s, pod), 0);
  json_decref(pod);
  pt_store_tick(s, T0 + 3);
  pt_policy_counters(policy, &before);
  assert_int_equal(before.calls[PT_POLICY_HOOK_CORRELATE], after.calls[PT_POLICY_HOOK_CORRELATE] + 1);
  /* A kubelet event of n1: n1's pull only. */
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "namespace", "default", "pod", "n1", "node", "n1", "reason",
                         "Pulling", "message", "Pulling image \"reg.example/other:1\"");
  assert_int_equal(kube_event(s, ev, T0 + 4), 0);
  json_decref(ev);
  pt_store_tick(s, T0 + 4);
  pt_policy_counters(policy, &after);
  assert_int_equal(after.calls[PT_POLICY_HOOK_CORRELATE], before.calls[PT_POLICY_HOOK_CORRELATE] + 1);
  char err[256];
  assert_int_equal(pt_store_check(s, err, sizeof(err)), 0);
  rec_clear(&r);
  pt_store_destroy(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lifecycle),
    cmocka_unit_test(test_layer_list_changes),
    cmocka_unit_test(test_stale_and_restart),
    cmocka_unit_test(test_lost_and_back),
    cmocka_unit_test(test_stalled),
    cmocka_unit_test(test_throttle),
    cmocka_unit_test(test_clock_offset),
    cmocka_unit_test(test_node_lost_and_eviction),
    cmocka_unit_test(test_lost_node_forgotten),
    cmocka_unit_test(test_containerd_unreachable),
    cmocka_unit_test(test_pulls_are_per_node),
    cmocka_unit_test(test_paging),
    cmocka_unit_test(test_tick_slices),
    cmocka_unit_test(test_rollout_summaries),
    cmocka_unit_test(test_kubelet_failures),
    cmocka_unit_test(test_already_present_is_not_a_pull),
    cmocka_unit_test(test_successfully_pulled_stores_kubelets_duration),
    cmocka_unit_test(test_kubelet_failure_superseded_by_agent_pull),
    cmocka_unit_test(test_kubelet_failure_resolved_by_successfully_pulled),
    cmocka_unit_test(test_failure_of_another_tag_spares_the_pull_in_flight),
    cmocka_unit_test(test_filters),
    cmocka_unit_test(test_rollout_summaries_in_slices),
    cmocka_unit_test(test_policy_hooks),
    cmocka_unit_test(test_slow_pull),
    cmocka_unit_test(test_kube_change_recorrelates_its_node_only),
  };
  return cmocka_run_group_tests(tests, policy_setup, policy_teardown);
}
