// SPDX-License-Identifier: Apache-2.0
// Grouped skinny GEMM for the decode regime of the expert FFN (a few rows per expert): one launch
// for all experts, every weight element read from HBM once, the FFN activation (gated or not)
// applied in the epilogue, so that GEMM1 + activation is one kernel and no hidden tensor h is
// written. CUDA cores (fp32 FMA): at a few rows per expert the GEMM is bound by the weight stream,
// not by arithmetic (notes/moe-kernels.md §1a: arithmetic intensity ≈ rows FLOP/byte).
#include <string>

#include "device_common.cuh"
#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {
namespace {

using detail::act;

constexpr int kThreads = 256;
constexpr int kBn = 64;  // output columns per block
constexpr int kBk = 32;  // K rows per shared-memory stage
constexpr int kColThreads = kBn / 2;            // each thread owns 2 adjacent output columns
constexpr int kRowThreads = kThreads / kColThreads;  // 8

// out[rows of group g] = epilogue(x[rows of g] · W_g), W_g = w + g·k·n_w ([k × n_w] row-major),
// n_w = 2n for the gated epilogue (gate columns [0, n), up columns [n, 2n)), else n.
// Grid: (ceil(n / kBn), groups, row tiles of kBm).
template <class T, int kBm, SmallGemmEpilogue E, Activation A>
__global__ void __launch_bounds__(kThreads) small_grouped_gemm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                                      T* __restrict__ out,
                                                                      const std::int32_t* __restrict__ offsets,
                                                                      const std::int32_t* __restrict__ counts, int k, int n) {
  constexpr int kSeg = E == SmallGemmEpilogue::gated ? 2 : 1;
  constexpr int kRowsPerThread = kBm / kRowThreads;
  __shared__ float ws[kBk][kSeg * kBn];
  __shared__ float xs[kBm][kBk];

  const int g = blockIdx.y;
  const int count = counts[g];
  const int row0 = blockIdx.z * kBm;
  if (row0 >= count) return;  // whole block: no divergence around the barriers below
  const long long first_row = static_cast<long long>(offsets[g]) + row0;
  const int c0 = blockIdx.x * kBn;
  const int tid = threadIdx.x;
  const int tx = tid % kColThreads;
  const int ty = tid / kColThreads;
  const long long n_w = static_cast<long long>(kSeg) * n;
  const T* wg = w + static_cast<long long>(g) * k * n_w;

  float acc[kSeg][kRowsPerThread][2];
#pragma unroll
  for (int s = 0; s < kSeg; ++s)
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) acc[s][i][0] = acc[s][i][1] = 0.0f;

  for (int k0 = 0; k0 < k; k0 += kBk) {
    // Stage the weight tile: kBk rows × kSeg segments of kBn columns (zeros outside the matrix).
    for (int e = tid; e < kBk * kSeg * kBn; e += kThreads) {
      const int r = e / (kSeg * kBn);
      const int c = e - r * (kSeg * kBn);
      const int seg = c / kBn;
      const int col = c0 + (c - seg * kBn);
      float v = 0.0f;
      if (k0 + r < k && col < n) v = detail::to_float(wg[static_cast<long long>(k0 + r) * n_w + seg * n + col]);
      ws[r][c] = v;
    }
    // Stage the input rows (zeros past the group's rows or past k).
    for (int e = tid; e < kBm * kBk; e += kThreads) {
      const int r = e / kBk;
      const int c = e - r * kBk;
      float v = 0.0f;
      if (row0 + r < count && k0 + c < k) v = detail::to_float(x[(first_row + r) * k + k0 + c]);
      xs[r][c] = v;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kBk; ++kk) {
      float wv[kSeg][2];
#pragma unroll
      for (int s = 0; s < kSeg; ++s) {
        wv[s][0] = ws[kk][s * kBn + 2 * tx];
        wv[s][1] = ws[kk][s * kBn + 2 * tx + 1];
      }
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        const float xv = xs[ty + i * kRowThreads][kk];
#pragma unroll
        for (int s = 0; s < kSeg; ++s) {
          acc[s][i][0] = fmaf(xv, wv[s][0], acc[s][i][0]);
          acc[s][i][1] = fmaf(xv, wv[s][1], acc[s][i][1]);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int r = row0 + ty + i * kRowThreads;
    if (r >= count) continue;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int col = c0 + 2 * tx + j;
      if (col >= n) continue;
      float v = acc[0][i][j];
      if constexpr (E == SmallGemmEpilogue::gated) {
        v = act<A>(v) * acc[kSeg - 1][i][j];
      } else if constexpr (E == SmallGemmEpilogue::activation) {
        v = act<A>(v);
      }
      out[(static_cast<long long>(offsets[g]) + r) * n + col] = detail::from_float<T>(v);
    }
  }
}

template <class T, int kBm, SmallGemmEpilogue E>
void launch_act(Activation a, dim3 grid, const void* x, const void* w, void* out, const std::int32_t* offsets,
                const std::int32_t* counts, int k, int n, cudaStream_t stream) {
  const auto* xp = static_cast<const T*>(x);
  const auto* wp = static_cast<const T*>(w);
  auto* op = static_cast<T*>(out);
  switch (a) {
    case Activation::relu:
      small_grouped_gemm_kernel<T, kBm, E, Activation::relu><<<grid, kThreads, 0, stream>>>(xp, wp, op, offsets, counts, k, n);
      break;
    case Activation::gelu:
      small_grouped_gemm_kernel<T, kBm, E, Activation::gelu><<<grid, kThreads, 0, stream>>>(xp, wp, op, offsets, counts, k, n);
      break;
    case Activation::swiglu:
      small_grouped_gemm_kernel<T, kBm, E, Activation::swiglu><<<grid, kThreads, 0, stream>>>(xp, wp, op, offsets, counts, k, n);
      break;
    case Activation::geglu:
      small_grouped_gemm_kernel<T, kBm, E, Activation::geglu><<<grid, kThreads, 0, stream>>>(xp, wp, op, offsets, counts, k, n);
      break;
  }
}

template <class T, int kBm>
void launch_epilogue(SmallGemmEpilogue e, Activation a, dim3 grid, const void* x, const void* w, void* out,
                     const std::int32_t* offsets, const std::int32_t* counts, int k, int n, cudaStream_t stream) {
  switch (e) {
    case SmallGemmEpilogue::none:
      // The activation is unused without an epilogue: one instantiation suffices.
      small_grouped_gemm_kernel<T, kBm, SmallGemmEpilogue::none, Activation::relu><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(out), offsets, counts, k, n);
      break;
    case SmallGemmEpilogue::activation:
      launch_act<T, kBm, SmallGemmEpilogue::activation>(a, grid, x, w, out, offsets, counts, k, n, stream);
      break;
    case SmallGemmEpilogue::gated:
      launch_act<T, kBm, SmallGemmEpilogue::gated>(a, grid, x, w, out, offsets, counts, k, n, stream);
      break;
  }
}

template <class T>
void launch_rows(int max_count, SmallGemmEpilogue e, Activation a, int groups, const void* x, const void* w, void* out,
                 const std::int32_t* offsets, const std::int32_t* counts, int k, int n, cudaStream_t stream) {
  // 16-row tiles up to 16 rows per expert (less idle arithmetic and fewer registers), 64 above.
  const int bm = max_count <= 16 ? 16 : 64;
  const dim3 grid(static_cast<unsigned>((n + kBn - 1) / kBn), static_cast<unsigned>(groups),
                  static_cast<unsigned>((max_count + bm - 1) / bm));
  if (bm == 16) {
    launch_epilogue<T, 16>(e, a, grid, x, w, out, offsets, counts, k, n, stream);
  } else {
    launch_epilogue<T, 64>(e, a, grid, x, w, out, offsets, counts, k, n, stream);
  }
}

}  // namespace

void small_grouped_gemm(const void* x, const void* w, void* out, const std::int32_t* offsets,
                        const std::int32_t* counts, int groups, int max_count, int k, int n,
                        SmallGemmEpilogue epilogue, Activation act_kind, DType dtype, cudaStream_t stream) {
  if (groups < 1 || k < 1 || n < 1 || max_count < 0) {
    throw Error("gpu::small_grouped_gemm: need groups, k, n >= 1 and max_count >= 0 (got " + std::to_string(groups) +
                ", " + std::to_string(k) + ", " + std::to_string(n) + ", " + std::to_string(max_count) + ")");
  }
  if (groups > 65535) throw Error("gpu::small_grouped_gemm: at most 65535 groups (grid y)");
  if (max_count == 0) return;
  switch (dtype) {
    case DType::bf16:
      launch_rows<__nv_bfloat16>(max_count, epilogue, act_kind, groups, x, w, out, offsets, counts, k, n, stream);
      break;
    case DType::fp32: launch_rows<float>(max_count, epilogue, act_kind, groups, x, w, out, offsets, counts, k, n, stream); break;
    case DType::fp8: throw Error("gpu::small_grouped_gemm: bf16 or fp32 operands only (fp8 GEMMs go through cuBLASLt)");
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::gpu
