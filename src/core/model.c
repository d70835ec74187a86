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
