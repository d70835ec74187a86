/* A JSON document checked whole by simdjson (RFC 8259: UTF-8 as RFC 3629
 * defines it, no unescaped control character in a string, only whitespace
 * after the document, integers within 64 bits, reals within a double's
 * range), then walked in document order through callbacks, as a streaming
 * parser would call them, with nothing allocated per value.
 *
 * Duplicate keys are handed on as they come: telling them apart is the
 * caller's (the report parser files members into slots and sees a slot
 * filled twice). */
#ifndef PT_SERVER_JSON_WALK_H
#define PT_SERVER_JSON_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nesting deeper than this is a parse error. */
#define PT_JSON_MAX_DEPTH 1024

/* Each returns true to go on, false to stop the walk (the caller keeps its
 * own reason). Strings and keys are unescaped, not NUL-terminated, and only
 * valid during the call. An integer above INT64_MAX is a parse error, not a
 * call. */
struct pt_json_walker {
  bool (*null_value)(void *ud);
  bool (*boolean)(void *ud, bool v);
  bool (*integer)(void *ud, int64_t v);
  bool (*real)(void *ud, double v);
  bool (*string)(void *ud, const char *s, size_t len);
  bool (*start_object)(void *ud);
  bool (*key)(void *ud, const char *s, size_t len);
  bool (*end_object)(void *ud);
  bool (*start_array)(void *ud);
  bool (*end_array)(void *ud);
};

enum pt_json_walk_result {
  PT_JSON_WALKED = 0,  /* the whole document was walked */
  PT_JSON_INVALID,     /* not a JSON document: err says why */
  PT_JSON_TOO_DEEP,    /* nested deeper than PT_JSON_MAX_DEPTH: err says so */
  PT_JSON_STOPPED,     /* a callback returned false */
  PT_JSON_NO_MEMORY,
};

/* Parses body[0..len) and walks it. The parser's buffers are kept for the
 * next document of the calling thread, unless this one was over 256 KiB
 * (they grow with the document, about 14 bytes per byte: a report of a few
 * pulls keeps a few hundred KiB, a rare huge one does not stay). */
enum pt_json_walk_result pt_json_walk(const char *body, size_t len, const struct pt_json_walker *w, void *ud,
                                      char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
