// SPDX-License-Identifier: Apache-2.0
#include "moesim/workload/memory.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/workload/routing.hpp"

namespace moesim::workload {

double dtype_bytes(const std::string& dtype) {
  if (dtype == "fp32") return 4.0;
  if (dtype == "bf16" || dtype == "fp16") return 2.0;
  if (dtype == "fp8") return 1.0;
  throw Error(fmt::format("unknown dtype '{}'; valid: fp32, bf16, fp16, fp8", dtype));
}

namespace {
/** fp32 optimizer state per parameter: Adam's m and v, SGD's momentum; Adafactor's factored second moments are
 *  O(rows + cols) per matrix, ~0 per parameter. */
double optimizer_state_bytes(scenario::Optimizer optimizer) {
  switch (optimizer) {
    case scenario::Optimizer::adam:
    case scenario::Optimizer::adamw: return 2.0 * 4.0;
    case scenario::Optimizer::adafactor: return 0.0;
    case scenario::Optimizer::sgd: return 4.0;
  }
  return 0.0;
}
/** fp32 master weights per parameter of a model held in a 16-bit (or narrower) dtype of `b` bytes. */
double master_bytes(double b) { return b < 4.0 ? 4.0 : 0.0; }
}  // namespace

double grad_dtype_bytes(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel) {
  const double b = dtype_bytes(s.model.dtype);
  switch (s.training.grad_dtype) {
    case scenario::GradDtype::fp32: return 4.0;
    case scenario::GradDtype::model: return b;
    case scenario::GradDtype::automatic: break;
  }
  return s.model.dtype == "bf16" && accel.kind == catalog::AcceleratorKind::gpu ? 4.0 : b;
}

double optimizer_step_bytes_per_param(scenario::Optimizer optimizer, const std::string& dtype, double grad_bytes, bool fused) {
  const double b = dtype_bytes(dtype);
  const bool mixed = b < 4.0;
  const double state = optimizer_state_bytes(optimizer), master = master_bytes(b);
  if (fused) return grad_bytes + 2.0 * b + 2.0 * master + 2.0 * state;  // gradient read; weights, master, state read + written
  const double cast = grad_bytes < 4.0 ? grad_bytes + 4.0 : 0.0;  // 16-bit gradient -> fp32 copy
  const double unscale = dtype == "fp16" ? 2.0 * 4.0 : 0.0;  // loss scale out + inf/NaN check, in place
  const double norm = 4.0;                                   // global-norm clipping reads the fp32 gradients
  const double update = 4.0 + 2.0 * 4.0 + 2.0 * state;       // fp32 gradient read; weight and state read + written
  const double copy_back = mixed ? 4.0 + b : 0.0;            // fp32 master -> model-dtype weights
  const double zero = grad_bytes;                            // the gradient buffer zeroed for the next step
  return cast + unscale + norm + update + copy_back + zero;
}

double attention_params(const scenario::ModelSpec& m) {
  const double d = m.d_model, h = m.heads, dh = m.d_head;
  if (m.is_mla()) {
    // DeepSeek-V2 §2.1: queries (optionally through a rank-q_lora bottleneck) of no-RoPE and RoPE parts,
    // a joint key/value down-projection to the latent plus the decoupled RoPE key, the latent's up-projection
    // to per-head keys and values, and the output projection.
    const double rope = m.mla_qk_rope_head_dim, lora = m.mla_kv_lora_rank, ql = m.mla_q_lora_rank;
    const double q = ql > 0 ? d * ql + ql * h * (dh + rope) : d * h * (dh + rope);
    return q + d * (lora + rope) + lora * h * 2.0 * dh + h * dh * d;
  }
  const double kv = m.kv_heads > 0 ? m.kv_heads : h;
  return d * dh * (2.0 * h + 2.0 * kv);  // Q and O: heads; K and V: kv_heads (GQA)
}

namespace {
double ffn_matrices(const scenario::ModelSpec& m) { return m.gated() ? 3.0 : 2.0; }
/** Attention parameters one tensor rank holds: 1/tensor of them, except multi-head latent attention's
 *  down-projections (queries' d_model x q_lora_rank; keys' and values' d_model x (kv_lora_rank + RoPE)), which every
 *  tensor rank holds whole (DeepSeek-V3's reference inference/model.py keeps wq_a and wkv_a unsplit;
 *  training_step.cpp's attention runs them on every rank). */
double attention_params_per_rank(const scenario::ModelSpec& m, double t) {
  const double all = attention_params(m);
  if (!m.is_mla()) return all / t;
  const double down = static_cast<double>(m.d_model) * (m.mla_q_lora_rank + m.mla_kv_lora_rank + m.mla_qk_rope_head_dim);
  return (all - down) / t + down;
}
}  // namespace

LayerParams layer_params(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p, bool decoder, bool moe) {
  const double d = m.d_model, t = p.tensor;
  const bool cross = decoder && m.architecture == scenario::Architecture::encoder_decoder;
  LayerParams lp;
  lp.dense = attention_params_per_rank(m, t) * (cross ? 2.0 : 1.0);
  if (moe) {
    lp.dense += d * m.experts;  // the router (replicated)
    lp.dense += m.shared_experts * ffn_matrices(m) * d * m.expert_d_ff / t;  // shared experts: in every rank
    lp.expert = (static_cast<double>(m.experts) / p.expert) * ffn_matrices(m) * d * m.expert_d_ff / t;
  } else {
    lp.dense += ffn_matrices(m) * d * m.d_ff / t;
  }
  return lp;
}

ParamCounts count_params(const scenario::ModelSpec& m) {
  const double d = m.d_model, attn = attention_params(m);
  const double dense_ffn = ffn_matrices(m) * d * m.d_ff;
  const double one_expert = ffn_matrices(m) * d * m.expert_d_ff;
  const double router = d * m.experts;
  ParamCounts c;
  c.expert_per_layer = m.experts * one_expert;
  auto stack = [&](int layers, bool decoder, double& active) {
    const bool cross = decoder && m.architecture == scenario::Architecture::encoder_decoder;
    double active_sum = 0.0;
    for (int l = 0; l < layers; ++l) {
      c.dense += attn + (cross ? attn : 0.0);
      active_sum += attn + (cross ? attn : 0.0);
      if (m.is_moe_layer(l)) {
        c.dense += router + m.shared_experts * one_expert;
        c.expert += c.expert_per_layer;
        active_sum += router + (m.top_k + m.shared_experts) * one_expert;
      } else {
        c.dense += dense_ffn;
        active_sum += dense_ffn;
      }
    }
    active = active_sum;
  };
  stack(m.encoder_layers, false, c.active_per_token_encoder);
  stack(m.decoder_layers, true, c.active_per_token_decoder);
  // One embedding matrix, shared by encoder, decoder and the output projection (T5/GShard tie them).
  c.dense += static_cast<double>(m.vocab) * d;
  return c;
}

std::vector<int> chunk_layers(int layers, const scenario::ParallelismSpec& p, int stage, int chunk) {
  const long long virtual_stages = static_cast<long long>(p.pipeline) * p.virtual_stages;
  const long long vs = static_cast<long long>(chunk) * p.pipeline + stage;
  std::vector<int> ids;
  for (long long i = vs * layers / virtual_stages; i < (vs + 1) * layers / virtual_stages; ++i) ids.push_back(static_cast<int>(i));
  return ids;
}

std::vector<int> stage_layers(int layers, const scenario::ParallelismSpec& p, int stage) {
  std::vector<int> ids;
  for (int c = 0; c < p.virtual_stages; ++c) {
    const auto part = chunk_layers(layers, p, stage, c);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

double inflight_microbatches(const scenario::ParallelismSpec& p) {
  const double P = p.pipeline, M = p.microbatches, v = p.virtual_stages;
  if (p.virtual_stages <= 1) return std::min(P, M);
  return std::min(2.0 * (P - 1.0) + (v - 1.0) * P + 1.0, M * v) / v;
}

MemoryEstimate estimate_memory_need(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel) {
  const auto& m = s.model;
  const auto& p = s.parallelism;
  const double b = dtype_bytes(m.dtype);
  const double t = p.tensor;
  const double d = m.d_model, hl = m.heads / t, dh = m.d_head;
  const double ffn_mats = ffn_matrices(m);
  const bool encdec = m.architecture == scenario::Architecture::encoder_decoder;

  // Per-replica, per-micro-batch sequences and token counts.
  const double sequences = s.training.batch_tokens / m.seq_len / (p.data * p.expert) / p.microbatches;
  const double t_enc = sequences * m.seq_len;
  const double t_dec = sequences * (encdec ? m.target_seq_len : m.seq_len);

  // Layers of the stack in order; each stage holds its chunks' layers (chunk_layers), as the step builder does.
  struct L {
    bool decoder;
    bool moe;
  };
  std::vector<L> layers;
  for (int l = 0; l < m.encoder_layers; ++l) layers.push_back({false, m.is_moe_layer(l)});
  for (int l = 0; l < m.decoder_layers; ++l) layers.push_back({true, m.is_moe_layer(l)});

  MemoryEstimate best;
  best.capacity_bytes = accel.hbm_bytes / std::max(1, accel.devices_per_chip);
  // Each stage's figures without recomputation, and its activations with selective and with full recomputation.
  struct StageMemory {
    MemoryEstimate e;
    double selective_act = 0.0, remat_act = 0.0;
  };
  std::vector<StageMemory> stages;
  // Bytes per parameter held by one device: weights, gradients, optimizer state.
  // Mixed precision (bf16/fp16) keeps an fp32 master copy: ZeRO (Rajbhandari et al. 2020, §3.1) counts
  // 2 + 2 + 12 bytes per parameter for mixed-precision Adam; fp32 Adam is 4 + 4 + 8. The gradients take
  // training.grad_dtype (a bf16 model's are fp32 on GPUs by default, Megatron-LM's rule: 2 + 4 + 12).
  // Adafactor (Shazeer & Stern 2018) keeps factored second moments, O(rows + cols) per matrix: ~0 per
  // parameter, and no first moment in the T5/GShard configuration (beta1 = 0).
  const double w_bytes = b, g_bytes = grad_dtype_bytes(s, accel);  // gradients: training.grad_dtype
  const double opt_bytes = master_bytes(b) + optimizer_state_bytes(s.training.optimizer);

  // Expert slots per token: capacity x experts / group tokens (the capacity-padded buffers), or k when dropless.
  auto slots_per_token = [&](double group) {
    return s.routing.dropless ? static_cast<double>(m.top_k)
                              : expert_capacity(s.routing, m.experts, m.top_k, m.capacity_factor, group) * m.experts / group;
  };
  const double inflight = inflight_microbatches(p);  // the micro-batches' activations stage 0 holds at the peak

  // Sequence parallelism (Korthikanti et al. 2022 §4.2.2) shards what tensor parallelism replicates (the layer norms,
  // dropouts' and residuals' activations, and each layer's input) over the tensor ranks.
  const double sp = p.sequence_parallel ? t : 1.0;
  for (int stage = 0; stage < p.pipeline; ++stage) {
    double params = 0.0, expert_params = 0.0, act = 0.0, act_inputs = 0.0, act_max_layer = 0.0, max_layer_params = 0.0;
    double attn_core = 0.0, attn_core_max_layer = 0.0;  // the attention cores' part (selective recomputation drops it)
    for (const int i : stage_layers(static_cast<int>(layers.size()), p, stage)) {
      const L& l = layers[static_cast<std::size_t>(i)];
      const bool cross = l.decoder && encdec;
      const double tok = l.decoder ? t_dec : t_enc;
      const double s_self = l.decoder ? (encdec ? m.target_seq_len : m.seq_len) : m.seq_len;
      const LayerParams lp = layer_params(m, p, l.decoder, l.moe);
      params += lp.dense + lp.expert;
      expert_params += lp.expert;
      max_layer_params = std::max(max_layer_params, lp.dense + lp.expert);
      // Stored activations per token (elements): LN input + residual (replicated over the tensor ranks unless
      // sequence-parallel), QKV, context, and the attention core's scores + probabilities.
      double per_tok = 2.0 * d / sp + 4.0 * hl * dh;
      if (m.is_mla()) {
        // Multi-head latent attention (DeepSeek-V2 §2.1.2, arXiv 2405.04434; as training_step.cpp's attention
        // computes it; the resolver refuses it in an encoder-decoder): the compressed query (q_lora_rank, when
        // there is one) and the latent with the RoPE key (kv_lora_rank + qk_rope_head_dim), the inputs of the
        // up-projections, whole on every tensor rank as their down-projections are; queries and keys of
        // heads x (d_head + RoPE), values and context of heads x d_head, split by heads.
        const double rope = m.mla_qk_rope_head_dim;
        per_tok = 2.0 * d / sp + m.mla_q_lora_rank + m.mla_kv_lora_rank + rope + 2.0 * hl * (dh + rope) + 2.0 * hl * dh;
      }
      // With attention dropout as its own kernel, also its one-byte mask per score (Korthikanti et al. 2022 §4.1:
      // softmax output, dropout output and mask, 5as^2b at 16 bits).
      const double core_elems_per_score = 2.0 + (s.training.attention_dropout > 0.0 ? 1.0 / b : 0.0);
      double core_per_tok = core_elems_per_score * hl * s_self;
      if (cross) {
        per_tok += 2.0 * d / sp + 2.0 * hl * dh + 2.0 * hl * dh * t_enc / std::max(1.0, tok);
        core_per_tok += core_elems_per_score * hl * m.seq_len;
      }
      if (l.moe) {
        // Routing groups come from the tokens a rank routes: all of the stage's, or with sequence parallelism its
        // 1/tensor shard, whose dispatched and combined rows it alone keeps; split as the step splits them
        // (routing_groups, as training_step.cpp's moe_ffn: fixed or Mesh-TensorFlow's split).
        const double routed = tok / sp;
        const double group = routing_groups(s.routing, routed, p.expert).group_tokens;
        per_tok += (2.0 * d + 2.0 * m.experts) / sp + slots_per_token(group) * (2.0 * d / sp + ffn_mats * m.expert_d_ff / t);
        // Shared experts (DeepSeekMoE): a dense FFN of shared_experts x expert_d_ff on every token, split over the
        // tensor ranks (training_step.cpp's shared_experts_ffn); its input is the layer's, counted above.
        per_tok += m.shared_experts * ffn_mats * m.expert_d_ff / t;
        if (accel.dispatch == catalog::DispatchStyle::einsum && !s.routing.dropless) {
          // One-hot dispatch and combine tensors [S, E, C] per group: E x C elements per routed token each.
          per_tok += 2.0 * m.experts * expert_capacity(s.routing, m.experts, m.top_k, m.capacity_factor, group) / sp;
        }
      } else {
        per_tok += d / sp + ffn_mats * m.d_ff / t;
      }
      const double layer_act = (per_tok + core_per_tok) * tok * b;
      act += layer_act;
      attn_core += core_per_tok * tok * b;
      attn_core_max_layer = std::max(attn_core_max_layer, core_per_tok * tok * b);
      act_inputs += tok * d / sp * b;
      act_max_layer = std::max(act_max_layer, layer_act);
    }
    if (stage == 0 || stage == p.pipeline - 1) {
      params += static_cast<double>(m.vocab) * d / t;
      if (stage == p.pipeline - 1) act += t_dec * (static_cast<double>(m.vocab) / t) * 4.0;  // fp32 logits
    }
    MemoryEstimate e;
    e.capacity_bytes = best.capacity_bytes;
    e.params_bytes = params * w_bytes;
    // ZeRO (Rajbhandari et al. 2020) / distributed optimiser: stage 1 shards the optimizer state, stage 2
    // also the gradients, across the data-parallel replicas of each parameter: dense parameters over
    // data x expert, experts over data.
    const double dense_params = params - expert_params;
    const double dense_dp = static_cast<double>(p.data) * p.expert, expert_dp = p.data;
    auto sharded = [&](double per_param, bool shard) {
      return shard ? per_param * (dense_params / dense_dp + expert_params / expert_dp) : per_param * params;
    };
    e.grads_bytes = sharded(g_bytes, p.zero_stage >= 2);
    if (p.zero_stage >= 3) {
      // Parameters sharded too, plus the working copies of two layers (in use + prefetched).
      e.params_bytes = sharded(w_bytes, true) + 2.0 * max_layer_params * w_bytes;
    }
    e.optimizer_bytes = sharded(opt_bytes, p.zero_stage >= 1);
    e.activations_no_remat_bytes = act * inflight;
    // Full: each layer's input per micro-batch in flight, plus one layer's activations while it is recomputed.
    const double remat_act = act_inputs * inflight + act_max_layer;
    // Selective: everything but the attention cores, plus one layer's attention core while it is recomputed.
    const double selective_act = (act - attn_core) * inflight + attn_core_max_layer;
    stages.push_back({e, selective_act, remat_act});
  }
  // One recomputation for the whole step (the step graph applies one to every stage): the given one, or with auto
  // the first of none, selective and full with which every stage fits (full when none does: the error then gives
  // full's figures).
  auto with = [](const StageMemory& st, bool remat, bool selective) {
    MemoryEstimate e = st.e;
    e.remat = remat;
    e.selective = selective;
    e.activations_bytes = remat ? st.remat_act : selective ? st.selective_act : e.activations_no_remat_bytes;
    return e;
  };
  auto all_fit = [&](bool remat, bool selective) {
    return std::all_of(stages.begin(), stages.end(), [&](const StageMemory& st) {
      const MemoryEstimate e = with(st, remat, selective);
      return e.total_bytes() <= e.capacity_bytes;
    });
  };
  bool remat = false, selective = false;
  switch (s.training.rematerialization) {
    case scenario::Remat::none: break;
    case scenario::Remat::full: remat = true; break;
    case scenario::Remat::selective: selective = true; break;
    case scenario::Remat::automatic:
      if (!all_fit(false, false)) {
        selective = all_fit(false, true);
        remat = !selective;
      }
      break;
  }
  // The stage that needs the most memory.
  for (std::size_t k = 0; k < stages.size(); ++k) {
    const MemoryEstimate e = with(stages[k], remat, selective);
    if (k == 0 || e.total_bytes() > best.total_bytes()) best = e;
  }
  return best;
}

MemoryEstimate estimate_memory(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel) {
  const MemoryEstimate best = estimate_memory_need(s, accel);
  if (best.total_bytes() > best.capacity_bytes) {
    const double gib = units::kGiB;
    throw MemoryFitError(fmt::format(
        "the model does not fit in device memory: {:.1f} GiB needed per device ({:.1f} params + {:.1f} grads + "
        "{:.1f} optimizer state + {:.1f} activations{}) but one {} device has {:.1f} GiB; use more devices, "
        "tensor/pipeline/expert parallelism, or rematerialization",
        best.total_bytes() / gib, best.params_bytes / gib, best.grads_bytes / gib, best.optimizer_bytes / gib,
        best.activations_bytes / gib,
        best.remat ? " with rematerialization" : best.selective ? " with selective recomputation" : "", accel.name,
        best.capacity_bytes / gib));
  }
  return best;
}

}  // namespace moesim::workload
