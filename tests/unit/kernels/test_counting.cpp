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
  CHECK(kernel_classes().size() == 9);
  for (KernelClass c : kernel_classes()) CHECK(parse_kernel_class(to_string(c)) == c);
  CHECK(to_string(KernelClass::decode_attention) == "decode_attention");
  CHECK(to_string(KernelClass::prefill_attention) == "prefill_attention");
  SECTION("unknown class") {
    CHECK_THROWS_WITH(parse_kernel_class("conv"), Catch::Contains("allowed: gemm") && Catch::Contains("prefill_attention"));
  }
}

TEST_CASE("kernels::counting: fp8 GEMMs read one byte per operand element and write bf16") {
  const Cost c = gemm_cost(4, 8, 16, DType::fp8, 2);
  CHECK(c.flops == 2.0 * 4 * 8 * 16);
  CHECK(c.bytes == (4 * 16 + 16 * 8) * 1.0 + 4 * 8 * 2.0);
  // Expert FFN in fp8: weights and x one byte, y bf16. rows 10, 2 experts, d 4, f 8, gated.
  const Cost f = expert_ffn_cost(10, 2, 4, 8, Activation::swiglu, DType::fp8);
  CHECK(f.flops == expert_ffn_cost(10, 2, 4, 8, Activation::swiglu, DType::bf16).flops);
  CHECK(f.bytes == 2 * (64 + 32) * 1.0 + 10 * 4 * 1.0 + 10 * 4 * 2.0);
}

TEST_CASE("kernels::counting: decode attention is the KV read once plus small terms") {
  // 2 sequences of 100 and 17 tokens, 8 query / 2 KV heads of 64, pages of 16, bf16 KV:
  // flops = 4·8·64·117; KV = 2·2·64·117·2; q + out = 2·2·8·64·2; pages 7 + 2 = 9 → 36 B; lengths 8 B.
  const Cost c = decode_attention_cost({100, 17}, 8, 2, 64, 16, DType::bf16);
  CHECK(c.flops == 4.0 * 8 * 64 * 117);
  CHECK(c.bytes == 2.0 * 2 * 64 * 117 * 2 + 2.0 * 2 * 8 * 64 * 2 + 4.0 * 9 + 4.0 * 2);
  // fp8 KV halves the dominant term and adds the two scales.
  const Cost f = decode_attention_cost({100, 17}, 8, 2, 64, 16, DType::fp8);
  CHECK(f.bytes == 2.0 * 2 * 64 * 117 * 1 + 2.0 * 2 * 8 * 64 * 2 + 4.0 * 9 + 4.0 * 2 + 8.0);
  CHECK(f.flops == c.flops);
  // Long contexts: the KV dominates (the "bytes = the KV read once").
  const Cost big = decode_attention_cost(std::vector<std::int64_t>(64, 8192), 32, 8, 128, 16, DType::bf16);
  const double kv = 2.0 * 8 * 128 * 64 * 8192 * 2;
  CHECK(big.bytes > kv);
  CHECK(big.bytes < 1.01 * kv);
  SECTION("bad shapes") {
    CHECK_THROWS_AS(decode_attention_cost({}, 8, 2, 64, 16, DType::bf16), moesim::Error);
    CHECK_THROWS_AS(decode_attention_cost({0}, 8, 2, 64, 16, DType::bf16), moesim::Error);
    CHECK_THROWS_AS(decode_attention_cost({4}, 6, 4, 64, 16, DType::bf16), moesim::Error);
    CHECK_THROWS_AS(decode_attention_cost({4}, 8, 2, 64, 0, DType::bf16), moesim::Error);
  }
}

TEST_CASE("kernels::counting: prefill attention counts unmasked pairs only") {
  CHECK(attention_pairs(4, 4, true) == 10.0);   // 1 + 2 + 3 + 4
  CHECK(attention_pairs(4, 4, false) == 16.0);
  CHECK(attention_pairs(2, 5, true) == 4.0 + 5.0);  // chunk of the last 2 of 5 positions
  CHECK(attention_pairs(1, 7, true) == 7.0);        // a decode step
  CHECK_THROWS_AS(attention_pairs(5, 4, true), moesim::Error);
  // Two sequences (3 and 5 tokens), 4 query / 2 KV heads of 8, bf16.
  const Cost c = prefill_attention_cost({3, 5}, {3, 5}, 4, 2, 8, true, DType::bf16);
  CHECK(c.flops == 4.0 * 4 * 8 * (6 + 15));
  CHECK(c.bytes == (2.0 * 4 * 8 + 2.0 * 2 * 8) * 8 * 2 + 8.0 * 3);
  CHECK(prefill_attention_cost({3, 5}, {3, 5}, 4, 2, 8, false, DType::bf16).flops == 4.0 * 4 * 8 * (9 + 25));
  SECTION("bad shapes") {
    CHECK_THROWS_AS(prefill_attention_cost({3}, {3, 5}, 4, 2, 8, true, DType::bf16), moesim::Error);
    CHECK_THROWS_AS(prefill_attention_cost({3}, {3}, 4, 3, 8, true, DType::bf16), moesim::Error);
  }
}
