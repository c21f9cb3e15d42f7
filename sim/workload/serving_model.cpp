// SPDX-License-Identifier: Apache-2.0
// Serving: replica memory and KV cache, and the cost of one iteration's layers (counting conventions as in
// training_step.cpp: FLOPs = 2 per multiply-add; bytes = operands read once, results written once).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/rng.hpp"
#include "moesim/core/units.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/serving.hpp"

namespace moesim::workload {

using perf::KernelClass;
using perf::KernelOp;

namespace {

double ffn_mats(const scenario::ModelSpec& m) { return m.gated() ? 3.0 : 2.0; }

/** First decoder layer of pipeline stage `stage` (contiguous ranges, as in training). */
int stage_begin(int stage, int layers, int stages) {
  return static_cast<int>(static_cast<long long>(stage) * layers / stages);
}

/** Experts one replica device holds per MoE layer, and the FFN width of each (tensor-split or whole). */
struct ExpertLayout {
  double local_experts = 0.0;
  double width = 0.0;  ///< expert_d_ff per device
};
ExpertLayout expert_layout(const scenario::ModelSpec& m, const scenario::PoolSpec& p, bool task_only) {
  const double experts = task_only ? m.top_k : m.experts;
  if (p.expert > 1) return {experts / p.expert, static_cast<double>(m.expert_d_ff)};
  return {experts, static_cast<double>(m.expert_d_ff) / p.tensor};
}

/** KV bytes of one token of one layer on one tensor rank. MLA's latent is replicated on every rank. */
double kv_bytes_per_token_layer_rank(const scenario::ModelSpec& m, int tensor, double kv_b) {
  if (m.is_mla()) return (m.mla_kv_lora_rank + m.mla_qk_rope_head_dim) * kv_b;
  return 2.0 * kv_heads_per_rank(m, tensor) * m.d_head * kv_b;
}

}  // namespace

double kv_bytes_per_token_layer(const scenario::ModelSpec& m, const std::string& kv_dtype) {
  const double b = dtype_bytes(kv_dtype);
  if (m.is_mla()) return (m.mla_kv_lora_rank + m.mla_qk_rope_head_dim) * b;
  return 2.0 * (m.kv_heads > 0 ? m.kv_heads : m.heads) * m.d_head * b;
}

ReplicaMemory replica_memory(const scenario::Scenario& s, const scenario::PoolSpec& pool, const catalog::AcceleratorSpec& accel) {
  const scenario::ModelSpec& m = s.model;
  const scenario::ServingSpec& v = *s.serving;
  const double b = dtype_bytes(m.dtype), kv_b = dtype_bytes(v.kv_dtype);
  const double act_b = std::max(2.0, b);  // activations in bf16 (fp8 GEMM inputs are quantised on the fly)
  const double d = m.d_model, t = pool.tensor;
  const ExpertLayout ex = expert_layout(m, pool, v.task_experts_only);
  const int L = m.decoder_layers;
  ReplicaMemory out;
  out.block_tokens = v.kv_block_tokens;
  out.capacity_bytes = accel.hbm_bytes / std::max(1, accel.devices_per_chip);
  out.kv_bytes_per_token_replica = L * kv_bytes_per_token_layer(m, v.kv_dtype);

  // Activation workspace of the largest iteration, per device: hidden states, QKV and the widest FFN intermediate
  // of the rank's share of the tokens, plus fp32 logits of the sampled sequences. Continuous and chunked batching
  // stay within the token budget (max_batched_tokens). A static batch prefills all its sequences at once, each
  // padded to the batch's longest prompt (max_batched_tokens bounds a prompt, not the batch): a data rank runs
  // its sequences, ceil(batch / data), times the longest prompt the workload can draw; the batch is max_sequences,
  // or fewer when the workload has fewer requests. A static decode pool (disaggregated) never prefills: its batch
  // arrives with its prompts' KV caches and computes one token per sequence an iteration, ceil(batch / data) tokens on
  // a rank (a continuous decode pool keeps the token budget: a preempted sequence is recomputed there, prompt and all).
  double tokens_rank = static_cast<double>(v.max_batched_tokens) / pool.data;
  double sampled_rank = std::min<double>(v.max_sequences, v.max_batched_tokens) / pool.data;
  out.workspace_tokens = v.max_batched_tokens;
  if (v.scheduler == "static") {
    const WorkloadBounds wb = workload_bounds(s);
    const long long batch = wb.requests > 0 ? std::min<long long>(v.max_sequences, wb.requests) : v.max_sequences;
    const long long prompt = pool.role == scenario::PoolRole::decode ? 1 : std::min<long long>(wb.longest_prompt, v.max_batched_tokens);
    sampled_rank = static_cast<double>((batch + pool.data - 1) / pool.data);
    tokens_rank = sampled_rank * static_cast<double>(prompt);
    out.workspace_tokens = static_cast<double>(batch) * static_cast<double>(prompt);
  }
  const double widest = std::max(static_cast<double>(m.d_ff) / t,
                                 m.is_moe() ? (m.top_k + m.shared_experts) * ex.width : 0.0);
  const double per_token = 4.0 * d + ffn_mats(m) * widest + (m.heads / t + 2.0 * kv_heads_per_rank(m, pool.tensor)) * m.d_head;
  const double logits = sampled_rank * (m.vocab / t) * 4.0;
  out.workspace_bytes = tokens_rank * per_token * act_b + logits;

  double kv_tokens = std::numeric_limits<double>::infinity();
  double worst_weights = 0.0, worst_kv = std::numeric_limits<double>::infinity(), worst_kv_per_token = 0.0;
  for (int stage = 0; stage < pool.pipeline; ++stage) {
    double params = 0.0;
    int layers = 0;
    for (int l = stage_begin(stage, L, pool.pipeline); l < stage_begin(stage + 1, L, pool.pipeline); ++l, ++layers) {
      // Attention: Q and O split by heads; K and V by key/value heads (replicated below tensor ranks).
      if (m.is_mla()) {
        params += attention_params(m) / t;
      } else {
        params += 2.0 * d * m.d_head * (static_cast<double>(m.heads) / t) + 2.0 * d * m.d_head * kv_heads_per_rank(m, pool.tensor);
      }
      if (m.is_moe_layer(l)) {
        params += d * m.experts;  // router
        params += m.shared_experts * ffn_mats(m) * d * m.expert_d_ff / t;
        params += ex.local_experts * ffn_mats(m) * d * ex.width;
      } else {
        params += ffn_mats(m) * d * m.d_ff / t;
      }
    }
    double weights = params * b;
    // Embedding and output projection stay in 16 bits in fp8 deployments (the quantised layers are the
    // linear layers inside the blocks: TensorRT-LLM / ModelOpt fp8 recipe, docs/serving-sources.md §2).
    if (stage == 0) weights += static_cast<double>(m.vocab) * d / t * act_b;
    if (stage == pool.pipeline - 1) weights += static_cast<double>(m.vocab) * d / t * act_b;
    const double kv_per_token = layers * kv_bytes_per_token_layer_rank(m, pool.tensor, kv_b);
    const double room = v.kv_fraction_of_free ? v.kv_memory_fraction * (out.capacity_bytes - weights - out.workspace_bytes)
                                              : v.kv_memory_fraction * out.capacity_bytes - weights - out.workspace_bytes;
    if (weights > worst_weights) worst_weights = weights;
    if (room < worst_kv) {
      worst_kv = room;
      worst_kv_per_token = kv_per_token;
    }
    if (!(room > 0.0)) {
      const double gib = units::kGiB;
      // The pool's key: its index when it is one of the scenario's pools (it always is outside tests).
      std::string pool_key = "serving.pools";
      for (std::size_t i = 0; i < v.pools.size(); ++i)
        if (&v.pools[i] == &pool) pool_key = fmt::format("serving.pools[{}]", i);
      throw MemoryFitError(fmt::format(
          "the model does not fit a serving replica: one {} device (cluster.accelerator; pipeline stage {} of {}) holds "
          "{:.1f} GiB of weights (the model's size: model.layers, model.d_model, model.d_ff, model.experts, "
          "model.dtype) and a {:.1f} GiB activation workspace ({:.0f} batched tokens{}) but may use {:.3g} % "
          "(serving.kv_cache.memory_fraction) of its {:.1f} GiB of HBM; give the pool more tensor or expert parallelism "
          "(or pipeline stages: {}.tensor, .expert, .pipeline), use fp8 weights (model.dtype), a smaller model, an "
          "accelerator with more HBM (cluster.accelerator), lower {}, or raise "
          "serving.kv_cache.memory_fraction",
          accel.name, stage, pool_key, weights / gib, out.workspace_bytes / gib, out.workspace_tokens,
          v.scheduler != "static"                ? ""
          : pool.role == scenario::PoolRole::decode ? ": a static batch's decode step, one token per sequence"
                                                    : ": a static batch's prefill, its sequences x the longest prompt",
          100.0 * v.kv_memory_fraction, out.capacity_bytes / gib, pool_key,
          v.scheduler == "static" ? "serving.scheduler.max_sequences" : "serving.scheduler.max_batched_tokens"));
    }
    kv_tokens = std::min(kv_tokens, room / kv_per_token);
  }
  out.weights_bytes = worst_weights;
  out.kv_bytes = worst_kv;
  out.kv_bytes_per_token = worst_kv_per_token;
  out.kv_blocks = static_cast<long long>(std::floor(kv_tokens / v.kv_block_tokens)) * pool.data;
  return out;
}

// ---- IterationModel -----------------------------------------------------------------------------

IterationModel::IterationModel(const scenario::Scenario& s, const scenario::PoolSpec& pool,
                               const catalog::AcceleratorSpec& accel, const perf::ComputeTimeModel& compute)
    : s_(s), pool_(pool), accel_(accel), compute_(compute) {
  const scenario::ModelSpec& m = s.model;
  b_ = dtype_bytes(m.dtype);
  act_b_ = std::max(2.0, b_);
  kv_b_ = dtype_bytes(s.serving->kv_dtype);
  if (m.is_moe()) {
    scenario::RoutingSpec r = s.routing;
    if (accel.serves_dropless()) r.dropless = true;
    // Task routing over a trace with a task column: the trace's task frequencies (task_mix()), not uniform tasks.
    router_ = std::make_unique<Router>(r, m.experts, m.top_k, m.capacity_factor, s.seed,
                                       r.type == "task" && !s.serving->task_experts_only ? task_mix(s) : std::vector<double>{});
  }
  for (int st = 0; st < pool.pipeline; ++st) {
    int moe = 0, dense = 0;
    for (int l = stage_begin(st, m.decoder_layers, pool.pipeline); l < stage_begin(st + 1, m.decoder_layers, pool.pipeline); ++l)
      (m.is_moe_layer(l) ? moe : dense)++;
    moe_layers_per_stage_.push_back(moe);
    dense_layers_per_stage_.push_back(dense);
  }
}

int IterationModel::layers(int stage, LayerKind kind) const {
  return kind == LayerKind::moe ? moe_layers_per_stage_[static_cast<std::size_t>(stage)]
                                : dense_layers_per_stage_[static_cast<std::size_t>(stage)];
}

std::vector<int> IterationModel::stage_devices(int stage) const {
  const int per_stage = pool_.data * pool_.tensor;
  std::vector<int> v(static_cast<std::size_t>(per_stage));
  std::iota(v.begin(), v.end(), stage * per_stage);
  return v;
}

KernelOp IterationModel::gemm(const char* name, double m, double n, double k, const std::string& dtype) const {
  // Inputs in the GEMM's dtype, outputs in 16 bits (fp32 for the fp32 router): perf::gemm_op, as training counts it.
  const std::string dt = dtype.empty() ? s_.model.dtype : dtype;
  return perf::gemm_op(name, m, n, k, 1.0, dt, dtype_bytes(dt), act_b_);
}

KernelOp IterationModel::vector_op(KernelClass cls, const char* name, double bytes, double flops) const {
  KernelOp op;
  op.cls = cls;
  op.name = name;
  op.dtype = act_b_ > 2.0 ? "fp32" : "bf16";
  op.bytes = bytes;
  op.flops = flops;
  return op;
}

DeviceWork IterationModel::kernels(const std::vector<KernelOp>& ops) const {
  DeviceWork w;
  for (const KernelOp& op : ops) {
    if (op.flops <= 0.0 && op.bytes <= 0.0) continue;
    const perf::KernelTime t = compute_.time(op);
    const perf::PeakTimes peak = perf::power_peak_times(op, t, accel_);
    (t.memory_s > t.compute_s ? w.memory_bound : w.compute_bound) += KernelWork{t.time_s, peak.matrix_s, peak.hbm_s};
  }
  return w;
}

LayerPlan IterationModel::layer(LayerKind kind, double tokens) const {
  const scenario::ModelSpec& m = s_.model;
  const double d = m.d_model, tp = pool_.tensor, dp = pool_.data;
  const double hl = m.heads / tp, kvl = kv_heads_per_rank(m, pool_.tensor), dh = m.d_head;
  const double tr = tokens / dp;  // tokens of one data rank (replicated over its tensor group)
  const int per_stage = pool_.data * pool_.tensor;
  LayerPlan plan;
  auto uniform = [&](const DeviceWork& w) { return std::vector<DeviceWork>(static_cast<std::size_t>(per_stage), w); };
  auto tensor_groups = [&] {
    std::vector<std::vector<int>> g;
    for (int r = 0; r < pool_.data; ++r) {
      std::vector<int> grp;
      for (int t = 0; t < pool_.tensor; ++t) grp.push_back(r * pool_.tensor + t);
      g.push_back(std::move(grp));
    }
    return g;
  };
  auto tensor_collective = [&](workload::CollectiveOp op, double bytes) {
    if (pool_.tensor <= 1 || bytes <= 0.0) return false;
    CollectiveWork w;
    w.op = op;
    w.groups = tensor_groups();
    w.bytes_per_device = bytes;
    plan.collectives.push_back(std::move(w));
    plan.collective_kinds.emplace_back("comm.tensor_parallel");
    return true;
  };

  // Segment 1: input norm, QKV and output projections (attention itself: attention()).
  std::vector<KernelOp> a;
  a.push_back(vector_op(KernelClass::elementwise, "attn.norm", 3.0 * tr * d * act_b_, 5.0 * tr * d));
  if (m.is_mla()) {
    const double rope = m.mla_qk_rope_head_dim, lora = m.mla_kv_lora_rank, ql = m.mla_q_lora_rank;
    if (ql > 0) {
      a.push_back(gemm("attn.q_down", tr, ql, d));
      a.push_back(gemm("attn.q_up", tr, hl * (dh + rope), ql));
    } else {
      a.push_back(gemm("attn.q", tr, hl * (dh + rope), d));
    }
    a.push_back(gemm("attn.kv_down", tr, lora + rope, d));
    a.push_back(gemm("attn.kv_up", tr, hl * 2.0 * dh, lora));
  } else {
    a.push_back(gemm("attn.qkv", tr, (hl + 2.0 * kvl) * dh, d));
  }
  a.push_back(gemm("attn.out", tr, d, hl * dh));
  std::vector<DeviceWork> seg = uniform(kernels(a));
  plan.model_flops += 2.0 * tokens * attention_params(m);
  if (tensor_collective(CollectiveOp::all_reduce, tr * d * act_b_)) {
    plan.segments.push_back(std::move(seg));
    seg = uniform(DeviceWork{});
  }

  // Segment 2: residual + norm, then the FFN.
  const DeviceWork norm = kernels({vector_op(KernelClass::elementwise, "ffn.norm_residual", 5.0 * tr * d * act_b_, 8.0 * tr * d)});
  for (auto& w : seg) w += norm;
  const double mats = ffn_mats(m);
  auto add_all = [&](const DeviceWork& x) {
    for (auto& w : seg) w += x;
  };
  if (kind == LayerKind::dense) {
    const double f = m.d_ff / tp;
    add_all(kernels({gemm("ffn.up", tr, (mats - 1.0) * f, d),
                     vector_op(KernelClass::elementwise, "ffn.act", mats * tr * f * act_b_, 8.0 * tr * f),
                     gemm("ffn.down", tr, d, f)}));
    plan.model_flops += 2.0 * tokens * mats * d * m.d_ff;
    if (tensor_collective(CollectiveOp::all_reduce, tr * d * act_b_)) {
      plan.segments.push_back(std::move(seg));
      seg = uniform(DeviceWork{});
    }
  } else {
    const bool task_only = s_.serving->task_experts_only;
    const ExpertLayout ex = expert_layout(m, pool_, task_only);
    const double k = m.top_k, E = m.experts;
    const bool einsum = accel_.dispatch == catalog::DispatchStyle::einsum && !s_.routing.dropless;
    // Router on every rank for its data rank's tokens (fp32 gate: Fedus et al. 2021 §2.4).
    add_all(kernels({gemm("moe.gate", tr, E, d, "fp32"),
                     vector_op(KernelClass::router, "moe.softmax_topk", 3.0 * tr * E * 4.0, (8.0 + k) * tr * E)}));
    plan.model_flops += 2.0 * tokens * d * E;
    if (m.shared_experts > 0) {
      const double f = m.shared_experts * m.expert_d_ff / (pool_.expert > 1 ? 1.0 : tp);
      const double rows = pool_.expert > 1 ? tr / tp : tr;
      add_all(kernels({gemm("moe.shared_up", rows, (mats - 1.0) * f, d),
                       vector_op(KernelClass::elementwise, "moe.shared_act", mats * rows * f * act_b_, 8.0 * rows * f),
                       gemm("moe.shared_down", rows, d, f)}));
      plan.model_flops += 2.0 * tokens * mats * d * m.shared_experts * m.expert_d_ff;
    }
    // Tokens per expert: for expert = 1, a draw per data rank over its tokens; for expert parallelism one
    // draw over the stage's tokens. Averaged over a few seeded draws (the cost is memoised per token count).
    const int draws = std::max(1, std::min(4, moe_layers_per_stage_.empty() ? 1 : moe_layers_per_stage_.front()));
    const double draw_tokens = pool_.expert > 1 ? tokens : tr;
    std::vector<DeviceWork> mean_expert(static_cast<std::size_t>(per_stage));
    double mean_max = 0.0;
    const double local = ex.local_experts;
    for (int dr = 0; dr < draws; ++dr) {
      // Rows of each expert held by a device (tokens routed there, or capacity-padded slots).
      std::vector<double> rows_of_expert(static_cast<std::size_t>(task_only ? m.top_k : m.experts), 0.0);
      if (task_only) {
        std::fill(rows_of_expert.begin(), rows_of_expert.end(), draw_tokens);  // every token goes to all k local experts
      } else if (einsum) {
        const double cap = router_->capacity(draw_tokens);
        std::fill(rows_of_expert.begin(), rows_of_expert.end(), cap);
      } else {
        Rng rng = Rng::derived(s_.seed, 0x5e7e0000ULL + static_cast<std::uint64_t>(std::llround(draw_tokens)) * 16 +
                                            static_cast<std::uint64_t>(dr));
        const double whole = std::max(1.0, std::round(draw_tokens));
        const RoutingDraw rd = router_->draw(dr, 1, whole, rng);
        for (std::size_t e = 0; e < rows_of_expert.size(); ++e) rows_of_expert[e] = rd.processed[e] * draw_tokens / whole;
      }
      double worst = 0.0;
      for (int dev = 0; dev < per_stage; ++dev) {
        // The experts of this device: all of them (expert = 1), or its block of whole experts.
        const int first = pool_.expert > 1 ? static_cast<int>(dev * local) : 0;
        std::vector<double> gm;
        double rows = 0.0, touched = 0.0;
        for (int e = first; e < first + static_cast<int>(local); ++e) {
          const double r = rows_of_expert[static_cast<std::size_t>(e)];
          gm.push_back(r);
          rows += r;
          touched += r > 0.0 ? 1.0 : 0.0;
        }
        auto grouped = [&](const char* name, double n, double kk) {
          KernelOp op;
          op.cls = KernelClass::grouped_gemm;
          op.name = name;
          op.dtype = m.dtype;
          op.n = n;
          op.k = kk;
          op.group_m = gm;
          op.m = rows;
          op.flops = 2.0 * rows * n * kk;
          // Only experts that received tokens have their weights read.
          op.bytes = rows * kk * b_ + touched * kk * n * b_ + rows * n * act_b_;
          return op;
        };
        const DeviceWork w = kernels({grouped("moe.expert_up", (mats - 1.0) * ex.width, d),
                                      vector_op(KernelClass::elementwise, "moe.expert_act", mats * rows * ex.width * act_b_, 8.0 * rows * ex.width),
                                      grouped("moe.expert_down", d, ex.width)});
        mean_expert[static_cast<std::size_t>(dev)] += w.scaled(1.0 / draws);
        worst = std::max(worst, w.total());
      }
      mean_max += worst / draws;
    }
    double max_mean = 0.0;
    for (int dev = 0; dev < per_stage; ++dev)
      max_mean = std::max(max_mean, mean_expert[static_cast<std::size_t>(dev)].total());
    plan.imbalance_wait_s = std::max(0.0, mean_max - max_mean);
    plan.model_flops += 2.0 * tokens * k * mats * d * m.expert_d_ff;

    // Dispatch and combine: permute / unpermute rows (gather) or the one-hot einsums (TPU).
    const double rows_sent = pool_.expert > 1 ? tr / tp : tr;  // tensor ranks split their data rank's tokens
    DeviceWork disp, comb;
    if (einsum) {
      const double slots = E * router_->capacity(draw_tokens) * (rows_sent / std::max(1.0, draw_tokens));
      disp = kernels({gemm("moe.dispatch_einsum", slots, d, rows_sent)});
      comb = kernels({gemm("moe.combine_einsum", rows_sent, d, slots)});
    } else {
      disp = kernels({vector_op(KernelClass::permute, "moe.permute", 2.0 * rows_sent * k * d * act_b_, 0.0)});
      comb = kernels({vector_op(KernelClass::unpermute, "moe.unpermute", (2.0 * k + 1.0) * rows_sent * d * act_b_, 2.0 * rows_sent * k * d)});
    }
    add_all(disp);
    auto expert_segment = [&] {
      std::vector<DeviceWork> v(static_cast<std::size_t>(per_stage));
      for (int dev = 0; dev < per_stage; ++dev)
        v[static_cast<std::size_t>(dev)] = mean_expert[static_cast<std::size_t>(dev)];
      return v;
    };
    if (pool_.expert > 1) {
      // Expert parallelism over every rank of the stage: dispatch all-to-all, experts, combine all-to-all,
      // then the tensor group all-gathers the tokens its ranks split.
      CollectiveWork a2a;
      a2a.op = CollectiveOp::all_to_all;
      a2a.groups = {stage_devices(0)};
      const double slot_rows = einsum ? E * router_->capacity(draw_tokens) / pool_.expert : rows_sent * k;
      a2a.bytes_per_device = slot_rows * d * act_b_;
      // DeepEP's per-node dispatch (parallelism.expert_dispatch; SGLang and vLLM serve expert parallelism with it).
      if (s_.parallelism.expert_dispatch == "per_node" && !einsum) a2a.per_node = {m.top_k, m.experts, s_.routing.max_nodes};
      plan.segments.push_back(std::move(seg));
      plan.collectives.push_back(a2a);
      plan.collective_kinds.emplace_back("comm.all_to_all");
      seg = expert_segment();
      plan.segments.push_back(std::move(seg));
      plan.collectives.push_back(a2a);
      plan.collective_kinds.emplace_back("comm.all_to_all");
      seg = uniform(comb);
      if (tensor_collective(CollectiveOp::all_gather, tr * d * act_b_)) {
        plan.segments.push_back(std::move(seg));
        seg = uniform(DeviceWork{});
      }
    } else {
      const std::vector<DeviceWork> experts = expert_segment();
      for (int dev = 0; dev < per_stage; ++dev) {
        seg[static_cast<std::size_t>(dev)] += experts[static_cast<std::size_t>(dev)];
        seg[static_cast<std::size_t>(dev)] += comb;
      }
      if (tensor_collective(CollectiveOp::all_reduce, tr * d * act_b_)) {
        plan.segments.push_back(std::move(seg));
        seg = uniform(DeviceWork{});
      }
    }
  }
  // Residual add closes the layer.
  const DeviceWork residual = kernels({vector_op(KernelClass::elementwise, "residual", 3.0 * tr * d * act_b_, tr * d)});
  for (auto& w : seg) w += residual;
  plan.segments.push_back(std::move(seg));
  return plan;
}

std::vector<DeviceWork> IterationModel::attention(const IterationShape& shape) const {
  const scenario::ModelSpec& m = s_.model;
  const double tp = pool_.tensor, dp = pool_.data;
  const double hl = m.heads / tp, kvl = kv_heads_per_rank(m, pool_.tensor), dh = m.d_head;
  const double kv_tok = kv_bytes_per_token_layer_rank(m, pool_.tensor, kv_b_);
  std::vector<KernelOp> ops;
  const double p_tok = shape.prefill_tokens / dp, pairs = shape.prefill_pairs / dp;
  const double ctx = shape.decode_context / dp, seqs = shape.decode_seqs / dp;
  // FLOPs per query-key pair: scores and values (MLA: no-RoPE + RoPE scores, values of d_head; prefill
  // runs MLA uncompressed, decode with the absorbed latent: DeepSeek-V2 §2.1.2).
  const double prefill_pair_flops =
      m.is_mla() ? 2.0 * hl * (dh + m.mla_qk_rope_head_dim) + 2.0 * hl * dh : 4.0 * hl * dh;
  const double decode_pair_flops =
      m.is_mla() ? 2.0 * hl * (m.mla_kv_lora_rank + m.mla_qk_rope_head_dim) + 2.0 * hl * m.mla_kv_lora_rank : 4.0 * hl * dh;
  if (p_tok > 0.0) {
    KernelOp op;
    op.cls = KernelClass::prefill_attention;
    op.name = "attn.prefill";  // fused flash attention over the prompt chunks (causal pairs only)
    op.dtype = m.dtype;
    op.flops = prefill_pair_flops * pairs;
    op.bytes = p_tok * (2.0 * hl + 2.0 * kvl) * dh * act_b_ + p_tok * kv_tok;  // Q, O; K, V in; new KV written
    ops.push_back(op);
  }
  if (seqs > 0.0) {
    KernelOp op;
    op.cls = KernelClass::decode_attention;
    op.name = "attn.decode";  // one query per sequence over its paged KV cache: reads every cached token
    op.dtype = s_.serving->kv_dtype;  // decode attention's profile entries are keyed by the KV-cache type
    op.flops = decode_pair_flops * ctx;
    op.bytes = ctx * kv_tok + seqs * (2.0 * hl * dh * act_b_ + kv_tok);
    ops.push_back(op);
  }
  return std::vector<DeviceWork>(static_cast<std::size_t>(pool_.data * pool_.tensor), kernels(ops));
}

double IterationModel::attention_flops(const IterationShape& shape) const {
  const scenario::ModelSpec& m = s_.model;
  const double per_pair = m.is_mla() ? 2.0 * m.heads * (m.d_head + m.mla_qk_rope_head_dim) + 2.0 * m.heads * m.d_head
                                     : 4.0 * m.heads * m.d_head;
  return per_pair * (shape.prefill_pairs + shape.decode_context);
}

std::vector<DeviceWork> IterationModel::ends(int stage, const IterationShape& shape) const {
  const scenario::ModelSpec& m = s_.model;
  const double d = m.d_model, tp = pool_.tensor, dp = pool_.data;
  std::vector<KernelOp> ops;
  if (stage == 0) ops.push_back(vector_op(KernelClass::elementwise, "embed.gather", 2.0 * shape.tokens() / dp * d * act_b_, 0.0));
  if (stage == pool_.pipeline - 1 && shape.sampled > 0.0) {
    const double rows = shape.sampled / dp, v = m.vocab / tp;
    ops.push_back(vector_op(KernelClass::elementwise, "head.norm", 3.0 * rows * d * act_b_, 5.0 * rows * d));
    ops.push_back(gemm("head.logits", rows, v, d, act_b_ > 2.0 ? "fp32" : "bf16"));
    ops.push_back(vector_op(KernelClass::elementwise, "head.sample", 3.0 * rows * v * 4.0, 6.0 * rows * v));
  }
  return std::vector<DeviceWork>(static_cast<std::size_t>(pool_.data * pool_.tensor), kernels(ops));
}

double IterationModel::ends_flops(const IterationShape& shape) const {
  return 2.0 * shape.sampled * s_.model.vocab * s_.model.d_model;
}

double IterationModel::pipeline_bytes_per_device(double tokens) const {
  return tokens / pool_.data * s_.model.d_model * act_b_ / pool_.tensor;
}

std::vector<std::vector<int>> replica_sites(const scenario::Scenario& s) {
  std::vector<std::vector<int>> out;
  const auto& pl = s.placement;
  for (const auto& pool : s.serving->pools) {
    std::vector<int> sites(static_cast<std::size_t>(pool.replicas), 0);
    if (!pool.datacenter.empty()) {
      for (std::size_t k = 0; k < pl.size(); ++k)
        if (pl[k].datacenter == pool.datacenter) std::fill(sites.begin(), sites.end(), static_cast<int>(k));
    } else {
      std::vector<double> shares;
      for (const auto& p : pl) shares.push_back(p.share);
      const std::vector<long long> per_site = scenario::replicas_per_site(shares, pool.replicas);
      std::size_t r = 0;
      for (std::size_t k = 0; k < per_site.size(); ++k)
        for (long long j = 0; j < per_site[k] && r < sites.size(); ++j) sites[r++] = static_cast<int>(k);
    }
    out.push_back(std::move(sites));
  }
  return out;
}

}  // namespace moesim::workload
