// SPDX-License-Identifier: Apache-2.0
// FFN activations (ReLU, GeLU-tanh, SwiGLU, GEGLU): elementwise, 16-byte packs, fp32 math.
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



// Packed path: f is a multiple of the pack width, so a pack never straddles two rows.
template <class T, Activation A>
__global__ void activation_packed(const T* __restrict__ h, long long rows, int f, T* __restrict__ out) {
  constexpr int kN = detail::Pack<T>::kElems;
  const long long packs_per_row = f / kN;
  const long long packs = rows * packs_per_row;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs; i += stride) {
    const long long r = i / packs_per_row;
    const int c = static_cast<int>(i - r * packs_per_row) * kN;
    float g[kN];
    float o[kN];
    if constexpr (gated(A)) {
      float u[kN];
      const T* row = h + r * 2LL * f;
      detail::load_pack(row + c, g);
      detail::load_pack(row + f + c, u);
#pragma unroll
      for (int k = 0; k < kN; ++k) o[k] = act<A>(g[k]) * u[k];
    } else {
      detail::load_pack(h + r * f + c, g);
#pragma unroll
      for (int k = 0; k < kN; ++k) o[k] = act<A>(g[k]);
    }
    detail::store_pack(out + r * f + c, o);
  }
}

template <class T, Activation A>
__global__ void activation_scalar(const T* __restrict__ h, long long rows, int f, T* __restrict__ out) {
  const long long n = rows * f;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const long long r = i / f;
    const long long c = i - r * f;
    float o;
    if constexpr (gated(A)) {
      o = act<A>(detail::to_float(h[r * 2LL * f + c])) * detail::to_float(h[r * 2LL * f + f + c]);
    } else {
      o = act<A>(detail::to_float(h[r * f + c]));
    }
    out[i] = detail::from_float<T>(o);
  }
}

template <class T, Activation A>
void launch(const void* h, long long rows, int f, void* out, cudaStream_t stream) {
  constexpr int kN = detail::Pack<T>::kElems;
  const bool packed = f % kN == 0 && reinterpret_cast<std::uintptr_t>(h) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  if (packed) {
    const unsigned grid = detail::grid_for(rows * (f / kN), kBlock);
    activation_packed<T, A><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(h), rows, f, static_cast<T*>(out));
  } else {
    const unsigned grid = detail::grid_for(rows * f, kBlock);
    activation_scalar<T, A><<<grid, kBlock, 0, stream>>>(static_cast<const T*>(h), rows, f, static_cast<T*>(out));
  }
  MOESIM_CUDA_CHECK_LAUNCH();
}

template <class T>
void dispatch(Activation a, const void* h, long long rows, int f, void* out, cudaStream_t stream) {
  switch (a) {
    case Activation::relu: launch<T, Activation::relu>(h, rows, f, out, stream); break;
    case Activation::gelu: launch<T, Activation::gelu>(h, rows, f, out, stream); break;
    case Activation::swiglu: launch<T, Activation::swiglu>(h, rows, f, out, stream); break;
    case Activation::geglu: launch<T, Activation::geglu>(h, rows, f, out, stream); break;
  }
}

}  // namespace

void activation(const void* h, std::int64_t rows, int f, Activation act_kind, DType dtype, void* out,
                cudaStream_t stream) {
  if (f < 1 || rows < 0) {
    throw Error("gpu::activation: f must be >= 1 and rows >= 0 (got f = " + std::to_string(f) + ", rows = " +
                std::to_string(rows) + ")");
  }
  if (rows == 0) return;
  if (dtype == DType::bf16) {
    dispatch<__nv_bfloat16>(act_kind, h, rows, f, out, stream);
  } else {
    dispatch<float>(act_kind, h, rows, f, out, stream);
  }
}

}  // namespace moesim::kernels::gpu
