// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moesim/catalog/accelerator.hpp"

namespace moesim::perf {

/** Kernel classes: the unit of calibration (one efficiency per class, as in Calculon/ASTRA-sim roofline). */
enum class KernelClass {
  gemm,          ///< dense projections, FFN, vocabulary projection, einsum dispatch/combine on TPUs
  batched_gemm,  ///< attention scores and values
  grouped_gemm,  ///< expert FFN over experts with unequal token counts
  router,        ///< gate softmax + top-k + capacity bookkeeping (vector work)
  permute,       ///< gather tokens into per-expert segments
  unpermute,     ///< weighted scatter back
  elementwise,   ///< layer norm, residual, activation, softmax of attention
  optimizer,     ///< parameter update (streams parameters + state)
  decode_attention,   ///< fused attention of one query token per sequence over its (paged) KV cache: reads the KV once
  prefill_attention,  ///< fused causal attention over the prompt tokens (FlashAttention-style, tensor cores)
};
std::string to_string(KernelClass c);
KernelClass kernel_class_from_string(const std::string& s);  ///< throws moesim::Error listing valid names
const std::vector<std::string>& kernel_class_names();

/** True for the classes whose work is timed against a matrix-unit (GEMM) rate: gemm, batched_gemm,
 *  grouped_gemm and prefill_attention. The others are bound by bytes (decode attention streams
 *  the KV cache; its arithmetic runs on the vector units). */
bool uses_matmul_rate(KernelClass c);

/** One kernel invocation on one device: what it computes and moves. FLOPs count multiply-adds as 2. */
struct KernelOp {
  KernelClass cls = KernelClass::gemm;
  std::string name;      ///< e.g. "attn.qkv_proj"
  std::string dtype;     ///< "fp32", "bf16", "fp16"
  double flops = 0.0;    ///< arithmetic work (before tile padding)
  double bytes = 0.0;    ///< minimum device-memory traffic: inputs read once, outputs written once
  // GEMM shape, for tile padding and measured-table lookup: batch x [m x k] . [k x n].
  double m = 0.0, n = 0.0, k = 0.0, batch = 1.0;
  /** Grouped GEMM: rows per group (tokens per expert); m is then unused. */
  std::vector<double> group_m;
};

/** A GEMM batch x [m, k] . [k, n] in `dtype` (inputs of `input_bytes` each element: activations and weights alike),
 *  its output written in max(input_bytes, out_bytes): 16-bit outputs for 16-bit and fp8 GEMMs (an fp8 GEMM writes
 *  bf16), fp32 for an fp32 one such as the router's. The one byte and FLOP count of a GEMM for training and serving. */
KernelOp gemm_op(const char* name, double m, double n, double k, double batch, const std::string& dtype, double input_bytes,
                 double out_bytes, KernelClass cls = KernelClass::gemm);

/** Which path produced a time: a measured table, a roofline with efficiencies transferred from a
 *  measured device, or a roofline with published efficiencies. */
enum class TimePath { measured, transferred, roofline };
std::string to_string(TimePath p);

/** The time of one kernel and how it was obtained. On the roofline and transferred paths the terms
 *  are the model's; on the measured path compute_s / memory_s are the ideal times at the device's
 *  measured ceilings (for comparison) and floor_s is 0: time_s is the interpolated measurement. */
struct KernelTime {
  double time_s = 0.0;
  double compute_s = 0.0;   ///< roofline compute term
  double memory_s = 0.0;    ///< roofline memory term
  double floor_s = 0.0;     ///< fixed per-kernel overhead
  double padded_flops = 0.0;  ///< FLOPs after padding to the matrix unit's tile (hardware FLOPs)
  TimePath path = TimePath::roofline;
  /** True when the number derives from a profile that is not a measurement (a synthetic test fixture). */
  bool synthetic = false;
  /** Under a board power limit (perf/power_limit.hpp): the core clock / its nominal value, and the energy of each
   *  unit of work relative to the nominal clock (clock_ratio^2: voltage lowered with the clock). 1 without a limit. */
  double clock_ratio = 1.0;
  double energy_scale = 1.0;
};

/** Calls of ComputeTimeModel::time() by kernel class, path and reason (e.g. "outside the measured
 *  range"): the provenance of every kernel time of a run. */
using PathCounts = std::map<KernelClass, std::map<std::pair<TimePath, std::string>, long>>;

/** Thread-safe tally of the paths a model's times took (a model is const while it is used). */
class PathLog {
 public:
  void record(KernelClass c, TimePath p, const std::string& reason) const;
  PathCounts counts() const;

 private:
  mutable std::mutex mu_;
  mutable PathCounts counts_;
};

/** FLOPs of a GEMM-class op after rounding every matrix dimension up to `matmul_tile` (the work the
 *  matrix unit really does); op.flops when the tile is 1 or the op has no shape. */
double tile_padded_flops(const KernelOp& op, int matmul_tile);

/** The fraction of a GPU's SMs a GEMM-class op keeps busy over its waves (NVIDIA, Matrix Multiplication Background
 *  User's Guide, DU-09799-001, "Wave Quantization"): its output tiles (accel.gemm_block_tile; a grouped GEMM's
 *  summed over its groups, a batched GEMM's over its batch) run sm_count at a time, so t tiles take
 *  ceil(t / sm_count) waves and fill t / (ceil(t / sm_count) * sm_count) of them. Libraries choose among tile
 *  shapes and split-K factors to fill the last wave (Osama et al., "Stream-K", PPoPP 2023, on cuBLAS's
 *  heuristics); the model takes the better of the tile's two orientations and, for outputs of fewer than two
 *  waves, splits K into up to K / (longest output side) parts if that fills the waves better (the weight
 *  gradients of small layers). A GEMM of one wave or less spreads over all SMs (smaller tiles): 1. Also 1 for
 *  other classes, ops without a shape, and accelerators without sm_count. Split-K's partial sums are not added
 *  to the memory traffic. */
double wave_efficiency(const KernelOp& op, const catalog::AcceleratorSpec& accel);

/** What one kernel asks of a device's matrix units and HBM, timed at their datasheet peaks: its
 *  matrix-unit FLOPs (tile-padded) at the matrix unit's peak for its dtype, 0 for work on the vector
 *  units; its bytes at the datasheet HBM bandwidth. Both per device (1/devices_per_chip of the chip).
 *  Divided by the time the kernel really takes they are its achieved utilisations, which set the chip's
 *  power (catalog::AcceleratorSpec::compute_power_w). */
struct PeakTimes {
  double matrix_s = 0.0;
  double hbm_s = 0.0;
};
/** PeakTimes of `op` on `accel`, given the FLOPs the matrix unit executes (KernelTime::padded_flops). */
PeakTimes peak_times(const KernelOp& op, double padded_flops, const catalog::AcceleratorSpec& accel);
/** The peak times that set the chip's power while `t` runs: peak_times() x t.energy_scale (under a power limit each
 *  unit of work costs less energy at the lower voltage; perf/power_limit.hpp). Equal to peak_times() without one. */
PeakTimes power_peak_times(const KernelOp& op, const KernelTime& t, const catalog::AcceleratorSpec& accel);

/** Efficiency of one kernel class on one accelerator family, with its source. */
struct ClassEfficiency {
  double eta_compute = 1.0;  ///< achieved / peak matrix (or vector) FLOP/s
  /** Achieved / peak matrix FLOP/s for fp8 operands (fp8 GEMMs reach a smaller share of their doubled peak);
   *  absent = eta_compute. */
  std::optional<double> eta_compute_fp8;
  double eta_memory = 1.0;   ///< achieved / datasheet memory bandwidth
  double floor_s = 0.0;      ///< per-kernel fixed overhead (launch, latency)
  bool uses_matrix_unit = true;  ///< false: vector units (peak_vector_flops_per_s)
  std::string source;
};

/** Efficiencies by accelerator (or kind: "tpu", "gpu") and class, from profiles/efficiency.yaml. */
class EfficiencyTable {
 public:
  /** Loads `profiles_dir`/efficiency.yaml; throws moesim::InputError on malformed data. */
  static EfficiencyTable load(const std::string& profiles_dir);
  /** The entry for `accel` (by name first, then by kind); throws moesim::Error if none. */
  const ClassEfficiency& get(const catalog::AcceleratorSpec& accel, KernelClass cls) const;
  void set(const std::string& key, KernelClass cls, ClassEfficiency e) { table_[key][cls] = std::move(e); }
  const std::string& file() const { return file_; }

 private:
  std::map<std::string, std::map<KernelClass, ClassEfficiency>> table_;
  std::string file_;
};

/** Kernel time on one device (a chip, or a core of a multi-core chip). One seam, three
 *  implementations: RooflineModel (published efficiencies), TransferModel (efficiencies calibrated on
 *  another, measured device) and MeasuredTableModel (this device's measured tables); see
 *  make_compute_model() in moesim/perf/model_factory.hpp. */
class ComputeTimeModel {
 public:
  virtual ~ComputeTimeModel() = default;
  virtual KernelTime time(const KernelOp& op) const = 0;
  /** Short description for the run's provenance (path, sources). */
  virtual std::string describe() const = 0;
  /** The path a kernel class takes before any op of it was timed (its primary path). */
  virtual TimePath planned_path(KernelClass c) const { return TimePath::roofline; }
  /** Paths the times returned so far took, by class (empty for models that do not record them). */
  virtual PathCounts path_counts() const { return {}; }
  /** True when any number may come from a profile that is not a measurement (synthetic fixture). */
  virtual bool synthetic() const { return false; }
};

/** Kernel class name -> the paths its times took, for the run record ("measured",
 *  "measured+transferred", "roofline", ...; paths in that order). A class no op of which was timed
 *  shows its planned path. Labelled " (synthetic profile, not measured)" when the model's tables are
 *  not a measurement. */
std::map<std::string, std::string> compute_paths(const ComputeTimeModel& model);

/** t = max(F_padded / (eta_c x peak), B / (eta_m x BW)) + floor, per kernel class, with the
 *  published efficiencies of profiles/efficiency.yaml and the accelerator's datasheet peak and HBM
 *  bandwidth, each divided by devices_per_chip (a TPU v3 core has half the chip). */
class RooflineModel final : public ComputeTimeModel {
 public:
  RooflineModel(const catalog::AcceleratorSpec& accel, const EfficiencyTable& table);
  KernelTime time(const KernelOp& op) const override;
  std::string describe() const override;
  const catalog::AcceleratorSpec& accelerator() const { return accel_; }
  const EfficiencyTable& efficiencies() const { return table_; }

 private:
  catalog::AcceleratorSpec accel_;
  EfficiencyTable table_;
};

}  // namespace moesim::perf
