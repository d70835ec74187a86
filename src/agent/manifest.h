/* Parsing of OCI / Docker image manifests and indexes (the JSON read from the
 * content store) into what the tracker needs. */
#ifndef PT_AGENT_MANIFEST_H
#define PT_AGENT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "agent/content.h"

enum pt_manifest_type { PT_MANIFEST_IMAGE = 1, PT_MANIFEST_INDEX = 2 };

struct pt_descriptor {
  char digest[PT_DIGEST_MAX];
  char media_type[128];
  int64_t size;
  char platform[64]; /* "os/arch[/variant]" for index entries, else "" */
};

struct pt_manifest {
  enum pt_manifest_type type;
  char media_type[128];
  struct pt_descriptor config; /* image manifests only */
  struct pt_descriptor *items;  /* layers (image) or manifests (index) */
  size_t n_items;
};

/* Parses a manifest or index. Unknown layer media types are kept as they are
 * (an operator still wants to see the bytes move). Returns 0 or -EINVAL with a
 * reason in err. */
int pt_manifest_parse(const char *json, size_t len, struct pt_manifest *out, char *err,
                      size_t errlen);
void pt_manifest_free(struct pt_manifest *m);

#endif
