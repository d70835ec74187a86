/* Connects a Kubernetes watcher (src/kube) to this server: what it learns goes
 * into the store, and its sync state becomes the "kubernetes" check of
 * /readyz. The watcher only sees these callbacks, never the server. */
#include "kube/watcher.h"
#include "server/server.h"
#include "server/store.h"

static void pod_upsert(void *ud, const json_t *pod)
{
  pt_store_pod_upsert(pt_server_store(ud), pod);
}

static void pod_delete(void *ud, const char *ns, const char *name)
{
  pt_store_pod_delete(pt_server_store(ud), ns, name);
}

static void kube_event(void *ud, const json_t *event, double now)
{
  pt_store_kube_event(pt_server_store(ud), event, now);
}

static void ready(void *ud, bool ok, const char *detail)
{
  pt_server_set_ready(ud, "kubernetes", ok, detail);
}

void pt_server_kube_sink(struct pt_server *srv, struct pt_kube_sink *out)
{
  *out = (struct pt_kube_sink){
      .ud = srv,
      .pod_upsert = pod_upsert,
      .pod_delete = pod_delete,
      .kube_event = kube_event,
      .ready = ready,
  };
}
