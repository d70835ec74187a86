/* bench-sse-fanout: many event-stream clients in one process on one libuv
 * loop, the load client of the fan-out benchmark (docs/performance.md).
 *
 *   bench-sse-fanout PORT CLIENTS SECONDS [READY_FILE] [PATH] [PAUSE_US] [FIRST_S]
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
 * PAUSE_US (default 0): while measuring, the loop sleeps that long after
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cli/sse.h"
#include "core/clock.h"
#include "load_conn.h"

#define MAX_DELAY_MS 600000
#define TYPE_DELAY_MS 10000 /* per event type: 1 ms bins up to 10 s (later ones count in the last) */
#define MAX_TYPES 16

struct client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  llhttp_t http;
  struct pt_sse_reader sse;
  struct bench *b;
  bool snapshot, closed;
};

struct bench {
  uv_loop_t *loop;
  struct pt_bench_dialer dialer;
  char request[512];
  struct client *clients;
  size_t n, ready, failed, closed_by_server;
  uint64_t events, bytes;
  uint64_t *delays; /* count per millisecond of delay */
  uint64_t ndelays;
  struct {
    char name[40];
    uint64_t *delays, n;
  } types[MAX_TYPES];
  size_t ntypes;
  double read_at, read_at_mono; /* the clocks when the read being parsed returned */
  double first_s;          /* FIRST_S */
  uint64_t *first_delays;  /* TYPE_DELAY_MS bins: the events of the first FIRST_S seconds */
  uint64_t nfirst;
  bool measuring;
  double started_at, measure_from, seconds;
  const char *ready_file;
  uv_timer_t timer;
  llhttp_settings_t settings;
  char rbuf[65536];
};

static void on_event(void *ud, const char *type, const char *id, const char *data, size_t len)
{
  struct client *c = ud;
  struct bench *b = c->b;
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
  b->events++;
  /* Every event's data starts {"v":1,"type":"...","time":"<RFC 3339>" */
  const char *t = memmem(data, len, "\"time\":\"", 8);
  double when;
  char buf[40];
  if (!t || (size_t)(data + len - (t + 8)) < 24)
    return;
  memcpy(buf, t + 8, 24);
  buf[24] = '\0';
  if (pt_time_parse(buf, &when) < 0)
    return;
  double ms = (b->read_at - when) * 1000.0;
  size_t i = ms < 0 ? 0 : ms >= MAX_DELAY_MS ? MAX_DELAY_MS - 1 : (size_t)ms;
  if (b->first_s > 0 && b->read_at_mono - b->measure_from < b->first_s) {
    b->first_delays[i < TYPE_DELAY_MS ? i : TYPE_DELAY_MS - 1]++;
    b->nfirst++;
    return;
  }
  b->delays[i]++;
  b->ndelays++;
  size_t k = 0;
  while (k < b->ntypes && strcmp(b->types[k].name, type) != 0)
    k++;
  if (k == b->ntypes && k < MAX_TYPES && (b->types[k].delays = calloc(TYPE_DELAY_MS, sizeof(uint64_t)))) {
    snprintf(b->types[k].name, sizeof(b->types[k].name), "%s", type);
    b->ntypes++;
  }
  if (k < b->ntypes) {
    b->types[k].delays[i < TYPE_DELAY_MS ? i : TYPE_DELAY_MS - 1]++;
    b->types[k].n++;
  }
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
  struct client *c = h->data;
  return pt_sse_reader_feed(&c->sse, at, len) == 0 ? 0 : -1;
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
  struct client *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->b->rbuf, sizeof(c->b->rbuf)); /* one read at a time: one buffer */
}

/* A client that ends before its snapshot failed to connect; one the server
 * ends while measuring was closed by it (e.g. dropped as too slow). */
static void close_client(struct client *c, bool by_server)
{
  if (c->closed)
    return;
  c->closed = true;
  if (!c->snapshot)
    c->b->failed++;
  else if (by_server && c->b->measuring)
    c->b->closed_by_server++;
  uv_close((uv_handle_t *)&c->tcp, NULL);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct client *c = s->data;
  struct bench *b = c->b;
  if (n < 0) {
    close_client(c, true);
    return;
  }
  if (b->measuring) {
    b->bytes += (uint64_t)n;
    /* One reading of the clocks for all the events of this read: they
     * arrived together. */
    b->read_at = pt_clock_now();
    b->read_at_mono = pt_clock_mono();
  }
  if (llhttp_execute(&c->http, buf->base, (size_t)n) != HPE_OK) {
    fprintf(stderr, "bad response: %s\n", llhttp_errno_name(llhttp_get_errno(&c->http)));
    close_client(c, true);
  }
}

static void write_cb(uv_write_t *w, int status)
{
  struct client *c = w->data;
  if (status < 0)
    close_client(c, true);
}

static void connect_cb(uv_connect_t *req, int status)
{
  struct client *c = req->data;
  struct bench *b = c->b;
  pt_bench_dialer_done(&b->dialer);
  if (status < 0) {
    close_client(c, false);
  } else {
    uv_buf_t buf = uv_buf_init(b->request, strlen(b->request));
    c->write.data = c;
    uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  }
}

static void start_client(void *ud, size_t i)
{
  struct bench *b = ud;
  struct client *c = &b->clients[i];
  c->b = b;
  llhttp_init(&c->http, HTTP_RESPONSE, &b->settings);
  c->http.data = c;
  pt_sse_reader_init(&c->sse, on_event, c);
  uv_tcp_init(b->loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  if (pt_bench_dial(&b->dialer, &c->tcp, &c->connect, connect_cb) < 0)
    close_client(c, false);
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

static double percentile(const struct bench *b, double p)
{
  return percentile_of(b->delays, MAX_DELAY_MS, b->ndelays, p);
}

static void report(struct bench *b)
{
  double secs = pt_clock_mono() - b->measure_from;
  double max = -1;
  for (size_t i = MAX_DELAY_MS; i-- > 0;)
    if (b->delays[i]) {
      max = (double)i;
      break;
    }
  size_t open = 0;
  for (size_t i = 0; i < b->dialer.next; i++)
    open += !b->clients[i].closed;
  printf("SSE_JSON {\"clients\":%zu,\"connected\":%zu,\"with_snapshot\":%zu,\"connect_failed\":%zu,"
         "\"open_at_end\":%zu,\"closed_by_server\":%zu,\"seconds\":%.1f,\"events\":%" PRIu64
         ",\"events_per_sec\":%.1f,\"bytes\":%" PRIu64 ",\"delay_ms\":{\"samples\":%" PRIu64
         ",\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%.0f},\"delay_ms_by_type\":{",
         b->n, b->dialer.next - b->failed, b->ready, b->failed, open, b->closed_by_server, secs, b->events,
         (double)b->events / secs, b->bytes, b->ndelays, percentile(b, 50), percentile(b, 90), percentile(b, 99),
         max);
  for (size_t k = 0; k < b->ntypes; k++) {
    const uint64_t *d = b->types[k].delays;
    uint64_t n = b->types[k].n;
    printf("%s\"%s\":{\"samples\":%" PRIu64 ",\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f}", k ? "," : "",
           b->types[k].name, n, percentile_of(d, TYPE_DELAY_MS, n, 50), percentile_of(d, TYPE_DELAY_MS, n, 90),
           percentile_of(d, TYPE_DELAY_MS, n, 99));
  }
  double first_max = -1;
  for (size_t i = TYPE_DELAY_MS; i-- > 0;)
    if (b->first_delays[i]) {
      first_max = (double)i;
      break;
    }
  printf("},\"first_seconds\":{\"seconds\":%.1f,\"samples\":%" PRIu64 ",\"p50\":%.0f,\"p99\":%.0f,\"max\":%.0f}}\n",
         b->first_s, b->nfirst, percentile_of(b->first_delays, TYPE_DELAY_MS, b->nfirst, 50),
         percentile_of(b->first_delays, TYPE_DELAY_MS, b->nfirst, 99), first_max);
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
    if (b->ready_file) {
      FILE *f = fopen(b->ready_file, "w");
      if (f)
        fclose(f);
    }
    return;
  }
  if (pt_clock_mono() - b->measure_from < b->seconds)
    return;
  report(b);
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, NULL);
  for (size_t i = 0; i < b->dialer.next; i++)
    close_client(&b->clients[i], false);
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT CLIENTS SECONDS [READY_FILE] [PATH] [PAUSE_US] [FIRST_S]\n", argv[0]);
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
  snprintf(b.request, sizeof(b.request), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
           path);
  b.clients = calloc(b.n, sizeof(*b.clients));
  b.delays = calloc(MAX_DELAY_MS, sizeof(*b.delays));
  b.first_delays = calloc(TYPE_DELAY_MS, sizeof(*b.first_delays));
  if (!b.clients || !b.delays || !b.first_delays)
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
  free(b.delays);
  free(b.first_delays);
  for (size_t k = 0; k < b.ntypes; k++)
    free(b.types[k].delays);
  return 0;
}
