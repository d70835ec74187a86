/* libFuzzer: the Kubernetes watch stream. The input is split into chunks at
 * positions taken from its first bytes (like network reads), every event is
 * slimmed as a pod and as a kubelet event, and the events go into a store,
 * as the watcher does, with the store's invariants checked after each. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/image_ref.h"
#include "kube/parse.h"
#include "store_check.h"

static int on_event(void *ud, enum pt_kube_watch_type type, json_t *obj)
{
  struct pt_store *store = ud;
  (void)pt_kube_status_code(obj);
  json_t *pod = pt_kube_pod_slim(obj);
  if (pod) {
    if (type == PT_KUBE_DELETED)
      pt_store_pod_delete(store, json_string_value(json_object_get(pod, "namespace")),
                          json_string_value(json_object_get(pod, "name")));
    else
      pt_store_pod_upsert(store, pod);
    json_decref(pod);
  }
  json_t *ev = pt_kube_event_slim(obj);
  if (ev) {
    const char *image = json_string_value(json_object_get(ev, "image"));
    if (image) {
      char buf[1100];
      pt_image_ref_normalize(image, buf, sizeof(buf));
      pt_image_ref_key(image, buf, sizeof(buf));
      (void)pt_image_ref_matches("127.0.0.1/demo/app", image);
    }
    pt_store_kube_event(store, ev, 1800000000.0);
    json_decref(ev);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct pt_store *store = fuzz_store_get();
  struct pt_kube_stream st;
  pt_kube_stream_init(&st, 1 << 16);
  size_t chunk = size ? (size_t)data[0] % 64 + 1 : 1;
  for (size_t off = 0; off < size;) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (pt_kube_stream_feed(&st, (const char *)data + off, n, on_event, store) != 0)
      pt_kube_stream_reset(&st);
    off += n;
    chunk = (size_t)data[off % size] % 97 + 1;
  }
  pt_kube_stream_finish(&st, on_event, store);
  pt_kube_stream_close(&st);
  /* Messages on their own, too. */
  char msg[512];
  size_t n = size < sizeof(msg) - 1 ? size : sizeof(msg) - 1;
  memcpy(msg, data, n);
  msg[n] = '\0';
  struct pt_kube_msg m;
  pt_kube_message_parse("Pulled", msg, &m);
  struct pt_image_ref im;
  if (pt_image_ref_parse(msg, &im) == 0) {
    /* What parses normalizes, and the normal form parses to itself. */
    char full[1100], again[1100];
    if (pt_image_ref_normalize(msg, full, sizeof(full)) != 0 ||
        pt_image_ref_normalize(full, again, sizeof(again)) != 0 || strcmp(full, again) != 0)
      fuzz_fail("an image reference does not normalize to a fixed point");
  }
  pt_store_tick(store, 1800000001.0);
  fuzz_store_check();
  return 0;
}
