// SPDX-License-Identifier: Apache-2.0
// Parameter counts, per-device memory and the rematerialisation decision.

#include <catch2/catch.hpp>

#include <filesystem>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "workload_test_support.hpp"

using moesim::scenario::Remat;
using moesim::workload::count_params;
using moesim::workload::dtype_bytes;
using moesim::workload::estimate_memory;
namespace t = moesim::workload::test;

namespace {

/** A dense decoder: `layers` x (attention + FFN), d_ff = 4 d_model, heads x d_head = d_model. */
std::string dense_model(int layers, int d_model, int heads, int vocab, int seq_len, const std::string& dtype,
                        const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: " + std::to_string(d_model) +
         "\n  d_ff: " + std::to_string(4 * d_model) + "\n  heads: " + std::to_string(heads) +
         "\n  vocab: " + std::to_string(vocab) + "\n  seq_len: " + std::to_string(seq_len) + "\n  dtype: " + dtype +
         "\n" + extra;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

TEST_CASE("workload::count_params: GShard-600B totals Patterson's 619B", "[workload][memory]") {
  const std::string file = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/published/gshard_600b.yaml";
  if (!std::filesystem::exists(file)) {
    WARN("scenarios/published/gshard_600b.yaml not present; skipped");
    return;
  }
  const auto s = moesim::scenario::load_file(file, t::real_catalog());
  const auto c = count_params(s.model);
  // Patterson et al. 2021 (arXiv 2104.10350) Table 4: GShard-600B has 619B parameters.
  CHECK(c.total() == Approx(619e9).epsilon(0.01));
  // By hand from the published shape (Lepikhin et al. 2020: 18 + 18 layers, every other FFN an MoE
  // layer of 2048 experts, d_model 1024, d_ff 8192, 16 heads of 128, vocabulary 32000, ReLU FFNs):
  const double d = 1024, f = 8192, attn = 4 * d * 16 * 128, E = 2048;
  const double moe_layers = 9 + 9, dense_ffn_layers = 9 + 9;
  const double expert = moe_layers * E * 2 * d * f;
  const double dense = (18 + 2 * 18) * attn  // encoder self-attention; decoder self + cross-attention
                       + dense_ffn_layers * 2 * d * f + moe_layers * d * E  // dense FFNs, routers
                       + 32000 * d;                                        // one shared embedding
  CHECK(c.expert == expert);
  CHECK(c.dense == dense);
  CHECK(c.expert_per_layer == E * 2 * d * f);
}

TEST_CASE("workload::count_params: small models by hand", "[workload][memory]") {
  SECTION("dense decoder, non-gated") {
    const auto s = t::load(t::scenario_yaml(dense_model(2, 64, 4, 1000, 128, "bf16"), "h100", 8, "  data: 8\n", 8 * 128));
    const auto c = count_params(s.model);
    const double per_layer = 4 * 64 * 64 + 2 * 64 * 256;
    CHECK(c.dense == 2 * per_layer + 1000 * 64);
    CHECK(c.expert == 0.0);
    CHECK(c.active_per_token_decoder == 2 * per_layer);
    CHECK(c.active_per_token_encoder == 0.0);
  }
  SECTION("gated FFNs have three matrices") {
    const auto s = t::load(t::scenario_yaml(dense_model(2, 64, 4, 1000, 128, "bf16", "  activation: swiglu\n"), "h100",
                                            8, "  data: 8\n", 8 * 128));
    CHECK(count_params(s.model).dense == 2 * (4 * 64 * 64 + 3 * 64 * 256) + 1000 * 64);
  }
  SECTION("MoE decoder: experts, routers and the top-k active experts") {
    const std::string model = dense_model(4, 64, 4, 1000, 128, "bf16", "  experts: 8\n  moe_every: 2\n  top_k: 2\n  expert_d_ff: 128\n");
    const auto s = t::load(t::scenario_yaml(model, "h100", 8, "  expert: 8\n", 8 * 128));
    const auto c = count_params(s.model);
    const double attn = 4 * 64 * 64, dense_ffn = 2 * 64 * 256, one_expert = 2 * 64 * 128, router = 64 * 8;
    CHECK(c.expert_per_layer == 8 * one_expert);
    CHECK(c.expert == 2 * 8 * one_expert);  // layers 1 and 3 are MoE (every 2nd)
    CHECK(c.dense == 4 * attn + 2 * dense_ffn + 2 * router + 1000 * 64);
    CHECK(c.active_per_token_decoder == 4 * attn + 2 * dense_ffn + 2 * (router + 2 * one_expert));
  }
}

TEST_CASE("workload::dtype_bytes: sizes and unknown dtypes", "[workload][memory]") {
  CHECK(dtype_bytes("fp32") == 4.0);
  CHECK(dtype_bytes("bf16") == 2.0);
  CHECK(dtype_bytes("fp16") == 2.0);
  CHECK(dtype_bytes("fp8") == 1.0);
  CHECK_THROWS_WITH(dtype_bytes("fp4"), Catch::Contains("fp32, bf16, fp16, fp8"));
}

TEST_CASE("workload::optimizer_step_bytes_per_param: the passes of a fused (XLA) and an eager (Megatron-LM) step",
          "[workload][memory]") {
  using moesim::scenario::Optimizer;
  using moesim::workload::optimizer_step_bytes_per_param;
  SECTION("eager, fp16 Adam: cast 2+4, unscale 4+4, norm 4, update 4+8+16, copy back 4+2, zero 2 = 54") {
    CHECK(optimizer_step_bytes_per_param(Optimizer::adam, "fp16", 2.0, false) == Approx(54.0));
    CHECK(optimizer_step_bytes_per_param(Optimizer::adamw, "fp16", 2.0, false) == Approx(54.0));
  }
  SECTION("eager, bf16 needs no loss scaling: 54 - 8 = 46; fp32 gradients need no cast: 46 - 6 + 2 (zeroing 4) = 42") {
    CHECK(optimizer_step_bytes_per_param(Optimizer::adam, "bf16", 2.0, false) == Approx(46.0));
    CHECK(optimizer_step_bytes_per_param(Optimizer::adam, "bf16", 4.0, false) == Approx(42.0));
  }
  SECTION("eager, fp32: no casts or copies: norm 4, update 4+8+16, zero 4 = 36; SGD's momentum 4+8+8") {
    CHECK(optimizer_step_bytes_per_param(Optimizer::adam, "fp32", 4.0, false) == Approx(36.0));
    CHECK(optimizer_step_bytes_per_param(Optimizer::sgd, "fp32", 4.0, false) == Approx(4.0 + 20.0 + 4.0));
  }
  SECTION("fused: gradient read once, weights, master and state read and written once") {
    CHECK(optimizer_step_bytes_per_param(Optimizer::adam, "bf16", 2.0, true) == Approx(2.0 + 4.0 + 8.0 + 16.0));
    CHECK(optimizer_step_bytes_per_param(Optimizer::adafactor, "bf16", 2.0, true) == Approx(2.0 + 4.0 + 8.0));
    CHECK(optimizer_step_bytes_per_param(Optimizer::adafactor, "fp32", 4.0, true) == Approx(4.0 + 8.0));
  }
  SECTION("an unknown dtype is an error naming the valid ones") {
    CHECK_THROWS_WITH(optimizer_step_bytes_per_param(Optimizer::adam, "int4", 2.0, false), Catch::Contains("fp32, bf16, fp16, fp8"));
  }
}

TEST_CASE("workload::estimate_memory: weights, gradients and optimizer state per device", "[workload][memory]") {
  const auto& h100 = t::real_catalog().accelerator("h100");
  // 12 layers, d 512: N = 12 (4 d^2 + 8 d^2) + V d.
  const double N = 12 * 12.0 * 512 * 512 + 32000.0 * 512;
  SECTION("mixed-precision Adam: 2 + 2 + 12 bytes per parameter (ZeRO, Rajbhandari et al. 2020, §3.1)") {
    const auto s = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "bf16"), "h100", 8, "  data: 8\n", 8 * 512),
                           {"training.grad_dtype=model"});
    REQUIRE(s.training.optimizer == moesim::scenario::Optimizer::adam);
    const auto e = estimate_memory(s, h100);
    CHECK(e.params_bytes == Approx(2 * N));
    CHECK(e.grads_bytes == Approx(2 * N));
    CHECK(e.optimizer_bytes == Approx(12 * N));
    CHECK(e.capacity_bytes == h100.hbm_bytes);
    CHECK_FALSE(e.remat);
    CHECK(e.activations_bytes == e.activations_no_remat_bytes);
  }
  SECTION("training.grad_dtype: auto keeps a bf16 model's gradients in fp32 on GPUs (Megatron-LM), fp16's in fp16") {
    const auto bf16 = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "bf16"), "h100", 8, "  data: 8\n", 8 * 512));
    REQUIRE(bf16.training.grad_dtype == moesim::scenario::GradDtype::automatic);
    CHECK(moesim::workload::grad_dtype_bytes(bf16, h100) == 4.0);
    CHECK(estimate_memory(bf16, h100).grads_bytes == Approx(4 * N));
    const auto fp16 = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "fp16"), "h100", 8, "  data: 8\n", 8 * 512));
    CHECK(moesim::workload::grad_dtype_bytes(fp16, h100) == 2.0);
    const auto fp16_fp32 = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "fp16"), "h100", 8, "  data: 8\n", 8 * 512),
                                   {"training.grad_dtype=fp32"});
    CHECK(estimate_memory(fp16_fp32, h100).grads_bytes == Approx(4 * N));
  }
  SECTION("training.grad_dtype: auto keeps the model's dtype on TPUs") {
    const auto& v4 = t::real_catalog().accelerator("tpu_v4");
    const auto s = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "bf16"), "tpu_v4", 8, "  data: 8\n", 8 * 512));
    CHECK(moesim::workload::grad_dtype_bytes(s, v4) == 2.0);
  }
  SECTION("fp32 Adafactor: weights and gradients only (factored second moments are O(rows + cols))") {
    // On a TPU, whose matrix units take fp32 (an H100's do not: the scenario refuses it).
    const auto& v4 = t::real_catalog().accelerator("tpu_v4");
    const auto s = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "fp32"), "tpu_v4", 8, "  data: 8\n", 8 * 512),
                           {"training.optimizer=adafactor"});
    const auto e = estimate_memory(s, v4);
    CHECK(e.params_bytes == Approx(4 * N));
    CHECK(e.grads_bytes == Approx(4 * N));
    CHECK(e.optimizer_bytes == 0.0);
  }
  SECTION("tensor parallelism splits the matrices") {
    const auto s = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "bf16"), "h100", 8,
                                            "  data: 4\n  tensor: 2\n", 8 * 512));
    const auto e = estimate_memory(s, h100);
    CHECK(e.params_bytes == Approx(2 * N / 2));
  }
  SECTION("a TPU v3 device is one core: half the chip's HBM") {
    const auto& v3 = t::real_catalog().accelerator("tpu_v3");
    const auto s = t::load(t::scenario_yaml(dense_model(12, 512, 8, 32000, 512, "bf16"), "tpu_v3", 4, "  data: 8\n", 8 * 512));
    CHECK(estimate_memory(s, v3).capacity_bytes == v3.hbm_bytes / 2);
  }
}

TEST_CASE("workload::estimate_memory: a pipeline stage holds its share of the layers", "[workload][memory]") {
  // 10 layers over 4 stages: 2, 2, 3, 3 layers (contiguous, balanced, as the step builder splits them).
  // The first and last stages also hold the (tied) embedding / output matrix; the most loaded stage
  // is the last: 3 layers + V d parameters, bf16 weights.
  const int d = 256, V = 1000;
  const auto s = t::load(t::scenario_yaml(dense_model(10, d, 4, V, 256, "bf16"), "h100", 8,
                                          "  data: 2\n  pipeline: 4\n", 2 * 256));
  const auto e = estimate_memory(s, t::real_catalog().accelerator("h100"));
  const double layer = 12.0 * d * d;
  CHECK(e.params_bytes == Approx(2.0 * (3 * layer + V * d)));
}

TEST_CASE("workload::estimate_memory: activations without rematerialisation are near Korthikanti et al.'s estimate",
          "[workload][memory]") {
  // Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", eq. 1):
  // one layer stores s b h (34 + 5 a s / h) bytes in 16-bit training (dropout masks included). moesim
  // counts its own tensor list (no dropout masks), so agreement is asked within 25 %.
  const int L = 12, d = 1024, a = 16, s = 2048, V = 32000;
  const auto sc = t::load(t::scenario_yaml(dense_model(L, d, a, V, s, "bf16"), "h100", 8, "  data: 8\n", 8.0 * s));
  const auto e = estimate_memory(sc, t::real_catalog().accelerator("h100"));
  const double tokens = s;  // one sequence per device
  const double logits = tokens * V * 4.0;  // fp32 logits, counted separately by moesim
  const double korthikanti = L * tokens * d * (34.0 + 5.0 * a * s / d);
  CHECK((e.activations_no_remat_bytes - logits) == Approx(korthikanti).epsilon(0.25));
}

TEST_CASE("workload::estimate_memory: rematerialisation auto, none and full", "[workload][memory]") {
  const auto& h100 = t::real_catalog().accelerator("h100");
  // 24 layers, d 1024, seq 2048 on 8 GPUs, data-parallel. ~3.9 MB of activations per token
  // (Korthikanti: 24 x (34 x 1024 + 5 x 16 x 2048) bytes) and ~5.4 GB of weights + state:
  // 4 sequences per GPU (8192 tokens, ~32 GB) fit in 80 GiB, 32 sequences (~250 GB) do not.
  const std::string model = dense_model(24, 1024, 16, 32000, 2048, "bf16");
  const auto small = t::load(t::scenario_yaml(model, "h100", 8, "  data: 8\n", 8.0 * 4 * 2048));
  const auto large = t::load(t::scenario_yaml(model, "h100", 8, "  data: 8\n", 8.0 * 32 * 2048));
  REQUIRE(small.training.rematerialization == Remat::automatic);
  SECTION("auto: off when the activations fit") {
    const auto e = estimate_memory(small, h100);
    CHECK_FALSE(e.remat);
    CHECK(e.total_bytes() <= e.capacity_bytes);
    CHECK(e.activations_bytes == e.activations_no_remat_bytes);
  }
  SECTION("auto: selective recomputation when the activations do not fit but all but the attention cores do") {
    // Attention scores and probabilities are 5as/h = 160 of Korthikanti's 34 + 160 bytes per token and hidden unit.
    const auto e = estimate_memory(large, h100);
    CHECK_FALSE(e.remat);
    CHECK(e.selective);
    CHECK(e.params_bytes + e.grads_bytes + e.optimizer_bytes + e.activations_no_remat_bytes > e.capacity_bytes);
    CHECK(e.activations_bytes < 0.3 * e.activations_no_remat_bytes);
    CHECK(e.total_bytes() <= e.capacity_bytes);
  }
  SECTION("auto: full rematerialisation when selective does not fit either, and then it fits") {
    // 64 sequences per GPU: ~540 kB per token without the attention cores (88 GB) do not fit, the layer inputs
    // (49 kB per token) and one layer's activations being recomputed (154 kB per token) do.
    const auto huge = t::load(t::scenario_yaml(model, "h100", 8, "  data: 8\n", 8.0 * 64 * 2048));
    const auto e = estimate_memory(huge, h100);
    CHECK(e.remat);
    CHECK_FALSE(e.selective);
    CHECK(e.params_bytes + e.grads_bytes + e.optimizer_bytes + e.activations_no_remat_bytes > e.capacity_bytes);
    CHECK(e.activations_bytes < e.activations_no_remat_bytes);
    CHECK(e.total_bytes() <= e.capacity_bytes);
    // 16 times the tokens, 16 times the activations without remat.
    CHECK(e.activations_no_remat_bytes ==
          Approx(16 * estimate_memory(small, h100).activations_no_remat_bytes).epsilon(0.01));
  }
  SECTION("full: always on") {
    auto s = small;
    s.training.rematerialization = Remat::full;
    CHECK(estimate_memory(s, h100).remat);
  }
  SECTION("none: a model whose activations do not fit is an error") {
    auto s = large;
    s.training.rematerialization = Remat::none;
    try {
      estimate_memory(s, h100);
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& err) {
      const std::string msg = err.what();
      CHECK(t::contains(msg, "does not fit"));
      CHECK(t::contains(msg, "GiB"));
      CHECK(t::contains(msg, "h100"));
    }
  }
  SECTION("none: fine when it fits") {
    auto s = small;
    s.training.rematerialization = Remat::none;
    CHECK_FALSE(estimate_memory(s, h100).remat);
  }
}

TEST_CASE("workload::estimate_memory: auto recomputation with a pipeline picks one mode with which every stage fits",
          "[workload][memory]") {
  // The audit's case: Mixtral-like, 8 layers on 8 stages, 8 micro-batches of 6 sequences. Stage s holds min(8 - s, 8)
  // micro-batches in flight (1F1B): stages 1-7 fit with selective recomputation (stage 1: 26.1 GB of weights, gradients
  // and state + 7 x 6.5 GB kept + 12.9 GB of one layer's attention core = 84.8 GB of 85.9), the first (the
  // vocabulary's 2.4 GB of weights and 8 micro-batches, 93.7 GB) only with full; the step applies one mode to every
  // stage, so auto must choose full, and the figures are those of the stage that needs the most.
  const std::string file = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/plan/h100-mixtral-8x7b.yaml";
  const auto& h100 = t::real_catalog().accelerator("h100");
  const auto s = moesim::scenario::load_file(
      file, t::real_catalog(),
      {"cluster.count=16", "model.layers=8", "training.batch_tokens=393216",
       "parallelism={data: 2, expert: 1, tensor: 1, pipeline: 8, microbatches: 8, zero_stage: 0}"});
  REQUIRE(s.training.rematerialization == Remat::automatic);
  const auto e = estimate_memory(s, h100);
  CHECK(e.remat);
  CHECK_FALSE(e.selective);
  CHECK(e.total_bytes() <= e.capacity_bytes);
  // Selective alone does not fit (stage 0), which auto would miss by sizing one middle stage.
  auto sel = s;
  sel.training.rematerialization = Remat::selective;
  CHECK(moesim::workload::estimate_memory_need(sel, h100).total_bytes() > e.capacity_bytes);
  CHECK_THROWS_AS(estimate_memory(sel, h100), moesim::Error);
}

TEST_CASE("workload::estimate_memory: a model that cannot fit even with remat names the accelerator",
          "[workload][memory]") {
  // 64 layers, d 8192: N ~ 64 x 12 x 8192^2 = 52e9 parameters x 16 bytes = 830 GB on each data-parallel GPU.
  const auto s = t::load(t::scenario_yaml(dense_model(64, 8192, 64, 32000, 2048, "bf16"), "h100", 8, "  data: 8\n", 8.0 * 2048));
  const auto& h100 = t::real_catalog().accelerator("h100");
  try {
    estimate_memory(s, h100);
    FAIL("expected moesim::Error");
  } catch (const moesim::Error& err) {
    const std::string msg = err.what();
    CHECK(t::contains(msg, "GiB"));
    CHECK(t::contains(msg, "h100"));
    CHECK(t::contains(msg, "with rematerialization"));  // auto tried remat first
    CHECK(t::contains(msg, fmt::format("{:.1f} GiB", h100.hbm_bytes / kGiB)));  // the device capacity
  }
}

TEST_CASE("workload::estimate_memory: selective recomputation and sequence parallelism by hand",
          "[workload][memory][selective][sequence_parallel]") {
  const auto& h100 = t::real_catalog().accelerator("h100");
  // 4 layers, d 1024, 16 heads of 64, seq 2048, tensor 4 x data 2: one sequence per replica and step.
  const int L = 4, d = 1024, a = 16, s = 2048, V = 32000;
  const double tp = 4, tok = s, b = 2.0;
  const std::string model = dense_model(L, d, a, V, s, "bf16");
  auto load = [&](const std::string& remat, bool sp) {
    return t::load(t::scenario_yaml(model, "h100", 8, std::string("  tensor: 4\n  data: 2\n") + (sp ? "  sequence_parallel: true\n" : ""),
                                    2.0 * s),
                   {"training.rematerialization=" + remat});
  };
  const double logits = tok * V / tp * 4.0;  // fp32 logits of the last stage
  // Per token and layer, elements (Korthikanti et al. 2022 §4.1 without hidden-dropout masks): the two layer norms'
  // inputs 2d and the QKV and FFN inputs d each (replicated over the tensor ranks unless sequence-parallel), QKV +
  // context 4d/t, the FFN hidden layer before and after its activation 2 x 4d/t, and the attention core's scores +
  // probabilities 2 a s / t.
  const double core = 2.0 * a * s / tp;
  auto per_layer = [&](double sp) { return (4.0 * d / sp + 12.0 * d / tp + core) * tok * b; };
  SECTION("none") {
    const auto e = estimate_memory(load("none", false), h100);
    CHECK_FALSE(e.remat);
    CHECK_FALSE(e.selective);
    CHECK(e.activations_bytes == Approx(L * per_layer(1.0) + logits));
  }
  SECTION("selective: the attention cores dropped, one layer's recomputed while it is needed") {
    const auto e = estimate_memory(load("selective", false), h100);
    CHECK(e.selective);
    CHECK_FALSE(e.remat);
    CHECK(e.activations_bytes == Approx(L * (per_layer(1.0) - core * tok * b) + logits + core * tok * b));
    CHECK(e.activations_no_remat_bytes == Approx(L * per_layer(1.0) + logits));
  }
  SECTION("sequence parallelism shards the replicated activations over the tensor ranks") {
    const auto e = estimate_memory(load("none", true), h100);
    CHECK(e.activations_bytes == Approx(L * per_layer(tp) + logits));
    const auto full = estimate_memory(load("full", true), h100), full_tp = estimate_memory(load("full", false), h100);
    // Full rematerialisation keeps each layer's input: sharded too, as is the layer being recomputed.
    CHECK(full_tp.activations_bytes - full.activations_bytes ==
          Approx(L * tok * d * b * (1.0 - 1.0 / tp) + per_layer(1.0) - per_layer(tp)));
  }
  SECTION("sequence parallel + selective is near Korthikanti et al.'s 34 s b h / t bytes per layer") {
    const auto e = estimate_memory(load("selective", true), h100);
    const double korthikanti = L * tok * d * 34.0 / tp;
    // moesim counts no dropout masks (Korthikanti's 2 + 1 + 1 bytes per element of three of the tensors), so
    // within 20 % below.
    CHECK((e.activations_bytes - logits - core * tok * b) == Approx(korthikanti).epsilon(0.2));
  }
  SECTION("auto picks none, then selective, then full, the first that fits") {
    CHECK_FALSE(estimate_memory(load("auto", true), h100).selective);  // fits as it is
  }
}

TEST_CASE("scenario: sequence parallelism needs tensor parallelism", "[workload][memory][sequence_parallel]") {
  const std::string model = dense_model(2, 512, 8, 1000, 512, "bf16");
  try {
    t::load(t::scenario_yaml(model, "h100", 8, "  data: 8\n  sequence_parallel: true\n", 8.0 * 512));
    FAIL("expected an input error");
  } catch (const std::exception& err) {
    CHECK(t::contains(err.what(), "parallelism.sequence_parallel"));
    CHECK(t::contains(err.what(), "tensor > 1"));
  }
}

TEST_CASE("workload::estimate_memory: routing groups split as the step splits them (Mesh-TensorFlow)",
          "[workload][memory][routing]") {
  // 96 tokens per device, 4 expert-parallel ranks, groups of at most 64 tokens. Fixed split: one group of 64.
  // Mesh-TensorFlow's split over the replica's 384 tokens: from 384 / 64 = 6 groups up to the first count that is a
  // multiple of 4 and divides 384, 8 groups of 48. Capacity ceil(1.1 x 2 x S / 32): 5 slots for 64 tokens (2.5 per
  // token), 4 for 48 (2.67 per token), so the capacity-padded buffers differ.
  const std::string model =
      dense_model(2, 64, 4, 1000, 32, "bf16", "  experts: 32\n  moe_every: 1\n  top_k: 2\n  capacity_factor: 1.1\n");
  auto need = [&](const std::string& split, int group) {
    const std::string routing =
        fmt::format("routing:\n  type: uniform\n  group_size_tokens: {}\n  group_split: {}\n", group, split);
    const auto s = t::load(t::scenario_yaml(model, "tpu_v4", 4, "  expert: 4\n", 4 * 96, routing));
    return moesim::workload::estimate_memory_need(s, t::real_catalog().accelerator("tpu_v4")).activations_no_remat_bytes;
  };
  const double mtf = need("mesh_tensorflow", 64), fixed48 = need("fixed", 48), fixed64 = need("fixed", 64);
  CHECK(mtf == fixed48);
  CHECK(fixed64 != fixed48);
}
