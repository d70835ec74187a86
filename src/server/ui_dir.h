/* The web UI served from a directory (PULLTRACE_UI_DIR, for development)
 * without touching the disk on the loop.
 *
 * The directory is read on libuv's thread pool into an in-memory snapshot in
 * the embedded UI's shape (a table of files with their ETags, FNV-1a of the
 * bytes as for the embedded files); requests are
 * answered from the snapshot. Every `interval` seconds the thread pool checks
 * the tree (names, sizes and modification times) and, when it changed, reads
 * it again; the new snapshot replaces the old one on the loop. So an edited
 * file is served about a second later, and a slow disk delays only that. */
#ifndef PT_SERVER_UI_DIR_H
#define PT_SERVER_UI_DIR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/embed.h"

#define PT_UI_DIR_MAX_FILE (32u << 20)   /* bigger files are left out */
#define PT_UI_DIR_MAX_TOTAL (256u << 20) /* a tree over this is read only up to it */
#define PT_UI_DIR_MAX_FILES 20000

struct pt_ui_dir;

/* Starts reading dir at once. interval <= 0 means 1 s. NULL when out of
 * memory. */
struct pt_ui_dir *pt_ui_dir_create(uv_loop_t *loop, const char *dir, double interval);
/* Stops; memory is freed once the timer is closed and a read in flight has
 * ended (run the loop afterwards). Accepts NULL. */
void pt_ui_dir_destroy(struct pt_ui_dir *d);

/* The current snapshot: a table ending with a NULL name and the ETag of each
 * file, valid until the loop runs again. NULL until the first read is done. */
const struct pt_embedded_file *pt_ui_dir_files(const struct pt_ui_dir *d, const uint64_t **etags);
/* Reads done (snapshots published), including the first. */
uint64_t pt_ui_dir_generation(const struct pt_ui_dir *d);

#endif
