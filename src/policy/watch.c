#include "policy/watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

struct pt_watch {
  uv_fs_event_t fs_event;
  uv_timer_t debounce_timer;
  uv_timer_t poll_timer;
  bool fs_event_active;
  int open_handles;
  dev_t dir_dev;
  ino_t dir_ino;
  double debounce, poll;
  pt_watch_cb cb;
  void *ud;
  char *dir;
};

static void debounce_cb(uv_timer_t *t)
{
  struct pt_watch *w = t->data;
  w->cb(w->ud);
}

static void fs_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
  struct pt_watch *w = h->data;
  (void)filename;
  (void)events;
  if (status < 0) {
    PT_LOG_WARN("policy directory watch error", "{s:s, s:s}", "dir", w->dir, "error",
                uv_strerror(status));
    return;
  }
  uv_timer_start(&w->debounce_timer, debounce_cb, (uint64_t)(w->debounce * 1000), 0);
}

static int start_fs_event(struct pt_watch *w)
{
  struct stat st;
  if (stat(w->dir, &st) != 0)
    return -errno;
  if (w->fs_event_active) {
    uv_fs_event_stop(&w->fs_event);
    w->fs_event_active = false;
  }
  int rc = uv_fs_event_start(&w->fs_event, fs_cb, w->dir, 0);
  if (rc == 0) {
    w->fs_event_active = true;
    w->dir_dev = st.st_dev;
    w->dir_ino = st.st_ino;
  }
  return rc;
}

static void poll_cb(uv_timer_t *t)
{
  struct pt_watch *w = t->data;
  struct stat st;
  /* A directory replaced by a new one (same path, new inode) is no longer
   * the one inotify watches. */
  if (stat(w->dir, &st) == 0 &&
      (!w->fs_event_active || st.st_dev != w->dir_dev || st.st_ino != w->dir_ino))
    start_fs_event(w);
  w->cb(w->ud);
}

struct pt_watch *pt_watch_create(uv_loop_t *loop, const char *dir, double debounce, double poll,
                                 pt_watch_cb cb, void *ud)
{
  if (!loop || !dir || !cb)
    return NULL;
  struct pt_watch *w = calloc(1, sizeof(*w));
  if (!w || !(w->dir = strdup(dir))) {
    free(w);
    return NULL;
  }
  w->debounce = debounce;
  w->poll = poll;
  w->cb = cb;
  w->ud = ud;
  uv_fs_event_init(loop, &w->fs_event);
  uv_timer_init(loop, &w->debounce_timer);
  uv_timer_init(loop, &w->poll_timer);
  w->fs_event.data = w->debounce_timer.data = w->poll_timer.data = w;
  w->open_handles = 3;
  return w;
}

int pt_watch_start(struct pt_watch *w)
{
  if (!w)
    return -EINVAL;
  if (w->poll > 0) {
    uint64_t ms = (uint64_t)(w->poll * 1000);
    uv_timer_start(&w->poll_timer, poll_cb, ms, ms);
  }
  return start_fs_event(w);
}

static void close_cb(uv_handle_t *h)
{
  struct pt_watch *w = h->data;
  if (--w->open_handles == 0) {
    free(w->dir);
    free(w);
  }
}

void pt_watch_destroy(struct pt_watch *w)
{
  if (!w)
    return;
  uv_close((uv_handle_t *)&w->fs_event, close_cb);
  uv_close((uv_handle_t *)&w->debounce_timer, close_cb);
  uv_close((uv_handle_t *)&w->poll_timer, close_cb);
}
