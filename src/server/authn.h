/* Bearer tokens checked by the Kubernetes API server (docs/security.md): a
 * TokenReview, then, when an access is configured, a SubjectAccessReview of
 * the user it names. Answers are cached so that a report or a page view
 * costs a map lookup, not a round trip:
 *
 * - an accepted token until the earlier of its `exp` claim and now + ttl
 *   (a deleted pod's token stops working within ttl);
 * - a refusal (unknown or expired token, access denied) for a short back-off
 *   only, so that a retrying client cannot make the server flood the API
 *   server, and a fixed token (or a new RBAC binding) works moments later;
 * - an API server that cannot answer: a shorter back-off, and the client
 *   gets 503 (try again), never a refusal.
 *
 * The cache holds at most max_entries tokens (expired ones go first, then
 * the oldest). Concurrent checks of one token share one review. The reviews
 * go through a transport (the Kubernetes watcher's connection in
 * pulltrace-server, a fake in the unit tests). Everything runs on the loop
 * thread; nothing here blocks. */
#ifndef PT_SERVER_AUTHN_H
#define PT_SERVER_AUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/httpc.h"
#include "server/identity.h"

#define PT_AUTHN_TOKENREVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"
#define PT_AUTHN_SAR_PATH "/apis/authorization.k8s.io/v1/subjectaccessreviews"

/* How reviews reach the API server: post the JSON body to path and call done
 * exactly once (also when cancelled). Returns 0 (with *id for cancel) or a
 * negative errno (then done is not called). */
struct pt_authn_transport {
  void *ud;
  int (*post)(void *ud, const char *path, const char *body, pt_httpc_done_cb done, void *done_ud, uint64_t *id);
  void (*cancel)(void *ud, uint64_t id);
};

enum pt_authn_status {
  PT_AUTHN_OK = 0,
  PT_AUTHN_UNAUTHENTICATED, /* 401: unknown, expired or wrong-audience token */
  PT_AUTHN_FORBIDDEN,       /* 403: the SubjectAccessReview said no */
  PT_AUTHN_UNAVAILABLE,     /* 503: the API server could not answer */
  PT_AUTHN_PENDING,         /* the answer comes through the callback */
};

struct pt_authn_result {
  enum pt_authn_status status;
  const struct pt_identity *who; /* with OK; valid during the call (copy what you keep) */
  const char *reason;            /* otherwise: why, for the client and the log */
};

typedef void (*pt_authn_cb)(void *ud, const struct pt_authn_result *res);

struct pt_authn_options {
  const char *audience;          /* TokenReview spec.audiences; NULL = the API server's */
  const struct pt_access *access;/* NULL = authentication only */
  double ttl;                    /* upper bound of a positive answer's life; 300 when 0 */
  double deny_backoff;           /* seconds a refusal is remembered; 5 when 0 */
  double error_backoff;          /* seconds an unavailable API server is; 1 when 0 */
  size_t max_entries;            /* 10000 when 0 */
};

struct pt_authn_stats {
  uint64_t reviews;          /* TokenReviews sent */
  uint64_t access_reviews;   /* SubjectAccessReviews sent */
  uint64_t review_errors;    /* reviews the API server did not answer usefully */
  uint64_t cache_hits;       /* checks answered from the cache */
  uint64_t evictions;        /* live entries dropped because the cache was full */
  size_t cached;
};

struct pt_authn;
struct pt_authn_wait;

/* Copies opts (and the strings it points to). NULL without memory. */
struct pt_authn *pt_authn_create(const struct pt_authn_options *opts);
/* Where reviews go; NULL transport = none (checks answer UNAVAILABLE).
 * Replacing it fails the reviews in flight. */
void pt_authn_set_transport(struct pt_authn *a, const struct pt_authn_transport *t);
/* Cancels reviews in flight (their waiters get UNAVAILABLE) and frees.
 * Accepts NULL. */
void pt_authn_destroy(struct pt_authn *a);

/* Checks token at time now (epoch seconds). A cached answer fills *res and
 * returns its status; otherwise returns PT_AUTHN_PENDING, and cb(ud, result)
 * runs later, exactly once unless pt_authn_cancel(*wait) comes first. */
enum pt_authn_status pt_authn_check(struct pt_authn *a, const char *token, double now, pt_authn_cb cb, void *ud,
                                    struct pt_authn_result *res, struct pt_authn_wait **wait);
/* The waiter's callback will not run. */
void pt_authn_cancel(struct pt_authn_wait *w);
void pt_authn_stats(const struct pt_authn *a, struct pt_authn_stats *out);

#endif
