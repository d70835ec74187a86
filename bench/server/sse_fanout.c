/* bench-sse-fanout: many event-stream clients in one process on one libuv
 * loop, the load client of the fan-out benchmark (docs/performance.md).
 *
 *   bench-sse-fanout PORT CLIENTS SECONDS [READY_FILE] [PATH] [PAUSE_US] [FIRST_S] [PROBE_EVERY]
 *
 * Connects CLIENTS clients to 127.0.0.1:PORT (GET PATH, /api/v1/events by
 * default), at most 200 connections being set up at a time (load_conn.h);
 * once every client has its snapshot it writes READY_FILE (so that the load can start),
 * then reads for SECONDS and prints one line "SSE_JSON {...}": clients
 * connected, events received (all clients) and per second, bytes, clients
 * the server closed, and the delivery delay of every event (receive time
 * minus the event's "time", the same machine's clock; millisecond
 * resolution): p50, p90, p99, max, and p50, p90, p99 by event type.
 *
 * FIRST_S (default 0): the events received in the first FIRST_S seconds of
 * the measurement are counted apart ("first_seconds": samples, p50, p99,
 * max) and not in the delays above: the first writes to sockets that were
 * just connected cost the kernel (and this client) more than the later
 * ones, so the first passes after 10,000 clients connect at once are
 * slower than any later pass. Both figures are printed.
 *
 * PROBE_EVERY (default 0: none): every PROBE_EVERY-th client (in the order
 * they connect, so spread over the server's order of writes) is a probe.
 * When the measurement starts, the probes move to a thread of their own
 * with a loop of their own, at real-time priority (SCHED_FIFO, when the
 * process may have it): a probe's read runs as soon as its socket has data,
 * ahead of the other clients' reads on the same core, as a reader with a
 * machine of its own reads; the other clients' loop then runs at idle
 * priority (SCHED_IDLE), behind the kernel's receive processing when that
 * runs in a thread (ksoftirqd) too. One loop reading 10,000 sockets reads
 * them one after another, and its delays include its own queue; the
 * probes' delays ("probes") do not. The others' figures exclude the probes.
 *
 * PAUSE_US (default 0): while measuring, the main loop sleeps that long after
 * each poll, so that the sockets the server writes meanwhile are read in
 * one batch, as a network card's interrupt coalescing hands a reader's
 * machine its packets; the pause is part of every delay measured. Without
 * it, on loopback, each write to an idle client wakes the client's core
 * from the writer's (the server's) core, and each read costs the client a
 * poll of its own: work that is the benchmark's, not the server's.
 *
 * The responses are read with llhttp (chunked transfer-encoding undone) and
 * the event stream with kubectl-pulltrace's reader (src/cli/sse.c), so a
 * client costs a few hundred bytes and a read callback: the client, not the
 * server, must not be the bottleneck. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <llhttp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli/sse.h"
#include "core/clock.h"
#include "load_conn.h"

#define MAX_DELAY_MS 600000
#define TYPE_DELAY_MS 10000 /* per event type: 1 ms bins up to 10 s (later ones count in the last) */
#define MAX_TYPES 16

/* What one reading loop counts, and its read buffer. */
struct tally {
  uint64_t events, bytes, closed_by_server;
  uint64_t *delays; /* count per millisecond of delay */
  uint64_t ndelays;
  struct {
    char name[40];
    uint64_t *delays, n;
  } types[MAX_TYPES];
  size_t ntypes;
  double read_at, read_at_mono; /* the clocks when the read being parsed returned */
  uint64_t *first_delays;       /* TYPE_DELAY_MS bins: the events of the first FIRST_S seconds */
  uint64_t nfirst;
  char rbuf[65536];
};

struct client {
  uv_tcp_t tcp;         /* connects; then its socket is read through a poll handle */
  uv_poll_t poll;       /* a duplicate of tcp's socket (libuv allows one handle a socket) */
  uv_poll_t probe_poll; /* the same socket in the probes' loop, for a probe */
  int fd;               /* the duplicate, -1 before */
  uv_connect_t connect;
  llhttp_t http;
  struct pt_sse_reader sse;
  struct bench *b;
  struct tally *t; /* the loop's that reads it */
  bool snapshot, closed, probe;
};

struct bench {
  uv_loop_t *loop;
  struct pt_bench_dialer dialer;
  char request[512];
  struct client *clients;
  size_t n, ready, failed;
  struct tally main; /* every client but the probes */
  double first_s;    /* FIRST_S */
  bool measuring;
  double started_at, measure_from, seconds;
  const char *ready_file;
  uv_timer_t timer;
  llhttp_settings_t settings;
  struct {
    size_t every, n, open_at_end;
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    bool started, realtime, main_idle;
    struct tally tally;
  } probes;
};

static int tally_init(struct tally *t)
{
  t->delays = calloc(MAX_DELAY_MS, sizeof(*t->delays));
  t->first_delays = calloc(TYPE_DELAY_MS, sizeof(*t->first_delays));
  return t->delays && t->first_delays ? 0 : -1;
}

static void tally_free(struct tally *t)
{
  free(t->delays);
  free(t->first_delays);
  for (size_t k = 0; k < t->ntypes; k++)
    free(t->types[k].delays);
}

static void on_event(void *ud, const char *type, const char *id, const char *data, size_t len)
{
  struct client *c = ud;
  struct bench *b = c->b;
  struct tally *t = c->t;
  (void)id;
  if (strcmp(type, "snapshot") == 0) {
    if (!c->snapshot) {
      c->snapshot = true;
      b->ready++;
    }
    return;
  }
  if (!b->measuring)
    return;
  t->events++;
  /* Every event's data starts {"v":1,"type":"...","time":"<RFC 3339>" */
  const char *at = memmem(data, len, "\"time\":\"", 8);
  double when;
  char buf[40];
  if (!at || (size_t)(data + len - (at + 8)) < 24)
    return;
  memcpy(buf, at + 8, 24);
  buf[24] = '\0';
  if (pt_time_parse(buf, &when) < 0)
    return;
  double ms = (t->read_at - when) * 1000.0;
  size_t i = ms < 0 ? 0 : ms >= MAX_DELAY_MS ? MAX_DELAY_MS - 1 : (size_t)ms;
  if (b->first_s > 0 && t->read_at_mono - b->measure_from < b->first_s) {
    t->first_delays[i < TYPE_DELAY_MS ? i : TYPE_DELAY_MS - 1]++;
    t->nfirst++;
    return;
  }
  t->delays[i]++;
  t->ndelays++;
  size_t k = 0;
  while (k < t->ntypes && strcmp(t->types[k].name, type) != 0)
    k++;
  if (k == t->ntypes && k < MAX_TYPES && (t->types[k].delays = calloc(TYPE_DELAY_MS, sizeof(uint64_t)))) {
    snprintf(t->types[k].name, sizeof(t->types[k].name), "%s", type);
    t->ntypes++;
  }
  if (k < t->ntypes) {
    t->types[k].delays[i < TYPE_DELAY_MS ? i : TYPE_DELAY_MS - 1]++;
    t->types[k].n++;
  }
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
  struct client *c = h->data;
  return pt_sse_reader_feed(&c->sse, at, len) == 0 ? 0 : -1;
}

/* The handle reading a client's socket: in the probes' loop once it moved there. */
static uv_poll_t *reading_poll(struct client *c)
{
  return c->probe && c->b->probes.started ? &c->probe_poll : &c->poll;
}

/* A client that ends before its snapshot failed to connect; one the server
 * ends while measuring was closed by it (e.g. dropped as too slow). Runs in
 * the loop that reads the client. */
static void close_client(struct client *c, bool by_server)
{
  if (c->closed)
    return;
  c->closed = true;
  if (!c->snapshot)
    c->b->failed++;
  else if (by_server && c->b->measuring)
    c->t->closed_by_server++;
  if (c->fd < 0) {
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  uv_close((uv_handle_t *)reading_poll(c), NULL); /* takes the socket out of its loop's poll set now */
  close(c->fd);
}

/* Reads what the socket holds, a buffer at a time (as libuv's reads do). */
static void poll_cb(uv_poll_t *p, int status, int events)
{
  struct client *c = p->data;
  struct tally *t = c->t;
  (void)events;
  if (status < 0) {
    close_client(c, true);
    return;
  }
  for (;;) {
    ssize_t n = read(c->fd, t->rbuf, sizeof(t->rbuf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      close_client(c, true);
      return;
    }
    if (c->b->measuring) {
      t->bytes += (uint64_t)n;
      /* One reading of the clocks for all the events of this read: they
       * arrived together. */
      t->read_at = pt_clock_now();
      t->read_at_mono = pt_clock_mono();
    }
    if (llhttp_execute(&c->http, t->rbuf, (size_t)n) != HPE_OK) {
      fprintf(stderr, "bad response: %s\n", llhttp_errno_name(llhttp_get_errno(&c->http)));
      close_client(c, true);
      return;
    }
    if ((size_t)n < sizeof(t->rbuf))
      return;
  }
}

/* Connected: a duplicate of the socket is read through a poll handle (which,
 * unlike the TCP handle, can move to the probes' loop), and sent the request. */
static void connect_cb(uv_connect_t *req, int status)
{
  struct client *c = req->data;
  struct bench *b = c->b;
  pt_bench_dialer_done(&b->dialer);
  uv_os_fd_t tcp_fd;
  int fd = -1;
  size_t len = strlen(b->request);
  if (status < 0 || uv_fileno((uv_handle_t *)&c->tcp, &tcp_fd) < 0 || (fd = dup(tcp_fd)) < 0) {
    close_client(c, false);
    return;
  }
  uv_close((uv_handle_t *)&c->tcp, NULL);
  c->fd = fd;
  if (uv_poll_init_socket(b->loop, &c->poll, fd) < 0) {
    close(fd);
    c->closed = true;
    b->failed++;
    return;
  }
  c->poll.data = c;
  if (send(fd, b->request, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
    fprintf(stderr, "request: %s\n", strerror(errno));
    close_client(c, false);
    return;
  }
  uv_poll_start(&c->poll, UV_READABLE, poll_cb);
}

static void start_client(void *ud, size_t i)
{
  struct bench *b = ud;
  struct client *c = &b->clients[i];
  c->b = b;
  c->fd = -1;
  c->probe = b->probes.every && (i + 1) % b->probes.every == 0;
  c->t = c->probe ? &b->probes.tally : &b->main;
  b->probes.n += c->probe;
  llhttp_init(&c->http, HTTP_RESPONSE, &b->settings);
  c->http.data = c;
  pt_sse_reader_init(&c->sse, on_event, c);
  uv_tcp_init(b->loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  if (pt_bench_dial(&b->dialer, &c->tcp, &c->connect, connect_cb) < 0)
    close_client(c, false);
}

/* The probes' loop ends: their sockets are closed. */
static void probes_stop_cb(uv_async_t *a)
{
  struct bench *b = a->data;
  for (size_t i = 0; i < b->dialer.next; i++) {
    struct client *c = &b->clients[i];
    if (c->probe && !c->closed) {
      b->probes.open_at_end++;
      close_client(c, false);
    }
  }
  uv_close((uv_handle_t *)a, NULL);
}

static void probes_main(void *arg)
{
  struct bench *b = arg;
  struct sched_param sp = {.sched_priority = 10};
  b->probes.realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
  uv_run(&b->probes.loop, UV_RUN_DEFAULT);
}

/* Moves the probes from the main loop to their own (their poll handles in
 * the main loop are stopped and closed there; the sockets stay open) and
 * starts its thread. Runs on the main loop, before the probes' loop runs. */
static void probes_start(struct bench *b)
{
  if (!b->probes.n || uv_loop_init(&b->probes.loop) < 0)
    return;
  uv_async_init(&b->probes.loop, &b->probes.stop, probes_stop_cb);
  b->probes.stop.data = b;
  for (size_t i = 0; i < b->dialer.next; i++) {
    struct client *c = &b->clients[i];
    if (!c->probe || c->closed)
      continue;
    if (!c->snapshot) { /* not in (the two minutes passed): it stays with the others */
      c->probe = false;
      c->t = &b->main;
      b->probes.n--;
      continue;
    }
    uv_close((uv_handle_t *)&c->poll, NULL);
    uv_poll_init_socket(&b->probes.loop, &c->probe_poll, c->fd);
    c->probe_poll.data = c;
    uv_poll_start(&c->probe_poll, UV_READABLE, poll_cb);
  }
  b->probes.started = true;
  if (uv_thread_create(&b->probes.thread, probes_main, b) < 0) {
    fprintf(stderr, "bench-sse-fanout: no thread for the probes\n");
    exit(1);
  }
  /* The other clients' loop yields the core to anything else that needs it:
   * the probes, and the kernel's receive processing when it runs in a thread
   * (ksoftirqd), which would otherwise share the core with this loop as an
   * equal and hold up the probes' data behind the other clients' reads. */
  struct sched_param idle = {.sched_priority = 0};
  b->probes.main_idle = sched_setscheduler(0, SCHED_IDLE, &idle) == 0;
}

static void probes_end(struct bench *b)
{
  if (!b->probes.started)
    return;
  uv_async_send(&b->probes.stop);
  uv_thread_join(&b->probes.thread);
  uv_loop_close(&b->probes.loop);
}

static double percentile_of(const uint64_t *delays, size_t bins, uint64_t n, double p)
{
  if (!n)
    return -1;
  uint64_t want = (uint64_t)(p / 100.0 * (double)n), seen = 0;
  for (size_t i = 0; i < bins; i++) {
    seen += delays[i];
    if (seen > want)
      return (double)i;
  }
  return (double)bins;
}

/* The highest delay counted (its bin), -1 if none. */
static double last_bin(const uint64_t *delays, size_t bins)
{
  for (size_t i = bins; i-- > 0;)
    if (delays[i])
      return (double)i;
  return -1;
}

/* A tally's delays as JSON members: "delay_ms", "delay_ms_by_type", "first_seconds". */
static void print_delays(const struct tally *t, double first_s)
{
  const uint64_t *d = t->delays, *f = t->first_delays;
  printf("\"delay_ms\":{\"samples\":%" PRIu64 ",\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%.0f},"
         "\"delay_ms_by_type\":{",
         t->ndelays, percentile_of(d, MAX_DELAY_MS, t->ndelays, 50), percentile_of(d, MAX_DELAY_MS, t->ndelays, 90),
         percentile_of(d, MAX_DELAY_MS, t->ndelays, 99), last_bin(d, MAX_DELAY_MS));
  for (size_t k = 0; k < t->ntypes; k++) {
    const uint64_t *td = t->types[k].delays;
    uint64_t n = t->types[k].n;
    printf("%s\"%s\":{\"samples\":%" PRIu64 ",\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f}", k ? "," : "",
           t->types[k].name, n, percentile_of(td, TYPE_DELAY_MS, n, 50), percentile_of(td, TYPE_DELAY_MS, n, 90),
           percentile_of(td, TYPE_DELAY_MS, n, 99));
  }
  printf("},\"first_seconds\":{\"seconds\":%.1f,\"samples\":%" PRIu64 ",\"p50\":%.0f,\"p99\":%.0f,\"max\":%.0f}",
         first_s, t->nfirst, percentile_of(f, TYPE_DELAY_MS, t->nfirst, 50),
         percentile_of(f, TYPE_DELAY_MS, t->nfirst, 99), last_bin(f, TYPE_DELAY_MS));
}

static void report(struct bench *b)
{
  double secs = pt_clock_mono() - b->measure_from;
  const struct tally *m = &b->main, *p = &b->probes.tally;
  size_t open = b->probes.open_at_end; /* the probes are closed when their loop ends */
  for (size_t i = 0; i < b->dialer.next; i++)
    open += !b->clients[i].closed;
  uint64_t events = m->events + p->events;
  printf("SSE_JSON {\"clients\":%zu,\"connected\":%zu,\"with_snapshot\":%zu,\"connect_failed\":%zu,"
         "\"open_at_end\":%zu,\"closed_by_server\":%" PRIu64 ",\"seconds\":%.1f,\"events\":%" PRIu64
         ",\"events_per_sec\":%.1f,\"bytes\":%" PRIu64 ",",
         b->n, b->dialer.next - b->failed, b->ready, b->failed, open, m->closed_by_server + p->closed_by_server, secs,
         events, (double)events / secs, m->bytes + p->bytes);
  print_delays(m, b->first_s);
  printf(",\"probes\":{\"clients\":%zu,\"every\":%zu,\"realtime\":%s,\"others_idle\":%s,", b->probes.n,
         b->probes.every, b->probes.realtime ? "true" : "false", b->probes.main_idle ? "true" : "false");
  print_delays(p, b->first_s);
  printf("}}\n");
  fflush(stdout);
}

static void timer_cb(uv_timer_t *t)
{
  struct bench *b = t->data;
  if (!b->measuring) {
    /* Every client has its snapshot or has failed (or two minutes passed). */
    if (b->ready + b->failed < b->n && pt_clock_mono() - b->started_at < 120)
      return;
    b->measuring = true;
    b->measure_from = pt_clock_mono();
    probes_start(b);
    if (b->ready_file) {
      FILE *f = fopen(b->ready_file, "w");
      if (f)
        fclose(f);
    }
    return;
  }
  if (pt_clock_mono() - b->measure_from < b->seconds)
    return;
  probes_end(b);
  report(b);
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, NULL);
  for (size_t i = 0; i < b->dialer.next; i++)
    close_client(&b->clients[i], false);
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT CLIENTS SECONDS [READY_FILE] [PATH] [PAUSE_US] [FIRST_S] [PROBE_EVERY]\n",
            argv[0]);
    return 2;
  }
  pt_bench_raise_nofile();
  static struct bench b;
  b.loop = uv_default_loop();
  b.n = strtoul(argv[2], NULL, 10);
  b.seconds = strtod(argv[3], NULL);
  b.ready_file = argc > 4 && *argv[4] ? argv[4] : NULL;
  const char *path = argc > 5 && *argv[5] ? argv[5] : "/api/v1/events";
  long pause_us = argc > 6 ? strtol(argv[6], NULL, 10) : 0;
  b.first_s = argc > 7 ? strtod(argv[7], NULL) : 0;
  b.probes.every = argc > 8 ? strtoul(argv[8], NULL, 10) : 0;
  snprintf(b.request, sizeof(b.request), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
           path);
  b.clients = calloc(b.n, sizeof(*b.clients));
  if (!b.clients || tally_init(&b.main) < 0 || tally_init(&b.probes.tally) < 0)
    return 1;
  llhttp_settings_init(&b.settings);
  b.settings.on_body = on_body;
  uv_timer_init(b.loop, &b.timer);
  b.timer.data = &b;
  b.started_at = pt_clock_mono();
  uv_timer_start(&b.timer, timer_cb, 100, 100);
  pt_bench_dialer_init(&b.dialer, atoi(argv[1]), b.n, start_client, &b);
  pt_bench_dialer_run(&b.dialer);
  const struct timespec pause = {.tv_sec = pause_us / 1000000, .tv_nsec = pause_us % 1000000 * 1000};
  while (uv_run(b.loop, UV_RUN_ONCE))
    if (pause_us > 0 && b.measuring)
      nanosleep(&pause, NULL);
  for (size_t i = 0; i < b.dialer.next; i++)
    pt_sse_reader_close(&b.clients[i].sse);
  free(b.clients);
  tally_free(&b.main);
  tally_free(&b.probes.tally);
  return 0;
}
