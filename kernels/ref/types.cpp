// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "moesim/core/error.hpp"

namespace moesim::kernels {

std::size_t dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::bf16: return 2;
    case DType::fp32: return 4;
    case DType::fp8: return 1;
  }
  return 4;
}

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::bf16: return "bf16";
    case DType::fp32: return "fp32";
    case DType::fp8: return "fp8";
  }
  return "?";
}

DType parse_dtype(std::string_view text) {
  if (text == "bf16") return DType::bf16;
  if (text == "fp32") return DType::fp32;
  if (text == "fp8") return DType::fp8;
  throw Error("unknown dtype '" + std::string(text) + "' (allowed: bf16, fp32, fp8)");
}

std::string to_string(Activation act) {
  switch (act) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::swiglu: return "swiglu";
    case Activation::geglu: return "geglu";
  }
  return "?";
}

Activation parse_activation(std::string_view text) {
  if (text == "relu") return Activation::relu;
  if (text == "gelu") return Activation::gelu;
  if (text == "swiglu") return Activation::swiglu;
  if (text == "geglu") return Activation::geglu;
  throw Error("unknown activation '" + std::string(text) + "' (allowed: relu, gelu, swiglu, geglu)");
}

bool is_gated(Activation act) { return act == Activation::swiglu || act == Activation::geglu; }

double activate(Activation act, double x) {
  // √(2/π) and 0.044715: the tanh approximation of GeLU, Hendrycks & Gimpel 2016, section 2.
  constexpr double kSqrt2OverPi = 0.7978845608028654;
  constexpr double kGeluCubic = 0.044715;
  switch (act) {
    case Activation::relu: return x > 0.0 ? x : 0.0;
    case Activation::gelu:
    case Activation::geglu: return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    case Activation::swiglu: return x / (1.0 + std::exp(-x));
  }
  return x;
}

std::string to_string(DispatchLayout layout) {
  return layout == DispatchLayout::contiguous ? "contiguous" : "padded";
}

std::uint16_t float_to_bf16_bits(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  if (std::isnan(value)) return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);  // keep it quiet NaN
  // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate.
  const std::uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7FFFu + lsb;
  return static_cast<std::uint16_t>(bits >> 16);
}

float bf16_bits_to_float(std::uint16_t bits) {
  const std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
  float value = 0.0f;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

float round_to_bf16(float value) { return bf16_bits_to_float(float_to_bf16_bits(value)); }

namespace {
// E4M3 layout (OFP8 rev. 1.0, section 5.3): exponent bias 7; the smallest normal is 2^-6; a
// subnormal is m/8 · 2^-6, so the subnormal spacing is 2^-9; the mantissa has 3 bits.
constexpr int kE4m3Bias = 7;
constexpr int kE4m3MinNormalExp = -6;
constexpr int kE4m3MantissaBits = 3;
constexpr std::uint8_t kE4m3NaN = 0x7F;
constexpr std::uint8_t kE4m3MaxCode = 0x7E;  // exponent 15, mantissa 6: 1.75 · 2^8 = 448

/** Round half to even of a non-negative double. */
double round_half_even(double v) {
  const double down = std::floor(v);
  const double frac = v - down;
  if (frac > 0.5) return down + 1.0;
  if (frac < 0.5) return down;
  return std::fmod(down, 2.0) == 0.0 ? down : down + 1.0;
}
}  // namespace

std::uint8_t float_to_e4m3_bits(float value) {
  const std::uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  if (std::isnan(value)) return static_cast<std::uint8_t>(sign | kE4m3NaN);
  const double mag = std::fabs(static_cast<double>(value));
  if (mag >= static_cast<double>(kE4m3Max)) return static_cast<std::uint8_t>(sign | kE4m3MaxCode);  // incl. inf
  // Quantum of the binade of |x| (subnormal range: 2^-9), then round the multiple to even.
  int exp = 0;
  std::frexp(mag, &exp);  // mag = f · 2^exp, f in [0.5, 1): the binade's leading bit is 2^(exp-1)
  const int lead = std::max(exp - 1, kE4m3MinNormalExp);
  const double quantum = std::ldexp(1.0, lead - kE4m3MantissaBits);
  const double q = round_half_even(mag / quantum) * quantum;  // may carry into the next binade
  if (q > static_cast<double>(kE4m3Max)) return static_cast<std::uint8_t>(sign | kE4m3MaxCode);
  if (q == 0.0) return sign;
  int qexp = 0;
  const double qf = std::frexp(q, &qexp);  // q = qf · 2^qexp
  const int e = qexp - 1;                  // q = (2·qf) · 2^e, 2·qf in [1, 2)
  if (e < kE4m3MinNormalExp) {             // subnormal: q = m · 2^-9
    const auto m = static_cast<std::uint8_t>(std::lround(std::ldexp(q, -(kE4m3MinNormalExp - kE4m3MantissaBits))));
    return static_cast<std::uint8_t>(sign | m);
  }
  const auto m = static_cast<std::uint8_t>(std::lround((2.0 * qf - 1.0) * (1 << kE4m3MantissaBits)));
  return static_cast<std::uint8_t>(sign | ((e + kE4m3Bias) << kE4m3MantissaBits) | m);
}

float e4m3_bits_to_float(std::uint8_t bits) {
  const bool negative = (bits & 0x80) != 0;
  const int e = (bits >> kE4m3MantissaBits) & 0x0F;
  const int m = bits & 0x07;
  if (e == 0x0F && m == 0x07) return std::numeric_limits<float>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(static_cast<double>(m), kE4m3MinNormalExp - kE4m3MantissaBits)
                            : std::ldexp(1.0 + m / 8.0, e - kE4m3Bias);
  return static_cast<float>(negative ? -mag : mag);
}

float round_to_e4m3(float value) { return e4m3_bits_to_float(float_to_e4m3_bits(value)); }

void round_to_dtype(std::vector<float>& values, DType dtype) {
  switch (dtype) {
    case DType::fp32: return;
    case DType::bf16:
      for (float& v : values) v = round_to_bf16(v);
      return;
    case DType::fp8:
      for (float& v : values) v = round_to_e4m3(v);
      return;
  }
}

}  // namespace moesim::kernels

namespace moesim::kernels {

std::vector<float> random_values(std::size_t n, std::uint64_t seed, float scale, DType dtype) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> mag(0.25f, 1.0f);
  std::vector<float> out(n);
  for (float& v : out) {
    const float m = mag(gen) * scale;
    v = (gen() & 1u) ? -m : m;
  }
  round_to_dtype(out, dtype);
  return out;
}

}  // namespace moesim::kernels
