/* get pulls: GET /api/v1/pulls with the filters, printed as a kubectl-style
 * table or as the API's own document; the table of pulls is history's too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/pull.h"
#include "core/clock.h"

void pt_cli_print_pulls(const struct pt_cli *cli, const json_t *pulls, const char *ns, bool history)
{
  enum { NS, POD, NODE, IMAGE, STATE, PROGRESS, SIZE, SPEED, ETA, DURATION, AGE, LAYERS, ID, MESSAGE, NCOL };
  static const char *const head[NCOL] = {"NAMESPACE", "POD", "NODE", "IMAGE", "STATE", "PROGRESS", "SIZE",
                                         "SPEED", "ETA", "DURATION", "AGE", "LAYERS", "ID", "MESSAGE"};
  bool wide = cli->output && strcmp(cli->output, "wide") == 0;
  bool all = cli->all_namespaces;
  /* NAMESPACE only with -A, the last three only with -o wide; live pulls show their
   * progress, finished ones (history) how long they took. */
  bool show[NCOL];
  for (int i = 0; i < NCOL; i++)
    show[i] = (i != NS || all) && (i < LAYERS || wide);
  show[DURATION] = history;
  show[PROGRESS] = show[SPEED] = show[ETA] = !history;
  struct pt_table t;
  size_t ncols = 0;
  for (int i = 0; i < NCOL; i++)
    ncols += show[i];
  pt_table_init(&t, ncols);
  const char *row[NCOL];
  size_t k = 0;
  for (int i = 0; i < NCOL; i++)
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
    char progress[16], size[64], done[32], total[32], speed[32], eta[32], duration[32], age[32], layers[32];
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
    pt_fmt_seconds(v.duration_seconds, duration, sizeof(duration));
    pt_fmt_age(v.started_at > 0 ? now - v.started_at : -1, age, sizeof(age));
    snprintf(layers, sizeof(layers), "%ld/%ld", v.layers_done, v.layers_total);
    if (v.error_message)
      pt_buf_printf(&msg, "%s: %s", v.error_reason ? v.error_reason : "error", v.error_message);
    const char *cells[NCOL] = {pns, pods.len ? pods.data : NULL, v.node, v.image, v.state, progress, size,
                               speed, eta, duration, age, layers, v.id, msg.len ? msg.data : ""};
    k = 0;
    for (int c = 0; c < NCOL; c++)
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

static void pulls_path(const struct pt_cli *cli, const struct pt_conn *conn, struct pt_buf *path)
{
  pt_buf_puts(path, "/api/v1/pulls");
  pt_cli_query(path, "namespace", cli->all_namespaces ? NULL : conn->namespace);
  pt_cli_query(path, "node", cli->node);
  pt_cli_query(path, "image", cli->image);
  pt_cli_query(path, "state", cli->state);
}

int pt_cli_check_listing(const struct pt_cli *cli)
{
  if (cli->output && strcmp(cli->output, "wide") != 0 && strcmp(cli->output, "json") != 0 &&
      strcmp(cli->output, "yaml") != 0) {
    pt_cli_error(cli, "--output: unknown format \"%s\" (wide, json or yaml)", cli->output);
    return -1;
  }
  if (cli->all_namespaces && cli->conn.namespace) {
    pt_cli_error(cli, "-A and -n cannot be combined");
    return -1;
  }
  return 0;
}

static void table(const struct pt_cli *cli, const json_t *doc, const char *ns)
{
  pt_cli_print_pulls(cli, json_object_get(doc, "pulls"), ns, false);
}

int pt_cmd_get(struct pt_cli *cli)
{
  return pt_cli_list(cli, pulls_path, "pulls", 0, table);
}
