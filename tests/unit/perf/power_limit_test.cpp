// SPDX-License-Identifier: Apache-2.0
// A kernel under a board power limit (perf/power_limit.hpp): the clock ratio solved by hand for compute-bound and
// memory-bound kernels, the power held at the limit, and the decorated model on a catalog GPU.
#include <catch2/catch.hpp>

#include <cmath>

#include "moesim/core/error.hpp"
#include "moesim/perf/power_limit.hpp"
#include "perf_test_support.hpp"

using namespace moesim;
using namespace moesim::perf;

namespace {

KernelTime kernel(double compute_s, double memory_s, double floor_s = 0.0) {
  KernelTime t;
  t.compute_s = compute_s;
  t.memory_s = memory_s;
  t.floor_s = floor_s;
  t.time_s = std::max(compute_s, memory_s) + floor_s;
  return t;
}

}  // namespace

TEST_CASE("perf::limit_kernel: the clock ratio and time, by hand", "[perf][power]") {
  const double active = 145.0;
  SECTION("within the limit: nothing changes") {
    const PowerLimited l = limit_kernel(kernel(1e-3, 0.0), 480.0, active, 500.0);
    CHECK(l.clock_ratio == 1.0);
    CHECK(l.time_s == 1e-3);
    CHECK(l.power_w == 480.0);
  }
  SECTION("compute-bound: dynamic power falls as r^3, time grows as 1/r") {
    // P(r) = 145 + 555 r^3 = 500  ->  r = (355 / 555)^(1/3)
    const PowerLimited l = limit_kernel(kernel(1e-3, 0.0), 700.0, active, 500.0);
    const double r = std::cbrt(355.0 / 555.0);
    CHECK(l.clock_ratio == Approx(r).epsilon(1e-9));
    CHECK(l.time_s == Approx(1e-3 / r).epsilon(1e-9));
    CHECK(l.power_w == Approx(500.0).epsilon(1e-9));
  }
  SECTION("memory-bound: the voltage falls at no cost in time while the compute term stays below the memory term") {
    // P(r) = 145 + 455 r^2 = 500 -> r = sqrt(355/455) = 0.883; the compute term 0.2 ms / r = 0.23 ms < 1 ms.
    const PowerLimited l = limit_kernel(kernel(0.2e-3, 1e-3), 600.0, active, 500.0);
    CHECK(l.clock_ratio == Approx(std::sqrt(355.0 / 455.0)).epsilon(1e-9));
    CHECK(l.time_s == Approx(1e-3).epsilon(1e-12));
    CHECK(l.power_w == Approx(500.0).epsilon(1e-9));
  }
  SECTION("memory-bound until the compute term catches up, then compute-bound") {
    // r^2 alone would need r = sqrt(155/555) = 0.53, where 0.9 ms / r > 1 ms: the kernel is then compute-bound,
    // P(r) = 145 + 555 r^2 x 1 ms / (0.9 ms / r) = 145 + 616.67 r^3 = 300.
    const PowerLimited l = limit_kernel(kernel(0.9e-3, 1e-3), 700.0, active, 300.0);
    const double r = std::cbrt(155.0 / (555.0 / 0.9));
    CHECK(0.9e-3 / r > 1e-3);
    CHECK(l.clock_ratio == Approx(r).epsilon(1e-9));
    CHECK(l.time_s == Approx(0.9e-3 / r).epsilon(1e-9));
    CHECK(l.power_w == Approx(300.0).epsilon(1e-9));
  }
  SECTION("the launch floor does not stretch") {
    const PowerLimited l = limit_kernel(kernel(1e-3, 0.0, 1e-4), 700.0, active, 500.0);
    const double r = l.clock_ratio;
    CHECK(l.time_s == Approx(1e-3 / r + 1e-4).epsilon(1e-12));
    CHECK(145.0 + 555.0 * r * r * 1.1e-3 / l.time_s == Approx(500.0).epsilon(1e-9));
  }
  SECTION("a limit at or below the active power is refused") {
    CHECK_THROWS_AS(limit_kernel(kernel(1e-3, 0.0), 700.0, active, 145.0), Error);
  }
}

TEST_CASE("perf::power_limited: an fp8 GEMM on the H200 under MLPerf's MaxQ limit", "[perf][power]") {
  const catalog::AcceleratorSpec h200 = test::accelerator("h200");
  KernelOp op;
  op.cls = KernelClass::gemm;
  op.name = "ffn.up";
  op.dtype = "fp8";
  op.m = 8192;
  op.n = 28672;
  op.k = 4096;
  op.flops = 2.0 * op.m * op.n * op.k;
  op.bytes = op.m * op.k + op.k * op.n + 2.0 * op.m * op.n;
  auto base = std::make_unique<RooflineModel>(h200, test::efficiency());
  const KernelTime nominal = base->time(op);
  const PeakTimes np = peak_times(op, nominal.padded_flops, h200);
  const double nominal_w = h200.compute_power_w(np.matrix_s / nominal.time_s, np.hbm_s / nominal.time_s);
  REQUIRE(nominal_w > 500.0);  // the GEMM would draw more than MaxQ's 500 W at the nominal clock

  const auto capped = power_limited(std::make_unique<RooflineModel>(h200, test::efficiency()), h200, 500.0);
  const KernelTime t = capped->time(op);
  CHECK(t.clock_ratio < 1.0);
  CHECK(t.energy_scale == Approx(t.clock_ratio * t.clock_ratio).epsilon(1e-12));
  CHECK(t.time_s > nominal.time_s);
  // What the engine computes the chip's power from: the energy-weighted peak times over the kernel's time.
  const PeakTimes pp = power_peak_times(op, t, h200);
  CHECK(h200.compute_power_w(pp.matrix_s / t.time_s, pp.hbm_s / t.time_s) == Approx(500.0).epsilon(1e-6));
  CHECK(capped->describe().find("500 W power limit") != std::string::npos);

  SECTION("the accelerator's own limit changes nothing (the curve never exceeds full power)") {
    const auto own = power_limited(std::make_unique<RooflineModel>(h200, test::efficiency()), h200, h200.full_w);
    const KernelTime u = own->time(op);
    CHECK(u.time_s == nominal.time_s);
    CHECK(u.energy_scale == 1.0);
  }
  SECTION("limits outside (active, full] are refused") {
    CHECK_THROWS_AS(power_limited(std::make_unique<RooflineModel>(h200, test::efficiency()), h200, h200.active_w), Error);
    CHECK_THROWS_AS(power_limited(std::make_unique<RooflineModel>(h200, test::efficiency()), h200, h200.full_w + 1.0), Error);
  }
  SECTION("without a limit the decorator is not applied") {
    const auto plain = with_power_limit(std::make_unique<RooflineModel>(h200, test::efficiency()), h200, std::nullopt);
    CHECK(plain->time(op).time_s == nominal.time_s);
  }
}
