/* The agent's v1 report (docs/api.md, "Agent report"): strict parsing and
 * validation into plain C values. Nothing is applied here; the store takes a
 * fully validated report or nothing.
 *
 * simdjson checks the whole body, and its tape is walked straight into typed
 * slots (json_walk.h): no tree of our own is built, and every string and
 * array of the result lives in one arena that pt_report_free() releases at
 * once. */
#ifndef PT_SERVER_REPORT_H
#define PT_SERVER_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define PT_REPORT_MAX_PULLS 2000
#define PT_REPORT_MAX_LAYERS 1000
#define PT_REPORT_MAX_UNATTRIBUTED 2000
#define PT_REPORT_MAX_CONTAINERD_ERROR 1024

/* Strings and arrays live in the report's arena; times are epoch seconds,
 * 0 for null. */
struct pt_report_layer {
  const char *digest;
  bool is_sha256;           /* "sha256:<64 lower-case hex>": its bytes below */
  unsigned char sha256[32];
  const char *media_type;   /* may be NULL */
  int64_t total, downloaded;
  enum pt_layer_state state;
  double started_at, updated_at;
};

struct pt_report_pull {
  const char *id;
  const char *image_ref;    /* may be NULL */
  const char *manifest_digest;
  const char *index_digest; /* may be NULL */
  double started_at, completed_at;
  bool total_known;
  int64_t total, downloaded;
  struct pt_report_layer *layers;
  size_t nlayers;
};

struct pt_report_unattributed {
  const char *ref, *kind;
  const char *digest;       /* may be NULL */
  int64_t total, downloaded;
  double started_at, updated_at;
};

struct pt_report_arena;

struct pt_report {
  struct pt_report_arena *arena; /* everything below points into it */
  const char *node;
  const char *agent_version;
  const char *boot_id;
  int64_t seq;
  double timestamp;
  struct pt_report_pull *pulls;
  size_t npulls;
  struct pt_report_unattributed *unattributed;
  size_t nunattributed;
  /* The optional `containerd` member: true when absent. While false, since
   * is when the agent's polls began to fail and error gRPC's status of the
   * last one. */
  bool containerd_reachable;
  double containerd_since;
  const char *containerd_error;
};

/* Parses and validates. On failure returns -EINVAL with a message in err and
 * the JSON path of the offending member in field ("" for the whole body);
 * out is left empty. */
int pt_report_parse(const char *body, size_t len, struct pt_report *out,
                    char *err, size_t errlen, char *field, size_t fieldlen);
void pt_report_free(struct pt_report *r);
/* Adds offset seconds to every time of the report that is set (to put an
 * agent's times on the server's clock). */
void pt_report_shift(struct pt_report *r, double offset);

#endif
