// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the serving CLI tests (serving_cli_test.cpp, serving_summary_cli_test.cpp): running moesim in a scratch
// directory, writing a scenario file, and the small MoE model both use.
#include <fstream>
#include <string>

#include "moesim_test/cli_run.hpp"

namespace moesim::testing::serving_cli {

using Result = CliResult;

inline Result run_cli(const std::string& args, const std::string& dir) { return run_moesim_in(args, dir); }

/** Writes `text` to `path` and returns the path. */
inline std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

/** A small MoE model (4 layers, 8 experts, top-2, GQA) as a scenario's `model:` section. */
inline const char* const kModel =
    "model:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  kv_heads: 2\n  experts: 8\n  top_k: 2\n"
    "  vocab: 32000\n  seq_len: 4096\n  activation: swiglu\n";

}  // namespace moesim::testing::serving_cli
