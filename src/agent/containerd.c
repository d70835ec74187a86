#include "agent/containerd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/content/v1/content.pb-c.h"

#define SVC "/containerd.services.content.v1.Content/"
#define SOURCE_LABEL "containerd.io/distribution.source."

int pt_containerd_init(struct pt_containerd *c, const char *socket_path, const char *ns)
{
  memset(c, 0, sizeof(*c));
  char target[4200];
  snprintf(target, sizeof(target), "unix:%s", socket_path);
  c->grpc = pt_grpc_create(target, ns);
  c->timeout_s = 5;
  return c->grpc ? 0 : -ENOMEM;
}

void pt_containerd_close(struct pt_containerd *c)
{
  pt_grpc_destroy(c->grpc);
  c->grpc = NULL;
}

static double ts(const Containerd__Services__Content__V1__Timestamp *t)
{
  return t ? (double)t->seconds + t->nanos / 1e9 : 0;
}

static void blob_from_info(const Containerd__Services__Content__V1__Info *in, struct pt_blob *b)
{
  memset(b, 0, sizeof(*b));
  snprintf(b->digest, sizeof(b->digest), "%s", in->digest ? in->digest : "");
  b->size = in->size;
  b->created_at = ts(in->created_at);
  for (size_t i = 0; i < in->n_labels; i++) {
    const char *k = in->labels[i]->key;
    if (k && strncmp(k, SOURCE_LABEL, strlen(SOURCE_LABEL)) == 0 && in->labels[i]->value) {
      /* Several registries may have served the same blob; the first is as good
       * as any for naming the image. */
      snprintf(b->source, sizeof(b->source), "%s/%s", k + strlen(SOURCE_LABEL),
               in->labels[i]->value);
      break;
    }
  }
}

static int list_ingests(void *ctx, struct pt_ingest **out, size_t *n)
{
  struct pt_containerd *c = ctx;
  Containerd__Services__Content__V1__ListStatusesRequest req =
      CONTAINERD__SERVICES__CONTENT__V1__LIST_STATUSES_REQUEST__INIT;
  ProtobufCMessage *resp;
  *out = NULL;
  *n = 0;
  if (pt_grpc_unary(c->grpc, SVC "ListStatuses", &req.base,
                    &containerd__services__content__v1__list_statuses_response__descriptor, &resp,
                    c->timeout_s, &c->last))
    return -EIO;
  Containerd__Services__Content__V1__ListStatusesResponse *r = (void *)resp;
  struct pt_ingest *v = calloc(r->n_statuses ? r->n_statuses : 1, sizeof(*v));
  if (!v) {
    protobuf_c_message_free_unpacked(resp, NULL);
    return -ENOMEM;
  }
  for (size_t i = 0; i < r->n_statuses; i++) {
    Containerd__Services__Content__V1__Status *s = r->statuses[i];
    struct pt_ingest *g = &v[i];
    snprintf(g->ref, sizeof(g->ref), "%s", s->ref ? s->ref : "");
    pt_ingest_ref_parse(g->ref, &g->kind, g->digest, sizeof(g->digest));
    g->offset = s->offset;
    g->total = s->total;
    g->started_at = ts(s->started_at);
    g->updated_at = ts(s->updated_at);
  }
  *out = v;
  *n = r->n_statuses;
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

struct collect {
  struct pt_blob *v;
  size_t n, cap;
  int oom;
};

static int collect_info(void *ud, ProtobufCMessage *msg)
{
  struct collect *col = ud;
  Containerd__Services__Content__V1__ListContentResponse *r = (void *)msg;
  for (size_t i = 0; i < r->n_info; i++) {
    if (col->n == col->cap) {
      size_t cap = col->cap ? col->cap * 2 : 8;
      struct pt_blob *p = realloc(col->v, cap * sizeof(*p));
      if (!p) {
        col->oom = 1;
        return 1;
      }
      col->v = p;
      col->cap = cap;
    }
    blob_from_info(r->info[i], &col->v[col->n++]);
  }
  return 0;
}

static int find_referrers(void *ctx, const char *prefix, int max_index, const char *digest,
                          struct pt_blob **out, size_t *n)
{
  struct pt_containerd *c = ctx;
  *out = NULL;
  *n = 0;
  if (max_index <= 0 || max_index > 1024)
    return -EINVAL;
  /* Label keys cannot be wildcarded in containerd's filter syntax, but the
   * filters of one request are OR-ed, so one call asks for every index. */
  char **filters = calloc((size_t)max_index, sizeof(char *));
  if (!filters)
    return -ENOMEM;
  int rc = 0;
  for (int i = 0; i < max_index; i++) {
    size_t len = strlen(prefix) + strlen(digest) + 32;
    filters[i] = malloc(len);
    if (!filters[i]) {
      rc = -ENOMEM;
      goto out;
    }
    snprintf(filters[i], len, "labels.\"%s%d\"==\"%s\"", prefix, i, digest);
  }
  Containerd__Services__Content__V1__ListContentRequest req =
      CONTAINERD__SERVICES__CONTENT__V1__LIST_CONTENT_REQUEST__INIT;
  req.n_filters = (size_t)max_index;
  req.filters = filters;
  struct collect col = {0};
  if (pt_grpc_stream(c->grpc, SVC "List", &req.base,
                     &containerd__services__content__v1__list_content_response__descriptor,
                     collect_info, &col, c->timeout_s, &c->last) ||
      col.oom) {
    free(col.v);
    rc = col.oom ? -ENOMEM : -EIO;
    goto out;
  }
  *out = col.v;
  *n = col.n;
out:
  for (int i = 0; i < max_index; i++)
    free(filters[i]);
  free(filters);
  return rc;
}

static int info(void *ctx, const char *digest, struct pt_blob *out)
{
  struct pt_containerd *c = ctx;
  Containerd__Services__Content__V1__InfoRequest req =
      CONTAINERD__SERVICES__CONTENT__V1__INFO_REQUEST__INIT;
  req.digest = (char *)digest;
  ProtobufCMessage *resp;
  if (pt_grpc_unary(c->grpc, SVC "Info", &req.base,
                    &containerd__services__content__v1__info_response__descriptor, &resp,
                    c->timeout_s, &c->last))
    return c->last.code == PT_GRPC_NOT_FOUND ? -ENOENT : -EIO;
  Containerd__Services__Content__V1__InfoResponse *r = (void *)resp;
  int rc = 0;
  if (r->info)
    blob_from_info(r->info, out);
  else
    rc = -EIO;
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

struct readbuf {
  char *data;
  size_t len, max;
  int too_big, oom;
};

static int collect_data(void *ud, ProtobufCMessage *msg)
{
  struct readbuf *b = ud;
  Containerd__Services__Content__V1__ReadContentResponse *r = (void *)msg;
  if (b->len + r->data.len > b->max) {
    b->too_big = 1;
    return 1;
  }
  char *p = realloc(b->data, b->len + r->data.len + 1);
  if (!p) {
    b->oom = 1;
    return 1;
  }
  b->data = p;
  memcpy(b->data + b->len, r->data.data, r->data.len);
  b->len += r->data.len;
  b->data[b->len] = '\0';
  return 0;
}

static int read_blob(void *ctx, const char *digest, size_t max, char **data, size_t *len)
{
  struct pt_containerd *c = ctx;
  Containerd__Services__Content__V1__ReadContentRequest req =
      CONTAINERD__SERVICES__CONTENT__V1__READ_CONTENT_REQUEST__INIT;
  req.digest = (char *)digest;
  struct readbuf b = {.max = max};
  int rc = pt_grpc_stream(c->grpc, SVC "Read", &req.base,
                          &containerd__services__content__v1__read_content_response__descriptor,
                          collect_data, &b, c->timeout_s, &c->last);
  if (b.too_big || b.oom || rc) {
    free(b.data);
    if (b.too_big)
      return -EFBIG;
    if (b.oom)
      return -ENOMEM;
    return c->last.code == PT_GRPC_NOT_FOUND ? -ENOENT : -EIO;
  }
  if (!b.data) {
    b.data = calloc(1, 1);
    if (!b.data)
      return -ENOMEM;
  }
  *data = b.data;
  *len = b.len;
  return 0;
}

const struct pt_content_ops pt_containerd_ops = {
    .list_ingests = list_ingests,
    .find_referrers = find_referrers,
    .info = info,
    .read = read_blob,
};
