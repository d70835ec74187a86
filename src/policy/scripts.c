/* The set of scripts a VM is built from: the built-in defaults (compiled in
 * from lua/) and an operator's directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/embed.h"
#include "core/file.h"
#include "core/hash.h"
#include "policy/internal.h"

/* Generated from the .lua files in lua/ by pt_embed_files(). */
extern const struct pt_embedded_file pt_policy_lua_files[];

/* A script larger than this is a mistake (or an attack on the loader). */
#define MAX_SCRIPT_BYTES (1u << 20)
#define MAX_SCRIPTS 256

void script_set_free(struct script_set *s)
{
  for (size_t i = 0; i < s->n; i++) {
    free(s->v[i].name);
    free(s->v[i].origin);
    free(s->v[i].source);
  }
  free(s->v);
  s->v = NULL;
  s->n = 0;
}

static int add(struct script_set *s, const char *name, const char *origin, char *source,
               size_t len)
{
  struct script *v = realloc(s->v, (s->n + 1) * sizeof(*v));
  if (!v)
    return -ENOMEM;
  s->v = v;
  struct script *sc = &s->v[s->n];
  sc->name = strdup(name);
  sc->origin = strdup(origin);
  sc->source = source;
  sc->len = len;
  if (!sc->name || !sc->origin) {
    free(sc->name);
    free(sc->origin);
    return -ENOMEM;
  }
  s->n++;
  return 0;
}

static int by_name(const void *a, const void *b)
{
  return strcmp(((const struct script *)a)->name, ((const struct script *)b)->name);
}

int script_set_builtin(struct script_set *s)
{
  for (const struct pt_embedded_file *f = pt_policy_lua_files; f->name; f++) {
    size_t n = strlen(f->name);
    if (n < 5 || strcmp(f->name + n - 4, ".lua") != 0)
      continue;
    char *src = malloc(f->size + 1);
    if (!src)
      return -ENOMEM;
    memcpy(src, f->data, f->size);
    src[f->size] = '\0';
    int rc = add(s, f->name, "builtin", src, f->size);
    if (rc) {
      free(src);
      return rc;
    }
  }
  if (s->n)
    qsort(s->v, s->n, sizeof(*s->v), by_name);
  return 0;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
  int r = pt_file_read(path, MAX_SCRIPT_BYTES, out, len);
  if (r == -EFBIG || r == -EINVAL)
    snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, MAX_SCRIPT_BYTES);
  else if (r)
    snprintf(err, errlen, "%s: %s", path, strerror(-r));
  return r;
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int script_set_add_dir(struct script_set *s, const char *dir, char *err, size_t errlen)
{
  DIR *d = opendir(dir);
  if (!d) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", dir, strerror(e));
    return -e;
  }
  char **names = NULL;
  size_t n = 0;
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name);
    /* Dot files include a ConfigMap's `..data` and `..<timestamp>` entries;
     * the keys are the symlinks next to them. */
    if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0)
      continue;
    if (n == MAX_SCRIPTS) {
      snprintf(err, errlen, "%s: more than %d scripts", dir, MAX_SCRIPTS);
      rc = -E2BIG;
      goto out;
    }
    char **nn = realloc(names, (n + 1) * sizeof(*nn));
    if (!nn || !(nn[n] = strdup(de->d_name))) {
      names = nn ? nn : names;
      rc = -ENOMEM;
      goto out;
    }
    names = nn;
    n++;
  }
  if (n)
    qsort(names, n, sizeof(*names), cmp_str);
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    struct stat st;
    /* stat() follows the ConfigMap's symlinks; skip what is not a file. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    char *src = NULL;
    size_t len = 0;
    rc = read_file(path, &src, &len, err, errlen);
    if (rc)
      goto out;
    size_t j;
    for (j = 0; j < s->n; j++)
      if (strcmp(s->v[j].name, names[i]) == 0)
        break;
    if (j < s->n) {
      /* Same name as a built-in: replace it in place, so it loads where the
       * built-in did. */
      char *origin = strdup(path);
      if (!origin) {
        free(src);
        rc = -ENOMEM;
        goto out;
      }
      free(s->v[j].source);
      free(s->v[j].origin);
      s->v[j].source = src;
      s->v[j].len = len;
      s->v[j].origin = origin;
    } else if ((rc = add(s, names[i], path, src, len))) {
      free(src);
      goto out;
    }
  }
out:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  closedir(d);
  if (rc == -ENOMEM)
    snprintf(err, errlen, "out of memory reading %s", dir);
  return rc;
}

/* FNV-1a over names, origins and contents: a reload that would load the same
 * scripts is skipped. */
uint64_t script_set_hash(const struct script_set *s)
{
  uint64_t h = PT_FNV1A_INIT;
  for (size_t i = 0; i < s->n; i++) {
    /* Each name and origin with its NUL, so that ("ab","c") and ("a","bc")
     * differ. */
    h = pt_fnv1a(h, s->v[i].name, strlen(s->v[i].name) + 1);
    h = pt_fnv1a(h, s->v[i].origin, strlen(s->v[i].origin) + 1);
    h = pt_fnv1a(h, s->v[i].source, s->v[i].len);
  }
  return h;
}
