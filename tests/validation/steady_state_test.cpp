// SPDX-License-Identifier: Apache-2.0
// The pipeline steady state (engine/job.cpp) equals the simulation of every micro-batch on the published Megatron
// runs (validation/published.yaml's Korthikanti et al. 2022 rows) and the 1T bench case (bench/megatron_1t_512.yaml,
// the twin of the 1T full-recomputation row): step time, critical path, energy, bytes and FLOPs to 1e-9. Here rather
// than in the unit tests because the full 1T step takes about a minute (and several under the sanitizers).
#include <catch2/catch.hpp>

#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

void check(const std::string& file) {
  moesim::testing::check_steady_state_equals_full(moesim::testing::load_source_scenario(file));
}

}  // namespace

TEST_CASE("validation steady state: Korthikanti 175B with sequence parallelism and selective recomputation", "[validation][steady]") {
  check("scenarios/published/korthikanti_175b_sp_selective.yaml");
}
TEST_CASE("validation steady state: Korthikanti 530B (pipeline 35, 280 micro-batches), full recomputation", "[validation][steady]") {
  check("scenarios/published/korthikanti_530b_full.yaml");
}
TEST_CASE("validation steady state: Korthikanti 530B, sequence parallelism and selective recomputation", "[validation][steady]") {
  check("scenarios/published/korthikanti_530b_sp_selective.yaml");
}
TEST_CASE("validation steady state: Korthikanti 1T (pipeline 64, 512 micro-batches), sequence parallelism and selective",
          "[validation][steady]") {
  check("scenarios/published/korthikanti_1t_sp_selective.yaml");
}
TEST_CASE("validation steady state: the Megatron 1T bench case (full recomputation)", "[validation][steady]") {
  check("bench/megatron_1t_512.yaml");
}
