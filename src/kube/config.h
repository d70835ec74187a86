/* Where the Kubernetes API is and how to authenticate to it: in-cluster
 * (service-account token and CA) or a kubeconfig file (development).
 *
 * Precedence: PULLTRACE_KUBECONFIG, then the in-cluster environment
 * (KUBERNETES_SERVICE_HOST/_PORT with the files in PULLTRACE_KUBE_SA_DIR,
 * default /var/run/secrets/kubernetes.io/serviceaccount), then KUBECONFIG
 * (its first path). None of them: Kubernetes is off. */
#ifndef PT_KUBE_CONFIG_H
#define PT_KUBE_CONFIG_H

#include <stddef.h>

#define PT_KUBE_SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"

struct pt_kube_config {
  char *server;      /* "https://host:port" without a trailing slash */
  char *ca_file;     /* PEM bundle, NULL = system store */
  char *token;       /* static bearer token (kubeconfig "token") */
  char *token_file;  /* bearer token re-read periodically (in-cluster, "tokenFile") */
  char *client_cert; /* PEM files for client-certificate users */
  char *client_key;
  char *namespace;   /* the service account's or the context's namespace, informational */
  char *source;      /* "in-cluster" or "kubeconfig <path> (context <name>)" */
  char *tmpdir;      /* private directory of files decoded from *-data members */
};

/* The environment the configuration comes from (NULL or "" = unset). */
struct pt_kube_env {
  const char *pulltrace_kubeconfig; /* PULLTRACE_KUBECONFIG */
  const char *kubeconfig;           /* KUBECONFIG (colon-separated; the first file is used) */
  const char *context;              /* PULLTRACE_KUBE_CONTEXT; empty = current-context */
  const char *sa_dir;               /* PULLTRACE_KUBE_SA_DIR */
  const char *service_host;         /* KUBERNETES_SERVICE_HOST */
  const char *service_port;         /* KUBERNETES_SERVICE_PORT */
};

/* Fills env from getenv(). */
void pt_kube_env_get(struct pt_kube_env *env);

/* Returns 0 with cfg filled, -ENOENT when nothing configures Kubernetes, or
 * -EINVAL / another negative errno with "VARIABLE or file: reason" in err. */
int pt_kube_config_from_env(const struct pt_kube_env *env, struct pt_kube_config *cfg, char *err,
                            size_t errlen);
/* In-cluster configuration from host, port and the service-account directory. */
int pt_kube_config_in_cluster(struct pt_kube_config *cfg, const char *host, const char *port,
                              const char *sa_dir, char *err, size_t errlen);
/* A kubeconfig file (YAML, parsed with libyaml). context NULL or "" = its
 * current-context. Supports token, tokenFile and client-certificate users,
 * file paths (relative to the file) and inline *-data members. */
int pt_kube_config_load_kubeconfig(struct pt_kube_config *cfg, const char *path, const char *context,
                                   char *err, size_t errlen);
/* Frees the members and removes tmpdir. */
void pt_kube_config_clear(struct pt_kube_config *cfg);

/* The bearer token to send now: the static token, or the token file's
 * current content (trimmed). Returns a new string (NULL when the user has no
 * token) in *out; 0 or a negative errno when the file cannot be read. */
int pt_kube_config_token(const struct pt_kube_config *cfg, char **out);

/* Standard base64 decoding (padding optional, whitespace skipped). Returns the
 * decoded length or -EINVAL. out needs strlen(in) * 3 / 4 + 3 bytes. */
long pt_kube_base64_decode(const char *in, unsigned char *out);

#endif
