#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/content.h"
#include "core/model.h"

static const struct {
  const char *prefix;
  enum pt_ingest_kind kind;
} kinds[] = {
    {"layer-", PT_KIND_LAYER},       {"config-", PT_KIND_CONFIG},
    {"manifest-", PT_KIND_MANIFEST}, {"index-", PT_KIND_INDEX},
    {"attestation-", PT_KIND_ATTESTATION}, {"unknown-", PT_KIND_UNKNOWN},
};

const char *pt_ingest_kind_name(enum pt_ingest_kind kind)
{
  switch (kind) {
  case PT_KIND_LAYER: return "layer";
  case PT_KIND_CONFIG: return "config";
  case PT_KIND_MANIFEST: return "manifest";
  case PT_KIND_INDEX: return "index";
  case PT_KIND_ATTESTATION: return "attestation";
  default: return "unknown";
  }
}

int pt_ingest_ref_parse(const char *ref, enum pt_ingest_kind *kind, char *digest, size_t len)
{
  *kind = PT_KIND_UNKNOWN;
  if (len)
    digest[0] = '\0';
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    size_t pl = strlen(kinds[i].prefix);
    if (strncmp(ref, kinds[i].prefix, pl) == 0) {
      const char *d = ref + pl;
      if (!pt_digest_registered(d) || strlen(d) >= len)
        return -EINVAL;
      *kind = kinds[i].kind;
      snprintf(digest, len, "%s", d);
      return 0;
    }
  }
  return -EINVAL;
}
