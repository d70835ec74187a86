#include "server/hub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/sse.h"

struct entry {
  uint64_t id;
  char *frame;
  size_t len;
  char *node;   /* filter keys, may be NULL */
  char *nss;    /* NUL-separated namespaces ending with an empty string, or NULL */
};

struct client {
  struct pt_hub *hub;
  struct pt_http_conn *conn;
  char *node, *ns;
  bool dropped;
  /* Frames published during this loop pass, written at once before the loop
   * polls again: one write per client per pass instead of one per event. */
  struct pt_buf out;
  struct client *prev, *next;
};

struct pt_hub_subscription {
  struct pt_hub *hub;
  char *node, *ns;
  bool has_last;
  uint64_t last;
};

struct pt_hub {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_prepare_t flush;
  bool flush_pending;
  int open_handles;
  struct pt_hub_options opts;
  pt_hub_snapshot_fn snapshot;
  void *ud;
  struct entry *ring;
  size_t head, count;   /* oldest at head */
  uint64_t next_id;
  struct client *clients;
  struct pt_hub_stats stats;
  bool shutting;
};

static void entry_clear(struct entry *e)
{
  free(e->frame);
  free(e->node);
  free(e->nss);
  memset(e, 0, sizeof(*e));
}

bool pt_hub_filter_match(const char *ev_node, const char *ev_nss, const char *node, const char *ns)
{
  if (node && ev_node && strcmp(node, ev_node) != 0)
    return false;
  if (ns && ev_nss) {
    for (const char *p = ev_nss; *p; p += strlen(p) + 1)
      if (strcmp(p, ns) == 0)
        return true;
    return false;
  }
  return true;
}

static void client_free(struct client *c)
{
  pt_buf_close(&c->out);
  free(c->node);
  free(c->ns);
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

static void client_flush(struct client *c)
{
  if (c->out.len && !c->dropped && pt_http_conn_write(c->conn, c->out.data, c->out.len) == 0)
    c->hub->stats.bytes += c->out.len;
  pt_buf_reset(&c->out);
}

/* Runs before the loop polls: every event published since the last pass
 * (from timers, or from requests handled in the last poll) goes out now. */
static void flush_cb(uv_prepare_t *h)
{
  struct pt_hub *hub = h->data;
  uv_prepare_stop(&hub->flush);
  hub->flush_pending = false;
  for (struct client *c = hub->clients; c; c = c->next)
    client_flush(c);
}

/* Returns false when the client was dropped (and may already be freed). */
static bool client_send(struct client *c, const char *data, size_t len)
{
  if (c->dropped)
    return false;
  struct pt_hub *hub = c->hub;
  if (pt_http_conn_queued(c->conn) + c->out.len + len > hub->opts.client_queue_max) {
    drop(c);
    return false;
  }
  if (pt_buf_append(&c->out, data, len) != 0) {
    drop(c);
    return false;
  }
  if (!hub->flush_pending) {
    hub->flush_pending = true;
    uv_prepare_start(&hub->flush, flush_cb);
  }
  return true;
}

static void heartbeat_cb(uv_timer_t *t)
{
  struct pt_hub *hub = t->data;
  static const char hb[] = ": heartbeat\n\n";
  struct client *c = hub->clients;
  while (c) {
    struct client *next = c->next; /* a drop frees c */
    client_send(c, hb, sizeof(hb) - 1);
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
  hub->next_id = hub->opts.first_id ? hub->opts.first_id : 1;
  hub->ring = calloc(hub->opts.ring_size, sizeof(*hub->ring));
  if (!hub->ring) {
    free(hub);
    return NULL;
  }
  hub->snapshot = snapshot;
  hub->ud = ud;
  uv_timer_init(loop, &hub->timer);
  hub->timer.data = hub;
  uv_prepare_init(loop, &hub->flush);
  hub->flush.data = hub;
  hub->open_handles = 2;
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
  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_event(&b, id, type, data ? data : "{}");
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
  e->frame = pt_buf_steal(&b, &e->len);
  e->node = keys && keys->node ? strdup(keys->node) : NULL;
  e->nss = keys ? pt_hub_nss_copy(keys->nss) : NULL;
  hub->stats.events++;
  hub->stats.last_id = id;
  if (!e->frame)
    return id;
  struct client *c = hub->clients;
  while (c) {
    struct client *next = c->next; /* a drop frees c */
    if (pt_hub_filter_match(e->node, e->nss, c->node, c->ns))
      client_send(c, e->frame, e->len);
    c = next;
  }
  return id;
}

struct pt_hub_subscription *pt_hub_subscription_new(struct pt_hub *hub, const char *node, const char *ns,
                                                    const char *last_event_id)
{
  struct pt_hub_subscription *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->hub = hub;
  s->node = node && *node ? strdup(node) : NULL;
  s->ns = ns && *ns ? strdup(ns) : NULL;
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
  char *js = hub->snapshot ? hub->snapshot(hub->ud, c->node, c->ns) : NULL;
  struct pt_buf b;
  pt_buf_init(&b);
  pt_sse_format_event(&b, hub->next_id - 1, "snapshot", js ? js : "{}");
  free(js);
  /* The snapshot may be big; it is allowed past the queue budget once. */
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
  pt_buf_init(&c->out);
  c->node = s->node;
  c->ns = s->ns;
  s->node = s->ns = NULL;
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
    for (size_t i = 0; i < hub->count; i++) {
      struct entry *e = &hub->ring[(hub->head + i) % hub->opts.ring_size];
      if (e->id > s->last && e->frame && pt_hub_filter_match(e->node, e->nss, c->node, c->ns) &&
          !client_send(c, e->frame, e->len))
        break;
    }
  } else {
    send_snapshot(hub, c);
  }
out:
  free(s->node);
  free(s->ns);
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
