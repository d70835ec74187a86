/* A list of pulltrace-server (GET /api/v1/pulls, /api/v1/nodes,
 * /api/v1/history) read page after page, as kubectl reads a Kubernetes list
 * in chunks: the server pages its lists (limit, continue; docs/api.md), so a
 * client that wants all of a large list follows the continue tokens
 * (metadata.continue). The one paging of the CLI: fetch.c (get, history,
 * stats) and watch use it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/conn.h"

struct list_req {
  struct pt_conn *conn;
  char *path;   /* the list's path with its filters */
  char *member; /* "pulls", "nodes" */
  long limit;   /* items wanted at most; 0: all */
  json_t *doc;  /* the first page, the later pages' items appended */
  pt_conn_json_cb cb;
  void *ud;
};

static void list_free(struct list_req *l)
{
  json_decref(l->doc);
  free(l->path);
  free(l->member);
  free(l);
}

static int request_page(struct list_req *l, const char *token);

static void got_page(void *ud, json_t *doc, long status, const char *err)
{
  struct list_req *l = ud;
  json_t *items = json_object_get(doc, l->member);
  if (!doc || !json_is_array(items)) {
    l->cb(l->ud, doc, status, err); /* the caller reports what is wrong */
    list_free(l);
    return;
  }
  if (!l->doc)
    l->doc = json_deep_copy(doc);
  else
    json_array_extend(json_object_get(l->doc, l->member), items);
  json_t *all = json_object_get(l->doc, l->member);
  bool enough = l->limit > 0 && (long)json_array_size(all) >= l->limit;
  while (enough && (long)json_array_size(all) > l->limit)
    json_array_remove(all, json_array_size(all) - 1);
  const char *token = json_string_value(json_object_get(json_object_get(doc, "metadata"), "continue"));
  if (!enough && token && *token && request_page(l, token) == 0)
    return;
  if (!enough && token && *token) {
    l->cb(l->ud, NULL, 0, "cannot start the request of the next page");
  } else {
    if (!enough)
      json_object_del(json_object_get(l->doc, "metadata"), "continue");
    l->cb(l->ud, l->doc, status, NULL);
  }
  list_free(l);
}

static int request_page(struct list_req *l, const char *token)
{
  struct pt_buf p;
  pt_buf_init(&p);
  pt_buf_puts(&p, l->path);
  if (token) {
    pt_buf_puts(&p, strchr(l->path, '?') ? "&continue=" : "?continue=");
    pt_conn_escape(&p, token);
  }
  int r = p.oom ? -ENOMEM : pt_conn_get(l->conn, PT_TARGET_PULLTRACE, p.data, got_page, l);
  pt_buf_close(&p);
  return r;
}

int pt_conn_get_list(struct pt_conn *c, const char *path, const char *member, long limit, pt_conn_json_cb cb,
                     void *ud)
{
  struct list_req *l = calloc(1, sizeof(*l));
  if (!l || !(l->path = strdup(path)) || !(l->member = strdup(member))) {
    if (l)
      list_free(l);
    return -ENOMEM;
  }
  l->conn = c;
  l->limit = limit;
  l->cb = cb;
  l->ud = ud;
  int r = request_page(l, NULL);
  if (r)
    list_free(l);
  return r;
}
