// SPDX-License-Identifier: Apache-2.0
#include "moesim/perf/compute_model.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::perf {

namespace {
const std::vector<std::pair<KernelClass, std::string>>& class_table() {
  static const std::vector<std::pair<KernelClass, std::string>> t = {
      {KernelClass::gemm, "gemm"},           {KernelClass::batched_gemm, "batched_gemm"},
      {KernelClass::grouped_gemm, "grouped_gemm"}, {KernelClass::router, "router"},
      {KernelClass::permute, "permute"},     {KernelClass::unpermute, "unpermute"},
      {KernelClass::elementwise, "elementwise"}, {KernelClass::optimizer, "optimizer"},
      {KernelClass::decode_attention, "decode_attention"}, {KernelClass::prefill_attention, "prefill_attention"},
  };
  return t;
}

/** The GEMM classes: dense, batched and grouped matrix products. */
bool is_gemm(KernelClass c) {
  return c == KernelClass::gemm || c == KernelClass::batched_gemm || c == KernelClass::grouped_gemm;
}
}  // namespace

bool uses_matmul_rate(KernelClass c) { return is_gemm(c) || c == KernelClass::prefill_attention; }

std::string to_string(KernelClass c) {
  for (const auto& [k, n] : class_table())
    if (k == c) return n;
  return "?";
}

const std::vector<std::string>& kernel_class_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [k, n] : class_table()) v.push_back(n);
    return v;
  }();
  return names;
}

KernelClass kernel_class_from_string(const std::string& s) {
  for (const auto& [k, n] : class_table())
    if (n == s) return k;
  throw Error(fmt::format("unknown kernel class '{}'; valid: {}", s, text::join(kernel_class_names())));
}

KernelOp gemm_op(const char* name, double m, double n, double k, double batch, const std::string& dtype, double input_bytes,
                 double out_bytes, KernelClass cls) {
  KernelOp op;
  op.cls = cls;
  op.name = name;
  op.dtype = dtype;
  op.m = m;
  op.n = n;
  op.k = k;
  op.batch = batch;
  op.flops = 2.0 * batch * m * n * k;
  op.bytes = batch * ((m * k + k * n) * input_bytes + m * n * std::max(input_bytes, out_bytes));
  return op;
}

std::string to_string(TimePath p) {
  switch (p) {
    case TimePath::measured: return "measured";
    case TimePath::transferred: return "transferred";
    case TimePath::roofline: return "roofline";
  }
  return "?";
}

EfficiencyTable EfficiencyTable::load(const std::string& profiles_dir) {
  EfficiencyTable t;
  t.file_ = profiles_dir + "/efficiency.yaml";
  YAML::Node root;
  try {
    root = YAML::LoadFile(t.file_);
  } catch (const YAML::BadFile&) {
    throw Error(fmt::format("cannot read {}", t.file_));
  } catch (const YAML::Exception& e) {
    throw InputError(t.file_, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg);
  }
  auto where = [&](const YAML::Node& n, const std::string& key, const std::string& msg) {
    return InputError(t.file_, n.Mark().line + 1, n.Mark().column + 1, key, msg);
  };
  if (!root.IsMap() || !root["efficiency"] || !root["efficiency"].IsMap())
    throw InputError(t.file_, 1, 1, "efficiency", "expected a top-level mapping `efficiency:` of accelerator or kind -> classes");
  for (const auto& acc : root["efficiency"]) {
    const std::string key = acc.first.as<std::string>();
    if (!acc.second.IsMap()) throw where(acc.second, key, "expected a mapping of kernel classes");
    for (const auto& cls : acc.second) {
      const std::string cname = cls.first.as<std::string>();
      const std::string path = key + "." + cname;
      KernelClass kc;
      try {
        kc = kernel_class_from_string(cname);
      } catch (const Error& e) {
        throw where(cls.first, path, e.what());
      }
      const YAML::Node& v = cls.second;
      if (!v.IsMap()) throw where(v, path, "expected {eta_compute, eta_memory, floor_s, matrix_unit, source}");
      ClassEfficiency e;
      for (const auto& f : v) {
        const std::string fk = f.first.as<std::string>();
        auto num = [&](double lo, double hi) {
          double x = 0.0;
          if (!YAML::convert<double>::decode(f.second, x) || !(x >= lo && x <= hi))
            throw where(f.second, path + "." + fk, fmt::format("expected a number in [{}, {}]", lo, hi));
          return x;
        };
        if (fk == "eta_compute") e.eta_compute = num(1e-6, 1.0);
        else if (fk == "eta_compute_fp8") e.eta_compute_fp8 = num(1e-6, 1.0);
        else if (fk == "eta_memory") e.eta_memory = num(1e-6, 1.0);
        else if (fk == "floor_s") e.floor_s = num(0.0, 1.0);
        else if (fk == "matrix_unit") e.uses_matrix_unit = f.second.as<bool>();
        else if (fk == "source") e.source = f.second.as<std::string>();
        else throw where(f.first, path + "." + fk, "unknown key; allowed: eta_compute, eta_compute_fp8, eta_memory, floor_s, matrix_unit, source");
      }
      if (e.source.empty()) throw where(v, path + ".source", "every efficiency needs a source");
      t.table_[key][kc] = e;
    }
  }
  return t;
}

const ClassEfficiency& EfficiencyTable::get(const catalog::AcceleratorSpec& accel, KernelClass cls) const {
  for (const std::string& key : {accel.name, std::string(accel.kind == catalog::AcceleratorKind::tpu ? "tpu" : "gpu")}) {
    auto it = table_.find(key);
    if (it == table_.end()) continue;
    auto jt = it->second.find(cls);
    if (jt != it->second.end()) return jt->second;
  }
  throw Error(fmt::format("{}: no efficiency for kernel class '{}' on '{}' (nor its kind)", file_.empty() ? "efficiency table" : file_,
                          to_string(cls), accel.name));
}

void PathLog::record(KernelClass c, TimePath p, const std::string& reason) const {
  const std::lock_guard<std::mutex> lock(mu_);
  ++counts_[c][{p, reason}];
}

PathCounts PathLog::counts() const {
  const std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

double tile_padded_flops(const KernelOp& op, int matmul_tile) {
  if (matmul_tile <= 1) return op.flops;
  const double tile = matmul_tile;
  auto pad = [tile](double dim) { return dim <= 0.0 ? 0.0 : std::ceil(dim / tile) * tile; };
  if (op.cls == KernelClass::grouped_gemm && !op.group_m.empty()) {
    double f = 0.0;
    for (double gm : op.group_m) f += 2.0 * pad(gm) * pad(op.n) * pad(op.k);
    return f;
  }
  if (op.m > 0 && op.n > 0 && op.k > 0) return 2.0 * op.batch * pad(op.m) * pad(op.n) * pad(op.k);
  return op.flops;
}

double wave_efficiency(const KernelOp& op, const catalog::AcceleratorSpec& accel) {
  if (!is_gemm(op.cls) || accel.sm_count <= 0 || accel.gemm_block_tile.size() != 2 || !(op.n > 0.0)) return 1.0;
  const bool grouped = op.cls == KernelClass::grouped_gemm && !op.group_m.empty();
  if (!grouped && !(op.m > 0.0)) return 1.0;
  const double sms = accel.sm_count;
  // Fraction of the slots busy when `tiles` tiles run sm_count at a time. One wave or less: the library
  // spreads the work over the SMs (smaller tiles, split K), which is not modelled, so 1.
  auto fill = [sms](double tiles) { return tiles > sms ? tiles / (std::ceil(tiles / sms) * sms) : 1.0; };
  auto tiles_for = [&](double tile_rows, double tile_cols) {
    double tiles = 0.0;
    if (grouped) {
      for (double gm : op.group_m)
        if (gm > 0.0) tiles += std::ceil(gm / tile_rows) * std::ceil(op.n / tile_cols);
    } else {
      tiles = std::max(1.0, op.batch) * std::ceil(op.m / tile_rows) * std::ceil(op.n / tile_cols);
    }
    return tiles;
  };
  // Split K: an output of fewer than two waves whose K is longer than the output is wide may be cut along K
  // into GEMMs of the same output, each at least as deep as the output is wide (weight gradients: K = tokens).
  const double rows = grouped ? *std::max_element(op.group_m.begin(), op.group_m.end()) : op.m;
  const int max_splits = static_cast<int>(std::clamp(std::floor(op.k / std::max({rows, op.n, 1.0})), 1.0, 64.0));
  const double a = accel.gemm_block_tile[0], b = accel.gemm_block_tile[1];
  double best = 0.0;
  for (const double tiles : {tiles_for(a, b), tiles_for(b, a)})
    for (int s = 1; s <= (tiles < 2.0 * sms ? max_splits : 1); ++s) best = std::max(best, fill(tiles * s));
  return best;
}

PeakTimes peak_times(const KernelOp& op, double padded_flops, const catalog::AcceleratorSpec& accel) {
  PeakTimes p;
  const double share = 1.0 / std::max(1, accel.devices_per_chip);
  const bool gemm = is_gemm(op.cls);
  const auto peak = accel.peak_matmul_flops_per_s.find(op.dtype);
  // A dtype the matrix unit lacks runs on the vector units, which the power curve does not count.
  if (gemm && peak != accel.peak_matmul_flops_per_s.end() && peak->second > 0.0)
    p.matrix_s = padded_flops / (share * peak->second);
  if (accel.hbm_bandwidth_bytes_per_s > 0.0) p.hbm_s = op.bytes / (share * accel.hbm_bandwidth_bytes_per_s);
  return p;
}

PeakTimes power_peak_times(const KernelOp& op, const KernelTime& t, const catalog::AcceleratorSpec& accel) {
  PeakTimes p = peak_times(op, t.padded_flops, accel);
  p.matrix_s *= t.energy_scale;
  p.hbm_s *= t.energy_scale;
  return p;
}

std::map<std::string, std::string> compute_paths(const ComputeTimeModel& model) {
  const PathCounts counts = model.path_counts();
  std::map<std::string, std::string> out;
  for (const auto& [cls, name] : class_table()) {
    std::string value;
    auto it = counts.find(cls);
    if (it != counts.end()) {
      for (TimePath p : {TimePath::measured, TimePath::transferred, TimePath::roofline}) {
        bool used = false;
        for (const auto& [key, n] : it->second) used = used || (key.first == p && n > 0);
        if (used) value += (value.empty() ? "" : "+") + to_string(p);
      }
    }
    if (value.empty()) value = to_string(model.planned_path(cls));
    if (model.synthetic()) value += " (synthetic profile, not measured)";
    out[name] = value;
  }
  return out;
}

RooflineModel::RooflineModel(const catalog::AcceleratorSpec& accel, const EfficiencyTable& table)
    : accel_(accel), table_(table) {}

KernelTime RooflineModel::time(const KernelOp& op) const {
  const ClassEfficiency& e = table_.get(accel_, op.cls);
  KernelTime t;
  t.path = TimePath::roofline;
  // Attention kernels run their products on the matrix unit where efficiency.yaml says so (TPUs,
  // GPU prefill); GPU decode attention runs on the vector units (matrix_unit: false there).
  const bool matrix = e.uses_matrix_unit &&
                      (is_gemm(op.cls) || op.cls == KernelClass::decode_attention || op.cls == KernelClass::prefill_attention);
  // The matrix unit works on whole tiles: each GEMM dimension is rounded up to the tile.
  t.padded_flops = matrix ? tile_padded_flops(op, accel_.matmul_tile) : op.flops;
  // Figures are per chip; a device is 1/devices_per_chip of it (a TPU v3 core has half the MXUs and HBM).
  const double share = 1.0 / std::max(1, accel_.devices_per_chip);
  // A dtype the matrix unit lacks (fp32 on GPU tensor cores without TF32) runs on the vector units.
  const bool on_matrix = matrix && accel_.peak_matmul_flops_per_s.count(op.dtype) != 0;
  if (matrix && !on_matrix && op.dtype != "fp32") accel_.peak_flops_for(op.dtype);  // throws: names supported dtypes
  const double peak = share * (on_matrix ? accel_.peak_matmul_flops_per_s.at(op.dtype) : accel_.peak_vector_flops_per_s);
  if (!(peak > 0.0)) throw Error(fmt::format("accelerator '{}' has no peak FLOP/s for this work", accel_.name));
  const double eta_c = on_matrix && op.dtype == "fp8" && e.eta_compute_fp8 ? *e.eta_compute_fp8 : e.eta_compute;
  // On a GPU the output tiles run in waves over the SMs; eta_compute is the efficiency of full waves.
  const double waves = on_matrix ? wave_efficiency(op, accel_) : 1.0;
  t.compute_s = t.padded_flops / (eta_c * waves * peak);
  t.memory_s = op.bytes / (e.eta_memory * share * accel_.hbm_bandwidth_bytes_per_s);
  t.floor_s = e.floor_s;
  t.time_s = std::max(t.compute_s, t.memory_s) + t.floor_s;
  return t;
}

std::string RooflineModel::describe() const {
  const std::string waves = accel_.sm_count > 0 && accel_.gemm_block_tile.size() == 2
                                ? fmt::format("; GEMM tiles of {}x{} in waves over {} SMs", accel_.gemm_block_tile[0],
                                              accel_.gemm_block_tile[1], accel_.sm_count)
                                : "";
  return fmt::format("roofline on {} (efficiencies: {}{})", accel_.name, table_.file(), waves);
}

}  // namespace moesim::perf
