# Unit tests of pulltrace-server and the core HTTP/SSE/Prometheus helpers.
if(TARGET pt_server AND CMOCKA_FOUND)
  foreach(t server_report server_store server_alerts server_kube_events server_http server_hub server_ui_dir http_parser server_history server_auth server_pull_events)
    if(EXISTS ${PT_SPEC_DIR}/unit/${t}.c)
      pt_unit_test(${t} SOURCES ${PT_SPEC_DIR}/unit/${t}.c LIBS pt_server)
    endif()
  endforeach()
endif()
# The store under failing allocations: the link wraps the allocator for the
# store's code (static library objects included).
if(TARGET pt_server AND CMOCKA_FOUND)
  pt_unit_test(server_store_oom SOURCES ${PT_SPEC_DIR}/unit/server_store_oom.c LIBS pt_server)
  target_link_options(server_store_oom PRIVATE
    -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=strdup)
endif()
