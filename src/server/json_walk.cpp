/* pt_json_walk: simdjson's DOM parser checks the whole document (and builds
 * its tape in buffers it reuses), then the tape is walked in document order.
 * See json_walk.h. */
#include "server/json_walk.h"

#include <cstdio>
#include <memory>
#include <new>
#include <simdjson.h>

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

/* Documents up to this size leave the parser's buffers in place for the
 * next one; a larger one frees them (they hold about 14 bytes per byte). */
constexpr size_t KEEP_CAPACITY = 256 << 10;

#define TEXT_OF(n) #n
#define TEXT(n) TEXT_OF(n)

/* The parser's own limit, the one json_walk.h promises. */
static_assert(PT_JSON_MAX_DEPTH == simdjson::DEFAULT_MAX_DEPTH, "PT_JSON_MAX_DEPTH is simdjson's default depth");

/* What a document that is not JSON gets told: the cause in our words, simdjson's
 * where it has nothing better. */
const char *reason(simdjson::error_code e)
{
  switch (e) {
  case simdjson::DEPTH_ERROR:
    return "nested deeper than the maximum parsing depth (" TEXT(PT_JSON_MAX_DEPTH) ")";
  case simdjson::STRING_ERROR:
    return "a string has an invalid escape (or a lone surrogate)";
  case simdjson::T_ATOM_ERROR:
  case simdjson::F_ATOM_ERROR:
  case simdjson::N_ATOM_ERROR:
    return "a literal is not true, false or null";
  case simdjson::NUMBER_ERROR:
  case simdjson::NUMBER_OUT_OF_RANGE:
    return "a number is malformed or out of range (too big integer beyond 64 bits, or real number overflow)";
  case simdjson::UTF8_ERROR:
    return "the body is not well-formed UTF-8";
  case simdjson::EMPTY:
    return "no JSON value";
  case simdjson::UNESCAPED_CHARS:
    return "a control character in a string is not escaped";
  case simdjson::UNCLOSED_STRING:
    return "a string is not closed";
  case simdjson::TAPE_ERROR:
  case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
  case simdjson::TRAILING_CONTENT:
    return "misplaced or missing comma, colon, bracket or brace, or something after the document";
  default:
    return simdjson::error_message(e);
  }
}

struct walk {
  const pt_json_walker *w;
  void *ud;
  bool too_big; /* an integer above INT64_MAX (simdjson reads those up to UINT64_MAX) */

  bool value(element e)
  {
    switch (e.type()) {
    case element_type::OBJECT: {
      if (!w->start_object(ud))
        return false;
      simdjson::dom::object o = e.get_object().value_unsafe();
      for (auto field : o)
        if (!w->key(ud, field.key.data(), field.key.size()) || !value(field.value))
          return false;
      return w->end_object(ud);
    }
    case element_type::ARRAY: {
      if (!w->start_array(ud))
        return false;
      simdjson::dom::array a = e.get_array().value_unsafe();
      for (element v : a)
        if (!value(v))
          return false;
      return w->end_array(ud);
    }
    case element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      return w->string(ud, s.data(), s.size());
    }
    case element_type::INT64:
      return w->integer(ud, e.get_int64().value_unsafe());
    case element_type::DOUBLE:
      return w->real(ud, e.get_double().value_unsafe());
    case element_type::BOOL:
      return w->boolean(ud, e.get_bool().value_unsafe());
    case element_type::NULL_VALUE:
      return w->null_value(ud);
    case element_type::UINT64: /* only above INT64_MAX: a parse error, as with jansson */
      too_big = true;
      break;
    }
    return false;
  }
};

thread_local std::unique_ptr<simdjson::dom::parser> parser;

} // namespace

extern "C" enum pt_json_walk_result pt_json_walk(const char *body, size_t len, const struct pt_json_walker *w,
                                                 void *ud, char *err, size_t errlen)
{
  err[0] = '\0';
  try {
    if (!parser)
      parser = std::make_unique<simdjson::dom::parser>();
    element doc;
    simdjson::error_code e = parser->parse(body, len).get(doc);
    enum pt_json_walk_result r = PT_JSON_WALKED;
    if (e == simdjson::MEMALLOC || e == simdjson::CAPACITY) {
      std::snprintf(err, errlen, "%s", e == simdjson::MEMALLOC ? "out of memory" : "the body is too large");
      r = e == simdjson::MEMALLOC ? PT_JSON_NO_MEMORY : PT_JSON_INVALID;
    } else if (e) {
      std::snprintf(err, errlen, "%s", reason(e));
      r = e == simdjson::DEPTH_ERROR ? PT_JSON_TOO_DEEP : PT_JSON_INVALID;
    } else {
      walk wk{w, ud, false};
      if (!wk.value(doc)) {
        r = wk.too_big ? PT_JSON_INVALID : PT_JSON_STOPPED;
        if (wk.too_big)
          std::snprintf(err, errlen, "too big integer (beyond 64-bit signed)");
      }
    }
    if (parser->capacity() > KEEP_CAPACITY)
      parser.reset();
    return r;
  } catch (const std::bad_alloc &) {
    parser.reset();
    std::snprintf(err, errlen, "out of memory");
    return PT_JSON_NO_MEMORY;
  }
}
