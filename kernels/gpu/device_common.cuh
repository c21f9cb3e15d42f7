// SPDX-License-Identifier: Apache-2.0
#pragma once
// Device-side helpers shared by the hand-written kernels: element conversions and 16-byte packs.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "moesim/kernels/types.hpp"

namespace moesim::kernels::gpu::detail {

template <class T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <>
__device__ __forceinline__ float to_float<__nv_fp8_e4m3>(__nv_fp8_e4m3 v) {
  return static_cast<float>(v);
}

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
/** Round to nearest even, saturating to ±448 (the CPU's float_to_e4m3_bits). */
template <>
__device__ __forceinline__ __nv_fp8_e4m3 from_float<__nv_fp8_e4m3>(float v) {
  __nv_fp8_e4m3 out;
  out.__x = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
  return out;
}

/** Whether the FFN activation is gated (SwiGLU, GeGLU: act(gate) x up over 2f columns). */
__host__ __device__ constexpr bool gated(Activation a) { return a == Activation::swiglu || a == Activation::geglu; }

/** The FFN activation of one value, as ref::activate computes it. */
template <Activation A>
__device__ __forceinline__ float act(float x) {
  if constexpr (A == Activation::relu) {
    return fmaxf(x, 0.0f);
  } else if constexpr (A == Activation::swiglu) {
    return x / (1.0f + expf(-x));
  } else {  // gelu, geglu: tanh approximation (Hendrycks & Gimpel 2016), as in ref::activate
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    constexpr float kCubic = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kCubic * x * x * x)));
  }
}

/** Widens `n` consecutive fp8 E4M3 bytes held in 32-bit words (byte i of the run in bits 8·(i%4)) to floats. */
__device__ __forceinline__ void e4m3x4_to_float(std::uint32_t word, float* out) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __nv_fp8_e4m3 v;
    v.__x = static_cast<__nv_fp8_storage_t>((word >> (8 * i)) & 0xFFu);
    out[i] = static_cast<float>(v);
  }
}

/** Elements of T in one 16-byte pack: 4 fp32 or 8 bf16. */
template <class T>
struct Pack {
  static constexpr int kElems = 16 / sizeof(T);
};

/** Loads one 16-byte pack (16-byte aligned) and widens it to floats. */
template <class T>
__device__ __forceinline__ void load_pack(const T* __restrict__ p, float (&out)[Pack<T>::kElems]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  if constexpr (sizeof(T) == 4) {
    out[0] = __uint_as_float(raw.x);
    out[1] = __uint_as_float(raw.y);
    out[2] = __uint_as_float(raw.z);
    out[3] = __uint_as_float(raw.w);
  } else {
    const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // bf16 is the top half of fp32: widening is a shift (element 2i sits in the low 16 bits).
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
    }
  }
}

/** Narrows floats to T (round to nearest even) and stores one 16-byte pack. */
template <class T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const float (&in)[Pack<T>::kElems]) {
  uint4 raw;
  if constexpr (sizeof(T) == 4) {
    raw.x = __float_as_uint(in[0]);
    raw.y = __float_as_uint(in[1]);
    raw.z = __float_as_uint(in[2]);
    raw.w = __float_as_uint(in[3]);
  } else {
    std::uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::uint32_t lo = __bfloat16_as_ushort(__float2bfloat16_rn(in[2 * i]));
      const std::uint32_t hi = __bfloat16_as_ushort(__float2bfloat16_rn(in[2 * i + 1]));
      words[i] = lo | (hi << 16);
    }
    raw.x = words[0];
    raw.y = words[1];
    raw.z = words[2];
    raw.w = words[3];
  }
  *reinterpret_cast<uint4*>(p) = raw;
}

/** Grid size for a grid-stride loop over `work` items with `block` threads, capped so that huge
 *  inputs do not launch millions of blocks. */
inline unsigned grid_for(long long work, int block, long long cap = 1LL << 20) {
  long long g = (work + block - 1) / block;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace moesim::kernels::gpu::detail
