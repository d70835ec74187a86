# Lint tier: the GitHub workflows can't run here, so they are linted (actionlint, shellcheck),
# checked against the repository (every script they call exists, jobs chain as documented, the
# image they build is the root Dockerfile, the install docs name where the chart is published),
# and the release scripts they call are run against a local git remote.
add_test(NAME lint.workflows
         COMMAND ${PT_PYTHON} -m pytest -x -q -p no:cacheprovider -rs ${PT_SPEC_DIR}/lint/test_workflows.py
         WORKING_DIRECTORY ${PT_SPEC_DIR}/lint)
set_tests_properties(lint.workflows PROPERTIES LABELS lint TIMEOUT 600
  ENVIRONMENT "PT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
add_test(NAME lint.root_files
         COMMAND ${PT_PYTHON} -m pytest -x -q -p no:cacheprovider -rs ${PT_SPEC_DIR}/lint/test_root_files.py
         WORKING_DIRECTORY ${PT_SPEC_DIR}/lint)
set_tests_properties(lint.root_files PROPERTIES LABELS lint TIMEOUT 60
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
