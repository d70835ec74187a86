# Web UI tiers (label `ui`): the Vitest suite (reducer, stream parser, formatting, filters)
# and the browser test spec/e2e/test_ui.py (registered as e2e.ui by e2e.cmake; labelled
# here too). Both need ui/node_modules, which building the `ui` target installs (npm ci).
if(PT_BUILD_UI AND TARGET pt_ui)
  add_test(NAME ui.vitest
           COMMAND ${PT_NPM} test --silent
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/ui)
  set_tests_properties(ui.vitest PROPERTIES LABELS ui TIMEOUT 300
                       ENVIRONMENT "CI=true;NO_COLOR=1")
  if(TEST e2e.ui)
    set_tests_properties(e2e.ui PROPERTIES LABELS "e2e;ui")
  endif()
endif()
