/* pulltrace-agent: polls containerd off the loop, tracks pulls and reports the
 * node's state to the server every interval. */
#ifndef PT_AGENT_AGENT_H
#define PT_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/containerd.h"
#include "agent/targets.h"
#include "agent/token.h"
#include "agent/tracker.h"
#include "core/config.h"
#include "core/httpc.h"
#include "core/log.h"

struct pt_agent_config {
  const char *node_name;
  const char *server_url;
  const char *containerd_socket;
  const char *containerd_namespace;
  enum pt_log_level log_level;
  const char *log_format;
  const char *token;
  const char *auth;          /* token or kubernetes */
  const char *token_file;    /* with kubernetes: the projected service-account token */
  double token_refresh;
  const char *server_ca;
  double report_interval;
  double stall_threshold;
  double completed_linger;
  double resolve_interval;
};

extern const struct pt_config_var pt_agent_config_vars[];

/* Loads and validates the agent's configuration. Returns 0 or -EINVAL with err set. */
int pt_agent_config_load(struct pt_agent_config *cfg, const char *(*getenv_fn)(const char *),
                         char *err, size_t errlen);

struct pt_agent {
  uv_loop_t *loop;
  struct pt_agent_config cfg;
  char boot_id[40];
  uint64_t seq;

  struct pt_containerd ctrd;
  struct pt_tracker tracker;
  struct pt_agent_token token;
  uv_timer_t tick;
  uv_work_t work;
  bool work_busy;
  int work_rc;        /* containerd status of the last tick */
  char *work_report;  /* report built by the last tick */
  int ctrd_state;     /* -1 unknown, 0 down, 1 up: logged on change only */
  double ctrd_down_since; /* wall clock of the first failed poll in a row, 0 while up (work_cb's) */
  double poll_backoff, next_poll;

  struct pt_httpc *http;
  struct pt_targets targets; /* every server replica, each sent to on its own */

  uv_signal_t sigterm, sigint;
  bool stopping;
};

/* Returns 0, or a negative errno with a message in err. */
int pt_agent_init(struct pt_agent *a, uv_loop_t *loop, const struct pt_agent_config *cfg, char *err, size_t errlen);
void pt_agent_start(struct pt_agent *a);
/* Stops timers, signals and HTTP; the loop then ends once a running poll
 * finishes. */
void pt_agent_stop(struct pt_agent *a);
void pt_agent_close(struct pt_agent *a);

#endif
