/* Stands in for kubelet in tests and the demo: pulls (or removes) an image
 * through containerd's CRI plugin, exactly as kubelet's PullImage does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/grpc_client.h"
#include "cri/runtime/v1/api.pb-c.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: pt-cri-pull --socket PATH [--timeout SECONDS] [--remove] IMAGE\n"
          "Pulls IMAGE through the CRI ImageService of the containerd at PATH\n"
          "(RemoveImage with --remove). Prints the image ref; exits 1 on error.\n");
}

int main(int argc, char **argv)
{
  const char *sock = NULL, *image = NULL;
  double timeout = 600;
  int remove = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
      sock = argv[++i];
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      timeout = atof(argv[++i]);
    else if (strcmp(argv[i], "--remove") == 0)
      remove = 1;
    else if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] != '-' && !image)
      image = argv[i];
    else {
      usage(stderr);
      return 2;
    }
  }
  if (!sock || !image) {
    usage(stderr);
    return 2;
  }
  char target[4200];
  snprintf(target, sizeof(target), "unix:%s", sock);
  /* CRI calls carry no containerd namespace: the CRI plugin uses k8s.io. */
  struct pt_grpc *g = pt_grpc_create(target, NULL);
  if (!g) {
    fprintf(stderr, "cannot create gRPC channel to %s\n", target);
    return 1;
  }
  Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
  spec.image = (char *)image;
  struct pt_grpc_status st;
  ProtobufCMessage *resp = NULL;
  int rc;
  if (remove) {
    Runtime__V1__RemoveImageRequest req = RUNTIME__V1__REMOVE_IMAGE_REQUEST__INIT;
    req.image = &spec;
    rc = pt_grpc_unary(g, "/runtime.v1.ImageService/RemoveImage", &req.base,
                       &runtime__v1__remove_image_response__descriptor, &resp, timeout, &st);
    if (rc == 0)
      printf("%s\n", image);
  } else {
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    req.image = &spec;
    rc = pt_grpc_unary(g, "/runtime.v1.ImageService/PullImage", &req.base,
                       &runtime__v1__pull_image_response__descriptor, &resp, timeout, &st);
    if (rc == 0)
      printf("%s\n", ((Runtime__V1__PullImageResponse *)resp)->image_ref);
  }
  if (rc != 0)
    fprintf(stderr, "%s %s failed: code %d: %s\n", remove ? "RemoveImage" : "PullImage", image,
            st.code, st.message);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  pt_grpc_destroy(g);
  return rc == 0 ? 0 : 1;
}
