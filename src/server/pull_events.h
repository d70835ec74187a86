/* Each pull's own past: the events of the event stream that tell its story
 * (it started, stalled, resumed, completed, failed or was lost, kubelet said
 * it pulled it, a retry got past a failure, its pods changed, an alert was
 * raised about it, it left the tables), kept so that GET
 * /api/v1/pulls/{id}/events (docs/api.md) answers what happened before a
 * reader looked. Progress that changes only bytes, rates or layers is not
 * kept: it is the pull object itself.
 *
 * Memory is bounded twice: at most PT_PULL_EVENTS_PER_PULL events per pull
 * (its oldest go first), and at most max_bytes of event text in all (the
 * oldest events of all pulls go first); besides them, a pull in the tables
 * has one small record (what its last change was, to tell the next one's
 * news). The events of a pull that left the tables stay until these bounds
 * push them out. Each event is kept as the
 * JSON text of its event-stream data, with the pull without its layers (as a
 * pull.progress without layers has it), and the id the event got. */
#ifndef PT_SERVER_PULL_EVENTS_H
#define PT_SERVER_PULL_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json_writer.h"
#include "server/change.h"

#define PT_PULL_EVENTS_PER_PULL 64

struct pt_pull_events_stats {
  size_t events, pulls, bytes; /* kept now (bytes: their text) */
  uint64_t dropped;            /* events pushed out by either bound */
};

struct pt_pull_events;

/* max_bytes: the bound on all events' text; 0 keeps nothing. NULL without
 * memory. */
struct pt_pull_events *pt_pull_events_create(size_t max_bytes);
/* Accepts NULL. */
void pt_pull_events_destroy(struct pt_pull_events *pe);

/* Keeps the change when it is part of a pull's story, under the event id
 * the event stream gives it. Returns the kept event's data (valid until the
 * next call), or NULL when the change is not kept: not part of a story, or
 * no memory (then counted as dropped). Accepts a NULL pe. */
const char *pt_pull_events_record(struct pt_pull_events *pe, const struct pt_change *c, uint64_t id);

/* Writes the pull's events, oldest first, as an array of
 * {"id": N, "type": "...", "data": {...}}, and sets *dropped to the number of
 * its earlier events no longer kept. False (nothing written) when none of its
 * events was ever kept or they are all gone. */
bool pt_pull_events_write(const struct pt_pull_events *pe, const char *pull_id, struct pt_jsonw *w,
                          uint64_t *dropped);

/* The number of the pull's events kept now, and (dropped, when not NULL)
 * of its earlier ones no longer kept. */
size_t pt_pull_events_kept(const struct pt_pull_events *pe, const char *pull_id, uint64_t *dropped);

void pt_pull_events_stats(const struct pt_pull_events *pe, struct pt_pull_events_stats *out);

#endif
