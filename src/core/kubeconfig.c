#include "core/kubeconfig.h"
#include "core/kubeconfig_exec.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/file.h"

static char *xstrdup(const char *s)
{
  return s ? strdup(s) : NULL;
}

static bool set(const char *s)
{
  return s && *s;
}

void pt_kubeconfig_clear(struct pt_kubeconfig *c)
{
  if (!c)
    return;
  free(c->server);
  free(c->ca_file);
  free(c->token);
  free(c->token_file);
  free(c->client_cert);
  free(c->client_key);
  free(c->namespace);
  free(c->source);
  pt_kube_exec_destroy(c->exec);
  if (c->tmpdir) {
    /* Only files this module wrote live there. */
    static const char *const names[] = {"ca.crt", "client.crt", "client.key"};
    char p[4200];
    for (size_t i = 0; i < 3; i++) {
      snprintf(p, sizeof(p), "%s/%s", c->tmpdir, names[i]);
      unlink(p);
    }
    rmdir(c->tmpdir);
    free(c->tmpdir);
  }
  memset(c, 0, sizeof(*c));
}

int pt_kubeconfig_credential(const struct pt_kubeconfig *c, bool refresh, char **out, char *err,
                             size_t errlen)
{
  *out = NULL;
  if (c->exec)
    return pt_kube_exec_token(c->exec, refresh, out, err, errlen);
  int r = pt_kubeconfig_token(c, out);
  if (r)
    snprintf(err, errlen, "cannot read the token file %s: %s", c->token_file, strerror(-r));
  return r;
}

unsigned pt_kubeconfig_exec_runs(const struct pt_kubeconfig *c)
{
  return pt_kube_exec_runs(c->exec);
}

int pt_kubeconfig_token(const struct pt_kubeconfig *c, char **out)
{
  *out = NULL;
  if (c->exec) {
    char err[512];
    return pt_kube_exec_token(c->exec, false, out, err, sizeof(err));
  }
  if (c->token_file) {
    return pt_file_read_trimmed(c->token_file, 64 * 1024, out);
  }
  if (c->token) {
    *out = strdup(c->token);
    return *out ? 0 : -ENOMEM;
  }
  return 0;
}

int pt_kubeconfig_in_cluster(struct pt_kubeconfig *c, const char *host, const char *port,
                              const char *sa_dir, char *err, size_t errlen)
{
  memset(c, 0, sizeof(*c));
  if (!set(sa_dir))
    sa_dir = PT_KUBE_SA_DIR_DEFAULT;
  if (!set(host)) {
    snprintf(err, errlen, "KUBERNETES_SERVICE_HOST is not set");
    return -EINVAL;
  }
  if (!set(port))
    port = "443";
  for (const char *p = port; *p; p++) {
    if (!isdigit((unsigned char)*p)) {
      snprintf(err, errlen, "KUBERNETES_SERVICE_PORT: invalid port \"%s\"", port);
      return -EINVAL;
    }
  }
  char buf[4200];
  bool v6 = strchr(host, ':') != NULL;
  snprintf(buf, sizeof(buf), "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
  c->server = strdup(buf);
  snprintf(buf, sizeof(buf), "%s/token", sa_dir);
  c->token_file = strdup(buf);
  snprintf(buf, sizeof(buf), "%s/ca.crt", sa_dir);
  c->ca_file = strdup(buf);
  c->source = strdup("in-cluster");
  if (!c->server || !c->token_file || !c->ca_file || !c->source) {
    pt_kubeconfig_clear(c);
    return -ENOMEM;
  }
  if (access(c->ca_file, R_OK) != 0) {
    snprintf(err, errlen, "PULLTRACE_KUBE_SA_DIR: cannot read %s: %s", c->ca_file, strerror(errno));
    pt_kubeconfig_clear(c);
    return -EINVAL;
  }
  char *tok = NULL;
  int r = pt_kubeconfig_token(c, &tok);
  if (r || !tok || !*tok) {
    snprintf(err, errlen, "PULLTRACE_KUBE_SA_DIR: cannot read the token %s: %s", c->token_file,
             r == -ENODATA ? "empty file" : strerror(-r));
    free(tok);
    pt_kubeconfig_clear(c);
    return -EINVAL;
  }
  free(tok);
  char *ns;
  snprintf(buf, sizeof(buf), "%s/namespace", sa_dir);
  if (pt_file_read_trimmed(buf, 4096, &ns) == 0)
    c->namespace = ns;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* kubeconfig                                                                 */

long pt_kubeconfig_base64_decode(const char *in, unsigned char *out)
{
  unsigned acc = 0;
  int bits = 0;
  long n = 0;
  bool pad = false;
  for (const char *p = in; *p; p++) {
    int v;
    unsigned char ch = (unsigned char)*p;
    if (isspace(ch))
      continue;
    if (ch == '=') {
      pad = true;
      continue;
    }
    if (pad)
      return -EINVAL; /* data after padding */
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+' || ch == '-') v = 62;
    else if (ch == '/' || ch == '_') v = 63;
    else return -EINVAL;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return bits >= 6 ? -EINVAL : n;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
  if (!map || map->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
      return yaml_document_get_node(doc, p->value);
  }
  return NULL;
}

static const char *scalar(yaml_node_t *n)
{
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The `inner` mapping of the entry named `name` in the sequence `list`
 * (clusters[].cluster, users[].user, contexts[].context). */
static yaml_node_t *named(yaml_document_t *doc, yaml_node_t *root, const char *list, const char *inner,
                          const char *name)
{
  yaml_node_t *seq = map_get(doc, root, list);
  if (!seq || seq->type != YAML_SEQUENCE_NODE || !name)
    return NULL;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *e = yaml_document_get_node(doc, *it);
    const char *n = scalar(map_get(doc, e, "name"));
    if (n && strcmp(n, name) == 0) {
      yaml_node_t *v = map_get(doc, e, inner);
      /* An entry without its mapping ("user: {}" written as "user:") is empty. */
      return v ? v : e;
    }
  }
  return NULL;
}

/* A path member relative to the kubeconfig's directory. */
static char *resolve(const char *dir, const char *p)
{
  if (!p || !*p)
    return NULL;
  if (p[0] == '/')
    return strdup(p);
  size_t n = strlen(dir) + strlen(p) + 2;
  char *out = malloc(n);
  if (out)
    snprintf(out, n, "%s/%s", dir, p);
  return out;
}

/* Writes base64 data to tmpdir/name (0600) and returns its path. */
static int write_data(struct pt_kubeconfig *c, const char *name, const char *b64, char **out, char *err,
                      size_t errlen, const char *member)
{
  if (!c->tmpdir) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof(tmpl), "%s/pulltrace-kube-XXXXXX", set(base) ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
      snprintf(err, errlen, "cannot create a directory for %s: %s", member, strerror(errno));
      return -errno;
    }
    c->tmpdir = strdup(tmpl);
    if (!c->tmpdir)
      return -ENOMEM;
  }
  unsigned char *data = malloc(strlen(b64) * 3 / 4 + 3);
  if (!data)
    return -ENOMEM;
  long n = pt_kubeconfig_base64_decode(b64, data);
  if (n < 0) {
    free(data);
    snprintf(err, errlen, "%s: invalid base64", member);
    return -EINVAL;
  }
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", c->tmpdir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    free(data);
    snprintf(err, errlen, "cannot write %.400s: %s", path, strerror(e));
    return -e;
  }
  ssize_t w = write(fd, data, (size_t)n);
  int e = errno;
  close(fd);
  free(data);
  if (w != n) {
    snprintf(err, errlen, "cannot write %.400s: %s", path, strerror(w < 0 ? e : EIO));
    return -EIO;
  }
  *out = strdup(path);
  return *out ? 0 : -ENOMEM;
}

/* A file member or its -data variant (the latter wins, as in client-go). */
static int file_member(struct pt_kubeconfig *c, yaml_document_t *doc, yaml_node_t *m, const char *dir,
                       const char *key, const char *tmpname, char **out, char *err, size_t errlen)
{
  char dkey[64];
  snprintf(dkey, sizeof(dkey), "%s-data", key);
  const char *data = scalar(map_get(doc, m, dkey));
  if (set(data))
    return write_data(c, tmpname, data, out, err, errlen, dkey);
  const char *p = scalar(map_get(doc, m, key));
  if (set(p)) {
    *out = resolve(dir, p);
    if (!*out)
      return -ENOMEM;
    if (access(*out, R_OK) != 0) {
      snprintf(err, errlen, "%s: cannot read %s: %s", key, *out, strerror(errno));
      return -EINVAL;
    }
  }
  return 0;
}

/* One parsed kubeconfig file of a merged set. */
struct kfile {
  const char *path;
  char dir[4096];
  yaml_document_t doc;
  yaml_node_t *root;
};

/* The `inner` mapping of the first entry named `name` in `list` over the files
 * in order (kubectl's merge: the first definition wins); *which = its file. */
static yaml_node_t *find(struct kfile *f, size_t n, const char *list, const char *inner, const char *name,
                         struct kfile **which)
{
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *v = named(&f[i].doc, f[i].root, list, inner, name);
    if (v) {
      *which = &f[i];
      return v;
    }
  }
  return NULL;
}

/* A list of scalars (exec args) or of {name, value} mappings (exec env) as a
 * NULL-terminated array of borrowed or new strings. */
static char **strings(yaml_document_t *doc, yaml_node_t *seq, bool pairs)
{
  size_t n = seq && seq->type == YAML_SEQUENCE_NODE
                 ? (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start) : 0;
  char **out = calloc(n + 1, sizeof(*out));
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *e = yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
    if (!pairs) {
      const char *v = scalar(e);
      if (v && !(out[k++] = strdup(v)))
        goto fail;
      continue;
    }
    const char *name = scalar(map_get(doc, e, "name")), *value = scalar(map_get(doc, e, "value"));
    if (!set(name))
      continue;
    size_t len = strlen(name) + (value ? strlen(value) : 0) + 2;
    if (!(out[k] = malloc(len)))
      goto fail;
    snprintf(out[k++], len, "%s=%s", name, value ? value : "");
  }
  return out;
fail:
  pt_kubeconfig_free_list(out);
  return NULL;
}

static int load_exec(struct pt_kubeconfig *c, const struct pt_kubeconfig_options *o, struct kfile *uf,
                     yaml_node_t *exec, char *err, size_t errlen)
{
  yaml_document_t *doc = &uf->doc;
  char **args = strings(doc, map_get(doc, exec, "args"), false);
  char **env = strings(doc, map_get(doc, exec, "env"), true);
  const char *pci = scalar(map_get(doc, exec, "provideClusterInfo"));
  struct pt_kube_exec_config x = {
    .api_version = scalar(map_get(doc, exec, "apiVersion")),
    .command = scalar(map_get(doc, exec, "command")),
    .dir = uf->dir,
    .args = (const char *const *)args,
    .env = (const char *const *)env,
    .interactive_mode = scalar(map_get(doc, exec, "interactiveMode")),
    .install_hint = scalar(map_get(doc, exec, "installHint")),
    .provide_cluster_info = pci && strcmp(pci, "true") == 0,
    .server = c->server,
    .ca_file = c->ca_file,
    .insecure_skip_tls_verify = c->insecure_skip_tls_verify,
    .cache_dir = o->cache_dir,
  };
  int r = 0;
  if (!args || !env)
    r = -ENOMEM;
  else if (!(c->exec = pt_kube_exec_create(&x, err, errlen)))
    r = -EINVAL;
  pt_kubeconfig_free_list(args);
  pt_kubeconfig_free_list(env);
  return r;
}

int pt_kubeconfig_open(struct pt_kubeconfig *c, const struct pt_kubeconfig_options *o, char *err,
                       size_t errlen)
{
  memset(c, 0, sizeof(*c));
  if (o->nfiles == 0) {
    snprintf(err, errlen, "no kubeconfig file given");
    return -EINVAL;
  }
  struct kfile *files = calloc(o->nfiles, sizeof(*files));
  if (!files)
    return -ENOMEM;
  size_t n = 0;
  int r = -EINVAL;
  char paths[1024] = "";
  for (size_t i = 0; i < o->nfiles; i++) {
    const char *path = o->files[i];
    char *text = NULL;
    int rr = pt_file_read(path, 4u << 20, &text, NULL);
    if (rr == -ENOENT && o->skip_missing)
      continue;
    if (rr) {
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rr));
      r = rr == -ENOENT ? -EINVAL : rr;
      goto out;
    }
    struct kfile *f = &files[n];
    f->path = path;
    snprintf(f->dir, sizeof(f->dir), "%s", path);
    char *slash = strrchr(f->dir, '/');
    if (slash)
      *slash = '\0';
    else
      snprintf(f->dir, sizeof(f->dir), ".");
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
      free(text);
      r = -ENOMEM;
      goto out;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    bool ok = yaml_parser_load(&parser, &f->doc);
    if (!ok)
      snprintf(err, errlen, "%s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
               parser.problem ? parser.problem : "unknown");
    yaml_parser_delete(&parser);
    free(text);
    if (!ok)
      goto out;
    n++;
    f->root = yaml_document_get_root_node(&f->doc);
    /* An empty file is an empty config (kubectl accepts it). */
    if (f->root && f->root->type != YAML_MAPPING_NODE) {
      snprintf(err, errlen, "%s: not a kubeconfig (expected a mapping)", path);
      goto out;
    }
    size_t used = strlen(paths);
    snprintf(paths + used, sizeof(paths) - used, "%s%s", used ? ":" : "", path);
  }
  if (n == 0) {
    snprintf(err, errlen, "none of the kubeconfig files exists (%s%s)", o->files[0], o->nfiles > 1 ? ", ..." : "");
    goto out;
  }
  const char *ctx_name = set(o->context) ? o->context : NULL;
  for (size_t i = 0; !ctx_name && i < n; i++) {
    const char *cc = scalar(map_get(&files[i].doc, files[i].root, "current-context"));
    if (set(cc))
      ctx_name = cc;
  }
  if (!ctx_name) {
    snprintf(err, errlen, "%s: no current-context", paths);
    r = -ESRCH;
    goto out;
  }
  struct kfile *cf, *kf, *uf;
  yaml_node_t *ctx = find(files, n, "contexts", "context", ctx_name, &cf);
  if (!ctx) {
    snprintf(err, errlen, "%s: context \"%s\" not found", paths, ctx_name);
    goto out;
  }
  const char *cluster_name = scalar(map_get(&cf->doc, ctx, "cluster"));
  const char *user_name = scalar(map_get(&cf->doc, ctx, "user"));
  yaml_node_t *cluster = find(files, n, "clusters", "cluster", cluster_name, &kf);
  if (!cluster) {
    snprintf(err, errlen, "%s: cluster \"%s\" of context \"%s\" not found", paths,
             cluster_name ? cluster_name : "", ctx_name);
    goto out;
  }
  const char *server = scalar(map_get(&kf->doc, cluster, "server"));
  size_t scheme = !set(server) ? 0 : strncmp(server, "https://", 8) == 0 ? 8 : strncmp(server, "http://", 7) == 0 ? 7 : 0;
  /* A host after the scheme (its trailing slashes are dropped below). */
  if (!scheme || server[scheme + strspn(server + scheme, "/")] == '\0') {
    snprintf(err, errlen, "%s: cluster \"%s\" has no http(s) server URL", kf->path, cluster_name);
    goto out;
  }
  const char *insecure = scalar(map_get(&kf->doc, cluster, "insecure-skip-tls-verify"));
  c->insecure_skip_tls_verify = insecure && strcmp(insecure, "true") == 0;
  c->server = strdup(server);
  if (!c->server) {
    r = -ENOMEM;
    goto out;
  }
  size_t sl = strlen(c->server);
  while (sl > 0 && c->server[sl - 1] == '/')
    c->server[--sl] = '\0';
  char ebuf[512] = "";
  if ((r = file_member(c, &kf->doc, cluster, kf->dir, "certificate-authority", "ca.crt", &c->ca_file, ebuf,
                       sizeof(ebuf)))) {
    snprintf(err, errlen, "%s: cluster \"%s\": %s", kf->path, cluster_name, ebuf);
    goto out;
  }
  r = -EINVAL;
  yaml_node_t *user = user_name ? find(files, n, "users", "user", user_name, &uf) : NULL;
  if (user_name && !user) {
    snprintf(err, errlen, "%s: user \"%s\" of context \"%s\" not found", paths, user_name, ctx_name);
    goto out;
  }
  if (user) {
    yaml_node_t *exec = map_get(&uf->doc, user, "exec");
    if ((exec && !o->allow_exec) || map_get(&uf->doc, user, "auth-provider")) {
      snprintf(err, errlen, "%s: user \"%s\": %s credentials are not supported; "
               "use a token, tokenFile or client certificate", uf->path, user_name,
               exec && !o->allow_exec ? "exec and auth-provider" : "auth-provider (removed from kubectl; use its exec plugin)");
      goto out;
    }
    const char *tok = scalar(map_get(&uf->doc, user, "token"));
    const char *tokfile = scalar(map_get(&uf->doc, user, "tokenFile"));
    if (set(tok))
      c->token = strdup(tok);
    else if (set(tokfile))
      c->token_file = resolve(uf->dir, tokfile);
    if ((r = file_member(c, &uf->doc, user, uf->dir, "client-certificate", "client.crt", &c->client_cert, ebuf,
                         sizeof(ebuf))) ||
        (r = file_member(c, &uf->doc, user, uf->dir, "client-key", "client.key", &c->client_key, ebuf,
                         sizeof(ebuf)))) {
      snprintf(err, errlen, "%s: user \"%s\": %s", uf->path, user_name, ebuf);
      goto out;
    }
    r = -EINVAL;
    if (!c->client_cert != !c->client_key) {
      snprintf(err, errlen, "%s: user \"%s\": a client certificate needs its key (and the other way round)",
               uf->path, user_name);
      goto out;
    }
    if (exec && (r = load_exec(c, o, uf, exec, ebuf, sizeof(ebuf)))) {
      snprintf(err, errlen, "%s: user \"%s\": %s", uf->path, user_name, ebuf);
      goto out;
    }
  }
  const char *ns = scalar(map_get(&cf->doc, ctx, "namespace"));
  c->namespace = xstrdup(set(ns) ? ns : NULL);
  char src[1200];
  snprintf(src, sizeof(src), "kubeconfig %s (context %s)", paths, ctx_name);
  c->source = strdup(src);
  r = c->source ? 0 : -ENOMEM;
out:
  for (size_t i = 0; i < n; i++)
    yaml_document_delete(&files[i].doc);
  free(files);
  if (r)
    pt_kubeconfig_clear(c);
  return r;
}

int pt_kubeconfig_load(struct pt_kubeconfig *c, const char *path, const char *context, char *err,
                       size_t errlen)
{
  const char *files[] = {path};
  struct pt_kubeconfig_options o = {.files = files, .nfiles = 1, .context = context};
  return pt_kubeconfig_open(c, &o, err, errlen);
}

int pt_kubeconfig_split_list(const char *list, char ***out, size_t *n)
{
  *n = 0;
  size_t cap = 1;
  for (const char *p = list; *p; p++)
    cap += *p == ':';
  char **v = calloc(cap + 1, sizeof(*v));
  if (!v)
    return -ENOMEM;
  const char *p = list;
  while (*p) {
    size_t len = strcspn(p, ":");
    if (len && !(v[(*n)++] = strndup(p, len))) {
      pt_kubeconfig_free_list(v);
      return -ENOMEM;
    }
    p += len;
    if (*p == ':')
      p++;
  }
  *out = v;
  return 0;
}

void pt_kubeconfig_free_list(char **list)
{
  for (size_t i = 0; list && list[i]; i++)
    free(list[i]);
  free(list);
}
