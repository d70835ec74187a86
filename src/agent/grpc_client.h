/* A small blocking gRPC client on gRPC's C core for protobuf-c messages.
 *
 * Calls block the calling thread, so the agent makes them from libuv's
 * threadpool, never from the loop thread. One client must not be used by two
 * threads at once. */
#ifndef PT_AGENT_GRPC_CLIENT_H
#define PT_AGENT_GRPC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct pt_grpc;

/* gRPC status codes the agent distinguishes. */
enum { PT_GRPC_OK = 0, PT_GRPC_NOT_FOUND = 5, PT_GRPC_UNAVAILABLE = 14, PT_GRPC_DEADLINE = 4 };

struct pt_grpc_status {
  int code;          /* gRPC status code, or -1 for a local failure */
  char message[256];
};

/* Called for each message of a server stream; return non-zero to stop reading. */
typedef int (*pt_grpc_msg_cb)(void *ud, ProtobufCMessage *msg);

/* `target` is a gRPC target such as "unix:/run/containerd/containerd.sock";
 * `ns` is sent as the containerd-namespace metadata on every call (NULL for none). */
struct pt_grpc *pt_grpc_create(const char *target, const char *ns);
void pt_grpc_destroy(struct pt_grpc *g);

/* Unary call. On success returns 0 and *resp (free with protobuf_c_message_free_unpacked).
 * Otherwise returns -EIO and fills st. */
int pt_grpc_unary(struct pt_grpc *g, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  double timeout_s, struct pt_grpc_status *st);

/* Server-streaming call; cb gets each message (freed after cb returns). */
int pt_grpc_stream(struct pt_grpc *g, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, pt_grpc_msg_cb cb, void *ud,
                   double timeout_s, struct pt_grpc_status *st);

#endif
