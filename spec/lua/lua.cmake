# busted specs of the default policy scripts (lua/). They are pure functions,
# loaded with a stand-in pulltrace module (spec/lua/helper.lua).
find_program(BUSTED busted)
if(BUSTED)
  add_test(NAME lua.policy
           COMMAND ${BUSTED} --lua=lua5.4 --pattern=_spec -- ${CMAKE_SOURCE_DIR}/spec/lua
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(lua.policy PROPERTIES LABELS lua TIMEOUT 120)
else()
  message(WARNING "busted not found: the lua.policy tests are not registered")
endif()
