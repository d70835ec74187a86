/* The floor under the agent's poll: one bare Content/ListStatuses call from a
 * minimal client, repeated, with the CPU time this process spends per call. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "agent/grpc_client.h"
#include "containerd/content/v1/content.pb-c.h"

static double cpu_seconds(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static double wall(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: bench-liststatuses SOCKET CALLS [NAMESPACE]\n");
    return 2;
  }
  char target[4200];
  snprintf(target, sizeof(target), "unix:%s", argv[1]);
  int calls = atoi(argv[2]);
  struct pt_grpc *g = pt_grpc_create(target, argc > 3 ? argv[3] : "k8s.io");
  Containerd__Services__Content__V1__ListStatusesRequest req =
      CONTAINERD__SERVICES__CONTENT__V1__LIST_STATUSES_REQUEST__INIT;
  struct pt_grpc_status st;
  size_t ingests = 0;
  /* One warm-up call so connection setup is not counted. */
  ProtobufCMessage *resp;
  if (pt_grpc_unary(g, "/containerd.services.content.v1.Content/ListStatuses", &req.base,
                    &containerd__services__content__v1__list_statuses_response__descriptor,
                    &resp, 5, &st)) {
    fprintf(stderr, "ListStatuses failed: %d %s\n", st.code, st.message);
    return 1;
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  double c0 = cpu_seconds(), w0 = wall();
  for (int i = 0; i < calls; i++) {
    if (pt_grpc_unary(g, "/containerd.services.content.v1.Content/ListStatuses", &req.base,
                      &containerd__services__content__v1__list_statuses_response__descriptor,
                      &resp, 5, &st))
      return 1;
    ingests = ((Containerd__Services__Content__V1__ListStatusesResponse *)resp)->n_statuses;
    protobuf_c_message_free_unpacked(resp, NULL);
  }
  double c1 = cpu_seconds(), w1 = wall();
  printf("{\"calls\":%d,\"ingests\":%zu,\"cpu_ms_per_call\":%.4f,\"wall_ms_per_call\":%.4f}\n",
         calls, ingests, (c1 - c0) * 1000 / calls, (w1 - w0) * 1000 / calls);
  pt_grpc_destroy(g);
  return 0;
}
