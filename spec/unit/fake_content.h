/* An in-memory content store that implements struct pt_content_ops, so the
 * tracker can be fed scripted poll sequences. */
#ifndef PT_SPEC_FAKE_CONTENT_H
#define PT_SPEC_FAKE_CONTENT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/content.h"

#define FAKE_MAX 64

struct fake_blob {
  char digest[PT_DIGEST_MAX];
  double created_at;
  char source[PT_IMAGE_REF_MAX];
  char *data;
  char label_keys[8][96];
  char label_vals[8][PT_DIGEST_MAX];
  int n_labels;
};

struct fake_content {
  struct pt_ingest ingests[FAKE_MAX];
  size_t n_ingests;
  struct fake_blob blobs[FAKE_MAX];
  size_t n_blobs;
  int down;            /* list_ingests fails */
  int calls_find, calls_info, calls_read;
};

static inline struct fake_blob *fake_add_blob(struct fake_content *f, const char *digest,
                                              double created_at, const char *data)
{
  struct fake_blob *b = &f->blobs[f->n_blobs++];
  memset(b, 0, sizeof(*b));
  snprintf(b->digest, sizeof(b->digest), "%s", digest);
  b->created_at = created_at;
  b->data = data ? strdup(data) : NULL;
  return b;
}

static inline void fake_label(struct fake_blob *b, const char *key, const char *val)
{
  snprintf(b->label_keys[b->n_labels], sizeof(b->label_keys[0]), "%s", key);
  snprintf(b->label_vals[b->n_labels], sizeof(b->label_vals[0]), "%s", val);
  b->n_labels++;
}

static inline void fake_free(struct fake_content *f)
{
  for (size_t i = 0; i < f->n_blobs; i++)
    free(f->blobs[i].data);
  f->n_blobs = 0;
}

/* Drops every blob after the first n (a garbage collection). */
static inline void fake_truncate(struct fake_content *f, size_t n)
{
  for (size_t i = n; i < f->n_blobs; i++)
    free(f->blobs[i].data);
  if (n < f->n_blobs)
    f->n_blobs = n;
}

/* Sets the ingest for a digest (adding it when new). */
static inline void fake_ingest(struct fake_content *f, const char *kind, const char *digest,
                               int64_t offset, int64_t total, double started, double updated)
{
  struct pt_ingest *g = NULL;
  for (size_t i = 0; i < f->n_ingests; i++)
    if (strcmp(f->ingests[i].digest, digest) == 0)
      g = &f->ingests[i];
  if (!g) {
    g = &f->ingests[f->n_ingests++];
    memset(g, 0, sizeof(*g));
  }
  snprintf(g->ref, sizeof(g->ref), "%s-%s", kind, digest);
  pt_ingest_ref_parse(g->ref, &g->kind, g->digest, sizeof(g->digest));
  g->offset = offset;
  g->total = total;
  g->started_at = started;
  g->updated_at = updated;
}

static inline void fake_end_ingest(struct fake_content *f, const char *digest)
{
  for (size_t i = 0; i < f->n_ingests; i++) {
    if (strcmp(f->ingests[i].digest, digest) == 0) {
      f->ingests[i] = f->ingests[--f->n_ingests];
      return;
    }
  }
}

static int fake_list(void *ctx, struct pt_ingest **out, size_t *n)
{
  struct fake_content *f = ctx;
  if (f->down)
    return -EIO;
  *out = calloc(f->n_ingests + 1, sizeof(**out));
  memcpy(*out, f->ingests, f->n_ingests * sizeof(**out));
  /* containerd returns ingests in no particular order: reverse them. */
  for (size_t i = 0; i < f->n_ingests / 2; i++) {
    struct pt_ingest tmp = (*out)[i];
    (*out)[i] = (*out)[f->n_ingests - 1 - i];
    (*out)[f->n_ingests - 1 - i] = tmp;
  }
  *n = f->n_ingests;
  return 0;
}

static void fake_to_blob(const struct fake_blob *fb, struct pt_blob *b)
{
  memset(b, 0, sizeof(*b));
  snprintf(b->digest, sizeof(b->digest), "%s", fb->digest);
  b->created_at = fb->created_at;
  b->size = fb->data ? (int64_t)strlen(fb->data) : 0;
  snprintf(b->source, sizeof(b->source), "%s", fb->source);
}

static int fake_find(void *ctx, const char *prefix, int max_index, const char *digest,
                     struct pt_blob **out, size_t *n)
{
  struct fake_content *f = ctx;
  f->calls_find++;
  *out = calloc(FAKE_MAX, sizeof(**out));
  *n = 0;
  for (size_t i = 0; i < f->n_blobs; i++) {
    for (int l = 0; l < f->blobs[i].n_labels; l++) {
      const char *k = f->blobs[i].label_keys[l];
      if (strncmp(k, prefix, strlen(prefix)) == 0 && atoi(k + strlen(prefix)) < max_index &&
          strcmp(f->blobs[i].label_vals[l], digest) == 0) {
        fake_to_blob(&f->blobs[i], &(*out)[(*n)++]);
        break;
      }
    }
  }
  return 0;
}

static int fake_info(void *ctx, const char *digest, struct pt_blob *out)
{
  struct fake_content *f = ctx;
  f->calls_info++;
  for (size_t i = 0; i < f->n_blobs; i++) {
    if (strcmp(f->blobs[i].digest, digest) == 0) {
      fake_to_blob(&f->blobs[i], out);
      return 0;
    }
  }
  return -ENOENT;
}

static int fake_read(void *ctx, const char *digest, size_t max, char **data, size_t *len)
{
  struct fake_content *f = ctx;
  f->calls_read++;
  for (size_t i = 0; i < f->n_blobs; i++) {
    if (strcmp(f->blobs[i].digest, digest) == 0 && f->blobs[i].data) {
      *len = strlen(f->blobs[i].data);
      if (*len > max)
        return -EFBIG;
      *data = strdup(f->blobs[i].data);
      return 0;
    }
  }
  return -ENOENT;
}

static const struct pt_content_ops fake_ops = {fake_list, fake_find, fake_info, fake_read};

#endif
