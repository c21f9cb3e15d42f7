// SPDX-License-Identifier: Apache-2.0
// RooflineModel: compute- vs memory-bound, tile padding, floor, per-device share, compute_paths.
#include <catch2/catch.hpp>

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
  KernelOp op;
  op.cls = KernelClass::gemm;
  op.name = "test.gemm";
  op.dtype = dtype;
  op.m = m;
  op.n = n;
  op.k = k;
  op.batch = batch;
  op.flops = 2.0 * batch * m * n * k;
  op.bytes = batch * (m * k + k * n + m * n) * (dtype == "bf16" ? 2.0 : 4.0);
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
    KernelOp op;
    op.cls = KernelClass::grouped_gemm;
    op.dtype = "bf16";
    op.n = 200;
    op.k = 128;
    op.group_m = {1, 130, 0};
    op.m = 131;
    op.flops = 2.0 * 131 * 200 * 128;
    op.bytes = 1.0;
    CHECK(model.time(op).padded_flops == Approx(2.0 * (128 + 256 + 0) * 256 * 128));
  }
  SECTION("no padding on a 1-wide tile") {
    const RooflineModel flat(round_chip(), round_table());
    CHECK(flat.time(gemm_op(100, 100, 100)).padded_flops == Approx(2.0e6));
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
  CHECK(model.time(op).compute_s == Approx(op.flops / (0.807 * h100.peak_vector_flops_per_s)).epsilon(1e-12));
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
