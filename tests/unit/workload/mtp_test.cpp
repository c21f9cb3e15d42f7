// SPDX-License-Identifier: Apache-2.0
// model.mtp_depth: DeepSeek-V3's multi-token prediction modules (arXiv 2412.19437 §2.2) on the stage of the output
// head: one block of the last layer's kind, an embedding, a [2d -> d] projection and the shared output head each.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "moesim_test/input_error.hpp"
#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::Phase;
namespace t = moesim::workload::test;
namespace w = moesim::workload;

namespace {

std::string model(int layers, const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  vocab: 1000\n  seq_len: 512\n" + extra;
}

moesim::scenario::Scenario load(int layers, int mtp, const std::string& par = "  pipeline: 2\n  microbatches: 4\n",
                                const std::string& extra = "") {
  return t::load(t::scenario_yaml(model(layers, extra), "h100", 2, par, 4.0 * 512),
                 {"cluster.topology.gpus_per_node=2", "model.mtp_depth=" + std::to_string(mtp),
                  "training.rematerialization=none"});
}

double kind_s(const BuiltStep& b, const std::string& kind) {
  double s = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->type == Phase::Type::compute && p->compute.kind_time_s.count(kind)) s += p->compute.kind_time_s.at(kind);
  return s;
}

}  // namespace

TEST_CASE("workload::StepBuilder: a multi-token prediction module is one more block, a projection and the head again",
          "[workload][step][mtp]") {
  // 4 layers + 1 module against 5 layers: the same blocks, plus the module's embedding, projection and second head.
  const t::StepFixture with(load(4, 1)), five(load(5, 0)), plain(load(4, 0));
  const BuiltStep a = with.build(false), b = five.build(false), c = plain.build(false);
  const double tok = 4.0 * 512 / 4.0, d = 512, V = 1000;  // one sequence per micro-batch
  const double extra = 4.0 * 3.0 * (2.0 * tok * V * d + 2.0 * tok * 2.0 * d * d);  // 4 micro-batches, fwd + bwd
  CHECK(a.stats.model_flops - b.stats.model_flops == Approx(extra).epsilon(1e-9));
  CHECK(kind_s(a, "compute.mtp") > 0.0);
  CHECK(kind_s(c, "compute.mtp") == 0.0);
  CHECK(kind_s(a, "compute.output") == Approx(2.0 * kind_s(c, "compute.output")).epsilon(1e-9));
  // All of it on the last stage: the first stage's compute is the plain model's.
  auto stage_compute = [](const BuiltStep& g, int stage) {
    double s = 0.0;
    for (const Phase* p : t::all_phases(g.graph))
      if (p->type == Phase::Type::compute && p->stage == stage)
        for (const auto& [k, x] : p->compute.kind_time_s) s += x;
    return s;
  };
  CHECK(stage_compute(a, 0) == Approx(stage_compute(c, 0)).epsilon(1e-12));
  CHECK(stage_compute(a, 1) > stage_compute(c, 1));
}

TEST_CASE("workload::estimate_memory: the modules' weights and activations sit on the output head's stage",
          "[workload][memory][mtp]") {
  const auto& accel = t::real_catalog().accelerator("h100");
  const auto with = load(4, 1), plain = load(4, 0);
  // One stage: its parameters grow by one layer (workload::layer_params) and the
  // projection 2 d^2; its activations by one layer's, one more fp32 logits tensor and the projection's 2d input.
  const auto one = load(4, 1, "  data: 2\n"), none = load(4, 0, "  data: 2\n");
  const double d = 512, tok = 2.0 * 512, V = 1000;  // two sequences per replica, one micro-batch
  const auto lp = w::layer_params(none.model, none.parallelism, true, false);
  const auto e1 = w::estimate_memory_need(one, accel), e0 = w::estimate_memory_need(none, accel);
  CHECK(e1.params_bytes - e0.params_bytes == Approx((lp.dense + 2.0 * d * d) * 2.0).epsilon(1e-9));
  const auto five = w::estimate_memory_need(load(5, 0, "  data: 2\n"), accel);
  CHECK(e1.activations_no_remat_bytes - five.activations_no_remat_bytes ==
        Approx(tok * V * 4.0 + tok * 2.0 * d * 2.0).epsilon(1e-9));
  // With two stages, the first is untouched.
  CHECK(w::estimate_memory_need(with, accel).params_bytes >= w::estimate_memory_need(plain, accel).params_bytes);
}

TEST_CASE("scenario: model.mtp_depth is for decoder-only models", "[scenario][mtp]") {
  const std::string encdec = "  architecture: encoder_decoder\n  encoder_layers: 2\n  decoder_layers: 2\n  d_model: 512\n  d_ff: 2048\n"
                             "  heads: 8\n  vocab: 1000\n  seq_len: 512\n";
  const auto e = moesim::testing::expect_input_error([&] {
    t::load(t::scenario_yaml(encdec, "h100", 2, "  data: 2\n", 4.0 * 512), {"cluster.topology.gpus_per_node=2", "model.mtp_depth=1"});
  });
  CHECK(e.key() == "model.mtp_depth");
}
