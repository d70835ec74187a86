/* Unit tests of the Kubernetes helpers: kubelet messages, the watch stream
 * framing, slim objects and the order of the configuration sources. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kube/config.h"
#include "kube/parse.h"

static void test_messages(void **state)
{
  (void)state;
  struct pt_kube_msg m;
  assert_int_equal(pt_kube_message_parse("Pulling", "Pulling image \"127.0.0.1:5001/demo/app:v1\"", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_PULLING);
  assert_string_equal(m.image, "127.0.0.1:5001/demo/app:v1");

  assert_int_equal(pt_kube_message_parse("Pulled",
                   "Successfully pulled image \"nginx:1.25\" in 1.2s (1.5s including waiting)", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_PULLED);
  assert_string_equal(m.image, "nginx:1.25");
  assert_float_equal(m.duration, 1.2, 1e-9);
  assert_float_equal(m.waiting, 1.5, 1e-9);
  assert_int_equal(pt_kube_message_parse("Pulled",
                   "Successfully pulled image \"a/b\" in 2m3.5s (2m4s including waiting). Image size: 42 bytes.",
                   &m), 0);
  assert_float_equal(m.duration, 123.5, 1e-9);
  assert_float_equal(m.waiting, 124, 1e-9);
  assert_int_equal(pt_kube_message_parse("Pulled", "Successfully pulled image \"a/b\" in 512.3ms", &m), 0);
  assert_float_equal(m.duration, 0.5123, 1e-9);
  assert_true(m.waiting < 0);
  assert_int_equal(pt_kube_message_parse("Pulled", "Successfully pulled image \"a/b\"", &m), 0);
  assert_true(m.duration < 0);

  assert_int_equal(pt_kube_message_parse("Pulled", "Container image \"busybox:1\" already present on machine", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_PRESENT);
  assert_string_equal(m.image, "busybox:1");
  assert_false(pt_kube_msg_is_failure(m.kind));

  assert_int_equal(pt_kube_message_parse("Failed",
                   "Failed to pull image \"r/a:nope\": rpc error: code = NotFound desc = \"x\" not found", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_FAILED);
  assert_string_equal(m.image, "r/a:nope");
  assert_true(pt_kube_msg_is_failure(m.kind));

  assert_int_equal(pt_kube_message_parse("BackOff", "Back-off pulling image \"r/a:nope\"", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_BACKOFF);
  assert_string_equal(m.image, "r/a:nope");

  assert_int_equal(pt_kube_message_parse("ErrImageNeverPull",
                   "Container image \"r/a:v1\" is not present with pull policy of Never", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_NEVER_PULL);
  assert_int_equal(pt_kube_message_parse("InspectFailed", "Failed to inspect image \"r/a:v1\": boom", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_INSPECT_FAILED);
  assert_int_equal(pt_kube_message_parse("InspectFailed",
                   "Failed to apply default image tag \"BAD:\": couldn't parse image reference", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_INSPECT_FAILED);
  assert_string_equal(m.image, "BAD:");
  assert_int_equal(pt_kube_message_parse("Failed", "Error: ErrImagePull", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_ERROR_STATE);
  assert_string_equal(m.image, "");
  /* Reason alone, unknown wording. */
  assert_int_equal(pt_kube_message_parse("ErrImagePull", "image \"x/y:1\" could not be fetched", &m), 0);
  assert_int_equal(m.kind, PT_KUBE_MSG_FAILED);
  assert_string_equal(m.image, "x/y:1");

  /* Not about images. */
  assert_int_equal(pt_kube_message_parse("BackOff", "Back-off restarting failed container app", &m), -EINVAL);
  assert_int_equal(m.kind, PT_KUBE_MSG_OTHER);
  assert_int_equal(pt_kube_message_parse("Scheduled", "Successfully assigned a/b to node", &m), -EINVAL);
  assert_int_equal(pt_kube_message_parse(NULL, NULL, &m), -EINVAL);
  assert_int_equal(pt_kube_message_parse("Pulling", "Pulling image \"unterminated", &m), 0);
  assert_string_equal(m.image, "");
  assert_string_equal(pt_kube_msg_kind_name(PT_KUBE_MSG_BACKOFF), "backoff");
}

struct seen {
  int n;
  enum pt_kube_watch_type types[16];
  char names[16][64];
  int stop_after;
};

static int on_event(void *ud, enum pt_kube_watch_type t, json_t *obj)
{
  struct seen *s = ud;
  if (s->n < 16) {
    s->types[s->n] = t;
    const char *n = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", n ? n : "");
  }
  s->n++;
  return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

static const char stream_text[] =
  "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
  "\n"
  "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\r\n"
  "{\"type\":\"SOMETHING_NEW\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n"
  "not json at all\n"
  "{\"type\":\"DELETED\",\"object\":\"not an object\"}\n"
  "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"name\":\"d\",\"resourceVersion\":\"9\"}}}\n"
  "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"metadata\":{\"name\":\"e\"}}}\n"
  "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"f\"}}}";

static void check_stream(const struct seen *s, const struct pt_kube_stream *st)
{
  assert_int_equal(s->n, 6);
  enum pt_kube_watch_type want[] = {PT_KUBE_ADDED, PT_KUBE_MODIFIED, PT_KUBE_UNKNOWN,
                                    PT_KUBE_BOOKMARK, PT_KUBE_ERROR, PT_KUBE_DELETED};
  const char *names[] = {"a", "b", "c", "d", "e", "f"};
  for (int i = 0; i < 6; i++) {
    assert_int_equal(s->types[i], want[i]);
    assert_string_equal(s->names[i], names[i]);
  }
  assert_int_equal(st->bad, 2);
}

static void test_stream_chunks(void **state)
{
  (void)state;
  size_t len = strlen(stream_text);
  /* Whole, byte by byte, and in every chunk size in between: same events. */
  for (size_t chunk = 1; chunk <= len; chunk += (chunk < 20 ? 1 : 37)) {
    struct pt_kube_stream st;
    pt_kube_stream_init(&st, 0);
    struct seen s = {0};
    for (size_t off = 0; off < len; off += chunk) {
      size_t n = len - off < chunk ? len - off : chunk;
      assert_int_equal(pt_kube_stream_feed(&st, stream_text + off, n, on_event, &s), 0);
    }
    assert_int_equal(s.n, 5); /* the last line has no newline yet */
    assert_int_equal(pt_kube_stream_finish(&st, on_event, &s), 0);
    check_stream(&s, &st);
    pt_kube_stream_close(&st);
  }
}

static void test_stream_limits(void **state)
{
  (void)state;
  struct pt_kube_stream st;
  pt_kube_stream_init(&st, 64);
  struct seen s = {0};
  char big[200];
  memset(big, 'x', sizeof(big));
  /* A partial line longer than the limit, and a complete one. */
  assert_int_equal(pt_kube_stream_feed(&st, big, 100, on_event, &s), -E2BIG);
  pt_kube_stream_reset(&st);
  big[150] = '\n';
  assert_int_equal(pt_kube_stream_feed(&st, big, 151, on_event, &s), -E2BIG);
  pt_kube_stream_reset(&st);
  /* The callback stops the feed. */
  s.stop_after = 1;
  const char two[] = "{\"type\":\"ADDED\",\"object\":{}}\n{\"type\":\"ADDED\",\"object\":{}}\n";
  assert_int_equal(pt_kube_stream_feed(&st, two, strlen(two), on_event, &s), 7);
  assert_int_equal(s.n, 1);
  pt_kube_stream_close(&st);
  pt_kube_stream_close(&st); /* twice is fine */

  json_t *status = json_pack("{s:s,s:i}", "kind", "Status", "code", 410);
  assert_int_equal(pt_kube_status_code(status), 410);
  json_object_set_new(status, "kind", json_string("Pod"));
  assert_int_equal(pt_kube_status_code(status), 0);
  json_decref(status);
  assert_string_equal(pt_kube_watch_type_name(PT_KUBE_BOOKMARK), "BOOKMARK");
}

static void test_slim_objects(void **state)
{
  (void)state;
  json_error_t e;
  json_t *pod = json_loads(
    "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\",\"uid\":\"u1\",\"resourceVersion\":\"7\","
    "\"labels\":{\"a\":\"b\"},\"managedFields\":[{\"x\":1}]},"
    "\"spec\":{\"nodeName\":\"n1\",\"containers\":[{\"name\":\"app\",\"image\":\"r/a:v1\",\"env\":[]}],"
    "\"initContainers\":[{\"name\":\"init\",\"image\":\"r/i:v1\"}]},"
    "\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"app\",\"state\":{\"waiting\":"
    "{\"reason\":\"ErrImagePull\"}}}]}}", 0, &e);
  assert_non_null(pod);
  json_t *slim = pt_kube_pod_slim(pod);
  json_t *want = json_loads(
    "{\"namespace\":\"shop\",\"name\":\"web\",\"uid\":\"u1\",\"resourceVersion\":\"7\",\"node\":\"n1\","
    "\"phase\":\"Pending\",\"containers\":[{\"name\":\"app\",\"image\":\"r/a:v1\",\"waiting\":\"ErrImagePull\"}],"
    "\"initContainers\":[{\"name\":\"init\",\"image\":\"r/i:v1\"}]}", 0, &e);
  assert_true(json_equal(slim, want));
  json_decref(slim);
  json_decref(want);
  json_decref(pod);
  json_t *nameless = json_pack("{s:{s:s}}", "metadata", "name", "x");
  assert_null(pt_kube_pod_slim(nameless));
  json_decref(nameless);

  json_t *ev = json_loads(
    "{\"metadata\":{\"name\":\"web.1\",\"namespace\":\"shop\",\"uid\":\"e1\"},"
    "\"involvedObject\":{\"kind\":\"Pod\",\"namespace\":\"shop\",\"name\":\"web\",\"uid\":\"u1\"},"
    "\"reason\":\"Failed\",\"message\":\"Failed to pull image \\\"r/a:nope\\\": not found\","
    "\"source\":{\"component\":\"kubelet\",\"host\":\"n1\"},\"count\":3,"
    "\"firstTimestamp\":\"2026-01-01T00:00:00Z\",\"lastTimestamp\":\"2026-01-01T00:01:00Z\"}", 0, &e);
  assert_non_null(ev);
  json_t *se = pt_kube_event_slim(ev);
  assert_non_null(se);
  assert_string_equal(json_string_value(json_object_get(se, "pod")), "web");
  assert_string_equal(json_string_value(json_object_get(se, "node")), "n1");
  assert_string_equal(json_string_value(json_object_get(se, "image")), "r/a:nope");
  assert_string_equal(json_string_value(json_object_get(se, "kind")), "failed");
  assert_int_equal(json_integer_value(json_object_get(se, "count")), 3);
  double span = json_number_value(json_object_get(se, "lastTimestamp")) -
                json_number_value(json_object_get(se, "firstTimestamp"));
  assert_true(span > 59.999 && span < 60.001);
  json_decref(se);
  /* reportingInstance when source.host is empty; eventTime when no timestamps. */
  json_object_set_new(ev, "source", json_object());
  json_object_set_new(ev, "reportingInstance", json_string("n2"));
  json_object_del(ev, "firstTimestamp");
  json_object_del(ev, "lastTimestamp");
  json_object_set_new(ev, "eventTime", json_string("2026-01-01T00:02:00.500000Z"));
  se = pt_kube_event_slim(ev);
  assert_string_equal(json_string_value(json_object_get(se, "node")), "n2");
  assert_true(json_number_value(json_object_get(se, "lastTimestamp")) > 0);
  json_decref(se);
  /* Not about a pod, or not about images: skipped. */
  json_object_set_new(json_object_get(ev, "involvedObject"), "kind", json_string("Node"));
  assert_null(pt_kube_event_slim(ev));
  json_object_set_new(json_object_get(ev, "involvedObject"), "kind", json_string("Pod"));
  json_object_set_new(ev, "message", json_string("Back-off restarting failed container"));
  json_object_set_new(ev, "reason", json_string("BackOff"));
  assert_null(pt_kube_event_slim(ev));
  json_decref(ev);
}


/* The order of the server's configuration sources and what it refuses
 * (core/kubeconfig.h reads each source; spec/unit/kubeconfig.c tests that). */
static void test_config_from_env(void **state)
{
  (void)state;
  char dir[] = "/tmp/pt-kube-unit-XXXXXX";
  char path[256], ca[256], tok[256];
  test_kube_scratch(dir, path, ca, tok);
  test_write_file(path,
             "current-context: dev\n"
             "clusters:\n- {name: c1, cluster: {server: 'https://10.0.0.1:6443', certificate-authority: ca.crt}}\n"
             "- {name: c3, cluster: {server: 'https://c3:443', insecure-skip-tls-verify: true}}\n"
             "contexts:\n- {name: dev, context: {cluster: c1, user: u1}}\n"
             "- {name: insecure, context: {cluster: c3, user: u1}}\n"
             "users:\n- {name: u1, user: {token: abc}}\n");
  struct pt_kubeconfig c;
  char err[512];

  /* In-cluster wins over KUBECONFIG; PULLTRACE_KUBECONFIG wins over both. */
  struct pt_kube_env env = {.service_host = "10.96.0.1", .service_port = "443", .sa_dir = dir,
                            .kubeconfig = path};
  assert_int_equal(pt_kube_config_from_env(&env, &c, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://10.96.0.1:443");
  assert_string_equal(c.token_file, tok);
  assert_string_equal(c.source, "in-cluster");
  pt_kubeconfig_clear(&c);
  env.pulltrace_kubeconfig = path;
  assert_int_equal(pt_kube_config_from_env(&env, &c, err, sizeof(err)), 0);
  assert_string_equal(c.server, "https://10.0.0.1:6443");
  pt_kubeconfig_clear(&c);
  env.pulltrace_kubeconfig = NULL;
  env.sa_dir = "/nonexistent";
  assert_int_equal(pt_kube_config_from_env(&env, &c, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_KUBE_SA_DIR"));

  /* KUBECONFIG: its first path. */
  char list[600];
  snprintf(list, sizeof(list), "%s:/nonexistent/config", path);
  struct pt_kube_env kc = {.kubeconfig = list};
  assert_int_equal(pt_kube_config_from_env(&kc, &c, err, sizeof(err)), 0);
  assert_string_equal(c.token, "abc");
  pt_kubeconfig_clear(&c);

  /* The server never turns certificate checks off. */
  kc.context = "insecure";
  assert_int_equal(pt_kube_config_from_env(&kc, &c, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "KUBECONFIG: "));
  assert_non_null(strstr(err, "insecure-skip-tls-verify is not supported"));
  assert_null(c.server);

  /* No context: the message names the variable that chooses one. */
  test_write_file(path, "clusters: []\n");
  struct pt_kube_env pk = {.pulltrace_kubeconfig = path};
  assert_int_equal(pt_kube_config_from_env(&pk, &c, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "PULLTRACE_KUBECONFIG: "));
  assert_non_null(strstr(err, "set PULLTRACE_KUBE_CONTEXT"));

  struct pt_kube_env none = {0};
  assert_int_equal(pt_kube_config_from_env(&none, &c, err, sizeof(err)), -ENOENT);

  unlink(path);
  unlink(ca);
  unlink(tok);
  rmdir(dir);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_messages),        cmocka_unit_test(test_stream_chunks),
    cmocka_unit_test(test_stream_limits),   cmocka_unit_test(test_slim_objects),
    cmocka_unit_test(test_config_from_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
