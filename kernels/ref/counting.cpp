// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/counting.hpp"

#include "moesim/core/error.hpp"

namespace moesim::kernels {

namespace {
constexpr double kIndexBytes = 4.0;   // int32 index maps
constexpr double kWeightBytes = 4.0;  // fp32 routing weights and logits

double d(std::int64_t v) { return static_cast<double>(v); }
}  // namespace

const std::vector<KernelClass>& kernel_classes() {
  static const std::vector<KernelClass> kAll{KernelClass::gemm,           KernelClass::batched_gemm,
                                             KernelClass::grouped_gemm,   KernelClass::router,
                                             KernelClass::permute,        KernelClass::unpermute,
                                             KernelClass::elementwise,    KernelClass::decode_attention,
                                             KernelClass::prefill_attention};
  return kAll;
}

std::string to_string(KernelClass cls) {
  switch (cls) {
    case KernelClass::gemm: return "gemm";
    case KernelClass::batched_gemm: return "batched_gemm";
    case KernelClass::grouped_gemm: return "grouped_gemm";
    case KernelClass::router: return "router";
    case KernelClass::permute: return "permute";
    case KernelClass::unpermute: return "unpermute";
    case KernelClass::elementwise: return "elementwise";
    case KernelClass::decode_attention: return "decode_attention";
    case KernelClass::prefill_attention: return "prefill_attention";
  }
  return "?";
}

KernelClass parse_kernel_class(std::string_view text) {
  std::string allowed;
  for (KernelClass c : kernel_classes()) {
    if (text == to_string(c)) return c;
    allowed += (allowed.empty() ? "" : ", ") + to_string(c);
  }
  throw Error("unknown kernel_class '" + std::string(text) + "' (allowed: " + allowed + ")");
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
  const double s_out = dtype == DType::fp8 ? 2.0 : s;  // fp8 GEMMs write bf16
  const double bytes = d(active_experts) * (d(dm) * g * d(f) + d(f) * d(dm)) * s + d(rows) * d(dm) * (s + s_out);
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

namespace {
constexpr double kBf16Bytes = 2.0;   // decode attention: query and output are bf16
constexpr double kFp8ScaleBytes = 8.0;  // one fp32 scale for K and one for V

void require_heads(const char* where, std::int64_t q_heads, std::int64_t kv_heads, std::int64_t d_head) {
  if (q_heads < 1 || kv_heads < 1 || d_head < 1 || q_heads % kv_heads != 0) {
    throw Error(std::string(where) + ": need q_heads, kv_heads, d_head >= 1 and q_heads a multiple of kv_heads (got " +
                std::to_string(q_heads) + ", " + std::to_string(kv_heads) + ", " + std::to_string(d_head) + ")");
  }
}
}  // namespace

Cost decode_attention_cost(const std::vector<std::int64_t>& kv_lens, std::int64_t q_heads, std::int64_t kv_heads,
                           std::int64_t d_head, std::int64_t block_size, DType kv_dtype) {
  constexpr const char* kWhere = "decode_attention_cost";
  require_heads(kWhere, q_heads, kv_heads, d_head);
  if (kv_lens.empty() || block_size < 1) throw Error(std::string(kWhere) + ": need >= 1 sequence and block_size >= 1");
  double tokens = 0.0, pages = 0.0;
  for (std::int64_t l : kv_lens) {
    if (l < 1) throw Error(std::string(kWhere) + ": every KV length must be >= 1, got " + std::to_string(l));
    tokens += d(l);
    pages += d((l + block_size - 1) / block_size);
  }
  const double b = d(static_cast<std::int64_t>(kv_lens.size()));
  const double s_kv = d(static_cast<std::int64_t>(dtype_bytes(kv_dtype)));
  const double flops = 4.0 * d(q_heads) * d(d_head) * tokens;
  const double bytes = 2.0 * d(kv_heads) * d(d_head) * tokens * s_kv + 2.0 * b * d(q_heads) * d(d_head) * kBf16Bytes +
                       kIndexBytes * pages + kIndexBytes * b + (kv_dtype == DType::fp8 ? kFp8ScaleBytes : 0.0);
  return {flops, bytes};
}

double attention_pairs(std::int64_t q_len, std::int64_t kv_len, bool causal) {
  if (q_len < 1 || kv_len < q_len) {
    throw Error("attention_pairs: need 1 <= q_len <= kv_len (got " + std::to_string(q_len) + ", " +
                std::to_string(kv_len) + ")");
  }
  const double q = d(q_len), kv = d(kv_len);
  return causal ? q * (q + 1.0) / 2.0 + q * (kv - q) : q * kv;
}

Cost prefill_attention_cost(const std::vector<std::int64_t>& q_lens, const std::vector<std::int64_t>& kv_lens,
                            std::int64_t q_heads, std::int64_t kv_heads, std::int64_t d_head, bool causal, DType dtype) {
  constexpr const char* kWhere = "prefill_attention_cost";
  require_heads(kWhere, q_heads, kv_heads, d_head);
  if (q_lens.empty() || q_lens.size() != kv_lens.size()) {
    throw Error(std::string(kWhere) + ": need as many KV lengths as query lengths, and >= 1 sequence");
  }
  double pairs = 0.0, q_tokens = 0.0, kv_tokens = 0.0;
  for (std::size_t i = 0; i < q_lens.size(); ++i) {
    pairs += attention_pairs(q_lens[i], kv_lens[i], causal);
    q_tokens += d(q_lens[i]);
    kv_tokens += d(kv_lens[i]);
  }
  const double s = d(static_cast<std::int64_t>(dtype_bytes(dtype)));
  const double b = d(static_cast<std::int64_t>(q_lens.size()));
  const double flops = 4.0 * d(q_heads) * d(d_head) * pairs;
  const double bytes = (2.0 * d(q_heads) * q_tokens + 2.0 * d(kv_heads) * kv_tokens) * d(d_head) * s +
                       2.0 * kIndexBytes * (b + 1.0);
  return {flops, bytes};
}

}  // namespace moesim::kernels
