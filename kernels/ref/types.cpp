// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/types.hpp"

#include <cmath>
#include <cstring>
#include <random>

#include "moesim/core/error.hpp"

namespace moesim::kernels {

std::size_t dtype_bytes(DType dtype) { return dtype == DType::bf16 ? 2 : 4; }

std::string to_string(DType dtype) { return dtype == DType::bf16 ? "bf16" : "fp32"; }

DType parse_dtype(std::string_view text) {
  if (text == "bf16") return DType::bf16;
  if (text == "fp32") return DType::fp32;
  throw Error("unknown dtype '" + std::string(text) + "' (allowed: bf16, fp32)");
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

void round_to_dtype(std::vector<float>& values, DType dtype) {
  if (dtype == DType::fp32) return;
  for (float& v : values) v = round_to_bf16(v);
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
