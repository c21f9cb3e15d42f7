// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/perf/measured_profile.hpp"

namespace moesim::perf {

/** One measured series: achieved rate against one size axis, other shape parameters fixed. */
struct MeasuredSeries {
  KernelClass cls = KernelClass::gemm;
  std::string dtype;  ///< "*" for a data-movement series pooled over dtypes
  /** Fixed parameters. gemm: n, k (m is the axis). batched_gemm: m, n, k (batch is the axis).
   *  grouped_gemm: d_model, d_ff, gates, experts (tokens per expert is the axis). Data movement,
   *  decode and prefill attention: none. */
  double n = 0.0, k = 0.0, m = 0.0, d_model = 0.0, d_ff = 0.0, gates = 0.0, experts = 0.0;
  std::string axis;          ///< "m", "batch", "tokens_per_expert", "flops" (prefill attention) or "bytes"
  bool rate_is_flops = true;  ///< FLOP/s (GEMM classes, prefill attention) or bytes/s (data movement, decode attention)
  std::vector<double> x;     ///< ascending, distinct
  std::vector<double> rate;  ///< achieved rate at x (median of entries with the same x)
  std::string describe() const;
};

/** Achieved rate at `x` by linear interpolation of log(rate) in log(x) between the two nearest
 *  points; nullopt outside [x.front(), x.back()] (never extrapolates). Equivalent to interpolating
 *  log(time) in log(size): the time is a power law between neighbours, so it reproduces every
 *  measured point and stays between the neighbours' times. */
std::optional<double> interpolate_rate(const MeasuredSeries& s, double x);

/** Kernel times of the measured device from its profile's tables (path `measured`).
 *
 *  Tables (MeasuredProfile::kernel_entries(): dense_ffn excluded, fastest expert-FFN strategy):
 *  - gemm: per (dtype, n, k), achieved FLOP/s against m (qkv_proj, out_proj, router_gate);
 *    an op matches when its batch is 1 and n, k are equal (relative 1e-9);
 *  - batched_gemm: per (dtype, m, n, k), FLOP/s against batch (attention scores / values; the op
 *    carries no transposition flag, so the shape alone identifies the series);
 *  - grouped_gemm: per (dtype, d_model, d_ff, gates, experts), FLOP/s of the whole measured expert
 *    FFN against tokens per expert, balanced distribution, fastest strategy. An op is one of the
 *    FFN's GEMMs: up (n = gates x d_ff, k = d_model) or down (n = d_model, k = d_ff) over
 *    experts = group_m.size() groups; its axis value is the mean of group_m and its time
 *    op.flops / rate. The measured FFN includes its activation, which the simulator also times as a
 *    separate elementwise op: that op is counted twice on this path (a few % of the FFN);
 *  - router, permute, unpermute, elementwise, decode_attention: per dtype (pooled over dtypes when
 *    the op's dtype has no series; the router is profiled in fp32 only), bytes/s against the op's
 *    bytes, pooled over the other parameters (the op carries only its byte count). The profile's
 *    elementwise kernel is the FFN activation: its bandwidth stands for every streaming elementwise
 *    op. Decode attention's dtype is the KV-cache type (bf16 or fp8): an fp8-KV step matches the fp8
 *    series, and its bytes, dominated by the KV read once, are the axis (batch, KV length and heads
 *    are pooled: a limitation until ops carry their attention shape);
 *  - prefill_attention: per dtype, FLOP/s against the op's FLOPs (causal pairs only), pooled over
 *    sequence lengths and heads.
 *  time = op.flops / rate (GEMM classes) or op.bytes / rate (data movement), rate from
 *  interpolate_rate(). An op with no matching series, or outside the series' measured range, goes to
 *  `fallback` (the TransferModel calibrated on this same profile and device, or the roofline for
 *  classes the profile lacks) and the reason is recorded in path_counts() and describe(). */
class MeasuredTableModel final : public ComputeTimeModel {
 public:
  MeasuredTableModel(const catalog::AcceleratorSpec& accel, std::shared_ptr<const MeasuredProfile> profile,
                     std::unique_ptr<ComputeTimeModel> fallback);
  KernelTime time(const KernelOp& op) const override;
  std::string describe() const override;
  TimePath planned_path(KernelClass c) const override;
  PathCounts path_counts() const override;
  bool synthetic() const override { return !profile_->measured(); }

  const std::vector<MeasuredSeries>& series() const { return series_; }
  const MeasuredProfile& profile() const { return *profile_; }

 private:
  /** The series an op belongs to and its axis value; nullptr if none. */
  const MeasuredSeries* match(const KernelOp& op, double* x) const;

  catalog::AcceleratorSpec accel_;
  std::shared_ptr<const MeasuredProfile> profile_;
  std::unique_ptr<ComputeTimeModel> fallback_;
  std::vector<MeasuredSeries> series_;
  PathLog log_;
};

/** Builds the series of a profile (exposed for tests and the run record). */
std::vector<MeasuredSeries> build_series(const MeasuredProfile& profile);

/** Human-readable summary of path counts ("gemm: 12 measured, 3 transferred (outside the measured
 *  range 2, ...)") for describe(). */
std::string describe_path_counts(const PathCounts& counts);

}  // namespace moesim::perf
