// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moesim/kernels/counting.hpp"
#include "moesim/kernels/types.hpp"

/** What the profiler measures: the model shapes of the scenarios, the shape grid of every kernel,
 *  and the timing policy. Plain C++ so that the grid (its coverage, its memory needs and its
 *  estimated run time) is unit-tested without a GPU. */
namespace moesim::kernels::sweep {

/** Layer shapes of one model, with where they come from. experts = 0 for a dense model. */
struct ModelShape {
  std::string name;
  std::int64_t d_model = 0;
  std::int64_t d_ff = 0;
  std::int64_t heads = 0;
  std::int64_t d_head = 0;
  std::int64_t kv_heads = 0;  ///< KV heads (= heads without grouped-query attention)
  std::int64_t experts = 0;
  std::int64_t top_k = 0;
  Activation act = Activation::relu;
  std::string source;
};

/** GShard-600B, Switch-Base, Switch-C, ST-MoE-32B, T5-XXL (v1.1) and a Mixtral-like model. */
const std::vector<ModelShape>& models();

/** Timing policy shared by the profiler and the run-time estimate. */
struct TimingPolicy {
  int warmups = 3;              ///< untimed runs first (module load, cuBLAS heuristics)
  int min_repeats = 5;          ///< timed runs, at least
  int max_repeats = 100;        ///< timed runs, at most
  double target_s = 0.05;       ///< aim for this much timed GPU time per variant
  double max_run_s = 0.25;      ///< skip a shape whose single run is estimated slower than this
  /** Host-side time per shape besides the timed runs: allocating and filling the buffer sets,
   *  uploading index tables and pointer arrays, synchronizing. An assumption for the estimate
   *  (not measured): a few cudaMalloc/fill/upload round trips of a few ms each. */
  double setup_s = 0.03;
  /** Timed repeats for a variant whose single run takes about `run_s`. */
  int repeats_for(double run_s) const;
};

/** One planned measurement. Shape fields not used by the kernel stay 0. */
struct Job {
  KernelClass kernel_class = KernelClass::gemm;
  std::string kernel;
  DType dtype = DType::bf16;
  std::string model;  ///< model whose shape this is; empty for model-independent grids
  std::int64_t tokens = 0;
  std::int64_t d_model = 0;
  std::int64_t d_ff = 0;
  std::int64_t experts = 0;
  std::int64_t top_k = 0;
  std::int64_t tokens_per_expert = 0;
  std::int64_t m = 0, n = 0, k = 0, batch = 0;
  std::int64_t seq = 0;
  bool trans_b = false;
  // Attention (decode: dtype is the KV-cache element type, queries and outputs are bf16).
  std::int64_t q_heads = 0, kv_heads = 0, d_head = 0;
  std::int64_t block_size = 0;          ///< decode: tokens per KV page
  std::int64_t kv_len = 0;              ///< decode: cached tokens per sequence
  std::vector<std::int64_t> seq_lens;   ///< prefill: tokens of each sequence of the batch
  bool causal = false;
  Activation act = Activation::relu;
  double capacity_factor = 0.0;
  std::string distribution;            ///< expert FFN: "balanced" or "skewed"
  std::vector<std::int64_t> counts;    ///< expert FFN: rows per expert
  int variants = 1;                    ///< timed variants (expert FFN: strategies + dense equal)
  Cost cost;                           ///< work of one run of the main variant
  double set_bytes = 0.0;              ///< device memory of one buffer set (inputs, outputs, scratch)

  /** Short human description: "expert_ffn bf16 mixtral E=8 m=256 balanced". */
  std::string describe() const;
};

/** Sweep selection: the default (full) grid or the --quick smoke grid, the dtypes, and an
 *  optional filter (a kernel name such as "expert_ffn" or a class such as "gemm"; empty = all). */
struct SweepOptions {
  bool quick = false;
  std::vector<DType> dtypes{DType::bf16, DType::fp8, DType::fp32};
  std::string only;
};

/** Expert-FFN shapes whose largest expert has at most this many rows also time the `fused_small`
 *  strategy (one fused gate+up+activation kernel and one down-projection kernel for all experts,
 *  CUDA cores; see gpu/blas.hpp). Chosen: the decode range of the issue, 1–64 tokens per expert. */
inline constexpr std::int64_t kFusedSmallMaxRows = 64;

/** The decode-attention grid: sequences per step and cached tokens per sequence (every pair whose
 *  KV cache stays within kMaxDecodeKvBytes), KV pages of kDecodeBlockSize tokens (vLLM's default). */
const std::vector<std::int64_t>& decode_batches();
const std::vector<std::int64_t>& decode_kv_lens();
inline constexpr std::int64_t kDecodeBlockSize = 16;
inline constexpr double kMaxDecodeKvBytes = 8.0 * 1024 * 1024 * 1024;  ///< 8 GiB: one set fits an 80 GB GPU

/** The planned jobs in run order: bf16 before fp8 before fp32, the MoE and serving kernels first,
 *  so that a time budget that runs out drops the least important shapes (fp32). Throws
 *  moesim::Error for an `only` filter that matches no kernel (listing the names). */
std::vector<Job> plan(const SweepOptions& options);

/** Kernel names the sweep knows (for --only and its error message). */
std::vector<std::string> kernel_names();

/** Rows per expert for E experts averaging m tokens: "balanced" gives every expert m; "skewed"
 *  gives expert e a share ∝ 1/(e+1) (Zipf, exponent 1), rounded, the rounding remainder put on
 *  expert 0, so the total is exactly E·m. Throws for another distribution name or E, m < 1. */
std::vector<std::int64_t> expert_counts(const std::string& distribution, std::int64_t experts,
                                        std::int64_t tokens_per_expert);

/** Device ceilings used to estimate run time before measuring: flop rates per dtype, copy
 *  bandwidth (bytes read + written per second) and a per-launch floor. fp32_flops_per_s is also
 *  the CUDA-core rate (decode attention and the fused small-batch FFN run there). */
struct Ceilings {
  double bf16_flops_per_s = 0.0;
  double fp32_flops_per_s = 0.0;
  double bytes_per_s = 0.0;
  double floor_s = 0.0;
  double fp8_flops_per_s = 0.0;  ///< 0 = unknown: fp8 work estimated at the bf16 rate
};

/** Roofline estimate of one run of the job's main variant: max(flops/rate, bytes/bandwidth) +
 *  floor, the rate by dtype (decode attention: the CUDA-core rate fp32_flops_per_s; prefill
 *  attention: bf16). No efficiency factor: a lower bound, used to plan repeats and to skip huge
 *  shapes. */
double estimate_run_s(const Job& job, const Ceilings& ceilings);

/** Estimated GPU time of the whole job: variants · (warmups + 1 probe + repeats) · run time, or 0
 *  if the job would be skipped for max_run_s. */
double estimate_job_s(const Job& job, const Ceilings& ceilings, const TimingPolicy& policy);

/** Estimated wall time of a whole sweep: Σ estimate_job_s + setup_s per job that is not skipped. */
double estimate_sweep_s(const std::vector<Job>& jobs, const Ceilings& ceilings, const TimingPolicy& policy);

}  // namespace moesim::kernels::sweep
