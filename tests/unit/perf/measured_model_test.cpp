// SPDX-License-Identifier: Apache-2.0
// MeasuredTableModel: interpolation of a (synthetic) measured profile, fallbacks and their labels.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <stdexcept>

#include "moesim/perf/measured_model.hpp"
#include "moesim/perf/transfer_model.hpp"
#include "perf_test_support.hpp"

namespace moesim::perf {
namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;

/** Device A of the fixtures as the measured device: its tables, its own calibration outside them. */
std::unique_ptr<MeasuredTableModel> model_a() {
  const catalog::AcceleratorSpec spec = test::spec_of(test::device_a(), "h100");
  auto profile = std::make_shared<const MeasuredProfile>(test::device_a());
  const DeviceRates rates = profile_rates(*profile, spec);
  auto cal = std::make_shared<const Calibration>(Calibration::fit(*profile, rates));
  auto transfer = std::make_unique<TransferModel>(spec, cal, rates, std::make_unique<RooflineModel>(spec, test::efficiency()));
  return std::make_unique<MeasuredTableModel>(spec, profile, std::move(transfer));
}

long count_of(const PathCounts& counts, KernelClass c, TimePath p, const std::string& reason) {
  auto it = counts.find(c);
  if (it == counts.end()) return 0;
  auto jt = it->second.find({p, reason});
  return jt == it->second.end() ? 0 : jt->second;
}

const MeasuredSeries& series_of(const MeasuredTableModel& m, KernelClass c, const std::string& dtype, double n, double k) {
  for (const MeasuredSeries& s : m.series())
    if (s.cls == c && s.dtype == dtype && s.n == n && s.k == k) return s;
  throw std::runtime_error("series not found");
}

TEST_CASE("perf::interpolate_rate: log-log between neighbours, nothing outside the range", "[perf][measured]") {
  MeasuredSeries s;
  s.x = {1.0, 100.0, 1000.0};
  s.rate = {1.0, 100.0, 100.0};
  CHECK(*interpolate_rate(s, 1.0) == 1.0);
  CHECK(*interpolate_rate(s, 100.0) == 100.0);
  CHECK(*interpolate_rate(s, 10.0) == Approx(10.0));   // geometric midpoint -> geometric mean of rates
  CHECK(*interpolate_rate(s, 500.0) == Approx(100.0));
  CHECK_FALSE(interpolate_rate(s, 0.5).has_value());
  CHECK_FALSE(interpolate_rate(s, 1000.1).has_value());
  CHECK_FALSE(interpolate_rate(s, 0.0).has_value());
  MeasuredSeries one;
  one.x = {64.0};
  one.rate = {3.0};
  CHECK(*interpolate_rate(one, 64.0) == 3.0);
  CHECK_FALSE(interpolate_rate(one, 65.0).has_value());
  CHECK_FALSE(interpolate_rate(MeasuredSeries{}, 1.0).has_value());
}

TEST_CASE("perf::MeasuredTableModel: reproduces every measured point exactly", "[perf][measured]") {
  const auto model = model_a();
  int checked = 0;
  for (const ProfileEntry* e : test::device_a().kernel_entries()) {
    INFO(e->kernel << " " << e->dtype << " line " << e->line);
    if (e->cls == KernelClass::grouped_gemm) {
      if (e->distribution != "balanced") continue;  // tables hold the balanced series
      const auto [up, down] = test::expert_ops(*e);
      const KernelTime tu = model->time(up), td = model->time(down);
      REQUIRE(tu.path == TimePath::measured);
      REQUIRE(td.path == TimePath::measured);
      // The measured expert FFN's rate, applied to its two GEMMs, gives back the measured FFN time.
      CHECK(tu.time_s + td.time_s == Approx(e->time_s).epsilon(1e-12));
    } else {
      const KernelTime t = model->time(test::op_of(*e));
      REQUIRE(t.path == TimePath::measured);
      CHECK(t.time_s == Approx(e->time_s).epsilon(1e-12));
      CHECK(t.synthetic);
    }
    ++checked;
  }
  CHECK(checked > 300);
}

TEST_CASE("perf::MeasuredTableModel: between measured shapes the time is monotone and between the neighbours",
          "[perf][measured]") {
  const auto model = model_a();
  SECTION("gemm along m (qkv_proj, mixtral-like: n = 12288, k = 4096)") {
    const MeasuredSeries& s = series_of(*model, KernelClass::gemm, "bf16", 12288, 4096);
    REQUIRE(s.x.size() == 4);
    double prev = 0.0;
    for (int i = 0; i <= 60; ++i) {
      const double m = s.x.front() * std::pow(s.x.back() / s.x.front(), i / 60.0);
      KernelOp op;
      op.cls = KernelClass::gemm;
      op.dtype = "bf16";
      op.m = m;
      op.n = 12288;
      op.k = 4096;
      op.flops = 2.0 * m * 12288 * 4096;
      op.bytes = (m * 4096 + 4096.0 * 12288 + m * 12288) * 2.0;
      const KernelTime t = model->time(op);
      REQUIRE(t.path == TimePath::measured);
      CHECK(t.time_s >= prev);
      prev = t.time_s;
      // Between the neighbours' times (time at a measured point = x / rate x FLOPs per unit of m).
      const auto hi = std::upper_bound(s.x.begin(), s.x.end(), m);
      if (hi != s.x.begin() && hi != s.x.end()) {
        const std::size_t j = static_cast<std::size_t>(hi - s.x.begin());
        const double t_lo = 2.0 * s.x[j - 1] * 12288 * 4096 / s.rate[j - 1];
        const double t_hi = 2.0 * s.x[j] * 12288 * 4096 / s.rate[j];
        CHECK(t.time_s >= t_lo * (1 - 1e-12));
        CHECK(t.time_s <= t_hi * (1 + 1e-12));
      }
    }
  }
  SECTION("grouped GEMM along tokens per expert (switch-base, 64 experts)") {
    ProfileEntry e;
    e.dtype = "bf16";
    e.activation = "relu";
    e.d_model = 768;
    e.d_ff = 2048;
    e.experts = 64;
    double prev = 0.0;
    for (double tpe = 1.0; tpe <= 2048.0; tpe *= 1.37) {
      e.tokens_per_expert = tpe;
      const auto [up, down] = test::expert_ops(e);
      const KernelTime t = model->time(up);
      REQUIRE(t.path == TimePath::measured);
      CHECK(t.time_s >= prev);
      prev = t.time_s;
    }
  }
  SECTION("an unbalanced grouped op is looked up at its mean tokens per expert") {
    ProfileEntry e;
    e.dtype = "bf16";
    e.activation = "relu";
    e.d_model = 768;
    e.d_ff = 2048;
    e.experts = 8;
    e.tokens_per_expert = 100.0;
    auto [balanced, down] = test::expert_ops(e);
    KernelOp skewed = balanced;
    skewed.group_m = {300, 200, 100, 100, 50, 30, 15, 5};  // mean 100, same rows and FLOPs
    CHECK(model->time(skewed).time_s == Approx(model->time(balanced).time_s).epsilon(1e-12));
  }
}

TEST_CASE("perf::MeasuredTableModel: outside the tables it falls back and records why", "[perf][measured]") {
  const auto model = model_a();
  auto gemm = [](double m, double n, double k, const std::string& dtype) {
    KernelOp op;
    op.cls = KernelClass::gemm;
    op.dtype = dtype;
    op.m = m;
    op.n = n;
    op.k = k;
    op.flops = 2.0 * m * n * k;
    op.bytes = (m * k + k * n + m * n) * 2.0;
    return op;
  };
  SECTION("below the measured range: transferred (calibrated on the same profile)") {
    const KernelTime t = model->time(gemm(256, 12288, 4096, "bf16"));
    CHECK(t.path == TimePath::transferred);
    CHECK(t.synthetic);
    CHECK(count_of(model->path_counts(), KernelClass::gemm, TimePath::transferred, "below the measured range") == 1);
    // A smaller GEMM is not slower than the smallest measured one.
    CHECK(t.time_s <= model->time(gemm(512, 12288, 4096, "bf16")).time_s);
  }
  SECTION("above the measured range") {
    CHECK(model->time(gemm(65536, 12288, 4096, "bf16")).path == TimePath::transferred);
    CHECK(count_of(model->path_counts(), KernelClass::gemm, TimePath::transferred, "above the measured range") == 1);
  }
  SECTION("a shape with no series (backward GEMM n = d_model, k = 3 x heads x d_head)") {
    CHECK(model->time(gemm(2048, 4096, 12288, "bf16")).path == TimePath::transferred);
    CHECK(count_of(model->path_counts(), KernelClass::gemm, TimePath::transferred, "no measured series for this shape and dtype") == 1);
  }
  SECTION("a grouped GEMM over an unmeasured expert count") {
    ProfileEntry e;
    e.dtype = "bf16";
    e.activation = "relu";
    e.d_model = 768;
    e.d_ff = 2048;
    e.experts = 16;
    e.tokens_per_expert = 64;
    CHECK(model->time(test::expert_ops(e).first).path == TimePath::transferred);
  }
  SECTION("a class the profile lacks (optimizer) goes to the roofline") {
    KernelOp op;
    op.cls = KernelClass::optimizer;
    op.dtype = "fp32";
    op.bytes = 1e9;
    op.flops = 1e8;
    const KernelTime t = model->time(op);
    CHECK(t.path == TimePath::roofline);
    CHECK_FALSE(t.synthetic);
    CHECK(count_of(model->path_counts(), KernelClass::optimizer, TimePath::roofline, "class not in the profile") == 1);
    CHECK(model->planned_path(KernelClass::optimizer) == TimePath::roofline);
  }
  SECTION("a dtype the profile lacks (fp16) goes to the roofline") {
    CHECK(model->time(gemm(2048, 12288, 4096, "fp16")).path == TimePath::roofline);
  }
  SECTION("data movement in a dtype without a series uses the class's pooled series") {
    KernelOp op;
    op.cls = KernelClass::router;
    op.dtype = "bf16";  // the router is profiled in fp32 only
    op.bytes = 1.0e7;
    CHECK(model->time(op).path == TimePath::measured);
  }
}

/** The kernels/ fixture (it has every kernel class, fp8 entries and an fp8 ceiling) as the measured H100. */
std::unique_ptr<MeasuredTableModel> model_kernels_fixture(const MeasuredProfile** profile_out = nullptr) {
  static const MeasuredProfile p =
      MeasuredProfile::load(std::string(MOESIM_TEST_DATA) + "/kernels/measured_synthetic.json");
  if (profile_out != nullptr) *profile_out = &p;
  const catalog::AcceleratorSpec spec = test::spec_of(p, "h100");
  auto profile = std::make_shared<const MeasuredProfile>(p);
  const DeviceRates rates = profile_rates(*profile, spec);
  auto cal = std::make_shared<const Calibration>(Calibration::fit(*profile, rates));
  auto transfer = std::make_unique<TransferModel>(spec, cal, rates, std::make_unique<RooflineModel>(spec, test::efficiency()));
  return std::make_unique<MeasuredTableModel>(spec, profile, std::move(transfer));
}

const ProfileEntry& entry_of(const MeasuredProfile& p, KernelClass c, const std::string& dtype) {
  for (const ProfileEntry& e : p.entries())
    if (e.cls == c && e.dtype == dtype) return e;
  throw std::runtime_error("entry not found");
}

TEST_CASE("perf::MeasuredTableModel: decode and prefill attention and fp8 GEMMs from their own tables", "[perf][measured]") {
  const MeasuredProfile* p = nullptr;
  const auto model = model_kernels_fixture(&p);
  SECTION("every serving entry is reproduced exactly, on the measured path") {
    for (const ProfileEntry* e : p->kernel_entries()) {
      if (e->cls != KernelClass::decode_attention && e->cls != KernelClass::prefill_attention && e->dtype != "fp8") continue;
      if (e->cls == KernelClass::grouped_gemm) continue;
      INFO(e->kernel << " " << e->dtype);
      const KernelTime t = model->time(test::op_of(*e));
      REQUIRE(t.path == TimePath::measured);
      CHECK(t.time_s == Approx(e->time_s).epsilon(1e-12));
    }
  }
  SECTION("an fp8-KV decode step uses the fp8 table, not the bf16 one") {
    const ProfileEntry& bf = entry_of(*p, KernelClass::decode_attention, "bf16");
    const ProfileEntry& f8 = entry_of(*p, KernelClass::decode_attention, "fp8");
    KernelOp op = test::op_of(f8);
    CHECK(model->time(op).time_s == Approx(f8.time_s).epsilon(1e-12));
    CHECK(f8.time_s < bf.time_s);  // half the KV bytes
    // The measured path reports the ideal times at the device's ceilings for comparison.
    CHECK(model->time(op).memory_s == Approx(op.bytes / p->ceilings().copy_bytes_per_s));
  }
  SECTION("a decode step between the two measured sizes, in a dtype without a series: pooled, log-log") {
    const ProfileEntry& bf = entry_of(*p, KernelClass::decode_attention, "bf16");
    const ProfileEntry& f8 = entry_of(*p, KernelClass::decode_attention, "fp8");
    KernelOp op;
    op.cls = KernelClass::decode_attention;
    op.dtype = "fp16";
    op.bytes = std::sqrt(bf.bytes * f8.bytes);  // geometric midpoint → geometric mean of the rates
    op.flops = bf.flops;
    const KernelTime t = model->time(op);
    REQUIRE(t.path == TimePath::measured);
    const double rate = std::sqrt(bf.bytes_per_s() * f8.bytes_per_s());
    CHECK(t.time_s == Approx(op.bytes / rate).epsilon(1e-12));
  }
  SECTION("outside the measured range: the calibrated transfer, labelled") {
    KernelOp op = test::op_of(entry_of(*p, KernelClass::decode_attention, "bf16"));
    op.bytes *= 10.0;
    const KernelTime t = model->time(op);
    CHECK(t.path == TimePath::transferred);
    // The fixture is a plain roofline: the transfer recovers eta_m = 1 and the 5 us floor.
    CHECK(t.time_s == Approx(op.bytes / p->ceilings().copy_bytes_per_s + 5e-6).epsilon(1e-9));
    CHECK(count_of(model->path_counts(), KernelClass::decode_attention, TimePath::transferred, "above the measured range") == 1);
  }
  SECTION("prefill ops are matched by dtype and interpolated by FLOPs") {
    const ProfileEntry& e = entry_of(*p, KernelClass::prefill_attention, "bf16");
    KernelOp op = test::op_of(e);
    op.flops *= 2.0;  // beyond the single measured point, and compute-bound where the fixture's entry is not:
    CHECK(model->time(op).path == TimePath::roofline);  // no compute-bound prefill entry to calibrate on
    CHECK(count_of(model->path_counts(), KernelClass::prefill_attention, TimePath::roofline, "above the measured range") == 1);
    const KernelTime t = model->time(test::op_of(e));
    CHECK(t.compute_s == Approx(e.flops / p->ceilings().matmul_bf16_flops_per_s));
  }
  SECTION("fp8 GEMMs: the fp8 ceiling for the ideal compute time") {
    const ProfileEntry& e = entry_of(*p, KernelClass::gemm, "fp8");
    const KernelTime t = model->time(test::op_of(e));
    CHECK(t.compute_s == Approx(e.flops / *p->ceilings().matmul_fp8_flops_per_s));
  }
  SECTION("planned paths and compute_paths name the new classes") {
    CHECK(model->planned_path(KernelClass::decode_attention) == TimePath::measured);
    CHECK(model->planned_path(KernelClass::prefill_attention) == TimePath::measured);
    const auto paths = compute_paths(*model);
    CHECK(paths.at("decode_attention") == "measured (synthetic profile, not measured)");
    CHECK(paths.at("prefill_attention") == "measured (synthetic profile, not measured)");
  }
}

TEST_CASE("perf::MeasuredTableModel: a synthetic profile is labelled everywhere it is used", "[perf][measured]") {
  const auto model = model_a();
  CHECK(model->synthetic());
  CHECK_THAT(model->describe(), Contains("SYNTHETIC"));
  KernelOp op;
  op.cls = KernelClass::permute;
  op.dtype = "bf16";
  op.bytes = 1.0e8;
  model->time(op);
  const auto paths = compute_paths(*model);
  CHECK(paths.at("permute") == "measured (synthetic profile, not measured)");
  CHECK(paths.at("gemm") == "measured (synthetic profile, not measured)");  // planned: the profile has gemm tables
  CHECK(paths.at("optimizer") == "roofline (synthetic profile, not measured)");
  for (const auto& [cls, path] : paths) CHECK_THAT(path, EndsWith("(synthetic profile, not measured)"));
  CHECK_THAT(model->describe(), Contains("permute: 1 measured"));
}

TEST_CASE("perf::MeasuredTableModel: compute_paths joins the paths a class took", "[perf][measured]") {
  const auto model = model_a();
  KernelOp in, out;
  in.cls = out.cls = KernelClass::elementwise;
  in.dtype = out.dtype = "bf16";
  for (const ProfileEntry& e : test::device_a().entries())
    if (e.cls == KernelClass::elementwise && e.dtype == "bf16") in.bytes = e.bytes;  // a measured size
  out.bytes = 1.0e3;  // far below the smallest: transferred
  REQUIRE(model->time(in).path == TimePath::measured);
  REQUIRE(model->time(out).path == TimePath::transferred);
  CHECK(compute_paths(*model).at("elementwise") == "measured+transferred (synthetic profile, not measured)");
}

}  // namespace
}  // namespace moesim::perf
