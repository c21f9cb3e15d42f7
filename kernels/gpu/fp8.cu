// SPDX-License-Identifier: Apache-2.0
// fp8 (E4M3) conversion kernels: per-tensor quantization, and the FFN activation fused with the
// quantization of its output (the input of the fp8 down projection).
#include <cmath>
#include <string>

#include "device_common.cuh"
#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {
namespace {

using detail::act;
using detail::gated;

constexpr int kBlock = 256;

template <class T>
__global__ void quantize_kernel(const T* __restrict__ x, std::size_t n, float scale, __nv_fp8_e4m3* __restrict__ q) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    q[i] = detail::from_float<__nv_fp8_e4m3>(detail::to_float(x[i]) / scale);  // IEEE division, as the CPU check
  }
}



template <Activation A>
__global__ void activation_fp8_kernel(const __nv_bfloat16* __restrict__ h, long long rows, int f, float scale,
                                      __nv_fp8_e4m3* __restrict__ out) {
  const long long n = rows * f;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const long long r = i / f;
    const long long c = i - r * f;
    float o;
    if constexpr (gated(A)) {
      o = act<A>(__bfloat162float(h[r * 2LL * f + c])) * __bfloat162float(h[r * 2LL * f + f + c]);
    } else {
      o = act<A>(__bfloat162float(h[r * f + c]));
    }
    out[i] = detail::from_float<__nv_fp8_e4m3>(o / scale);
  }
}

void require_scale(const char* where, float scale) {
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    throw Error(std::string(where) + ": scale must be finite and > 0, got " + std::to_string(scale));
  }
}

}  // namespace

void quantize_fp8(const void* x, std::size_t n, DType src_dtype, float scale, void* q, cudaStream_t stream) {
  require_scale("gpu::quantize_fp8", scale);
  if (n == 0) return;
  const unsigned grid = detail::grid_for(static_cast<long long>(n), kBlock, 1 << 16);
  auto* out = static_cast<__nv_fp8_e4m3*>(q);
  switch (src_dtype) {
    case DType::bf16:
      quantize_kernel<<<grid, kBlock, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), n, scale, out);
      break;
    case DType::fp32: quantize_kernel<<<grid, kBlock, 0, stream>>>(static_cast<const float*>(x), n, scale, out); break;
    case DType::fp8: throw Error("gpu::quantize_fp8: the source must be bf16 or fp32");
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

void activation_fp8(const void* h, std::int64_t rows, int f, Activation act_kind, float scale, void* out,
                    cudaStream_t stream) {
  require_scale("gpu::activation_fp8", scale);
  if (f < 1 || rows < 0) throw Error("gpu::activation_fp8: f must be >= 1 and rows >= 0");
  if (rows == 0) return;
  const unsigned grid = detail::grid_for(rows * f, kBlock);
  const auto* hp = static_cast<const __nv_bfloat16*>(h);
  auto* op = static_cast<__nv_fp8_e4m3*>(out);
  const float sc = scale;
  switch (act_kind) {
    case Activation::relu: activation_fp8_kernel<Activation::relu><<<grid, kBlock, 0, stream>>>(hp, rows, f, sc, op); break;
    case Activation::gelu: activation_fp8_kernel<Activation::gelu><<<grid, kBlock, 0, stream>>>(hp, rows, f, sc, op); break;
    case Activation::swiglu:
      activation_fp8_kernel<Activation::swiglu><<<grid, kBlock, 0, stream>>>(hp, rows, f, sc, op);
      break;
    case Activation::geglu: activation_fp8_kernel<Activation::geglu><<<grid, kBlock, 0, stream>>>(hp, rows, f, sc, op); break;
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::gpu
