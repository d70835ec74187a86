/* core/tls: the server side against an OpenSSL client, both over memory
 * BIOs (no sockets): handshake and records, ALPN, rotation of the files while
 * a connection is open, a bad new pair kept out, bad pairs at startup. The
 * certificates are made here with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/tls.h"

static char dir[64];

/* A fresh RSA key and a self-signed certificate with CN=cn into cert/key. */
static void make_pair(const char *cn, const char *cert_path, const char *key_path)
{
  EVP_PKEY *pkey = EVP_RSA_gen(2048);
  assert_non_null(pkey);
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)cn[0]);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, name);
  assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
  FILE *f = fopen(cert_path, "w");
  assert_non_null(f);
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(key_path, "w");
  assert_non_null(f);
  PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

static void path(char *out, const char *name)
{
  snprintf(out, 128, "%s/%s", dir, name);
}

/* Copies src over dst atomically (write aside, rename), as kubelet swaps. */
static void install(const char *src_name, const char *dst_name)
{
  char src[128], dst[128], tmp[160];
  path(src, src_name);
  path(dst, dst_name);
  snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
  FILE *in = fopen(src, "r"), *out = fopen(tmp, "w");
  assert_non_null(in);
  assert_non_null(out);
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
    fwrite(buf, 1, n, out);
  fclose(in);
  fclose(out);
  assert_int_equal(rename(tmp, dst), 0);
}

struct client {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *in, *out;
};

/* A client trusting the certificates in the given files, offering alpn. */
static void client_init(struct client *c, const char *trust1, const char *trust2, const char *alpn, size_t alpn_len)
{
  c->ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  char p[128];
  path(p, trust1);
  assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, p, NULL), 1);
  if (trust2) {
    path(p, trust2);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, p, NULL), 1);
  }
  c->ssl = SSL_new(c->ctx);
  c->in = BIO_new(BIO_s_mem());
  c->out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(c->in, -1);
  SSL_set_bio(c->ssl, c->in, c->out);
  SSL_set_alpn_protos(c->ssl, (const unsigned char *)alpn, (unsigned)alpn_len);
  SSL_set_connect_state(c->ssl);
}

static void client_close(struct client *c)
{
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
}

/* Moves bytes both ways until neither side has anything to say; returns
 * the server's last read result (plain bytes go to plain/plain_len). */
static ssize_t pump(struct client *c, struct pt_tls_conn *s, char *plain, size_t plain_cap, size_t *plain_len)
{
  ssize_t last = 0;
  *plain_len = 0;
  for (int round = 0; round < 20; round++) {
    if (!SSL_is_init_finished(c->ssl))
      SSL_do_handshake(c->ssl);
    char *p;
    long n = BIO_get_mem_data(c->out, &p);
    bool moved = n > 0;
    if (n > 0) {
      assert_int_equal(pt_tls_conn_feed(s, p, (size_t)n), 0);
      (void)BIO_reset(c->out);
    }
    for (;;) {
      last = pt_tls_conn_read(s, plain + *plain_len, plain_cap - *plain_len);
      if (last <= 0)
        break;
      *plain_len += (size_t)last;
    }
    struct pt_buf out;
    pt_buf_init(&out);
    assert_int_equal(pt_tls_conn_take(s, &out), 0);
    if (out.len) {
      moved = true;
      BIO_write(c->in, out.data, (int)out.len);
    }
    pt_buf_close(&out);
    if (last < 0 || !moved)
      break;
  }
  return last;
}

static void expect_peer_cn(struct client *c, const char *cn)
{
  X509 *peer = SSL_get1_peer_certificate(c->ssl);
  assert_non_null(peer);
  char got[64];
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, got, sizeof(got));
  assert_string_equal(got, cn);
  X509_free(peer);
  assert_int_equal(SSL_get_verify_result(c->ssl), X509_V_OK);
}

/* One request and answer over an established connection. */
static void exchange(struct client *c, struct pt_tls_conn *s)
{
  const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  size_t w;
  assert_int_equal(SSL_write_ex(c->ssl, req, sizeof(req) - 1, &w), 1);
  char plain[256];
  size_t got;
  pump(c, s, plain, sizeof(plain), &got);
  assert_int_equal(got, sizeof(req) - 1);
  assert_memory_equal(plain, req, got);
  const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  assert_int_equal(pt_tls_conn_write(s, resp, sizeof(resp) - 1), 0);
  pump(c, s, plain, sizeof(plain), &got);
  char back[256];
  size_t r = 0;
  assert_int_equal(SSL_read_ex(c->ssl, back, sizeof(back), &r), 1);
  assert_int_equal(r, sizeof(resp) - 1);
  assert_memory_equal(back, resp, r);
}

static const char H11[] = "\x08http/1.1";

static void connect_ok(struct client *c, struct pt_tls_ctx *ctx, struct pt_tls_conn **s, const char *trust1,
                       const char *trust2)
{
  client_init(c, trust1, trust2, H11, sizeof(H11) - 1);
  *s = pt_tls_conn_create(ctx);
  assert_non_null(*s);
  char plain[64];
  size_t got;
  assert_int_equal(pump(c, *s, plain, sizeof(plain), &got), 0);
  assert_true(SSL_is_init_finished(c->ssl));
  assert_true(pt_tls_conn_established(*s));
  const unsigned char *proto;
  unsigned len;
  SSL_get0_alpn_selected(c->ssl, &proto, &len);
  assert_int_equal(len, 8);
  assert_memory_equal(proto, "http/1.1", 8);
}

static void wait_for(uv_loop_t *loop, struct pt_tls_ctx *ctx, unsigned long long reloads, unsigned long long errors)
{
  struct pt_tls_ctx_stats st;
  for (int i = 0; i < 2000; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    pt_tls_ctx_stats(ctx, &st);
    if (st.reloads == reloads && st.reload_errors == errors)
      return;
    usleep(10000);
  }
  fail_msg("reloads %llu errors %llu, expected %llu %llu", st.reloads, st.reload_errors, reloads, errors);
}

/* Until the context's first looks at its files (and its load after them) are
 * done: a rotation before they are is a different case (the load sees it). */
static void settle(uv_loop_t *loop)
{
  for (int i = 0; i < 2000 && loop->active_reqs.count > 0; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(loop->active_reqs.count, 0);
}

static void test_handshake_rotation_and_bad_pair(void **state)
{
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char a_crt[128], a_key[128], b_crt[128], b_key[128], crt[128], key[128];
  path(a_crt, "a.crt");
  path(a_key, "a.key");
  path(b_crt, "b.crt");
  path(b_key, "b.key");
  path(crt, "tls.crt");
  path(key, "tls.key");
  make_pair("first", a_crt, a_key);
  make_pair("second", b_crt, b_key);
  install("a.crt", "tls.crt");
  install("a.key", "tls.key");

  char err[256] = "";
  struct pt_tls_ctx *ctx = pt_tls_ctx_create(&loop, crt, key, 0.05, err, sizeof(err));
  assert_non_null(ctx);
  settle(&loop);
  struct pt_tls_ctx_stats st;
  pt_tls_ctx_stats(ctx, &st);
  assert_true(st.not_after > (double)time(NULL));
  assert_int_equal(st.reloads, 0); /* the load after the first looks found the same pair */

  struct client c1;
  struct pt_tls_conn *s1;
  connect_ok(&c1, ctx, &s1, "a.crt", NULL);
  expect_peer_cn(&c1, "first");
  exchange(&c1, s1);

  /* Rotation: the new pair serves new connections; the open one goes on. */
  install("b.crt", "tls.crt");
  install("b.key", "tls.key");
  wait_for(&loop, ctx, 1, 0);
  struct client c2;
  struct pt_tls_conn *s2;
  connect_ok(&c2, ctx, &s2, "b.crt", NULL);
  expect_peer_cn(&c2, "second");
  exchange(&c2, s2);
  exchange(&c1, s1);

  /* A key that does not match: refused, the previous pair stays. */
  install("a.key", "tls.key");
  wait_for(&loop, ctx, 1, 1);
  pt_tls_ctx_stats(ctx, &st);
  assert_non_null(strstr(st.last_error, "does not match"));
  struct client c3;
  struct pt_tls_conn *s3;
  connect_ok(&c3, ctx, &s3, "b.crt", NULL);
  expect_peer_cn(&c3, "second");
  /* The matching certificate follows: taken. */
  install("a.crt", "tls.crt");
  wait_for(&loop, ctx, 2, 1);
  pt_tls_ctx_stats(ctx, &st);
  assert_string_equal(st.last_error, "");

  /* A client that trusts another CA fails the handshake, as does one offering
   * only h2. */
  struct client c4;
  struct pt_tls_conn *s4 = pt_tls_conn_create(ctx);
  client_init(&c4, "b.crt", NULL, H11, sizeof(H11) - 1);
  char plain[64];
  size_t got;
  pump(&c4, s4, plain, sizeof(plain), &got);
  assert_false(SSL_is_init_finished(c4.ssl));
  assert_int_equal(SSL_get_verify_result(c4.ssl), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
  static const char H2[] = "\x02h2";
  struct client c5;
  struct pt_tls_conn *s5 = pt_tls_conn_create(ctx);
  client_init(&c5, "a.crt", NULL, H2, sizeof(H2) - 1);
  assert_int_equal(pump(&c5, s5, plain, sizeof(plain), &got), -EPROTO);
  assert_true(strlen(pt_tls_conn_error(s5)) > 0);

  /* Garbage instead of a ClientHello. */
  struct pt_tls_conn *s6 = pt_tls_conn_create(ctx);
  assert_int_equal(pt_tls_conn_feed(s6, "GET / HTTP/1.1\r\n\r\n", 18), 0);
  assert_int_equal(pt_tls_conn_read(s6, plain, sizeof(plain)), -EPROTO);

  struct client *cs[] = {&c1, &c2, &c3, &c4, &c5};
  struct pt_tls_conn *ss[] = {s1, s2, s3, s4, s5, s6};
  for (size_t i = 0; i < 5; i++)
    client_close(cs[i]);
  pt_tls_ctx_destroy(ctx);
  /* Connections outlive the context (they hold the SSL_CTX). */
  for (size_t i = 0; i < 6; i++)
    pt_tls_conn_destroy(ss[i]);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_pairs_at_startup(void **state)
{
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char a_crt[128], a_key[128], b_key[128], missing[128], junk[128];
  path(a_crt, "a.crt");
  path(a_key, "a.key");
  path(b_key, "b.key");
  path(missing, "missing.pem");
  path(junk, "junk.pem");
  FILE *f = fopen(junk, "w");
  fputs("not a certificate\n", f);
  fclose(f);
  char err[512];
  assert_null(pt_tls_ctx_create(&loop, a_crt, b_key, 0, err, sizeof(err)));
  assert_non_null(strstr(err, "does not match"));
  assert_null(pt_tls_ctx_create(&loop, missing, a_key, 0, err, sizeof(err)));
  assert_non_null(strstr(err, "PULLTRACE_TLS_CERT"));
  assert_null(pt_tls_ctx_create(&loop, a_crt, junk, 0, err, sizeof(err)));
  assert_non_null(strstr(err, "PULLTRACE_TLS_KEY"));
  /* Without polling there is nothing to close. */
  struct pt_tls_ctx *ctx = pt_tls_ctx_create(&loop, a_crt, a_key, 0, err, sizeof(err));
  assert_non_null(ctx);
  pt_tls_ctx_destroy(ctx);
  pt_tls_ctx_destroy(NULL);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
  snprintf(dir, sizeof(dir), "/tmp/pt-tls-XXXXXX");
  if (!mkdtemp(dir))
    return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_handshake_rotation_and_bad_pair),
    cmocka_unit_test(test_bad_pairs_at_startup),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  const char *names[] = {"a.crt", "a.key", "b.crt", "b.key", "tls.crt", "tls.key", "junk.pem"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char p[128];
    path(p, names[i]);
    unlink(p);
  }
  rmdir(dir);
  return r;
}
