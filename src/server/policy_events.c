/* The policy's load state as Kubernetes Events on the server's own Pod
 * (docs/policy.md, "Startup, reload and status"): an operator who runs
 * `kubectl describe pod` on the server, or `kubectl get events`, sees that
 * the policy directory did not load (PolicyLoadFailed, Warning, with the Lua
 * error) and that a later version did (PolicyLoaded, Normal). The policy's
 * status is looked at every tick: reloads are built off the loop and swapped
 * in between callbacks, and the status says when the last one was tried.
 *
 * An Event waits until it can be written (a Kubernetes connection, and the
 * lead among replicas, as the other Events); a newer failure replaces a
 * waiting one, and a success takes a waiting failure back. Without POD_NAME and POD_NAMESPACE (outside a cluster) none
 * is written. */
#include "server/server_impl.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/utf8.h"
#include "policy/policy.h"

#define REASON_FAILED "PolicyLoadFailed"
#define REASON_LOADED "PolicyLoaded"

static void tell(struct server_policy_events *pe, const char *reason, const char *type, const char *note,
                 double now)
{
  snprintf(pe->reason, sizeof(pe->reason), "%s", reason);
  snprintf(pe->type, sizeof(pe->type), "%s", type);
  snprintf(pe->note, sizeof(pe->note), "%.*s", (int)pt_utf8_prefix(note, sizeof(pe->note) - 1), note);
  pe->at = now;
  pe->pending = true;
}

static void failed(struct server_policy_events *pe, const struct pt_policy_status *st, bool startup, double now)
{
  char note[1100];
  snprintf(note, sizeof(note), "policy failed to load %s, %s: %.1000s", startup ? "at startup" : "on a reload",
           startup ? "running the built-in defaults" : "the previous policy keeps running", st->error);
  /* One line: the first errors, separated as in the log's message. */
  for (char *c = note; *c; c++)
    if (*c == '\n')
      *c = ';';
  tell(pe, REASON_FAILED, "Warning", note, now);
  pe->failing = true;
}

void pt_server_policy_events(struct pt_server *srv, double now)
{
  struct server_policy_events *pe = &srv->policy_events;
  struct pt_policy_status st;
  pt_policy_status(srv->policy, &st);
  if (!pe->started) {
    pe->started = true;
    pe->seen_reload_at = st.last_reload_at;
    if (st.last_reload == 0)
      failed(pe, &st, st.defaults_only, now);
  } else if (st.last_reload_at != pe->seen_reload_at) {
    pe->seen_reload_at = st.last_reload_at;
    if (st.last_reload == 0) {
      failed(pe, &st, false, now);
    } else if (st.last_reload == 1 && pe->failing) {
      char note[256];
      snprintf(note, sizeof(note), "policy loaded: %zu scripts", st.n_scripts);
      /* A failure nobody was told about (no connection or lead yet) needs
       * no recovery either. */
      if (pe->pending)
        pe->pending = false;
      else
        tell(pe, REASON_LOADED, "Normal", note, now);
      pe->failing = false;
    }
  }
  const char *ns = srv->cfg.pod_namespace, *name = srv->cfg.pod_name;
  if (!pe->pending || !srv->kube || !srv->kube_events || !srv->leader || !ns || !*ns || !name || !*name)
    return;
  pe->pending = false;
  const char *uid = srv->cfg.pod_uid && *srv->cfg.pod_uid ? srv->cfg.pod_uid : NULL;
  json_t *regarding = json_pack("[{s:s,s:s,s:s?}]", "namespace", ns, "name", name, "uid", uid);
  PT_LOG_DEBUG("policy load Event", "{s:s,s:s}", "reason", pe->reason, "note", pe->note);
  pt_kube_events_emit(srv->kube_events, pe->reason, pe->type, pe->note, "LoadPolicy", regarding, pe->at);
  json_decref(regarding);
}
