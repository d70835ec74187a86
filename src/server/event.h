/* The serializer: the JSON of every event of the event stream (docs/api.md,
 * "Events"), written once, at the edge, from the store's typed change
 * records. Every event, the snapshot included, has the one envelope
 * {"v":1,"type":...,"time":...} followed by its own members. */
#ifndef PT_SERVER_EVENT_H
#define PT_SERVER_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "server/change.h"

/* The last event time written, kept by the serializer's user: every change
 * of one store operation has the same time, and formatting it is a good part
 * of an event's cost. Zero-initialise it. */
struct pt_event_time {
  double t;
  char text[40];
};

/* {"v":1,"type":type,"time":RFC 3339 of time}: a new object to add members
 * to. last may be NULL. */
json_t *pt_event_envelope(const char *type, double time, struct pt_event_time *last);

/* The event object of a change (a new reference), or NULL without memory.
 * last may be NULL. */
json_t *pt_event_json(const struct pt_change *change, struct pt_event_time *last);

/* Compact JSON text of an event object (malloc'ed, NUL-terminated), the one
 * formatting of the stream; *len gets its length. NULL without memory. */
char *pt_event_dump(const json_t *event, size_t *len);

#endif
