/* The tracker's state machine fed with scripted poll sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/tracker.h"
#include "fake_content.h"

#define HEX64(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define M1 "sha256:" HEX64("a")
#define M2 "sha256:" HEX64("b")
#define IX "sha256:" HEX64("c")
#define CF "sha256:" HEX64("d")
#define L1 "sha256:" HEX64("1")
#define L2 "sha256:" HEX64("2")
#define L3 "sha256:" HEX64("3")
#define L4 "sha256:" HEX64("4")
#define LX "sha256:" HEX64("9")

#define LAYER(d, s) "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" d "\",\"size\":" #s "}"
#define MANIFEST(...) "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"digest\":\"" CF "\",\"size\":10},\"layers\":[" __VA_ARGS__ "]}"

struct ctx {
  struct fake_content f;
  struct pt_tracker t;
};

static int setup(void **state)
{
  struct ctx *c = calloc(1, sizeof(*c));
  struct pt_tracker_config cfg = {.stall_threshold = 5, .linger = 10, .forget_after = 100};
  pt_tracker_init(&c->t, &cfg);
  *state = c;
  return 0;
}

static int teardown(void **state)
{
  struct ctx *c = *state;
  pt_tracker_close(&c->t);
  fake_free(&c->f);
  free(c);
  return 0;
}

/* Adds manifest M1 = [L1 100 B, L2 200 B, L3 300 B] committed at t=100 and
 * labelled as containerd does right after committing it. */
static void add_m1(struct fake_content *f)
{
  struct fake_blob *m = fake_add_blob(f, M1, 100, MANIFEST(LAYER(L1, 100) "," LAYER(L2, 200) "," LAYER(L3, 300)));
  snprintf(m->source, sizeof(m->source), "127.0.0.1/demo/app");
  fake_label(m, "containerd.io/gc.ref.content.config", CF);
  fake_label(m, "containerd.io/gc.ref.content.l.0", L1);
  fake_label(m, "containerd.io/gc.ref.content.l.1", L2);
  fake_label(m, "containerd.io/gc.ref.content.l.2", L3);
}

static struct pt_tracked_layer *layer(struct pt_tracked_pull *p, const char *d)
{
  for (size_t i = 0; i < p->n_layers; i++)
    if (strcmp(p->layers[i].digest, d) == 0)
      return &p->layers[i];
  fail_msg("layer %s missing", d);
  return NULL;
}

static void test_lifecycle(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_add_blob(f, L1, 50, NULL); /* present before the pull: cached */
  fake_ingest(f, "layer", L2, 40, 200, 100.5, 101);

  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101.2), 0);
  struct pt_tracked_pull *p = pt_tracker_find(&c->t, M1);
  assert_non_null(p);
  assert_string_equal(p->id, "aaaaaaaaaaaaaaaa-100");
  assert_string_equal(p->image_ref, "127.0.0.1/demo/app");
  assert_string_equal(p->config_digest, CF);
  assert_int_equal(p->n_layers, 3);
  assert_int_equal(layer(p, L1)->state, PT_LAYER_CACHED);
  assert_int_equal(layer(p, L1)->downloaded, 100);
  assert_int_equal(layer(p, L2)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(p, L2)->downloaded, 40);
  assert_int_equal(layer(p, L3)->state, PT_LAYER_WAITING);
  assert_true(p->completed_at == 0);

  /* The totals are known from the first report that names the manifest. */
  json_t *pulls = pt_tracker_pulls_json(&c->t);
  json_t *jp = json_array_get(pulls, 0);
  assert_int_equal(json_integer_value(json_object_get(jp, "totalBytes")), 600);
  assert_int_equal(json_integer_value(json_object_get(jp, "downloadedBytes")), 140);
  assert_true(json_is_true(json_object_get(jp, "totalKnown")));
  assert_true(json_is_null(json_object_get(jp, "completedAt")));
  assert_true(json_is_null(json_object_get(jp, "indexDigest")));
  json_t *jl = json_array_get(json_object_get(jp, "layers"), 2);
  assert_string_equal(json_string_value(json_object_get(jl, "state")), "waiting");
  assert_true(json_is_null(json_object_get(jl, "startedAt")));
  json_decref(pulls);

  /* L2 commits between two polls, L3 starts. */
  fake_end_ingest(f, L2);
  fake_add_blob(f, L2, 102, NULL);
  fake_ingest(f, "layer", L3, 10, 300, 102, 102.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 102.6), 0);
  assert_int_equal(layer(p, L2)->state, PT_LAYER_DONE);
  assert_int_equal(layer(p, L2)->downloaded, 200);
  assert_int_equal(layer(p, L3)->state, PT_LAYER_DOWNLOADING);

  fake_end_ingest(f, L3);
  fake_add_blob(f, L3, 103.5, NULL);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 104), 0);
  assert_true(p->completed_at > 103.4 && p->completed_at < 103.6);
  pulls = pt_tracker_pulls_json(&c->t);
  jp = json_array_get(pulls, 0);
  assert_int_equal(json_integer_value(json_object_get(jp, "downloadedBytes")), 600);
  assert_true(json_is_string(json_object_get(jp, "completedAt")));
  json_decref(pulls);

  /* Stays for the linger time, then leaves the reports for good. */
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 110), 0);
  assert_non_null(pt_tracker_find(&c->t, M1));
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 114), 0);
  assert_null(pt_tracker_find(&c->t, M1));
  /* The image is removed and pulled again while its manifest blob survives:
   * a new pull with its own id, starting now; layers present now are cached. */
  fake_truncate(f, 1); /* only the manifest is left */
  fake_add_blob(f, L1, 50, NULL);
  fake_ingest(f, "layer", L2, 1, 200, 115, 115);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 115.5), 0);
  struct pt_tracked_pull *again = pt_tracker_find(&c->t, M1);
  assert_non_null(again);
  assert_string_equal(again->id, "aaaaaaaaaaaaaaaa-115");
  assert_true(again->started_at == 115.5);
  assert_true(again->completed_at == 0);
  assert_int_equal(layer(again, L1)->state, PT_LAYER_CACHED);
  assert_int_equal(layer(again, L2)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(again, L3)->state, PT_LAYER_WAITING);
}

static void test_repull_while_completed_pull_lingers(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_add_blob(f, L1, 101, NULL);
  fake_add_blob(f, L2, 101, NULL);
  fake_ingest(f, "layer", L3, 1, 300, 100, 101);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101.1), 0);
  fake_end_ingest(f, L3);
  fake_add_blob(f, L3, 102, NULL);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 102.1), 0);
  struct pt_tracked_pull *first = pt_tracker_find(&c->t, M1);
  assert_true(first->completed_at > 0);
  /* Removed (layers garbage-collected, manifest kept) and pulled again within
   * the linger time: the completed pull stays completed, a new one starts. */
  fake_truncate(f, 1);
  fake_ingest(f, "layer", L1, 5, 100, 103, 103.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 103.6), 0);
  assert_int_equal(c->t.n_pulls, 2);
  struct pt_tracked_pull *second = pt_tracker_find(&c->t, M1);
  assert_ptr_not_equal(second, first);
  assert_string_not_equal(second->id, first->id);
  assert_true(first->completed_at > 0);
  assert_int_equal(layer(second, L1)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(second, L2)->state, PT_LAYER_WAITING);
}

static void test_monotonic_and_order(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  int64_t last = -1;
  for (int i = 0; i < 10; i++) {
    fake_ingest(f, "layer", L1, i * 10, 100, 100, 100 + i);
    fake_ingest(f, "layer", L2, i * 20, 200, 100, 100 + i);
    fake_ingest(f, "layer", L3, i * 30, 300, 100, 100 + i);
    assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.5 + i), 0);
    json_t *pulls = pt_tracker_pulls_json(&c->t);
    assert_int_equal(json_array_size(pulls), 1);
    int64_t d = json_integer_value(json_object_get(json_array_get(pulls, 0), "downloadedBytes"));
    assert_true(d >= last);
    last = d;
    json_decref(pulls);
  }
  assert_int_equal(last, 9 * 60);
}

static void test_stalled_then_resumed(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_ingest(f, "layer", L1, 50, 100, 100, 101);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101.5), 0);
  struct pt_tracked_pull *p = pt_tracker_find(&c->t, M1);
  assert_int_equal(layer(p, L1)->state, PT_LAYER_DOWNLOADING);
  /* updated_at frozen at 101: stalled once the threshold (5 s) has passed. */
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 105.9), 0);
  assert_int_equal(layer(p, L1)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 106.5), 0);
  assert_int_equal(layer(p, L1)->state, PT_LAYER_STALLED);
  assert_int_equal(layer(p, L1)->downloaded, 50);
  json_t *pulls = pt_tracker_pulls_json(&c->t);
  json_t *jl = json_array_get(json_object_get(json_array_get(pulls, 0), "layers"), 0);
  assert_string_equal(json_string_value(json_object_get(jl, "state")), "stalled");
  json_decref(pulls);
  /* A re-pull resumes the same ingest. */
  fake_ingest(f, "layer", L1, 60, 100, 100, 120);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 120.2), 0);
  assert_int_equal(layer(p, L1)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(p, L1)->downloaded, 60);
}

static void test_shared_layer_and_newest_manifest(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  /* M2 also names L3 and is newer: a new ingest of L3 belongs to M2. */
  struct fake_blob *m2 = fake_add_blob(f, M2, 200, MANIFEST(LAYER(L3, 300) "," LAYER(L4, 400)));
  fake_label(m2, "containerd.io/gc.ref.content.l.0", L3);
  fake_label(m2, "containerd.io/gc.ref.content.l.1", L4);
  fake_ingest(f, "layer", L3, 5, 300, 200, 200.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 200.6), 0);
  assert_null(pt_tracker_find(&c->t, M1));
  struct pt_tracked_pull *p2 = pt_tracker_find(&c->t, M2);
  assert_non_null(p2);
  assert_int_equal(layer(p2, L3)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(p2, L4)->state, PT_LAYER_WAITING);
  /* No imageRef label: reported as null, never made up. */
  json_t *pulls = pt_tracker_pulls_json(&c->t);
  assert_true(json_is_null(json_object_get(json_array_get(pulls, 0), "imageRef")));
  json_decref(pulls);
}

static void test_two_pulls_share_an_ingest(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_ingest(f, "layer", L1, 10, 100, 100, 100.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.6), 0);
  /* A second image with L3 (shared, one ingest) and L4 starts. */
  struct fake_blob *m2 = fake_add_blob(f, M2, 101, MANIFEST(LAYER(L3, 300) "," LAYER(L4, 400)));
  fake_label(m2, "containerd.io/gc.ref.content.l.0", L3);
  fake_label(m2, "containerd.io/gc.ref.content.l.1", L4);
  fake_ingest(f, "layer", L3, 30, 300, 101, 101.5);
  fake_ingest(f, "layer", L4, 40, 400, 101, 101.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101.6), 0);
  struct pt_tracked_pull *p1 = pt_tracker_find(&c->t, M1), *p2 = pt_tracker_find(&c->t, M2);
  assert_non_null(p1);
  assert_non_null(p2);
  assert_int_equal(layer(p1, L3)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(p2, L3)->state, PT_LAYER_DOWNLOADING);
  assert_int_equal(layer(p1, L3)->downloaded, 30);
  assert_int_equal(layer(p2, L3)->downloaded, 30);
  json_t *un = pt_tracker_unattributed_json(&c->t);
  assert_int_equal(json_array_size(un), 0);
  json_decref(un);
}

static void test_unattributed_with_backoff(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  fake_ingest(f, "layer", LX, 7, 1000, 100, 100);
  fake_ingest(f, "manifest", M2, 3, 900, 100, 100);
  int finds_before = f->calls_find;
  for (int i = 0; i < 20; i++)
    assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100 + i * 0.5), 0);
  /* 10 s of ticks every 0.5 s: retried at 0, 1, 3, 7 s - not 20 times. */
  int finds = f->calls_find - finds_before;
  assert_true(finds >= 3 && finds <= 5);
  assert_int_equal(c->t.n_pulls, 0);
  json_t *un = pt_tracker_unattributed_json(&c->t);
  assert_int_equal(json_array_size(un), 2);
  int seen_layer = 0;
  for (size_t i = 0; i < 2; i++) {
    json_t *u = json_array_get(un, i);
    if (strcmp(json_string_value(json_object_get(u, "kind")), "layer") == 0) {
      seen_layer = 1;
      assert_string_equal(json_string_value(json_object_get(u, "digest")), LX);
      assert_int_equal(json_integer_value(json_object_get(u, "downloadedBytes")), 7);
      assert_int_equal(json_integer_value(json_object_get(u, "totalBytes")), 1000);
    }
  }
  assert_true(seen_layer);
  json_decref(un);
}

static void test_manifest_never_arrives(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  /* A manifest labelled with the layer but whose content cannot be read. */
  struct fake_blob *m = fake_add_blob(f, M1, 100, NULL);
  fake_label(m, "containerd.io/gc.ref.content.l.0", L1);
  fake_ingest(f, "layer", L1, 1, 100, 100, 100);
  for (int i = 0; i < 5; i++)
    assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100 + i), 0);
  assert_int_equal(c->t.n_pulls, 0);
  json_t *un = pt_tracker_unattributed_json(&c->t);
  assert_int_equal(json_array_size(un), 1);
  json_decref(un);
  /* Once it can be read, the pull appears. */
  m->data = strdup(MANIFEST(LAYER(L1, 100)));
  for (int i = 5; i < 30 && c->t.n_pulls == 0; i++)
    assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100 + i), 0);
  assert_int_equal(c->t.n_pulls, 1);
}

static void test_index_and_config(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  struct fake_blob *ix = fake_add_blob(f, IX, 99, "{}");
  snprintf(ix->source, sizeof(ix->source), "127.0.0.1/demo/multi");
  fake_label(ix, "containerd.io/gc.ref.content.m.0", M2);
  fake_label(ix, "containerd.io/gc.ref.content.m.1", M1);
  fake_ingest(f, "layer", L1, 1, 100, 100, 100);
  fake_ingest(f, "config", CF, 1, 10, 100, 100);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.1), 0);
  struct pt_tracked_pull *p = pt_tracker_find(&c->t, M1);
  assert_non_null(p);
  assert_string_equal(p->index_digest, IX);
  json_t *un = pt_tracker_unattributed_json(&c->t);
  assert_int_equal(json_array_size(un), 0); /* the config ingest belongs to the pull */
  json_decref(un);
}

static void test_containerd_down(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_ingest(f, "layer", L1, 1, 100, 100, 100);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.1), 0);
  f->down = 1;
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101), -EIO);
  /* State kept as it was while containerd is away. */
  assert_non_null(pt_tracker_find(&c->t, M1));
  f->down = 0;
  fake_ingest(f, "layer", L1, 50, 100, 100, 102);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 102.1), 0);
  assert_int_equal(layer(pt_tracker_find(&c->t, M1), L1)->downloaded, 50);
}

static void test_garbage_collected_pull_is_kept_until_superseded(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_ingest(f, "layer", L1, 50, 100, 100, 100.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.6), 0);
  assert_non_null(pt_tracker_find(&c->t, M1));
  /* The last blobs were committed and the image removed between two polls:
   * the ingest is gone, so are the blobs and the manifest. */
  fake_end_ingest(f, L1);
  fake_truncate(f, 0);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101.6), 0);
  struct pt_tracked_pull *old = pt_tracker_find(&c->t, M1);
  assert_non_null(old); /* still reported: an operator sees where it stopped */
  assert_true(old->dead);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 106), 0);
  assert_int_equal(layer(old, L1)->state, PT_LAYER_STALLED);
  assert_int_equal(layer(old, L1)->downloaded, 50);
  /* Pulled again: a new manifest blob, a new pull that supersedes the old one. */
  add_m1(f);
  f->blobs[0].created_at = 110;
  fake_ingest(f, "layer", L1, 5, 100, 110, 110.5);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 110.6), 0);
  assert_int_equal(c->t.n_pulls, 1);
  struct pt_tracked_pull *p = pt_tracker_find(&c->t, M1);
  assert_non_null(p);
  assert_false(p->dead);
  assert_string_equal(p->id, "aaaaaaaaaaaaaaaa-110");
  assert_int_equal(layer(p, L1)->downloaded, 5);
}

static void test_forget_inactive(void **state)
{
  struct ctx *c = *state;
  struct fake_content *f = &c->f;
  add_m1(f);
  fake_ingest(f, "layer", L1, 1, 100, 100, 100);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 100.1), 0);
  fake_end_ingest(f, L1); /* aborted: no blob, no ingest */
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 101), 0);
  assert_int_equal(layer(pt_tracker_find(&c->t, M1), L1)->state, PT_LAYER_DOWNLOADING);
  /* Nothing moves for longer than the threshold: stalled, with the bytes last seen. */
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 150), 0);
  assert_int_equal(layer(pt_tracker_find(&c->t, M1), L1)->state, PT_LAYER_STALLED);
  assert_int_equal(layer(pt_tracker_find(&c->t, M1), L1)->downloaded, 1);
  /* Layers that never started stay waiting. */
  assert_int_equal(layer(pt_tracker_find(&c->t, M1), L2)->state, PT_LAYER_WAITING);
  assert_int_equal(pt_tracker_tick(&c->t, &fake_ops, f, 201), 0);
  assert_null(pt_tracker_find(&c->t, M1));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_repull_while_completed_pull_lingers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_monotonic_and_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stalled_then_resumed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_layer_and_newest_manifest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_pulls_share_an_ingest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unattributed_with_backoff, setup, teardown),
      cmocka_unit_test_setup_teardown(test_manifest_never_arrives, setup, teardown),
      cmocka_unit_test_setup_teardown(test_index_and_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_containerd_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_collected_pull_is_kept_until_superseded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forget_inactive, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
