// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

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

/** The kernel classes of the measured-profile format (profiles/measured/README.md). */
enum class KernelClass { gemm, batched_gemm, grouped_gemm, router, permute, unpermute, elementwise };

std::string to_string(KernelClass cls);
/** Parses a class name; throws moesim::Error listing the allowed names otherwise. */
KernelClass parse_kernel_class(std::string_view text);

/** Work of one kernel call: FLOPs and minimum bytes moved through device memory. */
struct Cost {
  double flops = 0.0;
  double bytes = 0.0;
};

/** C[m×n] = A[m×k]·B[k×n]: 2mnk FLOPs; reads A and B (dtype), writes C (out_bytes each; 4 for the
 *  router gate's fp32 logits, else the dtype). */
Cost gemm_cost(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, std::size_t out_bytes);
/** `batch` independent GEMMs of one shape (attention scores / values). */
Cost batched_gemm_cost(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, DType dtype);

/** Expert FFN over `rows` routed rows on `active_experts` experts (those with ≥ 1 row):
 *  flops = 2·rows·d·f·g + 2·rows·f·d (g = 2 for gated activations, else 1), counting only real
 *  rows (padding rows of the capacity-padded strategy do not count);
 *  bytes = active_experts·(d·g·f + f·d)·s (weights) + 2·rows·d·s (x read, y written), s = dtype bytes.
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

}  // namespace moesim::kernels
