// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/gpu/verify.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "moesim/core/error.hpp"
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

std::vector<std::string> check_groups() { return {"gemm", "router", "permute", "activation", "expert_ffn"}; }

std::vector<CheckResult> run_checks(Context& ctx, const std::string& group) {
  std::vector<CheckResult> out;
  std::uint64_t seed = 1000;
  const auto next = [&seed] { return seed += 17; };
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
      for (FfnStrategy s : {FfnStrategy::loop, FfnStrategy::grouped, FfnStrategy::padded_strided}) {
        out.push_back(check_expert_ffn(ctx, dt, Activation::gelu, s, counts, 128, 256, next()));
        out.push_back(check_expert_ffn(ctx, dt, Activation::swiglu, s, counts, 128, 256, next()));
      }
      out.push_back(check_expert_ffn(ctx, dt, Activation::relu, FfnStrategy::grouped, {8, 8, 8, 8}, 64, 128, next()));
      out.push_back(check_expert_ffn(ctx, dt, Activation::geglu, FfnStrategy::loop, {200}, 96, 160, next()));  // dense
    }
  } else {
    throw Error("unknown check group '" + group + "' (allowed: gemm, router, permute, activation, expert_ffn)");
  }
  return out;
}

}  // namespace moesim::kernels::gpu
