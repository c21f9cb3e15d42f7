// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "moesim/kernels/types.hpp"

/** The serving attention kernels (CUDA). Layouts and semantics are those of the CPU side in
 *  moesim/kernels/attention.hpp (PagedKvCache, DecodeBatch, VarlenBatch) and its references, which
 *  the GPU checks compare them against. Pointers are device pointers; launches are asynchronous
 *  on `stream` and checked right after launch. */
namespace moesim::kernels::gpu {

/** Decode attention over a paged KV cache, split-KV (Flash-Decoding). q and out are bf16
 *  [B × q_heads × d_head]; k_cache and v_cache are kv_dtype (bf16, or fp8 E4M3 with the per-tensor
 *  scales k_scale / v_scale) [num_blocks × kv_heads × block_size × d_head]; block_table int32
 *  [B × max_blocks]; kv_lens int32 [B]. */
struct DecodeArgs {
  const void* q = nullptr;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const std::int32_t* block_table = nullptr;
  const std::int32_t* kv_lens = nullptr;
  void* out = nullptr;
  int batch = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int d_head = 0;      ///< 64, 128 or 256
  int block_size = 0;  ///< tokens per page, >= 1
  int max_blocks = 0;
  DType kv_dtype = DType::bf16;
  float k_scale = 1.0f;
  float v_scale = 1.0f;
  float softmax_scale = 0.0f;  ///< 0 means 1/√d_head
  int splits = 1;              ///< KV splits per (sequence, KV head): decode_splits(); 1 needs no workspace
  void* workspace = nullptr;   ///< decode_workspace_bytes(batch, q_heads, d_head, splits) bytes when splits > 1
};

/** Bytes of the split-KV partial results: fp32 accumulators [B × q_heads × splits × d_head] and
 *  (max, sum) pairs [B × q_heads × splits × 2]. 0 for one split. */
std::size_t decode_workspace_bytes(int batch, int q_heads, int d_head, int splits);

/** Launches decode attention (and, with splits > 1, the combine kernel). Throws moesim::Error for
 *  an unsupported d_head, q_heads not a multiple of kv_heads, a group (q_heads / kv_heads) with
 *  group·d_head > 2048, splits outside [1, 64], or a missing workspace. */
void decode_attention(const DecodeArgs& args, cudaStream_t stream);

/** Causal (or full) prefill attention over a packed varlen batch, FlashAttention-2 style on tensor
 *  cores (bf16 WMMA, fp32 softmax and accumulation): q, out bf16 [ΣQ × q_heads × d_head]; k, v bf16
 *  [ΣK × kv_heads × d_head]; cu_q, cu_kv int32 [B+1] prefix sums of the lengths; queries are the
 *  last q_len of their sequence's kv_len positions. max_q_len: the longest q_len (host-known). */
struct PrefillArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  const std::int32_t* cu_q = nullptr;
  const std::int32_t* cu_kv = nullptr;
  int batch = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int d_head = 0;  ///< 64 or 128
  int max_q_len = 0;
  bool causal = true;
  float softmax_scale = 0.0f;  ///< 0 means 1/√d_head
};

/** Launches prefill attention. Throws moesim::Error for an unsupported d_head or bad head counts. */
void prefill_attention(const PrefillArgs& args, cudaStream_t stream);

}  // namespace moesim::kernels::gpu
