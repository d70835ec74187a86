/* The serializer: the JSON of every event of the event stream (docs/api.md,
 * "Events"), written once, at the edge, from the store's typed change
 * records. Every event, the snapshot included, has the one envelope
 * {"v":1,"type":...,"time":...} followed by its own members. */
#ifndef PT_SERVER_EVENT_H
#define PT_SERVER_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "server/change.h"

/* {"v":1,"type":type,"time":RFC 3339 of time}: a new object to add members to. */
json_t *pt_event_envelope(const char *type, double time);

/* The event object of a change (a new reference), or NULL without memory. */
json_t *pt_event_json(const struct pt_change *change);

/* Compact JSON text of an event object (malloc'ed, NUL-terminated), the one
 * formatting of the stream; *len gets its length. NULL without memory. */
char *pt_event_dump(const json_t *event, size_t *len);

#endif
