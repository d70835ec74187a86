/* The v1 report in two passes over no document tree.
 *
 * Pass 1 (a walk over the document simdjson checked, json_walk.h) files
 * every member of the five object kinds the
 * schema knows (the report, a pull, a layer, an unattributed ingest, the
 * containerd status) into a
 * typed slot: present or not, its JSON type and its value. Members the schema
 * does not know are skipped, checked only for what a JSON parser checks
 * (duplicate keys included). Array elements past an array's limit are
 * counted, not stored.
 *
 * Pass 2 validates the slots in the schema's order, so that a body gets the
 * same first error (message and field) whatever the order of its members,
 * and fills the typed report. Syntax errors anywhere come first, as with a
 * parser that reads the whole document before looking at it.
 *
 * Why this file is over 800 lines: both passes and the arena they allocate
 * from share one private slot structure (struct slot, struct robj and the
 * member tables), so splitting the passes into two files would only move
 * that structure into a header that nothing else may use. */
#include "server/report.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/map.h"
#include "server/json_walk.h"

/* ------------------------------------------------------------------------ */
/* Arena: every string and array of one report                               */

struct block {
  struct block *next;
  size_t used, cap;
  max_align_t data[];
};

struct pt_report_arena {
  struct block *head;
};

#define BLOCK_SIZE 16384

static void *arena_alloc(struct pt_report_arena *a, size_t n)
{
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  struct block *b = a->head;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
    b = malloc(sizeof(*b) + cap);
    if (!b)
      return NULL;
    b->used = 0;
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  return p;
}

static void *arena_zalloc(struct pt_report_arena *a, size_t n)
{
  void *p = arena_alloc(a, n);
  if (p)
    memset(p, 0, n);
  return p;
}

static void arena_free(struct pt_report_arena *a)
{
  if (!a)
    return;
  struct block *b = a->head;
  while (b) {
    struct block *next = b->next;
    free(b);
    b = next;
  }
  free(a);
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                      */

enum vtype { V_ABSENT = 0, V_NULL, V_BOOL, V_INT, V_REAL, V_STRING, V_ARRAY, V_OBJECT };

struct robj;

struct slot {
  enum vtype t;
  bool b;
  int64_t i;
  const char *s; /* NUL-terminated copy in the arena */
  size_t len;
  /* V_ARRAY of a member whose elements are kept: */
  struct robj *head, *tail;
  /* V_OBJECT of a member whose members are kept (kept_object): */
  struct robj *obj;
  size_t count;
};

enum kind { K_REPORT = 0, K_PULL, K_LAYER, K_UNATTR, K_CTRD, K_COUNT };

#define MAX_SLOTS 10

/* One object of a known kind, or a non-object element of a kept array
 * (elem_type tells which). */
struct robj {
  enum vtype elem_type;
  struct slot m[MAX_SLOTS];
  struct robj *next;
};

enum {
  R_SCHEMA, R_NODE, R_AGENT, R_BOOT, R_SEQ, R_TIMESTAMP, R_PULLS, R_UNATTR, R_CTRD,
};
enum {
  P_ID, P_IMAGE_REF, P_MANIFEST, P_INDEX, P_STARTED, P_COMPLETED, P_TOTAL_KNOWN, P_TOTAL, P_DOWNLOADED, P_LAYERS,
};
enum {
  L_DIGEST, L_MEDIA_TYPE, L_TOTAL, L_DOWNLOADED, L_STATE, L_STARTED, L_UPDATED,
};
enum {
  U_REF, U_KIND, U_DIGEST, U_TOTAL, U_DOWNLOADED, U_STARTED, U_UPDATED,
};
enum {
  C_REACHABLE, C_SINCE, C_ERROR,
};

/* A member's name and its length (keys are matched on every token). */
struct member {
  const char *name;
  size_t len;
};
#define M(s) {s, sizeof(s) - 1}

static const struct member members[K_COUNT][MAX_SLOTS + 1] = {
  [K_REPORT] = {M("schemaVersion"), M("nodeName"), M("agentVersion"), M("bootId"), M("seq"), M("timestamp"),
                M("pulls"), M("unattributed"), M("containerd"), {NULL, 0}},
  [K_PULL] = {M("id"), M("imageRef"), M("manifestDigest"), M("indexDigest"), M("startedAt"), M("completedAt"),
              M("totalKnown"), M("totalBytes"), M("downloadedBytes"), M("layers"), {NULL, 0}},
  [K_LAYER] = {M("digest"), M("mediaType"), M("totalBytes"), M("downloadedBytes"), M("state"), M("startedAt"),
               M("updatedAt"), {NULL, 0}},
  [K_UNATTR] = {M("ref"), M("kind"), M("digest"), M("totalBytes"), M("downloadedBytes"), M("startedAt"),
                M("updatedAt"), {NULL, 0}},
  [K_CTRD] = {M("reachable"), M("since"), M("error"), {NULL, 0}},
};
#undef M

/* The kept objects that are members, not array elements: which member of
 * which kind holds an object of which kind. */
static bool kept_object(enum kind k, int slot, enum kind *kind)
{
  if (k == K_REPORT && slot == R_CTRD) {
    *kind = K_CTRD;
    return true;
  }
  return false;
}

/* The kept arrays: which member of which kind holds elements of which kind,
 * and how many are kept (one more than the limit, so that validation sees
 * the overflow; the rest are only counted). */
static bool kept_array(enum kind k, int slot, enum kind *elem, size_t *max)
{
  if (k == K_REPORT && slot == R_PULLS) {
    *elem = K_PULL;
    *max = PT_REPORT_MAX_PULLS;
  } else if (k == K_REPORT && slot == R_UNATTR) {
    *elem = K_UNATTR;
    *max = PT_REPORT_MAX_UNATTRIBUTED;
  } else if (k == K_PULL && slot == P_LAYERS) {
    *elem = K_LAYER;
    *max = PT_REPORT_MAX_LAYERS;
  } else {
    return false;
  }
  return true;
}

static bool member_is(const struct member *m, const unsigned char *key, size_t len)
{
  if (m->len != len || m->name[0] != (char)key[0])
    return false;
  /* Names are short: a loop, not a call. */
  size_t j = 1;
  while (j < len && m->name[j] == (char)key[j])
    j++;
  return j == len;
}

/* The slot of a key, -1 for none. An agent writes the members in the
 * schema's order, so the one after the previous key's (`next`) is tried
 * first. */
static int member_slot(enum kind k, int next, const unsigned char *key, size_t len)
{
  if (len == 0)
    return -1;
  if (next >= 0 && next < MAX_SLOTS && members[k][next].name && member_is(&members[k][next], key, len))
    return next;
  for (int i = 0; members[k][i].name; i++)
    if (member_is(&members[k][i], key, len))
      return i;
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Pass 1: the walk's callbacks                                              */

struct frame {
  bool is_object;
  bool known;          /* an object of `kind`, or a kept array of `kind` elements */
  enum kind kind;
  struct robj *obj;    /* known object */
  int slot;            /* known object: the slot of the current key, -1 unknown */
  struct slot *arr;    /* kept array */
  size_t arr_max;
  uint64_t id;         /* objects: for the duplicate-key set */
};

struct pass1 {
  struct pt_report_arena *arena;
  struct frame *stack;
  size_t depth, cap;
  struct robj *root;
  enum vtype root_type;
  uint64_t next_id;
  struct pt_map unknown_keys; /* "<object id>:<key>" of keys no slot takes */
  char error[128];            /* a JSON-level error found by a callback */
};

static bool fail1(struct pass1 *p, const char *msg)
{
  snprintf(p->error, sizeof(p->error), "%s", msg);
  return false;
}

/* The walk stops at PT_JSON_MAX_DEPTH: the stack grows that far at most. */
static struct frame *push(struct pass1 *p, bool is_object)
{
  if (p->depth == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    struct frame *s = realloc(p->stack, cap * sizeof(*s));
    if (!s) {
      fail1(p, "out of memory");
      return NULL;
    }
    p->stack = s;
    p->cap = cap;
  }
  struct frame *f = &p->stack[p->depth++];
  memset(f, 0, sizeof(*f));
  f->is_object = is_object;
  f->slot = -1;
  if (is_object)
    f->id = p->next_id++;
  return f;
}

/* Where the next value goes: a slot, or nowhere (*out NULL). A new element
 * of a kept array gets its robj here (*elem, NULL past the limit). */
static bool target(struct pass1 *p, struct slot **out, struct robj **elem, enum kind *elem_kind)
{
  *out = NULL;
  *elem = NULL;
  if (p->depth == 0)
    return true;
  struct frame *f = &p->stack[p->depth - 1];
  if (!f->known)
    return true;
  if (f->is_object) {
    if (f->slot >= 0)
      *out = &f->obj->m[f->slot];
    return true;
  }
  f->arr->count++;
  if (f->arr->count > f->arr_max + 1)
    return true;
  struct robj *o = arena_zalloc(p->arena, sizeof(*o));
  if (!o)
    return fail1(p, "out of memory");
  if (f->arr->tail)
    f->arr->tail->next = o;
  else
    f->arr->head = o;
  f->arr->tail = o;
  *elem = o;
  *elem_kind = f->kind;
  return true;
}

static bool scalar(struct pass1 *p, enum vtype t, struct slot **out)
{
  struct robj *elem;
  enum kind ek;
  if (p->depth == 0)
    return fail1(p, "'[' or '{' expected");
  if (!target(p, out, &elem, &ek))
    return false;
  if (elem)
    elem->elem_type = t;
  if (*out)
    (*out)->t = t;
  return true;
}

static bool cb_null(void *ctx)
{
  struct slot *s;
  return scalar(ctx, V_NULL, &s);
}

static bool cb_boolean(void *ctx, bool v)
{
  struct slot *s;
  if (!scalar(ctx, V_BOOL, &s))
    return false;
  if (s)
    s->b = v;
  return true;
}

static bool cb_integer(void *ctx, int64_t v)
{
  struct slot *s;
  if (!scalar(ctx, V_INT, &s))
    return false;
  if (s)
    s->i = v;
  return true;
}

/* The value of a real is never used: no member is a real. */
static bool cb_real(void *ctx, double v)
{
  struct slot *s;
  return scalar(ctx, V_REAL, &s);
}

/* Whether the len bytes at s are all ASCII other than NUL, eight at a time:
 * nearly every string of a report (digests, names, times), which then needs
 * no NUL check. */
static bool plain_ascii(const unsigned char *s, size_t len)
{
  const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
  size_t i = 0;
  for (; len - i >= 8; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    /* A byte with its high bit set, or a zero byte. */
    if ((w & highs) || ((w - ones) & ~w & highs))
      return false;
  }
  for (; i < len; i++)
    if (s[i] == 0 || s[i] >= 0x80)
      return false;
  return true;
}

/* The document is well-formed UTF-8 (simdjson checks it, and the surrogates
 * of escapes): only an escaped NUL is left to refuse. */
static bool cb_string(void *ctx, const char *str, size_t len)
{
  struct pass1 *p = ctx;
  if (!plain_ascii((const unsigned char *)str, len) && memchr(str, '\0', len))
    return fail1(p, "\\u0000 is not allowed in strings");
  struct slot *s;
  if (!scalar(p, V_STRING, &s))
    return false;
  if (!s)
    return true;
  char *c = arena_alloc(p->arena, len + 1);
  if (!c)
    return fail1(p, "out of memory");
  memcpy(c, str, len);
  c[len] = '\0';
  s->s = c;
  s->len = len;
  return true;
}

/* A container value (not the document itself): its type goes where the
 * value goes, and it gets a frame. *kind and *slot say what held it (read
 * before the push, which may move the stack). */
static struct frame *open_container(struct pass1 *p, enum vtype t, struct robj **elem, enum kind *ek,
                                    enum kind *kind, int *slot, struct slot **s)
{
  if (!target(p, s, elem, ek))
    return NULL;
  if (*s)
    (*s)->t = t;
  if (*elem)
    (*elem)->elem_type = t;
  *kind = p->stack[p->depth - 1].kind;
  *slot = p->stack[p->depth - 1].slot;
  return push(p, t == V_OBJECT);
}

static bool cb_start_object(void *ctx)
{
  struct pass1 *p = ctx;
  if (p->depth == 0) {
    p->root_type = V_OBJECT;
    struct frame *f = push(p, true);
    if (!f || !(p->root = arena_zalloc(p->arena, sizeof(*p->root))))
      return p->error[0] ? false : fail1(p, "out of memory");
    f->known = true;
    f->kind = K_REPORT;
    f->obj = p->root;
    return true;
  }
  struct slot *s;
  struct robj *elem;
  enum kind ek, k;
  int slot;
  struct frame *f = open_container(p, V_OBJECT, &elem, &ek, &k, &slot, &s);
  if (!f)
    return false;
  enum kind okind;
  if (elem) {
    f->known = true;
    f->kind = ek;
    f->obj = elem;
  } else if (s && kept_object(k, slot, &okind)) {
    if (!(s->obj = arena_zalloc(p->arena, sizeof(*s->obj))))
      return fail1(p, "out of memory");
    f->known = true;
    f->kind = okind;
    f->obj = s->obj;
  }
  return true;
}

static bool cb_key(void *ctx, const char *key, size_t len)
{
  struct pass1 *p = ctx;
  struct frame *f = &p->stack[p->depth - 1];
  /* A member's name is ASCII without NUL: only other keys need the check. */
  f->slot = f->known ? member_slot(f->kind, f->slot + 1, (const unsigned char *)key, len) : -1;
  if (f->slot >= 0) {
    if (f->obj->m[f->slot].t != V_ABSENT)
      return fail1(p, "duplicate object key");
    return true;
  }
  if (memchr(key, '\0', len))
    return fail1(p, "\\u0000 is not allowed in object keys");
  /* Keys no slot takes are rare (extensions): a set keeps their check
   * linear however many there are. */
  char buf[256];
  size_t need = 24 + len;
  char *k = need <= sizeof(buf) ? buf : malloc(need);
  if (!k)
    return fail1(p, "out of memory");
  int n = snprintf(k, need, "%llu:", (unsigned long long)f->id);
  memcpy(k + n, key, len);
  k[n + len] = '\0';
  bool rc = true;
  if (pt_map_get(&p->unknown_keys, k))
    rc = fail1(p, "duplicate object key");
  else if (pt_map_put(&p->unknown_keys, k, p) != 0)
    rc = fail1(p, "out of memory");
  if (k != buf)
    free(k);
  return rc;
}

static bool cb_end(void *ctx)
{
  struct pass1 *p = ctx;
  p->depth--;
  return true;
}

static bool cb_start_array(void *ctx)
{
  struct pass1 *p = ctx;
  if (p->depth == 0) {
    p->root_type = V_ARRAY;
    return push(p, false) != NULL;
  }
  struct slot *s;
  struct robj *elem;
  enum kind ek, k;
  int slot;
  struct frame *f = open_container(p, V_ARRAY, &elem, &ek, &k, &slot, &s);
  if (!f)
    return false;
  enum kind ekind;
  size_t max;
  if (s && kept_array(k, slot, &ekind, &max)) {
    f->known = true;
    f->kind = ekind;
    f->arr = s;
    f->arr_max = max;
  }
  return true;
}

static const struct pt_json_walker callbacks = {
  .null_value = cb_null,
  .boolean = cb_boolean,
  .integer = cb_integer,
  .real = cb_real,
  .string = cb_string,
  .start_object = cb_start_object,
  .key = cb_key,
  .end_object = cb_end,
  .start_array = cb_start_array,
  .end_array = cb_end,
};

/* ------------------------------------------------------------------------ */
/* Pass 2: validation in the schema's order                                  */

/* Where validation is: the path of an error ("pulls[2].layers[0]") is only
 * written when there is one. */
struct ctx {
  char *err;
  size_t errlen;
  char *field;
  size_t fieldlen;
  enum kind kind;     /* the object being validated */
  size_t pull, layer, unattr;
  struct pt_report_arena *arena;
};

static void path_of(const struct ctx *c, char *out, size_t len)
{
  switch (c->kind) {
  case K_PULL:
    snprintf(out, len, "pulls[%zu]", c->pull);
    break;
  case K_LAYER:
    snprintf(out, len, "pulls[%zu].layers[%zu]", c->pull, c->layer);
    break;
  case K_UNATTR:
    snprintf(out, len, "unattributed[%zu]", c->unattr);
    break;
  case K_CTRD:
    snprintf(out, len, "containerd");
    break;
  default:
    out[0] = '\0';
  }
}

static int bad(struct ctx *c, const char *member, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct ctx *c, const char *member, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  char path[128];
  path_of(c, path, sizeof(path));
  if (member && *path)
    snprintf(c->field, c->fieldlen, "%s.%s", path, member);
  else
    snprintf(c->field, c->fieldlen, "%s", member ? member : path);
  return -EINVAL;
}

/* No control character (below 0x20, or DEL) in the len bytes at s; eight
 * bytes at a time, a word that may hold one checked byte by byte. */
static bool printable(const char *s, size_t len)
{
  const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
  size_t i = 0;
  for (; len - i >= 8; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    uint64_t del = w ^ (ones * 0x7f);
    /* A byte below 0x20, or a zero byte of w ^ 0x7f..7f (a DEL), sets its high bit. */
    if (((w - ones * 0x20) & ~w & highs) || ((del - ones) & ~del & highs))
      break;
  }
  for (; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return false;
  return true;
}

#define NAME(c, k) members[(c)->kind][k].name

/* A required string (nullable when allow_null) of at most maxlen bytes. */
static int get_str(struct ctx *c, const struct robj *o, int k, bool allow_null, size_t maxlen, const char **out)
{
  const struct slot *v = &o->m[k];
  if (v->t == V_ABSENT)
    return bad(c, NAME(c, k), "missing member");
  if (v->t == V_NULL) {
    if (!allow_null)
      return bad(c, NAME(c, k), "must be a string, not null");
    *out = NULL;
    return 0;
  }
  if (v->t != V_STRING)
    return bad(c, NAME(c, k), "must be a string");
  if (v->len == 0)
    return bad(c, NAME(c, k), "must not be empty");
  if (v->len > maxlen)
    return bad(c, NAME(c, k), "longer than %zu bytes", maxlen);
  if (!printable(v->s, v->len))
    return bad(c, NAME(c, k), "contains control characters");
  *out = v->s;
  return 0;
}

static int get_digest(struct ctx *c, const struct robj *o, int k, bool allow_null, const char **out)
{
  int r = get_str(c, o, k, allow_null, 256, out);
  if (r)
    return r;
  if (*out && !pt_digest_valid(*out))
    return bad(c, NAME(c, k), "not a digest (algorithm:hex)");
  return 0;
}

/* A layer's digest, its bytes when it is a sha256 one: the store compares
 * them with its layers' on every report. */
static int get_layer_digest(struct ctx *c, const struct robj *o, struct pt_report_layer *l)
{
  int r = get_str(c, o, L_DIGEST, false, 256, &l->digest);
  if (r)
    return r;
  l->is_sha256 = pt_digest_sha256(l->digest, l->sha256);
  if (!l->is_sha256 && !pt_digest_valid(l->digest))
    return bad(c, NAME(c, L_DIGEST), "not a digest (algorithm:hex)");
  return 0;
}

static int get_int(struct ctx *c, const struct robj *o, int k, int64_t min, int64_t *out)
{
  const struct slot *v = &o->m[k];
  if (v->t == V_ABSENT)
    return bad(c, NAME(c, k), "missing member");
  if (v->t != V_INT)
    return bad(c, NAME(c, k), "must be an integer");
  if (v->i < min)
    return bad(c, NAME(c, k), "must be >= %lld", (long long)min);
  *out = v->i;
  return 0;
}

static int get_bool(struct ctx *c, const struct robj *o, int k, bool *out)
{
  const struct slot *v = &o->m[k];
  if (v->t == V_ABSENT)
    return bad(c, NAME(c, k), "missing member");
  if (v->t != V_BOOL)
    return bad(c, NAME(c, k), "must be a boolean");
  *out = v->b;
  return 0;
}

static int get_time(struct ctx *c, const struct robj *o, int k, bool allow_null, double *out)
{
  const struct slot *v = &o->m[k];
  if (v->t == V_ABSENT)
    return bad(c, NAME(c, k), "missing member");
  if (v->t == V_NULL) {
    if (!allow_null)
      return bad(c, NAME(c, k), "must be an RFC 3339 time, not null");
    *out = 0;
    return 0;
  }
  if (v->t != V_STRING || pt_time_parse(v->s, out) < 0)
    return bad(c, NAME(c, k), "must be an RFC 3339 time");
  if (*out <= 0)
    return bad(c, NAME(c, k), "must be after 1970");
  return 0;
}

static int get_array(struct ctx *c, const struct robj *o, int k, size_t max, const struct slot **out)
{
  const struct slot *v = &o->m[k];
  if (v->t == V_ABSENT)
    return bad(c, NAME(c, k), "missing member");
  if (v->t != V_ARRAY)
    return bad(c, NAME(c, k), "must be an array");
  if (v->count > max)
    return bad(c, NAME(c, k), "more than %zu entries", max);
  *out = v;
  return 0;
}

static int parse_layer(struct ctx *c, const struct robj *o, struct pt_report_layer *l)
{
  int r;
  c->kind = K_LAYER;
  if (o->elem_type != V_OBJECT)
    return bad(c, NULL, "must be an object");
  if ((r = get_layer_digest(c, o, l)) ||
      (r = get_str(c, o, L_MEDIA_TYPE, true, 256, &l->media_type)) ||
      (r = get_int(c, o, L_TOTAL, 0, &l->total)) ||
      (r = get_int(c, o, L_DOWNLOADED, 0, &l->downloaded)))
    return r;
  const char *st;
  if ((r = get_str(c, o, L_STATE, false, 32, &st)))
    return r;
  if (pt_layer_state_parse(st, &l->state))
    return bad(c, "state", "must be one of waiting, downloading, stalled, done, cached");
  if ((r = get_time(c, o, L_STARTED, true, &l->started_at)) ||
      (r = get_time(c, o, L_UPDATED, true, &l->updated_at)))
    return r;
  if (l->total > 0 && l->downloaded > l->total)
    return bad(c, "downloadedBytes", "greater than totalBytes");
  return 0;
}

static int parse_pull(struct ctx *c, const struct robj *o, struct pt_report_pull *p)
{
  int r;
  c->kind = K_PULL;
  if (o->elem_type != V_OBJECT)
    return bad(c, NULL, "must be an object");
  if ((r = get_str(c, o, P_ID, false, 256, &p->id)) ||
      (r = get_str(c, o, P_IMAGE_REF, true, 1024, &p->image_ref)) ||
      (r = get_digest(c, o, P_MANIFEST, false, &p->manifest_digest)) ||
      (r = get_digest(c, o, P_INDEX, true, &p->index_digest)) ||
      (r = get_time(c, o, P_STARTED, true, &p->started_at)) ||
      (r = get_time(c, o, P_COMPLETED, true, &p->completed_at)))
    return r;
  const struct slot *layers;
  if ((r = get_bool(c, o, P_TOTAL_KNOWN, &p->total_known)) ||
      (r = get_int(c, o, P_TOTAL, 0, &p->total)) ||
      (r = get_int(c, o, P_DOWNLOADED, 0, &p->downloaded)) ||
      (r = get_array(c, o, P_LAYERS, PT_REPORT_MAX_LAYERS, &layers)))
    return r;
  if (p->total_known && p->downloaded > p->total)
    return bad(c, "downloadedBytes", "greater than totalBytes");
  p->nlayers = layers->count;
  p->layers = p->nlayers ? arena_zalloc(c->arena, p->nlayers * sizeof(*p->layers)) : NULL;
  if (p->nlayers && !p->layers)
    return bad(c, NULL, "out of memory");
  const struct robj *e = layers->head;
  for (size_t i = 0; i < p->nlayers; i++, e = e->next) {
    c->layer = i;
    if ((r = parse_layer(c, e, &p->layers[i])))
      return r;
  }
  return 0;
}

static int parse_unattr(struct ctx *c, const struct robj *o, struct pt_report_unattributed *u)
{
  int r;
  c->kind = K_UNATTR;
  if (o->elem_type != V_OBJECT)
    return bad(c, NULL, "must be an object");
  if ((r = get_str(c, o, U_REF, false, 512, &u->ref)) ||
      (r = get_str(c, o, U_KIND, false, 32, &u->kind)) ||
      (r = get_digest(c, o, U_DIGEST, true, &u->digest)) ||
      (r = get_int(c, o, U_TOTAL, 0, &u->total)) ||
      (r = get_int(c, o, U_DOWNLOADED, 0, &u->downloaded)) ||
      (r = get_time(c, o, U_STARTED, true, &u->started_at)) ||
      (r = get_time(c, o, U_UPDATED, true, &u->updated_at)))
    return r;
  static const char *const kinds[] = {"layer", "config", "manifest", "index", "attestation", "unknown"};
  bool ok = false;
  for (size_t i = 0; i < 6; i++)
    ok |= strcmp(u->kind, kinds[i]) == 0;
  if (!ok)
    return bad(c, "kind", "must be one of layer, config, manifest, index, attestation, unknown");
  return 0;
}

/* Optional: absent means containerd answered (agents before this member
 * never sent it). */
static int parse_containerd(struct ctx *c, const struct slot *v, struct pt_report *out)
{
  int r;
  out->containerd_reachable = true;
  if (v->t == V_ABSENT)
    return 0;
  if (v->t != V_OBJECT)
    return bad(c, "containerd", "must be an object");
  c->kind = K_CTRD;
  const struct robj *o = v->obj;
  if ((r = get_bool(c, o, C_REACHABLE, &out->containerd_reachable)))
    return r;
  if (out->containerd_reachable) {
    /* Nothing to say about an answering containerd: a stale since or error
     * there would be a bug of the sender. */
    for (int k = C_SINCE; k <= C_ERROR; k++)
      if (o->m[k].t != V_ABSENT && o->m[k].t != V_NULL)
        return bad(c, NAME(c, k), "must be null while reachable is true");
    return 0;
  }
  if ((r = get_time(c, o, C_SINCE, false, &out->containerd_since)) ||
      (r = get_str(c, o, C_ERROR, false, PT_REPORT_MAX_CONTAINERD_ERROR, &out->containerd_error)))
    return r;
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

static int validate(struct ctx *c, const struct robj *root, struct pt_report *out)
{
  int r;
  c->kind = K_REPORT;
  const char *sv;
  if ((r = get_str(c, root, R_SCHEMA, false, 16, &sv)))
    return r;
  if (strcmp(sv, "v1") != 0)
    return bad(c, "schemaVersion", "unsupported schema version \"%s\" (this server reads v1)", sv);
  const struct slot *pulls, *unattr;
  if ((r = get_str(c, root, R_NODE, false, 253, &out->node)))
    return r;
  if (!node_name_valid(out->node))
    return bad(c, "nodeName", "must contain only letters, digits, '-', '.' and '_'");
  if ((r = get_str(c, root, R_AGENT, false, 64, &out->agent_version)) ||
      (r = get_str(c, root, R_BOOT, false, 128, &out->boot_id)) ||
      (r = get_int(c, root, R_SEQ, 1, &out->seq)) ||
      (r = get_time(c, root, R_TIMESTAMP, false, &out->timestamp)) ||
      (r = get_array(c, root, R_PULLS, PT_REPORT_MAX_PULLS, &pulls)) ||
      (r = get_array(c, root, R_UNATTR, PT_REPORT_MAX_UNATTRIBUTED, &unattr)))
    return r;
  out->npulls = pulls->count;
  out->pulls = out->npulls ? arena_zalloc(c->arena, out->npulls * sizeof(*out->pulls)) : NULL;
  out->nunattributed = unattr->count;
  out->unattributed =
    out->nunattributed ? arena_zalloc(c->arena, out->nunattributed * sizeof(*out->unattributed)) : NULL;
  if ((out->npulls && !out->pulls) || (out->nunattributed && !out->unattributed))
    return bad(c, NULL, "out of memory");
  const struct robj *e = pulls->head;
  for (size_t i = 0; i < out->npulls; i++, e = e->next) {
    c->pull = i;
    if ((r = parse_pull(c, e, &out->pulls[i])))
      return r;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(out->pulls[j].id, out->pulls[i].id) == 0) {
        c->kind = K_PULL;
        return bad(c, "id", "duplicate pull id (also pulls[%zu])", j);
      }
    }
  }
  e = unattr->head;
  for (size_t i = 0; i < out->nunattributed; i++, e = e->next) {
    c->unattr = i;
    if ((r = parse_unattr(c, e, &out->unattributed[i])))
      return r;
  }
  c->kind = K_REPORT;
  return parse_containerd(c, &root->m[R_CTRD], out);
}

/* ------------------------------------------------------------------------ */

/* Where a body that is not JSON goes wrong: simdjson does not say, so on
 * this rare path jansson reads it again for the byte (-1 when jansson finds
 * nothing wrong: the rules differ at the edges). Duplicate keys and NUL are
 * let through there: those are the walk's errors, not simdjson's, and
 * jansson stopping at one would name another fault's byte. */
static long error_position(const char *body, size_t len)
{
  json_error_t je;
  json_t *doc = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (doc) {
    json_decref(doc);
    return -1;
  }
  return (long)je.position;
}

static int parse_json(struct pass1 *p, const char *body, size_t len, char *err, size_t errlen)
{
  char why[160];
  switch (pt_json_walk(body, len, &callbacks, p, why, sizeof(why))) {
  case PT_JSON_WALKED:
    return 0;
  case PT_JSON_TOO_DEEP:
    /* jansson nests deeper than simdjson: its byte would be another fault's. */
    snprintf(err, errlen, "invalid JSON: %s", why);
    return -EINVAL;
  case PT_JSON_INVALID: {
    long at = error_position(body, len);
    if (at >= 0)
      snprintf(err, errlen, "invalid JSON: %s (near byte %ld)", why, at);
    else
      snprintf(err, errlen, "invalid JSON: %s", why);
    return -EINVAL;
  }
  case PT_JSON_STOPPED:
    snprintf(err, errlen, "invalid JSON: %s", p->error);
    return -EINVAL;
  default:
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
}

int pt_report_parse(const char *body, size_t len, struct pt_report *out,
                    char *err, size_t errlen, char *field, size_t fieldlen)
{
  memset(out, 0, sizeof(*out));
  err[0] = '\0';
  field[0] = '\0';
  struct pass1 p = {0};
  pt_map_init(&p.unknown_keys);
  p.arena = calloc(1, sizeof(*p.arena));
  if (!p.arena) {
    snprintf(err, errlen, "out of memory");
    return -EINVAL;
  }
  int r = parse_json(&p, body, len, err, errlen);
  free(p.stack);
  pt_map_close(&p.unknown_keys);
  if (r == 0 && p.root_type != V_OBJECT) {
    snprintf(err, errlen, "the report must be a JSON object");
    r = -EINVAL;
  }
  if (r == 0) {
    struct ctx c = {.err = err, .errlen = errlen, .field = field, .fieldlen = fieldlen, .arena = p.arena};
    r = validate(&c, p.root, out);
  }
  if (r) {
    memset(out, 0, sizeof(*out));
    arena_free(p.arena);
    return -EINVAL;
  }
  out->arena = p.arena;
  return 0;
}

void pt_report_free(struct pt_report *r)
{
  if (!r)
    return;
  arena_free(r->arena);
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
  shift(&r->containerd_since, offset);
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
