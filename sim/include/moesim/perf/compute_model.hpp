// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <memory>
#include <string>
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
};
std::string to_string(KernelClass c);
KernelClass kernel_class_from_string(const std::string& s);  ///< throws moesim::Error listing valid names
const std::vector<std::string>& kernel_class_names();

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

/** Which path produced a time: a measured table, a roofline with efficiencies transferred from a
 *  measured device, or a roofline with published efficiencies. */
enum class TimePath { measured, transferred, roofline };
std::string to_string(TimePath p);

struct KernelTime {
  double time_s = 0.0;
  double compute_s = 0.0;   ///< roofline compute term
  double memory_s = 0.0;    ///< roofline memory term
  double floor_s = 0.0;     ///< fixed per-kernel overhead
  double padded_flops = 0.0;  ///< FLOPs after padding to the matrix unit's tile (hardware FLOPs)
  TimePath path = TimePath::roofline;
};

/** Efficiency of one kernel class on one accelerator family, with its source. */
struct ClassEfficiency {
  double eta_compute = 1.0;  ///< achieved / peak matrix (or vector) FLOP/s
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

/** Kernel time on one device (a chip, or a core of a multi-core chip). One seam: roofline today; measured tables and transfer plug in here. */
class ComputeTimeModel {
 public:
  virtual ~ComputeTimeModel() = default;
  virtual KernelTime time(const KernelOp& op) const = 0;
  /** Short description for the run's provenance (path, sources). */
  virtual std::string describe() const = 0;
};

/** t = max(F_padded / (eta_c x peak), B / (eta_m x BW)) + floor, per kernel class. */
class RooflineModel final : public ComputeTimeModel {
 public:
  RooflineModel(const catalog::AcceleratorSpec& accel, const EfficiencyTable& table);
  KernelTime time(const KernelOp& op) const override;
  std::string describe() const override;

 private:
  double pad(double dim) const;
  catalog::AcceleratorSpec accel_;
  EfficiencyTable table_;
};

}  // namespace moesim::perf
