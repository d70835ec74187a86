# Unit tests of pulltrace-server and the core HTTP/SSE/Prometheus helpers.
if(TARGET pt_server AND CMOCKA_FOUND)
  foreach(t server_report server_store server_http server_ui_dir http_parser)
    if(EXISTS ${PT_SPEC_DIR}/unit/${t}.c)
      pt_unit_test(${t} SOURCES ${PT_SPEC_DIR}/unit/${t}.c LIBS pt_server)
    endif()
  endforeach()
endif()
