/* Server-side TLS for the HTTP server, with OpenSSL over memory BIOs.
 *
 * struct pt_tls_ctx holds the server's certificate and key (PEM files) as an
 * SSL_CTX and reloads them when the files change (cert-manager rotates the
 * Secret; kubelet swaps the mounted files): the files are polled with
 * uv_fs_poll (stat in libuv's thread pool), a new pair is loaded and checked
 * off the loop, and the loop swaps the SSL_CTX in. New connections use the new
 * pair; open ones keep the old one (OpenSSL counts the references). A bad new
 * pair (unreadable, not PEM, key not matching the certificate) keeps the old
 * one and says why in the log and in the stats.
 *
 * struct pt_tls_conn is one connection's TLS state, socket-free: the owner
 * feeds it the bytes read from the socket, reads plain text out, writes plain
 * text in and takes the cipher text to send. HTTP/1.1 only: ALPN selects
 * "http/1.1" when the client offers it. TLS 1.2 is the oldest version. */
#ifndef PT_CORE_TLS_H
#define PT_CORE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "core/buf.h"

struct pt_tls_ctx;
struct pt_tls_conn;

struct pt_tls_ctx_stats {
  unsigned long long reloads;        /* new pairs taken after a change */
  unsigned long long reload_errors;  /* changes whose pair was refused */
  double not_after;                  /* expiry of the certificate in use (Unix time) */
  char last_error[256];              /* why the last refused pair was refused; "" when none */
};

/* Loads cert_path (PEM, the certificate then its chain) and key_path (PEM)
 * and, with poll_interval > 0 seconds, watches both for changes. Returns NULL
 * with err filled when the pair cannot be used. */
struct pt_tls_ctx *pt_tls_ctx_create(uv_loop_t *loop, const char *cert_path, const char *key_path,
                                     double poll_interval, char *err, size_t errlen);
/* Stops watching and frees the context once its handles are closed and a
 * load in flight has returned; connections keep their own reference to the
 * SSL_CTX. Accepts NULL. */
void pt_tls_ctx_destroy(struct pt_tls_ctx *ctx);
/* Loads the files again now (off the loop), as a change would. Returns 0 or
 * -EBUSY when a load is already running. */
int pt_tls_ctx_reload(struct pt_tls_ctx *ctx);
void pt_tls_ctx_stats(const struct pt_tls_ctx *ctx, struct pt_tls_ctx_stats *out);

/* A server-side connection using the pair in force now; NULL on OOM. */
struct pt_tls_conn *pt_tls_conn_create(struct pt_tls_ctx *ctx);
void pt_tls_conn_destroy(struct pt_tls_conn *conn);
/* Cipher text received from the peer. 0 or -ENOMEM. */
int pt_tls_conn_feed(struct pt_tls_conn *conn, const void *data, size_t len);
/* Decrypts into buf: the number of plain bytes, 0 when more cipher text is
 * needed, -ECONNRESET when the peer sent close_notify, or -EPROTO when the
 * handshake or a record failed (the reason in pt_tls_conn_error()). Drives
 * the handshake, whose answers then wait in pt_tls_conn_take(). */
ssize_t pt_tls_conn_read(struct pt_tls_conn *conn, void *buf, size_t len);
/* Encrypts plain text; before the handshake completes it is held and sent
 * once it does. 0, -ENOMEM or -EPROTO. */
int pt_tls_conn_write(struct pt_tls_conn *conn, const void *data, size_t len);
/* Queues close_notify (after everything written). */
void pt_tls_conn_shutdown(struct pt_tls_conn *conn);
/* Appends the cipher text waiting to be sent to out. 0 or -ENOMEM. */
int pt_tls_conn_take(struct pt_tls_conn *conn, struct pt_buf *out);
bool pt_tls_conn_established(const struct pt_tls_conn *conn);
/* The reason of the last -EPROTO, or "". */
const char *pt_tls_conn_error(const struct pt_tls_conn *conn);

#endif
