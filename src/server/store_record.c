/* The persisted form of a pull (the history's record) and its way back into
 * the tables after a restart. Times are kept as the epoch seconds of the
 * tables, not as the API's formatted strings, so a restored pull shows the
 * same times and figures as before. */
#include "server/store.h"

#include <errno.h>
#include <math.h>

#include "server/store_impl.h"

static json_t *jstr(const char *s)
{
  return s ? json_string(s) : json_null();
}

json_t *pt_store_pull_record(const struct pt_pull *p)
{
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "id", json_string(p->id));
  json_object_set_new(o, "node", json_string(p->node));
  json_object_set_new(o, "imageRef", jstr(p->image_ref));
  /* The image is kept only when correlation gave it a tag imageRef lacks. */
  json_object_set_new(o, "image", store_streq(p->image, p->image_ref) ? json_null() : jstr(p->image));
  json_object_set_new(o, "manifestDigest", jstr(p->manifest_digest));
  json_object_set_new(o, "indexDigest", jstr(p->index_digest));
  json_object_set_new(o, "fromKubelet", json_boolean(p->from_kubelet));
  json_object_set_new(o, "state", json_string(pt_pull_state_name(p->state)));
  json_object_set_new(o, "times",
                      json_pack("[f,f,f,f,f,f,f]", p->started_at, p->completed_at, p->updated_at, p->last_seen_at,
                                p->finished_at, p->lost_at, p->stalled_since));
  json_object_set_new(o, "totalKnown", json_boolean(p->total_known));
  json_object_set_new(o, "total", json_integer(p->total));
  json_object_set_new(o, "downloaded", json_integer(p->downloaded));
  json_object_set_new(o, "bytesPerSecond", json_real(p->bytes_per_sec));
  json_object_set_new(o, "eta", json_real(p->eta));
  /* A row per layer, not an object (the member names would be a third of
   * a stored pull), and each media type once: layers name theirs by its
   * index in mediaTypes (-1: none). */
  json_t *layers = json_array(), *types = json_array();
  for (size_t i = 0; i < p->nlayers; i++) {
    const struct pt_layer *l = &p->layers[i];
    json_int_t type = -1;
    for (size_t k = 0; l->media_type && type < 0 && k < json_array_size(types); k++)
      if (strcmp(json_string_value(json_array_get(types, k)), l->media_type) == 0)
        type = (json_int_t)k;
    if (l->media_type && type < 0) {
      type = (json_int_t)json_array_size(types);
      json_array_append_new(types, json_string(l->media_type));
    }
    char db[PT_DIGEST_TEXT_MAX];
    json_array_append_new(layers, json_pack("[s,I,s,I,I,f,f]", pt_layer_digest(l, db), type, pt_layer_state_name(l->state),
                                            (json_int_t)l->total, (json_int_t)l->downloaded, l->started_at,
                                            l->updated_at));
  }
  json_object_set_new(o, "mediaTypes", types);
  json_object_set_new(o, "layers", layers);
  json_t *pods = json_array();
  for (size_t i = 0; i < p->npods; i++)
    json_array_append_new(pods, json_pack("{s:s,s:s,s:o}", "namespace", p->pods[i].ns, "name", p->pods[i].name,
                                          "container", jstr(p->pods[i].container)));
  json_object_set_new(o, "pods", pods);
  json_object_set_new(o, "error", p->error_reason ? json_pack("{s:s,s:o}", "reason", p->error_reason, "message",
                                                              jstr(p->error_message))
                                                  : json_null());
  json_object_set_new(o, "kubelet", json_pack("[f,f,f]", p->kubelet_pulled_at, p->kubelet_duration,
                                              p->kubelet_waiting));
  json_object_set_new(o, "resolvedError",
                      p->resolved_reason ? json_pack("{s:s,s:o,s:f,s:f}", "reason", p->resolved_reason, "message",
                                                     jstr(p->resolved_message), "failedAt", p->resolved_failed_at,
                                                     "resolvedAt", p->resolved_at)
                                         : json_null());
  return o;
}

/* ------------------------------------------------------------------------ */
/* Restore                                                                    */

static int get_str(const json_t *o, const char *key, bool required, char **out)
{
  const json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    *out = NULL;
    return required ? -EINVAL : 0;
  }
  if (!json_is_string(v))
    return -EINVAL;
  *out = strdup(json_string_value(v));
  return *out ? 0 : -ENOMEM;
}

static const char *str_or_empty(const json_t *v)
{
  const char *s = json_string_value(v);
  return s ? s : "";
}

static double num_at(const json_t *a, size_t i)
{
  const json_t *v = json_array_get(a, i);
  return json_is_number(v) ? json_number_value(v) : 0;
}

static int restore_layers(struct pt_store *s, struct pt_pull *p, const json_t *arr, const json_t *types)
{
  size_t n = json_array_size(arr);
  if (!n)
    return 0;
  p->layers = calloc(n, sizeof(*p->layers));
  if (!p->layers)
    return -ENOMEM;
  p->nlayers = n;
  for (size_t i = 0; i < n; i++) {
    const json_t *lj = json_array_get(arr, i);
    struct pt_layer *l = &p->layers[i];
    const char *digest = json_string_value(json_array_get(lj, 0));
    const json_t *type = json_array_get(lj, 1);
    const char *media_type =
      json_integer_value(type) >= 0 ? json_string_value(json_array_get(types, (size_t)json_integer_value(type))) : NULL;
    if (!digest || json_array_size(lj) != 7)
      return -EINVAL;
    bool failed = false;
    l->media_type = store_media_type_ref(s, media_type, &failed);
    if (failed || store_layer_set_digest(l, digest))
      return -ENOMEM;
    if (pt_layer_state_parse(str_or_empty(json_array_get(lj, 2)), &l->state) < 0)
      return -EINVAL;
    l->total = json_integer_value(json_array_get(lj, 3));
    l->downloaded = json_integer_value(json_array_get(lj, 4));
    l->started_at = num_at(lj, 5);
    l->updated_at = num_at(lj, 6);
  }
  return 0;
}

static int restore_pods(struct pt_pull *p, const json_t *arr)
{
  size_t n = json_array_size(arr);
  if (!n)
    return 0;
  p->pods = calloc(n, sizeof(*p->pods));
  if (!p->pods)
    return -ENOMEM;
  p->npods = n;
  for (size_t i = 0; i < n; i++) {
    const json_t *pj = json_array_get(arr, i);
    int r;
    if ((r = get_str(pj, "namespace", true, &p->pods[i].ns)) || (r = get_str(pj, "name", true, &p->pods[i].name)) ||
        (r = get_str(pj, "container", false, &p->pods[i].container)))
      return r;
  }
  return 0;
}

static int restore_fields(struct pt_pull *p, const json_t *rec)
{
  int r;
  if ((r = get_str(rec, "imageRef", false, &p->image_ref)) || (r = get_str(rec, "image", false, &p->image)) ||
      (!p->image && p->image_ref && !(p->image = strdup(p->image_ref)) && (r = -ENOMEM)) ||
      (r = get_str(rec, "manifestDigest", false, &p->manifest_digest)) ||
      (r = get_str(rec, "indexDigest", false, &p->index_digest)))
    return r;
  if (pt_pull_state_parse(str_or_empty(json_object_get(rec, "state")), &p->state) < 0)
    return -EINVAL;
  p->from_kubelet = json_is_true(json_object_get(rec, "fromKubelet"));
  const json_t *t = json_object_get(rec, "times");
  if (!json_is_array(t))
    return -EINVAL;
  p->started_at = num_at(t, 0);
  p->completed_at = num_at(t, 1);
  p->updated_at = num_at(t, 2);
  p->last_seen_at = num_at(t, 3);
  p->finished_at = num_at(t, 4);
  p->lost_at = num_at(t, 5);
  p->stalled_since = num_at(t, 6);
  p->total_known = json_is_true(json_object_get(rec, "totalKnown"));
  p->total = json_integer_value(json_object_get(rec, "total"));
  p->downloaded = json_integer_value(json_object_get(rec, "downloaded"));
  p->bytes_per_sec = json_number_value(json_object_get(rec, "bytesPerSecond"));
  const json_t *eta = json_object_get(rec, "eta");
  p->eta = json_is_number(eta) ? json_number_value(eta) : -1;
  if ((r = restore_layers(NULL, p, json_object_get(rec, "layers"), json_object_get(rec, "mediaTypes"))) || (r = restore_pods(p, json_object_get(rec, "pods"))))
    return r;
  const json_t *err = json_object_get(rec, "error");
  if (json_is_object(err) && ((r = get_str(err, "reason", true, &p->error_reason)) ||
                              (r = get_str(err, "message", false, &p->error_message))))
    return r;
  const json_t *k = json_object_get(rec, "kubelet");
  p->kubelet_pulled_at = num_at(k, 0);
  p->kubelet_duration = json_array_size(k) == 3 ? num_at(k, 1) : -1;
  p->kubelet_waiting = json_array_size(k) == 3 ? num_at(k, 2) : -1;
  const json_t *re = json_object_get(rec, "resolvedError");
  if (json_is_object(re)) {
    if ((r = get_str(re, "reason", true, &p->resolved_reason)) ||
        (r = get_str(re, "message", false, &p->resolved_message)))
      return r;
    p->resolved_failed_at = json_number_value(json_object_get(re, "failedAt"));
    p->resolved_at = json_number_value(json_object_get(re, "resolvedAt"));
  }
  return 0;
}

struct pt_pull *pt_pull_from_record(const json_t *rec, int *err)
{
  /* The id and the node are part of the pull's own block (store_pull_new). */
  const char *id = json_string_value(json_object_get(rec, "id"));
  const char *node = json_string_value(json_object_get(rec, "node"));
  struct pt_pull *p = id && node ? store_pull_new(id, node) : NULL;
  int r = !id || !node ? -EINVAL : !p ? -ENOMEM : restore_fields(p, rec);
  if (r < 0) {
    store_pull_free(NULL, p);
    p = NULL;
  }
  if (err)
    *err = r;
  return p;
}

void pt_pull_free(struct pt_pull *p)
{
  store_pull_free(NULL, p);
}

int pt_store_restore_pull(struct pt_store *s, const json_t *rec, double now)
{
  int r;
  struct pt_pull *p = pt_pull_from_record(rec, &r);
  if (!p)
    return r;
  /* Into the store: its layers share the store's media types. */
  for (size_t i = 0; i < p->nlayers; i++) {
    bool failed = false;
    const char *shared = store_media_type_ref(s, p->layers[i].media_type, &failed);
    if (failed) {
      for (size_t k = 0; k < i; k++)
        store_media_type_unref(s, p->layers[k].media_type);
      for (size_t k = 0; k < i; k++)
        p->layers[k].media_type = NULL; /* given back above; the rest are the pull's own */
      store_pull_free(NULL, p);
      return -ENOMEM;
    }
    free((char *)p->layers[i].media_type);
    p->layers[i].media_type = shared;
  }
  if (pt_map_get(&s->pulls, p->id)) {
    store_pull_free(s, p);
    return -EEXIST;
  }
  /* A pull in flight gets the node's grace period from now: its agent has
   * not had a chance to report it to this process yet. */
  if (pull_is_active(p) && p->last_seen_at < now)
    p->last_seen_at = now;
  if ((r = store_add_pull(s, p)) < 0)
    return r;
  s->counters.pulls_restored++;
  return 0;
}

void pt_store_foreach_pull(const struct pt_store *s, void (*fn)(void *ud, const struct pt_pull *p), void *ud)
{
  for (struct pt_map_entry *e = pt_map_first(&s->pulls); e; e = pt_map_next(&s->pulls, e))
    fn(ud, e->value);
}
