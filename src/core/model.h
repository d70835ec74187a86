/* The model shared by the agent and the server: layer states and their names
 * (the report's wire values), and digest validation. Both binaries agree on
 * these through this one definition; their pull records are their own
 * (struct pt_tracked_pull in the agent, struct pt_pull in the server). */
#ifndef PT_CORE_MODEL_H
#define PT_CORE_MODEL_H

#include <stdbool.h>

enum pt_layer_state {
  PT_LAYER_WAITING = 0,
  PT_LAYER_DOWNLOADING,
  PT_LAYER_STALLED,
  PT_LAYER_DONE,
  PT_LAYER_CACHED,
};
#define PT_LAYER_STATE_COUNT 5

/* "waiting", "downloading", "stalled", "done", "cached" ("waiting" for an
 * out-of-range value). */
const char *pt_layer_state_name(enum pt_layer_state s);
/* Returns 0 or -EINVAL. */
int pt_layer_state_parse(const char *s, enum pt_layer_state *out);

/* The OCI image spec's digest grammar, "algorithm:encoded" with
 * algorithm := component ([+._-] component)*, component := [a-z0-9]+,
 * encoded := [a-zA-Z0-9=_-]+, at most 256 characters. What the server accepts
 * from an agent. */
bool pt_digest_valid(const char *s);

/* Whether s is "sha256:" and 64 lower-case hex digits (a valid digest, the
 * form nearly every layer has); then its 32 bytes are in out. */
bool pt_digest_sha256(const char *s, unsigned char out[32]);

/* A digest of a registered algorithm with its exact encoding, "sha256:" and
 * 64 or "sha512:" and 128 lower-case hex digits: the only digests containerd's
 * content store addresses, so the agent accepts no other in ingest refs and
 * manifests. */
bool pt_digest_registered(const char *s);

#endif
