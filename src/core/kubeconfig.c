#include "core/kubeconfig.h"

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

/* Reads a small file whole; NUL-terminated. */
static int read_file(const char *path, char **out, size_t max)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return -errno;
  char *buf = malloc(max + 1);
  if (!buf) {
    fclose(f);
    return -ENOMEM;
  }
  size_t n = fread(buf, 1, max + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > max) {
    free(buf);
    return bad ? -EIO : -EFBIG;
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

static char *trim(char *s)
{
  while (isspace((unsigned char)*s))
    s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
  return s;
}

int pt_kubeconfig_token(const struct pt_kubeconfig *c, char **out)
{
  *out = NULL;
  if (c->token_file) {
    char *buf;
    int r = read_file(c->token_file, &buf, 64 * 1024);
    if (r)
      return r;
    char *t = trim(buf);
    *out = strdup(t);
    free(buf);
    return *out ? 0 : -ENOMEM;
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
             r ? strerror(-r) : "empty file");
    free(tok);
    pt_kubeconfig_clear(c);
    return -EINVAL;
  }
  free(tok);
  char *ns;
  snprintf(buf, sizeof(buf), "%s/namespace", sa_dir);
  if (read_file(buf, &ns, 4096) == 0) {
    c->namespace = strdup(trim(ns));
    free(ns);
  }
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

int pt_kubeconfig_load(struct pt_kubeconfig *c, const char *path, const char *context,
                                   char *err, size_t errlen)
{
  memset(c, 0, sizeof(*c));
  char *text = NULL;
  int r = read_file(path, &text, 4u << 20);
  if (r) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(-r));
    return r == -ENOENT ? -EINVAL : r;
  }
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  else
    snprintf(dir, sizeof(dir), ".");

  yaml_parser_t parser;
  yaml_document_t doc;
  bool have_doc = false;
  r = -EINVAL;
  if (!yaml_parser_initialize(&parser)) {
    free(text);
    return -ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, errlen, "%s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "unknown");
    goto out;
  }
  have_doc = true;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    snprintf(err, errlen, "%s: not a kubeconfig (expected a mapping)", path);
    goto out;
  }
  const char *ctx_name = set(context) ? context : scalar(map_get(&doc, root, "current-context"));
  if (!set(ctx_name)) {
    snprintf(err, errlen, "%s: no current-context", path);
    r = -ESRCH;
    goto out;
  }
  yaml_node_t *ctx = named(&doc, root, "contexts", "context", ctx_name);
  if (!ctx) {
    snprintf(err, errlen, "%s: context \"%s\" not found", path, ctx_name);
    goto out;
  }
  const char *cluster_name = scalar(map_get(&doc, ctx, "cluster"));
  const char *user_name = scalar(map_get(&doc, ctx, "user"));
  yaml_node_t *cluster = named(&doc, root, "clusters", "cluster", cluster_name);
  if (!cluster) {
    snprintf(err, errlen, "%s: cluster \"%s\" of context \"%s\" not found", path,
             cluster_name ? cluster_name : "", ctx_name);
    goto out;
  }
  const char *server = scalar(map_get(&doc, cluster, "server"));
  if (!set(server) || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
    snprintf(err, errlen, "%s: cluster \"%s\" has no http(s) server URL", path, cluster_name);
    goto out;
  }
  const char *insecure = scalar(map_get(&doc, cluster, "insecure-skip-tls-verify"));
  c->insecure_skip_tls_verify = insecure && strcmp(insecure, "true") == 0;
  c->server = strdup(server);
  size_t sl = strlen(c->server);
  while (sl > 0 && c->server[sl - 1] == '/')
    c->server[--sl] = '\0';
  char ebuf[512] = "";
  if ((r = file_member(c, &doc, cluster, dir, "certificate-authority", "ca.crt", &c->ca_file, ebuf,
                       sizeof(ebuf)))) {
    snprintf(err, errlen, "%s: cluster \"%s\": %s", path, cluster_name, ebuf);
    goto out;
  }
  r = -EINVAL;
  yaml_node_t *user = user_name ? named(&doc, root, "users", "user", user_name) : NULL;
  if (user_name && !user) {
    snprintf(err, errlen, "%s: user \"%s\" of context \"%s\" not found", path, user_name, ctx_name);
    goto out;
  }
  if (user) {
    if (map_get(&doc, user, "exec") || map_get(&doc, user, "auth-provider")) {
      snprintf(err, errlen, "%s: user \"%s\": exec and auth-provider credentials are not supported; "
               "use a token, tokenFile or client certificate", path, user_name);
      goto out;
    }
    const char *tok = scalar(map_get(&doc, user, "token"));
    const char *tokfile = scalar(map_get(&doc, user, "tokenFile"));
    if (set(tok))
      c->token = strdup(tok);
    else if (set(tokfile))
      c->token_file = resolve(dir, tokfile);
    if ((r = file_member(c, &doc, user, dir, "client-certificate", "client.crt", &c->client_cert, ebuf,
                         sizeof(ebuf))) ||
        (r = file_member(c, &doc, user, dir, "client-key", "client.key", &c->client_key, ebuf,
                         sizeof(ebuf)))) {
      snprintf(err, errlen, "%s: user \"%s\": %s", path, user_name, ebuf);
      goto out;
    }
    r = -EINVAL;
    if (!c->client_cert != !c->client_key) {
      snprintf(err, errlen, "%s: user \"%s\": a client certificate needs its key (and the other way round)",
               path, user_name);
      goto out;
    }
  }
  const char *ns = scalar(map_get(&doc, ctx, "namespace"));
  c->namespace = xstrdup(set(ns) ? ns : NULL);
  char src[4400];
  snprintf(src, sizeof(src), "kubeconfig %s (context %s)", path, ctx_name);
  c->source = strdup(src);
  r = 0;
out:
  if (have_doc)
    yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  free(text);
  if (r)
    pt_kubeconfig_clear(c);
  return r;
}
