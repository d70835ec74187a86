/* get pulls: one request to GET /api/v1/pulls with the filters, printed as a
 * kubectl-style table or as the API's own document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/output.h"
#include "cli/pull.h"
#include "core/clock.h"

struct get_result {
  json_t *doc;
  char err[1024];
};

static void got(void *ud, json_t *doc, long status, const char *err)
{
  struct get_result *g = ud;
  if (doc)
    g->doc = json_incref(doc);
  else
    snprintf(g->err, sizeof(g->err), "%s", err);
}

static void add_param(struct pt_buf *b, const char *name, const char *value)
{
  if (!value || !*value)
    return;
  pt_buf_printf(b, "%c%s=", strchr(b->data, '?') ? '&' : '?', name);
  pt_conn_escape(b, value);
}

static void print_table(const struct pt_cli *cli, const json_t *pulls, const char *ns)
{
  bool wide = cli->output && strcmp(cli->output, "wide") == 0;
  bool all = cli->all_namespaces;
  static const char *const head[] = {"NAMESPACE", "POD", "NODE", "IMAGE", "STATE", "PROGRESS", "SIZE",
                                     "SPEED", "ETA", "AGE", "LAYERS", "ID", "MESSAGE"};
  /* Columns shown: NAMESPACE only with -A; the last three only with -o wide. */
  bool show[13];
  for (int i = 0; i < 13; i++)
    show[i] = (i != 0 || all) && (i < 10 || wide);
  struct pt_table t;
  size_t ncols = 0;
  for (int i = 0; i < 13; i++)
    ncols += show[i];
  pt_table_init(&t, ncols);
  const char *row[13];
  size_t k = 0;
  for (int i = 0; i < 13; i++)
    if (show[i])
      row[k++] = head[i];
  if (!cli->no_headers)
    pt_table_add(&t, row);
  double now = pt_clock_now();
  size_t i;
  json_t *p;
  json_array_foreach((json_t *)pulls, i, p) {
    struct pt_pull_view v;
    pt_pull_view(p, &v);
    struct pt_buf pods, msg;
    pt_buf_init(&pods);
    pt_buf_init(&msg);
    /* With -A every namespace is in its column; without, the pods are in ns. */
    const json_t *first = json_array_get(v.pods, 0);
    const char *pns = first ? json_string_value(json_object_get(first, "namespace")) : NULL;
    pt_pull_pods(&v, all ? pns : ns, &pods);
    char progress[16], size[64], done[32], total[32], speed[32], eta[32], age[32], layers[32];
    if (v.percent >= 0)
      snprintf(progress, sizeof(progress), "%.0f%%", v.percent);
    else
      snprintf(progress, sizeof(progress), "-");
    pt_fmt_bytes(v.downloaded_bytes, done, sizeof(done));
    pt_fmt_bytes(v.total_bytes, total, sizeof(total));
    snprintf(size, sizeof(size), "%s/%s", done, v.percent >= 0 ? total : "?");
    bool active = !pt_pull_finished(&v);
    pt_fmt_rate(active ? v.bytes_per_second : -1, speed, sizeof(speed));
    if (active)
      pt_fmt_age(v.eta_seconds, eta, sizeof(eta));
    else
      snprintf(eta, sizeof(eta), "-");
    pt_fmt_age(v.started_at > 0 ? now - v.started_at : -1, age, sizeof(age));
    snprintf(layers, sizeof(layers), "%ld/%ld", v.layers_done, v.layers_total);
    if (v.error_message)
      pt_buf_printf(&msg, "%s: %s", v.error_reason ? v.error_reason : "error", v.error_message);
    const char *cells[13] = {pns, pods.len ? pods.data : NULL, v.node, v.image, v.state, progress, size,
                             speed, eta, age, layers, v.id, msg.len ? msg.data : ""};
    k = 0;
    for (int c = 0; c < 13; c++)
      if (show[c])
        row[k++] = cells[c];
    pt_table_add(&t, row);
    pt_buf_close(&pods);
    pt_buf_close(&msg);
  }
  if (json_array_size(pulls) == 0) {
    if (all)
      fprintf(stderr, "No pulls found.\n");
    else
      fprintf(stderr, "No pulls found in %s namespace.\n", ns);
  } else {
    pt_table_print(&t, stdout);
  }
  pt_table_close(&t);
}

int pt_cmd_get(struct pt_cli *cli)
{
  if (cli->output && strcmp(cli->output, "wide") != 0 && strcmp(cli->output, "json") != 0 &&
      strcmp(cli->output, "yaml") != 0) {
    pt_cli_error(cli, "--output: unknown format \"%s\" (wide, json or yaml)", cli->output);
    return PT_EXIT_FAILED;
  }
  if (cli->all_namespaces && cli->conn.namespace) {
    pt_cli_error(cli, "-A and -n cannot be combined");
    return PT_EXIT_FAILED;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct pt_conn conn;
  char err[1024];
  int rc = PT_EXIT_FAILED;
  if (pt_conn_init(&conn, &loop, &cli->conn, false, err, sizeof(err))) {
    pt_cli_error(cli, "%s", err);
    uv_loop_close(&loop);
    return rc;
  }
  struct pt_buf path;
  pt_buf_init(&path);
  pt_buf_puts(&path, "/api/v1/pulls");
  add_param(&path, "namespace", cli->all_namespaces ? NULL : conn.namespace);
  add_param(&path, "node", cli->node);
  add_param(&path, "image", cli->image);
  add_param(&path, "state", cli->state);
  struct get_result g = {0};
  if (pt_conn_get(&conn, PT_TARGET_PULLTRACE, path.data, got, &g) != 0)
    snprintf(g.err, sizeof(g.err), "cannot start the request");
  uv_run(&loop, UV_RUN_DEFAULT);
  if (g.doc) {
    json_t *pulls = json_object_get(g.doc, "pulls");
    if (!json_is_array(pulls)) {
      pt_cli_error(cli, "%s: the answer has no \"pulls\" list", conn.where);
    } else {
      rc = PT_EXIT_OK;
      if (cli->output && strcmp(cli->output, "json") == 0)
        rc = pt_output_json(g.doc, stdout) ? PT_EXIT_FAILED : PT_EXIT_OK;
      else if (cli->output && strcmp(cli->output, "yaml") == 0)
        rc = pt_output_yaml(g.doc, stdout) ? PT_EXIT_FAILED : PT_EXIT_OK;
      else
        print_table(cli, pulls, conn.namespace);
    }
    json_decref(g.doc);
  } else {
    pt_cli_error(cli, "%s", g.err);
  }
  pt_buf_close(&path);
  pt_conn_close(&conn);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}
