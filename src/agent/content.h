/* What the tracker needs from containerd's content store, as an interface so
 * the tracker can be driven by the real gRPC client (containerd.c) or by a
 * scripted fake in unit tests. All calls are blocking and happen on the
 * poller's worker thread. */
#ifndef PT_AGENT_CONTENT_H
#define PT_AGENT_CONTENT_H

#include <stddef.h>
#include <stdint.h>

#define PT_DIGEST_MAX 136 /* "sha512:" + 128 hex + NUL fits */
#define PT_REF_MAX 256
#define PT_IMAGE_REF_MAX 512

enum pt_ingest_kind {
  PT_KIND_UNKNOWN = 0,
  PT_KIND_LAYER,
  PT_KIND_CONFIG,
  PT_KIND_MANIFEST,
  PT_KIND_INDEX,
  PT_KIND_ATTESTATION,
};

/* One active ingest from Content/ListStatuses. */
struct pt_ingest {
  char ref[PT_REF_MAX];
  enum pt_ingest_kind kind;
  char digest[PT_DIGEST_MAX]; /* parsed from the ref; empty when it names none */
  int64_t offset, total;
  double started_at, updated_at; /* wall-clock seconds */
};

/* A committed blob from Content/Info or Content/List. */
struct pt_blob {
  char digest[PT_DIGEST_MAX];
  int64_t size;
  double created_at;
  /* "<registry host>/<repo>" from containerd.io/distribution.source.<host>, or "" */
  char source[PT_IMAGE_REF_MAX];
};

struct pt_content_ops {
  /* Active ingests; *out is malloc'ed (free()). */
  int (*list_ingests)(void *ctx, struct pt_ingest **out, size_t *n);
  /* Blobs carrying a label "<prefix><i>" = digest for any i in [0, max_index).
   * Used with "containerd.io/gc.ref.content.l." (manifests naming a layer) and
   * "containerd.io/gc.ref.content.m." (indexes naming a manifest). */
  int (*find_referrers)(void *ctx, const char *label_prefix, int max_index, const char *digest,
                        struct pt_blob **out, size_t *n);
  /* 0 and *out, -ENOENT when the blob is absent, another negative errno on failure. */
  int (*info)(void *ctx, const char *digest, struct pt_blob *out);
  /* Whole blob (up to max bytes); *data is malloc'ed. */
  int (*read)(void *ctx, const char *digest, size_t max, char **data, size_t *len);
};

/* Splits an ingest ref ("layer-sha256:<hex>") into kind and digest. Returns 0,
 * or -EINVAL when the ref names no digest (kind is then PT_KIND_UNKNOWN and the
 * digest empty). */
int pt_ingest_ref_parse(const char *ref, enum pt_ingest_kind *kind, char *digest, size_t len);
const char *pt_ingest_kind_name(enum pt_ingest_kind kind);

#endif
