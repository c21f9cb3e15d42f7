// SPDX-License-Identifier: Apache-2.0
#include "device_common.cuh"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {
namespace {

// SplitMix64 finalizer (Steele, Lea & Flood 2014): a counter-based hash, so every element is
// independent of launch configuration.
__device__ __forceinline__ std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <class T>
__global__ void fill_random_kernel(T* __restrict__ dst, std::size_t n, std::uint64_t seed, float scale) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::uint64_t r = splitmix64(seed * 0x2545F4914F6CDD1Dull + i);
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // 24 random bits in [0, 1)
    const float mag = (0.25f + 0.75f * u) * scale;
    dst[i] = detail::from_float<T>((r & 1u) ? -mag : mag);
  }
}

}  // namespace

void fill_random(void* dst, std::size_t n, DType dtype, std::uint64_t seed, float scale, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kBlock = 256;
  const unsigned grid = detail::grid_for(static_cast<long long>(n), kBlock, 1 << 16);
  switch (dtype) {
    case DType::bf16:
      fill_random_kernel<<<grid, kBlock, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), n, seed, scale);
      break;
    case DType::fp32: fill_random_kernel<<<grid, kBlock, 0, stream>>>(static_cast<float*>(dst), n, seed, scale); break;
    case DType::fp8:
      fill_random_kernel<<<grid, kBlock, 0, stream>>>(static_cast<__nv_fp8_e4m3*>(dst), n, seed, scale);
      break;
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::gpu
