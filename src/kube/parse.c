#include "kube/parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"

/* ------------------------------------------------------------------------ */
/* kubelet messages                                                           */

static const char *const kind_names[PT_KUBE_MSG_KIND_COUNT] = {
  "other", "pulling", "pulled", "present", "failed", "backoff", "never_pull", "inspect_failed", "error_state",
};

const char *pt_kube_msg_kind_name(enum pt_kube_msg_kind k)
{
  return (unsigned)k < PT_KUBE_MSG_KIND_COUNT ? kind_names[k] : "other";
}

bool pt_kube_msg_is_failure(enum pt_kube_msg_kind k)
{
  return k == PT_KUBE_MSG_FAILED || k == PT_KUBE_MSG_BACKOFF || k == PT_KUBE_MSG_NEVER_PULL ||
         k == PT_KUBE_MSG_INSPECT_FAILED;
}

static bool starts(const char *s, const char *prefix, const char **rest)
{
  size_t n = strlen(prefix);
  if (strncmp(s, prefix, n) != 0)
    return false;
  *rest = s + n;
  return true;
}

/* Copies the reference up to the closing quote; returns what follows it. */
static const char *quoted(const char *s, char *out, size_t cap)
{
  const char *q = strchr(s, '"');
  if (!q || q == s || (size_t)(q - s) >= cap)
    return NULL;
  memcpy(out, s, (size_t)(q - s));
  out[q - s] = '\0';
  return q + 1;
}

/* " in 1.2s (1.5s including waiting)" -> 1.2, 1.5 */
static void pulled_durations(const char *s, struct pt_kube_msg *out)
{
  const char *r;
  if (!starts(s, " in ", &r))
    return;
  char buf[64];
  /* A duration has a fraction ("1.234s"): stop at a space, a parenthesis or
   * a sentence's full stop. */
  size_t n = 0;
  while (r[n] && r[n] != ' ' && r[n] != '(' && n < sizeof(buf) - 1) {
    if (r[n] == '.' && !isdigit((unsigned char)r[n + 1]))
      break; /* a sentence's full stop */
    n++;
  }
  memcpy(buf, r, n);
  buf[n] = '\0';
  double d;
  if (n && pt_duration_parse(buf, &d) == 0)
    out->duration = d;
  const char *w = strstr(r, " (");
  if (w && strstr(w, " including waiting")) {
    w += 2;
    n = strcspn(w, " )");
    if (n < sizeof(buf)) {
      memcpy(buf, w, n);
      buf[n] = '\0';
      if (pt_duration_parse(buf, &d) == 0)
        out->waiting = d;
    }
  }
}

int pt_kube_message_parse(const char *reason, const char *message, struct pt_kube_msg *out)
{
  memset(out, 0, sizeof(*out));
  out->duration = out->waiting = -1;
  const char *m = message ? message : "";
  const char *r = reason ? reason : "";
  const char *rest;
  const char *after;

  if (starts(m, "Pulling image \"", &rest) && quoted(rest, out->image, sizeof(out->image))) {
    out->kind = PT_KUBE_MSG_PULLING;
  } else if (starts(m, "Successfully pulled image \"", &rest) &&
             (after = quoted(rest, out->image, sizeof(out->image)))) {
    out->kind = PT_KUBE_MSG_PULLED;
    pulled_durations(after, out);
  } else if (starts(m, "Container image \"", &rest) && (after = quoted(rest, out->image, sizeof(out->image)))) {
    if (strncmp(after, " already present on machine", 27) == 0)
      out->kind = PT_KUBE_MSG_PRESENT;
    else if (strstr(after, "is not present with pull policy of Never"))
      out->kind = PT_KUBE_MSG_NEVER_PULL;
    else
      out->image[0] = '\0';
  } else if (starts(m, "Failed to pull image \"", &rest) && quoted(rest, out->image, sizeof(out->image))) {
    out->kind = PT_KUBE_MSG_FAILED;
  } else if (starts(m, "Back-off pulling image \"", &rest) && quoted(rest, out->image, sizeof(out->image))) {
    out->kind = PT_KUBE_MSG_BACKOFF;
  } else if ((starts(m, "Failed to inspect image \"", &rest) ||
              starts(m, "Failed to apply default image tag \"", &rest)) &&
             quoted(rest, out->image, sizeof(out->image))) {
    out->kind = PT_KUBE_MSG_INSPECT_FAILED;
  } else if (starts(m, "Error: ", &rest) &&
             (strcmp(rest, "ErrImagePull") == 0 || strcmp(rest, "ImagePullBackOff") == 0 ||
              strcmp(rest, "ErrImageNeverPull") == 0 || strcmp(rest, "InvalidImageName") == 0)) {
    out->kind = PT_KUBE_MSG_ERROR_STATE;
  }
  if (out->kind == PT_KUBE_MSG_OTHER) {
    /* Unknown wording (another kubelet version): the reason alone still says
     * what happened, and the first quoted string is the image. */
    enum pt_kube_msg_kind k = PT_KUBE_MSG_OTHER;
    if (strcmp(r, "Pulling") == 0) k = PT_KUBE_MSG_PULLING;
    else if (strcmp(r, "ErrImagePull") == 0) k = PT_KUBE_MSG_FAILED;
    else if (strcmp(r, "ErrImageNeverPull") == 0) k = PT_KUBE_MSG_NEVER_PULL;
    else if (strcmp(r, "InspectFailed") == 0) k = PT_KUBE_MSG_INSPECT_FAILED;
    if (k != PT_KUBE_MSG_OTHER) {
      const char *q = strchr(m, '"');
      out->image[0] = '\0';
      if (q)
        quoted(q + 1, out->image, sizeof(out->image));
      out->kind = k;
    }
  }
  if (out->kind == PT_KUBE_MSG_OTHER)
    out->image[0] = '\0';
  return out->kind == PT_KUBE_MSG_OTHER ? -EINVAL : 0;
}

/* ------------------------------------------------------------------------ */
/* Watch stream                                                               */

static const char *const watch_names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "UNKNOWN"};

const char *pt_kube_watch_type_name(enum pt_kube_watch_type t)
{
  return (unsigned)t <= PT_KUBE_UNKNOWN ? watch_names[t] : "UNKNOWN";
}

void pt_kube_stream_init(struct pt_kube_stream *st, size_t max_line)
{
  memset(st, 0, sizeof(*st));
  st->max_line = max_line ? max_line : 4u << 20;
}

void pt_kube_stream_close(struct pt_kube_stream *st)
{
  free(st->buf);
  st->buf = NULL;
  st->len = st->cap = 0;
}

void pt_kube_stream_reset(struct pt_kube_stream *st)
{
  st->len = 0;
}

static int handle_line(struct pt_kube_stream *st, const char *line, size_t n, pt_kube_watch_fn fn, void *ud)
{
  size_t i = 0;
  while (i < n && isspace((unsigned char)line[i]))
    i++;
  if (i == n)
    return 0;
  json_error_t jerr;
  json_t *root = json_loadb(line, n, 0, &jerr);
  json_t *type = json_object_get(root, "type");
  json_t *obj = json_object_get(root, "object");
  if (!json_is_object(root) || !json_is_string(type) || !json_is_object(obj)) {
    st->bad++;
    json_decref(root);
    return 0;
  }
  enum pt_kube_watch_type t = PT_KUBE_UNKNOWN;
  for (int k = 0; k < PT_KUBE_UNKNOWN; k++)
    if (strcmp(json_string_value(type), watch_names[k]) == 0)
      t = (enum pt_kube_watch_type)k;
  st->events++;
  int r = fn ? fn(ud, t, obj) : 0;
  json_decref(root);
  return r;
}

static int buf_append(struct pt_kube_stream *st, const char *data, size_t n)
{
  if (st->len + n > st->max_line)
    return -E2BIG;
  if (st->len + n > st->cap) {
    size_t cap = st->cap ? st->cap : 4096;
    while (cap < st->len + n)
      cap *= 2;
    char *p = realloc(st->buf, cap);
    if (!p)
      return -ENOMEM;
    st->buf = p;
    st->cap = cap;
  }
  memcpy(st->buf + st->len, data, n);
  st->len += n;
  return 0;
}

int pt_kube_stream_feed(struct pt_kube_stream *st, const char *data, size_t len, pt_kube_watch_fn fn, void *ud)
{
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    if (!nl)
      return buf_append(st, data, len);
    size_t seg = (size_t)(nl - data);
    int r;
    if (st->len) {
      /* The line started in an earlier chunk. */
      if ((r = buf_append(st, data, seg)))
        return r;
      size_t n = st->len;
      st->len = 0;
      if ((r = handle_line(st, st->buf, n, fn, ud)))
        return r;
      data = nl + 1;
      len -= seg + 1;
      continue;
    }
    if (seg > st->max_line)
      return -E2BIG;
    if ((r = handle_line(st, data, seg, fn, ud)))
      return r;
    data = nl + 1;
    len -= seg + 1;
  }
  return 0;
}

int pt_kube_stream_finish(struct pt_kube_stream *st, pt_kube_watch_fn fn, void *ud)
{
  size_t n = st->len;
  st->len = 0;
  return n ? handle_line(st, st->buf, n, fn, ud) : 0;
}

int pt_kube_status_code(const json_t *obj)
{
  const char *kind = json_string_value(json_object_get(obj, "kind"));
  json_t *code = json_object_get(obj, "code");
  if (!kind || strcmp(kind, "Status") != 0 || !json_is_integer(code))
    return 0;
  json_int_t c = json_integer_value(code);
  return c > 0 && c < 1000 ? (int)c : 0;
}

/* ------------------------------------------------------------------------ */
/* Slim objects                                                               */

static const char *path_str(const json_t *o, const char *a, const char *b)
{
  const json_t *v = json_object_get(o, a);
  if (b)
    v = json_object_get(v, b);
  return json_string_value(v);
}

static void set_str_if(json_t *o, const char *key, const char *v)
{
  if (v)
    json_object_set_new(o, key, json_string(v));
}

static const char *waiting_reason(const json_t *statuses, const char *name)
{
  size_t i;
  json_t *st;
  json_array_foreach(statuses, i, st) {
    const char *n = json_string_value(json_object_get(st, "name"));
    if (n && name && strcmp(n, name) == 0)
      return path_str(json_object_get(st, "state"), "waiting", "reason");
  }
  return NULL;
}

static json_t *slim_containers(const json_t *specs, const json_t *statuses)
{
  json_t *arr = json_array();
  size_t i;
  json_t *c;
  json_array_foreach(specs, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *image = json_string_value(json_object_get(c, "image"));
    if (!name || !image)
      continue;
    json_t *o = json_pack("{s:s,s:s}", "name", name, "image", image);
    set_str_if(o, "waiting", waiting_reason(statuses, name));
    json_array_append_new(arr, o);
  }
  return arr;
}

json_t *pt_kube_pod_slim(const json_t *pod)
{
  const json_t *md = json_object_get(pod, "metadata");
  const char *ns = json_string_value(json_object_get(md, "namespace"));
  const char *name = json_string_value(json_object_get(md, "name"));
  if (!ns || !name)
    return NULL;
  const json_t *spec = json_object_get(pod, "spec");
  const json_t *status = json_object_get(pod, "status");
  json_t *o = json_pack("{s:s,s:s}", "namespace", ns, "name", name);
  set_str_if(o, "uid", json_string_value(json_object_get(md, "uid")));
  set_str_if(o, "resourceVersion", json_string_value(json_object_get(md, "resourceVersion")));
  set_str_if(o, "node", json_string_value(json_object_get(spec, "nodeName")));
  set_str_if(o, "phase", json_string_value(json_object_get(status, "phase")));
  json_object_set_new(o, "containers", slim_containers(json_object_get(spec, "containers"),
                                                       json_object_get(status, "containerStatuses")));
  json_object_set_new(o, "initContainers", slim_containers(json_object_get(spec, "initContainers"),
                                                           json_object_get(status, "initContainerStatuses")));
  return o;
}

static double parse_time(const json_t *v)
{
  double t;
  const char *s = json_string_value(v);
  return s && pt_time_parse(s, &t) == 0 ? t : 0;
}

double pt_kube_event_time(const json_t *ev)
{
  double t;
  if ((t = parse_time(json_object_get(ev, "lastTimestamp"))) > 0) return t;
  if ((t = parse_time(json_object_get(json_object_get(ev, "series"), "lastObservedTime"))) > 0) return t;
  if ((t = parse_time(json_object_get(ev, "eventTime"))) > 0) return t;
  if ((t = parse_time(json_object_get(ev, "firstTimestamp"))) > 0) return t;
  return parse_time(json_object_get(json_object_get(ev, "metadata"), "creationTimestamp"));
}

int pt_kube_event_classify(json_t *o)
{
  struct pt_kube_msg msg;
  if (pt_kube_message_parse(json_string_value(json_object_get(o, "reason")),
                            json_string_value(json_object_get(o, "message")), &msg) != 0)
    return -EINVAL;
  json_object_set_new(o, "kind", json_string(pt_kube_msg_kind_name(msg.kind)));
  if (msg.image[0])
    json_object_set_new(o, "image", json_string(msg.image));
  if (msg.duration >= 0)
    json_object_set_new(o, "durationSeconds", json_real(msg.duration));
  if (msg.waiting >= 0)
    json_object_set_new(o, "waitingSeconds", json_real(msg.waiting));
  return 0;
}

json_t *pt_kube_event_slim(const json_t *ev)
{
  const json_t *md = json_object_get(ev, "metadata");
  const json_t *io = json_object_get(ev, "involvedObject");
  const char *kind = json_string_value(json_object_get(io, "kind"));
  const char *pod = json_string_value(json_object_get(io, "name"));
  const char *ns = json_string_value(json_object_get(io, "namespace"));
  if (!ns)
    ns = json_string_value(json_object_get(md, "namespace"));
  if (!kind || strcmp(kind, "Pod") != 0 || !pod || !ns)
    return NULL;
  const char *reason = json_string_value(json_object_get(ev, "reason"));
  const char *message = json_string_value(json_object_get(ev, "message"));
  if (!reason)
    return NULL;
  json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "namespace", ns, "pod", pod, "reason", reason, "message",
                        message ? message : "");
  if (!o || pt_kube_event_classify(o) != 0) {
    json_decref(o);
    return NULL;
  }
  set_str_if(o, "uid", json_string_value(json_object_get(md, "uid")));
  set_str_if(o, "podUid", json_string_value(json_object_get(io, "uid")));
  const char *node = path_str(ev, "source", "host");
  if (!node || !*node)
    node = json_string_value(json_object_get(ev, "reportingInstance"));
  if (node && *node)
    json_object_set_new(o, "node", json_string(node));
  json_int_t count = 1;
  json_t *c = json_object_get(ev, "count");
  json_t *sc = json_object_get(json_object_get(ev, "series"), "count");
  if (json_is_integer(c) && json_integer_value(c) > 0)
    count = json_integer_value(c);
  else if (json_is_integer(sc) && json_integer_value(sc) > 0)
    count = json_integer_value(sc);
  json_object_set_new(o, "count", json_integer(count));
  double first = parse_time(json_object_get(ev, "firstTimestamp"));
  double last = pt_kube_event_time(ev);
  if (first <= 0)
    first = last;
  json_object_set_new(o, "firstTimestamp", first > 0 ? json_real(first) : json_null());
  json_object_set_new(o, "lastTimestamp", last > 0 ? json_real(last) : json_null());
  return o;
}
