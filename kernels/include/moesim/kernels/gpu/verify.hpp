// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moesim/kernels/gpu/blas.hpp"
#include "moesim/kernels/gpu/memory.hpp"
#include "moesim/kernels/types.hpp"

/** GPU-versus-CPU-reference checks of every kernel, shared by the GPU test executable and
 *  `moesim-profile --check` (the profiler refuses to time kernels that fail them). Floating
 *  outputs are compared by relative Frobenius error against the fp64 reference (NaN never
 *  passes: outputs are poisoned with NaN before each run, so an unwritten element fails too);
 *  index maps and permuted copies must match exactly. Fresh random inputs per check. */
namespace moesim::kernels::gpu {

/** Outcome of one check. */
struct CheckResult {
  std::string name;
  double error = 0.0;      ///< relative Frobenius error, or mismatch count for exact checks
  double tolerance = 0.0;  ///< pass iff error <= tolerance
  bool passed = false;
  /** The device cannot run this kernel (fp8 GEMMs need compute capability >= 8.9): reported, not
   *  failed (passed stays true), so that an A100 still profiles everything else. */
  bool skipped = false;
  std::string detail;
};

/** Relative Frobenius tolerance per dtype: bf16 1e-2 (bf16 operands land in 1e-3…1e-2), fp32 1e-4
 *  (fp32 math lands far below; from the device notes' correctness practice). */
double tolerance_for(DType dtype);

CheckResult check_gemm(Context& ctx, DType dtype, int m, int n, int k, bool trans_b, bool out_fp32, std::uint64_t seed);
CheckResult check_batched_gemm(Context& ctx, DType dtype, int batch, int m, int n, int k, bool trans_b,
                               std::uint64_t seed);
CheckResult check_softmax_topk(Context& ctx, int tokens, int experts, int top_k, bool renormalize, std::uint64_t seed);
CheckResult check_plan(Context& ctx, int tokens, int experts, int top_k, double capacity_factor,
                       DispatchLayout layout, std::uint64_t seed);
CheckResult check_permute(Context& ctx, DType dtype, int tokens, int d, int experts, int top_k, DispatchLayout layout,
                          std::uint64_t seed);
CheckResult check_unpermute(Context& ctx, DType dtype, int tokens, int d, int experts, int top_k, std::uint64_t seed);
CheckResult check_activation(Context& ctx, DType dtype, Activation act, int rows, int f, std::uint64_t seed);
CheckResult check_expert_ffn(Context& ctx, DType dtype, Activation act, FfnStrategy strategy,
                             const std::vector<std::int64_t>& counts, int d, int f, std::uint64_t seed);
/** Decode attention over a shuffled paged cache against ref::decode_attention (bf16 tolerance; the
 *  fp8 KV values are exact E4M3 in both). splits = 0: the split plan of decode_splits(). */
CheckResult check_decode_attention(Context& ctx, DType kv_dtype, const std::vector<std::int32_t>& kv_lens, int q_heads,
                                   int kv_heads, int d_head, int block_size, int splits, std::uint64_t seed);
CheckResult check_prefill_attention(Context& ctx, const std::vector<std::int32_t>& q_lens,
                                    const std::vector<std::int32_t>& kv_lens, int q_heads, int kv_heads, int d_head,
                                    bool causal, std::uint64_t seed);
/** E4M3 quantization on the GPU against float_to_e4m3_bits of x / scale: exact (bit for bit). */
CheckResult check_quantize_fp8(Context& ctx, DType src_dtype, int n, std::uint64_t seed);
/** cuBLASLt fp8 GEMM (A [m×k], B [n×k], per-tensor scales) against ref::gemm_fp8. */
CheckResult check_gemm_fp8(Context& ctx, int m, int n, int k, std::uint64_t seed);
/** fp8 expert FFN (gpu::Fp8ExpertFfn) against ref::expert_ffn_fp8. */
CheckResult check_expert_ffn_fp8(Context& ctx, Activation act, const std::vector<std::int64_t>& counts, int d, int f,
                                 std::uint64_t seed);

/** The standard check groups: "gemm", "router", "permute", "activation", "expert_ffn", "attention",
 *  "fp8". */
std::vector<std::string> check_groups();
/** Runs one group's checks (edge shapes included: odd sizes that take the scalar paths, several
 *  planner chunks, experts with zero rows). Throws moesim::Error for an unknown group. */
std::vector<CheckResult> run_checks(Context& ctx, const std::string& group);

}  // namespace moesim::kernels::gpu
