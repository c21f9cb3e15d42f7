// SPDX-License-Identifier: Apache-2.0
#include "moesim/perf/power_limit.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::perf {

namespace {

/** T(r): the clock-bound part of the kernel's body stretched by 1/r, never below its memory term. */
double time_at(const KernelTime& t, double r) {
  const double body = std::max(0.0, t.time_s - t.floor_s);
  double clock_part = body, memory_part = 0.0;  // no terms (a table without them): all of it follows the clock
  if (t.compute_s > 0.0 || t.memory_s > 0.0) {
    if (t.compute_s >= t.memory_s) {
      memory_part = body * t.memory_s / t.compute_s;
    } else {
      clock_part = body * t.compute_s / t.memory_s;
      memory_part = body;
    }
  }
  return std::max(clock_part / r, memory_part) + t.floor_s;
}

}  // namespace

PowerLimited limit_kernel(const KernelTime& t, double nominal_power_w, double curve_active_w, double limit_w) {
  if (!(limit_w > curve_active_w))
    throw Error(fmt::format("power limit {} W must exceed the accelerator's active power {} W", limit_w, curve_active_w));
  PowerLimited out{1.0, t.time_s, nominal_power_w};
  if (nominal_power_w <= limit_w || !(t.time_s > 0.0)) return out;
  const double dynamic_w = nominal_power_w - curve_active_w;
  auto power = [&](double r) { return curve_active_w + dynamic_w * r * r * t.time_s / time_at(t, r); };
  // P is increasing in r (the energy per unit of work and the work rate both grow with the clock) and tends to
  // active_w as r -> 0, so the limit has one root in (0, 1). Bisection to 1e-12 in r.
  double lo = 0.0, hi = 1.0;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (power(mid) > limit_w ? hi : lo) = mid;
  }
  out.clock_ratio = lo;
  out.time_s = time_at(t, lo);
  out.power_w = power(lo);
  return out;
}

namespace {

class PowerLimitedModel final : public ComputeTimeModel {
 public:
  PowerLimitedModel(std::unique_ptr<ComputeTimeModel> base, const catalog::AcceleratorSpec& accel, double limit_w)
      : base_(std::move(base)), accel_(accel), limit_w_(limit_w) {
    if (!accel.power_limit_allowed(limit_w))
      throw Error(fmt::format("power limit {} W on {}: it must lie above the active power {} W and at most the full power {} W",
                              limit_w, accel.name, accel.active_w, accel.full_w));
  }
  KernelTime time(const KernelOp& op) const override {
    KernelTime t = base_->time(op);
    if (!(t.time_s > 0.0)) return t;
    const PeakTimes peak = peak_times(op, t.padded_flops, accel_);
    const double nominal = accel_.compute_power_w(peak.matrix_s / t.time_s, peak.hbm_s / t.time_s);
    const PowerLimited l = limit_kernel(t, nominal, accel_.active_w, limit_w_);
    if (l.clock_ratio >= 1.0) return t;
    // The clock-bound terms stretch; the record keeps the model's terms at the lower clock.
    t.compute_s /= l.clock_ratio;
    t.time_s = l.time_s;
    t.energy_scale = l.clock_ratio * l.clock_ratio;
    t.clock_ratio = l.clock_ratio;
    return t;
  }
  std::string describe() const override {
    return fmt::format("{}; under a {:g} W power limit (core clock and voltage lowered per kernel until its power is "
                       "within the limit: perf/power_limit.hpp)",
                       base_->describe(), limit_w_);
  }
  TimePath planned_path(KernelClass c) const override { return base_->planned_path(c); }
  PathCounts path_counts() const override { return base_->path_counts(); }
  bool synthetic() const override { return base_->synthetic(); }

 private:
  std::unique_ptr<ComputeTimeModel> base_;
  catalog::AcceleratorSpec accel_;
  double limit_w_;
};

}  // namespace

std::unique_ptr<ComputeTimeModel> power_limited(std::unique_ptr<ComputeTimeModel> base, const catalog::AcceleratorSpec& accel,
                                                double limit_w) {
  return std::make_unique<PowerLimitedModel>(std::move(base), accel, limit_w);
}

std::unique_ptr<ComputeTimeModel> with_power_limit(std::unique_ptr<ComputeTimeModel> base, const catalog::AcceleratorSpec& accel,
                                                   std::optional<double> limit_w) {
  return limit_w ? power_limited(std::move(base), accel, *limit_w) : std::move(base);
}

}  // namespace moesim::perf
