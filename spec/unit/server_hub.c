/* The hub's routing: an event reaches the subscribers whose filter matches
 * its keys (node, namespaces, image) and its type. Its delivery, on real
 * sockets (a client thread with blocking sockets, the hub on the main
 * thread's loop): the frames of one loop pass reach each client as one
 * chunk, byte for byte, whatever the number of clients sharing them and
 * however many loop iterations the writing to all of them takes; a
 * client that does not read is dropped at its byte budget while the others
 * get everything; a resume gets the ring's frames. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/http_server.h"
#include "server/hub.h"
#include "test_net.h"

static const struct pt_hub_keys pull_a = {.node = "node-a", .nss = "shop\0web\0", .image = "reg/app:v2"};
static const struct pt_hub_keys node_a = {.node = "node-a"};
static const struct pt_hub_keys summary = {.image = "reg/app:v2"};

static void test_keys(void **state)
{
  struct pt_hub_filter none = {0};
  assert_true(pt_hub_filter_match(&none, "pull.progress", &pull_a));
  struct pt_hub_filter node = {.node = "node-a"}, other = {.node = "node-b"};
  assert_true(pt_hub_filter_match(&node, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&other, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&other, "rollout.summary", &summary)); /* no node: for every node filter */
  struct pt_hub_filter ns = {.ns = "web"}, ns2 = {.ns = "batch"};
  assert_true(pt_hub_filter_match(&ns, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&ns2, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&ns2, "node.updated", &node_a)); /* not namespaced */
  struct pt_hub_filter img = {.image = "app:v2"}, img2 = {.image = "db"};
  assert_true(pt_hub_filter_match(&img, "pull.progress", &pull_a));
  assert_true(pt_hub_filter_match(&img, "rollout.summary", &summary));
  assert_false(pt_hub_filter_match(&img2, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&img2, "rollout.summary", &summary));
  assert_true(pt_hub_filter_match(&img2, "node.updated", &node_a)); /* no image */
}

static void test_types(void **state)
{
  struct pt_hub_filter summaries = {.types = "rollout.summary\0"};
  assert_true(pt_hub_filter_match(&summaries, "rollout.summary", &summary));
  assert_false(pt_hub_filter_match(&summaries, "pull.progress", &pull_a));
  assert_false(pt_hub_filter_match(&summaries, "node.updated", &node_a));
  struct pt_hub_filter pulls = {.types = "pull.*\0alert\0"};
  assert_true(pt_hub_filter_wants(&pulls, "pull.started"));
  assert_true(pt_hub_filter_wants(&pulls, "pull.evicted"));
  assert_true(pt_hub_filter_wants(&pulls, "alert"));
  assert_false(pt_hub_filter_wants(&pulls, "pullx"));
  assert_false(pt_hub_filter_wants(&pulls, "rollout.summary"));
  /* Types and keys together. */
  struct pt_hub_filter both = {.image = "db", .types = "pull.*\0"};
  assert_false(pt_hub_filter_match(&both, "pull.progress", &pull_a));
}

static void test_copy(void **state)
{
  struct pt_hub_filter src = {.node = "n", .ns = "", .image = "i", .types = "a\0b.*\0"}, dst;
  assert_int_equal(pt_hub_filter_copy(&dst, &src), 0);
  assert_string_equal(dst.node, "n");
  assert_null(dst.ns); /* "" filters nothing */
  assert_string_equal(dst.image, "i");
  assert_memory_equal(dst.types, "a\0b.*\0", 7);
  pt_hub_filter_clear(&dst);
  assert_null(dst.types);
}

/* --- delivery on sockets --------------------------------------------------- */

enum cmd { CMD_NONE, CMD_PASS, CMD_BIG, CMD_MANY, CMD_STATS, CMD_STOP };
/* CMD_MANY's events in one pass: more pieces than one system call takes. */
#define MANY 1500

struct fan {
  uv_loop_t loop;
  uv_async_t async;
  struct pt_http_server *http;
  struct pt_hub *hub;
  int port;
  enum cmd cmd;
  int batch;
  pthread_mutex_t mu;
  int failures;
  char why[256];
  struct pt_hub_stats stats; /* after CMD_BIG batches: read by the client */
  uint64_t wait_counts[PT_HUB_WAIT_BUCKETS]; /* stats.wait's, after CMD_STATS */
};

#define CHECK(f, cond)                                                                \
  do {                                                                                \
    if (!(cond) && !(f)->failures++)                                                  \
      snprintf((f)->why, sizeof((f)->why), "line %d: %s", __LINE__, #cond);           \
  } while (0)

/* A snapshot far bigger than the queue budget and than what the kernel
 * buffers (a server with thousands of pulls). */
#define BIG_SNAPSHOT (24u << 20)

static char *snapshot(void *ud, const struct pt_hub_filter *filter)
{
  (void)ud;
  if (filter->node && strcmp(filter->node, "big-snapshot") == 0) {
    char *s = malloc(BIG_SNAPSHOT + 1);
    if (s) {
      memset(s, ' ', BIG_SNAPSHOT);
      s[0] = '{';
      s[BIG_SNAPSHOT - 1] = '}';
      s[BIG_SNAPSHOT] = '\0';
    }
    return s;
  }
  return strdup("{\"snapshot\":true}");
}

static void handler(void *ud, const struct pt_http_req *req, struct pt_http_resp *resp)
{
  struct fan *f = ud;
  char node[64];
  struct pt_hub_filter filter = {0};
  if (pt_http_query_get(req->query, "node", node, sizeof(node)) == 1)
    filter.node = node;
  resp->status = 200;
  resp->content_type = "text/event-stream";
  resp->stream_ud = pt_hub_subscription_new(f->hub, &filter, pt_http_req_header(req, "last-event-id"));
  resp->stream_start = pt_hub_stream_start;
}

static const struct pt_hub_keys on_a = {.node = "node-a"}, on_b = {.node = "node-b"}, nowhere = {0};

/* A 32 KiB event of the big batches. */
static char big_data[32 * 1024];

static void async_cb(uv_async_t *a)
{
  struct fan *f = a->data;
  pthread_mutex_lock(&f->mu);
  enum cmd cmd = f->cmd;
  f->cmd = CMD_NONE;
  pthread_mutex_unlock(&f->mu);
  if (cmd == CMD_PASS) {
    /* Three events in one pass: one chunk per client. */
    pt_hub_publish(f->hub, "pull.progress", &on_a, "{\"n\":1}");
    pt_hub_publish(f->hub, "pull.progress", &on_b, "{\"n\":2}");
    pt_hub_publish(f->hub, "rollout.summary", &nowhere, "{\"n\":3}");
  } else if (cmd == CMD_BIG) {
    for (int i = 0; i < 4; i++)
      pt_hub_publish(f->hub, "pull.progress", &nowhere, big_data);
    pthread_mutex_lock(&f->mu);
    pt_hub_stats(f->hub, &f->stats);
    f->batch++;
    pthread_mutex_unlock(&f->mu);
  } else if (cmd == CMD_MANY) {
    for (int i = 0; i < MANY; i++) {
      char data[32];
      snprintf(data, sizeof(data), "{\"n\":%d}", i);
      pt_hub_publish(f->hub, "pull.progress", &nowhere, data);
    }
  } else if (cmd == CMD_STATS) {
    pthread_mutex_lock(&f->mu);
    pt_hub_stats(f->hub, &f->stats);
    /* The histogram's counts are the hub's: copied here, on the loop. */
    memcpy(f->wait_counts, f->stats.wait.counts, sizeof(f->wait_counts));
    f->batch++;
    pthread_mutex_unlock(&f->mu);
  } else if (cmd == CMD_STOP) {
    pt_hub_destroy(f->hub);
    f->hub = NULL;
    pt_http_server_destroy(f->http);
    uv_close((uv_handle_t *)&f->async, NULL);
  }
}

static void send_cmd(struct fan *f, enum cmd cmd)
{
  pthread_mutex_lock(&f->mu);
  f->cmd = cmd;
  pthread_mutex_unlock(&f->mu);
  uv_async_send(&f->async);
}

/* A connection to the test's server with its request sent. */
static int dial(int port, const char *request)
{
  int fd = test_dial(port);
  if (fd >= 0)
    test_send_all(fd, request, strlen(request));
  return fd;
}

/* Reads exactly n bytes; false on EOF or error. */
static bool read_n(int fd, char *buf, size_t n)
{
  for (size_t at = 0; at < n;) {
    ssize_t r = read(fd, buf + at, n - at);
    if (r <= 0)
      return false;
    at += (size_t)r;
  }
  return true;
}

/* Reads up to and including the blank line ending the response head. */
static bool read_head(int fd)
{
  char last4[4] = {0};
  char ch;
  while (read(fd, &ch, 1) == 1) {
    memmove(last4, last4 + 1, 3);
    last4[3] = ch;
    if (memcmp(last4, "\r\n\r\n", 4) == 0)
      return true;
  }
  return false;
}

/* One chunk of a chunked body (malloc'ed, NUL-terminated), or NULL. */
static char *read_chunk(int fd, size_t *len)
{
  char line[32];
  size_t n = 0;
  while (n + 1 < sizeof(line) && read(fd, line + n, 1) == 1 && line[n] != '\n')
    n++;
  line[n] = '\0';
  size_t size = strtoul(line, NULL, 16);
  char *data = malloc(size + 3);
  if (!data || !read_n(fd, data, size + 2) || memcmp(data + size, "\r\n", 2) != 0) {
    free(data);
    return NULL;
  }
  data[size] = '\0';
  *len = size;
  return data;
}

static bool chunk_is(int fd, const char *want)
{
  size_t len = 0;
  char *got = read_chunk(fd, &len);
  bool ok = got && len == strlen(want) && memcmp(got, want, len) == 0;
  if (!ok)
    fprintf(stderr, "chunk: got [%s], want [%s]\n", got ? got : "(none)", want);
  free(got);
  return ok;
}

static const char *const retry_frame = "retry: 2000\n\n";
/* The snapshot carries the id of the last event before it. */
static const char *const snapshot_frame = "id: 0\nevent: snapshot\ndata: {\"snapshot\":true}\n\n";
static const char *const pass_all = "id: 1\nevent: pull.progress\ndata: {\"n\":1}\n\n"
                                    "id: 2\nevent: pull.progress\ndata: {\"n\":2}\n\n"
                                    "id: 3\nevent: rollout.summary\ndata: {\"n\":3}\n\n";
static const char *const pass_b = "id: 2\nevent: pull.progress\ndata: {\"n\":2}\n\n"
                                  "id: 3\nevent: rollout.summary\ndata: {\"n\":3}\n\n";

static void *fan_client(void *arg)
{
  struct fan *f = arg;
  /* Subscribers: the whole stream (twice), node-b's, and one on HTTP/1.0
   * (no chunks: the frames as they are). */
  int all1 = dial(f->port, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  int all2 = dial(f->port, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  int onb = dial(f->port, "GET /events?node=node-b HTTP/1.1\r\nHost: t\r\n\r\n");
  int old = dial(f->port, "GET /events HTTP/1.0\r\nHost: t\r\n\r\n");
  int fds[] = {all1, all2, onb};
  for (int i = 0; i < 3; i++) {
    CHECK(f, read_head(fds[i]));
    CHECK(f, chunk_is(fds[i], retry_frame));
    CHECK(f, chunk_is(fds[i], snapshot_frame));
  }
  CHECK(f, read_head(old));
  char buf[512];
  size_t pre = strlen(retry_frame) + strlen(snapshot_frame);
  CHECK(f, read_n(old, buf, pre));

  send_cmd(f, CMD_PASS);
  CHECK(f, chunk_is(all1, pass_all));
  CHECK(f, chunk_is(all2, pass_all));
  CHECK(f, chunk_is(onb, pass_b));
  memset(buf, 0, sizeof(buf));
  CHECK(f, read_n(old, buf, strlen(pass_all)) && strcmp(buf, pass_all) == 0);
  close(old);

  /* A resume from id 1: the ring's frames after it, node-b's filter applied
   * (one chunk: they are queued in the same pass). */
  int resumed = dial(f->port, "GET /events?node=node-b HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 1\r\n\r\n");
  CHECK(f, read_head(resumed));
  CHECK(f, chunk_is(resumed, retry_frame));
  CHECK(f, chunk_is(resumed, pass_b));
  close(resumed);

  close(onb);
  /* all2 stops reading; all1 reads every batch of 4 x 32 KiB before the next
   * one is published (its queue, as the hub sees it, may lag a loop pass:
   * 2 batches of 128 KiB, under its budget of 512 KiB). all2's bytes pile
   * up in the kernel, then in its queue, until it passes its budget and is
   * dropped; all1 loses nothing. */
  uint64_t next_id = 4;
  bool dropped = false;
  for (int batch = 0; batch < 2000 && !dropped; batch++) {
    send_cmd(f, CMD_BIG);
    for (int i = 0; i < 4; i++) {
      size_t len = 0;
      char *got = NULL;
      /* One chunk per pass: the 4 frames in it. */
      if (i == 0) {
        got = read_chunk(all1, &len);
        CHECK(f, got != NULL);
        if (!got)
          break;
        const char *p = got;
        for (int k = 0; k < 4; k++) {
          char want[64];
          snprintf(want, sizeof(want), "id: %llu\nevent: pull.progress\ndata: ", (unsigned long long)next_id++);
          CHECK(f, strncmp(p, want, strlen(want)) == 0);
          p += strlen(want) + strlen(big_data) + 2;
        }
        CHECK(f, (size_t)(p - got) == len);
        free(got);
      }
    }
    if (f->failures)
      break;
    pthread_mutex_lock(&f->mu);
    dropped = f->stats.dropped_slow > 0 && f->batch == batch + 1;
    pthread_mutex_unlock(&f->mu);
  }
  CHECK(f, dropped);
  pthread_mutex_lock(&f->mu);
  CHECK(f, f->stats.dropped_slow == 1);
  pthread_mutex_unlock(&f->mu);
  /* The dropped client reads what the kernel holds, then the end. */
  char sink[65536];
  ssize_t r = 0;
  while (dropped && (r = read(all2, sink, sizeof(sink))) > 0)
    ;
  CHECK(f, r <= 0);
  close(all2);
  /* all1 is still served. */
  send_cmd(f, CMD_PASS);
  size_t len = 0;
  char *got = read_chunk(all1, &len);
  CHECK(f, got && strstr(got, "data: {\"n\":3}\n\n") != NULL);
  free(got);
  close(all1);
  send_cmd(f, CMD_STOP);
  return NULL;
}

static bool starts_with(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Waits (up to 5 s) until the loop has handled `want` batch commands. */
static void wait_batches(struct fan *f, int want)
{
  for (int waited = 0; waited < 5000; waited++) {
    pthread_mutex_lock(&f->mu);
    int batch = f->batch;
    pthread_mutex_unlock(&f->mu);
    if (batch == want)
      return;
    usleep(1000);
  }
}

/* A reader still reading a snapshot bigger than its queue budget is not
 * dropped by the next event: only what follows the snapshot counts. */
static void *big_snapshot_client(void *arg)
{
  struct fan *f = arg;
  int fd = dial(f->port, "GET /events?node=big-snapshot HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(f, read_head(fd));
  CHECK(f, chunk_is(fd, retry_frame));
  /* An event of 128 KiB (under the budget of 512 KiB) while the snapshot is
   * still queued, unread. */
  send_cmd(f, CMD_BIG);
  wait_batches(f, 1);
  size_t len = 0;
  char *got = read_chunk(fd, &len);
  CHECK(f, got && len > BIG_SNAPSHOT && starts_with(got, "id: 0\nevent: snapshot\ndata: {"));
  free(got);
  got = read_chunk(fd, &len);
  CHECK(f, got && starts_with(got, "id: 1\nevent: pull.progress\ndata: x"));
  CHECK(f, len == 4 * (strlen("id: N\nevent: pull.progress\ndata: \n\n") + strlen(big_data)));
  free(got);
  pthread_mutex_lock(&f->mu);
  CHECK(f, f->batch == 1 && f->stats.dropped_slow == 0 && f->stats.clients == 1);
  pthread_mutex_unlock(&f->mu);
  close(fd);
  send_cmd(f, CMD_STOP);
  return NULL;
}

/* 1,500 frames in one pass go out as one chunk, in order, although the
 * kernel takes at most 1,024 pieces a call: the rest is queued behind. */
static void *many_client(void *arg)
{
  struct fan *f = arg;
  int fd = dial(f->port, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(f, read_head(fd));
  CHECK(f, chunk_is(fd, retry_frame));
  CHECK(f, chunk_is(fd, snapshot_frame));
  send_cmd(f, CMD_MANY);
  struct pt_buf want;
  pt_buf_init(&want);
  for (int i = 0; i < MANY; i++)
    pt_buf_printf(&want, "id: %d\nevent: pull.progress\ndata: {\"n\":%d}\n\n", i + 1, i);
  size_t len = 0;
  char *got = read_chunk(fd, &len);
  CHECK(f, got && len == want.len && memcmp(got, want.data, len) == 0);
  free(got);
  pt_buf_close(&want);
  /* That write's wait is in the histogram: one observation, under 2.5 s. */
  send_cmd(f, CMD_STATS);
  wait_batches(f, 1);
  pthread_mutex_lock(&f->mu);
  uint64_t in_buckets = 0;
  for (size_t i = 0; i < PT_HUB_WAIT_BUCKETS; i++)
    in_buckets += f->wait_counts[i];
  CHECK(f, f->batch == 1 && f->stats.wait.count == 1 && in_buckets == 1 && f->stats.wait.sum >= 0 &&
               f->stats.wait.sum < 2.5);
  pthread_mutex_unlock(&f->mu);
  close(fd);
  send_cmd(f, CMD_STOP);
  return NULL;
}

static void run_fan(void *(*client)(void *))
{
  memset(big_data, 'x', sizeof(big_data) - 1);
  struct fan f = {0};
  pthread_mutex_init(&f.mu, NULL);
  assert_int_equal(uv_loop_init(&f.loop), 0);
  /* Two clients written per loop iteration: a pass to four clients takes
   * two iterations, and each client still gets its frames in one chunk. */
  struct pt_hub_options ho = {.ring_size = 64, .client_queue_max = 512 * 1024, .first_id = 1, .flush_slice = 2};
  f.hub = pt_hub_create(&f.loop, &ho, snapshot, NULL);
  assert_non_null(f.hub);
  f.http = pt_http_server_create(&f.loop, NULL, handler, &f);
  assert_non_null(f.http);
  assert_int_equal(pt_http_server_listen(f.http, "127.0.0.1", 0), 0);
  f.port = pt_http_server_port(f.http);
  uv_async_init(&f.loop, &f.async, async_cb);
  f.async.data = &f;
  pthread_t th;
  pthread_create(&th, NULL, client, &f);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  assert_int_equal(uv_loop_close(&f.loop), 0);
  pthread_mutex_destroy(&f.mu);
  if (f.failures)
    fail_msg("%d check(s) failed; first: %s", f.failures, f.why);
}

static void test_big_snapshot(void **state)
{
  (void)state;
  run_fan(big_snapshot_client);
}

static void test_many_frames_in_one_pass(void **state)
{
  (void)state;
  run_fan(many_client);
}

static void test_delivery(void **state)
{
  (void)state;
  run_fan(fan_client);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_keys),
    cmocka_unit_test(test_types),
    cmocka_unit_test(test_copy),
    cmocka_unit_test(test_delivery),
    cmocka_unit_test(test_big_snapshot),
    cmocka_unit_test(test_many_frames_in_one_pass),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
