// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <memory>
#include <optional>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/perf/compute_model.hpp"

namespace moesim::perf {

/** A kernel under a board power limit (`nvidia-smi -pl`, MLPerf's MaxQ systems): the GPU lowers its core clock, and
 *  with it the supply voltage, until the kernel's power is within the limit.
 *
 *  Physics. CMOS switching power is activity x capacitance x V^2 x f (the textbook relation, e.g. Weste and Harris,
 *  "CMOS VLSI Design"); under dynamic voltage and frequency scaling the voltage falls about in proportion to the
 *  clock (assumed: no voltage-frequency table of the H100/H200 was found). So at clock ratio r the energy of each
 *  unit of work is r^2 of its nominal value, and the dynamic power (the catalog curve above active_w, see
 *  catalog::PowerCurve) is that energy times the work rate:
 *      P(r) = active_w + (P(1) - active_w) x r^2 x T(1) / T(r),
 *  with the kernel's time T(r): its clock-bound part (the roofline's compute term, or its share of a measured time)
 *  stretched by 1/r, its memory term unchanged (HBM runs on its own clock), its fixed floor unchanged. A compute-bound
 *  kernel's power therefore falls as r^3 and its time grows as 1/r; a memory-bound kernel lowers its voltage at no
 *  cost in time until its compute term catches up with its memory term. active_w (idle at P0 with a job's memory
 *  held) is taken as independent of the clock, and all of the dynamic power above it as scaling with the core's
 *  voltage (the HBM interface's own share is not separated: no source splits it).
 *  Checked, not fitted, against MLPerf Inference v4.1's Mixtral-8x7B offline results on 8 x H200: 48,988 tokens/s
 *  at 500 W (MaxQ) against 59,022 at 700 W (validation/published.yaml). */
struct PowerLimited {
  double clock_ratio = 1.0;   ///< r: core clock / nominal clock (1 = the limit does not bind)
  double time_s = 0.0;        ///< T(r)
  double power_w = 0.0;       ///< P(r), chip watts (<= the limit up to the solver's tolerance)
};

/** Solves P(r) = limit_w for one kernel whose nominal time is `t` and whose nominal chip power (catalog curve, no host
 *  overhead) is `nominal_power_w`. r = 1 when the nominal power is within the limit. limit_w must exceed
 *  curve_active_w (the power of a chip doing nothing at P0). */
PowerLimited limit_kernel(const KernelTime& t, double nominal_power_w, double curve_active_w, double limit_w);

/** Decorates a compute-time model with a board power limit: each kernel's time is T(r) of limit_kernel(), its
 *  KernelTime::energy_scale r^2 (what the callers multiply the peak times that set power by: perf::power_peak_times).
 *  The nominal power is the accelerator's curve (catalog::AcceleratorSpec::compute_power_w) at the kernel's achieved
 *  utilisations (peak_times over its time). */
std::unique_ptr<ComputeTimeModel> power_limited(std::unique_ptr<ComputeTimeModel> base, const catalog::AcceleratorSpec& accel,
                                                double limit_w);
/** power_limited() when a limit is given (scenario cluster.power_limit_w), else `base` itself. */
std::unique_ptr<ComputeTimeModel> with_power_limit(std::unique_ptr<ComputeTimeModel> base, const catalog::AcceleratorSpec& accel,
                                                   std::optional<double> limit_w);

}  // namespace moesim::perf
