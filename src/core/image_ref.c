#include "core/image_ref.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/model.h"

#define NAME_MAX_LEN 255

static bool lower_alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool alnum(char c)
{
  return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* path-component := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)* */
static bool path_component_valid(const char *s, size_t n)
{
  if (n == 0 || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
    return false;
  for (size_t i = 1; i < n;) {
    if (lower_alnum(s[i])) {
      i++;
      continue;
    }
    size_t j = i;
    if (s[i] == '.') {
      j = i + 1;
    } else if (s[i] == '_') {
      j = i + 1 + (s[i + 1] == '_');
    } else if (s[i] == '-') {
      while (j < n && s[j] == '-')
        j++;
    } else {
      return false;
    }
    if (j >= n || !lower_alnum(s[j]))
      return false;
    i = j;
  }
  return true;
}

static bool path_valid(const char *s, size_t n)
{
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '/') {
      if (!path_component_valid(s + start, i - start))
        return false;
      start = i + 1;
    }
  }
  return true;
}

static bool port_valid(const char *s, size_t n)
{
  if (n == 0 || n > 5)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i]))
      return false;
  return true;
}

/* domain := host [":" port]; host := "[" ipv6 "]" or components of
 * [A-Za-z0-9-] (not starting or ending with "-") joined by ".".
 * *bare_len is the length without the port. */
static bool domain_valid(const char *s, size_t n, size_t *bare_len)
{
  size_t host_len;
  if (n && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close || close == s + 1)
      return false;
    for (const char *c = s + 1; c < close; c++)
      if (!(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
        return false;
    host_len = (size_t)(close - s) + 1;
  } else {
    const char *colon = memchr(s, ':', n);
    host_len = colon ? (size_t)(colon - s) : n;
    size_t start = 0;
    for (size_t i = 0; i <= host_len; i++) {
      if (i == host_len || s[i] == '.') {
        size_t len = i - start;
        if (len == 0 || !alnum(s[start]) || !alnum(s[i - 1]))
          return false;
        for (size_t k = start; k < i; k++)
          if (!alnum(s[k]) && s[k] != '-')
            return false;
        start = i + 1;
      }
    }
  }
  if (host_len < n && (s[host_len] != ':' || !port_valid(s + host_len + 1, n - host_len - 1)))
    return false;
  *bare_len = host_len;
  return true;
}

static bool tag_valid(const char *s, size_t n)
{
  if (n == 0 || n > 128 || !(alnum(s[0]) || s[0] == '_'))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
      return false;
  return true;
}

static int copy_span(char *dst, size_t cap, const char *src, size_t n)
{
  if (n >= cap)
    return -EINVAL;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return 0;
}

int pt_image_ref_parse(const char *ref, struct pt_image_ref *out)
{
  if (!out)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  if (!ref)
    return -EINVAL;
  size_t n = strlen(ref);
  if (n == 0 || n > NAME_MAX_LEN + 1 + 128 + 1 + 256)
    return -EINVAL;

  /* name [":" tag] ["@" digest] */
  const char *at = strchr(ref, '@');
  size_t name_len = at ? (size_t)(at - ref) : n;
  if (at && (!pt_digest_valid(at + 1) || copy_span(out->digest, sizeof(out->digest), at + 1, strlen(at + 1))))
    return -EINVAL;
  const char *last_slash = NULL;
  for (size_t i = 0; i < name_len; i++)
    if (ref[i] == '/')
      last_slash = ref + i;
  const char *seg = last_slash ? last_slash + 1 : ref;
  const char *colon = memchr(seg, ':', name_len - (size_t)(seg - ref));
  if (colon) {
    size_t tag_len = name_len - (size_t)(colon + 1 - ref);
    if (!tag_valid(colon + 1, tag_len) || copy_span(out->tag, sizeof(out->tag), colon + 1, tag_len))
      return -EINVAL;
    name_len = (size_t)(colon - ref);
  }
  if (name_len == 0 || name_len > NAME_MAX_LEN)
    return -EINVAL;

  /* The first component is a domain when it looks like one. */
  const char *first_slash = memchr(ref, '/', name_len);
  const char *repo = ref;
  size_t repo_len = name_len;
  if (first_slash) {
    size_t hl = (size_t)(first_slash - ref);
    bool looks_like_host =
      memchr(ref, '.', hl) || memchr(ref, ':', hl) || (hl == 9 && strncmp(ref, "localhost", 9) == 0);
    bool is_domain = looks_like_host;
    for (size_t i = 0; i < hl && !is_domain; i++)
      is_domain = isupper((unsigned char)ref[i]);
    if (is_domain) {
      size_t bare_len;
      if (!domain_valid(ref, hl, &bare_len) || copy_span(out->host, sizeof(out->host), ref, hl))
        return -EINVAL;
      memcpy(out->bare_host, out->host, bare_len);
      out->bare_host[bare_len] = '\0';
      /* Host names are case-insensitive: the matching key is lower case, and
       * so is the normal form, except for a domain that only its upper case
       * makes one ("Reg/app"), which lower case would turn into a path. */
      for (char *c = out->bare_host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
      for (char *c = out->host; looks_like_host && *c; c++)
        *c = (char)tolower((unsigned char)*c);
      repo = first_slash + 1;
      repo_len = name_len - hl - 1;
    }
  }
  if (!out->host[0] || strcmp(out->host, "index.docker.io") == 0 || strcmp(out->host, "registry-1.docker.io") == 0) {
    snprintf(out->host, sizeof(out->host), "docker.io");
    snprintf(out->bare_host, sizeof(out->bare_host), "docker.io");
  }
  if (!path_valid(repo, repo_len))
    return -EINVAL;
  bool library = strcmp(out->host, "docker.io") == 0 && !memchr(repo, '/', repo_len);
  size_t off = library ? 8 : 0;
  if (library)
    memcpy(out->repo, "library/", 8);
  if (copy_span(out->repo + off, sizeof(out->repo) - off, repo, repo_len))
    return -EINVAL;
  if (!out->tag[0] && !out->digest[0])
    snprintf(out->tag, sizeof(out->tag), "latest");
  return 0;
}

int pt_image_ref_normalize(const char *ref, char *out, size_t len)
{
  struct pt_image_ref im;
  if (pt_image_ref_parse(ref, &im))
    return -EINVAL;
  int n = snprintf(out, len, "%s/%s%s%s%s%s", im.host, im.repo, im.tag[0] ? ":" : "", im.tag,
                   im.digest[0] ? "@" : "", im.digest);
  return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int pt_image_ref_key(const char *ref, char *out, size_t len)
{
  struct pt_image_ref im;
  if (pt_image_ref_parse(ref, &im))
    return -EINVAL;
  int n = snprintf(out, len, "%s/%s", im.bare_host, im.repo);
  return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

bool pt_image_ref_same_repo(const struct pt_image_ref *a, const struct pt_image_ref *b)
{
  return strcmp(a->bare_host, b->bare_host) == 0 && strcmp(a->repo, b->repo) == 0;
}

bool pt_image_ref_matches(const char *a, const char *b)
{
  struct pt_image_ref x, y;
  return pt_image_ref_parse(a, &x) == 0 && pt_image_ref_parse(b, &y) == 0 && pt_image_ref_same_repo(&x, &y);
}
