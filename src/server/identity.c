#include "server/identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/kubeconfig.h"

#define MAX_GROUPS 256

void pt_identity_clear(struct pt_identity *id)
{
  if (!id)
    return;
  free(id->username);
  free(id->uid);
  for (size_t i = 0; i < id->ngroups; i++)
    free(id->groups[i]);
  free(id->groups);
  json_decref(id->extra);
  memset(id, 0, sizeof(*id));
}

const char *pt_identity_extra(const struct pt_identity *id, const char *key)
{
  json_t *v = json_object_get(id->extra, key);
  return json_string_value(json_array_get(v, 0));
}

char *pt_identity_tokenreview_body(const char *token, const char *audience)
{
  json_t *spec = json_pack("{s:s}", "token", token);
  if (spec && audience && *audience)
    json_object_set_new(spec, "audiences", json_pack("[s]", audience));
  json_t *o = spec ? json_pack("{s:s,s:s,s:o}", "apiVersion", "authentication.k8s.io/v1", "kind", "TokenReview",
                               "spec", spec)
                   : NULL;
  char *s = o ? pt_json_dump(o) : NULL;
  json_decref(o);
  return s;
}

static bool strings_array(const json_t *a)
{
  size_t i;
  json_t *v;
  if (!json_is_array(a))
    return false;
  json_array_foreach(a, i, v) if (!json_is_string(v)) return false;
  return true;
}

enum pt_review_verdict pt_identity_parse_tokenreview(const char *body, size_t len, const char *audience,
                                                     struct pt_identity *id, char *why, size_t whylen)
{
  memset(id, 0, sizeof(*id));
  enum pt_review_verdict v = PT_REVIEW_MALFORMED;
  json_t *root = json_loadb(body, len, 0, NULL);
  json_t *status = json_object_get(root, "status");
  if (!json_is_object(status) || strcmp(pt_json_str(root, "kind") ? pt_json_str(root, "kind") : "", "TokenReview")) {
    snprintf(why, whylen, "the API server's answer is not a TokenReview");
    goto out;
  }
  if (!json_is_true(json_object_get(status, "authenticated"))) {
    const char *err = pt_json_str(status, "error");
    snprintf(why, whylen, "token not authenticated%s%s", err ? ": " : "", err ? err : "");
    v = PT_REVIEW_REJECTED;
    goto out;
  }
  if (audience && *audience) {
    /* An API server that ignored spec.audiences would answer for its own
     * audience: a token made for it would pass as ours. */
    json_t *auds = json_object_get(status, "audiences");
    bool found = false;
    size_t i;
    json_t *a;
    json_array_foreach(auds, i, a) found |= json_is_string(a) && strcmp(json_string_value(a), audience) == 0;
    if (!found) {
      snprintf(why, whylen, "token not valid for the audience \"%s\"", audience);
      v = PT_REVIEW_REJECTED;
      goto out;
    }
  }
  json_t *user = json_object_get(status, "user");
  const char *name = pt_json_str(user, "username");
  json_t *groups = json_object_get(user, "groups");
  json_t *extra = json_object_get(user, "extra");
  if (!name || !*name || (groups && !strings_array(groups)) || json_array_size(groups) > MAX_GROUPS ||
      (extra && !json_is_object(extra))) {
    snprintf(why, whylen, "the TokenReview's status.user is malformed");
    goto out;
  }
  const char *k;
  json_t *ev;
  json_object_foreach(extra, k, ev) {
    if (!strings_array(ev)) {
      snprintf(why, whylen, "the TokenReview's status.user.extra[\"%.100s\"] is not a list of strings", k);
      goto out;
    }
  }
  id->username = strdup(name);
  const char *uid = pt_json_str(user, "uid");
  id->uid = uid ? strdup(uid) : NULL;
  id->ngroups = json_array_size(groups);
  id->groups = id->ngroups ? calloc(id->ngroups, sizeof(*id->groups)) : NULL;
  bool oom = !id->username || (uid && !id->uid) || (id->ngroups && !id->groups);
  for (size_t i = 0; !oom && i < id->ngroups; i++)
    oom |= !(id->groups[i] = strdup(json_string_value(json_array_get(groups, i))));
  if (extra)
    oom |= !(id->extra = json_deep_copy(extra));
  if (oom) {
    pt_identity_clear(id);
    snprintf(why, whylen, "out of memory");
    goto out;
  }
  v = PT_REVIEW_AUTHENTICATED;
out:
  json_decref(root);
  return v;
}

char *pt_identity_sar_body(const struct pt_identity *id, const struct pt_access *access)
{
  json_t *groups = json_array();
  for (size_t i = 0; groups && i < id->ngroups; i++)
    json_array_append_new(groups, json_string(id->groups[i]));
  json_t *spec = json_pack("{s:s,s:o,s:{s:s,s:s,s:s}}", "user", id->username, "groups", groups,
                           "resourceAttributes", "verb", access->verb, "group", access->group, "resource",
                           access->resource);
  if (spec && id->uid)
    json_object_set_new(spec, "uid", json_string(id->uid));
  /* The authorizer may decide on extra too (e.g. a node-bound rule). */
  if (spec && id->extra)
    json_object_set(spec, "extra", id->extra);
  json_t *o = spec ? json_pack("{s:s,s:s,s:o}", "apiVersion", "authorization.k8s.io/v1", "kind",
                               "SubjectAccessReview", "spec", spec)
                   : NULL;
  char *s = o ? pt_json_dump(o) : NULL;
  json_decref(o);
  return s;
}

int pt_identity_parse_sar(const char *body, size_t len, char *why, size_t whylen)
{
  json_t *root = json_loadb(body, len, 0, NULL);
  json_t *status = json_object_get(root, "status");
  int r = -EINVAL;
  const char *kind = pt_json_str(root, "kind");
  if (!json_is_object(status) || !kind || strcmp(kind, "SubjectAccessReview") != 0) {
    snprintf(why, whylen, "the API server's answer is not a SubjectAccessReview");
  } else if (json_is_true(json_object_get(status, "allowed")) && !json_is_true(json_object_get(status, "denied"))) {
    r = 1;
  } else {
    const char *reason = pt_json_str(status, "reason");
    snprintf(why, whylen, "%s", reason && *reason ? reason : "no RBAC rule allows it");
    r = 0;
  }
  json_decref(root);
  return r;
}

double pt_identity_token_expiry(const char *token)
{
  const char *dot1 = strchr(token, '.');
  const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
  if (!dot2 || dot2 - dot1 - 1 > 16384)
    return 0;
  size_t n = (size_t)(dot2 - dot1 - 1);
  char *b64 = malloc(n + 1);
  unsigned char *raw = malloc(n * 3 / 4 + 3);
  double exp = 0;
  if (b64 && raw) {
    memcpy(b64, dot1 + 1, n);
    b64[n] = '\0';
    long m = pt_kubeconfig_base64_decode(b64, raw);
    json_t *claims = m > 0 ? json_loadb((const char *)raw, (size_t)m, 0, NULL) : NULL;
    json_t *e = json_object_get(claims, "exp");
    if (json_is_number(e) && json_number_value(e) > 0)
      exp = json_number_value(e);
    json_decref(claims);
  }
  free(b64);
  free(raw);
  return exp;
}

int pt_identity_service_account(const char *username, char *buf, size_t buflen, const char **ns,
                                const char **name)
{
  static const char prefix[] = "system:serviceaccount:";
  if (!username || strncmp(username, prefix, sizeof(prefix) - 1) != 0)
    return -EINVAL;
  if ((size_t)snprintf(buf, buflen, "%s", username + sizeof(prefix) - 1) >= buflen)
    return -EINVAL;
  char *colon = strchr(buf, ':');
  if (!colon || colon == buf || !colon[1] || strchr(colon + 1, ':'))
    return -EINVAL;
  *colon = '\0';
  *ns = buf;
  *name = colon + 1;
  return 0;
}

int pt_identity_agent_node(const struct pt_identity *id, const char *want_ns, const char *want_name,
                           pt_pod_node_fn pod_node, void *ud, const char **node, char *why, size_t whylen)
{
  char buf[512];
  const char *ns, *name;
  *node = NULL;
  if (pt_identity_service_account(id->username, buf, sizeof(buf), &ns, &name) < 0 ||
      strcmp(ns, want_ns) != 0 || strcmp(name, want_name) != 0) {
    snprintf(why, whylen, "the token belongs to \"%.200s\", not to the agents' service account %s:%s",
             id->username, want_ns, want_name);
    return -EACCES;
  }
  const char *claimed = pt_identity_extra(id, PT_EXTRA_NODE_NAME);
  if (claimed && *claimed) {
    *node = claimed;
    return 0;
  }
  const char *pod = pt_identity_extra(id, PT_EXTRA_POD_NAME);
  if (!pod || !*pod) {
    snprintf(why, whylen, "the token is not bound to a pod (use the projected service-account token)");
    return -ENOENT;
  }
  const char *n = pod_node ? pod_node(ud, ns, pod, pt_identity_extra(id, PT_EXTRA_POD_UID)) : NULL;
  if (!n || !*n) {
    snprintf(why, whylen, "the token's pod %.200s/%.200s is not known to be scheduled on a node", ns, pod);
    return -ENOENT;
  }
  *node = n;
  return 0;
}
