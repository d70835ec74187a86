#include "agent/grpc_client.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pt_grpc {
  grpc_channel *channel;
  grpc_completion_queue *cq;
  char *ns;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
  /* gRPC stays initialised for the life of the process; shutting it down and
   * re-initialising is not supported well by the C core. */
  grpc_init();
}

struct pt_grpc *pt_grpc_create(const char *target, const char *ns)
{
  pthread_once(&init_once, do_init);
  struct pt_grpc *g = calloc(1, sizeof(*g));
  if (!g)
    return NULL;
  /* containerd restarts must be noticed within seconds, not gRPC's default
   * two-minute reconnect backoff. */
  grpc_arg args[4];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
  args[0].value.integer = 200;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
  args[1].value.integer = 200;
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
  args[2].value.integer = 2000;
  args[3].type = GRPC_ARG_INTEGER;
  args[3].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[3].value.integer = 16 << 20;
  grpc_channel_args cargs = {4, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  g->channel = grpc_channel_create(target, creds, &cargs);
  grpc_channel_credentials_release(creds);
  g->cq = grpc_completion_queue_create_for_pluck(NULL);
  g->ns = ns ? strdup(ns) : NULL;
  if (!g->channel || !g->cq) {
    pt_grpc_destroy(g);
    return NULL;
  }
  return g;
}

void pt_grpc_destroy(struct pt_grpc *g)
{
  if (!g)
    return;
  if (g->cq) {
    grpc_completion_queue_shutdown(g->cq);
    grpc_completion_queue_destroy(g->cq);
  }
  if (g->channel)
    grpc_channel_destroy(g->channel);
  free(g->ns);
  free(g);
}

static gpr_timespec deadline_in(double s)
{
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis((int64_t)(s * 1000.0), GPR_TIMESPAN));
}

static void set_local_error(struct pt_grpc_status *st, const char *msg)
{
  st->code = -1;
  snprintf(st->message, sizeof(st->message), "%s", msg);
}

/* Runs one batch and waits for it. */
static int run_batch(struct pt_grpc *g, grpc_call *call, grpc_op *ops, size_t n, gpr_timespec dl)
{
  void *tag = ops;
  if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
    return -EIO;
  /* The call's own deadline fails the batch; the extra second only guards
   * against a lost completion. */
  grpc_event ev = grpc_completion_queue_pluck(
      g->cq, tag, gpr_time_add(dl, gpr_time_from_seconds(1, GPR_TIMESPAN)), NULL);
  if (ev.type != GRPC_OP_COMPLETE)
    return -ETIMEDOUT;
  return ev.success ? 0 : -EIO;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  ProtobufCMessage *m =
      protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
  grpc_slice_unref(s);
  return m;
}

/* Shared by unary and streaming calls: starts the call, sends the request,
 * then reads messages until the stream ends, then the status. */
static int call(struct pt_grpc *g, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, pt_grpc_msg_cb cb, void *ud,
                ProtobufCMessage **unary_resp, double timeout_s, struct pt_grpc_status *st)
{
  int rc = -EIO;
  st->code = -1;
  st->message[0] = '\0';
  gpr_timespec dl = deadline_in(timeout_s);
  grpc_slice method_slice = grpc_slice_from_copied_string(method);
  grpc_call *c = grpc_channel_create_call(g->channel, NULL, GRPC_PROPAGATE_DEFAULTS, g->cq,
                                          method_slice, NULL, dl, NULL);
  grpc_slice_unref(method_slice);
  if (!c) {
    set_local_error(st, "cannot create call");
    return -EIO;
  }

  size_t len = protobuf_c_message_get_packed_size(req);
  grpc_slice req_slice = grpc_slice_malloc(len);
  protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(req_slice));
  grpc_byte_buffer *req_bb = grpc_raw_byte_buffer_create(&req_slice, 1);
  grpc_slice_unref(req_slice);

  grpc_metadata md;
  memset(&md, 0, sizeof(md));
  md.key = grpc_slice_from_static_string("containerd-namespace");
  md.value = grpc_slice_from_copied_string(g->ns ? g->ns : "");
  grpc_metadata_array initial_md, trailing_md;
  grpc_metadata_array_init(&initial_md);
  grpc_metadata_array_init(&trailing_md);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();

  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = g->ns ? 1 : 0;
  ops[0].data.send_initial_metadata.metadata = &md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = req_bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
  /* A failed send batch still lets us read the status below, which says why. */
  run_batch(g, c, ops, 4, dl);

  int nmsg = 0;
  int stopped = 0;
  for (;;) {
    grpc_byte_buffer *bb = NULL;
    grpc_op rop;
    memset(&rop, 0, sizeof(rop));
    rop.op = GRPC_OP_RECV_MESSAGE;
    rop.data.recv_message.recv_message = &bb;
    if (run_batch(g, c, &rop, 1, dl) != 0 || !bb)
      break;
    ProtobufCMessage *m = unpack(resp_desc, bb);
    grpc_byte_buffer_destroy(bb);
    if (!m) {
      set_local_error(st, "malformed protobuf response");
      grpc_call_cancel(c, NULL);
      stopped = -1;
      break;
    }
    nmsg++;
    if (unary_resp) {
      if (*unary_resp)
        protobuf_c_message_free_unpacked(*unary_resp, NULL);
      *unary_resp = m;
    } else {
      int r = cb(ud, m);
      protobuf_c_message_free_unpacked(m, NULL);
      if (r) {
        grpc_call_cancel(c, NULL);
        stopped = 1;
        break;
      }
    }
  }

  grpc_op sop;
  memset(&sop, 0, sizeof(sop));
  sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  sop.data.recv_status_on_client.trailing_metadata = &trailing_md;
  sop.data.recv_status_on_client.status = &status;
  sop.data.recv_status_on_client.status_details = &details;
  if (run_batch(g, c, &sop, 1, dl) != 0) {
    if (stopped >= 0)
      set_local_error(st, "no status from server");
  } else if (stopped == 0) {
    st->code = (int)status;
    size_t dn = GRPC_SLICE_LENGTH(details);
    if (dn >= sizeof(st->message))
      dn = sizeof(st->message) - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(details), dn);
    st->message[dn] = '\0';
  } else if (stopped == 1) {
    st->code = 0; /* the consumer stopped the stream on purpose */
  }
  if (st->code == 0 && unary_resp && nmsg == 0) {
    set_local_error(st, "empty response");
  }
  rc = st->code == 0 ? 0 : -EIO;

  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&initial_md);
  grpc_metadata_array_destroy(&trailing_md);
  grpc_byte_buffer_destroy(req_bb);
  grpc_slice_unref(md.value);
  grpc_call_unref(c);
  if (rc != 0 && unary_resp && *unary_resp) {
    protobuf_c_message_free_unpacked(*unary_resp, NULL);
    *unary_resp = NULL;
  }
  return rc;
}

int pt_grpc_unary(struct pt_grpc *g, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  double timeout_s, struct pt_grpc_status *st)
{
  *resp = NULL;
  return call(g, method, req, resp_desc, NULL, NULL, resp, timeout_s, st);
}

int pt_grpc_stream(struct pt_grpc *g, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, pt_grpc_msg_cb cb, void *ud,
                   double timeout_s, struct pt_grpc_status *st)
{
  return call(g, method, req, resp_desc, cb, ud, NULL, timeout_s, st);
}
