/* The hub's routing: an event reaches the subscribers whose filter matches
 * its keys (node, namespaces, image) and its type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/hub.h"

static const struct pt_hub_keys pull_a = {.node = "node-a", .nss = "shop\0web\0", .image = "reg/app:v2"};
static const struct pt_hub_keys node_a = {.node = "node-a"};
static const struct pt_hub_keys summary = {.image = "reg/app:v2"};

static void test_keys(void **state)
{
  struct pt_hub_filter none = {0};
  assert_true(pt_hub_filter_match(&none, "pull.progress", &pull_a));
  struct pt_hub_filter node = {.node = "node-a"}, other = {.node = "node-b"};
  assert_true(pt_hub_filter_match(&node, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&other, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&other, "rollout.summary", &summary)); /* no node: for every node filter */
  struct pt_hub_filter ns = {.ns = "web"}, ns2 = {.ns = "batch"};
  assert_true(pt_hub_filter_match(&ns, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&ns2, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&ns2, "node.updated", &node_a)); /* not namespaced */
  struct pt_hub_filter img = {.image = "app:v2"}, img2 = {.image = "db"};
  assert_true(pt_hub_filter_match(&img, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&img, "rollout.summary", &summary));
  assert_false(pt_hub_filter_match(&img2, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&img2, "rollout.summary", &summary));
  assert_true(pt_hub_filter_match(&img2, "node.updated", &node_a)); /* no image */
}

static void test_types(void **state)
{
  struct pt_hub_filter summaries = {.types = "rollout.summary\0"};
  assert_true(pt_hub_filter_match(&summaries, "rollout.summary", &summary));
  assert_false(pt_hub_filter_match(&summaries, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&summaries, "node.updated", &node_a));
  struct pt_hub_filter pulls = {.types = "pull.*\0alert\0"};
  assert_true(pt_hub_filter_wants(&pulls, "pull.started"));
  assert_true(pt_hub_filter_wants(&pulls, "pull.evicted"));
  assert_true(pt_hub_filter_wants(&pulls, "alert"));
  assert_false(pt_hub_filter_wants(&pulls, "pullx"));
  assert_false(pt_hub_filter_wants(&pulls, "rollout.summary"));
  /* Types and keys together. */
  struct pt_hub_filter both = {.image = "db", .types = "pull.*\0"};
  assert_false(pt_hub_filter_match(&both, "pull.progress", &pull_a));
}

static void test_copy(void **state)
{
  struct pt_hub_filter src = {.node = "n", .ns = "", .image = "i", .types = "a\0b.*\0"}, dst;
  assert_int_equal(pt_hub_filter_copy(&dst, &src), 0);
  assert_string_equal(dst.node, "n");
  assert_null(dst.ns); /* "" filters nothing */
  assert_string_equal(dst.image, "i");
  assert_memory_equal(dst.types, "a\0b.*\0", 7);
  pt_hub_filter_clear(&dst);
  assert_null(dst.types);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_keys),
    cmocka_unit_test(test_types),
    cmocka_unit_test(test_copy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
