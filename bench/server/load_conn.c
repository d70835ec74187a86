#include "load_conn.h"

#include <sys/resource.h>

void pt_bench_dialer_init(struct pt_bench_dialer *d, int port, size_t n, void (*start)(void *ud, size_t i),
                          void *ud)
{
  *d = (struct pt_bench_dialer){.window = PT_BENCH_CONNECT_WINDOW, .n = n, .start = start, .ud = ud};
  uv_ip4_addr("127.0.0.1", port, &d->addr);
}

void pt_bench_dialer_run(struct pt_bench_dialer *d)
{
  while (d->next < d->n && d->connecting < d->window)
    d->start(d->ud, d->next++);
}

int pt_bench_dial(struct pt_bench_dialer *d, uv_tcp_t *tcp, uv_connect_t *req, uv_connect_cb cb)
{
  int rc = uv_tcp_connect(req, tcp, (const struct sockaddr *)&d->addr, cb);
  if (rc == 0)
    d->connecting++;
  return rc;
}

void pt_bench_dialer_done(struct pt_bench_dialer *d)
{
  d->connecting--;
  pt_bench_dialer_run(d);
}

void pt_bench_raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
