// SPDX-License-Identifier: Apache-2.0
// The steady state of a 1F1B pipeline (issue 13; engine/job.cpp): a dense model's step extrapolated from the steps of
// p, p + 1 and p + 2 micro-batches equals the simulation of every micro-batch, and is used only where that holds by
// construction. The published Megatron runs and the 1T bench case are compared in tests/validation.
#include <catch2/catch.hpp>

#include <string>

#include "moesim_test/job_compare.hpp"

namespace engine = moesim::engine;
using moesim::testing::check_steady_state_equals_full;
using moesim::testing::simulate;
using moesim::testing::source_catalog;

namespace {

moesim::scenario::Scenario load(const std::string& file) { return moesim::testing::load_source_scenario(file); }

/** The scenario with m micro-batches of the same size. */
moesim::scenario::Scenario with_microbatches(moesim::scenario::Scenario s, int m) {
  s.training.batch_tokens = s.training.batch_tokens / s.parallelism.microbatches * m;
  s.parallelism.microbatches = m;
  return s;
}

}  // namespace

TEST_CASE("engine steady state: GPT-3 175B on 64 A100 (pipeline 8, 64 micro-batches) equals the full simulation", "[engine][steady]") {
  check_steady_state_equals_full(load("scenarios/published/korthikanti_175b_full.yaml"));
}

TEST_CASE("engine steady state: two data-parallel pipelines of 2 stages, gradient all-reduce overlapping the backward",
          "[engine][steady]") {
  // The shipped example has 8 micro-batches (too few to gain anything); 40 of the same size.
  check_steady_state_equals_full(with_microbatches(load("scenarios/examples/a100-dense-tensor-pipeline.yaml"), 40));
}

TEST_CASE("engine steady state: not used where the step is not periodic or nothing is gained", "[engine][steady]") {
  const auto s = load("scenarios/published/korthikanti_175b_full.yaml");
  SECTION("too few micro-batches: p, p + 1 and p + 2 would cost more than the step (64 -> 27 of 8 stages)") {
    CHECK(simulate(with_microbatches(s, 27), true).steady_state_from_microbatches == 0);
    CHECK(simulate(with_microbatches(s, 28), true).steady_state_from_microbatches == 8);
  }
  SECTION("interleaved 1F1B (micro-batches in groups of p)") {
    auto v = s;
    v.parallelism.virtual_stages = 2;
    CHECK(simulate(v, true).steady_state_from_microbatches == 0);
  }
  SECTION("an MoE model: every micro-batch draws its own routing") {
    auto moe = with_microbatches(load("scenarios/examples/a100-dense-tensor-pipeline.yaml"), 40);
    moe.model.experts = 8;
    moe.model.expert_d_ff = moe.model.d_ff;
    CHECK(simulate(moe, true).steady_state_from_microbatches == 0);
  }
  SECTION("a trace asks for every phase of the real step") {
    engine::EngineOptions opt;
    opt.trace = true;
    const engine::JobResult r = engine::job_from_json(
        engine::run_isolated([&] { return engine::to_json(engine::simulate_job(s, source_catalog(), opt)); }).value);
    CHECK(r.steady_state_from_microbatches == 0);
    CHECK(r.trace.size() > 64u * 12u);  // every micro-batch's phases of the step
  }
}
