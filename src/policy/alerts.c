/* The policy host's alert hook: what scripts emit for an event is validated
 * here (names, labels, Kubernetes Events), keyed, suppressed while it repeats,
 * and delivered to the server's callback. The other hooks are in policy.c. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "policy/internal.h"

#define MAX_ALERTS_PER_CALL 64
#define MAX_LABELS 32
#define MAX_SENT 4096

struct alert_buf {
  char *name, *severity, *summary;
  json_t *labels;
  json_t *kube_event; /* the validated kubernetesEvent with its defaults, or NULL */
};

struct emit_ctx {
  struct vm *vm;
  const struct handler *h;
  const char *type;
  const json_t *event;
  struct alert_buf alerts[MAX_ALERTS_PER_CALL];
  size_t n;
};

static bool label_name_ok(const char *s, size_t len)
{
  if (len == 0 || len > 128)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool alpha = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alpha && (i == 0 || c < '0' || c > '9'))
      return false;
  }
  return true;
}

/* An Event reason: UpperCamelCase letters and digits, as Kubernetes' own. */
static bool event_reason_ok(const char *s)
{
  if (!s || !(*s >= 'A' && *s <= 'Z'))
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
      return false;
  return true;
}

/* The optional string member k of the table at idx: *out is NULL when it is
 * absent, false when it is present but not a string of 1..max bytes. */
static bool opt_str(lua_State *L, int idx, const char *k, size_t max, const char **out)
{
  /* Left on the stack (the caller resets it) so that the string stays valid. */
  int t = rawfield(L, idx, k);
  *out = t == LUA_TNIL ? NULL : short_str(L, -1, max);
  return t == LUA_TNIL || *out;
}

/* An alert's kubernetesEvent (docs/policy.md): true for every default, or a
 * table {reason, type, note, action, resolvedReason, resolvedNote}. Fills
 * the defaults from the alert; returns a reason when invalid. */
static const char *take_kube_event(lua_State *L, int idx, const char *name, const char *sev, const char *summary,
                                   json_t **out)
{
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, idx)))
    return NULL;
  const char *reason = NULL, *type = NULL, *note = NULL, *action = NULL, *rreason = NULL, *rnote = NULL;
  if (t == LUA_TTABLE) {
    if (!opt_str(L, idx, "reason", 128, &reason) || !opt_str(L, idx, "type", 16, &type) ||
        !opt_str(L, idx, "note", 1024, &note) || !opt_str(L, idx, "action", 128, &action) ||
        !opt_str(L, idx, "resolvedReason", 128, &rreason) || !opt_str(L, idx, "resolvedNote", 1024, &rnote))
      return "kubernetesEvent members must be strings (reason and action up to 128 bytes, notes up to 1024)";
  } else if (t != LUA_TBOOLEAN) {
    return "kubernetesEvent must be true or a table {reason, type, note, action, resolvedReason, resolvedNote}";
  }
  if (!reason)
    reason = name;
  if (!event_reason_ok(reason) || (rreason && !event_reason_ok(rreason)))
    return "kubernetesEvent reasons must be UpperCamelCase letters and digits, e.g. \"PullStalled\"";
  if (!type)
    type = strcmp(sev, "info") == 0 ? "Normal" : "Warning";
  if (strcmp(type, "Normal") && strcmp(type, "Warning"))
    return "kubernetesEvent type must be \"Normal\" or \"Warning\"";
  if (rnote && !rreason)
    return "kubernetesEvent resolvedNote needs a resolvedReason";
  /* A summary over the API's 1 kB for a note is cut by the Event writer
   * (server/kube_events.c), on a character boundary. */
  if (!note)
    note = *summary ? summary : name;
  json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "reason", reason, "type", type, "note", note, "action",
                         action ? action : "Pulling");
  if (!ev)
    return "kubernetesEvent note must be UTF-8";
  if (rreason) {
    json_object_set_new(ev, "resolvedReason", json_string(rreason));
    json_object_set_new(ev, "resolvedNote", rnote ? json_string(rnote) : json_string(rreason));
  }
  *out = ev;
  return NULL;
}

/* Validates the alert table at idx into x->alerts; returns a reason or NULL. */
static const char *take_alert(lua_State *L, int idx, struct emit_ctx *x)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return "an alert must be a table {name, severity, summary, labels}";
  if (x->n == MAX_ALERTS_PER_CALL)
    return "more than 64 alerts from one call";
  int top = lua_gettop(L);
  rawfield(L, idx, "name");
  rawfield(L, idx, "severity");
  rawfield(L, idx, "summary");
  int lt = rawfield(L, idx, "labels");
  const char *name = short_str(L, top + 1, 128);
  const char *sev = short_str(L, top + 2, 16);
  const char *summary = lua_isnil(L, top + 3) || (lua_type(L, top + 3) == LUA_TSTRING &&
                                                  lua_rawlen(L, top + 3) == 0)
                            ? ""
                            : short_str(L, top + 3, 4096);
  if (!name)
    return "alert name must be a non-empty string of at most 128 bytes";
  if (!sev || (strcmp(sev, "info") && strcmp(sev, "warning") && strcmp(sev, "critical")))
    return "alert severity must be \"info\", \"warning\" or \"critical\"";
  if (!summary)
    return "alert summary must be a string of at most 4096 bytes";
  if (lt != LUA_TNIL && lt != LUA_TTABLE)
    return "alert labels must be a table of strings";
  struct alert_buf *a = &x->alerts[x->n];
  memset(a, 0, sizeof(*a));
  a->labels = json_object();
  if (!a->labels)
    luaL_error(L, "out of memory");
  x->n++; /* owned by the context from here on, freed by the caller */
  if (lt == LUA_TTABLE) {
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, top + 4)) {
      size_t klen, vlen;
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING || ++count > MAX_LABELS)
        return "alert labels must be at most 32 string keys with string values";
      const char *k = lua_tolstring(L, -2, &klen);
      const char *v = lua_tolstring(L, -1, &vlen);
      if (!label_name_ok(k, klen) || vlen > 1024 || strlen(v) != vlen)
        return "alert label names must match [a-zA-Z_][a-zA-Z0-9_]* and values be short strings";
      if (json_object_set_new(a->labels, k, json_stringn(v, vlen)))
        return "alert label values must be UTF-8";
      lua_pop(L, 1);
    }
  }
  rawfield(L, idx, "kubernetesEvent");
  const char *why = take_kube_event(L, lua_gettop(L), name, sev, summary, &a->kube_event);
  if (why)
    return why;
  a->name = strdup(name);
  a->severity = strdup(sev);
  a->summary = strdup(summary);
  if (!a->name || !a->severity || !a->summary)
    luaL_error(L, "out of memory");
  lua_settop(L, top);
  return NULL;
}

static void emit_body(lua_State *L, void *c, const char **invalid)
{
  struct emit_ctx *x = c;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->h->ref);
  if (x->event)
    vm_push_json(L, x->event, 0);
  else
    lua_newtable(L);
  lua_pushstring(L, x->type);
  lua_call(L, 2, 1);
  int r = lua_absindex(L, -1);
  if (lua_isnil(L, r))
    return;
  if (lua_type(L, r) != LUA_TTABLE) {
    *invalid = "an alert handler must return nil, an alert or a list of alerts";
    return;
  }
  /* One alert has a name; otherwise it is a list. Invalid entries are
   * dropped (and counted), valid ones in the same list are still delivered. */
  if (rawfield(L, r, "name") != LUA_TNIL) {
    lua_pop(L, 1);
    const char *why = take_alert(L, r, x);
    if (why)
      *invalid = why;
    return;
  }
  lua_pop(L, 1);
  lua_Unsigned n = lua_rawlen(L, r);
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, r, (lua_Integer)i);
    const char *why = take_alert(L, lua_gettop(L), x);
    if (why)
      *invalid = why;
    lua_settop(L, r);
  }
}

static void free_alerts(struct emit_ctx *x)
{
  for (size_t i = 0; i < x->n; i++) {
    free(x->alerts[i].name);
    free(x->alerts[i].severity);
    free(x->alerts[i].summary);
    json_decref(x->alerts[i].labels);
    json_decref(x->alerts[i].kube_event);
  }
  x->n = 0;
}

char *pt_policy_alert_key(const char *name, const json_t *labels)
{
  char *lj = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
  if (!lj)
    return NULL;
  size_t len = strlen(name) + strlen(lj) + 2;
  char *key = malloc(len);
  if (key)
    snprintf(key, len, "%s\x1f%s", name, lj);
  free(lj);
  return key;
}

void pt_policy_alert_forget(struct pt_policy *p, const char *name, const json_t *labels)
{
  if (!p || !name || !labels)
    return;
  char *key = pt_policy_alert_key(name, labels);
  if (!key)
    return;
  size_t w = 0;
  for (size_t i = 0; i < p->n_sent; i++) {
    if (strcmp(p->sent[i].key, key) == 0) {
      free(p->sent[i].key);
      continue;
    }
    p->sent[w++] = p->sent[i];
  }
  p->n_sent = w;
  free(key);
}

/* True when the same alert went out less than alertRepeat ago; otherwise
 * remembers it as sent now. */
static bool suppressed(struct pt_policy *p, const struct alert_buf *a, double now)
{
  char *key = pt_policy_alert_key(a->name, a->labels);
  if (!key)
    return false;
  /* Forget what expired; keeps the table bounded by the alert rate. */
  size_t w = 0;
  bool found = false;
  for (size_t i = 0; i < p->n_sent; i++) {
    if (now - p->sent[i].at >= p->set.alert_repeat) {
      free(p->sent[i].key);
      continue;
    }
    if (strcmp(p->sent[i].key, key) == 0)
      found = true;
    p->sent[w++] = p->sent[i];
  }
  p->n_sent = w;
  if (found) {
    free(key);
    return true;
  }
  if (p->n_sent == MAX_SENT) {
    /* Full: drop the oldest entry rather than stop de-duplicating. */
    free(p->sent[0].key);
    memmove(p->sent, p->sent + 1, (p->n_sent - 1) * sizeof(*p->sent));
    p->n_sent--;
  }
  if (p->n_sent == p->cap_sent) {
    size_t cap = p->cap_sent ? p->cap_sent * 2 : 16;
    struct sent_alert *n = realloc(p->sent, cap * sizeof(*n));
    if (!n) {
      free(key);
      return false;
    }
    p->sent = n;
    p->cap_sent = cap;
  }
  p->sent[p->n_sent].key = key;
  p->sent[p->n_sent].at = now;
  p->n_sent++;
  return false;
}

void pt_policy_set_alert_cb(struct pt_policy *p, pt_policy_alert_cb cb, void *ud)
{
  if (!p)
    return;
  p->alert_cb = cb;
  p->alert_ud = ud;
}

bool pt_policy_listens(const struct pt_policy *p, const char *event_type)
{
  if (!p || !event_type)
    return false;
  const struct vm *vm = p->vm;
  for (size_t i = 0; i < vm->n_handlers; i++) {
    const char *t = vm->handlers[i].event_type;
    if (strcmp(t, event_type) == 0 || strcmp(t, "*") == 0)
      return true;
  }
  return false;
}

int pt_policy_emit(struct pt_policy *p, const char *event_type, const json_t *event)
{
  if (!p || !event_type || !*event_type)
    return -EINVAL;
  int delivered = 0;
  struct vm *vm = p->vm;
  /* The VM cannot change while its handlers run: a reload asked for from the
   * alert callback is built meanwhile and swapped in on the loop later. */
  p->depth++;
  for (size_t i = 0; i < vm->n_handlers; i++) {
    const struct handler *h = &vm->handlers[i];
    if (strcmp(h->event_type, event_type) != 0 && strcmp(h->event_type, "*") != 0)
      continue;
    struct emit_ctx *x = calloc(1, sizeof(*x));
    if (!x) {
      delivered = -ENOMEM;
      break;
    }
    x->vm = vm;
    x->h = h;
    x->type = event_type;
    x->event = event;
    run_hook(p, PT_POLICY_HOOK_ALERT, h->script, emit_body, x);
    double now = pt_clock_mono();
    for (size_t k = 0; k < x->n; k++) {
      struct alert_buf *a = &x->alerts[k];
      if (!a->name || !a->severity || !a->summary)
        continue; /* the body failed half-way through this one */
      if (suppressed(p, a, now)) {
        p->counters.alerts_suppressed++;
        continue;
      }
      p->counters.alerts_delivered++;
      delivered++;
      if (p->alert_cb) {
        struct pt_policy_alert out = {a->name, a->severity, a->summary, a->labels,
                                      event_type, h->script, a->kube_event};
        p->alert_cb(p->alert_ud, &out);
      }
    }
    free_alerts(x);
    free(x);
  }
  p->depth--;
  return delivered;
}
