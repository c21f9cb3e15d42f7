// SPDX-License-Identifier: Apache-2.0
// Hand-calculated checks that the training model's parts agree with each other: full recomputation keeps the last
// stage's fp32 logits, fp8 training sends bf16 activations (fp8 only in the MoE dispatch), stores its GEMMs' inputs as
// 1-byte fp8 casts and the rest in bf16, and its elementwise kernels move bf16 as a bf16 model's, an encoder-decoder's
// cross-attention keys and values are kv_heads wide as its parameters are, and ZeRO-2/3 sync the tied embedding's
// gradient shard. Each figure is worked out here from the scenario's numbers.

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::CollectiveOp;
using moesim::workload::estimate_memory_need;
using moesim::workload::MemoryEstimate;
using moesim::workload::Phase;
namespace t = moesim::workload::test;

namespace {

/** A dense decoder block: d_ff = 4 d_model, non-gated GELU FFN. */
std::string dense(int layers, int d_model, int heads, int vocab, int seq_len, const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: " + std::to_string(d_model) +
         "\n  d_ff: " + std::to_string(4 * d_model) + "\n  heads: " + std::to_string(heads) +
         "\n  vocab: " + std::to_string(vocab) + "\n  seq_len: " + std::to_string(seq_len) + "\n" + extra;
}

/** The collective phases of `kind`. */
std::vector<const Phase*> phases_of(const BuiltStep& b, const std::string& kind) {
  std::vector<const Phase*> out;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == kind) out.push_back(p);
  return out;
}

/** Buffer bytes of the collectives of `kind`, summed over the devices of their groups. */
double kind_bytes(const BuiltStep& b, const std::string& kind) {
  double sum = 0.0;
  for (const Phase* p : phases_of(b, kind))
    for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
  return sum;
}

}  // namespace

TEST_CASE("workload::estimate_memory: full recomputation keeps the last stage's fp32 logits, one micro-batch's",
          "[workload][memory][remat][consistency]") {
  SECTION("1F1B: 2 stages of 2 layers, the last holds one micro-batch") {
    // 4 layers of d 1024, 16 heads, vocabulary 32000, sequences of 1024; 2 stages on 2 H100s, 4 micro-batches of
    // 2 sequences (2048 tokens). Stage 1 keeps, per micro-batch in flight (min(P - s, M) = 1), its 2 layers' inputs
    // and the [2048, 32000] fp32 logits, plus one layer's activations while it is recomputed: Korthikanti et al.
    // 2022 §4.1's 16 d + 2 a s elements per token (no hidden-dropout masks), bf16.
    const double d = 1024, a = 16, s = 1024, V = 32000, tok = 2.0 * s;
    const auto sc = t::load(t::scenario_yaml(dense(4, 1024, 16, 32000, 1024), "h100", 2, "  pipeline: 2\n  microbatches: 4\n",
                                             4.0 * tok),
                            {"cluster.topology.gpus_per_node=2", "training.rematerialization=full"});
    const double input = tok * d * 2.0, logits = tok * V * 4.0, layer = tok * (16.0 * d + 2.0 * a * s) * 2.0;
    const double stage0 = 2.0 * 2.0 * input + layer;     // 2 micro-batches x 2 layers' inputs
    const double stage1 = 1.0 * (2.0 * input + logits) + layer;
    REQUIRE(stage1 > stage0);  // same parameters on both stages (2 layers + the vocabulary matrix)
    const MemoryEstimate e = estimate_memory_need(sc, t::real_catalog().accelerator("h100"));
    CHECK(e.remat);
    CHECK(e.activations_bytes == Approx(stage1).epsilon(1e-9));
    // One stage (no pipeline): the step's 4 micro-batches run one after the other, each holding its 4 layers' inputs
    // and its logits from its forward to its backward.
    const auto one = t::load(t::scenario_yaml(dense(4, 1024, 16, 32000, 1024), "h100", 1, "  microbatches: 4\n", 4.0 * tok),
                             {"cluster.topology.gpus_per_node=1", "training.rematerialization=full"});
    CHECK(estimate_memory_need(one, t::real_catalog().accelerator("h100")).activations_bytes ==
          Approx(4.0 * input + logits + layer).epsilon(1e-9));
  }
  SECTION("interleaved: the last stage's last chunk holds its logits once") {
    // 16 layers of d 256 (4 heads, seq 256), vocabulary 256000; 4 stages x 2 chunks of 2 layers, 8 micro-batches of one
    // sequence, data 2 on 8 H100s. Stage 3 holds (v - 1) P + 1 = 5 chunk-micro-batches of inputs (2 layers each); its
    // chunk 1's backward follows its forward at once, so one micro-batch's logits; plus one layer recomputed.
    const int P = 4, v = 2;
    const double tok = 256, d = 256, a = 4, s = 256, V = 256000;
    const auto sc = t::load(t::scenario_yaml(dense(16, 256, 4, 256000, 256), "h100", 8,
                                             "  pipeline: 4\n  data: 2\n  microbatches: 8\n  virtual_stages: 2\n", 2.0 * 8 * 256),
                            {"training.rematerialization=full"});
    const double chunk_inputs = 2.0 * tok * d * 2.0, logits = tok * V * 4.0, layer = tok * (16.0 * d + 2.0 * a * s) * 2.0;
    const double stage0 = (2.0 * (P - 1) + (v - 1.0) * P + 1.0) * chunk_inputs + layer;  // 11 chunk-micro-batches
    const double stage3 = ((v - 1.0) * P + 1.0) * chunk_inputs + logits + layer;
    REQUIRE(stage3 > stage0);
    const MemoryEstimate e = estimate_memory_need(sc, t::real_catalog().accelerator("h100"));
    CHECK(e.remat);
    CHECK(e.activations_bytes == Approx(stage3).epsilon(1e-9));
  }
}

TEST_CASE("workload: fp8 training sends bf16 activations, only the MoE dispatch in fp8",
          "[workload][step][memory][fp8][consistency]") {
  SECTION("tensor-parallel collectives and pipeline sends: 2 bytes per element") {
    // 4 layers of d 512 (8 heads), vocabulary 32000, sequences of 512; tensor 2 x pipeline 2 on 4 H100s, 2 micro-batches
    // of one sequence (512 tokens). Per micro-batch, [512, 512] all-reduces in each tensor group: stage 0's embedding
    // (1) and 2 per layer forward and backward (8); stage 1's 8 and the output head's input gradient (1): 18; and the
    // cross-entropy's 3 all-reduces of [512] fp32. Each tensor group has 2 devices, one group per stage.
    const double tok = 512, d = 512, M = 2, tp = 2;
    auto built = [&](const std::string& dtype) {
      const t::StepFixture f(t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 4,
                                                      "  tensor: 2\n  pipeline: 2\n  microbatches: 2\n", M * tok),
                                     {"cluster.topology.gpus_per_node=4"}));
      return f.build(false);
    };
    const BuiltStep b8 = built("fp8"), b16 = built("bf16");
    const double tensor = M * (18.0 * tok * d * 2.0 + 3.0 * tok * 4.0) * tp;
    CHECK(kind_bytes(b8, "comm.tensor_parallel") == Approx(tensor).epsilon(1e-12));
    CHECK(kind_bytes(b16, "comm.tensor_parallel") == Approx(tensor).epsilon(1e-12));
    // Activations forward and gradients back, per micro-batch: each tensor rank sends its 1/tensor of [512, 512] bf16.
    const auto sends = phases_of(b8, "comm.pipeline_p2p");
    REQUIRE(sends.size() == 2 * 2);
    for (const Phase* p : sends) CHECK(p->comm.bytes_per_device == Approx(tok * d * 2.0 / tp).epsilon(1e-12));
    CHECK(b8.stats.bytes_by_op.at("send_recv") == Approx(b16.stats.bytes_by_op.at("send_recv")).epsilon(1e-12));
  }
  SECTION("the MoE all-to-all: dispatch 1 byte, combine 2 bytes (DeepSeek-V3 §3.3.3)") {
    // 2 MoE layers of d 512, 8 experts, top-2, dropless, expert parallelism 8 on 8 H100s, one sequence of 512 per rank.
    // Each all-to-all sends all of the rank's 512 x 2 assignments' rows of 512.
    const double tok = 512, d = 512, k = 2;
    auto built = [&](const std::string& dtype) {
      const t::StepFixture f(t::load(t::scenario_yaml(dense(2, 512, 8, 32000, 512, "  experts: 8\n  top_k: 2\n  moe_every: 1\n  dtype: " + dtype + "\n"),
                                                      "h100", 8, "  expert: 8\n", 8.0 * tok),
                                     {"routing.dropless=true"}));
      return f.build(false);
    };
    const BuiltStep b8 = built("fp8"), b16 = built("bf16");
    int dispatches = 0, combines = 0;
    for (const Phase* p : phases_of(b8, "comm.all_to_all")) {
      if (t::contains(p->label, "dispatch")) {
        ++dispatches;
        CHECK(p->comm.bytes_per_device == Approx(tok * k * d * 1.0).epsilon(1e-12));
      } else {
        ++combines;
        CHECK(p->comm.bytes_per_device == Approx(tok * k * d * 2.0).epsilon(1e-12));
      }
    }
    CHECK(dispatches == 2 * 2);  // 2 layers, forward and backward
    CHECK(combines == 2 * 2);
    for (const Phase* p : phases_of(b16, "comm.all_to_all")) CHECK(p->comm.bytes_per_device == Approx(tok * k * d * 2.0).epsilon(1e-12));
    CHECK(kind_bytes(b8, "comm.all_to_all") == Approx(0.75 * kind_bytes(b16, "comm.all_to_all")).epsilon(1e-12));
  }
}

TEST_CASE("workload::estimate_memory: fp8 training stores the GEMMs' inputs as fp8 casts, the rest in bf16",
          "[workload][memory][fp8][consistency]") {
  // Transformer Engine and DeepSeek-V3 (arXiv 2412.19437 §3.3.3) keep each GEMM's input as its 1-byte fp8 cast for the
  // weight-gradient GEMM; the layer norms' inputs, Q, K and V, the softmax, the activation functions' inputs, the
  // router's logits and the experts' outputs stay bf16. A bf16 model stores all of them at 2 bytes.
  auto act = [&](const std::string& model, const std::string& dtype, const std::string& par, double batch) {
    const auto sc = t::load(t::scenario_yaml(model + "  dtype: " + dtype + "\n", "h100", 8, par, batch),
                            {"training.rematerialization=none", "routing.dropless=true"});
    return estimate_memory_need(sc, t::real_catalog().accelerator("h100")).activations_no_remat_bytes;
  };
  SECTION("dense: 7d of the 16d elements per token are GEMM inputs") {
    // 4 layers of d 512, 8 heads of 64, GELU FFN of 4d, sequences of 512, one per device (data 8), materialised
    // attention. Per token and layer, GEMM inputs: the QKV projection's (d), the context (a x d_head = d), the FFN's
    // up-projection's (d) and down-projection's (4d): 7d. Not: the two layer norms' inputs (2d), Q, K, V (3d), the
    // up-projection's output (4d): 9d; and the core's softmax output, 2as (materialised, no dropout). Plus the fp32
    // logits.
    const double L = 4, d = 512, a = 8, s = 512, V = 32000;
    const double gemm_in = 7.0 * d, other = 9.0 * d + 2.0 * a * s, logits = s * V * 4.0;
    REQUIRE(gemm_in + other == Approx(16.0 * d + 2.0 * a * s));  // Korthikanti et al. 2022 §4.1, less its dropout masks
    const std::string model = dense(4, 512, 8, 32000, 512);
    const double fp8 = act(model, "fp8", "  data: 8\n", 8.0 * s), bf16 = act(model, "bf16", "  data: 8\n", 8.0 * s);
    CHECK(fp8 == Approx(L * s * (gemm_in * 1.0 + other * 2.0) + logits).epsilon(1e-12));
    CHECK(bf16 == Approx(L * s * (gemm_in + other) * 2.0 + logits).epsilon(1e-12));
    CHECK(bf16 - fp8 == Approx(L * s * gemm_in * 1.0).epsilon(1e-12));
  }
  SECTION("MoE with a shared expert: dispatched rows and activation outputs are GEMM inputs") {
    // 2 MoE layers of d 512, 8 heads, 8 SwiGLU experts of 1024 and one shared expert, top-2, dropless; expert 8 on
    // 8 H100s, one sequence of 512 per rank. Per token and layer, GEMM inputs: the QKV input and the context (2d); per
    // routed row (k = 2) the dispatched row (d) and the expert's activation output (f); the shared expert's activation
    // output (f). Not: the layer norms' inputs and Q, K, V (5d); the MoE's input (the fp32 router's) and combined
    // output (2d); the router's logits and probabilities (2E); per routed row its gate and up outputs (2f) (not its
    // output: the gather dispatch weights rows in the activation, Megatron-Core's activation_func_with_probs); the
    // shared expert's gate and up outputs (2f); the softmax output (2as).
    const double L = 2, d = 512, a = 8, s = 512, V = 32000, E = 8, k = 2, f = 1024;
    const double gemm_in = 2.0 * d + k * (d + f) + f;
    const double other = 5.0 * d + 2.0 * d + 2.0 * E + k * (2.0 * f) + 2.0 * f + 2.0 * a * s;
    const std::string model = dense(2, 512, 8, 32000, 512,
                                    "  experts: 8\n  top_k: 2\n  moe_every: 1\n  expert_d_ff: 1024\n  shared_experts: 1\n"
                                    "  activation: swiglu\n");
    const double fp8 = act(model, "fp8", "  expert: 8\n", 8.0 * s), bf16 = act(model, "bf16", "  expert: 8\n", 8.0 * s);
    CHECK(fp8 == Approx(L * s * (gemm_in * 1.0 + other * 2.0) + s * V * 4.0).epsilon(1e-12));
    CHECK(bf16 - fp8 == Approx(L * s * gemm_in * 1.0).epsilon(1e-12));
  }
  SECTION("full recomputation keeps the layers' inputs (the residual stream) in bf16") {
    // The dense model above on 2 stages, 4 micro-batches of one sequence: stage 1 keeps one micro-batch's 2 layer
    // inputs in bf16 and its fp32 logits, plus one layer's activations while it is recomputed (GEMM inputs 1 byte).
    const double d = 512, a = 8, s = 512, V = 32000;
    auto remat = [&](const std::string& dtype) {
      const auto sc = t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 2,
                                               "  pipeline: 2\n  microbatches: 4\n", 4.0 * s),
                              {"cluster.topology.gpus_per_node=2", "training.rematerialization=full"});
      return estimate_memory_need(sc, t::real_catalog().accelerator("h100")).activations_bytes;
    };
    const double inputs = 2.0 * s * d * 2.0 + s * V * 4.0;
    CHECK(remat("fp8") == Approx(inputs + s * (7.0 * d * 1.0 + (9.0 * d + 2.0 * a * s) * 2.0)).epsilon(1e-12));
    CHECK(remat("bf16") == Approx(inputs + s * (16.0 * d + 2.0 * a * s) * 2.0).epsilon(1e-12));
  }
}

namespace {

/** The roofline model of the accelerator, recording every kernel the step builder times (each distinct one once: the
 *  builder caches the rest). */
struct RecordingModel final : moesim::perf::ComputeTimeModel {
  const moesim::perf::ComputeTimeModel& inner;
  mutable std::vector<moesim::perf::KernelOp> ops;
  explicit RecordingModel(const moesim::perf::ComputeTimeModel& m) : inner(m) {}
  moesim::perf::KernelTime time(const moesim::perf::KernelOp& op) const override {
    ops.push_back(op);
    return inner.time(op);
  }
  std::string describe() const override { return "recording"; }
};

/** The kernels a step of `sc` times, in the order it first times them. */
std::vector<moesim::perf::KernelOp> step_kernels(const moesim::scenario::Scenario& sc) {
  const t::StepFixture f(sc);
  const RecordingModel rec(f.compute);
  (void)moesim::workload::step_builder(sc.model.type)
      .build(moesim::workload::StepContext{f.scenario, f.accel, rec, f.mesh, false, 0, false});
  return rec.ops;
}

/** Bytes of the kernels named one of `names`, in the order they were first timed (forward, then backward). Kernels
 *  of the same class and work share one timing whatever their names (the attention's and the FFN's norm and residual),
 *  so a kernel's backward may be recorded under its twin's name. */
std::vector<double> bytes_of(const std::vector<moesim::perf::KernelOp>& ops, const std::vector<std::string>& names) {
  std::vector<double> out;
  for (const auto& op : ops)
    if (std::find(names.begin(), names.end(), op.name) != names.end()) out.push_back(op.bytes);
  return out;
}

}  // namespace

TEST_CASE("workload::StepBuilder: an fp8 step's elementwise kernels move bf16, its GEMMs read fp8 and write bf16",
          "[workload][step][fp8][consistency]") {
  SECTION("dense: layer norms, activation, softmax and embedding as bf16's; the QKV GEMM's inputs at 1 byte") {
    // 4 layers of d 512, 8 heads, GELU FFN of 2048, sequences of 512, one per device (data 8): 512 tokens.
    const double tok = 512, d = 512, a = 8, s = 512, f = 2048;
    auto kernels = [&](const std::string& dtype) {
      return step_kernels(t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 8,
                                                   "  data: 8\n", 8.0 * s)));
    };
    const auto k8 = kernels("fp8"), k16 = kernels("bf16");
    // Forward, then backward (twice the forward's bytes): norm and residual 6 passes over [tokens, d]; the GELU reads
    // its input and writes its output, [tokens, f] each; the softmax reads the scores and writes the probabilities.
    const std::vector<double> norm{6.0 * tok * d * 2.0, 2.0 * 6.0 * tok * d * 2.0};
    const std::vector<double> gelu{2.0 * tok * f * 2.0, 2.0 * 2.0 * tok * f * 2.0};
    const std::vector<double> softmax{2.0 * a * s * s * 2.0, 2.0 * 2.0 * a * s * s * 2.0};
    for (const auto* ks : {&k8, &k16}) {
      CHECK(bytes_of(*ks, {"attn.norm_residual", "ffn.norm_residual"}) == norm);
      CHECK(bytes_of(*ks, {"ffn.act"}) == gelu);
      CHECK(bytes_of(*ks, {"attn.softmax"}) == softmax);
      CHECK(bytes_of(*ks, {"embed.gather"}) == std::vector<double>{2.0 * tok * d * 2.0, 2.0 * 2.0 * tok * d * 2.0});
    }
    for (const auto& op : k8)
      if (op.cls == moesim::perf::KernelClass::elementwise) CHECK(op.dtype == "bf16");
    // The QKV projection [512, 512] x [512, 1536]: input and weights in fp8, output in bf16; bf16's all in bf16.
    CHECK(bytes_of(k8, {"attn.qkv"}).front() == Approx((tok * d + d * 3.0 * d) * 1.0 + tok * 3.0 * d * 2.0).epsilon(1e-12));
    CHECK(bytes_of(k16, {"attn.qkv"}).front() == Approx((tok * d + d * 3.0 * d + tok * 3.0 * d) * 2.0).epsilon(1e-12));
  }
  SECTION("MoE: permute, unpermute and the experts' activation as bf16's") {
    // 2 MoE layers of d 512, 8 experts of 2048, top-2, dropless, expert 8 on 8 H100s, one sequence of 512 per rank.
    auto kernels = [&](const std::string& dtype) {
      return step_kernels(t::load(t::scenario_yaml(dense(2, 512, 8, 32000, 512, "  experts: 8\n  top_k: 2\n  moe_every: 1\n  dtype: " + dtype + "\n"),
                                                   "h100", 8, "  expert: 8\n", 8.0 * 512),
                                  {"routing.dropless=true"}));
    };
    const auto k8 = kernels("fp8"), k16 = kernels("bf16");
    const double tok = 512, d = 512, k = 2;
    for (const auto* ks : {&k8, &k16}) {
      // The permute reads each token's row and writes its k copies; the unpermute reads the k rows and writes one.
      CHECK(bytes_of(*ks, {"moe.permute"}) == std::vector<double>{2.0 * tok * k * d * 2.0});
      CHECK(bytes_of(*ks, {"moe.unpermute"}) == std::vector<double>{(2.0 * k + 1.0) * tok * d * 2.0});
    }
    REQUIRE_FALSE(bytes_of(k8, {"moe.expert_act"}).empty());
    CHECK(bytes_of(k8, {"moe.expert_act"}) == bytes_of(k16, {"moe.expert_act"}));
  }
}

TEST_CASE("workload::StepBuilder: an fp8 step keeps its attention core and output head in bf16",
          "[workload][step][fp8][consistency]") {
  auto kernels = [&](const std::string& dtype, const std::vector<std::string>& sets) {
    return step_kernels(t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 8,
                                                 "  data: 8\n", 8.0 * 512),
                                sets));
  };
  for (const auto& sets : {std::vector<std::string>{}, std::vector<std::string>{"training.attention_kernel=fused"}}) {
    INFO((sets.empty() ? "materialised" : "fused"));
    const auto k8 = kernels("fp8", sets), k16 = kernels("bf16", sets);
    std::size_t seen = 0;
    for (const auto& op : k8)
      if (op.name.rfind("attn.scores", 0) == 0 || op.name.rfind("attn.values", 0) == 0 || op.name.rfind("attn.flash", 0) == 0 ||
          op.name.rfind("attn.d", 0) == 0 || op.name == "head.logits") {
        ++seen;
        CHECK(op.dtype == "bf16");
      }
    CHECK(seen >= 3);
    // The same kernels, byte for byte, as the bf16 model's.
    for (const char* name : {"attn.scores", "attn.values", "attn.flash_fwd", "attn.flash_bwd", "head.logits"})
      CHECK(bytes_of(k8, {name}) == bytes_of(k16, {name}));
  }
}

TEST_CASE("workload: an encoder-decoder's cross-attention keys and values are kv_heads wide, as its parameters",
          "[workload][step][memory][gqa][consistency]") {
  // 2 encoder + 2 decoder layers of d 512, 8 heads of 64; sources of 256 tokens, targets of 128; tensor 2 x data 4 on
  // 8 H100s, 2 sequences per replica: 512 encoder and 256 decoder tokens per device. kv_heads 8 (all) against 2: 6
  // fewer heads of K and V in the encoders' and decoders' self-attention and in the decoders' cross-attention, whose
  // K and V project the 512 encoder tokens.
  const double d = 512, dh = 64, t_enc = 512, t_dec = 256, data = 4;
  auto sc = [&](int kv, const std::vector<std::string>& o = {}) {
    const std::string model =
        "  architecture: encoder_decoder\n  encoder_layers: 2\n  decoder_layers: 2\n  d_model: 512\n  d_ff: 2048\n"
        "  heads: 8\n  kv_heads: " + std::to_string(kv) + "\n  vocab: 1000\n  seq_len: 256\n  target_seq_len: 128\n";
    return t::load(t::scenario_yaml(model, "h100", 8, "  tensor: 2\n  data: 4\n", data * 2.0 * 256), o);
  };
  // Tokens whose K and V are projected, summed over the layers: 2 encoder self-attentions, 2 decoder self-attentions,
  // 2 cross-attentions over the encoder's tokens.
  const double kv_tokens = 2.0 * t_enc + 2.0 * t_dec + 2.0 * t_enc;
  SECTION("parameters: 6 heads of K and V fewer in each of the 6 attentions") {
    const auto p8 = moesim::workload::count_params(sc(8).model), p2 = moesim::workload::count_params(sc(2).model);
    CHECK(p8.dense - p2.dense == Approx(6.0 * 2.0 * 6.0 * dh * d).epsilon(1e-12));
  }
  SECTION("step: model FLOPs by the parameters, hardware FLOPs by the heads a rank holds") {
    const BuiltStep b8 = t::StepFixture(sc(8)).build(false), b2 = t::StepFixture(sc(2)).build(false);
    // Model FLOPs: 2 x 6 fewer K and V rows per token, 6 FLOPs per multiply-add over forward and backward, summed over
    // the tensor group and the 4 replicas (the cross-attention's 2 x 512 encoder tokens included).
    CHECK(b8.stats.model_flops - b2.stats.model_flops == Approx(6.0 * data * kv_tokens * 2.0 * 6.0 * dh * d).epsilon(1e-9));
    // Hardware FLOPs: each of the 8 devices projects 4 heads of K and V with kv_heads 8, kv_heads / tensor = 1 with 2;
    // and its optimizer (10 FLOPs per parameter, no ZeRO) updates the 6 attentions' 2 x 3 heads of d x d_head more.
    CHECK(b8.stats.hardware_flops - b2.stats.hardware_flops ==
          Approx(8.0 * (6.0 * kv_tokens * 2.0 * (4.0 - 1.0) * dh * d + 10.0 * 6.0 * 2.0 * (4.0 - 1.0) * dh * d)).epsilon(1e-9));
    // kv_heads 1 is replicated on both tensor ranks: the same hardware FLOPs as 2, half the model FLOPs of K and V.
    const BuiltStep b1 = t::StepFixture(sc(1)).build(false);
    CHECK(b1.stats.hardware_flops == Approx(b2.stats.hardware_flops).epsilon(1e-12));
    CHECK(b2.stats.model_flops - b1.stats.model_flops == Approx(6.0 * data * kv_tokens * 2.0 * 1.0 * dh * d).epsilon(1e-9));
  }
  SECTION("memory: K and V stored for kv_heads / tensor heads") {
    auto act = [&](int kv) {
      return estimate_memory_need(sc(kv, {"training.rematerialization=none"}), t::real_catalog().accelerator("h100"))
          .activations_no_remat_bytes;
    };
    // Per rank 4 heads of K and V against 1, bf16.
    CHECK(act(8) - act(2) == Approx(kv_tokens * 2.0 * (4.0 - 1.0) * dh * 2.0).epsilon(1e-9));
  }
}

TEST_CASE("workload::StepBuilder: the tied embedding's gradient sync carries the ZeRO-2/3 shard, the whole matrix otherwise",
          "[workload][step][zero][consistency]") {
  // 4 layers of d 512, vocabulary 32000; pipeline 2 x data 4 on 8 H100s, 4 micro-batches. The first and last stages'
  // copies of the tied [32000, 512] matrix sync their fp32 gradients (grad_dtype auto on a GPU): each of the 4 device
  // pairs all-reduces 32000 x 512 x 4 bytes, or with ZeRO-2/3 its 1/4 shard of the reduce-scattered gradient.
  const double V = 32000, d = 512;
  auto sync_bytes = [&](int zero, const std::string& par = "  pipeline: 2\n  data: 4\n") {
    const t::StepFixture f(t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512), "h100", 8,
                                                    par + "  microbatches: 4\n  zero_stage: " + std::to_string(zero) + "\n", 4.0 * 4 * 512)));
    const BuiltStep b = f.build(false);
    const auto syncs = phases_of(b, "comm.embedding_grad_sync");
    REQUIRE(syncs.size() == 1);
    CHECK(syncs.front()->comm.op == CollectiveOp::all_reduce);
    CHECK(syncs.front()->comm.groups.size() == 8 / 2);
    return syncs.front()->comm.bytes_per_device;
  };
  CHECK(sync_bytes(0) == Approx(V * d * 4.0).epsilon(1e-12));
  CHECK(sync_bytes(1) == Approx(V * d * 4.0).epsilon(1e-12));
  CHECK(sync_bytes(2) == Approx(V * d * 4.0 / 4.0).epsilon(1e-12));
  CHECK(sync_bytes(3) == Approx(V * d * 4.0 / 4.0).epsilon(1e-12));
  // Tensor 2 x data 2: each rank's 1/tensor of the matrix, and with ZeRO-2 its 1/data shard of that.
  CHECK(sync_bytes(2, "  pipeline: 2\n  tensor: 2\n  data: 2\n") == Approx(V * d / 2.0 * 4.0 / 2.0).epsilon(1e-12));
}
