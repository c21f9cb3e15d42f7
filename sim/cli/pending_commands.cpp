// SPDX-License-Identifier: Apache-2.0
// TEMPORARY during development: replaced by compare/bench implementations (report: report_command.cpp) before landing.
#include "commands.hpp"
#include "moesim/core/error.hpp"

namespace moesim::cli {
int cmd_compare(const GlobalOptions&, const CompareOptions&) { throw Error("compare: not implemented"); }
int cmd_bench(const GlobalOptions&, const BenchOptions&) { throw Error("bench: not implemented"); }
}  // namespace moesim::cli
