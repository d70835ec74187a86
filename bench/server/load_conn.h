/* What the benchmark's load clients share (bench-sse-fanout, bench-rollout):
 * thousands of connections from one process to one address on 127.0.0.1,
 * set up a window at a time, and the open-file limit raised to hold them. */
#ifndef PT_BENCH_LOAD_CONN_H
#define PT_BENCH_LOAD_CONN_H

#include <stddef.h>
#include <uv.h>

/* At most this many connections being set up at once: thousands of SYNs at
 * once overflow the server's listen backlog (the kernel then drops them and
 * the client retries a second later), which would measure the backlog. */
#define PT_BENCH_CONNECT_WINDOW 200

/* Starts clients 0..n-1 in order while fewer than `window` connections are
 * being set up. start(ud, i) sets up client i's handle and calls
 * pt_bench_dial(); every connect callback calls pt_bench_dialer_done(). */
struct pt_bench_dialer {
  struct sockaddr_in addr;
  size_t window, connecting, next, n;
  void (*start)(void *ud, size_t i);
  void *ud;
};

void pt_bench_dialer_init(struct pt_bench_dialer *d, int port, size_t n, void (*start)(void *ud, size_t i),
                          void *ud);
/* Starts clients while the window allows (the first call starts the first). */
void pt_bench_dialer_run(struct pt_bench_dialer *d);
/* Connects tcp (initialised by the caller) to the address; 0 or a libuv error
 * (then cb is not called and the caller counts the failure). Also for
 * reconnecting a client later. */
int pt_bench_dial(struct pt_bench_dialer *d, uv_tcp_t *tcp, uv_connect_t *req, uv_connect_cb cb);
/* A connection set up or failed: the next clients start. */
void pt_bench_dialer_done(struct pt_bench_dialer *d);

/* Raises the soft limit on open files to the hard limit. */
void pt_bench_raise_nofile(void);

#endif
