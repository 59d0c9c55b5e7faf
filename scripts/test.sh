#!/usr/bin/env bash
# Builds zmesh and runs the whole test suite, the way CI does (.ci/run):
#   1. installs the Debian packages it needs (scripts/install-deps.sh);
#   2. an optimised build (-O2, no debug info: it builds fastest) and every
#      ctest suite: unit, integration (real
#      zmesh-server processes, a private ZooKeeper, the Go NATS client, the
#      compat suites validated against nats-server), fuzz corpus replay;
#   3. the same suites under ASan+UBSan (-O1 -g1, assertions on);
#   4. each libFuzzer target for a bounded time (clang).
# Options (environment):
#   JOBS=N           parallel build jobs (default: cores)
#   CTEST_JOBS=N     parallel test processes (default 2)
#   FUZZ_SECONDS=N   seconds per fuzz target (default 30; 0 skips step 4)
#   SKIP_SANITIZERS=1  skip step 3 (local iterations only; CI runs it)
#   TSAN=1           also build and run unit + integration tests under TSan
#   BUILD_ROOT=DIR   where build trees go (default: build-ci/ in the repo)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${JOBS:-$(nproc)}
ctest_jobs=${CTEST_JOBS:-2}
fuzz_seconds=${FUZZ_SECONDS:-30}
build_root=${BUILD_ROOT:-$root/build-ci}

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "dependencies"
scripts/install-deps.sh

# Each build tree: configure, build, run every test label.
build_and_test() {
  local name=$1; shift
  local dir=$build_root/$name
  step "$name: configure"
  cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
  step "$name: build"
  cmake --build "$dir" -j "$jobs"
  step "$name: tests"
  ctest --test-dir "$dir" --output-on-failure -j "$ctest_jobs" --timeout 900
}

build_and_test release -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  # halt_on_error: the first report fails the test that caused it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
  build_and_test asan-ubsan -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" \
    -DZMESH_SANITIZE=address,undefined
fi

if [ "${TSAN:-0}" = 1 ]; then
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp}
  build_and_test tsan -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" -DZMESH_SANITIZE=thread
fi

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz: clang libFuzzer build"
  dir=$build_root/fuzz
  CC=clang CXX=clang++ cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DZMESH_FUZZ=ON -DZMESH_BUILD_TESTS=OFF >/dev/null
  cmake --build "$dir" -j "$jobs" --target parser_fuzzer peer_frames_fuzzer peer_session_fuzzer
  for target in parser peer_frames peer_session; do
    step "fuzz: $target for ${fuzz_seconds}s"
    work=$(mktemp -d)
    cp "$root/tests/fuzz/corpus/$target/"* "$work/"
    "$dir/bin/${target}_fuzzer" -max_total_time="$fuzz_seconds" -max_len=8192 -timeout=10 "$work" 2>&1 | tail -n 3
    rm -rf "$work"
  done
fi

step "all tests passed"
