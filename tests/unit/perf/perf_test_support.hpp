// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the perf tests: the real catalog's accelerators and efficiency table, the
// synthetic fixtures of tests/data/perf/ (made by make_perf_fixtures.py, never measurements), and
// the simulator-side op of a profile entry.

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "moesim/catalog/catalog.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/perf/measured_profile.hpp"

namespace moesim::perf::test {

inline std::string real_profiles() { return std::string(MOESIM_SOURCE_ROOT) + "/profiles"; }
/** tests/data/perf/<rel> */
inline std::string data(const std::string& rel) { return std::string(MOESIM_TEST_DATA) + "/perf/" + rel; }

inline catalog::AcceleratorSpec accelerator(const std::string& name) {
  return catalog::load_accelerator_file(real_profiles() + "/accelerators/" + name + ".yaml");
}

inline const EfficiencyTable& efficiency() {
  static const EfficiencyTable t = EfficiencyTable::load(real_profiles());
  return t;
}

inline const MeasuredProfile& device_a() {
  static const MeasuredProfile p = MeasuredProfile::load(data("transfer/device_a.json"));
  return p;
}
inline const MeasuredProfile& device_b() {
  static const MeasuredProfile p = MeasuredProfile::load(data("transfer/device_b.json"));
  return p;
}

/** The catalog's H100 / H200 with the measured ceilings replaced by the synthetic devices' formula
 *  constants (device A = H100-like, device B = same compute, 1.43x bandwidth), so that a transfer
 *  between the fixtures is limited only by the method. */
inline catalog::AcceleratorSpec spec_of(const MeasuredProfile& p, const std::string& catalog_name) {
  catalog::AcceleratorSpec s = accelerator(catalog_name);
  s.measured_matmul_flops_per_s = p.ceilings().matmul_bf16_flops_per_s;
  s.measured_hbm_bandwidth_bytes_per_s = p.ceilings().copy_bytes_per_s;
  return s;
}

inline std::string read_text(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + file);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/** 1-based number of the first line of `file` containing `needle` (throws if none). */
inline int line_of(const std::string& file, const std::string& needle) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot open " + file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n)
    if (line.find(needle) != std::string::npos) return n;
  throw std::runtime_error("'" + needle + "' not found in " + file);
}

/** The simulator-side op of a GEMM / batched GEMM / data-movement profile entry. */
inline KernelOp op_of(const ProfileEntry& e) { return entry_op(e); }

/** The two GEMMs of an expert-FFN entry as the workload builds them (up: n = gates x d_ff, k =
 *  d_model; down: n = d_model, k = d_ff), each over `experts` groups of tokens_per_expert rows. */
inline std::pair<KernelOp, KernelOp> expert_ops(const ProfileEntry& e) {
  const double g = activation_gates(e.activation);
  auto make = [&](double n, double k) {
    KernelOp op;
    op.cls = KernelClass::grouped_gemm;
    op.name = "moe.expert";
    op.dtype = e.dtype;
    op.n = n;
    op.k = k;
    op.group_m.assign(static_cast<std::size_t>(e.experts), e.tokens_per_expert);
    const double rows = e.experts * e.tokens_per_expert;
    op.m = rows;
    op.flops = 2.0 * rows * n * k;
    op.bytes = (rows * k + e.experts * k * n + rows * n) * (e.dtype == "bf16" ? 2.0 : 4.0);
    return op;
  };
  return {make(g * e.d_ff, e.d_model), make(e.d_model, e.d_ff)};
}

}  // namespace moesim::perf::test
