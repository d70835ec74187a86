/* How long an image's pulls usually take, from the history: the store asks
 * on every sweep of a pull in flight (for pull.slow, docs/policy.md), so the
 * answer must come without waiting. This cache answers from memory and
 * refreshes an image's figure in the history's query pool
 * (pt_history_typical): when first asked, when a pull of the image has
 * finished since (its figure moved), and otherwise every
 * PT_TYPICAL_REFRESH seconds; never more often than every PT_TYPICAL_MIN_AGE
 * seconds per image, with at most PT_TYPICAL_IN_FLIGHT queries at a time,
 * so a rollout of one image on thousands of nodes costs a query every few
 * seconds, not one per node. */
#ifndef PT_SERVER_TYPICAL_H
#define PT_SERVER_TYPICAL_H

#include <stdbool.h>
#include <stddef.h>

struct pt_history;

#define PT_TYPICAL_REFRESH 300.0
#define PT_TYPICAL_MIN_AGE 5.0
#define PT_TYPICAL_IN_FLIGHT 4
/* Images remembered; beyond it those not asked about for a while go. */
#define PT_TYPICAL_MAX_IMAGES 10000

struct pt_typical;

/* history is borrowed and must outlive the cache. NULL without memory. */
struct pt_typical *pt_typical_create(struct pt_history *h);
/* The figure known now for image: true with the median duration in seconds
 * and the number of finished pulls it is of, false when none is known yet
 * (a refresh may be started). now is pt_clock_mono(). */
bool pt_typical_get(struct pt_typical *t, const char *image, double now, double *p50, size_t *pulls);
/* A pull of image finished: its figure is refreshed at the next ask. */
void pt_typical_changed(struct pt_typical *t, const char *image);
/* Accepts NULL. Queries in flight are cancelled. */
void pt_typical_destroy(struct pt_typical *t);

#endif
