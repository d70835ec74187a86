# Script mode: runs `npm ci` in UI_DIR when package-lock.json differs from what node_modules
# was installed from (several build directories share ui/node_modules), then touches STAMP.
# Inputs: UI_DIR, NPM, STAMP.
file(SHA256 "${UI_DIR}/package-lock.json" lock_sha)
set(marker "${UI_DIR}/node_modules/.pulltrace-lock-sha256")
# Two build trees may get here at once: one npm ci at a time.
file(LOCK "${UI_DIR}/.npm-ci.lock" GUARD PROCESS TIMEOUT 900)
set(installed "")
if(EXISTS "${marker}")
  file(READ "${marker}" installed)
  string(STRIP "${installed}" installed)
endif()
if(installed STREQUAL lock_sha)
  message(STATUS "ui: node_modules matches package-lock.json; npm ci skipped")
else()
  message(STATUS "ui: npm ci")
  execute_process(COMMAND "${NPM}" ci --no-audit --no-fund
                  WORKING_DIRECTORY "${UI_DIR}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ui: npm ci failed (${rc}). The UI needs the npm registry once; "
                        "configure with -DPT_BUILD_UI=OFF to build without it.")
  endif()
  file(WRITE "${marker}" "${lock_sha}\n")
endif()
file(TOUCH "${STAMP}")
