# Unit tests of kubectl-pulltrace's pure parts: formatting, the SSE reader,
# workload kinds and selectors, pull views, YAML output.
if(TARGET pt_cli AND CMOCKA_FOUND)
  pt_unit_test(cli SOURCES ${PT_SPEC_DIR}/unit/cli.c LIBS pt_cli)
endif()
