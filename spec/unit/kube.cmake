# Unit tests of the Kubernetes watcher's helpers (image references, kubelet
# messages, watch stream framing, slim objects, kubeconfig).
if(TARGET pt_server AND CMOCKA_FOUND)
  pt_unit_test(kube_parse SOURCES ${PT_SPEC_DIR}/unit/kube_parse.c LIBS pt_server)
endif()
