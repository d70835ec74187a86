/* history and stats: what pulltrace-server's history keeps (with
 * PULLTRACE_DATA_DIR): GET /api/v1/history (finished pulls, paged) as the
 * table of pulls, and GET /api/v1/history/stats (per image: pulls, failures,
 * duration percentiles, bytes) as a table of images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "core/json.h"

static void filters(const struct pt_cli *cli, const struct pt_conn *conn, struct pt_buf *path)
{
  pt_cli_query(path, "namespace", cli->all_namespaces ? NULL : conn->namespace);
  pt_cli_query(path, "node", cli->node);
  pt_cli_query(path, "image", cli->image);
  pt_cli_query(path, "pod", cli->pod);
  pt_cli_query(path, "since", cli->since);
  pt_cli_query(path, "until", cli->until);
}

static void history_path(const struct pt_cli *cli, const struct pt_conn *conn, struct pt_buf *path)
{
  pt_buf_puts(path, "/api/v1/history");
  filters(cli, conn, path);
  pt_cli_query(path, "state", cli->state);
  /* Pages of at most 500 pulls; fewer when --limit asks for fewer. */
  char limit[24];
  snprintf(limit, sizeof(limit), "%ld", cli->limit > 0 && cli->limit < 500 ? cli->limit : 500);
  pt_cli_query(path, "limit", limit);
}

static void stats_path(const struct pt_cli *cli, const struct pt_conn *conn, struct pt_buf *path)
{
  pt_buf_puts(path, "/api/v1/history/stats");
  filters(cli, conn, path);
}

static void history_table(const struct pt_cli *cli, const json_t *doc, const char *ns)
{
  pt_cli_print_pulls(cli, json_object_get(doc, "pulls"), ns, true);
}

int pt_cmd_history(struct pt_cli *cli)
{
  return pt_cli_list(cli, history_path, "pulls", cli->limit, history_table);
}

static void percentile(const json_t *d, const char *k, char *buf, size_t len)
{
  json_t *v = json_object_get(d, k);
  if (json_is_number(v))
    pt_fmt_seconds(json_number_value(v), buf, len);
  else
    snprintf(buf, len, "-");
}

static void stats_table(const struct pt_cli *cli, const json_t *doc, const char *ns)
{
  bool wide = cli->output && strcmp(cli->output, "wide") == 0;
  static const char *const head[] = {"IMAGE", "PULLS", "COMPLETED", "FAILED", "P50", "P95", "MAX",
                                     "DOWNLOADED", "CACHED", "FAILURES"};
  struct pt_table t;
  pt_table_init(&t, wide ? 10 : 9);
  if (!cli->no_headers)
    pt_table_add(&t, head);
  json_t *images = json_object_get(doc, "images");
  size_t i;
  json_t *im;
  json_array_foreach(images, i, im) {
    char pulls[24], completed[24], failed[24], p50[24], p95[24], max[24], bytes[32], cached[16];
    int64_t n = 0;
    snprintf(pulls, sizeof(pulls), "%lld", pt_json_uint(im, "pulls", &n) == 0 ? (long long)n : 0LL);
    snprintf(completed, sizeof(completed), "%lld", pt_json_uint(im, "completed", &n) == 0 ? (long long)n : 0LL);
    snprintf(failed, sizeof(failed), "%lld", pt_json_uint(im, "failed", &n) == 0 ? (long long)n : 0LL);
    const json_t *d = json_object_get(im, "durationSeconds");
    percentile(d, "p50", p50, sizeof(p50));
    percentile(d, "p95", p95, sizeof(p95));
    percentile(d, "max", max, sizeof(max));
    json_t *b = json_object_get(im, "bytesDownloaded"), *c = json_object_get(im, "cachedShare");
    pt_fmt_bytes(json_is_number(b) ? json_number_value(b) : 0, bytes, sizeof(bytes));
    if (json_is_number(c))
      snprintf(cached, sizeof(cached), "%.0f%%", json_number_value(c) * 100);
    else
      snprintf(cached, sizeof(cached), "-");
    struct pt_buf why;
    pt_buf_init(&why);
    const char *reason;
    json_t *count;
    json_object_foreach(json_object_get(im, "failuresByReason"), reason, count) {
      pt_buf_printf(&why, "%s%s=%lld", why.len ? "," : "", reason, (long long)json_integer_value(count));
    }
    const char *row[] = {pt_json_str(im, "image"), pulls, completed, failed, p50, p95, max, bytes, cached,
                         why.len ? why.data : ""};
    pt_table_add(&t, row);
    pt_buf_close(&why);
  }
  json_t *w = json_object_get(doc, "window");
  if (json_array_size(images) == 0)
    fprintf(stderr, "No pulls ended between %s and %s%s%s.\n", pt_json_str(w, "since") ? pt_json_str(w, "since") : "?",
            pt_json_str(w, "until") ? pt_json_str(w, "until") : "?", cli->all_namespaces ? "" : " in namespace ",
            cli->all_namespaces ? "" : ns);
  else
    pt_table_print(&t, stdout);
  pt_table_close(&t);
}

int pt_cmd_stats(struct pt_cli *cli)
{
  return pt_cli_list(cli, stats_path, "images", 0, stats_table);
}
