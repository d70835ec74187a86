# libFuzzer targets of the server (-DPT_FUZZ=ON with clang). Each runs for a
# bounded time under ctest (label fuzz) from the committed seed corpus:
# PT_FUZZ_SECONDS each (30; the nightly workflow, scripts/fuzz.sh, runs longer).
set(PT_FUZZ_SECONDS 30 CACHE STRING "Seconds each fuzz target runs under ctest")
if(PT_FUZZ AND TARGET pt_server)
  foreach(t fuzz_http fuzz_report fuzz_watch fuzz_kubeconfig fuzz_identity)
    add_executable(${t} ${PT_SPEC_DIR}/fuzz/${t}.c)
    target_link_libraries(${t} PRIVATE pt_server)
    target_link_options(${t} PRIVATE -fsanitize=fuzzer)
  endforeach()
  foreach(pair "fuzz_http;http" "fuzz_report;report" "fuzz_watch;watch" "fuzz_kubeconfig;kubeconfig" "fuzz_identity;identity")
    list(GET pair 0 t)
    list(GET pair 1 corpus)
    set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus-${corpus})
    add_test(NAME fuzz.${t}
             COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
                     $<TARGET_FILE:${t}> -max_total_time=${PT_FUZZ_SECONDS} -rss_limit_mb=1024 -max_len=65536
                     -artifact_prefix=${CMAKE_BINARY_DIR}/fuzz-artifacts/${t}-
                     ${work} ${PT_SPEC_DIR}/fuzz/corpus/${corpus})
    math(EXPR pt_fuzz_timeout "${PT_FUZZ_SECONDS} + 90")
    set_tests_properties(fuzz.${t} PROPERTIES LABELS fuzz TIMEOUT ${pt_fuzz_timeout}
                         FIXTURES_REQUIRED fuzzdir.${corpus})
    add_test(NAME fuzz.${t}.mkdir COMMAND ${CMAKE_COMMAND} -E make_directory ${work}
                                                 ${CMAKE_BINARY_DIR}/fuzz-artifacts)
    set_tests_properties(fuzz.${t}.mkdir PROPERTIES LABELS fuzz FIXTURES_SETUP fuzzdir.${corpus})
  endforeach()
endif()
