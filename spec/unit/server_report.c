/* Report validation: a valid report is accepted; every field made wrong in
 * turn (missing, wrong type, out of range, malformed) is rejected naming that
 * field, and nothing is returned. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "server/report.h"

static const char *valid =
  "{\"schemaVersion\":\"v1\",\"nodeName\":\"node-a\",\"agentVersion\":\"0.1.0\","
  "\"bootId\":\"9b0c3f3e\",\"seq\":42,\"timestamp\":\"2026-11-21T10:00:05.120Z\","
  "\"pulls\":[{\"id\":\"node-a/2f1c0a5e6b7d8c9e-1763719200\",\"imageRef\":\"127.0.0.1/demo/app\","
  "\"manifestDigest\":\"sha256:2f1c0a5e6b7d8c9e2f1c0a5e6b7d8c9e2f1c0a5e6b7d8c9e2f1c0a5e6b7d8c9e\","
  "\"indexDigest\":null,\"startedAt\":\"2026-11-21T10:00:00.010Z\",\"completedAt\":null,"
  "\"totalKnown\":true,\"totalBytes\":300,\"downloadedBytes\":150,"
  "\"layers\":[{\"digest\":\"sha256:aa\",\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
  "\"totalBytes\":100,\"downloadedBytes\":100,\"state\":\"cached\",\"startedAt\":null,\"updatedAt\":null},"
  "{\"digest\":\"sha256:bb\",\"mediaType\":null,\"totalBytes\":200,\"downloadedBytes\":50,"
  "\"state\":\"downloading\",\"startedAt\":\"2026-11-21T10:00:00.300Z\",\"updatedAt\":\"2026-11-21T10:00:05Z\"}]}],"
  "\"unattributed\":[{\"ref\":\"layer-sha256:dd\",\"kind\":\"layer\",\"digest\":\"sha256:dd\","
  "\"totalBytes\":10,\"downloadedBytes\":4,\"startedAt\":\"2026-11-21T10:00:04Z\",\"updatedAt\":null}]}";

/* Walks "a.b[2].c" to the parent object/array of the last component. */
static json_t *walk(json_t *root, const char *path, char *last, size_t lastlen, long *index)
{
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", path);
  json_t *cur = root;
  char *save = NULL;
  char *tok = strtok_r(buf, ".", &save);
  while (tok) {
    char *next = strtok_r(NULL, ".", &save);
    char *br = strchr(tok, '[');
    long idx = -1;
    if (br) {
      idx = strtol(br + 1, NULL, 10);
      *br = '\0';
    }
    if (!next) {
      snprintf(last, lastlen, "%s", tok);
      if (idx >= 0) {
        *index = idx;
        return json_object_get(cur, tok);
      }
      *index = -1;
      return cur;
    }
    cur = json_object_get(cur, tok);
    if (idx >= 0)
      cur = json_array_get(cur, (size_t)idx);
    tok = next;
  }
  return NULL;
}

struct mutation {
  const char *path;
  const char *value; /* JSON text, or NULL to delete */
  const char *field; /* expected field in the error */
};

static const struct mutation mutations[] = {
  {"schemaVersion", NULL, "schemaVersion"},
  {"schemaVersion", "\"v2\"", "schemaVersion"},
  {"schemaVersion", "1", "schemaVersion"},
  {"nodeName", NULL, "nodeName"},
  {"nodeName", "\"\"", "nodeName"},
  {"nodeName", "\"node/a\"", "nodeName"},
  {"nodeName", "7", "nodeName"},
  {"agentVersion", NULL, "agentVersion"},
  {"agentVersion", "null", "agentVersion"},
  {"bootId", NULL, "bootId"},
  {"bootId", "[]", "bootId"},
  {"seq", NULL, "seq"},
  {"seq", "0", "seq"},
  {"seq", "-3", "seq"},
  {"seq", "1.5", "seq"},
  {"seq", "\"4\"", "seq"},
  {"timestamp", NULL, "timestamp"},
  {"timestamp", "\"yesterday\"", "timestamp"},
  {"timestamp", "null", "timestamp"},
  {"pulls", NULL, "pulls"},
  {"pulls", "{}", "pulls"},
  {"unattributed", NULL, "unattributed"},
  {"unattributed", "null", "unattributed"},
  {"pulls[0]", "3", "pulls[0]"},
  {"pulls[0].id", NULL, "pulls[0].id"},
  {"pulls[0].id", "\"\"", "pulls[0].id"},
  {"pulls[0].imageRef", "5", "pulls[0].imageRef"},
  {"pulls[0].manifestDigest", NULL, "pulls[0].manifestDigest"},
  {"pulls[0].manifestDigest", "\"not-a-digest\"", "pulls[0].manifestDigest"},
  {"pulls[0].manifestDigest", "null", "pulls[0].manifestDigest"},
  {"pulls[0].indexDigest", "\"sha256:\"", "pulls[0].indexDigest"},
  {"pulls[0].startedAt", "\"2026-13-01T00:00:00Z\"", "pulls[0].startedAt"},
  {"pulls[0].completedAt", "true", "pulls[0].completedAt"},
  {"pulls[0].totalKnown", NULL, "pulls[0].totalKnown"},
  {"pulls[0].totalKnown", "\"yes\"", "pulls[0].totalKnown"},
  {"pulls[0].totalBytes", "-1", "pulls[0].totalBytes"},
  {"pulls[0].totalBytes", "null", "pulls[0].totalBytes"},
  {"pulls[0].downloadedBytes", "301", "pulls[0].downloadedBytes"},
  {"pulls[0].downloadedBytes", "1e3", "pulls[0].downloadedBytes"},
  {"pulls[0].layers", NULL, "pulls[0].layers"},
  {"pulls[0].layers", "\"x\"", "pulls[0].layers"},
  {"pulls[0].layers[1]", "[]", "pulls[0].layers[1]"},
  {"pulls[0].layers[1].digest", NULL, "pulls[0].layers[1].digest"},
  {"pulls[0].layers[1].digest", "\"SHA256:BB\"", "pulls[0].layers[1].digest"},
  {"pulls[0].layers[1].mediaType", "1", "pulls[0].layers[1].mediaType"},
  {"pulls[0].layers[1].totalBytes", "-5", "pulls[0].layers[1].totalBytes"},
  {"pulls[0].layers[1].downloadedBytes", NULL, "pulls[0].layers[1].downloadedBytes"},
  {"pulls[0].layers[1].downloadedBytes", "201", "pulls[0].layers[1].downloadedBytes"},
  {"pulls[0].layers[1].state", "\"paused\"", "pulls[0].layers[1].state"},
  {"pulls[0].layers[1].state", NULL, "pulls[0].layers[1].state"},
  {"pulls[0].layers[1].startedAt", "12", "pulls[0].layers[1].startedAt"},
  {"pulls[0].layers[1].updatedAt", NULL, "pulls[0].layers[1].updatedAt"},
  {"unattributed[0].ref", NULL, "unattributed[0].ref"},
  {"unattributed[0].kind", "\"blob\"", "unattributed[0].kind"},
  {"unattributed[0].digest", "\"zz\"", "unattributed[0].digest"},
  {"unattributed[0].totalBytes", "\"10\"", "unattributed[0].totalBytes"},
  {"unattributed[0].downloadedBytes", "-1", "unattributed[0].downloadedBytes"},
  {"unattributed[0].startedAt", "\"10:00\"", "unattributed[0].startedAt"},
  {"unattributed[0].updatedAt", NULL, "unattributed[0].updatedAt"},
};

static void test_valid(void **state)
{
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(valid, strlen(valid), &r, err, sizeof(err), field, sizeof(field)), 0);
  assert_string_equal(r.node, "node-a");
  assert_int_equal(r.seq, 42);
  assert_int_equal(r.npulls, 1);
  assert_int_equal(r.pulls[0].nlayers, 2);
  assert_int_equal(r.pulls[0].layers[0].state, PT_LAYER_CACHED);
  assert_null(r.pulls[0].layers[1].media_type);
  assert_int_equal(r.pulls[0].layers[1].downloaded, 50);
  assert_true(r.pulls[0].total_known);
  assert_null(r.pulls[0].index_digest);
  assert_int_equal(r.nunattributed, 1);
  assert_string_equal(r.unattributed[0].kind, "layer");
  pt_report_free(&r);
  /* JSON whitespace after the document is fine. */
  char spaced[4096];
  snprintf(spaced, sizeof(spaced), "%s \r\n\t\n", valid);
  assert_int_equal(pt_report_parse(spaced, strlen(spaced), &r, err, sizeof(err), field, sizeof(field)), 0);
  pt_report_free(&r);
}

static void test_every_field_wrong(void **state)
{
  for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
    const struct mutation *m = &mutations[i];
    json_t *root = json_loads(valid, 0, NULL);
    assert_non_null(root);
    char last[64];
    long idx = -1;
    json_t *parent = walk(root, m->path, last, sizeof(last), &idx);
    assert_non_null(parent);
    json_t *v = m->value ? json_loads(m->value, JSON_DECODE_ANY, NULL) : NULL;
    if (idx >= 0) {
      assert_non_null(v);
      json_array_set_new(parent, (size_t)idx, v);
    } else if (v) {
      json_object_set_new(parent, last, v);
    } else {
      json_object_del(parent, last);
    }
    char *body = json_dumps(root, JSON_COMPACT);
    struct pt_report r;
    char err[256], field[160];
    int rc = pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field));
    if (rc != -EINVAL || strcmp(field, m->field) != 0)
      fail_msg("mutation %zu (%s = %s): rc %d field \"%s\" error \"%s\"", i, m->path,
               m->value ? m->value : "<deleted>", rc, field, err);
    assert_true(*err);
    assert_null(r.arena);
    assert_null(r.pulls);
    free(body);
    json_decref(root);
  }
}

static void test_whole_body(void **state)
{
  static const char *bodies[] = {"", "{", "[]", "null", "{\"schemaVersion\":\"v1\",\"schemaVersion\":\"v1\"}",
                                 "\xff\xfe", "{\"a\":1}garbage"};
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    struct pt_report r;
    char err[256], field[160];
    assert_int_equal(pt_report_parse(bodies[i], strlen(bodies[i]), &r, err, sizeof(err), field, sizeof(field)),
                     -EINVAL);
    assert_true(*err);
  }
}

static void test_duplicate_pull_ids(void **state)
{
  json_t *root = json_loads(valid, 0, NULL);
  json_t *pulls = json_object_get(root, "pulls");
  json_array_append_new(pulls, json_deep_copy(json_array_get(pulls, 0)));
  char *body = json_dumps(root, JSON_COMPACT);
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field)), -EINVAL);
  assert_string_equal(field, "pulls[1].id");
  free(body);
  json_decref(root);
}

static void test_unknown_members_ignored(void **state)
{
  json_t *root = json_loads(valid, 0, NULL);
  json_object_set_new(root, "futureField", json_string("x"));
  json_object_set_new(json_array_get(json_object_get(root, "pulls"), 0), "extra", json_integer(1));
  char *body = json_dumps(root, JSON_COMPACT);
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field)), 0);
  pt_report_free(&r);
  free(body);
  json_decref(root);
}

/* The streaming parser checks what a document parser does: duplicate keys at
 * any depth, \u0000, integers beyond 64 bits, nesting depth, one value. */
/* Parses body with root member "containerd" set to ctrd (JSON text, NULL:
 * absent). */
static int parse_with_containerd(const char *ctrd, struct pt_report *r, char *err, char *field)
{
  json_t *root = json_loads(valid, 0, NULL);
  assert_non_null(root);
  if (ctrd) {
    json_t *v = json_loads(ctrd, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_object_set_new(root, "containerd", v);
  }
  char *body = json_dumps(root, JSON_COMPACT);
  int rc = pt_report_parse(body, strlen(body), r, err, 256, field, 160);
  free(body);
  json_decref(root);
  return rc;
}

/* The optional containerd status: absent (agents before it) and
 * reachable:true read as reachable; unreachable carries since and error;
 * every malformed shape is refused naming its member. */
static void test_containerd(void **state)
{
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(parse_with_containerd(NULL, &r, err, field), 0);
  assert_true(r.containerd_reachable);
  pt_report_free(&r);
  assert_int_equal(parse_with_containerd("{\"reachable\":true}", &r, err, field), 0);
  assert_true(r.containerd_reachable);
  assert_null(r.containerd_error);
  pt_report_free(&r);
  assert_int_equal(parse_with_containerd("{\"reachable\":true,\"since\":null,\"error\":null}", &r, err, field), 0);
  assert_true(r.containerd_reachable);
  pt_report_free(&r);
  assert_int_equal(parse_with_containerd("{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\","
                                         "\"error\":\"gRPC code 14: connection refused\",\"later\":1}",
                                         &r, err, field), 0);
  assert_false(r.containerd_reachable);
  assert_string_equal(r.containerd_error, "gRPC code 14: connection refused");
  double since = r.containerd_since;
  assert_true(since == 1795255201.0); /* date -u -d 2026-11-21T10:00:01Z +%s */
  pt_report_shift(&r, 10);
  assert_true(r.containerd_since == since + 10);
  pt_report_free(&r);

  static const struct {
    const char *value, *field;
  } wrong[] = {
    {"null", "containerd"},
    {"false", "containerd"},
    {"[]", "containerd"},
    {"{}", "containerd.reachable"},
    {"{\"reachable\":\"no\"}", "containerd.reachable"},
    {"{\"reachable\":0}", "containerd.reachable"},
    {"{\"reachable\":false,\"error\":\"x\"}", "containerd.since"},
    {"{\"reachable\":false,\"since\":null,\"error\":\"x\"}", "containerd.since"},
    {"{\"reachable\":false,\"since\":\"soon\",\"error\":\"x\"}", "containerd.since"},
    {"{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\"}", "containerd.error"},
    {"{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\",\"error\":\"\"}", "containerd.error"},
    {"{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\",\"error\":7}", "containerd.error"},
    {"{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\",\"error\":\"a\\nb\"}", "containerd.error"},
    {"{\"reachable\":true,\"since\":\"2026-11-21T10:00:01Z\"}", "containerd.since"},
    {"{\"reachable\":true,\"error\":\"x\"}", "containerd.error"},
  };
  for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
    int rc = parse_with_containerd(wrong[i].value, &r, err, field);
    if (rc != -EINVAL || strcmp(field, wrong[i].field) != 0)
      fail_msg("containerd %s: rc %d field \"%s\" error \"%s\"", wrong[i].value, rc, field, err);
    assert_null(r.arena);
  }
  /* One byte over the limit of the error text. */
  char big[PT_REPORT_MAX_CONTAINERD_ERROR + 128];
  int n = snprintf(big, sizeof(big), "{\"reachable\":false,\"since\":\"2026-11-21T10:00:01Z\",\"error\":\"");
  memset(big + n, 'e', PT_REPORT_MAX_CONTAINERD_ERROR + 1);
  snprintf(big + n + PT_REPORT_MAX_CONTAINERD_ERROR + 1, sizeof(big) - (size_t)n - PT_REPORT_MAX_CONTAINERD_ERROR - 1,
           "\"}");
  assert_int_equal(parse_with_containerd(big, &r, err, field), -EINVAL);
  assert_string_equal(field, "containerd.error");
}

static void test_json_level_errors(void **state)
{
  static const char *bodies[] = {
    "{\"futureField\":{\"a\":1,\"a\":2}}",
    "{\"x\":[{\"k\":1,\"k\":1}]}",
    "{\"nodeName\":\"a\\u0000b\"}",
    /* Not well-formed UTF-8: an overlong form (what yajl's own check lets
     * through), a surrogate, beyond U+10FFFF, a cut sequence, in a value and
     * in a key. */
    "{\"bootId\":\"\xc1\x9d\"}",
    "{\"bootId\":\"\xe0\x80\xaf\"}",
    "{\"bootId\":\"\xed\xa0\x80\"}",
    "{\"bootId\":\"\xf4\x90\x80\x80\"}",
    "{\"bootId\":\"\xe2\x82\"}",
    "{\"\xc0\xaf\":1}",
    /* Whitespace a lax parser (yajl) allowed and JSON does not. */
    "{\"seq\"\v:1}",
    "{\"seq\":1\f}",
    "{\"seq\":99999999999999999999}",
    "{\"seq\":1e999}",
    "{} {}",
    /* An unterminated string after the document: a streaming parser waits for the rest. */
    "{}\"",
    "{} \"}",
    "{}\"x\n",
    "7",
    "\"v1\"",
  };
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    struct pt_report r;
    char err[256], field[160];
    assert_int_equal(pt_report_parse(bodies[i], strlen(bodies[i]), &r, err, sizeof(err), field, sizeof(field)),
                     -EINVAL);
    if (strncmp(err, "invalid JSON: ", 14) != 0)
      fail_msg("body %zu: error \"%s\"", i, err);
    assert_string_equal(field, "");
  }
  char deep[5000];
  size_t n = 0;
  n += (size_t)snprintf(deep, sizeof(deep), "{\"x\":");
  for (int i = 0; i < 2100; i++)
    deep[n++] = '[';
  for (int i = 0; i < 2100; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(deep, n, &r, err, sizeof(err), field, sizeof(field)), -EINVAL);
  assert_non_null(strstr(err, "depth"));
}

/* Validation follows the schema's order, not the body's: the same first error
 * whatever order the members come in. */
static void test_member_order(void **state)
{
  json_t *root = json_loads(valid, 0, NULL);
  json_object_set_new(root, "seq", json_integer(0));
  json_object_set_new(json_array_get(json_object_get(root, "pulls"), 0), "totalBytes", json_string("x"));
  const char *keys[] = {"unattributed", "pulls", "timestamp", "seq", "bootId", "agentVersion", "nodeName",
                        "schemaVersion"};
  json_t *rev = json_object();
  for (size_t i = 0; i < 8; i++)
    json_object_set(rev, keys[i], json_object_get(root, keys[i]));
  char *body = json_dumps(rev, JSON_COMPACT | JSON_PRESERVE_ORDER);
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field)), -EINVAL);
  assert_string_equal(field, "seq");
  assert_string_equal(err, "must be >= 1");
  free(body);
  json_decref(rev);
  json_decref(root);
}

/* Arrays past their limit are counted, not kept, and rejected by size. */
static void test_array_limits(void **state)
{
  json_t *root = json_loads(valid, 0, NULL);
  json_t *u = json_object_get(root, "unattributed");
  for (size_t i = 0; i < PT_REPORT_MAX_UNATTRIBUTED + 5; i++)
    json_array_append_new(u, json_integer(1));
  char *body = json_dumps(root, JSON_COMPACT);
  struct pt_report r;
  char err[256], field[160];
  assert_int_equal(pt_report_parse(body, strlen(body), &r, err, sizeof(err), field, sizeof(field)), -EINVAL);
  assert_string_equal(field, "unattributed");
  assert_string_equal(err, "more than 2000 entries");
  free(body);
  json_decref(root);
}

/* valid with its first `from` replaced by `to`, parsed: its result, and the
 * error and field in err/field. */
static int parse_with(const char *from, const char *to, char *err, size_t errlen, char *field, size_t fieldlen)
{
  const char *at = strstr(valid, from);
  assert_non_null(at);
  char body[4096];
  int n = snprintf(body, sizeof(body), "%.*s%s%s", (int)(at - valid), valid, to, at + strlen(from));
  assert_true(n > 0 && (size_t)n < sizeof(body));
  struct pt_report r;
  int rc = pt_report_parse(body, (size_t)n, &r, err, errlen, field, fieldlen);
  if (rc == 0)
    pt_report_free(&r);
  return rc;
}

/* Integers up to int64's bounds are integers; one past them is a JSON error
 * (as with a document parser), and a number with a fraction or an exponent
 * is not an integer. */
static void test_integer_bounds(void **state)
{
  char err[256], field[160];
  assert_int_equal(parse_with("\"seq\":42", "\"seq\":9223372036854775807", err, sizeof(err), field, sizeof(field)), 0);
  assert_int_equal(parse_with("\"seq\":42", "\"seq\":-9223372036854775808", err, sizeof(err), field, sizeof(field)),
                   -EINVAL);
  assert_string_equal(field, "seq");
  assert_string_equal(err, "must be >= 1");
  static const char *const too_big[] = {"9223372036854775808", "-9223372036854775809", "18446744073709551615",
                                        "18446744073709551616", "-18446744073709551616", "123456789012345678901"};
  for (size_t i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++) {
    char to[64];
    snprintf(to, sizeof(to), "\"seq\":%s", too_big[i]);
    assert_int_equal(parse_with("\"seq\":42", to, err, sizeof(err), field, sizeof(field)), -EINVAL);
    if (!strstr(err, "too big"))
      fail_msg("%s: error \"%s\"", too_big[i], err);
    assert_string_equal(field, "");
  }
  static const char *const reals[] = {"42.0", "4.2e1", "42E0", "-1.5", "1e400"};
  for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
    char to[64];
    snprintf(to, sizeof(to), "\"seq\":%s", reals[i]);
    assert_int_equal(parse_with("\"seq\":42", to, err, sizeof(err), field, sizeof(field)), -EINVAL);
    if (i < 4) {
      assert_string_equal(field, "seq");
      assert_string_equal(err, "must be an integer");
    } else {
      assert_non_null(strstr(err, "real number overflow"));
    }
  }
}

/* A control character (below 0x20, or DEL) anywhere in a string field is
 * rejected, at any position of a long string; other characters, multibyte
 * ones included, are not. */
static void test_control_characters(void **state)
{
  char err[256], field[160];
  static const char *const bad[] = {"\\u0001", "\\u001f", "\\u007f", "\\t", "\\n", "\x7f"};
  for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
    for (int pos = 0; pos <= 20; pos++) {
      char to[128];
      snprintf(to, sizeof(to), "\"bootId\":\"%.*s%s%.*s\"", pos, "abcdefghijklmnopqrstuvwxyz", bad[b], 20 - pos,
               "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
      assert_int_equal(parse_with("\"bootId\":\"9b0c3f3e\"", to, err, sizeof(err), field, sizeof(field)), -EINVAL);
      assert_string_equal(field, "bootId");
      assert_string_equal(err, "contains control characters");
    }
  }
  static const char *const good[] = {"\" ~!\\u00e9\\u0080\\u00ff-01234567\"", "\"\xc3\xa9\xc2\x80\xe2\x82\xac abcdefgh\"",
                                     "\"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"", "\"                \""};
  for (size_t g = 0; g < sizeof(good) / sizeof(good[0]); g++) {
    char to[128];
    snprintf(to, sizeof(to), "\"bootId\":%s", good[g]);
    if (parse_with("\"bootId\":\"9b0c3f3e\"", to, err, sizeof(err), field, sizeof(field)) != 0)
      fail_msg("%s: error \"%s\" at %s", good[g], err, field);
  }
}

/* Strict UTF-8 (RFC 3629) in a report: every boundary of the table in its
 * section 4, in a string of the body (and, for the bad ones, in a key). */
static void test_utf8(void **state)
{
  static const char *const good[] = {"plain", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                                     "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
                                     "caf\xc3\xa9 \xe2\x82\xac",
                                     "sha256:0123456789abcdef caf\xc3\xa9 0123456789", "01234567\xf0\x90\x80\x80"};
  static const char *const bad[] = {"\x80", "\xbf", "\xc0\xaf", "\xc1\x9d", "\xc2", "\xc2\x41", "\xe0\x9f\xbf",
                                    "\xed\xa0\x80", "\xed\xbf\xbf", "\xe2\x82", "\xf0\x8f\xbf\xbf",
                                    "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "ok\xe2\x82",
                                    "0123456789abcdef\xc0\xaf", "01234567\xed\xa0\x80 and more ASCII",
                                    "0123456789abcde\xe2\x82", "01234567012345670123456\x80"};
  char err[256], field[160], to[160];
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    snprintf(to, sizeof(to), "\"bootId\":\"%s\"", good[i]);
    if (parse_with("\"bootId\":\"9b0c3f3e\"", to, err, sizeof(err), field, sizeof(field)) != 0)
      fail_msg("good %zu rejected: %s", i, err);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(to, sizeof(to), "\"bootId\":\"%s\"", bad[i]);
    if (parse_with("\"bootId\":\"9b0c3f3e\"", to, err, sizeof(err), field, sizeof(field)) != -EINVAL ||
        strncmp(err, "invalid JSON: ", 14) != 0 || !strstr(err, "UTF-8"))
      fail_msg("bad %zu in a value: \"%s\"", i, err);
    snprintf(to, sizeof(to), "\"x%s\":1,\"bootId\"", bad[i]);
    if (parse_with("\"bootId\"", to, err, sizeof(err), field, sizeof(field)) != -EINVAL ||
        strncmp(err, "invalid JSON: ", 14) != 0 || !strstr(err, "UTF-8"))
      fail_msg("bad %zu in a key: \"%s\"", i, err);
  }
}

static void test_digest(void **state)
{
  assert_true(pt_digest_valid("sha256:abc"));
  assert_true(pt_digest_valid("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"));
  assert_false(pt_digest_valid("sha256"));
  assert_false(pt_digest_valid(":abc"));
  assert_false(pt_digest_valid("sha256:"));
  assert_false(pt_digest_valid("sha256:ab/c"));
  assert_false(pt_digest_valid("-sha:ab"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_valid),
    cmocka_unit_test(test_every_field_wrong),
    cmocka_unit_test(test_whole_body),
    cmocka_unit_test(test_duplicate_pull_ids),
    cmocka_unit_test(test_unknown_members_ignored),
    cmocka_unit_test(test_containerd),
    cmocka_unit_test(test_json_level_errors),
    cmocka_unit_test(test_member_order),
    cmocka_unit_test(test_array_limits),
    cmocka_unit_test(test_digest),
    cmocka_unit_test(test_integer_bounds),
    cmocka_unit_test(test_control_characters),
    cmocka_unit_test(test_utf8),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
