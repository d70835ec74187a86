# Unit tests of the policy host (src/policy), one process each.
if(TARGET pt_policy AND CMOCKA_FOUND)
  foreach(t policy_sandbox policy_hooks policy_reload)
    if(EXISTS ${PT_SPEC_DIR}/unit/${t}.c)
      pt_unit_test(${t} SOURCES ${PT_SPEC_DIR}/unit/${t}.c LIBS pt_policy)
    endif()
  endforeach()
endif()
