#include "core/model.h"

#include <errno.h>
#include <string.h>

static const char *const layer_states[PT_LAYER_STATE_COUNT] = {"waiting", "downloading", "stalled", "done",
                                                                "cached"};

const char *pt_layer_state_name(enum pt_layer_state s)
{
  return (unsigned)s < PT_LAYER_STATE_COUNT ? layer_states[s] : "waiting";
}

int pt_layer_state_parse(const char *s, enum pt_layer_state *out)
{
  for (int i = 0; s && i < PT_LAYER_STATE_COUNT; i++) {
    if (strcmp(s, layer_states[i]) == 0) {
      *out = (enum pt_layer_state)i;
      return 0;
    }
  }
  return -EINVAL;
}

/* Character classes of a digest (OCI image spec): bit 1 an algorithm
 * component, bit 2 an algorithm separator, bit 4 the encoded part. Every
 * report names dozens of digests: a table keeps the check cheap. */
enum { DG_ALG = 1, DG_SEP = 2, DG_ENC = 4 };
static const unsigned char digest_chars[256] = {
  ['+'] = DG_SEP, ['.'] = DG_SEP, ['_'] = DG_SEP | DG_ENC, ['-'] = DG_SEP | DG_ENC, ['='] = DG_ENC,
#define R(a, b, v) [a] = v, [a + 1] = v, [a + 2] = v, [a + 3] = v, [a + 4] = v, [a + 5] = v, [a + 6] = v, [a + 7] = v, [a + 8] = v, [a + 9] = v
  R('0', 0, DG_ALG | DG_ENC),
  R('a', 0, DG_ALG | DG_ENC), R('k', 0, DG_ALG | DG_ENC), ['u'] = DG_ALG | DG_ENC, ['v'] = DG_ALG | DG_ENC,
  ['w'] = DG_ALG | DG_ENC, ['x'] = DG_ALG | DG_ENC, ['y'] = DG_ALG | DG_ENC, ['z'] = DG_ALG | DG_ENC,
  R('A', 0, DG_ENC), R('K', 0, DG_ENC), ['U'] = DG_ENC, ['V'] = DG_ENC, ['W'] = DG_ENC, ['X'] = DG_ENC,
  ['Y'] = DG_ENC, ['Z'] = DG_ENC,
#undef R
};

bool pt_digest_valid(const char *s)
{
  if (!s)
    return false;
  const unsigned char *p = (const unsigned char *)s;
  bool prev_sep = true;
  for (; *p && *p != ':'; p++) {
    unsigned char c = digest_chars[*p];
    if (c & DG_ALG)
      prev_sep = false;
    else if ((c & DG_SEP) && !prev_sep)
      prev_sep = true;
    else
      return false;
  }
  if (*p != ':' || prev_sep || !p[1])
    return false;
  for (p++; *p; p++)
    if (!(digest_chars[*p] & DG_ENC))
      return false;
  return (size_t)((const char *)p - s) <= 256;
}

bool pt_digest_registered(const char *s)
{
  size_t hexlen;
  if (!s)
    return false;
  if (strncmp(s, "sha256:", 7) == 0)
    hexlen = 64;
  else if (strncmp(s, "sha512:", 7) == 0)
    hexlen = 128;
  else
    return false;
  const char *h = s + 7;
  for (size_t i = 0; i < hexlen; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
      return false;
  return h[hexlen] == '\0';
}

/* Lower-case hex digits' values plus one (0: not one). */
static const unsigned char hex1[256] = {
  ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
  ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

bool pt_digest_sha256(const char *s, unsigned char out[32])
{
  static const char prefix[] = "sha256:";
  if (!s || strncmp(s, prefix, sizeof(prefix) - 1) != 0)
    return false;
  const unsigned char *h = (const unsigned char *)s + sizeof(prefix) - 1;
  for (size_t i = 0; i < 32; i++) {
    unsigned hi = hex1[h[2 * i]], lo = hi ? hex1[h[2 * i + 1]] : 0; /* the NUL has no value: no read past it */
    if (!hi || !lo)
      return false;
    out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
  }
  return h[64] == '\0';
}
