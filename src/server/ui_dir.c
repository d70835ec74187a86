#include "server/ui_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/hash.h"
#include "core/log.h"

#define MAX_DEPTH 16

struct snapshot {
  struct pt_embedded_file *files; /* n + 1 entries, the last with a NULL name */
  uint64_t *etags;
  size_t n, cap;
  size_t bytes;
  bool incomplete; /* a file changed while being read: read the tree again */
};

struct scan {
  uv_work_t req;
  struct pt_ui_dir *d;
  uint64_t signature;      /* of the tree the current snapshot was read from */
  struct snapshot *result; /* NULL when the tree did not change or cannot be read */
  int error;
};

struct pt_ui_dir {
  uv_loop_t *loop;
  char *dir;
  uv_timer_t timer;
  struct snapshot *snap;
  uint64_t signature;
  uint64_t generation;
  int last_error;
  struct scan *scan; /* in flight */
  bool closing, timer_open;
};

static void snapshot_free(struct snapshot *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++) {
    free((char *)s->files[i].name);
    free((unsigned char *)s->files[i].data);
  }
  free(s->files);
  free(s->etags);
  free(s);
}

/* ---- on the thread pool ---------------------------------------------------- */

static int read_whole(const char *path, size_t size, unsigned char **out)
{
  char *buf;
  size_t got;
  int r = pt_file_read(path, size, &buf, &got);
  if (r == -EFBIG || (r == 0 && got != size)) { /* changed since the scan: the next scan sees it again */
    if (r == 0)
      free(buf);
    return -EAGAIN;
  }
  if (r == 0)
    *out = (unsigned char *)buf;
  return r;
}

static int add_file(struct snapshot *s, const char *rel, const char *path, size_t size)
{
  if (s->n >= PT_UI_DIR_MAX_FILES || s->bytes + size > PT_UI_DIR_MAX_TOTAL)
    return -E2BIG;
  if (s->n + 1 >= s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    struct pt_embedded_file *f = realloc(s->files, cap * sizeof(*f));
    if (!f)
      return -ENOMEM;
    s->files = f;
    uint64_t *e = realloc(s->etags, cap * sizeof(*e));
    if (!e)
      return -ENOMEM;
    s->etags = e;
    s->cap = cap;
  }
  unsigned char *data = NULL;
  int r = read_whole(path, size, &data);
  if (r)
    return r;
  char *name = strdup(rel);
  if (!name) {
    free(data);
    return -ENOMEM;
  }
  s->files[s->n] = (struct pt_embedded_file){.name = name, .data = data, .size = size};
  s->etags[s->n] = pt_fnv1a(PT_FNV1A_INIT, data, size);
  s->n++;
  s->bytes += size;
  s->files[s->n].name = NULL;
  return 0;
}

/* Walks dir/rel: with s NULL only the signature (names, sizes, modification
 * times) is computed; with s the files are read too. */
static int walk(const char *root, const char *rel, int depth, uint64_t *sig, struct snapshot *s)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *dh = opendir(path);
  if (!dh)
    return -errno;
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(dh))) {
    if (de->d_name[0] == '.') /* ".", "..", and hidden files are never served */
      continue;
    char sub[2048], full[4096];
    if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= sizeof(sub))
      continue;
    snprintf(full, sizeof(full), "%s/%s", root, sub);
    struct stat st;
    if (stat(full, &st) != 0)
      continue; /* vanished meanwhile */
    if (S_ISDIR(st.st_mode)) {
      /* A subdirectory that vanished or is unreadable is left out; only
       * running out of memory or over the limit ends the walk. */
      if (depth < MAX_DEPTH) {
        r = walk(root, sub, depth + 1, sig, s);
        if (r != -ENOMEM && r != -E2BIG)
          r = 0;
      }
      continue;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > PT_UI_DIR_MAX_FILE)
      continue;
    *sig = pt_fnv1a(*sig, sub, strlen(sub) + 1);
    int64_t stamp[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
    *sig = pt_fnv1a(*sig, stamp, sizeof(stamp));
    if (s) {
      int a = add_file(s, sub, full, (size_t)st.st_size);
      if (a == -ENOMEM || a == -E2BIG)
        r = a;
      else if (a)
        s->incomplete = true;
    }
  }
  closedir(dh);
  return r;
}

static void scan_run(uv_work_t *req)
{
  struct scan *sc = req->data;
  const char *root = sc->d->dir; /* constant while the object lives */
  uint64_t sig = PT_FNV1A_INIT;
  int r = walk(root, "", 0, &sig, NULL);
  if (r) {
    sc->error = r;
    return;
  }
  if (sig == sc->signature)
    return; /* unchanged: nothing to read */
  struct snapshot *s = calloc(1, sizeof(*s));
  uint64_t read_sig = PT_FNV1A_INIT;
  r = s ? walk(root, "", 0, &read_sig, s) : -ENOMEM;
  if (r == 0 && s && !s->files) { /* an empty tree: an empty table, every file 404 */
    s->files = calloc(1, sizeof(*s->files));
    s->etags = calloc(1, sizeof(*s->etags));
    if (!s->files || !s->etags)
      r = -ENOMEM;
  }
  if (r && r != -E2BIG) {
    snapshot_free(s);
    sc->error = r;
    return;
  }
  sc->error = r; /* -E2BIG: served up to the limit, and said so */
  sc->result = s;
  /* What was read is what the next scan compares with; a file caught while
   * changing makes the next scan read again. */
  sc->signature = s->incomplete ? 0 : read_sig;
}

/* ---- on the loop ----------------------------------------------------------- */

static void maybe_free(struct pt_ui_dir *d)
{
  if (!d->closing || d->timer_open || d->scan)
    return;
  snapshot_free(d->snap);
  free(d->dir);
  free(d);
}

static void scan_done(uv_work_t *req, int status)
{
  struct scan *sc = req->data;
  struct pt_ui_dir *d = sc->d;
  d->scan = NULL;
  if (d->closing || status != 0) {
    snapshot_free(sc->result);
  } else {
    /* Said once per change of state, not every interval. */
    if (sc->error && sc->error != d->last_error)
      PT_LOG_WARN(sc->error == -E2BIG ? "PULLTRACE_UI_DIR holds too much; serving part of it"
                                      : "cannot read PULLTRACE_UI_DIR",
                  "{s:s,s:s}", "dir", d->dir, "error", strerror(-sc->error));
    d->last_error = sc->error;
    if (sc->result) {
      snapshot_free(d->snap);
      d->snap = sc->result;
      d->signature = sc->signature;
      d->generation++;
      PT_LOG_DEBUG("web UI directory read", "{s:s,s:i}", "dir", d->dir, "files", (int)d->snap->n);
    }
  }
  free(sc);
  maybe_free(d);
}

static void scan_start(struct pt_ui_dir *d)
{
  if (d->scan || d->closing)
    return;
  struct scan *sc = calloc(1, sizeof(*sc));
  if (!sc)
    return;
  sc->d = d;
  sc->signature = d->signature;
  sc->req.data = sc;
  if (uv_queue_work(d->loop, &sc->req, scan_run, scan_done) != 0) {
    free(sc);
    return;
  }
  d->scan = sc;
}

static void tick(uv_timer_t *t)
{
  scan_start(t->data);
}

struct pt_ui_dir *pt_ui_dir_create(uv_loop_t *loop, const char *dir, double interval)
{
  struct pt_ui_dir *d = calloc(1, sizeof(*d));
  if (!d)
    return NULL;
  d->loop = loop;
  d->dir = strdup(dir);
  if (!d->dir) {
    free(d);
    return NULL;
  }
  uint64_t every = (uint64_t)((interval > 0 ? interval : 1.0) * 1000.0);
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  d->timer_open = true;
  uv_timer_start(&d->timer, tick, every, every);
  scan_start(d);
  return d;
}

static void timer_closed(uv_handle_t *h)
{
  struct pt_ui_dir *d = h->data;
  d->timer_open = false;
  maybe_free(d);
}

void pt_ui_dir_destroy(struct pt_ui_dir *d)
{
  if (!d || d->closing)
    return;
  d->closing = true;
  if (d->scan)
    uv_cancel((uv_req_t *)&d->scan->req);
  uv_close((uv_handle_t *)&d->timer, timer_closed);
}

const struct pt_embedded_file *pt_ui_dir_files(const struct pt_ui_dir *d, const uint64_t **etags)
{
  if (!d || !d->snap)
    return NULL;
  if (etags)
    *etags = d->snap->etags;
  return d->snap->files;
}

uint64_t pt_ui_dir_generation(const struct pt_ui_dir *d)
{
  return d ? d->generation : 0;
}
