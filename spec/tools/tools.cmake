# Test tools built with the project (not installed).
if(TARGET pt_agent_lib)
  add_executable(pt-cri-pull ${CMAKE_CURRENT_LIST_DIR}/pt-cri-pull.c)
  target_link_libraries(pt-cri-pull PRIVATE pt_agent_lib)
  set_target_properties(pt-cri-pull PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/spec/tools)
endif()

# docs/configuration.md against the configuration tables (through --help).
if(TARGET pulltrace-server AND TARGET pulltrace-agent)
  add_test(NAME unit.config_docs
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/check_config_docs.py
                   ${CMAKE_SOURCE_DIR}/docs/configuration.md $<TARGET_FILE:pulltrace-server>
                   $<TARGET_FILE:pulltrace-agent>)
  set_tests_properties(unit.config_docs PROPERTIES LABELS unit TIMEOUT 60)
endif()
