/* GET /api/v1/pulls/{id}/events (docs/api.md): a pull's own past, from the
 * events the server kept about it (server/pull_events.h). */
#include <string.h>

#include "core/clock.h"
#include "core/json_writer.h"
#include "server/server_impl.h"

#define SUFFIX "/events"

struct events_query {
  const char *id;
  bool live;
};

static struct pt_history_query *start_events(struct pt_history *h, const void *arg, pt_history_answer_fn fn, void *ud)
{
  const struct events_query *q = arg;
  return pt_history_pull_events(h, q->id, q->live, fn, ud);
}

bool pt_server_pull_events_handle(struct pt_server *srv, const char *raw, struct pt_http_resp *resp)
{
  size_t len = strlen(raw), slen = strlen(SUFFIX);
  char id[1024];
  if (len <= slen || strcmp(raw + len - slen, SUFFIX) != 0)
    return false;
  /* An id of the tables that ends with "/events" is that pull itself. */
  if (pt_http_url_decode(raw, len, id, sizeof(id), false) >= 0 && pt_store_pull(srv->store, id))
    return false;
  if (pt_http_url_decode(raw, len - slen, id, sizeof(id), false) < 0) {
    pt_server_reply_error(resp, 400, "malformed pull id", "id");
    return true;
  }
  /* Memory answers when it holds the pull's whole story; the history (which
   * gets every event memory keeps) when memory lost some of it, or never had
   * it (a pull of an earlier process, or one whose events were pushed out). */
  bool live = pt_store_pull(srv->store, id) != NULL;
  uint64_t lost = 0;
  size_t kept = pt_pull_events_kept(srv->pull_events, id, &lost);
  if (srv->history && (!kept || lost)) {
    struct events_query q = {.id = id, .live = live};
    pt_server_history_defer(srv, resp, start_events, &q);
    return true;
  }
  if (!live && !kept) {
    pt_server_reply_error(resp, 404, "pull not found", "id");
    return true;
  }
  resp->status = 200;
  resp->content_type = "application/json; charset=utf-8";
  pt_buf_puts(&resp->headers, "Cache-Control: no-store\r\n");
  struct pt_jsonw w;
  pt_jsonw_init(&w, &resp->body);
  pt_jsonw_object_open(&w);
  pt_jsonw_key(&w, "apiVersion");
  pt_jsonw_string(&w, "v1");
  pt_jsonw_key(&w, "generatedAt");
  pt_jsonw_time(&w, pt_clock_now());
  pt_jsonw_key(&w, "pullId");
  pt_jsonw_string(&w, id);
  pt_jsonw_key(&w, "events");
  uint64_t dropped = 0;
  if (!pt_pull_events_write(srv->pull_events, id, &w, &dropped)) {
    /* In the tables, but nothing of its story kept (restored from the
     * history at startup, or its events pushed out). */
    pt_jsonw_array_open(&w);
    pt_jsonw_array_close(&w);
  }
  pt_jsonw_key(&w, "dropped");
  pt_jsonw_int(&w, (int64_t)dropped);
  pt_jsonw_object_close(&w);
  pt_buf_puts(&resp->body, "\n");
  if (resp->body.oom) {
    pt_buf_reset(&resp->body);
    pt_server_reply_error(resp, 500, "out of memory", NULL);
  }
  return true;
}
