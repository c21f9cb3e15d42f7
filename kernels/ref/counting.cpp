// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/counting.hpp"

#include "moesim/core/error.hpp"

namespace moesim::kernels {

namespace {
constexpr double kIndexBytes = 4.0;   // int32 index maps
constexpr double kWeightBytes = 4.0;  // fp32 routing weights and logits

double d(std::int64_t v) { return static_cast<double>(v); }
}  // namespace

std::string to_string(KernelClass cls) {
  switch (cls) {
    case KernelClass::gemm: return "gemm";
    case KernelClass::batched_gemm: return "batched_gemm";
    case KernelClass::grouped_gemm: return "grouped_gemm";
    case KernelClass::router: return "router";
    case KernelClass::permute: return "permute";
    case KernelClass::unpermute: return "unpermute";
    case KernelClass::elementwise: return "elementwise";
  }
  return "?";
}

KernelClass parse_kernel_class(std::string_view text) {
  for (KernelClass c : {KernelClass::gemm, KernelClass::batched_gemm, KernelClass::grouped_gemm, KernelClass::router,
                        KernelClass::permute, KernelClass::unpermute, KernelClass::elementwise}) {
    if (text == to_string(c)) return c;
  }
  throw Error("unknown kernel_class '" + std::string(text) +
              "' (allowed: gemm, batched_gemm, grouped_gemm, router, permute, unpermute, elementwise)");
}

Cost gemm_cost(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, std::size_t out_bytes) {
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  return {2.0 * d(m) * d(n) * d(k), (d(m) * d(k) + d(k) * d(n)) * s + d(m) * d(n) * static_cast<double>(out_bytes)};
}

Cost batched_gemm_cost(std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, DType dtype) {
  const Cost one = gemm_cost(m, n, k, dtype, dtype_bytes(dtype));
  return {one.flops * d(batch), one.bytes * d(batch)};
}

Cost expert_ffn_cost(std::int64_t rows, std::int64_t active_experts, std::int64_t dm, std::int64_t f, Activation act,
                     DType dtype) {
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  const double g = is_gated(act) ? 2.0 : 1.0;
  const double flops = 2.0 * d(rows) * d(dm) * d(f) * g + 2.0 * d(rows) * d(f) * d(dm);
  const double bytes = d(active_experts) * (d(dm) * g * d(f) + d(f) * d(dm)) * s + 2.0 * d(rows) * d(dm) * s;
  return {flops, bytes};
}

Cost dense_ffn_cost(std::int64_t tokens, std::int64_t dm, std::int64_t f, Activation act, DType dtype) {
  return expert_ffn_cost(tokens, 1, dm, f, act, dtype);
}

Cost router_cost(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, std::int64_t rows) {
  const double bytes = kWeightBytes * d(tokens) * d(experts) +
                       (kIndexBytes + kWeightBytes + kIndexBytes) * d(tokens) * d(top_k) + kIndexBytes * d(rows) +
                       2.0 * kIndexBytes * d(experts);
  return {0.0, bytes};
}

Cost permute_cost(std::int64_t kept, std::int64_t rows, std::int64_t dm, DType dtype) {
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  return {0.0, d(kept) * d(dm) * s + d(rows) * d(dm) * s + kIndexBytes * d(rows)};
}

Cost unpermute_cost(std::int64_t tokens, std::int64_t top_k, std::int64_t kept, std::int64_t dm, DType dtype) {
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  return {0.0, d(kept) * d(dm) * s + (kIndexBytes + kWeightBytes) * d(tokens) * d(top_k) + d(tokens) * d(dm) * s};
}

Cost activation_cost(std::int64_t rows, std::int64_t f, Activation act, DType dtype) {
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  const double g = is_gated(act) ? 2.0 : 1.0;
  return {0.0, d(rows) * g * d(f) * s + d(rows) * d(f) * s};
}

Cost copy_cost(std::int64_t bytes) { return {0.0, 2.0 * d(bytes)}; }

}  // namespace moesim::kernels
