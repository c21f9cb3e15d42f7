// SPDX-License-Identifier: Apache-2.0
#include "moesim/scenario/fields.hpp"

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::scenario {

namespace {

using nlohmann::json;

constexpr double kGbitPerSecondToBytesPerSecond = 1e9 / 8.0;  // 1 Gbit/s = 1e9 bit/s / 8 bit/byte
constexpr double kMillisecondToSecond = 1e-3;
constexpr double kMicrosecondToSecond = 1e-6;

/** Small builder so the table below reads like a schema. */
struct F {
  FieldSpec s;
  explicit F(std::string path, FieldType type) {
    s.path = std::move(path);
    s.type = type;
  }
  F& unit(std::string u, double scale = 1.0) {
    s.unit = std::move(u);
    s.si_scale = scale;
    return *this;
  }
  F& def(json v) {
    s.default_value = std::move(v);
    return *this;
  }
  F& required() {
    s.required = true;
    return *this;
  }
  F& help(std::string h) {
    s.help = std::move(h);
    return *this;
  }
  F& min(double v, bool exclusive = false) {
    s.min = v;
    s.min_exclusive = exclusive;
    return *this;
  }
  F& max(double v, std::string note = "") {
    s.max = v;
    s.max_note = std::move(note);
    return *this;
  }
  F& choices(std::vector<std::string> c) {
    s.choices = std::move(c);
    return *this;
  }
  F& derived(std::string d) {
    s.derived_default = std::move(d);
    return *this;
  }
  operator FieldSpec() const { return s; }  // NOLINT(google-explicit-constructor): table syntax
};

using T = FieldType;

// Upper bounds of the model and cluster fields: each is far above anything built or published (so no real
// scenario meets it) and far below where the simulator's arithmetic would lose meaning.
constexpr double kMaxLayers = 10000;          // deepest published transformers have ~100-200 layers
constexpr double kMaxWidth = 1e7;             // d_model / d_ff: the largest published are 18432 / 73728 (PaLM)
constexpr double kMaxHeads = 1e5;             // 128 (LaMDA); the largest published have a few hundred
constexpr double kMaxExperts = 1e7;           // PEER (He 2024) uses 2^20 = 1048576 experts
constexpr double kMaxVocab = 1e8;             // the largest published vocabularies are ~256k
constexpr double kMaxSeqTokens = 1e9;         // the longest published context windows are ~1e7 tokens
constexpr double kMaxTrainingTokens = 1e16;   // 640x the largest published run (Llama 3: 15.6e12 tokens)
constexpr double kMaxTrainingFlops = 1e30;    // 2e4x the largest published runs (~5e25 FLOP)
constexpr double kMaxBatchTokens = 1e11;      // the largest published batches are ~6e7 tokens
constexpr double kMaxDays = 36500;            // 100 years
constexpr double kMaxChips = 1e7;             // 50x the largest clusters built (~2e5 GPUs)
constexpr double kMaxChipPowerW = 1e5;        // 100 kW per chip: 35x a GB200 superchip's 2.7 kW
constexpr double kMaxPue = 10;                // operating datacenters report 1.05-2.5
constexpr double kMaxKgco2ePerKwh = 5;        // the most carbon-intensive grids are ~1 kg/kWh (lignite ~1.2)
constexpr double kMaxLinkGbps = 1e7;          // 10 Pbit/s per link: 700x NVLink 5's 14.4 Tbit/s per GPU
constexpr double kMaxLatencyS = 100;          // 100 s per hop: the Earth-Moon one-way delay is 1.3 s

std::vector<FieldSpec> build_table() {
  return {
      F("name", T::string).required().help("Scenario name, used in reports and the run store."),
      F("description", T::string).def("").help("Free text: what the scenario represents, its sources and derivations."),
      F("seed", T::integer).def(1).min(0).help("Seed of every random draw (routing). Same scenario + seed = same numbers."),

      F("model", T::section).required().help("The model: a (Mixture-of-Experts) transformer."),
      F("model.type", T::choice).def("moe_transformer").choices({"moe_transformer"})
          .help("Model family (registry name). Dense transformers are moe_transformer with experts: 0."),
      F("model.architecture", T::choice).def("decoder_only").choices({"decoder_only", "encoder_decoder"})
          .help("Layer stack: decoder-only (GPT style) or encoder-decoder (T5 style, decoder has cross-attention)."),
      F("model.layers", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").unit("layers").min(1)
          .help("Decoder-only: number of transformer layers. Not used for encoder_decoder."),
      F("model.encoder_layers", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").unit("layers").min(0)
          .help("Encoder-decoder: encoder layers."),
      F("model.decoder_layers", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").unit("layers").min(1)
          .help("Encoder-decoder: decoder layers."),
      F("model.d_model", T::integer).max(kMaxWidth, "the largest published widths are 18432 (d_model) and 73728 (d_ff), PaLM").required().min(1).help("Hidden size."),
      F("model.d_ff", T::integer).max(kMaxWidth, "the largest published widths are 18432 (d_model) and 73728 (d_ff), PaLM").required().min(1).help("Dense FFN hidden size."),
      F("model.expert_d_ff", T::integer).max(kMaxWidth, "the largest published widths are 18432 (d_model) and 73728 (d_ff), PaLM").min(1).derived("model.d_ff").help("Expert FFN hidden size."),
      F("model.heads", T::integer).max(kMaxHeads, "the largest published models have a few hundred heads of at most 256").required().min(1).help("Attention heads."),
      F("model.d_head", T::integer).max(kMaxHeads, "the largest published models have a few hundred heads of at most 256").min(1).derived("model.d_model / model.heads").help("Size of one attention head."),
      F("model.experts", T::integer).max(kMaxExperts, "PEER (He 2024) routes over 2^20 experts, the most published").def(0).min(0).help("Experts per MoE layer; 0 = dense model."),
      F("model.moe_every", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").def(1).min(1)
          .help("Every n-th FFN is an MoE layer (1 = all, 2 = every other), in the encoder and the decoder."),
      F("model.top_k", T::integer).max(kMaxExperts, "PEER (He 2024) routes over 2^20 experts, the most published").def(1).min(1).help("Experts each token is routed to."),
      F("model.capacity_factor", T::number).max(1e4, "beyond experts / top_k every token fits; use routing.dropless").def(1.25).min(0.0, true)
          .help("Expert capacity per routing group = ceil(capacity_factor x top_k x group tokens / experts) (or "
                "Mesh-TensorFlow's floor(capacity_factor x group tokens / experts), routing.capacity_counts_top_k); "
                "assignments beyond it are dropped (unless routing.dropless). 1.0 = exactly a balanced load."),
      F("model.vocab", T::integer).max(kMaxVocab, "the largest published vocabularies are about 256k tokens").required().min(1).unit("tokens").help("Vocabulary size (output softmax)."),
      F("model.seq_len", T::integer).max(kMaxSeqTokens, "the longest published context windows are about 1e7 tokens").required().min(1).unit("tokens")
          .help("Sequence length (encoder input length for encoder_decoder)."),
      F("model.target_seq_len", T::integer).max(kMaxSeqTokens, "the longest published context windows are about 1e7 tokens").min(1).unit("tokens").derived("model.seq_len")
          .help("Encoder-decoder: decoder (target) sequence length."),
      F("model.dtype", T::choice).def("bf16").choices({"fp32", "bf16", "fp16", "fp8"})
          .help("Dtype of weights and activations. On TPUs fp32 matmuls run as bf16 MXU passes (XLA default precision); "
                "fp8 (e4m3 weights and activations, as TensorRT-LLM and vLLM serve) needs an accelerator with an fp8 peak. "
                "Training with fp8 runs the GEMMs at the fp8 rate but holds bf16 weights with fp32 master copies and "
                "gradients as a bf16 model's (training.grad_dtype), as NVIDIA Transformer Engine and DeepSeek-V3 "
                "(arXiv 2412.19437, section 3.3) train: fp8 is only the GEMMs' input format. A GEMM's input is stored for the "
                "backward as its fp8 cast (1 byte); its other activations (layer norms, attention core, activation "
                "functions, router, residual stream) are bf16, stored so, written by the elementwise kernels so and sent "
                "between devices so (tensor-parallel collectives, pipeline sends, the MoE combine), except the MoE "
                "dispatch all-to-all, quantised to fp8 before it is sent (DeepSeek-V3 section 3.3.3)."),
      F("model.activation", T::choice).def("gelu").choices({"relu", "gelu", "swiglu", "geglu"})
          .help("FFN activation; swiglu/geglu are gated (three weight matrices)."),
      F("model.kv_heads", T::integer).max(kMaxHeads, "the largest published models have a few hundred heads of at most 256").min(1).derived("model.heads")
          .help("Key/value heads: fewer than heads is grouped-query attention (GQA), 1 is multi-query (MQA). Sets the "
                "K/V projections and the KV cache size."),
      F("model.shared_experts", T::integer).max(kMaxExperts, "PEER (He 2024) routes over 2^20 experts, the most published").def(0).min(0)
          .help("Shared experts per MoE layer that every token passes through besides its top_k routed experts "
                "(DeepSeek-MoE), each of expert_d_ff. Training splits them over the tensor ranks like the dense FFN "
                "and reduces their gradients with the dense parameters'."),
      F("model.first_dense_layers", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").def(0).min(0).unit("layers")
          .help("The first n layers of each stack have a dense FFN of d_ff whatever moe_every says (DeepSeek-V2/V3, "
                "first_k_dense_replace)."),
      F("model.mtp_depth", T::integer).max(kMaxLayers, "the deepest published transformers have about 100-200 layers").def(0).min(0)
          .unit("modules")
          .help("Multi-token prediction (DeepSeek-V3, arXiv 2412.19437 section 2.2; D = 1 there): D sequential modules "
                "after the last layer, module k predicting the token k + 1 ahead. Each has the embedding of that token "
                "(the shared embedding), two RMSNorms, a projection of the concatenation [2 d_model -> d_model], one "
                "transformer block (an MoE block when the model's last layer is one) and the shared output head with its "
                "cross-entropy. Training only, decoder-only models: they run on the stage that holds the output head "
                "(its weights and activations counted there); serving drops them, as DeepSeek-V3's inference does. "
                "0: none."),
      F("model.mla", T::section).help("Multi-head latent attention (DeepSeek-V2/V3), training and serving, decoder-only models. "
                                      "Its down-projections are replicated on every tensor rank. Absent = standard attention."),
      F("model.mla.kv_lora_rank", T::integer).max(kMaxWidth, "DeepSeek-V3 uses 512, 64 and 1536").required().min(1)
          .help("Rank of the compressed key/value latent: the KV cache keeps this many values per token and layer."),
      F("model.mla.qk_rope_head_dim", T::integer).max(kMaxWidth, "DeepSeek-V3 uses 512, 64 and 1536").def(64).min(0)
          .help("Decoupled RoPE key dimension, cached per token and layer beside the latent (DeepSeek-V2: 64)."),
      F("model.mla.q_lora_rank", T::integer).max(kMaxWidth, "DeepSeek-V3 uses 512, 64 and 1536").def(0).min(0)
          .help("Rank of the query compression; 0 = queries projected directly from d_model."),

      F("training", T::section).help("The training run. A scenario has either `training` or `serving`."),
      F("training.tokens", T::number).max(kMaxTrainingTokens, "640x the largest published run, Llama 3 on 15.6e12 tokens").min(0.0, true).unit("tokens")
          .help("Tokens to train on (encoder input tokens for encoder_decoder). Give this or training.hardware_flops."),
      F("training.hardware_flops", T::number).max(kMaxTrainingFlops, "2e4x the largest published runs, about 5e25 FLOP").min(0.0, true).unit("FLOP")
          .help("The run's compute as executed on the hardware (e.g. a published total like Patterson et al.'s, which is "
                "achieved FLOP/s x time): the tokens are derived as this / the simulated hardware FLOPs per token. "
                "Give this or training.tokens."),
      F("training.batch_tokens", T::number).max(kMaxBatchTokens, "the largest published batches are about 6e7 tokens").required().min(0.0, true).unit("tokens")
          .help("Tokens per optimizer step (global batch)."),
      F("training.optimizer", T::choice).def("adam").choices({"adam", "adamw", "adafactor", "sgd"})
          .help("Optimizer: decides optimizer-state memory and update cost."),
      F("training.rematerialization", T::choice).def("auto").choices({"auto", "none", "selective", "full"})
          .help("Recompute activations in the backward pass. none: keep every activation; selective: drop and recompute "
                "only the attention core (QK^T, softmax, dropout, attention over V: its 5as^2b bytes per layer dominate the "
                "activations of long sequences and cost few FLOPs; Korthikanti et al. 2022, arXiv 2205.05198, section 5); "
                "full: keep each layer's input and recompute the layer's forward in the backward pass; auto: the first of "
                "none, selective and full whose memory fits in the device."),
      F("training.recompute_modules", T::string)
          .help("What selective recomputation (rematerialization: selective, or auto when it picks selective) drops after "
                "the forward and recomputes before the backward, comma-separated (Megatron-Core's --recompute-modules): "
                "core_attn, the attention core (its scores and probabilities; nothing with attention_kernel: fused, "
                "which stores none); layernorm, the two layer norms' outputs (their inputs stay stored); mla_up_proj, "
                "multi-head latent attention's up-projected queries, keys and values (the latents stay stored; "
                "DeepSeek-V3 section 3.3.3 recomputes the RMSNorms and these); moe_act, the routed experts' "
                "activation-function outputs. Each costs its forward kernels again before the layer's backward. Unset: "
                "core_attn (with rematerialization selective or auto)."),
      F("training.duration_days", T::number).max(kMaxDays, "100 years").min(0.0, true).unit("days")
          .help("Pins the job length (energy accounting with a published training time); otherwise simulated. Energy drawn "
                "per second (chips, idle links) scales with it; energy per bit moved (the WAN) follows the job's steps and "
                "their bytes, which it does not change."),
      F("training.steps_simulated", T::integer).def(3).min(1).max(100)
          .help("Steps simulated in detail (independent routing draws); the job is extrapolated from their mean."),
      F("training.attention_dropout", T::number).def(0.0).min(0.0).max(0.9, "a dropout probability above 0.9 would drop nearly every attention weight")
          .help("Dropout probability on the attention probabilities, run as its own kernel over the materialised "
                "[heads, sequence, sequence] matrix: it reads the probabilities and writes the dropped-out copy and a "
                "one-byte mask (the backward reads the gradient and the mask and writes the gradient), and with "
                "selective recomputation is recomputed with the attention core. Megatron-LM before FlashAttention "
                "(CoreAttention applies torch dropout to the softmax output; --attention-dropout defaults to 0.1) stores "
                "exactly these, the softmax output, mask and dropout output of Korthikanti et al. 2022 (arXiv 2205.05198) "
                "section 4.1's 5as^2b bytes per layer. The cost does not depend on the probability, only on it being "
                "above 0. 0: no attention dropout, or one fused into the softmax (XLA on TPUs) with nothing stored."),
      F("training.attention_kernel", T::choice).def("materialized").choices({"materialized", "fused"})
          .help("How the attention core (scores, softmax, values) runs. materialized: batched GEMMs and a softmax kernel "
                "over [heads, sequence, sequence] scores written to memory, the probabilities stored for the backward "
                "(Megatron-LM's CoreAttention before FlashAttention, XLA's einsums; Korthikanti et al. 2022's 5as^2b "
                "bytes per layer; selective recomputation drops them). fused: FlashAttention (Dao et al. 2022, arXiv "
                "2205.14135; FlashAttention-2, Dao 2023, arXiv 2307.08691), one kernel per pass that keeps the scores "
                "in on-chip memory: nothing of size sequence^2 reaches HBM or is stored (the output and a log-sum-exp "
                "per query row are), dropout is applied inside the kernel, causal masks skip the masked tiles (half "
                "the pairs, so the FLOPs executed, HFU, can fall below the model FLOPs, MFU, which count every pair as "
                "Narayanan et al. 2021 do), and the backward recomputes the scores (five products of the forward's two); it runs at "
                "the prefill_attention efficiency (profiles/efficiency.yaml). What GPU training since 2023 uses "
                "(Megatron-LM --use-flash-attn, Transformer Engine's fused attention); selective recomputation then "
                "has nothing to recompute."),
      F("training.grad_dtype", T::choice).def("auto").choices({"auto", "model", "fp32"})
          .help("Element type of the gradients: the buffers the backward accumulates the weight gradients into (kept "
                "in device memory), the data-parallel all-reduce or reduce-scatter, and what the optimizer step reads. "
                "model: the dtype training holds the weights in (the model's; bf16 for an fp8 model, whose weights are "
                "bf16); fp32: 4 bytes (the all-reduce carries twice a 16-bit model's bytes); auto: "
                "fp32 for a bf16 or fp8 model on GPUs, as Megatron-LM does (--bf16 turns on "
                "--accumulate-allreduce-grads-in-fp32: bf16's 8-bit mantissa loses small gradient contributions when "
                "summed; its fp8 training keeps the same fp32 gradient buffers), otherwise the weights' dtype (fp16 runs "
                "keep fp16 gradients by default in Megatron-LM; on TPUs the compiled step's gradients take the model's "
                "dtype)."),
      F("training.overlap_grad_reduce", T::boolean).def(true)
          .help("Gradient all-reduce overlaps the backward pass (bucketed), as DDP/XLA do."),

      F("routing", T::section).def(json::object()).help("Token-to-expert distribution of the router."),
      F("routing.type", T::choice).def("uniform").choices({"uniform", "zipf", "load_vector", "task"})
          .help("uniform: balanced router; zipf: expert popularity ~ 1/rank^skew (ranks shuffled per layer); "
                "load_vector: given relative loads; task: Task-MoE (Kudugunta et al. 2021), every token of a task goes to "
                "that task's top_k experts (chosen per layer with the seed); tasks drawn uniformly, or, with a request trace "
                "that has a task column, in the trace's proportions (serving iteration costs are memoised by batch shape, "
                "so every batch routes with the trace's overall task frequencies, not its own requests' tasks)."),
      F("routing.skew", T::number).max(100, "at skew 100 every token already goes to the most popular expert").def(0.0).min(0.0)
          .help("Zipf exponent (routing.type zipf); 0 = uniform. The same convention as aiconfigurator's power-law alpha: "
                "expert of popularity rank r draws in proportion to 1/r^skew (alpha ~1.01 observed for DeepSeek-V3)."),
      F("routing.tasks", T::integer).max(1e7, "one task per expert group; Task-MoE used 200").min(1)
          .help("routing.type task: the number of tasks (e.g. language pairs)."),
      F("routing.load", T::number_list).max(1e15, "loads are relative; scale them down").help("Relative load of each expert (routing.type load_vector); length = experts."),
      F("routing.group_size_tokens", T::integer).max(kMaxBatchTokens, "a group is at most a step's batch; the largest published are about 6e7 tokens").def(0).min(0).unit("tokens")
          .help("Tokens per routing group (capacity is per group); 0 = the tokens of one device per step. With "
                "routing.group_split mesh_tensorflow: the largest group size (Mesh-TensorFlow's moe_group_size, 1024 by "
                "default in transformer/moe.py)."),
      F("routing.group_split", T::choice).def("fixed").choices({"fixed", "mesh_tensorflow"})
          .help("fixed: groups of group_size_tokens, as many as fit the device's tokens of an MoE layer (rounded). "
                "mesh_tensorflow: Mesh-TensorFlow's _split_into_groups (transformer/moe.py): over the n tokens of one "
                "expert replica (a device's tokens x parallelism.expert), the fewest groups, at least n / "
                "group_size_tokens (floored), that are a multiple of parallelism.expert and divide n; so groups can be "
                "smaller than group_size_tokens (e.g. 3648 tokens a device over 64 devices: 4 groups of 912)."),
      F("routing.capacity_counts_top_k", T::boolean).def(true)
          .help("true: capacity = ceil(cf x top_k x S / E) (GShard's 2N/E for top-2 is cf 1.0); false: Mesh-TensorFlow's "
                "floor(cf x S / E), which Switch and ST-MoE used (tensorflow/mesh transformer/moe.py)."),
      F("routing.min_expert_capacity", T::integer).max(kMaxBatchTokens, "a capacity is at most a step's batch").def(0).min(0)
          .help("Lower bound on the per-group expert capacity (Mesh-TensorFlow's moe_min_expert_capacity defaults to 4)."),
      F("routing.dropless", T::boolean).def(false)
          .help("No capacity limit: experts take every token routed to them (MegaBlocks style); nothing dropped."),
      F("routing.max_nodes", T::integer).max(kMaxChips, "at most the nodes of the expert-parallel group").min(1)
          .help("Node-limited routing (DeepSeek-V3, arXiv 2412.19437 section 2.1.2: M = 4): each token's experts lie on at "
                "most this many NVLink nodes, so a per-node dispatch (parallelism.expert_dispatch: per_node, required) "
                "sends it over the network to at most this many nodes. Unset: no limit."),
      F("routing.second_expert_policy", T::choice).def("all").choices({"all", "none", "threshold", "random"})
          .help("Top-2 gating: whether a token's second-choice expert is used, as Mesh-TensorFlow's moe_second_policy "
                "(transformer/moe.py, _top_2_gating) and lingvo's second_expert_policy (core/gshard_layers.py, "
                "Top2GatingOnLogits) define it, with g2 = routing.second_gate: all = always; none = never; threshold = if "
                "g2 > second_expert_threshold; random = with probability min(1, g2 / second_expert_threshold) (Mesh-TF's "
                "default, threshold 0.2; GShard's Algorithm 1 dispatches with probability 2 x g2, i.e. random with threshold "
                "0.5). In both codes every first choice of a group is placed before any second choice, and second choices "
                "take the capacity left after the expert's kept first choices (first-choice priority); second choices the "
                "policy does not use are not dispatched (not counted as dropped). Only for model.top_k 2."),
      F("routing.second_expert_threshold", T::number).min(0.0, true).max(1.0)
          .help("The threshold of second_expert_policy threshold or random (Mesh-TensorFlow moe_second_threshold_train: "
                "0.2; GShard Algorithm 1: 0.5). Required by those policies, not used by the others."),
      F("routing.second_gate", T::number).def(0.5).min(0.0).max(0.5)
          .help("The second gate of every token normalised by the top two, g2 / (g1 + g2) (0 to 0.5), which the threshold "
                "and random policies compare with the threshold. A property of a trained router that moesim's random "
                "router does not model and the papers do not publish: 0.5 (g1 = g2) is the value of a router with no "
                "preference between its two choices, as moesim's router draws them, and the upper bound (every policy but "
                "none then uses every second choice). Set it to study a trained router's gates; not used by all and none."),

      F("parallelism", T::string_or_section).def(json::object())
          .help("How the model is split. data x expert x tensor x pipeline = devices. The dense part is "
                "data-parallel over data x expert; experts are sharded over `expert` and replicated over `data`. "
                "`parallelism: auto` leaves the layout to the planner: `moesim plan FILE` enumerates every valid "
                "(data, expert, tensor, pipeline, micro-batches, ZeRO stage, pipeline schedule) layout, prunes those that do not fit in "
                "memory, simulates the rest as a sweep and ranks them; `moesim run` refuses `auto` (it needs one "
                "layout: copy the plan's best into this section)."),
      F("parallelism.data", T::integer).max(kMaxChips, "at most cluster.count devices").def(1).min(1).help("Data-parallel degree (replicas of the experts)."),
      F("parallelism.expert", T::integer).max(kMaxChips, "at most cluster.count devices").def(1).min(1).help("Expert-parallel degree (all-to-all group size)."),
      F("parallelism.tensor", T::integer).max(kMaxChips, "at most cluster.count devices").def(1).min(1).help("Tensor (Megatron) parallel degree."),
      F("parallelism.pipeline", T::integer).max(kMaxChips, "at most cluster.count devices").def(1).min(1).help("Pipeline stages."),
      F("parallelism.microbatches", T::integer).max(1e7, "1F1B needs one sequence per micro-batch at least").def(1).min(1)
          .help("Micro-batches per step per pipeline (1F1B schedule)."),
      F("parallelism.schedule", T::choice).def("1f1b").choices({"1f1b", "interleaved_1f1b", "dualpipev", "dualpipe"})
          .help("Pipeline schedule. 1f1b: one forward, one backward (PipeDream-Flush / Megatron-LM, Narayanan et al. "
                "2021), one model chunk per stage. interleaved_1f1b: Megatron-LM's interleaved 1F1B, "
                "parallelism.virtual_stages (2 or more) chunks per stage; given virtual_stages > 1 the schedule is "
                "interleaved_1f1b whether named or not. dualpipev: DualPipeV (deepseek-ai/DualPipe; the \"cut-in-half\" "
                "of DeepSeek-V3's DualPipe, arXiv 2412.19437 section 3.2.1): two chunks per stage in a V, stage s holding "
                "virtual stages s and 2P - 1 - s, so a micro-batch runs down the stages and back and stage 0 holds the "
                "embedding and the output head. Each stage runs the eight steps of dualpipev.py, with its zero-bubble backwards "
                "(input gradients only, the weight gradients in later W steps: Qi et al. 2024), so the bubble is "
                "DualPipe's (PP/2 - 1)(F&B + B - 3W) with PP = 2P half-size stages; with "
                "parallelism.overlap_expert_comm its forward-backward pairs (F&B) overlap one's all-to-alls with the "
                "other's compute. Needs pipeline > 1, micro-batches at least 2 x pipeline and at least 2 x pipeline "
                "layers; virtual_stages is 2 (set it or leave it out). dualpipe: DualPipe itself, as DeepSeek-V3 trained "
                "(dualpipe.py): half the micro-batches fed at stage 0, half at stage P - 1, each direction running the whole "
                "model over the P stages, so stage s holds stage s of one and P - 1 - s of the other (two copies of the "
                "model: twice the parameters, gradients and optimizer state per GPU, and the two copies' gradients "
                "all-reduced between stages s and P - 1 - s each step); each stage runs DualPipeV's order for its half-"
                "stage min(s, P - 1 - s), with the same pairs and zero-bubble steps. Needs an even pipeline, an even number "
                "of micro-batches, at least 2 x pipeline; virtual_stages is 2."),
      F("parallelism.placement", T::string).def("tensor,expert,data,pipeline")
          .help("Order of the parallel axes over consecutive devices, innermost first (comma-separated permutation of "
                "tensor, expert, data, pipeline). Devices fill chips in order and chips fill the torus x first (or "
                "NVLink nodes in order), so the innermost axis gets the nearest chips: the default keeps tensor-parallel "
                "ranks on neighbouring chips / in one node, as Megatron-LM and GSPMD launchers do."),
      F("parallelism.zero_stage", T::integer).def(0).min(0).max(3)
          .help("ZeRO / distributed optimizer (Rajbhandari et al. 2020): 1 shards the optimizer state over the data-parallel "
                "replicas (Megatron-LM's distributed optimizer: the whole gradient buffer accumulates the micro-batches and "
                "is reduce-scattered once per step, the updated parameters all-gathered: the traffic of one all-reduce); "
                "2 also the gradients: a replica keeps only its shard, so each micro-batch's gradients are reduce-scattered "
                "after its backward (as DeepSpeed ZeRO-2 and FSDP do), parallelism.microbatches reduce-scatters per step "
                "and one all-gather (one all-reduce's traffic only with one micro-batch); 3 also the parameters "
                "(FSDP/GSPMD weight sharding: an all-gather per layer in each pass, the next prefetched; gradients "
                "reduce-scattered per micro-batch as with 2)."),
      F("parallelism.virtual_stages", T::integer).def(1).min(1).max(1024, "a chunk holds at least one layer")
          .help("Model chunks per pipeline stage. 1: plain 1F1B. v > 1: Megatron-LM's interleaved 1F1B schedule (Narayanan et "
                "al. 2021, SC'21, section 2.2.2): stage s holds the layer chunks of virtual stages s, s + P, ..., the pipeline "
                "bubble shrinks by v and every micro-batch makes v times as many pipeline sends; stage s keeps the activations "
                "of (2 (P - s - 1) + (v - 1) P + 1) / v micro-batches at its peak (at most M) instead of 1F1B's "
                "min(P - s, M): P + (P - 1) / v at stage 0. Needs pipeline > 1, micro-batches a multiple of "
                "the pipeline stages, and at least one layer per chunk."),
      F("parallelism.first_stage_layers", T::integer).min(1).max(1000000, "at most the model's layers")
          .help("Layers of the first pipeline stage (Megatron-Core's --decoder-first-pipeline-num-layers); the stages "
                "without a count split the remaining layers evenly (floor or ceil each). Unset: the even split. Lets the "
                "stage that also runs the embedding hold fewer layers. Needs pipeline > 1 and one model chunk per stage, "
                "or a DualPipe schedule, where it is the first model chunk's: dualpipev splits the layers over the 2P "
                "chunks of its V (the first and last both on stage 0), dualpipe over each direction's P stages (stage 0 "
                "holds the first chunk of one direction and the last of the other, as stage P - 1 does)."),
      F("parallelism.last_stage_layers", T::integer).min(1).max(1000000, "at most the model's layers")
          .help("Layers of the last pipeline stage (Megatron-Core's --decoder-last-pipeline-num-layers), which also runs "
                "the output head, the loss and any multi-token prediction modules; as first_stage_layers otherwise (with a "
                "DualPipe schedule: the last model chunk's)."),
      F("parallelism.expert_dispatch", T::choice).def("all_to_all").choices({"all_to_all", "per_node"})
          .help("How the expert all-to-all crosses GPU nodes. all_to_all: one network copy per (token, expert), as NCCL's "
                "all-to-all (Megatron-LM's default dispatcher). per_node: DeepEP's dispatch (DeepSeek-V3, arXiv 2412.19437 "
                "section 3.2.2): a token crosses the network once per node holding its experts, to the GPU of its own "
                "in-node index there, which forwards it over NVLink; the network bytes fall to the expected number of "
                "distinct remote nodes per token over the remote copies (system/collectives.hpp, "
                "per_node_network_fraction). GPUs only."),
      F("parallelism.overlap_expert_comm", T::boolean).def(false)
          .help("Overlap the expert all-to-alls with another micro-batch's compute: Megatron-Core's combined 1F1B "
                "(--overlap-moe-expert-parallel-comm), the 1F1B form of DualPipe's forward-backward chunk overlap "
                "(DeepSeek-V3, arXiv 2412.19437 section 3.2.1). Each stage runs one more warm-up forward (one more "
                "micro-batch of activations held), then pairs each steady-state forward with the backward after it; the "
                "pair's compute phases alternate between the two micro-batches, one at a time, so one's all-to-all (and "
                "every other collective) runs while the other computes, the collectives one at a time too. While a pair "
                "runs, its compute has the accelerator's SMs less parallelism.comm_sms. GPUs, MoE models with expert > 1 and "
                "zero_stage below 3; with pipeline > 1 the interleaved schedule (virtual_stages 2 or more), as Megatron-Core "
                "requires (in plain 1F1B a stage's pair would wait, through the next stage, for its own previous pair), or "
                "schedule dualpipev or dualpipe, whose own forward-backward pairs are overlapped instead (no extra warm-up "
                "forward)."),
      F("parallelism.comm_sms", T::integer).min(1).max(1024)
          .help("SMs the communication kernels hold while an overlapped pair runs (parallelism.overlap_expert_comm): "
                "DeepSeek-V3 gives 20 of the H800's 132 to DeepEP's dispatch and combine (arXiv 2412.19437 section 3.2.2). "
                "The pair's compute runs sm_count / (sm_count - comm_sms) times longer (profiles/accelerators: sm_count). "
                "Must be below the accelerator's sm_count. Unset: 20 with the overlap."),
      F("parallelism.overlap_shared_experts", T::boolean).def(false)
          .help("Training: compute the shared experts (model.shared_experts) beside the dispatch all-to-all, as Megatron-Core's "
                "--moe-shared-expert-overlap does: they need only the layer's input, so their kernels (and their tensor-"
                "parallel collectives) run on a branch while the tokens travel, and the routed experts start when both "
                "are done; otherwise they run after the combine. Needs shared experts; not with overlap_expert_comm "
                "(Megatron-Core refuses the two together: the paired micro-batch already fills the all-to-all)."),
      F("parallelism.overlap_tensor_comm", T::boolean).def(false)
          .help("Training, with sequence_parallel: run each tensor-parallel all-gather and reduce-scatter of an attention or "
                "dense FFN block beside the GEMM that consumes or produces its tensor, decomposed into chunks: Transformer "
                "Engine's userbuffers (Megatron-LM --tp-comm-overlap; its default layout overlaps the all-gather with the "
                "QKV and FC1 GEMMs, the reduce-scatter with the projection and FC2 GEMMs, and the backward's gathers and "
                "reduce-scatter with the data- and weight-gradient GEMMs), or XLA's collective matmul on TPUs (Wang et al., "
                "ASPLOS 2023). Per block: the input all-gather (in the backward with the input re-gather) beside the first "
                "GEMMs (QKV, or MLA's down-projections, or FC1), the output reduce-scatter beside the last (the attention "
                "output projection, or FC2); 1/tensor of each collective stays exposed (the pipeline's first or last "
                "chunk). On GPUs every overlapped GEMM but the forward's all-gather ones runs on 16 fewer SMs (Transformer "
                "Engine's default num_sm for its pipelined and bulk overlaps; the ring-exchange all-gathers use copy "
                "engines). MoE expert tensor parallelism, the embedding and the output head keep their collectives in "
                "turn. Not with overlap_expert_comm, whose paired micro-batches already hide every collective."),
      F("parallelism.sequence_parallel", T::boolean).def(false)
          .help("Megatron sequence parallelism (Korthikanti et al. 2022, arXiv 2205.05198, section 4.2.2; needs tensor > 1): "
                "layer norms, dropouts and residual adds run on 1/tensor of the sequence, so their activations are sharded "
                "over the tensor ranks, and each tensor-parallel all-reduce becomes a reduce-scatter after the block and an "
                "all-gather before the next (the same bytes on the links); the backward also all-gathers each block's input again "
                "for its weight gradients, since only the rank's 1/tensor of it is stored (Megatron-LM does the same). In MoE layers each tensor rank routes, "
                "dispatches and combines its own 1/tensor of the tokens (Megatron-Core's MoE with tensor, expert and "
                "sequence parallelism; GSPMD's 2D sharding), so routing groups come from that shard; without it every "
                "tensor rank routes all of its stage's tokens and sends its 1/tensor share. With expert parallelism and "
                "zero_stage 3 this is GSPMD's 2D layout (scenarios/examples/tpu-v4-glam-2d-sharding.yaml)."),

      F("serving", T::section)
          .help("Serve the model instead of training it: request arrivals, replicas, batching scheduler, KV cache and "
                "latency targets. A scenario has either `training` or `serving`."),
      F("serving.arrival", T::section).required().help("How requests arrive."),
      F("serving.arrival.type", T::choice).def("poisson").choices({"poisson", "gamma", "constant", "bursts", "offline", "trace"})
          .help("poisson: exponential gaps at rate_per_s (MLPerf server); gamma: gamma gaps with coefficient of variation cv; "
                "constant: evenly spaced; bursts: burst_size requests together, bursts at rate_per_s / burst_size; "
                "offline: every request at time 0 (MLPerf offline); trace: arrival times (and lengths) from trace_csv."),
      F("serving.arrival.rate_per_s", T::number).min(0.0, true).max(1e7).unit("requests/s")
          .help("Mean arrival rate (poisson, gamma, constant, bursts)."),
      F("serving.arrival.cv", T::number).def(1.0).min(0.0, true).max(100.0)
          .help("gamma: coefficient of variation of the gaps (1 = Poisson, > 1 burstier)."),
      F("serving.arrival.burst_size", T::integer).def(1).min(1).max(1000000).unit("requests")
          .help("bursts: requests arriving together."),
      F("serving.arrival.trace_csv", T::string)
          .help("trace: CSV with header arrival_s,prompt_tokens,output_tokens[,task], arrival times ascending (seconds from "
                "the start); relative paths are resolved against the scenario file. Blank lines and lines starting with # "
                "(after blanks) are skipped; a UTF-8 byte order mark is ignored. task (0 .. routing.tasks - 1, routing.type "
                "task only): the router's task mix is the served requests' task frequencies (a statistical mix over all "
                "batches, not per batch); with serving.task_experts_only every request must be of one task."),
      F("serving.prompt_length", T::section).required().help("Prompt (input) length of a request."),
      F("serving.prompt_length.type", T::choice).def("fixed").choices({"fixed", "uniform", "lognormal", "trace"})
          .help("fixed: value; uniform: integers in [min, max]; lognormal: mean and sigma (of ln tokens), clamped to "
                "[min, max]; trace: from the arrival trace."),
      F("serving.prompt_length.value", T::integer).min(1.0).max(1e7).unit("tokens").help("fixed: the length."),
      F("serving.prompt_length.min", T::integer).def(1).min(1.0).max(1e7).unit("tokens").help("uniform / lognormal: lower bound."),
      F("serving.prompt_length.max", T::integer).min(1.0).max(1e7).unit("tokens").help("uniform / lognormal: upper bound. A prompt's and its output's maxima must fit model.seq_len together; a lognormal without a max is cut at what the other length leaves of it."),
      F("serving.prompt_length.mean", T::number).min(1.0).max(1e7).unit("tokens").help("lognormal: mean length."),
      F("serving.prompt_length.sigma", T::number).min(0.0).max(5.0).help("lognormal: standard deviation of ln(length)."),
      F("serving.output_length", T::section).required().help("Output (generated) length of a request, same keys as prompt_length."),
      F("serving.output_length.type", T::choice).def("fixed").choices({"fixed", "uniform", "lognormal", "trace"})
          .help("As serving.prompt_length.type."),
      F("serving.output_length.value", T::integer).min(1.0).max(1e7).unit("tokens").help("fixed: the length."),
      F("serving.output_length.min", T::integer).def(1).min(1.0).max(1e7).unit("tokens").help("uniform / lognormal: lower bound."),
      F("serving.output_length.max", T::integer).min(1.0).max(1e7).unit("tokens").help("uniform / lognormal: upper bound. A prompt's and its output's maxima must fit model.seq_len together; a lognormal without a max is cut at what the other length leaves of it."),
      F("serving.output_length.mean", T::number).min(1.0).max(1e7).unit("tokens").help("lognormal: mean length."),
      F("serving.output_length.sigma", T::number).min(0.0).max(5.0).help("lognormal: standard deviation of ln(length)."),
      F("serving.requests", T::integer).min(1).max(1e9).unit("requests")
          .help("Requests to send (with duration_s, whichever ends first). Give requests, duration_s or both. The "
                "metrics are measured from the warm-up's end to the end of the arrivals (duration_s, or the last arrival "
                "when the count ends them first); when every request arrives at one instant and no duration_s ends "
                "them, as in an offline run, to the last completion."),
      F("serving.duration_s", T::number).min(0.0, true).max(3.2e7).unit("s")
          .help("Send requests for this long (simulated seconds); the engine then drains what is in flight."),
      F("serving.warmup_s", T::number).def(0.0).min(0.0).max(3.2e7).unit("s")
          .help("Requests arriving before this are simulated but excluded from the per-request metrics (latencies, goodput, "
                "the served fraction). Throughput and energy are the server's over the window from here: the tokens "
                "generated and the requests finishing in it count, whenever they arrived, and its joules."),
      F("serving.pools", T::section_list).required()
          .help("Pools of identical replicas: one `colocated` pool, or a `prefill` and a `decode` pool (disaggregated, "
                "Splitwise/DistServe: each request's KV cache travels from its prefill to its decode replica over the network). "
                "`moesim plan FILE` tries every split of one colocated pool over the cluster (replicas, data, tensor, "
                "expert, pipeline), at the scenario's load or with --max-rate by capacity, and ranks them."),
      F("serving.pools[].role", T::choice).def("colocated").choices({"colocated", "prefill", "decode"})
          .help("colocated: prefill and decode on the same replica; prefill / decode: disaggregated pools."),
      F("serving.pools[].replicas", T::integer).def(1).min(1).max(1000000).help("Replicas in the pool."),
      F("serving.pools[].data", T::integer).def(1).min(1).max(1000000)
          .help("Data-parallel attention ranks of one replica: each holds its own sequences (SGLang/vLLM DP attention). "
                "A replica is data x tensor x pipeline devices."),
      F("serving.pools[].tensor", T::integer).def(1).min(1).max(1000000)
          .help("Tensor-parallel degree of attention and dense layers (and of the experts when expert is 1)."),
      F("serving.pools[].expert", T::integer).def(1).min(1).max(1000000)
          .help("Expert parallelism: 1 = every tensor group holds every expert, tensor-split; data x tensor = whole experts "
                "spread over all ranks of a stage, tokens exchanged by all-to-all (vLLM/SGLang expert parallel)."),
      F("serving.pools[].pipeline", T::integer).def(1).min(1).max(1000000)
          .help("Pipeline stages of one replica (an iteration passes the stages in turn; no overlap of iterations)."),
      F("serving.pools[].datacenter", T::string).def("")
          .help("A datacenter of `placement` holding every replica of this pool; empty = replicas spread by the placement shares. "
                "With a pinned pool each placement[].share must be the fraction of the chips placed in its datacenter; "
                "leave the shares out to have them derived from the pinned pools."),
      F("serving.router", T::section).def(json::object()).help("The global router that sends each request to a replica."),
      F("serving.router.type", T::choice).def("round_robin").choices({"round_robin", "least_outstanding", "least_kv"})
          .help("round_robin; least_outstanding: fewest requests queued or running; least_kv: lowest KV-cache use."),
      F("serving.scheduler", T::section).def(json::object()).help("The batching scheduler of every replica."),
      F("serving.scheduler.type", T::choice).def("continuous").choices({"static", "continuous", "chunked_prefill"})
          .help("static: FasterTransformer request-level batches (a batch runs until its longest request ends); continuous: "
                "Orca/vLLM iteration-level batching; chunked_prefill: Sarathi-Serve, decodes first, then prompt chunks up "
                "to chunk_tokens per iteration."),
      F("serving.scheduler.max_sequences", T::integer).def(256).min(1).max(10000000)
          .help("Most sequences in a batch (vLLM max_num_seqs, TensorRT-LLM max_batch_size)."),
      F("serving.scheduler.max_batched_tokens", T::integer).def(8192).min(1).max(100000000).unit("tokens")
          .help("Most tokens computed in one iteration, prefill + decode (vLLM max_num_batched_tokens, TensorRT-LLM max_num_tokens). "
                "continuous: bounds each iteration; chunked_prefill: caps chunk_tokens; static: bounds each prompt only "
                "(FasterTransformer batches by count: max_sequences and the KV cache bound a static batch, whose prefill "
                "the activation workspace holds: max_sequences, or the requests if fewer, x the longest prompt)."),
      F("serving.scheduler.chunk_tokens", T::integer).def(512).min(1).max(100000000).unit("tokens")
          .help("chunked_prefill: token budget of an iteration (decodes count one each; the rest goes to prompt chunks)."),
      F("serving.scheduler.prefill_mode", T::choice).def("mixed").choices({"mixed", "separate"})
          .help("continuous: mixed = new prompts join the decoding batch in the same iteration (Orca, TensorRT-LLM in-flight "
                "batching); separate = prefill-only iterations take priority (vLLM v0)."),
      F("serving.scheduler.iteration_overhead_ms", T::number).def(0.0).min(0.0).max(10000.0).unit("ms", kMillisecondToSecond)
          .help("Host time per iteration during which the replica's devices wait: scheduling, input preparation, "
                "sampling and kernel-launch gaps that the engine does not overlap with the GPU. 0 (the default) = "
                "overlapped, as in TensorRT-LLM's C++ executor or SGLang's overlap scheduler; published magnitudes "
                "(about 1-4 ms per step for Python engines on H100) are in docs/serving-overheads.md."),
      F("serving.kv_cache", T::section).def(json::object()).help("The paged KV cache of a replica."),
      F("serving.kv_cache.memory_fraction", T::number).def(0.9).min(0.0, true).max(1.0)
          .help("Fraction of device memory the engine may use (vLLM gpu_memory_utilization); the KV cache gets what is left "
                "after weights and the activation workspace."),
      F("serving.kv_cache.memory_fraction_of", T::choice).def("total").choices({"total", "free"})
          .help("total: the fraction is of device memory, weights and workspace come out of it (vLLM "
                "gpu_memory_utilization); free: the fraction is of what weights and workspace leave (TensorRT-LLM "
                "kv_cache_free_gpu_mem_fraction)."),
      F("serving.kv_cache.block_tokens", T::integer).def(16).min(1).max(1000000).unit("tokens")
          .help("Tokens per KV block (vLLM block_size)."),
      F("serving.kv_cache.dtype", T::choice).choices({"fp32", "bf16", "fp16", "fp8"}).derived("model.dtype")
          .help("Dtype of cached keys and values."),
      F("serving.slo", T::section).def(json::object())
          .help("Latency targets: goodput counts requests within both; --max-rate holds their P99 to them."),
      F("serving.slo.ttft_ms", T::number).def(2000.0).min(0.0, true).max(1e9).unit("ms", kMillisecondToSecond)
          .help("Time to first token limit (MLPerf Inference Mixtral-8x7B server: P99 TTFT <= 2 s)."),
      F("serving.slo.tpot_ms", T::number).def(200.0).min(0.0, true).max(1e9).unit("ms", kMillisecondToSecond)
          .help("Time per output token limit (MLPerf Inference Mixtral-8x7B server: P99 TPOT <= 200 ms)."),
      F("serving.task_experts_only", T::boolean).def(false)
          .help("routing.type task: each replica loads only the top_k experts of the task it serves (Task-MoE's extracted "
                "sub-network); requests are all of one task (a trace's task column must name one task). A pool's expert "
                "parallelism must then divide top_k (whole experts per rank)."),
      F("serving.record_requests", T::boolean).def(false)
          .help("Store every measured request's timings (arrival, first token, end, lengths) in the run store; `moesim "
                "runs requests RUN_ID` prints them."),
      F("serving.memo_buckets_per_octave", T::integer).def(32).min(0).max(4096)
          .help("Iteration costs are memoised by shape (tokens, decode batch, KV length) rounded to this many geometric "
                "buckets per doubling; 0 = exact shapes (the unbucketed reference)."),
      F("serving.sample_interval_s", T::number).def(0.0).min(0.0).max(1e6).unit("s")
          .help("Interval of the series (queue, batch, KV use, power; each point the average over its interval); 0 = "
                "400 points over the measured window (offline: 10 ms). An open-loop window is kept a whole number of "
                "intervals (a longer interval is shortened to divide it); an offline run's last point covers what is "
                "left of its window."),

      F("cluster", T::section).required().help("The hardware."),
      F("cluster.accelerator", T::string).required().help("Accelerator name from profiles/accelerators/."),
      F("cluster.count", T::integer).max(kMaxChips, "50x the largest clusters built, about 2e5 GPUs").required().min(1).unit("chips").help("Number of chips."),
      F("cluster.power_limit_w", T::number).max(kMaxChipPowerW, "35x a GB200 superchip's 2.7 kW").min(0.0, true).unit("W")
          .help("GPU board power limit (nvidia-smi -pl; MLPerf's MaxQ systems): each kernel whose power at the nominal "
                "clock exceeds it runs at the lower core clock and voltage that keep it within the limit (dynamic power "
                "~ V^2 f with the voltage lowered with the clock: compute-bound kernels slow as the cube root of the "
                "power they shed, memory-bound ones hardly; perf/power_limit.hpp). Between the accelerator's active and "
                "full power; GPUs only. Unset: the accelerator's own limit (full power)."),
      F("cluster.topology", T::section).def(json::object()).help("Interconnect topology."),
      F("cluster.topology.type", T::choice).def("auto").choices({"auto", "torus_2d", "torus_3d", "nvlink_fat_tree"})
          .help("auto: the accelerator's native fabric (TPU torus, GPU NVLink nodes + fat-tree)."),
      F("cluster.topology.dims", T::integer_list).max(kMaxChips, "their product is cluster.count").unit("chips").derived("near-square factorisation of cluster.count")
          .help("Torus dimensions; their product = cluster.count."),
      F("cluster.topology.gpus_per_node", T::integer).max(1e5, "NVLink domains hold 8-576 GPUs").min(1).derived("the accelerator's gpus_per_node")
          .help("GPUs per NVLink node."),
      F("cluster.topology.nodes_per_leaf", T::integer).max(kMaxChips, "at most cluster.count").def(16).min(1)
          .help("Fat-tree: nodes under one leaf switch group (rail-optimised: one leaf per rail per group)."),
      F("cluster.topology.oversubscription", T::number).max(1e4, "fabrics are built at 1-8").def(1.0).min(1.0)
          .help("Fat-tree: leaf downlink/uplink bandwidth ratio (1 = non-blocking)."),
      F("cluster.topology.link_bandwidth_gbps", T::number).max(kMaxLinkGbps, "700x NVLink 5's 14.4 Tbit/s per GPU").min(0.0, true).unit("Gbit/s", kGbitPerSecondToBytesPerSecond)
          .help("Override of the accelerator's per-link line rate (ICI link or NIC), per direction; on a torus the accelerator's ici_efficiency still applies."),
      F("cluster.topology.link_latency_us", T::number).max(kMaxLatencyS * 1e6, "100 s per hop").min(0.0).unit("us", kMicrosecondToSecond)
          .help("Override of the per-hop latency."),

      F("placement", T::section_list).required()
          .help("Datacenters the chips are in; shares sum to 1."),
      F("placement[].datacenter", T::string_or_section).required()
          .help("A datacenter name from profiles/datacenters/ (`moesim list datacenters`); grid:<key> for any grid zone "
                "(`moesim list grid`), whose PUE is then the industry average 1.56 (Uptime Institute 2024, "
                "profiles/datacenters/grid_zones.yaml); or an inline datacenter with its own pue."),
      F("placement[].datacenter.name", T::string).required().help("Inline datacenter: its name."),
      F("placement[].datacenter.display_name", T::string).def("").help("Inline datacenter: label for reports."),
      F("placement[].datacenter.pue", T::number).max(kMaxPue, "operating datacenters report 1.05-2.5").required().min(1.0).help("Inline datacenter: PUE."),
      F("placement[].datacenter.grid", T::string)
          .help("Inline datacenter: grid intensity key (google/REGION/YEAR, electricity_maps/ZONE/YEAR, ember/CODE)."),
      F("placement[].datacenter.gross_kgco2e_per_kwh", T::number).max(kMaxKgco2ePerKwh, "the most carbon-intensive grids emit about 1 kgCO2e/kWh (lignite about 1.2)").min(0.0).unit("kgCO2e/kWh")
          .help("Inline datacenter: location-based intensity (overrides grid)."),
      F("placement[].datacenter.net_kgco2e_per_kwh", T::number).max(kMaxKgco2ePerKwh, "the most carbon-intensive grids emit about 1 kgCO2e/kWh (lignite about 1.2)").min(0.0).unit("kgCO2e/kWh")
          .help("Inline datacenter: market-based intensity."),
      F("placement[].datacenter.cfe_fraction", T::number).min(0.0).max(1.0)
          .help("Inline datacenter: carbon-free energy share."),
      F("placement[].datacenter.country_iso_code", T::string).def("").help("Inline datacenter: ISO 3166 alpha-3."),
      F("placement[].datacenter.region", T::string).def("").help("Inline datacenter: region label."),
      F("placement[].datacenter.hourly_intensity_csv", T::string).def("")
          .help("Inline datacenter: hourly intensity CSV (utc timestamp, gco2e_per_kwh)."),
      F("placement[].share", T::number).def(1.0).min(0.0, true).max(1.0)
          .help("Fraction of the chips placed here; the shares sum to 1, and each datacenter's GPUs fill whole nodes. "
                "Training: each share is a whole number of units of the `split` dimension. Serving: a pool without a "
                "datacenter spreads its replicas by the shares (a whole number of replicas each); with a pool pinned to a "
                "datacenter (serving.pools[].datacenter) each share must equal the fraction of the chips the pools put in "
                "its datacenter (else an error), and when no share is given they are derived from the pinned pools."),

      F("split", T::choice).def("data").choices({"data", "expert", "pipeline"})
          .help("With several datacenters: which parallel dimension is split between them (data: replicas per "
                "site, gradient all-reduce crosses the WAN; expert: experts per site, all-to-all crosses the WAN; "
                "pipeline: stages per site)."),
      F("wan", T::section).def(json::object()).help("Links between datacenters."),
      F("wan.bandwidth_gbps", T::number).max(kMaxLinkGbps, "10 Pbit/s, beyond any single WAN path built").min(0.0, true).unit("Gbit/s", kGbitPerSecondToBytesPerSecond)
          .help("WAN bandwidth between two sites, per direction. Required with several datacenters."),
      F("wan.latency_ms", T::number).max(kMaxLatencyS * 1e3, "100 s: the Earth-Moon one-way delay is 1.3 s").min(0.0).unit("ms", kMillisecondToSecond)
          .help("WAN one-way latency. Required with several datacenters."),

      F("energy", T::section).def(json::object()).help("Energy and carbon options."),
      F("energy.embodied", T::boolean).def(false).help("Also report embodied carbon of the chips (LLMCarbon's method)."),
      F("energy.average_chip_power_w", T::number).max(kMaxChipPowerW, "35x a GB200 superchip's 2.7 kW").min(0.0, true).unit("W")
          .help("Pins the IT power per chip (chip + its host share, like Patterson et al.'s measured system power) "
                "for energy accounting; otherwise the power model's simulated average."),
      F("energy.start_time_utc", T::string).def("")
          .help("ISO 8601 start (e.g. 2024-03-01T00:00:00Z): emissions integrate hourly series over the run."),

      F("compare", T::overlay_list)
          .help("Alternatives for `moesim compare`: each item has a `label` and overrides any scenario keys."),

      F("sweep", T::section)
          .help("A sweep for `moesim sweep`: the scenario is run at every point of the axes' cartesian product (in the "
                "order the axes are given, the last one varying fastest). `moesim run` and `compare` ignore it."),
      F("sweep.axes", T::section_list).required()
          .help("The swept keys, each with the list of values it takes."),
      F("sweep.axes[].key", T::string).required()
          .help("A scenario key path, as for --set (e.g. cluster.count, placement, model.experts); `moesim explain` "
                "lists them. Not name, sweep or compare."),
      F("sweep.axes[].values", T::value_list).required()
          .help("The values the key takes, in order (at least one); each point applies them like --set KEY=VALUE."),
      F("sweep.zip", T::value_list)
          .help("Groups of axes that advance together instead of multiplying: a list of lists of axis keys, e.g. "
                "[[model.experts, parallelism.expert]]; the axes of a group have as many values each."),
  };
}

}  // namespace

std::string to_string(FieldType t) {
  switch (t) {
    case FieldType::integer: return "integer";
    case FieldType::number: return "number";
    case FieldType::string: return "string";
    case FieldType::boolean: return "boolean";
    case FieldType::choice: return "choice";
    case FieldType::number_list: return "list of numbers";
    case FieldType::integer_list: return "list of integers";
    case FieldType::section: return "section";
    case FieldType::section_list: return "list of sections";
    case FieldType::string_or_section: return "name or section";
    case FieldType::overlay_list: return "list of overrides";
    case FieldType::value_list: return "list of values";
  }
  return "?";
}

const std::vector<FieldSpec>& fields() {
  static const std::vector<FieldSpec> table = build_table();
  return table;
}

const FieldSpec* find_field(const std::string& path) {
  for (const auto& f : fields())
    if (f.path == path) return &f;
  return nullptr;
}

std::vector<const FieldSpec*> children_of(const std::string& section_path) {
  std::vector<const FieldSpec*> out;
  for (const auto& f : fields()) {
    const std::string& p = f.path;
    if (section_path.empty()) {
      if (p.find('.') == std::string::npos && p.find('[') == std::string::npos) out.push_back(&f);
      continue;
    }
    std::string prefix = section_path + ".";
    if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0) {
      std::string rest = p.substr(prefix.size());
      if (rest.find('.') == std::string::npos && rest.find('[') == std::string::npos) out.push_back(&f);
    }
  }
  return out;
}

namespace {
std::string default_text(const FieldSpec& f) {
  if (f.required) return "required";
  if (!f.derived_default.empty()) return "= " + f.derived_default;
  if (f.default_value.is_null()) return "optional";
  if (f.default_value.is_object()) return "{}";
  if (f.default_value.is_string()) return f.default_value.get<std::string>().empty() ? "\"\"" : f.default_value.get<std::string>();
  return f.default_value.dump();
}
std::string range_text(const FieldSpec& f) {
  std::string r;
  if (!f.choices.empty()) {
    r = "one of: ";
    for (std::size_t i = 0; i < f.choices.size(); ++i) r += (i ? ", " : "") + f.choices[i];
    return r;
  }
  const std::string note = f.max_note.empty() ? "" : " (" + f.max_note + ")";
  if (f.min && f.max) return fmt::format("{} {} .. {}{}", f.min_exclusive ? ">" : ">=", *f.min, *f.max, note);
  if (f.min) return fmt::format("{} {}", f.min_exclusive ? ">" : ">=", *f.min);
  if (f.max) return fmt::format("<= {}{}", *f.max, note);
  return r;
}
}  // namespace

namespace {

/** A user's key in the table's spelling: list indices as "[]", and "[]" inserted after a list section written without
 *  it ("placement.share" -> "placement[].share"). */
std::string normalised_key(std::string key) {
  key = std::regex_replace(key, std::regex(R"(\[[0-9]*\])"), "[]");
  while (!key.empty() && key.back() == '.') key.pop_back();
  for (const FieldSpec& f : fields()) {
    if (f.type != FieldType::section_list) continue;
    const std::string bare = f.path + ".";
    if (key.rfind(bare, 0) == 0) key = f.path + "[]." + key.substr(bare.size());
  }
  return key;
}

bool selects(const std::string& key, const std::string& path) {
  if (path == key) return true;
  if (path.size() <= key.size() || path.compare(0, key.size(), key) != 0) return false;
  const char next = path[key.size()];
  return next == '.' || next == '[';
}

}  // namespace

std::vector<const FieldSpec*> select_fields(const std::vector<std::string>& keys) {
  std::vector<const FieldSpec*> out;
  if (keys.empty()) {
    for (const FieldSpec& f : fields()) out.push_back(&f);
    return out;
  }
  std::vector<std::string> norm;
  for (const std::string& k : keys) {
    const std::string n = normalised_key(k);
    bool any = false;
    for (const FieldSpec& f : fields()) any = any || selects(n, f.path);
    if (!any) {
      std::vector<std::string> paths;
      for (const FieldSpec& f : fields()) paths.push_back(f.path);
      // The closest paths, and the sections that contain the key's last word (e.g. "scheduler").
      std::vector<std::string> near = text::closest(n, paths, 3);
      const std::string last = n.substr(n.find_last_of('.') == std::string::npos ? 0 : n.find_last_of('.') + 1);
      for (const FieldSpec& f : fields())
        if (!last.empty() && near.size() < 6 && f.path.size() >= last.size() &&
            f.path.compare(f.path.size() - last.size(), last.size(), last) == 0 &&
            std::find(near.begin(), near.end(), f.path) == near.end())
          near.push_back(f.path);
      std::vector<std::string> top;
      for (const FieldSpec* f : children_of("")) top.push_back(f->path);
      throw Error(fmt::format("moesim explain: no scenario field '{}'{}; a key is a field's path (dots between "
                                   "sections, e.g. serving.scheduler.max_sequences) or a section's, one of: {}",
                                   k, near.empty() ? "" : fmt::format(" (closest: {})", text::join(near)),
                                   text::join(top)));
    }
    norm.push_back(n);
  }
  for (const FieldSpec& f : fields())
    for (const std::string& n : norm)
      if (selects(n, f.path)) {
        out.push_back(&f);
        break;
      }
  return out;
}

std::string explain_text(const std::vector<std::string>& keys) {
  std::string out = "Scenario fields (YAML). Units are in the key name or shown in [brackets].\n\n";
  for (const FieldSpec* fp : select_fields(keys)) {
    const FieldSpec& f = *fp;
    std::size_t depth = static_cast<std::size_t>(std::count(f.path.begin(), f.path.end(), '.'));
    std::string indent(2 * depth, ' ');
    out += fmt::format("{}{}  ({}{})  {}\n", indent, f.path, to_string(f.type),
                       f.unit.empty() ? "" : ", [" + f.unit + "]", default_text(f));
    std::string range = range_text(f);
    if (!range.empty()) out += fmt::format("{}    {}\n", indent, range);
    out += fmt::format("{}    {}\n", indent, f.help);
  }
  return out;
}

std::string explain_markdown(const std::vector<std::string>& keys) {
  std::string out =
      "# Scenario file reference\n\n"
      "Generated by `moesim explain --markdown` from the field table in `sim/scenario/fields.cpp`; do not edit.\n\n"
      "| key | type | unit | default | allowed | description |\n|---|---|---|---|---|---|\n";
  for (const FieldSpec* fp : select_fields(keys)) {
    const FieldSpec& f = *fp;
    std::string help = f.help;
    for (auto& c : help)
      if (c == '|') c = '/';
    out += fmt::format("| `{}` | {} | {} | {} | {} | {} |\n", f.path, to_string(f.type), f.unit, default_text(f),
                       range_text(f), help);
  }
  return out;
}

}  // namespace moesim::scenario
