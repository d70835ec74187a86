# Unit tests of the Kubernetes watcher's helpers (image references, kubelet
# messages, watch stream framing, slim objects, configuration order) and of the
# shared kubeconfig module, and of the leader election's Lease.
if(TARGET pt_kube AND CMOCKA_FOUND)
  pt_unit_test(kube_parse SOURCES ${PT_SPEC_DIR}/unit/kube_parse.c LIBS pt_kube)
endif()
if(TARGET pt_kubeconfig AND CMOCKA_FOUND)
  pt_unit_test(kubeconfig SOURCES ${PT_SPEC_DIR}/unit/kubeconfig.c LIBS pt_kubeconfig)
endif()
if(TARGET pt_kube AND CMOCKA_FOUND)
  pt_unit_test(kube_watcher SOURCES ${PT_SPEC_DIR}/unit/kube_watcher.c LIBS pt_kube)
  pt_unit_test(kube_lease SOURCES ${PT_SPEC_DIR}/unit/kube_lease.c LIBS pt_kube)
endif()
