#include "core/loop_metrics.h"

#include <string.h>

const double pt_loop_metrics_bounds[PT_LOOP_METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                0.05,  0.1,    0.25,  1};

/* Runs just before each poll: the time since the previous one, less what
 * the poll itself waited, is the work of one iteration. */
static void prepare_cb(uv_prepare_t *h)
{
  struct pt_loop_metrics *m = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(m->loop);
  if (m->last_ns) {
    uint64_t span = now - m->last_ns, waited = idle - m->last_idle_ns;
    double busy = (double)(span > waited ? span - waited : 0) / 1e9;
    size_t i = 0;
    while (i < PT_LOOP_METRICS_BUCKETS && busy > pt_loop_metrics_bounds[i])
      i++;
    if (i < PT_LOOP_METRICS_BUCKETS)
      m->counts[i]++;
    m->count++;
    m->sum += busy;
    if (busy > m->max)
      m->max = busy;
  }
  m->last_ns = now;
  m->last_idle_ns = idle;
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
