#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# One command on a fresh Debian 12 machine: install the dependencies, build, and run the default scenario
# (scenarios/quickstart.yaml), storing the run in moesim.db and writing its HTML report to reports/out/.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
./build/moesim run scenarios/quickstart.yaml --db moesim.db --report reports/out
