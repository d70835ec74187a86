# End-to-end tests (pytest on Debian's /usr/bin/python3, never a pyenv python): one ctest
# test per spec/e2e/test_<name>.py, named e2e.<name>. A new file is picked up by the next
# build (CONFIGURE_DEPENDS). They run serially: each starts containerd, a registry and nginx
# and throttles downloads, which needs the machine's attention on 2 cores to stay
# deterministic.
# Per-file settings: a line `# ctest: TIMEOUT=<seconds>` in the file overrides the timeout; a
# line `# ctest: CONTAINERD=1.7 2.1` also runs the file against those containerd series (as
# e2e.<name>.containerd-<series>, fetched by scripts/containerd-versions.sh when missing),
# leaving out the tests marked `containerd_independent`. The plain e2e.<name> runs on the
# system's containerd 1.6, or on the series $PT_CONTAINERD_VERSION names.
set(PT_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with python3-pytest and python3-requests")

file(GLOB pt_e2e_tests CONFIGURE_DEPENDS ${PT_SPEC_DIR}/e2e/test_*.py)
list(SORT pt_e2e_tests)
foreach(pt_file ${pt_e2e_tests})
  get_filename_component(pt_name ${pt_file} NAME_WE)
  string(REGEX REPLACE "^test_" "" pt_name ${pt_name})
  set(pt_timeout 900)
  file(STRINGS ${pt_file} pt_opts REGEX "^# ctest: TIMEOUT=[0-9]+")
  if(pt_opts)
    string(REGEX REPLACE "^# ctest: TIMEOUT=([0-9]+).*" "\\1" pt_timeout "${pt_opts}")
  endif()
  add_test(NAME e2e.${pt_name}
           COMMAND ${PT_PYTHON} -m pytest -x -q -p no:cacheprovider -rs ${pt_file}
           WORKING_DIRECTORY ${PT_SPEC_DIR}/e2e)
  set_tests_properties(e2e.${pt_name} PROPERTIES
    LABELS e2e TIMEOUT ${pt_timeout} RUN_SERIAL TRUE
    ENVIRONMENT "PT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  file(STRINGS ${pt_file} pt_opts REGEX "^# ctest: CONTAINERD=")
  if(pt_opts)
    string(REGEX REPLACE "^# ctest: CONTAINERD=" "" pt_series "${pt_opts}")
    separate_arguments(pt_series UNIX_COMMAND "${pt_series}")
    foreach(pt_v ${pt_series})
      add_test(NAME e2e.${pt_name}.containerd-${pt_v}
               COMMAND ${PT_PYTHON} -m pytest -x -q -p no:cacheprovider -rs
                       -m "not containerd_independent" ${pt_file}
               WORKING_DIRECTORY ${PT_SPEC_DIR}/e2e)
      set_tests_properties(e2e.${pt_name}.containerd-${pt_v} PROPERTIES
        LABELS "e2e;containerd" TIMEOUT ${pt_timeout} RUN_SERIAL TRUE
        ENVIRONMENT "PT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1;PT_CONTAINERD_VERSION=${pt_v}")
    endforeach()
  endif()
endforeach()

# Documentation tier: the MkDocs site must build without a warning.
find_program(PT_MKDOCS mkdocs)
if(PT_MKDOCS AND EXISTS ${CMAKE_SOURCE_DIR}/mkdocs.yml)
  add_test(NAME docs.mkdocs
           COMMAND ${PT_MKDOCS} build --strict --quiet -f ${CMAKE_SOURCE_DIR}/mkdocs.yml
                   -d ${CMAKE_BINARY_DIR}/site
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(docs.mkdocs PROPERTIES LABELS docs TIMEOUT 300)
else()
  message(WARNING "mkdocs or mkdocs.yml missing: the docs tier is not registered")
endif()
