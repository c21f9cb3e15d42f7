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

/** The reference rates a set of efficiencies is relative to (what eta = 1 means on a device), SI,
 *  per device (a chip divided by devices_per_chip). 0 = unknown. */
struct DeviceRates {
  double bf16_flops_per_s = 0.0;    ///< dense bf16 GEMM
  double fp32_flops_per_s = 0.0;    ///< dense fp32 GEMM (tensor cores without TF32: the CUDA cores)
  double fp8_flops_per_s = 0.0;     ///< dense fp8 (E4M3) GEMM; 0 = the device has no fp8 matrix unit
  double vector_flops_per_s = 0.0;  ///< non-matrix arithmetic (datasheet vector peak)
  double bytes_per_s = 0.0;         ///< device memory, read + write, as a device-to-device copy counts it
  std::string source;               ///< where each figure comes from, in words

  /** The GEMM rate for `dtype` ("bf16", "fp32", "fp8"); 0 for a dtype without a reference rate. */
  double matmul_for(const std::string& dtype) const;
};

/** The measured device's reference rates: its profile's measured ceilings (dense bf16 / fp32 / fp8
 *  GEMM 8192^3, device copy). Where the profile has no fp32 ceiling the fp32 reference is the
 *  datasheet fp32 rate of `spec` (matrix unit if it has fp32, else the vector units); where it has
 *  no fp8 ceiling, spec's datasheet fp8 rate times the measured/datasheet bf16 ratio (0 without an
 *  fp8 matrix unit); the vector rate is spec's datasheet. `spec` may be absent (device not in the
 *  catalog): those figures are then 0. */
DeviceRates profile_rates(const MeasuredProfile& profile, const std::optional<catalog::AcceleratorSpec>& spec);

/** The rates of a target accelerator that correspond to the source profile's ceilings:
 *  - memory: the target's measured HBM bandwidth from the catalog if it has one, else its datasheet
 *    bandwidth x (source copy ceiling / source datasheet bandwidth), i.e. the target is assumed to
 *    reach the same share of its datasheet as the measured device did;
 *  - bf16 GEMM: the target's measured bf16 GEMM ceiling if the catalog has one, else datasheet bf16 x
 *    (source bf16 ceiling / source datasheet bf16); 0 when the target has no bf16 matrix unit;
 *  - fp32 GEMM: target datasheet fp32 (matrix unit if it has fp32, else vector) x (source fp32
 *    reference / source datasheet fp32);
 *  - fp8 GEMM: target datasheet fp8 x (source fp8 reference / source datasheet fp8); 0 when the
 *    target has no fp8 matrix unit;
 *  - vector: the target's datasheet.
 *  Without `source_spec` the ratios cannot be formed and datasheet figures are used unscaled (said
 *  in `source`). Every figure is divided by the target's devices_per_chip. */
DeviceRates transfer_target_rates(const catalog::AcceleratorSpec& target, const MeasuredProfile& source,
                                  const std::optional<catalog::AcceleratorSpec>& source_spec);

/** Efficiency of one kernel class, dtype and regime on one size bucket of a measured device. */
struct EfficiencyBucket {
  double log10_lo = 0.0;    ///< covers sizes [10^log10_lo, 10^(log10_lo + kBucketDecades))
  double eta = 0.0;         ///< median efficiency of the bucket's entries
  double log10_size = 0.0;  ///< median log10(size) of those entries (where eta is placed)
  int entries = 0;
};

/** Calibrated roofline parameters of one kernel class and dtype ("*": every dtype pooled, for the
 *  data-movement classes, whose work is their byte count). Compute-bound entries are bucketed by
 *  their FLOPs, memory-bound ones by their bytes: each efficiency against its own work. */
struct ClassCalibration {
  KernelClass cls = KernelClass::gemm;
  std::string dtype;
  double floor_s = 0.0;                           ///< per-call fixed time
  std::vector<EfficiencyBucket> compute_buckets;  ///< eta_c by FLOPs, ascending (empty: no compute-bound entry)
  std::vector<EfficiencyBucket> memory_buckets;   ///< eta_m by bytes, ascending (empty: no memory-bound entry)
  int entries = 0;
  /** eta_c (compute) at log10(FLOPs) or eta_m at log10(bytes): linear in log10(size) between the
   *  medians of neighbouring buckets, the edge bucket's value beyond them; `inside` is false when
   *  the size lies outside the buckets' range. 0 when the regime has no bucket. */
  double eta_at(bool compute, double log10_size, bool* inside = nullptr) const;
};

/** Per kernel class, dtype and size bucket: eta_c, eta_m and t_floor of
 *      t = max(F / (eta_c P), B / (eta_m BW)) + t_floor
 *  fitted to a measured profile, with P and BW the measured device's reference rates
 *  (profile_rates(): its own measured ceilings).
 *
 *  Method (over MeasuredProfile::kernel_entries()):
 *  1. Ideal time of each entry: max(F / P, B / BW). An entry is compute-bound where F / P >= B / BW.
 *  2. t_floor per class (all dtypes together: launch latency does not depend on the element type, and
 *     a dtype profiled only at large sizes cannot show it): over the quarter (at least 3) of the
 *     class's entries with the smallest ideal time, the intercept of the least-squares line
 *     time = a + b x ideal, clamped to [0, min(time - ideal)] so that none of them comes out faster
 *     than the ceilings; where their ideal times span less than a factor 4 (e.g. small expert FFNs,
 *     all streaming the same weights) the line has no usable intercept and the floor is that
 *     upper bound, min(time - ideal). Large kernels are left out: their residual is inefficiency.
 *  3. Per entry (per class and dtype): eta_c = F / (P (t - t_floor)) if compute-bound, else
 *     eta_m = B / (BW (t - t_floor)); entries not slower than t_floor say nothing about a rate and
 *     are left out.
 *  4. Size buckets of kBucketDecades decades: compute-bound entries by FLOPs, memory-bound ones by
 *     bytes; a bucket's eta is the median of its entries.
 *  5. For an op, eta is interpolated in log10(size) between bucket medians (ClassCalibration::eta_at),
 *     so that a steep efficiency curve is not quantized to bucket steps.
 *  6. With the measured device's catalog entry (`source_spec` with sm_count and gemm_block_tile), each
 *     compute-bound dense or batched GEMM entry's eta_c is divided by its wave efficiency on that device
 *     (perf::wave_efficiency): the buckets hold full-wave efficiencies, and TransferModel multiplies them
 *     by the op's wave efficiency on the target, whose SM count may differ (an A100's 108 against an
 *     H100's 132). Grouped GEMMs (the expert FFN, profiled as one call of both GEMMs) keep the measured
 *     device's waves. */
class Calibration {
 public:
  static constexpr double kBucketDecades = 0.5;  ///< bucket width: a factor sqrt(10) ~ 3.16 in size (chosen)

  static Calibration fit(const MeasuredProfile& profile, const DeviceRates& source_rates,
                         const std::optional<catalog::AcceleratorSpec>& source_spec = std::nullopt);
  /** Whether the dense and batched GEMM efficiencies are of full waves (step 6). */
  bool full_waves() const { return full_waves_; }
  /** The calibration of `cls` and `dtype`; for data-movement classes without that dtype, the pooled
   *  one ("*"); nullptr when the profile has no entry of the class. */
  const ClassCalibration* find(KernelClass cls, const std::string& dtype) const;
  const std::vector<ClassCalibration>& classes() const { return classes_; }
  const DeviceRates& source_rates() const { return source_rates_; }
  /** The source profile's citation (file, GPU, date, git; measured or SYNTHETIC). */
  const std::string& source() const { return source_; }
  bool synthetic() const { return synthetic_; }
  /** One line per class: floor and eta range over buckets, for the run record. */
  std::string summary() const;

 private:
  std::vector<ClassCalibration> classes_;
  DeviceRates source_rates_;
  std::string source_;
  bool synthetic_ = false;
  bool full_waves_ = false;
};

/** Roofline of a target device with efficiencies calibrated on a measured device (path
 *  `transferred`):  t = max(F / (eta_c P_target), B / (eta_m BW_target)) + t_floor, eta and t_floor
 *  from the Calibration for the op's class, dtype and size bucket, P_target and BW_target from
 *  transfer_target_rates() (or the device's own ceilings when the target is the measured device).
 *  Classes or dtypes the calibration lacks (the optimizer: never profiled; fp16), and ops whose
 *  binding regime has no calibrated entry in that class, go to `fallback` (the published-efficiency
 *  roofline, path `roofline`), recorded with the reason. The term that does not bind uses eta = 1
 *  where its regime has no calibrated entry (it is then a lower bound that did not bind).
 *  Known approximation: the profiler times the expert FFN as one call (GEMM, activation, GEMM) while
 *  the simulator times its two GEMMs as separate grouped ops, so each of them carries the class floor. */
class TransferModel final : public ComputeTimeModel {
 public:
  TransferModel(const catalog::AcceleratorSpec& target, std::shared_ptr<const Calibration> calibration, DeviceRates target_rates,
                std::unique_ptr<ComputeTimeModel> fallback);
  KernelTime time(const KernelOp& op) const override;
  std::string describe() const override;
  TimePath planned_path(KernelClass c) const override;
  PathCounts path_counts() const override;
  bool synthetic() const override { return calibration_->synthetic(); }

  const Calibration& calibration() const { return *calibration_; }
  const DeviceRates& target_rates() const { return rates_; }

 private:
  catalog::AcceleratorSpec target_;
  std::shared_ptr<const Calibration> calibration_;
  DeviceRates rates_;
  std::unique_ptr<ComputeTimeModel> fallback_;
  PathLog log_;
};

}  // namespace moesim::perf
