// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace moesim::cli {

/** Exit statuses of `moesim` (documented in the README, "Exit status"). */
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;          ///< bad input (scenario, profile, CSV), missing data, a store error
inline constexpr int kExitUsage = 2;          ///< the command line itself: unknown command or option, missing argument
inline constexpr int kExitInternal = 70;      ///< a bug in moesim (sysexits.h EX_SOFTWARE)
inline constexpr int kExitInterrupted = 130;  ///< SIGINT / SIGTERM (128 + SIGINT, the shell's convention)

/** The `moesim` command line. Returns the process exit code. */
int main(int argc, char** argv);
}  // namespace moesim::cli
