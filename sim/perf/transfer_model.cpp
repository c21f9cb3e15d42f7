// SPDX-License-Identifier: Apache-2.0
// Roofline with per-class, per-size-bucket efficiencies calibrated on a measured device.
#include "moesim/perf/transfer_model.hpp"
#include "moesim/core/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/perf/measured_model.hpp"

namespace moesim::perf {

namespace {

/** Datasheet fp32 rate of a chip: its matrix unit if that has fp32 (TPUs), else its vector units. */
double datasheet_fp32(const catalog::AcceleratorSpec& a) {
  auto it = a.peak_matmul_flops_per_s.find("fp32");
  return it != a.peak_matmul_flops_per_s.end() ? it->second : a.peak_vector_flops_per_s;
}

double datasheet_bf16(const catalog::AcceleratorSpec& a) {
  auto it = a.peak_matmul_flops_per_s.find("bf16");
  return it != a.peak_matmul_flops_per_s.end() ? it->second : 0.0;
}

double datasheet_fp8(const catalog::AcceleratorSpec& a) {
  auto it = a.peak_matmul_flops_per_s.find("fp8");
  return it != a.peak_matmul_flops_per_s.end() ? it->second : 0.0;
}

int bucket_index(double size) {
  return static_cast<int>(std::floor(std::log10(size) / Calibration::kBucketDecades));
}

std::string si(double x, const char* unit) {
  const char* prefixes[] = {"", "k", "M", "G", "T", "P", "E"};
  int i = 0;
  while (std::fabs(x) >= 1000.0 && i < 6) {
    x /= 1000.0;
    ++i;
  }
  return fmt::format("{:.3g} {}{}", x, prefixes[i], unit);
}

/** The line fit of the floor needs ideal times spanning at least this factor (chosen: a factor 4 is
 *  two doublings of the size, enough for the intercept not to be set by noise). */
constexpr double kFloorFitSpan = 4.0;

/** Floor of one class from (ideal time, measured time) points, see Calibration: intercept of the
 *  least-squares line time = a + b x ideal over the smallest quarter (at least 3) of the points,
 *  clamped to [0, min(time - ideal)] over them; the clamp alone where their ideal times span less
 *  than kFloorFitSpan. */
double fit_floor(std::vector<std::pair<double, double>> pts) {
  std::sort(pts.begin(), pts.end());
  const std::size_t n = std::min(pts.size(), std::max<std::size_t>(3, pts.size() / 4));
  double min_residual = std::numeric_limits<double>::infinity();
  double sx = 0.0, sy = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    min_residual = std::min(min_residual, pts[i].second - pts[i].first);
    sx += pts[i].first;
    sy += pts[i].second;
  }
  const double mx = sx / static_cast<double>(n), my = sy / static_cast<double>(n);
  double sxx = 0.0, sxy = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    sxx += (pts[i].first - mx) * (pts[i].first - mx);
    sxy += (pts[i].first - mx) * (pts[i].second - my);
  }
  const double upper = std::max(0.0, min_residual);
  // A line through points of (almost) the same ideal time has no meaningful intercept.
  if (!(sxx > 0.0) || !(pts[n - 1].first >= kFloorFitSpan * pts[0].first)) return upper;
  const double intercept = my - (sxy / sxx) * mx;
  return std::clamp(intercept, 0.0, upper);
}

}  // namespace

double DeviceRates::matmul_for(const std::string& dtype) const {
  if (dtype == "bf16") return bf16_flops_per_s;
  if (dtype == "fp32") return fp32_flops_per_s;
  if (dtype == "fp8") return fp8_flops_per_s;
  return 0.0;
}

DeviceRates profile_rates(const MeasuredProfile& profile, const std::optional<catalog::AcceleratorSpec>& spec) {
  DeviceRates r;
  const ProfileCeilings& c = profile.ceilings();
  const double share = spec ? 1.0 / std::max(1, spec->devices_per_chip) : 1.0;
  r.bf16_flops_per_s = c.matmul_bf16_flops_per_s;
  r.bytes_per_s = c.copy_bytes_per_s;
  std::string fp32_src = "profile ceiling";
  if (c.matmul_fp32_flops_per_s) {
    r.fp32_flops_per_s = *c.matmul_fp32_flops_per_s;
  } else if (spec) {
    r.fp32_flops_per_s = datasheet_fp32(*spec) * share;
    fp32_src = "datasheet of " + spec->name + " (the profile has no fp32 ceiling)";
  } else {
    fp32_src = "unknown (no fp32 ceiling, device not in the catalog)";
  }
  r.vector_flops_per_s = spec ? spec->peak_vector_flops_per_s * share : 0.0;
  std::string fp8_src = "profile ceiling";
  if (c.matmul_fp8_flops_per_s) {
    r.fp8_flops_per_s = *c.matmul_fp8_flops_per_s;
  } else if (spec && datasheet_fp8(*spec) > 0.0 && datasheet_bf16(*spec) > 0.0) {
    r.fp8_flops_per_s = datasheet_fp8(*spec) * share * (c.matmul_bf16_flops_per_s / (datasheet_bf16(*spec) * share));
    fp8_src = "datasheet of " + spec->name + " x the measured/datasheet bf16 ratio (the profile has no fp8 ceiling)";
  } else {
    fp8_src = "none (no fp8 ceiling, no fp8 matrix unit in the catalog)";
  }
  r.source = fmt::format("{} measured ceilings: bf16 GEMM {}, copy {}; fp32 GEMM {} ({}); fp8 GEMM {} ({}); vector {}",
                         profile.device(), si(r.bf16_flops_per_s, "FLOP/s"), si(r.bytes_per_s, "B/s"),
                         si(r.fp32_flops_per_s, "FLOP/s"), fp32_src, si(r.fp8_flops_per_s, "FLOP/s"), fp8_src,
                         spec ? si(r.vector_flops_per_s, "FLOP/s") + " (datasheet)" : std::string("unknown"));
  return r;
}

DeviceRates transfer_target_rates(const catalog::AcceleratorSpec& target, const MeasuredProfile& source,
                                  const std::optional<catalog::AcceleratorSpec>& source_spec) {
  DeviceRates r;
  const ProfileCeilings& c = source.ceilings();
  const double share = 1.0 / std::max(1, target.devices_per_chip);
  std::vector<std::string> src;
  // Memory.
  if (target.measured_hbm_bandwidth_bytes_per_s) {
    r.bytes_per_s = *target.measured_hbm_bandwidth_bytes_per_s;
    src.push_back("bandwidth: " + target.name + " measured (catalog)");
  } else if (source_spec && source_spec->hbm_bandwidth_bytes_per_s > 0.0) {
    r.bytes_per_s = target.hbm_bandwidth_bytes_per_s * (c.copy_bytes_per_s / source_spec->hbm_bandwidth_bytes_per_s);
    src.push_back(fmt::format("bandwidth: {} datasheet x {:.3f} (source copy ceiling / source datasheet)", target.name,
                              c.copy_bytes_per_s / source_spec->hbm_bandwidth_bytes_per_s));
  } else {
    r.bytes_per_s = target.hbm_bandwidth_bytes_per_s;
    src.push_back("bandwidth: " + target.name + " datasheet, unscaled (source accelerator unknown)");
  }
  // bf16 GEMM.
  const double t_bf16 = datasheet_bf16(target);
  if (t_bf16 <= 0.0) {
    src.push_back("bf16: none (" + target.name + " has no bf16 matrix unit)");
  } else if (target.measured_matmul_flops_per_s) {
    r.bf16_flops_per_s = *target.measured_matmul_flops_per_s;
    src.push_back("bf16 GEMM: " + target.name + " measured (catalog)");
  } else if (source_spec && datasheet_bf16(*source_spec) > 0.0) {
    const double ratio = c.matmul_bf16_flops_per_s / datasheet_bf16(*source_spec);
    r.bf16_flops_per_s = t_bf16 * ratio;
    src.push_back(fmt::format("bf16 GEMM: {} datasheet x {:.3f} (source ceiling / source datasheet)", target.name, ratio));
  } else {
    r.bf16_flops_per_s = t_bf16;
    src.push_back("bf16 GEMM: " + target.name + " datasheet, unscaled (source accelerator unknown)");
  }
  // fp32 GEMM: the source's fp32 reference is its ceiling, or its datasheet where it has none.
  const double t_fp32 = datasheet_fp32(target);
  if (c.matmul_fp32_flops_per_s && source_spec && datasheet_fp32(*source_spec) > 0.0) {
    const double ratio = *c.matmul_fp32_flops_per_s / datasheet_fp32(*source_spec);
    r.fp32_flops_per_s = t_fp32 * ratio;
    src.push_back(fmt::format("fp32 GEMM: {} datasheet x {:.3f} (source ceiling / source datasheet)", target.name, ratio));
  } else {
    r.fp32_flops_per_s = t_fp32;
    src.push_back("fp32 GEMM: " + target.name + " datasheet" +
                  (c.matmul_fp32_flops_per_s ? std::string(", unscaled (source accelerator unknown)") : std::string()));
  }
  // fp8 GEMM: the source's fp8 reference (its ceiling, or its datasheet x the bf16 ratio).
  const double t_fp8 = datasheet_fp8(target);
  if (t_fp8 <= 0.0) {
    src.push_back("fp8: none (" + target.name + " has no fp8 matrix unit)");
  } else if (source_spec && datasheet_fp8(*source_spec) > 0.0) {
    const double source_fp8 = c.matmul_fp8_flops_per_s
                                  ? *c.matmul_fp8_flops_per_s
                                  : datasheet_fp8(*source_spec) * (datasheet_bf16(*source_spec) > 0.0
                                                                       ? c.matmul_bf16_flops_per_s / datasheet_bf16(*source_spec)
                                                                       : 1.0);
    const double ratio = source_fp8 / datasheet_fp8(*source_spec);
    r.fp8_flops_per_s = t_fp8 * ratio;
    src.push_back(fmt::format("fp8 GEMM: {} datasheet x {:.3f} (source {} / source datasheet)", target.name, ratio,
                              c.matmul_fp8_flops_per_s ? "fp8 ceiling" : "bf16 ceiling ratio"));
  } else {
    r.fp8_flops_per_s = t_fp8;
    src.push_back("fp8 GEMM: " + target.name + " datasheet, unscaled");
  }
  r.vector_flops_per_s = target.peak_vector_flops_per_s;
  src.push_back("vector: " + target.name + " datasheet");
  r.bytes_per_s *= share;
  r.bf16_flops_per_s *= share;
  r.fp32_flops_per_s *= share;
  r.fp8_flops_per_s *= share;
  r.vector_flops_per_s *= share;
  std::string joined;
  for (const auto& s : src) joined += (joined.empty() ? "" : "; ") + s;
  r.source = fmt::format("{} ({} B/s, bf16 {} FLOP/s, fp32 {} FLOP/s)", joined, si(r.bytes_per_s, ""), si(r.bf16_flops_per_s, ""),
                         si(r.fp32_flops_per_s, ""));
  return r;
}

namespace {
/** Classes whose profile entries carry a GEMM's whole shape (m, n, k, batch), so that their wave efficiency on
 *  the measured device is known: dense and batched GEMMs. */
bool wave_normalised(KernelClass c) { return c == KernelClass::gemm || c == KernelClass::batched_gemm; }
}  // namespace

Calibration Calibration::fit(const MeasuredProfile& profile, const DeviceRates& rates,
                             const std::optional<catalog::AcceleratorSpec>& source_spec) {
  Calibration cal;
  cal.full_waves_ = source_spec && source_spec->sm_count > 0 && source_spec->gemm_block_tile.size() == 2;
  cal.source_rates_ = rates;
  cal.source_ = profile.citation();
  cal.synthetic_ = !profile.measured();
  // Groups: (class, dtype), plus every data-movement class pooled over dtypes ("*").
  std::map<std::pair<KernelClass, std::string>, std::vector<const ProfileEntry*>> groups;
  for (const ProfileEntry* e : profile.kernel_entries()) {
    groups[{e->cls, e->dtype}].push_back(e);
    if (!uses_matmul_rate(e->cls)) groups[{e->cls, "*"}].push_back(e);
  }
  // Floors per class, over all its dtypes: launch latency does not depend on the element type, and
  // a dtype profiled only at large sizes (fp32) cannot show it.
  std::map<KernelClass, double> floors;
  {
    std::map<KernelClass, std::vector<std::pair<double, double>>> by_class;  // (ideal, time)
    for (const ProfileEntry* e : profile.kernel_entries()) {
      const bool gemm = uses_matmul_rate(e->cls);
      const double peak = gemm ? rates.matmul_for(e->dtype) : rates.vector_flops_per_s;
      if (gemm && !(peak > 0.0)) continue;
      const double ideal = std::max(e->flops > 0.0 && peak > 0.0 ? e->flops / peak : 0.0, e->bytes / rates.bytes_per_s);
      by_class[e->cls].push_back({ideal, e->time_s});
    }
    for (auto& [cls, pts] : by_class) floors[cls] = fit_floor(pts);
  }
  for (const auto& [key, entries] : groups) {
    const KernelClass cls = key.first;
    const bool gemm = uses_matmul_rate(cls);
    const double peak = gemm ? rates.matmul_for(key.second) : rates.vector_flops_per_s;
    if (gemm && !(peak > 0.0)) continue;  // no reference rate for this dtype: cannot express eta
    const double bw = rates.bytes_per_s;
    struct Point {
      const ProfileEntry* e;
      double ideal_c, ideal_m;
    };
    std::vector<Point> pts;
    for (const ProfileEntry* e : entries)
      pts.push_back({e, e->flops > 0.0 && peak > 0.0 ? e->flops / peak : 0.0, e->bytes / bw});
    ClassCalibration cc;
    cc.cls = cls;
    cc.dtype = key.second;
    cc.entries = static_cast<int>(pts.size());
    cc.floor_s = floors.at(cls);
    std::map<int, std::pair<std::vector<double>, std::vector<double>>> compute, memory;  // bucket -> (eta, log10 size)
    for (const Point& p : pts) {
      const double r = p.e->time_s - cc.floor_s;
      if (!(r > 0.0)) continue;  // not slower than the floor: says nothing about the rate
      const bool c = p.ideal_c >= p.ideal_m && p.ideal_c > 0.0;
      const double size = c ? p.e->flops : p.e->bytes;
      auto& b = (c ? compute : memory)[bucket_index(size)];
      // Step 6: a compute-bound GEMM's efficiency in full waves of the measured device.
      const double waves = c && cal.full_waves_ && wave_normalised(cls) ? wave_efficiency(entry_op(*p.e), *source_spec) : 1.0;
      b.first.push_back((c ? p.ideal_c : p.ideal_m) / r / waves);
      b.second.push_back(std::log10(size));
    }
    auto buckets = [](const std::map<int, std::pair<std::vector<double>, std::vector<double>>>& by) {
      std::vector<EfficiencyBucket> out;
      for (const auto& [idx, v] : by) {
        EfficiencyBucket b;
        b.log10_lo = idx * kBucketDecades;
        b.eta = median(v.first);
        b.log10_size = median(v.second);
        b.entries = static_cast<int>(v.first.size());
        out.push_back(b);
      }
      return out;
    };
    cc.compute_buckets = buckets(compute);
    cc.memory_buckets = buckets(memory);
    if (!cc.compute_buckets.empty() || !cc.memory_buckets.empty()) cal.classes_.push_back(std::move(cc));
  }
  return cal;
}

double ClassCalibration::eta_at(bool compute, double log10_size, bool* inside) const {
  const std::vector<EfficiencyBucket>& bs = compute ? compute_buckets : memory_buckets;
  if (inside) *inside = false;
  if (bs.empty()) return 0.0;
  if (inside) *inside = log10_size >= bs.front().log10_lo && log10_size < bs.back().log10_lo + Calibration::kBucketDecades;
  if (log10_size <= bs.front().log10_size) return bs.front().eta;
  if (log10_size >= bs.back().log10_size) return bs.back().eta;
  for (std::size_t i = 1; i < bs.size(); ++i) {
    if (log10_size > bs[i].log10_size) continue;
    const double w = (log10_size - bs[i - 1].log10_size) / (bs[i].log10_size - bs[i - 1].log10_size);
    return (1.0 - w) * bs[i - 1].eta + w * bs[i].eta;
  }
  return bs.back().eta;
}

const ClassCalibration* Calibration::find(KernelClass cls, const std::string& dtype) const {
  const ClassCalibration* pooled = nullptr;
  for (const ClassCalibration& c : classes_) {
    if (c.cls != cls) continue;
    if (c.dtype == dtype) return &c;
    if (c.dtype == "*") pooled = &c;
  }
  return pooled;
}

std::string Calibration::summary() const {
  auto range = [](const std::vector<EfficiencyBucket>& bs) {
    if (bs.empty()) return std::string("n/a");
    double lo = bs.front().eta, hi = bs.front().eta;
    for (const EfficiencyBucket& b : bs) {
      lo = std::min(lo, b.eta);
      hi = std::max(hi, b.eta);
    }
    return fmt::format("{:.2f}-{:.2f} over {} buckets", lo, hi, bs.size());
  };
  std::string out;
  for (const ClassCalibration& c : classes_)
    out += fmt::format("{}{} {}: {} entries, eta_c {}, eta_m {}, floor {:.2f} us", out.empty() ? "" : "; ", to_string(c.cls), c.dtype,
                       c.entries, range(c.compute_buckets), range(c.memory_buckets), c.floor_s * 1e6);
  if (full_waves_) out += "; dense and batched GEMM eta_c in full waves of the measured device's SMs";
  return out;
}

TransferModel::TransferModel(const catalog::AcceleratorSpec& target, std::shared_ptr<const Calibration> calibration,
                             DeviceRates target_rates, std::unique_ptr<ComputeTimeModel> fallback)
    : target_(target), calibration_(std::move(calibration)), rates_(std::move(target_rates)), fallback_(std::move(fallback)) {
  if (!calibration_) throw Error("TransferModel: no calibration");
  if (!fallback_) throw Error("TransferModel: no fallback model");
}

KernelTime TransferModel::time(const KernelOp& op) const {
  auto fall_back = [&](const std::string& why) {
    KernelTime t = fallback_->time(op);
    log_.record(op.cls, t.path, why);
    return t;
  };
  const ClassCalibration* cc = calibration_->find(op.cls, op.dtype);
  if (!cc) return fall_back(fmt::format("no calibration for {} {}", to_string(op.cls), op.dtype));
  const bool gemm = uses_matmul_rate(op.cls);
  const double peak = gemm ? rates_.matmul_for(op.dtype) : rates_.vector_flops_per_s;
  if (gemm && !(peak > 0.0)) return fall_back(fmt::format("target has no {} GEMM rate", op.dtype));
  const double ideal_c = op.flops > 0.0 && peak > 0.0 ? op.flops / peak : 0.0;
  const double ideal_m = op.bytes / rates_.bytes_per_s;
  const bool compute_bound = ideal_c >= ideal_m && ideal_c > 0.0;

  KernelTime t;
  t.path = TimePath::transferred;
  t.synthetic = calibration_->synthetic();
  t.padded_flops = gemm ? tile_padded_flops(op, target_.matmul_tile) : op.flops;
  t.floor_s = cc->floor_s;
  if (!(op.flops > 0.0) && !(op.bytes > 0.0)) {
    t.time_s = t.floor_s;
    log_.record(op.cls, t.path, "no work: floor only");
    return t;
  }
  bool inside_c = false, inside_m = false;
  const double eta_c = op.flops > 0.0 ? cc->eta_at(true, std::log10(op.flops), &inside_c) : 0.0;
  const double eta_m = op.bytes > 0.0 ? cc->eta_at(false, std::log10(op.bytes), &inside_m) : 0.0;
  if (compute_bound && !(eta_c > 0.0)) return fall_back(fmt::format("no compute-bound {} entries to calibrate on", to_string(op.cls)));
  if (!compute_bound && !(eta_m > 0.0)) return fall_back(fmt::format("no memory-bound {} entries to calibrate on", to_string(op.cls)));
  // Full-wave efficiencies (Calibration step 6) take the op's wave efficiency on the target.
  const double waves = calibration_->full_waves() && wave_normalised(op.cls) ? wave_efficiency(op, target_) : 1.0;
  // The term that does not bind uses eta = 1 where its regime has no entry: a lower bound.
  t.compute_s = eta_c > 0.0 ? ideal_c / (eta_c * waves) : ideal_c;
  t.memory_s = eta_m > 0.0 ? ideal_m / eta_m : ideal_m;
  t.time_s = std::max(t.compute_s, t.memory_s) + t.floor_s;
  const bool inside = compute_bound ? inside_c : inside_m;
  log_.record(op.cls, t.path, inside ? "calibrated sizes" : "outside the calibrated sizes: edge bucket");
  return t;
}

TimePath TransferModel::planned_path(KernelClass c) const {
  for (const ClassCalibration& cc : calibration_->classes())
    if (cc.cls == c) return TimePath::transferred;
  return fallback_->planned_path(c);
}

PathCounts TransferModel::path_counts() const { return log_.counts(); }

std::string TransferModel::describe() const {
  std::string paths = describe_path_counts(log_.counts());
  return fmt::format(
      "transferred to {}: roofline t = max(F/(eta_c P), B/(eta_m BW)) + t_floor with eta_c, eta_m, t_floor per kernel class, dtype "
      "and size bucket ({} decades) calibrated on {} against its reference rates [{}]; target rates [{}]; calibration [{}]; "
      "classes without calibration: {}{}",
      target_.name, Calibration::kBucketDecades, calibration_->source(), calibration_->source_rates().source, rates_.source,
      calibration_->summary(), fallback_->describe(), paths.empty() ? "" : "; calls of time() by path and reason: " + paths);
}

}  // namespace moesim::perf
