/* Unit tests of kubectl-pulltrace's pure parts: sizes, rates, ages, bars and
 * tables; the Server-Sent Events reader (chunking, CRLF, multi-line data,
 * comments); workload kinds and their label selectors; pull views; YAML
 * output that reads back as the same JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/format.h"
#include "cli/output.h"
#include "cli/pull.h"
#include "cli/sse.h"
#include "cli/workload.h"

static void test_units(void **state)
{
  (void)state;
  char b[64];
  assert_string_equal(pt_fmt_bytes(0, b, sizeof(b)), "0 B");
  assert_string_equal(pt_fmt_bytes(1023, b, sizeof(b)), "1023 B");
  assert_string_equal(pt_fmt_bytes(1536, b, sizeof(b)), "1.5 KiB");
  assert_string_equal(pt_fmt_bytes(31457280, b, sizeof(b)), "30.0 MiB");
  assert_string_equal(pt_fmt_bytes(5.5 * 1024 * 1024 * 1024, b, sizeof(b)), "5.5 GiB");
  assert_string_equal(pt_fmt_rate(2097152, b, sizeof(b)), "2.0 MiB/s");
  assert_string_equal(pt_fmt_rate(-1, b, sizeof(b)), "-");
  /* kubectl's AGE column. */
  assert_string_equal(pt_fmt_age(45, b, sizeof(b)), "45s");
  assert_string_equal(pt_fmt_age(119, b, sizeof(b)), "119s");
  assert_string_equal(pt_fmt_age(192, b, sizeof(b)), "3m12s");
  assert_string_equal(pt_fmt_age(300, b, sizeof(b)), "5m");
  assert_string_equal(pt_fmt_age(45 * 60, b, sizeof(b)), "45m");
  assert_string_equal(pt_fmt_age(4 * 3600 + 5 * 60, b, sizeof(b)), "4h5m");
  assert_string_equal(pt_fmt_age(20 * 3600, b, sizeof(b)), "20h");
  assert_string_equal(pt_fmt_age(3 * 86400 + 4 * 3600, b, sizeof(b)), "3d4h");
  assert_string_equal(pt_fmt_age(400 * 86400, b, sizeof(b)), "400d");
  assert_string_equal(pt_fmt_age(-1, b, sizeof(b)), "-");
  /* Durations: tenths under ten seconds. */
  assert_string_equal(pt_fmt_seconds(0.54, b, sizeof(b)), "0.5s");
  assert_string_equal(pt_fmt_seconds(9.94, b, sizeof(b)), "9.9s");
  assert_string_equal(pt_fmt_seconds(75, b, sizeof(b)), "75s");
  assert_string_equal(pt_fmt_seconds(-1, b, sizeof(b)), "-");
}

static void test_bars_and_fitting(void **state)
{
  (void)state;
  struct pt_buf o;
  pt_buf_init(&o);
  pt_fmt_bar(&o, 0.5, 10, false);
  assert_string_equal(o.data, "#####.....");
  pt_buf_reset(&o);
  pt_fmt_bar(&o, 2.0, 4, false); /* clamped */
  assert_string_equal(o.data, "####");
  pt_buf_reset(&o);
  pt_fmt_bar(&o, 0.33, 4, true); /* 10.56 eighths: 1 full cell, 3/8 of the next */
  assert_string_equal(o.data, "█▍░░");
  assert_int_equal(pt_fmt_cells(o.data), 4);
  pt_buf_reset(&o);
  pt_fmt_fit(&o, "registry.example.com/team/app:v1", 12, true);
  assert_string_equal(o.data, "registry.ex…");
  assert_int_equal(pt_fmt_cells(o.data), 12);
  pt_buf_reset(&o);
  pt_fmt_fit(&o, "short", 12, false);
  assert_string_equal(o.data, "short");
  pt_buf_reset(&o);
  pt_fmt_fit(&o, "ééééé", 3, false); /* cut between characters, never inside one */
  assert_string_equal(o.data, "éé~");
  pt_buf_close(&o);
}

static void test_table(void **state)
{
  (void)state;
  struct pt_table t;
  pt_table_init(&t, 3);
  const char *h[] = {"NAME", "STATE", "AGE"};
  const char *r1[] = {"a-long-name", "pulling", "5s"};
  const char *r2[] = {"b", NULL, "3m12s"};
  const char *r3[] = {"c", "done", ""}; /* an empty last cell: no trailing spaces */
  assert_int_equal(pt_table_add(&t, h), 0);
  assert_int_equal(pt_table_add(&t, r1), 0);
  assert_int_equal(pt_table_add(&t, r2), 0);
  assert_int_equal(pt_table_add(&t, r3), 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  pt_table_print(&t, f);
  fclose(f);
  assert_string_equal(text, "NAME          STATE     AGE\n"
                            "a-long-name   pulling   5s\n"
                            "b             <none>    3m12s\n"
                            "c             done\n");
  free(text);
  pt_table_close(&t);
}

struct seen {
  char log[2048];
  int n;
};

static void on_event(void *ud, const char *type, const char *id, const char *data, size_t len)
{
  struct seen *s = ud;
  size_t used = strlen(s->log);
  snprintf(s->log + used, sizeof(s->log) - used, "[%s|%s|%.*s]", type, id, (int)len, data);
  s->n++;
}

static void test_sse_reader(void **state)
{
  (void)state;
  struct seen s = {{0}, 0};
  struct pt_sse_reader r;
  pt_sse_reader_init(&r, on_event, &s);
  const char *stream = "retry: 2000\n: heartbeat\n\nid: 7\nevent: snapshot\ndata: {\"a\":\ndata: 1}\n\n"
                       "id: 8\r\nevent: pull.progress\r\ndata:{\"b\":2}\r\n\r\n"
                       "data: no type\rdata: second\r\r"
                       "event: x\nunknown: y\n\nid: 9\nevent: pull.failed\ndata: {}\n";
  /* One byte at a time: events never depend on how the stream was cut. */
  for (const char *p = stream; *p; p++)
    assert_int_equal(pt_sse_reader_feed(&r, p, 1), 0);
  assert_string_equal(s.log, "[snapshot|7|{\"a\":\n1}][pull.progress|8|{\"b\":2}][message|8|no type\nsecond]");
  /* The last event waits for its blank line; a reconnect drops it but keeps the id. */
  assert_int_equal(s.n, 3);
  assert_string_equal(r.id, "9");
  pt_sse_reader_reset(&r);
  assert_int_equal(pt_sse_reader_feed(&r, "\n", 1), 0);
  assert_int_equal(s.n, 3);
  assert_string_equal(r.id, "9");
  pt_sse_reader_close(&r);

  /* The same stream at once, and in two cuts around a CR LF: the same events. */
  const char *want = "[snapshot|7|{\"a\":\n1}][pull.progress|8|{\"b\":2}][message|8|no type\nsecond]";
  size_t cuts[] = {strlen(stream), (size_t)(strstr(stream, "\r\n") - stream) + 1};
  for (size_t i = 0; i < 2; i++) {
    struct seen all = {{0}, 0};
    pt_sse_reader_init(&r, on_event, &all);
    assert_int_equal(pt_sse_reader_feed(&r, stream, cuts[i]), 0);
    assert_int_equal(pt_sse_reader_feed(&r, stream + cuts[i], strlen(stream) - cuts[i]), 0);
    assert_string_equal(all.log, want);
    assert_string_equal(r.id, "9");
    pt_sse_reader_close(&r);
  }
}

static void test_workloads(void **state)
{
  (void)state;
  const struct pt_workload_kind *k;
  const char *name;
  assert_int_equal(pt_workload_parse("deployment/web", &k, &name), 0);
  assert_string_equal(k->resource, "deployments");
  assert_string_equal(k->api, "apis/apps/v1");
  assert_string_equal(name, "web");
  assert_int_equal(pt_workload_parse("deploy/web", &k, &name), 0);
  assert_string_equal(k->name, "deployment");
  assert_int_equal(pt_workload_parse("deployment.apps/web", &k, &name), 0);
  assert_int_equal(pt_workload_parse("deployment.batch/web", &k, &name), -EINVAL);
  assert_int_equal(pt_workload_parse("po/web-1", &k, &name), 0);
  assert_string_equal(k->api, "api/v1");
  assert_int_equal(pt_workload_parse("sts/db", &k, &name), 0);
  assert_string_equal(k->name, "statefulset");
  assert_int_equal(pt_workload_parse("jobs/x", &k, &name), 0);
  assert_string_equal(k->api, "apis/batch/v1");
  assert_int_equal(pt_workload_parse("web", &k, &name), -EINVAL);
  assert_int_equal(pt_workload_parse("service/web", &k, &name), -EINVAL);
  assert_int_equal(pt_workload_parse("pod/", &k, &name), -EINVAL);
  assert_int_equal(pt_workload_parse("pod/a/b", &k, &name), -EINVAL);

  char err[256];
  struct pt_buf sel;
  pt_buf_init(&sel);
  json_t *d = json_loads("{\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"web\",\"tier\":\"fe\"},"
                         "\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]},"
                         "{\"key\":\"canary\",\"operator\":\"DoesNotExist\"},{\"key\":\"zone\",\"operator\":\"Exists\"},"
                         "{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"1\"]}]}}}", 0, NULL);
  assert_int_equal(pt_workload_parse("deployment/web", &k, &name), 0);
  assert_int_equal(pt_workload_selector(k, d, &sel, err, sizeof(err)), 0);
  assert_string_equal(sel.data, "app=web,tier=fe,env in (a,b),!canary,zone,x notin (1)");
  json_decref(d);
  /* A ReplicationController's selector is a plain map. */
  pt_buf_reset(&sel);
  d = json_loads("{\"spec\":{\"selector\":{\"app\":\"old\"}}}", 0, NULL);
  assert_int_equal(pt_workload_parse("rc/old", &k, &name), 0);
  assert_int_equal(pt_workload_selector(k, d, &sel, err, sizeof(err)), 0);
  assert_string_equal(sel.data, "app=old");
  json_decref(d);
  /* An empty selector would select every pod: refused. */
  pt_buf_reset(&sel);
  d = json_loads("{\"spec\":{\"selector\":{}}}", 0, NULL);
  assert_int_equal(pt_workload_parse("deployment/web", &k, &name), 0);
  assert_int_equal(pt_workload_selector(k, d, &sel, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "empty selector"));
  json_decref(d);
  d = json_loads("{\"spec\":{\"selector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Gt\"}]}}}", 0, NULL);
  pt_buf_reset(&sel);
  assert_int_equal(pt_workload_selector(k, d, &sel, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "\"Gt\" is not supported"));
  json_decref(d);
  pt_buf_close(&sel);
}

static void test_pull_view(void **state)
{
  (void)state;
  json_t *p = json_loads("{\"id\":\"n/1\",\"node\":\"n\",\"image\":\"r/app:v1\",\"state\":\"failed\","
                         "\"error\":{\"reason\":\"Failed\",\"message\":\"not found\"},\"percent\":null,"
                         "\"totalBytes\":10,\"downloadedBytes\":4,\"bytesPerSecond\":2.5,\"etaSeconds\":null,"
                         "\"startedAt\":\"2026-11-21T10:00:00.000Z\",\"layersTotal\":3,\"layersDone\":1,"
                         "\"pods\":[{\"namespace\":\"shop\",\"name\":\"web-1\",\"container\":\"web\"},"
                         "{\"namespace\":\"ops\",\"name\":\"job-2\"}]}", 0, NULL);
  struct pt_pull_view v;
  pt_pull_view(p, &v);
  assert_string_equal(v.error_message, "not found");
  assert_true(v.percent < 0 && v.eta_seconds < 0);
  assert_true(v.bytes_per_second == 2.5);
  assert_true(v.started_at == 1795255200.0);
  assert_true(pt_pull_finished(&v));
  assert_true(pt_pull_serves(&v, "shop", "web-1", "web"));
  assert_false(pt_pull_serves(&v, "shop", "web-1", "sidecar"));
  assert_true(pt_pull_serves(&v, "ops", "job-2", "any")); /* no container named: any */
  assert_false(pt_pull_serves(&v, "shop", "job-2", NULL));
  struct pt_buf o;
  pt_buf_init(&o);
  pt_pull_pods(&v, "shop", &o);
  assert_string_equal(o.data, "web-1 +1");
  pt_buf_reset(&o);
  pt_pull_pods(&v, NULL, &o);
  assert_string_equal(o.data, "shop/web-1 +1");
  pt_buf_close(&o);
  json_decref(p);
}

static void test_yaml_output(void **state)
{
  (void)state;
  json_t *d = json_loads("{\"apiVersion\":\"v1\",\"n\":12,\"f\":33.33,\"t\":true,\"z\":null,\"e\":[],"
                         "\"s\":[\"123\",\"true\",\"null\",\"2026-11-21T10:00:00Z\",\"\",\"a: b\",\"plain\","
                         "\"0x1F\",\"1.5e3\",\"~\",\"on\"],\"o\":{\"k\":\"v\"}}", 0, NULL);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_int_equal(pt_output_yaml(d, f), 0);
  fclose(f);
  assert_string_equal(text, "apiVersion: v1\n"
                            "\"n\": 12\n" /* a YAML 1.1 boolean as a key */
                            "f: 33.33\n"
                            "t: true\n"
                            "z: null\n"
                            "e: []\n"
                            "s:\n"
                            "- \"123\"\n"
                            "- \"true\"\n"
                            "- \"null\"\n"
                            "- \"2026-11-21T10:00:00Z\"\n"
                            "- \"\"\n"
                            "- 'a: b'\n"
                            "- plain\n"
                            "- \"0x1F\"\n"
                            "- \"1.5e3\"\n"
                            "- \"~\"\n"
                            "- \"on\"\n"
                            "o:\n"
                            "  k: v\n");
  free(text);
  json_decref(d);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_units),         cmocka_unit_test(test_bars_and_fitting),
    cmocka_unit_test(test_table),         cmocka_unit_test(test_sse_reader),
    cmocka_unit_test(test_workloads),     cmocka_unit_test(test_pull_view),
    cmocka_unit_test(test_yaml_output),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
