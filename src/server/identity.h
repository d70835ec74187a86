/* Who sent a request, as the Kubernetes API server says (docs/security.md):
 * the bodies of TokenReview (authentication.k8s.io/v1) and
 * SubjectAccessReview (authorization.k8s.io/v1) requests, the parsing of
 * their answers, the expiry claim of a token, and the agent rule "this
 * token's pod runs on the node the report names". Pure functions: no I/O,
 * no loop; server/authn.h does the asking and the caching. */
#ifndef PT_SERVER_IDENTITY_H
#define PT_SERVER_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The `extra` keys of a bound service-account token (a pod's projected
 * token): the pod it is bound to and, since Kubernetes 1.30
 * (ServiceAccountTokenPodNodeInfo), the node that pod runs on. */
#define PT_EXTRA_POD_NAME "authentication.kubernetes.io/pod-name"
#define PT_EXTRA_POD_UID "authentication.kubernetes.io/pod-uid"
#define PT_EXTRA_NODE_NAME "authentication.kubernetes.io/node-name"
#define PT_EXTRA_NODE_UID "authentication.kubernetes.io/node-uid"

/* An authenticated user (TokenReview's status.user). */
struct pt_identity {
  char *username;
  char *uid;           /* NULL when absent */
  char **groups;
  size_t ngroups;
  json_t *extra;       /* the object {"key": ["value", ...]} as answered, or NULL */
};

void pt_identity_clear(struct pt_identity *id);
/* The first value of an `extra` key, or NULL. */
const char *pt_identity_extra(const struct pt_identity *id, const char *key);

/* The JSON body of a TokenReview for token (audience NULL = the API
 * server's own audiences). Returns a new string or NULL. */
char *pt_identity_tokenreview_body(const char *token, const char *audience);

/* What a TokenReview answered. */
enum pt_review_verdict {
  PT_REVIEW_AUTHENTICATED = 0,
  PT_REVIEW_REJECTED,     /* authenticated false, or not for our audience */
  PT_REVIEW_MALFORMED,    /* not a TokenReview answer */
};

/* Parses a TokenReview answer (the API server's 201 body). audience: the
 * one asked for (NULL = none); an answer whose status.audiences does not
 * contain it is REJECTED, as the API reference asks clients to check. On
 * AUTHENTICATED fills *id (clear it afterwards); otherwise writes the
 * reason into why. */
enum pt_review_verdict pt_identity_parse_tokenreview(const char *body, size_t len, const char *audience,
                                                     struct pt_identity *id, char *why, size_t whylen);

/* The resource attributes a SubjectAccessReview asks about. */
struct pt_access {
  const char *verb;     /* "get" */
  const char *group;    /* "pulltrace.io" */
  const char *resource; /* "pulls" */
};

/* The JSON body of a SubjectAccessReview of id for access. NULL without memory. */
char *pt_identity_sar_body(const struct pt_identity *id, const struct pt_access *access);
/* Parses a SubjectAccessReview answer: 1 allowed, 0 denied (reason in why),
 * -EINVAL when the body is not one. */
int pt_identity_parse_sar(const char *body, size_t len, char *why, size_t whylen);

/* The `exp` claim (epoch seconds) of a JWT, read without checking the
 * signature (the API server did that); 0 when the token is not a JWT or has
 * no exp. */
double pt_identity_token_expiry(const char *token);

/* "system:serviceaccount:NS:NAME" -> ns and name (pointers into a copy in
 * buf). Returns 0, or -EINVAL when the user is not a service account. */
int pt_identity_service_account(const char *username, char *buf, size_t buflen, const char **ns,
                                const char **name);

/* Where the agent behind id runs. The node claim of its token wins; without
 * one, pod_node(ud, namespace, pod name, pod uid) looks the token's pod up
 * (NULL = not known). Returns 0 with *node set (borrowed), -EACCES when id is
 * not the service account want_ns/want_name (why says whose it is), -ENOENT
 * when the token names no pod or the pod is not known. */
typedef const char *(*pt_pod_node_fn)(void *ud, const char *ns, const char *name, const char *uid);
int pt_identity_agent_node(const struct pt_identity *id, const char *want_ns, const char *want_name,
                           pt_pod_node_fn pod_node, void *ud, const char **node, char *why, size_t whylen);

#endif
