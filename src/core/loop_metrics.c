#include "core/loop_metrics.h"

#include <string.h>
#include <time.h>

const double pt_loop_metrics_bounds[PT_LOOP_METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                0.05,  0.1,    0.25,  1};

static uint64_t thread_cpu_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Runs just before each poll: the CPU time of the loop's thread since the
 * previous one is the work of one iteration (the poll's waiting costs
 * none); the wall time since then, less what the poll waited, is how long
 * the loop was away, the time the machine took the CPU from it included. */
static void prepare_cb(uv_prepare_t *h)
{
  struct pt_loop_metrics *m = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(m->loop), cpu = thread_cpu_ns();
  if (m->last_ns) {
    double work = (double)(cpu - m->last_cpu_ns) / 1e9;
    uint64_t span = now - m->last_ns, waited = idle - m->last_idle_ns;
    double away = (double)(span > waited ? span - waited : 0) / 1e9;
    size_t i = 0;
    while (i < PT_LOOP_METRICS_BUCKETS && work > pt_loop_metrics_bounds[i])
      i++;
    if (i < PT_LOOP_METRICS_BUCKETS)
      m->counts[i]++;
    m->count++;
    m->sum += work;
    if (work > m->max)
      m->max = work;
    if (away > m->wall_max)
      m->wall_max = away;
  }
  m->last_ns = now;
  m->last_idle_ns = idle;
  m->last_cpu_ns = cpu;
}

int pt_loop_metrics_init(struct pt_loop_metrics *m, uv_loop_t *loop)
{
  memset(m, 0, sizeof(*m));
  m->loop = loop;
  int r = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  if (r < 0)
    return r;
  uv_prepare_init(loop, &m->prepare);
  m->prepare.data = m;
  uv_prepare_start(&m->prepare, prepare_cb);
  /* Measuring must not keep the loop alive on its own. */
  uv_unref((uv_handle_t *)&m->prepare);
  return 0;
}

void pt_loop_metrics_close(struct pt_loop_metrics *m, uv_close_cb cb)
{
  uv_prepare_stop(&m->prepare);
  uv_close((uv_handle_t *)&m->prepare, cb);
}
