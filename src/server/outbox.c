#include "server/outbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct outbox_event {
  struct outbox_event *next;
  uint64_t mark;
  double queued_at;
  const char *type;
  char *node;
  char *nss;     /* as in struct pt_hub_keys, or NULL */
  char *image;
  char *data;
};

static void event_free(struct outbox_event *e)
{
  free(e->node);
  free(e->nss);
  free(e->image);
  free(e->data);
  free(e);
}

void pt_outbox_init(struct pt_outbox *ob)
{
  memset(ob, 0, sizeof(*ob));
}

void pt_outbox_close(struct pt_outbox *ob)
{
  while (ob->head) {
    struct outbox_event *e = ob->head;
    ob->head = e->next;
    event_free(e);
  }
  pt_outbox_init(ob);
}

int pt_outbox_push(struct pt_outbox *ob, uint64_t mark, double queued_at, const char *type,
                   const struct pt_hub_keys *keys, const char *data)
{
  struct outbox_event *e = calloc(1, sizeof(*e));
  if (!e)
    return -ENOMEM;
  e->mark = mark;
  e->queued_at = queued_at;
  e->type = type;
  e->data = data ? strdup(data) : NULL;
  if (keys && keys->node)
    e->node = strdup(keys->node);
  if (keys && keys->nss)
    e->nss = pt_hub_nss_copy(keys->nss);
  if (keys && keys->image)
    e->image = strdup(keys->image);
  if ((data && !e->data) || (keys && keys->node && !e->node) || (keys && keys->nss && !e->nss) ||
      (keys && keys->image && !e->image)) {
    event_free(e);
    return -ENOMEM;
  }
  if (ob->tail)
    ob->tail->next = e;
  else
    ob->head = e;
  ob->tail = e;
  ob->count++;
  return 0;
}

void pt_outbox_release(struct pt_outbox *ob, uint64_t mark, pt_outbox_publish_fn fn, void *ud)
{
  while (ob->head && ob->head->mark <= mark) {
    struct outbox_event *e = ob->head;
    ob->head = e->next;
    if (!ob->head)
      ob->tail = NULL;
    ob->count--;
    struct pt_hub_keys keys = {.node = e->node, .nss = e->nss, .image = e->image};
    fn(ud, e->type, &keys, e->data);
    event_free(e);
  }
}

double pt_outbox_oldest(const struct pt_outbox *ob)
{
  return ob->head ? ob->head->queued_at : 0;
}
