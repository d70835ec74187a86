#include "kube/config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool set(const char *s)
{
  return s && *s;
}

/* The server verifies the API server's certificate always: a kubeconfig that
 * turns that off is refused rather than silently weakened. */
static int load_file(const char *path, const char *context, struct pt_kubeconfig *c, char *err,
                     size_t errlen)
{
  int r = pt_kubeconfig_load(c, path, context, err, errlen);
  if (r == 0 && c->insecure_skip_tls_verify) {
    snprintf(err, errlen, "%s: insecure-skip-tls-verify is not supported; give the cluster's CA", path);
    pt_kubeconfig_clear(c);
    return -EINVAL;
  }
  if (r == -ESRCH) {
    snprintf(err, errlen, "%s: no current-context (set PULLTRACE_KUBE_CONTEXT)", path);
    return -EINVAL;
  }
  return r;
}

int pt_kube_config_from_env(const struct pt_kube_env *env, struct pt_kubeconfig *c, char *err,
                            size_t errlen)
{
  memset(c, 0, sizeof(*c));
  char ebuf[1024];
  int r;
  if (set(env->pulltrace_kubeconfig)) {
    if ((r = load_file(env->pulltrace_kubeconfig, env->context, c, ebuf, sizeof(ebuf))))
      snprintf(err, errlen, "PULLTRACE_KUBECONFIG: %s", ebuf);
    return r;
  }
  if (set(env->service_host))
    return pt_kubeconfig_in_cluster(c, env->service_host, env->service_port, env->sa_dir, err, errlen);
  if (set(env->kubeconfig)) {
    char first[4096];
    snprintf(first, sizeof(first), "%s", env->kubeconfig);
    first[strcspn(first, ":")] = '\0';
    if (!*first)
      return -ENOENT;
    if ((r = load_file(first, env->context, c, ebuf, sizeof(ebuf))))
      snprintf(err, errlen, "KUBECONFIG: %s", ebuf);
    return r;
  }
  return -ENOENT;
}
