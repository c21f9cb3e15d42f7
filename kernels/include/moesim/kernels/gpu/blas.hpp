// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moesim/kernels/gpu/memory.hpp"
#include "moesim/kernels/types.hpp"

/** cuBLAS wrappers in row-major terms, the expert FFN over experts with unequal token counts in
 *  four strategies (bf16 and fp32 operands, fp32 accumulation: CUBLAS_COMPUTE_32F; fp32 is true
 *  fp32, not TF32), and fp8 (E4M3) GEMMs and expert FFN through cuBLASLt with per-tensor scales. */
namespace moesim::kernels::gpu {

/** Row-major C[m×n] = A[m×k]·B (B [k×n], or [n×k] used transposed when trans_b). C is fp32 when
 *  `out_fp32` (router logits), else `dtype`. */
void gemm(cublasHandle_t handle, DType dtype, bool out_fp32, const void* a, const void* b, void* c, int m, int n,
          int k, bool trans_b = false);

/** `batch` GEMMs over contiguous slices (strides m·k, k·n / n·k, m·n). */
void gemm_strided_batched(cublasHandle_t handle, DType dtype, const void* a, const void* b, void* c, int m, int n,
                          int k, int batch, bool trans_b = false);

/** Expert FFN strategies: a loop of cublasGemmEx per expert, one cublasGemmGroupedBatchedEx call per
 *  GEMM, cublasGemmStridedBatchedEx over capacity-padded segments (every expert padded to the
 *  largest count), or `fused_small`: two launches of small_grouped_gemm (ops.hpp) for all experts,
 *  the first computing act(x·W1) [⊙ x·W3] directly (gate+up GEMM fused with the activation: no h
 *  written), the second the down projection; made for the decode regime (a few rows per expert). */
enum class FfnStrategy { loop, grouped, padded_strided, fused_small };
std::string to_string(FfnStrategy strategy);

/** Buffers of one expert FFN run. Contiguous strategies read x [rows×d] and write y [rows×d];
 *  padded_strided reads x [E·C×d] and writes y [E·C×d] (C = largest count). h holds g·f columns,
 *  a holds f columns, with as many rows as x (fused_small does not use h). */
struct FfnBuffers {
  const void* x = nullptr;
  const void* w13 = nullptr;  ///< [E×d×g·f]
  const void* w2 = nullptr;   ///< [E×f×d]
  void* h = nullptr;
  void* a = nullptr;
  void* y = nullptr;
};

/** An expert FFN of fixed shape: E experts with the given row counts, d_model, d_ff, activation. */
class ExpertFfn {
 public:
  /** Throws moesim::Error for negative counts, no experts or d/f < 1. */
  ExpertFfn(DType dtype, Activation act, std::int64_t d, std::int64_t f, std::vector<std::int64_t> counts);

  /** Runs one strategy on the context's stream (asynchronous). The grouped strategy builds its
   *  device pointer arrays once per distinct buffer set and reuses them. */
  void run(Context& ctx, FfnStrategy strategy, const FfnBuffers& buffers);
  /** Builds the grouped strategy's device pointer arrays for a buffer set, and the fused strategy's
   *  segment table, now (synchronous uploads), so that it does not happen inside a timed run. */
  void prepare(const FfnBuffers& buffers) {
    grouped_arrays(buffers);
    segments();
  }

  std::int64_t rows() const { return rows_; }                 ///< Σ counts
  std::int64_t capacity() const { return capacity_; }         ///< largest count
  std::int64_t padded_rows() const { return capacity_ * experts(); }
  std::int64_t experts() const { return static_cast<std::int64_t>(counts_.size()); }
  std::int64_t active_experts() const;
  const std::vector<std::int64_t>& offsets() const { return offsets_; }
  const std::vector<std::int64_t>& counts() const { return counts_; }

 private:
  struct GroupedArrays {
    DeviceMemory pointers;  // A/B/C arrays of both GEMMs
  };
  void run_loop(Context& ctx, const FfnBuffers& b);
  void run_grouped(Context& ctx, const FfnBuffers& b);
  void run_padded(Context& ctx, const FfnBuffers& b);
  void run_fused(Context& ctx, const FfnBuffers& b);
  GroupedArrays& grouped_arrays(const FfnBuffers& b);
  /** int32 offsets [E] then counts [E] on the device (uploaded on first use). */
  const std::int32_t* segments();

  DType dtype_;
  Activation act_;
  std::int64_t d_;
  std::int64_t f_;
  std::int64_t g_;
  std::vector<std::int64_t> counts_;
  std::vector<std::int64_t> offsets_;
  std::int64_t rows_ = 0;
  std::int64_t capacity_ = 0;
  // Grouped call description: experts with equal counts share a group.
  std::vector<int> group_m_;
  std::vector<int> group_size_;
  std::vector<std::int64_t> group_order_;  // experts (count > 0) in group order
  std::map<std::vector<const void*>, GroupedArrays> grouped_;  // keyed by all six buffer pointers
  DeviceMemory segments_;
};

/** One fp8 GEMM shape planned on cuBLASLt: C[m×n] (bf16, row-major) = scale_a · scale_b · A·Bᵀ with
 *  A [m×k] and B [n×k] E4M3, row-major (B in nn.Linear layout: on Hopper cuBLASLt takes fp8
 *  operands only as "TN", A transposed, B not, in its column-major terms — which is this). fp32
 *  accumulation; scale_a and scale_b are device pointers to one fp32 each (per-tensor scaling,
 *  CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER). The algorithm is cuBLASLt's first heuristic choice for
 *  the shape, fixed at construction. */
class Fp8Gemm {
 public:
  /** Throws CublasError(CUBLAS_STATUS_NOT_SUPPORTED) when cuBLASLt offers no algorithm (e.g. a GPU
   *  without fp8 tensor cores, compute capability < 8.9), moesim::Error for dimensions < 1. */
  Fp8Gemm(Context& ctx, int m, int n, int k);
  ~Fp8Gemm();
  Fp8Gemm(const Fp8Gemm&) = delete;
  Fp8Gemm& operator=(const Fp8Gemm&) = delete;

  void run(Context& ctx, const void* a, const void* b, const float* scale_a, const float* scale_b, void* c) const;

 private:
  void plan(Context& ctx, int m, int n, int k);
  void release();

  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t layout_w_ = nullptr;  // cuBLASLt's A: our B
  cublasLtMatrixLayout_t layout_x_ = nullptr;  // cuBLASLt's B: our A
  cublasLtMatrixLayout_t layout_c_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  std::size_t workspace_bytes_ = 0;
  DeviceMemory unit_scales_;  // two fp32 ones: the scale pointers the plan was made with
};

/** Buffers of one fp8 expert FFN run: x, weights and the activation a in E4M3, h and y in bf16; one
 *  fp32 scale for x and for a, one per expert for each weight (device arrays). */
struct Fp8FfnBuffers {
  const void* x = nullptr;          ///< [rows × d] E4M3
  const void* w13 = nullptr;        ///< [E × g·f × d] E4M3: each expert's W1 | W3, transposed (nn.Linear layout)
  const void* w2 = nullptr;         ///< [E × d × f] E4M3: W2 transposed
  const float* x_scale = nullptr;   ///< [1]
  const float* w13_scale = nullptr; ///< [E]
  const float* a_scale = nullptr;   ///< [1], the same value as a_scale_value
  const float* w2_scale = nullptr;  ///< [E]
  float a_scale_value = 1.0f;       ///< host copy of the activation scale (the quantization kernel divides by it)
  void* h = nullptr;                ///< [rows × g·f] bf16
  void* a = nullptr;                ///< [rows × f] E4M3
  void* y = nullptr;                ///< [rows × d] bf16
};

/** Expert FFN in fp8 (a `loop` strategy): per expert an Fp8Gemm for W1|W3 (bf16 h), the activation
 *  quantized to E4M3 with a static per-tensor scale (one launch over all rows), per expert an
 *  Fp8Gemm for W2 (bf16 y). Same semantics as ref::expert_ffn_fp8. */
class Fp8ExpertFfn {
 public:
  /** Plans the GEMMs (one pair per distinct row count). Throws as Fp8Gemm, and moesim::Error for
   *  negative counts, no rows, or d, f < 1. */
  Fp8ExpertFfn(Context& ctx, Activation act, std::int64_t d, std::int64_t f, std::vector<std::int64_t> counts);
  void run(Context& ctx, const Fp8FfnBuffers& buffers);
  std::int64_t rows() const { return rows_; }
  std::int64_t experts() const { return static_cast<std::int64_t>(counts_.size()); }
  std::int64_t active_experts() const;

 private:
  Activation act_;
  std::int64_t d_, f_, g_;
  std::vector<std::int64_t> counts_, offsets_;
  std::int64_t rows_ = 0;
  std::map<std::int64_t, std::pair<std::unique_ptr<Fp8Gemm>, std::unique_ptr<Fp8Gemm>>> plans_;  // count -> (up, down)
};

}  // namespace moesim::kernels::gpu
