// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <vector>

#include "moesim/kernels/types.hpp"

/** CPU references of every MoE kernel: plain loops, fp64 arithmetic, on the same (already
 *  dtype-rounded) float inputs the GPU receives. They define what each GPU kernel must compute;
 *  the GPU tests compare against them by relative Frobenius error (floating outputs) or exactly
 *  (index maps, permuted copies). All matrices are row-major and dense. Shape errors throw
 *  moesim::Error naming the argument and the expected size. */
namespace moesim::kernels::ref {

/** C[m×n] = A[m×k]·B, with B stored [k×n] (or [n×k] and used transposed when `trans_b`).
 *  fp64 accumulation. Throws when a/b do not hold m·k / k·n elements or a dimension is < 1. */
std::vector<double> gemm(const std::vector<float>& a, const std::vector<float>& b, std::int64_t m,
                         std::int64_t n, std::int64_t k, bool trans_b = false);

/** `batch` independent GEMMs over contiguous slices: A is [batch×m×k], B [batch×k×n] (or
 *  [batch×n×k] with `trans_b`), C [batch×m×n]. Models attention scores (Q·Kᵀ, trans_b) and
 *  attention values (P·V). */
std::vector<double> batched_gemm(const std::vector<float>& a, const std::vector<float>& b, std::int64_t batch,
                                 std::int64_t m, std::int64_t n, std::int64_t k, bool trans_b = false);

/** Per-tensor fp8 scale: max |x| / 448, so that the largest magnitude maps onto the largest E4M3
 *  value (the "amax" recipe of NVIDIA Transformer Engine's delayed/current scaling; Micikevicius et
 *  al. 2022, arXiv:2209.05433, section 4.3). 1 for an all-zero tensor. Throws on NaN or infinity. */
double fp8_scale(const std::vector<float>& values);

/** E4M3 quantization with a per-tensor scale: q = round_to_e4m3(x / scale), returned as floats
 *  holding E4M3 values (dequantize with q · scale). Throws for a non-finite or non-positive scale. */
std::vector<float> quantize_e4m3(const std::vector<float>& values, double scale);

/** fp8 GEMM as cuBLASLt computes it on Hopper, in fp64: C[m×n] = scale_a · scale_b · A·B with A
 *  [m×k] and B [k×n] (or [n×k] with `trans_b`) holding E4M3 values. Throws moesim::Error when an
 *  element is not an E4M3 value (quantize first), on a shape mismatch or a bad scale. */
std::vector<double> gemm_fp8(const std::vector<float>& qa, const std::vector<float>& qb, double scale_a, double scale_b,
                             std::int64_t m, std::int64_t n, std::int64_t k, bool trans_b = false);

/** Expert capacity in tokens: ceil(capacity_factor · top_k · tokens / experts) (Switch
 *  Transformer, Fedus et al. 2022, arXiv:2101.03961, eq. 3–4, with the top-k factor of GShard).
 *  A product within 1e-9 (relative) of an integer counts as that integer, so that 1.1·10 is 11,
 *  not 12. Throws for tokens/experts/top_k < 1, top_k > experts, or a non-finite or non-positive
 *  capacity_factor (which would give zero capacity). */
std::int64_t capacity(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, double capacity_factor);

/** Router outputs for T tokens over E experts choosing k each. */
struct RouterOutput {
  std::int64_t tokens = 0;
  std::int64_t experts = 0;
  std::int64_t top_k = 0;
  std::vector<double> probs;          ///< [T×E] softmax of the logits, each row sums to 1
  std::vector<std::int32_t> expert;   ///< [T×k] chosen experts, best first; ties → lower index
  std::vector<double> weight;         ///< [T×k] routing weight of each choice
};

/** Softmax over each row of `logits` [T×E] (max-subtracted, fp64), then the k largest
 *  probabilities per row, best first, ties broken towards the lower expert index. The weight is
 *  the chosen probability, or, with `renormalize`, that probability divided by the sum of the k
 *  chosen ones (Mixtral, GShard top-2). Throws for k < 1, k > E, or a size mismatch. */
RouterOutput softmax_topk(const std::vector<double>& logits, std::int64_t tokens, std::int64_t experts,
                          std::int64_t top_k, bool renormalize);

/** Where every token-choice goes after capacity is applied, and the inverse map.
 *  Assignment (t, j) — token t's j-th choice — is stored at index t·k + j.
 *  Order of priority (which assignments are dropped first): choice-major, then token order:
 *  all first choices in token order, then all second choices, ... (GShard's top-2 gating gives
 *  first choices priority: Lepikhin et al. 2021, arXiv:2006.16668, Algorithm 1). An assignment's
 *  slot is the number of assignments to the same expert earlier in that order; it is kept iff
 *  slot < capacity. */
struct DispatchPlan {
  std::int64_t tokens = 0;
  std::int64_t experts = 0;
  std::int64_t top_k = 0;
  std::int64_t capacity = 0;
  DispatchLayout layout = DispatchLayout::contiguous;
  std::vector<std::int32_t> demand;          ///< [E] assignments per expert before drops
  std::vector<std::int32_t> count;           ///< [E] kept rows per expert = min(demand, capacity)
  std::vector<std::int64_t> offset;          ///< [E] first row of expert e in the permuted buffer
  std::int64_t rows = 0;                     ///< rows of the permuted buffer (padded: E·capacity)
  std::vector<std::int32_t> dest_row;        ///< [T·k] row of each assignment, -1 if dropped
  std::vector<std::int32_t> row_token;       ///< [rows] source token of each row, -1 for padding
  std::int64_t dropped = 0;                  ///< assignments dropped for lack of capacity

  /** dropped / (T·k). */
  double drop_rate() const;
  /** Sum of count (rows that carry a token). */
  std::int64_t kept() const;
};

/** Builds the plan from the chosen experts ([T×k], values in [0, E)). Throws for an expert id out
 *  of range, a token that picks the same expert twice, capacity < 1, or more than 2³¹−1 rows. */
DispatchPlan plan_dispatch(const std::vector<std::int32_t>& expert, std::int64_t tokens, std::int64_t experts,
                           std::int64_t top_k, std::int64_t capacity, DispatchLayout layout);

/** Permute (dispatch): out[r] = x[row_token[r]] for every row of the plan, zeros for padding.
 *  x is [T×d]; returns [rows×d]. Exact copy. */
std::vector<float> permute(const std::vector<float>& x, std::int64_t d, const DispatchPlan& plan);

/** Unpermute (combine): out[t] = Σ_j weight[t·k+j] · y[dest_row[t·k+j]] over kept choices
 *  (dropped choices add nothing). y is [rows×d], weight [T×k]; returns [T×d] in fp64. */
std::vector<double> unpermute(const std::vector<float>& y, std::int64_t d, const DispatchPlan& plan,
                              const std::vector<double>& weight);

/** The FFN non-linearity over `rows` rows of width f. For a gated activation `h` is [rows×2f],
 *  gate pre-activation in columns [0, f) and the linear ("up") half in [f, 2f), and the result is
 *  act(gate) · up; otherwise h is [rows×f] and the result act(h). Returns [rows×f]. */
std::vector<double> activation(const std::vector<float>& h, std::int64_t rows, std::int64_t f, Activation act);

/** Expert segments of a permuted buffer: rows [offset[e], offset[e] + count[e]) belong to expert e. */
struct Segments {
  std::vector<std::int64_t> offset;
  std::vector<std::int64_t> count;
  std::int64_t rows = 0;  ///< total rows of the buffer (≥ every offset + count)
};

/** The segments a plan lays out (its offsets and kept counts). */
Segments segments_of(const DispatchPlan& plan);

/** Expert FFN: for each expert e and each of its rows x: y = act(x·W1_e [⊙ x·W3_e])·W2_e.
 *  x is [rows×d]; w13 is [E×d×g·f] (g = 2 for gated: W1 in columns [0, f), W3 in [f, 2f) of each
 *  row), w2 is [E×f×d]. Rows outside every segment (padding) come out 0. Returns [rows×d], fp64
 *  throughout (no intermediate rounding). */
std::vector<double> expert_ffn(const std::vector<float>& x, const Segments& segments, const std::vector<float>& w13,
                               const std::vector<float>& w2, std::int64_t d, std::int64_t f, Activation act);

/** Expert FFN in fp8 as the GPU pipeline computes it (gpu::Fp8ExpertFfn), in fp64 apart from the
 *  roundings the pipeline stores: h = x_scale·w13_scale[e]·(qx·qw13_e) rounded to bf16 (h is a bf16
 *  tensor), a = act(h_gate) [· h_up], qa = round_to_e4m3(float(a) / float(a_scale)) (the fp8 input of
 *  the down projection, float division as the GPU), y = a_scale·w2_scale[e]·(qa·qw2_e). qx [rows×d],
 *  qw13 [E×d×g·f] and qw2 [E×f×d] hold E4M3 values (layouts of expert_ffn); one scale per expert
 *  and weight. Returns y [rows×d]; rows outside every segment are 0. Throws on bad sizes or scales,
 *  or operands that are not E4M3 values. */
std::vector<double> expert_ffn_fp8(const std::vector<float>& qx, double x_scale, const Segments& segments,
                                   const std::vector<float>& qw13, const std::vector<double>& w13_scale,
                                   const std::vector<float>& qw2, const std::vector<double>& w2_scale, double a_scale,
                                   std::int64_t d, std::int64_t f, Activation act);

/** Dense FFN (a non-expert layer): expert_ffn with one expert holding all `tokens` rows. */
std::vector<double> dense_ffn(const std::vector<float>& x, std::int64_t tokens, const std::vector<float>& w13,
                              const std::vector<float>& w2, std::int64_t d, std::int64_t f, Activation act);

/** ‖got − ref‖_F / ‖ref‖_F (or ‖got‖_F when ref is all zeros). Returns +∞ if `got` holds a NaN
 *  or infinity, so a NaN never passes a tolerance. Throws on a size mismatch. */
double relative_frobenius_error(const std::vector<float>& got, const std::vector<double>& ref);
double relative_frobenius_error(const std::vector<double>& got, const std::vector<double>& ref);

/** Number of tokens whose chosen experts `got` ([T×k]) are not a valid top-k of the reference
 *  probabilities: an id out of range, a repeated id, or a chosen probability more than `tol` below
 *  the reference k-th largest (near-ties may legitimately differ between fp32 and fp64). */
std::int64_t topk_mismatches(const RouterOutput& ref, const std::vector<std::int32_t>& got, double tol);

}  // namespace moesim::kernels::ref
