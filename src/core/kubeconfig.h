/* Where a Kubernetes API server is and how to authenticate to it, read from a
 * kubeconfig file (YAML, parsed with libyaml) or from the in-cluster
 * service-account files. Shared by pulltrace-server's watcher and the kubectl
 * plugin; which source applies is the caller's decision (the server's order is
 * in kube/config.h).
 *
 * Everything here reads files: call it at startup or off the loop. */
#ifndef PT_CORE_KUBECONFIG_H
#define PT_CORE_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define PT_KUBE_SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"

struct pt_kube_exec; /* an exec credential plugin and its cached token (kubeconfig_exec.c) */

struct pt_kubeconfig {
  char *server;      /* "https://host:port" without a trailing slash */
  char *ca_file;     /* PEM bundle, NULL = system store */
  char *token;       /* static bearer token (kubeconfig "token") */
  char *token_file;  /* bearer token re-read periodically (in-cluster, "tokenFile") */
  char *client_cert; /* PEM files for client-certificate users */
  char *client_key;
  char *namespace;   /* the service account's or the context's namespace, informational */
  char *source;      /* "in-cluster" or "kubeconfig <path> (context <name>)" */
  char *tmpdir;      /* private directory of files decoded from *-data members */
  bool insecure_skip_tls_verify; /* the cluster asks for it; each caller decides whether to honour it */
  struct pt_kube_exec *exec;     /* the user's exec credential plugin, or NULL */
};

/* What pt_kubeconfig_open() reads. */
struct pt_kubeconfig_options {
  const char *const *files; /* kubeconfig files, merged as kubectl merges $KUBECONFIG: for
                               every cluster, user and context name (and current-context)
                               the first file that defines it wins */
  size_t nfiles;
  bool skip_missing;        /* ignore files that do not exist (a $KUBECONFIG list); at least
                               one must exist */
  const char *context;      /* NULL or "" = current-context */
  bool allow_exec;          /* run exec credential plugins; refused (as by the server) when false */
  const char *cache_dir;    /* where exec tokens that carry an expirationTimestamp are kept
                               between runs (created 0700), NULL = in memory only */
};

/* In-cluster configuration from host, port ("" = 443) and the service-account
 * directory (NULL or "" = PT_KUBE_SA_DIR_DEFAULT). Checks that the CA and a
 * non-empty token are readable. Returns 0, or -EINVAL / another negative errno
 * with "VARIABLE or file: reason" in err. */
int pt_kubeconfig_in_cluster(struct pt_kubeconfig *cfg, const char *host, const char *port, const char *sa_dir,
                             char *err, size_t errlen);
/* A kubeconfig file. context NULL or "" = its current-context. Supports token,
 * tokenFile and client-certificate users, file paths (relative to the file)
 * and inline *-data members (written to a private tmpdir). exec and
 * auth-provider users are refused. Returns 0, -ESRCH when no context is given
 * and the file has no current-context, or -EINVAL / another negative errno,
 * always with "path: reason" in err. */
int pt_kubeconfig_load(struct pt_kubeconfig *cfg, const char *path, const char *context, char *err,
                       size_t errlen);
/* The general form of pt_kubeconfig_load(): several files, exec plugins.
 * Same return values; err names the file a problem is in. */
int pt_kubeconfig_open(struct pt_kubeconfig *cfg, const struct pt_kubeconfig_options *opt, char *err,
                       size_t errlen);
/* Splits a $KUBECONFIG list (':'-separated, empty elements dropped) into a
 * NULL-terminated array of new strings in *out; free with pt_kubeconfig_free_list(). */
int pt_kubeconfig_split_list(const char *list, char ***out, size_t *n);
void pt_kubeconfig_free_list(char **list);
/* Frees the members and removes tmpdir. Accepts a cleared struct. */
void pt_kubeconfig_clear(struct pt_kubeconfig *cfg);

/* The bearer token to send now: the exec plugin's (cached until its
 * expirationTimestamp), the token file's current content (trimmed), else the
 * static token. Returns a new string (NULL when the user has no token) in
 * *out; 0 or a negative errno when the file cannot be read or the plugin
 * fails. Reads a file or runs a program: the server calls it on the thread
 * pool. */
int pt_kubeconfig_token(const struct pt_kubeconfig *cfg, char **out);
/* The same with the reason of a failure in err; refresh = true forgets a
 * cached exec token first (after the API server answered 401 to it). */
int pt_kubeconfig_credential(const struct pt_kubeconfig *cfg, bool refresh, char **out, char *err,
                             size_t errlen);
/* How many times the exec plugin ran in this process (for messages and tests). */
unsigned pt_kubeconfig_exec_runs(const struct pt_kubeconfig *cfg);

/* Standard and URL-safe base64 decoding (padding optional, whitespace
 * skipped). Returns the decoded length or -EINVAL. out needs
 * strlen(in) * 3 / 4 + 3 bytes. */
long pt_kubeconfig_base64_decode(const char *in, unsigned char *out);

#endif
