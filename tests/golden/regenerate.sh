#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Regenerates tests/golden/expected/*.json from the current simulator, after an INTENDED model change
# (new efficiency data, a collective algorithm, an energy convention). Review `git diff
# tests/golden/expected/` and say in the commit message why the numbers moved.
#
#   tests/golden/regenerate.sh [BUILD_DIR]     (default BUILD_DIR: build)
#
# It builds moesim and the golden suite, then runs the suite with MOESIM_GOLDEN_UPDATE=1, which makes
# each golden test write its expected file instead of comparing; a second run must then pass.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
cmake --build "$build" --target moesim moesim_tests_golden
MOESIM_GOLDEN_UPDATE=1 "$build/tests/moesim_tests_golden" "[golden]"
"$build/tests/moesim_tests_golden" "[golden]"
echo "regenerated $(ls "$root/tests/golden/expected/"*.json | wc -l) files in tests/golden/expected/"
