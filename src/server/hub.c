#include "server/hub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/shared_buf.h"
#include "core/sse.h"

struct entry {
  uint64_t id;
  struct pt_shared_buf *frame; /* framed once, shared by every client it goes to */
  const char *type; /* static */
  char *node;   /* routing keys, may be NULL */
  char *nss;    /* NUL-separated namespaces ending with an empty string, or NULL */
  char *image;
};

struct client {
  struct pt_hub *hub;
  struct pt_http_conn *conn;
  struct pt_hub_filter filter;
  bool dropped;
  /* Frames published during this loop pass, by reference, written at once
   * before the loop polls again: one write per client per pass, and no
   * copy of any frame per client. */
  struct pt_shared_buf **pending;
  size_t npending, cap_pending;
  size_t pending_bytes;
  double pending_since; /* pt_clock_mono() when the first pending frame was published */
  /* Bytes written after the opening (the retry line and the snapshot). Only
   * they count against the queue budget: what is queued beyond them is the
   * opening still draining (FIFO), and a snapshot of thousands of pulls must
   * not get a reader that is reading it dropped at the next event. */
  uint64_t since_opening;
  struct client *prev, *next;
  /* In the hub's list of clients with frames to write (oldest first). */
  bool dirty;
  struct client *dirty_prev, *dirty_next;
};

struct pt_hub_subscription {
  struct pt_hub *hub;
  struct pt_hub_filter filter;
  bool has_last;
  uint64_t last;
};

const double pt_hub_wait_bounds[PT_HUB_WAIT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1,    2.5};

struct pt_hub {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_prepare_t flush;
  uv_idle_t more;  /* active while clients wait for the next slice: the loop polls without blocking */
  bool flush_pending;
  struct client *dirty_head, *dirty_tail;
  struct client **slice;                /* flush_slice clients written in one batch */
  struct pt_http_shared_write *writes;  /* their writes */
  int open_handles;
  struct pt_hub_options opts;
  pt_hub_snapshot_fn snapshot;
  void *ud;
  struct entry *ring;
  size_t head, count;   /* oldest at head */
  uint64_t next_id;
  struct client *clients;
  struct pt_buf framing;           /* where an event is framed before it is shared */
  struct pt_shared_buf *heartbeat; /* the heartbeat comment, shared too */
  struct pt_hub_stats stats;
  uint64_t wait_counts[PT_HUB_WAIT_BUCKETS]; /* stats.wait's */
  uint64_t last_reader_ms; /* uv_now when the last client left; 0 before the first */
  bool shutting;
};

static void entry_clear(struct entry *e)
{
  pt_shared_buf_unref(e->frame);
  free(e->node);
  free(e->nss);
  free(e->image);
  memset(e, 0, sizeof(*e));
}

static size_t list_len(const char *l)
{
  size_t len = 0;
  while (l[len])
    len += strlen(l + len) + 1;
  return len + 1;
}

bool pt_hub_filter_wants(const struct pt_hub_filter *f, const char *type)
{
  if (!f->types)
    return true;
  for (const char *t = f->types; *t; t += strlen(t) + 1) {
    size_t n = strlen(t);
    if (n >= 2 && t[n - 2] == '.' && t[n - 1] == '*' ? strncmp(type, t, n - 1) == 0 : strcmp(type, t) == 0)
      return true;
  }
  return false;
}

bool pt_hub_filter_match(const struct pt_hub_filter *f, const char *type, const struct pt_hub_keys *k)
{
  if (f->node && k->node && strcmp(f->node, k->node) != 0)
    return false;
  if (f->image && k->image && !strstr(k->image, f->image))
    return false;
  if (f->ns && k->nss) {
    bool found = false;
    for (const char *p = k->nss; *p && !found; p += strlen(p) + 1)
      found = strcmp(p, f->ns) == 0;
    if (!found)
      return false;
  }
  return pt_hub_filter_wants(f, type);
}

static int copy_member(char **dst, const char *src)
{
  *dst = src && *src ? strdup(src) : NULL;
  return src && *src && !*dst ? -ENOMEM : 0;
}

int pt_hub_filter_copy(struct pt_hub_filter *dst, const struct pt_hub_filter *src)
{
  memset(dst, 0, sizeof(*dst));
  if (!src)
    return 0;
  if (copy_member(&dst->node, src->node) || copy_member(&dst->ns, src->ns) || copy_member(&dst->image, src->image))
    goto oom;
  if (src->types && *src->types) {
    size_t n = list_len(src->types);
    if (!(dst->types = malloc(n)))
      goto oom;
    memcpy(dst->types, src->types, n);
  }
  return 0;
oom:
  pt_hub_filter_clear(dst);
  return -ENOMEM;
}

void pt_hub_filter_clear(struct pt_hub_filter *f)
{
  free(f->node);
  free(f->ns);
  free(f->image);
  free(f->types);
  memset(f, 0, sizeof(*f));
}

/* An entry's keys as the filter reads them. */
static struct pt_hub_keys entry_keys(const struct entry *e)
{
  return (struct pt_hub_keys){.node = e->node, .nss = e->nss, .image = e->image};
}

static void pending_clear(struct client *c)
{
  for (size_t i = 0; i < c->npending; i++)
    pt_shared_buf_unref(c->pending[i]);
  c->npending = 0;
  c->pending_bytes = 0;
}

static void dirty_add(struct pt_hub *hub, struct client *c)
{
  if (c->dirty)
    return;
  c->dirty = true;
  c->dirty_next = NULL;
  c->dirty_prev = hub->dirty_tail;
  if (hub->dirty_tail)
    hub->dirty_tail->dirty_next = c;
  else
    hub->dirty_head = c;
  hub->dirty_tail = c;
}

static void dirty_remove(struct pt_hub *hub, struct client *c)
{
  if (!c->dirty)
    return;
  c->dirty = false;
  if (c->dirty_prev)
    c->dirty_prev->dirty_next = c->dirty_next;
  else
    hub->dirty_head = c->dirty_next;
  if (c->dirty_next)
    c->dirty_next->dirty_prev = c->dirty_prev;
  else
    hub->dirty_tail = c->dirty_prev;
  c->dirty_prev = c->dirty_next = NULL;
}

static void client_free(struct client *c)
{
  dirty_remove(c->hub, c);
  pending_clear(c);
  free(c->pending);
  pt_hub_filter_clear(&c->filter);
  free(c);
}

static void unlink_client(struct pt_hub *hub, struct client *c)
{
  if (c->prev)
    c->prev->next = c->next;
  else
    hub->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void on_conn_closed(void *ud, struct pt_http_conn *conn)
{
  struct client *c = ud;
  struct pt_hub *hub = c->hub;
  unlink_client(hub, c);
  hub->stats.clients--;
  hub->last_reader_ms = uv_now(hub->loop);
  client_free(c);
}

static void drop(struct client *c)
{
  if (c->dropped)
    return;
  c->dropped = true;
  c->hub->stats.dropped_slow++;
  PT_LOG_WARN("slow SSE client dropped", "{s:s,s:I}", "peer", pt_http_conn_peer(c->conn), "queuedBytes",
              (json_int_t)pt_http_conn_queued(c->conn));
  pt_http_conn_close(c->conn, true);
}

/* After a client's frames went to its connection (result: the write's) at
 * now (pt_clock_mono()). */
static void client_written(struct client *c, int result, double now)
{
  if (result == 0) {
    c->hub->stats.bytes += c->pending_bytes;
    c->since_opening += c->pending_bytes;
    pt_prom_histogram_observe(&c->hub->stats.wait, now > c->pending_since ? now - c->pending_since : 0);
  }
  pending_clear(c);
  /* A resume may have queued thousands of frames: do not keep room for them
   * in every client. */
  if (c->cap_pending > 256) {
    free(c->pending);
    c->pending = NULL;
    c->cap_pending = 0;
  }
}

static bool has_frames(const struct client *c)
{
  return c->npending && !c->dropped;
}

static void client_flush(struct client *c)
{
  dirty_remove(c->hub, c);
  client_written(c, has_frames(c) ? pt_http_conn_write_shared(c->conn, c->pending, c->npending) : -EPIPE,
                 pt_clock_mono());
}

static void more_cb(uv_idle_t *h)
{
  (void)h; /* its being active is the point: the loop does not wait in poll */
}

/* Runs before the loop polls: the events published since the last pass
 * (from timers, or from requests handled in the last poll) go out now, to
 * at most flush_slice clients, oldest first, in one batch of writes
 * (pt_http_conns_write_shared: one system call for the slice where the
 * kernel allows); the next ones get theirs in the next iterations, so that
 * requests (a report) are read between slices instead of waiting for
 * 10,000 socket writes. Only clients with frames are visited. */
static void flush_cb(uv_prepare_t *h)
{
  struct pt_hub *hub = h->data;
  size_t n = 0;
  while (hub->dirty_head && n < hub->opts.flush_slice) {
    struct client *c = hub->dirty_head;
    dirty_remove(hub, c);
    if (!has_frames(c)) {
      client_written(c, -EPIPE, 0);
      continue;
    }
    hub->slice[n] = c;
    hub->writes[n++] = (struct pt_http_shared_write){.conn = c->conn, .bufs = c->pending, .n = c->npending};
  }
  pt_http_conns_write_shared(hub->writes, n);
  double now = pt_clock_mono();
  for (size_t i = 0; i < n; i++)
    client_written(hub->slice[i], hub->writes[i].result, now);
  if (hub->dirty_head) {
    uv_idle_start(&hub->more, more_cb);
    return;
  }
  uv_prepare_stop(&hub->flush);
  uv_idle_stop(&hub->more);
  hub->flush_pending = false;
}

/* Queues a frame published at now (pt_clock_mono()) for the client by
 * reference (the only work per client per event). Returns false when the
 * client was dropped (and may already be freed). */
static bool client_send(struct client *c, struct pt_shared_buf *frame, double now)
{
  if (c->dropped)
    return false;
  struct pt_hub *hub = c->hub;
  size_t queued = pt_http_conn_queued(c->conn);
  if (queued > c->since_opening)
    queued = (size_t)c->since_opening; /* the rest is the opening, still draining */
  if (queued + c->pending_bytes + frame->len > hub->opts.client_queue_max) {
    drop(c);
    return false;
  }
  if (c->npending == c->cap_pending) {
    size_t cap = c->cap_pending ? 2 * c->cap_pending : 8;
    struct pt_shared_buf **p = realloc(c->pending, cap * sizeof(*p));
    if (!p) {
      drop(c);
      return false;
    }
    c->pending = p;
    c->cap_pending = cap;
  }
  if (c->npending == 0)
    c->pending_since = now;
  c->pending[c->npending++] = pt_shared_buf_ref(frame);
  c->pending_bytes += frame->len;
  dirty_add(hub, c);
  if (!hub->flush_pending) {
    hub->flush_pending = true;
    uv_prepare_start(&hub->flush, flush_cb);
  }
  return true;
}

static void heartbeat_cb(uv_timer_t *t)
{
  struct pt_hub *hub = t->data;
  struct client *c = hub->clients;
  double now = pt_clock_mono();
  while (c) {
    struct client *next = c->next; /* a drop frees c */
    client_send(c, hub->heartbeat, now);
    c = next;
  }
}

struct pt_hub *pt_hub_create(uv_loop_t *loop, const struct pt_hub_options *opts,
                             pt_hub_snapshot_fn snapshot, void *ud)
{
  struct pt_hub *hub = calloc(1, sizeof(*hub));
  if (!hub)
    return NULL;
  hub->loop = loop;
  if (opts)
    hub->opts = *opts;
  if (!hub->opts.ring_size) hub->opts.ring_size = 4096;
  if (!hub->opts.client_queue_max) hub->opts.client_queue_max = 1 << 20;
  if (hub->opts.heartbeat <= 0) hub->opts.heartbeat = 15;
  if (!hub->opts.retry_ms) hub->opts.retry_ms = 2000;
  if (!hub->opts.flush_slice) hub->opts.flush_slice = 500;
  hub->next_id = hub->opts.first_id ? hub->opts.first_id : 1;
  pt_prom_histogram_init(&hub->stats.wait, pt_hub_wait_bounds, PT_HUB_WAIT_BUCKETS, hub->wait_counts);
  static const char hb[] = ": heartbeat\n\n";
  hub->ring = calloc(hub->opts.ring_size, sizeof(*hub->ring));
  hub->heartbeat = pt_shared_buf_create(hb, sizeof(hb) - 1);
  hub->slice = calloc(hub->opts.flush_slice, sizeof(*hub->slice));
  hub->writes = calloc(hub->opts.flush_slice, sizeof(*hub->writes));
  pt_buf_init(&hub->framing);
  if (!hub->ring || !hub->heartbeat || !hub->slice || !hub->writes) {
    free(hub->ring);
    free(hub->slice);
    free(hub->writes);
    pt_shared_buf_unref(hub->heartbeat);
    free(hub);
    return NULL;
  }
  hub->snapshot = snapshot;
  hub->ud = ud;
  uv_timer_init(loop, &hub->timer);
  hub->timer.data = hub;
  uv_prepare_init(loop, &hub->flush);
  hub->flush.data = hub;
  uv_idle_init(loop, &hub->more);
  hub->more.data = hub;
  hub->open_handles = 3;
  uint64_t ms = (uint64_t)(hub->opts.heartbeat * 1000);
  uv_timer_start(&hub->timer, heartbeat_cb, ms, ms);
  return hub;
}

static void handle_closed(uv_handle_t *h)
{
  struct pt_hub *hub = h->data;
  if (--hub->open_handles > 0)
    return;
  for (size_t i = 0; i < hub->opts.ring_size; i++)
    entry_clear(&hub->ring[i]);
  free(hub->ring);
  free(hub->slice);
  free(hub->writes);
  pt_shared_buf_unref(hub->heartbeat);
  pt_buf_close(&hub->framing);
  free(hub);
}

void pt_hub_destroy(struct pt_hub *hub)
{
  if (!hub)
    return;
  while (hub->clients) {
    struct client *c = hub->clients;
    unlink_client(hub, c);
    hub->stats.clients--;
    pt_http_conn_set_close_cb(c->conn, NULL, NULL);
    pt_http_conn_close(c->conn, true);
    client_free(c);
  }
  uv_timer_stop(&hub->timer);
  uv_close((uv_handle_t *)&hub->timer, handle_closed);
  uv_close((uv_handle_t *)&hub->flush, handle_closed);
  uv_close((uv_handle_t *)&hub->more, handle_closed);
}

char *pt_hub_nss_copy(const char *nss)
{
  if (!nss)
    return NULL;
  size_t len = 0;
  while (nss[len])
    len += strlen(nss + len) + 1;
  char *c = malloc(len + 1);
  if (c)
    memcpy(c, nss, len + 1);
  return c;
}

void pt_hub_set_next_id(struct pt_hub *hub, uint64_t id)
{
  if (id > hub->next_id && hub->count == 0)
    hub->next_id = id;
}

uint64_t pt_hub_next_id(const struct pt_hub *hub)
{
  return hub->next_id;
}

uint64_t pt_hub_publish(struct pt_hub *hub, const char *type, const struct pt_hub_keys *keys, const char *data)
{
  uint64_t id = hub->next_id++;
  struct pt_buf *b = &hub->framing;
  pt_buf_reset(b);
  pt_sse_format_event(b, id, type, data ? data : "{}");
  struct entry *e;
  if (hub->count == hub->opts.ring_size) {
    e = &hub->ring[hub->head];
    entry_clear(e);
    hub->head = (hub->head + 1) % hub->opts.ring_size;
  } else {
    e = &hub->ring[(hub->head + hub->count) % hub->opts.ring_size];
    hub->count++;
  }
  e->id = id;
  e->frame = b->oom ? NULL : pt_shared_buf_create(b->data, b->len);
  e->type = type;
  e->node = keys && keys->node ? strdup(keys->node) : NULL;
  e->nss = keys ? pt_hub_nss_copy(keys->nss) : NULL;
  e->image = keys && keys->image ? strdup(keys->image) : NULL;
  hub->stats.events++;
  hub->stats.last_id = id;
  if (!e->frame)
    return id;
  struct pt_hub_keys ek = entry_keys(e);
  struct client *c = hub->clients;
  double now = pt_clock_mono();
  while (c) {
    struct client *next = c->next; /* a drop frees c */
    if (pt_hub_filter_match(&c->filter, type, &ek))
      client_send(c, e->frame, now);
    c = next;
  }
  return id;
}

uint64_t pt_hub_skip(struct pt_hub *hub)
{
  for (size_t i = 0; i < hub->count; i++)
    entry_clear(&hub->ring[(hub->head + i) % hub->opts.ring_size]);
  hub->head = hub->count = 0;
  uint64_t id = hub->next_id++;
  hub->stats.events++;
  hub->stats.last_id = id;
  return id;
}

bool pt_hub_has_readers(const struct pt_hub *hub)
{
  return hub->stats.clients > 0 ||
         (hub->last_reader_ms && uv_now(hub->loop) - hub->last_reader_ms < PT_HUB_RESUME_WINDOW * 1000);
}

struct pt_hub_subscription *pt_hub_subscription_new(struct pt_hub *hub, const struct pt_hub_filter *filter,
                                                    const char *last_event_id)
{
  struct pt_hub_subscription *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->hub = hub;
  if (pt_hub_filter_copy(&s->filter, filter)) {
    free(s);
    return NULL;
  }
  if (last_event_id && *last_event_id) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(last_event_id, &end, 10);
    if (!errno && !*end && end != last_event_id) {
      s->has_last = true;
      s->last = v;
    }
  }
  return s;
}

static void send_snapshot(struct pt_hub *hub, struct client *c)
{
  char *js = hub->snapshot ? hub->snapshot(hub->ud, &c->filter) : NULL;
  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_event(&b, hub->next_id - 1, "snapshot", js ? js : "{}");
  free(js);
  /* The snapshot may be big: it is allowed past the queue budget once, and
   * only what follows it counts against the budget (client_send). */
  if (pt_http_conn_write(c->conn, b.data, b.len) == 0)
    hub->stats.bytes += b.len;
  pt_buf_close(&b);
  hub->stats.snapshots++;
}

void pt_hub_stream_start(void *ud, struct pt_http_conn *conn)
{
  struct pt_hub_subscription *s = ud;
  struct pt_hub *hub = s->hub;
  if (!conn || hub->shutting || (hub->opts.max_clients && hub->stats.clients >= hub->opts.max_clients)) {
    if (conn)
      pt_http_conn_close(conn, false);
    goto out;
  }
  struct client *c = calloc(1, sizeof(*c));
  if (!c) {
    pt_http_conn_close(conn, true);
    goto out;
  }
  c->hub = hub;
  c->conn = conn;
  c->filter = s->filter;
  memset(&s->filter, 0, sizeof(s->filter));
  c->next = hub->clients;
  if (hub->clients)
    hub->clients->prev = c;
  hub->clients = c;
  hub->stats.clients++;
  hub->stats.clients_total++;
  pt_http_conn_set_close_cb(conn, on_conn_closed, c);

  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_retry(&b, hub->opts.retry_ms);
  pt_http_conn_write(conn, b.data, b.len);
  pt_buf_close(&b);

  uint64_t first = hub->next_id - hub->count; /* oldest id in the ring */
  if (s->has_last && s->last + 1 >= first && s->last < hub->next_id) {
    hub->stats.resumed++;
    double now = pt_clock_mono(); /* the replayed frames wait from the resume */
    for (size_t i = 0; i < hub->count; i++) {
      struct entry *e = &hub->ring[(hub->head + i) % hub->opts.ring_size];
      struct pt_hub_keys ek = entry_keys(e);
      if (e->id > s->last && e->frame && pt_hub_filter_match(&c->filter, e->type, &ek) &&
          !client_send(c, e->frame, now))
        break;
    }
  } else {
    send_snapshot(hub, c);
  }
out:
  pt_hub_filter_clear(&s->filter);
  free(s);
}

void pt_hub_shutdown(struct pt_hub *hub, const char *comment)
{
  hub->shutting = true;
  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_comment(&b, comment);
  struct client *c = hub->clients;
  while (c) {
    struct client *next = c->next; /* closing may free c */
    if (!c->dropped) {
      client_flush(c);
      pt_http_conn_write(c->conn, b.data, b.len);
      pt_http_conn_close(c->conn, false);
    }
    c = next;
  }
  pt_buf_close(&b);
}

void pt_hub_stats(const struct pt_hub *hub, struct pt_hub_stats *out)
{
  *out = hub->stats;
}
