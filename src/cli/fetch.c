/* What the listing commands (get pulls, history, stats) share: one listing
 * from pulltrace-server (the connection, the request, the pages of a paged
 * list joined into one document) and -o json / -o yaml. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/output.h"

struct fetch {
  struct pt_conn *conn;
  const char *path, *member;
  json_t *doc;  /* every page's items (list.c) */
  char err[1024];
};

void pt_cli_query(struct pt_buf *b, const char *name, const char *value)
{
  if (!value || !*value)
    return;
  pt_buf_printf(b, "%c%s=", strchr(b->data ? b->data : "", '?') ? '&' : '?', name);
  pt_conn_escape(b, value);
}

static void got(void *ud, json_t *doc, long status, const char *err)
{
  struct fetch *f = ud;
  if (!doc) {
    /* Without PULLTRACE_DATA_DIR the server has no history; said once, when
     * its answer (or the proxy's) does not say it already. */
    bool history = strncmp(f->path, "/api/v1/history", 15) == 0;
    snprintf(f->err, sizeof(f->err), "%s%s", err,
             status == 404 && history && !strstr(err, "PULLTRACE_DATA_DIR")
                 ? " (this server keeps no history: it runs without PULLTRACE_DATA_DIR)" : "");
    return;
  }
  if (!json_is_array(json_object_get(doc, f->member))) {
    snprintf(f->err, sizeof(f->err), "%s: the answer has no \"%s\" list", f->conn->where, f->member);
    return;
  }
  f->doc = json_incref(doc);
}

int pt_cli_fetch(struct pt_cli *cli, pt_cli_path_fn build, const char *member, long limit, json_t **out,
                 char **namespace)
{
  *out = NULL;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_conn conn;
  char err[1024];
  if (pt_conn_init(&conn, &loop, &cli->conn, false, err, sizeof(err))) {
    pt_cli_error(cli, "%s", err);
    uv_loop_close(&loop);
    return -1;
  }
  struct pt_buf path;
  pt_buf_init(&path);
  build(cli, &conn, &path);
  struct fetch f = {.conn = &conn, .path = path.data, .member = member};
  if (path.oom || pt_conn_get_list(&conn, path.data, member, limit, got, &f) != 0)
    snprintf(f.err, sizeof(f.err), "cannot start the request");
  uv_run(&loop, UV_RUN_DEFAULT);
  int r = 0;
  if (f.err[0]) {
    pt_cli_error(cli, "%s", f.err);
    json_decref(f.doc);
    r = -1;
  } else {
    *out = f.doc;
    if (namespace)
      *namespace = strdup(conn.namespace);
  }
  pt_buf_close(&path);
  pt_conn_close(&conn);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return r;
}

bool pt_cli_print_document(const struct pt_cli *cli, const json_t *doc, int *rc)
{
  if (cli->output && strcmp(cli->output, "json") == 0)
    *rc = pt_output_json(doc, stdout) ? PT_EXIT_FAILED : PT_EXIT_OK;
  else if (cli->output && strcmp(cli->output, "yaml") == 0)
    *rc = pt_output_yaml(doc, stdout) ? PT_EXIT_FAILED : PT_EXIT_OK;
  else
    return false;
  return true;
}

int pt_cli_list(struct pt_cli *cli, pt_cli_path_fn build, const char *member, long limit, pt_cli_table_fn table)
{
  json_t *doc;
  char *ns = NULL;
  if (pt_cli_check_listing(cli) || pt_cli_fetch(cli, build, member, limit, &doc, &ns))
    return PT_EXIT_FAILED;
  int rc = PT_EXIT_OK;
  if (!pt_cli_print_document(cli, doc, &rc))
    table(cli, doc, ns);
  json_decref(doc);
  free(ns);
  return rc;
}
