/* Hot reload: watch the override directory and rebuild the VM when the
 * scripts change.
 *
 * A Kubernetes ConfigMap volume is a directory of symlinks (`rate.lua ->
 * ..data/rate.lua`) where `..data` itself is a symlink to a timestamped
 * directory. kubelet updates it by writing a new timestamped directory and
 * renaming a fresh `..data_tmp` symlink over `..data`, so the files never
 * change in place: inotify only reports create/rename/delete entries in the
 * watched directory. Any event there therefore restarts a debounce timer, and
 * when it fires the scripts are read and hashed; only a change of content
 * leads to a reload. A slow periodic check catches what events miss (the
 * directory replaced, files edited through a symlink elsewhere). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "policy/internal.h"

void policy_free_after_close(struct pt_policy *p);

bool watch_active(const struct pt_policy *p)
{
  return p->watching;
}

static void check_dir(struct pt_policy *p)
{
  struct script_set s = {0};
  char err[512];
  uint64_t hash = 0;
  if ((p->no_builtin || script_set_builtin(&s) == 0) &&
      script_set_add_dir(&s, p->dir, err, sizeof(err)) == 0)
    hash = script_set_hash(&s);
  script_set_free(&s);
  /* hash 0: the directory cannot be read right now; the reload reports why,
   * once, and the next change tries again. */
  if (hash == p->dir_hash || hash == p->tried_hash)
    return;
  p->tried_hash = hash;
  pt_policy_reload(p);
}

static void debounce_cb(uv_timer_t *t)
{
  check_dir(t->data);
}

static void fs_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
  struct pt_policy *p = h->data;
  (void)filename;
  (void)events;
  if (status < 0) {
    PT_LOG_WARN("policy directory watch error", "{s:s, s:s}", "dir", p->dir, "error",
                uv_strerror(status));
    return;
  }
  uv_timer_start(&p->debounce_timer, debounce_cb, (uint64_t)(p->debounce * 1000), 0);
}

static int start_fs_event(struct pt_policy *p)
{
  struct stat st;
  if (stat(p->dir, &st) != 0)
    return -errno;
  if (p->fs_event_active) {
    uv_fs_event_stop(&p->fs_event);
    p->fs_event_active = false;
  }
  int rc = uv_fs_event_start(&p->fs_event, fs_cb, p->dir, 0);
  if (rc == 0) {
    p->fs_event_active = true;
    p->dir_dev = st.st_dev;
    p->dir_ino = st.st_ino;
  }
  return rc;
}

static void poll_cb(uv_timer_t *t)
{
  struct pt_policy *p = t->data;
  struct stat st;
  /* A directory replaced by a new one (same path, new inode) is no longer
   * the one inotify watches. */
  if (stat(p->dir, &st) == 0 &&
      (!p->fs_event_active || st.st_dev != p->dir_dev || st.st_ino != p->dir_ino))
    start_fs_event(p);
  check_dir(p);
}

int pt_policy_watch(struct pt_policy *p, uv_loop_t *loop)
{
  if (!p || !loop || !p->dir || p->watching)
    return -EINVAL;
  p->loop = loop;
  uv_fs_event_init(loop, &p->fs_event);
  uv_timer_init(loop, &p->debounce_timer);
  uv_timer_init(loop, &p->poll_timer);
  p->fs_event.data = p->debounce_timer.data = p->poll_timer.data = p;
  p->watching = true;
  if (p->poll > 0) {
    uint64_t ms = (uint64_t)(p->poll * 1000);
    uv_timer_start(&p->poll_timer, poll_cb, ms, ms);
  }
  /* Even if the directory cannot be watched now, the periodic check keeps
   * trying; the caller learns about the problem from the return value. */
  return start_fs_event(p);
}

static void close_cb(uv_handle_t *h)
{
  struct pt_policy *p = h->data;
  if (--p->closing == 0)
    policy_free_after_close(p);
}

void watch_close(struct pt_policy *p)
{
  p->watching = false;
  p->closing = 3;
  uv_close((uv_handle_t *)&p->fs_event, close_cb);
  uv_close((uv_handle_t *)&p->debounce_timer, close_cb);
  uv_close((uv_handle_t *)&p->poll_timer, close_cb);
}
