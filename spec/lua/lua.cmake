# busted specs of the default policy scripts (lua/). They run inside the
# server's sandbox: spec/lua/helper.lua loads each script through the
# pulltrace_sandbox module built here from src/policy/sandbox.c, the code the
# server's VM builds its script environments with.
find_program(BUSTED busted)
if(BUSTED)
  # A Lua module for the lua5.4 interpreter busted runs on: it takes the Lua
  # API from the interpreter, so it links no liblua.
  add_library(pulltrace_sandbox MODULE ${CMAKE_CURRENT_LIST_DIR}/sandbox_module.c
              ${CMAKE_SOURCE_DIR}/src/policy/sandbox.c ${CMAKE_SOURCE_DIR}/src/policy/options.c
              ${CMAKE_SOURCE_DIR}/src/core/config.c
              ${CMAKE_SOURCE_DIR}/src/core/log.c ${CMAKE_SOURCE_DIR}/src/core/clock.c)
  set_target_properties(pulltrace_sandbox PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/spec/lua)
  target_include_directories(pulltrace_sandbox PRIVATE ${CMAKE_SOURCE_DIR}/src ${LUA_INCLUDE_DIRS})
  target_link_libraries(pulltrace_sandbox PRIVATE lua5.4-cjson PkgConfig::JANSSON PkgConfig::UV)
  # The interpreter is not built with sanitizers, so a sanitized module cannot
  # load into it; the same code runs sanitized in the VM's unit tests.
  set_target_properties(pulltrace_sandbox PROPERTIES COMPILE_OPTIONS "" LINK_OPTIONS "")
  add_test(NAME lua.policy
           COMMAND ${BUSTED} --lua=lua5.4 --pattern=_spec -- ${CMAKE_SOURCE_DIR}/spec/lua
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(lua.policy PROPERTIES LABELS lua TIMEOUT 120
                       ENVIRONMENT "LUA_CPATH_5_4=${CMAKE_BINARY_DIR}/spec/lua/?.so\\;\\;;PT_SERVER_BINARY=$<TARGET_FILE:pulltrace-server>")
else()
  message(WARNING "busted not found: the lua.policy tests are not registered")
endif()
