/* The outbox: events waiting for the history to commit what they announce.
 *
 * With a data directory, an event goes out only once the records queued
 * before it are in the database (or their write failed): a client never sees
 * a pull start or finish that a crash right after could take back, so a
 * restarted server never announces it twice. Events that wait for nothing
 * go out at once, in order with the ones that wait. */
#ifndef PT_SERVER_OUTBOX_H
#define PT_SERVER_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/hub.h"

struct outbox_event;

struct pt_outbox {
  struct outbox_event *head, *tail;
  size_t count;
};

/* Publishes one event (keys and data are valid during the call; data NULL:
 * an event whose id is taken but whose text could not be written). */
typedef void (*pt_outbox_publish_fn)(void *ud, const char *type, const struct pt_hub_keys *keys, const char *data);

void pt_outbox_init(struct pt_outbox *ob);
/* Drops what is still waiting. */
void pt_outbox_close(struct pt_outbox *ob);
/* Holds an event until the history's mark reaches mark; type is a static
 * string, keys and data are copied; queued_at is a monotonic time in seconds.
 * Returns 0 or -ENOMEM. */
int pt_outbox_push(struct pt_outbox *ob, uint64_t mark, double queued_at, const char *type,
                   const struct pt_hub_keys *keys, const char *data);
/* Publishes, in order, the events whose mark is at most mark. */
void pt_outbox_release(struct pt_outbox *ob, uint64_t mark, pt_outbox_publish_fn fn, void *ud);
/* Monotonic time the oldest event was queued, or 0 when empty. */
double pt_outbox_oldest(const struct pt_outbox *ob);

#endif
