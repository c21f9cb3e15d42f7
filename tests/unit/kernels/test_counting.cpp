// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/kernels/counting.hpp"

using namespace moesim::kernels;

TEST_CASE("kernels::counting: GEMM FLOPs and minimum bytes") {
  const Cost c = gemm_cost(2, 3, 4, DType::bf16, 2);
  CHECK(c.flops == 2.0 * 2 * 3 * 4);
  CHECK(c.bytes == (2 * 4 + 4 * 3) * 2.0 + 2 * 3 * 2.0);
  const Cost logits = gemm_cost(8, 64, 1024, DType::bf16, 4);  // router gate: fp32 output
  CHECK(logits.bytes == (8 * 1024 + 1024 * 64) * 2.0 + 8 * 64 * 4.0);
  const Cost b = batched_gemm_cost(3, 2, 3, 4, DType::fp32);
  CHECK(b.flops == 3 * gemm_cost(2, 3, 4, DType::fp32, 4).flops);
  CHECK(b.bytes == 3 * gemm_cost(2, 3, 4, DType::fp32, 4).bytes);
}

TEST_CASE("kernels::counting: expert FFN counts real rows and active experts' weights") {
  // rows 10, 2 active experts, d 4, f 8, gated, bf16:
  // flops = 2·10·4·8·2 + 2·10·8·4 = 1280 + 640; bytes = 2·(4·2·8 + 8·4)·2 + 2·10·4·2
  const Cost c = expert_ffn_cost(10, 2, 4, 8, Activation::swiglu, DType::bf16);
  CHECK(c.flops == 1920.0);
  CHECK(c.bytes == 2 * (64 + 32) * 2.0 + 160.0);
  const Cost plain = expert_ffn_cost(10, 2, 4, 8, Activation::gelu, DType::bf16);
  CHECK(plain.flops == 2.0 * 10 * 4 * 8 * 2);
  CHECK(dense_ffn_cost(10, 4, 8, Activation::gelu, DType::fp32).bytes ==
        expert_ffn_cost(10, 1, 4, 8, Activation::gelu, DType::fp32).bytes);
}

TEST_CASE("kernels::counting: data-movement kernels count bytes, no FLOPs") {
  // router: 4·T·E + 12·T·k + 4·rows + 8·E with T=100, E=8, k=2, rows=190
  const Cost r = router_cost(100, 8, 2, 190);
  CHECK(r.flops == 0.0);
  CHECK(r.bytes == 3200.0 + 2400.0 + 760.0 + 64.0);
  // permute: kept·d·s + rows·d·s + 4·rows
  CHECK(permute_cost(90, 100, 16, DType::bf16).bytes == 90 * 32.0 + 100 * 32.0 + 400.0);
  // unpermute: kept·d·s + 8·T·k + T·d·s
  CHECK(unpermute_cost(50, 2, 90, 16, DType::fp32).bytes == 90 * 64.0 + 800.0 + 50 * 64.0);
  CHECK(activation_cost(10, 8, Activation::geglu, DType::bf16).bytes == 10 * 16 * 2.0 + 10 * 8 * 2.0);
  CHECK(activation_cost(10, 8, Activation::relu, DType::fp32).bytes == 2 * 10 * 8 * 4.0);
  CHECK(copy_cost(1000).bytes == 2000.0);
}

TEST_CASE("kernels::KernelClass: names round-trip and unknown names are rejected") {
  for (KernelClass c : {KernelClass::gemm, KernelClass::batched_gemm, KernelClass::grouped_gemm, KernelClass::router,
                        KernelClass::permute, KernelClass::unpermute, KernelClass::elementwise}) {
    CHECK(parse_kernel_class(to_string(c)) == c);
  }
  SECTION("unknown class") { CHECK_THROWS_WITH(parse_kernel_class("conv"), Catch::Contains("allowed: gemm")); }
}
