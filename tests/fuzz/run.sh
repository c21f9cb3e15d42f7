#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds the fuzz harnesses with clang, libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer (in BUILD_DIR,
# default build-fuzz) and fuzzes each for SECONDS (default 60) from its seed corpus. Exits non-zero on the first
# finding (a crash, a sanitizer report, an exception other than moesim::Error, a hang past 10 s or 2 GB for one
# input); libFuzzer then writes the reproducer (crash-*, timeout-*, oom-*) into the build directory and prints it.
# Replay one with: BUILD_DIR/tests/fuzz/moesim_fuzz_<target> FILE
#
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
build=${2:-$root/build-fuzz}
if ! command -v clang++ >/dev/null 2>&1; then
  echo "tests/fuzz/run.sh: clang++ not found (Debian: apt-get install clang); fuzzing skipped" >&2
  exit 0
fi
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOESIM_BUILD_KERNELS=OFF -DMOESIM_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$sanitize -fsanitize=fuzzer-no-link" -DCMAKE_EXE_LINKER_FLAGS="$sanitize" >/dev/null
cmake --build "$build" -j"$(nproc)" --target moesim_fuzz_scenario moesim_fuzz_overrides moesim_fuzz_hourly_csv moesim_fuzz_request_trace
export MOESIM_PROFILES="$root/profiles"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# yaml-cpp and SQLite are the system's (not instrumented); leaks at exit are the catalog's static, not findings.
export ASAN_OPTIONS=detect_leaks=0
for target in scenario overrides hourly_csv request_trace; do
  case $target in
    scenario) seeds="$root/scenarios/examples $root/scenarios/published $root/scenarios/compare $root/bench $root/tests/data/scenario" ;;
    overrides) seeds="$root/tests/fuzz/corpus/overrides" ;;
    hourly_csv) seeds="$root/tests/data/energy $root/tests/data/energy/bad $root/tests/fuzz/corpus/hourly" ;;
    request_trace) seeds="$root/scenarios/traces $root/tests/fuzz/corpus/trace" ;;
  esac
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  log="$build/fuzz-$target.log"
  echo "fuzzing $target for $seconds s (log: $log)"
  # shellcheck disable=SC2086  # seeds is a list of directories
  if ! (cd "$build" && "$build/tests/fuzz/moesim_fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
          -print_final_stats=1 "$corpus" $seeds >"$log" 2>&1); then
    tail -n 80 "$log"
    echo "tests/fuzz/run.sh: $target: a finding (reproducer above, in $build)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^Done" "$log" || true
done
