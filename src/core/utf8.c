#include "core/utf8.h"

#include <string.h>

size_t pt_utf8_prefix(const char *s, size_t max)
{
  size_t n = strnlen(s, max + 1);
  if (n <= max)
    return n;
  /* Back over continuation bytes to the start of the cut character. */
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  return max;
}
