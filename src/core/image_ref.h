/* Image references, parsed once by the rules of Docker's reference grammar
 * (github.com/distribution/reference) with the container runtime's defaults:
 *
 *   reference := name [":" tag] ["@" digest]
 *   name      := [domain "/"] path-component ("/" path-component)*
 *
 * The first component is a registry domain when it contains "." or ":", is
 * "localhost", or has an upper-case letter (then its case is kept: lower case
 * would make it a path); otherwise the domain is
 * "docker.io" (also for "index.docker.io" and "registry-1.docker.io") and a
 * single-component path gets "library/". Without tag and digest the tag is
 * "latest". Path components are lower-case [a-z0-9] joined by ".", "_", "__"
 * or dashes; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; the digest follows
 * pt_digest_valid(); a port is digits; the name is at most 255 characters.
 *
 * The store, the Kubernetes watcher and the policy's C defaults all use this
 * parser, so they agree on which pulls, pods and kubelet events name the same
 * image. */
#ifndef PT_CORE_IMAGE_REF_H
#define PT_CORE_IMAGE_REF_H

#include <stdbool.h>
#include <stddef.h>

struct pt_image_ref {
  char host[256];      /* registry host with its port if any, lower case (see above) */
  char bare_host[256]; /* lower case, without the port (containerd's label key form) */
  char repo[272];      /* "library/nginx" */
  char tag[129];       /* "" when pinned by digest without a tag */
  char digest[257];    /* "" unless "@algorithm:encoded" was given */
};

/* Returns 0, or -EINVAL for something that is not a reference (NULL, empty,
 * whitespace or quotes, empty tag or repository, upper case in the path, a
 * port that is not a number, too long). out is zeroed first. */
int pt_image_ref_parse(const char *ref, struct pt_image_ref *out);

/* The fully qualified form "host[:port]/repo[:tag][@digest]". Returns 0,
 * -EINVAL or -ENOSPC. */
int pt_image_ref_normalize(const char *ref, char *out, size_t len);

/* The matching key "bare_host/repo": what the agent reports as imageRef
 * (containerd's distribution.source label drops the port, and there is no
 * tag). Returns 0, -EINVAL or -ENOSPC. */
int pt_image_ref_key(const char *ref, char *out, size_t len);

/* True when both parse and name the same repository (port and tag aside):
 * the agent's "127.0.0.1/demo/app" and a pod's "127.0.0.1:5001/demo/app:v1". */
bool pt_image_ref_same_repo(const struct pt_image_ref *a, const struct pt_image_ref *b);
bool pt_image_ref_matches(const char *a, const char *b);

#endif
