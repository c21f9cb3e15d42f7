// SPDX-License-Identifier: Apache-2.0
// Merged chains (EngineOptions::merge_chains, engine.cpp "Chains") equal the phase-by-phase run on every published
// training run the validation table predicts and on the bench cases up to 1024 chips and the Megatron 1T pipeline:
// step time, critical path, busy time, energy, bytes and FLOPs to 1e-9. Here rather than in the unit tests because the
// phase-by-phase runs of the large cases take tens of seconds (minutes under the sanitizers).
#include <catch2/catch.hpp>

#include <filesystem>
#include <initializer_list>
#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

moesim::scenario::Scenario load(const std::string& file) { return moesim::testing::load_source_scenario(file); }

/** The published scenarios whose file name starts with one of `prefixes`; each must be a training run. */
void check_published(std::initializer_list<const char*> prefixes) {
  int compared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MOESIM_SOURCE_ROOT) + "/scenarios/published")) {
    const std::string name = entry.path().filename().string();
    bool wanted = false;
    for (const char* p : prefixes) wanted = wanted || name.rfind(p, 0) == 0;
    if (!wanted) continue;
    const auto s = load("scenarios/published/" + name);
    REQUIRE(!s.is_serving());
    moesim::testing::check_chains_equal_phase_by_phase(s);
    ++compared;
  }
  CHECK(compared >= static_cast<int>(prefixes.size()));
}

// Every published training scenario (the serving ones run their own driver over the same engine, and their goldens and
// fast-path tests cover them), in groups so that ctest runs them side by side.
}  // namespace

TEST_CASE("validation chains: published GShard runs", "[validation][chains]") { check_published({"gshard_"}); }
TEST_CASE("validation chains: published Megatron runs (Korthikanti et al.)", "[validation][chains]") { check_published({"korthikanti_"}); }
TEST_CASE("validation chains: published T5, Switch, ST-MoE, Evolved Transformer and LaMDA runs", "[validation][chains]") {
  check_published({"t5_", "switch_", "st_moe_", "evolved_", "lamda_"});
}

TEST_CASE("validation chains: the bench cases on 1024 chips and the Megatron 1T pipeline", "[validation][chains]") {
  for (const char* f : {"bench/gshard_600b_1024.yaml", "bench/h100_1024_moe.yaml", "bench/megatron_1t_512.yaml"}) {
    SECTION(f) { moesim::testing::check_chains_equal_phase_by_phase(load(f)); }
  }
}
