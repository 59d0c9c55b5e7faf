#!/usr/bin/env bash
# Builds zmesh and runs the whole test suite, the way CI does (.ci/run):
#   1. installs the Debian packages it needs (scripts/install-deps.sh);
#   2. an optimised build (-O2, no debug info: it builds fastest) and every
#      ctest suite: unit, integration (real
#      zmesh-server processes, a private ZooKeeper, the Go NATS client, the
#      compat suites validated against nats-server), fuzz corpus replay;
#   3. the same suites under ASan+UBSan (-O1 -g1, assertions on), built with
#      clang 16: it compiles this tree about twice as fast as GCC with the
#      sanitizers on (the release build stays on GCC, what users build with);
#   4. each libFuzzer target for a bounded time, linked in the tree of step 3:
#      that tree's code carries libFuzzer's coverage instrumentation
#      (-DZMESH_FUZZ=ON), so the fuzzers cost three links, not a third
#      compilation of the code.
# Every stage runs even when an earlier one failed, so that one run shows all
# that is broken; the last line is the tally a CI reader parses,
#   N passed, M failed
# counting each ctest test of every build tree and each fuzz target (a build
# that fails counts as one failure, or as each fuzz target it stopped). The
# exit status is non-zero when anything failed.
# Options (environment):
#   JOBS=N           parallel build jobs (default: cores)
#   CTEST_JOBS=N     parallel test processes (default 2)
#   FUZZ_SECONDS=N   seconds per fuzz target (default 30; 0 skips step 4)
#   FUZZ_JOBS=N      fuzz targets run at once (default: JOBS)
#   SKIP_SANITIZERS=1  skip step 3 (local iterations only; CI runs it)
#   TSAN=1           also build and run unit + integration tests under TSan
#   BUILD_ROOT=DIR   where build trees go (default: build-ci/ in the repo)
# No -e: a failing stage must not end the run before the tally (each stage
# checks its own commands and counts).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
jobs=${JOBS:-$(nproc)}
ctest_jobs=${CTEST_JOBS:-2}
fuzz_seconds=${FUZZ_SECONDS:-30}
fuzz_jobs=${FUZZ_JOBS:-$jobs}
[ "$fuzz_jobs" -ge 1 ] 2>/dev/null || fuzz_jobs=1
build_root=${BUILD_ROOT:-$root/build-ci}
# libFuzzer targets run in step 4, one name a line: the CMake target
# <name>_fuzzer (tests/fuzz/), seeded from tests/fuzz/corpus/<name>/.
fuzz_targets=(
  parser
  peer_frames
  peer_session
)

passed=0
failed=0
failures=()

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
fail() { failed=$((failed + $2)); failures+=("$1"); printf '*** FAILED: %s\n' "$1"; }

step "dependencies"
scripts/install-deps.sh || fail "dependencies (scripts/install-deps.sh)" 1

# Each build tree: configure, build, run every test label, count the tests.
build_and_test() {
  local name=$1; shift
  local dir=$build_root/$name
  step "$name: configure"
  # One Go build cache for all trees: natscheck (tests/go) compiles once.
  if ! cmake -S "$root" -B "$dir" -G Ninja "-DZMESH_GO_CACHE=$build_root/go-cache" "$@" >/dev/null; then
    fail "$name: configure" 1
    return
  fi
  step "$name: build"
  if ! cmake --build "$dir" -j "$jobs"; then
    fail "$name: build" 1
    return
  fi
  step "$name: tests"
  local log=$dir/ctest-output.log
  mkdir -p "$dir"
  ctest --test-dir "$dir" --output-on-failure -j "$ctest_jobs" --timeout 900 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  # ctest's own tally: "95% tests passed, 2 tests failed out of 42".
  local tally
  tally=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  if [ -z "$tally" ]; then
    fail "$name: ctest ran no test or did not finish (exit $status)" 1
    return
  fi
  local n_failed n_total
  n_failed=$(echo "$tally" | awk '{print $1}')
  n_total=$(echo "$tally" | awk '{print $NF}')
  passed=$((passed + n_total - n_failed))
  if [ "$n_failed" -gt 0 ]; then
    fail "$name: $n_failed of $n_total ctest tests" "$n_failed"
  elif [ "$status" -ne 0 ]; then
    fail "$name: ctest exited $status with no failed test" 1
  fi
}

build_and_test release -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"

# halt_on_error: the first report fails the test (or fuzz input) that caused it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
# The ASan+UBSan tree of steps 3 and 4.
asan_args=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" "-DZMESH_SANITIZE=address,undefined"
  -DZMESH_FUZZ=ON)
if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  CC=clang-16 CXX=clang++-16 build_and_test asan-ubsan "${asan_args[@]}"
fi

if [ "${TSAN:-0}" = 1 ]; then
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp}
  build_and_test tsan -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1" -DZMESH_SANITIZE=thread
fi

if [ "$fuzz_seconds" -gt 0 ]; then
  # After step 3 only the fuzz executables are left to link; with
  # SKIP_SANITIZERS=1 this builds just what they need.
  step "fuzz: libFuzzer build (asan-ubsan tree)"
  dir=$build_root/asan-ubsan
  if ! CC=clang-16 CXX=clang++-16 cmake -S "$root" -B "$dir" -G Ninja "${asan_args[@]}" >/dev/null ||
     ! cmake --build "$dir" -j "$jobs" --target "${fuzz_targets[@]/%/_fuzzer}"; then
    fail "fuzz: build (${fuzz_targets[*]} not run)" "${#fuzz_targets[@]}"
  else
    # Each fuzzer is one single-threaded process: up to fuzz_jobs of them run
    # at once (default: cores), so each still has a core for its whole time.
    # Their results are reported in target order once the batch is done.
    for ((i = 0; i < ${#fuzz_targets[@]}; i += fuzz_jobs)); do
      batch=("${fuzz_targets[@]:i:fuzz_jobs}")
      step "fuzz: ${batch[*]} for ${fuzz_seconds}s"
      work=()
      for target in "${batch[@]}"; do
        w=$(mktemp -d)
        work+=("$w")
        mkdir "$w/corpus" "$w/artifacts"
        if [ -d "$root/tests/fuzz/corpus/$target" ]; then
          cp -r "$root/tests/fuzz/corpus/$target/." "$w/corpus/"
        fi
        (
          "$dir/bin/${target}_fuzzer" -max_total_time="$fuzz_seconds" -max_len=8192 -timeout=10 \
            -artifact_prefix="$w/artifacts/" "$w/corpus" >"$w/output.log" 2>&1
          echo $? >"$w/status"
        ) &
      done
      wait
      for j in "${!batch[@]}"; do
        target=${batch[j]}
        w=${work[j]}
        status=$(cat "$w/status" 2>/dev/null || echo "no status")
        printf -- '--- fuzz: %s\n' "$target"
        # A crash, leak, timeout or OOM leaves an artifact and a non-zero exit;
        # either alone is a failure.
        if [ "$status" != 0 ] || [ -n "$(ls -A "$w/artifacts")" ]; then
          cat "$w/output.log"
          for artifact in "$w/artifacts"/*; do
            [ -e "$artifact" ] || continue
            printf -- '--- %s (%s bytes), base64:\n' "$(basename "$artifact")" "$(stat -c %s "$artifact")"
            head -c 65536 "$artifact" | base64
          done
          fail "fuzz: $target (exit $status)" 1
        else
          # libFuzzer's last status line (coverage, corpus, speed) and run count.
          grep -E '^#[0-9]+' "$w/output.log" | tail -n 1
          grep -E '^Done [0-9]+ runs' "$w/output.log"
          passed=$((passed + 1))
        fi
        rm -rf "$w"
      done
    done
  fi
fi

step "summary"
for f in "${failures[@]+"${failures[@]}"}"; do
  printf 'FAILED: %s\n' "$f"
done
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
