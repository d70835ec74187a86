/* Server-side TLS of core/tls.h: the reloadable SSL_CTX and the per-connection
 * state over memory BIOs. */
#include "core/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/log.h"

struct pt_tls_ctx {
  uv_loop_t *loop;
  SSL_CTX *ssl;
  char *cert_path, *key_path;
  uv_fs_poll_t poll_cert, poll_key;
  int handles;            /* poll handles still open */
  bool polling;
  bool destroying;
  /* A load in the thread pool: its result, handed back to the loop. */
  uv_work_t work;
  bool loading;
  bool again;             /* a file changed while loading: load once more */
  SSL_CTX *loaded;
  double loaded_not_after;
  char load_error[256];
  struct pt_tls_ctx_stats stats;
};

struct pt_tls_conn {
  SSL *ssl;
  BIO *in, *out;          /* owned by ssl */
  struct pt_buf early;    /* plain text written before the handshake completed */
  bool shutdown_wanted;
  char error[160];
};

/* ------------------------------------------------------------------------ */
/* Loading a pair (any thread)                                                */

static void openssl_reason(char *out, size_t len, const char *what)
{
  unsigned long e = ERR_get_error();
  char r[160] = "";
  if (e)
    ERR_error_string_n(e, r, sizeof(r));
  ERR_clear_error();
  snprintf(out, len, "%s%s%s", what, *r ? ": " : "", r);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
  (void)ssl;
  (void)arg;
  static const unsigned char http11[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* e.g. a client offering only h2 */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static double asn1_to_unix(const ASN1_TIME *t)
{
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
    return 0;
  return (double)timegm(&tm);
}

/* Builds an SSL_CTX from the files; NULL with err filled on failure. */
static SSL_CTX *load_pair(const char *cert_path, const char *key_path, double *not_after, char *err, size_t errlen)
{
  ERR_clear_error();
  SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
  if (!ssl) {
    openssl_reason(err, errlen, "cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Idle keep-alive connections hold no read/write buffers. */
  SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ssl, alpn_select, NULL);
  char what[1100];
  if (SSL_CTX_use_certificate_chain_file(ssl, cert_path) != 1) {
    snprintf(what, sizeof(what), "PULLTRACE_TLS_CERT %s: not a readable PEM certificate", cert_path);
    goto fail;
  }
  BIO *kb = BIO_new_file(key_path, "r");
  EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
  BIO_free(kb);
  if (!key) {
    snprintf(what, sizeof(what), "PULLTRACE_TLS_KEY %s: not a readable PEM private key", key_path);
    goto fail;
  }
  int used = SSL_CTX_use_PrivateKey(ssl, key);
  EVP_PKEY_free(key);
  if (used != 1 || SSL_CTX_check_private_key(ssl) != 1) {
    snprintf(what, sizeof(what), "PULLTRACE_TLS_KEY %s does not match the certificate in %s", key_path, cert_path);
    goto fail;
  }
  *not_after = asn1_to_unix(X509_get0_notAfter(SSL_CTX_get0_certificate(ssl)));
  return ssl;
fail:
  openssl_reason(err, errlen, what);
  SSL_CTX_free(ssl);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Reloading                                                                  */

static void maybe_free(struct pt_tls_ctx *ctx)
{
  if (!ctx->destroying || ctx->handles > 0 || ctx->loading)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx->cert_path);
  free(ctx->key_path);
  free(ctx);
}

static void load_work(uv_work_t *w)
{
  struct pt_tls_ctx *ctx = w->data;
  ctx->load_error[0] = '\0';
  ctx->loaded = load_pair(ctx->cert_path, ctx->key_path, &ctx->loaded_not_after, ctx->load_error,
                          sizeof(ctx->load_error));
  /* OpenSSL keeps per-thread state (error queue, random generator) that it
   * frees only when told; the pool's threads live as long as the process. */
  OPENSSL_thread_stop();
}

static void load_done(uv_work_t *w, int status)
{
  struct pt_tls_ctx *ctx = w->data;
  ctx->loading = false;
  if (ctx->destroying) {
    SSL_CTX_free(ctx->loaded);
    ctx->loaded = NULL;
    maybe_free(ctx);
    return;
  }
  if (ctx->again && !ctx->loaded) {
    /* The files were changing under the load (a certificate written before
     * its key): judge the pair once both are written. */
    ctx->again = false;
    pt_tls_ctx_reload(ctx);
    return;
  }
  if (status < 0 || !ctx->loaded) {
    ctx->stats.reload_errors++;
    snprintf(ctx->stats.last_error, sizeof(ctx->stats.last_error), "%s",
             status < 0 ? uv_strerror(status) : ctx->load_error);
    PT_LOG_ERROR("TLS certificate or key changed but cannot be used: keeping the previous pair", "{s:s}",
                 "error", ctx->stats.last_error);
    return;
  }
  if (ctx->again) {
    ctx->again = false;
    SSL_CTX_free(ctx->loaded);
    ctx->loaded = NULL;
    pt_tls_ctx_reload(ctx);
    return;
  }
  /* Both files of one rotation change: the second look finds the pair in
   * use already. */
  if (X509_cmp(SSL_CTX_get0_certificate(ctx->loaded), SSL_CTX_get0_certificate(ctx->ssl)) == 0) {
    SSL_CTX_free(ctx->loaded);
    ctx->loaded = NULL;
    return;
  }
  SSL_CTX_free(ctx->ssl);
  ctx->ssl = ctx->loaded;
  ctx->loaded = NULL;
  ctx->stats.reloads++;
  ctx->stats.last_error[0] = '\0';
  ctx->stats.not_after = ctx->loaded_not_after;
  PT_LOG_INFO("TLS certificate reloaded", "{s:s,s:f}", "cert", ctx->cert_path, "notAfter", ctx->stats.not_after);
}

int pt_tls_ctx_reload(struct pt_tls_ctx *ctx)
{
  if (ctx->loading || ctx->destroying)
    return -EBUSY;
  ctx->work.data = ctx;
  int r = uv_queue_work(ctx->loop, &ctx->work, load_work, load_done);
  if (r == 0)
    ctx->loading = true;
  return r;
}

static void poll_cb(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
  (void)prev;
  (void)curr;
  struct pt_tls_ctx *ctx = h->data;
  /* A file that vanished for a moment (a swap in progress) changes again
   * when it is back; only a present file is worth loading. */
  if (status < 0)
    return;
  if (pt_tls_ctx_reload(ctx) == -EBUSY)
    ctx->again = true; /* the load in flight may have read the older file */
}

static void poll_closed(uv_handle_t *h)
{
  struct pt_tls_ctx *ctx = h->data;
  ctx->handles--;
  maybe_free(ctx);
}

struct pt_tls_ctx *pt_tls_ctx_create(uv_loop_t *loop, const char *cert_path, const char *key_path,
                                     double poll_interval, char *err, size_t errlen)
{
  struct pt_tls_ctx *ctx = calloc(1, sizeof(*ctx));
  if (!ctx || !(ctx->cert_path = strdup(cert_path)) || !(ctx->key_path = strdup(key_path))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  ctx->loop = loop;
  if (!(ctx->ssl = load_pair(cert_path, key_path, &ctx->stats.not_after, err, errlen)))
    goto fail;
  if (poll_interval > 0) {
    unsigned ms = (unsigned)(poll_interval * 1000.0);
    uv_fs_poll_init(loop, &ctx->poll_cert);
    uv_fs_poll_init(loop, &ctx->poll_key);
    ctx->poll_cert.data = ctx->poll_key.data = ctx;
    ctx->handles = 2;
    ctx->polling = true;
    uv_fs_poll_start(&ctx->poll_cert, poll_cb, cert_path, ms ? ms : 1);
    uv_fs_poll_start(&ctx->poll_key, poll_cb, key_path, ms ? ms : 1);
    /* The polls compare with a first look they take in the thread pool, after
     * the load above: a rotation in between would go unseen until the next
     * one. One more load, queued after those looks, closes that window (the
     * same pair again is a no-op). */
    pt_tls_ctx_reload(ctx);
  }
  return ctx;
fail:
  if (ctx) {
    free(ctx->cert_path);
    free(ctx->key_path);
    free(ctx);
  }
  return NULL;
}

void pt_tls_ctx_destroy(struct pt_tls_ctx *ctx)
{
  if (!ctx)
    return;
  ctx->destroying = true;
  if (ctx->polling) {
    ctx->polling = false;
    uv_close((uv_handle_t *)&ctx->poll_cert, poll_closed);
    uv_close((uv_handle_t *)&ctx->poll_key, poll_closed);
  }
  maybe_free(ctx);
}

void pt_tls_ctx_stats(const struct pt_tls_ctx *ctx, struct pt_tls_ctx_stats *out)
{
  *out = ctx->stats;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                                */

struct pt_tls_conn *pt_tls_conn_create(struct pt_tls_ctx *ctx)
{
  struct pt_tls_conn *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  pt_buf_init(&c->early);
  c->ssl = SSL_new(ctx->ssl);
  c->in = BIO_new(BIO_s_mem());
  c->out = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->in || !c->out) {
    BIO_free(c->in);
    BIO_free(c->out);
    SSL_free(c->ssl);
    free(c);
    return NULL;
  }
  /* An empty memory BIO means "no data yet", not end of file. */
  BIO_set_mem_eof_return(c->in, -1);
  SSL_set_bio(c->ssl, c->in, c->out);
  SSL_set_accept_state(c->ssl);
  return c;
}

void pt_tls_conn_destroy(struct pt_tls_conn *c)
{
  if (!c)
    return;
  SSL_free(c->ssl);
  pt_buf_close(&c->early);
  free(c);
}

int pt_tls_conn_feed(struct pt_tls_conn *c, const void *data, size_t len)
{
  while (len > 0) {
    int n = BIO_write(c->in, data, len > INT_MAX ? INT_MAX : (int)len);
    if (n <= 0)
      return -ENOMEM;
    data = (const char *)data + n;
    len -= (size_t)n;
  }
  return 0;
}

static int fail_ssl(struct pt_tls_conn *c, int code)
{
  char r[120] = "";
  unsigned long e = ERR_get_error();
  if (e)
    ERR_error_string_n(e, r, sizeof(r));
  else if (code == SSL_ERROR_SYSCALL)
    snprintf(r, sizeof(r), "unexpected end of stream");
  else
    snprintf(r, sizeof(r), "TLS error %d", code);
  ERR_clear_error();
  snprintf(c->error, sizeof(c->error), "%s", r);
  return -EPROTO;
}

/* Plain text held back during the handshake goes out once it is done. */
static int flush_early(struct pt_tls_conn *c)
{
  if (!c->early.len || !SSL_is_init_finished(c->ssl))
    return 0;
  size_t n = c->early.len;
  c->early.len = 0;
  int r = pt_tls_conn_write(c, c->early.data, n);
  if (r == 0 && c->shutdown_wanted)
    pt_tls_conn_shutdown(c);
  return r;
}

ssize_t pt_tls_conn_read(struct pt_tls_conn *c, void *buf, size_t len)
{
  ERR_clear_error();
  size_t got = 0;
  int ok = SSL_read_ex(c->ssl, buf, len, &got);
  if (flush_early(c) < 0)
    return -EPROTO;
  if (ok == 1)
    return (ssize_t)got;
  int code = SSL_get_error(c->ssl, ok);
  switch (code) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    return -ECONNRESET;
  default:
    return fail_ssl(c, code);
  }
}

int pt_tls_conn_write(struct pt_tls_conn *c, const void *data, size_t len)
{
  if (!SSL_is_init_finished(c->ssl))
    return pt_buf_append(&c->early, data, len) ? -ENOMEM : 0;
  ERR_clear_error();
  while (len > 0) {
    size_t n = 0;
    int ok = SSL_write_ex(c->ssl, data, len, &n);
    if (ok != 1)
      return fail_ssl(c, SSL_get_error(c->ssl, ok));
    data = (const char *)data + n;
    len -= n;
  }
  return 0;
}

void pt_tls_conn_shutdown(struct pt_tls_conn *c)
{
  if (c->early.len || !SSL_is_init_finished(c->ssl)) {
    c->shutdown_wanted = true;
    return;
  }
  ERR_clear_error();
  SSL_shutdown(c->ssl);
  ERR_clear_error();
}

int pt_tls_conn_take(struct pt_tls_conn *c, struct pt_buf *out)
{
  char *p;
  long n = BIO_get_mem_data(c->out, &p);
  if (n <= 0)
    return 0;
  if (pt_buf_append(out, p, (size_t)n))
    return -ENOMEM;
  (void)BIO_reset(c->out);
  return 0;
}

bool pt_tls_conn_established(const struct pt_tls_conn *c)
{
  return SSL_is_init_finished(c->ssl);
}

const char *pt_tls_conn_error(const struct pt_tls_conn *c)
{
  return c->error;
}
