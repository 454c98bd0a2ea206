#!/bin/sh
# Installs what is missing, builds sockid with AddressSanitizer and
# UndefinedBehaviorSanitizer (and the libFuzzer harnesses), runs every test.
# Exits non-zero if anything fails. Tests that need root print why they skip.
#
#   scripts/test.sh                 # everything
#   SOCKID_TEST_BUILD=dir scripts/test.sh   # another build directory
#   scripts/test.sh -R peer         # extra arguments go to ctest
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
# shellcheck disable=SC2086
deps_install $SOCKID_DEPS_BUILD $SOCKID_DEPS_TEST
deps_node

build=${SOCKID_TEST_BUILD:-build-test}
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug \
    -DSOCKID_SANITIZE=ON -DSOCKID_FUZZ=ON -DSOCKID_TESTS=ON
cmake --build "$build" -j "$(nproc)"

# Sanitizer findings fail the test that hit them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
ctest --output-on-failure --parallel "$(nproc)" "$@"
