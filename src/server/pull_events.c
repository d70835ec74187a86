#include "server/pull_events.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/map.h"
#include "server/event.h"
#include "server/store.h"

/* What a pull.progress must change to be part of the story. */
struct story_sig {
  enum pt_pull_state state;
  bool kubelet, resolved;
  uint64_t pods, error;
};

struct pull_log;

/* One kept event: in its pull's list (oldest first) and in the list of all
 * kept events (oldest first), so that both bounds drop in O(1). */
struct entry {
  struct entry *older, *newer; /* all events */
  struct entry *next;          /* the next of the same pull */
  struct pull_log *log;
  uint64_t id;
  const char *type;            /* static */
  size_t len;
  char text[];                 /* the event's data, NUL-terminated */
};

struct pull_log {
  struct entry *first, *last;
  size_t n;
  uint64_t dropped;
  struct story_sig sig; /* of the last pull.* change seen */
  char id[];
};

struct pt_pull_events {
  size_t max_bytes;
  struct pt_map logs; /* pull id -> struct pull_log */
  struct entry *oldest, *newest;
  struct pt_pull_events_stats stats;
  struct pt_buf scratch;
};

struct pt_pull_events *pt_pull_events_create(size_t max_bytes)
{
  struct pt_pull_events *pe = calloc(1, sizeof(*pe));
  if (!pe)
    return NULL;
  pe->max_bytes = max_bytes;
  pt_map_init(&pe->logs);
  pt_buf_init(&pe->scratch);
  return pe;
}

void pt_pull_events_destroy(struct pt_pull_events *pe)
{
  if (!pe)
    return;
  for (struct entry *e = pe->oldest, *next; e; e = next) {
    next = e->newer;
    free(e);
  }
  for (struct pt_map_entry *it = pt_map_first(&pe->logs); it; it = pt_map_next(&pe->logs, it))
    free(it->value);
  pt_map_close(&pe->logs);
  pt_buf_close(&pe->scratch);
  free(pe);
}

static size_t entry_size(const struct entry *e)
{
  return sizeof(*e) + e->len + 1;
}

static void log_forget(struct pt_pull_events *pe, struct pull_log *log)
{
  pt_map_del(&pe->logs, log->id);
  pe->stats.pulls--;
  free(log);
}

/* Removes the oldest event of log (which the caller knows is also where it
 * stands in the list of all events), and the log when it was its last. */
static void drop_first(struct pt_pull_events *pe, struct pull_log *log)
{
  struct entry *e = log->first;
  log->first = e->next;
  if (!log->first)
    log->last = NULL;
  log->n--;
  log->dropped++;
  if (e->older)
    e->older->newer = e->newer;
  else
    pe->oldest = e->newer;
  if (e->newer)
    e->newer->older = e->older;
  else
    pe->newest = e->older;
  pe->stats.bytes -= entry_size(e);
  pe->stats.events--;
  pe->stats.dropped++;
  free(e);
  /* A log without events goes: a pull still in the tables starts a new one
   * with its next change (its earlier story is gone either way). */
  if (!log->n)
    log_forget(pe, log);
}

static uint64_t pods_hash(const struct pt_pull *p)
{
  uint64_t h = PT_FNV1A_INIT;
  for (size_t i = 0; i < p->npods; i++) {
    h = pt_fnv1a_str(h, p->pods[i].ns);
    h = pt_fnv1a(h, "/", 1);
    h = pt_fnv1a_str(h, p->pods[i].name);
    h = pt_fnv1a(h, ",", 1);
  }
  return h;
}

static struct story_sig sig_of(const struct pt_pull *p)
{
  return (struct story_sig){
    .state = p->state,
    .kubelet = p->kubelet_pulled_at > 0,
    .resolved = p->resolved_reason != NULL,
    .pods = pods_hash(p),
    .error = p->error_reason ? pt_fnv1a_str(PT_FNV1A_INIT, p->error_reason) : 0,
  };
}

static bool sig_equal(const struct story_sig *a, const struct story_sig *b)
{
  return a->state == b->state && a->kubelet == b->kubelet && a->resolved == b->resolved && a->pods == b->pods &&
         a->error == b->error;
}

/* The log of a pull, created when it has none (*created says so). */
static struct pull_log *log_get(struct pt_pull_events *pe, const char *id, bool *created)
{
  struct pull_log *log = pt_map_get(&pe->logs, id);
  *created = !log;
  if (log)
    return log;
  size_t len = strlen(id);
  log = calloc(1, sizeof(*log) + len + 1);
  if (!log)
    return NULL;
  memcpy(log->id, id, len + 1);
  if (pt_map_put(&pe->logs, log->id, log) < 0) {
    free(log);
    return NULL;
  }
  pe->stats.pulls++;
  return log;
}

/* Whether the change belongs to its pull's story; updates the pull's
 * signature. A pull.progress of a pull without a log starts one but is not
 * kept: there is nothing to tell it from. */
static bool is_story(struct pt_pull_events *pe, const struct pt_change *c, struct pull_log **logp)
{
  const struct pt_pull *p = c->pull;
  switch (c->type) {
  case PT_CHANGE_PULL_STARTED:
  case PT_CHANGE_PULL_STALLED:
  case PT_CHANGE_PULL_COMPLETED:
  case PT_CHANGE_PULL_FAILED:
  case PT_CHANGE_PULL_PROGRESS: {
    struct story_sig sig = sig_of(p);
    bool created;
    struct pull_log *log = log_get(pe, p->id, &created);
    if (!log)
      return false;
    bool had = !created, changed = created || !sig_equal(&log->sig, &sig);
    log->sig = sig;
    *logp = log;
    return c->type != PT_CHANGE_PULL_PROGRESS || (had && changed);
  }
  case PT_CHANGE_PULL_EVICTED:
  case PT_CHANGE_ALERT:
    if (!p)
      return false;
    bool created;
    *logp = log_get(pe, p->id, &created);
    return *logp != NULL;
  default:
    return false;
  }
}

const char *pt_pull_events_record(struct pt_pull_events *pe, const struct pt_change *c, uint64_t id)
{
  if (!pe || !pe->max_bytes)
    return NULL;
  struct pull_log *log = NULL;
  if (!is_story(pe, c, &log))
    return NULL;
  /* The pull without its layers: the story is in its state and figures,
   * and GET /api/v1/pulls/{id} has the layers. */
  struct pt_change copy = *c;
  copy.layers = PT_LAYERS_NONE;
  pt_buf_reset(&pe->scratch);
  struct entry *e = NULL;
  if (pt_event_write(&pe->scratch, &copy) == 0)
    e = malloc(sizeof(*e) + pe->scratch.len + 1);
  if (!e) {
    pe->stats.dropped++;
    if (!log->n && c->type == PT_CHANGE_PULL_EVICTED)
      log_forget(pe, log); /* nothing of it kept, and no change of it will come */
    return NULL;
  }
  *e = (struct entry){.log = log, .id = id, .type = pt_change_type_name(c->type), .len = pe->scratch.len};
  memcpy(e->text, pe->scratch.data, e->len);
  e->text[e->len] = '\0';
  if (log->n >= PT_PULL_EVENTS_PER_PULL)
    drop_first(pe, log); /* the log keeps at least the new event: it stays */
  if (log->last)
    log->last->next = e;
  else
    log->first = e;
  log->last = e;
  log->n++;
  e->older = pe->newest;
  if (pe->newest)
    pe->newest->newer = e;
  else
    pe->oldest = e;
  pe->newest = e;
  pe->stats.events++;
  pe->stats.bytes += entry_size(e);
  /* The oldest of all events is the oldest of its pull: events are added in
   * one order to both lists. */
  while (pe->stats.bytes > pe->max_bytes && pe->oldest != e)
    drop_first(pe, pe->oldest->log);
  return e->text;
}

bool pt_pull_events_write(const struct pt_pull_events *pe, const char *pull_id, struct pt_jsonw *w,
                          uint64_t *dropped)
{
  const struct pull_log *log = pe ? pt_map_get(&pe->logs, pull_id) : NULL;
  *dropped = 0;
  if (!log || !log->n)
    return false;
  *dropped = log->dropped;
  pt_jsonw_array_open(w);
  for (const struct entry *e = log->first; e; e = e->next) {
    pt_jsonw_object_open(w);
    pt_jsonw_key(w, "id");
    pt_jsonw_int(w, (int64_t)e->id);
    pt_jsonw_key(w, "type");
    pt_jsonw_string(w, e->type);
    pt_jsonw_key(w, "data");
    pt_jsonw_raw(w, e->text, e->len);
    pt_jsonw_object_close(w);
  }
  pt_jsonw_array_close(w);
  return true;
}

size_t pt_pull_events_kept(const struct pt_pull_events *pe, const char *pull_id, uint64_t *dropped)
{
  const struct pull_log *log = pe ? pt_map_get(&pe->logs, pull_id) : NULL;
  if (dropped)
    *dropped = log ? log->dropped : 0;
  return log ? log->n : 0;
}

void pt_pull_events_stats(const struct pt_pull_events *pe, struct pt_pull_events_stats *out)
{
  if (pe)
    *out = pe->stats;
  else
    memset(out, 0, sizeof(*out));
}
