// SPDX-License-Identifier: Apache-2.0
// Multi-head latent attention (DeepSeek-V2 §2.1.2, arXiv 2405.04434) and shared experts (DeepSeekMoE, arXiv
// 2401.06066) in training: the step's model FLOPs by hand, the projections' time against standard attention, the
// gradient reduction and optimizer of the shared experts' parameters, the per-device memory, and the resolver.

#include <catch2/catch.hpp>

#include <string>

#include "moesim/core/error.hpp"
#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::CollectiveOp;
using moesim::workload::estimate_memory_need;
using moesim::workload::Phase;
namespace t = moesim::workload::test;
using t::kind_s;

namespace {

/** A decoder-only model block with explicit heads x d_head (not tied to d_model). */
std::string model_block(int layers, int d_model, int d_ff, int heads, int d_head, int vocab, int seq_len,
                        const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: " + std::to_string(d_model) +
         "\n  d_ff: " + std::to_string(d_ff) + "\n  heads: " + std::to_string(heads) +
         "\n  d_head: " + std::to_string(d_head) + "\n  vocab: " + std::to_string(vocab) +
         "\n  seq_len: " + std::to_string(seq_len) + "\n" + extra;
}


/** Bytes of the dense gradients' data-parallel reduction, summed over the devices. */
double dense_grad_bytes(const BuiltStep& b) {
  double sum = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == "comm.grad_all_reduce" && t::contains(p->label, "dense grads"))
      for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
  return sum;
}

/** Hardware FLOPs of the optimizer phases (10 per parameter updated, summed over the devices). */
double optimizer_flops(const BuiltStep& b) {
  double sum = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->type == Phase::Type::compute && t::contains(p->label, "optimizer")) sum += p->compute.hardware_flops;
  return sum;
}

/** Collective phases whose label contains `part`. */
std::size_t count_label(const BuiltStep& b, const std::string& part) {
  std::size_t n = 0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->type == Phase::Type::collective && t::contains(p->label, part)) ++n;
  return n;
}

}  // namespace

TEST_CASE("workload::StepBuilder: MLA attention model FLOPs per token match the projections and core by hand",
          "[workload][step][mla]") {
  // Dense decoder, non-gated FFN: L = 2, d = 256, d_ff = 512, 4 heads of d_head 32, vocabulary 1000, s = 128;
  // MLA kv_lora_rank 64, qk_rope_head_dim 16, q_lora_rank 96.
  const double L = 2, d = 256, f = 512, h = 4, dh = 32, V = 1000, s = 128, lora = 64, rope = 16;
  const double T = 16.0 * s;  // tokens of the step
  auto fwd_per_token = [&](double ql) {
    // Projections, 2 FLOPs per multiply-add of each weight: q (through the q_lora_rank bottleneck when ql > 0),
    // kv down to the latent + RoPE key, kv up to heads x (d_head key + d_head value), output heads x d_head -> d.
    const double q = ql > 0 ? 2.0 * (d * ql + ql * h * (dh + rope)) : 2.0 * d * h * (dh + rope);
    const double kv = 2.0 * (d * (lora + rope) + lora * h * 2.0 * dh);
    const double out = 2.0 * h * dh * d;
    // Core over the full s x s matrices: scores of head dim d_head + RoPE, values of d_head.
    const double core = 2.0 * h * s * (dh + rope) + 2.0 * h * s * dh;
    const double ffn = 2.0 * 2.0 * d * f;  // up and down, non-gated
    const double head = 2.0 * V * d;
    return L * (q + kv + out + core + ffn) + head;
  };
  // With ql = 96: q 2 (256 x 96 + 96 x 4 x 48) = 86016, kv 2 (256 x 80 + 64 x 256) = 73728, out 65536,
  // core 2 x 4 x 128 x 48 + 2 x 4 x 128 x 32 = 81920, FFN 524288: 831488 per layer; head 512000.
  REQUIRE(fwd_per_token(96) == 2.0 * 831488.0 + 512000.0);
  const std::string mla_q = "  mla: {kv_lora_rank: 64, qk_rope_head_dim: 16, q_lora_rank: 96}\n";
  const std::string mla_noq = "  mla: {kv_lora_rank: 64, qk_rope_head_dim: 16}\n";
  SECTION("with a query bottleneck, data parallel") {
    const t::StepFixture fx(t::load(t::scenario_yaml(model_block(2, 256, 512, 4, 32, 1000, 128, mla_q), "h100", 8, "  data: 8\n", T)));
    // Training = forward + backward (twice the forward): 3 x forward.
    CHECK(fx.build(false).stats.model_flops == Approx(3.0 * T * fwd_per_token(96)).epsilon(1e-12));
  }
  SECTION("queries straight from d_model") {
    const t::StepFixture fx(t::load(t::scenario_yaml(model_block(2, 256, 512, 4, 32, 1000, 128, mla_noq), "h100", 8, "  data: 8\n", T)));
    CHECK(fx.build(false).stats.model_flops == Approx(3.0 * T * fwd_per_token(0)).epsilon(1e-12));
  }
  SECTION("tensor-parallel: the replicated down-projections count once per tensor group") {
    const t::StepFixture fx(
        t::load(t::scenario_yaml(model_block(2, 256, 512, 4, 32, 1000, 128, mla_q), "h100", 8, "  data: 4\n  tensor: 2\n", T)));
    const BuiltStep b = fx.build(false);
    CHECK(b.stats.model_flops == Approx(3.0 * T * fwd_per_token(96)).epsilon(1e-12));
    // ... but every tensor rank runs them: more hardware FLOPs than model FLOPs by at least the replica's GEMMs
    // (one extra copy of d x (q_lora + kv_lora + rope) per token, 3 passes).
    CHECK(b.stats.hardware_flops - b.stats.model_flops >= 3.0 * T * 2.0 * L * d * (96 + lora + rope) * (1 - 1e-9));
  }
}

TEST_CASE("workload::StepBuilder: shared experts add a dense FFN of expert_d_ff per token to each MoE layer",
          "[workload][step][shared_experts]") {
  // 4 layers, the first dense, then 3 MoE layers (moe_every 1) of 8 experts, top-2, swiglu (3 matrices),
  // expert_d_ff 256, dropless (the routed experts' FLOPs do not depend on a capacity).
  const double d = 256, fe = 256, s = 128, moe_layers = 3;
  const double T = 16.0 * s;
  auto model = [&](int shared) {
    return model_block(4, 256, 1024, 4, 64, 1000, 128,
                       "  experts: 8\n  top_k: 2\n  moe_every: 1\n  first_dense_layers: 1\n  expert_d_ff: 256\n"
                       "  activation: swiglu\n  shared_experts: " +
                           std::to_string(shared) + "\n");
  };
  auto step = [&](int shared, const std::string& parallelism) {
    const t::StepFixture fx(t::load(t::scenario_yaml(model(shared), "h100", 8, parallelism, T, "routing:\n  dropless: true\n")));
    return fx.build(false);
  };
  // One shared expert: 2 FLOPs x 3 matrices x d x expert_d_ff per token and MoE layer in the forward, twice that in
  // the backward: 3 passes x T tokens x 3 layers x 2 x 3 x 256 x 256 = 3 x 2048 x 3 x 393216.
  const double per_shared = 3.0 * T * moe_layers * 2.0 * 3.0 * d * fe;
  REQUIRE(per_shared == 3.0 * 2048.0 * 3.0 * 393216.0);
  SECTION("expert parallel") {
    const BuiltStep b0 = step(0, "  expert: 8\n"), b1 = step(1, "  expert: 8\n"), b2 = step(2, "  expert: 8\n");
    CHECK(b1.stats.model_flops - b0.stats.model_flops == Approx(per_shared).epsilon(1e-9));
    CHECK(b2.stats.model_flops - b0.stats.model_flops == Approx(2.0 * per_shared).epsilon(1e-9));
    CHECK(b1.stats.assignments == b0.stats.assignments);  // the routed experts are untouched
    CHECK(kind_s(b0, "compute.shared_experts") == 0.0);
    CHECK(kind_s(b1, "compute.shared_experts") > 0.0);
    CHECK(kind_s(b2, "compute.shared_experts") > kind_s(b1, "compute.shared_experts"));
  }
  SECTION("tensor x expert: split over the tensor ranks, their own tensor-parallel all-reduce, gradients and "
          "optimizer with the dense parameters") {
    const std::string par = "  expert: 4\n  tensor: 2\n";
    const BuiltStep b0 = step(0, par), b1 = step(1, par);
    CHECK(b1.stats.model_flops - b0.stats.model_flops == Approx(per_shared).epsilon(1e-9));
    // One all-reduce of [tokens, d_model] after the block, forward and backward, per MoE layer (one micro-batch).
    CHECK(count_label(b0, "shared experts TP") == 0);
    CHECK(count_label(b1, "shared experts TP all-reduce") == static_cast<std::size_t>(moe_layers * 2));
    // Gradients: each device holds 1/tensor of the shared expert's 3 d fe parameters per MoE layer, reduced over
    // the 4 expert ranks (data x expert) of each of the 8 devices, in fp32 (bf16 model on GPUs).
    const double grad_b = 4.0;
    const double shared_params_per_device = moe_layers * 3.0 * d * fe / 2.0;
    CHECK(dense_grad_bytes(b1) - dense_grad_bytes(b0) == Approx(8.0 * shared_params_per_device * grad_b).epsilon(1e-9));
    // The optimizer (10 FLOPs per parameter, ZeRO 0: every device updates all it holds) updates them too.
    CHECK(optimizer_flops(b1) - optimizer_flops(b0) == Approx(8.0 * 10.0 * shared_params_per_device).epsilon(1e-9));
  }
  SECTION("tensor x expert with sequence parallelism: all-gather before, reduce-scatter after, re-gather in the backward") {
    const t::StepFixture fx(t::load(t::scenario_yaml(model(1), "h100", 8, "  expert: 4\n  tensor: 2\n  sequence_parallel: true\n", T,
                                                     "routing:\n  dropless: true\n")));
    const BuiltStep b = fx.build(false);
    CHECK(count_label(b, "shared experts TP SP all-gather") == static_cast<std::size_t>(moe_layers * 2));
    CHECK(count_label(b, "shared experts TP SP input re-gather") == static_cast<std::size_t>(moe_layers));
    CHECK(count_label(b, "shared experts TP SP reduce-scatter") == static_cast<std::size_t>(moe_layers * 2));
  }
}

TEST_CASE("workload::StepBuilder: MLA with a small latent projects faster than multi-head attention of the same heads",
          "[workload][step][mla]") {
  // 16 heads of 64 (heads x d_head = d_model = 1024), no RoPE part so that the attention cores are the same: the
  // difference is the projections. Per token, multi-head attention multiplies-adds 4 x 1024^2 = 4.19M weights
  // (QKV and output); MLA with a latent of 64 and queries from d_model 1024^2 (q) + 1024 x 64 (kv down) + 64 x 2048
  // (kv up) + 1024^2 (output) = 2.29M; with a latent of 2048, 1024^2 + 1024 x 2048 + 2048 x 2048 + 1024^2 = 8.39M.
  const double T = 64.0 * 1024;  // 8 sequences of 1024 per device
  auto attention_s = [&](const std::string& mla) {
    const t::StepFixture fx(
        t::load(t::scenario_yaml(model_block(2, 1024, 4096, 16, 64, 32000, 1024, mla), "h100", 8, "  data: 8\n", T)));
    return kind_s(fx.build(false), "compute.attention");
  };
  const double mha = attention_s("");
  const double small = attention_s("  mla: {kv_lora_rank: 64, qk_rope_head_dim: 0}\n");
  const double large = attention_s("  mla: {kv_lora_rank: 2048, qk_rope_head_dim: 0}\n");
  REQUIRE(mha > 0.0);
  CHECK(small < mha);
  CHECK(large > mha);
  SECTION("tensor-parallel: the replicated kv down-projection keeps MLA below MHA") {
    auto attention_tp = [&](const std::string& mla) {
      const t::StepFixture fx(t::load(
          t::scenario_yaml(model_block(2, 1024, 4096, 16, 64, 32000, 1024, mla), "h100", 8, "  data: 4\n  tensor: 2\n", T)));
      return kind_s(fx.build(false), "compute.attention");
    };
    CHECK(attention_tp("  mla: {kv_lora_rank: 64, qk_rope_head_dim: 0}\n") < attention_tp(""));
  }
}

TEST_CASE("workload::estimate_memory: MLA and shared experts in a training scenario", "[workload][memory][mla]") {
  const double d = 256, f = 512, h = 4, dh = 32, V = 1000, s = 128, lora = 64, rope = 16, ql = 96, L = 2;
  const double T = 8.0 * s;  // one sequence per device
  const std::string mla = "  mla: {kv_lora_rank: 64, qk_rope_head_dim: 16, q_lora_rank: 96}\n";
  const auto& accel = t::real_catalog().accelerator("h100");
  SECTION("parameters per device: the down-projections whole on each tensor rank, the rest split") {
    const auto sc = t::load(t::scenario_yaml(model_block(2, 256, 512, 4, 32, 1000, 128, mla), "h100", 8, "  data: 4\n  tensor: 2\n", T));
    const double down = d * (ql + lora + rope);
    const double split = ql * h * (dh + rope) + lora * h * 2.0 * dh + h * dh * d;
    // Per layer: MLA (down whole, the rest / 2), the non-gated FFN / 2; the embedding / 2; bf16 weights.
    const double params = L * (down + split / 2.0 + 2.0 * d * f / 2.0) + V * d / 2.0;
    CHECK(estimate_memory_need(sc, accel).params_bytes == Approx(params * 2.0).epsilon(1e-12));
  }
  SECTION("activations: the latents and heads x (d_head + RoPE) queries and keys instead of heads x d_head") {
    auto act = [&](const std::string& extra) {
      const auto sc = t::load(t::scenario_yaml(model_block(2, 256, 512, 4, 32, 1000, 128, extra), "h100", 8, "  data: 8\n", T,
                                               ""),
                              {"training.rematerialization=none"});
      return estimate_memory_need(sc, accel).activations_no_remat_bytes;
    };
    // Per token and layer (elements): MLA stores q_lora + kv_lora + RoPE + 2 h (d_head + RoPE) + 2 h d_head;
    // standard attention 4 h d_head. Tokens per device T / 8, bf16, one micro-batch in flight.
    const double delta = L * (T / 8.0) * 2.0 * (ql + lora + rope + 2.0 * h * (dh + rope) + 2.0 * h * dh - 4.0 * h * dh);
    CHECK(act(mla) - act("") == Approx(delta).epsilon(1e-9));
  }
  SECTION("shared experts grow parameters, gradients, optimizer state and activations") {
    auto need = [&](int shared) {
      const auto sc = t::load(t::scenario_yaml(
          model_block(4, 256, 1024, 4, 64, 1000, 128,
                      "  experts: 8\n  top_k: 2\n  moe_every: 1\n  first_dense_layers: 1\n  expert_d_ff: 256\n  activation: swiglu\n" + mla +
                          "  shared_experts: " + std::to_string(shared) + "\n"),
          "h100", 8, "  expert: 4\n  tensor: 2\n", T, "routing:\n  dropless: true\n"), {"training.rematerialization=none"});
      return estimate_memory_need(sc, accel);
    };
    const auto m0 = need(0), m1 = need(1), m2 = need(2);
    // 3 MoE layers x 3 matrices x d x expert_d_ff / tensor 2, bf16 weights.
    const double shared_params = 3.0 * 3.0 * 256.0 * 256.0 / 2.0;
    CHECK(m1.params_bytes - m0.params_bytes == Approx(shared_params * 2.0).epsilon(1e-9));
    CHECK(m2.params_bytes - m0.params_bytes == Approx(2.0 * shared_params * 2.0).epsilon(1e-9));
    CHECK(m1.grads_bytes > m0.grads_bytes);
    CHECK(m1.optimizer_bytes > m0.optimizer_bytes);
    // Activations: the shared FFN's 3 x expert_d_ff / tensor intermediates per token and MoE layer (T / 4 tokens
    // per expert rank's micro-batch, bf16).
    CHECK(m1.activations_no_remat_bytes - m0.activations_no_remat_bytes ==
          Approx(3.0 * (T / 4.0) * 3.0 * 256.0 / 2.0 * 2.0).epsilon(1e-9));
    CHECK(m2.total_bytes() > m1.total_bytes());
    CHECK(m1.total_bytes() > m0.total_bytes());
  }
}

TEST_CASE("scenario::resolve: training scenarios accept MLA and shared experts", "[workload][scenario][mla]") {
  const std::string deepseek_like =
      model_block(4, 256, 1024, 4, 64, 1000, 128,
                  "  experts: 8\n  top_k: 2\n  first_dense_layers: 1\n  expert_d_ff: 256\n  activation: swiglu\n"
                  "  shared_experts: 2\n  mla: {kv_lora_rank: 64, qk_rope_head_dim: 16, q_lora_rank: 96}\n");
  SECTION("MLA, shared experts and first dense layers together resolve and build a step") {
    moesim::scenario::Scenario sc;
    REQUIRE_NOTHROW(sc = t::load(t::scenario_yaml(deepseek_like, "h100", 8, "  expert: 4\n  tensor: 2\n", 8.0 * 128)));
    CHECK(sc.model.is_mla());
    CHECK(sc.model.mla_kv_lora_rank == 64);
    CHECK(sc.model.mla_q_lora_rank == 96);
    CHECK(sc.model.shared_experts == 2);
    CHECK(sc.model.first_dense_layers == 1);
    CHECK(sc.resolved.contains("training"));
    const t::StepFixture fx(sc);
    const BuiltStep b = fx.build(false);
    CHECK(b.stats.model_flops > 0.0);
    CHECK(kind_s(b, "compute.shared_experts") > 0.0);
  }
  SECTION("MLA still refuses an explicit kv_heads grouping") {
    const std::string m = deepseek_like + "  kv_heads: 2\n";
    CHECK_THROWS_WITH(t::load(t::scenario_yaml(m, "h100", 8, "  expert: 4\n  tensor: 2\n", 8.0 * 128)),
                      Catch::Contains("model.kv_heads") && Catch::Contains("latent"));
  }
  SECTION("MLA in an encoder-decoder is refused where it is given") {
    const std::string m =
        "  architecture: encoder_decoder\n  encoder_layers: 2\n  decoder_layers: 2\n  d_model: 256\n  d_ff: 1024\n"
        "  heads: 4\n  vocab: 1000\n  seq_len: 128\n  mla: {kv_lora_rank: 64}\n";
    CHECK_THROWS_WITH(t::load(t::scenario_yaml(m, "h100", 8, "  data: 8\n", 8.0 * 128)),
                      Catch::Contains("model.mla") && Catch::Contains("decoder-only"));
  }
}
