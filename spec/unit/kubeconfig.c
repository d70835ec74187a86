/* Unit tests of the kubeconfig module: kubeconfig files (contexts, token,
 * tokenFile, client certificates, inline *-data members, errors), the
 * in-cluster service-account files and base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/kubeconfig.h"

static void write_text(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_kubeconfig_file(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kubeconfig-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], ca[256], tok[256];
  snprintf(path, sizeof(path), "%s/config", dir);
  snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
  snprintf(tok, sizeof(tok), "%s/token", dir);
  write_text(ca, "PEM\n");
  write_text(tok, "  file-token\n");
  write_text(path,
             "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
             "clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n"
             "    certificate-authority: ca.crt\n"
             "- name: c2\n  cluster: {server: 'https://c2:443', certificate-authority-data: UEVNIGRhdGEK}\n"
             "- name: c3\n  cluster: {server: 'https://c3:443', insecure-skip-tls-verify: true}\n"
             "contexts:\n- name: dev\n  context: {cluster: c1, user: u1, namespace: team}\n"
             "- {name: other, context: {cluster: c2, user: u2}}\n"
             "- {name: certs, context: {cluster: c2, user: u3}}\n"
             "- {name: exec, context: {cluster: c2, user: u4}}\n"
             "- {name: insecure, context: {cluster: c3, user: u1}}\n"
             "- {name: halfcert, context: {cluster: c2, user: u5}}\n"
             "users:\n- name: u1\n  user:\n    token: \"abc\"\n"
             "- name: u2\n  user: {tokenFile: token}\n"
             "- name: u3\n  user: {client-certificate-data: Q0VSVAo=, client-key-data: S0VZCg==}\n"
             "- name: u4\n  user: {exec: {command: aws}}\n"
             "- name: u5\n  user: {client-certificate-data: Q0VSVAo=}\n");
  struct pt_kubeconfig c;
  char err[512];
  assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://10.0.0.1:6443");
  assert_string_equal(c.ca_file, ca);
  assert_string_equal(c.token, "abc");
  assert_string_equal(c.namespace, "team");
  assert_false(c.insecure_skip_tls_verify);
  assert_non_null(strstr(c.source, "(context dev)"));
  char *t;
  assert_int_equal(pt_kubeconfig_token(&c, &t), 0);
  assert_string_equal(t, "abc");
  free(t);
  pt_kubeconfig_clear(&c);

  assert_int_equal(pt_kubeconfig_load(&c, path, "other", err, sizeof(err)), 0);
  assert_string_equal(c.token_file, tok);
  assert_int_equal(pt_kubeconfig_token(&c, &t), 0);
  assert_string_equal(t, "file-token");
  free(t);
  /* A rotated token is what the next read returns. */
  write_text(tok, "rotated\n");
  assert_int_equal(pt_kubeconfig_token(&c, &t), 0);
  assert_string_equal(t, "rotated");
  free(t);
  /* The inline CA became a private file. */
  char *tmpdir = strdup(c.tmpdir);
  FILE *f = fopen(c.ca_file, "r");
  assert_non_null(f);
  char buf[64] = "";
  assert_non_null(fgets(buf, sizeof(buf), f));
  fclose(f);
  assert_string_equal(buf, "PEM data\n");
  pt_kubeconfig_clear(&c);
  assert_int_equal(access(tmpdir, F_OK), -1); /* removed */
  free(tmpdir);

  assert_int_equal(pt_kubeconfig_load(&c, path, "certs", err, sizeof(err)), 0);
  assert_non_null(c.client_cert);
  assert_non_null(c.client_key);
  pt_kubeconfig_clear(&c);

  /* The flag is read; whether to honour it is the caller's decision. */
  assert_int_equal(pt_kubeconfig_load(&c, path, "insecure", err, sizeof(err)), 0);
  assert_true(c.insecure_skip_tls_verify);
  pt_kubeconfig_clear(&c);

  assert_int_equal(pt_kubeconfig_load(&c, path, "exec", err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "not supported"));
  assert_int_equal(pt_kubeconfig_load(&c, path, "halfcert", err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "needs its key"));
  assert_int_equal(pt_kubeconfig_load(&c, path, "missing", err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "\"missing\" not found"));
  write_text(path, "clusters: []\n");
  assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), -ESRCH);
  assert_non_null(strstr(err, "no current-context"));
  write_text(path, "clusters: [unclosed\n");
  assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "YAML error"));
  unlink(path);
  assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "cannot read"));

  unlink(ca);
  unlink(tok);
  rmdir(dir);
}

static void test_in_cluster(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kubeconfig-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char ca[256], tok[256], ns[256];
  snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
  snprintf(tok, sizeof(tok), "%s/token", dir);
  snprintf(ns, sizeof(ns), "%s/namespace", dir);
  write_text(ca, "PEM\n");
  write_text(tok, "sa-token\n");
  write_text(ns, "pulltrace\n");
  struct pt_kubeconfig c;
  char err[512];
  assert_int_equal(pt_kubeconfig_in_cluster(&c, "10.96.0.1", "", dir, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://10.96.0.1:443");
  assert_string_equal(c.token_file, tok);
  assert_string_equal(c.ca_file, ca);
  assert_string_equal(c.namespace, "pulltrace");
  assert_string_equal(c.source, "in-cluster");
  pt_kubeconfig_clear(&c);
  assert_int_equal(pt_kubeconfig_in_cluster(&c, "fd00::1", "6443", dir, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://[fd00::1]:6443");
  pt_kubeconfig_clear(&c);
  assert_int_equal(pt_kubeconfig_in_cluster(&c, "10.96.0.1", "44x", dir, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "KUBERNETES_SERVICE_PORT"));
  write_text(tok, "\n");
  assert_int_equal(pt_kubeconfig_in_cluster(&c, "10.96.0.1", "443", dir, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "empty file"));
  unlink(ca);
  assert_int_equal(pt_kubeconfig_in_cluster(&c, "10.96.0.1", "443", dir, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "cannot read"));
  unlink(tok);
  unlink(ns);
  rmdir(dir);
}

static void test_base64(void **state)
{
  (void)state;
  unsigned char out[16];
  assert_int_equal(pt_kubeconfig_base64_decode("aGk=", out), 2);
  assert_memory_equal(out, "hi", 2);
  assert_int_equal(pt_kubeconfig_base64_decode("aG\nk", out), 2);
  assert_memory_equal(out, "hi", 2);
  assert_int_equal(pt_kubeconfig_base64_decode("a*==", out), -EINVAL);
  assert_int_equal(pt_kubeconfig_base64_decode("aGk=aGk=", out), -EINVAL);

  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_kubeconfig_file),
    cmocka_unit_test(test_in_cluster),
    cmocka_unit_test(test_base64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
