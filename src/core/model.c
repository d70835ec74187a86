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

bool pt_digest_valid(const char *s)
{
  const char *colon = s ? strchr(s, ':') : NULL;
  if (!colon || colon == s || strlen(s) > 256)
    return false;
  bool prev_sep = true;
  for (const char *p = s; p < colon; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
      prev_sep = false;
    else if (strchr("+._-", *p) && !prev_sep)
      prev_sep = true;
    else
      return false;
  }
  if (prev_sep || !colon[1])
    return false;
  for (const char *p = colon + 1; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '=' ||
          *p == '_' || *p == '-'))
      return false;
  }
  return true;
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
