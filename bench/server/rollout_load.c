/* bench-rollout: a rollout's agents in one process on one libuv loop, the
 * load tool of the rollout benchmark (docs/performance.md).
 *
 *   bench-rollout PORT NODES SECONDS [LAYERS] [STEPS] [PREFIX] [IMAGE]
 *
 * NODES simulated agents (PREFIX-00001 ...), each with its own keep-alive
 * connection to 127.0.0.1:PORT, POST /api/v1/report once a second for
 * SECONDS. The nodes are not in step, as real agents are not: node i reports
 * at i/NODES of each second, +-100 ms of jitter each time (10 % of the
 * interval), so the reports arrive spread evenly over every second. A node
 * whose previous report is still unanswered (or whose connection is being
 * set up again) when the next is due sends it as soon as it can ("late_sends");
 * one more falling due meanwhile is not sent ("skipped"). A connection the
 * server closes is opened again for the next report ("reconnects").
 *
 * Every node pulls the same image (the same digests: a DaemonSet's new
 * image on every node), LAYERS layers (default 8, of 8 to 32 MiB): the
 * layers start one after the other, a node completes in about STEPS reports
 * (default 45) at a speed of its own (0.6x to 1.4x), 1 % of the nodes stall
 * half-way (bytes frozen, layers "stalled"); a node that completed reports
 * completedAt for 10 more reports (the agent's linger), then empty reports.
 * The reports are a real agent's JSON v1 (digests, media types, times).
 * PT_TOKEN in the environment is sent as the bearer token.
 *
 * Each report's latency is taken from the moment its first byte is written
 * to the moment its response is complete (monotonic clock, microseconds).
 * At the end it prints one line "ROLLOUT_JSON {...}": reports answered and
 * per second, status counts (2xx, 429, other), errors, latency
 * p50/p90/p99/p999/max, and the tool's own CPU (percent of a core, and per
 * report), how long it waited for its core while runnable (percent of the
 * time; other processes on that core) and how late its timers fired: while
 * its CPU is well under 100 % and its timers are on time, the tool is not
 * what the latency measures. */
#include <inttypes.h>
#include <llhttp.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/json_writer.h"
#include "core/random.h"
#include "load_conn.h"

#define JITTER_MS 100
#define MAX_LAYERS 64
#define LINGER_REPORTS 10
#define DRAIN_MS 10000 /* after SECONDS, how long unanswered reports are waited for */

enum conn_state { DOWN, CONNECTING, UP, CLOSING };

struct layer {
  char digest[72];
  int64_t total;
};

struct node {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t timer;
  llhttp_t http;
  struct pt_buf req; /* the request being written: it lives until the write completes */
  struct load *l;
  enum conn_state conn;
  char name[64], boot[40], id[48];
  double speed, started, completed;
  bool stall, pending, close_after;
  unsigned seq, step, linger;
  uint64_t k;       /* the number of the next report: its nominal time is start + phase + k s */
  uint64_t due_ms;  /* when its timer is due, in the loop's time */
  uint64_t sent_ns; /* when the report in flight was written; 0: none in flight */
};

struct load {
  uv_loop_t *loop;
  struct pt_bench_dialer dialer;
  const char *prefix, *image, *token;
  int port;
  size_t nlayers, steps;
  double seconds;
  struct layer layers[MAX_LAYERS];
  char manifest[72];
  struct node *nodes;
  size_t n;
  unsigned short rng[3];
  uint64_t start_ms, end_ms, drain_until_ms;
  size_t set_up; /* nodes whose first connection was made or failed */
  struct pt_buf body; /* scratch: the report being built */
  llhttp_settings_t settings;
  char rbuf[65536];
  uv_timer_t end;
  bool began, running, finished;
  /* figures */
  uint32_t *lat_us;
  size_t nlat, caplat;
  uint64_t s2xx, s429, sother, body_bytes, sent;
  uint64_t connect_errors, read_errors, write_errors, parse_errors, closed_by_server, reconnects;
  uint64_t late_sends, skipped, unanswered;
  uint64_t timer_lag_max_ms, timer_lag_over_10ms;
  double cpu0, mono0, wait0, cpu_load, wall_load, wait_load;
};

static double rand_unit(struct load *l)
{
  return erand48(l->rng);
}

static void rand_hex(struct load *l, char *out, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++)
    out[i] = hex[(int)(rand_unit(l) * 16) & 15];
  out[n] = '\0';
}

/* The image's digests: sha256 of the image name and the blob's number, so
 * every node and every run agree, and they look like what they stand for. */
static void image_digest(const char *image, size_t i, char out[72])
{
  char seed[512];
  unsigned char md[SHA256_DIGEST_LENGTH];
  int len = snprintf(seed, sizeof(seed), "%s#%zu", image, i);
  SHA256((const unsigned char *)seed, (size_t)len, md);
  strcpy(out, "sha256:");
  for (size_t j = 0; j < sizeof(md); j++)
    snprintf(out + 7 + 2 * j, 3, "%02x", md[j]);
}

static double cpu_seconds_self(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* How long this thread has waited for a CPU while runnable (the kernel's
 * schedstat), seconds; -1 when the kernel does not tell. On a shared core
 * this, not the tool's own work, is what delays its timers and reads. */
static double run_queue_wait_seconds(void)
{
  unsigned long long run_ns, wait_ns;
  FILE *f = fopen("/proc/thread-self/schedstat", "r");
  int got = f ? fscanf(f, "%llu %llu", &run_ns, &wait_ns) : 0;
  if (f)
    fclose(f);
  return got == 2 ? (double)wait_ns / 1e9 : -1;
}

/* Fraction of layer i (0-based) done at progress x (0..1 of the whole pull):
 * the layers start one after the other, a layer's span is half the pull. */
static double layer_frac(const struct load *l, size_t i, double x)
{
  double f = (x - (double)i / (double)l->nlayers * 0.5) / 0.5;
  return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* The node's next report into l->body: its pull one step on. */
static void build_report(struct load *l, struct node *nd, double now)
{
  struct pt_jsonw w;
  pt_buf_reset(&l->body);
  pt_jsonw_init(&w, &l->body);
  nd->seq++;
  pt_jsonw_object_open(&w);
  pt_jsonw_key(&w, "schemaVersion");
  pt_jsonw_string(&w, "v1");
  pt_jsonw_key(&w, "nodeName");
  pt_jsonw_string(&w, nd->name);
  pt_jsonw_key(&w, "agentVersion");
  pt_jsonw_string(&w, "bench");
  pt_jsonw_key(&w, "bootId");
  pt_jsonw_string(&w, nd->boot);
  pt_jsonw_key(&w, "seq");
  pt_jsonw_int(&w, nd->seq);
  pt_jsonw_key(&w, "timestamp");
  pt_jsonw_time(&w, now);
  pt_jsonw_key(&w, "pulls");
  pt_jsonw_array_open(&w);
  if (nd->linger <= LINGER_REPORTS) {
    nd->step++;
    double x = nd->step * nd->speed / (double)l->steps;
    bool stalled = nd->stall && x >= 0.5;
    if (stalled)
      x = 0.5;
    if (x > 1)
      x = 1;
    int64_t total = 0, done = 0;
    for (size_t i = 0; i < l->nlayers; i++) {
      total += l->layers[i].total;
      done += (int64_t)floor((double)l->layers[i].total * layer_frac(l, i, x));
    }
    if (done >= total) {
      nd->linger++;
      if (nd->completed <= 0)
        nd->completed = now;
    }
    pt_jsonw_object_open(&w);
    pt_jsonw_key(&w, "id");
    pt_jsonw_string(&w, nd->id);
    pt_jsonw_key(&w, "imageRef");
    pt_jsonw_string(&w, l->image);
    pt_jsonw_key(&w, "manifestDigest");
    pt_jsonw_string(&w, l->manifest);
    pt_jsonw_key(&w, "indexDigest");
    pt_jsonw_null(&w);
    pt_jsonw_key(&w, "startedAt");
    pt_jsonw_time(&w, nd->started);
    pt_jsonw_key(&w, "completedAt");
    pt_jsonw_time(&w, done >= total ? nd->completed : 0);
    pt_jsonw_key(&w, "totalKnown");
    pt_jsonw_bool(&w, true);
    pt_jsonw_key(&w, "totalBytes");
    pt_jsonw_int(&w, total);
    pt_jsonw_key(&w, "downloadedBytes");
    pt_jsonw_int(&w, done);
    pt_jsonw_key(&w, "layers");
    pt_jsonw_array_open(&w);
    for (size_t i = 0; i < l->nlayers; i++) {
      const struct layer *ly = &l->layers[i];
      int64_t d = (int64_t)floor((double)ly->total * layer_frac(l, i, x));
      const char *state = d >= ly->total ? "done" : d > 0 ? (stalled ? "stalled" : "downloading") : "waiting";
      pt_jsonw_object_open(&w);
      pt_jsonw_key(&w, "digest");
      pt_jsonw_string(&w, ly->digest);
      pt_jsonw_key(&w, "mediaType");
      pt_jsonw_string(&w, "application/vnd.oci.image.layer.v1.tar+gzip");
      pt_jsonw_key(&w, "totalBytes");
      pt_jsonw_int(&w, ly->total);
      pt_jsonw_key(&w, "downloadedBytes");
      pt_jsonw_int(&w, d);
      pt_jsonw_key(&w, "state");
      pt_jsonw_string(&w, state);
      pt_jsonw_key(&w, "startedAt");
      pt_jsonw_time(&w, d > 0 ? nd->started : 0);
      pt_jsonw_key(&w, "updatedAt");
      /* A stalled layer's bytes stopped moving half-way through the pull. */
      pt_jsonw_time(&w, d > 0 ? (stalled ? nd->started + (double)l->steps / 2 : now) : 0);
      pt_jsonw_object_close(&w);
    }
    pt_jsonw_array_close(&w);
    pt_jsonw_object_close(&w);
  }
  pt_jsonw_array_close(&w);
  pt_jsonw_key(&w, "unattributed");
  pt_jsonw_array_open(&w);
  pt_jsonw_array_close(&w);
  pt_jsonw_object_close(&w);
}

static void node_close(struct node *nd);
static void node_connect(struct node *nd);
static void begin(struct load *l);

static void write_cb(uv_write_t *w, int status)
{
  struct node *nd = w->data;
  if (status < 0 && status != UV_ECANCELED && nd->conn == UP) {
    nd->l->write_errors++;
    nd->sent_ns = 0; /* this report is lost: counted as a write error, not a latency */
    node_close(nd);
  }
}

static void send_report(struct node *nd)
{
  struct load *l = nd->l;
  nd->pending = false;
  build_report(l, nd, pt_clock_now());
  pt_buf_reset(&nd->req);
  pt_buf_printf(&nd->req,
                "POST /api/v1/report HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                "%s%s%sContent-Length: %zu\r\n\r\n",
                l->port, l->token ? "Authorization: Bearer " : "", l->token ? l->token : "", l->token ? "\r\n" : "",
                l->body.len);
  pt_buf_append(&nd->req, l->body.data, l->body.len);
  if (nd->req.oom || l->body.oom) {
    fprintf(stderr, "bench-rollout: out of memory\n");
    exit(1);
  }
  l->sent++;
  l->body_bytes += l->body.len;
  uv_buf_t buf = uv_buf_init(nd->req.data, nd->req.len);
  nd->write.data = nd;
  nd->sent_ns = uv_hrtime(); /* the first byte goes out within this uv_write (the queue is empty) */
  if (uv_write(&nd->write, (uv_stream_t *)&nd->tcp, &buf, 1, write_cb) < 0) {
    l->write_errors++;
    nd->sent_ns = 0;
    node_close(nd);
  }
}

static void record_latency(struct load *l, uint64_t us)
{
  if (l->nlat == l->caplat) {
    size_t cap = l->caplat ? 2 * l->caplat : 65536;
    uint32_t *p = realloc(l->lat_us, cap * sizeof(*p));
    if (!p) {
      fprintf(stderr, "bench-rollout: out of memory\n");
      exit(1);
    }
    l->lat_us = p;
    l->caplat = cap;
  }
  l->lat_us[l->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int on_message_complete(llhttp_t *h)
{
  struct node *nd = h->data;
  struct load *l = nd->l;
  if (!nd->sent_ns)
    return 0; /* an answer to nothing (the report was counted lost): ignored */
  record_latency(l, (uv_hrtime() - nd->sent_ns) / 1000);
  nd->sent_ns = 0;
  unsigned status = h->status_code;
  if (status >= 200 && status < 300)
    l->s2xx++;
  else if (status == 429)
    l->s429++;
  else if (l->sother++ < 3)
    fprintf(stderr, "bench-rollout: %s got status %u\n", nd->name, status);
  if (!llhttp_should_keep_alive(h))
    nd->close_after = true; /* the server ends the connection: the next report reconnects */
  else if (nd->pending && l->running) {
    l->late_sends++;
    send_report(nd);
  }
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
  struct node *nd = h->data;
  (void)size;
  *buf = uv_buf_init(nd->l->rbuf, sizeof(nd->l->rbuf)); /* one read at a time: one buffer */
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct node *nd = s->data;
  struct load *l = nd->l;
  if (n < 0) {
    if (nd->sent_ns)
      l->read_errors++; /* closed with a report unanswered */
    else
      l->closed_by_server++;
    nd->sent_ns = 0;
    node_close(nd);
    return;
  }
  if (llhttp_execute(&nd->http, buf->base, (size_t)n) != HPE_OK) {
    l->parse_errors++;
    fprintf(stderr, "bench-rollout: bad response: %s\n", llhttp_errno_name(llhttp_get_errno(&nd->http)));
    nd->sent_ns = 0;
    node_close(nd);
    return;
  }
  if (nd->close_after)
    node_close(nd);
}

static void close_cb(uv_handle_t *h)
{
  struct node *nd = h->data;
  nd->conn = DOWN;
  nd->close_after = false;
  if (nd->pending && nd->l->running) {
    nd->l->reconnects++;
    node_connect(nd);
  }
}

static void node_close(struct node *nd)
{
  if (nd->conn == UP || nd->conn == CONNECTING) {
    nd->conn = CLOSING;
    uv_close((uv_handle_t *)&nd->tcp, close_cb);
  }
}

/* The first connections are set up before the reports start: once every
 * node has its connection (or failed to get one), they begin. */
static void set_up_one(struct load *l)
{
  if (!l->began && ++l->set_up == l->n)
    begin(l);
}

static void connect_cb(uv_connect_t *req, int status)
{
  struct node *nd = req->data;
  struct load *l = nd->l;
  pt_bench_dialer_done(&l->dialer);
  if (status == UV_ECANCELED)
    return;
  if (status < 0) {
    l->connect_errors++;
    nd->pending = false; /* this report is lost; the next one connects again */
    node_close(nd);
  } else if (nd->conn == CONNECTING) {
    nd->conn = UP;
    llhttp_init(&nd->http, HTTP_RESPONSE, &l->settings);
    nd->http.data = nd;
    uv_read_start((uv_stream_t *)&nd->tcp, alloc_cb, read_cb);
    if (nd->pending && l->running)
      send_report(nd);
  }
  set_up_one(l);
}

static void node_connect(struct node *nd)
{
  struct load *l = nd->l;
  uv_tcp_init(l->loop, &nd->tcp);
  nd->tcp.data = nd;
  uv_tcp_nodelay(&nd->tcp, 1);
  nd->connect.data = nd;
  nd->conn = CONNECTING;
  if (pt_bench_dial(&l->dialer, &nd->tcp, &nd->connect, connect_cb) < 0) {
    l->connect_errors++;
    nd->pending = false;
    node_close(nd);
    set_up_one(l);
  }
}

static void start_node(void *ud, size_t i)
{
  node_connect(&((struct load *)ud)->nodes[i]);
}

static void timer_cb(uv_timer_t *t);

/* Node i's k-th report is due at start + i/NODES s + k s, +-JITTER_MS. */
static void arm(struct node *nd)
{
  struct load *l = nd->l;
  size_t i = (size_t)(nd - l->nodes);
  uint64_t nominal = l->start_ms + (uint64_t)i * 1000 / l->n + nd->k * 1000;
  if (nominal >= l->end_ms)
    return; /* the node's last report was sent */
  int64_t at = (int64_t)nominal + (int64_t)(rand_unit(l) * (2 * JITTER_MS + 1)) - JITTER_MS;
  int64_t now = (int64_t)uv_now(l->loop);
  nd->due_ms = (uint64_t)(at > now ? at : now);
  uv_timer_start(&nd->timer, timer_cb, nd->due_ms - (uint64_t)now, 0);
}

static void timer_cb(uv_timer_t *t)
{
  struct node *nd = t->data;
  struct load *l = nd->l;
  uv_update_time(l->loop);
  uint64_t now = uv_now(l->loop), lag = now > nd->due_ms ? now - nd->due_ms : 0;
  if (lag > l->timer_lag_max_ms)
    l->timer_lag_max_ms = lag;
  l->timer_lag_over_10ms += lag > 10;
  nd->k++;
  if (nd->pending)
    l->skipped++; /* the report before is still waiting for its connection or answer */
  if (nd->conn == UP && !nd->sent_ns)
    send_report(nd);
  else {
    nd->pending = true;
    if (nd->conn == DOWN) {
      l->reconnects++;
      node_connect(nd);
    }
  }
  arm(nd);
}

static void finish(struct load *l);

/* SECONDS are over and the last report due (+JITTER_MS) was sent: no report
 * is sent any more (one still waiting to be sent counts as skipped); the
 * unanswered ones are waited for DRAIN_MS at most. */
static void end_cb(uv_timer_t *t)
{
  struct load *l = t->data;
  if (l->running) {
    l->running = false;
    for (size_t i = 0; i < l->n; i++)
      l->skipped += l->nodes[i].pending;
    l->cpu_load = cpu_seconds_self() - l->cpu0;
    l->wall_load = pt_clock_mono() - l->mono0;
    l->wait_load = l->wait0 < 0 ? -1 : run_queue_wait_seconds() - l->wait0;
    l->drain_until_ms = uv_now(l->loop) + DRAIN_MS;
  }
  size_t in_flight = 0;
  for (size_t i = 0; i < l->n; i++)
    in_flight += l->nodes[i].sent_ns != 0;
  if (in_flight && uv_now(l->loop) < l->drain_until_ms)
    return;
  l->unanswered = in_flight;
  uv_timer_stop(t);
  finish(l);
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least q of all at or below it. */
static double pct(const struct load *l, double q)
{
  if (!l->nlat)
    return -1;
  size_t rank = (size_t)ceil(q * (double)l->nlat);
  return l->lat_us[rank ? rank - 1 : 0];
}

static void finish(struct load *l)
{
  l->finished = true;
  qsort(l->lat_us, l->nlat, sizeof(*l->lat_us), cmp_u32);
  double sum = 0;
  for (size_t i = 0; i < l->nlat; i++)
    sum += l->lat_us[i];
  size_t up = 0;
  for (size_t i = 0; i < l->n; i++)
    up += l->nodes[i].conn == UP;
  double secs = (double)(l->end_ms - l->start_ms) / 1000.0;
  printf("ROLLOUT_JSON {\"nodes\":%zu,\"layers\":%zu,\"seconds\":%.1f,\"connected_at_end\":%zu,\"sent\":%" PRIu64
         ",\"answered\":%zu,\"reports_per_sec\":%.1f,\"mean_body_bytes\":%.0f,"
         "\"status\":{\"2xx\":%" PRIu64 ",\"429\":%" PRIu64 ",\"other\":%" PRIu64 "},"
         "\"errors\":{\"connect\":%" PRIu64 ",\"read\":%" PRIu64 ",\"write\":%" PRIu64 ",\"bad_response\":%" PRIu64
         ",\"unanswered\":%" PRIu64 ",\"closed_by_server_idle\":%" PRIu64 ",\"reconnects\":%" PRIu64 "},"
         "\"late_sends\":%" PRIu64 ",\"skipped\":%" PRIu64 ","
         "\"latency_us\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"p999\":%.0f,\"max\":%.0f,\"mean\":%.1f},"
         "\"tool_cpu_percent\":%.1f,\"tool_cpu_us_per_report\":%.1f,\"tool_run_queue_wait_percent\":%.1f,"
         "\"tool_timer_lag_ms\":{\"max\":%" PRIu64 ",\"over_10ms\":%" PRIu64 "}}\n",
         l->n, l->nlayers, secs, up, l->sent, l->nlat, (double)l->nlat / secs,
         l->sent ? (double)l->body_bytes / (double)l->sent : 0.0, l->s2xx, l->s429, l->sother, l->connect_errors,
         l->read_errors, l->write_errors, l->parse_errors, l->unanswered, l->closed_by_server, l->reconnects,
         l->late_sends, l->skipped, pct(l, 0.50), pct(l, 0.90), pct(l, 0.99), pct(l, 0.999),
         l->nlat ? (double)l->lat_us[l->nlat - 1] : -1.0, l->nlat ? sum / (double)l->nlat : -1.0,
         100.0 * l->cpu_load / l->wall_load, l->sent ? 1e6 * l->cpu_load / (double)l->sent : 0.0,
         l->wait_load < 0 ? -1.0 : 100.0 * l->wait_load / l->wall_load,
         l->timer_lag_max_ms, l->timer_lag_over_10ms);
  fflush(stdout);
  uv_close((uv_handle_t *)&l->end, NULL);
  for (size_t i = 0; i < l->n; i++) {
    uv_close((uv_handle_t *)&l->nodes[i].timer, NULL);
    node_close(&l->nodes[i]);
  }
}

static void begin(struct load *l)
{
  l->began = l->running = true;
  uv_update_time(l->loop);
  l->start_ms = uv_now(l->loop) + 100;
  l->end_ms = l->start_ms + (uint64_t)(l->seconds * 1000);
  l->cpu0 = cpu_seconds_self();
  l->mono0 = pt_clock_mono();
  l->wait0 = run_queue_wait_seconds();
  for (size_t i = 0; i < l->n; i++)
    arm(&l->nodes[i]);
  l->end.data = l;
  uv_timer_start(&l->end, end_cb, l->end_ms + JITTER_MS + 1 - uv_now(l->loop), 100);
}

static int usage(const char *argv0)
{
  fprintf(stderr,
          "usage: %s PORT NODES SECONDS [LAYERS] [STEPS] [PREFIX] [IMAGE]\n"
          "  NODES agents on 127.0.0.1:PORT, each reporting once a second for SECONDS;\n"
          "  LAYERS per pull (8), STEPS reports to complete at 1x speed (45),\n"
          "  node names PREFIX-00001... (rollout-node), the image IMAGE.\n"
          "  PT_TOKEN in the environment: the bearer token. Prints one ROLLOUT_JSON line.\n",
          argv0);
  return 2;
}

int main(int argc, char **argv)
{
  if (argc < 4 || argc > 8)
    return usage(argv[0]);
  static struct load l;
  char *end;
  long port = strtol(argv[1], &end, 10);
  if (*end || port <= 0 || port > 65535)
    return usage(argv[0]);
  l.port = (int)port;
  l.n = strtoul(argv[2], &end, 10);
  if (*end || l.n == 0)
    return usage(argv[0]);
  l.seconds = strtod(argv[3], &end);
  if (*end || !(l.seconds > 0))
    return usage(argv[0]);
  l.nlayers = argc > 4 ? strtoul(argv[4], &end, 10) : 8;
  if ((argc > 4 && *end) || l.nlayers == 0 || l.nlayers > MAX_LAYERS)
    return usage(argv[0]);
  l.steps = argc > 5 ? strtoul(argv[5], &end, 10) : 45;
  if ((argc > 5 && *end) || l.steps == 0)
    return usage(argv[0]);
  l.prefix = argc > 6 ? argv[6] : "rollout-node";
  l.image = argc > 7 ? argv[7] : "registry.example.com/platform/node-agent:v2";
  l.token = getenv("PT_TOKEN");
  if (l.token && !*l.token)
    l.token = NULL;
  pt_bench_raise_nofile();

  for (int i = 0; i < 3; i++)
    l.rng[i] = (unsigned short)(pt_random_unit() * 65536);
  image_digest(l.image, 0, l.manifest);
  for (size_t i = 0; i < l.nlayers; i++) {
    size_t k = i + 1; /* 8 to 32 MiB and a few pages: no two alike */
    image_digest(l.image, k, l.layers[i].digest);
    l.layers[i].total = (int64_t)((k % 4 + 1) * 8 * 1048576 + k * 4096);
  }
  l.loop = uv_default_loop();
  l.nodes = calloc(l.n, sizeof(*l.nodes));
  if (!l.nodes)
    return 1;
  pt_buf_init(&l.body);
  llhttp_settings_init(&l.settings);
  l.settings.on_message_complete = on_message_complete;
  double now = pt_clock_now();
  for (size_t i = 0; i < l.n; i++) {
    struct node *nd = &l.nodes[i];
    nd->l = &l;
    pt_buf_init(&nd->req);
    snprintf(nd->name, sizeof(nd->name), "%s-%05zu", l.prefix, i + 1);
    char a[9], b[5], c[5], d[5], e[13], id[17];
    rand_hex(&l, a, 8), rand_hex(&l, b, 4), rand_hex(&l, c, 4), rand_hex(&l, d, 4), rand_hex(&l, e, 12);
    snprintf(nd->boot, sizeof(nd->boot), "%s-%s-%s-%s-%s", a, b, c, d, e);
    rand_hex(&l, id, 16);
    snprintf(nd->id, sizeof(nd->id), "%s-%lld", id, (long long)now);
    nd->started = now;
    nd->speed = 0.6 + 0.8 * rand_unit(&l);
    nd->stall = rand_unit(&l) < 0.01;
    uv_timer_init(l.loop, &nd->timer);
    nd->timer.data = nd;
  }
  uv_timer_init(l.loop, &l.end);
  pt_bench_dialer_init(&l.dialer, l.port, l.n, start_node, &l);
  pt_bench_dialer_run(&l.dialer);
  uv_run(l.loop, UV_RUN_DEFAULT);
  for (size_t i = 0; i < l.n; i++)
    pt_buf_close(&l.nodes[i].req);
  pt_buf_close(&l.body);
  free(l.nodes);
  free(l.lat_us);
  uv_loop_close(l.loop);
  if (l.finished && !l.nlat)
    fprintf(stderr, "bench-rollout: no report was answered (is a server listening on 127.0.0.1:%d?)\n", l.port);
  return l.finished && l.nlat ? 0 : 1;
}
