/* GET /api/v1/pulls written in chunks: a page of up to 1,000 pulls with
 * their layers is megabytes of JSON, more than one loop iteration should
 * spend. The answer is a streamed (chunked) response; each loop iteration
 * writes the next PT_LIST_STREAM_CHUNK pulls after the last one looked at
 * (looking at PT_LIST_STREAM_VISIT at most, for selective filters), as a
 * client paging with a small limit would, so pulls removed meanwhile are
 * skipped and pulls added meanwhile are not in the page. A client that
 * reads slowly holds the writing, not memory. */
#ifndef PT_SERVER_LIST_STREAM_H
#define PT_SERVER_LIST_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/http_server.h"
#include "core/json_writer.h"
#include "server/store.h"

#define PT_LIST_STREAM_CHUNK 100
#define PT_LIST_STREAM_VISIT 5000

/* Continue tokens of the lists (opaque to clients): a prefix naming the
 * list ("p1." pulls, "n1." nodes) and the hex of the position, a pull's seq
 * or a node's name. */
void pt_list_token_write(struct pt_buf *out, const char *prefix, const void *data, size_t len);
/* Decodes the hex after prefix into out (at most len - 1 bytes,
 * NUL-terminated); returns the byte count, or -1 when the token is not one
 * of this list. */
int pt_list_token_read(const char *token, const char *prefix, unsigned char *out, size_t len);
/* A list's "metadata" member: {"continue": token} when more items follow,
 * {} on the last page. */
void pt_list_metadata(struct pt_jsonw *w, const char *token);
/* A pulls token: the position (seq and id) after which the next page starts. */
void pt_list_pulls_token(struct pt_buf *out, const struct pt_pull_cursor *at);
/* Reads one; -1 when it is not a pulls token. */
int pt_list_pulls_token_read(const char *token, struct pt_pull_cursor *at);

struct pt_list_stream;

/* The page of pulls matching f (copied) after position `after` (0: from
 * the start), at most limit of them; NULL without memory. */
struct pt_list_stream *pt_list_stream_new(uv_loop_t *loop, struct pt_store *store, const struct pt_pull_filter *f,
                                          const struct pt_pull_cursor *after, size_t limit);
/* A pt_http_stream_start_cb: pass it with the stream as ud. */
void pt_list_stream_start(void *stream, struct pt_http_conn *conn);

#endif
