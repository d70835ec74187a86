#include "server/report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

struct ctx {
  char *err;
  size_t errlen;
  char *field;
  size_t fieldlen;
  char path[128];
};

static int bad(struct ctx *c, const char *member, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct ctx *c, const char *member, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  if (member && *c->path)
    snprintf(c->field, c->fieldlen, "%s.%s", c->path, member);
  else
    snprintf(c->field, c->fieldlen, "%s", member ? member : c->path);
  return -EINVAL;
}

static bool printable(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

/* A required string (nullable when allow_null) of at most maxlen bytes. */
static int get_str(struct ctx *c, json_t *o, const char *k, bool allow_null, size_t maxlen, const char **out)
{
  json_t *v = json_object_get(o, k);
  if (!v)
    return bad(c, k, "missing member");
  if (json_is_null(v)) {
    if (!allow_null)
      return bad(c, k, "must be a string, not null");
    *out = NULL;
    return 0;
  }
  if (!json_is_string(v))
    return bad(c, k, "must be a string");
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (n == 0)
    return bad(c, k, "must not be empty");
  if (n > maxlen)
    return bad(c, k, "longer than %zu bytes", maxlen);
  if (strlen(s) != n || !printable(s))
    return bad(c, k, "contains control characters");
  *out = s;
  return 0;
}

static int get_digest(struct ctx *c, json_t *o, const char *k, bool allow_null, const char **out)
{
  int r = get_str(c, o, k, allow_null, 256, out);
  if (r)
    return r;
  if (*out && !pt_digest_valid(*out))
    return bad(c, k, "not a digest (algorithm:hex)");
  return 0;
}

static int get_int(struct ctx *c, json_t *o, const char *k, int64_t min, int64_t *out)
{
  json_t *v = json_object_get(o, k);
  if (!v)
    return bad(c, k, "missing member");
  if (!json_is_integer(v))
    return bad(c, k, "must be an integer");
  json_int_t n = json_integer_value(v);
  if (n < min)
    return bad(c, k, "must be >= %lld", (long long)min);
  *out = n;
  return 0;
}

static int get_time(struct ctx *c, json_t *o, const char *k, bool allow_null, double *out)
{
  json_t *v = json_object_get(o, k);
  if (!v)
    return bad(c, k, "missing member");
  if (json_is_null(v)) {
    if (!allow_null)
      return bad(c, k, "must be an RFC 3339 time, not null");
    *out = 0;
    return 0;
  }
  if (!json_is_string(v) || pt_time_parse(json_string_value(v), out) < 0)
    return bad(c, k, "must be an RFC 3339 time");
  if (*out <= 0)
    return bad(c, k, "must be after 1970");
  return 0;
}

static int get_array(struct ctx *c, json_t *o, const char *k, size_t max, json_t **out)
{
  json_t *v = json_object_get(o, k);
  if (!v)
    return bad(c, k, "missing member");
  if (!json_is_array(v))
    return bad(c, k, "must be an array");
  if (json_array_size(v) > max)
    return bad(c, k, "more than %zu entries", max);
  *out = v;
  return 0;
}

static int parse_layer(struct ctx *c, json_t *o, struct pt_report_layer *l)
{
  int r;
  if (!json_is_object(o))
    return bad(c, NULL, "must be an object");
  if ((r = get_digest(c, o, "digest", false, &l->digest)) ||
      (r = get_str(c, o, "mediaType", true, 256, &l->media_type)) ||
      (r = get_int(c, o, "totalBytes", 0, &l->total)) ||
      (r = get_int(c, o, "downloadedBytes", 0, &l->downloaded)))
    return r;
  const char *st;
  if ((r = get_str(c, o, "state", false, 32, &st)))
    return r;
  if (pt_layer_state_parse(st, &l->state))
    return bad(c, "state", "must be one of waiting, downloading, stalled, done, cached");
  if ((r = get_time(c, o, "startedAt", true, &l->started_at)) ||
      (r = get_time(c, o, "updatedAt", true, &l->updated_at)))
    return r;
  if (l->total > 0 && l->downloaded > l->total)
    return bad(c, "downloadedBytes", "greater than totalBytes");
  return 0;
}

static int parse_pull(struct ctx *c, json_t *o, struct pt_report_pull *p, const char *base)
{
  int r;
  if (!json_is_object(o))
    return bad(c, NULL, "must be an object");
  if ((r = get_str(c, o, "id", false, 256, &p->id)) ||
      (r = get_str(c, o, "imageRef", true, 1024, &p->image_ref)) ||
      (r = get_digest(c, o, "manifestDigest", false, &p->manifest_digest)) ||
      (r = get_digest(c, o, "indexDigest", true, &p->index_digest)) ||
      (r = get_time(c, o, "startedAt", true, &p->started_at)) ||
      (r = get_time(c, o, "completedAt", true, &p->completed_at)))
    return r;
  json_t *tk = json_object_get(o, "totalKnown");
  if (!tk)
    return bad(c, "totalKnown", "missing member");
  if (!json_is_boolean(tk))
    return bad(c, "totalKnown", "must be a boolean");
  p->total_known = json_is_true(tk);
  json_t *layers;
  if ((r = get_int(c, o, "totalBytes", 0, &p->total)) ||
      (r = get_int(c, o, "downloadedBytes", 0, &p->downloaded)) ||
      (r = get_array(c, o, "layers", PT_REPORT_MAX_LAYERS, &layers)))
    return r;
  if (p->total_known && p->downloaded > p->total)
    return bad(c, "downloadedBytes", "greater than totalBytes");
  p->nlayers = json_array_size(layers);
  p->layers = p->nlayers ? calloc(p->nlayers, sizeof(*p->layers)) : NULL;
  if (p->nlayers && !p->layers)
    return bad(c, NULL, "out of memory");
  for (size_t i = 0; i < p->nlayers; i++) {
    snprintf(c->path, sizeof(c->path), "%s.layers[%zu]", base, i);
    if ((r = parse_layer(c, json_array_get(layers, i), &p->layers[i])))
      return r;
  }
  return 0;
}

static int parse_unattr(struct ctx *c, json_t *o, struct pt_report_unattributed *u)
{
  int r;
  if (!json_is_object(o))
    return bad(c, NULL, "must be an object");
  if ((r = get_str(c, o, "ref", false, 512, &u->ref)) ||
      (r = get_str(c, o, "kind", false, 32, &u->kind)) ||
      (r = get_digest(c, o, "digest", true, &u->digest)) ||
      (r = get_int(c, o, "totalBytes", 0, &u->total)) ||
      (r = get_int(c, o, "downloadedBytes", 0, &u->downloaded)) ||
      (r = get_time(c, o, "startedAt", true, &u->started_at)) ||
      (r = get_time(c, o, "updatedAt", true, &u->updated_at)))
    return r;
  static const char *const kinds[] = {"layer", "config", "manifest", "index", "attestation", "unknown"};
  bool ok = false;
  for (size_t i = 0; i < 6; i++)
    ok |= strcmp(u->kind, kinds[i]) == 0;
  if (!ok)
    return bad(c, "kind", "must be one of layer, config, manifest, index, attestation, unknown");
  return 0;
}

static bool node_name_valid(const char *s)
{
  for (; *s; s++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '.' || ch == '_'))
      return false;
  }
  return true;
}

int pt_report_parse(const char *body, size_t len, struct pt_report *out,
                    char *err, size_t errlen, char *field, size_t fieldlen)
{
  struct ctx c = {.err = err, .errlen = errlen, .field = field, .fieldlen = fieldlen};
  memset(out, 0, sizeof(*out));
  err[0] = '\0';
  field[0] = '\0';
  json_error_t jerr;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, errlen, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return -EINVAL;
  }
  out->root = root;
  int r;
  if (!json_is_object(root)) {
    r = bad(&c, NULL, "the report must be a JSON object");
    goto fail;
  }
  const char *sv;
  if ((r = get_str(&c, root, "schemaVersion", false, 16, &sv)))
    goto fail;
  if (strcmp(sv, "v1") != 0) {
    r = bad(&c, "schemaVersion", "unsupported schema version \"%s\" (this server reads v1)", sv);
    goto fail;
  }
  json_t *pulls, *unattr;
  if ((r = get_str(&c, root, "nodeName", false, 253, &out->node)))
    goto fail;
  if (!node_name_valid(out->node)) {
    r = bad(&c, "nodeName", "must contain only letters, digits, '-', '.' and '_'");
    goto fail;
  }
  if ((r = get_str(&c, root, "agentVersion", false, 64, &out->agent_version)) ||
      (r = get_str(&c, root, "bootId", false, 128, &out->boot_id)) ||
      (r = get_int(&c, root, "seq", 1, &out->seq)) ||
      (r = get_time(&c, root, "timestamp", false, &out->timestamp)) ||
      (r = get_array(&c, root, "pulls", PT_REPORT_MAX_PULLS, &pulls)) ||
      (r = get_array(&c, root, "unattributed", PT_REPORT_MAX_UNATTRIBUTED, &unattr)))
    goto fail;
  out->npulls = json_array_size(pulls);
  out->pulls = out->npulls ? calloc(out->npulls, sizeof(*out->pulls)) : NULL;
  out->nunattributed = json_array_size(unattr);
  out->unattributed = out->nunattributed ? calloc(out->nunattributed, sizeof(*out->unattributed)) : NULL;
  if ((out->npulls && !out->pulls) || (out->nunattributed && !out->unattributed)) {
    r = bad(&c, NULL, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < out->npulls; i++) {
    char base[48];
    snprintf(base, sizeof(base), "pulls[%zu]", i);
    snprintf(c.path, sizeof(c.path), "%s", base);
    if ((r = parse_pull(&c, json_array_get(pulls, i), &out->pulls[i], base)))
      goto fail;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(out->pulls[j].id, out->pulls[i].id) == 0) {
        snprintf(c.path, sizeof(c.path), "%s", base);
        r = bad(&c, "id", "duplicate pull id (also pulls[%zu])", j);
        goto fail;
      }
    }
  }
  for (size_t i = 0; i < out->nunattributed; i++) {
    snprintf(c.path, sizeof(c.path), "unattributed[%zu]", i);
    if ((r = parse_unattr(&c, json_array_get(unattr, i), &out->unattributed[i])))
      goto fail;
  }
  return 0;
fail:
  pt_report_free(out);
  return r;
}

void pt_report_free(struct pt_report *r)
{
  if (!r)
    return;
  for (size_t i = 0; r->pulls && i < r->npulls; i++)
    free(r->pulls[i].layers);
  free(r->pulls);
  free(r->unattributed);
  json_decref(r->root);
  memset(r, 0, sizeof(*r));
}

static void shift(double *t, double offset)
{
  if (*t > 0)
    *t += offset;
}

void pt_report_shift(struct pt_report *r, double offset)
{
  if (offset == 0)
    return;
  shift(&r->timestamp, offset);
  for (size_t i = 0; i < r->npulls; i++) {
    struct pt_report_pull *p = &r->pulls[i];
    shift(&p->started_at, offset);
    shift(&p->completed_at, offset);
    for (size_t j = 0; j < p->nlayers; j++) {
      shift(&p->layers[j].started_at, offset);
      shift(&p->layers[j].updated_at, offset);
    }
  }
  for (size_t i = 0; i < r->nunattributed; i++) {
    shift(&r->unattributed[i].started_at, offset);
    shift(&r->unattributed[i].updated_at, offset);
  }
}
