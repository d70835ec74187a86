/* Typed change records: what the store tells the rest of the server.
 *
 * The store describes every change of its tables as one record: its type,
 * the time, the routing keys (node, namespaces, image) and borrowed pointers
 * to the records that changed. Nothing here is JSON: the one serializer
 * (event.c) writes the JSON of docs/api.md at the edge, and the hub routes by
 * the keys without knowing any event's shape.
 *
 * A record and everything it points to are valid only during the callback
 * that receives it. */
#ifndef PT_SERVER_CHANGE_H
#define PT_SERVER_CHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/policy.h"

enum pt_change_type {
  PT_CHANGE_PULL_STARTED = 0,
  PT_CHANGE_PULL_PROGRESS,
  PT_CHANGE_PULL_COMPLETED,
  PT_CHANGE_PULL_FAILED,   /* failed, or lost (state tells) */
  PT_CHANGE_PULL_STALLED,
  PT_CHANGE_PULL_EVICTED,  /* left the tables (reason "superseded" or none) */
  PT_CHANGE_NODE_UPDATED,
  PT_CHANGE_NODE_REMOVED,  /* a lost node without pulls left the tables */
  PT_CHANGE_ALERT,         /* an alert of the policy's alert hooks */
  PT_CHANGE_ROLLOUT_SUMMARY, /* the figures of an image's rollout (pt_store_rollouts_publish) */
  PT_CHANGE_TYPE_COUNT,
};

/* The SSE event type: "pull.started", ..., "node.updated", "alert",
 * "rollout.summary". */
const char *pt_change_type_name(enum pt_change_type t);

struct pt_pull;
struct pt_layer;
struct pt_rollout_summary;
struct pt_node;
struct pt_pod_ref;

/* Who a change is for. A subscriber filtering on a node gets the changes of
 * that node and those without a node; one filtering on a namespace gets the
 * changes whose namespaces include it and those that are not namespaced. */
struct pt_change_keys {
  const char *node;              /* NULL: not tied to a node */
  const char *image;             /* the pull's (or rollout's) image, NULL when none */
  bool namespaced;               /* false: reaches every namespace filter */
  const struct pt_pod_ref *pods; /* namespaced by these pods' namespaces... */
  size_t npods;
  const char *ns;                /* ...and/or this one namespace */
};

/* What of a pull's layers a pull.* record carries. */
enum pt_change_layers {
  PT_LAYERS_NONE = 0,
  PT_LAYERS_ALL,   /* the pull's layers (a new pull, a transition, a report that changed the list) */
  PT_LAYERS_MOVED, /* only those that moved in the report (pt_layer.moved): layerChanges */
};

/* A report makes at most one pull.* record per pull (pull.progress, or the
 * transition it brought), so that a rollout of N nodes costs N events per
 * report round, not one per layer; when layers moved, the record's event
 * carries those alone (PT_LAYERS_MOVED). */
struct pt_change {
  enum pt_change_type type;
  double time;
  struct pt_change_keys keys;
  const struct pt_pull *pull;    /* pull.*; alert: the pull whose event raised it */
  enum pt_change_layers layers;  /* pull.*: which of the pull's layers are part of the event */
  const struct pt_node *node;    /* node.updated, node.removed */
  const char *reason;            /* pull.evicted: "superseded", or NULL */
  const struct pt_pull *superseded_by;         /* pull.evicted with reason "superseded" */
  const struct pt_policy_alert *alert;         /* alert */
  const struct pt_rollout_summary *rollout;    /* rollout.summary */
};

/* Receives each change, in order. */
typedef void (*pt_change_fn)(void *ud, const struct pt_change *change);

#endif
