// SPDX-License-Identifier: Apache-2.0
// Permute (dispatch) and unpermute (combine): row gathers, one warp per row, 16-byte accesses
// with several loads in flight per lane.
#include <string>

#include "device_common.cuh"
#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {
namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;
constexpr int kUnroll = 4;  // independent 16-byte loads per lane before the first store

// Copies whole rows as words of type W (uint4 = 16 bytes when the row size allows).
template <class W>
__global__ void permute_kernel(const W* __restrict__ x, int row_words, const std::int32_t* __restrict__ row_token,
                               int rows, W* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarpsPerBlock;
  for (int r = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const int t = row_token[r];
    W* dst = out + static_cast<std::size_t>(r) * row_words;
    if (t < 0) {  // padding row
      for (int c = lane; c < row_words; c += 32) dst[c] = W{};
      continue;
    }
    const W* src = x + static_cast<std::size_t>(t) * row_words;
    for (int c0 = lane; c0 < row_words; c0 += 32 * kUnroll) {
      W v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + 32 * u;
        if (c < row_words) v[u] = src[c];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + 32 * u;
        if (c < row_words) dst[c] = v[u];
      }
    }
  }
}

template <class W>
void launch_permute(const void* x, int row_bytes, const std::int32_t* row_token, int rows, void* out,
                    cudaStream_t stream) {
  const int row_words = row_bytes / static_cast<int>(sizeof(W));
  const unsigned grid = detail::grid_for(rows, kWarpsPerBlock, 1 << 18);
  permute_kernel<W><<<grid, kBlock, 0, stream>>>(static_cast<const W*>(x), row_words, row_token, rows,
                                                 static_cast<W*>(out));
  MOESIM_CUDA_CHECK_LAUNCH();
}

// One warp per token; each lane accumulates 16-byte packs of the k chosen rows in fp32.
template <class T>
__global__ void unpermute_packed(const T* __restrict__ y, int d, const std::int32_t* __restrict__ dest_row,
                                 const float* __restrict__ weight, int tokens, int top_k, T* __restrict__ out) {
  constexpr int kN = detail::Pack<T>::kElems;
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarpsPerBlock;
  for (int t = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); t < tokens; t += warps) {
    // Lane j < k holds choice j's row and weight; broadcast with shuffles.
    int my_row = -1;
    float my_w = 0.0f;
    if (lane < top_k) {
      my_row = dest_row[static_cast<std::size_t>(t) * top_k + lane];
      my_w = weight[static_cast<std::size_t>(t) * top_k + lane];
    }
    // Every lane runs the same trip count so that the full-warp shuffles stay converged.
    for (int c0 = 0; c0 < d; c0 += 32 * kN) {
      const int c = c0 + lane * kN;
      const bool active = c < d;
      float acc[kN];
#pragma unroll
      for (int i = 0; i < kN; ++i) acc[i] = 0.0f;
      for (int j = 0; j < top_k; ++j) {
        const int row = __shfl_sync(0xFFFFFFFFu, my_row, j);
        const float w = __shfl_sync(0xFFFFFFFFu, my_w, j);
        if (row < 0 || !active) continue;
        float v[kN];
        detail::load_pack(y + static_cast<std::size_t>(row) * d + c, v);
#pragma unroll
        for (int i = 0; i < kN; ++i) acc[i] = fmaf(w, v[i], acc[i]);
      }
      if (active) detail::store_pack(out + static_cast<std::size_t>(t) * d + c, acc);
    }
  }
}

// Fallback for rows that are not a whole number of 16-byte packs.
template <class T>
__global__ void unpermute_scalar(const T* __restrict__ y, int d, const std::int32_t* __restrict__ dest_row,
                                 const float* __restrict__ weight, int tokens, int top_k, T* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarpsPerBlock;
  for (int t = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5); t < tokens; t += warps) {
    for (int c = lane; c < d; c += 32) {
      float acc = 0.0f;
      for (int j = 0; j < top_k; ++j) {
        const int row = dest_row[static_cast<std::size_t>(t) * top_k + j];
        if (row < 0) continue;
        acc = fmaf(weight[static_cast<std::size_t>(t) * top_k + j],
                   detail::to_float(y[static_cast<std::size_t>(row) * d + c]), acc);
      }
      out[static_cast<std::size_t>(t) * d + c] = detail::from_float<T>(acc);
    }
  }
}

template <class T>
void launch_unpermute(const void* y, int d, const std::int32_t* dest_row, const float* weight, int tokens, int top_k,
                      void* out, cudaStream_t stream) {
  const unsigned grid = detail::grid_for(tokens, kWarpsPerBlock, 1 << 18);
  const bool packed = (static_cast<std::size_t>(d) * sizeof(T)) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(y) % 16 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  if (packed && top_k <= 32) {
    unpermute_packed<T><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(y), d, dest_row, weight, tokens, top_k,
                                                     static_cast<T*>(out));
  } else {
    unpermute_scalar<T><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(y), d, dest_row, weight, tokens, top_k,
                                                     static_cast<T*>(out));
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void permute(const void* x, int d, DType dtype, const std::int32_t* row_token, int rows, void* out,
             cudaStream_t stream) {
  if (d < 1) throw Error("gpu::permute: d must be >= 1, got " + std::to_string(d));
  if (rows < 1) return;
  const int row_bytes = d * static_cast<int>(dtype_bytes(dtype));
  const auto aligned = [&](std::uintptr_t a) {
    return reinterpret_cast<std::uintptr_t>(x) % a == 0 && reinterpret_cast<std::uintptr_t>(out) % a == 0 &&
           row_bytes % static_cast<int>(a) == 0;
  };
  if (aligned(16)) {
    launch_permute<uint4>(x, row_bytes, row_token, rows, out, stream);
  } else if (aligned(4)) {
    launch_permute<std::uint32_t>(x, row_bytes, row_token, rows, out, stream);
  } else {
    launch_permute<std::uint16_t>(x, row_bytes, row_token, rows, out, stream);
  }
}

void unpermute(const void* y, int d, DType dtype, const std::int32_t* dest_row, const float* weight, int tokens,
               int top_k, void* out, cudaStream_t stream) {
  if (d < 1 || tokens < 1 || top_k < 1) {
    throw Error("gpu::unpermute: d, tokens and top_k must be >= 1 (got " + std::to_string(d) + ", " +
                std::to_string(tokens) + ", " + std::to_string(top_k) + ")");
  }
  if (dtype == DType::bf16) {
    launch_unpermute<__nv_bfloat16>(y, d, dest_row, weight, tokens, top_k, out, stream);
  } else {
    launch_unpermute<float>(y, d, dest_row, weight, tokens, top_k, out, stream);
  }
}

}  // namespace moesim::kernels::gpu
