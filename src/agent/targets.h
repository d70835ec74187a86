/* Where the agent's reports go: every pulltrace-server replica.
 *
 * PULLTRACE_SERVER_URL is one base URL or a comma-separated list. The host of
 * each URL is resolved (uv_getaddrinfo, on libuv's thread pool) at start and
 * every resolve interval; each address it has is a target of its own, so a
 * headless Service's name (one A/AAAA record per ready replica) gives one
 * target per replica, and replicas that come and go are picked up at the next
 * resolution. A host that is an IP literal is one target; a name that
 * resolves to one address behaves as a single URL always did. A name that
 * cannot be resolved keeps its previous targets, or, before its first answer,
 * is one target that lets libcurl resolve it when sending.
 *
 * Every target sends the newest report on its own: its own request in flight,
 * its own exponential back-off (the report interval doubling to 30 s) and its
 * own log lines on state changes, so one dead or slow replica never delays
 * the others — the way each Prometheus of an HA pair scrapes everything.
 * Requests to a resolved address keep the URL's host name (Host header, TLS
 * server name and certificate check) and only connect to that address. */
#ifndef PT_AGENT_TARGETS_H
#define PT_AGENT_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/token.h"
#include "core/httpc.h"

#define PT_TARGETS_MAX_URLS 16

struct pt_targets_options {
  const char *urls;         /* PULLTRACE_SERVER_URL: base URLs, comma-separated; copied */
  struct pt_agent_token *token; /* what to send (agent/token.h), re-read on a 401; borrowed, NULL = none */
  const char *ca_file;      /* PEM CA bundle for https; borrowed */
  double report_interval;   /* first back-off step and the basis of the request timeout */
  double resolve_interval;  /* seconds between resolutions of the URLs' host names */
};

struct pt_target_stats {
  const char *url;          /* the report URL */
  const char *address;      /* the address connected to; "" = resolved by libcurl */
  uint64_t sent, failed;
  bool ok;                  /* the last report to it was accepted */
};

struct target;

struct pt_targets {
  uv_loop_t *loop;
  struct pt_httpc *http;    /* borrowed */
  struct pt_targets_options opts;
  struct server_url {
    char *report_url;       /* base + /api/v1/report */
    char *host;             /* the host to resolve (brackets removed) */
    bool literal;           /* an IP address: nothing to resolve */
    bool resolved;          /* answered at least once */
    bool resolving;
    bool resolve_failing;   /* the last resolution failed (logged once) */
    uv_getaddrinfo_t req;
    struct pt_targets *owner;
  } urls[PT_TARGETS_MAX_URLS];
  size_t nurls;
  struct target *list;
  uv_timer_t resolve_timer;
  char *latest;             /* the newest report */
  uint64_t latest_seq;
  bool stopping;
  uint64_t sent, failed;    /* over every target, also removed ones */
};

/* Splits and checks a PULLTRACE_SERVER_URL value: 1 to PT_TARGETS_MAX_URLS
 * http:// or https:// URLs with a host, separated by commas (spaces around
 * them ignored). Returns the number of URLs, or -EINVAL with
 * "PULLTRACE_SERVER_URL: reason" in err. With out (PT_TARGETS_MAX_URLS
 * entries) also returns them (free() each). */
int pt_targets_parse(const char *urls, char **out, char *err, size_t errlen);

/* Returns 0, or -EINVAL (a bad URL list, err set) or -ENOMEM. http is
 * borrowed: stop the targets before destroying it. */
int pt_targets_init(struct pt_targets *t, uv_loop_t *loop, struct pt_httpc *http, const struct pt_targets_options *opts,
                    char *err, size_t errlen);
/* Resolves the names now and every resolve interval. */
void pt_targets_start(struct pt_targets *t);
/* A new report (taken over): every idle target that may send sends it. */
void pt_targets_offer(struct pt_targets *t, char *report);
/* Sends the newest report to the targets whose back-off ended and that have
 * not sent it yet (call it every tick). */
void pt_targets_kick(struct pt_targets *t);
/* What an answer of the resolver does to URL number url: one target per
 * address (IPv4 as text, IPv6 in brackets); targets of addresses no longer
 * in the answer go (after their request in flight). resolved() calls it with
 * getaddrinfo's answer; the unit tests call it with two addresses, which no
 * name resolves to on a test machine. */
void pt_targets_apply(struct pt_targets *t, size_t url, const char *const *addrs, size_t n);
/* Calls fn for each current target. */
void pt_targets_foreach(const struct pt_targets *t, void (*fn)(void *ud, const struct pt_target_stats *st), void *ud);
/* Stops resolving and sending; requests in flight end when the HTTP client is
 * destroyed. The timer closes in the loop. */
void pt_targets_stop(struct pt_targets *t);
/* Frees everything; after the loop ran out. */
void pt_targets_close(struct pt_targets *t);

#endif
