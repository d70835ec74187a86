/* What the store fuzzers assert besides sanitizer cleanliness: the store's
 * invariants after every operation (pt_store_check) and, for every change
 * record, that the records it points to are in the tables. */
#ifndef PT_SPEC_FUZZ_STORE_CHECK_H
#define PT_SPEC_FUZZ_STORE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "server/event.h"
#include "server/store.h"

static struct pt_store *fuzz_store;

static void fuzz_fail(const char *what)
{
  fprintf(stderr, "invariant broken: %s\n", what);
  abort();
}

/* No event without its pull (or node), and every event serializes. */
static void fuzz_on_change(void *ud, const struct pt_change *c)
{
  (void)ud;
  if (c->pull && pt_store_pull(fuzz_store, c->pull->id) != c->pull)
    fuzz_fail("a change record names a pull that is not in the table");
  if (c->superseded_by && pt_store_pull(fuzz_store, c->superseded_by->id) != c->superseded_by)
    fuzz_fail("a pull is superseded by one that is not in the table");
  if (c->node && pt_store_node(fuzz_store, c->node->name) != c->node)
    fuzz_fail("a change record names a node that is not in the table");
  if (c->layer && !c->pull)
    fuzz_fail("a layer change without its pull");
  if (c->type == PT_CHANGE_ALERT && !c->alert)
    fuzz_fail("an alert change without its alert");
  json_t *ev = pt_event_json(c, NULL);
  if (!ev)
    fuzz_fail("a change record does not serialize");
  json_decref(ev);
}

/* The store under test, with the real default policy. */
static struct pt_store *fuzz_store_get(void)
{
  if (!fuzz_store) {
    pt_log_setup("fuzz", PT_LOG_ERROR, PT_LOG_JSON);
    struct pt_policy_options po = {0};
    char err[1024];
    struct pt_policy *policy = pt_policy_create(&po, err, sizeof(err));
    if (!policy)
      fuzz_fail(err);
    struct pt_store_options o = {.policy = policy, .on_change = fuzz_on_change};
    fuzz_store = pt_store_create(&o);
    if (!fuzz_store)
      fuzz_fail("cannot create the store");
  }
  return fuzz_store;
}

static void fuzz_store_check(void)
{
  char err[512];
  if (pt_store_check(fuzz_store, err, sizeof(err)) != 0)
    fuzz_fail(err);
}

#endif
