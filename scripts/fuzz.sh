#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer and UBSan) and runs each of them
# from the committed seed corpus for SECONDS (default 600), as the nightly workflow does.
#
#   scripts/fuzz.sh [SECONDS]
#
# Build directory: $PT_FUZZ_BUILD_DIR (default build-fuzz). A target that crashes, leaks or
# breaks one of its invariants fails the run; its input is left in
# <build dir>/fuzz-artifacts/ to reproduce with `<build dir>/<target> <file>`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-600}"
build="${PT_FUZZ_BUILD_DIR:-build-fuzz}"
CC=clang CXX=clang++ cmake -S . -B "$build" -DPT_FUZZ=ON -DPT_BUILD_UI=OFF -DPT_FUZZ_SECONDS="$seconds"
cmake --build "$build" -j "$(nproc)"   # every target: the fuzzers are spread over spec/fuzz/*.cmake
ctest --test-dir "$build" -L fuzz --output-on-failure
