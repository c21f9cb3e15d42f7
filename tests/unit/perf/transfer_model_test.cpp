// SPDX-License-Identifier: Apache-2.0
// Calibration and TransferModel: recovering a known roofline, and predicting device B from device A
// (synthetic fixtures: same compute, 1.43x bandwidth; tests/data/perf/make_perf_fixtures.py).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "moesim/core/error.hpp"
#include "moesim/perf/transfer_model.hpp"
#include "perf_test_support.hpp"

namespace moesim::perf {
namespace {

using Catch::Matchers::Contains;

std::unique_ptr<TransferModel> a_to(const catalog::AcceleratorSpec& target) {
  const catalog::AcceleratorSpec src = test::spec_of(test::device_a(), "h100");
  auto cal = std::make_shared<const Calibration>(Calibration::fit(test::device_a(), profile_rates(test::device_a(), src)));
  return std::make_unique<TransferModel>(target, cal, transfer_target_rates(target, test::device_a(), src),
                                         std::make_unique<RooflineModel>(target, test::efficiency()));
}

/** A dense bf16 GEMM of n x n x n: 2 n^3 FLOPs, three n x n matrices of bytes. */
KernelOp square_gemm(double n) {
  KernelOp op;
  op.cls = KernelClass::gemm;
  op.dtype = "bf16";
  op.m = op.n = op.k = n;
  op.flops = 2.0 * n * n * n;
  op.bytes = 3.0 * n * n * 2.0;
  return op;
}

/** Predicted time of a profile entry on a model, as one op with the entry's FLOPs and bytes (the
 *  expert FFN too: it was calibrated as one call). */
std::pair<double, TimePath> predict(const ComputeTimeModel& m, const ProfileEntry& e) {
  const KernelTime t = m.time(test::op_of(e));
  return {t.time_s, t.path};
}

TEST_CASE("perf::Calibration: recovers floor and eta = 1 from a profile made by a plain roofline", "[perf][transfer]") {
  // kernels/ fixture: time = max(F / P, B / BW) + 5 us at the file's own ceilings (its generator's docstring).
  const MeasuredProfile p = MeasuredProfile::load(std::string(MOESIM_TEST_DATA) + "/kernels/measured_synthetic.json");
  const Calibration cal = Calibration::fit(p, profile_rates(p, std::nullopt));
  CHECK(cal.synthetic());
  for (KernelClass c : {KernelClass::gemm, KernelClass::router, KernelClass::permute, KernelClass::elementwise,
                        KernelClass::decode_attention, KernelClass::prefill_attention}) {
    const ClassCalibration* cc = cal.find(c, c == KernelClass::router ? "fp32" : "bf16");
    REQUIRE(cc != nullptr);
    INFO(to_string(c));
    CHECK(cc->floor_s == Approx(5.0e-6).epsilon(1e-9));
    for (const EfficiencyBucket& b : cc->compute_buckets) CHECK(b.eta == Approx(1.0).epsilon(1e-9));
    for (const EfficiencyBucket& b : cc->memory_buckets) CHECK(b.eta == Approx(1.0).epsilon(1e-9));
  }
  CHECK(cal.find(KernelClass::optimizer, "fp32") == nullptr);
  CHECK(cal.find(KernelClass::router, "bf16") == cal.find(KernelClass::router, "*"));  // pooled over dtypes
  // fp8 GEMMs calibrate against the profile's fp8 ceiling; fp8-KV decode has its own calibration.
  REQUIRE(cal.source_rates().fp8_flops_per_s == Approx(1.0e15));
  for (const char* dt : {"fp8"}) {
    for (KernelClass c : {KernelClass::gemm, KernelClass::decode_attention}) {
      const ClassCalibration* cc = cal.find(c, dt);
      REQUIRE(cc != nullptr);
      CHECK(cc->dtype == dt);
      for (const EfficiencyBucket& b : cc->compute_buckets) CHECK(b.eta == Approx(1.0).epsilon(1e-9));
      for (const EfficiencyBucket& b : cc->memory_buckets) CHECK(b.eta == Approx(1.0).epsilon(1e-9));
    }
  }
  CHECK(cal.find(KernelClass::prefill_attention, "fp8") == nullptr);  // prefill is profiled in bf16 only, not pooled
}

TEST_CASE("perf::Calibration: recovers the fixture's affine memory curve: floor and eta exactly", "[perf][transfer]") {
  // Fixture permute (make_perf_fixtures.py): t = B / (eta_m(B) BW) + T0 with eta_m(B) = 0.55 B / (B + 2e6),
  // i.e. t = B / (0.55 BW) + [T0 + 2e6 / (0.55 BW)]: a straight line in the ideal time B / BW. A device
  // cannot tell the constant 2e6 / (0.55 BW) from latency, so the floor is T0 plus it, and eta_m is 0.55.
  const catalog::AcceleratorSpec src = test::spec_of(test::device_a(), "h100");
  const Calibration cal = Calibration::fit(test::device_a(), profile_rates(test::device_a(), src));
  const ClassCalibration* perm = cal.find(KernelClass::permute, "bf16");
  REQUIRE(perm != nullptr);
  CHECK(perm->compute_buckets.empty());
  REQUIRE(perm->memory_buckets.size() >= 4);
  CHECK(perm->floor_s == Approx(6.0e-6 + 2.0e6 / (0.55 * 3.0e12)).epsilon(1e-9));
  for (const EfficiencyBucket& b : perm->memory_buckets) CHECK(b.eta == Approx(0.55).epsilon(1e-9));
  // The pooled series and the fp32 one share the class's floor.
  CHECK(cal.find(KernelClass::permute, "fp32")->floor_s == perm->floor_s);
  CHECK(cal.find(KernelClass::permute, "*")->floor_s == perm->floor_s);

  const ClassCalibration* gemm = cal.find(KernelClass::gemm, "bf16");
  REQUIRE(gemm != nullptr);
  CHECK_FALSE(gemm->compute_buckets.empty());  // large projections
  CHECK_FALSE(gemm->memory_buckets.empty());   // router gate GEMMs (n = experts)
  for (const EfficiencyBucket& b : gemm->compute_buckets) {
    CHECK(b.eta > 0.0);
    CHECK(b.eta <= 1.0 + 1e-12);
  }
  // fp32 GEMMs were profiled at large sizes only; their floor is the class's, set by the small bf16 ones.
  CHECK(cal.find(KernelClass::gemm, "fp32")->floor_s == gemm->floor_s);
  CHECK(gemm->floor_s < 10e-6);
  CHECK_THAT(cal.summary(), Contains("gemm bf16") && Contains("floor"));
}

TEST_CASE("perf::ClassCalibration: eta is interpolated between bucket medians and held beyond them", "[perf][transfer]") {
  ClassCalibration c;
  c.memory_buckets = {{6.0, 0.4, 6.2, 3}, {7.0, 0.8, 7.2, 5}};
  bool inside = false;
  CHECK(c.eta_at(false, 6.2) == Approx(0.4));
  CHECK(c.eta_at(false, 6.7, &inside) == Approx(0.6));
  CHECK(inside);
  CHECK(c.eta_at(false, 5.0, &inside) == Approx(0.4));
  CHECK_FALSE(inside);
  CHECK(c.eta_at(false, 9.0, &inside) == Approx(0.8));
  CHECK_FALSE(inside);
  CHECK(c.eta_at(true, 7.0) == 0.0);  // no compute-bound bucket
}

TEST_CASE("perf::TransferModel: predicts device B from device A within 10 % per class", "[perf][transfer]") {
  // B has A's compute and 1.43x its bandwidth; the target figures come from the (fixture-adjusted) catalog entry.
  const auto model = a_to(test::spec_of(test::device_b(), "h200"));
  struct Acc {
    std::vector<double> err;
    double pred = 0.0, meas = 0.0;
  };
  std::map<std::string, Acc> by;
  for (const ProfileEntry* e : test::device_b().kernel_entries()) {
    const auto [t, path] = predict(*model, *e);
    CHECK(path == TimePath::transferred);
    Acc& a = by[to_string(e->cls) + " " + e->dtype];
    a.err.push_back(std::fabs(t - e->time_s) / e->time_s);
    a.pred += t;
    a.meas += e->time_s;
  }
  REQUIRE(by.size() == 12);
  for (auto& [key, a] : by) {
    std::sort(a.err.begin(), a.err.end());
    const double median = a.err[a.err.size() / 2];
    const double total = a.pred / a.meas - 1.0;
    INFO(key << ": median |error| " << median << ", max " << a.err.back() << ", total " << total);
    CHECK(median <= 0.10);
    CHECK(std::fabs(total) <= 0.10);
  }
}

TEST_CASE("perf::TransferModel: memory-bound kernels speed up with bandwidth, compute-bound ones do not", "[perf][transfer]") {
  const auto same = a_to(test::spec_of(test::device_a(), "h100"));
  const auto faster = a_to(test::spec_of(test::device_b(), "h200"));
  KernelOp copy;
  copy.cls = KernelClass::permute;
  copy.dtype = "bf16";
  copy.bytes = 2.0e9;  // large: the floor is negligible
  const double ratio = same->time(copy).time_s / faster->time(copy).time_s;
  CHECK(ratio == Approx(1.43).epsilon(0.01));
  const KernelOp big = square_gemm(8192);
  CHECK(faster->time(big).time_s == Approx(same->time(big).time_s).epsilon(1e-12));
  // A small kernel is mostly floor: it barely changes.
  KernelOp tiny = copy;
  tiny.bytes = 1.0e4;
  CHECK(same->time(tiny).time_s / faster->time(tiny).time_s < 1.05);
}

TEST_CASE("perf::TransferModel: what the calibration cannot cover goes to the roofline, recorded", "[perf][transfer]") {
  const catalog::AcceleratorSpec h200 = test::accelerator("h200");
  const auto model = a_to(h200);
  auto reasons = [&](KernelClass c) {
    std::vector<std::string> out;
    const PathCounts counts = model->path_counts();
    if (counts.count(c))
      for (const auto& [key, n] : counts.at(c)) out.push_back(to_string(key.first) + ": " + key.second);
    return out;
  };
  SECTION("the optimizer is never profiled") {
    KernelOp op;
    op.cls = KernelClass::optimizer;
    op.dtype = "fp32";
    op.bytes = 1e9;
    CHECK(model->time(op).path == TimePath::roofline);
    CHECK(reasons(KernelClass::optimizer) == std::vector<std::string>{"roofline: no calibration for optimizer fp32"});
    CHECK(model->planned_path(KernelClass::optimizer) == TimePath::roofline);
    CHECK(model->planned_path(KernelClass::gemm) == TimePath::transferred);
  }
  SECTION("vector work so heavy it is compute-bound has no calibrated compute efficiency") {
    KernelOp op;
    op.cls = KernelClass::elementwise;
    op.dtype = "bf16";
    op.bytes = 1.0e6;
    op.flops = 1.0e12;
    CHECK(model->time(op).path == TimePath::roofline);
    CHECK(reasons(KernelClass::elementwise) == std::vector<std::string>{"roofline: no compute-bound elementwise entries to calibrate on"});
  }
  SECTION("a size beyond the calibrated ones uses the edge bucket, recorded") {
    KernelOp op;
    op.cls = KernelClass::permute;
    op.dtype = "bf16";
    op.bytes = 1.0e12;
    CHECK(model->time(op).path == TimePath::transferred);
    CHECK(reasons(KernelClass::permute) == std::vector<std::string>{"transferred: outside the calibrated sizes: edge bucket"});
  }
  SECTION("a target without the dtype's matrix unit falls back to the roofline, which names the problem") {
    const auto v100 = a_to(test::accelerator("v100"));  // V100: no bf16 (profiles/accelerators/v100.yaml)
    CHECK_THROWS_AS(v100->time(square_gemm(1024)), Error);
  }
  CHECK_THAT(model->describe(), Contains("transferred to h200") && Contains("SYNTHETIC"));
}

TEST_CASE("perf::TransferModel: GEMM efficiencies calibrated in full waves take the target's own wave fill",
          "[perf][transfer][waves]") {
  // Device A calibrated with its catalog entry (132 SMs, 256x128 tiles), transferred to itself and to a copy with
  // 100 SMs: a 4096^3 GEMM (512 tiles) fills 4 waves of 132 to 0.970 and 6 waves of 100 to 0.853.
  const catalog::AcceleratorSpec src = test::spec_of(test::device_a(), "h100");
  REQUIRE(src.sm_count == 132);
  catalog::AcceleratorSpec fewer = src;
  fewer.sm_count = 100;
  const KernelOp op = square_gemm(4096);
  const double w_src = wave_efficiency(op, src), w_fewer = wave_efficiency(op, fewer);
  CHECK(w_src == Approx(512.0 / 528.0));
  CHECK(w_fewer == Approx(512.0 / 600.0));
  auto model = [&](const catalog::AcceleratorSpec& target, bool full_waves) {
    auto cal = std::make_shared<const Calibration>(
        Calibration::fit(test::device_a(), profile_rates(test::device_a(), src), full_waves ? std::optional(src) : std::nullopt));
    CHECK(cal->full_waves() == full_waves);
    return std::make_unique<TransferModel>(target, cal, transfer_target_rates(target, test::device_a(), src),
                                           std::make_unique<RooflineModel>(target, test::efficiency()));
  };
  SECTION("full waves: the compute term scales with the target's wave fill; the floor does not") {
    const KernelTime a = model(src, true)->time(op), b = model(fewer, true)->time(op);
    REQUIRE(a.path == TimePath::transferred);
    CHECK(b.floor_s == a.floor_s);
    CHECK(b.compute_s / a.compute_s == Approx(w_src / w_fewer).epsilon(1e-12));
    CHECK_THAT(model(src, true)->describe(), Contains("full waves"));
  }
  SECTION("without the measured device's entry the measured waves stay in the efficiencies: the SM count is ignored") {
    CHECK(model(fewer, false)->time(op).time_s == Approx(model(src, false)->time(op).time_s).epsilon(1e-12));
  }
  SECTION("a data-movement class is not a GEMM: no waves") {
    KernelOp copy;
    copy.cls = KernelClass::permute;
    copy.dtype = "bf16";
    copy.bytes = 2.0e9;
    CHECK(model(fewer, true)->time(copy).time_s == Approx(model(src, true)->time(copy).time_s).epsilon(1e-12));
  }
}

TEST_CASE("perf::transfer_target_rates: catalog measurements first, else datasheet scaled like the source", "[perf][transfer]") {
  const catalog::AcceleratorSpec h100 = test::accelerator("h100");
  SECTION("H200 has measured ceilings in the catalog") {
    const DeviceRates r = transfer_target_rates(test::accelerator("h200"), test::device_a(), h100);
    CHECK(r.bytes_per_s == Approx(4.3e12));
    CHECK(r.bf16_flops_per_s == Approx(7.88e14));
    // fp32: H200 vector datasheet x (fixture fp32 ceiling / H100 vector datasheet); both vector peaks are 67 TFLOP/s.
    CHECK(r.fp32_flops_per_s == Approx(5.1e13));
    CHECK_THAT(r.source, Contains("h200 measured (catalog)"));
  }
  SECTION("A100 has none: its datasheet scaled by the source's ceiling / datasheet") {
    const catalog::AcceleratorSpec a100 = test::accelerator("a100");
    REQUIRE_FALSE(a100.measured_hbm_bandwidth_bytes_per_s.has_value());
    REQUIRE_FALSE(a100.measured_matmul_flops_per_s.has_value());
    const DeviceRates r = transfer_target_rates(a100, test::device_a(), h100);
    CHECK(r.bytes_per_s == Approx(a100.hbm_bandwidth_bytes_per_s * 3.0e12 / h100.hbm_bandwidth_bytes_per_s));
    CHECK(r.bf16_flops_per_s ==
          Approx(a100.peak_matmul_flops_per_s.at("bf16") * 7.98e14 / h100.peak_matmul_flops_per_s.at("bf16")));
  }
  SECTION("without the source's datasheet the target's is used unscaled, and said so") {
    const catalog::AcceleratorSpec a100 = test::accelerator("a100");
    const DeviceRates r = transfer_target_rates(a100, test::device_a(), std::nullopt);
    CHECK(r.bytes_per_s == Approx(a100.hbm_bandwidth_bytes_per_s));
    CHECK_THAT(r.source, Contains("unscaled"));
  }
  SECTION("V100 has no bf16 matrix unit") {
    CHECK(transfer_target_rates(test::accelerator("v100"), test::device_a(), h100).bf16_flops_per_s == 0.0);
  }
}

}  // namespace
}  // namespace moesim::perf
