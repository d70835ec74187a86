/* The bearer token pulltrace-agent sends with its reports: the shared
 * PULLTRACE_AGENT_TOKEN (PULLTRACE_AGENT_AUTH=token), or its pod's projected
 * service-account token (PULLTRACE_AGENT_AUTH=kubernetes), a file that
 * kubelet replaces before the token expires. The file is read once at
 * startup and then re-read on libuv's thread pool every refresh interval and
 * whenever the server refused the token (a 401), so the loop never waits
 * for the disk. */
#ifndef PT_AGENT_TOKEN_H
#define PT_AGENT_TOKEN_H

#include <stdbool.h>
#include <uv.h>

struct pt_agent_token {
  uv_loop_t *loop;
  const char *fixed;   /* the shared token, or NULL */
  const char *path;    /* the token file, or NULL */
  double refresh;      /* seconds between re-reads */
  char *current;       /* the file's token */
  uv_timer_t timer;
  uv_work_t work;
  char *read;          /* the work's result */
  int read_err;
  bool busy, closing;
  int failures;        /* reads in a row that failed (logged once) */
};

/* With path: reads the file now (startup; a missing file is logged and read
 * again later) and starts the refresh timer. Without: the fixed token
 * (NULL = none). Returns 0 or a negative errno. */
int pt_agent_token_init(struct pt_agent_token *t, uv_loop_t *loop, const char *fixed, const char *path,
                        double refresh);
/* The token to send now; NULL when there is none. */
const char *pt_agent_token_get(const struct pt_agent_token *t);
/* Reads the file again soon (off the loop); nothing for a fixed token. */
void pt_agent_token_refresh(struct pt_agent_token *t);
/* Closes the timer (run the loop afterwards); frees after the loop ended. */
void pt_agent_token_stop(struct pt_agent_token *t);
void pt_agent_token_close(struct pt_agent_token *t);

#endif
