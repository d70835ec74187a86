/* containerd's content service over gRPC, as a struct pt_content_ops. */
#ifndef PT_AGENT_CONTAINERD_H
#define PT_AGENT_CONTAINERD_H

#include "agent/content.h"
#include "agent/grpc_client.h"

struct pt_containerd {
  struct pt_grpc *grpc;
  double timeout_s;               /* per call */
  struct pt_grpc_status last;     /* status of the last failed call */
};

extern const struct pt_content_ops pt_containerd_ops;

/* socket_path: containerd's gRPC unix socket; ns: containerd namespace (k8s.io). */
int pt_containerd_init(struct pt_containerd *c, const char *socket_path, const char *ns);
void pt_containerd_close(struct pt_containerd *c);

#endif
