/* Small helpers over jansson for strict reading of JSON documents. */
#ifndef PT_CORE_JSON_H
#define PT_CORE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Object member of the given type, or NULL when missing or of another type. */
const char *pt_json_str(const json_t *obj, const char *key);
/* Non-negative integer member; returns 0 and sets *out, or -EINVAL. */
int pt_json_uint(const json_t *obj, const char *key, int64_t *out);
/* Serialises compactly; the caller frees. */
char *pt_json_dump(const json_t *v);

#endif
