// SPDX-License-Identifier: Apache-2.0
// Every GPU kernel against its CPU reference (relative Frobenius error vs fp64: bf16 ≤ 1e-2,
// fp32 ≤ 1e-4; index maps and copies exact), plus the argument checks of the launchers.
#include <catch2/catch.hpp>

#include <iostream>

#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/attention.hpp"
#include "moesim/kernels/gpu/blas.hpp"
#include "moesim/kernels/gpu/ops.hpp"
#include "moesim/kernels/gpu/verify.hpp"

namespace gpu = moesim::kernels::gpu;
using moesim::kernels::Activation;
using moesim::kernels::DispatchLayout;
using moesim::kernels::DType;

namespace {
void check_group(const std::string& group) {
  gpu::Context ctx;
  const auto results = gpu::run_checks(ctx, group);
  REQUIRE_FALSE(results.empty());
  for (const auto& r : results) {
    std::cout << (r.skipped ? "  skip " : r.passed ? "  ok   " : "  FAIL ") << r.name << "  error=" << r.error
              << " tol=" << r.tolerance
              << (r.detail.empty() ? "" : "  (" + r.detail + ")") << '\n';
    INFO(r.name << ": error " << r.error << " > tolerance " << r.tolerance << " " << r.detail);
    CHECK(r.passed);
  }
}
}  // namespace

TEST_CASE("kernels_gpu::gemm: cuBLAS GEMMs, batched GEMMs and the fp32-output gate GEMM match fp64") {
  check_group("gemm");
}

TEST_CASE("kernels_gpu::router: softmax/top-k and capacity planning match the reference") { check_group("router"); }

TEST_CASE("kernels_gpu::permute: permute copies exactly and unpermute matches the weighted sum") {
  check_group("permute");
}

TEST_CASE("kernels_gpu::activation: ReLU, GeLU, SwiGLU and GEGLU match the reference") { check_group("activation"); }

TEST_CASE("kernels_gpu::ExpertFfn: loop, grouped, padded and fused_small strategies match the reference") {
  check_group("expert_ffn");
}

TEST_CASE("kernels_gpu::attention: paged decode (bf16/fp8 KV, GQA, split-KV) and causal varlen prefill match fp64") {
  check_group("attention");
}

TEST_CASE("kernels_gpu::fp8: E4M3 quantization bit-exact, cuBLASLt fp8 GEMM and fp8 expert FFN match the reference") {
  check_group("fp8");
}

TEST_CASE("kernels_gpu::launchers: bad arguments throw before any launch") {
  SECTION("top_k larger than experts") {
    CHECK_THROWS_AS(gpu::softmax_topk(nullptr, 4, 4, 5, false, nullptr, nullptr, nullptr, nullptr), moesim::Error);
  }
  SECTION("too many experts for the shared-memory row") {
    CHECK_THROWS_AS(gpu::softmax_topk(nullptr, 4, gpu::kMaxRouterExperts + 1, 1, false, nullptr, nullptr, nullptr,
                                      nullptr),
                    moesim::Error);
  }
  SECTION("zero capacity") {
    CHECK_THROWS_AS(gpu::plan_dispatch(nullptr, 4, 4, 1, 0, DispatchLayout::contiguous, {}, nullptr), moesim::Error);
  }
  SECTION("expert FFN without rows") {
    CHECK_THROWS_AS(gpu::ExpertFfn(DType::bf16, Activation::gelu, 64, 64, {0, 0}), moesim::Error);
    CHECK_THROWS_AS(gpu::ExpertFfn(DType::bf16, Activation::gelu, 64, 64, {}), moesim::Error);
  }
  SECTION("GEMM with a zero dimension") {
    gpu::Context ctx;
    CHECK_THROWS_AS(gpu::gemm(ctx.cublas(), DType::bf16, false, nullptr, nullptr, nullptr, 0, 4, 4), moesim::Error);
    CHECK_THROWS_AS(gpu::Fp8Gemm(ctx, 0, 16, 16), moesim::Error);
  }
  SECTION("cuBLAS GEMM with fp8 operands (they go through cuBLASLt)") {
    gpu::Context ctx;
    CHECK_THROWS_AS(gpu::gemm(ctx.cublas(), DType::fp8, false, nullptr, nullptr, nullptr, 4, 4, 4), moesim::Error);
  }
  SECTION("decode attention: unsupported head size, group too large, splits without workspace") {
    gpu::DecodeArgs a;
    a.batch = 1;
    a.q_heads = 8;
    a.kv_heads = 8;
    a.d_head = 96;
    a.block_size = 16;
    a.max_blocks = 1;
    CHECK_THROWS_WITH(gpu::decode_attention(a, nullptr), Catch::Contains("allowed: 64, 128, 256"));
    a.d_head = 256;
    a.q_heads = 128;
    a.kv_heads = 8;  // group 16 · 256 > 2048
    CHECK_THROWS_WITH(gpu::decode_attention(a, nullptr), Catch::Contains("exceeds 2048"));
    a.q_heads = 8;
    a.splits = 4;
    CHECK_THROWS_WITH(gpu::decode_attention(a, nullptr), Catch::Contains("workspace"));
    a.kv_heads = 3;
    CHECK_THROWS_AS(gpu::decode_attention(a, nullptr), moesim::Error);
  }
  SECTION("prefill attention: unsupported head size") {
    gpu::PrefillArgs a;
    a.batch = 1;
    a.q_heads = 4;
    a.kv_heads = 4;
    a.d_head = 256;
    a.max_q_len = 8;
    CHECK_THROWS_WITH(gpu::prefill_attention(a, nullptr), Catch::Contains("allowed: 64, 128"));
  }
  SECTION("small grouped GEMM and fp8 kernels: bad sizes and scales") {
    CHECK_THROWS_AS(gpu::small_grouped_gemm(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 1, 8, 8,
                                            gpu::SmallGemmEpilogue::none, Activation::relu, DType::bf16, nullptr),
                    moesim::Error);
    CHECK_THROWS_AS(gpu::quantize_fp8(nullptr, 4, DType::bf16, 0.0f, nullptr, nullptr), moesim::Error);
    CHECK_THROWS_AS(gpu::activation_fp8(nullptr, 4, 8, Activation::gelu, -1.0f, nullptr, nullptr), moesim::Error);
  }
}
