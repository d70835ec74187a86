/* How long the loop works in each iteration, from one poll for I/O to the
 * next: the CPU time of its thread (what the process's own work costs), and
 * the longest wall time it was away from the poll (libuv's idle-time metric;
 * on a busy machine this includes the time other processes had the CPU). A
 * long iteration is time in which no other request, event-stream write or
 * timer ran, so the distribution says whether some work holds the loop.
 *
 * Bucket bounds are seconds; the histogram is cumulative from creation. */
#ifndef PT_CORE_LOOP_METRICS_H
#define PT_CORE_LOOP_METRICS_H

#include <stdint.h>
#include <uv.h>

#define PT_LOOP_METRICS_BUCKETS 9
extern const double pt_loop_metrics_bounds[PT_LOOP_METRICS_BUCKETS];

struct pt_loop_metrics {
  uv_loop_t *loop;
  uv_prepare_t prepare;
  uint64_t last_ns;       /* hrtime at the previous prepare, 0 before the first */
  uint64_t last_idle_ns;  /* uv_metrics_idle_time then */
  uint64_t last_cpu_ns;   /* the thread's CPU time then */
  uint64_t counts[PT_LOOP_METRICS_BUCKETS]; /* CPU time per iteration, per bucket (not cumulative) */
  uint64_t count;
  double sum, max;        /* CPU seconds */
  double wall_max;        /* the longest wall time away from the poll, seconds */
};

/* Turns on the loop's idle-time accounting (before uv_run) and starts
 * measuring. Returns 0 or a negative libuv error. */
int pt_loop_metrics_init(struct pt_loop_metrics *m, uv_loop_t *loop);
/* Stops; cb (may be NULL) runs once the handle is closed. */
void pt_loop_metrics_close(struct pt_loop_metrics *m, uv_close_cb cb);

#endif
