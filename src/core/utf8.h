#ifndef PT_CORE_UTF8_H
#define PT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is well-formed UTF-8 as RFC 3629 defines it: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. yajl's own
 * check lets overlong forms through; jansson, browsers' JSON.parse and the
 * other readers of what the server writes do not, so input is held to the
 * strict rule before it is kept. */
bool pt_utf8_valid(const unsigned char *s, size_t len);

/* The length of s cut to at most max bytes without splitting a character
 * (s is UTF-8 and NUL-terminated): for fields with a byte limit. */
size_t pt_utf8_prefix(const char *s, size_t max);

#endif
