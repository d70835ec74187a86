/* The HTTP/1.1 request parser (llhttp callbacks into struct pt_http_parser)
 * and the request/response helpers of core/http_server.h; the connections
 * and the listener are in http_server.c. */
#include "core/http_server.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

/* ------------------------------------------------------------------------ */
/* Request parser                                                             */

static bool elem_open(struct pt_http_parser *p);

static struct pt_http_parser *P(llhttp_t *ll)
{
  return ll->data;
}

static int fail(struct pt_http_parser *p, int status, const char *reason)
{
  if (!p->error_status) {
    p->error_status = status;
    p->error_reason = reason;
  }
  return -1;
}

static int head_append(struct pt_http_parser *p, const char *at, size_t len, bool url)
{
  if (!elem_open(p)) {
    if (p->noffs >= sizeof(p->offs) / sizeof(p->offs[0]))
      return fail(p, 431, "too many header fields");
    p->offs[p->noffs++] = p->head.len;
    p->open = true;
  }
  if (p->head.len + len + 1 > p->max_header_bytes)
    return fail(p, url ? 414 : 431, url ? "request target too long" : "request header too large");
  if (pt_buf_append(&p->head, at, len))
    return fail(p, 500, "out of memory");
  return 0;
}

static bool elem_open(struct pt_http_parser *p)
{
  return p->open;
}

static int elem_close(struct pt_http_parser *p)
{
  if (!elem_open(p)) {
    if (p->noffs >= sizeof(p->offs) / sizeof(p->offs[0]))
      return fail(p, 431, "too many header fields");
    p->offs[p->noffs++] = p->head.len;
  }
  if (p->head.len + 1 > p->max_header_bytes)
    return fail(p, 431, "request header too large");
  if (pt_buf_append(&p->head, "", 1))
    return fail(p, 500, "out of memory");
  p->open = false;
  return 0;
}

static int on_message_begin(llhttp_t *ll)
{
  P(ll)->started = true;
  return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
  return head_append(P(ll), at, len, true);
}

static int on_field(llhttp_t *ll, const char *at, size_t len)
{
  return head_append(P(ll), at, len, false);
}

static int on_elem_complete(llhttp_t *ll)
{
  return elem_close(P(ll));
}

static int on_headers_complete(llhttp_t *ll)
{
  struct pt_http_parser *p = P(ll);
  bool body = ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0) || (ll->flags & F_CHUNKED);
  /* Paused, the owner refuses what it would refuse anyway (a bad token)
   * before the size is judged: pt_http_parser_resume() judges it. */
  bool pause = p->pause_on_head && body;
  if (!pause && (ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->max_body_bytes)
    return fail(p, 413, "body too large");
  const char *m = llhttp_method_name((llhttp_method_t)ll->method);
  snprintf(p->method, sizeof(p->method), "%s", m);
  /* Headers alternate name/value after the URL. */
  for (size_t i = 1; i + 1 < p->noffs; i += 2) {
    if (strcasecmp(p->head.data + p->offs[i], "expect") == 0 &&
        strcasecmp(p->head.data + p->offs[i + 1], "100-continue") == 0)
      p->expect_continue = true;
  }
  if (pause) {
    p->head_paused = true;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
  struct pt_http_parser *p = P(ll);
  if (p->body.len + len > p->max_body_bytes)
    return fail(p, 413, "body too large");
  if (pt_buf_append(&p->body, at, len))
    return fail(p, 500, "out of memory");
  return 0;
}

static int on_message_complete(llhttp_t *ll)
{
  P(ll)->complete = true;
  return HPE_PAUSED;
}

void pt_http_parser_init(struct pt_http_parser *p, size_t max_header_bytes, size_t max_body_bytes)
{
  memset(p, 0, sizeof(*p));
  p->max_header_bytes = max_header_bytes ? max_header_bytes : 16384;
  p->max_body_bytes = max_body_bytes ? max_body_bytes : 1048576;
  llhttp_settings_init(&p->settings);
  p->settings.on_message_begin = on_message_begin;
  p->settings.on_url = on_url;
  p->settings.on_url_complete = on_elem_complete;
  p->settings.on_header_field = on_field;
  p->settings.on_header_field_complete = on_elem_complete;
  p->settings.on_header_value = on_field;
  p->settings.on_header_value_complete = on_elem_complete;
  p->settings.on_headers_complete = on_headers_complete;
  p->settings.on_body = on_body;
  p->settings.on_message_complete = on_message_complete;
  llhttp_init(&p->ll, HTTP_REQUEST, &p->settings);
  p->ll.data = p;
  pt_buf_init(&p->head);
  pt_buf_init(&p->body);
}

void pt_http_parser_close(struct pt_http_parser *p)
{
  pt_buf_close(&p->head);
  pt_buf_close(&p->body);
}

int pt_http_parser_feed(struct pt_http_parser *p, const char *data, size_t len, size_t *consumed)
{
  *consumed = 0;
  if (p->error_status)
    return -1;
  if (len == 0)
    return 0;
  llhttp_errno_t err = llhttp_execute(&p->ll, data, len);
  if (err == HPE_OK) {
    *consumed = len;
    return 0;
  }
  if (err == HPE_PAUSED && p->head_paused) {
    const char *pos = llhttp_get_error_pos(&p->ll);
    *consumed = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    return 2;
  }
  if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && p->complete) {
    const char *pos = llhttp_get_error_pos(&p->ll);
    *consumed = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    return 1;
  }
  if (!p->error_status) {
    p->error_status = err == HPE_PAUSED_UPGRADE ? 501 : 400;
    p->error_reason = llhttp_get_error_reason(&p->ll);
    if (!p->error_reason)
      p->error_reason = llhttp_errno_name(err);
  }
  return -1;
}

void pt_http_parser_request(struct pt_http_parser *p, struct pt_http_req *req)
{
  memset(req, 0, sizeof(*req));
  req->method = p->method;
  req->target = p->noffs > 0 ? p->head.data + p->offs[0] : "/";
  req->path = req->target;
  req->query = "";
  /* The target is split once; a request seen twice (its head, then all of
   * it) keeps its query. */
  if (!p->query_split) {
    char *q = strchr(p->head.data + p->offs[0], '?');
    p->query_at = q ? (size_t)(q - p->head.data) + 1 : 0;
    if (q)
      *q = '\0';
    p->query_split = true;
  }
  if (p->query_at)
    req->query = p->head.data + p->query_at;
  for (size_t i = 1; i + 1 < p->noffs && req->nheaders < PT_HTTP_MAX_HEADERS; i += 2) {
    req->headers[req->nheaders].name = p->head.data + p->offs[i];
    req->headers[req->nheaders].value = p->head.data + p->offs[i + 1];
    req->nheaders++;
  }
  req->body = p->body.data ? p->body.data : "";
  req->body_len = p->body.len;
  req->keep_alive = llhttp_should_keep_alive(&p->ll) && !p->ll.upgrade;
  req->head = p->ll.method == HTTP_HEAD;
  req->peer = "";
}

int pt_http_parser_resume(struct pt_http_parser *p)
{
  if (p->head_paused && llhttp_get_errno(&p->ll) == HPE_PAUSED)
    llhttp_resume(&p->ll);
  p->head_paused = false;
  if ((p->ll.flags & F_CONTENT_LENGTH) && p->ll.content_length > p->max_body_bytes)
    return fail(p, 413, "body too large");
  return 0;
}

void pt_http_parser_next(struct pt_http_parser *p)
{
  if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
    llhttp_resume(&p->ll);
  pt_buf_reset(&p->head);
  pt_buf_reset(&p->body);
  p->noffs = 0;
  p->open = false;
  p->method[0] = '\0';
  p->complete = false;
  p->expect_continue = false;
  p->started = false;
  p->head_paused = false;
  p->query_split = false;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */

const char *pt_http_req_header(const struct pt_http_req *req, const char *name)
{
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pt_http_url_decode(const char *in, size_t len, char *out, size_t outlen, bool form)
{
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)in[i];
    if (c == '%') {
      if (i + 2 >= len)
        return -EINVAL;
      int h = hexval(in[i + 1]), l = hexval(in[i + 2]);
      if (h < 0 || l < 0)
        return -EINVAL;
      c = h * 16 + l;
      i += 2;
    } else if (c == '+' && form) {
      c = ' ';
    }
    if (c == 0 || o + 1 >= outlen)
      return -EINVAL;
    out[o++] = (char)c;
  }
  if (o >= outlen)
    return -EINVAL;
  out[o] = '\0';
  return (int)o;
}

int pt_http_query_get(const char *query, const char *key, char *out, size_t outlen)
{
  size_t klen = strlen(key);
  const char *p = query;
  while (p && *p) {
    const char *amp = strchr(p, '&');
    size_t plen = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', plen);
    size_t nlen = eq ? (size_t)(eq - p) : plen;
    if (nlen == klen && memcmp(p, key, klen) == 0) {
      const char *v = eq ? eq + 1 : p + plen;
      size_t vlen = eq ? plen - nlen - 1 : 0;
      int r = pt_http_url_decode(v, vlen, out, outlen, true);
      return r < 0 ? -EINVAL : 1;
    }
    p = amp ? amp + 1 : NULL;
  }
  return 0;
}

const char *pt_http_status_text(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 421: return "Misdirected Request";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

int pt_http_format_head(struct pt_buf *out, const struct pt_http_resp *resp, size_t content_length,
                        bool keep_alive, bool streaming, const char *default_headers)
{
  int status = resp->status ? resp->status : 200;
  pt_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, pt_http_status_text(status));
  if (resp->content_type)
    pt_buf_printf(out, "Content-Type: %s\r\n", resp->content_type);
  if (!streaming)
    pt_buf_printf(out, "Content-Length: %zu\r\n", content_length);
  pt_buf_puts(out, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (default_headers)
    pt_buf_puts(out, default_headers);
  if (resp->headers.len)
    pt_buf_append(out, resp->headers.data, resp->headers.len);
  return pt_buf_puts(out, "\r\n");
}

void pt_http_resp_init(struct pt_http_resp *resp)
{
  memset(resp, 0, sizeof(*resp));
  pt_buf_init(&resp->headers);
  pt_buf_init(&resp->body);
}

void pt_http_resp_close(struct pt_http_resp *resp)
{
  pt_buf_close(&resp->headers);
  pt_buf_close(&resp->body);
}

void pt_http_resp_error(struct pt_http_resp *resp, int status, const char *msg, const char *field)
{
  resp->status = status;
  resp->content_type = "application/json; charset=utf-8";
  pt_buf_reset(&resp->body);
  json_t *o = json_pack("{s:s,s:o}", "error", msg, "field", field ? json_string(field) : json_null());
  char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  pt_buf_puts(&resp->body, s ? s : "{\"error\":\"internal error\",\"field\":null}");
  free(s);
  json_decref(o);
}
