/* Unit tests of the kubeconfig module: kubeconfig files (contexts, token,
 * tokenFile, client certificates, inline *-data members, errors), merged
 * $KUBECONFIG lists, exec credential plugins and their token cache, the
 * in-cluster service-account files and base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/file.h"
#include "core/kubeconfig.h"


static void test_kubeconfig_file(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kubeconfig-unit-XXXXXX";
  char path[256], ca[256], tok[256];
  test_kube_scratch(dir, path, ca, tok);
  test_write_file(path,
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
  test_write_file(tok, "rotated\n");
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
  test_write_file(path, "clusters: []\n");
  assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), -ESRCH);
  assert_non_null(strstr(err, "no current-context"));
  /* A scheme without a host is no server (its slashes are not a host). */
  static const char *const hostless[] = {"'https://'", "'http:///'", "ftp://h"};
  for (size_t i = 0; i < 3; i++) {
    char doc[256];
    snprintf(doc, sizeof(doc),
             "current-context: x\nclusters:\n- name: c\n  cluster: {server: %s}\n"
             "contexts:\n- name: x\n  context: {cluster: c}\n", hostless[i]);
    test_write_file(path, doc);
    assert_int_equal(pt_kubeconfig_load(&c, path, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "has no http(s) server URL"));
  }
  test_write_file(path, "clusters: [unclosed\n");
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
  test_write_file(ca, "PEM\n");
  test_write_file(tok, "sa-token\n");
  test_write_file(ns, "pulltrace\n");
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
  test_write_file(tok, "\n");
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

static void test_merge(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kubeconfig-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char a[256], b[256], missing[256], list[1024];
  snprintf(a, sizeof(a), "%s/a", dir);
  snprintf(b, sizeof(b), "%s/sub/b", dir);
  snprintf(missing, sizeof(missing), "%s/missing", dir);
  char sub[256];
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  char tok[256];
  snprintf(tok, sizeof(tok), "%s/sub/token", dir);
  test_write_file(tok, "from-b\n");
  /* a: current-context and a cluster that b defines too (a's wins); b: the
   * context, the user (its tokenFile is relative to b) and another current-context. */
  test_write_file(a, "current-context: prod\nclusters:\n- name: c\n  cluster: {server: 'https://a:1'}\n");
  test_write_file(b, "current-context: ignored\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://b:1'}\n"
                "contexts:\n- name: prod\n  context: {cluster: c, user: u, namespace: ops}\n"
                "- name: ignored\n  context: {cluster: c}\n"
                "users:\n- name: u\n  user: {tokenFile: token}\n");
  char **files;
  size_t n;
  snprintf(list, sizeof(list), "%s::%s:%s:", a, missing, b);
  assert_int_equal(pt_kubeconfig_split_list(list, &files, &n), 0);
  assert_int_equal(n, 3);
  assert_null(files[3]);
  assert_string_equal(files[1], missing);
  struct pt_kubeconfig_options o = {.files = (const char *const *)files, .nfiles = n, .skip_missing = true};
  struct pt_kubeconfig c;
  char err[512];
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://a:1");
  assert_string_equal(c.token_file, tok);
  assert_string_equal(c.namespace, "ops");
  char *t;
  assert_int_equal(pt_kubeconfig_token(&c, &t), 0);
  assert_string_equal(t, "from-b");
  free(t);
  pt_kubeconfig_clear(&c);
  /* Without skip_missing (an explicit --kubeconfig), a missing file is an error. */
  o.skip_missing = false;
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "cannot read"));
  /* Only missing files: an error that says so. */
  const char *none[] = {missing};
  struct pt_kubeconfig_options o2 = {.files = none, .nfiles = 1, .skip_missing = true};
  assert_int_equal(pt_kubeconfig_open(&c, &o2, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "none of the kubeconfig files"));
  pt_kubeconfig_free_list(files);
  unlink(a);
  unlink(b);
  unlink(tok);
  rmdir(sub);
  rmdir(dir);
}

static int count_lines(const char *path)
{
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int n = 0, ch;
  while ((ch = fgetc(f)) != EOF)
    n += ch == '\n';
  fclose(f);
  return n;
}

static void test_exec_plugin(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kubeconfig-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cfg[256], plugin[256], runs[256], cache[256], text[4096];
  snprintf(cfg, sizeof(cfg), "%s/config", dir);
  snprintf(plugin, sizeof(plugin), "%s/bin/plugin.sh", dir);
  snprintf(runs, sizeof(runs), "%s/runs", dir);
  snprintf(cache, sizeof(cache), "%s/cache", dir);
  snprintf(text, sizeof(text), "%s/bin", dir);
  assert_int_equal(mkdir(text, 0700), 0);
  /* The plugin logs each run with what client-go passes it, and answers with a
   * token that expires at $EXP ("" = no expiry). */
  snprintf(text, sizeof(text),
           "#!/bin/sh\necho \"$1 $TEAM $KUBERNETES_EXEC_INFO\" >> %s\n"
           "n=$(wc -l < %s)\n"
           "if [ \"$MODE\" = bad ]; then echo 'not json'; exit 0; fi\n"
           "if [ \"$MODE\" = fail ]; then echo 'no credentials' >&2; exit 3; fi\n"
           "exp=\"\"; [ -n \"$EXP\" ] && exp=\",\\\"expirationTimestamp\\\":\\\"$EXP\\\"\"\n"
           "printf '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\","
           "\"status\":{\"token\":\"tok-%%s\"%%s}}' \"$n\" \"$exp\"\n",
           runs, runs);
  test_write_file(plugin, text);
  assert_int_equal(chmod(plugin, 0755), 0);
  snprintf(text, sizeof(text),
           "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://k:6443'}\n"
           "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
           "- name: nomode\n  context: {cluster: c, user: nomode}\n"
           "- name: absent\n  context: {cluster: c, user: absent}\n"
           "users:\n- name: u\n  user:\n    exec:\n"
           "      apiVersion: client.authentication.k8s.io/v1\n"
           "      command: bin/plugin.sh\n      args: [get-token]\n"
           "      env: [{name: TEAM, value: blue}]\n"
           "      interactiveMode: Never\n      provideClusterInfo: true\n"
           "- name: nomode\n  user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: x}}\n"
           "- name: absent\n  user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: "
           "/nonexistent/plugin, interactiveMode: Never, installHint: 'install it with: apt-get install x'}}\n");
  test_write_file(cfg, text);

  const char *files[] = {cfg};
  struct pt_kubeconfig_options o = {.files = files, .nfiles = 1, .allow_exec = true, .cache_dir = cache};
  struct pt_kubeconfig c;
  char err[512];
  /* The server's entry point keeps refusing exec users. */
  assert_int_equal(pt_kubeconfig_load(&c, cfg, NULL, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "not supported"));

  setenv("EXP", "2999-01-01T00:00:00Z", 1);
  unsetenv("MODE");
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(count_lines(runs), 0); /* runs only when a token is needed */
  char *t;
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-1");
  free(t);
  assert_int_equal(pt_kubeconfig_token(&c, &t), 0);
  assert_string_equal(t, "tok-1");
  free(t);
  assert_int_equal(pt_kubeconfig_exec_runs(&c), 1);
  /* args, env and KUBERNETES_EXEC_INFO with the cluster reached the plugin. */
  FILE *f = fopen(runs, "r");
  assert_non_null(fgets(text, sizeof(text), f));
  fclose(f);
  assert_non_null(strstr(text, "get-token blue {"));
  assert_non_null(strstr(text, "\"kind\":\"ExecCredential\""));
  assert_non_null(strstr(text, "\"interactive\":false"));
  assert_non_null(strstr(text, "\"server\":\"https://k:6443\""));
  pt_kubeconfig_clear(&c);

  /* A new process (a new load) finds the cached token: the plugin does not run. */
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-1");
  free(t);
  assert_int_equal(count_lines(runs), 1);
  /* A 401 forces a new token. */
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-2");
  free(t);
  pt_kubeconfig_clear(&c);

  /* An expired token (cached or returned) is never used. */
  setenv("EXP", "2000-01-01T00:00:00Z", 1);
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-2"); /* still the cached one, valid until 2999 */
  free(t);
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "already expired"));
  /* Without an expiry the token lasts for the process, and is not written to the cache. */
  setenv("EXP", "", 1);
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-4");
  free(t);
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), 0);
  assert_string_equal(t, "tok-4");
  free(t);
  assert_int_equal(pt_kubeconfig_exec_runs(&c), 2);
  /* Failures name the plugin and what went wrong. */
  setenv("MODE", "fail", 1);
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), -EIO);
  assert_non_null(strstr(err, "exit status 3"));
  setenv("MODE", "bad", 1);
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "not JSON"));
  assert_null(t);
  unsetenv("MODE");
  pt_kubeconfig_clear(&c);

  /* A cached token past its expirationTimestamp is not used by the next
   * process: the plugin runs again. The cache file is aged by hand. */
  setenv("EXP", "2999-01-01T00:00:00Z", 1);
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(pt_kubeconfig_credential(&c, true, &t, err, sizeof(err)), 0);
  char fresh[64];
  snprintf(fresh, sizeof(fresh), "%s", t);
  free(t);
  pt_kubeconfig_clear(&c);
  int before = count_lines(runs);
  DIR *d = opendir(cache);
  assert_non_null(d);
  struct dirent *de;
  int aged = 0;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    char path[600], *json;
    snprintf(path, sizeof(path), "%s/%s", cache, de->d_name);
    assert_int_equal(pt_file_read(path, 1 << 16, &json, NULL), 0);
    char *y = strstr(json, "2999-01-01");
    assert_non_null(y);
    memcpy(y, "2000", 4);
    test_write_file(path, json);
    free(json);
    aged++;
  }
  closedir(d);
  assert_int_equal(aged, 1);
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), 0);
  assert_string_not_equal(t, fresh);
  free(t);
  assert_int_equal(count_lines(runs), before + 1);
  pt_kubeconfig_clear(&c);

  o.context = "nomode";
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "interactiveMode must be specified"));
  o.context = "absent";
  assert_int_equal(pt_kubeconfig_open(&c, &o, err, sizeof(err)), 0);
  assert_int_equal(pt_kubeconfig_credential(&c, false, &t, err, sizeof(err)), -EIO);
  assert_non_null(strstr(err, "cannot run /nonexistent/plugin"));
  assert_non_null(strstr(err, "install it with"));
  pt_kubeconfig_clear(&c);
  unsetenv("EXP");

  snprintf(text, sizeof(text), "rm -rf '%s'", dir);
  assert_int_equal(system(text), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_kubeconfig_file),
    cmocka_unit_test(test_in_cluster),
    cmocka_unit_test(test_base64),
    cmocka_unit_test(test_merge),
    cmocka_unit_test(test_exec_plugin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
