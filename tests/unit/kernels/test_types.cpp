// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "moesim/core/error.hpp"
#include "moesim/kernels/types.hpp"

using namespace moesim::kernels;

TEST_CASE("kernels::bf16: rounding is to nearest, ties to even") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(-2.5f) == -2.5f);
  // bf16 keeps 7 mantissa bits: the spacing just above 1 is 2^-7.
  const float half_ulp = std::ldexp(1.0f, -8);
  CHECK(round_to_bf16(1.0f + half_ulp) == 1.0f);                                     // tie → even (1.0)
  CHECK(round_to_bf16(1.0f + 3 * half_ulp) == 1.0f + std::ldexp(1.0f, -6));          // tie → even (1 + 2^-6)
  CHECK(round_to_bf16(1.0f + 1.5f * half_ulp) == 1.0f + std::ldexp(1.0f, -7));       // above the tie → up
  CHECK(float_to_bf16_bits(1.0f) == 0x3F80);
  CHECK(bf16_bits_to_float(0xC000) == -2.0f);
  SECTION("special values survive") {
    CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
    CHECK(std::isinf(round_to_bf16(std::numeric_limits<float>::infinity())));
    CHECK(round_to_bf16(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  }
}

TEST_CASE("kernels::DType: names parse and unknown names are rejected") {
  CHECK(parse_dtype("bf16") == DType::bf16);
  CHECK(parse_dtype("fp32") == DType::fp32);
  CHECK(dtype_bytes(DType::bf16) == 2);
  CHECK(dtype_bytes(DType::fp32) == 4);
  SECTION("unknown dtype") {
    CHECK_THROWS_WITH(parse_dtype("fp16"), Catch::Contains("allowed: bf16, fp32"));
  }
}

TEST_CASE("kernels::Activation: values of the defining formulas") {
  CHECK(activate(Activation::relu, -1.0) == 0.0);
  CHECK(activate(Activation::relu, 2.0) == 2.0);
  CHECK(activate(Activation::gelu, 0.0) == 0.0);
  // 0.5·(1 + tanh(√(2/π)·1.044715)) = 0.841192 (tanh approximation at x = 1)
  CHECK(activate(Activation::gelu, 1.0) == Approx(0.8411919906).epsilon(1e-9));
  CHECK(activate(Activation::geglu, 1.0) == activate(Activation::gelu, 1.0));
  CHECK(activate(Activation::swiglu, 1.0) == Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-12));
  CHECK(is_gated(Activation::swiglu));
  CHECK(is_gated(Activation::geglu));
  CHECK_FALSE(is_gated(Activation::gelu));
  CHECK(parse_activation("geglu") == Activation::geglu);
  SECTION("unknown activation") { CHECK_THROWS_AS(parse_activation("tanh"), moesim::Error); }
}

TEST_CASE("kernels::random_values: non-zero, bounded, deterministic, representable") {
  const auto a = random_values(1000, 42, 2.0f, DType::bf16);
  const auto b = random_values(1000, 42, 2.0f, DType::bf16);
  CHECK(a == b);
  CHECK(a != random_values(1000, 43, 2.0f, DType::bf16));
  int negative = 0;
  for (float v : a) {
    CHECK(std::abs(v) >= 0.49f);  // 0.25·2 rounded to bf16 can dip by < 1 %
    CHECK(std::abs(v) <= 2.0f);
    CHECK(round_to_bf16(v) == v);
    negative += v < 0;
  }
  CHECK(negative > 400);
  CHECK(negative < 600);
}
