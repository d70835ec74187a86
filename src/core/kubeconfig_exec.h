/* Exec credential plugins of kubeconfig users (`users[].user.exec`), as
 * client-go runs them: the command with its args and env, KUBERNETES_EXEC_INFO
 * describing the request, stdout an ExecCredential
 * (client.authentication.k8s.io/v1 or v1beta1) whose status.token is the
 * bearer token. The token is kept until status.expirationTimestamp (without
 * one, for the life of the process) and, with a cache directory, in a 0600
 * file there so that the next run of a short-lived client does not run the
 * plugin again.
 *
 * Used by kubeconfig.c; runs a program and waits for it: call it at startup
 * or off the loop. */
#ifndef PT_CORE_KUBECONFIG_EXEC_H
#define PT_CORE_KUBECONFIG_EXEC_H

#include <stdbool.h>
#include <stddef.h>

struct pt_kube_exec;

struct pt_kube_exec_config {
  const char *api_version;      /* client.authentication.k8s.io/v1 or v1beta1 */
  const char *command;          /* as written; resolved against dir when it contains a '/' */
  const char *dir;              /* the directory of the kubeconfig that defined the user */
  const char *const *args;      /* NULL-terminated, may be NULL */
  const char *const *env;       /* NULL-terminated "NAME=VALUE" pairs, may be NULL */
  const char *interactive_mode; /* Never, IfAvailable, Always; NULL = IfAvailable (v1beta1) */
  const char *install_hint;     /* shown when the command cannot be run */
  bool provide_cluster_info;    /* put the cluster in KUBERNETES_EXEC_INFO */
  const char *server;           /* the cluster, for provideClusterInfo and the cache key */
  const char *ca_file;
  bool insecure_skip_tls_verify;
  const char *cache_dir;        /* NULL = in memory only */
};

/* Checks the configuration (apiVersion, command, interactiveMode) and copies
 * it. Returns NULL with the reason in err. */
struct pt_kube_exec *pt_kube_exec_create(const struct pt_kube_exec_config *cfg, char *err, size_t errlen);
void pt_kube_exec_destroy(struct pt_kube_exec *x);

/* The token: the cached one while it has not expired (refresh = false), else
 * the plugin's new one. Returns 0 with a new string in *out, or a negative
 * errno with the reason in err. */
int pt_kube_exec_token(struct pt_kube_exec *x, bool refresh, char **out, char *err, size_t errlen);
unsigned pt_kube_exec_runs(const struct pt_kube_exec *x);

#endif
