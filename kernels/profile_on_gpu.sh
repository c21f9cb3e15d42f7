#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Takes every kernel measurement on a GPU machine, in one command, from the repository root:
#
#   bash kernels/profile_on_gpu.sh            # full sweep (estimated 2-3 minutes of sweeping on one H100,
#                                             # under 5 minutes with build, tests and checks)
#   bash kernels/profile_on_gpu.sh --quick    # smoke run (well under a minute of sweeping)
#
# Steps: configure and build kernels/ standalone (it needs only CUDA, CMake and a C++17
# compiler; not the simulator's SimGrid/Boost), run the GPU tests (each kernel against its CPU
# reference), run moesim-profile (which checks the kernels again, measures the device ceilings
# and sweeps the shape grid) and write profiles/measured/<device>.json plus <device>.log.
# A failing GPU test does not stop the run: moesim-profile times only the kernels that pass their
# reference check (the others are listed under "skipped" in the JSON), and this script then exits
# non-zero. Extra arguments go to moesim-profile (see `moesim-profile --help`).
#
# Environment:
#   MOESIM_GPU_BUILD_DIR  build directory (default build-gpu)
#   MOESIM_GIT_HASH       revision to record when .git is absent (e.g. on a copied work tree)
#   MOESIM_CATCH2_INCLUDE_DIR  a directory holding catch2/catch.hpp when Catch2 is not installed
#   OUT                   if set (the device tool's result folder), the JSON and the log are copied there
# The card's clocks, power limit and modes are left as found; nvidia-smi readings go to the log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${MOESIM_GPU_BUILD_DIR:-build-gpu}"
mkdir -p profiles/measured
log="$(mktemp "${TMPDIR:-/tmp}/moesim-profile.XXXXXX.log")"
exec > >(tee "$log") 2>&1

echo "== moesim kernels profiling run, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
git_hash="${MOESIM_GIT_HASH:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
echo "revision: $git_hash"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit,temperature.gpu \
    --format=csv || true
fi

catch2_args=()
if [[ -n "${MOESIM_CATCH2_INCLUDE_DIR:-}" ]]; then
  catch2_args=(-DMOESIM_CATCH2_INCLUDE_DIR="$MOESIM_CATCH2_INCLUDE_DIR")
elif [[ -f .gpu-deps/catch2/catch.hpp ]]; then
  catch2_args=(-DMOESIM_CATCH2_INCLUDE_DIR="$PWD/.gpu-deps")
fi
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

echo "== configure and build (${build_dir})"
start=$(date +%s)
cmake -S kernels -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${catch2_args[@]}"
cmake --build "$build_dir" -j "$(nproc)"
echo "build took $(( $(date +%s) - start )) s"

echo "== GPU tests (each kernel against its CPU reference)"
tests_rc=0
ctest --test-dir "$build_dir" --output-on-failure || tests_rc=$?

echo "== sweep"
profile_rc=0
"$build_dir/moesim-profile" --git-hash "$git_hash" "$@" || profile_rc=$?

if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
fi

json="$(sed -n 's/^wrote \(.*\.json\)$/\1/p' "$log" | tail -n 1)"
if [[ -n "$json" ]]; then
  cp "$log" "${json%.json}.log"
  echo "log: ${json%.json}.log"
  if [[ -n "${OUT:-}" ]]; then
    cp "$json" "${json%.json}.log" "$OUT"/
  fi
fi
if [[ $tests_rc -ne 0 || $profile_rc -ne 0 ]]; then
  echo "== FAILED: GPU tests exit $tests_rc, moesim-profile exit $profile_rc (see above; failing kernels were not timed)"
  exit 1
fi
