// SPDX-License-Identifier: Apache-2.0
// Kernel times of a measured device by interpolation of its profile's tables.
#include "moesim/perf/measured_model.hpp"
#include "moesim/core/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::perf {

namespace {

constexpr double kShapeTolerance = 1e-9;  // relative: shapes are integers, so this is "equal"

bool same(double a, double b) { return std::fabs(a - b) <= kShapeTolerance * std::max(std::fabs(a), std::fabs(b)); }

/** Collects (x, rate) points of one series before sorting and merging. */
struct SeriesBuilder {
  MeasuredSeries s;
  std::vector<std::pair<double, double>> pts;
};

}  // namespace

std::string MeasuredSeries::describe() const {
  std::string key;
  switch (cls) {
    case KernelClass::gemm: key = fmt::format("n={} k={}", n, k); break;
    case KernelClass::batched_gemm: key = fmt::format("m={} n={} k={}", m, n, k); break;
    case KernelClass::grouped_gemm: key = fmt::format("d_model={} d_ff={} gates={} experts={}", d_model, d_ff, gates, experts); break;
    default: key = "pooled over shapes"; break;
  }
  return fmt::format("{} {} {}: {} points, {} in [{}, {}]", to_string(cls), dtype, key, x.size(), axis, x.empty() ? 0.0 : x.front(),
                     x.empty() ? 0.0 : x.back());
}

std::optional<double> interpolate_rate(const MeasuredSeries& s, double x) {
  if (s.x.empty() || !(x > 0.0)) return std::nullopt;
  if (x < s.x.front() * (1.0 - kShapeTolerance) || x > s.x.back() * (1.0 + kShapeTolerance)) return std::nullopt;
  x = std::clamp(x, s.x.front(), s.x.back());
  if (s.x.size() == 1) return s.rate.front();
  std::size_t i = static_cast<std::size_t>(std::upper_bound(s.x.begin(), s.x.end(), x) - s.x.begin());
  i = std::clamp<std::size_t>(i, 1, s.x.size() - 1);
  const double x0 = s.x[i - 1], x1 = s.x[i];
  if (x == x0) return s.rate[i - 1];
  if (x == x1) return s.rate[i];
  const double w = (std::log(x) - std::log(x0)) / (std::log(x1) - std::log(x0));
  return std::exp((1.0 - w) * std::log(s.rate[i - 1]) + w * std::log(s.rate[i]));
}

std::vector<MeasuredSeries> build_series(const MeasuredProfile& profile) {
  std::vector<SeriesBuilder> builders;
  auto find_or_add = [&](const MeasuredSeries& key) -> SeriesBuilder& {
    for (SeriesBuilder& b : builders) {
      const MeasuredSeries& s = b.s;
      if (s.cls == key.cls && s.dtype == key.dtype && same(s.n, key.n) && same(s.k, key.k) && same(s.m, key.m) &&
          same(s.d_model, key.d_model) && same(s.d_ff, key.d_ff) && same(s.gates, key.gates) && same(s.experts, key.experts))
        return b;
    }
    builders.push_back(SeriesBuilder{key, {}});
    return builders.back();
  };
  for (const ProfileEntry* e : profile.kernel_entries()) {
    MeasuredSeries key;
    key.cls = e->cls;
    key.dtype = e->dtype;
    double x = 0.0;
    switch (e->cls) {
      case KernelClass::gemm:
        key.n = e->n;
        key.k = e->k;
        key.axis = "m";
        x = e->m;
        break;
      case KernelClass::batched_gemm:
        key.m = e->m;
        key.n = e->n;
        key.k = e->k;
        key.axis = "batch";
        x = e->batch;
        break;
      case KernelClass::grouped_gemm:
        if (e->distribution != "balanced") continue;  // the op's axis is a mean over experts: balanced series only
        key.d_model = e->d_model;
        key.d_ff = e->d_ff;
        key.gates = activation_gates(e->activation);
        key.experts = e->experts;
        key.axis = "tokens_per_expert";
        x = e->tokens_per_expert;
        break;
      case KernelClass::prefill_attention:
        key.axis = "flops";  // the op carries its FLOPs and bytes only: pooled over shapes, by work
        x = e->flops;
        break;
      default:
        key.axis = "bytes";
        x = e->bytes;
        break;
    }
    key.rate_is_flops = uses_matmul_rate(e->cls);
    const double rate = key.rate_is_flops ? e->flops_per_s() : e->bytes_per_s();
    find_or_add(key).pts.push_back({x, rate});
    if (!uses_matmul_rate(e->cls)) {
      key.dtype = "*";
      find_or_add(key).pts.push_back({x, rate});
    }
  }
  std::vector<MeasuredSeries> out;
  for (SeriesBuilder& b : builders) {
    std::sort(b.pts.begin(), b.pts.end());
    std::size_t i = 0;
    while (i < b.pts.size()) {
      std::size_t j = i;
      std::vector<double> rates;
      while (j < b.pts.size() && same(b.pts[j].first, b.pts[i].first)) rates.push_back(b.pts[j++].second);
      b.s.x.push_back(b.pts[i].first);
      b.s.rate.push_back(median(rates));
      i = j;
    }
    out.push_back(std::move(b.s));
  }
  return out;
}

std::string describe_path_counts(const PathCounts& counts) {
  std::string out;
  for (const auto& [cls, by] : counts) {
    std::map<TimePath, long> total;
    std::map<TimePath, std::string> reasons;
    for (const auto& [key, n] : by) {
      total[key.first] += n;
      reasons[key.first] += fmt::format("{}{} {}", reasons[key.first].empty() ? "" : ", ", key.second, n);
    }
    std::string line;
    for (const auto& [p, n] : total)
      line += fmt::format("{}{} {} ({})", line.empty() ? "" : ", ", n, to_string(p), reasons[p]);
    out += fmt::format("{}{}: {}", out.empty() ? "" : "; ", to_string(cls), line);
  }
  return out;
}

MeasuredTableModel::MeasuredTableModel(const catalog::AcceleratorSpec& accel, std::shared_ptr<const MeasuredProfile> profile,
                                       std::unique_ptr<ComputeTimeModel> fallback)
    : accel_(accel), profile_(std::move(profile)), fallback_(std::move(fallback)) {
  if (!profile_) throw Error("MeasuredTableModel: no profile");
  if (!fallback_) throw Error("MeasuredTableModel: no fallback model");
  series_ = build_series(*profile_);
}

const MeasuredSeries* MeasuredTableModel::match(const KernelOp& op, double* x) const {
  const MeasuredSeries* pooled = nullptr;
  for (const MeasuredSeries& s : series_) {
    if (s.cls != op.cls) continue;
    switch (op.cls) {
      case KernelClass::gemm:
        if (s.dtype == op.dtype && same(op.batch, 1.0) && same(s.n, op.n) && same(s.k, op.k)) {
          *x = op.m;
          return &s;
        }
        break;
      case KernelClass::batched_gemm:
        if (s.dtype == op.dtype && same(s.m, op.m) && same(s.n, op.n) && same(s.k, op.k)) {
          *x = op.batch;
          return &s;
        }
        break;
      case KernelClass::grouped_gemm: {
        if (s.dtype != op.dtype || op.group_m.empty() || !same(s.experts, static_cast<double>(op.group_m.size()))) break;
        const bool up = same(op.n, s.gates * s.d_ff) && same(op.k, s.d_model);
        const bool down = same(op.n, s.d_model) && same(op.k, s.d_ff);
        if (up || down) {
          *x = std::accumulate(op.group_m.begin(), op.group_m.end(), 0.0) / static_cast<double>(op.group_m.size());
          return &s;
        }
        break;
      }
      case KernelClass::optimizer: break;
      case KernelClass::prefill_attention:
        if (s.dtype == op.dtype) {
          *x = op.flops;
          return &s;
        }
        break;
      default:
        if (s.dtype == op.dtype) {
          *x = op.bytes;
          return &s;
        }
        if (s.dtype == "*") pooled = &s;
        break;
    }
  }
  if (pooled) *x = op.bytes;
  return pooled;
}

KernelTime MeasuredTableModel::time(const KernelOp& op) const {
  auto fall_back = [&](const std::string& why) {
    KernelTime t = fallback_->time(op);
    log_.record(op.cls, t.path, why);
    return t;
  };
  double x = 0.0;
  const MeasuredSeries* s = match(op, &x);
  if (!s) {
    const bool any = std::any_of(series_.begin(), series_.end(), [&](const MeasuredSeries& m) { return m.cls == op.cls; });
    return fall_back(any ? "no measured series for this shape and dtype" : "class not in the profile");
  }
  const std::optional<double> rate = interpolate_rate(*s, x);
  if (!rate) return fall_back(x < s->x.front() ? "below the measured range" : "above the measured range");
  KernelTime t;
  t.path = TimePath::measured;
  t.synthetic = !profile_->measured();
  t.time_s = (s->rate_is_flops ? op.flops : op.bytes) / *rate;
  const ProfileCeilings& c = profile_->ceilings();
  const double peak = op.dtype == "bf16"   ? c.matmul_bf16_flops_per_s
                     : op.dtype == "fp8" ? c.matmul_fp8_flops_per_s.value_or(0.0)
                                         : c.matmul_fp32_flops_per_s.value_or(0.0);
  t.compute_s = op.flops > 0.0 && peak > 0.0 ? op.flops / peak : 0.0;
  t.memory_s = op.bytes / c.copy_bytes_per_s;
  t.floor_s = 0.0;
  t.padded_flops = uses_matmul_rate(op.cls) ? tile_padded_flops(op, accel_.matmul_tile) : op.flops;
  log_.record(op.cls, t.path,
              s->dtype == "*" ? "interpolated in the measured range (series of other dtypes, by bytes)" : "interpolated in the measured range");
  return t;
}

TimePath MeasuredTableModel::planned_path(KernelClass c) const {
  for (const MeasuredSeries& s : series_)
    if (s.cls == c) return TimePath::measured;
  return fallback_->planned_path(c);
}

PathCounts MeasuredTableModel::path_counts() const { return log_.counts(); }

std::string MeasuredTableModel::describe() const {
  std::string paths = describe_path_counts(log_.counts());
  return fmt::format(
      "measured tables of {} on {}: {} entries, {} series, achieved rate interpolated log-log between measured shapes, never "
      "extrapolated{}; outside the tables: {}{}",
      profile_->citation(), accel_.name, profile_->entries().size(), series_.size(),
      profile_->measured() ? "" : " (SYNTHETIC profile: these are not measurements)", fallback_->describe(),
      paths.empty() ? "" : "; calls of time() by path and reason: " + paths);
}

}  // namespace moesim::perf
