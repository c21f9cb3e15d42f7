// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace moesim::cli {
/** The `moesim` command line. Returns the process exit code. */
int main(int argc, char** argv);
}  // namespace moesim::cli
