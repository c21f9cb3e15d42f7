// SPDX-License-Identifier: Apache-2.0
// SimGrid's max-min system without the selective update that ptask_L07 hard-codes on (platform::drop_selective_update,
// EngineOptions::lmm_selective_update): FairBottleneck solves every variable either way, so every figure of the step is
// the same to the last bit (check_same_step with a tolerance of 0) on the bench cases, with the engine's shortcuts and
// with every round in SimGrid's solver.
#include <catch2/catch.hpp>

#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

moesim::scenario::Scenario load(const std::string& file) {
  return moesim::scenario::load_file(std::string(MOESIM_SOURCE_ROOT) + "/" + file, moesim::testing::source_catalog());
}

void check_bit_for_bit(const moesim::scenario::Scenario& s, moesim::engine::EngineOptions base) {
  INFO(s.name);
  base.own_network_rounds = false;  // the rounds not timed alone in SimGrid's max-min system
  base.lmm_selective_update = false;
  const auto dropped = moesim::testing::simulate(s, base);
  base.lmm_selective_update = true;
  const auto simgrid = moesim::testing::simulate(s, base);
  moesim::testing::check_same_step(dropped, simgrid, 0.0);
  CHECK(dropped.reruns == simgrid.reruns);
  CHECK(dropped.rounds_alone == simgrid.rounds_alone);
}

}  // namespace

TEST_CASE("validation selective update: bench cases bit for bit without it", "[validation][selective-update]") {
  for (const char* f : {"bench/gshard_600b_1024.yaml", "bench/gshard_600b_4096.yaml", "bench/h100_1024_moe.yaml",
                        "bench/megatron_1t_512.yaml"}) {
    SECTION(f) { check_bit_for_bit(load(f), {}); }
  }
}

TEST_CASE("validation selective update: every round in SimGrid's solver, bit for bit without it",
          "[validation][selective-update]") {
  // No shortcut: every collective's every round is parallel tasks in the max-min system, which all its solves cover.
  moesim::engine::EngineOptions reference;
  reference.memoize = false;
  reference.rounds_alone = false;
  reference.merge_chains = false;
  for (const char* f : {"bench/gshard_600b_1024.yaml", "scenarios/examples/a100-dense-tensor-pipeline.yaml"}) {
    SECTION(f) { check_bit_for_bit(load(f), reference); }
  }
}
