#ifndef PT_CORE_UTF8_H
#define PT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length of s cut to at most max bytes without splitting a character
 * (s is UTF-8 and NUL-terminated): for fields with a byte limit. */
size_t pt_utf8_prefix(const char *s, size_t max);

#endif
