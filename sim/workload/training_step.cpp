// SPDX-License-Identifier: Apache-2.0
// The training step of a (Mixture-of-Experts) transformer as a DAG of compute and collective phases.
//
// Per pipeline stage and micro-batch, the forward pass walks the stage's layers; compute between two
// collectives is merged into one compute phase (per-device times, split by kind). Backward mirrors it,
// with the forward (or only the attention core, selective) recomputed layer by layer when rematerialising.
// Stages follow the 1F1B schedule, or Megatron-LM's interleaved 1F1B with several model chunks per stage;
// gradients are all-reduced in 25 MB buckets as the backward produces them (or once at the end), then
// the optimizer updates. Counting conventions (FLOPs = 2 per multiply-add; bytes = each operand read
// once, each result written once) follow notes/moe-kernels.md §3.
#include "moesim/workload/training_step.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <new>
#include <numeric>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::workload {

std::string to_string(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_to_all: return "all_to_all";
    case CollectiveOp::all_reduce: return "all_reduce";
    case CollectiveOp::reduce_scatter: return "reduce_scatter";
    case CollectiveOp::all_gather: return "all_gather";
    case CollectiveOp::send_recv: return "send_recv";
  }
  return "?";
}

double ComputeWork::flop_utilisation() const {
  const double busy = std::accumulate(time_s.begin(), time_s.end(), 0.0);
  return busy > 0.0 ? matrix_s / busy : 0.0;
}

double ComputeWork::hbm_utilisation() const {
  const double busy = std::accumulate(time_s.begin(), time_s.end(), 0.0);
  return busy > 0.0 ? hbm_s / busy : 0.0;
}

PhaseId add_phase(StepGraph& g, Phase p, const std::vector<PhaseId>& after) {
  // Boost 1.74's add_vertex(property, g) copies the property into the graph; a step's phases hold per-chip vectors
  // (megabytes at thousands of chips), so the vertex is added empty and the phase moved in.
  PhaseId v = boost::add_vertex(g);
  g[v] = std::move(p);
  for (PhaseId a : after) boost::add_edge(a, v, g);
  return v;
}

namespace {

using perf::KernelClass;
using perf::KernelOp;

enum class Pass { fwd, bwd, remat };

struct LayerDesc {
  bool decoder = false;
  bool moe = false;
  int index = 0;      ///< index within its stack (encoder or decoder)
  int moe_index = 0;  ///< global MoE layer number (routing popularity)
};

/** Time, FLOPs and peak times (perf::PeakTimes, for the power curve) of a list of kernels on one device. */
struct Cost {
  double time_s = 0.0;
  double hw_flops = 0.0;
  double matrix_s = 0.0;
  double hbm_s = 0.0;
  Cost& operator+=(const Cost& o) {
    time_s += o.time_s;
    hw_flops += o.hw_flops;
    matrix_s += o.matrix_s;
    hbm_s += o.hbm_s;
    return *this;
  }
};

/** Compute accumulated on a stage's devices between two collectives. */
class Accum {
 public:
  explicit Accum(std::size_t n) : time_(n, 0.0) {}
  void add(const std::string& kind, const Cost& c, double model_flops_per_device) {
    if (c.time_s <= 0.0) return;
    for (double& t : time_) t += c.time_s;
    kinds_[kind] += c.time_s;
    hw_ += c.hw_flops * static_cast<double>(time_.size());
    model_ += model_flops_per_device * static_cast<double>(time_.size());
    matrix_ += c.matrix_s * static_cast<double>(time_.size());
    hbm_ += c.hbm_s * static_cast<double>(time_.size());
    empty_ = false;
  }
  /** Per-device times; `sum` holds the FLOPs and peak times summed over the devices (its time_s is unused). */
  void add_per_device(const std::string& kind, const std::vector<double>& t, const Cost& sum, double model_sum) {
    double mean = 0.0;
    for (std::size_t i = 0; i < time_.size(); ++i) {
      time_[i] += t[i];
      mean += t[i];
    }
    mean /= static_cast<double>(time_.size());
    if (mean <= 0.0) return;
    kinds_[kind] += mean;
    hw_ += sum.hw_flops;
    model_ += model_sum;
    matrix_ += sum.matrix_s;
    hbm_ += sum.hbm_s;
    empty_ = false;
  }
  bool empty() const { return empty_; }
  ComputeWork take(const std::vector<int>& devices) {
    ComputeWork w;
    w.devices = devices;
    w.time_s = time_;
    w.kind_time_s = kinds_;
    w.hardware_flops = hw_;
    w.model_flops = model_;
    w.matrix_s = matrix_;
    w.hbm_s = hbm_;
    std::fill(time_.begin(), time_.end(), 0.0);
    kinds_.clear();
    hw_ = model_ = matrix_ = hbm_ = 0.0;
    empty_ = true;
    return w;
  }

 private:
  std::vector<double> time_;
  std::map<std::string, double> kinds_;
  double hw_ = 0.0, model_ = 0.0, matrix_ = 0.0, hbm_ = 0.0;
  bool empty_ = true;
};

class Builder {
 public:
  /** Builds into `out` (its graph in place: Boost 1.74's adjacency_list can only be copied, never moved or swapped
   *  cheaply, and a copy of a large step doubles its memory). */
  Builder(const StepContext& ctx, BuiltStep& out)
      : out_(out),
        g_(out.graph),
        ctx_(ctx),
        s_(ctx.scenario),
        m_(ctx.scenario.model),
        p_(ctx.scenario.parallelism),
        b_(dtype_bytes(m_.dtype)),
        act_b_(dtype_bytes(training_activation_dtype(m_.dtype))),
        act_dtype_(training_activation_dtype(m_.dtype)),
        w_b_(dtype_bytes(training_weight_dtype(m_.dtype))),
        grad_b_(grad_dtype_bytes(ctx.scenario, ctx.accel)),
        tp_(p_.tensor),
        kv_(static_cast<double>(m_.kv_heads > 0 ? m_.kv_heads : m_.heads)),
        kvl_(kv_heads_per_rank(m_, p_.tensor)),
        rng_(Rng::derived(ctx.scenario.seed, static_cast<std::uint64_t>(ctx.step_index))) {
    const bool encdec = m_.architecture == scenario::Architecture::encoder_decoder;
    sequences_ = s_.training.batch_tokens / m_.seq_len / (p_.data * p_.expert) / p_.microbatches;
    t_enc_ = sequences_ * m_.seq_len;
    t_dec_ = sequences_ * (encdec ? m_.target_seq_len : m_.seq_len);
    int moe_counter = 0;
    for (int l = 0; l < m_.encoder_layers; ++l) {
      layers_.push_back({false, m_.is_moe_layer(l), l, m_.is_moe_layer(l) ? moe_counter : -1});
      if (m_.is_moe_layer(l)) ++moe_counter;
    }
    for (int l = 0; l < m_.decoder_layers; ++l) {
      layers_.push_back({true, m_.is_moe_layer(l), l, m_.is_moe_layer(l) ? moe_counter : -1});
      if (m_.is_moe_layer(l)) ++moe_counter;
    }
    // Multi-token prediction (model.mtp_depth): one transformer block per module, of the last layer's kind, after the
    // model's layers (chunk_layers puts them on the chunk that holds the output head).
    const bool mtp_moe = mtp_block_moe(m_);
    for (int k = 0; k < m_.mtp_depth; ++k) {
      layers_.push_back({true, mtp_moe, m_.decoder_layers + k, mtp_moe ? moe_counter : -1});
      if (mtp_moe) ++moe_counter;
    }
    if (m_.is_moe())
      router_ = std::make_unique<Router>(s_.routing, m_.experts, m_.top_k, m_.capacity_factor, s_.seed);
    einsum_dispatch_ = ctx.accel.dispatch == catalog::DispatchStyle::einsum && !s_.routing.dropless;
    // ZeRO-2 and ZeRO-3 keep only the rank's 1/data shard of the gradients (workload::estimate_memory_need), so each
    // micro-batch's gradients are reduce-scattered into it after that micro-batch's backward: DeepSpeed's ZeRO
    // stage 2/3 reduces at every micro-step (its gradient accumulation sums into the partitioned fp32 gradients),
    // FSDP with sharded gradients cannot skip the reduce-scatter (no_sync keeps unsharded gradients, which is not
    // sharding them). ZeRO-1 (Megatron-LM's distributed optimizer) keeps the whole gradient buffer, accumulates the
    // micro-batches in it and reduce-scatters once per step, as the all-reduce without ZeRO does.
    reduce_microbatch_grads_ = p_.zero_stage >= 2 && p_.microbatches > 1;
    reducing_.assign(static_cast<std::size_t>(p_.pipeline), false);
    deferred_.resize(static_cast<std::size_t>(p_.pipeline));
  }

  void run();

 private:
  struct Stream {
    int stage = 0;
    int mb = 0;
    PhaseId last{};
    Accum acc;
    std::vector<int> devices;
    bool overlaps_grad_reduce = false;
  };

  // ---- kernels --------------------------------------------------------------------------------
  Cost time(const KernelOp& op) {
    const CostKey key{static_cast<int>(op.cls), op.dtype, {op.flops, op.bytes, op.m, op.n, op.k, op.batch}};
    if (op.group_m.empty()) {
      auto it = cache_.find(key);
      if (it != cache_.end()) return it->second;
    }
    const perf::KernelTime t = ctx_.compute.time(op);
    const perf::PeakTimes peak = perf::power_peak_times(op, t, ctx_.accel);
    Cost c{t.time_s, t.padded_flops, peak.matrix_s, peak.hbm_s};
    if (op.group_m.empty()) cache_.emplace(key, c);
    return c;
  }
  /** Bytes of an element of a GEMM's output: its dtype's, at least act_b_ (an fp8 GEMM writes bf16, as
   *  serving_model.cpp's IterationModel::gemm counts it; an fp32 one, such as the router's, fp32). */
  double gemm_out_bytes(const std::string& dtype) const { return std::max(dtype_bytes(dtype), act_b_); }
  /** A GEMM [m, k] x [k, n]: its inputs in its dtype (the model's unless given: for an fp8 model the activation's
   *  fp8 cast and the weights' fp8 copy), its output at gemm_out_bytes. */
  KernelOp gemm(const char* name, double m, double n, double k, double batch = 1.0, KernelClass cls = KernelClass::gemm,
                const std::string& dtype = "") const {
    const std::string dt = dtype.empty() ? m_.dtype : dtype;
    return perf::gemm_op(name, m, n, k, batch, dt, dtype_bytes(dt), act_b_, cls);
  }
  /** Forward GEMM, or its backward (input gradient + weight gradient: two GEMMs of the same size). In a backward
   *  whose weight gradients are deferred (defer_, DualPipeV's zero-bubble steps) only the input gradient: the weight
   *  gradient's cost waits in pending_w_ until account() files it in the deferred work under its phase kind. */
  Cost gemm_cost(const char* name, double m, double n, double k, Pass pass, double batch = 1.0,
                 KernelClass cls = KernelClass::gemm, const std::string& dtype = "") {
    if (pass == Pass::bwd && defer_ != nullptr) {
      pending_w_ += time(gemm(name, k, n, m, batch, cls, dtype));
      return time(gemm(name, m, k, n, batch, cls, dtype));
    }
    if (pass == Pass::bwd)
      return gemm_cost_sum({gemm(name, m, k, n, batch, cls, dtype), gemm(name, k, n, m, batch, cls, dtype)});
    return time(gemm(name, m, n, k, batch, cls, dtype));
  }
  Cost gemm_cost_sum(const std::vector<KernelOp>& ops) {
    Cost c;
    for (const auto& op : ops) c += time(op);
    return c;
  }
  /** An elementwise kernel of `bytes` and `flops` in the forward; its backward reads the saved input and the
   *  gradient, `bwd_mult` times the forward's work unless the kernel says otherwise. Its tensors are the ones between
   *  the GEMMs, of act_b_ bytes per element (the callers count them so) and dtype training_activation_dtype: bf16
   *  for an fp8 model, as serving_model.cpp's vector_op. */
  Cost vector_cost(KernelClass cls, const char* name, double bytes, double flops, Pass pass, double bwd_mult = 2.0) {
    KernelOp op;
    op.cls = cls;
    op.name = name;
    op.dtype = act_dtype_;
    const double mult = pass == Pass::bwd ? bwd_mult : 1.0;
    op.bytes = bytes * mult;
    op.flops = flops * mult;
    return time(op);
  }
  static std::string kind_for(const char* base, Pass pass) { return pass == Pass::remat ? "compute.remat" : base; }
  static double model_mult(Pass pass) { return pass == Pass::fwd ? 1.0 : pass == Pass::bwd ? 2.0 : 0.0; }
  /** Adds `c` of phase kind `kind` to the stream and files the weight-gradient GEMMs that gemm_cost deferred since the
   *  last call (pending_w_) under the same kind in the deferred work. The model FLOPs stay with the backward. */
  void account(Stream& st, const std::string& kind, const Cost& c, double model_flops_per_device) {
    st.acc.add(kind, c, model_flops_per_device);
    if (defer_ != nullptr && pending_w_.time_s > 0.0) defer_->add(kind, pending_w_, 0.0);
    pending_w_ = Cost{};
  }

  // ---- phases ---------------------------------------------------------------------------------
  void flush(Stream& st, const std::string& label) {
    if (pending_w_.time_s > 0.0) throw Error("internal error: a deferred weight gradient was not filed (account)");
    if (st.acc.empty()) return;
    Phase ph;
    ph.type = Phase::Type::compute;
    ph.kind = "compute";
    ph.label = label;
    ph.stage = st.stage;
    ph.microbatch = st.mb;
    ph.compute = st.acc.take(st.devices);
    stats_.model_flops += ph.compute.model_flops;
    stats_.hardware_flops += ph.compute.hardware_flops;
    st.last = add_phase(g_, std::move(ph), {st.last});
  }
  void collective(Stream& st, const std::string& kind, const std::string& label, CollectiveWork w) {
    flush(st, label + " (compute)");
    if (w.bytes_per_device <= 0.0) return;
    std::size_t members = 0;
    for (const auto& grp : w.groups) members += grp.size();
    stats_.bytes_by_op[to_string(w.op)] += w.bytes_per_device * static_cast<double>(members);
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = kind;
    ph.label = label;
    ph.stage = st.stage;
    ph.microbatch = st.mb;
    ph.overlaps_grad_reduce = st.overlaps_grad_reduce;
    ph.comm = std::move(w);
    st.last = add_phase(g_, std::move(ph), {st.last});
  }
  /** Before a tensor-parallel block (attention, dense FFN): with sequence parallelism, the all-gather of the
   *  block's input, whose tokens are split over the tensor ranks (Korthikanti et al. 2022 §4.2.2, operator g); in
   *  the backward, the all-gather of the output gradient (the reduce-scatter's gradient).
   *
   *  The backward also re-gathers the block's input: its first GEMMs' weight gradients need all of it, and only the
   *  rank's 1/tensor of it is stored (the sequence-parallel activation memory, workload/memory, stores each
   *  layer's input sharded; Korthikanti et al. 2022 §4.2.2 count sbh/t for it). Megatron-LM does exactly this
   *  (LinearWithGradAccumulationAndAsyncCommunication's backward all-gathers the saved input again) and issues it
   *  beside the input-gradient GEMM; moesim runs it in turn with the block's work, as every tensor-parallel
   *  collective here: the engine does not overlap a stage's own collectives with its compute, and on the GPU
   *  NCCL's kernels share the SMs and HBM with that GEMM. */
  void tensor_block_input(Stream& st, double tokens, const std::string& label, Pass pass) {
    if (!p_.sequence_parallel) return;
    tensor_collective(st, CollectiveOp::all_gather, tokens, label + " SP all-gather");
    if (pass == Pass::bwd) tensor_collective(st, CollectiveOp::all_gather, tokens, label + " SP input re-gather");
  }
  /** After a tensor-parallel block: the all-reduce of its partial outputs (Megatron-LM), or with sequence
   *  parallelism a reduce-scatter that leaves each rank 1/tensor of the tokens (operator g-bar): together with
   *  the all-gather before the block, the bytes of the all-reduce it replaces, in two collectives. The backward
   *  and a recomputed forward have the same pair (the gradients of an all-gather and a reduce-scatter are a
   *  reduce-scatter and an all-gather); the backward's re-gather of the block's input is in tensor_block_input. */
  void tensor_block_output(Stream& st, double tokens, const std::string& label) {
    if (p_.sequence_parallel)
      tensor_collective(st, CollectiveOp::reduce_scatter, tokens, label + " SP reduce-scatter");
    else
      tensor_collective(st, CollectiveOp::all_reduce, tokens, label + " all-reduce");
  }
  /** A collective of [tokens, d_model] activations within each tensor-parallel group, in act_b_ (bf16 when the model
   *  trains in fp8: the tensors between the GEMMs are bf16, Transformer Engine's all-gathers and reduce-scatters of
   *  them too). */
  void tensor_collective(Stream& st, CollectiveOp op, double tokens, const std::string& label) {
    tensor_collective_bytes(st, op, tokens * m_.d_model * act_b_, label);
  }
  void tensor_collective_bytes(Stream& st, CollectiveOp op, double bytes_per_device, const std::string& label) {
    if (tp_ <= 1) return;
    CollectiveWork w;
    w.op = op;
    w.groups = ctx_.mesh.tensor_groups(st.stage);
    w.bytes_per_device = bytes_per_device;
    collective(st, "comm.tensor_parallel", label, std::move(w));
  }

  /** How much longer compute takes while communication kernels hold `comm_sms` of a GPU's SMs: sm_count /
   *  (sm_count - comm_sms); 1 on an accelerator without SMs (a TPU's collectives run on its DMA engines). */
  double sm_slowdown(int comm_sms) const {
    const int sms = ctx_.accel.sm_count;
    return sms > comm_sms ? sms / static_cast<double>(sms - comm_sms) : 1.0;
  }
  /** One tensor-parallel collective of an overlapped block (parallelism.overlap_tensor_comm). */
  struct TpComm {
    CollectiveOp op;
    double tokens;
    std::string label;
  };
  bool overlap_tp() const { return p_.overlap_tensor_comm && p_.sequence_parallel && tp_ > 1; }
  /** parallelism.overlap_tensor_comm: the collectives `comms` (in turn) beside `gemm`, the GEMM that consumes or produces
   *  their tensor (Transformer Engine's userbuffers; XLA's collective matmul): each is decomposed into tensor-size chunks
   *  that travel while the GEMM works on the others, so (tensor - 1) / tensor of it runs on a branch beside the GEMM
   *  and its last chunk alone after both. On a GPU the GEMM runs on 16 fewer SMs unless `copy_engines` (Transformer
   *  Engine's initialize_ub defaults: num_sm 16 for its pipelined and bulk overlaps, 1 with copy engines for the
   *  forward's ring-exchange all-gathers). The block's model FLOPs stay with its other work (account). */
  void overlapped_tensor_comms(Stream& st, const std::vector<TpComm>& comms, const Cost& gemm, const std::string& kind,
                               const std::string& label, bool copy_engines) {
    account(st, kind, Cost{}, 0.0);  // files the weight gradients gemm_cost deferred (DualPipe's W steps)
    flush(st, label + " (compute)");
    const PhaseId before = st.last;
    Stream comm{st.stage, st.mb, before, Accum(st.devices.size()), st.devices, st.overlaps_grad_reduce};
    const double t = tp_;
    for (const TpComm& c : comms) tensor_collective(comm, c.op, c.tokens * (t - 1.0) / t, c.label + " (overlapped chunks)");
    Stream gemm_branch{st.stage, st.mb, before, Accum(st.devices.size()), st.devices, st.overlaps_grad_reduce};
    Cost g = gemm;
    constexpr int kUbSms = 16;  // Transformer Engine initialize_ub default_cfg: "num_sm": 16 unless ring_exchange
    if (!copy_engines) g.time_s *= sm_slowdown(kUbSms);  // the same work at a lower rate, as an overlapped pair's
    gemm_branch.acc.add(kind, g, 0.0);
    flush(gemm_branch, label + " beside its collectives (compute)");
    st.last = add_phase(g_, Phase{}, {comm.last, gemm_branch.last});
    for (const TpComm& c : comms) tensor_collective(st, c.op, c.tokens / t, c.label + " (last chunk)");
  }
  /** The input collectives of a block (tensor_block_input), for overlapped_tensor_comms. */
  std::vector<TpComm> block_input_comms(double tokens, const std::string& label, Pass pass) const {
    std::vector<TpComm> v{{CollectiveOp::all_gather, tokens, label + " SP all-gather"}};
    if (pass == Pass::bwd) v.push_back({CollectiveOp::all_gather, tokens, label + " SP input re-gather"});
    return v;
  }

  // ---- sub-layers -----------------------------------------------------------------------------
  /** Head dimension of the queries and keys (the scores' inner dimension): d_head, or with multi-head latent
   *  attention d_head (no-RoPE part) + qk_rope_head_dim (decoupled RoPE part; DeepSeek-V2 §2.1.3, arXiv 2405.04434).
   *  Values keep d_head (v_head_dim = d_head, as serving_model.cpp's attention assumes). */
  double qk_head_dim() const { return m_.d_head + (m_.is_mla() ? static_cast<double>(m_.mla_qk_rope_head_dim) : 0.0); }

  /** The attention core of one tensor rank: scores QK^T, softmax (with its dropout) and values PV, full matrices
   *  (masked where causal); backward = 4 batched GEMMs. What selective recomputation recomputes. The scores'
   *  inner dimension is qk_head_dim() (MLA: d_head + RoPE), the values' d_head. In act_dtype_: an fp8 model keeps
   *  its attention core in bf16, as DeepSeek-V3 (arXiv 2412.19437 §3.3.1: "attention operators" in their original
   *  precision) and Transformer Engine's default fp8 recipe (fp8 dot-product attention is opt-in) do. */
  Cost attention_core(double tok, double s_q, double s_kv, bool causal, Pass pass) {
    if (ctx_.scenario.training.fused_attention) return fused_attention_core(tok, s_q, s_kv, causal, pass);
    const double hl = m_.heads / tp_, dh = m_.d_head, dqk = qk_head_dim();
    const double seqs = tok / s_q;
    Cost c;
    if (pass == Pass::bwd) {
      // dQ = dS K and dK = dS^T Q over the query-key dimension; dP = dO V^T and dV = P^T dO over the value dimension.
      c += gemm_cost_sum({gemm("attn.dq", s_q, dqk, s_kv, seqs * hl, KernelClass::batched_gemm, act_dtype_),
                          gemm("attn.dk", s_kv, dqk, s_q, seqs * hl, KernelClass::batched_gemm, act_dtype_),
                          gemm("attn.dp", s_q, s_kv, dh, seqs * hl, KernelClass::batched_gemm, act_dtype_),
                          gemm("attn.dv", s_kv, dh, s_q, seqs * hl, KernelClass::batched_gemm, act_dtype_)});
    } else {
      c += time(gemm("attn.scores", s_q, s_kv, dqk, seqs * hl, KernelClass::batched_gemm, act_dtype_));
      c += time(gemm("attn.values", s_q, dh, s_kv, seqs * hl, KernelClass::batched_gemm, act_dtype_));
    }
    const double scores = seqs * hl * s_q * s_kv;
    c += vector_cost(KernelClass::elementwise, "attn.softmax", 2.0 * scores * act_b_, 5.0 * scores, pass);
    if (ctx_.scenario.training.attention_dropout > 0.0) {
      // Dropout on the probabilities, its own kernel (Megatron-LM's CoreAttention): the forward reads them and
      // writes the dropped-out copy and a one-byte mask; the backward reads the gradient and the mask and writes
      // the gradient, the same bytes (Korthikanti et al. 2022 §4.1: mask as^2b, output 2as^2b at 16 bits).
      c += vector_cost(KernelClass::elementwise, "attn.dropout", (2.0 * act_b_ + 1.0) * scores, 2.0 * scores, pass, 1.0);
    }
    return c;
  }

  /** The attention core as one fused FlashAttention kernel per pass (training.attention_kernel: fused; Dao et al.
   *  2022, FlashAttention-2 Dao 2023): the forward computes scores and values tile by tile over the query-key pairs
   *  (a causal mask's pairs only, s (s + 1) / 2 per sequence), reading Q, K, V and writing O and one fp32
   *  log-sum-exp per query row and head; the backward recomputes the scores and runs dV = P^T dO, dP = dO V^T,
   *  dQ = dS K and dK = dS^T Q, five products to the forward's two over the same pairs (so 2.5 x its FLOPs when
   *  the query-key and value widths agree), reading Q, K, V, O, dO and the log-sum-exp and writing dQ, dK, dV.
   *  Dropout runs inside the kernel from a regenerated random mask: no extra kernel or bytes. Kernel class
   *  prefill_attention (the fused serving kernel's efficiency, profiles/efficiency.yaml). */
  Cost fused_attention_core(double tok, double s_q, double s_kv, bool causal, Pass pass) {
    const double hl = m_.heads / tp_, dh = m_.d_head, dqk = qk_head_dim();
    const double seqs = tok / s_q;
    const double pairs = seqs * hl * (causal && s_q == s_kv ? s_q * (s_q + 1.0) / 2.0 : s_q * s_kv);
    const double kv_rows = seqs * s_kv;
    const double kv_heads = m_.is_mla() ? hl : kvl_;  // MLA's keys and values are up-projected per head
    // Q, K, V and O in act_dtype_, the core's own (as the materialised core's batched GEMMs): an fp8 model keeps its
    // attention core in bf16 (DeepSeek-V3 §3.3.1; Transformer Engine's default), as workload::estimate_memory_need
    // stores Q, K and V.
    const double qo_bytes = tok * hl * (dqk + dh) * act_b_, kv_bytes = kv_rows * kv_heads * (dqk + dh) * act_b_;
    const double lse_bytes = tok * hl * 4.0;
    KernelOp op;
    op.cls = KernelClass::prefill_attention;
    op.dtype = act_dtype_;
    if (pass == Pass::bwd) {
      op.name = "attn.flash_bwd";
      op.flops = 2.0 * pairs * (3.0 * dqk + 2.0 * dh);  // S again, dQ, dK over dqk; dP, dV over dh
      op.bytes = 2.0 * (qo_bytes + kv_bytes) + lse_bytes;  // Q K V O dO and the log-sum-exp in, dQ dK dV out
    } else {
      op.name = "attn.flash_fwd";
      op.flops = 2.0 * pairs * (dqk + dh);
      op.bytes = qo_bytes + kv_bytes + lse_bytes;
    }
    return time(op);
  }

  /** Elementwise work around a block (layer norm, residual add, dropout: ~6 reads/writes of [tokens, d_model]),
   *  on 1/tensor of the tokens with sequence parallelism. */
  Cost norm_residual(const char* name, double tok, Pass pass) {
    const double rows = p_.sequence_parallel ? tok / tp_ : tok;
    return vector_cost(KernelClass::elementwise, name, 6.0 * rows * m_.d_model * act_b_, 10.0 * rows * m_.d_model, pass);
  }

  void attention(Stream& st, double tok, double s_q, double s_kv, double kv_tokens, bool cross, bool causal, Pass pass,
                 const std::string& label) {
    const double d = m_.d_model, hl = m_.heads / tp_, dh = m_.d_head;
    const double seqs = tok / s_q;
    const std::string what = label + (cross ? " cross-attn TP" : " attn TP");
    // parallelism.overlap_tensor_comm: the GEMMs that read the gathered input (first) and the output projection (last)
    // are costed apart, to run beside the block's collectives; otherwise everything adds up in c.
    const bool overlap = overlap_tp();
    Cost c, first_gemms, last_gemm;
    Cost& first = overlap ? first_gemms : c;
    if (!overlap) tensor_block_input(st, cross ? tok + kv_tokens : tok, what, pass);
    // Multiply-adds of the projections per device for the model FLOPs; work replicated on every tensor rank (MLA's
    // down-projections) counted once per tensor group, as the model's parameters are (attention_params).
    double proj = 0.0;
    const bool mla = m_.is_mla() && !cross;  // the resolver refuses MLA in an encoder-decoder: no cross-attention with it
    if (mla) {
      // Multi-head latent attention (DeepSeek-V2 §2.1.2, arXiv 2405.04434; DeepSeek-V3 §2.1.1, arXiv 2412.19437):
      // queries through a q_lora_rank bottleneck (or straight from d_model when it is 0) to heads x (d_head no-RoPE
      // + rope RoPE); keys and values through one joint down-projection to the latent of kv_lora_rank plus the
      // decoupled RoPE key (shared by the heads), the latent up-projected to heads x (d_head key + d_head value).
      // The down-projections are replicated on every tensor rank (DeepSeek-V3's reference inference/model.py: wq_a
      // and wkv_a plain Linear layers, wq_b, wkv_b and wo column- and row-parallel; workload::layer_params counts them
      // whole on each rank), the up-projections and the output projection split by heads as in standard attention.
      // The same GEMMs as serving_model.cpp's MLA segment. The tensor-parallel collectives stay the block's, over
      // [tokens, d_model] (with sequence parallelism an implementation could gather the narrower latents instead of
      // the block's input: not modelled, an upper bound on those bytes).
      const double rope = m_.mla_qk_rope_head_dim, lora = m_.mla_kv_lora_rank, ql = m_.mla_q_lora_rank;
      const double dqk = qk_head_dim();
      if (ql > 0) {
        first += gemm_cost("attn.q_down", tok, ql, d, pass);
        c += gemm_cost("attn.q_up", tok, hl * dqk, ql, pass);
        proj += tok * (d * ql / tp_ + ql * hl * dqk);
      } else {
        first += gemm_cost("attn.q", tok, hl * dqk, d, pass);
        proj += tok * d * hl * dqk;
      }
      first += gemm_cost("attn.kv_down", tok, lora + rope, d, pass);
      c += gemm_cost("attn.kv_up", tok, hl * 2.0 * dh, lora, pass);
      proj += tok * (d * (lora + rope) / tp_ + lora * hl * 2.0 * dh);
      // The RMSNorms of the compressed query and of the latent (DeepSeek-V2 §3.1.2: "additional RMSNorm layers after
      // the compressed latent vectors"): elementwise, counted as serving_model.cpp's attn.norm (read, write and the
      // weight: 3 passes of each element, 5 FLOPs per element), replicated like the down-projections.
      c += vector_cost(KernelClass::elementwise, "attn.latent_norm", 3.0 * tok * (ql + lora) * act_b_, 5.0 * tok * (ql + lora), pass);
    } else if (!cross) {
      first += gemm_cost("attn.qkv", tok, (hl + 2.0 * kvl_) * dh, d, pass);
      // With the output projection's. The model's K and V projections are kv_heads wide: 1/tensor of them per rank
      // (a fraction of a head when kv_heads < tensor), so the model FLOPs summed over the tensor group do not depend
      // on the layout; the hardware FLOPs (the GEMM above) include the heads replicated on every rank.
      proj = tok * (2.0 * hl + 2.0 * kv_ / tp_) * dh * d;
    } else {
      // Cross-attention: queries of the decoder's tokens; keys and values of the encoder's, kv_heads wide as in
      // self-attention (workload::attention_params counts them so): kv_heads_per_rank heads per rank on the hardware,
      // kv_heads / tensor in the model FLOPs.
      first += gemm_cost("attn.q", tok, hl * dh, d, pass);
      first += gemm_cost("attn.kv", kv_tokens, 2.0 * kvl_ * dh, d, pass);
      proj = (tok * hl * dh * 2.0 + kv_tokens * 2.0 * kv_ / tp_ * dh) * d;  // with the output projection's
    }
    c += attention_core(tok, s_q, s_kv, causal, pass);
    (overlap ? last_gemm : c) += gemm_cost("attn.out", tok, d, hl * dh, pass);
    if (mla) proj += tok * hl * dh * d;
    c += norm_residual("attn.norm_residual", tok, pass);
    // Scores over the query-key dimension, values over d_head (2 FLOPs per multiply-add each).
    const double dqk = mla ? qk_head_dim() : dh;
    const double model = 2.0 * proj + 2.0 * seqs * hl * s_q * s_kv * (dqk + dh);
    const std::string kind = kind_for(cross ? "compute.cross_attention" : "compute.attention", pass);
    if (!overlap) {
      account(st, kind, c, model * model_mult(pass));
      tensor_block_output(st, tok, what);
      return;
    }
    overlapped_tensor_comms(st, block_input_comms(cross ? tok + kv_tokens : tok, what, pass), first_gemms, kind, what + " input",
                            pass != Pass::bwd);
    account(st, kind, c, model * model_mult(pass));
    overlapped_tensor_comms(st, {{CollectiveOp::reduce_scatter, tok, what + " SP reduce-scatter"}}, last_gemm, kind,
                            what + " output", false);
  }

  /** Kernel names and the phase kind of one tensor-parallel FFN block (tensor_parallel_ffn). */
  struct FfnNames {
    const char *up, *act, *down;
    const char* norm;  ///< its layer norm and residual, or nullptr when the block has none of its own
    const char* kind;
  };
  /** A Megatron tensor-parallel MLP of `width` (split over the tensor ranks): column-parallel up (gated: two
   *  matrices), the activation, row-parallel down, with the collectives around the block. */
  void tensor_parallel_ffn(Stream& st, double tok, double width, Pass pass, const std::string& what, const FfnNames& n) {
    const double d = m_.d_model, f = width / tp_, mats = m_.gated() ? 2.0 : 1.0;
    const bool overlap = overlap_tp();  // parallelism.overlap_tensor_comm: FC1 and FC2 apart, beside the collectives
    if (!overlap) tensor_block_input(st, tok, what, pass);
    Cost c, up, down;
    (overlap ? up : c) += gemm_cost(n.up, tok, mats * f, d, pass);
    c += vector_cost(KernelClass::elementwise, n.act, (mats + 1.0) * tok * f * act_b_, 8.0 * tok * f, pass);
    (overlap ? down : c) += gemm_cost(n.down, tok, d, f, pass);
    if (n.norm != nullptr) c += norm_residual(n.norm, tok, pass);
    const double model = 2.0 * tok * (mats + 1.0) * d * f;
    const std::string kind = kind_for(n.kind, pass);
    if (!overlap) {
      account(st, kind, c, model * model_mult(pass));
      tensor_block_output(st, tok, what);
      return;
    }
    overlapped_tensor_comms(st, block_input_comms(tok, what, pass), up, kind, what + " input", pass != Pass::bwd);
    account(st, kind, c, model * model_mult(pass));
    overlapped_tensor_comms(st, {{CollectiveOp::reduce_scatter, tok, what + " SP reduce-scatter"}}, down, kind, what + " output",
                            false);
  }

  void dense_ffn(Stream& st, double tok, Pass pass, const std::string& label) {
    tensor_parallel_ffn(st, tok, m_.d_ff, pass, label + " ffn TP", {"ffn.up", "ffn.act", "ffn.down", "ffn.norm_residual", "compute.ffn"});
  }

  /** The shared experts of an MoE layer (DeepSeekMoE, Dai et al. 2024, arXiv 2401.06066 §3.2; DeepSeek-V2/V3):
   *  every token also passes through shared_experts FFNs of expert_d_ff, computed as one dense FFN of width
   *  shared_experts x expert_d_ff and split over the tensor ranks as the dense FFN is (Megatron-Core's
   *  SharedExpertMLP, megatron/core/transformer/moe/shared_experts.py, is such a tensor-parallel MLP: column-parallel
   *  up, row-parallel down, the input all-gathered and the output reduce-scattered with sequence parallelism, the
   *  output all-reduced without), with the dense FFN's tensor-parallel collectives of [tokens, d_model]. workload::layer_params counts their parameters 1/tensor on
   *  each rank among the dense ones, so their gradients go with the dense gradients' data x expert reduction and
   *  the optimizer updates them with those. (Serving, serving_model.cpp, replicates them on each tensor rank
   *  when the experts are parallel, each rank taking 1/tensor of the tokens; training keeps the tensor split its
   *  parameter count assumes.) */
  void shared_experts_ffn(Stream& st, double tok, Pass pass, const std::string& label) {
    if (m_.shared_experts <= 0) return;
    tensor_parallel_ffn(st, tok, static_cast<double>(m_.shared_experts) * m_.expert_d_ff, pass, label + " shared experts TP",
                        {"moe.shared_up", "moe.shared_act", "moe.shared_down", nullptr, "compute.shared_experts"});
  }

  /** Expert FFN time per device of the stage, from the routing draw of each expert-parallel group. */
  void moe_ffn(Stream& st, const LayerDesc& L, double tok, Pass pass, const std::string& label);

  /** The input embedding, vocabulary-parallel over the tensor ranks (Megatron-LM's VocabParallelEmbedding; Shoeybi
   *  et al. 2019 §3): each rank looks up the tokens whose ids fall in its 1/tensor of the vocabulary and the partial
   *  embeddings are summed over the tensor group, an all-reduce of [tokens, d_model] whose backward is the identity;
   *  with sequence parallelism a reduce-scatter (Korthikanti et al. 2022 §4.2.2), whose backward is an all-gather. */
  void embedding(Stream& st, double tok, Pass pass) {
    Cost c = vector_cost(KernelClass::elementwise, "embed.gather", 2.0 * tok * m_.d_model * act_b_, 0.0, pass);
    st.acc.add(kind_for("compute.embedding", pass), c, 0.0);
    if (pass == Pass::fwd)
      tensor_collective(st, p_.sequence_parallel ? CollectiveOp::reduce_scatter : CollectiveOp::all_reduce, tok,
                        fmt::format("embedding mb{} vocab-parallel {}", st.mb, p_.sequence_parallel ? "reduce-scatter" : "all-reduce"));
    else if (pass == Pass::bwd && p_.sequence_parallel)
      tensor_collective(st, CollectiveOp::all_gather, tok, fmt::format("embedding mb{} SP gradient all-gather", st.mb));
  }
  /** The output projection over 1/tensor of the vocabulary and the vocabulary-parallel cross-entropy (Megatron-LM's
   *  vocab_parallel_cross_entropy: all-reduces of each token's maximum logit, target logit and sum of exponentials,
   *  three [tokens] fp32 vectors). Its input is replicated over the tensor ranks (with sequence parallelism
   *  all-gathered first), so the backward all-reduces the input's gradient (reduce-scatters it). */
  void output_head(Stream& st, double tok, Pass pass) {
    const double d = m_.d_model, v = m_.vocab / tp_;
    if (pass == Pass::fwd && p_.sequence_parallel)
      tensor_collective(st, CollectiveOp::all_gather, tok, fmt::format("output head mb{} SP all-gather", st.mb));
    // The output head in act_dtype_: an fp8 model keeps it in bf16 (DeepSeek-V3 §3.3.1, "the output head"; Megatron-LM's
    // output layer is not one of Transformer Engine's fp8 layers).
    Cost c = gemm_cost("head.logits", tok, v, d, pass, 1.0, KernelClass::gemm, act_dtype_);
    c += vector_cost(KernelClass::elementwise, "head.softmax_xent", 3.0 * tok * v * 4.0, 6.0 * tok * v, pass);
    account(st, kind_for("compute.output", pass), c, 2.0 * tok * v * d * model_mult(pass));
    if (pass == Pass::fwd) {
      for (const char* what : {"max logit", "target logit", "sum of exponentials"})
        tensor_collective_bytes(st, CollectiveOp::all_reduce, tok * 4.0,
                                fmt::format("output head mb{} cross-entropy {} all-reduce", st.mb, what));
    } else if (pass == Pass::bwd) {
      tensor_collective(st, p_.sequence_parallel ? CollectiveOp::reduce_scatter : CollectiveOp::all_reduce, tok,
                        fmt::format("output head mb{} input-gradient {}", st.mb, p_.sequence_parallel ? "reduce-scatter" : "all-reduce"));
    }
  }

  void layer(Stream& st, const LayerDesc& L, Pass pass) {
    const bool encdec = m_.architecture == scenario::Architecture::encoder_decoder;
    const double tok = L.decoder ? t_dec_ : t_enc_;
    const double s_self = L.decoder ? (encdec ? m_.target_seq_len : m_.seq_len) : m_.seq_len;
    const std::string label = fmt::format("{}{} {} mb{}", L.decoder ? "D" : "E", L.index,
                                          pass == Pass::fwd ? "fwd" : pass == Pass::bwd ? "bwd" : "remat", st.mb);
    auto ffn = [&] {
      if (L.moe)
        moe_ffn(st, L, tok, pass, label);
      else
        dense_ffn(st, tok, pass, label);
    };
    auto attn = [&] {
      attention(st, tok, s_self, s_self, tok, false, L.decoder, pass, label);  // a decoder's self-attention is causal
      if (L.decoder && encdec) attention(st, tok, s_self, m_.seq_len, t_enc_, true, false, pass, label);
    };
    if (pass == Pass::bwd) {
      ffn();
      attn();
    } else {
      attn();
      ffn();
    }
  }

  /** Selective recomputation: before a layer's backward, the forward kernels of what training.recompute_modules
   *  dropped (workload::estimate_memory_need drops the same tensors); no collectives. core_attn (Korthikanti et al.
   *  2022 §5): the attention cores (self and, in an encoder-decoder's decoder, cross). layernorm: the layer norms
   *  (each reads its stored input and writes its output, [tokens, d_model], on 1/tensor of the tokens with sequence
   *  parallelism). mla_up_proj: MLA's query and key-value up-projections from the stored latents. moe_act: the
   *  routed experts' activation function over each device's rows of this micro-batch's routing draw. */
  void selective_remat(Stream& st, const LayerDesc& L) {
    const auto& rc = ctx_.scenario.training.recompute;
    const bool encdec = m_.architecture == scenario::Architecture::encoder_decoder;
    const bool cross = L.decoder && encdec;
    const double tok = L.decoder ? t_dec_ : t_enc_;
    const double s_self = L.decoder ? (encdec ? m_.target_seq_len : m_.seq_len) : m_.seq_len;
    Cost c;
    if (rc.core_attn && !ctx_.scenario.training.fused_attention) {  // a fused kernel stores nothing of the core
      c += attention_core(tok, s_self, s_self, L.decoder, Pass::remat);
      if (cross) c += attention_core(tok, s_self, m_.seq_len, false, Pass::remat);
    }
    if (rc.layernorm) {
      const double rows = p_.sequence_parallel ? tok / tp_ : tok, norms = cross ? 3.0 : 2.0;
      c += vector_cost(KernelClass::elementwise, "remat.layernorm", norms * 2.0 * rows * m_.d_model * act_b_,
                       norms * 5.0 * rows * m_.d_model, Pass::remat);
    }
    if (rc.mla_up_proj && m_.is_mla() && !cross) {
      const double hl = m_.heads / tp_, ql = m_.mla_q_lora_rank;
      c += ql > 0 ? gemm_cost("attn.q_up", tok, hl * qk_head_dim(), ql, Pass::remat)
                  : gemm_cost("attn.q", tok, hl * qk_head_dim(), m_.d_model, Pass::remat);
      c += gemm_cost("attn.kv_up", tok, hl * 2.0 * m_.d_head, m_.mla_kv_lora_rank, Pass::remat);
    }
    st.acc.add("compute.remat", c, 0.0);
    if (rc.moe_act && L.moe) {
      const auto it = expert_rows_.find({L.moe_index, st.mb});
      if (it == expert_rows_.end()) throw Error("internal error: moe_act recomputation before the layer's forward");
      const double f = m_.expert_d_ff / tp_, mats = m_.gated() ? 2.0 : 1.0;
      std::vector<double> times;
      Cost sum;
      for (double rows : it->second) {
        const Cost k = vector_cost(KernelClass::elementwise, "moe.expert_act", (mats + 1.0) * rows * f * act_b_, 8.0 * rows * f,
                                   Pass::remat);
        times.push_back(k.time_s);
        sum += k;
      }
      st.acc.add_per_device("compute.remat", times, sum, 0.0);
    }
  }

  /** Layers of model chunk `chunk` of pipeline stage `stage` (workload::chunk_layers; the chunk that holds the output
   *  head also runs the multi-token prediction modules' blocks), and of the whole stage. */
  std::vector<int> chunk_layers(int stage, int chunk) const { return chunk_blocks(m_, p_, stage, chunk); }
  /** Parameters per device of layer `id` (workload::layer_params); a multi-token prediction module's block also
   *  carries the module's projection, 2d x d split over the tensor ranks (workload::mtp_projection_params). */
  LayerParams params_of(int id) const {
    const LayerDesc& L = layers_[static_cast<std::size_t>(id)];
    LayerParams lp = layer_params(m_, p_, L.decoder, L.moe);
    if (id >= m_.total_layers()) lp.dense += mtp_projection_params(m_, p_);
    return lp;
  }
  std::vector<int> stage_layers(int stage) const {
    std::vector<int> ids;
    for (int c = 0; c < p_.virtual_stages; ++c) {
      const auto part = chunk_layers(stage, c);
      ids.insert(ids.end(), part.begin(), part.end());
    }
    return ids;
  }
  /** The multi-token prediction modules' work besides their blocks (DeepSeek-V3 §2.2): per module the embedding of the
   *  token k ahead (the shared embedding), the projection of [norm(h), norm(emb)] from 2d to d and the shared output
   *  head with its cross-entropy. Their RMSNorms are counted as one norm-residual pass of 2d. */
  void mtp_extras(Stream& st, Pass pass) {
    const double tok = t_dec_, d = m_.d_model;
    auto projection = [&] {
      Cost c = gemm_cost("mtp.proj", tok, d, 2.0 * d, pass);
      c += norm_residual("mtp.norms", 2.0 * tok, pass);
      account(st, kind_for("compute.mtp", pass), c, 2.0 * tok * 2.0 * d * d * model_mult(pass));
    };
    for (int k = 0; k < m_.mtp_depth; ++k) {
      if (pass == Pass::fwd) embedding(st, tok, pass);  // the backward runs the module in reverse
      else output_head(st, tok, pass);
      projection();
      if (pass == Pass::fwd) output_head(st, tok, pass);
      else embedding(st, tok, pass);
    }
  }

  /** One forward or backward of a micro-batch on a stage's model chunk. Records in `grads_ready` (given for a backward
   *  whose gradients are reduced as it goes: the last micro-batch's, or with ZeRO-2/3 and several micro-batches each
   *  one's) the phase after which each layer's gradients are complete. */
  PhaseId pass_of(int stage, int chunk, int mb, Pass pass, PhaseId after, std::map<int, PhaseId>* grads_ready) {
    Stream st{stage, mb, after, Accum(ctx_.mesh.stage_devices(stage).size()), ctx_.mesh.stage_devices(stage)};
    // Runs beside gradient reductions of its stage: the backward whose gradients are reduced as it goes, and (ZeRO-2/3
    // with several micro-batches, reduce_microbatch_grads_) every pass after the stage's first reduction started.
    st.overlaps_grad_reduce = (grads_ready != nullptr || reducing_[static_cast<std::size_t>(stage)]) &&
                              ctx_.scenario.training.overlap_grad_reduce;
    const auto ids = chunk_layers(stage, chunk);
    const int vs = virtual_stage(p_, stage, chunk);
    const bool first = vs == 0, last = vs == chain_length(p_) - 1;
    // ZeRO-3: each layer's parameters are all-gathered before use, the next layer's prefetched while
    // this one computes (FSDP's one-layer prefetch on one communication stream).
    const bool zero3 = p_.zero_stage >= 3;
    if (zero3) st.overlaps_grad_reduce = true;  // prefetches run beside the stream's own collectives
    std::vector<int> order(ids.begin(), ids.end());
    if (pass != Pass::fwd) std::reverse(order.begin(), order.end());
    std::map<int, PhaseId> gathered;
    std::optional<PhaseId> comm_stream;
    auto gather = [&](std::size_t k) {
      const int li = order[k];
      if (gathered.count(li)) return gathered.at(li);
      std::vector<PhaseId> deps{st.last};
      if (comm_stream) deps.push_back(*comm_stream);
      PhaseId g = zero3_gather(stage, mb, li, deps.size() == 1 ? deps[0] : add_phase(g_, Phase{}, deps));
      comm_stream = g;
      gathered[li] = g;
      return g;
    };
    auto before_layer = [&](std::size_t k) {
      if (!zero3) return;
      flush(st, fmt::format("L{} mb{} (compute)", order[k], mb));
      const PhaseId mine = gather(k);
      if (k + 1 < order.size()) gather(k + 1);
      st.last = add_phase(g_, Phase{}, {st.last, mine});
    };
    // ZeRO-3 shards the vocabulary matrix like every parameter: the first and last chunks gather it (one tied matrix
    // for the embedding and the output projection) on the communication stream when the pass starts, ahead of the
    // layers' gathers; the embedding and the output head wait for it.
    std::optional<PhaseId> vocab_gathered;
    if (zero3 && (first || last)) {
      const auto groups = ctx_.mesh.dense_grad_groups(stage);
      if (!groups.empty() && groups.front().size() > 1) {
        Phase ph = zero_all_gather(groups, static_cast<double>(m_.vocab) * m_.d_model / tp_, stage,
                                   fmt::format("stage{} mb{} ZeRO-3 vocabulary-matrix all-gather", stage, mb));
        ph.microbatch = mb;
        ph.overlaps_grad_reduce = true;
        vocab_gathered = add_phase(g_, std::move(ph), {st.last});
        comm_stream = vocab_gathered;
      }
    }
    auto wait_vocab = [&](const char* what) {
      if (!vocab_gathered) return;
      flush(st, fmt::format("stage{} mb{} before {} (compute)", stage, mb, what));
      st.last = add_phase(g_, Phase{}, {st.last, *vocab_gathered});
    };
    if (pass == Pass::fwd) {
      if (first) {
        wait_vocab("embedding");
        embedding(st, t_enc_ + (m_.encoder_layers > 0 ? t_dec_ : 0.0), Pass::fwd);
      }
      for (std::size_t k = 0; k < order.size(); ++k) {
        before_layer(k);
        layer(st, layers_[static_cast<std::size_t>(order[k])], Pass::fwd);
      }
      if (last) {
        wait_vocab("output head");
        output_head(st, t_dec_, Pass::fwd);
        mtp_extras(st, Pass::fwd);
      }
    } else {
      if (last) {
        wait_vocab("output head");
        mtp_extras(st, Pass::bwd);
        output_head(st, t_dec_, Pass::bwd);
      }
      for (std::size_t k = 0; k < order.size(); ++k) {
        auto it = order.begin() + static_cast<long>(k);
        before_layer(k);
        if (ctx_.remat) layer(st, layers_[static_cast<std::size_t>(*it)], Pass::remat);
        else if (ctx_.selective_remat) selective_remat(st, layers_[static_cast<std::size_t>(*it)]);
        layer(st, layers_[static_cast<std::size_t>(*it)], Pass::bwd);
        if (grads_ready) {
          flush(st, fmt::format("L{} bwd mb{} (compute)", *it, mb));
          (*grads_ready)[*it] = st.last;
        }
      }
      if (first) {
        wait_vocab("embedding");
        embedding(st, t_enc_ + (m_.encoder_layers > 0 ? t_dec_ : 0.0), Pass::bwd);
      }
    }
    flush(st, fmt::format("stage{}{} mb{} {} (compute)", stage, p_.virtual_stages > 1 ? fmt::format(" chunk{}", chunk) : "",
                          mb, pass == Pass::fwd ? "fwd" : "bwd"));
    return st.last;
  }

  /** Overlapped expert communication (parallelism.overlap_expert_comm; DualPipe's forward-backward chunk overlap,
   *  DeepSeek-V3 arXiv 2412.19437 §3.2.1): the forward's phases [fwd.first, fwd.second) and the backward's
   *  [bwd.first, bwd.second), each a chain, become one interleaved pair. Each chain is cut into segments, a compute
   *  phase and the collectives after it; the segments alternate (forward, backward, forward, ...), and the compute
   *  phases run one at a time in that order, the collectives likewise, so the stage's chips compute one phase at a
   *  time and its collectives do not share the links with each other, while one micro-batch's all-to-all runs during
   *  the other's compute. Every edge added goes forward in the alternating order, which both chains' own orders
   *  respect, so the graph stays acyclic. The communication kernels hold comm_sms of the SMs while the pair runs
   *  (§3.2.2: 20 of 132 on the H800): its compute runs sm_count / (sm_count - comm_sms) times longer. */
  void interleave_pair(std::pair<std::size_t, std::size_t> fwd, std::pair<std::size_t, std::size_t> bwd) {
    auto segments = [&](std::pair<std::size_t, std::size_t> range) {
      std::vector<std::vector<PhaseId>> segs;
      for (std::size_t v = range.first; v < range.second; ++v) {
        if (segs.empty() || g_[v].type == Phase::Type::compute) segs.emplace_back();
        segs.back().push_back(v);
      }
      return segs;
    };
    const auto f = segments(fwd), b = segments(bwd);
    const double slow = sm_slowdown(p_.comm_sms);
    std::optional<std::pair<PhaseId, int>> last_compute, last_comm;  // the phase and its chain (0 forward, 1 backward)
    auto place = [&](const std::vector<PhaseId>& seg, int chain) {
      for (PhaseId v : seg) {
        Phase& ph = g_[v];
        if (ph.type == Phase::Type::marker) continue;
        auto& last = ph.type == Phase::Type::compute ? last_compute : last_comm;
        if (last && last->second != chain) boost::add_edge(last->first, v, g_);
        last = std::make_pair(v, chain);
        if (ph.type == Phase::Type::compute) {
          for (double& t : ph.compute.time_s) t *= slow;
          for (auto& kv : ph.compute.kind_time_s) kv.second *= slow;
        }
      }
    };
    for (std::size_t i = 0; i < std::max(f.size(), b.size()); ++i) {
      if (i < f.size()) place(f[i], 0);
      if (i < b.size()) place(b[i], 1);
    }
  }

  /** A ZeRO parameter all-gather of `elems` elements per device over `groups` (its bytes counted in the stats). */
  Phase zero_all_gather(const std::vector<std::vector<int>>& groups, double elems, int stage, std::string label) {
    CollectiveWork w;
    w.op = CollectiveOp::all_gather;
    w.groups = groups;
    w.bytes_per_device = elems * w_b_;  // the weights as training holds them
    std::size_t members = 0;
    for (const auto& grp : groups) members += grp.size();
    stats_.bytes_by_op["all_gather"] += w.bytes_per_device * static_cast<double>(members);
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = "comm.zero_all_gather";
    ph.label = std::move(label);
    ph.stage = stage;
    ph.comm = std::move(w);
    return ph;
  }

  /** ZeRO-3 all-gather of layer `li`'s parameters (dense over data x expert, experts over data). */
  PhaseId zero3_gather(int stage, int mb, int li, PhaseId after) {
    const LayerParams lp = params_of(li);
    const double dense = lp.dense, expert = lp.expert;
    PhaseId last = after;
    auto ag = [&](const std::vector<std::vector<int>>& groups, double elems, const char* what) {
      if (groups.empty() || groups.front().size() < 2 || elems <= 0.0) return;
      Phase ph = zero_all_gather(groups, elems, stage, fmt::format("L{} mb{} ZeRO-3 {} parameter all-gather", li, mb, what));
      ph.microbatch = mb;
      ph.overlaps_grad_reduce = true;
      last = add_phase(g_, std::move(ph), {last});
    };
    ag(ctx_.mesh.dense_grad_groups(stage), dense, "dense");
    ag(ctx_.mesh.expert_grad_groups(stage), expert, "expert");
    return last;
  }

  /** The send of micro-batch `mb`'s activations (or gradients) across the boundary before virtual stage `later`
   *  (workload::virtual_stage of the later of the two). */
  PhaseId p2p(int from_stage, int to_stage, int later, int mb, PhaseId after, const char* what) {
    CollectiveWork w;
    w.op = CollectiveOp::send_recv;
    const auto src = ctx_.mesh.stage_devices(from_stage), dst = ctx_.mesh.stage_devices(to_stage);
    for (std::size_t i = 0; i < src.size(); ++i) w.groups.push_back({src[i], dst[i]});
    // Activations (or their gradients) of the micro-batch at the stage boundary; tensor-parallel ranks
    // send disjoint slices (Megatron's scatter/gather optimisation). Encoder-decoder boundaries inside
    // the decoder also carry the encoder output. In act_b_: bf16 when the model trains in fp8 (the layer's output,
    // the residual stream, is bf16).
    const StageChunk sc = stage_chunk(p_, later, direction_of(p_, mb));
    const int boundary = chunk_layers(sc.stage, sc.chunk).front();
    const bool dec = layers_[static_cast<std::size_t>(boundary)].decoder;
    const double tokens = dec ? t_dec_ + (m_.encoder_layers > 0 ? t_enc_ : 0.0) : t_enc_;
    w.bytes_per_device = tokens * m_.d_model * act_b_ / tp_;
    stats_.bytes_by_op["send_recv"] += w.bytes_per_device * static_cast<double>(src.size());
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = "comm.pipeline_p2p";
    ph.label = fmt::format("{} stage{}->stage{} mb{}", what, from_stage, to_stage, mb);
    ph.stage = to_stage;
    ph.microbatch = mb;
    ph.comm = std::move(w);
    return add_phase(g_, std::move(ph), {after});
  }

  /** Gradient all-reduces (ZeRO: reduce-scatters) on stage `stage` of the gradients of layers `ids` (and of the
   *  vocabulary matrix when `vocab`) in DDP-style buckets, after the backward that ends with `last_bwd`, each
   *  bucket after the layers in it (`grads_ready`) and after `comm_prev` (the stage's previous reduction, on the same
   *  communication stream); returns the phase after which those gradients are reduced. `what` names the backward
   *  in the labels ("" for the whole step's). */
  PhaseId reduce_grads(int stage, const std::vector<int>& ids, bool vocab, PhaseId last_bwd,
                       const std::map<int, PhaseId>& grads_ready, std::optional<PhaseId> comm_prev, const std::string& what);
  /** The optimizer step of a stage after `after`, and with ZeRO-1/2 the all-gather of the updated parameters. */
  PhaseId optimizer_step(int stage, PhaseId after);
  /** Dense and expert parameters per device of a stage (the vocabulary matrix counted on the first and last: once on
   *  stage 0 when it holds both ends, as DualPipeV's does). */
  std::pair<double, double> stage_params(int stage) const {
    double dense_total = 0.0, expert_total = 0.0;
    for (const int li : stage_layers(stage)) {
      const LayerParams lp = params_of(li);
      dense_total += lp.dense;
      expert_total += lp.expert;
    }
    if (stage == 0 || stage == last_stage(p_)) dense_total += static_cast<double>(m_.vocab) * m_.d_model / tp_;
    return {dense_total, expert_total};
  }
  /** Tied input and output embeddings split over pipeline stages (the first stage's embedding, the last stage's
   *  copy for the output projection): their gradients are all-reduced between each rank of the first stage and its
   *  peer on the last, after the data-parallel reduction and before the optimizer (Megatron-LM's
   *  _allreduce_embedding_grads; Shoeybi et al. 2019, Narayanan et al. 2021).
   *
   *  What is synced is what the data-parallel reduction left on the rank. Without ZeRO and with ZeRO-1 (Megatron-LM's
   *  distributed optimizer) the rank keeps the whole gradient buffer and all-reduces the matrix's whole gradient
   *  (Megatron-LM all-reduces the embedding's whole main_grad, of which the distributed optimizer reads only its
   *  shard). With ZeRO-2 and ZeRO-3 the rank holds only its 1/(data x expert) shard of the reduced gradient
   *  (workload::estimate_memory_need counts no more), so it syncs that shard with its peer, which holds the same one:
   *  the tied matrix is partitioned alike on both stages (Megatron-Core gives the shared embedding a bucket of its
   *  own under the distributed optimizer so that both stages shard it the same way, "allowing the DP reduce-scatter
   *  to be before the embedding all-reduce"). The reduce-scatter runs first (run), so the full size is not needed. */
  PhaseId tied_embedding_sync(PhaseId after) {
    CollectiveWork w;
    w.op = CollectiveOp::all_reduce;
    const auto first = ctx_.mesh.stage_devices(0), last = ctx_.mesh.stage_devices(last_stage(p_));
    for (std::size_t i = 0; i < first.size(); ++i) w.groups.push_back({first[i], last[i]});
    const auto dense_groups = ctx_.mesh.dense_grad_groups(0);
    const double shard = p_.zero_stage >= 2 && !dense_groups.empty() ? static_cast<double>(dense_groups.front().size()) : 1.0;
    w.bytes_per_device = static_cast<double>(m_.vocab) * m_.d_model / tp_ / shard * grad_b_;
    stats_.bytes_by_op["all_reduce"] += w.bytes_per_device * static_cast<double>(2 * first.size());
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = "comm.embedding_grad_sync";
    ph.label = fmt::format("tied embedding gradients stage0<->stage{}", last_stage(p_));
    ph.stage = 0;
    ph.comm = std::move(w);
    return add_phase(g_, std::move(ph), {after});
  }
  /** DualPipe keeps two copies of every model stage, one per direction, on stages s and P - 1 - s: after the
   *  data-parallel reduction each rank all-reduces its gradients with its peer on the mirror stage (DeepSeek-V3 arXiv
   *  2412.19437 §3.2.1: "DualPipe requires keeping two copies of the model parameters"). What is summed is what the
   *  reduction left on the rank: its whole gradient buffer, or with ZeRO-2/3 its shard (the two stages hold the same
   *  parameters, sharded alike), as tied_embedding_sync. */
  PhaseId mirror_grad_sync(int stage, PhaseId after) {
    CollectiveWork w;
    w.op = CollectiveOp::all_reduce;
    const auto mine = ctx_.mesh.stage_devices(stage), peer = ctx_.mesh.stage_devices(p_.pipeline - 1 - stage);
    for (std::size_t i = 0; i < mine.size(); ++i) w.groups.push_back({mine[i], peer[i]});
    const auto [dense, expert] = stage_params(stage);
    const auto dense_groups = ctx_.mesh.dense_grad_groups(stage), expert_groups = ctx_.mesh.expert_grad_groups(stage);
    const bool sharded = p_.zero_stage >= 2;
    auto shard = [&](const std::vector<std::vector<int>>& g) {
      return sharded && !g.empty() ? static_cast<double>(g.front().size()) : 1.0;
    };
    w.bytes_per_device = (dense / shard(dense_groups) + expert / shard(expert_groups)) * grad_b_;
    stats_.bytes_by_op["all_reduce"] += w.bytes_per_device * static_cast<double>(2 * mine.size());
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = "comm.dualpipe_grad_sync";
    ph.label = fmt::format("DualPipe copies' gradients stage{}<->stage{}", stage, p_.pipeline - 1 - stage);
    ph.stage = stage;
    ph.comm = std::move(w);
    return add_phase(g_, std::move(ph), {after});
  }

  BuiltStep& out_;
  StepGraph& g_;
  const StepContext& ctx_;
  const scenario::Scenario& s_;
  const scenario::ModelSpec& m_;
  const scenario::ParallelismSpec& p_;
  double b_;     ///< bytes of a GEMM's input elements (the model's dtype: an fp8 model's GEMMs take fp8 casts)
  /** Bytes of an activation element between the GEMMs: the model's dtype, bf16 for an fp8 model
   *  (training_activation_dtype). The elementwise kernels (layer norms and residual adds, softmax and dropout,
   *  activation functions, permute and unpermute, the embedding gather), the GEMMs' outputs (gemm_out_bytes), the
   *  tensor-parallel collectives, the pipeline's sends and the MoE combine. Only the MoE dispatch, whose rows are
   *  the experts' up-projection input, goes in the model's dtype (b_). workload::estimate_memory_need stores the
   *  tensors likewise: GEMM inputs at b_, the rest at act_b_. */
  double act_b_;
  std::string act_dtype_;  ///< training_activation_dtype: the elementwise kernels' dtype
  double w_b_;   ///< bytes of a weight element as training holds it (training_weight_dtype: bf16 for an fp8 model)
  double grad_b_;  ///< bytes of a gradient element (training.grad_dtype)
  double tp_;
  double kv_;   ///< key/value heads of the model
  double kvl_;  ///< key/value heads per tensor rank (replicated when kv_heads < tensor)
  Rng rng_;
  double sequences_ = 0.0, t_enc_ = 0.0, t_dec_ = 0.0;
  std::vector<LayerDesc> layers_;
  std::unique_ptr<Router> router_;
  bool einsum_dispatch_ = false;
  /** ZeRO-2/3 with several micro-batches: each backward's gradients are reduce-scattered as it ends (run). */
  bool reduce_microbatch_grads_ = false;
  /** Per stage: a micro-batch's gradient reduction has been issued (reduce_microbatch_grads_ with overlap). */
  std::vector<bool> reducing_;
  /** DualPipeV's zero-bubble split (PipelineTask::defer_weights): while a backward runs without its weight gradients,
   *  the accumulator they go to; gemm_cost's deferred weight-gradient GEMMs not yet filed by account(). */
  Accum* defer_ = nullptr;
  Cost pending_w_;
  /** Per stage, the deferred weight gradients in the order their backwards ran (a W task takes the oldest). */
  struct DeferredWeights {
    int chunk = 0, mb = 0;
    Accum acc;
  };
  std::vector<std::deque<DeferredWeights>> deferred_;
  StepStats stats_;
  /** Kernel times by shape (grouped GEMMs, whose rows differ per draw, are not cached). */
  struct CostKey {
    int cls;
    std::string dtype;
    std::array<double, 6> shape;  ///< flops, bytes, m, n, k, batch
    bool operator==(const CostKey& o) const { return cls == o.cls && shape == o.shape && dtype == o.dtype; }
  };
  struct CostKeyHash {
    std::size_t operator()(const CostKey& k) const {
      std::size_t h = std::hash<std::string>{}(k.dtype) ^ static_cast<std::size_t>(k.cls);
      for (double x : k.shape) h = h * 1000003u ^ std::hash<double>{}(x);
      return h;
    }
  };
  std::unordered_map<CostKey, Cost, CostKeyHash> cache_;
  /** Per (MoE layer, micro-batch): each stage device's expert rows in the forward (moe_ffn), for moe_act
   *  recomputation. */
  std::map<std::pair<int, int>, std::vector<double>> expert_rows_;
  /** Routing draws per (MoE layer, micro-batch, data index): reused by forward, remat and backward. */
  std::map<std::tuple<int, int, int>, RoutingDraw> draws_;
};

void Builder::moe_ffn(Stream& st, const LayerDesc& L, double tok, Pass pass, const std::string& label) {
  const double d = m_.d_model, f = m_.expert_d_ff / tp_, mats = m_.gated() ? 2.0 : 1.0;
  const double E = m_.experts, k = m_.top_k, ep = p_.expert;
  // Whose tokens a rank routes. Without sequence parallelism every tensor rank holds all of the stage's tokens and
  // computes the same routing and dispatch (Mesh-TensorFlow replicates an einsum over the mesh axes its operands
  // are not split on), then sends its 1/tensor share. With sequence parallelism (Megatron-Core's MoE with tensor,
  // expert and sequence parallelism; GSPMD's 2D sharding) each tensor rank holds 1/tensor of the tokens and routes,
  // dispatches and combines only those: routing groups are drawn from the rank's own shard.
  const double sp = p_.sequence_parallel ? tp_ : 1.0;
  const double tok_r = tok / sp;
  const RoutingGroups split = routing_groups(s_.routing, tok_r, p_.expert);
  const double group = split.group_tokens;
  const double groups_per_rank = static_cast<double>(split.groups);
  const double cap = router_->capacity(group);
  const int local_experts = static_cast<int>(E / ep);

  // Router: gate projection (fp32, "selective precision": Fedus et al. 2021 §2.4) + softmax + top-k.
  Cost rc = gemm_cost("moe.gate", tok_r, E, d, pass, 1.0, KernelClass::gemm, "fp32");
  rc += vector_cost(KernelClass::router, "moe.softmax_topk", 3.0 * tok_r * E * 4.0, (8.0 + k) * tok_r * E, pass);
  account(st, kind_for("compute.router", pass), rc, 2.0 * tok_r * E * d * model_mult(pass));

  // Routing draws: one per expert-parallel group (= per data index), over every group its ranks route (the
  // expert-parallel ranks', and with sequence parallelism each of their tensor ranks' own).
  std::vector<RoutingDraw*> draw_of_data(static_cast<std::size_t>(p_.data));
  for (int di = 0; di < p_.data; ++di) {
    auto key = std::make_tuple(L.moe_index, st.mb, di);
    auto it = draws_.find(key);
    if (it == draws_.end()) {
      RoutingDraw dr = router_->draw(L.moe_index, static_cast<int>(groups_per_rank * ep * sp), group, rng_);
      stats_.routed_tokens += dr.tokens;
      stats_.assignments += dr.assignments;
      stats_.skipped += dr.skipped;
      stats_.dropped += dr.dropped;
      stats_.first_dropped += dr.first_dropped;
      stats_.routing_exact = stats_.routing_exact && dr.exact;
      it = draws_.emplace(key, std::move(dr)).first;
    }
    draw_of_data[static_cast<std::size_t>(di)] = &it->second;
  }

  // Dispatch: one-hot einsum over capacity slots (TPU) or a gather of the routed rows (GPU).
  const double slots = einsum_dispatch_ ? groups_per_rank * E * cap : 0.0;  // per rank
  Cost dc, cc;
  if (einsum_dispatch_) {
    // GSEC,GSM->EGCM per group: [E*C x S] . [S x d]; combine GSEC,EGCM->GSM: [S x E*C] . [E*C x d].
    // The one-hot masks are the einsums' operands, in the GEMMs' dtype (TPUs only, which have no fp8: b_ == act_b_).
    const double mask_bytes = groups_per_rank * group * E * cap * b_;
    KernelOp disp = gemm("moe.dispatch_einsum", E * cap, d, group, groups_per_rank);
    disp.bytes += mask_bytes;
    KernelOp comb = gemm("moe.combine_einsum", group, d, E * cap, groups_per_rank);
    comb.bytes += mask_bytes;
    dc = time(disp);  // the mask is not differentiable: backward = one GEMM (gradient of the input)
    cc = time(comb);
    if (pass == Pass::bwd) cc += time(comb);  // combine: gradients of expert outputs and of the weights
    dc += vector_cost(KernelClass::router, "moe.dispatch_mask", groups_per_rank * group * E * cap * b_ * 2.0,
                      groups_per_rank * group * E * cap, pass);
  } else {
    dc = vector_cost(KernelClass::permute, "moe.permute", 2.0 * tok_r * k * d * act_b_, 0.0, Pass::fwd);
    cc = vector_cost(KernelClass::unpermute, "moe.unpermute", (2.0 * k + 1.0) * tok_r * d * act_b_, 2.0 * tok_r * k * d, Pass::fwd);
  }
  st.acc.add(kind_for("compute.dispatch", pass), dc, 0.0);

  // All-to-all (dispatch and combine): capacity-padded buffers (einsum) or the routed tokens that were kept, of `eb`
  // bytes per element.
  auto a2a = [&](const char* what, double eb) {
    CollectiveWork w;
    w.op = CollectiveOp::all_to_all;
    w.groups = ctx_.mesh.expert_groups(st.stage);
    // DeepEP's per-node dispatch (and node-limited routing): the system layer sends a token once per remote node.
    if (p_.expert_dispatch == "per_node") w.per_node = {m_.top_k, m_.experts, ctx_.scenario.routing.max_nodes};
    if (einsum_dispatch_) {
      w.bytes_per_device = slots * d * eb * sp / tp_;  // the rank's share of the slots (all of its own with SP)
    } else {
      double kept = 0.0, total = 0.0;
      for (const auto* dr : draw_of_data) {
        kept += dr->kept();  // second choices the policy skipped are not sent either
        total += dr->assignments;
      }
      w.bytes_per_device = tok * k * (total > 0 ? kept / total : 1.0) * d * eb / tp_;
      // Receivers in proportion to their experts' processed tokens.
      for (int di = 0; di < p_.data; ++di)
        for (int t = 0; t < p_.tensor; ++t) {
          std::vector<double> recv;
          const auto& dr = *draw_of_data[static_cast<std::size_t>(di)];
          for (int e = 0; e < p_.expert; ++e) {
            double r = 0.0;
            for (int x = 0; x < local_experts; ++x) r += dr.processed[static_cast<std::size_t>(e * local_experts + x)];
            recv.push_back(r);
          }
          w.recv_weight.push_back(std::move(recv));
          w.send_weight.emplace_back(static_cast<std::size_t>(p_.expert), 1.0);
        }
    }
    collective(st, "comm.all_to_all", label + " " + what, std::move(w));
  };
  // The dispatch sends the experts' up-projection input in the model's dtype (b_): fp8 when the model trains in fp8,
  // quantised before it is sent; the combine sends the experts' outputs in act_b_, bf16 for an fp8 model. This is
  // DeepSeek-V3's recipe (arXiv 2412.19437 §3.3.3, "Low-Precision Communication"; the one published fp8 MoE training
  // recipe): activations quantised to fp8 before the dispatch, the combine kept in bf16. The backward's first
  // all-to-all (labelled dispatch here too) sends the output gradients towards the experts ("the activation gradient
  // before MoE down-projections"), which DeepSeek-V3 quantises to fp8 likewise; its second, back to the tokens, is a
  // bf16 combine.
  // Shared experts overlapped with the dispatch (parallelism.overlap_shared_experts; Megatron-Core's
  // --moe-shared-expert-overlap): they need only the layer's input, so they run on a branch beside the dispatch
  // all-to-all, joined before the routed experts; otherwise after the combine (below).
  const bool shared_beside = p_.overlap_shared_experts && m_.shared_experts > 0;
  flush(st, label + " moe dispatch all-to-all (compute)");  // as the all-to-all's own flush would
  const PhaseId before_dispatch = st.last;
  a2a("moe dispatch all-to-all", b_);
  if (shared_beside) {
    Stream branch{st.stage, st.mb, before_dispatch, Accum(st.devices.size()), st.devices, st.overlaps_grad_reduce};
    shared_experts_ffn(branch, tok, pass, label);
    flush(branch, label + " shared experts beside the dispatch (compute)");
    st.last = add_phase(g_, Phase{}, {st.last, branch.last});
  }
  // With tensor-parallel experts, each tensor rank exchanges 1/tp of the tokens, then the tensor group
  // all-gathers them (and reduce-scatters the outputs before the combine): Megatron-style token
  // splitting, so the all-to-all is not repeated tp times.
  const double expert_rows = einsum_dispatch_ ? slots * sp : tok * k;
  tensor_collective(st, CollectiveOp::all_gather, expert_rows, label + " expert TP all-gather");

  // Expert FFN on each device: grouped GEMM over its local experts.
  const auto& devices = st.devices;
  std::vector<double> times(devices.size(), 0.0), times_w(devices.size(), 0.0);
  Cost sum, sum_w;
  double model_sum = 0.0;
  // Per token count shape: the pass's cost and, in a backward whose weight gradients are deferred (defer_), the
  // weight-gradient GEMMs' (the second of each backward pair), which then wait for the W step.
  std::map<std::vector<double>, std::pair<Cost, Cost>> by_shape;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const int dev = devices[i];
    const int e_idx = ctx_.mesh.expert_of(dev), d_idx = ctx_.mesh.data_of(dev);
    const auto& dr = *draw_of_data[static_cast<std::size_t>(d_idx)];
    std::vector<double> gm;
    double assigned = 0.0;
    for (int x = 0; x < local_experts; ++x) {
      const auto e = static_cast<std::size_t>(e_idx * local_experts + x);
      gm.push_back(einsum_dispatch_ ? groups_per_rank * ep * sp * cap : dr.processed[e]);
      assigned += dr.processed[e];
    }
    auto it = by_shape.find(gm);
    if (it == by_shape.end()) {
      auto grouped = [&](const char* name, double n, double kk) {
        KernelOp op;
        op.cls = KernelClass::grouped_gemm;
        op.name = name;
        op.dtype = m_.dtype;
        op.n = n;
        op.k = kk;
        op.group_m = gm;
        double rows = 0.0;
        for (double r : gm) rows += r;
        op.m = rows;
        op.flops = 2.0 * rows * n * kk;
        op.bytes = (rows * kk + static_cast<double>(gm.size()) * kk * n) * b_ + rows * n * gemm_out_bytes(op.dtype);
        return op;
      };
      Cost c, cw;
      double rows = 0.0;
      for (double r : gm) rows += r;
      const int gemms = pass == Pass::bwd ? 2 : 1;
      for (int rep = 0; rep < gemms; ++rep) {
        Cost& into = rep == 1 && defer_ != nullptr ? cw : c;
        into += time(grouped("moe.expert_up", mats * f, d));
        into += time(grouped("moe.expert_down", d, f));
      }
      c += vector_cost(KernelClass::elementwise, "moe.expert_act", (mats + 1.0) * rows * f * act_b_, 8.0 * rows * f, pass);
      it = by_shape.emplace(gm, std::make_pair(c, cw)).first;
    }
    times[i] = it->second.first.time_s;
    sum += it->second.first;
    times_w[i] = it->second.second.time_s;
    sum_w += it->second.second;
    if (pass == Pass::fwd && ctx_.selective_remat && s_.training.recompute.moe_act) {  // only moe_act reads them
      auto& rows = expert_rows_[{L.moe_index, st.mb}];
      rows.resize(devices.size(), 0.0);
      rows[i] = std::accumulate(gm.begin(), gm.end(), 0.0);
    }
    model_sum += 2.0 * assigned * (mats + 1.0) * d * f * model_mult(pass);
  }
  st.acc.add_per_device(kind_for("compute.expert_ffn", pass), times, sum, model_sum);
  if (defer_ != nullptr) defer_->add_per_device(kind_for("compute.expert_ffn", pass), times_w, sum_w, 0.0);
  tensor_collective(st, CollectiveOp::reduce_scatter, expert_rows, label + " expert TP reduce-scatter");

  a2a("moe combine all-to-all", act_b_);
  st.acc.add(kind_for("compute.combine", pass), cc, 0.0);
  // Each tensor rank now holds the combined outputs of its 1/tensor of the tokens. Without sequence parallelism the
  // next block needs all of them on every rank: an all-gather of [tokens, d_model] over the tensor group (in the
  // backward, of the input gradients after the dispatch all-to-all). With sequence parallelism the split is the
  // sequence-parallel layout the next block expects, and its own all-gather does the work.
  if (!p_.sequence_parallel) tensor_collective(st, CollectiveOp::all_gather, tok, label + " moe combine TP all-gather");
  // The shared experts' output is added to the routed experts' after the combine (Megatron-Core's MoELayer without
  // shared-expert overlap): their own tensor-parallel block on the layer's input.
  if (!shared_beside) shared_experts_ffn(st, tok, pass, label);
  const Cost nr = norm_residual("moe.norm_residual", tok, pass);
  st.acc.add(kind_for("compute.combine", pass), nr, 0.0);
}

PhaseId Builder::reduce_grads(int stage, const std::vector<int>& ids, bool vocab, PhaseId last_bwd,
                              const std::map<int, PhaseId>& grads_ready, std::optional<PhaseId> comm_prev,
                              const std::string& what) {
  const auto dense_groups = ctx_.mesh.dense_grad_groups(stage);
  const auto expert_groups = ctx_.mesh.expert_grad_groups(stage);
  const bool dense_reduce = !dense_groups.empty() && dense_groups.front().size() > 1;
  const bool expert_reduce = !expert_groups.empty() && expert_groups.front().size() > 1;
  const double vocab_elems = vocab ? static_cast<double>(m_.vocab) * m_.d_model / tp_ : 0.0;

  // Parameter bytes per device by layer (backward order), split dense / expert.
  std::vector<std::pair<int, std::pair<double, double>>> per_layer;
  double dense_total = vocab_elems, expert_total = 0.0;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    const LayerParams lp = params_of(*it);
    per_layer.push_back({*it, {lp.dense * grad_b_, lp.expert * grad_b_}});
    dense_total += lp.dense;
    expert_total += lp.expert;
  }

  std::vector<PhaseId> done{last_bwd};
  // ZeRO (any stage) keeps only the shard of the gradients its optimizer updates: a reduce-scatter, then (stages 1
  // and 2) an all-gather of the updated parameters after the optimizer; without ZeRO every replica all-reduces the
  // gradients and updates all its parameters.
  const bool zero = p_.zero_stage >= 1;
  auto reduce = [&](const std::vector<std::vector<int>>& groups, double bytes, PhaseId after, const std::string& label) {
    CollectiveWork w;
    w.op = zero ? CollectiveOp::reduce_scatter : CollectiveOp::all_reduce;
    w.groups = groups;
    w.bytes_per_device = bytes;
    std::size_t members = 0;
    for (const auto& grp : groups) members += grp.size();
    stats_.bytes_by_op[to_string(w.op)] += bytes * static_cast<double>(members);
    Phase ph;
    ph.type = Phase::Type::collective;
    ph.kind = "comm.grad_all_reduce";
    ph.label = label;
    ph.stage = stage;
    ph.overlaps_grad_reduce = ctx_.scenario.training.overlap_grad_reduce;
    ph.comm = std::move(w);
    return add_phase(g_, std::move(ph), {after});
  };
  if (ctx_.scenario.training.overlap_grad_reduce && !grads_ready.empty()) {
    // DDP-style buckets, in backward order; each bucket's reduce waits for its last layer and for the
    // previous bucket (one communication stream).
    double dense_bucket = 0.0, expert_bucket = 0.0;
    std::optional<PhaseId> prev = comm_prev;
    for (std::size_t i = 0; i < per_layer.size(); ++i) {
      dense_bucket += per_layer[i].second.first;
      expert_bucket += per_layer[i].second.second;
      const bool last_layer = i + 1 == per_layer.size();
      if (last_layer) dense_bucket += vocab_elems * grad_b_;
      if (dense_bucket + expert_bucket >= kGradBucketBytes || last_layer) {
        PhaseId ready = last_layer ? last_bwd : grads_ready.at(per_layer[i].first);
        std::vector<PhaseId> deps{ready};
        if (prev) deps.push_back(*prev);
        PhaseId join = deps.size() == 1 ? deps[0] : add_phase(g_, Phase{}, deps);
        if (dense_reduce && dense_bucket > 0) {
          join = reduce(dense_groups, dense_bucket, join, fmt::format("stage{}{} dense grads bucket @L{}", stage, what, per_layer[i].first));
        }
        if (expert_reduce && expert_bucket > 0) {
          join = reduce(expert_groups, expert_bucket, join, fmt::format("stage{}{} expert grads bucket @L{}", stage, what, per_layer[i].first));
        }
        prev = join;
        dense_bucket = expert_bucket = 0.0;
      }
    }
    if (prev) done.push_back(*prev);
  } else {
    PhaseId after = comm_prev ? add_phase(g_, Phase{}, {last_bwd, *comm_prev}) : last_bwd;
    if (dense_reduce) after = reduce(dense_groups, dense_total * grad_b_, after, fmt::format("stage{}{} dense grads", stage, what));
    if (expert_reduce) after = reduce(expert_groups, expert_total * grad_b_, after, fmt::format("stage{}{} expert grads", stage, what));
    done.push_back(after);
  }
  return done.size() == 1 ? done.front() : add_phase(g_, Phase{}, done);
}

PhaseId Builder::optimizer_step(int stage, PhaseId after) {
  const auto dense_groups = ctx_.mesh.dense_grad_groups(stage);
  const auto expert_groups = ctx_.mesh.expert_grad_groups(stage);
  const bool dense_reduce = !dense_groups.empty() && dense_groups.front().size() > 1;
  const bool expert_reduce = !expert_groups.empty() && expert_groups.front().size() > 1;
  const bool zero = p_.zero_stage >= 1;
  const auto [dense_total, expert_total] = stage_params(stage);

  // Optimizer: the passes over the gradients, weights and state (workload::optimizer_step_bytes_per_param) of the
  // shard this device owns: with ZeRO, 1 / (data x expert) of the dense parameters and 1 / data of its experts'.
  const double dense_shard = zero && dense_reduce ? static_cast<double>(dense_groups.front().size()) : 1.0;
  const double expert_shard = zero && expert_reduce ? static_cast<double>(expert_groups.front().size()) : 1.0;
  const double params = dense_total / dense_shard + expert_total / expert_shard;
  const double bytes = params * optimizer_step_bytes_per_param(ctx_.scenario.training.optimizer, training_weight_dtype(m_.dtype), grad_b_,
                                                                 ctx_.accel.kind == catalog::AcceleratorKind::tpu);
  Stream st{stage, 0, after, Accum(ctx_.mesh.stage_devices(stage).size()), ctx_.mesh.stage_devices(stage)};
  st.acc.add("compute.optimizer", time([&] {
    KernelOp op;
    op.cls = KernelClass::optimizer;
    op.name = "optimizer.update";
    op.dtype = "fp32";
    op.bytes = bytes;
    op.flops = 10.0 * params;
    return op;
  }()), 0.0);
  flush(st, fmt::format("stage{} optimizer", stage));
  if (zero && p_.zero_stage < 3) {
    // ZeRO-1/2: every replica gathers the parameters the others updated (ZeRO-3 gathers them layer by layer in
    // the next step's passes instead).
    auto gather = [&](const std::vector<std::vector<int>>& groups, double elems, const char* what) {
      st.last = add_phase(g_, zero_all_gather(groups, elems, stage, fmt::format("stage{} updated {} parameter all-gather", stage, what)),
                          {st.last});
    };
    if (dense_reduce && dense_total > 0.0) gather(dense_groups, dense_total, "dense");
    if (expert_reduce && expert_total > 0.0) gather(expert_groups, expert_total, "expert");
  }
  return st.last;
}

void Builder::run() {
  // The graph's vertex array, reserved for more phases than the step can have: grown by doubling instead, each old
  // array would stay behind as a hole in the heap (a 115k-phase pipeline step: 41 MB). Pages never written are not
  // resident, so the unused part of the reservation costs no memory.
  {
    constexpr std::size_t kPhasesPerLayerPass = 64;  // a bound: an MoE layer's backward with recomputation has < 30
    const std::size_t tasks = 2 * static_cast<std::size_t>(p_.pipeline) * p_.microbatches * p_.virtual_stages;
    const std::size_t layers_per_task = layers_.size() / static_cast<std::size_t>(p_.pipeline * p_.virtual_stages) + 1;
    try {
      g_.m_vertices.reserve(tasks * (layers_per_task * kPhasesPerLayerPass + 16) + 4096);
    } catch (const std::bad_alloc&) {  // more address space than the system grants: grow by doubling after all
    }
  }
  Phase start;
  start.label = "step start";
  out_.start = add_phase(g_, std::move(start), {});
  const int P = p_.pipeline;

  // 1F1B per stage: warm-up forwards, steady one-forward-one-backward, cool-down backwards; interleaved with v chunks
  // per stage in Megatron-LM's schedules.py order (workload::stage_schedule, which the memory estimate walks too).
  const int V = p_.virtual_stages, chain = chain_length(p_);
  std::vector<std::vector<PipelineTask>> order(static_cast<std::size_t>(P));
  for (int s = 0; s < P; ++s) order[static_cast<std::size_t>(s)] = stage_schedule(p_, s);
  // Dependencies across stages are resolved as tasks are emitted; iterate until every task is placed.
  std::map<std::tuple<int, int, int, int>, PhaseId> done;  // (stage, pass, mb, chunk) -> last phase (incl. send)
  std::vector<std::size_t> next(static_cast<std::size_t>(P), 0);
  std::vector<PhaseId> stage_last(static_cast<std::size_t>(P), out_.start);
  std::vector<std::map<int, PhaseId>> ready(static_cast<std::size_t>(P));
  // reduce_microbatch_grads_: per stage, the phase that ends the last gradient reduction issued (its communication stream)
  std::vector<std::optional<PhaseId>> grads_reduced(static_cast<std::size_t>(P));
  std::size_t remaining = 0;
  for (const auto& o : order) remaining += o.size();
  // The phases a task waits for on other stages (the previous virtual stage's forward, the next one's backward), or
  // nullopt while one of them is not placed yet.
  auto cross_deps = [&](int s, const PipelineTask& tk) -> std::optional<std::vector<PhaseId>> {
    const int vs = virtual_stage(p_, s, tk.chunk);
    std::vector<PhaseId> deps;
    if (tk.weights) return deps;  // a W step follows its own stage's backward, earlier in the same order
    auto after = [&](int other_vs, int pass) {
      const StageChunk o = stage_chunk(p_, other_vs, tk.chunk);  // the micro-batch's direction (DualPipe)
      auto it = done.find({o.stage, pass, tk.mb, o.chunk});
      if (it == done.end()) return false;
      deps.push_back(it->second);
      return true;
    };
    if (!tk.backward && vs > 0 && !after(vs - 1, 0)) return std::nullopt;           // the previous virtual stage's forward
    if (tk.backward && vs < chain - 1 && !after(vs + 1, 1)) return std::nullopt;  // the next virtual stage's backward
    return deps;
  };
  // ZeRO-2/3: a backward's gradients of the chunk's layers (and of the vocabulary matrix on the chunks that use it)
  // reduce-scattered into the shards, bucketed beside the backward when overlap_grad_reduce, else after it, before
  // the stage's next pass; one communication stream per stage. Returns the stage's next start.
  auto reduce_pass = [&](int s, int c, int mb, PhaseId end, const std::map<int, PhaseId>& pass_ready) {
    const int vs = virtual_stage(p_, s, c);
    const bool vocab = vs == 0 || vs == chain - 1;
    auto& comm = grads_reduced[static_cast<std::size_t>(s)];
    comm = reduce_grads(s, chunk_layers(s, c), vocab, end, pass_ready, comm,
                        fmt::format("{} mb{}", V > 1 ? fmt::format(" chunk{}", c) : "", mb));
    if (s_.training.overlap_grad_reduce) {
      reducing_[static_cast<std::size_t>(s)] = true;
      return end;
    }
    return *comm;
  };
  // Emits one task of stage s after `deps`: its pass, its gradient reductions (ZeRO-2/3) and its send, or a W step's
  // weight gradients. Returns the phase the stage's next task waits for, and in `pass_phases` the vertex range of the
  // pass itself.
  auto emit = [&](int s, const PipelineTask& tk, std::vector<PhaseId> deps, std::pair<std::size_t, std::size_t>& pass_phases) {
    const Pass pass = tk.backward ? Pass::bwd : Pass::fwd;
    const int mb = tk.mb, c = tk.chunk;
    const int vs = virtual_stage(p_, s, c);
    const auto us = static_cast<std::size_t>(s);
    PhaseId after = deps.size() == 1 ? deps[0] : add_phase(g_, Phase{}, deps);
    pass_phases = {boost::num_vertices(g_), boost::num_vertices(g_)};
    if (tk.weights) {
      // DualPipeV's W: the weight gradients the oldest deferred backward of this stage left (they are its micro-
      // batch's and chunk's); then that backward's layers' gradients are complete.
      auto& queue = deferred_[us];
      if (queue.empty() || queue.front().chunk != c || queue.front().mb != mb)
        throw Error("internal error: a weight-gradient step without its deferred backward");
      Stream st{s, mb, after, std::move(queue.front().acc), ctx_.mesh.stage_devices(s)};
      queue.pop_front();
      st.overlaps_grad_reduce = reducing_[us] && ctx_.scenario.training.overlap_grad_reduce;
      flush(st, fmt::format("stage{} chunk{} mb{} wgrad (compute)", s, c, mb));
      std::map<int, PhaseId> layers_ready;
      for (const int l : chunk_layers(s, c)) layers_ready[l] = st.last;
      if (reduce_microbatch_grads_) return reduce_pass(s, c, mb, st.last, layers_ready);
      if (mb == last_microbatch(p_, c)) ready[us].insert(layers_ready.begin(), layers_ready.end());
      return st.last;
    }
    const bool defer = pass == Pass::bwd && tk.defer_weights;
    const bool last_mb_bwd = pass == Pass::bwd && mb == last_microbatch(p_, c);
    std::map<int, PhaseId> pass_ready;  // reduce_microbatch_grads_: this backward's layers' gradients
    std::map<int, PhaseId>* grads_ready = nullptr;
    if (defer) {
      // Only the input gradients now (sent on at once); the weight gradients wait for a W step, and with them the
      // layers' gradient reductions.
      deferred_[us].push_back({c, mb, Accum(ctx_.mesh.stage_devices(s).size())});
      defer_ = &deferred_[us].back().acc;
    } else if (pass == Pass::bwd && reduce_microbatch_grads_) {
      grads_ready = &pass_ready;
    } else if (last_mb_bwd) {
      grads_ready = &ready[us];
    }
    pass_phases.first = boost::num_vertices(g_);
    PhaseId end = pass_of(s, c, mb, pass, after, grads_ready);
    defer_ = nullptr;
    pass_phases.second = boost::num_vertices(g_);
    PhaseId stage_end = end;
    if (pass == Pass::bwd && reduce_microbatch_grads_ && !defer) stage_end = reduce_pass(s, c, mb, end, pass_ready);
    PhaseId sent = end;
    // To the stage of the next (forward) or previous (backward) virtual stage, unless it is this one (DualPipeV's turn
    // at the last stage).
    if (pass == Pass::fwd && vs < chain - 1 && stage_chunk(p_, vs + 1, c).stage != s)
      sent = p2p(s, stage_chunk(p_, vs + 1, c).stage, vs + 1, mb, end, "activations");
    if (pass == Pass::bwd && vs > 0 && stage_chunk(p_, vs - 1, c).stage != s)
      sent = p2p(s, stage_chunk(p_, vs - 1, c).stage, vs, mb, end, "gradients");
    done[{s, pass == Pass::fwd ? 0 : 1, mb, c}] = sent;
    return stage_end;
  };
  while (remaining > 0) {
    bool progress = false;
    for (int s = 0; s < P; ++s) {
      const auto us = static_cast<std::size_t>(s);
      auto& idx = next[us];
      const auto& tasks = order[us];
      if (idx >= tasks.size()) continue;
      const PipelineTask& tk = tasks[idx];
      auto deps = cross_deps(s, tk);
      if (!deps) continue;
      // Overlapped expert communication: a steady-state forward and the backward after it (another micro-batch, which
      // the extra warm-up forward keeps independent of this forward) run as one interleaved pair.
      const PipelineTask* partner = nullptr;
      if (p_.overlap_expert_comm && tk.steady && !tk.backward && idx + 1 < tasks.size() && tasks[idx + 1].steady &&
          tasks[idx + 1].backward && tasks[idx + 1].mb != tk.mb)
        partner = &tasks[idx + 1];
      std::optional<std::vector<PhaseId>> partner_deps;
      if (partner != nullptr) {
        partner_deps = cross_deps(s, *partner);
        if (!partner_deps) continue;
      }
      deps->insert(deps->begin(), stage_last[us]);
      std::pair<std::size_t, std::size_t> fwd_phases, bwd_phases;
      PhaseId stage_end = emit(s, tk, *deps, fwd_phases);
      if (partner != nullptr) {
        partner_deps->insert(partner_deps->begin(), stage_last[us]);
        const PhaseId partner_end = emit(s, *partner, *partner_deps, bwd_phases);
        interleave_pair(fwd_phases, bwd_phases);
        stage_end = add_phase(g_, Phase{}, {stage_end, partner_end});
      }
      stage_last[us] = stage_end;
      const int placed = partner != nullptr ? 2 : 1;
      idx += static_cast<std::size_t>(placed);
      remaining -= static_cast<std::size_t>(placed);
      progress = true;
    }
    if (!progress) throw Error("internal error: the 1F1B schedule deadlocked while building the step graph");
  }
  std::vector<PhaseId> reduced;
  for (int s = 0; s < P; ++s) {
    const auto us = static_cast<std::size_t>(s);
    if (reduce_microbatch_grads_)
      reduced.push_back(add_phase(g_, Phase{}, {stage_last[us], *grads_reduced[us]}));
    else
      reduced.push_back(reduce_grads(s, stage_layers(s), s == 0 || s == last_stage(p_), stage_last[us], ready[us], std::nullopt, ""));
  }
  if (p_.dualpipe()) {
    // Stage s and stage P - 1 - s hold the same two model stages (one per direction): their gradients are summed, the
    // vocabulary matrix's with them, before both update their copies.
    for (int s = 0; s < P / 2; ++s) {
      const auto us = static_cast<std::size_t>(s), um = static_cast<std::size_t>(P - 1 - s);
      reduced[us] = reduced[um] = mirror_grad_sync(s, add_phase(g_, Phase{}, {reduced[us], reduced[um]}));
    }
  } else if (last_stage(p_) != 0) {  // the two ends of the model on two stages (not with DualPipeV's V)
    const PhaseId synced = tied_embedding_sync(add_phase(g_, Phase{}, {reduced.front(), reduced.back()}));
    reduced.front() = reduced.back() = synced;
  }
  std::vector<PhaseId> ends;
  for (int s = 0; s < P; ++s) ends.push_back(optimizer_step(s, reduced[static_cast<std::size_t>(s)]));
  Phase end;
  end.label = "step end";
  out_.end = add_phase(g_, std::move(end), ends);
  stats_.tokens = s_.training.batch_tokens;
  out_.stats = stats_;
}

class MoeTransformerBuilder final : public StepBuilder {
 public:
  BuiltStep build(const StepContext& ctx) const override {
    BuiltStep out;
    Builder(ctx, out).run();
    return out;  // one named return: constructed in the caller's storage (a move would copy the graph)
  }
};

const std::map<std::string, std::unique_ptr<StepBuilder>>& registry() {
  static const std::map<std::string, std::unique_ptr<StepBuilder>> r = [] {
    std::map<std::string, std::unique_ptr<StepBuilder>> m;
    m.emplace("moe_transformer", std::make_unique<MoeTransformerBuilder>());
    return m;
  }();
  return r;
}

}  // namespace

const StepBuilder& step_builder(const std::string& model_type) {
  const auto& r = registry();
  auto it = r.find(model_type);
  if (it == r.end()) throw Error(fmt::format("unknown model type '{}'; valid: {}", model_type, text::join(step_builder_names())));
  return *it->second;
}

std::vector<std::string> step_builder_names() {
  std::vector<std::string> v;
  for (const auto& [k, b] : registry()) v.push_back(k);
  return v;
}

}  // namespace moesim::workload
