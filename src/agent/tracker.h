/* The pull tracker: turns containerd's raw content ingests into pulls (one per
 * node and manifest) with every layer's size and state.
 *
 * It is a state machine fed one poll at a time; all containerd access goes
 * through struct pt_content_ops so unit tests can script it. A tick and the
 * report built from it run on the poller's worker thread; nothing else touches
 * the tracker meanwhile. */
#ifndef PT_AGENT_TRACKER_H
#define PT_AGENT_TRACKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/content.h"
#include "core/model.h"

struct pt_tracked_layer {
  char digest[PT_DIGEST_MAX];
  char media_type[128];
  int64_t total, downloaded;
  enum pt_layer_state state;
  double started_at, updated_at; /* from the ingest; 0 = never seen */
};

struct pt_tracked_pull {
  char id[64];
  char image_ref[PT_IMAGE_REF_MAX];
  char manifest_digest[PT_DIGEST_MAX];
  char index_digest[PT_DIGEST_MAX];
  char config_digest[PT_DIGEST_MAX];
  double started_at, completed_at; /* completed_at 0 while in flight */
  double last_activity;            /* last tick with an active ingest (or creation) */
  bool total_known;
  /* Its content was garbage-collected before it finished (a failed pull, or an
   * image removed between two polls): it is reported until superseded or
   * forgotten, and never takes new ingests. */
  bool dead;
  struct pt_tracked_layer *layers;
  size_t n_layers;
  struct pt_tracked_pull *next;
};

struct pt_tracker_config {
  double stall_threshold; /* seconds without updated_at moving -> stalled */
  double linger;          /* seconds a completed pull stays in reports */
  double forget_after;    /* seconds an unfinished pull without ingests is kept */
  size_t max_pulls;       /* bound on tracked pulls */
};

struct pt_tracker {
  struct pt_tracker_config cfg;
  struct pt_tracked_pull *pulls;
  size_t n_pulls;
  /* The last poll's ingests, for the unattributed list. */
  struct pt_ingest *ingests;
  size_t n_ingests;
  /* Layer digests whose manifest could not be found yet, retried with backoff. */
  struct pt_pending {
    char digest[PT_DIGEST_MAX];
    double next_try, backoff;
  } *pending;
  size_t n_pending;
  /* Pulls that completed and left the reports, so they are never resurrected. */
  char (*finished)[64];
  size_t n_finished, finished_pos;
};

void pt_tracker_init(struct pt_tracker *t, const struct pt_tracker_config *cfg);
void pt_tracker_close(struct pt_tracker *t);

/* One poll: reads the ingests and updates every pull. Returns 0, or -EIO when
 * containerd could not be listed (the state is then left as it was). */
int pt_tracker_tick(struct pt_tracker *t, const struct pt_content_ops *ops, void *ctx, double now);

/* The "pulls" and "unattributed" arrays of a v1 report (new references). */
json_t *pt_tracker_pulls_json(const struct pt_tracker *t);
json_t *pt_tracker_unattributed_json(const struct pt_tracker *t);

struct pt_tracked_pull *pt_tracker_find(const struct pt_tracker *t, const char *manifest_digest);

#endif
