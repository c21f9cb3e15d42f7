#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs everything moesim needs on Debian 12 (bookworm), from Debian's own packages.
# Used by the README's first command (scripts/setup.sh) and by CI (.ci/run), so both install the same set.
# nvcc (CUDA 13) is optional: with it, kernels/ also builds the CUDA kernels and the profiler.
set -eu
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  build-essential cmake pkg-config git ca-certificates \
  libsimgrid-dev \
  libboost-graph-dev \
  libsqlite3-dev sqlite3 \
  catch2 \
  libyaml-cpp-dev \
  libcli11-dev \
  libfmt-dev libspdlog-dev \
  nlohmann-json3-dev \
  libexpat1-dev
