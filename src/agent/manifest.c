#include "agent/manifest.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"

static const char *const image_types[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
};
static const char *const index_types[] = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
};

static int in_list(const char *s, const char *const *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(s, list[i]) == 0)
      return 1;
  return 0;
}

static int parse_descriptor(json_t *d, struct pt_descriptor *out, const char *what, size_t i,
                            char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (!json_is_object(d)) {
    snprintf(err, errlen, "%s[%zu]: not an object", what, i);
    return -EINVAL;
  }
  json_t *dg = json_object_get(d, "digest");
  if (!json_is_string(dg) || !pt_digest_registered(json_string_value(dg))) {
    snprintf(err, errlen, "%s[%zu].digest: missing or not a sha256/sha512 digest", what, i);
    return -EINVAL;
  }
  snprintf(out->digest, sizeof(out->digest), "%s", json_string_value(dg));
  json_t *sz = json_object_get(d, "size");
  if (!json_is_integer(sz) || json_integer_value(sz) < 0) {
    snprintf(err, errlen, "%s[%zu].size: missing or not a non-negative integer", what, i);
    return -EINVAL;
  }
  out->size = json_integer_value(sz);
  json_t *mt = json_object_get(d, "mediaType");
  if (json_is_string(mt))
    snprintf(out->media_type, sizeof(out->media_type), "%s", json_string_value(mt));
  json_t *pf = json_object_get(d, "platform");
  if (json_is_object(pf)) {
    const char *os = json_string_value(json_object_get(pf, "os"));
    const char *arch = json_string_value(json_object_get(pf, "architecture"));
    const char *var = json_string_value(json_object_get(pf, "variant"));
    snprintf(out->platform, sizeof(out->platform), "%s/%s%s%s", os ? os : "?", arch ? arch : "?",
             var ? "/" : "", var ? var : "");
  }
  return 0;
}

int pt_manifest_parse(const char *json, size_t len, struct pt_manifest *out, char *err,
                      size_t errlen)
{
  memset(out, 0, sizeof(*out));
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, errlen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
    return -EINVAL;
  }
  int rc = -EINVAL;
  if (!json_is_object(root)) {
    snprintf(err, errlen, "not a JSON object");
    goto out;
  }
  json_t *sv = json_object_get(root, "schemaVersion");
  if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
    snprintf(err, errlen, "schemaVersion: unsupported (want 2)");
    goto out;
  }
  const char *mt = json_string_value(json_object_get(root, "mediaType"));
  json_t *layers = json_object_get(root, "layers");
  json_t *manifests = json_object_get(root, "manifests");
  if (mt && in_list(mt, image_types, 2))
    out->type = PT_MANIFEST_IMAGE;
  else if (mt && in_list(mt, index_types, 2))
    out->type = PT_MANIFEST_INDEX;
  else if (mt) {
    snprintf(err, errlen, "mediaType: unsupported \"%.80s\"", mt);
    goto out;
  } else if (json_is_array(layers) && !manifests)
    out->type = PT_MANIFEST_IMAGE; /* OCI allows omitting mediaType */
  else if (json_is_array(manifests) && !layers)
    out->type = PT_MANIFEST_INDEX;
  else {
    snprintf(err, errlen, "neither an image manifest nor an index");
    goto out;
  }
  snprintf(out->media_type, sizeof(out->media_type), "%s",
           mt ? mt
              : (out->type == PT_MANIFEST_IMAGE ? image_types[0] : index_types[0]));
  json_t *arr = out->type == PT_MANIFEST_IMAGE ? layers : manifests;
  const char *what = out->type == PT_MANIFEST_IMAGE ? "layers" : "manifests";
  if (!json_is_array(arr)) {
    snprintf(err, errlen, "%s: missing or not an array", what);
    goto out;
  }
  if (out->type == PT_MANIFEST_IMAGE &&
      parse_descriptor(json_object_get(root, "config"), &out->config, "config", 0, err, errlen))
    goto out;
  size_t n = json_array_size(arr);
  if (n > 4096) {
    snprintf(err, errlen, "%s: too many entries (%zu)", what, n);
    goto out;
  }
  out->items = calloc(n ? n : 1, sizeof(*out->items));
  if (!out->items) {
    rc = -ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (parse_descriptor(json_array_get(arr, i), &out->items[i], what, i, err, errlen))
      goto out;
  }
  out->n_items = n;
  rc = 0;
out:
  json_decref(root);
  if (rc)
    pt_manifest_free(out);
  return rc;
}

void pt_manifest_free(struct pt_manifest *m)
{
  if (!m)
    return;
  free(m->items);
  m->items = NULL;
  m->n_items = 0;
}
