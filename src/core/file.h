#ifndef PT_CORE_FILE_H
#define PT_CORE_FILE_H

#include <stddef.h>

/* Small files read whole: configuration, tokens, scripts, the UI directory.
 * Call off the loop (the thread pool) except at startup. */

/* Reads the regular file at path whole into *out (NUL-terminated, the caller
 * frees it) and its size into *len (may be NULL). 0, or -errno; -EFBIG when it
 * holds more than max bytes; -EINVAL when it is not a regular file (a
 * directory, a FIFO that would block). Nothing is allocated on failure. */
int pt_file_read(const char *path, size_t max, char **out, size_t *len);

/* The content without surrounding whitespace (tokens, namespaces): as
 * pt_file_read, and -ENODATA when nothing but whitespace is there. */
int pt_file_read_trimmed(const char *path, size_t max, char **out);

#endif
