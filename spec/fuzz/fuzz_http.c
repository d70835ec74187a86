/* libFuzzer: the HTTP request path. Bytes go through the request parser in
 * random-sized pieces (the first byte picks the piece size), and every
 * complete request is routed through the server's API handler, as a
 * connection would do. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/http_server.h"
#include "core/log.h"
#include "server/server_impl.h"

static struct pt_server *srv;
static uv_loop_t loop;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!srv) {
    pt_log_setup("fuzz", PT_LOG_ERROR, PT_LOG_JSON);
    uv_loop_init(&loop);
    struct pt_server_config cfg = {0};
    char err[256];
    pt_config_load(pt_server_config_vars, &cfg, NULL, err, sizeof(err));
    cfg.report_min_interval = 0;
    /* The server always runs with a policy: the built-in one. */
    struct pt_policy_options po = {0};
    struct pt_policy *policy = pt_policy_create(&po, err, sizeof(err));
    srv = policy ? pt_server_create(&loop, &cfg, policy) : NULL;
    if (!srv)
      abort();
  }
  if (size < 1)
    return 0;
  size_t piece = (data[0] % 64) + 1;
  data++;
  size--;
  struct pt_http_parser p;
  pt_http_parser_init(&p, 4096, 65536);
  size_t off = 0;
  while (off < size) {
    size_t n = size - off < piece ? size - off : piece;
    size_t used;
    int r = pt_http_parser_feed(&p, (const char *)data + off, n, &used);
    if (r < 0)
      break;
    off += used;
    if (r == 1) {
      struct pt_http_req req;
      pt_http_parser_request(&p, &req);
      struct pt_http_resp resp;
      pt_http_resp_init(&resp);
      pt_server_api_handle(srv, &req, &resp);
      if (resp.stream_start)
        resp.stream_start(resp.stream_ud, NULL);
      struct pt_buf out;
      pt_buf_init(&out);
      pt_http_format_head(&out, &resp, resp.body.len, req.keep_alive, false, NULL);
      pt_buf_close(&out);
      pt_http_resp_close(&resp);
      if (!req.keep_alive)
        break;
      pt_http_parser_next(&p);
    }
  }
  pt_http_parser_close(&p);
  return 0;
}
