// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

/** CPU-side vocabulary of the MoE kernels: element types, activations, dispatch layouts and the
 *  bfloat16 rounding used to give CPU references the exact inputs the GPU sees. Plain C++17, no
 *  CUDA headers, so both the simulator-side tests and the CUDA profiler can use it. */
namespace moesim::kernels {

/** Element type of a kernel's activations and weights. Accumulation is always fp32 on the GPU
 *  (fp64 in the CPU references). `fp8` is OCP FP8 E4M3 (NVIDIA's `__nv_fp8_e4m3`, "E4M3FN": 4
 *  exponent bits with bias 7, 3 mantissa bits, no infinities, largest finite value 448; OCP 8-bit
 *  Floating Point Specification (OFP8) rev. 1.0, 2023, section 5.3), always used with a per-tensor
 *  fp32 scale (real value = scale · stored value). */
enum class DType { bf16, fp32, fp8 };

/** Bytes per element: bf16 2, fp32 4 (IEEE 754 binary32; bfloat16 = top half of binary32), fp8 1. */
std::size_t dtype_bytes(DType dtype);
/** "bf16" / "fp32" / "fp8". */
std::string to_string(DType dtype);
/** Parses "bf16", "fp32" or "fp8"; throws moesim::Error naming the allowed values otherwise. */
DType parse_dtype(std::string_view text);

/** FFN activation. `gelu` is the tanh approximation (Hendrycks & Gimpel 2016, arXiv:1606.08415,
 *  section 2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). `swiglu` and `geglu` are the gated
 *  variants of Shazeer 2020 (arXiv:2002.05202): act(x·W1) ⊙ (x·W3) with act = SiLU (x·σ(x)) or
 *  the GeLU above. `relu` is max(x, 0). */
enum class Activation { relu, gelu, swiglu, geglu };

std::string to_string(Activation act);
/** Parses "relu", "gelu", "swiglu", "geglu"; throws moesim::Error otherwise. */
Activation parse_activation(std::string_view text);
/** True for the gated activations (three weight matrices instead of two). */
bool is_gated(Activation act);
/** The activation applied to one value in fp64 (for gated ones: the gate non-linearity alone). */
double activate(Activation act, double x);

/** Layout of the permuted (dispatched) token buffer.
 *  `contiguous`: expert e's kept rows occupy rows [offset_e, offset_e + count_e), no gaps.
 *  `padded`: expert e owns rows [e·capacity, (e+1)·capacity); rows past count_e are padding (zero). */
enum class DispatchLayout { contiguous, padded };

std::string to_string(DispatchLayout layout);

/** Rounds a float to the nearest bfloat16 (ties to even), returned as its 16 raw bits. NaN stays
 *  NaN (quiet); infinities stay infinite. */
std::uint16_t float_to_bf16_bits(float value);
/** Widens bfloat16 bits to the float with the same value (exact). */
float bf16_bits_to_float(std::uint16_t bits);
/** The float nearest to `value` that bfloat16 can represent (round to nearest even). */
float round_to_bf16(float value);
/** Largest finite E4M3 value: 1.75 · 2^8 = 448 (OFP8 rev. 1.0, Table 1). */
inline constexpr float kE4m3Max = 448.0f;

/** Rounds a float to E4M3 with round-to-nearest-even, saturating: every finite value beyond ±448,
 *  and ±infinity, becomes ±448 (the `__NV_SATFINITE` conversion of cuda_fp8.h); NaN becomes the
 *  NaN code 0x7F (0xFF when negative); values below half the smallest subnormal (2^-10) become
 *  ±0. Returns the 8 raw bits (sign, 4 exponent bits, 3 mantissa bits). */
std::uint8_t float_to_e4m3_bits(float value);
/** The float with the value of E4M3 bits (exact; 0x7F / 0xFF are NaN). */
float e4m3_bits_to_float(std::uint8_t bits);
/** The float nearest to `value` that E4M3 can represent (RNE, saturating at ±448). */
float round_to_e4m3(float value);

/** Rounds every element in place to the values `dtype` can hold (no-op for fp32; fp8: E4M3 with
 *  scale 1, saturating). */
void round_to_dtype(std::vector<float>& values, DType dtype);

/** n test/benchmark values: magnitude uniform in [0.25, 1]·scale, random sign (never zero),
 *  rounded to `dtype`; deterministic for a given seed (std::mt19937_64). */
std::vector<float> random_values(std::size_t n, std::uint64_t seed, float scale, DType dtype);

}  // namespace moesim::kernels
