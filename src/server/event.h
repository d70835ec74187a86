/* The serializer: the JSON of every event of the event stream (docs/api.md,
 * "Events"), written once, at the edge, from the store's typed change
 * records, straight into a buffer (no object tree). Every event, the
 * snapshot included, has the one envelope {"v":1,"type":...,"time":...}
 * followed by its own members. */
#ifndef PT_SERVER_EVENT_H
#define PT_SERVER_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "core/json_writer.h"
#include "server/change.h"

/* Opens the event object and writes the envelope; the caller adds its
 * members and closes the object. */
void pt_event_open(struct pt_jsonw *w, const char *type, double time);

/* The compact JSON text of a change's event, appended to out. Returns 0, or
 * -ENOMEM (out's oom flag is set). */
int pt_event_write(struct pt_buf *out, const struct pt_change *change);

/* The same event as a new jansson value (tests and checks), or NULL. */
json_t *pt_event_json(const struct pt_change *change);

#endif
