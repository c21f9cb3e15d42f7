// SPDX-License-Identifier: Apache-2.0
// Transfer check: a measured device's efficiencies, carried to another measured device, against that
// device's own measurements.
#include "moesim/perf/transfer_check.hpp"
#include "moesim/core/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "moesim/perf/transfer_model.hpp"

namespace moesim::perf {

namespace {

/** The simulator-side op of a profile entry (what the workload would ask for): the entry's op, with the
 *  expert FFN's equal per-expert groups. */
KernelOp op_of(const ProfileEntry& e) {
  KernelOp op = entry_op(e);
  if (e.cls == KernelClass::grouped_gemm && e.experts > 0.0)
    op.group_m.assign(static_cast<std::size_t>(e.experts), e.tokens_per_expert);
  return op;
}

}  // namespace

TransferCheckResult transfer_check(const MeasuredProfile& source, const std::optional<catalog::AcceleratorSpec>& source_spec,
                                   const MeasuredProfile& target, const catalog::AcceleratorSpec& target_spec,
                                   const EfficiencyTable& efficiency, double tolerance) {
  TransferCheckResult res;
  res.source = source.citation();
  res.target = target.citation();
  res.tolerance = tolerance;
  res.synthetic = !source.measured() || !target.measured();
  auto cal = std::make_shared<const Calibration>(Calibration::fit(source, profile_rates(source, source_spec), source_spec));
  const TransferModel model(target_spec, cal, transfer_target_rates(target_spec, source, source_spec),
                            std::make_unique<RooflineModel>(target_spec, efficiency));

  struct Acc {
    std::vector<double> abs_err;
    double pred = 0.0, meas = 0.0;
    int transferred = 0;
  };
  std::map<std::pair<std::string, std::string>, Acc> by;
  for (const ProfileEntry* e : target.kernel_entries()) {
    const KernelTime t = model.time(op_of(*e));
    Acc& a = by[{to_string(e->cls), e->dtype}];
    a.abs_err.push_back(std::fabs(t.time_s - e->time_s) / e->time_s);
    a.pred += t.time_s;
    a.meas += e->time_s;
    a.transferred += t.path == TimePath::transferred ? 1 : 0;
  }
  res.pass = !by.empty();
  for (const auto& [key, a] : by) {
    TransferCheckRow r;
    r.kernel_class = key.first;
    r.dtype = key.second;
    r.entries = static_cast<int>(a.abs_err.size());
    r.transferred = a.transferred;
    r.median_abs_error = median(a.abs_err);
    r.max_abs_error = *std::max_element(a.abs_err.begin(), a.abs_err.end());
    r.total_error = a.pred / a.meas - 1.0;
    r.pass = r.median_abs_error <= tolerance && std::fabs(r.total_error) <= tolerance;
    res.pass = res.pass && r.pass;
    res.rows.push_back(r);
  }
  return res;
}

std::string TransferCheckResult::table() const {
  std::string out = fmt::format("transfer check{}: {} -> {} (tolerance {:.0f} %)\n", synthetic ? " [SYNTHETIC profiles]" : "", source,
                                target, tolerance * 100.0);
  out += fmt::format("{:<14} {:<5} {:>7} {:>11} {:>10} {:>9} {:>9}  {}\n", "class", "dtype", "entries", "transferred", "median|e|",
                     "max|e|", "total e", "result");
  for (const TransferCheckRow& r : rows)
    out += fmt::format("{:<14} {:<5} {:>7} {:>11} {:>9.1f}% {:>8.1f}% {:>8.1f}%  {}\n", r.kernel_class, r.dtype, r.entries,
                       r.transferred, r.median_abs_error * 100.0, r.max_abs_error * 100.0, r.total_error * 100.0,
                       r.pass ? "pass" : "FAIL");
  out += pass ? "PASS\n" : "FAIL\n";
  return out;
}

}  // namespace moesim::perf
