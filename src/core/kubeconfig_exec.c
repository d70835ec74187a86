#include "core/kubeconfig_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/kubeconfig.h"

#define EXEC_V1 "client.authentication.k8s.io/v1"
#define EXEC_V1BETA1 "client.authentication.k8s.io/v1beta1"
/* A token this close to its expiry is renewed before use, so that a request
 * does not leave with a token that expires on its way. */
#define EXPIRY_MARGIN_S 10.0
#define MAX_OUTPUT (1u << 20)

struct pt_kube_exec {
  char *api_version, *command, *install_hint, *interactive_mode, *server, *ca_file, *cache_dir;
  char **args, **env;
  bool provide_cluster_info, insecure;
  uint64_t key;   /* identifies the plugin call in the cache */
  char *token;    /* cached */
  double expiry;  /* 0 = none: valid for the life of the process */
  unsigned runs;
};

static char **copy_list(const char *const *in)
{
  size_t n = 0;
  while (in && in[n])
    n++;
  char **out = calloc(n + 1, sizeof(*out));
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (!(out[i] = strdup(in[i]))) {
      pt_kubeconfig_free_list(out);
      return NULL;
    }
  }
  return out;
}

void pt_kube_exec_destroy(struct pt_kube_exec *x)
{
  if (!x)
    return;
  free(x->api_version);
  free(x->command);
  free(x->install_hint);
  free(x->interactive_mode);
  free(x->server);
  free(x->ca_file);
  free(x->cache_dir);
  pt_kubeconfig_free_list(x->args);
  pt_kubeconfig_free_list(x->env);
  free(x->token);
  free(x);
}

static char *dup_or_null(const char *s)
{
  return s ? strdup(s) : NULL;
}

struct pt_kube_exec *pt_kube_exec_create(const struct pt_kube_exec_config *c, char *err, size_t errlen)
{
  if (!c->api_version || (strcmp(c->api_version, EXEC_V1) != 0 && strcmp(c->api_version, EXEC_V1BETA1) != 0)) {
    snprintf(err, errlen, "exec: apiVersion \"%s\" is not supported (use %s or %s)",
             c->api_version ? c->api_version : "", EXEC_V1, EXEC_V1BETA1);
    return NULL;
  }
  if (!c->command || !*c->command) {
    snprintf(err, errlen, "exec: command is missing");
    return NULL;
  }
  const char *mode = c->interactive_mode;
  if (!mode || !*mode) {
    /* client-go: v1 must say it; v1beta1 defaults to IfAvailable. */
    if (strcmp(c->api_version, EXEC_V1) == 0) {
      snprintf(err, errlen, "exec: interactiveMode must be specified for %s", EXEC_V1);
      return NULL;
    }
    mode = "IfAvailable";
  }
  if (strcmp(mode, "Never") != 0 && strcmp(mode, "IfAvailable") != 0 && strcmp(mode, "Always") != 0) {
    snprintf(err, errlen, "exec: invalid interactiveMode \"%s\" (Never, IfAvailable or Always)", mode);
    return NULL;
  }
  struct pt_kube_exec *x = calloc(1, sizeof(*x));
  if (!x)
    goto nomem;
  if (strchr(c->command, '/') && c->command[0] != '/' && c->dir) {
    /* As in client-go: a relative path is relative to the kubeconfig that names it. */
    size_t n = strlen(c->dir) + strlen(c->command) + 2;
    if ((x->command = malloc(n)))
      snprintf(x->command, n, "%s/%s", c->dir, c->command);
  } else {
    x->command = strdup(c->command);
  }
  x->api_version = strdup(c->api_version);
  x->interactive_mode = strdup(mode);
  x->install_hint = dup_or_null(c->install_hint);
  x->server = dup_or_null(c->server);
  x->ca_file = dup_or_null(c->ca_file);
  x->cache_dir = dup_or_null(c->cache_dir);
  x->args = copy_list(c->args);
  x->env = copy_list(c->env);
  x->provide_cluster_info = c->provide_cluster_info;
  x->insecure = c->insecure_skip_tls_verify;
  if (!x->command || !x->api_version || !x->interactive_mode || !x->args || !x->env ||
      (c->install_hint && !x->install_hint) || (c->server && !x->server) ||
      (c->ca_file && !x->ca_file) || (c->cache_dir && !x->cache_dir))
    goto nomem;
  /* Everything that changes what the plugin returns goes into the key. */
  uint64_t h = PT_FNV1A_INIT;
  h = pt_fnv1a(h, x->api_version, strlen(x->api_version) + 1);
  h = pt_fnv1a(h, x->command, strlen(x->command) + 1);
  for (char **a = x->args; *a; a++)
    h = pt_fnv1a(h, *a, strlen(*a) + 1);
  h = pt_fnv1a(h, "\n", 1);
  for (char **e = x->env; *e; e++)
    h = pt_fnv1a(h, *e, strlen(*e) + 1);
  h = pt_fnv1a(h, "\n", 1);
  if (x->server)
    h = pt_fnv1a_str(h, x->server);
  x->key = h;
  return x;
nomem:
  pt_kube_exec_destroy(x);
  snprintf(err, errlen, "exec: out of memory");
  return NULL;
}

unsigned pt_kube_exec_runs(const struct pt_kube_exec *x)
{
  return x ? x->runs : 0;
}

static bool valid(const struct pt_kube_exec *x)
{
  return x->token && (x->expiry == 0 || x->expiry - EXPIRY_MARGIN_S > pt_clock_now());
}

static void cache_path(const struct pt_kube_exec *x, char *buf, size_t len)
{
  snprintf(buf, len, "%s/exec-%016" PRIx64 ".json", x->cache_dir, x->key);
}

/* A token left by an earlier run; ignored when unreadable, foreign or expired. */
static void cache_read(struct pt_kube_exec *x)
{
  if (!x->cache_dir)
    return;
  char path[4200];
  cache_path(x, path, sizeof(path));
  json_t *doc = json_load_file(path, 0, NULL);
  if (!doc)
    return;
  const char *tok = pt_json_str(doc, "token");
  const char *exp = pt_json_str(doc, "expirationTimestamp");
  const char *key = pt_json_str(doc, "key");
  char want[17];
  snprintf(want, sizeof(want), "%016" PRIx64, x->key);
  double t;
  if (tok && *tok && exp && key && strcmp(key, want) == 0 && pt_time_parse(exp, &t) == 0) {
    free(x->token);
    x->token = strdup(tok);
    x->expiry = t;
  }
  json_decref(doc);
}

/* Written to a temporary file and renamed, so that a concurrent run reads the
 * old or the new file, never half of one. Failures only cost a plugin run. */
static void cache_write(const struct pt_kube_exec *x, const char *exp_text)
{
  if (!x->cache_dir || x->expiry == 0)
    return;
  if (mkdir(x->cache_dir, 0700) != 0 && errno != EEXIST)
    return;
  char path[4200], tmp[4300];
  cache_path(x, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
  char key[17];
  snprintf(key, sizeof(key), "%016" PRIx64, x->key);
  json_t *doc = json_pack("{s:s,s:s,s:s,s:s?,s:s}", "key", key, "command", x->command, "server",
                          x->server, "token", x->token, "expirationTimestamp", exp_text);
  if (!doc)
    return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    int ok = json_dumpfd(doc, fd, JSON_COMPACT) == 0;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path) != 0)
      unlink(tmp);
  }
  json_decref(doc);
}

/* The file's bytes in standard base64 (certificate-authority-data), or NULL. */
static char *base64_file(const char *path)
{
  char *raw;
  size_t n;
  if (pt_file_read(path, 1u << 20, &raw, &n) != 0)
    return NULL;
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)raw, (int)n);
  free(raw);
  return out;
}

/* KUBERNETES_EXEC_INFO: what client-go tells the plugin about the request. */
static char *exec_info(const struct pt_kube_exec *x, bool interactive)
{
  json_t *spec = json_pack("{s:b}", "interactive", interactive);
  if (spec && x->provide_cluster_info) {
    json_t *cl = json_pack("{s:s?,s:b}", "server", x->server, "insecure-skip-tls-verify", x->insecure);
    char *ca = x->ca_file ? base64_file(x->ca_file) : NULL;
    if (cl && ca)
      json_object_set_new(cl, "certificate-authority-data", json_string(ca));
    free(ca);
    if (cl)
      json_object_set_new(spec, "cluster", cl);
  }
  json_t *doc = json_pack("{s:s,s:s,s:o}", "kind", "ExecCredential", "apiVersion", x->api_version, "spec", spec);
  char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  return s;
}

/* Runs the plugin; its stdout in *out, its stderr goes to ours (where the
 * user sees the plugin's prompts and errors, as with kubectl). */
static int run(struct pt_kube_exec *x, char **out, size_t *outlen, char *err, size_t errlen)
{
  bool tty = isatty(STDIN_FILENO);
  bool interactive = strcmp(x->interactive_mode, "Never") != 0 && tty;
  if (strcmp(x->interactive_mode, "Always") == 0 && !tty) {
    snprintf(err, errlen, "exec plugin %s: interactiveMode is Always but standard input is not a terminal",
             x->command);
    return -EINVAL;
  }
  char *info = exec_info(x, interactive);
  if (!info)
    return -ENOMEM;
  size_t nargs = 0;
  while (x->args[nargs])
    nargs++;
  char **argv = calloc(nargs + 2, sizeof(*argv));
  int p[2] = {-1, -1};
  if (!argv || pipe(p) != 0) {
    int e = argv ? errno : ENOMEM;
    free(argv);
    free(info);
    snprintf(err, errlen, "exec plugin %s: %s", x->command, strerror(e));
    return -e;
  }
  argv[0] = x->command;
  for (size_t i = 0; i < nargs; i++)
    argv[i + 1] = x->args[i];
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    close(p[0]);
    close(p[1]);
    if (!interactive) {
      int fd = open("/dev/null", O_RDONLY);
      if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        close(fd);
      }
    }
    for (char **e = x->env; *e; e++) {
      char *eq = strchr(*e, '=');
      if (eq) {
        *eq = '\0';
        setenv(*e, eq + 1, 1);
      }
    }
    setenv("KUBERNETES_EXEC_INFO", info, 1);
    execvp(argv[0], argv);
    _exit(127);
  }
  int fork_errno = errno;
  free(argv);
  free(info);
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    snprintf(err, errlen, "exec plugin %s: cannot start: %s", x->command, strerror(fork_errno));
    return -fork_errno;
  }
  x->runs++;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  bool big = false;
  for (;;) {
    if (buf && n == cap) {
      if (cap >= MAX_OUTPUT) {
        big = true;
        char sink[4096];
        if (read(p[0], sink, sizeof(sink)) > 0)
          continue;
        break;
      }
      char *b = realloc(buf, cap * 2 + 1);
      if (!b) {
        free(buf);
        buf = NULL;
      } else {
        buf = b;
        cap *= 2;
      }
    }
    char sink[4096];
    ssize_t r = buf ? read(p[0], buf + n, cap - n) : read(p[0], sink, sizeof(sink));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (buf)
      n += (size_t)r;
  }
  close(p[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!buf)
    return -ENOMEM;
  buf[n] = '\0';
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code != 0) {
    free(buf);
    if (code == 127)
      snprintf(err, errlen, "exec plugin: cannot run %s%s%s", x->command, x->install_hint ? "\n" : "",
               x->install_hint ? x->install_hint : "");
    else
      snprintf(err, errlen, "exec plugin %s: exit status %d", x->command, code);
    return -EIO;
  }
  if (big) {
    free(buf);
    snprintf(err, errlen, "exec plugin %s: output larger than %u bytes", x->command, MAX_OUTPUT);
    return -EFBIG;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

/* Reads the plugin's ExecCredential into the cache. */
static int take(struct pt_kube_exec *x, const char *text, size_t len, char *err, size_t errlen)
{
  json_error_t je;
  json_t *doc = json_loadb(text, len, 0, &je);
  int r = -EINVAL;
  if (!doc) {
    snprintf(err, errlen, "exec plugin %s: output is not JSON: %s", x->command, je.text);
    return r;
  }
  const char *kind = pt_json_str(doc, "kind"), *api = pt_json_str(doc, "apiVersion");
  json_t *st = json_object_get(doc, "status");
  const char *tok = pt_json_str(st, "token");
  const char *exp = pt_json_str(st, "expirationTimestamp");
  double t = 0;
  if (!kind || strcmp(kind, "ExecCredential") != 0) {
    snprintf(err, errlen, "exec plugin %s: output is not an ExecCredential", x->command);
  } else if (!api || strcmp(api, x->api_version) != 0) {
    snprintf(err, errlen, "exec plugin %s: apiVersion \"%s\" of its output differs from the configured %s",
             x->command, api ? api : "", x->api_version);
  } else if (!json_is_object(st)) {
    snprintf(err, errlen, "exec plugin %s: the ExecCredential has no status", x->command);
  } else if (!tok || !*tok) {
    snprintf(err, errlen, "exec plugin %s: the ExecCredential has no status.token%s", x->command,
             pt_json_str(st, "clientCertificateData") ? " (client certificates from plugins are not supported)"
                                                      : "");
  } else if (exp && pt_time_parse(exp, &t) != 0) {
    snprintf(err, errlen, "exec plugin %s: invalid status.expirationTimestamp \"%s\"", x->command, exp);
  } else {
    free(x->token);
    x->token = strdup(tok);
    x->expiry = t;
    r = x->token ? 0 : -ENOMEM;
    if (r == 0)
      cache_write(x, exp);
  }
  json_decref(doc);
  return r;
}

int pt_kube_exec_token(struct pt_kube_exec *x, bool refresh, char **out, char *err, size_t errlen)
{
  *out = NULL;
  if (refresh) {
    free(x->token);
    x->token = NULL;
    if (x->cache_dir) {
      char path[4200];
      cache_path(x, path, sizeof(path));
      unlink(path);
    }
  } else if (!valid(x)) {
    cache_read(x);
  }
  if (!valid(x)) {
    char *text = NULL;
    size_t len = 0;
    int r = run(x, &text, &len, err, errlen);
    if (r)
      return r;
    r = take(x, text, len, err, errlen);
    free(text);
    if (r)
      return r;
    if (!valid(x)) {
      snprintf(err, errlen, "exec plugin %s: the token it returned has already expired", x->command);
      return -EINVAL;
    }
  }
  *out = strdup(x->token);
  return *out ? 0 : -ENOMEM;
}
