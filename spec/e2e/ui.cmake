# Web UI tiers (label `ui`): the Vitest suite (reducer, stream parser, formatting, filters)
# and the browser tests spec/e2e/test_ui.py, test_ui_kube.py, test_ui_auth.py and
# test_ui_rollouts.py (registered as e2e.ui, e2e.ui_kube, e2e.ui_auth and e2e.ui_rollouts by
# e2e.cmake; labelled here too). They need ui/node_modules, which building the `ui` target
# installs (npm ci).
if(PT_BUILD_UI AND TARGET pt_ui AND PT_NPM)
  add_test(NAME ui.vitest
           COMMAND ${PT_NPM} test --silent
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/ui)
  set_tests_properties(ui.vitest PROPERTIES LABELS ui TIMEOUT 300
                       ENVIRONMENT "CI=true;NO_COLOR=1")
  foreach(t e2e.ui e2e.ui_kube e2e.ui_auth e2e.ui_rollouts)
    if(TEST ${t})
      set_tests_properties(${t} PROPERTIES LABELS "e2e;ui")
    endif()
  endforeach()
endif()
