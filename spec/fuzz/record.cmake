# libFuzzer target of the history's pull record (-DPT_FUZZ=ON with clang), run
# like the others of fuzz.cmake: a bounded time from its committed seed corpus.
if(PT_FUZZ AND TARGET pt_server)
  add_executable(fuzz_record ${PT_SPEC_DIR}/fuzz/fuzz_record.c)
  target_link_libraries(fuzz_record PRIVATE pt_server)
  target_link_options(fuzz_record PRIVATE -fsanitize=fuzzer)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus-record)
  add_test(NAME fuzz.fuzz_record
           COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
                   $<TARGET_FILE:fuzz_record> -max_total_time=30 -rss_limit_mb=1024 -max_len=65536
                   ${work} ${PT_SPEC_DIR}/fuzz/corpus/record)
  set_tests_properties(fuzz.fuzz_record PROPERTIES LABELS fuzz TIMEOUT 120 FIXTURES_REQUIRED fuzzdir.record)
  add_test(NAME fuzz.fuzz_record.mkdir COMMAND ${CMAKE_COMMAND} -E make_directory ${work})
  set_tests_properties(fuzz.fuzz_record.mkdir PROPERTIES LABELS fuzz FIXTURES_SETUP fuzzdir.record)
endif()
