// SPDX-License-Identifier: Apache-2.0
// training.recompute_modules: selective recomputation drops exactly the tensors of its modules (the memory estimate,
// worked out here from the scenario's numbers) and recomputes their forward kernels before each layer's backward
// (the step builder), one module's cost independent of the others'.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "workload_test_support.hpp"

using moesim::workload::estimate_memory_need;
namespace t = moesim::workload::test;

namespace {

// 4 decoder layers of d 1024 (16 heads of 64), FFN 4096, sequences of 1024; 8 sequences per step on 8 H100s, data
// parallel: one sequence (1024 tokens) per device, one micro-batch, no pipeline. bf16, FlashAttention (the attention
// core stores only its log-sum-exp, which core_attn does not drop).
const double kD = 1024, kTok = 1024, kLayers = 4;

std::string model(const std::string& extra = "") {
  return "  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 16\n  vocab: 32000\n  seq_len: 1024\n" + extra;
}

moesim::scenario::Scenario load(const std::string& model_block, const std::string& remat, const std::string& modules = "") {
  std::vector<std::string> sets{"training.attention_kernel=fused", "training.rematerialization=" + remat};
  if (!modules.empty()) sets.push_back("training.recompute_modules=" + modules);
  return t::load(t::scenario_yaml(model_block, "h100", 8, "  data: 8\n", 8 * kTok), sets);
}

double activations(const moesim::scenario::Scenario& s) {
  return estimate_memory_need(s, t::real_catalog().accelerator("h100")).activations_bytes;
}

}  // namespace

TEST_CASE("workload::estimate_memory: selective recomputation drops its modules' tensors, one layer's held back",
          "[workload][memory][remat][recompute_modules]") {
  // One micro-batch of 4 identical layers: selective keeps all but the dropped bytes, plus one layer's dropped bytes
  // while it is recomputed: none - selective = (layers - 1) x one layer's dropped bytes.
  const double none = activations(load(model(), "none"));
  SECTION("core_attn under FlashAttention drops nothing") {
    CHECK(activations(load(model(), "selective", "core_attn")) == Approx(none).epsilon(1e-12));
  }
  SECTION("layernorm: the two norms' outputs, the QKV and FFN up-projections' inputs (2 d per token, bf16)") {
    const double per_layer = 2.0 * kD * kTok * 2.0;
    CHECK(none - activations(load(model(), "selective", "layernorm")) == Approx((kLayers - 1.0) * per_layer).epsilon(1e-12));
  }
  SECTION("moe_act: the routed experts' activation outputs, top_k rows of expert_d_ff per token (dropless)") {
    // Every layer an MoE of 8 experts of width 1024, top-2, dropless; data 8 -> expert 8 would change the replicas, so
    // the experts stay data-parallel copies (expert 1): 2 rows per token of f = 1024.
    const std::string moe = model("  experts: 8\n  top_k: 2\n  expert_d_ff: 1024\n") ;
    auto load_moe = [&](const std::string& remat, const std::string& modules) {
      std::vector<std::string> sets{"training.attention_kernel=fused", "training.rematerialization=" + remat, "routing.dropless=true"};
      if (!modules.empty()) sets.push_back("training.recompute_modules=" + modules);
      return t::load(t::scenario_yaml(moe, "h100", 8, "  data: 8\n", 8 * kTok), sets);
    };
    const double moe_none = activations(load_moe("none", ""));
    const double per_layer = 2.0 * 1024.0 * kTok * 2.0;
    CHECK(moe_none - activations(load_moe("selective", "moe_act")) == Approx((kLayers - 1.0) * per_layer).epsilon(1e-12));
    // layernorm in an MoE layer: the attention norm's output (a GEMM input) and the router's input, d each.
    CHECK(moe_none - activations(load_moe("selective", "layernorm")) ==
          Approx((kLayers - 1.0) * 2.0 * kD * kTok * 2.0).epsilon(1e-12));
  }
  SECTION("mla_up_proj: MLA's up-projected queries and keys (heads x (d_head + rope)) and values (heads x d_head)") {
    const std::string mla = model("  mla: {kv_lora_rank: 128, qk_rope_head_dim: 32, q_lora_rank: 256}\n");
    const double mla_none = activations(load(mla, "none"));
    const double h = 16, dh = 64, rope = 32;
    const double per_layer = (2.0 * h * (dh + rope) + h * dh) * kTok * 2.0;
    CHECK(mla_none - activations(load(mla, "selective", "mla_up_proj")) == Approx((kLayers - 1.0) * per_layer).epsilon(1e-12));
  }
}

TEST_CASE("workload::StepBuilder: selective recomputation runs each module's forward kernels again, costs adding up",
          "[workload][step][remat][recompute_modules]") {
  const std::string moe = model("  experts: 8\n  top_k: 2\n  expert_d_ff: 1024\n  mla: {kv_lora_rank: 128, qk_rope_head_dim: 32}\n");
  auto remat_s = [&](const std::string& modules) {
    const t::StepFixture f(t::load(t::scenario_yaml(moe, "h100", 8, "  expert: 8\n", 8 * kTok),
                                   {"training.attention_kernel=fused", "training.rematerialization=selective",
                                    "training.recompute_modules=" + modules}));
    return t::kind_s(f.build(false, 0, true), "compute.remat");
  };
  const double core = remat_s("core_attn"), ln = remat_s("layernorm"), up = remat_s("mla_up_proj"), act = remat_s("moe_act");
  CHECK(core == 0.0);  // FlashAttention recomputes inside its own backward
  CHECK(ln > 0.0);
  CHECK(up > 0.0);
  CHECK(act > 0.0);
  CHECK(remat_s("layernorm,mla_up_proj,moe_act") == Approx(ln + up + act).epsilon(1e-9));
  CHECK(remat_s("moe_act, layernorm") == Approx(ln + act).epsilon(1e-9));  // order and spaces do not matter
}
