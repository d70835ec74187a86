#!/usr/bin/env bash
# Installs what the tests need, builds, and runs every test tier through ctest.
#
#   scripts/test.sh
#
# Three passes, each in its own build directory:
#   1. build/       RelWithDebInfo, everything (daemons, UI, tools): ctest runs all tiers
#                   (unit, lua, e2e, fuzz smoke runs if registered, docs).
#   2. build-asan/  -DPT_SANITIZE=ON (ASan + UBSan): the unit tier.
#   3. build-fuzz/  CC=clang CXX=clang++ -DPT_FUZZ=ON (libFuzzer): the fuzz tier.
# Every pass runs even when an earlier one failed; the exit status is non-zero when any
# build or test failed. Environment:
#   PT_BUILD_DIR       main build directory (default: build)
#   PT_ASAN_BUILD_DIR, PT_FUZZ_BUILD_DIR   the other two (default: build-asan, build-fuzz)
#   PT_BUILD_UI        ON/OFF, passed to CMake (default: the project's default)
#   PT_TEST_PASSES     which passes to run (default: "main asan fuzz")
#   PT_SKIP_DEPS=1     do not call scripts/install-deps.sh
#   PT_CTEST_ARGS      extra ctest arguments for the main pass (e.g. "-L unit")
#   CI=true            set by .ci/run; ctest then stops output buffering and prints more
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

jobs=$(nproc 2>/dev/null || echo 2)
build=${PT_BUILD_DIR:-build}
passes=${PT_TEST_PASSES:-main asan fuzz}
ui_args=()
[[ -n "${PT_BUILD_UI:-}" ]] && ui_args=(-DPT_BUILD_UI="$PT_BUILD_UI")

if [[ "${PT_SKIP_DEPS:-0}" != 1 ]]; then
  scripts/install-deps.sh test || { echo "test.sh: dependency installation failed" >&2; exit 1; }
fi

status=0
summary=()
t_all=$(date +%s)

# pass NAME BUILD_DIR CTEST_ARGS -- CMAKE_ARGS...
pass() {
  local name=$1 dir=$2 ctest_args=$3
  shift 4
  local t0 rc=0
  t0=$(date +%s)
  echo "=== test.sh: $name: configure $dir $*"
  if cmake -S . -B "$dir" "$@"; then
    echo "=== test.sh: $name: build"
    if cmake --build "$dir" -j "$jobs"; then
      echo "=== test.sh: $name: ctest $ctest_args"
      # shellcheck disable=SC2086
      ctest --test-dir "$dir" --output-on-failure -j "$jobs" $ctest_args || rc=$?
    else
      rc=$?
      echo "=== test.sh: $name: build failed" >&2
    fi
  else
    rc=1
    echo "=== test.sh: $name: configure failed" >&2
  fi
  local took=$(( $(date +%s) - t0 ))
  if [[ $rc -ne 0 ]]; then
    status=1
    summary+=("$name: FAILED (${took}s)")
  else
    summary+=("$name: ok (${took}s)")
  fi
}

for p in $passes; do
  case "$p" in
    main)
      pass main "$build" "${PT_CTEST_ARGS:-}" -- -DCMAKE_BUILD_TYPE=RelWithDebInfo "${ui_args[@]}" ;;
    asan)
      # No UI here: the sanitizers check C code, the embedded UI adds nothing but build time.
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        pass asan "${PT_ASAN_BUILD_DIR:-build-asan}" "-L unit --no-tests=error" -- -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON -DPT_BUILD_UI=OFF ;;
    fuzz)
      CC=clang CXX=clang++ pass fuzz "${PT_FUZZ_BUILD_DIR:-build-fuzz}" "-L fuzz --no-tests=error" -- -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPT_FUZZ=ON -DPT_BUILD_UI=OFF ;;
    *) echo "test.sh: unknown pass '$p'" >&2; exit 2 ;;
  esac
done

echo "=== test.sh: summary ($(( $(date +%s) - t_all ))s)"
printf '  %s\n' "${summary[@]}"
exit $status
