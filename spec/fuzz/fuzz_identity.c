/* libFuzzer: the Kubernetes API server's answers about identity, as the
 * server reads them (server/identity.h): TokenReview and SubjectAccessReview
 * answers, the node an agent's token belongs to, a JWT's expiry. The first
 * byte picks the audience asked for. Invariants beyond sanitizer cleanliness:
 * every verdict is one of the three; an authenticated answer has a user name,
 * its groups are strings, and it was issued for the audience asked for (read
 * again here from the JSON); any other verdict says why; a SubjectAccessReview
 * is allowed, denied with a reason, or refused as malformed; an agent's node
 * is its token's node claim when it has one. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/identity.h"

static void fuzz_fail(const char *what)
{
  fprintf(stderr, "invariant broken: %s\n", what);
  abort();
}

static bool audience_listed(const char *body, size_t len, const char *audience)
{
  json_t *root = json_loadb(body, len, 0, NULL);
  json_t *auds = json_object_get(json_object_get(root, "status"), "audiences");
  bool found = false;
  size_t i;
  json_t *a;
  json_array_foreach(auds, i, a)
    found |= json_is_string(a) && strcmp(json_string_value(a), audience) == 0;
  json_decref(root);
  return found;
}

static const char *pod_node(void *ud, const char *ns, const char *name, const char *uid)
{
  (void)ud;
  (void)ns;
  (void)uid;
  return name && strcmp(name, "known-pod") == 0 ? "node-from-cache" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const char *audience = data[0] & 1 ? "pulltrace" : NULL;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;

  struct pt_identity id;
  memset(&id, 0, sizeof(id));
  char why[256] = "";
  enum pt_review_verdict v = pt_identity_parse_tokenreview(body, len, audience, &id, why, sizeof(why));
  if (v != PT_REVIEW_AUTHENTICATED && v != PT_REVIEW_REJECTED && v != PT_REVIEW_MALFORMED)
    fuzz_fail("a verdict outside the three");
  if (v == PT_REVIEW_AUTHENTICATED) {
    if (!id.username || !*id.username)
      fuzz_fail("authenticated without a user name");
    for (size_t i = 0; i < id.ngroups; i++)
      if (!id.groups[i])
        fuzz_fail("a group that is not a string");
    if (audience && !audience_listed(body, len, audience))
      fuzz_fail("authenticated for an audience the answer does not list");
    const char *node = NULL;
    char w[256] = "";
    int r = pt_identity_agent_node(&id, "pulltrace", "pulltrace-agent", pod_node, NULL, &node, w, sizeof(w));
    if (r == 0) {
      const char *claim = pt_identity_extra(&id, PT_EXTRA_NODE_NAME);
      if (!node || !*node || (claim && *claim && strcmp(node, claim) != 0))
        fuzz_fail("the agent's node is not its token's node claim");
    } else if (r != -EACCES && r != -ENOENT) {
      fuzz_fail("agent_node returned an unknown error");
    } else if (!*w) {
      fuzz_fail("agent_node failed without a reason");
    }
  } else if (!*why) {
    fuzz_fail("a rejection without a reason");
  }
  pt_identity_clear(&id);

  char w2[256] = "";
  int s = pt_identity_parse_sar(body, len, w2, sizeof(w2));
  if (s != 1 && s != 0 && s != -EINVAL)
    fuzz_fail("a SubjectAccessReview verdict outside allowed/denied/malformed");

  char tok[512];
  size_t n = len < sizeof(tok) - 1 ? len : sizeof(tok) - 1;
  memcpy(tok, body, n);
  tok[n] = '\0';
  if (pt_identity_token_expiry(tok) < 0)
    fuzz_fail("a negative expiry");
  return 0;
}
