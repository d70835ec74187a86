/* Calls per second of the default policy hooks through the host, on one
 * thread: the rate hook (one pull's sample, the state round-tripping through
 * JSON) and the correlation hook with 50 candidate pods and 50 events. The C
 * fallbacks are measured beside them for comparison.
 *
 *   bench-policy [seconds per measure, default 2]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "policy/policy.h"

typedef void (*bench_fn)(struct pt_policy *p, void *ctx, long i);

static double measure(const char *name, struct pt_policy *p, bench_fn fn, void *ctx, double secs)
{
  long n = 0;
  double t0 = pt_clock_mono(), t;
  do {
    for (int k = 0; k < 100; k++, n++)
      fn(p, ctx, n);
    t = pt_clock_mono();
  } while (t - t0 < secs);
  double rate = (double)n / (t - t0);
  printf("%-44s %10.0f calls/s  %8.2f us/call\n", name, rate, 1e6 / rate);
  return rate;
}

static void rate_call(struct pt_policy *p, void *ctx, long i)
{
  struct pt_policy_rate_state *st = ctx;
  struct pt_policy_rate_sample s = {"node-a/0123456789abcdef-1700000000", "node-a",
                                    1700000000.0 + (double)i, (int64_t)i * 1048576,
                                    (int64_t)1 << 40, false, false};
  struct pt_policy_rate_result r;
  if (pt_policy_rate(p, &s, st, &r) != 0)
    abort();
}

struct corr {
  json_t *pull, *pods, *events;
  size_t expect;
};

static void correlate_call(struct pt_policy *p, void *ctx, long i)
{
  struct corr *c = ctx;
  struct pt_policy_correlation out;
  (void)i;
  if (pt_policy_correlate(p, c->pull, c->pods, c->events, &out) != 0 || out.n_targets != c->expect)
    abort();
  pt_policy_correlation_clear(&out);
}

static struct pt_policy *make(bool builtin)
{
  struct pt_policy_options o;
  memset(&o, 0, sizeof(o));
  o.no_builtin = !builtin;
  char err[1024];
  struct pt_policy *p = pt_policy_create(&o, err, sizeof(err));
  if (!p) {
    fprintf(stderr, "policy: %s\n", err);
    exit(1);
  }
  return p;
}

/* n pods on the node, two containers each (a service and a common sidecar);
 * every tenth runs the pulled image. Each pod has a Pulling event. */
static struct corr build(int n)
{
  struct corr c = {0};
  c.pull = json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I}", "id", "node-a/0123-1", "node",
                     "node-a", "imageRef", "127.0.0.1/demo/app", "manifestDigest",
                     "sha256:0123456789abcdef", "startedAt", 1700000100.0, "totalBytes",
                     (json_int_t)104857600, "downloadedBytes", (json_int_t)1048576);
  c.pods = json_array();
  c.events = json_array();
  for (int i = 0; i < n; i++) {
    char name[64], image[128], msg[160];
    snprintf(name, sizeof(name), "pod-%04d", i);
    if (i % 10 == 0)
      snprintf(image, sizeof(image), "127.0.0.1:5001/demo/app:v1");
    else
      snprintf(image, sizeof(image), "registry.example.com/team/service-%04d:1.%d", i, i);
    json_array_append_new(
        c.pods, json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}]}", "namespace",
                          "default", "name", name, "uid", name, "node", "node-a", "containers",
                          "name", "main", "image", image, "name", "sidecar", "image",
                          "docker.io/library/envoy:v1.28"));
    snprintf(msg, sizeof(msg), "Pulling image \"%s\"", image);
    json_array_append_new(c.events,
                          json_pack("{s:s, s:s, s:s, s:s, s:f, s:f}", "namespace", "default", "pod",
                                    name, "reason", "Pulling", "message", msg, "firstTimestamp",
                                    1700000000.0 + i, "lastTimestamp", 1700000000.0 + i));
  }
  c.expect = (size_t)(n + 9) / 10;
  return c;
}

static void corr_free(struct corr *c)
{
  json_decref(c->pull);
  json_decref(c->pods);
  json_decref(c->events);
}

int main(int argc, char **argv)
{
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  if (secs <= 0)
    secs = 2.0;

  struct corr c = build(50);
  printf("policy host benchmark, %.1f s per measure, one thread\n", secs);
  struct pt_policy *lua = make(true);
  struct pt_policy *cdef = make(false);
  struct pt_policy_rate_state st1 = {0}, st2 = {0};
  measure("rate, default Lua hook", lua, rate_call, &st1, secs);
  measure("rate, C default (no hook)", cdef, rate_call, &st2, secs);
  measure("correlate, 50 pods + 50 events, Lua hook", lua, correlate_call, &c, secs);
  measure("correlate, 50 pods + 50 events, C default", cdef, correlate_call, &c, secs);
  struct pt_policy_counters k;
  pt_policy_counters(lua, &k);
  printf("Lua VM heap after the run: %.1f KiB; hook errors: %llu\n", k.memory_bytes / 1024.0,
         (unsigned long long)(k.errors[PT_POLICY_HOOK_RATE] + k.errors[PT_POLICY_HOOK_CORRELATE]));
  pt_policy_rate_state_clear(&st1);
  pt_policy_rate_state_clear(&st2);
  pt_policy_destroy(lua);
  pt_policy_destroy(cdef);
  corr_free(&c);

  /* How many candidate pods the default correlation handles within the
   * default instruction budget (beyond it the C default answers). */
  struct pt_policy *fresh = make(true);
  int fits = 0;
  for (int n = 100; n <= 25600; n *= 2) {
    struct corr big = build(n);
    struct pt_policy_correlation out;
    double t0 = pt_clock_mono();
    pt_policy_correlate(fresh, big.pull, big.pods, big.events, &out);
    double dt = pt_clock_mono() - t0;
    bool ok = !out.fallback && out.n_targets == big.expect;
    printf("correlate, %5d pods + %5d events: %s in %.1f ms\n", n, n,
           ok ? "Lua hook answered" : "a limit was hit, the C default answered", dt * 1e3);
    pt_policy_correlation_clear(&out);
    corr_free(&big);
    if (!ok)
      break;
    fits = n;
  }
  printf("largest tested candidate set within the default budget: %d pods\n", fits);
  pt_policy_destroy(fresh);
  return 0;
}
