/* watch: `kubectl rollout status` for image pulls. Every second it reads the
 * pods (from the Kubernetes API) and their pulls (from pulltrace-server), and
 * works out, per (node, image), whether the image is there: the container
 * runs or has an imageID (pulled or already present), the pull completed, or
 * it failed (the pull's kubelet message, or the container's ErrImagePull /
 * ImagePullBackOff message). Exit 0 when every image is there, 1 at the first
 * failure, 2 at --timeout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "cli/pull.h"
#include "cli/workload.h"
#include "core/clock.h"
#include "core/image_ref.h"
#include "core/json.h"

enum item_state { IT_WAITING, IT_PULLING, IT_STALLED, IT_DONE, IT_FAILED };
static const char *const state_names[] = {"waiting", "pulling", "stalled", "pulled", "failed"};

/* One image on one node, for one or more containers. */
struct item {
  char key[1024];        /* node + "\n" + image */
  char node[256], image[512], who[512];
  enum item_state state;
  const char *note;      /* why waiting / how done */
  char message[1024];    /* kubelet's, when failed */
  struct pt_pull_view pull;
  bool have_pull;
  /* what the plain output printed last */
  enum item_state printed_state;
  int printed_decile;
  bool printed;
};

struct watch {
  struct pt_cli *cli;
  uv_loop_t loop;
  struct pt_conn conn;
  uv_timer_t tick, deadline;
  uv_signal_t sigint, sigterm, winch;
  const struct pt_workload_kind *kind;
  const char *name;
  char *what;            /* "deployment/web", "pods -l app=web" */
  char *pods_path;
  json_t *pods, *pulls;  /* the latest answers */
  int pending;           /* requests in flight this round */
  bool resolved;         /* the workload's selector is known */
  bool ever_ok;          /* one round has succeeded */
  struct item *items, *old;
  size_t nitems, nold;
  int drawn;             /* lines of the live view on the terminal */
  int rc;
  bool done;
  char err[1024];
};

static void close_conn(uv_timer_t *t)
{
  struct watch *w = t->data;
  pt_conn_close(&w->conn);
}

/* The connection is closed from a timer callback of its own: finish() may run
 * inside one of the connection's callbacks, which must not free it. */
static void finish(struct watch *w, int rc)
{
  if (w->done)
    return;
  w->done = true;
  w->rc = rc;
  uv_timer_stop(&w->deadline);
  uv_signal_stop(&w->sigint);
  uv_signal_stop(&w->sigterm);
  uv_signal_stop(&w->winch);
  uv_timer_start(&w->tick, close_conn, 0, 0);
}

static void stamp(char *buf, size_t len)
{
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* -------------------------------------------------------------------------- */
/* working out the items                                                       */

static bool same_image(const char *a, const char *b)
{
  char na[600], nb[600];
  if (!a || !b)
    return false;
  if (strcmp(a, b) == 0)
    return true;
  return pt_image_ref_normalize(a, na, sizeof(na)) == 0 && pt_image_ref_normalize(b, nb, sizeof(nb)) == 0 &&
         strcmp(na, nb) == 0;
}

static const json_t *container_status(const json_t *pod, const char *list, const char *name)
{
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(json_object_get(pod, "status"), list), i, s) {
    const char *n = pt_json_str(s, "name");
    if (n && strcmp(n, name) == 0)
      return s;
  }
  return NULL;
}

static struct item *item_for(struct watch *w, const char *node, const char *image)
{
  char key[1024];
  snprintf(key, sizeof(key), "%s\n%s", node, image);
  for (size_t i = 0; i < w->nitems; i++)
    if (strcmp(w->items[i].key, key) == 0)
      return &w->items[i];
  struct item *it = realloc(w->items, (w->nitems + 1) * sizeof(*it));
  if (!it)
    return NULL;
  w->items = it;
  it = &w->items[w->nitems++];
  memset(it, 0, sizeof(*it));
  snprintf(it->key, sizeof(it->key), "%s", key);
  snprintf(it->node, sizeof(it->node), "%s", node);
  snprintf(it->image, sizeof(it->image), "%s", image);
  it->state = IT_WAITING;
  it->printed_decile = -1;
  /* Keep what the plain output printed for the same item last round. */
  for (size_t i = 0; i < w->nold; i++) {
    if (strcmp(w->old[i].key, key) == 0) {
      it->printed = w->old[i].printed;
      it->printed_state = w->old[i].printed_state;
      it->printed_decile = w->old[i].printed_decile;
    }
  }
  return it;
}

/* The container's own status, then the pulls, decide; the worst wins when
 * containers share an item (failed > pulling > waiting > done would hide
 * progress, so: failed, then done, then the pull's progress). */
static void consider(struct watch *w, const json_t *pod, const json_t *c, const char *status_list)
{
  const json_t *md = json_object_get(pod, "metadata");
  const char *ns = pt_json_str(md, "namespace"), *pname = pt_json_str(md, "name");
  const char *cname = pt_json_str(c, "name"), *image = pt_json_str(c, "image");
  const char *node = pt_json_str(json_object_get(pod, "spec"), "nodeName");
  if (!pname || !cname || !image)
    return;
  struct item *it = item_for(w, node && *node ? node : "", image);
  if (!it)
    return;
  size_t wl = strlen(it->who);
  snprintf(it->who + wl, sizeof(it->who) - wl, "%s%s/%s", wl ? ", " : "", pname, cname);
  if (it->state == IT_FAILED || it->state == IT_DONE)
    return;
  if (!node || !*node) {
    it->note = "pod not scheduled yet";
    return;
  }
  const json_t *st = container_status(pod, status_list, cname);
  const json_t *state = json_object_get(st, "state");
  const json_t *waiting = json_object_get(state, "waiting");
  const char *reason = pt_json_str(waiting, "reason");
  const char *id = pt_json_str(st, "imageID");
  if ((id && *id) || json_object_get(state, "running") || json_object_get(state, "terminated")) {
    it->state = IT_DONE;
    it->note = "present";
    return;
  }
  if (reason && (strcmp(reason, "ErrImagePull") == 0 || strcmp(reason, "ImagePullBackOff") == 0 ||
                 strcmp(reason, "InvalidImageName") == 0 || strcmp(reason, "ErrImageNeverPull") == 0)) {
    const char *m = pt_json_str(waiting, "message");
    it->state = IT_FAILED;
    snprintf(it->message, sizeof(it->message), "%s: %s", reason, m ? m : "(no message)");
    return;
  }
  /* The newest pull (the API lists newest first) for this pod's container,
   * else for this image on this node. */
  size_t i;
  json_t *p;
  const json_t *match = NULL;
  json_array_foreach(w->pulls, i, p) {
    struct pt_pull_view v;
    pt_pull_view(p, &v);
    if (pt_pull_serves(&v, ns, pname, cname) && (!v.node || strcmp(v.node, node) == 0)) {
      match = p;
      break;
    }
  }
  json_array_foreach(w->pulls, i, p) {
    if (match)
      break;
    struct pt_pull_view v;
    pt_pull_view(p, &v);
    if (v.node && strcmp(v.node, node) == 0 && same_image(v.image, image))
      match = p;
  }
  if (!match) {
    it->note = "waiting for the pull to start";
    return;
  }
  pt_pull_view(match, &it->pull);
  it->have_pull = true;
  const char *s = it->pull.state;
  if (strcmp(s, "completed") == 0) {
    it->state = IT_DONE;
    it->note = "pulled";
  } else if (strcmp(s, "failed") == 0 || strcmp(s, "lost") == 0) {
    it->state = IT_FAILED;
    snprintf(it->message, sizeof(it->message), "%s%s%s", it->pull.error_reason ? it->pull.error_reason : s,
             it->pull.error_message ? ": " : "", it->pull.error_message ? it->pull.error_message : "");
  } else {
    it->state = strcmp(s, "stalled") == 0 ? IT_STALLED : IT_PULLING;
  }
}

static void evaluate(struct watch *w)
{
  free(w->old);
  w->old = w->items;
  w->nold = w->nitems;
  w->items = NULL;
  w->nitems = 0;
  size_t i, j;
  json_t *pod, *c;
  json_array_foreach(w->pods, i, pod) {
    const json_t *spec = json_object_get(pod, "spec");
    json_array_foreach(json_object_get(spec, "initContainers"), j, c)
      consider(w, pod, c, "initContainerStatuses");
    json_array_foreach(json_object_get(spec, "containers"), j, c)
      consider(w, pod, c, "containerStatuses");
  }
}

/* -------------------------------------------------------------------------- */
/* showing them                                                                */

static void progress_text(const struct item *it, char *buf, size_t len)
{
  char done[32], total[32], speed[32], eta[32];
  const struct pt_pull_view *v = &it->pull;
  pt_fmt_bytes(v->downloaded_bytes, done, sizeof(done));
  pt_fmt_bytes(v->total_bytes, total, sizeof(total));
  pt_fmt_rate(v->bytes_per_second, speed, sizeof(speed));
  pt_fmt_age(v->eta_seconds, eta, sizeof(eta));
  if (v->percent >= 0)
    snprintf(buf, len, "%3.0f%%  %s/%s  %s  ETA %s", v->percent, done, total, speed, eta);
  else
    snprintf(buf, len, "%s  %s", done, speed);
}

static void draw(struct watch *w)
{
  const struct pt_term *t = &w->cli->term;
  struct pt_buf out;
  pt_buf_init(&out);
  if (w->drawn)
    pt_buf_printf(&out, "\033[%dA", w->drawn);
  int lines = 0;
  for (size_t i = 0; i < w->nitems; i++) {
    const struct item *it = &w->items[i];
    enum pt_color col = it->state == IT_FAILED ? PT_C_RED : it->state == IT_STALLED ? PT_C_YELLOW
                        : it->state == IT_DONE ? PT_C_GREEN : PT_C_CYAN;
    const char *sym = t->utf8 ? (it->state == IT_DONE ? "✔" : it->state == IT_FAILED ? "✘" : "•")
                              : (it->state == IT_DONE ? "+" : it->state == IT_FAILED ? "x" : "-");
    char label[1200];
    snprintf(label, sizeof(label), "%s on %s", it->image, it->node[0] ? it->node : "?");
    char tail[256] = "";
    int barw = 0;
    if ((it->state == IT_PULLING || it->state == IT_STALLED) && it->have_pull) {
      progress_text(it, tail, sizeof(tail));
      if (it->state == IT_STALLED)
        snprintf(tail + strlen(tail), sizeof(tail) - strlen(tail), "  stalled");
      /* The bar takes what the label leaves, up to 24 cells; under 8 it is left out. */
      barw = t->width - 2 - pt_fmt_cells(label) - 3 - pt_fmt_cells(tail) - 3 - 1;
      barw = barw > 24 ? 24 : barw < 8 ? (t->width >= 60 ? 8 : 0) : barw;
    } else if (it->state == IT_FAILED) {
      snprintf(tail, sizeof(tail), "failed");
    } else {
      snprintf(tail, sizeof(tail), "%s", it->note ? it->note : state_names[it->state]);
    }
    /* The label gets what the bar and numbers leave of the width. */
    int room = t->width - 2 - (barw ? barw + 3 : 0) - pt_fmt_cells(tail) - 3;
    if (room < 12)
      room = 12;
    pt_buf_printf(&out, "\r\033[K%s%s%s ", pt_term_sgr(t, col), sym, pt_term_sgr(t, PT_C_RESET));
    struct pt_buf l;
    pt_buf_init(&l);
    pt_fmt_fit(&l, label, room, t->utf8);
    pt_buf_printf(&out, "%s%*s", l.data ? l.data : "", room - pt_fmt_cells(l.data ? l.data : ""), "");
    pt_buf_close(&l);
    if (barw) {
      pt_buf_printf(&out, " %s", pt_term_sgr(t, col));
      pt_fmt_bar(&out, it->pull.percent >= 0 ? it->pull.percent / 100 : 0, barw, t->utf8);
      pt_buf_printf(&out, "%s ", pt_term_sgr(t, PT_C_RESET));
    }
    pt_buf_printf(&out, " %s%s%s\n", it->state == IT_STALLED || it->state == IT_FAILED ? pt_term_sgr(t, col) : "",
                  tail, pt_term_sgr(t, PT_C_RESET));
    lines++;
  }
  if (w->err[0]) {
    pt_buf_printf(&out, "\r\033[K%swarning:%s %s\n", pt_term_sgr(t, PT_C_YELLOW), pt_term_sgr(t, PT_C_RESET),
                  w->err);
    lines++;
  }
  pt_buf_puts(&out, "\033[J");
  fwrite(out.data, 1, out.len, stdout);
  fflush(stdout);
  pt_buf_close(&out);
  w->drawn = lines;
}

/* Plain output: a line when an item changes state or crosses ten percent. */
static void print_changes(struct watch *w)
{
  char ts[32];
  stamp(ts, sizeof(ts));
  for (size_t i = 0; i < w->nitems; i++) {
    struct item *it = &w->items[i];
    int decile = it->have_pull && it->pull.percent >= 0 ? (int)(it->pull.percent / 10) : -1;
    bool changed = !it->printed || it->printed_state != it->state ||
                   (it->state == IT_PULLING && decile != it->printed_decile);
    if (!changed)
      continue;
    char tail[300] = "";
    if ((it->state == IT_PULLING || it->state == IT_STALLED) && it->have_pull) {
      char p[256];
      progress_text(it, p, sizeof(p));
      snprintf(tail, sizeof(tail), " %s", p);
    } else if (it->state == IT_WAITING && it->note) {
      snprintf(tail, sizeof(tail), " (%s)", it->note);
    } else if (it->state == IT_DONE && it->note && strcmp(it->note, "present") == 0) {
      snprintf(tail, sizeof(tail), " (present on the node)");
    }
    printf("%s %s %s on %s for %s%s\n", ts, state_names[it->state], it->image, it->node[0] ? it->node : "?",
           it->who, tail);
    it->printed = true;
    it->printed_state = it->state;
    it->printed_decile = decile;
  }
  if (w->err[0])
    printf("%s warning: %s\n", ts, w->err);
  fflush(stdout);
}

static void conclude(struct watch *w)
{
  size_t done = 0;
  for (size_t i = 0; i < w->nitems; i++) {
    struct item *it = &w->items[i];
    if (it->state == IT_FAILED) {
      fprintf(stderr, "%serror:%s pull of %s on %s for %s failed: %s\n",
              w->cli->term.color && isatty(2) ? "\033[31m" : "", w->cli->term.color && isatty(2) ? "\033[0m" : "",
              it->image, it->node, it->who, it->message);
      finish(w, PT_EXIT_FAILED);
      return;
    }
    done += it->state == IT_DONE;
  }
  if (w->nitems && done == w->nitems) {
    size_t npods = json_array_size(w->pods);
    printf("%s: every image is there (%zu image%s, %zu pod%s)\n", w->what, w->nitems, w->nitems == 1 ? "" : "s",
           npods, npods == 1 ? "" : "s");
    finish(w, PT_EXIT_OK);
  }
}

/* -------------------------------------------------------------------------- */
/* the rounds                                                                  */

static void round_done(struct watch *w)
{
  if (--w->pending > 0 || w->done)
    return;
  if (!w->pods || !w->pulls) {
    if (!w->ever_ok) {
      pt_cli_error(w->cli, "%s", w->err);
      finish(w, PT_EXIT_ERROR);
    } else if (w->cli->term.tty) {
      draw(w);
    } else {
      print_changes(w);
    }
    return;
  }
  w->ever_ok = true;
  w->err[0] = '\0';
  evaluate(w);
  if (w->cli->term.tty)
    draw(w);
  else
    print_changes(w);
  conclude(w);
}

static void got_pods(void *ud, json_t *doc, long status, const char *err)
{
  struct watch *w = ud;
  json_decref(w->pods);
  w->pods = NULL;
  if (doc) {
    json_t *items = json_object_get(doc, "items");
    if (json_is_array(items))
      w->pods = json_incref(items);
    else if (json_is_object(json_object_get(doc, "spec")))
      w->pods = json_pack("[O]", doc);
  } else if (status == 404 && w->kind && strcmp(w->kind->name, "pod") == 0) {
    snprintf(w->err, sizeof(w->err), "pod \"%s\" not found in namespace %s", w->name, w->conn.namespace);
    w->ever_ok = false; /* a missing pod is an error, as for kubectl rollout status */
  } else {
    snprintf(w->err, sizeof(w->err), "%s", err);
  }
  round_done(w);
}

static void got_pulls(void *ud, json_t *doc, long status, const char *err)
{
  struct watch *w = ud;
  json_decref(w->pulls);
  w->pulls = NULL;
  json_t *pulls = json_object_get(doc, "pulls");
  if (json_is_array(pulls))
    w->pulls = json_incref(pulls);
  else
    snprintf(w->err, sizeof(w->err), "%s", doc ? "pulltrace-server's answer has no \"pulls\" list" : err);
  round_done(w);
}

static void start_round(struct watch *w)
{
  struct pt_buf p;
  pt_buf_init(&p);
  pt_buf_puts(&p, "/api/v1/pulls?namespace=");
  pt_conn_escape(&p, w->conn.namespace);
  w->pending = 2;
  if (pt_conn_get(&w->conn, PT_TARGET_KUBE, w->pods_path, got_pods, w) != 0)
    w->pending--;
  if (pt_conn_get_list(&w->conn, p.data, "pulls", 0, got_pulls, w) != 0)
    w->pending--;
  pt_buf_close(&p);
  if (w->pending == 0) {
    pt_cli_error(w->cli, "cannot start requests");
    finish(w, PT_EXIT_ERROR);
  }
}

static void on_tick(uv_timer_t *t)
{
  struct watch *w = t->data;
  if (w->pending == 0 && w->resolved && !w->done)
    start_round(w);
}

static void pods_path_for(struct watch *w, const char *selector)
{
  struct pt_buf p;
  pt_buf_init(&p);
  pt_buf_puts(&p, "/api/v1/namespaces/");
  pt_conn_escape(&p, w->conn.namespace);
  if (selector) {
    pt_buf_puts(&p, "/pods?labelSelector=");
    pt_conn_escape(&p, selector);
  } else {
    pt_buf_puts(&p, "/pods/");
    pt_conn_escape(&p, w->name);
  }
  w->pods_path = pt_buf_steal(&p, NULL);
}

static void got_workload(void *ud, json_t *doc, long status, const char *err)
{
  struct watch *w = ud;
  if (w->done)
    return;
  if (!doc) {
    if (status == 404)
      pt_cli_error(w->cli, "%s \"%s\" not found in namespace %s", w->kind->name, w->name, w->conn.namespace);
    else
      pt_cli_error(w->cli, "%s", err);
    finish(w, PT_EXIT_ERROR);
    return;
  }
  struct pt_buf sel;
  pt_buf_init(&sel);
  char e[512];
  if (pt_workload_selector(w->kind, doc, &sel, e, sizeof(e))) {
    pt_cli_error(w->cli, "%s/%s: %s", w->kind->name, w->name, e);
    pt_buf_close(&sel);
    finish(w, PT_EXIT_ERROR);
    return;
  }
  pods_path_for(w, sel.data);
  pt_buf_close(&sel);
  w->resolved = true;
  start_round(w);
}

static void on_deadline(uv_timer_t *t)
{
  struct watch *w = t->data;
  char d[32];
  pt_fmt_age(w->cli->timeout_s, d, sizeof(d));
  size_t left = 0;
  for (size_t i = 0; i < w->nitems; i++)
    left += w->items[i].state != IT_DONE;
  pt_cli_error(w->cli, "timed out after %s waiting for %s (%zu of %zu image%s not pulled yet)", d, w->what, left,
               w->nitems, w->nitems == 1 ? "" : "s");
  finish(w, PT_EXIT_TIMEOUT);
}

static void on_signal(uv_signal_t *s, int signum)
{
  struct watch *w = s->data;
  if (signum == SIGWINCH) {
    /* The next round draws to the new width, below what is on the screen: terminals
     * rewrap or cut the old lines, so how many rows they take now is not known. */
    pt_term_size(&w->cli->term);
    w->drawn = 0;
    return;
  }
  finish(w, 128 + signum);
}

int pt_cmd_watch(struct pt_cli *cli)
{
  struct watch *w = calloc(1, sizeof(*w));
  if (!w)
    return PT_EXIT_ERROR;
  w->cli = cli;
  char buf[1024];
  if (cli->selector && cli->nargs == 0) {
    snprintf(buf, sizeof(buf), "pods -l %s", cli->selector);
  } else if (!cli->selector && cli->nargs == 1 && pt_workload_parse(cli->args[0], &w->kind, &w->name) == 0) {
    snprintf(buf, sizeof(buf), "%s/%s", w->kind->name, w->name);
  } else {
    pt_cli_error(cli, cli->nargs == 1 && !cli->selector
                          ? "\"%s\" is not TYPE/NAME (pod/NAME, deployment/NAME, ...)\nSee 'kubectl pulltrace watch --help'."
                          : "give TYPE/NAME or -l SELECTOR\nSee 'kubectl pulltrace watch --help'.%s",
                 cli->nargs == 1 ? cli->args[0] : "");
    free(w);
    return PT_EXIT_ERROR;
  }
  w->what = strdup(buf);
  uv_loop_init(&w->loop);
  char err[1024];
  if (pt_conn_init(&w->conn, &w->loop, &cli->conn, true, err, sizeof(err))) {
    pt_cli_error(cli, "%s", err);
    uv_loop_close(&w->loop);
    free(w->what);
    free(w);
    return PT_EXIT_ERROR;
  }
  uv_timer_init(&w->loop, &w->tick);
  uv_timer_init(&w->loop, &w->deadline);
  uv_signal_init(&w->loop, &w->sigint);
  uv_signal_init(&w->loop, &w->sigterm);
  uv_signal_init(&w->loop, &w->winch);
  w->tick.data = w->deadline.data = w->sigint.data = w->sigterm.data = w->winch.data = w;
  uv_signal_start(&w->sigint, on_signal, SIGINT);
  uv_signal_start(&w->sigterm, on_signal, SIGTERM);
  uv_signal_start(&w->winch, on_signal, SIGWINCH);
  if (cli->timeout_s > 0)
    uv_timer_start(&w->deadline, on_deadline, (uint64_t)(cli->timeout_s * 1000), 0);
  uv_timer_start(&w->tick, on_tick, 1000, 1000);
  if (cli->term.tty)
    printf("Waiting for the image pulls of %s in namespace %s\n", w->what, w->conn.namespace);
  if (!w->kind || strcmp(w->kind->name, "pod") == 0) {
    pods_path_for(w, w->kind ? NULL : cli->selector);
    w->resolved = true;
    start_round(w);
  } else {
    struct pt_buf p;
    pt_buf_init(&p);
    pt_buf_printf(&p, "/%s/namespaces/", w->kind->api);
    pt_conn_escape(&p, w->conn.namespace);
    pt_buf_printf(&p, "/%s/", w->kind->resource);
    pt_conn_escape(&p, w->name);
    if (pt_conn_get(&w->conn, PT_TARGET_KUBE, p.data, got_workload, w) != 0) {
      pt_cli_error(cli, "cannot start the request");
      finish(w, PT_EXIT_ERROR);
    }
    pt_buf_close(&p);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_close((uv_handle_t *)&w->deadline, NULL);
  uv_close((uv_handle_t *)&w->sigint, NULL);
  uv_close((uv_handle_t *)&w->sigterm, NULL);
  uv_close((uv_handle_t *)&w->winch, NULL);
  pt_conn_close(&w->conn);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  int rc = w->rc;
  uv_loop_close(&w->loop);
  json_decref(w->pods);
  json_decref(w->pulls);
  free(w->items);
  free(w->old);
  free(w->what);
  free(w->pods_path);
  free(w);
  return rc;
}
