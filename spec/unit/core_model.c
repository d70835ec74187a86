/* Unit tests of the shared model: image references (Docker's reference
 * grammar with the runtime's defaults), layer states, digests and FNV-1a. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/hash.h"
#include "core/image_ref.h"
#include "core/model.h"

static void norm_is(const char *in, const char *want)
{
  char out[1024];
  assert_int_equal(pt_image_ref_normalize(in, out, sizeof(out)), 0);
  assert_string_equal(out, want);
}

static void key_is(const char *in, const char *want)
{
  char out[1024];
  assert_int_equal(pt_image_ref_key(in, out, sizeof(out)), 0);
  assert_string_equal(out, want);
}

static void test_image_normalize(void **state)
{
  (void)state;
  norm_is("nginx", "docker.io/library/nginx:latest");
  norm_is("nginx:1.25", "docker.io/library/nginx:1.25");
  norm_is("bitnami/redis", "docker.io/bitnami/redis:latest");
  norm_is("index.docker.io/library/nginx:1", "docker.io/library/nginx:1");
  norm_is("Registry.Example.com/a/b:v1", "registry.example.com/a/b:v1");
  norm_is("127.0.0.1:5001/demo/app:v1", "127.0.0.1:5001/demo/app:v1");
  norm_is("localhost/app", "localhost/app:latest");
  norm_is("reg:5000/a/b@sha256:abc", "reg:5000/a/b@sha256:abc");
  norm_is("reg.io/a/b:v1@sha256:abc", "reg.io/a/b:v1@sha256:abc");
  norm_is("reg/a/b:v1", "docker.io/reg/a/b:v1");
  norm_is("[::1]:5000/app:v2", "[::1]:5000/app:v2");
  key_is("127.0.0.1:5001/demo/app:v1", "127.0.0.1/demo/app");
  key_is("nginx", "docker.io/library/nginx");
  key_is("[::1]:5000/app:v2", "[::1]/app");
  key_is("reg.example:443/team/app@sha256:1", "reg.example/team/app");

  struct pt_image_ref im;
  const char *bad[] = {"", " nginx", "nginx:", "a b", "reg:5000/", "/app", "app@", "reg:x5/a:v1", "\"q\""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(pt_image_ref_parse(bad[i], &im), -EINVAL);
  assert_int_equal(pt_image_ref_parse(NULL, &im), -EINVAL);
  char small[8];
  assert_int_equal(pt_image_ref_normalize("nginx", small, sizeof(small)), -ENOSPC);
}

static void test_image_matches(void **state)
{
  (void)state;
  /* The agent's imageRef has neither port nor tag. */
  assert_true(pt_image_ref_matches("127.0.0.1/demo/app", "127.0.0.1:5001/demo/app:v1"));
  assert_true(pt_image_ref_matches("docker.io/library/nginx", "nginx"));
  assert_true(pt_image_ref_matches("docker.io/library/nginx", "nginx:1.25@sha256:abc"));
  assert_false(pt_image_ref_matches("127.0.0.1/demo/app", "127.0.0.1:5001/demo/other:v1"));
  assert_false(pt_image_ref_matches("127.0.0.1/demo/app", "127.0.0.2:5001/demo/app:v1"));
  assert_false(pt_image_ref_matches("docker.io/library/nginx", "bitnami/nginx"));
  assert_false(pt_image_ref_matches(NULL, "nginx"));
}


/* The grammar's finer rules, which the three parsers this one replaced
 * disagreed on. */
static void test_image_grammar(void **state)
{
  (void)state;
  struct pt_image_ref im;
  /* Path components: lower case, separators ".", "_", "__" and dashes. */
  norm_is("a/b.c_d__e---f:v", "docker.io/a/b.c_d__e---f:v");
  norm_is("my-registry.io:8443/team/my_app", "my-registry.io:8443/team/my_app:latest");
  const char *bad_path[] = {"App", "reg.io/Team/app", "a/b..c", "a/b___c", "a/-b", "a/b-", "a//b", "a/_b"};
  for (size_t i = 0; i < sizeof(bad_path) / sizeof(bad_path[0]); i++)
    assert_int_equal(pt_image_ref_parse(bad_path[i], &im), -EINVAL);
  /* Tags: a word character first, at most 128. */
  norm_is("app:V1_2.3-rc", "docker.io/library/app:V1_2.3-rc");
  assert_int_equal(pt_image_ref_parse("app:.v1", &im), -EINVAL);
  assert_int_equal(pt_image_ref_parse("app:-v1", &im), -EINVAL);
  char tag[200] = "app:";
  memset(tag + 4, 'x', 129);
  tag[133] = '\0';
  assert_int_equal(pt_image_ref_parse(tag, &im), -EINVAL);
  tag[132] = '\0';
  assert_int_equal(pt_image_ref_parse(tag, &im), 0);
  /* Digests follow the OCI grammar; a digest alone leaves the tag empty. */
  assert_int_equal(pt_image_ref_parse("app@sha256:0123abc", &im), 0);
  assert_string_equal(im.tag, "");
  assert_string_equal(im.digest, "sha256:0123abc");
  assert_int_equal(pt_image_ref_parse("app@sha256", &im), -EINVAL);
  assert_int_equal(pt_image_ref_parse("app@SHA256:ab", &im), -EINVAL);
  assert_int_equal(pt_image_ref_parse("app@sha256:ab@sha256:cd", &im), -EINVAL);
  /* A domain: a dot, a port, localhost or an upper-case letter; else a path. */
  assert_int_equal(pt_image_ref_parse("localhost:5000/app", &im), 0);
  assert_string_equal(im.host, "localhost:5000");
  assert_string_equal(im.bare_host, "localhost");
  assert_string_equal(im.repo, "app");
  assert_int_equal(pt_image_ref_parse("Reg/app", &im), 0);
  assert_string_equal(im.host, "Reg");
  assert_string_equal(im.bare_host, "reg");
  norm_is("Reg/app", "Reg/app:latest"); /* lower case would make it docker.io/reg/app */
  assert_int_equal(pt_image_ref_parse("registry-1.docker.io/nginx", &im), 0);
  assert_string_equal(im.host, "docker.io");
  assert_string_equal(im.repo, "library/nginx");
  const char *bad_domain[] = {"-reg.io/app", "reg-.io/app", "reg..io/app", "reg.io:/app", "reg.io:123456/app",
                              "[]/app", "[::1/app", "reg_x.io/app"};
  for (size_t i = 0; i < sizeof(bad_domain) / sizeof(bad_domain[0]); i++)
    assert_int_equal(pt_image_ref_parse(bad_domain[i], &im), -EINVAL);
  /* The name is at most 255 characters. */
  char name[300] = "reg.io/";
  memset(name + 7, 'a', 249);
  name[256] = '\0';
  assert_int_equal(pt_image_ref_parse(name, &im), -EINVAL);
  name[255] = '\0';
  assert_int_equal(pt_image_ref_parse(name, &im), 0);
  /* Structs compare by repository, port and tag aside. */
  struct pt_image_ref a, b;
  assert_int_equal(pt_image_ref_parse("127.0.0.1:5001/demo/app:v1", &a), 0);
  assert_int_equal(pt_image_ref_parse("127.0.0.1/demo/app", &b), 0);
  assert_true(pt_image_ref_same_repo(&a, &b));
}

static void test_model(void **state)
{
  (void)state;
  enum pt_layer_state st;
  for (int i = 0; i < PT_LAYER_STATE_COUNT; i++) {
    assert_int_equal(pt_layer_state_parse(pt_layer_state_name((enum pt_layer_state)i), &st), 0);
    assert_int_equal(st, i);
  }
  assert_string_equal(pt_layer_state_name(PT_LAYER_CACHED), "cached");
  assert_string_equal(pt_layer_state_name((enum pt_layer_state)99), "waiting");
  assert_int_equal(pt_layer_state_parse("Done", &st), -EINVAL);
  assert_int_equal(pt_layer_state_parse(NULL, &st), -EINVAL);

  char d[200] = "sha256:";
  memset(d + 7, 'a', 64);
  d[71] = '\0';
  assert_true(pt_digest_registered(d));
  assert_true(pt_digest_valid(d));
  d[70] = 'A';
  assert_false(pt_digest_registered(d));
  assert_true(pt_digest_valid(d));
  assert_false(pt_digest_registered("sha256:abc"));
  assert_true(pt_digest_valid("sha256:abc"));
  assert_false(pt_digest_registered("md5:0123"));
  assert_false(pt_digest_valid(NULL));
}

static void test_digest_sha256(void **state)
{
  (void)state;
  unsigned char b[32];
  char d[200] = "sha256:0123456789abcdef";
  memset(d + 23, 'f', 48);
  d[71] = '\0';
  assert_true(pt_digest_sha256(d, b));
  assert_int_equal(b[0], 0x01);
  assert_int_equal(b[7], 0xef);
  assert_int_equal(b[31], 0xff);
  d[70] = 'F'; /* valid, but not the form kept as bytes (its text would change) */
  assert_false(pt_digest_sha256(d, b));
  d[70] = 'g';
  assert_false(pt_digest_sha256(d, b));
  d[70] = 'f';
  d[71] = 'f'; /* 65 digits */
  d[72] = '\0';
  assert_false(pt_digest_sha256(d, b));
  d[70] = '\0'; /* 63 digits */
  assert_false(pt_digest_sha256(d, b));
  assert_false(pt_digest_sha256("sha512:00", b));
  assert_false(pt_digest_sha256("sha256:", b));
  assert_false(pt_digest_sha256(NULL, b));
}

static void test_fnv1a(void **state)
{
  (void)state;
  /* The published FNV-1a 64-bit test vectors. */
  assert_true(pt_fnv1a_str(PT_FNV1A_INIT, "") == 0xcbf29ce484222325ULL);
  assert_true(pt_fnv1a_str(PT_FNV1A_INIT, "a") == 0xaf63dc4c8601ec8cULL);
  assert_true(pt_fnv1a_str(PT_FNV1A_INIT, "foobar") == 0x85944171f73967e8ULL);
  /* Incremental equals one pass. */
  assert_true(pt_fnv1a(pt_fnv1a(PT_FNV1A_INIT, "foo", 3), "bar", 3) == pt_fnv1a_str(PT_FNV1A_INIT, "foobar"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_image_normalize), cmocka_unit_test(test_image_matches),
    cmocka_unit_test(test_image_grammar),   cmocka_unit_test(test_model),
    cmocka_unit_test(test_fnv1a), cmocka_unit_test(test_digest_sha256),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
