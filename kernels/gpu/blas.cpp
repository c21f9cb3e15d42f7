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

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::bf16: return CUDA_R_16BF;
    case DType::fp32: return CUDA_R_32F;
    case DType::fp8: break;
  }
  throw Error("cuBLAS GEMMs here take bf16 or fp32; fp8 GEMMs go through gpu::Fp8Gemm (cuBLASLt)");
}

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
    case FfnStrategy::fused_small: return "fused_small";
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
    case FfnStrategy::fused_small: run_fused(ctx, b); break;
  }
}

const std::int32_t* ExpertFfn::segments() {
  if (segments_.get() == nullptr) {
    std::vector<std::int32_t> table(2 * counts_.size());
    for (std::size_t e = 0; e < counts_.size(); ++e) {
      table[e] = static_cast<std::int32_t>(offsets_[e]);
      table[counts_.size() + e] = static_cast<std::int32_t>(counts_[e]);
    }
    segments_ = upload_raw(table);
  }
  return segments_.as<std::int32_t>();
}

void ExpertFfn::run_fused(Context& ctx, const FfnBuffers& b) {
  const std::int32_t* table = segments();
  const auto experts = static_cast<int>(counts_.size());
  const std::int32_t* offs = table;
  const std::int32_t* cnts = table + experts;
  small_grouped_gemm(b.x, b.w13, b.a, offs, cnts, experts, static_cast<int>(capacity_), static_cast<int>(d_),
                     static_cast<int>(f_), g_ == 2 ? SmallGemmEpilogue::gated : SmallGemmEpilogue::activation, act_, dtype_,
                     ctx.stream());
  small_grouped_gemm(b.a, b.w2, b.y, offs, cnts, experts, static_cast<int>(capacity_), static_cast<int>(f_),
                     static_cast<int>(d_), SmallGemmEpilogue::none, act_, dtype_, ctx.stream());
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

// ---------------------------------------------------------------------------------------------
// fp8 through cuBLASLt (NVIDIA CUDALibrarySamples cuBLASLt/LtFp8Matmul shows the same calls).

Fp8Gemm::Fp8Gemm(Context& ctx, int m, int n, int k) {
  require_dims("gpu::Fp8Gemm", m, n, k);
  try {
    plan(ctx, m, n, k);
  } catch (...) {
    release();  // the destructor does not run for an object whose constructor throws
    throw;
  }
}

void Fp8Gemm::plan(Context& ctx, int m, int n, int k) {
  // Column-major view (see gemm): D_lt [n×m] = op(W) [n×k] · op(X) [k×m], W = our B stored [n×k]
  // row-major = [k×n] column-major, transposed (T); X = our A stored [m×k] row-major = [k×m]
  // column-major (N). That is cuBLASLt's required "TN" for fp8 on Hopper.
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
  // Plan with scale pointers set (unit scales), as they will be at run time, so that the heuristic
  // picks an algorithm for the scaled operation (NVIDIA's LtFp8Matmul sample sets them first too).
  unit_scales_ = upload_raw(std::vector<float>{1.0f, 1.0f});
  const float* unit = unit_scales_.as<float>();
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &unit, sizeof unit));
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &unit, sizeof unit));
  MOESIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout_w_, CUDA_R_8F_E4M3, k, n, k));
  MOESIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout_x_, CUDA_R_8F_E4M3, k, m, k));
  MOESIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout_c_, CUDA_R_16BF, n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  MOESIM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  workspace_bytes_ = Context::kLtWorkspaceBytes;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace_bytes_, sizeof workspace_bytes_);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(ctx.cublas_lt(), desc_, layout_w_, layout_x_, layout_c_, layout_c_, pref, 1, &result,
                                        &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found == 0) st = CUBLAS_STATUS_NOT_SUPPORTED;
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw CublasError(st, "gpu::Fp8Gemm m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                              ": no cuBLASLt fp8 algorithm (" + cublas_status_name(st) + ")");
  }
  algo_ = result.algo;
  workspace_bytes_ = result.workspaceSize;
}

Fp8Gemm::~Fp8Gemm() { release(); }

void Fp8Gemm::release() {
  if (layout_c_ != nullptr) cublasLtMatrixLayoutDestroy(layout_c_);
  if (layout_x_ != nullptr) cublasLtMatrixLayoutDestroy(layout_x_);
  if (layout_w_ != nullptr) cublasLtMatrixLayoutDestroy(layout_w_);
  if (desc_ != nullptr) cublasLtMatmulDescDestroy(desc_);
  layout_c_ = layout_x_ = layout_w_ = nullptr;
  desc_ = nullptr;
}

void Fp8Gemm::run(Context& ctx, const void* a, const void* b, const float* scale_a, const float* scale_b, void* c) const {
  // cuBLASLt's A is our B (the weight) and its B our A: the scales follow the operands.
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scale_b, sizeof scale_b));
  MOESIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scale_a, sizeof scale_a));
  MOESIM_CUBLAS_CHECK(cublasLtMatmul(ctx.cublas_lt(), desc_, &kOne, b, layout_w_, a, layout_x_, &kZero, c, layout_c_, c,
                                     layout_c_, &algo_, workspace_bytes_ > 0 ? ctx.lt_workspace() : nullptr,
                                     workspace_bytes_, ctx.stream()));
}

Fp8ExpertFfn::Fp8ExpertFfn(Context& ctx, Activation act, std::int64_t d, std::int64_t f, std::vector<std::int64_t> counts)
    : act_(act), d_(d), f_(f), g_(is_gated(act) ? 2 : 1), counts_(std::move(counts)) {
  if (counts_.empty()) throw Error("gpu::Fp8ExpertFfn: no experts");
  if (d < 1 || f < 1) throw Error("gpu::Fp8ExpertFfn: d and f must be >= 1");
  offsets_.resize(counts_.size());
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] < 0) throw Error("gpu::Fp8ExpertFfn: expert " + std::to_string(e) + " has a negative row count");
    offsets_[e] = rows_;
    rows_ += counts_[e];
    if (counts_[e] > 0 && plans_.count(counts_[e]) == 0) {
      const int m = static_cast<int>(counts_[e]);
      auto up = std::make_unique<Fp8Gemm>(ctx, m, static_cast<int>(g_ * f_), static_cast<int>(d_));
      auto down = std::make_unique<Fp8Gemm>(ctx, m, static_cast<int>(d_), static_cast<int>(f_));
      plans_.emplace(counts_[e], std::make_pair(std::move(up), std::move(down)));
    }
  }
  if (rows_ < 1) throw Error("gpu::Fp8ExpertFfn: no rows to compute (every count is 0)");
}

std::int64_t Fp8ExpertFfn::active_experts() const {
  return std::count_if(counts_.begin(), counts_.end(), [](std::int64_t c) { return c > 0; });
}

void Fp8ExpertFfn::run(Context& ctx, const Fp8FfnBuffers& b) {
  const std::int64_t gf = g_ * f_;
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] == 0) continue;
    plans_.at(counts_[e]).first->run(ctx, offset_bytes(b.x, offsets_[e] * d_, DType::fp8),
                                     offset_bytes(b.w13, static_cast<std::int64_t>(e) * gf * d_, DType::fp8), b.x_scale,
                                     b.w13_scale + e, offset_bytes(b.h, offsets_[e] * gf, DType::bf16));
  }
  activation_fp8(b.h, rows_, static_cast<int>(f_), act_, b.a_scale_value, b.a, ctx.stream());
  for (std::size_t e = 0; e < counts_.size(); ++e) {
    if (counts_[e] == 0) continue;
    plans_.at(counts_[e]).second->run(ctx, offset_bytes(b.a, offsets_[e] * f_, DType::fp8),
                                      offset_bytes(b.w2, static_cast<std::int64_t>(e) * d_ * f_, DType::fp8), b.a_scale,
                                      b.w2_scale + e, offset_bytes(b.y, offsets_[e] * d_, DType::bf16));
  }
}

}  // namespace moesim::kernels::gpu
