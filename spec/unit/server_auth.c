/* Token checks (docs/security.md): the TokenReview and SubjectAccessReview
 * bodies and answers, the token's expiry, the agent rule (service account,
 * node claim, pod lookup), and the cache of server/authn.h driven through a
 * fake transport: hits, shared reviews, expiry, back-offs, the access
 * review, the size bound, cancellation. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/clock.h"
#include "server/authn.h"
#include "server/identity.h"

/* ---- answers as the API server writes them ---------------------------------- */

static const char review_ok[] =
  "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"metadata\":{\"creationTimestamp\":null},"
  "\"spec\":{\"token\":\"x\",\"audiences\":[\"pulltrace\"]},"
  "\"status\":{\"authenticated\":true,\"user\":{\"username\":\"system:serviceaccount:pulltrace:pulltrace-agent\","
  "\"uid\":\"4b1e\",\"groups\":[\"system:serviceaccounts\",\"system:serviceaccounts:pulltrace\","
  "\"system:authenticated\"],\"extra\":{\"authentication.kubernetes.io/credential-id\":[\"JTI=1\"],"
  "\"authentication.kubernetes.io/node-name\":[\"node-a\"],\"authentication.kubernetes.io/node-uid\":[\"n1\"],"
  "\"authentication.kubernetes.io/pod-name\":[\"agent-x\"],\"authentication.kubernetes.io/pod-uid\":[\"p1\"]}},"
  "\"audiences\":[\"pulltrace\"]}}";

static const char review_no_node[] =
  "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"metadata\":{},"
  "\"spec\":{\"token\":\"x\"},\"status\":{\"authenticated\":true,\"user\":{\"username\":"
  "\"system:serviceaccount:pulltrace:pulltrace-agent\",\"extra\":{\"authentication.kubernetes.io/pod-name\":"
  "[\"agent-x\"],\"authentication.kubernetes.io/pod-uid\":[\"p1\"]}},\"audiences\":[\"pulltrace\"]}}";

static const char review_user[] =
  "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{},\"status\":"
  "{\"authenticated\":true,\"user\":{\"username\":\"alice\",\"groups\":[\"dev\",\"system:authenticated\"]},"
  "\"audiences\":[\"https://kubernetes.default.svc\"]}}";

static const char review_rejected[] =
  "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{},\"status\":"
  "{\"user\":{},\"error\":\"[invalid bearer token, service account token has expired]\"}}";

static const char sar_allowed[] =
  "{\"kind\":\"SubjectAccessReview\",\"apiVersion\":\"authorization.k8s.io/v1\",\"spec\":{},"
  "\"status\":{\"allowed\":true,\"reason\":\"RBAC: allowed\"}}";
static const char sar_denied[] =
  "{\"kind\":\"SubjectAccessReview\",\"apiVersion\":\"authorization.k8s.io/v1\",\"spec\":{},"
  "\"status\":{\"allowed\":false}}";

/* ---- identity ------------------------------------------------------------------ */

static void test_tokenreview_body(void **state)
{
  (void)state;
  char *s = pt_identity_tokenreview_body("t0k", "pulltrace");
  json_t *o = json_loads(s, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(o, "kind")), "TokenReview");
  assert_string_equal(json_string_value(json_object_get(o, "apiVersion")), "authentication.k8s.io/v1");
  json_t *spec = json_object_get(o, "spec");
  assert_string_equal(json_string_value(json_object_get(spec, "token")), "t0k");
  assert_string_equal(json_string_value(json_array_get(json_object_get(spec, "audiences"), 0)), "pulltrace");
  json_decref(o);
  free(s);
  s = pt_identity_tokenreview_body("t0k", NULL);
  o = json_loads(s, 0, NULL);
  assert_null(json_object_get(json_object_get(o, "spec"), "audiences"));
  json_decref(o);
  free(s);
}

static void test_parse_tokenreview(void **state)
{
  (void)state;
  struct pt_identity id;
  char why[256];
  assert_int_equal(pt_identity_parse_tokenreview(review_ok, strlen(review_ok), "pulltrace", &id, why, sizeof(why)),
                   PT_REVIEW_AUTHENTICATED);
  assert_string_equal(id.username, "system:serviceaccount:pulltrace:pulltrace-agent");
  assert_string_equal(id.uid, "4b1e");
  assert_int_equal(id.ngroups, 3);
  assert_string_equal(id.groups[2], "system:authenticated");
  assert_string_equal(pt_identity_extra(&id, PT_EXTRA_NODE_NAME), "node-a");
  assert_string_equal(pt_identity_extra(&id, PT_EXTRA_POD_UID), "p1");
  assert_null(pt_identity_extra(&id, "nope"));
  pt_identity_clear(&id);

  /* An answer for another audience (an API server that ignored ours). */
  assert_int_equal(pt_identity_parse_tokenreview(review_user, strlen(review_user), "pulltrace", &id, why, sizeof(why)),
                   PT_REVIEW_REJECTED);
  assert_non_null(strstr(why, "audience"));
  assert_int_equal(pt_identity_parse_tokenreview(review_user, strlen(review_user), NULL, &id, why, sizeof(why)),
                   PT_REVIEW_AUTHENTICATED);
  assert_string_equal(id.username, "alice");
  assert_null(id.uid);
  pt_identity_clear(&id);

  assert_int_equal(pt_identity_parse_tokenreview(review_rejected, strlen(review_rejected), "pulltrace", &id, why,
                                                 sizeof(why)),
                   PT_REVIEW_REJECTED);
  assert_non_null(strstr(why, "has expired"));
  assert_null(id.username);

  static const char *const bad[] = {
    "", "not json", "[]", "{\"kind\":\"Status\",\"status\":\"Failure\"}",
    "{\"kind\":\"TokenReview\"}",
    "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"user\":{}}}",
    "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"user\":{\"username\":\"a\",\"groups\":[1]}}}",
    "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"user\":{\"username\":\"a\",\"extra\":{\"k\":\"v\"}}}}",
    "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"user\":{\"username\":\"a\",\"extra\":[]}}}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(pt_identity_parse_tokenreview(bad[i], strlen(bad[i]), NULL, &id, why, sizeof(why)),
                     PT_REVIEW_MALFORMED);
    assert_null(id.username);
  }
}

static void test_sar(void **state)
{
  (void)state;
  struct pt_identity id;
  char why[256];
  assert_int_equal(pt_identity_parse_tokenreview(review_ok, strlen(review_ok), "pulltrace", &id, why, sizeof(why)),
                   PT_REVIEW_AUTHENTICATED);
  struct pt_access acc = {"get", "pulltrace.io", "pulls"};
  char *s = pt_identity_sar_body(&id, &acc);
  json_t *o = json_loads(s, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(o, "kind")), "SubjectAccessReview");
  json_t *spec = json_object_get(o, "spec");
  assert_string_equal(json_string_value(json_object_get(spec, "user")), id.username);
  assert_string_equal(json_string_value(json_object_get(spec, "uid")), "4b1e");
  assert_int_equal(json_array_size(json_object_get(spec, "groups")), 3);
  assert_non_null(json_object_get(json_object_get(spec, "extra"), PT_EXTRA_NODE_NAME));
  json_t *ra = json_object_get(spec, "resourceAttributes");
  assert_string_equal(json_string_value(json_object_get(ra, "verb")), "get");
  assert_string_equal(json_string_value(json_object_get(ra, "group")), "pulltrace.io");
  assert_string_equal(json_string_value(json_object_get(ra, "resource")), "pulls");
  json_decref(o);
  free(s);
  pt_identity_clear(&id);

  assert_int_equal(pt_identity_parse_sar(sar_allowed, strlen(sar_allowed), why, sizeof(why)), 1);
  assert_int_equal(pt_identity_parse_sar(sar_denied, strlen(sar_denied), why, sizeof(why)), 0);
  assert_string_equal(why, "no RBAC rule allows it");
  static const char denied_both[] =
    "{\"kind\":\"SubjectAccessReview\",\"status\":{\"allowed\":true,\"denied\":true,\"reason\":\"webhook\"}}";
  assert_int_equal(pt_identity_parse_sar(denied_both, strlen(denied_both), why, sizeof(why)), 0);
  assert_int_equal(pt_identity_parse_sar("{}", 2, why, sizeof(why)), -EINVAL);
}

/* A JWT-shaped token whose payload is claims (base64url, no padding). */
static char *jwt(const char *claims)
{
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t n = strlen(claims);
  char *out = calloc(1, 32 + n * 2);
  strcpy(out, "eyJhbGciOiJSUzI1NiJ9.");
  char *p = out + strlen(out);
  const unsigned char *s = (const unsigned char *)claims;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
    *p++ = tbl[v >> 18 & 63];
    *p++ = tbl[v >> 12 & 63];
    if (i + 1 < n) *p++ = tbl[v >> 6 & 63];
    if (i + 2 < n) *p++ = tbl[v & 63];
  }
  strcpy(p, ".c2ln");
  return out;
}

static void test_token_expiry(void **state)
{
  (void)state;
  char *t = jwt("{\"aud\":[\"pulltrace\"],\"exp\":1764500000,\"sub\":\"system:serviceaccount:a:b\"}");
  assert_true(pt_identity_token_expiry(t) == 1764500000.0);
  free(t);
  t = jwt("{\"sub\":\"x\"}");
  assert_true(pt_identity_token_expiry(t) == 0);
  free(t);
  assert_true(pt_identity_token_expiry("opaque-token") == 0);
  assert_true(pt_identity_token_expiry("a.!!!.c") == 0);
  assert_true(pt_identity_token_expiry("..") == 0);
}

static void test_service_account(void **state)
{
  (void)state;
  char buf[256];
  const char *ns, *name;
  assert_int_equal(pt_identity_service_account("system:serviceaccount:pulltrace:agent", buf, sizeof(buf), &ns, &name), 0);
  assert_string_equal(ns, "pulltrace");
  assert_string_equal(name, "agent");
  assert_int_equal(pt_identity_service_account("alice", buf, sizeof(buf), &ns, &name), -EINVAL);
  assert_int_equal(pt_identity_service_account("system:serviceaccount:pulltrace", buf, sizeof(buf), &ns, &name), -EINVAL);
  assert_int_equal(pt_identity_service_account("system:serviceaccount::x", buf, sizeof(buf), &ns, &name), -EINVAL);
  assert_int_equal(pt_identity_service_account("system:serviceaccount:a:b:c", buf, sizeof(buf), &ns, &name), -EINVAL);
  assert_int_equal(pt_identity_service_account(NULL, buf, sizeof(buf), &ns, &name), -EINVAL);
}

struct pods {
  const char *ns, *name, *uid, *node;
  int lookups;
};

static const char *pod_node(void *ud, const char *ns, const char *name, const char *uid)
{
  struct pods *p = ud;
  p->lookups++;
  if (strcmp(ns, p->ns) || strcmp(name, p->name) || (uid && strcmp(uid, p->uid)))
    return NULL;
  return p->node;
}

static void test_agent_node(void **state)
{
  (void)state;
  struct pt_identity id;
  char why[400];
  const char *node;
  struct pods pods = {"pulltrace", "agent-x", "p1", "node-from-pod", 0};
  /* The node claim wins; no lookup. */
  pt_identity_parse_tokenreview(review_ok, strlen(review_ok), "pulltrace", &id, why, sizeof(why));
  assert_int_equal(pt_identity_agent_node(&id, "pulltrace", "pulltrace-agent", pod_node, &pods, &node, why,
                                          sizeof(why)), 0);
  assert_string_equal(node, "node-a");
  assert_int_equal(pods.lookups, 0);
  /* Another service account. */
  assert_int_equal(pt_identity_agent_node(&id, "pulltrace", "other", pod_node, &pods, &node, why, sizeof(why)),
                   -EACCES);
  assert_non_null(strstr(why, "system:serviceaccount:pulltrace:pulltrace-agent"));
  assert_int_equal(pt_identity_agent_node(&id, "kube-system", "pulltrace-agent", pod_node, &pods, &node, why,
                                          sizeof(why)), -EACCES);
  pt_identity_clear(&id);

  /* Without a node claim: the pod's node, when the uid matches. */
  pt_identity_parse_tokenreview(review_no_node, strlen(review_no_node), "pulltrace", &id, why, sizeof(why));
  assert_int_equal(pt_identity_agent_node(&id, "pulltrace", "pulltrace-agent", pod_node, &pods, &node, why,
                                          sizeof(why)), 0);
  assert_string_equal(node, "node-from-pod");
  pods.uid = "p2"; /* the pod was created again under its name */
  assert_int_equal(pt_identity_agent_node(&id, "pulltrace", "pulltrace-agent", pod_node, &pods, &node, why,
                                          sizeof(why)), -ENOENT);
  assert_non_null(strstr(why, "pulltrace/agent-x"));
  pt_identity_clear(&id);

  /* A legacy (unbound) token names no pod. */
  pt_identity_parse_tokenreview(review_user, strlen(review_user), NULL, &id, why, sizeof(why));
  free(id.username);
  id.username = strdup("system:serviceaccount:pulltrace:pulltrace-agent");
  assert_int_equal(pt_identity_agent_node(&id, "pulltrace", "pulltrace-agent", pod_node, &pods, &node, why,
                                          sizeof(why)), -ENOENT);
  assert_non_null(strstr(why, "not bound to a pod"));
  pt_identity_clear(&id);
}

/* ---- the cache, through a fake transport ------------------------------------------ */

#define MAXREQ 64

struct fake {
  struct {
    char path[128];
    char *body;
    pt_httpc_done_cb done;
    void *ud;
    bool open;
  } req[MAXREQ];
  int n;
  bool fail;
};

static int fake_post(void *ud, const char *path, const char *body, pt_httpc_done_cb done, void *dud, uint64_t *id)
{
  struct fake *f = ud;
  if (f->fail || f->n >= MAXREQ)
    return -EIO;
  snprintf(f->req[f->n].path, sizeof(f->req[f->n].path), "%s", path);
  f->req[f->n].body = strdup(body);
  f->req[f->n].done = done;
  f->req[f->n].ud = dud;
  f->req[f->n].open = true;
  *id = (uint64_t)f->n++;
  return 0;
}

static void answer(struct fake *f, int i, long status, const char *body)
{
  assert_true(f->req[i].open);
  f->req[i].open = false;
  struct pt_http_response r = {.status = status, .body = body, .body_len = body ? strlen(body) : 0};
  if (status == 0) {
    r.result = -ECONNREFUSED;
    r.error = "connection refused";
    r.body = "";
  }
  f->req[i].done(f->req[i].ud, &r);
}

static void fake_cancel(void *ud, uint64_t id)
{
  struct fake *f = ud;
  if (id < (uint64_t)f->n && f->req[id].open) {
    f->req[id].open = false;
    struct pt_http_response r = {.result = -ECANCELED, .error = "cancelled", .body = ""};
    f->req[id].done(f->req[id].ud, &r);
  }
}

static void fake_free(struct fake *f)
{
  for (int i = 0; i < f->n; i++)
    free(f->req[i].body);
}

struct seen {
  int calls;
  enum pt_authn_status last;
  char user[128];
  char reason[256];
};

static void on_result(void *ud, const struct pt_authn_result *res)
{
  struct seen *s = ud;
  s->calls++;
  s->last = res->status;
  snprintf(s->user, sizeof(s->user), "%s", res->who ? res->who->username : "");
  snprintf(s->reason, sizeof(s->reason), "%s", res->reason ? res->reason : "");
}

static struct pt_authn *make(struct fake *f, const struct pt_authn_options *o)
{
  struct pt_authn *a = pt_authn_create(o);
  struct pt_authn_transport t = {.ud = f, .post = fake_post, .cancel = fake_cancel};
  pt_authn_set_transport(a, &t);
  return a;
}

static enum pt_authn_status check(struct pt_authn *a, const char *tok, double at, struct seen *s,
                                  struct pt_authn_wait **w)
{
  struct pt_authn_result res;
  struct pt_authn_wait *dummy;
  enum pt_authn_status st = pt_authn_check(a, tok, at, on_result, s, &res, w ? w : &dummy);
  if (st != PT_AUTHN_PENDING && st == PT_AUTHN_OK)
    snprintf(s->user, sizeof(s->user), "%s", res.who->username);
  return st;
}

static void test_cache_hit_and_shared_review(void **state)
{
  (void)state;
  struct fake f = {0};
  struct pt_authn_options o = {.audience = "pulltrace"};
  struct pt_authn *a = make(&f, &o);
  double now = pt_clock_now();
  struct seen s1 = {0}, s2 = {0}, s3 = {0};
  assert_int_equal(check(a, "tok", now, &s1, NULL), PT_AUTHN_PENDING);
  assert_int_equal(check(a, "tok", now, &s2, NULL), PT_AUTHN_PENDING);
  assert_int_equal(f.n, 1); /* one review for both */
  assert_string_equal(f.req[0].path, PT_AUTHN_TOKENREVIEW_PATH);
  assert_non_null(strstr(f.req[0].body, "\"audiences\":[\"pulltrace\"]"));
  answer(&f, 0, 201, review_ok);
  assert_int_equal(s1.calls, 1);
  assert_int_equal(s2.calls, 1);
  assert_int_equal(s1.last, PT_AUTHN_OK);
  assert_string_equal(s1.user, "system:serviceaccount:pulltrace:pulltrace-agent");
  assert_int_equal(check(a, "tok", now + 1, &s3, NULL), PT_AUTHN_OK);
  assert_int_equal(s3.calls, 0);
  assert_int_equal(f.n, 1);
  /* Past the ttl (300 s by default): asked again. */
  assert_int_equal(check(a, "tok", now + 400, &s3, NULL), PT_AUTHN_PENDING);
  assert_int_equal(f.n, 2);
  answer(&f, 1, 201, review_ok);
  struct pt_authn_stats st;
  pt_authn_stats(a, &st);
  assert_int_equal(st.reviews, 2);
  assert_int_equal(st.cache_hits, 1);
  assert_int_equal(st.cached, 1);
  pt_authn_destroy(a);
  fake_free(&f);
}

static void test_cache_ends_at_token_expiry(void **state)
{
  (void)state;
  struct fake f = {0};
  struct pt_authn_options o = {.audience = "pulltrace", .ttl = 3600};
  struct pt_authn *a = make(&f, &o);
  double now = pt_clock_now();
  char claims[128];
  snprintf(claims, sizeof(claims), "{\"exp\":%.0f}", now + 30);
  char *tok = jwt(claims);
  struct seen s = {0};
  assert_int_equal(check(a, tok, now, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 0, 201, review_ok);
  assert_int_equal(check(a, tok, now + 20, &s, NULL), PT_AUTHN_OK);
  assert_int_equal(check(a, tok, now + 31, &s, NULL), PT_AUTHN_PENDING);
  assert_int_equal(f.n, 2);
  answer(&f, 1, 201, review_rejected);
  assert_int_equal(s.last, PT_AUTHN_UNAUTHENTICATED);
  free(tok);
  pt_authn_destroy(a);
  fake_free(&f);
}

static void test_refusals_and_errors_back_off_briefly(void **state)
{
  (void)state;
  struct fake f = {0};
  struct pt_authn_options o = {.audience = "pulltrace", .deny_backoff = 5, .error_backoff = 1};
  struct pt_authn *a = make(&f, &o);
  double now = pt_clock_now();
  struct seen s = {0};
  assert_int_equal(check(a, "bad", now, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 0, 201, review_rejected);
  assert_int_equal(s.last, PT_AUTHN_UNAUTHENTICATED);
  assert_non_null(strstr(s.reason, "expired"));
  assert_int_equal(check(a, "bad", now + 2, &s, NULL), PT_AUTHN_UNAUTHENTICATED);
  assert_int_equal(f.n, 1);
  assert_int_equal(check(a, "bad", now + 60, &s, NULL), PT_AUTHN_PENDING);
  assert_int_equal(f.n, 2);

  /* The API server fails: 503 for the client, asked again after 1 s
   * (counted from the answer, which came after now). Offsets are far
   * apart so that a slow machine cannot change the outcome. */
  answer(&f, 1, 500, "{\"kind\":\"Status\"}");
  assert_int_equal(s.last, PT_AUTHN_UNAVAILABLE);
  assert_int_equal(check(a, "bad", now + 0.5, &s, NULL), PT_AUTHN_UNAVAILABLE);
  assert_int_equal(check(a, "bad", now + 100, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 2, 403, "{\"kind\":\"Status\",\"code\":403}");
  assert_non_null(strstr(s.reason, "create on tokenreviews"));
  assert_int_equal(check(a, "bad", now + 200, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 3, 0, NULL);
  assert_non_null(strstr(s.reason, "connection refused"));
  assert_int_equal(check(a, "other", now + 200, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 4, 201, "{\"kind\":\"Status\"}");
  assert_int_equal(s.last, PT_AUTHN_UNAVAILABLE);
  struct pt_authn_stats st;
  pt_authn_stats(a, &st);
  assert_int_equal(st.review_errors, 4);

  /* A transport that cannot send: answered at once, nothing kept. */
  f.fail = true;
  assert_int_equal(check(a, "new", now + 300, &s, NULL), PT_AUTHN_UNAVAILABLE);
  pt_authn_destroy(a);
  fake_free(&f);

  /* No transport at all (Kubernetes off). */
  struct pt_authn *b = pt_authn_create(&o);
  assert_int_equal(check(b, "tok", now, &s, NULL), PT_AUTHN_UNAVAILABLE);
  pt_authn_destroy(b);
}

static void test_access_review(void **state)
{
  (void)state;
  struct fake f = {0};
  struct pt_access acc = {"get", "pulltrace.io", "pulls"};
  struct pt_authn_options o = {.access = &acc};
  struct pt_authn *a = make(&f, &o);
  double now = pt_clock_now();
  struct seen s = {0};
  assert_int_equal(check(a, "alice", now, &s, NULL), PT_AUTHN_PENDING);
  assert_null(strstr(f.req[0].body, "audiences"));
  answer(&f, 0, 201, review_user);
  assert_int_equal(s.calls, 0); /* still waiting for the access review */
  assert_int_equal(f.n, 2);
  assert_string_equal(f.req[1].path, PT_AUTHN_SAR_PATH);
  assert_non_null(strstr(f.req[1].body, "\"user\":\"alice\""));
  answer(&f, 1, 201, sar_allowed);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.last, PT_AUTHN_OK);
  assert_int_equal(check(a, "alice", now + 1, &s, NULL), PT_AUTHN_OK);

  assert_int_equal(check(a, "bob", now, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 2, 201, review_user);
  answer(&f, 3, 201, sar_denied);
  assert_int_equal(s.last, PT_AUTHN_FORBIDDEN);
  assert_non_null(strstr(s.reason, "may not get pulls.pulltrace.io"));
  assert_int_equal(check(a, "bob", now + 1, &s, NULL), PT_AUTHN_FORBIDDEN);
  struct pt_authn_stats st;
  pt_authn_stats(a, &st);
  assert_int_equal(st.reviews, 2);
  assert_int_equal(st.access_reviews, 2);
  pt_authn_destroy(a);
  fake_free(&f);
}

static void test_size_bound_cancel_and_destroy(void **state)
{
  (void)state;
  struct fake f = {0};
  struct pt_authn_options o = {.max_entries = 4};
  struct pt_authn *a = make(&f, &o);
  double now = pt_clock_now();
  struct seen s = {0};
  char tok[16];
  for (int i = 0; i < 4; i++) {
    snprintf(tok, sizeof(tok), "t%d", i);
    assert_int_equal(check(a, tok, now, &s, NULL), PT_AUTHN_PENDING);
    answer(&f, i, 201, review_user);
  }
  assert_int_equal(check(a, "t4", now, &s, NULL), PT_AUTHN_PENDING);
  answer(&f, 4, 201, review_user);
  struct pt_authn_stats st;
  pt_authn_stats(a, &st);
  assert_int_equal(st.cached, 4);
  assert_int_equal(st.evictions, 1);
  /* The oldest went: t0 is reviewed again, t3 is still cached. */
  assert_int_equal(check(a, "t3", now, &s, NULL), PT_AUTHN_OK);
  assert_int_equal(check(a, "t0", now, &s, NULL), PT_AUTHN_PENDING);

  /* A cancelled waiter hears nothing; the other one does. */
  struct seen quiet = {0}, loud = {0};
  struct pt_authn_wait *w;
  assert_int_equal(check(a, "t9", now, &quiet, &w), PT_AUTHN_PENDING);
  assert_int_equal(check(a, "t9", now, &loud, NULL), PT_AUTHN_PENDING);
  pt_authn_cancel(w);
  answer(&f, 6, 201, review_user);
  assert_int_equal(quiet.calls, 0);
  assert_int_equal(loud.calls, 1);

  /* Destroy with a review in flight (t0's): its waiter hears UNAVAILABLE. */
  struct seen last = {0};
  assert_int_equal(check(a, "t0", now, &last, NULL), PT_AUTHN_PENDING);
  pt_authn_destroy(a);
  assert_int_equal(last.calls, 1);
  assert_int_equal(last.last, PT_AUTHN_UNAVAILABLE);
  fake_free(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_tokenreview_body),
    cmocka_unit_test(test_parse_tokenreview),
    cmocka_unit_test(test_sar),
    cmocka_unit_test(test_token_expiry),
    cmocka_unit_test(test_service_account),
    cmocka_unit_test(test_agent_node),
    cmocka_unit_test(test_cache_hit_and_shared_review),
    cmocka_unit_test(test_cache_ends_at_token_expiry),
    cmocka_unit_test(test_refusals_and_errors_back_off_briefly),
    cmocka_unit_test(test_access_review),
    cmocka_unit_test(test_size_bound_cancel_and_destroy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
