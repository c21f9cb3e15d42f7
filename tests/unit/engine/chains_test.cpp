// SPDX-License-Identifier: Apache-2.0
// Merged chains (issue 13; EngineOptions::merge_chains, engine.cpp "Chains"): phases whose durations are known when
// they start and that nothing else joins run as one activity; the step equals the phase-by-phase run. The published
// runs and the bench cases are compared in tests/validation.
#include <catch2/catch.hpp>

#include <string>

#include "moesim_test/job_compare.hpp"

namespace engine = moesim::engine;
using moesim::testing::check_chains_equal_phase_by_phase;
using moesim::testing::simulate;
using moesim::testing::source_catalog;

namespace {

moesim::scenario::Scenario load(const std::string& file) { return moesim::testing::load_source_scenario(file); }

}  // namespace

TEST_CASE("engine chains: every example scenario's step equals the phase-by-phase run", "[engine][chains]") {
  for (const char* f : {"scenarios/examples/a100-dense-tensor-pipeline.yaml", "scenarios/examples/tpu-v3-torus-moe.yaml",
                        "scenarios/examples/h100-zipf-dropless.yaml", "scenarios/examples/two-datacenter-data-parallel.yaml",
                        "scenarios/examples/tpu-v4-3d-torus.yaml", "scenarios/examples/tpu-v4-glam-2d-sharding.yaml"}) {
    SECTION(f) { check_chains_equal_phase_by_phase(load(f)); }
  }
}

TEST_CASE("engine chains: a traced step lists every phase with the same start and end as the phase-by-phase run",
          "[engine][chains]") {
  engine::EngineOptions opt;
  opt.trace = true;
  const auto s = load("scenarios/examples/a100-dense-tensor-pipeline.yaml");
  const engine::JobResult merged = check_chains_equal_phase_by_phase(s, opt);
  opt.merge_chains = false;
  const engine::JobResult reference = simulate(s, opt);
  REQUIRE(merged.trace.size() == reference.trace.size());
  REQUIRE(!merged.trace.empty());
  std::map<std::string, const engine::PhaseTrace*> by_label;
  for (const auto& t : reference.trace) by_label[t.label] = &t;
  REQUIRE(by_label.size() == reference.trace.size());
  int replayed = 0;
  for (const auto& t : merged.trace) {
    INFO(t.label);
    REQUIRE(by_label.count(t.label) == 1);
    const engine::PhaseTrace& r = *by_label.at(t.label);
    CHECK(std::abs(t.start_s - r.start_s) <= 1e-9 * merged.step_time_s);
    CHECK(std::abs(t.end_s - r.end_s) <= 1e-9 * merged.step_time_s);
    CHECK(t.on_critical_path == r.on_critical_path);
    CHECK(t.memoized == r.memoized);
    CHECK(t.power_w == r.power_w);
    replayed += t.memoized ? 1 : 0;
  }
  CHECK(replayed > 0);  // memoised tensor all-reduces sit inside the stages' chains
  CHECK(merged.collectives_memoized == reference.collectives_memoized);
  CHECK(merged.collectives_detailed == reference.collectives_detailed);
}
