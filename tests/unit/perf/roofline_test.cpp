// SPDX-License-Identifier: Apache-2.0
// RooflineModel: compute- vs memory-bound, tile padding, floor, per-device share, compute_paths.
#include <catch2/catch.hpp>

#include <vector>

#include "moesim/core/error.hpp"
#include "moesim/perf/compute_model.hpp"
#include "perf_test_support.hpp"

namespace moesim::perf {
namespace {

using Catch::Matchers::Contains;

/** A made-up accelerator with round numbers, so that every expected time is a hand calculation. */
catalog::AcceleratorSpec round_chip(int devices_per_chip = 1, int tile = 1) {
  catalog::AcceleratorSpec a;
  a.name = "round";
  a.kind = catalog::AcceleratorKind::gpu;
  a.devices_per_chip = devices_per_chip;
  a.peak_matmul_flops_per_s = {{"bf16", 1.0e15}};
  a.peak_vector_flops_per_s = 1.0e13;
  a.hbm_bandwidth_bytes_per_s = 1.0e12;
  a.matmul_tile = tile;
  return a;
}

EfficiencyTable round_table() {
  EfficiencyTable t;
  ClassEfficiency gemm;
  gemm.eta_compute = 0.5;
  gemm.eta_memory = 0.8;
  gemm.floor_s = 1.0e-5;
  gemm.source = "test";
  t.set("round", KernelClass::gemm, gemm);
  ClassEfficiency vec;
  vec.eta_compute = 1.0;
  vec.eta_memory = 0.5;
  vec.floor_s = 2.0e-6;
  vec.uses_matrix_unit = false;
  vec.source = "test";
  t.set("round", KernelClass::elementwise, vec);
  return t;
}

KernelOp gemm_op(double m, double n, double k, const std::string& dtype = "bf16", double batch = 1.0) {
  const double b = dtype == "bf16" ? 2.0 : 4.0;
  return moesim::perf::gemm_op("test.gemm", m, n, k, batch, dtype, b, b);
}

/** A grouped GEMM of `group_m` rows per group, each [k x n]. */
KernelOp grouped_op(double n, double k, const std::vector<double>& group_m) {
  double rows = 0.0;
  for (double gm : group_m) rows += gm;
  KernelOp op = gemm_op(rows, n, k);
  op.cls = KernelClass::grouped_gemm;
  op.group_m = group_m;
  return op;
}

TEST_CASE("perf::RooflineModel: a large GEMM is compute-bound, a thin one memory-bound", "[perf][roofline]") {
  const RooflineModel model(round_chip(), round_table());
  SECTION("compute-bound: 4096^3") {
    const KernelOp op = gemm_op(4096, 4096, 4096);
    const KernelTime t = model.time(op);
    // 2 x 4096^3 = 1.374e11 FLOP at 0.5 x 1e15 -> 2.749e-4 s; 3 x 4096^2 x 2 B = 1.007e8 B at 0.8 x 1e12 -> 1.258e-4 s.
    CHECK(t.compute_s == Approx(op.flops / 0.5e15).epsilon(1e-12));
    CHECK(t.memory_s == Approx(op.bytes / 0.8e12).epsilon(1e-12));
    CHECK(t.compute_s > t.memory_s);
    CHECK(t.time_s == Approx(t.compute_s + 1.0e-5).epsilon(1e-12));
    CHECK(t.path == TimePath::roofline);
    CHECK_FALSE(t.synthetic);
  }
  SECTION("memory-bound: m = 8") {
    const KernelTime t = model.time(gemm_op(8, 4096, 4096));
    CHECK(t.memory_s > t.compute_s);
    CHECK(t.time_s == Approx(t.memory_s + 1.0e-5).epsilon(1e-12));
  }
  SECTION("a class the table lacks is an error naming it") {
    KernelOp op = gemm_op(8, 8, 8);
    op.cls = KernelClass::router;
    CHECK_THROWS_WITH(model.time(op), Contains("router") && Contains("round"));
  }
  SECTION("a dtype the chip lacks is an error naming the supported ones") {
    CHECK_THROWS_AS(model.time(gemm_op(64, 64, 64, "fp8")), Error);
  }
}

TEST_CASE("perf::RooflineModel: the floor is added to every kernel, alone when there is no work", "[perf][roofline]") {
  const RooflineModel model(round_chip(), round_table());
  KernelOp op;
  op.cls = KernelClass::elementwise;
  op.dtype = "bf16";
  CHECK(model.time(op).time_s == Approx(2.0e-6));
  op.bytes = 1.0e6;  // 1e6 B at 0.5 x 1e12 = 2 us, + 2 us floor
  CHECK(model.time(op).time_s == Approx(4.0e-6));
  // Vector work runs at the vector peak (1e13), not the matrix unit's.
  op.bytes = 0.0;
  op.flops = 1.0e8;
  CHECK(model.time(op).compute_s == Approx(1.0e8 / 1.0e13));
}

TEST_CASE("perf::RooflineModel: TPU matrix dimensions are padded to the 128 tile", "[perf][roofline]") {
  const catalog::AcceleratorSpec v3 = test::accelerator("tpu_v3");
  REQUIRE(v3.matmul_tile == 128);
  const RooflineModel model(v3, test::efficiency());
  SECTION("a 100^3 GEMM does the work of 128^3") {
    const KernelTime t = model.time(gemm_op(100, 100, 100));
    CHECK(t.padded_flops == Approx(2.0 * 128 * 128 * 128));
    // A TPU v3 device is one of the chip's two cores: half the chip's 123 TFLOP/s (profiles/accelerators/tpu_v3.yaml).
    CHECK(t.compute_s == Approx(t.padded_flops / (0.85 * 1.23e14 / 2.0)).epsilon(1e-12));
  }
  SECTION("grouped GEMM pads every group's rows") {
    const KernelOp op = grouped_op(200, 128, {1, 130, 0});
    CHECK(model.time(op).padded_flops == Approx(2.0 * (128 + 256 + 0) * 256 * 128));
  }
  SECTION("no padding on a 1-wide tile") {
    const RooflineModel flat(round_chip(), round_table());
    CHECK(flat.time(gemm_op(100, 100, 100)).padded_flops == Approx(2.0e6));
  }
}

TEST_CASE("perf::wave_efficiency: a GPU GEMM's output tiles run in waves over the SMs", "[perf][roofline]") {
  catalog::AcceleratorSpec gpu = round_chip();
  gpu.sm_count = 100;
  gpu.gemm_block_tile = {256, 128};
  SECTION("hand-computed tile counts") {
    // 2560 x 1280 in 256 x 128 tiles: 10 x 10 = 100 tiles, one full wave (128 x 256 would also give 100).
    CHECK(wave_efficiency(gemm_op(2560, 1280, 64), gpu) == Approx(1.0));
    // 2561 rows: 11 x 10 = 110 tiles as 256 x 128 (90 idle slots in two waves), 21 x 5 = 105 as 128 x 256 (95 idle).
    CHECK(wave_efficiency(gemm_op(2561, 1280, 64), gpu) == Approx(110.0 / 200.0));
    // A batch multiplies the tiles: 3 x 10 x 10 = 300 tiles, three full waves.
    CHECK(wave_efficiency(gemm_op(2560, 1280, 64, "bf16", 3.0), gpu) == Approx(1.0));
  }
  SECTION("one wave or less spreads over the SMs: 1") {
    // 3 x (2 x 4) = 24 tiles of 100 slots.
    CHECK(wave_efficiency(gemm_op(512, 512, 64, "bf16", 3.0), gpu) == 1.0);
    CHECK(wave_efficiency(gemm_op(8, 1280, 64), gpu) == 1.0);
  }
  SECTION("the orientation with fewer idle slots is taken") {
    // 384 x 8960: 2 x 70 = 140 tiles as 256 x 128 (0.70), 3 x 35 = 105 as 128 x 256 (0.525).
    CHECK(wave_efficiency(gemm_op(384, 8960, 64), gpu) == Approx(0.70));
    // 384 x 6528: 2 x 51 = 102 tiles as 256 x 128 (two waves), 3 x 26 = 78 as 128 x 256 (one wave).
    CHECK(wave_efficiency(gemm_op(384, 6528, 64), gpu) == 1.0);
  }
  SECTION("an output of fewer than two waves may split a long K; K at most the output's longest side per split") {
    // 2816 x 1280: 11 x 10 = 110 tiles (0.55). K = 3 x 2816 allows 3 splits: 330 tiles in 4 waves (0.825).
    CHECK(wave_efficiency(gemm_op(2816, 1280, 64), gpu) == Approx(0.55));
    CHECK(wave_efficiency(gemm_op(2816, 1280, 2816), gpu) == Approx(0.55));
    CHECK(wave_efficiency(gemm_op(2816, 1280, 2 * 2816), gpu) == Approx(220.0 / 300.0));
    CHECK(wave_efficiency(gemm_op(2816, 1280, 3 * 2816), gpu) == Approx(330.0 / 400.0));
    // 2816 x 2560: 220 tiles, two waves or more: not split however long K is.
    CHECK(wave_efficiency(gemm_op(2816, 2560, 1.0e5), gpu) == Approx(220.0 / 300.0));
  }
  SECTION("a grouped GEMM's tiles are summed over its groups; empty groups have none") {
    // (1 + 2) x 50 = 150 tiles as 256 x 128 (0.75); (2 + 3) x 25 = 125 as 128 x 256.
    CHECK(wave_efficiency(grouped_op(6400, 64, {256, 300, 0}), gpu) == Approx(0.75));
  }
  SECTION("the roofline divides the compute term by it; no sm_count, another class or a TPU: 1") {
    const RooflineModel waves(gpu, round_table()), flat(round_chip(), round_table());
    const KernelOp op = gemm_op(2561, 1280, 4096);
    CHECK(waves.time(op).compute_s == Approx(flat.time(op).compute_s * 200.0 / 110.0).epsilon(1e-12));
    CHECK(wave_efficiency(op, round_chip()) == 1.0);
    KernelOp vec = op;
    vec.cls = KernelClass::elementwise;
    CHECK(wave_efficiency(vec, gpu) == 1.0);
    CHECK(wave_efficiency(op, test::accelerator("tpu_v3")) == 1.0);
  }
  SECTION("the catalog's H100: the measured 8192^3 GEMM's 2048 tiles fill 16 waves of 132 SMs to 0.970") {
    const catalog::AcceleratorSpec h100 = test::accelerator("h100");
    CHECK(wave_efficiency(gemm_op(8192, 8192, 8192), h100) == Approx(2048.0 / 2112.0));
    // eta_compute is per full wave, so the roofline gives back the measured 798 TFLOP/s (0.807 of 989).
    const RooflineModel model(h100, test::efficiency());
    const KernelOp op = gemm_op(8192, 8192, 8192);
    CHECK(op.flops / model.time(op).compute_s == Approx(7.98e14).epsilon(0.002));
  }
}

TEST_CASE("perf::RooflineModel: a device of a 2-device chip gets half the chip's peak and bandwidth", "[perf][roofline]") {
  const RooflineModel one(round_chip(1), round_table());
  const RooflineModel two(round_chip(2), round_table());
  for (const KernelOp& op : {gemm_op(4096, 4096, 4096), gemm_op(8, 4096, 4096)}) {
    const KernelTime a = one.time(op), b = two.time(op);
    CHECK(b.compute_s == Approx(2.0 * a.compute_s));
    CHECK(b.memory_s == Approx(2.0 * a.memory_s));
    CHECK(b.floor_s == a.floor_s);
  }
}

TEST_CASE("perf::RooflineModel: an fp32 GEMM on a GPU runs on the vector units", "[perf][roofline]") {
  const catalog::AcceleratorSpec h100 = test::accelerator("h100");
  REQUIRE(h100.peak_matmul_flops_per_s.count("fp32") == 0);
  const RooflineModel model(h100, test::efficiency());
  const KernelOp op = gemm_op(4096, 4096, 4096, "fp32");
  CHECK(model.time(op).compute_s == Approx(op.flops / (0.832 * h100.peak_vector_flops_per_s)).epsilon(1e-12));
}

TEST_CASE("perf::EfficiencyTable: every kernel class has a sourced entry for TPUs and GPUs", "[perf][roofline]") {
  for (const std::string& name : kernel_class_names()) {
    for (const char* accel : {"tpu_v3", "h100"}) {
      INFO(name << " on " << accel);
      const ClassEfficiency& e = test::efficiency().get(test::accelerator(accel), kernel_class_from_string(name));
      CHECK_FALSE(e.source.empty());
      CHECK(e.eta_memory > 0.0);
      CHECK(e.eta_compute > 0.0);
    }
  }
  CHECK(kernel_class_from_string("decode_attention") == KernelClass::decode_attention);
  CHECK(to_string(KernelClass::prefill_attention) == "prefill_attention");
  CHECK_FALSE(uses_matmul_rate(KernelClass::decode_attention));
  CHECK(uses_matmul_rate(KernelClass::prefill_attention));
}

TEST_CASE("perf::RooflineModel: serving attention on the published efficiencies", "[perf][roofline]") {
  const catalog::AcceleratorSpec h100 = test::accelerator("h100");
  const RooflineModel model(h100, test::efficiency());
  SECTION("decode attention streams the KV cache on the vector units") {
    KernelOp op;
    op.cls = KernelClass::decode_attention;
    op.dtype = "fp8";  // an fp8 KV cache: the arithmetic still runs on the CUDA cores
    op.bytes = 4.0e9;
    op.flops = 1.6e10;
    const KernelTime t = model.time(op);
    CHECK(t.memory_s == Approx(4.0e9 / (0.90 * h100.hbm_bandwidth_bytes_per_s)).epsilon(1e-12));
    CHECK(t.compute_s == Approx(1.6e10 / h100.peak_vector_flops_per_s).epsilon(1e-12));
    CHECK(t.time_s == Approx(t.memory_s + 5.0e-6).epsilon(1e-12));
  }
  SECTION("prefill attention is compute-bound on the tensor cores, fp8 at its own efficiency") {
    KernelOp op;
    op.cls = KernelClass::prefill_attention;
    op.dtype = "bf16";
    op.flops = 1.0e12;
    op.bytes = 4.0e7;
    const KernelTime t = model.time(op);
    CHECK(t.compute_s == Approx(1.0e12 / (0.50 * h100.peak_matmul_flops_per_s.at("bf16"))).epsilon(1e-12));
    CHECK(t.time_s == Approx(t.compute_s + 5.0e-6).epsilon(1e-12));
    op.dtype = "fp8";
    CHECK(model.time(op).compute_s == Approx(1.0e12 / (0.61 * h100.peak_matmul_flops_per_s.at("fp8"))).epsilon(1e-12));
  }
  SECTION("on a TPU the attention products use the MXU") {
    const catalog::AcceleratorSpec tpu = test::accelerator("tpu_v3");
    const RooflineModel tm(tpu, test::efficiency());
    KernelOp op;
    op.cls = KernelClass::prefill_attention;
    op.dtype = "bf16";
    op.flops = 1.0e12;
    op.bytes = 1.0;
    const double share = 1.0 / tpu.devices_per_chip;
    CHECK(tm.time(op).compute_s == Approx(1.0e12 / (0.30 * share * tpu.peak_matmul_flops_per_s.at("bf16"))).epsilon(1e-12));
  }
}

TEST_CASE("perf::compute_paths: the roofline model reports every class as roofline", "[perf][roofline]") {
  const RooflineModel model(test::accelerator("h100"), test::efficiency());
  const auto paths = compute_paths(model);
  REQUIRE(paths.size() == kernel_class_names().size());
  for (const auto& [cls, path] : paths) CHECK(path == "roofline");
}

}  // namespace
}  // namespace moesim::perf
