#include "agent/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/log.h"

#define MAX_TOKEN_BYTES 65536

static void take(struct pt_agent_token *t, int err, char *tok)
{
  if (err) {
    if (t->failures++ == 0)
      PT_LOG_WARN("cannot read the service-account token; keeping the previous one", "{s:s,s:s}", "file", t->path,
                  "error", strerror(-err));
    return;
  }
  if (t->failures)
    PT_LOG_INFO("service-account token readable again", "{s:s}", "file", t->path);
  t->failures = 0;
  if (!t->current || strcmp(t->current, tok) != 0)
    PT_LOG_DEBUG("service-account token (re)loaded", "{s:s}", "file", t->path);
  free(t->current);
  t->current = tok;
}

static void work_cb(uv_work_t *w)
{
  struct pt_agent_token *t = w->data;
  t->read_err = pt_file_read_trimmed(t->path, MAX_TOKEN_BYTES, &t->read);
}

static void after_work_cb(uv_work_t *w, int status)
{
  struct pt_agent_token *t = w->data;
  t->busy = false;
  char *tok = t->read;
  t->read = NULL;
  if (status == 0 && !t->closing) {
    take(t, t->read_err, tok);
    return;
  }
  free(tok);
}

static void timer_cb(uv_timer_t *h)
{
  pt_agent_token_refresh(h->data);
}

int pt_agent_token_init(struct pt_agent_token *t, uv_loop_t *loop, const char *fixed, const char *path,
                        double refresh)
{
  memset(t, 0, sizeof(*t));
  t->loop = loop;
  t->fixed = fixed && *fixed ? fixed : NULL;
  t->path = path && *path ? path : NULL;
  t->refresh = refresh > 0 ? refresh : 60;
  t->work.data = t;
  if (!t->path)
    return 0;
  /* Startup, before the loop runs: the one read on the loop thread. */
  char *tok;
  int err = pt_file_read_trimmed(t->path, MAX_TOKEN_BYTES, &tok);
  take(t, err, tok);
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uint64_t ms = (uint64_t)(t->refresh * 1000);
  return uv_timer_start(&t->timer, timer_cb, ms, ms);
}

const char *pt_agent_token_get(const struct pt_agent_token *t)
{
  return t->path ? t->current : t->fixed;
}

void pt_agent_token_refresh(struct pt_agent_token *t)
{
  if (!t->path || t->busy || t->closing)
    return;
  if (uv_queue_work(t->loop, &t->work, work_cb, after_work_cb) == 0)
    t->busy = true;
}

void pt_agent_token_stop(struct pt_agent_token *t)
{
  if (t->closing)
    return;
  t->closing = true;
  if (t->path)
    uv_close((uv_handle_t *)&t->timer, NULL);
}

void pt_agent_token_close(struct pt_agent_token *t)
{
  free(t->current);
  free(t->read);
  t->current = t->read = NULL;
}
