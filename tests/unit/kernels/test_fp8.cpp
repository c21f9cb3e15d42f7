// SPDX-License-Identifier: Apache-2.0
// E4M3 rounding (OFP8 rev. 1.0: bias 7, 3 mantissa bits, no infinities, max 448) and the fp8 GEMM
// reference with per-tensor scales.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "moesim/core/error.hpp"
#include "moesim/kernels/reference.hpp"
#include "moesim/kernels/types.hpp"

using namespace moesim::kernels;

TEST_CASE("kernels::fp8: E4M3 codes decode to the values of the format") {
  CHECK(e4m3_bits_to_float(0x00) == 0.0f);
  CHECK(std::signbit(e4m3_bits_to_float(0x80)));
  CHECK(e4m3_bits_to_float(0x38) == 1.0f);                      // exponent 7 = bias: 2^0
  CHECK(e4m3_bits_to_float(0x39) == 1.125f);                    // mantissa 1: 1 + 1/8
  CHECK(e4m3_bits_to_float(0x7E) == 448.0f);                    // largest finite: 1.75 · 2^8
  CHECK(e4m3_bits_to_float(0xFE) == -448.0f);
  CHECK(e4m3_bits_to_float(0x08) == std::ldexp(1.0f, -6));     // smallest normal
  CHECK(e4m3_bits_to_float(0x01) == std::ldexp(1.0f, -9));     // smallest subnormal
  CHECK(e4m3_bits_to_float(0x07) == 7.0f * std::ldexp(1.0f, -9));
  CHECK(std::isnan(e4m3_bits_to_float(0x7F)));
  CHECK(std::isnan(e4m3_bits_to_float(0xFF)));
  CHECK(e4m3_bits_to_float(0x78) == 256.0f);                    // exponent 15 is finite (no infinities)
}

TEST_CASE("kernels::fp8: every finite code round-trips and the codes are ordered") {
  float previous = -1.0f;
  for (int code = 0; code <= 0x7E; ++code) {
    const float v = e4m3_bits_to_float(static_cast<std::uint8_t>(code));
    INFO("code " << code);
    CHECK(float_to_e4m3_bits(v) == code);
    CHECK(float_to_e4m3_bits(-v) == (code | 0x80));
    CHECK(v > previous);  // strictly increasing: no duplicate encodings among positive codes
    previous = v;
  }
}

TEST_CASE("kernels::fp8: round to nearest, ties to even") {
  // Between 1 (mantissa 0) and 1.125 (mantissa 1): the midpoint 1.0625 goes to the even mantissa 0.
  CHECK(round_to_e4m3(1.0625f) == 1.0f);
  // Between 1.125 (odd) and 1.25 (even): the midpoint 1.1875 goes up to 1.25.
  CHECK(round_to_e4m3(1.1875f) == 1.25f);
  CHECK(round_to_e4m3(1.07f) == 1.125f);   // above the midpoint
  CHECK(round_to_e4m3(1.06f) == 1.0f);     // below it
  CHECK(round_to_e4m3(-1.1875f) == -1.25f);
  // Carry into the next binade: 1.9375 is the midpoint of 1.875 (odd mantissa 7) and 2 (even).
  CHECK(round_to_e4m3(1.9375f) == 2.0f);
  // Subnormals: spacing 2^-9; 2^-10 is the midpoint of 0 and 2^-9 → 0 (even); just above → 2^-9.
  const float sub = std::ldexp(1.0f, -9);
  CHECK(round_to_e4m3(std::ldexp(1.0f, -10)) == 0.0f);
  CHECK(round_to_e4m3(std::ldexp(1.0f, -10) * 1.01f) == sub);
  CHECK(round_to_e4m3(2.5f * sub) == 2.0f * sub);  // tie → even multiple
  CHECK(round_to_e4m3(3.5f * sub) == 4.0f * sub);
  // The largest subnormal rounds up into the smallest normal.
  CHECK(round_to_e4m3(7.6f * sub) == std::ldexp(1.0f, -6));
  CHECK(float_to_e4m3_bits(-std::ldexp(1.0f, -12)) == 0x80);  // tiny negatives keep their sign
}

TEST_CASE("kernels::fp8: saturation at ±448, NaN stays NaN") {
  CHECK(round_to_e4m3(448.0f) == 448.0f);
  CHECK(round_to_e4m3(449.0f) == 448.0f);
  CHECK(round_to_e4m3(464.0f) == 448.0f);  // would round to 480 without saturation
  CHECK(round_to_e4m3(1.0e6f) == 448.0f);
  CHECK(round_to_e4m3(-1.0e6f) == -448.0f);
  CHECK(round_to_e4m3(std::numeric_limits<float>::infinity()) == 448.0f);
  CHECK(round_to_e4m3(-std::numeric_limits<float>::infinity()) == -448.0f);
  CHECK(round_to_e4m3(440.0f) == 448.0f);  // spacing 32 in [256, 512): 440 is nearer 448 than 416
  CHECK(round_to_e4m3(431.0f) == 416.0f);
  CHECK(std::isnan(round_to_e4m3(std::numeric_limits<float>::quiet_NaN())));
  CHECK(float_to_e4m3_bits(std::numeric_limits<float>::quiet_NaN()) == 0x7F);
}

TEST_CASE("kernels::fp8: relative rounding error is at most 2^-4 in the normal range") {
  for (float x = std::ldexp(1.0f, -6); x < 448.0f; x *= 1.0137f) {
    const float r = round_to_e4m3(x);
    CHECK(std::fabs(r - x) <= std::ldexp(1.0f, -4) * x);
  }
  CHECK(parse_dtype("fp8") == DType::fp8);
  CHECK(dtype_bytes(DType::fp8) == 1);
  CHECK(to_string(DType::fp8) == "fp8");
  std::vector<float> v{0.3f, -500.0f};
  round_to_dtype(v, DType::fp8);
  CHECK(v == std::vector<float>{0.3125f, -448.0f});
}

TEST_CASE("kernels::ref::fp8_scale and quantize_e4m3: the largest magnitude lands on 448") {
  const std::vector<float> x{0.5f, -3.5f, 1.25f};
  const double s = ref::fp8_scale(x);
  CHECK(s == Approx(3.5 / 448.0));
  const auto q = ref::quantize_e4m3(x, s);
  CHECK(q[1] == -448.0f);
  for (std::size_t i = 0; i < x.size(); ++i) {
    CHECK(round_to_e4m3(q[i]) == q[i]);                              // every element is an E4M3 value
    CHECK(std::fabs(q[i] * s - x[i]) <= std::ldexp(1.0, -4) * std::fabs(x[i]));  // within half a step
  }
  CHECK(ref::fp8_scale({0.0f, 0.0f}) == 1.0);
  SECTION("bad inputs") {
    CHECK_THROWS_AS(ref::fp8_scale({1.0f, std::numeric_limits<float>::infinity()}), moesim::Error);
    CHECK_THROWS_AS(ref::quantize_e4m3(x, 0.0), moesim::Error);
    CHECK_THROWS_AS(ref::quantize_e4m3(x, std::nan("")), moesim::Error);
  }
}

TEST_CASE("kernels::ref::gemm_fp8: scales multiply the E4M3 product") {
  // [1 2; 3 4] · [0.5 1; 1.5 2] = [3.5 5; 7.5 11], times 0.25 · 8 = 2.
  const std::vector<float> a{1, 2, 3, 4};
  const std::vector<float> b{0.5f, 1, 1.5f, 2};
  CHECK(ref::gemm_fp8(a, b, 0.25, 8.0, 2, 2, 2) == std::vector<double>{7, 10, 15, 22});
  // With B stored [n×k] (the TN layout cuBLASLt needs on Hopper): A·Bᵀ.
  CHECK(ref::gemm_fp8(a, b, 1.0, 1.0, 2, 2, 2, true) == ref::gemm(a, b, 2, 2, 2, true));
  SECTION("quantized GEMM approximates the exact one to fp8 precision") {
    const std::int64_t m = 16, n = 24, k = 64;
    const auto xa = random_values(static_cast<std::size_t>(m * k), 11, 2.0f, DType::fp32);
    const auto xb = random_values(static_cast<std::size_t>(k * n), 12, 0.1f, DType::fp32);
    const double sa = ref::fp8_scale(xa), sb = ref::fp8_scale(xb);
    const auto got = ref::gemm_fp8(ref::quantize_e4m3(xa, sa), ref::quantize_e4m3(xb, sb), sa, sb, m, n, k);
    const double err = ref::relative_frobenius_error(got, ref::gemm(xa, xb, m, n, k));
    CHECK(err > 1e-3);  // fp8 is visibly coarser than fp32 ...
    CHECK(err < 0.1);   // ... but within a few per cent (3 mantissa bits)
  }
  SECTION("operands that are not E4M3 values are refused") {
    CHECK_THROWS_WITH(ref::gemm_fp8({1.01f, 2, 3, 4}, b, 1.0, 1.0, 2, 2, 2), Catch::Contains("not an E4M3 value"));
    CHECK_THROWS_AS(ref::gemm_fp8(a, b, 0.0, 1.0, 2, 2, 2), moesim::Error);
    CHECK_THROWS_AS(ref::gemm_fp8(a, b, 1.0, 1.0, 2, 3, 2), moesim::Error);
  }
}

TEST_CASE("kernels::ref::expert_ffn_fp8: the fp8 pipeline step by step and against the exact FFN") {
  SECTION("by hand: d = f = 1, ReLU, one expert") {
    // h = 0.5 · 2 · (3 · 1.5) = 4.5 (bf16 exact); a = 4.5; qa = e4m3(4.5 / 0.25) = 18; y = 0.25 · 0.5 · 18 · 2 = 4.5
    ref::Segments one{{0}, {1}, 1};
    const auto y = ref::expert_ffn_fp8({3.0f}, 0.5, one, {1.5f}, {2.0}, {2.0f}, {0.5}, 0.25, 1, 1, Activation::relu);
    CHECK(y == std::vector<double>{4.5});
    // a = 4.6 would quantize: 4.6 / 0.25 = 18.4 → 18 (spacing 2 in [16, 32)), so y stays 4.5
    const auto y2 = ref::expert_ffn_fp8({3.0f}, 0.5, one, {1.5f}, {2.0}, {2.0f}, {0.5}, 0.25 * 4.5 / 4.6, 1, 1,
                                        Activation::relu);
    CHECK(y2[0] != 4.5);  // a different activation scale moves the quantization grid
  }
  SECTION("random gated FFN: close to the unquantized FFN, not equal") {
    const std::int64_t d = 16, f = 24, rows = 9;
    ref::Segments seg{{0, 4}, {4, 5}, rows};
    const auto x = random_values(static_cast<std::size_t>(rows * d), 31, 1.0f, DType::fp32);
    const auto w13 = random_values(static_cast<std::size_t>(2 * d * 2 * f), 32, 0.25f, DType::fp32);
    const auto w2 = random_values(static_cast<std::size_t>(2 * f * d), 33, 0.2f, DType::fp32);
    const double sx = ref::fp8_scale(x);
    const std::vector<float> w13e0(w13.begin(), w13.begin() + d * 2 * f), w13e1(w13.begin() + d * 2 * f, w13.end());
    const std::vector<float> w2e0(w2.begin(), w2.begin() + f * d), w2e1(w2.begin() + f * d, w2.end());
    const std::vector<double> s13{ref::fp8_scale(w13e0), ref::fp8_scale(w13e1)};
    const std::vector<double> s2{ref::fp8_scale(w2e0), ref::fp8_scale(w2e1)};
    std::vector<float> q13 = ref::quantize_e4m3(w13e0, s13[0]);
    const auto q13b = ref::quantize_e4m3(w13e1, s13[1]);
    q13.insert(q13.end(), q13b.begin(), q13b.end());
    std::vector<float> q2 = ref::quantize_e4m3(w2e0, s2[0]);
    const auto q2b = ref::quantize_e4m3(w2e1, s2[1]);
    q2.insert(q2.end(), q2b.begin(), q2b.end());
    const auto exact = ref::expert_ffn(x, seg, w13, w2, d, f, Activation::swiglu);
    // activation scale from the exact hidden activations' range
    const double sa = 4.0 / 448.0;
    const auto got = ref::expert_ffn_fp8(ref::quantize_e4m3(x, sx), sx, seg, q13, s13, q2, s2, sa, d, f, Activation::swiglu);
    const double err = ref::relative_frobenius_error(got, exact);
    CHECK(err > 1e-3);
    CHECK(err < 0.15);
    SECTION("unquantized operands are refused") {
      CHECK_THROWS_WITH(ref::expert_ffn_fp8(x, sx, seg, q13, s13, q2, s2, sa, d, f, Activation::swiglu),
                        Catch::Contains("E4M3"));
    }
    SECTION("a scale per expert") {
      CHECK_THROWS_AS(ref::expert_ffn_fp8(ref::quantize_e4m3(x, sx), sx, seg, q13, {1.0}, q2, s2, sa, d, f,
                                          Activation::swiglu),
                      moesim::Error);
    }
  }
}
