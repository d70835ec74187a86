# Unit tests of the policy host (src/policy), one process each.
if(TARGET pt_policy AND CMOCKA_FOUND)
  foreach(t policy_sandbox policy_hooks policy_reload)
    if(EXISTS ${PT_SPEC_DIR}/unit/${t}.c)
      pt_unit_test(${t} SOURCES ${PT_SPEC_DIR}/unit/${t}.c LIBS pt_policy)
      # policy_reload checks the examples of docs/policy.md.
      target_compile_definitions(${t} PRIVATE PT_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    endif()
  endforeach()
endif()
