// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cublas_v2.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moesim/kernels/gpu/memory.hpp"
#include "moesim/kernels/types.hpp"

/** cuBLAS wrappers in row-major terms, and the expert FFN over experts with unequal token counts
 *  in three strategies. bf16 and fp32 operands, fp32 accumulation (CUBLAS_COMPUTE_32F; fp32 is
 *  true fp32, not TF32). */
namespace moesim::kernels::gpu {

/** Row-major C[m×n] = A[m×k]·B (B [k×n], or [n×k] used transposed when trans_b). C is fp32 when
 *  `out_fp32` (router logits), else `dtype`. */
void gemm(cublasHandle_t handle, DType dtype, bool out_fp32, const void* a, const void* b, void* c, int m, int n,
          int k, bool trans_b = false);

/** `batch` GEMMs over contiguous slices (strides m·k, k·n / n·k, m·n). */
void gemm_strided_batched(cublasHandle_t handle, DType dtype, const void* a, const void* b, void* c, int m, int n,
                          int k, int batch, bool trans_b = false);

/** Expert FFN strategies: a loop of cublasGemmEx per expert, one cublasGemmGroupedBatchedEx call per
 *  GEMM, or cublasGemmStridedBatchedEx over capacity-padded segments (every expert padded to the
 *  largest count). */
enum class FfnStrategy { loop, grouped, padded_strided };
std::string to_string(FfnStrategy strategy);

/** Buffers of one expert FFN run. Contiguous strategies read x [rows×d] and write y [rows×d];
 *  padded_strided reads x [E·C×d] and writes y [E·C×d] (C = largest count). h holds g·f columns,
 *  a holds f columns, with as many rows as x. */
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
  /** Builds the grouped strategy's device pointer arrays for a buffer set now (a synchronous
   *  upload), so that it does not happen inside a timed run. */
  void prepare(const FfnBuffers& buffers) { grouped_arrays(buffers); }

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
  GroupedArrays& grouped_arrays(const FfnBuffers& b);

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
};

}  // namespace moesim::kernels::gpu
