/* libFuzzer: the HTTP request path. The input is parsed twice: once in one
 * piece, and once in random-sized pieces (the first byte picks the size)
 * stopping after every request head as the server does for its early
 * refusals. Invariants beyond sanitizer cleanliness: both parses see the same
 * requests (method, target, headers, body) and both end in an error or
 * neither; an error is a 4xx/5xx with a reason; the early check refuses only a report without the
 * server's token, with 401; every complete request is routed through the
 * server's API handler (with the real default policy) and gets a status
 * from 100 to 599. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/http_server.h"
#include "core/log.h"
#include "server/server_impl.h"

#define TOKEN "fuzz-token"
#define MAX_REQS 64

static struct pt_server *srv;
static uv_loop_t loop;

static void fuzz_fail(const char *what)
{
  fprintf(stderr, "invariant broken: %s\n", what);
  abort();
}

struct seen {
  uint64_t hash[MAX_REQS];
  size_t n;
  int error; /* the parser's error_status at the end, 0 when none */
};

static uint64_t req_hash(const struct pt_http_req *req)
{
  uint64_t h = pt_fnv1a(PT_FNV1A_INIT, req->method, strlen(req->method) + 1);
  h = pt_fnv1a(h, req->path, strlen(req->path) + 1);
  h = pt_fnv1a(h, req->query, strlen(req->query) + 1);
  for (size_t i = 0; i < req->nheaders; i++) {
    h = pt_fnv1a(h, req->headers[i].name, strlen(req->headers[i].name) + 1);
    h = pt_fnv1a(h, req->headers[i].value, strlen(req->headers[i].value) + 1);
  }
  h = pt_fnv1a(h, req->body, req->body_len);
  return pt_fnv1a(h, &req->keep_alive, sizeof(req->keep_alive));
}

static void route(const struct pt_http_req *req)
{
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  pt_server_api_handle(srv, req, &resp);
  if (resp.stream_start)
    resp.stream_start(resp.stream_ud, NULL);
  if (resp.status && (resp.status < 100 || resp.status > 599))
    fuzz_fail("a status outside 100-599");
  struct pt_buf out;
  pt_buf_init(&out);
  pt_http_format_head(&out, &resp, resp.body.len, req->keep_alive, false, NULL);
  pt_buf_close(&out);
  pt_http_resp_close(&resp);
}

/* The early check: refuses only an unauthenticated report, with 401. */
static void check_head(const struct pt_http_req *req)
{
  struct pt_http_resp resp;
  pt_http_resp_init(&resp);
  pt_server_api_check_head(srv, req, &resp);
  if (resp.status) {
    const char *auth = pt_http_req_header(req, "authorization");
    if (resp.status != 401 || strcmp(req->path, "/api/v1/report") != 0 ||
        (auth && strcmp(auth, "Bearer " TOKEN) == 0))
      fuzz_fail("the early check refused what it must not");
  }
  pt_http_resp_close(&resp);
}

static void parse(const uint8_t *data, size_t size, size_t piece, bool pause, struct seen *out)
{
  struct pt_http_parser p;
  pt_http_parser_init(&p, 4096, 65536);
  p.pause_on_head = pause;
  memset(out, 0, sizeof(*out));
  size_t off = 0;
  while (off < size && out->n < MAX_REQS) {
    size_t n = size - off < piece ? size - off : piece;
    size_t used;
    int r = pt_http_parser_feed(&p, (const char *)data + off, n, &used);
    if (r < 0)
      break;
    off += used;
    if (r == 2) {
      struct pt_http_req req;
      pt_http_parser_request(&p, &req);
      check_head(&req);
      if (pt_http_parser_resume(&p) < 0)
        break;
    } else if (r == 1) {
      struct pt_http_req req;
      pt_http_parser_request(&p, &req);
      out->hash[out->n++] = req_hash(&req);
      if (!pause)
        route(&req);
      if (!req.keep_alive)
        break;
      pt_http_parser_next(&p);
    }
  }
  out->error = p.error_status;
  if (out->error && (out->error < 400 || out->error > 599 || !p.error_reason))
    fuzz_fail("a parser error that is not a 4xx/5xx with a reason");
  pt_http_parser_close(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!srv) {
    pt_log_setup("fuzz", PT_LOG_ERROR, PT_LOG_JSON);
    uv_loop_init(&loop);
    struct pt_server_config cfg = {0};
    char err[1024];
    setenv("PULLTRACE_AGENT_TOKEN", TOKEN, 1);
    pt_config_load(pt_server_config_vars, &cfg, NULL, err, sizeof(err));
    cfg.report_min_interval = 0;
    struct pt_policy_options po = {0};
    struct pt_policy *policy = pt_policy_create(&po, err, sizeof(err));
    if (!policy)
      fuzz_fail(err);
    srv = pt_server_create(&loop, &cfg, policy);
    if (!srv)
      fuzz_fail("cannot create the server");
  }
  if (size < 1)
    return 0;
  size_t piece = (data[0] % 64) + 1;
  data++;
  size--;
  struct seen whole, pieces;
  parse(data, size, size ? size : 1, false, &whole);
  parse(data, size, piece, true, &pieces);
  if (whole.n != pieces.n || memcmp(whole.hash, pieces.hash, whole.n * sizeof(whole.hash[0])) != 0)
    fuzz_fail("pieces and pauses changed the requests parsed");
  /* Which limit trips first may depend on where the pieces end (a header
   * count reached before a bad byte further on), whether one trips may not. */
  if (!whole.error != !pieces.error) {
    fprintf(stderr, "error %d in one piece, %d in pieces of %zu\n", whole.error, pieces.error, piece);
    fuzz_fail("pieces and pauses changed the parser's error");
  }
  return 0;
}
