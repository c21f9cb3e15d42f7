// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/gpu/verify.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "moesim/core/error.hpp"
#include "moesim/kernels/attention.hpp"
#include "moesim/kernels/gpu/attention.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/ops.hpp"
#include "moesim/kernels/reference.hpp"

namespace moesim::kernels::gpu {

namespace {

CheckResult finish(std::string name, double error, double tolerance, std::string detail = {}) {
  CheckResult r;
  r.name = std::move(name);
  r.error = error;
  r.tolerance = tolerance;
  r.passed = std::isfinite(error) && error <= tolerance;
  r.detail = std::move(detail);
  return r;
}

std::string shape(std::initializer_list<std::pair<const char*, long long>> dims) {
  std::ostringstream s;
  bool first = true;
  for (const auto& [k, v] : dims) {
    s << (first ? "" : " ") << k << '=' << v;
    first = false;
  }
  return s.str();
}

std::size_t bytes_of(std::size_t n, DType dtype) { return n * dtype_bytes(dtype); }

// Random router inputs: logits with spread 3 so that softmax is not flat, and their CPU routing.
ref::RouterOutput random_routing(int tokens, int experts, int top_k, std::uint64_t seed, std::vector<float>* logits_out) {
  const auto logits = random_values(static_cast<std::size_t>(tokens) * experts, seed, 3.0f, DType::fp32);
  if (logits_out != nullptr) *logits_out = logits;
  return ref::softmax_topk(std::vector<double>(logits.begin(), logits.end()), tokens, experts, top_k, false);
}

template <class T>
std::int64_t mismatches(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return static_cast<std::int64_t>(std::max(a.size(), b.size()));
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

}  // namespace

double tolerance_for(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-4; }

CheckResult check_gemm(Context& ctx, DType dtype, int m, int n, int k, bool trans_b, bool out_fp32, std::uint64_t seed) {
  const auto a = random_values(static_cast<std::size_t>(m) * k, seed, 1.0f, dtype);
  const auto b = random_values(static_cast<std::size_t>(k) * n, seed + 1, 1.0f, dtype);
  DeviceMemory da = upload(a, dtype);
  DeviceMemory db = upload(b, dtype);
  const DType out_type = out_fp32 ? DType::fp32 : dtype;
  DeviceMemory dc(bytes_of(static_cast<std::size_t>(m) * n, out_type));
  poison(dc.get(), dc.bytes(), ctx.stream());
  gemm(ctx.cublas(), dtype, out_fp32, da.get(), db.get(), dc.get(), m, n, k, trans_b);
  ctx.synchronize();
  const auto got = download(dc.get(), static_cast<std::size_t>(m) * n, out_type);
  const double err = ref::relative_frobenius_error(got, ref::gemm(a, b, m, n, k, trans_b));
  return finish("gemm " + to_string(dtype) + (out_fp32 ? "->fp32 " : " ") + (trans_b ? "A·Bt " : "A·B ") +
                    shape({{"m", m}, {"n", n}, {"k", k}}),
                err, tolerance_for(dtype));
}

CheckResult check_batched_gemm(Context& ctx, DType dtype, int batch, int m, int n, int k, bool trans_b,
                               std::uint64_t seed) {
  const auto a = random_values(static_cast<std::size_t>(batch) * m * k, seed, 1.0f, dtype);
  const auto b = random_values(static_cast<std::size_t>(batch) * k * n, seed + 1, 1.0f, dtype);
  DeviceMemory da = upload(a, dtype);
  DeviceMemory db = upload(b, dtype);
  DeviceMemory dc(bytes_of(static_cast<std::size_t>(batch) * m * n, dtype));
  poison(dc.get(), dc.bytes(), ctx.stream());
  gemm_strided_batched(ctx.cublas(), dtype, da.get(), db.get(), dc.get(), m, n, k, batch, trans_b);
  ctx.synchronize();
  const auto got = download(dc.get(), static_cast<std::size_t>(batch) * m * n, dtype);
  const double err = ref::relative_frobenius_error(got, ref::batched_gemm(a, b, batch, m, n, k, trans_b));
  return finish("batched_gemm " + to_string(dtype) + (trans_b ? " A·Bt " : " A·B ") +
                    shape({{"batch", batch}, {"m", m}, {"n", n}, {"k", k}}),
                err, tolerance_for(dtype));
}

CheckResult check_softmax_topk(Context& ctx, int tokens, int experts, int top_k, bool renormalize, std::uint64_t seed) {
  std::vector<float> logits;
  const auto expect = random_routing(tokens, experts, top_k, seed, &logits);
  DeviceMemory dl = upload(logits, DType::fp32);
  DeviceMemory de(sizeof(std::int32_t) * tokens * top_k);
  DeviceMemory dw(sizeof(float) * tokens * top_k);
  DeviceMemory dp(sizeof(float) * tokens * experts);
  for (const DeviceMemory* m : {&de, &dw, &dp}) poison(m->get(), m->bytes(), ctx.stream());
  softmax_topk(dl.as<float>(), tokens, experts, top_k, renormalize, de.as<std::int32_t>(), dw.as<float>(),
               dp.as<float>(), ctx.stream());
  ctx.synchronize();
  const auto got_e = download_raw<std::int32_t>(de.get(), static_cast<std::size_t>(tokens) * top_k);
  const auto got_w = download_raw<float>(dw.get(), static_cast<std::size_t>(tokens) * top_k);
  const auto got_p = download_raw<float>(dp.get(), static_cast<std::size_t>(tokens) * experts);
  const std::string name = "softmax_topk " + shape({{"T", tokens}, {"E", experts}, {"k", top_k}}) +
                           (renormalize ? " renormalized" : "");
  // Near-ties may legitimately differ between fp32 and fp64: accept a choice within 1e-6 of the k-th.
  const std::int64_t bad = ref::topk_mismatches(expect, got_e, 1e-6);
  if (bad > 0) return finish(name, static_cast<double>(bad), 0.0, std::to_string(bad) + " tokens with a wrong top-k");
  // Expected weights for the experts the GPU chose.
  std::vector<double> want_w(got_w.size());
  for (int t = 0; t < tokens; ++t) {
    double chosen = 0.0;
    for (int j = 0; j < top_k; ++j) chosen += expect.probs[static_cast<std::size_t>(t) * experts + got_e[t * top_k + j]];
    for (int j = 0; j < top_k; ++j) {
      const double p = expect.probs[static_cast<std::size_t>(t) * experts + got_e[t * top_k + j]];
      want_w[static_cast<std::size_t>(t) * top_k + j] = renormalize ? p / chosen : p;
    }
  }
  const double err = std::max(ref::relative_frobenius_error(got_p, expect.probs),
                              ref::relative_frobenius_error(got_w, want_w));
  return finish(name, err, tolerance_for(DType::fp32), "max of probs and weights error");
}

namespace {
struct DevicePlan {
  DeviceMemory demand, count, offset, dest_row, row_token, dropped, chunks;
  PlanBuffers view() const {
    return {demand.as<std::int32_t>(),    count.as<std::int32_t>(),   offset.as<std::int32_t>(),
            dest_row.as<std::int32_t>(),  row_token.as<std::int32_t>(), dropped.as<std::int32_t>(),
            chunks.as<std::int32_t>()};
  }
};

DevicePlan allocate_plan(int tokens, int experts, int top_k, std::int64_t capacity, DispatchLayout layout) {
  const std::size_t i4 = sizeof(std::int32_t);
  return {DeviceMemory(i4 * experts),
          DeviceMemory(i4 * experts),
          DeviceMemory(i4 * experts),
          DeviceMemory(i4 * tokens * top_k),
          DeviceMemory(i4 * plan_row_capacity(tokens, experts, top_k, capacity, layout)),
          DeviceMemory(i4),
          DeviceMemory(i4 * plan_chunks(tokens, top_k) * experts)};
}
}  // namespace

CheckResult check_plan(Context& ctx, int tokens, int experts, int top_k, double capacity_factor,
                       DispatchLayout layout, std::uint64_t seed) {
  const auto routing = random_routing(tokens, experts, top_k, seed, nullptr);
  const std::int64_t cap = ref::capacity(tokens, experts, top_k, capacity_factor);
  const auto expect = ref::plan_dispatch(routing.expert, tokens, experts, top_k, cap, layout);
  DeviceMemory de = upload_raw(routing.expert);
  DevicePlan plan = allocate_plan(tokens, experts, top_k, cap, layout);
  for (const DeviceMemory* m : {&plan.demand, &plan.count, &plan.offset, &plan.dest_row, &plan.row_token, &plan.dropped}) {
    poison(m->get(), m->bytes(), ctx.stream());
  }
  plan_dispatch(de.as<std::int32_t>(), tokens, experts, top_k, static_cast<int>(cap), layout, plan.view(), ctx.stream());
  ctx.synchronize();
  const auto e_n = static_cast<std::size_t>(experts);
  std::int64_t bad = 0;
  bad += mismatches(download_raw<std::int32_t>(plan.demand.get(), e_n), expect.demand);
  bad += mismatches(download_raw<std::int32_t>(plan.count.get(), e_n), expect.count);
  const auto off = download_raw<std::int32_t>(plan.offset.get(), e_n);
  bad += mismatches(std::vector<std::int64_t>(off.begin(), off.end()), expect.offset);
  bad += mismatches(download_raw<std::int32_t>(plan.dest_row.get(), expect.dest_row.size()), expect.dest_row);
  bad += mismatches(download_raw<std::int32_t>(plan.row_token.get(), static_cast<std::size_t>(expect.rows)),
                    expect.row_token);
  const auto dropped = download_raw<std::int32_t>(plan.dropped.get(), 1);
  bad += dropped[0] != expect.dropped;
  return finish("plan_dispatch " + to_string(layout) + " " +
                    shape({{"T", tokens}, {"E", experts}, {"k", top_k}, {"capacity", cap}, {"dropped", expect.dropped}}),
                static_cast<double>(bad), 0.0, "mismatching entries (exact comparison)");
}

CheckResult check_permute(Context& ctx, DType dtype, int tokens, int d, int experts, int top_k, DispatchLayout layout,
                          std::uint64_t seed) {
  const auto routing = random_routing(tokens, experts, top_k, seed, nullptr);
  const std::int64_t cap = ref::capacity(tokens, experts, top_k, 1.0);
  const auto plan = ref::plan_dispatch(routing.expert, tokens, experts, top_k, cap, layout);
  const auto x = random_values(static_cast<std::size_t>(tokens) * d, seed + 7, 1.0f, dtype);
  DeviceMemory dx = upload(x, dtype);
  DeviceMemory dmap = upload_raw(plan.row_token);
  DeviceMemory dout(bytes_of(static_cast<std::size_t>(plan.rows) * d, dtype));
  poison(dout.get(), dout.bytes(), ctx.stream());
  permute(dx.get(), d, dtype, dmap.as<std::int32_t>(), static_cast<int>(plan.rows), dout.get(), ctx.stream());
  ctx.synchronize();
  const auto got = download(dout.get(), static_cast<std::size_t>(plan.rows) * d, dtype);
  const auto want = ref::permute(x, d, plan);
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += !(got[i] == want[i]);  // NaN (unwritten) counts as bad
  return finish("permute " + to_string(dtype) + " " + to_string(layout) + " " +
                    shape({{"T", tokens}, {"d", d}, {"E", experts}, {"k", top_k}, {"rows", plan.rows}}),
                static_cast<double>(bad), 0.0, "mismatching elements (exact copy expected)");
}

CheckResult check_unpermute(Context& ctx, DType dtype, int tokens, int d, int experts, int top_k, std::uint64_t seed) {
  const auto routing = random_routing(tokens, experts, top_k, seed, nullptr);
  const std::int64_t cap = ref::capacity(tokens, experts, top_k, 1.0);  // some drops, so dropped choices are covered
  const auto plan = ref::plan_dispatch(routing.expert, tokens, experts, top_k, cap, DispatchLayout::contiguous);
  const auto y = random_values(static_cast<std::size_t>(plan.rows) * d, seed + 11, 1.0f, dtype);
  std::vector<float> w(routing.weight.begin(), routing.weight.end());
  DeviceMemory dy = upload(y, dtype);
  DeviceMemory ddest = upload_raw(plan.dest_row);
  DeviceMemory dw = upload_raw(w);
  DeviceMemory dout(bytes_of(static_cast<std::size_t>(tokens) * d, dtype));
  poison(dout.get(), dout.bytes(), ctx.stream());
  unpermute(dy.get(), d, dtype, ddest.as<std::int32_t>(), dw.as<float>(), tokens, top_k, dout.get(), ctx.stream());
  ctx.synchronize();
  const auto got = download(dout.get(), static_cast<std::size_t>(tokens) * d, dtype);
  const double err =
      ref::relative_frobenius_error(got, ref::unpermute(y, d, plan, std::vector<double>(w.begin(), w.end())));
  return finish("unpermute " + to_string(dtype) + " " +
                    shape({{"T", tokens}, {"d", d}, {"E", experts}, {"k", top_k}, {"dropped", plan.dropped}}),
                err, tolerance_for(dtype));
}

CheckResult check_activation(Context& ctx, DType dtype, Activation act, int rows, int f, std::uint64_t seed) {
  const int width = is_gated(act) ? 2 * f : f;
  const auto h = random_values(static_cast<std::size_t>(rows) * width, seed, 3.0f, dtype);
  DeviceMemory dh = upload(h, dtype);
  DeviceMemory dout(bytes_of(static_cast<std::size_t>(rows) * f, dtype));
  poison(dout.get(), dout.bytes(), ctx.stream());
  activation(dh.get(), rows, f, act, dtype, dout.get(), ctx.stream());
  ctx.synchronize();
  const auto got = download(dout.get(), static_cast<std::size_t>(rows) * f, dtype);
  const double err = ref::relative_frobenius_error(got, ref::activation(h, rows, f, act));
  return finish("activation " + to_string(act) + " " + to_string(dtype) + " " + shape({{"rows", rows}, {"f", f}}), err,
                tolerance_for(dtype));
}

CheckResult check_expert_ffn(Context& ctx, DType dtype, Activation act, FfnStrategy strategy,
                             const std::vector<std::int64_t>& counts, int d, int f, std::uint64_t seed) {
  ExpertFfn ffn(dtype, act, d, f, counts);
  const auto experts = static_cast<std::int64_t>(counts.size());
  const std::int64_t g = is_gated(act) ? 2 : 1;
  const bool padded = strategy == FfnStrategy::padded_strided;
  ref::Segments seg;
  for (std::int64_t e = 0; e < experts; ++e) {
    seg.offset.push_back(padded ? e * ffn.capacity() : ffn.offsets()[e]);
    seg.count.push_back(counts[e]);
  }
  seg.rows = padded ? ffn.padded_rows() : ffn.rows();
  // Inputs; padding rows of the padded layout are zero, as permute writes them.
  auto x = random_values(static_cast<std::size_t>(seg.rows) * d, seed, 1.0f, dtype);
  if (padded) {
    for (std::int64_t e = 0; e < experts; ++e) {
      for (std::int64_t r = seg.offset[e] + counts[e]; r < seg.offset[e] + ffn.capacity(); ++r) {
        std::fill(x.begin() + r * d, x.begin() + (r + 1) * d, 0.0f);
      }
    }
  }
  // Weights scaled by 1/√fan-in keep activations O(1) through both GEMMs.
  const auto w13 = random_values(static_cast<std::size_t>(experts * d * g * f), seed + 1,
                                 static_cast<float>(1.0 / std::sqrt(d)), dtype);
  const auto w2 = random_values(static_cast<std::size_t>(experts * f * d), seed + 2,
                                static_cast<float>(1.0 / std::sqrt(f)), dtype);
  DeviceMemory dx = upload(x, dtype);
  DeviceMemory dw13 = upload(w13, dtype);
  DeviceMemory dw2 = upload(w2, dtype);
  DeviceMemory dh(bytes_of(static_cast<std::size_t>(seg.rows * g * f), dtype));
  DeviceMemory da(bytes_of(static_cast<std::size_t>(seg.rows * f), dtype));
  DeviceMemory dy(bytes_of(static_cast<std::size_t>(seg.rows) * d, dtype));
  poison(dy.get(), dy.bytes(), ctx.stream());
  ffn.run(ctx, strategy, {dx.get(), dw13.get(), dw2.get(), dh.get(), da.get(), dy.get()});
  ctx.synchronize();
  const auto got = download(dy.get(), static_cast<std::size_t>(seg.rows) * d, dtype);
  const double err = ref::relative_frobenius_error(got, ref::expert_ffn(x, seg, w13, w2, d, f, act));
  std::ostringstream cs;
  for (std::size_t i = 0; i < counts.size(); ++i) cs << (i ? "," : "") << counts[i];
  return finish("expert_ffn " + to_string(strategy) + " " + to_string(act) + " " + to_string(dtype) + " " +
                    shape({{"E", experts}, {"d", d}, {"f", f}}) + " counts=" + cs.str(),
                err, tolerance_for(dtype));
}

namespace {

CheckResult skipped_result(std::string name, const std::string& why) {
  CheckResult r;
  r.name = std::move(name);
  r.passed = true;
  r.skipped = true;
  r.detail = "SKIPPED: " + why;
  return r;
}

std::string list(const std::vector<std::int32_t>& v) {
  std::ostringstream s;
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str();
}

/** Transposes each of `batches` row-major [rows × cols] matrices. */
std::vector<float> transpose_each(const std::vector<float>& m, std::int64_t batches, std::int64_t rows, std::int64_t cols) {
  std::vector<float> t(m.size());
  for (std::int64_t b = 0; b < batches; ++b) {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) t[(b * cols + c) * rows + r] = m[(b * rows + r) * cols + c];
    }
  }
  return t;
}

}  // namespace

CheckResult check_decode_attention(Context& ctx, DType kv_dtype, const std::vector<std::int32_t>& kv_lens, int q_heads,
                                   int kv_heads, int d_head, int block_size, int splits, std::uint64_t seed) {
  DecodeBatch batch;
  batch.q_heads = q_heads;
  batch.kv_lens = kv_lens;
  std::int64_t pages = 0;
  for (std::int32_t l : kv_lens) {
    const std::int64_t n = (l + block_size - 1) / block_size;
    pages += n;
    batch.max_blocks = std::max(batch.max_blocks, n);
  }
  PagedKvCache cache;
  cache.num_blocks = pages + 2;  // two pages nobody uses
  cache.block_size = block_size;
  cache.kv_heads = kv_heads;
  cache.d_head = d_head;
  const auto elems = static_cast<std::size_t>(cache.num_blocks * kv_heads * block_size * d_head);
  cache.k = random_values(elems, seed, 1.0f, kv_dtype);
  cache.v = random_values(elems, seed + 1, 1.0f, kv_dtype);
  if (kv_dtype == DType::fp8) {
    cache.k_scale = 0.5;  // powers of two: exact in fp32 on both sides
    cache.v_scale = 2.0;
  }
  // Pages handed out in a shuffled order, as an allocator would after churn.
  std::vector<std::int32_t> order(static_cast<std::size_t>(cache.num_blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + 2));
  batch.block_table.assign(kv_lens.size() * static_cast<std::size_t>(batch.max_blocks), 0);
  std::size_t next = 0;
  for (std::size_t b = 0; b < kv_lens.size(); ++b) {
    for (std::int64_t i = 0; i < (kv_lens[b] + block_size - 1) / block_size; ++i) {
      batch.block_table[b * batch.max_blocks + i] = order[next++];
    }
  }
  const auto q = random_values(kv_lens.size() * static_cast<std::size_t>(q_heads * d_head), seed + 3, 1.0f, DType::bf16);
  const auto want = ref::decode_attention(q, batch, cache);
  if (splits <= 0) {
    splits = static_cast<int>(decode_splits(batch.batch(), kv_heads, batch.max_len(), ctx.sm_count()));
  }
  DeviceMemory dq = upload(q, DType::bf16);
  DeviceMemory dk = upload(cache.k, kv_dtype);
  DeviceMemory dv = upload(cache.v, kv_dtype);
  DeviceMemory dtable = upload_raw(batch.block_table);
  DeviceMemory dlens = upload_raw(kv_lens);
  DeviceMemory dout(bytes_of(q.size(), DType::bf16));
  const int b_n = static_cast<int>(kv_lens.size());
  DeviceMemory dws(std::max<std::size_t>(1, decode_workspace_bytes(b_n, q_heads, d_head, splits)));
  poison(dout.get(), dout.bytes(), ctx.stream());
  poison(dws.get(), dws.bytes(), ctx.stream());
  DecodeArgs a;
  a.q = dq.get();
  a.k_cache = dk.get();
  a.v_cache = dv.get();
  a.block_table = dtable.as<std::int32_t>();
  a.kv_lens = dlens.as<std::int32_t>();
  a.out = dout.get();
  a.batch = b_n;
  a.q_heads = q_heads;
  a.kv_heads = kv_heads;
  a.d_head = d_head;
  a.block_size = block_size;
  a.max_blocks = static_cast<int>(batch.max_blocks);
  a.kv_dtype = kv_dtype;
  a.k_scale = static_cast<float>(cache.k_scale);
  a.v_scale = static_cast<float>(cache.v_scale);
  a.splits = splits;
  a.workspace = dws.get();
  decode_attention(a, ctx.stream());
  ctx.synchronize();
  const auto got = download(dout.get(), q.size(), DType::bf16);
  return finish("decode_attention kv=" + to_string(kv_dtype) + " lens=" + list(kv_lens) + " " +
                    shape({{"heads", q_heads}, {"kv_heads", kv_heads}, {"d", d_head}, {"block", block_size}, {"splits", splits}}),
                ref::relative_frobenius_error(got, want), tolerance_for(DType::bf16));
}

CheckResult check_prefill_attention(Context& ctx, const std::vector<std::int32_t>& q_lens,
                                    const std::vector<std::int32_t>& kv_lens, int q_heads, int kv_heads, int d_head,
                                    bool causal, std::uint64_t seed) {
  VarlenBatch batch;
  batch.q_lens = q_lens;
  batch.kv_lens = kv_lens;
  batch.q_heads = q_heads;
  batch.kv_heads = kv_heads;
  batch.d_head = d_head;
  batch.causal = causal;
  validate(batch);
  const auto nq = static_cast<std::size_t>(batch.total_q() * q_heads * d_head);
  const auto nk = static_cast<std::size_t>(batch.total_kv() * kv_heads * d_head);
  const auto q = random_values(nq, seed, 1.0f, DType::bf16);
  const auto k = random_values(nk, seed + 1, 1.0f, DType::bf16);
  const auto v = random_values(nk, seed + 2, 1.0f, DType::bf16);
  const auto want = ref::prefill_attention(q, k, v, batch);
  DeviceMemory dq = upload(q, DType::bf16), dk = upload(k, DType::bf16), dv = upload(v, DType::bf16);
  DeviceMemory dcq = upload_raw(batch.cu_q()), dck = upload_raw(batch.cu_kv());
  DeviceMemory dout(bytes_of(nq, DType::bf16));
  poison(dout.get(), dout.bytes(), ctx.stream());
  PrefillArgs a;
  a.q = dq.get();
  a.k = dk.get();
  a.v = dv.get();
  a.out = dout.get();
  a.cu_q = dcq.as<std::int32_t>();
  a.cu_kv = dck.as<std::int32_t>();
  a.batch = static_cast<int>(batch.batch());
  a.q_heads = q_heads;
  a.kv_heads = kv_heads;
  a.d_head = d_head;
  a.max_q_len = *std::max_element(q_lens.begin(), q_lens.end());
  a.causal = causal;
  prefill_attention(a, ctx.stream());
  ctx.synchronize();
  const auto got = download(dout.get(), nq, DType::bf16);
  return finish(std::string("prefill_attention ") + (causal ? "causal" : "full") + " q=" + list(q_lens) + " kv=" +
                    list(kv_lens) + " " + shape({{"heads", q_heads}, {"kv_heads", kv_heads}, {"d", d_head}}),
                ref::relative_frobenius_error(got, want), tolerance_for(DType::bf16));
}

CheckResult check_quantize_fp8(Context& ctx, DType src_dtype, int n, std::uint64_t seed) {
  constexpr float kScale = 0.25f;  // a power of two: x / scale is exact, so ties stay ties
  auto x = random_values(static_cast<std::size_t>(n), seed, 200.0f, src_dtype);
  // Edge values (all representable in bf16): ties to even, subnormals, saturation, signed zero.
  const std::vector<float> edge{0.0f, -0.0f, 1.0625f, 1.1875f, -1.9375f, 464.0f, 1.0e30f, -1.0e30f,
                                std::ldexp(1.0f, -10), std::ldexp(1.5f, -10), 3.5f * std::ldexp(1.0f, -9), 440.0f};
  for (std::size_t i = 0; i < edge.size() && i < x.size(); ++i) x[i] = edge[i] * kScale;
  round_to_dtype(x, src_dtype);
  DeviceMemory dx = upload(x, src_dtype);
  DeviceMemory dq(x.size());
  poison(dq.get(), dq.bytes(), ctx.stream());
  quantize_fp8(dx.get(), x.size(), src_dtype, kScale, dq.get(), ctx.stream());
  ctx.synchronize();
  const auto got = download_raw<std::uint8_t>(dq.get(), x.size());
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < x.size(); ++i) bad += got[i] != float_to_e4m3_bits(x[i] / kScale);
  return finish("quantize_fp8 from " + to_string(src_dtype) + " " + shape({{"n", n}}), static_cast<double>(bad), 0.0,
                "mismatching codes (bit-exact comparison)");
}

CheckResult check_gemm_fp8(Context& ctx, int m, int n, int k, std::uint64_t seed) {
  const std::string name = "gemm_fp8 A·Bt " + shape({{"m", m}, {"n", n}, {"k", k}});
  const auto xa = random_values(static_cast<std::size_t>(m) * k, seed, 3.0f, DType::fp32);
  const auto xb = random_values(static_cast<std::size_t>(n) * k, seed + 1, 0.05f, DType::fp32);
  const double sa = ref::fp8_scale(xa), sb = ref::fp8_scale(xb);
  const auto qa = ref::quantize_e4m3(xa, sa), qb = ref::quantize_e4m3(xb, sb);
  std::unique_ptr<Fp8Gemm> gemm;
  try {
    gemm = std::make_unique<Fp8Gemm>(ctx, m, n, k);
  } catch (const CublasError& e) {
    if (e.status() != CUBLAS_STATUS_NOT_SUPPORTED) throw;
    return skipped_result(name, std::string("no cuBLASLt fp8 GEMM on this device (") + e.what() + ")");
  }
  DeviceMemory da = upload(qa, DType::fp8), db = upload(qb, DType::fp8);
  DeviceMemory dsa = upload_raw(std::vector<float>{static_cast<float>(sa)});
  DeviceMemory dsb = upload_raw(std::vector<float>{static_cast<float>(sb)});
  DeviceMemory dc(bytes_of(static_cast<std::size_t>(m) * n, DType::bf16));
  poison(dc.get(), dc.bytes(), ctx.stream());
  gemm->run(ctx, da.get(), db.get(), dsa.as<float>(), dsb.as<float>(), dc.get());
  ctx.synchronize();
  const auto got = download(dc.get(), static_cast<std::size_t>(m) * n, DType::bf16);
  // The reference uses the scales as the GPU sees them (rounded to fp32).
  const auto want = ref::gemm_fp8(qa, qb, static_cast<float>(sa), static_cast<float>(sb), m, n, k, true);
  return finish(name, ref::relative_frobenius_error(got, want), tolerance_for(DType::bf16), "bf16 output");
}

CheckResult check_expert_ffn_fp8(Context& ctx, Activation act, const std::vector<std::int64_t>& counts, int d, int f,
                                 std::uint64_t seed) {
  std::ostringstream cs;
  for (std::size_t i = 0; i < counts.size(); ++i) cs << (i ? "," : "") << counts[i];
  const std::string name = "expert_ffn_fp8 loop " + to_string(act) + " " +
                           shape({{"E", static_cast<long long>(counts.size())}, {"d", d}, {"f", f}}) + " counts=" + cs.str();
  std::unique_ptr<Fp8ExpertFfn> ffn;
  try {
    ffn = std::make_unique<Fp8ExpertFfn>(ctx, act, d, f, counts);
  } catch (const CublasError& e) {
    if (e.status() != CUBLAS_STATUS_NOT_SUPPORTED) throw;
    return skipped_result(name, std::string("no cuBLASLt fp8 GEMM on this device (") + e.what() + ")");
  }
  const auto experts = static_cast<std::int64_t>(counts.size());
  const std::int64_t g = is_gated(act) ? 2 : 1;
  ref::Segments seg;
  for (std::int64_t e = 0, off = 0; e < experts; off += counts[e], ++e) {
    seg.offset.push_back(off);
    seg.count.push_back(counts[e]);
  }
  seg.rows = ffn->rows();
  const auto x = random_values(static_cast<std::size_t>(seg.rows) * d, seed, 1.0f, DType::fp32);
  const double sx = ref::fp8_scale(x);
  const auto qx = ref::quantize_e4m3(x, sx);
  std::vector<float> qw13, qw2;
  std::vector<double> s13, s2;
  for (std::int64_t e = 0; e < experts; ++e) {
    const auto w13 = random_values(static_cast<std::size_t>(d * g * f), seed + 10 + e, static_cast<float>(1.0 / std::sqrt(d)),
                                   DType::fp32);
    const auto w2 = random_values(static_cast<std::size_t>(f) * d, seed + 100 + e, static_cast<float>(1.0 / std::sqrt(f)),
                                  DType::fp32);
    s13.push_back(ref::fp8_scale(w13));
    s2.push_back(ref::fp8_scale(w2));
    const auto q13 = ref::quantize_e4m3(w13, s13.back());
    const auto q2 = ref::quantize_e4m3(w2, s2.back());
    qw13.insert(qw13.end(), q13.begin(), q13.end());
    qw2.insert(qw2.end(), q2.begin(), q2.end());
  }
  // Scales as the GPU holds them (fp32); the activation scale puts |a| <= 4 on the E4M3 range.
  const float fx = static_cast<float>(sx);
  const float fa = 4.0f / kE4m3Max;
  std::vector<float> f13(s13.begin(), s13.end()), f2(s2.begin(), s2.end());
  const auto want = ref::expert_ffn_fp8(qx, fx, seg, qw13, std::vector<double>(f13.begin(), f13.end()), qw2,
                                        std::vector<double>(f2.begin(), f2.end()), fa, d, f, act);
  DeviceMemory dx = upload(qx, DType::fp8);
  DeviceMemory dw13 = upload(transpose_each(qw13, experts, d, g * f), DType::fp8);  // [E × g·f × d]
  DeviceMemory dw2 = upload(transpose_each(qw2, experts, f, d), DType::fp8);        // [E × d × f]
  DeviceMemory dsx = upload_raw(std::vector<float>{fx}), dsa = upload_raw(std::vector<float>{fa});
  DeviceMemory ds13 = upload_raw(f13), ds2 = upload_raw(f2);
  DeviceMemory dh(bytes_of(static_cast<std::size_t>(seg.rows * g * f), DType::bf16));
  DeviceMemory da(static_cast<std::size_t>(seg.rows * f));
  DeviceMemory dy(bytes_of(static_cast<std::size_t>(seg.rows) * d, DType::bf16));
  poison(dy.get(), dy.bytes(), ctx.stream());
  Fp8FfnBuffers b;
  b.x = dx.get();
  b.w13 = dw13.get();
  b.w2 = dw2.get();
  b.x_scale = dsx.as<float>();
  b.w13_scale = ds13.as<float>();
  b.a_scale = dsa.as<float>();
  b.w2_scale = ds2.as<float>();
  b.a_scale_value = fa;
  b.h = dh.get();
  b.a = da.get();
  b.y = dy.get();
  ffn->run(ctx, b);
  ctx.synchronize();
  const auto got = download(dy.get(), static_cast<std::size_t>(seg.rows) * d, DType::bf16);
  return finish(name, ref::relative_frobenius_error(got, want), tolerance_for(DType::bf16), "bf16 output");
}

std::vector<std::string> check_groups() { return {"gemm", "router", "permute", "activation", "expert_ffn", "attention", "fp8"}; }

std::vector<CheckResult> run_checks(Context& ctx, const std::string& group) {
  std::vector<CheckResult> out;
  std::uint64_t seed = 1000;
  const auto next = [&seed] { return seed += 17; };
  // A kernel or library call that throws is a failed check named after its kernel (the profiler then
  // skips that kernel's shapes and still times the others). A sticky CUDA error cannot be contained.
  const auto guard = [&out](const std::string& name, const auto& check) {
    try {
      out.push_back(check());
    } catch (const Error& e) {
      out.push_back(finish(name + " (threw)", std::numeric_limits<double>::infinity(), 0.0, e.what()));
    }
  };
  if (group == "gemm") {
    for (DType dt : {DType::bf16, DType::fp32}) {
      out.push_back(check_gemm(ctx, dt, 37, 96, 64, false, false, next()));
      out.push_back(check_gemm(ctx, dt, 128, 256, 512, false, false, next()));
      out.push_back(check_gemm(ctx, dt, 64, 48, 32, true, false, next()));
      out.push_back(check_gemm(ctx, dt, 64, 8, 128, false, true, next()));  // router gate: fp32 logits
      out.push_back(check_batched_gemm(ctx, dt, 6, 32, 32, 16, true, next()));   // attention scores Q·Kᵀ
      out.push_back(check_batched_gemm(ctx, dt, 6, 32, 16, 32, false, next()));  // attention values P·V
    }
  } else if (group == "router") {
    out.push_back(check_softmax_topk(ctx, 333, 8, 1, false, next()));
    out.push_back(check_softmax_topk(ctx, 257, 64, 2, true, next()));
    out.push_back(check_softmax_topk(ctx, 100, 2048, 8, false, next()));
    out.push_back(check_softmax_topk(ctx, 50, 7, 3, false, next()));  // E % 4 != 0: scalar loads
    out.push_back(check_softmax_topk(ctx, 64, 100, 2, true, next()));
    out.push_back(check_plan(ctx, 1000, 8, 2, 1.0, DispatchLayout::contiguous, next()));
    out.push_back(check_plan(ctx, 3000, 64, 8, 0.5, DispatchLayout::padded, next()));  // 24 planner chunks
    out.push_back(check_plan(ctx, 500, 2048, 1, 4.0, DispatchLayout::contiguous, next()));
    out.push_back(check_plan(ctx, 777, 16, 2, 1.25, DispatchLayout::padded, next()));
  } else if (group == "permute") {
    for (DType dt : {DType::bf16, DType::fp32}) {
      out.push_back(check_permute(ctx, dt, 300, 1024, 8, 2, DispatchLayout::contiguous, next()));
      out.push_back(check_permute(ctx, dt, 300, 1024, 8, 2, DispatchLayout::padded, next()));
      out.push_back(check_permute(ctx, dt, 129, 999, 16, 1, DispatchLayout::contiguous, next()));  // narrow words
      out.push_back(check_unpermute(ctx, dt, 300, 1024, 8, 2, next()));
      out.push_back(check_unpermute(ctx, dt, 200, 1000, 64, 8, next()));
      out.push_back(check_unpermute(ctx, dt, 129, 999, 16, 1, next()));  // scalar path
    }
  } else if (group == "activation") {
    for (DType dt : {DType::bf16, DType::fp32}) {
      for (Activation a : {Activation::relu, Activation::gelu, Activation::swiglu, Activation::geglu}) {
        out.push_back(check_activation(ctx, dt, a, 77, 256, next()));
        out.push_back(check_activation(ctx, dt, a, 33, 250, next()));  // f % pack != 0 (bf16): scalar path
      }
    }
  } else if (group == "expert_ffn") {
    const std::vector<std::int64_t> counts{5, 0, 17, 64, 1, 33};
    for (DType dt : {DType::bf16, DType::fp32}) {
      for (FfnStrategy s : {FfnStrategy::loop, FfnStrategy::grouped, FfnStrategy::padded_strided, FfnStrategy::fused_small}) {
        out.push_back(check_expert_ffn(ctx, dt, Activation::gelu, s, counts, 128, 256, next()));
        out.push_back(check_expert_ffn(ctx, dt, Activation::swiglu, s, counts, 128, 256, next()));
      }
      out.push_back(check_expert_ffn(ctx, dt, Activation::relu, FfnStrategy::grouped, {8, 8, 8, 8}, 64, 128, next()));
      out.push_back(check_expert_ffn(ctx, dt, Activation::geglu, FfnStrategy::loop, {200}, 96, 160, next()));  // dense
      // fused_small: 16-row tiles, widths that are not tile multiples, K not a stage multiple
      guard("expert_ffn fused_small", [&] {
        return check_expert_ffn(ctx, dt, Activation::relu, FfnStrategy::fused_small, {3, 1, 2}, 96, 80, next());
      });
      // several 64-row tiles per expert (the weights are read once per tile)
      guard("expert_ffn fused_small", [&] {
        return check_expert_ffn(ctx, dt, Activation::geglu, FfnStrategy::fused_small, {70, 130}, 64, 128, next());
      });
    }
  } else if (group == "attention") {
    // decode: split plan of the device (several splits for this small batch), GQA 4
    guard("decode_attention", [&] {
      return check_decode_attention(ctx, DType::bf16, {1, 17, 300, 1000}, 32, 8, 128, 16, 0, next());
    });
    // one split, MHA, an odd page size, d 64
    guard("decode_attention", [&] {
      return check_decode_attention(ctx, DType::bf16, {5, 64, 129}, 8, 8, 64, 7, 1, next());
    });
    // fp8 KV with scales, GQA 8
    guard("decode_attention", [&] {
      return check_decode_attention(ctx, DType::fp8, {2000, 33}, 16, 2, 128, 16, 0, next());
    });
    // d 256 and more splits than the short sequence has tiles: empty splits must weigh nothing
    guard("decode_attention", [&] {
      return check_decode_attention(ctx, DType::bf16, {100, 40}, 16, 2, 256, 32, 5, next());
    });
    guard("decode_attention", [&] { return check_decode_attention(ctx, DType::fp8, {1}, 4, 4, 64, 16, 1, next()); });
    // prefill: lengths around the 64-row query tile and the 32-key tile
    guard("prefill_attention", [&] {
      return check_prefill_attention(ctx, {1, 63, 64, 65, 200}, {1, 63, 64, 65, 200}, 8, 2, 128, true, next());
    });
    guard("prefill_attention", [&] {
      return check_prefill_attention(ctx, {100, 37}, {100, 37}, 4, 4, 64, true, next());
    });
    // chunked prefill: queries are the last q_len of kv_len positions
    guard("prefill_attention", [&] {
      return check_prefill_attention(ctx, {10, 64}, {100, 64}, 4, 1, 128, true, next());
    });
    guard("prefill_attention", [&] { return check_prefill_attention(ctx, {50}, {70}, 2, 2, 64, false, next()); });
  } else if (group == "fp8") {
    guard("quantize_fp8", [&] { return check_quantize_fp8(ctx, DType::bf16, 1000, next()); });
    guard("quantize_fp8", [&] { return check_quantize_fp8(ctx, DType::fp32, 1003, next()); });
    guard("gemm_fp8", [&] { return check_gemm_fp8(ctx, 64, 256, 128, next()); });
    guard("gemm_fp8", [&] { return check_gemm_fp8(ctx, 1, 64, 64, next()); });    // a decode-sized row count
    guard("gemm_fp8", [&] { return check_gemm_fp8(ctx, 100, 48, 96, next()); });  // m not a tile multiple
    guard("expert_ffn_fp8", [&] {
      return check_expert_ffn_fp8(ctx, Activation::swiglu, {5, 0, 17, 64}, 128, 256, next());
    });
    guard("expert_ffn_fp8", [&] { return check_expert_ffn_fp8(ctx, Activation::gelu, {8, 8}, 64, 128, next()); });
  } else {
    throw Error("unknown check group '" + group +
                "' (allowed: gemm, router, permute, activation, expert_ffn, attention, fp8)");
  }
  return out;
}

}  // namespace moesim::kernels::gpu
