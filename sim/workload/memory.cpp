// SPDX-License-Identifier: Apache-2.0
#include "moesim/workload/memory.hpp"

#include <algorithm>
#include <cmath>
#include <deque>

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

std::string training_weight_dtype(const std::string& dtype) {
  // fp8 is the GEMMs' input format only: Transformer Engine keeps the module's weights in bf16 (params_dtype) with
  // fp32 master copies in the optimizer and casts them to fp8 per GEMM; DeepSeek-V3 (arXiv 2412.19437 §3.3) keeps
  // "master weights, weight gradients and optimizer states ... in higher precision".
  return dtype == "fp8" ? "bf16" : dtype;
}

std::string training_activation_dtype(const std::string& dtype) {
  // Transformer Engine's fp8 recipes (and DeepSeek-V3's, arXiv 2412.19437 §3.3) quantise a GEMM's inputs inside the
  // layer; the tensors between the GEMMs (norms, softmax, activation functions, residuals) are bf16.
  return dtype == "fp8" ? "bf16" : dtype;
}

double grad_dtype_bytes(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel) {
  const std::string weights = training_weight_dtype(s.model.dtype);
  const double b = dtype_bytes(weights);
  switch (s.training.grad_dtype) {
    case scenario::GradDtype::fp32: return 4.0;
    case scenario::GradDtype::model: return b;
    case scenario::GradDtype::automatic: break;
  }
  // Megatron-LM's --bf16 accumulates and all-reduces the gradients in fp32 (--accumulate-allreduce-grads-in-fp32);
  // its fp8 training (--fp8-format, Transformer Engine) runs on bf16 weights with the same fp32 main_grad buffers.
  return weights == "bf16" && accel.kind == catalog::AcceleratorKind::gpu ? 4.0 : b;
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

double kv_heads_per_rank(const scenario::ModelSpec& m, double tensor) {
  return std::max(1.0, static_cast<double>(m.kv_heads > 0 ? m.kv_heads : m.heads) / tensor);
}

namespace {
double ffn_matrices(const scenario::ModelSpec& m) { return m.gated() ? 3.0 : 2.0; }
/** Attention parameters one tensor rank holds: 1/tensor of the query and output projections; the key and value
 *  projections of kv_heads_per_rank heads (whole heads, replicated when kv_heads < tensor); multi-head latent
 *  attention's down-projections (queries' d_model x q_lora_rank; keys' and values' d_model x (kv_lora_rank + RoPE))
 *  whole on every tensor rank (DeepSeek-V3's reference inference/model.py keeps wq_a and wkv_a unsplit;
 *  training_step.cpp's attention runs them on every rank), the rest of MLA 1/tensor. */
double attention_params_per_rank(const scenario::ModelSpec& m, double t) {
  const double all = attention_params(m);
  if (!m.is_mla()) {
    const double d = m.d_model, h = m.heads, dh = m.d_head;
    return d * dh * 2.0 * h / t + d * dh * 2.0 * kv_heads_per_rank(m, t);  // Q and O split by heads; K and V
  }
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

double mtp_projection_params(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p) {
  return 2.0 * m.d_model * m.d_model / p.tensor;
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

int virtual_stage(const scenario::ParallelismSpec& p, int stage, int chunk) {
  if (p.dualpipev()) return chunk == 0 ? stage : 2 * p.pipeline - 1 - stage;
  if (p.dualpipe()) return chunk == 0 ? stage : p.pipeline - 1 - stage;
  return chunk * p.pipeline + stage;
}

int chain_length(const scenario::ParallelismSpec& p) { return p.dualpipe() ? p.pipeline : p.pipeline * p.virtual_stages; }

StageChunk stage_chunk(const scenario::ParallelismSpec& p, int vs, int direction) {
  if (p.dualpipev()) return vs < p.pipeline ? StageChunk{vs, 0} : StageChunk{2 * p.pipeline - 1 - vs, 1};
  if (p.dualpipe()) return direction == 0 ? StageChunk{vs, 0} : StageChunk{p.pipeline - 1 - vs, 1};
  return {vs % p.pipeline, vs / p.pipeline};
}

int direction_of(const scenario::ParallelismSpec& p, int mb) { return p.dualpipe() && mb >= p.microbatches / 2 ? 1 : 0; }

int last_microbatch(const scenario::ParallelismSpec& p, int chunk) {
  return p.dualpipe() && chunk == 0 ? p.microbatches / 2 - 1 : p.microbatches - 1;
}

int last_stage(const scenario::ParallelismSpec& p) { return stage_chunk(p, chain_length(p) - 1).stage; }

std::vector<int> chunk_layers(int layers, const scenario::ParallelismSpec& p, int stage, int chunk) {
  const long long virtual_stages = chain_length(p);
  const long long vs = virtual_stage(p, stage, chunk);
  std::vector<int> ids;
  if (p.first_stage_layers > 0 || p.last_stage_layers > 0) {  // 1F1B or a DualPipe schedule (the resolver checks)
    // Virtual stage v of the chain starts at layer start(v): the first (the chunk with the embedding) holds
    // first_stage_layers, the last (the chunk with the output head) last_stage_layers, the chunks between (or every
    // chunk without a count) split the rest as the even split does. 1F1B: the chain is the P stages. DualPipeV: the
    // 2P chunks of the V, whose two ends sit on stage 0. DualPipe: each direction's P stages, so stage 0 holds the
    // first chunk of one direction and the last of the other (as stage P - 1 does).
    const long long V = virtual_stages, first = p.first_stage_layers, last = p.last_stage_layers;
    const long long lo = first > 0 ? 1 : 0, n = (last > 0 ? V - 1 : V) - lo, rest = layers - first - last;
    auto start = [&](long long v) -> long long {
      if (v <= 0) return 0;
      if (v >= V) return layers;
      return first + std::clamp(v - lo, 0LL, n) * rest / std::max(n, 1LL);
    };
    for (long long i = start(vs); i < start(vs + 1); ++i) ids.push_back(static_cast<int>(i));
    return ids;
  }
  for (long long i = vs * layers / virtual_stages; i < (vs + 1) * layers / virtual_stages; ++i) ids.push_back(static_cast<int>(i));
  return ids;
}

bool mtp_block_moe(const scenario::ModelSpec& m) { return m.decoder_layers > 0 && m.is_moe_layer(m.decoder_layers - 1); }

std::vector<int> chunk_blocks(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p, int stage, int chunk) {
  const int layers = m.total_layers();
  std::vector<int> ids = chunk_layers(layers, p, stage, chunk);
  if (virtual_stage(p, stage, chunk) == chain_length(p) - 1)
    for (int k = 0; k < m.mtp_depth; ++k) ids.push_back(layers + k);
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

namespace {
/** Forwards stage `stage` runs before its first backward, less the one it runs at the start of the steady state:
 *  1F1B min(P - s - 1, M); interleaved min(2 (P - s - 1) + (v - 1) P, M v) chunk forwards (Megatron-LM's
 *  forward_backward_pipelining_with_interleaving: num_warmup_microbatches). */
long long warmup_forwards(const scenario::ParallelismSpec& p, int stage) {
  const long long P = p.pipeline, M = p.microbatches, V = p.virtual_stages;
  // Overlapped expert communication (parallelism.overlap_expert_comm) runs one more warm-up forward, so that each
  // steady-state forward is paired with a backward it does not wait for (Megatron-LM core/pipeline_parallel/
  // schedules.py: "we schedule one extra micro-batch forward step before the 1f1b stages").
  const long long extra = p.overlap_expert_comm ? 1 : 0;
  return V == 1 ? std::min(P - stage - 1 + extra, M) : std::min(2 * (P - stage - 1) + (V - 1) * P + extra, M * V);
}
/** The k-th forward (or backward) of a stage: its micro-batch and model chunk (stage_schedule). */
PipelineTask schedule_task(const scenario::ParallelismSpec& p, bool backward, long long k) {
  const long long P = p.pipeline, V = p.virtual_stages;
  if (V == 1) return {backward, static_cast<int>(k), 0};
  const auto mb = static_cast<int>((k / (P * V)) * P + k % P), c = static_cast<int>((k / P) % V);
  return {backward, mb, backward ? static_cast<int>(V) - 1 - c : c};
}
/** The most bytes of stored activations stage `stage` holds at once as its schedule (stage_schedule) runs, when one
 *  micro-batch of model chunk c stores `chunk_bytes[c]` from the end of its forward to the end of its backward: the
 *  warm-up forwards accumulate, then each steady-state forward adds one chunk-micro-batch and the backward after it
 *  releases one. The held bytes after the warm-up repeat with period P v tasks (the forwards' and the backwards'
 *  chunks each cycle through every chunk P times), so one period of the steady state finds the peak; the cool-down
 *  only releases. */
double peak_stored_bytes(const scenario::ParallelismSpec& p, int stage, const std::vector<double>& chunk_bytes) {
  if (p.dualpipev() || p.dualpipe()) {
    // The schedule has no short period to walk (its phases depend on the stage): walk all of it.
    double held = 0.0, peak = 0.0;
    // A zero-bubble backward keeps its chunk's activations for the weight gradients (the GEMMs' inputs); its W step
    // frees them.
    for (const PipelineTask& t : stage_schedule(p, stage)) {
      if (t.defer_weights) continue;
      held += (t.backward ? -1.0 : 1.0) * chunk_bytes[static_cast<std::size_t>(t.chunk)];
      peak = std::max(peak, held);
    }
    return peak;
  }
  const long long total = static_cast<long long>(p.microbatches) * p.virtual_stages;
  const long long warm = warmup_forwards(p, stage);
  double held = 0.0, peak = 0.0;
  for (long long k = 0; k < warm; ++k) {
    held += chunk_bytes[static_cast<std::size_t>(schedule_task(p, false, k).chunk)];
    peak = std::max(peak, held);
  }
  const long long period = static_cast<long long>(p.pipeline) * p.virtual_stages;
  for (long long i = 0; i < std::min(total - warm, period + 1); ++i) {
    held += chunk_bytes[static_cast<std::size_t>(schedule_task(p, false, warm + i).chunk)];
    peak = std::max(peak, held);
    held -= chunk_bytes[static_cast<std::size_t>(schedule_task(p, true, i).chunk)];
  }
  return peak;
}
}  // namespace

namespace {
/** DualPipeV's order on stage r of P with M micro-batches (workload::stage_schedule's documentation); DualPipe's on
 *  its half-stages. */
std::vector<PipelineTask> dualpipev_schedule(long long P, long long M, long long r) {
  std::vector<PipelineTask> order;
  order.reserve(static_cast<std::size_t>(4 * M));
  int next_f[2] = {0, 0}, next_b[2] = {0, 0};  // each chunk's forwards and backwards run in micro-batch order
  std::deque<std::pair<int, int>> deferred;      // (chunk, mb) of the zero-bubble backwards, oldest first
  auto f = [&](int c, bool paired = false) { order.push_back({false, next_f[c]++, c, paired}); };
  auto b = [&](int c, bool paired = false, bool zb = false) {
    PipelineTask t{true, next_b[c]++, c, paired};
    t.defer_weights = zb;
    if (zb) deferred.emplace_back(c, t.mb);
    order.push_back(t);
  };
  auto w = [&] {
    PipelineTask t{true, deferred.front().second, deferred.front().first, false};
    t.weights = true;
    deferred.pop_front();
    order.push_back(t);
  };
  for (long long i = 0; i < 2 * (P - r - 1); ++i) f(0);                  // 1: F0
  for (long long i = 0; i < r + 1; ++i) f(0), f(1);                      // 2: F0 F1
  for (long long i = 0; i < P - r - 1; ++i) b(1, false, true), w(), f(1);  // 3: B1 W F1 (zero bubble)
  for (long long i = 0; i < M - 2 * P + r + 1; ++i) {                    // 4: (F0&B1) (F1&B0)
    const bool overlapped = !(i == 0 && r == P - 1);  // the last stage's first two run apart (shorter bubble)
    f(0, overlapped), b(1, overlapped);
    f(1, true), b(0, true);
  }
  for (long long i = 0; i < P - r - 1; ++i) b(1), f(1, true), b(0, true);  // 5: B1 (F1&B0)
  bool zb = false;                                                         // 6: B1 B0, the second half zero bubble
  for (long long i = 0; i < r + 1; ++i) {
    if (i == (r + 1) / 2 && r % 2 == 1) zb = true;
    b(1, false, zb);
    if (i == (r + 1) / 2 && r % 2 == 0) zb = true;
    b(0, false, zb);
  }
  for (long long i = 0; i < P - r - 1; ++i) w(), b(0, false, true);       // 7: W B0 (zero bubble)
  for (long long i = 0; i < r + 1; ++i) w();                               // 8: W
  return order;
}

/** DualPipe's order on stage r: DualPipeV's of half-stage min(r, P - 1 - r), its chunks swapped on the second half of
 *  the stages (there chunk 0 is direction 1), direction 1's micro-batches after direction 0's. */
std::vector<PipelineTask> dualpipe_schedule(const scenario::ParallelismSpec& p, int r) {
  const int P = p.pipeline, M = p.microbatches;
  const int swap = r >= P / 2 ? 1 : 0;
  std::vector<PipelineTask> order = dualpipev_schedule(P / 2, M / 2, std::min(r, P - 1 - r));
  for (PipelineTask& t : order) {
    t.chunk ^= swap;
    if (t.chunk == 1) t.mb += M / 2;
  }
  return order;
}
}  // namespace

std::vector<PipelineTask> stage_schedule(const scenario::ParallelismSpec& p, int stage) {
  if (p.dualpipev()) return dualpipev_schedule(p.pipeline, p.microbatches, stage);
  if (p.dualpipe()) return dualpipe_schedule(p, stage);
  const long long total = static_cast<long long>(p.microbatches) * p.virtual_stages;
  const long long warm = warmup_forwards(p, stage);
  std::vector<PipelineTask> order;
  order.reserve(static_cast<std::size_t>(2 * total));
  for (long long i = 0; i < warm; ++i) order.push_back(schedule_task(p, false, i));
  for (long long i = 0; i < total - warm; ++i) {
    order.push_back(schedule_task(p, false, warm + i));
    order.push_back(schedule_task(p, true, i));
    order[order.size() - 2].steady = order.back().steady = true;
  }
  for (long long i = total - warm; i < total; ++i) order.push_back(schedule_task(p, true, i));
  return order;
}

double inflight_microbatches(const scenario::ParallelismSpec& p, int stage) {
  const double v = p.virtual_stages;
  if (p.dualpipev()) return peak_stored_bytes(p, stage, std::vector<double>(2, 1.0)) / v;
  if (p.dualpipe()) return peak_stored_bytes(p, stage, std::vector<double>(2, 1.0));  // each chunk a whole stage
  return std::min(static_cast<double>(warmup_forwards(p, stage)) + 1.0, static_cast<double>(p.microbatches) * v) / v;
}

MemoryEstimate estimate_memory_need(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel) {
  const auto& m = s.model;
  const auto& p = s.parallelism;
  // Stored activations, in two widths (they differ only for an fp8 model). A GEMM's input is kept as the GEMM consumes
  // it, in the model's dtype (b_gemm): an fp8 model keeps its 1-byte fp8 cast for the weight-gradient GEMM, as
  // Transformer Engine's fp8 Linear saves it and DeepSeek-V3 (arXiv 2412.19437 §3.3.3, "Low-Precision Storage and
  // Communication") caches the Linear operators' inputs in fp8. Every other stored tensor (the layer norms' inputs,
  // the attention core's Q, K, V and softmax, the activation functions' inputs, the router's logits, the experts'
  // outputs, each layer's input on the residual stream) takes training_activation_dtype (b_act): the model's dtype,
  // bf16 for an fp8 model, whose tensors between the GEMMs are bf16 in every fp8 recipe.
  const double b_gemm = dtype_bytes(m.dtype), b_act = dtype_bytes(training_activation_dtype(m.dtype));
  const double t = p.tensor;
  const double d = m.d_model, hl = m.heads / t, dh = m.d_head, kvl = kv_heads_per_rank(m, t);
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
  // Multi-token prediction modules' blocks (model.mtp_depth) after the model's layers (chunk_blocks places them).
  for (int k = 0; k < m.mtp_depth; ++k) layers.push_back({true, mtp_block_moe(m)});

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
  // fp8 training holds bf16 weights with the fp32 master copy (training_weight_dtype; fp8 is the GEMMs' input
  // format) and gradients as a bf16 model's: 2 + 4 + 12 with Adam on GPUs.
  // Adafactor (Shazeer & Stern 2018) keeps factored second moments, O(rows + cols) per matrix: ~0 per
  // parameter, and no first moment in the T5/GShard configuration (beta1 = 0).
  const double w_bytes = dtype_bytes(training_weight_dtype(m.dtype)), g_bytes = grad_dtype_bytes(s, accel);
  const double opt_bytes = master_bytes(w_bytes) + optimizer_state_bytes(s.training.optimizer);

  // Expert rows per routed token a rank stores: with the one-hot einsum dispatch (TPUs) the capacity-padded buffers,
  // capacity x experts / group tokens, as the step computes and exchanges them; with the gather dispatch (GPUs) only
  // the kept assignments, as the step permutes, exchanges and computes them (training_step.cpp's moe_ffn): top_k per
  // token, fewer when the capacity cannot hold them all (min(top_k, capacity x experts / group tokens)); dropless:
  // top_k.
  auto slots_per_token = [&](double group) {
    const double k = m.top_k;
    if (s.routing.dropless) return k;
    const double padded = expert_capacity(s.routing, m.experts, m.top_k, m.capacity_factor, group) * m.experts / group;
    return accel.dispatch == catalog::DispatchStyle::einsum ? padded : std::min(k, padded);
  };

  // Sequence parallelism (Korthikanti et al. 2022 §4.2.2) shards what tensor parallelism replicates (the layer norms,
  // dropouts' and residuals' activations, and each layer's input) over the tensor ranks.
  const double sp = p.sequence_parallel ? t : 1.0;
  const auto V = static_cast<std::size_t>(p.virtual_stages);
  const double dense_dp = static_cast<double>(p.data) * p.expert, expert_dp = p.data;
  for (int stage = 0; stage < p.pipeline; ++stage) {
    double params = 0.0, expert_params = 0.0, act_max_layer = 0.0, max_layer_gathered = 0.0;
    double recomputed_max_layer = 0.0;  // one layer's part that selective recomputation recomputes
    // Per micro-batch of each model chunk: stored activations, the part selective recomputation drops (its
    // training.recompute_modules) and the layers' inputs (what full recomputation keeps).
    std::vector<double> act(V, 0.0), recomputed(V, 0.0), act_inputs(V, 0.0);
    const auto& rc = s.training.recompute;
    for (std::size_t c = 0; c < V; ++c) {
      for (const int i : chunk_blocks(m, p, stage, static_cast<int>(c))) {
        const L& l = layers[static_cast<std::size_t>(i)];
        const bool cross = l.decoder && encdec;
        const double tok = l.decoder ? t_dec : t_enc;
        const double s_self = l.decoder ? (encdec ? m.target_seq_len : m.seq_len) : m.seq_len;
        const LayerParams lp = layer_params(m, p, l.decoder, l.moe);
        params += lp.dense + lp.expert;
        expert_params += lp.expert;
        // ZeRO-3 gathers what is sharded: dense parameters over data x expert > 1 replicas, experts' over data > 1.
        max_layer_gathered =
            std::max(max_layer_gathered, (dense_dp > 1.0 ? lp.dense : 0.0) + (expert_dp > 1.0 ? lp.expert : 0.0));
        // Stored activations per token (elements): Korthikanti et al. 2022 §4.1's list for what moesim models, each
        // term either a GEMM's input (per_tok_gemm, stored at b_gemm) or not (per_tok_other, at b_act):
        //   the two layer norms' inputs, 2d                                     not a GEMM input
        //   the QKV projection's input (the first norm's output), d             GEMM input
        //   the FFN's first GEMM's input (the second norm's output), d          GEMM input (dense FFN, below)
        //   Q, K and V (the attention core's inputs; the core is bf16)          not
        //   the context (the output projection's input), heads x d_head         GEMM input
        //   the core's softmax output and dropout (core_per_tok)                not
        //   the FFN's inner activations (below)
        // The d-wide tensors are replicated over the tensor ranks unless sequence-parallel (§4.2.1: their 10sbh of
        // 34sbh; §4.2.2); the rest is split by heads: Q and the context of heads / tensor, K and V of
        // kv_heads_per_rank heads (grouped-query attention keeps fewer). At 16 bits this is §4.1's 34sbh less its two
        // hidden-dropout masks (sbh each, after attention and after the FFN): moesim models no hidden dropout, so
        // there are none to store.
        double per_tok_gemm = d / sp + hl * dh;
        double per_tok_other = 2.0 * d / sp + (hl + 2.0 * kvl) * dh;
        // What selective recomputation drops of them (training.recompute_modules), in the same two widths: layernorm,
        // the attention block's norm output (the QKV projection's input, or MLA's down-projections').
        double drop_gemm = rc.layernorm ? d / sp : 0.0, drop_other = 0.0;
        if (m.is_mla()) {
          // Multi-head latent attention (DeepSeek-V2 §2.1.2, arXiv 2405.04434; as training_step.cpp's attention
          // computes it; the resolver refuses it in an encoder-decoder):
          //   the layer norms' inputs, 2d                                       not a GEMM input
          //   the down-projections' input (the norm's output), d                GEMM input
          //   the compressed query (q_lora_rank, when there is one) and the
          //   latent (kv_lora_rank): the up-projections' inputs, whole on
          //   every tensor rank as their down-projections are                   GEMM inputs
          //   the decoupled RoPE key (qk_rope_head_dim), shared by the heads    not (RoPE, then the core's K)
          //   queries and keys of heads x (d_head + RoPE), values of
          //   heads x d_head, split by heads                                    not (the core's inputs)
          //   the context, heads x d_head                                       GEMM input
          // (The latents' RMSNorms, DeepSeek-V2 §3.1.2, sit before the up-projections: the stored latent is counted
          // once, as the GEMM's input.)
          const double rope = m.mla_qk_rope_head_dim;
          per_tok_gemm = d / sp + m.mla_q_lora_rank + m.mla_kv_lora_rank + hl * dh;
          per_tok_other = 2.0 * d / sp + rope + 2.0 * hl * (dh + rope) + hl * dh;
          // mla_up_proj: the up-projected queries, keys and values, recomputed from the stored latents (the RoPE key
          // stays: it comes from the down-projection).
          if (rc.mla_up_proj) drop_other += 2.0 * hl * (dh + rope) + hl * dh;
        }
        // With attention dropout as its own kernel, also its one-byte mask per score (Korthikanti et al. 2022 §4.1:
        // softmax output, dropout output and mask, 5as^2b at 16 bits).
        // A fused (FlashAttention) core keeps no scores: only one fp32 log-sum-exp per query row and head (the
        // output is the context above), whatever the sequence length and dropout (Dao et al. 2022, section 3.1).
        // None of it is a GEMM's input (the core is bf16): elements of b_act, the mask and log-sum-exp in b_act units.
        const bool fused = s.training.fused_attention;
        const double core_elems_per_score = 2.0 + (s.training.attention_dropout > 0.0 ? 1.0 / b_act : 0.0);
        const double lse_per_tok = hl * 4.0 / b_act;
        double core_per_tok = fused ? lse_per_tok : core_elems_per_score * hl * s_self;
        if (cross) {
          // Cross-attention: its layer norm's input (not a GEMM input) and the Q projection's (GEMM input); Q (not)
          // and the context (GEMM input) of heads / tensor; K and V over the encoder's tokens of kv_heads_per_rank
          // heads, as in self-attention (not).
          per_tok_gemm += d / sp + hl * dh;
          per_tok_other += d / sp + hl * dh + 2.0 * kvl * dh * t_enc / std::max(1.0, tok);
          core_per_tok += fused ? lse_per_tok : core_elems_per_score * hl * m.seq_len;
          if (rc.layernorm) drop_gemm += d / sp;  // its norm's output, the Q projection's input
        }
        // An FFN's inner activations of width f per token (gated: gate and up outputs, 2f; else the up output, f) feed
        // the activation function (not GEMM inputs); its output (f) is the down-projection's input (GEMM input).
        const double act_fn_inputs = ffn_mats - 1.0;
        if (l.moe) {
          // Routing groups come from the tokens a rank routes: all of the stage's, or with sequence parallelism its
          // 1/tensor shard, whose dispatched and combined rows it alone keeps; split as the step splits them
          // (routing_groups, as training_step.cpp's moe_ffn: fixed or Mesh-TensorFlow's split).
          //   the layer's input (the second norm's output), d                   not: the router's input, whose GEMM
          //                                                                     runs in fp32 (the step's moe.gate;
          //                                                                     DeepSeek-V3 §3.3.1 keeps the gating
          //                                                                     module in bf16/fp32)
          //   the combined output, d                                            not
          //   the router's logits and probabilities, 2E                         not
          //   per expert row (slot): the dispatched row, d                      GEMM input (the experts' up-projection;
          //                                                                     DeepSeek-V3 dispatches it in fp8)
          //                          the expert's output, d                     not (the combine's input); only with
          //                                                                     the one-hot einsum combine (below)
          //                          gate/up outputs, (ffn_mats - 1) f          not
          //                          the activation output, f                   GEMM input (the down-projection's)
          // The expert's output is stored only where the combine weights it: the one-hot einsum combine (TPUs;
          // GShard, Mesh-TensorFlow) computes the combine weights' gradient from the experts' outputs. The gather
          // dispatch (GPUs) weights each row by its routing probability inside the expert, in the activation function
          // (Megatron-Core's GroupedMLP and TEGroupedMLP: activation_func_with_probs, act(fc1) x probs), so the combine
          // is a sum whose backward reads nothing stored, and the probabilities' gradient comes from the activation's
          // stored input.
          const double routed = tok / sp;
          const double group = routing_groups(s.routing, routed, p.expert).group_tokens;
          const double slots = slots_per_token(group), f = m.expert_d_ff / t;
          const bool einsum_combine = accel.dispatch == catalog::DispatchStyle::einsum && !s.routing.dropless;
          per_tok_gemm += slots * (d / sp + f);
          per_tok_other += (2.0 * d + 2.0 * m.experts) / sp + slots * ((einsum_combine ? d / sp : 0.0) + act_fn_inputs * f);
          if (rc.layernorm) drop_other += d / sp;  // the norm's output, the router's input
          if (rc.moe_act) drop_gemm += slots * f;  // the activation outputs, the down-projections' inputs
          // Shared experts (DeepSeekMoE): a dense FFN of shared_experts x expert_d_ff on every token, split over the
          // tensor ranks (training_step.cpp's shared_experts_ffn), its inner activations as the dense FFN's; its input
          // is the layer's, counted above.
          per_tok_gemm += m.shared_experts * f;
          per_tok_other += m.shared_experts * act_fn_inputs * f;
          if (accel.dispatch == catalog::DispatchStyle::einsum && !s.routing.dropless) {
            // One-hot dispatch and combine tensors [S, E, C] per group: E x C elements per routed token each, operands
            // of the dispatch and combine einsums (GEMM inputs). Only TPUs dispatch so, and they have no fp8 path (no
            // fp8 peak in the catalog; an fp8 model is refused there), so both widths are the model's anyway.
            per_tok_gemm += 2.0 * m.experts * expert_capacity(s.routing, m.experts, m.top_k, m.capacity_factor, group) / sp;
          }
        } else {
          // Dense FFN: its input (the second norm's output, the up-projection's), d: GEMM input; its inner
          // activations as above.
          const double f = m.d_ff / t;
          per_tok_gemm += d / sp + f;
          per_tok_other += act_fn_inputs * f;
          if (rc.layernorm) drop_gemm += d / sp;  // the norm's output, the up-projection's input
        }
        // core_attn: the attention core's stored scores (none under FlashAttention, whose log-sum-exp its own backward
        // needs: nothing to drop or recompute, as the step has it).
        if (rc.core_attn && !fused) drop_other += core_per_tok;
        const double layer_act = (per_tok_gemm * b_gemm + (per_tok_other + core_per_tok) * b_act) * tok;
        act[c] += layer_act;
        const double layer_drop = (drop_gemm * b_gemm + drop_other * b_act) * tok;
        recomputed[c] += layer_drop;
        recomputed_max_layer = std::max(recomputed_max_layer, layer_drop);
        // Full recomputation keeps each layer's input, the residual stream: not a GEMM's input, b_act.
        act_inputs[c] += tok * d / sp * b_act;
        act_max_layer = std::max(act_max_layer, layer_act);
      }
    }
    const bool holds_vocab = stage == 0 || stage == last_stage(p);
    if (holds_vocab) params += static_cast<double>(m.vocab) * d / t;
    // fp32 logits, in the last chunk of the last stage (its output head): [tokens, vocab / tensor], stored from the
    // micro-batch's forward to its backward, as the rest of the chunk's activations. Full recomputation keeps them
    // too (act_inputs): it recomputes the transformer layers, not the output head, whose cross-entropy and its
    // gradient are computed from them (Megatron-LM's vocab_parallel_cross_entropy saves their softmax for the
    // backward; Korthikanti et al. 2022 §4.3 count them as 4sbv/t bytes, fp32).
    // 1F1B's last stage runs each forward's backward next (min(P - s, M) = 1 micro-batch in flight), and interleaved,
    // its last chunk's (peak_stored_bytes), so one micro-batch's logits are held at a time; with DualPipeV they are in
    // stage 0's chunk 1 and with DualPipe in each direction's last stage (P - 1's chunk 0, 0's chunk 1), whose peaks
    // the walk of the schedule finds.
    // Each multi-token prediction module adds its logits, its projection (2d x d / t parameters) and the projection's
    // input, the two normalised d-wide halves (a GEMM input, kept by full recomputation too: the module's block is
    // recomputed from it); its block is counted above with the layers.
    for (std::size_t c = 0; c < V; ++c)
      if (virtual_stage(p, stage, static_cast<int>(c)) == chain_length(p) - 1) {
        const double logits = t_dec * (static_cast<double>(m.vocab) / t) * 4.0;
        const double mtp = m.mtp_depth;
        act[c] += logits * (1.0 + mtp) + mtp * t_dec * 2.0 * d * b_gemm;
        act_inputs[c] += logits * (1.0 + mtp) + mtp * t_dec * 2.0 * d * b_gemm;
        params += mtp * mtp_projection_params(m, p);
      }
    MemoryEstimate e;
    e.capacity_bytes = best.capacity_bytes;
    e.params_bytes = params * w_bytes;
    // ZeRO (Rajbhandari et al. 2020) / distributed optimiser: stage 1 shards the optimizer state, stage 2
    // also the gradients, across the data-parallel replicas of each parameter: dense parameters over
    // data x expert, experts over data.
    const double dense_params = params - expert_params;
    auto sharded = [&](double per_param, bool shard) {
      return shard ? per_param * (dense_params / dense_dp + expert_params / expert_dp) : per_param * params;
    };
    e.grads_bytes = sharded(g_bytes, p.zero_stage >= 2);
    if (p.zero_stage >= 3) {
      // Parameters sharded too, plus the gathered working copies the step holds (training_step.cpp's pass_of): two
      // layers' (the one in use and the next, prefetched: FSDP's one-layer prefetch) and, on a stage that holds the
      // vocabulary matrix, that matrix too: it is gathered when a pass starts and used at its end (the output head
      // after the last stage's forward layers, the embedding after the first stage's backward layers), so it is
      // held beside the layers' copies (FSDP likewise keeps its root module's parameters gathered). Only what is
      // sharded is gathered (max_layer_gathered): with data x expert = 1 nothing is, and nothing is added.
      const double vocab_gathered = holds_vocab && dense_dp > 1.0 ? static_cast<double>(m.vocab) * d / t : 0.0;
      e.params_bytes = sharded(w_bytes, true) + (2.0 * max_layer_gathered + vocab_gathered) * w_bytes;
    }
    e.optimizer_bytes = sharded(opt_bytes, p.zero_stage >= 1);
    // Stored activations at the stage's peak: its micro-batches in flight as its schedule runs (peak_stored_bytes:
    // 1F1B min(P - s, M) at stage s, Narayanan et al. 2021 and Korthikanti et al. 2022 §4.2.3; interleaved,
    // 2 (P - s - 1) + (v - 1) P + 1 chunk-micro-batches), each chunk with its own bytes.
    e.activations_no_remat_bytes = peak_stored_bytes(p, stage, act);
    // Full: each layer's input per micro-batch in flight (and the last stage's logits), plus one layer's activations
    // while it is recomputed.
    const double remat_act = peak_stored_bytes(p, stage, act_inputs) + act_max_layer;
    // Selective: everything but what its modules drop, plus one layer's of that while it is recomputed.
    std::vector<double> kept(V);
    for (std::size_t c = 0; c < V; ++c) kept[c] = act[c] - recomputed[c];
    const double selective_act = peak_stored_bytes(p, stage, kept) + recomputed_max_layer;
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
