/* Reloads: read the scripts, build a new VM, swap it in.
 *
 * Reading a directory and compiling a VM can take up to the load deadline
 * (2 s by default), far too long for the server's loop. With a loop
 * (pt_policy_watch) a reload is therefore a job: the thread pool reads and
 * compiles (uv_queue_work), and the loop swaps the result in from the job's
 * completion callback, that is between two callbacks and never inside a hook
 * call. The running VM keeps answering meanwhile. A VM is only ever used by
 * one thread at a time: the new one by the worker until the completion hands
 * it to the loop. Requests arriving during a job are merged into one more
 * job after it, which builds only if the scripts changed meanwhile, so a
 * burst of changes costs at most two builds. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"
#include "policy/watch.h"

struct reload_job {
  uv_work_t req;
  struct pt_policy *p;
  /* Explicit reloads build even when the scripts did not change; the
   * watcher's skip what runs already or failed already. */
  bool forced;
  uint64_t skip[2];
  size_t n_skip;
  /* Results, written by the worker. */
  double at;
  struct vm *vm;
  uint64_t hash;
  int rc;
  char err[sizeof(((struct pt_policy *)0)->reload_error)];
};

int policy_build(const struct vm_config *cfg, const uint64_t *skip, size_t n_skip,
                 struct vm **out, uint64_t *hash, char *err, size_t errlen)
{
  struct script_set s = {0};
  int rc = 0;
  *out = NULL;
  *hash = 0;
  if (!cfg->no_builtin && (rc = script_set_builtin(&s)))
    snprintf(err, errlen, "out of memory");
  else if (cfg->dir)
    rc = script_set_add_dir(&s, cfg->dir, err, errlen);
  if (rc == 0)
    *hash = script_set_hash(&s);
  /* An unreadable directory (hash 0) is reported once, not at every poll. */
  for (size_t i = 0; i < n_skip; i++)
    if (*hash == skip[i]) {
      rc = 0;
      goto out;
    }
  if (rc)
    goto out;
  if (!(*out = vm_create(cfg, &s, err, errlen)))
    rc = -EINVAL;
out:
  script_set_free(&s);
  return rc;
}

/* Swaps in a successful build or records why it failed; on the loop (or the
 * only) thread, outside hook calls. */
static void finish(struct pt_policy *p, int rc, struct vm *vm, uint64_t hash, const char *err,
                   double at)
{
  p->last_reload_at = at;
  if (rc) {
    p->counters.reloads_failed++;
    p->last_reload = 0;
    snprintf(p->reload_error, sizeof(p->reload_error), "%s", err);
    struct pt_policy_status st;
    pt_policy_status(p, &st);
    PT_LOG_ERROR("policy reload failed, keeping the running policy", "{s:s, s:s, s:i, s:s, s:s}", "dir",
                 p->vmc.dir ? p->vmc.dir : "", "script", st.error_script, "line", st.error_line, "message",
                 st.error_message, "error", err);
    return;
  }
  vm_destroy(p->vm);
  p->vm = vm;
  p->dir_hash = hash;
  p->counters.reloads_ok++;
  p->last_reload = 1;
  p->defaults_only = false;
  p->reload_error[0] = '\0';
  p->loaded_at = at;
  PT_LOG_INFO("policy reloaded", "{s:s, s:I}", "dir", p->vmc.dir ? p->vmc.dir : "", "scripts",
              (json_int_t)vm->scripts.n);
}

static void work_cb(uv_work_t *req)
{
  struct reload_job *j = req->data;
  j->at = pt_clock_now();
  j->rc = policy_build(&j->p->vmc, j->skip, j->n_skip, &j->vm, &j->hash, j->err, sizeof(j->err));
}

static void schedule(struct pt_policy *p, bool forced);

static void after_work_cb(uv_work_t *req, int status)
{
  struct reload_job *j = req->data;
  struct pt_policy *p = j->p;
  p->job = NULL;
  if (p->destroyed || status == UV_ECANCELED) {
    vm_destroy(j->vm);
    free(j);
    if (p->destroyed)
      policy_free(p);
    return;
  }
  p->tried_hash = j->hash;
  /* rc 0 without a VM: the scripts are the ones running or already tried. */
  if (j->rc || j->vm)
    finish(p, j->rc, j->vm, j->hash, j->err, j->at);
  free(j);
  if (p->again) {
    p->again = false;
    schedule(p, false);
  }
}

static void schedule(struct pt_policy *p, bool forced)
{
  if (p->job) {
    p->again = true;
    return;
  }
  struct reload_job *j = calloc(1, sizeof(*j));
  if (!j) {
    PT_LOG_ERROR("policy reload not started: out of memory", "{}");
    return;
  }
  j->p = p;
  j->forced = forced;
  if (!forced) {
    j->skip[j->n_skip++] = p->dir_hash;
    j->skip[j->n_skip++] = p->tried_hash;
  }
  j->req.data = j;
  int rc = uv_queue_work(p->loop, &j->req, work_cb, after_work_cb);
  if (rc) {
    PT_LOG_ERROR("policy reload not started", "{s:s}", "error", uv_strerror(rc));
    free(j);
    return;
  }
  p->job = j;
}

int pt_policy_reload(struct pt_policy *p)
{
  if (!p)
    return -EINVAL;
  if (p->loop) {
    schedule(p, true);
    return 0;
  }
  if (p->depth > 0)
    return -EBUSY;
  char err[sizeof(p->reload_error)];
  struct vm *vm = NULL;
  uint64_t hash;
  double at = pt_clock_now();
  int rc = policy_build(&p->vmc, NULL, 0, &vm, &hash, err, sizeof(err));
  finish(p, rc, vm, hash, err, at);
  return rc;
}

static void on_dir_event(void *ud)
{
  schedule(ud, false);
}

int pt_policy_watch(struct pt_policy *p, uv_loop_t *loop)
{
  if (!p || !loop || !p->vmc.dir || p->loop)
    return -EINVAL;
  p->watch = pt_watch_create(loop, p->vmc.dir, p->debounce, p->poll, on_dir_event, p);
  if (!p->watch)
    return -ENOMEM;
  p->loop = loop;
  return pt_watch_start(p->watch);
}

bool reload_stop(struct pt_policy *p)
{
  pt_watch_destroy(p->watch);
  p->watch = NULL;
  if (!p->job)
    return false;
  p->destroyed = true;
  /* A job still queued is dropped; its completion then runs with
   * UV_ECANCELED. A running one finishes first. */
  uv_cancel((uv_req_t *)&p->job->req);
  return true;
}
