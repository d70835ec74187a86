/* Leader election on a coordination.k8s.io/v1 Lease, the way client-go's
 * leaderelection package does it, so that among several pulltrace-server
 * replicas exactly one delivers side effects (alert webhooks, Kubernetes
 * Events).
 *
 * Every retry period the candidate reads the Lease (GET). Missing (404): it
 * creates it holding it (POST; 409 AlreadyExists = another replica was
 * first). Held by another replica whose record keeps changing: it follows.
 * Held by itself, unheld (empty holderIdentity, as after a release), or not
 * renewed for leaseDurationSeconds as measured by this replica's own clock
 * since it last saw the record change (never the remote renewTime, so clock
 * skew between nodes does not matter): it writes itself in as holder with a
 * PUT carrying the resourceVersion it read; a 409 Conflict means another
 * replica wrote first, and it follows until the next round.
 *
 * A leader that has not renewed for the renew deadline (shorter than the
 * lease duration) stops leading at once, before any other replica may take
 * over; release (SIGTERM) writes an empty holder so that another replica
 * takes over at its next round instead of waiting for the lease to expire.
 *
 * It talks to the API server through the watcher's credentials
 * (pt_kube_credentials()) with its own HTTP client; nothing blocks the loop (a
 * Lease is a few hundred bytes of JSON). */
#ifndef PT_KUBE_LEASE_H
#define PT_KUBE_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct pt_kube;
struct pt_lease;

struct pt_lease_options {
  const char *name;          /* the Lease's name; copied */
  const char *namespace;     /* its namespace; copied */
  const char *identity;      /* holderIdentity: the pod's name; copied */
  double duration;           /* leaseDurationSeconds (whole seconds, >= 1) */
  double renew_deadline;     /* a leader not renewed for this long stops leading */
  double retry_period;       /* time between two rounds */
  /* Leadership changed (on the loop). holder: who holds the lease now as far
   * as this replica knows ("" = nobody). */
  void (*changed)(void *ud, bool leader, const char *holder);
  void *ud;
};

struct pt_lease_stats {
  bool leader;
  uint64_t acquired;     /* times this replica became the leader */
  uint64_t lost;         /* times it stopped leading without a release */
  uint64_t conflicts;    /* 409 answers (another replica wrote first) */
  uint64_t errors;       /* failed requests (transport, 401/403, 5xx, bad bodies) */
};

/* kube is borrowed for its credentials: destroy the lease first. NULL when
 * out of memory or when the options are inconsistent (the server's
 * configuration checks them first). Does not start anything. */
struct pt_lease *pt_lease_create(uv_loop_t *loop, const struct pt_kube *kube, const struct pt_lease_options *opts);
/* Starts the first round at once. */
void pt_lease_start(struct pt_lease *l);
/* Stops taking part; a leader stops leading at once (changed() is called)
 * and writes an empty holder into the Lease. done(ud) runs when that write
 * has ended (at most the renew deadline, on the loop, maybe before this
 * returns when there is nothing to release). Call it once. */
void pt_lease_release(struct pt_lease *l, void (*done)(void *ud), void *ud);
void pt_lease_stats(const struct pt_lease *l, struct pt_lease_stats *out);
/* Who holds the Lease as last seen ("" = nobody or not known yet). */
const char *pt_lease_holder(const struct pt_lease *l);
/* Cancels what is in flight and frees in the close callbacks (run the loop
 * afterwards). Accepts NULL. */
void pt_lease_destroy(struct pt_lease *l);

#endif
