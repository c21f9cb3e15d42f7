// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/gpu/blas.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "moesim/core/error.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"

namespace moesim::kernels::gpu {

namespace {

cudaDataType_t cuda_type(DType dtype) { return dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

void require_dims(const char* where, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (m < 1 || n < 1 || k < 1) {
    throw Error(std::string(where) + ": m, n, k must be >= 1 (got " + std::to_string(m) + ", " + std::to_string(n) +
                ", " + std::to_string(k) + ")");
  }
}

const char* offset_bytes(const void* base, std::int64_t elements, DType dtype) {
  return static_cast<const char*>(base) + elements * static_cast<std::int64_t>(dtype_bytes(dtype));
}
char* offset_bytes(void* base, std::int64_t elements, DType dtype) {
  return static_cast<char*>(base) + elements * static_cast<std::int64_t>(dtype_bytes(dtype));
}

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

}  // namespace

// Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B's row-major storage is Bᵀ in column-major, so
// cuBLAS gets (B, A) with m ↔ n swapped and no physical transposes.
void gemm(cublasHandle_t handle, DType dtype, bool out_fp32, const void* a, const void* b, void* c, int m, int n,
          int k, bool trans_b) {
  require_dims("gpu::gemm", m, n, k);
  const cudaDataType_t t = cuda_type(dtype);
  MOESIM_CUBLAS_CHECK(cublasGemmEx(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &kOne, b, t,
                                   trans_b ? k : n, a, t, k, &kZero, c, out_fp32 ? CUDA_R_32F : t, n,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm_strided_batched(cublasHandle_t handle, DType dtype, const void* a, const void* b, void* c, int m, int n,
                          int k, int batch, bool trans_b) {
  require_dims("gpu::gemm_strided_batched", m, n, k);
  if (batch < 1) throw Error("gpu::gemm_strided_batched: batch must be >= 1");
  const cudaDataType_t t = cuda_type(dtype);
  MOESIM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &kOne, b, t, trans_b ? k : n,
      static_cast<long long>(k) * n, a, t, k, static_cast<long long>(m) * k, &kZero, c, t, n,
      static_cast<long long>(m) * n, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

std::string to_string(FfnStrategy strategy) {
  switch (strategy) {
    case FfnStrategy::loop: return "loop";
    case FfnStrategy::grouped: return "grouped";
    case FfnStrategy::padded_strided: return "padded_strided";
  }
  return "?";
}

ExpertFfn::ExpertFfn(DType dtype, Activation act, std::int64_t d, std::int64_t f, std::vector<std::int64_t> counts)
    : dtype_(dtype), act_(act), d_(d), f_(f), g_(is_gated(act) ? 2 : 1), counts_(std::move(counts)) {
  if (counts_.empty()) throw Error("gpu::ExpertFfn: no experts");
  if (d < 1 || f < 1) throw Error("gpu::ExpertFfn: d and f must be >= 1");
  offsets_.resize(counts_.size());
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] < 0) throw Error("gpu::ExpertFfn: expert " + std::to_string(e) + " has a negative row count");
    offsets_[e] = rows_;
    rows_ += counts_[e];
    capacity_ = std::max(capacity_, counts_[e]);
  }
  if (rows_ < 1) throw Error("gpu::ExpertFfn: no rows to compute (every count is 0)");
  // Group experts of equal row count: one cuBLAS group each.
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] > 0) group_order_.push_back(static_cast<std::int64_t>(e));
  }
  std::stable_sort(group_order_.begin(), group_order_.end(),
                   [this](std::int64_t x, std::int64_t y) { return counts_[x] < counts_[y]; });
  for (std::size_t i = 0; i < group_order_.size(); ++i) {
    const int m = static_cast<int>(counts_[group_order_[i]]);
    if (group_m_.empty() || group_m_.back() != m) {
      group_m_.push_back(m);
      group_size_.push_back(0);
    }
    ++group_size_.back();
  }
}

std::int64_t ExpertFfn::active_experts() const { return static_cast<std::int64_t>(group_order_.size()); }

void ExpertFfn::run(Context& ctx, FfnStrategy strategy, const FfnBuffers& b) {
  switch (strategy) {
    case FfnStrategy::loop: run_loop(ctx, b); break;
    case FfnStrategy::grouped: run_grouped(ctx, b); break;
    case FfnStrategy::padded_strided: run_padded(ctx, b); break;
  }
}

void ExpertFfn::run_loop(Context& ctx, const FfnBuffers& b) {
  const std::int64_t gf = g_ * f_;
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] == 0) continue;
    gemm(ctx.cublas(), dtype_, false, offset_bytes(b.x, offsets_[e] * d_, dtype_),
         offset_bytes(b.w13, static_cast<std::int64_t>(e) * d_ * gf, dtype_), offset_bytes(b.h, offsets_[e] * gf, dtype_),
         static_cast<int>(counts_[e]), static_cast<int>(gf), static_cast<int>(d_));
  }
  activation(b.h, rows_, static_cast<int>(f_), act_, dtype_, b.a, ctx.stream());
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] == 0) continue;
    gemm(ctx.cublas(), dtype_, false, offset_bytes(b.a, offsets_[e] * f_, dtype_),
         offset_bytes(b.w2, static_cast<std::int64_t>(e) * f_ * d_, dtype_), offset_bytes(b.y, offsets_[e] * d_, dtype_),
         static_cast<int>(counts_[e]), static_cast<int>(d_), static_cast<int>(f_));
  }
}

void ExpertFfn::run_padded(Context& ctx, const FfnBuffers& b) {
  const std::int64_t gf = g_ * f_;
  const int batch = static_cast<int>(counts_.size());
  gemm_strided_batched(ctx.cublas(), dtype_, b.x, b.w13, b.h, static_cast<int>(capacity_), static_cast<int>(gf),
                       static_cast<int>(d_), batch);
  activation(b.h, padded_rows(), static_cast<int>(f_), act_, dtype_, b.a, ctx.stream());
  gemm_strided_batched(ctx.cublas(), dtype_, b.a, b.w2, b.y, static_cast<int>(capacity_), static_cast<int>(d_),
                       static_cast<int>(f_), batch);
}

ExpertFfn::GroupedArrays& ExpertFfn::grouped_arrays(const FfnBuffers& b) {
  const std::vector<const void*> key{b.x, b.w13, b.w2, b.h, b.a, b.y};
  auto it = grouped_.find(key);
  if (it != grouped_.end()) return it->second;
  // Column-major view (see gemm): GEMM1 computes hᵀ = w13ᵀ·xᵀ, GEMM2 yᵀ = w2ᵀ·aᵀ.
  const std::int64_t gf = g_ * f_;
  const std::size_t p = group_order_.size();
  std::vector<const void*> ptrs(6 * p);
  for (std::size_t i = 0; i < p; ++i) {
    const std::int64_t e = group_order_[i];
    ptrs[i] = offset_bytes(b.w13, e * d_ * gf, dtype_);              // GEMM1 A
    ptrs[p + i] = offset_bytes(b.x, offsets_[e] * d_, dtype_);        // GEMM1 B
    ptrs[2 * p + i] = offset_bytes(b.h, offsets_[e] * gf, dtype_);    // GEMM1 C
    ptrs[3 * p + i] = offset_bytes(b.w2, e * f_ * d_, dtype_);        // GEMM2 A
    ptrs[4 * p + i] = offset_bytes(b.a, offsets_[e] * f_, dtype_);    // GEMM2 B
    ptrs[5 * p + i] = offset_bytes(b.y, offsets_[e] * d_, dtype_);    // GEMM2 C
  }
  GroupedArrays arrays{upload_raw(ptrs)};
  return grouped_.emplace(key, std::move(arrays)).first->second;
}

void ExpertFfn::run_grouped(Context& ctx, const FfnBuffers& b) {
  GroupedArrays& arrays = grouped_arrays(b);
  const auto groups = static_cast<int>(group_m_.size());
  const std::size_t p = group_order_.size();
  void** base = arrays.pointers.as<void*>();
  const cudaDataType_t t = cuda_type(dtype_);
  const std::vector<cublasOperation_t> op_n(groups, CUBLAS_OP_N);
  const std::vector<float> alpha(groups, 1.0f);
  const std::vector<float> beta(groups, 0.0f);
  const int gf = static_cast<int>(g_ * f_);
  const int d = static_cast<int>(d_);
  const int f = static_cast<int>(f_);
  // GEMM1: (gf × m) = (gf × d)·(d × m) per expert.
  const std::vector<int> m1(groups, gf);
  const std::vector<int> k1(groups, d);
  const std::vector<int> lda1(groups, gf);
  const std::vector<int> ldb1(groups, d);
  MOESIM_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(ctx.cublas(), op_n.data(), op_n.data(), m1.data(), group_m_.data(),
                                                 k1.data(), alpha.data(), base, t, lda1.data(), base + p, t,
                                                 ldb1.data(), beta.data(), base + 2 * p, t,
                                                 lda1.data(), groups, group_size_.data(), CUBLAS_COMPUTE_32F));
  activation(b.h, rows_, f, act_, dtype_, b.a, ctx.stream());
  // GEMM2: (d × m) = (d × f)·(f × m) per expert.
  const std::vector<int> m2(groups, d);
  const std::vector<int> k2(groups, f);
  const std::vector<int> lda2(groups, d);
  const std::vector<int> ldb2(groups, f);
  MOESIM_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(ctx.cublas(), op_n.data(), op_n.data(), m2.data(), group_m_.data(),
                                                 k2.data(), alpha.data(), base + 3 * p, t, lda2.data(), base + 4 * p, t,
                                                 ldb2.data(), beta.data(), base + 5 * p, t,
                                                 lda2.data(), groups, group_size_.data(), CUBLAS_COMPUTE_32F));
}

}  // namespace moesim::kernels::gpu
