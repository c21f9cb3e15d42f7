// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "moesim/kernels/types.hpp"

/** FLOP and minimum-byte counts of every profiled kernel. One place defines them so that the
 *  profiler, its JSON and the simulator agree; kernels/README.md states the same conventions.
 *
 *  flops: multiply-adds count 2 (GEMMs only). Non-GEMM kernels (router softmax/top-k, permute,
 *  unpermute, activation) report 0 FLOPs: they are memory-bound and modelled by bytes.
 *  bytes: the minimum HBM traffic of the operation: every input read once and every output
 *  written once, intermediates that a fused implementation would keep on chip not counted.
 *  Index maps are int32 (4 bytes), routing weights and router logits fp32 (4 bytes). */
namespace moesim::kernels {

/** The kernel classes of the measured-profile format (profiles/measured/README.md). The attention
 *  classes are the fused serving kernels: decode (one query per sequence over a paged KV cache) and
 *  prefill (causal, variable sequence lengths in one batch). */
enum class KernelClass {
  gemm,
  batched_gemm,
  grouped_gemm,
  router,
  permute,
  unpermute,
  elementwise,
  decode_attention,
  prefill_attention
};

/** Every class, in the order of the format's table. */
const std::vector<KernelClass>& kernel_classes();
std::string to_string(KernelClass cls);
/** Parses a class name; throws moesim::Error listing the allowed names otherwise. */
KernelClass parse_kernel_class(std::string_view text);

/** Work of one kernel call: FLOPs and minimum bytes moved through device memory. */
struct Cost {
  double flops = 0.0;
  double bytes = 0.0;
};

/** C[m×n] = A[m×k]·B[k×n]: 2mnk FLOPs; reads A and B (dtype), writes C (out_bytes each; 4 for the
 *  router gate's fp32 logits, 2 for the bf16 output of an fp8 GEMM, else the dtype). The per-tensor
 *  scales of an fp8 GEMM (two fp32 values) are not counted. */
Cost gemm_cost(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, std::size_t out_bytes);
/** `batch` independent GEMMs of one shape (attention scores / values). */
Cost batched_gemm_cost(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, DType dtype);

/** Expert FFN over `rows` routed rows on `active_experts` experts (those with ≥ 1 row):
 *  flops = 2·rows·d·f·g + 2·rows·f·d (g = 2 for gated activations, else 1), counting only real
 *  rows (padding rows of the capacity-padded strategy do not count);
 *  bytes = active_experts·(d·g·f + f·d)·s (weights) + rows·d·s (x read) + rows·d·s_out (y written),
 *  s = dtype bytes, s_out = s except for fp8 (E4M3 weights and input, bf16 output: s_out = 2).
 *  The hidden activations (rows·g·f) are not counted: a fused kernel keeps them on chip. */
Cost expert_ffn_cost(std::int64_t rows, std::int64_t active_experts, std::int64_t d, std::int64_t f, Activation act,
                     DType dtype);
/** Dense (non-expert) FFN of `tokens` rows: expert_ffn_cost(tokens, 1, ...). */
Cost dense_ffn_cost(std::int64_t tokens, std::int64_t d, std::int64_t f, Activation act, DType dtype);

/** Router after the gate GEMM (softmax + top-k + capacity + index maps), flops 0;
 *  bytes = 4·T·E (fp32 logits read) + 12·T·k (expert id, weight, destination row written)
 *        + 4·rows (row → token map written) + 8·E (per-expert counts and offsets written). */
Cost router_cost(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, std::int64_t rows);

/** Permute (dispatch) into `rows` rows of which `kept` carry a token, flops 0;
 *  bytes = kept·d·s (token rows read) + rows·d·s (all rows written, padding zeros included)
 *        + 4·rows (row → token map read). */
Cost permute_cost(std::int64_t kept, std::int64_t rows, std::int64_t d, DType dtype);

/** Unpermute (combine) of T tokens with k choices, `kept` of them not dropped, flops 0;
 *  bytes = kept·d·s (expert output rows read) + 8·T·k (destination row and weight read) + T·d·s
 *  (output written). */
Cost unpermute_cost(std::int64_t tokens, std::int64_t top_k, std::int64_t kept, std::int64_t d, DType dtype);

/** Activation over rows×f outputs, flops 0; bytes = rows·g·f·s read + rows·f·s written. */
Cost activation_cost(std::int64_t rows, std::int64_t f, Activation act, DType dtype);

/** Device-to-device copy of `bytes`: counts bytes read plus bytes written (2·bytes), the
 *  convention of the measured ceiling copy_bytes_per_s. */
Cost copy_cost(std::int64_t bytes);

/** Decode attention: one bf16 query token per sequence over its paged KV cache (B = kv_lens.size()
 *  sequences of L_b cached tokens, H_q query heads sharing H_kv KV heads, head size D, pages of
 *  `block_size` tokens, KV elements of `kv_dtype`: bf16 or fp8 with one fp32 scale each for K and V).
 *  flops = 4·H_q·D·ΣL (q·k and p·v, 2 each; softmax not counted).
 *  bytes = the KV read once, 2·H_kv·D·ΣL·s_kv, + q read and output written, 2·B·H_q·D·2 (bf16),
 *        + the block-table entries used, 4·Σ ceil(L_b / block_size), + the lengths, 4·B,
 *        + 8 for the fp8 scales. The split-KV partial results are intermediates: not counted.
 *  Throws moesim::Error for an empty batch, a length < 1, H_q not a multiple of H_kv, or D, block_size < 1. */
Cost decode_attention_cost(const std::vector<std::int64_t>& kv_lens, std::int64_t q_heads, std::int64_t kv_heads,
                           std::int64_t d_head, std::int64_t block_size, DType kv_dtype);

/** Query–key pairs a causal attention computes for one sequence of q_len queries that are the last
 *  q_len of kv_len positions (bottom-right aligned, as FlashAttention ≥ 2.1 and chunked prefill):
 *  query i attends keys 0 … i + (kv_len − q_len): q(q+1)/2 + q·(kv − q). Without `causal`: q·kv. */
double attention_pairs(std::int64_t q_len, std::int64_t kv_len, bool causal);

/** Prefill attention over a batch of variable-length sequences packed back to back (Q [ΣQ×H_q×D],
 *  K and V [ΣK×H_kv×D], O like Q, all `dtype`; offsets in two int32 arrays of B+1).
 *  flops = 4·H_q·D·Σ pairs (attention_pairs; masked pairs are not counted, as FlashAttention counts);
 *  bytes = (2·H_q·ΣQ + 2·H_kv·ΣK)·D·s (Q, K, V read, O written) + 8·(B+1) (the offset arrays).
 *  Throws moesim::Error for mismatched or empty length lists, q_len < 1, q_len > kv_len,
 *  or bad head counts. */
Cost prefill_attention_cost(const std::vector<std::int64_t>& q_lens, const std::vector<std::int64_t>& kv_lens,
                            std::int64_t q_heads, std::int64_t kv_heads, std::int64_t d_head, bool causal, DType dtype);

}  // namespace moesim::kernels
