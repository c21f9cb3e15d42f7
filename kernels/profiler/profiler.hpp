// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <vector>

#include "moesim/kernels/types.hpp"

/** moesim-profile: checks every kernel against its CPU reference, measures the device ceilings,
 *  sweeps the shape grid (sweep.hpp) and writes the measured profile (profile_format.hpp). */
namespace moesim::kernels::profiler {

struct Options {
  bool quick = false;                                ///< --quick: the small smoke grid
  std::string out;                                   ///< --out PATH; default profiles/measured/<device>.json
  std::vector<DType> dtypes{DType::bf16, DType::fp8, DType::fp32};  ///< --dtype bf16|fp8|fp32|all
  std::string only;                                  ///< --only KERNEL (name or class)
  double budget_s = 270.0;                           ///< --budget-s: stop starting new shapes after this
  bool dry_run = false;                              ///< --dry-run: plan and estimate, touch no GPU
  bool check = true;                                 ///< --no-check skips the correctness checks
  bool check_only = false;                           ///< --check-only: checks, no timing
  std::string git_hash;                              ///< --git-hash (else the build's)
  std::string command_line;
};

/** Parses argv; throws moesim::Error naming a bad option and what is allowed. `help` is set for -h. */
Options parse_options(int argc, char** argv, bool* help);
/** Usage text. */
std::string usage();
/** Runs the profiler; returns the process exit code (0 ok, 1 a check failed, 77 no CUDA device). */
int run(const Options& options);

}  // namespace moesim::kernels::profiler
