// SPDX-License-Identifier: Apache-2.0
// Rounds in moesim's replica of ptask_L07 and FairBottleneck (engine::FairBottleneckNet, EngineOptions::
// own_network_rounds) against the same rounds in SimGrid's max-min system: every figure of the step equal to 1e-9, on
// the bench cases, the published training runs and the examples, with the engine's shortcuts and without any (every
// collective's every round in the solver, many of them at once).
#include <catch2/catch.hpp>

#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

moesim::engine::JobResult check_replica(const std::string& file, moesim::engine::EngineOptions base) {
  INFO(file);
  const auto s = moesim::testing::load_source_scenario(file);
  base.own_network_rounds = true;
  const auto replica = moesim::testing::simulate(s, base);
  base.own_network_rounds = false;
  const auto simgrid = moesim::testing::simulate(s, base);
  moesim::testing::check_same_step(replica, simgrid, 1e-9);
  CHECK(replica.reruns == simgrid.reruns);
  CHECK(replica.rounds_alone == simgrid.rounds_alone);
  return replica;
}

}  // namespace

TEST_CASE("validation own network rounds: bench cases, with the shortcuts", "[validation][own-network]") {
  // The 4096-chip case is the one whose rounds meet (expert and dense gradient buckets under the backward all-to-alls):
  // 48 rounds of 128 batches each in the solver at once, which the others time alone or replay.
  for (const char* f : {"bench/gshard_600b_1024.yaml", "bench/gshard_600b_4096.yaml", "bench/h100_1024_moe.yaml",
                        "bench/megatron_1t_512.yaml"}) {
    SECTION(f) { check_replica(f, {}); }
  }
}

TEST_CASE("validation own network rounds: every round in the solver", "[validation][own-network]") {
  for (const char* f : {"bench/gshard_600b_1024.yaml", "scenarios/examples/a100-dense-tensor-pipeline.yaml",
                        "scenarios/examples/h100-zipf-dropless.yaml", "scenarios/examples/two-datacenter-data-parallel.yaml",
                        "scenarios/examples/tpu-v4-3d-torus.yaml"}) {
    SECTION(f) { check_replica(f, moesim::testing::no_shortcuts()); }
  }
}

TEST_CASE("validation own network rounds: published training runs", "[validation][own-network]") {
  for (const char* f : {"gshard_600b", "switch_c_1_5t", "korthikanti_175b_sp_selective", "gshard_128e_36l",
                        "lamda_137b"}) {
    SECTION(f) { check_replica(std::string("scenarios/published/") + f + ".yaml", {}); }
  }
}
