// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "moesim/kernels/types.hpp"

/** The hand-written MoE kernels (CUDA), each launched on a stream, asynchronous, checked right
 *  after launch. Layouts and semantics are those of the CPU references in reference.hpp, which
 *  the GPU tests compare them against. Pointers are device pointers; `void*` element buffers hold
 *  `dtype` elements. */
namespace moesim::kernels::gpu {

/** Fills n elements with uniform random values of magnitude in [0.25, 1]·scale and random sign
 *  (never zero: timing on zeros is not representative), from a counter-based hash of (seed, i). */
void fill_random(void* dst, std::size_t n, DType dtype, std::uint64_t seed, float scale, cudaStream_t stream);

/** Largest expert count the router kernels accept (the logits row lives in shared memory). */
inline constexpr int kMaxRouterExperts = 8192;

/** Router softmax + top-k over fp32 logits [T×E]: writes expert [T×k] (best first, ties → lower
 *  index), weight [T×k] (probability, or renormalized over the k chosen) and, if `probs` is not
 *  null, the full softmax [T×E]. Throws moesim::Error for k < 1, k > E or E > kMaxRouterExperts. */
void softmax_topk(const float* logits, int tokens, int experts, int top_k, bool renormalize, std::int32_t* expert,
                  float* weight, float* probs, cudaStream_t stream);

/** Device buffers of a dispatch plan (see ref::DispatchPlan; all int32). */
struct PlanBuffers {
  std::int32_t* demand = nullptr;        ///< [E]
  std::int32_t* count = nullptr;         ///< [E]
  std::int32_t* offset = nullptr;        ///< [E]
  std::int32_t* dest_row = nullptr;      ///< [T·k]
  std::int32_t* row_token = nullptr;     ///< [row capacity]: contiguous min(T·k, E·C), padded E·C
  std::int32_t* dropped = nullptr;       ///< [1]
  std::int32_t* chunk_counts = nullptr;  ///< scratch [plan_chunks(T, k)·E]
};

/** Assignments one block of the capacity planner handles. */
inline constexpr int kPlanChunk = 1024;
/** Number of planner chunks for T tokens with k choices. */
std::int64_t plan_chunks(std::int64_t tokens, std::int64_t top_k);
/** Rows the permuted buffer can need: contiguous min(T·k, E·C), padded E·C. */
std::int64_t plan_row_capacity(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, std::int64_t capacity,
                               DispatchLayout layout);

/** Capacity planning from the chosen experts [T×k]: same slots, drops, offsets and maps as
 *  ref::plan_dispatch (choice-major priority). Throws moesim::Error for bad sizes. */
void plan_dispatch(const std::int32_t* expert, int tokens, int experts, int top_k, int capacity,
                   DispatchLayout layout, const PlanBuffers& plan, cudaStream_t stream);

/** Permute: out[r] = x[row_token[r]] for r < rows (zeros where row_token < 0). Rows of d elements
 *  of `dtype`; 16-byte vector copies when rows allow. */
void permute(const void* x, int d, DType dtype, const std::int32_t* row_token, int rows, void* out,
             cudaStream_t stream);

/** Unpermute: out[t] = Σ_j weight[t·k+j]·y[dest_row[t·k+j]] over dest_row ≥ 0, fp32 accumulation. */
void unpermute(const void* y, int d, DType dtype, const std::int32_t* dest_row, const float* weight, int tokens,
               int top_k, void* out, cudaStream_t stream);

/** FFN activation over rows×f outputs: gated reads h [rows×2f] (gate | up), else h [rows×f]. */
void activation(const void* h, std::int64_t rows, int f, Activation act, DType dtype, void* out, cudaStream_t stream);

/** What the small grouped GEMM applies to x·W before storing: nothing; the activation; or the gated
 *  activation act(x·W[:, :n]) ⊙ x·W[:, n:2n] (W holds 2n columns, the FFN's W1 | W3). */
enum class SmallGemmEpilogue { none, activation, gated };

/** Grouped skinny GEMM for few rows per group (the decode regime of the expert FFN), one launch for
 *  all groups: out[r] = epilogue(x[r]·W_g) for the rows r in [offsets[g], offsets[g] + counts[g]),
 *  W_g = w + g·k·n_w ([k × n_w] row-major, n_w = 2n for `gated`, else n); x [rows×k], out [rows×n];
 *  offsets and counts are int32 device arrays of `groups`; max_count is the largest count (host).
 *  Every weight element is read from HBM once per 64-row tile of its group (once for groups of at
 *  most 64 rows); fp32 accumulation on CUDA cores. bf16 or fp32. Throws moesim::Error for bad sizes. */
void small_grouped_gemm(const void* x, const void* w, void* out, const std::int32_t* offsets,
                        const std::int32_t* counts, int groups, int max_count, int k, int n,
                        SmallGemmEpilogue epilogue, Activation act, DType dtype, cudaStream_t stream);

/** Per-tensor fp8 quantization: q[i] = E4M3(x[i] / scale), round to nearest even, saturating at
 *  ±448 (as float_to_e4m3_bits); x bf16 or fp32. Throws for a non-positive or non-finite scale. */
void quantize_fp8(const void* x, std::size_t n, DType src_dtype, float scale, void* q, cudaStream_t stream);

/** The FFN activation of bf16 h (gated: [rows×2f], else [rows×f]) written as E4M3 with a per-tensor
 *  scale: out = E4M3(act(h) / scale) [rows×f], the input of an fp8 down projection. */
void activation_fp8(const void* h, std::int64_t rows, int f, Activation act, float scale, void* out,
                    cudaStream_t stream);

}  // namespace moesim::kernels::gpu
