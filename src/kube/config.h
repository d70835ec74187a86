/* Which Kubernetes API server pulltrace-server watches, and as whom: the
 * order of its configuration sources. The sources themselves are read by
 * core/kubeconfig.h.
 *
 * Precedence: PULLTRACE_KUBECONFIG, then the in-cluster environment
 * (KUBERNETES_SERVICE_HOST/_PORT with the files in PULLTRACE_KUBE_SA_DIR,
 * default /var/run/secrets/kubernetes.io/serviceaccount), then KUBECONFIG
 * (its first path). None of them: Kubernetes is off. */
#ifndef PT_KUBE_CONFIG_H
#define PT_KUBE_CONFIG_H

#include <stddef.h>

#include "core/kubeconfig.h"

/* The environment the configuration comes from (NULL or "" = unset), as the
 * server's configuration table (pt_server_config_vars) read it. */
struct pt_kube_env {
  const char *pulltrace_kubeconfig; /* PULLTRACE_KUBECONFIG */
  const char *kubeconfig;           /* KUBECONFIG (colon-separated; the first file is used) */
  const char *context;              /* PULLTRACE_KUBE_CONTEXT; empty = current-context */
  const char *sa_dir;               /* PULLTRACE_KUBE_SA_DIR */
  const char *service_host;         /* KUBERNETES_SERVICE_HOST */
  const char *service_port;         /* KUBERNETES_SERVICE_PORT */
};

/* Returns 0 with cfg filled, -ENOENT when nothing configures Kubernetes, or
 * -EINVAL / another negative errno with "VARIABLE or file: reason" in err.
 * A kubeconfig asking for insecure-skip-tls-verify is refused. */
int pt_kube_config_from_env(const struct pt_kube_env *env, struct pt_kubeconfig *cfg, char *err,
                            size_t errlen);

#endif
