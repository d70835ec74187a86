# The core library's own units (the others are registered with their users).
pt_unit_test(core_tls SOURCES ${CMAKE_CURRENT_LIST_DIR}/core_tls.c LIBS pt_core)
pt_unit_test(core_send_batch SOURCES ${CMAKE_CURRENT_LIST_DIR}/core_send_batch.c LIBS pt_core)
