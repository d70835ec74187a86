#include "core/utf8.h"

#include <string.h>

#include <stdint.h>
#include <string.h>

bool pt_utf8_valid(const unsigned char *s, size_t len)
{
  size_t i = 0;
  while (i < len) {
    /* Runs of ASCII (nearly all of a report: digests, names, times) eight
     * bytes at a time. */
    while (len - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & UINT64_C(0x8080808080808080))
        break;
      i += 8;
    }
    if (i == len)
      break;
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    /* The second byte's range depends on the first (RFC 3629, section 4):
     * that is what excludes overlong forms, surrogates and values beyond
     * U+10FFFF. */
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    } else {
      return false;
    }
    if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
      return false;
    for (size_t k = 2; k < n; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF)
        return false;
    i += n;
  }
  return true;
}

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
