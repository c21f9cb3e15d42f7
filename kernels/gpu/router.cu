// SPDX-License-Identifier: Apache-2.0
// Router kernels: softmax + top-k over fp32 logits, then capacity planning (slots, drops, offsets,
// index maps) with the choice-major priority of ref::plan_dispatch.
#include <cfloat>
#include <climits>
#include <string>

#include "device_common.cuh"
#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {
namespace {

constexpr int kSharedBudgetBytes = 32 * 1024;  // under the 48 KB a block gets without opting in

// ---------------------------------------------------------------------------------------------
// Softmax + top-k: a group of G lanes per token; the token's logits row is staged in shared
// memory. Lane l owns experts e ≡ l (mod G), so the top-k rounds touch only a lane's own entries.

template <int G>
__device__ __forceinline__ float group_max(float v, unsigned mask) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(mask, v, o, G));
  return v;
}

template <int G>
__device__ __forceinline__ float group_sum(float v, unsigned mask) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o, G);
  return v;
}

// Arg-max across the group; ties go to the lower expert index.
template <int G>
__device__ __forceinline__ void group_argmax(float& v, int& idx, unsigned mask) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(mask, v, o, G);
    const int oi = __shfl_xor_sync(mask, idx, o, G);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
}

template <int G>
__global__ void softmax_topk_kernel(const float* __restrict__ logits, int tokens, int experts, int top_k,
                                    bool renormalize, std::int32_t* __restrict__ out_expert,
                                    float* __restrict__ out_weight, float* __restrict__ probs) {
  extern __shared__ float rows[];
  const int groups = blockDim.x / G;
  const int group = threadIdx.x / G;
  const int lane = threadIdx.x % G;
  const int t = blockIdx.x * groups + group;
  if (t >= tokens) return;  // whole groups leave together: G divides 32, tokens map to aligned groups
  const unsigned mask = G == 32 ? 0xFFFFFFFFu : (((1u << G) - 1u) << ((threadIdx.x % 32) / G * G));
  float* row = rows + static_cast<std::size_t>(group) * experts;
  const float* src = logits + static_cast<std::size_t>(t) * experts;

  if ((experts & 3) == 0) {  // 16-byte loads; rows start 16-byte aligned when E % 4 == 0
    const float4* src4 = reinterpret_cast<const float4*>(src);
    for (int q = lane; q < experts / 4; q += G) {
      const float4 v = src4[q];
      row[4 * q] = v.x;
      row[4 * q + 1] = v.y;
      row[4 * q + 2] = v.z;
      row[4 * q + 3] = v.w;
    }
  } else {
    for (int e = lane; e < experts; e += G) row[e] = src[e];
  }
  __syncwarp(mask);

  float mx = -FLT_MAX;
  for (int e = lane; e < experts; e += G) mx = fmaxf(mx, row[e]);
  mx = group_max<G>(mx, mask);
  float sum = 0.0f;
  for (int e = lane; e < experts; e += G) sum += expf(row[e] - mx);
  sum = group_sum<G>(sum, mask);
  const float inv = 1.0f / sum;
  if (probs != nullptr) {
    float* dst = probs + static_cast<std::size_t>(t) * experts;
    for (int e = lane; e < experts; e += G) dst[e] = expf(row[e] - mx) * inv;
  }

  float chosen = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    float best = -INFINITY;
    int best_idx = INT_MAX;
    for (int e = lane; e < experts; e += G) {
      const float v = row[e];
      if (v > best || (v == best && e < best_idx)) {
        best = v;
        best_idx = e;
      }
    }
    group_argmax<G>(best, best_idx, mask);
    const float w = expf(best - mx) * inv;
    chosen += w;
    if (lane == 0) {
      out_expert[static_cast<std::size_t>(t) * top_k + j] = best_idx;
      out_weight[static_cast<std::size_t>(t) * top_k + j] = w;
    }
    if (best_idx % G == lane) row[best_idx] = -INFINITY;  // only the owner lane reads this entry again
  }
  if (renormalize && lane == 0) {
    for (int j = 0; j < top_k; ++j) out_weight[static_cast<std::size_t>(t) * top_k + j] /= chosen;
  }
}

template <int G>
void launch_softmax_topk(const float* logits, int tokens, int experts, int top_k, bool renormalize,
                         std::int32_t* expert, float* weight, float* probs, cudaStream_t stream) {
  const int row_bytes = experts * static_cast<int>(sizeof(float));
  int groups = 256 / G;
  while (groups > 1 && groups * row_bytes > kSharedBudgetBytes) groups /= 2;
  const int block = groups * G;
  const unsigned grid = static_cast<unsigned>((tokens + groups - 1) / groups);
  softmax_topk_kernel<G><<<grid, block, static_cast<std::size_t>(groups) * row_bytes, stream>>>(
      logits, tokens, experts, top_k, renormalize, expert, weight, probs);
  MOESIM_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Capacity planning. Assignment p in choice-major order is (j = p / T, t = p % T).

__device__ __forceinline__ int expert_of(const std::int32_t* __restrict__ expert, int p, int tokens, int top_k,
                                         int experts) {
  const int j = p / tokens;
  const int t = p - j * tokens;
  const int e = expert[static_cast<std::size_t>(t) * top_k + j];
  return (e >= 0 && e < experts) ? e : -1;  // an invalid id is dropped rather than corrupting memory
}

__global__ void plan_histogram(const std::int32_t* __restrict__ expert, int tokens, int experts, int top_k,
                               std::int32_t* __restrict__ chunk_counts) {
  extern __shared__ std::int32_t hist[];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  const int n = tokens * top_k;
  const int begin = blockIdx.x * kPlanChunk;
  const int end = min(begin + kPlanChunk, n);
  for (int p = begin + threadIdx.x; p < end; p += blockDim.x) {
    const int e = expert_of(expert, p, tokens, top_k, experts);
    if (e >= 0) atomicAdd(&hist[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    chunk_counts[static_cast<std::size_t>(blockIdx.x) * experts + e] = hist[e];
  }
}

// Per expert: exclusive prefix over chunks (in place), total demand and kept count.
__global__ void plan_scan_chunks(int experts, int chunks, int capacity, std::int32_t* __restrict__ chunk_counts,
                                 std::int32_t* __restrict__ demand, std::int32_t* __restrict__ count) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= experts) return;
  int running = 0;
  for (int c = 0; c < chunks; ++c) {
    const std::size_t i = static_cast<std::size_t>(c) * experts + e;
    const int v = chunk_counts[i];
    chunk_counts[i] = running;
    running += v;
  }
  demand[e] = running;
  count[e] = min(running, capacity);
}

// One block of 1024 threads: exclusive scan of the kept counts → offsets, and the drop total.
__global__ void plan_offsets(int experts, int capacity, bool padded, const std::int32_t* __restrict__ demand,
                             const std::int32_t* __restrict__ count, std::int32_t* __restrict__ offset,
                             std::int32_t* __restrict__ dropped) {
  __shared__ int warp_prefix[32];
  __shared__ int warp_drops[32];
  const int per = (experts + blockDim.x - 1) / blockDim.x;
  const int begin = min(static_cast<int>(threadIdx.x) * per, experts);
  const int end = min(begin + per, experts);
  int local = 0;
  int drop = 0;
  for (int e = begin; e < end; ++e) {
    local += count[e];
    drop += demand[e] - count[e];
  }
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  int incl = local;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xFFFFFFFFu, incl, o);
    if (lane >= o) incl += v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) drop += __shfl_xor_sync(0xFFFFFFFFu, drop, o);
  if (lane == 31) warp_prefix[warp] = incl;
  if (lane == 0) warp_drops[warp] = drop;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    const int v = lane < warps ? warp_prefix[lane] : 0;
    int inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xFFFFFFFFu, inc, o);
      if (lane >= o) inc += u;
    }
    int d = lane < warps ? warp_drops[lane] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xFFFFFFFFu, d, o);
    __syncwarp();
    warp_prefix[lane] = inc - v;
    if (lane == 0) *dropped = d;
  }
  __syncthreads();
  int base = warp_prefix[warp] + incl - local;
  for (int e = begin; e < end; ++e) {
    offset[e] = padded ? e * capacity : base;
    base += count[e];
  }
}

// One warp per chunk walks its assignments in order, 32 at a time; lanes naming the same expert
// get consecutive slots in lane order (__match_any_sync), so slots follow the assignment order.
__global__ void plan_assign(const std::int32_t* __restrict__ expert, int tokens, int experts, int top_k,
                            int capacity, const std::int32_t* __restrict__ chunk_offsets,
                            const std::int32_t* __restrict__ offset, std::int32_t* __restrict__ dest_row,
                            std::int32_t* __restrict__ row_token) {
  extern __shared__ std::int32_t next_slot[];
  const int lane = threadIdx.x;
  for (int e = lane; e < experts; e += 32) next_slot[e] = chunk_offsets[static_cast<std::size_t>(blockIdx.x) * experts + e];
  __syncwarp();
  const int n = tokens * top_k;
  const int begin = blockIdx.x * kPlanChunk;
  const int end = min(begin + kPlanChunk, n);
  for (int base = begin; base < end; base += 32) {
    const int p = base + lane;
    const bool valid = p < end;
    const int e = valid ? expert_of(expert, p, tokens, top_k, experts) : -1;
    const unsigned peers = __match_any_sync(0xFFFFFFFFu, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    const int slot = e >= 0 ? next_slot[e] + rank : 0;
    __syncwarp();
    if (e >= 0 && rank == 0) next_slot[e] += __popc(peers);
    __syncwarp();
    if (valid) {
      const int j = p / tokens;
      const int t = p - j * tokens;
      const std::size_t a = static_cast<std::size_t>(t) * top_k + j;
      if (e >= 0 && slot < capacity) {
        const int row = offset[e] + slot;
        dest_row[a] = row;
        row_token[row] = t;
      } else {
        dest_row[a] = -1;
      }
    }
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(what);
}

}  // namespace

void softmax_topk(const float* logits, int tokens, int experts, int top_k, bool renormalize, std::int32_t* expert,
                  float* weight, float* probs, cudaStream_t stream) {
  require(tokens >= 1, "gpu::softmax_topk: tokens must be >= 1");
  require(experts >= 1 && experts <= kMaxRouterExperts,
          "gpu::softmax_topk: experts = " + std::to_string(experts) + " (allowed: 1.." +
              std::to_string(kMaxRouterExperts) + ")");
  require(top_k >= 1 && top_k <= experts, "gpu::softmax_topk: top_k = " + std::to_string(top_k) +
                                              " (allowed: 1 <= top_k <= experts = " + std::to_string(experts) + ")");
  if (experts <= 16) {
    launch_softmax_topk<4>(logits, tokens, experts, top_k, renormalize, expert, weight, probs, stream);
  } else if (experts <= 64) {
    launch_softmax_topk<8>(logits, tokens, experts, top_k, renormalize, expert, weight, probs, stream);
  } else if (experts <= 256) {
    launch_softmax_topk<16>(logits, tokens, experts, top_k, renormalize, expert, weight, probs, stream);
  } else {
    launch_softmax_topk<32>(logits, tokens, experts, top_k, renormalize, expert, weight, probs, stream);
  }
}

std::int64_t plan_chunks(std::int64_t tokens, std::int64_t top_k) {
  return (tokens * top_k + kPlanChunk - 1) / kPlanChunk;
}

std::int64_t plan_row_capacity(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, std::int64_t capacity,
                               DispatchLayout layout) {
  const std::int64_t padded = experts * capacity;
  return layout == DispatchLayout::padded ? padded : std::min(tokens * top_k, padded);
}

void plan_dispatch(const std::int32_t* expert, int tokens, int experts, int top_k, int capacity,
                   DispatchLayout layout, const PlanBuffers& plan, cudaStream_t stream) {
  require(tokens >= 1, "gpu::plan_dispatch: tokens must be >= 1");
  require(experts >= 1 && experts <= kMaxRouterExperts,
          "gpu::plan_dispatch: experts = " + std::to_string(experts) + " (allowed: 1.." +
              std::to_string(kMaxRouterExperts) + ")");
  require(top_k >= 1 && top_k <= experts, "gpu::plan_dispatch: top_k = " + std::to_string(top_k) +
                                              " (allowed: 1 <= top_k <= experts)");
  require(capacity >= 1, "gpu::plan_dispatch: capacity must be >= 1 (zero capacity drops every token)");
  require(static_cast<std::int64_t>(tokens) * top_k <= INT_MAX &&
              static_cast<std::int64_t>(experts) * capacity <= INT_MAX,
          "gpu::plan_dispatch: T·k or E·capacity exceeds 2^31-1");
  const int chunks = static_cast<int>(plan_chunks(tokens, top_k));
  const std::size_t shared = static_cast<std::size_t>(experts) * sizeof(std::int32_t);
  if (layout == DispatchLayout::padded) {
    MOESIM_CUDA_CHECK(cudaMemsetAsync(plan.row_token, 0xFF,
                                      static_cast<std::size_t>(experts) * capacity * sizeof(std::int32_t), stream));
  }
  plan_histogram<<<chunks, 256, shared, stream>>>(expert, tokens, experts, top_k, plan.chunk_counts);
  MOESIM_CUDA_CHECK_LAUNCH();
  plan_scan_chunks<<<(experts + 255) / 256, 256, 0, stream>>>(experts, chunks, capacity, plan.chunk_counts,
                                                                 plan.demand, plan.count);
  MOESIM_CUDA_CHECK_LAUNCH();
  plan_offsets<<<1, 1024, 0, stream>>>(experts, capacity, layout == DispatchLayout::padded, plan.demand, plan.count,
                                       plan.offset, plan.dropped);
  MOESIM_CUDA_CHECK_LAUNCH();
  plan_assign<<<chunks, 32, shared, stream>>>(expert, tokens, experts, top_k, capacity, plan.chunk_counts,
                                              plan.offset, plan.dest_row, plan.row_token);
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace moesim::kernels::gpu
