// SPDX-License-Identifier: Apache-2.0
// TEMPORARY during development: replaced by compare/report/bench implementations before landing.
#include "commands.hpp"
#include "moesim/core/error.hpp"

namespace moesim::cli {
int cmd_compare(const GlobalOptions&, const CompareOptions&) { throw Error("compare: not implemented"); }
int cmd_report(const GlobalOptions&, const ReportOptions&) { throw Error("report: not implemented"); }
int cmd_bench(const GlobalOptions&, const BenchOptions&) { throw Error("bench: not implemented"); }
}  // namespace moesim::cli
