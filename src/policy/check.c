/* `pulltrace-server --check-policy DIR`: load a directory the way the server
 * would and exercise every hook once with sample inputs, so an operator's CI
 * catches both load errors and hooks that fail or return nonsense. */
#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "policy/internal.h"

static json_t *sample_pull(void)
{
  return json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:[{s:s, s:I, s:I, s:s}]}", "id",
                   "node-a/0123456789abcdef-1700000000", "node", "node-a", "imageRef",
                   "registry.example.com/team/app", "manifestDigest",
                   "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                   "startedAt", 1700000000.0, "totalBytes", (json_int_t)104857600,
                   "downloadedBytes", (json_int_t)52428800, "layers", "digest", "sha256:aa",
                   "totalBytes", (json_int_t)104857600, "downloadedBytes", (json_int_t)52428800,
                   "state", "downloading");
}

static void exercise(struct pt_policy *p)
{
  double t0 = 1700000000.0;
  struct pt_policy_rate_state st = {0};
  struct pt_policy_rate_result rr;
  for (int i = 0; i < 4; i++) {
    struct pt_policy_rate_sample s = {"node-a/0123456789abcdef-1700000000", "node-a", t0 + i,
                                      (int64_t)i * 1048576, 104857600, i == 3, false};
    pt_policy_rate(p, &s, &st, &rr);
  }
  struct pt_policy_rate_sample unknown = {"x", "node-a", t0 + 5, 1, -1, false, false};
  pt_policy_rate(p, &unknown, &st, &rr);
  pt_policy_rate_state_clear(&st);

  for (int phase = PT_POLICY_PULL_ACTIVE; phase <= PT_POLICY_PULL_LOST; phase++) {
    struct pt_policy_evict_input in = {"node-a/0123456789abcdef-1700000000", "node-a",
                                       "registry.example.com/team/app", phase, t0,
                                       phase == PT_POLICY_PULL_ACTIVE ? 0 : t0 + 60,
                                       phase == PT_POLICY_PULL_LOST ? t0 + 120 : 0, t0 + 60,
                                       t0 + 60, t0 + 7200};
    enum pt_policy_evict_decision d;
    pt_policy_evict(p, &in, &d);
  }

  json_t *pull = sample_pull();
  json_t *pods = json_pack("[{s:s, s:s, s:s, s:s, s:[{s:s, s:s}]}]", "namespace", "default",
                           "name", "app-0", "uid", "uid-0", "node", "node-a", "containers",
                           "name", "app", "image", "registry.example.com:5000/team/app:v1");
  json_t *events = json_pack("[{s:s, s:s, s:s, s:s, s:f, s:f, s:i}]", "namespace", "default",
                             "pod", "app-0", "reason", "Pulling", "message",
                             "Pulling image \"registry.example.com:5000/team/app:v1\"",
                             "firstTimestamp", t0 - 1, "lastTimestamp", t0 - 1, "count", 1);
  struct pt_policy_correlation c;
  pt_policy_correlate(p, pull, pods, events, &c);
  pt_policy_correlation_clear(&c);

  /* Every event type some handler listens to, plus the standard ones. */
  static const char *const std[] = {"pull.started", "pull.progress", "pull.completed",
                                    "pull.failed", "pull.stalled", "pull.slow", NULL};
  json_t *event = json_pack("{s:O, s:f, s:f, s:f, s:i, s:s, s:s}", "pull", pull, "stalledSeconds", 3600.0,
                            "elapsedSeconds", 250.0, "typicalSeconds", 50.0, "typicalPulls", 23,
                            "reason", "Failed", "message",
                            "Failed to pull image \"registry.example.com:5000/team/app:v1\": "
                            "not found");
  for (int i = 0; std[i]; i++)
    pt_policy_emit(p, std[i], event);
  for (size_t i = 0; i < p->vm->n_handlers; i++) {
    const char *t = p->vm->handlers[i].event_type;
    bool seen = strcmp(t, "*") == 0;
    for (int k = 0; std[k] && !seen; k++)
      seen = strcmp(std[k], t) == 0;
    if (!seen)
      pt_policy_emit(p, t, event);
  }
  json_decref(event);
  json_decref(pull);
  json_decref(pods);
  json_decref(events);
}

int pt_policy_check(const struct pt_policy_options *opts, FILE *report)
{
  if (!opts || !report)
    return -EINVAL;
  char err[8192];
  struct pt_policy *p = pt_policy_create(opts, err, sizeof(err));
  if (!p) {
    for (char *line = err; *line;) {
      size_t n = strcspn(line, "\n");
      fprintf(report, "error: %.*s\n", (int)n, line);
      line += n + (line[n] == '\n');
    }
    return -EINVAL;
  }
  p->check_report = report;
  exercise(p);
  uint64_t errors = 0;
  for (int h = 0; h < PT_POLICY_HOOK_COUNT; h++)
    errors += p->counters.errors[h];
  if (errors == 0) {
    fprintf(report, "ok: %zu scripts:", p->vm->scripts.n);
    for (size_t i = 0; i < p->vm->scripts.n; i++)
      fprintf(report, " %s (%s)", p->vm->scripts.v[i].name, p->vm->scripts.v[i].origin);
    fputc('\n', report);
  }
  pt_policy_destroy(p);
  return errors ? -EINVAL : 0;
}

int pt_policy_check_dir(const char *dir, FILE *report)
{
  if (!dir || !report)
    return -EINVAL;
  struct pt_policy_options opts;
  char err[512];
  if (pt_policy_options_from_env(&opts, NULL, err, sizeof(err))) {
    fprintf(report, "error: %s\n", err);
    return -EINVAL;
  }
  opts.dir = dir;
  return pt_policy_check(&opts, report);
}
