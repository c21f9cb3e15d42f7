#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# One command on a fresh Debian 12 machine: install the dependencies, build, install `moesim` into
# $MOESIM_PREFIX/bin (default ~/.local/bin), and run the default scenario (scenarios/quickstart.yaml), storing
# the run in moesim.db and writing its HTML report to reports/out/.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
prefix=${MOESIM_PREFIX:-$HOME/.local}
cmake --install build --prefix "$prefix" >/dev/null
./build/moesim run scenarios/quickstart.yaml --db moesim.db --report reports/out
# Said once, at the end, where it is seen: whether `moesim` (as the README writes it) is on the PATH.
case ":$PATH:" in
  *":$prefix/bin:"*) echo "moesim is installed in $prefix/bin (on your PATH): try \`moesim --help\`" ;;
  *) echo "moesim is installed in $prefix/bin, which is not on your PATH; add it with"
     echo "    export PATH=\"$prefix/bin:\$PATH\"    # e.g. in ~/.profile"
     echo "or run ./build/moesim" ;;
esac
