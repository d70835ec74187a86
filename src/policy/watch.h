/* A directory watcher for the policy's override directory: tells its owner
 * "the directory may have changed", nothing more. It reads no file: deciding
 * whether the scripts really changed is the reload's job, which runs on the
 * thread pool (policy/reload.c), so nothing here touches the disk beyond a
 * stat() of the directory itself.
 *
 * A Kubernetes ConfigMap volume is a directory of symlinks (`rate.lua ->
 * ..data/rate.lua`) where `..data` itself is a symlink to a timestamped
 * directory. kubelet updates it by writing a new timestamped directory and
 * renaming a fresh `..data_tmp` symlink over `..data`, so the files never
 * change in place: inotify only reports create/rename/delete entries in the
 * watched directory. Any event there therefore restarts a debounce timer whose
 * expiry calls the owner back. A slow periodic tick calls it back too, and
 * catches what events miss (the directory replaced, files edited through a
 * symlink elsewhere). */
#ifndef PT_POLICY_WATCH_H
#define PT_POLICY_WATCH_H

#include <uv.h>

struct pt_watch;

/* Called on the loop after the debounce of a burst of events, and on every
 * periodic tick. */
typedef void (*pt_watch_cb)(void *ud);

/* Creates a watcher of dir (copied) on loop: debounce and poll in seconds;
 * poll <= 0 turns the periodic tick off. NULL when out of memory. */
struct pt_watch *pt_watch_create(uv_loop_t *loop, const char *dir, double debounce, double poll,
                                 pt_watch_cb cb, void *ud);

/* Starts watching. Returns 0, or the error of the directory watch (a missing
 * directory, inotify limits); the periodic tick then still runs and keeps
 * trying to watch the directory. */
int pt_watch_start(struct pt_watch *w);

/* Accepts NULL. Stops the callbacks at once; the memory goes in the handles'
 * close callbacks, so run the loop before uv_loop_close(). */
void pt_watch_destroy(struct pt_watch *w);

#endif
