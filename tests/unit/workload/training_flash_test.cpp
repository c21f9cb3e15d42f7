// SPDX-License-Identifier: Apache-2.0
// training.attention_kernel: fused (FlashAttention, Dao et al. 2022; FlashAttention-2, Dao 2023) against the
// materialised attention core: the memory it does not store, the FLOPs it executes (causal pairs only, a backward of
// five products to the forward's two), and selective recomputation having nothing left to recompute.

#include <catch2/catch.hpp>

#include <string>

#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::estimate_memory_need;
namespace t = moesim::workload::test;

namespace {

// A decoder-only model: L = 2, d = 512, d_ff = 2048 (gelu), 8 heads of 64, vocabulary 1000, s = 4096; one sequence
// per device, 8 H100s data-parallel (bf16: b = 2 bytes).
const std::string kModel =
    "  layers: 2\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  d_head: 64\n  vocab: 1000\n  seq_len: 4096\n";

moesim::scenario::Scenario scenario(const std::string& kernel) {
  return t::load(t::scenario_yaml(kModel, "h100", 8, "  data: 8\n", 8 * 4096), {"training.attention_kernel=" + kernel});
}

}  // namespace

TEST_CASE("workload::estimate_memory: a fused attention core stores a log-sum-exp per row, not the s x s scores",
          "[workload][memory][flash]") {
  const auto mat = scenario("materialized"), fused = scenario("fused");
  REQUIRE(mat.training.fused_attention == false);
  REQUIRE(fused.training.fused_attention == true);
  const auto& accel = t::real_catalog().accelerator("h100");
  // Per layer: materialised scores and probabilities, 2 elements x heads x s per token (Korthikanti et al. 2022's
  // 4as^2b without dropout), against one fp32 log-sum-exp per head: (2 x 8 x 4096 x 2 - 8 x 4) bytes x 4096 tokens.
  const double per_layer = (2.0 * 8.0 * 4096.0 * 2.0 - 8.0 * 4.0) * 4096.0;
  REQUIRE(per_layer == 536739840.0);
  CHECK(estimate_memory_need(mat, accel).activations_no_remat_bytes -
            estimate_memory_need(fused, accel).activations_no_remat_bytes ==
        Approx(2.0 * per_layer).epsilon(1e-12));
}

TEST_CASE("workload::StepBuilder: a fused attention core executes the causal pairs, its backward five products",
          "[workload][step][flash]") {
  const double h = 8, s = 4096, dh = 64, L = 2;
  const t::StepFixture mat(scenario("materialized")), fused(scenario("fused"));
  const BuiltStep bm = mat.build(false), bf = fused.build(false);
  // Materialised, per layer: forward scores and values GEMMs 2 h s^2 (dh + dh) and a softmax of 5 FLOPs per score;
  // backward dQ, dK, dP, dV 2 h s^2 x 4 dh and the softmax's backward, twice its forward.
  const double mat_core = 2.0 * h * s * s * 2.0 * dh + 5.0 * h * s * s + 2.0 * h * s * s * 4.0 * dh + 10.0 * h * s * s;
  // Fused, per layer over the causal pairs h s (s + 1) / 2: forward 2 pairs (dh + dh); backward S again, dQ, dK
  // (3 x dh) and dP, dV (2 x dh).
  const double pairs = h * s * (s + 1.0) / 2.0;
  const double fused_core = 2.0 * pairs * 2.0 * dh + 2.0 * pairs * 5.0 * dh;
  // Summed over the 8 devices.
  CHECK(bm.stats.hardware_flops - bf.stats.hardware_flops == Approx(8.0 * L * (mat_core - fused_core)).epsilon(1e-9));
  // The model FLOPs do not depend on the kernel (the full-matrix convention of Narayanan et al. 2021).
  CHECK(bf.stats.model_flops == Approx(bm.stats.model_flops).epsilon(1e-12));
}

TEST_CASE("workload: with a fused attention core selective recomputation has nothing to recompute",
          "[workload][step][flash]") {
  const auto fused = scenario("fused");
  const t::StepFixture fx(fused);
  CHECK(fx.build(false, 0, true).stats.hardware_flops == Approx(fx.build(false).stats.hardware_flops).epsilon(1e-12));
  auto sel = fused;
  sel.training.rematerialization = moesim::scenario::Remat::selective;
  auto none = fused;
  none.training.rematerialization = moesim::scenario::Remat::none;
  const auto& accel = t::real_catalog().accelerator("h100");
  CHECK(estimate_memory_need(sel, accel).activations_bytes ==
        Approx(estimate_memory_need(none, accel).activations_bytes).epsilon(0.02));
}
