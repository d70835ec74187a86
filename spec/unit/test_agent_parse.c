/* Ref, digest and manifest/index parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/content.h"
#include "agent/manifest.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static void test_ref_kinds(void **state)
{
  static const struct {
    const char *ref;
    enum pt_ingest_kind kind;
  } ok[] = {
      {"layer-" D1, PT_KIND_LAYER},     {"config-" D1, PT_KIND_CONFIG},
      {"manifest-" D1, PT_KIND_MANIFEST}, {"index-" D1, PT_KIND_INDEX},
      {"attestation-" D1, PT_KIND_ATTESTATION}, {"unknown-" D1, PT_KIND_UNKNOWN},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    enum pt_ingest_kind k = 99;
    char d[PT_DIGEST_MAX];
    assert_int_equal(pt_ingest_ref_parse(ok[i].ref, &k, d, sizeof(d)), 0);
    assert_int_equal(k, ok[i].kind);
    assert_string_equal(d, D1);
  }
}

static void test_ref_invalid(void **state)
{
  const char *bad[] = {
      "",
      "layer-",
      "layer-sha256:abc",
      "layer-sha256:" "111111111111111111111111111111111111111111111111111111111111111G",
      "layer-sha256:" "11111111111111111111111111111111111111111111111111111111111111111",
      "layer-md5:1111",
      "blob-" D1,
      "layer-SHA256:1111111111111111111111111111111111111111111111111111111111111111",
      "layer-" D1 "x",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    enum pt_ingest_kind k = 99;
    char d[PT_DIGEST_MAX] = "junk";
    assert_int_equal(pt_ingest_ref_parse(bad[i], &k, d, sizeof(d)), -EINVAL);
    assert_int_equal(k, PT_KIND_UNKNOWN);
    assert_string_equal(d, "");
  }
  assert_string_equal(pt_ingest_kind_name(PT_KIND_LAYER), "layer");
  assert_string_equal(pt_ingest_kind_name(PT_KIND_UNKNOWN), "unknown");
}

static void test_sha512(void **state)
{
  char ref[256];
  snprintf(ref, sizeof(ref), "layer-sha512:%0128d", 0);
  enum pt_ingest_kind k;
  char d[PT_DIGEST_MAX];
  assert_int_equal(pt_ingest_ref_parse(ref, &k, d, sizeof(d)), 0);
  assert_int_equal(strlen(d), 7 + 128);
}

static const char *oci_manifest =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
    "\",\"size\":123},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2
    "\",\"size\":1000},"
    "{\"mediaType\":\"application/vnd.example.custom+zstd\",\"digest\":\"" D3
    "\",\"size\":2000}]}";

static void test_manifest_oci(void **state)
{
  struct pt_manifest m;
  char err[256];
  assert_int_equal(pt_manifest_parse(oci_manifest, strlen(oci_manifest), &m, err, sizeof(err)), 0);
  assert_int_equal(m.type, PT_MANIFEST_IMAGE);
  assert_string_equal(m.config.digest, D1);
  assert_int_equal(m.n_items, 2);
  assert_string_equal(m.items[0].digest, D2);
  assert_int_equal(m.items[0].size, 1000);
  /* An unknown layer media type is kept, not rejected. */
  assert_string_equal(m.items[1].media_type, "application/vnd.example.custom+zstd");
  pt_manifest_free(&m);
  pt_manifest_free(&m); /* idempotent */
}

static void test_manifest_docker_and_no_media_type(void **state)
{
  const char *docker =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
      "\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{\"mediaType\":"
      "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D2 "\",\"size\":7}]}";
  struct pt_manifest m;
  char err[256];
  assert_int_equal(pt_manifest_parse(docker, strlen(docker), &m, err, sizeof(err)), 0);
  assert_int_equal(m.type, PT_MANIFEST_IMAGE);
  assert_int_equal(m.items[0].size, 7);
  pt_manifest_free(&m);

  const char *bare = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
                     "\",\"size\":1},\"layers\":[]}";
  assert_int_equal(pt_manifest_parse(bare, strlen(bare), &m, err, sizeof(err)), 0);
  assert_int_equal(m.type, PT_MANIFEST_IMAGE);
  assert_int_equal(m.n_items, 0);
  pt_manifest_free(&m);
}

static void test_index(void **state)
{
  const char *idx =
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
      "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
      "\",\"size\":500,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
      "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
      "\",\"size\":501,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}";
  struct pt_manifest m;
  char err[256];
  assert_int_equal(pt_manifest_parse(idx, strlen(idx), &m, err, sizeof(err)), 0);
  assert_int_equal(m.type, PT_MANIFEST_INDEX);
  assert_int_equal(m.n_items, 2);
  assert_string_equal(m.items[0].platform, "linux/amd64");
  assert_string_equal(m.items[1].platform, "linux/arm64/v8");
  pt_manifest_free(&m);

  const char *list = "{\"schemaVersion\":2,\"mediaType\":"
                     "\"application/vnd.docker.distribution.manifest.list.v2+json\",\"manifests\":[]}";
  assert_int_equal(pt_manifest_parse(list, strlen(list), &m, err, sizeof(err)), 0);
  assert_int_equal(m.type, PT_MANIFEST_INDEX);
  pt_manifest_free(&m);
}

static void expect_bad(const char *json, const char *needle)
{
  struct pt_manifest m;
  char err[256] = "";
  assert_int_equal(pt_manifest_parse(json, strlen(json), &m, err, sizeof(err)), -EINVAL);
  if (!strstr(err, needle))
    fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
  assert_null(m.items);
}

static void test_manifest_malformed(void **state)
{
  expect_bad("", "invalid JSON");
  expect_bad("{\"schemaVersion\":2,", "invalid JSON");
  expect_bad("[]", "not a JSON object");
  expect_bad("{\"schemaVersion\":1,\"layers\":[]}", "schemaVersion");
  expect_bad("{\"layers\":[]}", "schemaVersion");
  expect_bad("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v1+json\"}",
             "mediaType");
  expect_bad("{\"schemaVersion\":2}", "neither");
  expect_bad("{\"schemaVersion\":2,\"layers\":[],\"manifests\":[]}", "neither");
  expect_bad("{\"schemaVersion\":2,\"layers\":[]}", "config");
  expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
             "\",\"size\":1},\"layers\":[{\"digest\":\"sha256:xyz\",\"size\":1}]}",
             "layers[0].digest");
  expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
             "\",\"size\":1},\"layers\":[{\"digest\":\"" D2 "\",\"size\":-1}]}",
             "layers[0].size");
  expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
             "\",\"size\":1},\"layers\":[{\"digest\":\"" D2 "\",\"size\":\"10\"}]}",
             "layers[0].size");
  expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1
             "\",\"size\":1},\"layers\":[{\"digest\":\"" D2 "\",\"size\":1}, 5]}",
             "layers[1]");
  expect_bad("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":{}}",
             "neither");
  expect_bad("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":{}}",
             "layers: missing");
  expect_bad("{\"schemaVersion\":2,\"schemaVersion\":2,\"layers\":[]}", "invalid JSON");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ref_kinds),
      cmocka_unit_test(test_ref_invalid),
      cmocka_unit_test(test_sha512),
      cmocka_unit_test(test_manifest_oci),
      cmocka_unit_test(test_manifest_docker_and_no_media_type),
      cmocka_unit_test(test_index),
      cmocka_unit_test(test_manifest_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
