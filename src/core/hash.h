/* FNV-1a, 64-bit: the one non-cryptographic hash of the project (hash table
 * buckets, ETags, script-set fingerprints, kubelet-only pull ids). Ids built
 * from it appear in the API: its values must not change between releases.
 * (The five copies this replaced used a mistyped offset basis with a digit
 * missing; this one is the published algorithm, checked against its test
 * vectors in spec/unit/core_model.c.) */
#ifndef PT_CORE_HASH_H
#define PT_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define PT_FNV1A_INIT 14695981039346656037ULL

/* Continues hash h over len bytes; start with PT_FNV1A_INIT. */
uint64_t pt_fnv1a(uint64_t h, const void *data, size_t len);
/* The same over a NUL-terminated string (the NUL excluded). */
uint64_t pt_fnv1a_str(uint64_t h, const char *s);

#endif
