# Test tools built with the project (not installed).
if(TARGET pt_agent_lib)
  add_executable(pt-cri-pull ${CMAKE_CURRENT_LIST_DIR}/pt-cri-pull.c)
  target_link_libraries(pt-cri-pull PRIVATE pt_agent_lib)
  set_target_properties(pt-cri-pull PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/spec/tools)
endif()
