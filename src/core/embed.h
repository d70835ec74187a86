/* Files compiled into a binary by cmake/embed.cmake (default Lua policy, UI). */
#ifndef PT_CORE_EMBED_H
#define PT_CORE_EMBED_H

#include <stddef.h>

struct pt_embedded_file {
  const char *name; /* path relative to the embedded tree, '/'-separated */
  const unsigned char *data; /* NUL-terminated for convenience; size excludes it */
  size_t size;
};

#endif
