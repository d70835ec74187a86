/* top: a live full-screen view of the pulls, kept from the server's event
 * stream (a snapshot, then pull.* events; reconnects resume with
 * Last-Event-ID). Pulls are grouped by image or node; keys sort, filter and
 * regroup; the screen follows the terminal's size (SIGWINCH) and is given
 * back as it was on q, Ctrl-C or a signal. */
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
#include "cli/sse.h"
#include "core/clock.h"
#include "core/json.h"

enum sort_key { SORT_STARTED, SORT_PROGRESS, SORT_SPEED, SORT_ETA, SORT_NAME, SORT_COUNT };
static const char *const sort_names[] = {"started", "progress", "speed", "eta", "name"};

struct top {
  struct pt_cli *cli;
  struct pt_term *term;
  uv_loop_t loop;
  struct pt_conn conn;
  struct pt_sse_reader sse;
  uv_tty_t in;
  uv_timer_t frame, reconnect, closer;
  uv_signal_t winch, sigint, sigterm, sighup;
  bool have_tty_in, quitting, dirty, connected, streaming;
  int exit_status; /* 0 on q, 128 + the signal when one ends it */
  json_t *pulls;          /* id -> pull */
  char path[2048];        /* the stream's path and query */
  bool by_node;
  enum sort_key sort;
  bool hide_completed;
  bool editing;           /* typing a filter after "/" */
  char filter[128];
  char status[512];       /* connection state */
  char alert[512];        /* the latest alert */
  uint64_t stream_id;
  unsigned frames;        /* frame timer ticks (4 a second) */
};

/* -------------------------------------------------------------------------- */
/* the screen                                                                  */

static void screen_enter(void)
{
  /* Alternate screen, hidden cursor, no line wrap. */
  fputs("\033[?1049h\033[?25l\033[?7l\033[H\033[2J", stdout);
  fflush(stdout);
}

static void screen_leave(void)
{
  fputs("\033[?7h\033[?25h\033[?1049l", stdout);
  fflush(stdout);
}

struct row {
  const json_t *pull;
  struct pt_pull_view v;
  const char *group;
  const struct top *t; /* its sort order, for cmp_rows() (qsort passes no context) */
};

static const char *group_of(const struct top *t, const struct pt_pull_view *v)
{
  const char *g = t->by_node ? v->node : v->image;
  return g ? g : "(unknown)";
}

static int cmp_rows(const void *a, const void *b)
{
  const struct row *x = a, *y = b;
  int g = strcmp(x->group, y->group);
  if (g)
    return g;
  const struct top *t = x->t;
  double dx = 0, dy = 0;
  switch (t->sort) {
  case SORT_STARTED: dx = -x->v.started_at; dy = -y->v.started_at; break;
  case SORT_PROGRESS: dx = x->v.percent; dy = y->v.percent; break;
  case SORT_SPEED: dx = -x->v.bytes_per_second; dy = -y->v.bytes_per_second; break;
  case SORT_ETA: dx = -x->v.eta_seconds; dy = -y->v.eta_seconds; break;
  case SORT_NAME: {
    const char *nx = t->by_node ? x->v.image : x->v.node, *ny = t->by_node ? y->v.image : y->v.node;
    int c = strcmp(nx ? nx : "", ny ? ny : "");
    if (c)
      return c;
    break;
  }
  default: break;
  }
  if (dx != dy)
    return dx < dy ? -1 : 1;
  return strcmp(x->v.id ? x->v.id : "", y->v.id ? y->v.id : "");
}

static bool contains(const char *hay, const char *needle)
{
  return hay && strstr(hay, needle);
}

static bool visible(const struct top *t, const struct pt_pull_view *v)
{
  if (t->hide_completed && strcmp(v->state, "completed") == 0)
    return false;
  if (t->cli->image && !contains(v->image, t->cli->image))
    return false;
  if (t->filter[0]) {
    if (contains(v->image, t->filter) || contains(v->node, t->filter) || contains(v->state, t->filter))
      return true;
    for (size_t i = 0; i < v->npods; i++) {
      const json_t *p = json_array_get(v->pods, i);
      if (contains(pt_json_str(p, "name"), t->filter) || contains(pt_json_str(p, "namespace"), t->filter))
        return true;
    }
    return false;
  }
  return true;
}

static void line_end(struct pt_buf *o)
{
  pt_buf_puts(o, "\033[K\r\n");
}

/* A whole line: text cut to the width, in colour c. */
static void fitted_line(struct pt_buf *o, const struct pt_term *term, const char *text, int width, enum pt_color c)
{
  struct pt_buf f;
  pt_buf_init(&f);
  pt_fmt_fit(&f, text, width, term->utf8);
  pt_buf_printf(o, "%s%s%s", pt_term_sgr(term, c), f.data ? f.data : "", pt_term_sgr(term, PT_C_RESET));
  pt_buf_close(&f);
  line_end(o);
}

static void draw(struct top *t)
{
  const struct pt_term *term = t->term;
  /* The last column stays empty: "erase to end of line" after a character there would
   * erase that character (the cursor does not move past the margin). */
  int W = term->width - 1, H = term->height;
  struct pt_buf o;
  pt_buf_init(&o);
  pt_buf_puts(&o, "\033[H");
  size_t n = json_object_size(t->pulls);
  struct row *rows = calloc(n ? n : 1, sizeof(*rows));
  size_t nr = 0, pulling = 0, stalled = 0, failed = 0, completed = 0;
  double total_rate = 0;
  const char *id;
  json_t *p;
  json_object_foreach(t->pulls, id, p) {
    struct pt_pull_view v;
    pt_pull_view(p, &v);
    pulling += strcmp(v.state, "pulling") == 0;
    stalled += strcmp(v.state, "stalled") == 0;
    failed += strcmp(v.state, "failed") == 0 || strcmp(v.state, "lost") == 0;
    completed += strcmp(v.state, "completed") == 0;
    if (strcmp(v.state, "pulling") == 0 && v.bytes_per_second > 0)
      total_rate += v.bytes_per_second;
    if (!rows || !visible(t, &v))
      continue;
    rows[nr].pull = p;
    rows[nr].v = v;
    rows[nr].group = group_of(t, &rows[nr].v);
    rows[nr].t = t;
    nr++;
  }
  if (rows)
    qsort(rows, nr, sizeof(*rows), cmp_rows);

  /* Title and the key line. */
  char clock[16], rate[32], title[512], keys[512];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
  pt_fmt_rate(total_rate, rate, sizeof(rate));
  snprintf(title, sizeof(title), " pulltrace top   %zu pulls: %zu pulling, %zu stalled, %zu failed, %zu completed   %s",
           n, pulling, stalled, failed, completed, rate);
  struct pt_buf tl;
  pt_buf_init(&tl);
  pt_fmt_fit(&tl, title, W - 10, term->utf8);
  int pad = W - pt_fmt_cells(tl.data ? tl.data : "") - (int)strlen(clock) - 1;
  pt_buf_printf(&o, "%s%s%*s%s %s", pt_term_sgr(term, PT_C_REVERSE), tl.data ? tl.data : "", pad > 0 ? pad : 0, "",
                clock, pt_term_sgr(term, PT_C_RESET));
  pt_buf_close(&tl);
  line_end(&o);
  snprintf(keys, sizeof(keys), " group: %s (g)   sort: %s (s)   completed: %s (c)   filter (/): %s%s%s   q quit",
           t->by_node ? "node" : "image", sort_names[t->sort], t->hide_completed ? "hidden" : "shown",
           t->editing ? "" : "", t->filter[0] || t->editing ? t->filter : "-", t->editing ? "_" : "");
  fitted_line(&o, term, keys, W, PT_C_DIM);

  /* Columns: the other dimension's name, pod, bar, numbers, state. */
  /* " 100%" [" 1023.9 MiB/1023.9 MiB"] "  1023.9 MiB/s" "  ETA 59m  ": sizes only when wide. */
  bool sizes = W >= 110;
  int numw = sizes ? 52 : 29;
  int statew = 10;
  int barw = W >= 150 ? 30 : W >= 120 ? 20 : 12;
  int rest = W - 2 - numw - statew;
  /* Names need room more than the bar does (the percentage is there too). */
  if (rest - barw - 1 < 30)
    barw = 0;
  rest -= barw ? barw + 1 : 0;
  int namew = rest * 3 / 5, podw = rest - namew - 2;
  if (namew < 8)
    namew = 8;
  if (podw < 6)
    podw = 6;
  int line = 2, max_lines = H - 1;
  const char *cur = NULL;
  size_t shown = 0;
  if (nr == 0 && line < max_lines) {
    pt_buf_printf(&o, "%s", n ? "  (no pull matches the filter)" : "  (no pulls yet)");
    line_end(&o);
    line++;
  }
  for (size_t i = 0; i < nr && line < max_lines; i++) {
    struct row *r = &rows[i];
    if (!cur || strcmp(cur, r->group) != 0) {
      if (line + 2 > max_lines)
        break;
      cur = r->group;
      size_t count = 0;
      double grate = 0;
      for (size_t j = i; j < nr && strcmp(rows[j].group, cur) == 0; j++) {
        count++;
        if (strcmp(rows[j].v.state, "pulling") == 0 && rows[j].v.bytes_per_second > 0)
          grate += rows[j].v.bytes_per_second;
      }
      char gr[32], head[1200];
      pt_fmt_rate(grate, gr, sizeof(gr));
      snprintf(head, sizeof(head), "%s %s  (%zu pull%s, %s)", t->by_node ? "NODE" : "IMAGE", cur, count,
               count == 1 ? "" : "s", gr);
      fitted_line(&o, term, head, W, PT_C_BOLD);
      line++;
    }
    const struct pt_pull_view *v = &r->v;
    bool is_failed = strcmp(v->state, "failed") == 0 || strcmp(v->state, "lost") == 0;
    bool is_stalled = strcmp(v->state, "stalled") == 0;
    bool is_done = strcmp(v->state, "completed") == 0;
    enum pt_color col = is_failed ? PT_C_RED : is_stalled ? PT_C_YELLOW : is_done ? PT_C_GREEN : PT_C_CYAN;
    struct pt_buf cell, pods;
    pt_buf_init(&cell);
    pt_buf_init(&pods);
    const char *name = t->by_node ? v->image : v->node;
    pt_buf_puts(&o, "  ");
    pt_fmt_fit(&cell, name ? name : "?", namew, term->utf8);
    pt_buf_printf(&o, "%s%*s  ", cell.data ? cell.data : "", namew - pt_fmt_cells(cell.data ? cell.data : ""), "");
    pt_buf_reset(&cell);
    pt_pull_pods(v, NULL, &pods);
    pt_fmt_fit(&cell, pods.len ? pods.data : "-", podw, term->utf8);
    pt_buf_printf(&o, "%s%*s", cell.data ? cell.data : "", podw - pt_fmt_cells(cell.data ? cell.data : ""), "");
    if (barw) {
      pt_buf_printf(&o, " %s", pt_term_sgr(term, col));
      pt_fmt_bar(&o, v->percent >= 0 ? v->percent / 100 : 0, barw, term->utf8);
      pt_buf_puts(&o, pt_term_sgr(term, PT_C_RESET));
    }
    char pct[16], done[32], total[32], speed[32], eta[32], nums[160];
    snprintf(pct, sizeof(pct), v->percent >= 0 ? "%3.0f%%" : "   -", v->percent);
    pt_fmt_bytes(v->downloaded_bytes, done, sizeof(done));
    pt_fmt_bytes(v->total_bytes, total, sizeof(total));
    bool active = !pt_pull_finished(v);
    pt_fmt_rate(active ? v->bytes_per_second : -1, speed, sizeof(speed));
    if (active && v->eta_seconds >= 0)
      pt_fmt_age(v->eta_seconds, eta, sizeof(eta));
    else
      snprintf(eta, sizeof(eta), "-");
    if (sizes)
      snprintf(nums, sizeof(nums), " %s %10s/%-10s %12s  ETA %-5s", pct, done, v->percent >= 0 ? total : "?", speed,
               eta);
    else
      snprintf(nums, sizeof(nums), " %s %12s  ETA %-5s", pct, speed, eta);
    pt_buf_printf(&o, "%-*s", numw, nums);
    pt_buf_printf(&o, " %s%s%s%s", is_failed || is_stalled ? pt_term_sgr(term, PT_C_BOLD) : "", pt_term_sgr(term, col),
                  v->state, pt_term_sgr(term, PT_C_RESET));
    line_end(&o);
    line++;
    shown++;
    if (is_failed && v->error_message && line < max_lines) {
      char msg[1200];
      snprintf(msg, sizeof(msg), "    %s: %s", v->error_reason ? v->error_reason : "error", v->error_message);
      fitted_line(&o, term, msg, W, PT_C_RED);
      line++;
    }
    pt_buf_close(&cell);
    pt_buf_close(&pods);
  }
  if (shown < nr && line < max_lines) {
    pt_buf_printf(&o, "  … %zu more (filter with /, or a taller terminal)", nr - shown);
    line_end(&o);
    line++;
  }
  pt_buf_puts(&o, "\033[J");
  /* The status line at the bottom. */
  char status[1200];
  if (t->alert[0])
    snprintf(status, sizeof(status), " %s   alert: %s", t->status, t->alert);
  else
    snprintf(status, sizeof(status), " %s", t->status);
  struct pt_buf sl;
  pt_buf_init(&sl);
  pt_fmt_fit(&sl, status, W, term->utf8);
  pt_buf_printf(&o, "\033[%d;1H%s%s%s\033[K", H, t->connected ? pt_term_sgr(term, PT_C_DIM) : pt_term_sgr(term, PT_C_YELLOW),
                sl.data ? sl.data : "", pt_term_sgr(term, PT_C_RESET));
  pt_buf_close(&sl);
  fwrite(o.data, 1, o.len, stdout);
  fflush(stdout);
  pt_buf_close(&o);
  free(rows);
  t->dirty = false;
}

/* -------------------------------------------------------------------------- */
/* the stream                                                                  */

static void start_stream(struct top *t);

static void reconnect_cb(uv_timer_t *h)
{
  start_stream(h->data);
}

static void on_event(void *ud, const char *type, const char *id, const char *data, size_t len)
{
  struct top *t = ud;
  json_t *doc = json_loadb(data, len, 0, NULL);
  if (!doc)
    return;
  if (strcmp(type, "snapshot") == 0) {
    json_object_clear(t->pulls);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "pulls"), i, p) {
      const char *pid = pt_json_str(p, "id");
      if (pid)
        json_object_set(t->pulls, pid, p);
    }
  } else if (strncmp(type, "pull.", 5) == 0) {
    json_t *p = json_object_get(doc, "pull");
    const char *pid = pt_json_str(p, "id");
    if (strcmp(type, "pull.evicted") == 0) {
      pid = pt_json_str(doc, "pullId");
      if (pid)
        json_object_del(t->pulls, pid);
    } else if (pid) {
      json_object_set(t->pulls, pid, p);
    }
  } else if (strcmp(type, "alert") == 0) {
    json_t *a = json_object_get(doc, "alert");
    const char *name = pt_json_str(a, "name"), *summary = pt_json_str(a, "summary");
    snprintf(t->alert, sizeof(t->alert), "%s%s%s", name ? name : "alert", summary ? ": " : "", summary ? summary : "");
  }
  json_decref(doc);
  t->dirty = true;
}

static int on_data(void *ud, const char *data, size_t len)
{
  struct top *t = ud;
  if (!t->connected) {
    t->connected = true;
    snprintf(t->status, sizeof(t->status), "connected to %s", t->conn.where);
    t->dirty = true;
  }
  return pt_sse_reader_feed(&t->sse, data, len) ? -1 : 0;
}

static void on_stream_done(void *ud, long status, const char *err)
{
  struct top *t = ud;
  t->streaming = false;
  t->connected = false;
  if (t->quitting)
    return;
  snprintf(t->status, sizeof(t->status), "reconnecting in 2s: %s", err ? err : "the server closed the stream");
  t->dirty = true;
  uv_timer_start(&t->reconnect, reconnect_cb, 2000, 0);
}

static void start_stream(struct top *t)
{
  if (t->quitting || t->streaming)
    return;
  pt_sse_reader_reset(&t->sse);
  if (pt_conn_stream(&t->conn, t->path, t->sse.id[0] ? t->sse.id : NULL, on_data, on_stream_done, t,
                     &t->stream_id) == 0)
    t->streaming = true;
  else
    uv_timer_start(&t->reconnect, reconnect_cb, 2000, 0);
}

/* -------------------------------------------------------------------------- */
/* input, signals, the end                                                     */

static void close_all(uv_timer_t *h)
{
  struct top *t = h->data;
  pt_conn_close(&t->conn);
  uv_close((uv_handle_t *)&t->frame, NULL);
  uv_close((uv_handle_t *)&t->reconnect, NULL);
  uv_close((uv_handle_t *)&t->closer, NULL);
  uv_close((uv_handle_t *)&t->winch, NULL);
  uv_close((uv_handle_t *)&t->sigint, NULL);
  uv_close((uv_handle_t *)&t->sigterm, NULL);
  uv_close((uv_handle_t *)&t->sighup, NULL);
  if (t->have_tty_in) {
    uv_tty_set_mode(&t->in, UV_TTY_MODE_NORMAL);
    uv_close((uv_handle_t *)&t->in, NULL);
  }
}

/* From a timer: quit() may run inside the connection's callbacks. */
static void quit(struct top *t)
{
  if (t->quitting)
    return;
  t->quitting = true;
  uv_timer_start(&t->closer, close_all, 0, 0);
}

static void on_key(struct top *t, unsigned char ch)
{
  if (t->editing) {
    size_t n = strlen(t->filter);
    if (ch == '\r' || ch == '\n')
      t->editing = false;
    else if (ch == 27) {
      t->filter[0] = '\0';
      t->editing = false;
    } else if (ch == 127 || ch == 8) {
      if (n)
        t->filter[n - 1] = '\0';
    } else if (ch == 3) {
      quit(t);
    } else if (ch >= 32 && n + 1 < sizeof(t->filter)) {
      t->filter[n] = (char)ch;
      t->filter[n + 1] = '\0';
    }
    t->dirty = true;
    return;
  }
  switch (ch) {
  case 'q': case 3: quit(t); break;
  case 'g': t->by_node = !t->by_node; break;
  case 's': t->sort = (t->sort + 1) % SORT_COUNT; break;
  case 'c': t->hide_completed = !t->hide_completed; break;
  case '/': t->editing = true; t->filter[0] = '\0'; break;
  case 27: t->filter[0] = '\0'; break;
  default: return;
  }
  t->dirty = true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  static char space[256];
  buf->base = space;
  buf->len = sizeof(space);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct top *t = s->data;
  if (n < 0) {
    uv_read_stop(s);
    return;
  }
  for (ssize_t i = 0; i < n && !t->quitting; i++)
    on_key(t, (unsigned char)buf->base[i]);
  if (t->dirty && !t->quitting)
    draw(t);
}

static void on_signal(uv_signal_t *s, int signum)
{
  struct top *t = s->data;
  if (signum == SIGWINCH) {
    pt_term_size(t->term);
    fputs("\033[2J", stdout);
    draw(t);
    return;
  }
  /* Ended by a signal: the shell's convention, as watch does (130, 143, 129). */
  if (!t->quitting)
    t->exit_status = 128 + signum;
  quit(t);
}

static void on_frame(uv_timer_t *h)
{
  struct top *t = h->data;
  /* Redraw when something changed, and every second for the clock and ages. */
  if (!t->quitting && (t->dirty || ++t->frames % 4 == 0))
    draw(t);
}

int pt_cmd_top(struct pt_cli *cli)
{
  if (!cli->term.tty) {
    pt_cli_error(cli, "top needs a terminal on standard output; use \"get pulls\" (-o json) in scripts");
    return PT_EXIT_FAILED;
  }
  if (cli->group_by && strcmp(cli->group_by, "image") != 0 && strcmp(cli->group_by, "node") != 0) {
    pt_cli_error(cli, "--group-by: \"%s\" is neither image nor node", cli->group_by);
    return PT_EXIT_FAILED;
  }
  if (cli->all_namespaces && cli->conn.namespace) {
    pt_cli_error(cli, "-A and -n cannot be combined");
    return PT_EXIT_FAILED;
  }
  struct top *t = calloc(1, sizeof(*t));
  if (!t)
    return PT_EXIT_FAILED;
  t->cli = cli;
  t->term = &cli->term;
  t->by_node = cli->group_by && strcmp(cli->group_by, "node") == 0;
  t->pulls = json_object();
  uv_loop_init(&t->loop);
  char err[1024];
  if (pt_conn_init(&t->conn, &t->loop, &cli->conn, false, err, sizeof(err))) {
    pt_cli_error(cli, "%s", err);
    uv_loop_close(&t->loop);
    json_decref(t->pulls);
    free(t);
    return PT_EXIT_FAILED;
  }
  struct pt_buf path;
  pt_buf_init(&path);
  pt_buf_puts(&path, "/api/v1/events");
  char sep = '?';
  /* Every namespace unless -n narrows it: pulls belong to nodes first. */
  if (cli->conn.namespace && !cli->all_namespaces) {
    pt_buf_printf(&path, "%cnamespace=", sep);
    pt_conn_escape(&path, cli->conn.namespace);
    sep = '&';
  }
  if (cli->node) {
    pt_buf_printf(&path, "%cnode=", sep);
    pt_conn_escape(&path, cli->node);
  }
  snprintf(t->path, sizeof(t->path), "%s", path.data);
  pt_buf_close(&path);
  snprintf(t->status, sizeof(t->status), "connecting to %s", t->conn.where);
  pt_sse_reader_init(&t->sse, on_event, t);

  uv_timer_init(&t->loop, &t->frame);
  uv_timer_init(&t->loop, &t->reconnect);
  uv_timer_init(&t->loop, &t->closer);
  uv_signal_init(&t->loop, &t->winch);
  uv_signal_init(&t->loop, &t->sigint);
  uv_signal_init(&t->loop, &t->sigterm);
  uv_signal_init(&t->loop, &t->sighup);
  t->frame.data = t->reconnect.data = t->closer.data = t;
  t->winch.data = t->sigint.data = t->sigterm.data = t->sighup.data = t;
  uv_signal_start(&t->winch, on_signal, SIGWINCH);
  uv_signal_start(&t->sigint, on_signal, SIGINT);
  uv_signal_start(&t->sigterm, on_signal, SIGTERM);
  uv_signal_start(&t->sighup, on_signal, SIGHUP);
  if (isatty(STDIN_FILENO) && uv_tty_init(&t->loop, &t->in, STDIN_FILENO, 1) == 0) {
    t->have_tty_in = true;
    t->in.data = t;
    /* Raw mode: keys arrive one by one, Ctrl-C as a byte (handled as q). */
    uv_tty_set_mode(&t->in, UV_TTY_MODE_RAW);
    uv_read_start((uv_stream_t *)&t->in, alloc_cb, on_read);
  }
  screen_enter();
  draw(t);
  uv_timer_start(&t->frame, on_frame, 250, 250);
  start_stream(t);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  screen_leave();
  uv_tty_reset_mode();
  uv_loop_close(&t->loop);
  pt_sse_reader_close(&t->sse);
  json_decref(t->pulls);
  int status = t->exit_status;
  free(t);
  return status;
}
