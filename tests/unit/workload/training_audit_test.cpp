// SPDX-License-Identifier: Apache-2.0
// A hand-calculation audit of the training model: pipeline stages' activations in flight, ZeRO-2/3 gradient
// reduce-scatters per micro-batch, Korthikanti et al.'s stored-activation list, grouped-query attention's model FLOPs
// and parameters per tensor rank, fp8 training's weights and gradients, MoE activations with the gather dispatch,
// and ZeRO-3's gathered working copies. Each figure is worked out here from the model's shape.

#include <catch2/catch.hpp>

#include <boost/graph/topological_sort.hpp>

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "moesim/core/error.hpp"
#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::CollectiveOp;
using moesim::workload::estimate_memory_need;
using moesim::workload::MemoryEstimate;
using moesim::workload::Phase;
using moesim::workload::PhaseId;
using moesim::workload::StepGraph;
namespace t = moesim::workload::test;
using t::kind_s;

namespace {

/** A dense decoder block: d_ff = 4 d_model, heads x d_head = d_model, non-gated GELU FFN. */
std::string dense(int layers, int d_model, int heads, int vocab, int seq_len, const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: " + std::to_string(d_model) +
         "\n  d_ff: " + std::to_string(4 * d_model) + "\n  heads: " + std::to_string(heads) +
         "\n  vocab: " + std::to_string(vocab) + "\n  seq_len: " + std::to_string(seq_len) + "\n" + extra;
}

/** Bytes per parameter on a GPU with mixed-precision Adam and no ZeRO: bf16 weights 2, fp32 gradients 4 (Megatron-LM's
 *  --accumulate-allreduce-grads-in-fp32, training.grad_dtype auto), fp32 master 4 + Adam m and v 8. */
constexpr double kBytesPerParam = 2.0 + 4.0 + 12.0;

/** Buffer bytes of the data-parallel gradient reductions (comm.grad_all_reduce) of one op, summed over the devices. */
double grad_reduce_bytes(const BuiltStep& b, CollectiveOp op) {
  double sum = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == "comm.grad_all_reduce" && p->comm.op == op)
      for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
  return sum;
}

/** Buffer bytes of the collectives of `kind` (all ops), summed over the devices. */
double kind_bytes(const BuiltStep& b, const std::string& kind) {
  double sum = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == kind)
      for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
  return sum;
}


/** Whether `to` can be reached from `from` along the graph's edges. */
bool reaches(const StepGraph& g, PhaseId from, PhaseId to) {
  std::vector<PhaseId> stack{from};
  std::set<PhaseId> seen{from};
  while (!stack.empty()) {
    const PhaseId v = stack.back();
    stack.pop_back();
    if (v == to) return true;
    for (auto e : boost::make_iterator_range(boost::out_edges(v, g))) {
      const PhaseId w = boost::target(e, g);
      if (seen.insert(w).second) stack.push_back(w);
    }
  }
  return false;
}

/** The first phase whose label contains every part. */
std::optional<PhaseId> find_phase(const StepGraph& g, const std::vector<std::string>& parts) {
  for (auto v : boost::make_iterator_range(boost::vertices(g))) {
    bool all = true;
    for (const auto& part : parts) all = all && t::contains(g[v].label, part);
    if (all) return v;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("workload::estimate_memory: each pipeline stage holds its own micro-batches in flight, min(P - s, M) in 1F1B",
          "[workload][memory][pipeline][audit]") {
  // The audit's pmem scenario: 8 layers of d 2048 (16 heads), vocabulary 256000, sequences of 4096, 4 stages of 2 layers,
  // 8 micro-batches of 4 sequences (16384 tokens) on A100s, recomputation auto.
  const double d = 2048, a = 16, s = 4096, V = 256000, tok = 4.0 * s, P = 4, M = 8;
  const auto& a100 = t::real_catalog().accelerator("a100");
  const auto sc = t::load(t::scenario_yaml(dense(8, 2048, 16, 256000, 4096, "  dtype: bf16\n"), "a100", 4,
                                           "  pipeline: 4\n  microbatches: 8\n", 8.0 * tok),
                          {"cluster.topology.gpus_per_node=4"});
  // Per token and layer (elements, Korthikanti et al. 2022 §4.1 without hidden-dropout masks; no tensor parallelism):
  // layer norms' inputs 2d, QKV input d, Q K V 3d, context d, FFN input d, FFN hidden before and after GELU 8d; the
  // scores and probabilities 2 a s. bf16.
  const double layer_mb = tok * (16.0 * d + 2.0 * a * s) * 2.0;
  const double logits = tok * V * 4.0;
  const double weights = (2.0 * 12.0 * d * d + V * d) * kBytesPerParam;  // stages 0 and 3: 2 layers + the vocabulary
  // Stage 0 holds min(P, M) = 4 micro-batches of its 2 layers; stage 3 min(1, M) = 1 with its fp32 logits.
  const double stage0 = std::min(P, M) * 2.0 * layer_mb, stage3 = 1.0 * (2.0 * layer_mb + logits);
  REQUIRE(stage0 > stage3);
  SECTION("no recomputation is needed: the peak is stage 0's") {
    const MemoryEstimate e = estimate_memory_need(sc, a100);
    CHECK_FALSE(e.remat);
    CHECK_FALSE(e.selective);
    CHECK(e.activations_bytes == Approx(stage0).epsilon(1e-9));
    CHECK(e.total_bytes() == Approx(weights + stage0).epsilon(1e-9));
    CHECK(e.total_bytes() <= e.capacity_bytes);
  }
  SECTION("full recomputation: each stage keeps the inputs of its own micro-batches") {
    // 10 layers over 4 stages: 2, 2, 3, 3 layers (chunk_layers). Stage s keeps min(4 - s, 8) micro-batches of inputs,
    // the last stage also its one micro-batch's fp32 logits (the output head is not recomputed).
    const auto sc10 = t::load(t::scenario_yaml(dense(10, 2048, 16, 256000, 4096), "a100", 4, "  pipeline: 4\n  microbatches: 8\n", 8.0 * tok),
                              {"cluster.topology.gpus_per_node=4", "training.rematerialization=full"});
    const double layer_params = 12.0 * d * d, input = tok * d * 2.0;
    const std::vector<double> layers{2, 2, 3, 3};
    double peak = 0.0;
    for (int st = 0; st < 4; ++st) {
      const double params = layers[st] * layer_params + (st == 0 || st == 3 ? V * d : 0.0);
      const double inflight = std::min(P - st, M);
      peak = std::max(peak, params * kBytesPerParam + inflight * layers[st] * input + (st == 3 ? logits : 0.0) + layer_mb);
    }
    const MemoryEstimate e = estimate_memory_need(sc10, a100);
    CHECK(e.remat);
    CHECK(e.total_bytes() == Approx(peak).epsilon(1e-9));
  }
}

TEST_CASE("workload::estimate_memory: interleaved stages hold (2 (P - s - 1) + (v - 1) P + 1) chunk-micro-batches",
          "[workload][memory][pipeline][interleaved][audit]") {
  const int P = 4, v = 2, M = 8;
  const auto sc = t::load(t::scenario_yaml(dense(16, 256, 4, 256000, 256), "h100", 8,
                                           "  pipeline: 4\n  data: 2\n  microbatches: 8\n  virtual_stages: 2\n", 2.0 * 8 * 256),
                          {"training.rematerialization=none"});
  SECTION("in stage micro-batches per stage, capped at M") {
    for (int s = 0; s < P; ++s)
      CHECK(moesim::workload::inflight_microbatches(sc.parallelism, s) ==
            Approx(std::min(((P - s - 1) * 2.0 + (v - 1.0) * P + 1.0) / v, static_cast<double>(M))));
    CHECK(moesim::workload::inflight_microbatches(sc.parallelism, 0) == Approx(P + (P - 1.0) / v));
    auto one_mb = sc.parallelism;
    one_mb.microbatches = 1;
    one_mb.virtual_stages = 1;
    CHECK(moesim::workload::inflight_microbatches(one_mb, 0) == 1.0);
  }
  SECTION("the last stage holds 5 chunk-micro-batches and its logits once") {
    // d 256, 4 heads, seq 256, one sequence per micro-batch. Per layer and token: 16 d + 2 a s elements, bf16. The
    // last stage's chunk 1 ends in the output head: its fp32 logits, 256 x 256000 x 4 bytes, live only from that
    // chunk's forward to its backward, which follows at once; the 4 warm-up forwards are of chunk 0.
    const double tok = 256, d = 256, a = 4, s = 256, V = 256000;
    const double chunk = 2.0 * tok * (16.0 * d + 2.0 * a * s) * 2.0, logits = tok * V * 4.0;
    const double weights = (4.0 * 12.0 * d * d + V * d) * kBytesPerParam;  // stages 0 and 3: 4 layers + the vocabulary
    const double stage0 = (2.0 * (P - 1) + (v - 1.0) * P + 1.0) * chunk;   // 11 chunk-micro-batches
    const double stage3 = ((v - 1.0) * P + 1.0) * chunk + logits;           // 5, one of them with the logits
    REQUIRE(stage3 > stage0);
    const MemoryEstimate e = estimate_memory_need(sc, t::real_catalog().accelerator("h100"));
    CHECK(e.activations_bytes == Approx(stage3).epsilon(1e-9));
    CHECK(e.total_bytes() == Approx(weights + stage3).epsilon(1e-9));
  }
}

TEST_CASE("workload::StepBuilder: ZeRO-2 and ZeRO-3 reduce-scatter every micro-batch's gradients, ZeRO-1 once a step",
          "[workload][step][zero][audit]") {
  // 4 layers of d 512, vocabulary 32000, 8 data-parallel replicas on H100s, 4 micro-batches of one sequence each.
  const double N = 4.0 * 12.0 * 512 * 512 + 32000.0 * 512;  // parameters (each replica's)
  const int M = 4;
  auto build = [](int zero, bool overlap) {
    const t::StepFixture f(t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512), "h100", 8,
                                                    "  data: 8\n  microbatches: 4\n  zero_stage: " + std::to_string(zero) + "\n",
                                                    8.0 * 4 * 512),
                                   {std::string("training.overlap_grad_reduce=") + (overlap ? "true" : "false")}));
    return f.build(false);
  };
  const double once = N * 4.0 * 8.0;  // fp32 gradients (grad_dtype auto on a GPU), 8 devices
  SECTION("bytes: M reduce-scatters with ZeRO-2 and ZeRO-3, one with ZeRO-1") {
    for (bool overlap : {true, false}) {
      CHECK(grad_reduce_bytes(build(0, overlap), CollectiveOp::all_reduce) == Approx(once));
      CHECK(grad_reduce_bytes(build(1, overlap), CollectiveOp::reduce_scatter) == Approx(once));
      CHECK(grad_reduce_bytes(build(2, overlap), CollectiveOp::reduce_scatter) == Approx(M * once));
      CHECK(grad_reduce_bytes(build(3, overlap), CollectiveOp::reduce_scatter) == Approx(M * once));
      CHECK(grad_reduce_bytes(build(2, overlap), CollectiveOp::all_reduce) == 0.0);
    }
  }
  SECTION("ZeRO-2 without overlap: the next forward waits for the reduce") {
    const BuiltStep b = build(2, false);
    const auto rs = find_phase(b.graph, {"stage0 mb0 dense grads"});
    const auto fwd1 = find_phase(b.graph, {"stage0 mb1 fwd"});
    REQUIRE(rs);
    REQUIRE(fwd1);
    CHECK(b.graph[*rs].comm.op == CollectiveOp::reduce_scatter);
    CHECK(reaches(b.graph, *rs, *fwd1));
  }
  SECTION("ZeRO-2 with overlap: the buckets run beside the next passes") {
    const BuiltStep b = build(2, true);
    const auto rs = find_phase(b.graph, {"stage0 mb0 dense grads bucket"});
    const auto fwd1 = find_phase(b.graph, {"stage0 mb1 fwd"});
    REQUIRE(rs);
    REQUIRE(fwd1);
    CHECK_FALSE(reaches(b.graph, *rs, *fwd1));
    CHECK(reaches(b.graph, *rs, b.end));
  }
  SECTION("pipeline and interleaving: each chunk reduces its own layers") {
    const t::StepFixture f(t::load(t::scenario_yaml(dense(8, 512, 8, 32000, 512), "h100", 8,
                                                    "  data: 2\n  pipeline: 4\n  microbatches: 4\n  virtual_stages: 2\n  zero_stage: 2\n",
                                                    2.0 * 4 * 512)));
    const BuiltStep b = f.build(false);
    // Each (data, stage) rank: 2 layers + (stages 0 and 3) the vocabulary matrix, reduced once per micro-batch.
    const double per_stage_layers = 2.0 * 12.0 * 512 * 512;
    const double expected = M * 4.0 * 2.0 * (4.0 * per_stage_layers + 2.0 * 32000.0 * 512);
    CHECK(grad_reduce_bytes(b, CollectiveOp::reduce_scatter) == Approx(expected));
    CHECK(find_phase(b.graph, {"stage1 chunk1 mb3 dense grads"}));
    std::vector<PhaseId> order;
    REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(order)));
  }
}

TEST_CASE("workload::estimate_memory: stored activations follow Korthikanti et al.'s list, the QKV input included",
          "[workload][memory][audit]") {
  // The audit's act scenario: 4 layers, d 2048, 16 heads, seq 2048, 4 sequences, tensor 4, attention dropout 0.1.
  const double L = 4, d = 2048, a = 16, s = 2048, bseq = 4, tp = 4, V = 256;
  const double sbh = s * bseq * d;
  const auto& a100 = t::real_catalog().accelerator("a100");
  auto need = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> o{"cluster.topology.gpus_per_node=4", "training.rematerialization=none", "training.attention_dropout=0.1"};
    o.insert(o.end(), extra.begin(), extra.end());
    return estimate_memory_need(t::load(t::scenario_yaml(dense(4, 2048, 16, 256, 2048), "a100", 4, "  tensor: 4\n", bseq * s), o), a100);
  };
  const double logits = s * bseq * V / tp * 4.0;
  SECTION("tensor parallel: Korthikanti less the hidden-dropout masks") {
    // §4.2.1: the layer norms' inputs 4sbh, the QKV and FFN inputs 2sbh each, two dropout masks sbh each (replicated);
    // Q, K, V, the output projection's input, the FFN's 16sbh (split); softmax, attention-dropout mask and output.
    const double korthikanti = L * (sbh * (10.0 + 24.0 / tp) + 5.0 * a * s * s * bseq / tp);
    const double masks = L * 2.0 * sbh;  // no hidden dropout in moesim
    CHECK(need({}).activations_no_remat_bytes == Approx(korthikanti - masks + logits).epsilon(1e-9));
  }
  SECTION("sequence parallel: Korthikanti less the hidden-dropout masks") {
    const double korthikanti = L * (sbh * 34.0 / tp + 5.0 * a * s * s * bseq / tp);
    const double masks = L * 2.0 * sbh / tp;
    CHECK(need({"parallelism.sequence_parallel=true"}).activations_no_remat_bytes == Approx(korthikanti - masks + logits).epsilon(1e-9));
  }
  SECTION("grouped-query attention stores K and V of its own heads") {
    // kv_heads 8 over tensor 4: 2 heads of K and V per rank instead of 4; kv_heads 1: one, replicated.
    const double dh = d / a, tok = s * bseq;
    const double mha = need({}).activations_no_remat_bytes;
    CHECK(mha - need({"model.kv_heads=8"}).activations_no_remat_bytes == Approx(L * tok * 2.0 * (4.0 - 2.0) * dh * 2.0).epsilon(1e-9));
    CHECK(mha - need({"model.kv_heads=1"}).activations_no_remat_bytes == Approx(L * tok * 2.0 * (4.0 - 1.0) * dh * 2.0).epsilon(1e-9));
  }
  SECTION("multi-head latent attention stores the down-projections' input") {
    // MLA: q_lora 96, kv_lora 64, RoPE 16, 4 heads of 32, d 256, FFN 512, 2 layers, seq 128, 8 data-parallel
    // replicas. Per token and layer: the layer norms' inputs 2d, the down-projections' input d, the compressed query
    // and latent with the RoPE key, queries and keys h (dh + RoPE), values and context h dh, the FFN input d and its
    // hidden 2 x 512; scores and probabilities 2 h s. bf16; 128 tokens per device.
    const auto sc = t::load(t::scenario_yaml("  layers: 2\n  d_model: 256\n  d_ff: 512\n  heads: 4\n  d_head: 32\n  vocab: 1000\n"
                                             "  seq_len: 128\n  mla: {kv_lora_rank: 64, qk_rope_head_dim: 16, q_lora_rank: 96}\n",
                                             "h100", 8, "  data: 8\n", 8.0 * 128),
                            {"training.rematerialization=none"});
    const double dm = 256, h = 4, dhm = 32, rope = 16, T = 128;
    const double per_tok = 3.0 * dm + 96 + 64 + rope + 2.0 * h * (dhm + rope) + 2.0 * h * dhm + dm + 2.0 * 512 + 2.0 * h * 128;
    CHECK(estimate_memory_need(sc, t::real_catalog().accelerator("h100")).activations_no_remat_bytes ==
          Approx(2.0 * T * per_tok * 2.0 + T * 1000 * 4.0).epsilon(1e-9));
  }
}

TEST_CASE("workload::StepBuilder: grouped-query attention's model FLOPs do not depend on tensor parallelism",
          "[workload][step][audit]") {
  // 2 layers of d 1024, 16 heads of 64, one key/value head (MQA), seq 512, 8 sequences per step on 8 H100s.
  const double L = 2, d = 1024, dh = 64, T = 8.0 * 512;
  auto built = [&](const std::string& par, int kv) {
    const t::StepFixture f(t::load(t::scenario_yaml(dense(2, 1024, 16, 32000, 512, "  kv_heads: " + std::to_string(kv) + "\n"), "h100",
                                                    8, par, T)));
    return f.build(false);
  };
  const BuiltStep t1 = built("  data: 8\n", 1), t4 = built("  data: 2\n  tensor: 4\n", 1), mha4 = built("  data: 2\n  tensor: 4\n", 16);
  CHECK(t4.stats.model_flops == Approx(t1.stats.model_flops).epsilon(1e-12));
  // Against 16 key/value heads: 15 fewer heads of K and V projections, 2 x 15 x d_head x d multiply-adds per token and
  // layer, 6 FLOPs each over forward and backward.
  CHECK(mha4.stats.model_flops - t4.stats.model_flops == Approx(6.0 * T * L * 2.0 * 15.0 * dh * d).epsilon(1e-9));
}

TEST_CASE("workload::estimate_memory: grouped-query attention's K and V projections are replicated when kv_heads < tensor",
          "[workload][memory][audit]") {
  // 2 layers of d 1024, 16 heads of 64, FFN 4096, vocabulary 32000, tensor 4: per rank Q and O 2 x 16/4 heads, K and V
  // max(1, kv / 4) heads each, FFN 2 x 1024 x 4096 / 4; the vocabulary matrix / 4. bf16 weights.
  const double d = 1024, dh = 64, V = 32000;
  auto params = [&](int kv) {
    const auto sc = t::load(t::scenario_yaml(dense(2, 1024, 16, 32000, 512, "  kv_heads: " + std::to_string(kv) + "\n"), "h100", 8,
                                             "  data: 2\n  tensor: 4\n", 2.0 * 512));
    return estimate_memory_need(sc, t::real_catalog().accelerator("h100")).params_bytes;
  };
  auto by_hand = [&](double kv_per_rank) {
    return (2.0 * (d * dh * 2.0 * 16.0 / 4.0 + d * dh * 2.0 * kv_per_rank + 2.0 * d * 4.0 * d / 4.0) + V * d / 4.0) * 2.0;
  };
  CHECK(params(1) == Approx(by_hand(1.0)).epsilon(1e-12));
  CHECK(params(2) == Approx(by_hand(1.0)).epsilon(1e-12));
  CHECK(params(8) == Approx(by_hand(2.0)).epsilon(1e-12));
}

TEST_CASE("workload: fp8 training holds bf16 weights, an fp32 master copy and fp32 gradients, GEMMs at fp8",
          "[workload][memory][step][fp8][audit]") {
  // 4 layers of d 512, vocabulary 32000, 8 data-parallel H100s.
  const double N = 4.0 * 12.0 * 512 * 512 + 32000.0 * 512;
  const auto& h100 = t::real_catalog().accelerator("h100");
  auto sc = [](const std::string& dtype, const std::vector<std::string>& o = {}) {
    return t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 8, "  data: 8\n  zero_stage: 1\n",
                                    8.0 * 512),
                   o);
  };
  SECTION("memory: weights 2, gradients 4 or 2, master and Adam 12 bytes") {
    const MemoryEstimate e = estimate_memory_need(sc("fp8"), h100);
    CHECK(e.params_bytes == Approx(2.0 * N));
    CHECK(e.grads_bytes == Approx(4.0 * N));
    CHECK(e.optimizer_bytes == Approx(12.0 * N / 8.0));
    CHECK(moesim::workload::grad_dtype_bytes(sc("fp8"), h100) == 4.0);
    CHECK(moesim::workload::grad_dtype_bytes(sc("fp8", {"training.grad_dtype=model"}), h100) == 2.0);
    CHECK(estimate_memory_need(sc("fp8", {"training.grad_dtype=model"}), h100).grads_bytes == Approx(2.0 * N));
    CHECK(moesim::workload::training_weight_dtype("fp8") == "bf16");
    CHECK(moesim::workload::training_weight_dtype("fp16") == "fp16");
  }
  SECTION("step: fp32 gradient reduction, bf16 weight gathers, fp8 GEMMs") {
    const t::StepFixture f8(sc("fp8")), f16(sc("bf16"));
    const BuiltStep b8 = f8.build(false), b16 = f16.build(false);
    CHECK(grad_reduce_bytes(b8, CollectiveOp::reduce_scatter) == Approx(N * 4.0 * 8.0));
    CHECK(kind_bytes(b8, "comm.zero_all_gather") == Approx(N * 2.0 * 8.0));
    CHECK(kind_s(b8, "compute.optimizer") == Approx(kind_s(b16, "compute.optimizer")).epsilon(1e-12));
    CHECK(kind_s(b8, "compute.ffn") < kind_s(b16, "compute.ffn"));
  }
}

TEST_CASE("workload::estimate_memory: MoE activations with the gather dispatch count the kept assignments, not capacity slots",
          "[workload][memory][moe][audit]") {
  // 4 MoE layers of d 512, 8 experts of FFN 2048, top-2, 8 expert-parallel ranks, 4 sequences of 512 per rank.
  const double L = 4, d = 512, f = 2048, tok = 4.0 * 512;
  const std::string model = dense(4, 512, 8, 32000, 512, "  experts: 8\n  top_k: 2\n  moe_every: 1\n");
  auto act = [&](const std::string& accel, int count, const std::vector<std::string>& o) {
    std::vector<std::string> all{"training.rematerialization=none"};
    all.insert(all.end(), o.begin(), o.end());
    const auto sc = t::load(t::scenario_yaml(model, accel, count, "  expert: 8\n", 8.0 * tok), all);
    return estimate_memory_need(sc, t::real_catalog().accelerator(accel)).activations_no_remat_bytes;
  };
  // Per slot and token: the dispatched row (d) and the FFN hidden before and after GELU (2f). Not the expert's output:
  // the gather dispatch weights the rows by their probabilities in the activation (Megatron-Core's
  // activation_func_with_probs), so the combine's backward reads nothing stored.
  const double per_slot = L * tok * (d + 2.0 * f) * 2.0;
  SECTION("capacity factor 1.25 stores as much as dropless") {
    CHECK(act("h100", 8, {"model.capacity_factor=1.25"}) == Approx(act("h100", 8, {"routing.dropless=true"})).epsilon(1e-12));
  }
  SECTION("a capacity below top_k clips the kept assignments") {
    CHECK(act("h100", 8, {"routing.dropless=true"}) - act("h100", 8, {"model.capacity_factor=0.5"}) == Approx(per_slot).epsilon(1e-9));
  }
  SECTION("the einsum dispatch keeps the padded buffers") {
    CHECK(act("tpu_v4", 8, {"model.capacity_factor=1.25"}) > act("tpu_v4", 8, {"routing.dropless=true"}));
  }
}

TEST_CASE("workload::estimate_memory: ZeRO-3 holds the gathered vocabulary matrix and gathers nothing without replicas",
          "[workload][memory][zero][audit]") {
  const auto& h100 = t::real_catalog().accelerator("h100");
  const double d = 512, V = 32000, layer = 12.0 * d * d, N = 4.0 * layer + V * d;
  SECTION("8 replicas: the shard, two layers and the vocabulary matrix gathered") {
    const auto sc = t::load(t::scenario_yaml(dense(4, 512, 8, 32000, 512), "h100", 8, "  data: 8\n  zero_stage: 3\n", 8.0 * 512));
    CHECK(estimate_memory_need(sc, h100).params_bytes == Approx((N / 8.0 + 2.0 * layer + V * d) * 2.0).epsilon(1e-12));
  }
  SECTION("no replicas: nothing is sharded or gathered") {
    auto need = [&](int zero) {
      const auto sc = t::load(t::scenario_yaml(dense(16, 512, 8, 32000, 512), "h100", 8,
                                               "  pipeline: 4\n  tensor: 2\n  microbatches: 4\n  zero_stage: " + std::to_string(zero) + "\n",
                                               4.0 * 512));
      return estimate_memory_need(sc, h100);
    };
    CHECK(need(3).params_bytes == Approx(need(0).params_bytes).epsilon(1e-12));
    CHECK(need(3).total_bytes() == Approx(need(0).total_bytes()).epsilon(1e-12));
  }
}
