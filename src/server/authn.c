#include "server/authn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/map.h"

/* Reviews in flight at once: a flood of made-up tokens must neither flood
 * the API server nor fill the cache with entries that cannot be evicted. */
#define MAX_IN_FLIGHT 256

struct pt_authn_wait {
  struct pt_authn_wait *next, *prev;
  struct entry *e;
  pt_authn_cb cb;
  void *ud;
};

enum phase { IDLE = 0, TOKENREVIEW, ACCESSREVIEW };

struct entry {
  struct pt_authn *a;
  char *token; /* also the map key: kept only in memory, never logged */
  struct entry *older, *newer; /* insertion order, for eviction */
  enum phase phase;
  uint64_t req_id;
  enum pt_authn_status status;
  double until;  /* the answer holds while now < until */
  double expiry; /* the token's exp claim, 0 = none */
  struct pt_identity who;
  char reason[256];
  struct pt_authn_wait *waiters;
};

struct pt_authn {
  struct pt_authn_options opts;
  char *audience;
  struct pt_access access;
  bool have_access;
  struct pt_authn_transport t;
  bool have_transport;
  struct pt_map cache;
  struct entry *oldest, *newest;
  size_t in_flight;
  struct pt_authn_stats st;
};

struct pt_authn *pt_authn_create(const struct pt_authn_options *opts)
{
  struct pt_authn *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->opts = *opts;
  if (a->opts.ttl <= 0) a->opts.ttl = 300;
  if (a->opts.deny_backoff <= 0) a->opts.deny_backoff = 5;
  if (a->opts.error_backoff <= 0) a->opts.error_backoff = 1;
  if (!a->opts.max_entries) a->opts.max_entries = 10000;
  if (opts->audience && *opts->audience && !(a->audience = strdup(opts->audience))) {
    free(a);
    return NULL;
  }
  a->opts.audience = a->audience;
  if (opts->access) {
    /* The access strings are the server's constants (docs/security.md). */
    a->access = *opts->access;
    a->have_access = true;
  }
  a->opts.access = NULL;
  pt_map_init(&a->cache);
  return a;
}

static void unlink_order(struct pt_authn *a, struct entry *e)
{
  if (e->older) e->older->newer = e->newer; else a->oldest = e->newer;
  if (e->newer) e->newer->older = e->older; else a->newest = e->older;
  e->older = e->newer = NULL;
}

static void link_newest(struct pt_authn *a, struct entry *e)
{
  e->older = a->newest;
  e->newer = NULL;
  if (a->newest) a->newest->newer = e; else a->oldest = e;
  a->newest = e;
}

static void entry_free(struct entry *e)
{
  pt_identity_clear(&e->who);
  free(e->token);
  free(e);
}

/* Drops an idle entry (no review in flight, so no waiters). */
static void drop(struct pt_authn *a, struct entry *e)
{
  unlink_order(a, e);
  pt_map_del(&a->cache, e->token);
  entry_free(e);
}

static void result_of(const struct entry *e, struct pt_authn_result *res)
{
  res->status = e->status;
  res->who = e->status == PT_AUTHN_OK ? &e->who : NULL;
  res->reason = e->reason;
}

/* Ends the review of e with status for `hold` seconds and tells the waiters. */
static void settle(struct entry *e, enum pt_authn_status status, double hold, const char *reason)
{
  struct pt_authn *a = e->a;
  if (e->phase != IDLE)
    a->in_flight--;
  e->phase = IDLE;
  e->status = status;
  double now = pt_clock_now();
  e->until = now + hold;
  if (status == PT_AUTHN_OK && e->expiry > 0 && e->expiry < e->until)
    e->until = e->expiry;
  snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
  struct pt_authn_result res;
  result_of(e, &res);
  struct pt_authn_wait *w;
  while ((w = e->waiters)) {
    e->waiters = w->next;
    if (e->waiters)
      e->waiters->prev = NULL;
    pt_authn_cb cb = w->cb;
    void *ud = w->ud;
    free(w);
    cb(ud, &res);
  }
}

static void http_failure(struct pt_authn *a, struct entry *e, const char *what,
                         const struct pt_http_response *resp)
{
  char why[256];
  if (resp->result != 0)
    snprintf(why, sizeof(why), "the Kubernetes API server did not answer the %s: %s", what,
             resp->error ? resp->error : strerror(-resp->result));
  else if (resp->status == 401 || resp->status == 403)
    snprintf(why, sizeof(why), "the Kubernetes API server refused the %s (HTTP %ld): the server's service "
             "account needs create on %s", what, resp->status,
             strcmp(what, "TokenReview") == 0 ? "tokenreviews" : "subjectaccessreviews");
  else
    snprintf(why, sizeof(why), "the Kubernetes API server answered the %s with HTTP %ld", what, resp->status);
  a->st.review_errors++;
  PT_LOG_WARN("cannot check a bearer token", "{s:s}", "error", why);
  settle(e, PT_AUTHN_UNAVAILABLE, a->opts.error_backoff, why);
}

static void access_done(void *ud, const struct pt_http_response *resp);

static void start_access_review(struct entry *e)
{
  struct pt_authn *a = e->a;
  char *body = pt_identity_sar_body(&e->who, &a->access);
  int r = body && a->have_transport ? a->t.post(a->t.ud, PT_AUTHN_SAR_PATH, body, access_done, e, &e->req_id)
                                    : -ENOMEM;
  free(body);
  if (r < 0) {
    a->st.review_errors++;
    settle(e, PT_AUTHN_UNAVAILABLE, a->opts.error_backoff, "cannot send the SubjectAccessReview");
    return;
  }
  e->phase = ACCESSREVIEW;
  a->st.access_reviews++;
}

static void review_done(void *ud, const struct pt_http_response *resp)
{
  struct entry *e = ud;
  struct pt_authn *a = e->a;
  if (resp->result != 0 || resp->status < 200 || resp->status > 299)
    return http_failure(a, e, "TokenReview", resp);
  char why[256];
  pt_identity_clear(&e->who);
  switch (pt_identity_parse_tokenreview(resp->body, resp->body_len, a->audience, &e->who, why, sizeof(why))) {
  case PT_REVIEW_AUTHENTICATED:
    if (a->have_access) {
      /* Still in flight: the access review takes over the slot. */
      start_access_review(e);
      return;
    }
    settle(e, PT_AUTHN_OK, a->opts.ttl, NULL);
    return;
  case PT_REVIEW_REJECTED:
    settle(e, PT_AUTHN_UNAUTHENTICATED, a->opts.deny_backoff, why);
    return;
  case PT_REVIEW_MALFORMED:
    a->st.review_errors++;
    settle(e, PT_AUTHN_UNAVAILABLE, a->opts.error_backoff, why);
    return;
  }
}

static void access_done(void *ud, const struct pt_http_response *resp)
{
  struct entry *e = ud;
  struct pt_authn *a = e->a;
  if (resp->result != 0 || resp->status < 200 || resp->status > 299)
    return http_failure(a, e, "SubjectAccessReview", resp);
  char why[200], msg[300];
  int r = pt_identity_parse_sar(resp->body, resp->body_len, why, sizeof(why));
  if (r == 1) {
    settle(e, PT_AUTHN_OK, a->opts.ttl, NULL);
  } else if (r == 0) {
    snprintf(msg, sizeof(msg), "%.100s may not %s %s.%s: %.100s", e->who.username, a->access.verb, a->access.resource,
             a->access.group, why);
    settle(e, PT_AUTHN_FORBIDDEN, a->opts.deny_backoff, msg);
  } else {
    a->st.review_errors++;
    settle(e, PT_AUTHN_UNAVAILABLE, a->opts.error_backoff, why);
  }
}

/* Makes room for one more entry. False when every entry is busy. */
static bool make_room(struct pt_authn *a, double now)
{
  if (a->cache.count < a->opts.max_entries)
    return true;
  struct entry *e = a->oldest, *next;
  for (; e; e = next) {
    next = e->newer;
    if (e->phase == IDLE && e->until <= now)
      drop(a, e);
  }
  for (e = a->oldest; e && a->cache.count >= a->opts.max_entries; e = next) {
    next = e->newer;
    if (e->phase == IDLE) {
      drop(a, e);
      a->st.evictions++;
    }
  }
  return a->cache.count < a->opts.max_entries;
}

static enum pt_authn_status fail_now(struct pt_authn_result *res, const char *reason)
{
  res->status = PT_AUTHN_UNAVAILABLE;
  res->who = NULL;
  res->reason = reason;
  return PT_AUTHN_UNAVAILABLE;
}

static enum pt_authn_status add_waiter(struct entry *e, pt_authn_cb cb, void *ud, struct pt_authn_result *res,
                                       struct pt_authn_wait **wait)
{
  struct pt_authn_wait *w = calloc(1, sizeof(*w));
  if (!w)
    return fail_now(res, "out of memory");
  w->e = e;
  w->cb = cb;
  w->ud = ud;
  w->next = e->waiters;
  if (e->waiters)
    e->waiters->prev = w;
  e->waiters = w;
  *wait = w;
  res->status = PT_AUTHN_PENDING;
  res->who = NULL;
  res->reason = NULL;
  return PT_AUTHN_PENDING;
}

enum pt_authn_status pt_authn_check(struct pt_authn *a, const char *token, double now, pt_authn_cb cb, void *ud,
                                    struct pt_authn_result *res, struct pt_authn_wait **wait)
{
  *wait = NULL;
  struct entry *e = pt_map_get(&a->cache, token);
  if (e && e->phase != IDLE)
    return add_waiter(e, cb, ud, res, wait);
  if (e && now < e->until) {
    a->st.cache_hits++;
    result_of(e, res);
    return res->status;
  }
  if (!a->have_transport)
    return fail_now(res, "the Kubernetes API is not configured: tokens cannot be checked");
  if (a->in_flight >= MAX_IN_FLIGHT)
    return fail_now(res, "too many token reviews in flight");
  if (e) {
    /* A stale answer: review again, as the newest entry. */
    unlink_order(a, e);
    link_newest(a, e);
    pt_identity_clear(&e->who);
  } else {
    if (!make_room(a, now))
      return fail_now(res, "too many token reviews in flight");
    e = calloc(1, sizeof(*e));
    if (!e || !(e->token = strdup(token)) || pt_map_put(&a->cache, e->token, e) < 0) {
      if (e)
        free(e->token);
      free(e);
      return fail_now(res, "out of memory");
    }
    e->a = a;
    link_newest(a, e);
  }
  e->expiry = pt_identity_token_expiry(token);
  char *body = pt_identity_tokenreview_body(token, a->audience);
  int r = body ? a->t.post(a->t.ud, PT_AUTHN_TOKENREVIEW_PATH, body, review_done, e, &e->req_id) : -ENOMEM;
  free(body);
  if (r < 0) {
    a->st.review_errors++;
    drop(a, e);
    return fail_now(res, "cannot send the TokenReview to the Kubernetes API server");
  }
  e->phase = TOKENREVIEW;
  a->in_flight++;
  a->st.reviews++;
  return add_waiter(e, cb, ud, res, wait);
}

void pt_authn_cancel(struct pt_authn_wait *w)
{
  if (!w)
    return;
  struct entry *e = w->e;
  if (w->prev) w->prev->next = w->next; else e->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  free(w);
}

/* Cancels every review in flight: their done callbacks settle the entries
 * (UNAVAILABLE), which tells the waiters. */
static void cancel_all(struct pt_authn *a)
{
  if (!a->have_transport)
    return;
  for (struct entry *e = a->oldest, *next; e; e = next) {
    next = e->newer;
    if (e->phase != IDLE)
      a->t.cancel(a->t.ud, e->req_id);
  }
}

void pt_authn_set_transport(struct pt_authn *a, const struct pt_authn_transport *t)
{
  cancel_all(a);
  a->have_transport = t != NULL;
  if (t)
    a->t = *t;
}

void pt_authn_destroy(struct pt_authn *a)
{
  if (!a)
    return;
  cancel_all(a);
  for (struct entry *e = a->oldest, *next; e; e = next) {
    next = e->newer;
    /* A transport that does not call back on cancel leaves waiters: they
     * hear UNAVAILABLE here. */
    if (e->phase != IDLE)
      settle(e, PT_AUTHN_UNAVAILABLE, 0, "the server is stopping");
    unlink_order(a, e);
    entry_free(e);
  }
  pt_map_close(&a->cache);
  free(a->audience);
  free(a);
}

void pt_authn_stats(const struct pt_authn *a, struct pt_authn_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (!a)
    return;
  *out = a->st;
  out->cached = a->cache.count;
}
