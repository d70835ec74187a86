#include "core/json.h"

#include <errno.h>

const char *pt_json_str(const json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

int pt_json_uint(const json_t *obj, const char *key, int64_t *out)
{
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -EINVAL;
  *out = json_integer_value(v);
  return 0;
}

char *pt_json_dump(const json_t *v)
{
  return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}
