// SPDX-License-Identifier: Apache-2.0
// Compute joules in moesim's replica of host_energy (EngineOptions::own_compute_energy: a compute activity on its pacer
// alone, slope x load added per chip and site) against the chips' loads in SimGrid and every joule from the energy
// plugin: every figure of the step equal to 1e-9 (check_same_step: time, breakdowns, energy by site, the power series'
// integral) and the power series interval by interval (joules), on the bench cases, the published training runs and the examples
// (one and two datacenters, TPU and GPU, pipelines), with the engine's shortcuts and without any.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

void check_replica(const std::string& file, moesim::engine::EngineOptions base) {
  INFO(file);
  const auto s = moesim::testing::load_source_scenario(file);
  base.own_compute_energy = true;
  const auto replica = moesim::testing::simulate(s, base);
  base.own_compute_energy = false;
  const auto plugin = moesim::testing::simulate(s, base);
  moesim::testing::check_same_step(replica, plugin, 1e-9);
  CHECK(replica.reruns == plugin.reruns);
  // The power series: the same instants (SimGrid's clock to the last bits: a pacer alone or a parallel task), and
  // each interval's joules (its average power x its length) to 1e-12 of the series' largest power over the whole
  // step: an interval of a few microseconds divides the last bits of the two sums' joules by its length.
  REQUIRE(replica.power_t_s.size() == plugin.power_t_s.size());
  REQUIRE(replica.power_w.size() == plugin.power_w.size());
  double peak = 0.0;
  for (double w : plugin.power_w) peak = std::max(peak, std::abs(w));
  REQUIRE(peak > 0.0);
  const std::size_t n = plugin.power_w.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double end = i + 1 < plugin.power_t_s.size() ? plugin.power_t_s[i + 1] : plugin.step_time_s;
    const double dt = std::max(0.0, end - plugin.power_t_s[i]);
    INFO("sample " << i << " at " << plugin.power_t_s[i] << " s for " << dt << " s: " << replica.power_w[i] << " W vs "
                   << plugin.power_w[i]);
    CHECK(std::abs(replica.power_t_s[i] - plugin.power_t_s[i]) <= 1e-9 * plugin.step_time_s);
    CHECK(std::abs(replica.power_w[i] - plugin.power_w[i]) * dt <= 1e-12 * peak * plugin.step_time_s);
  }
}

}  // namespace

TEST_CASE("validation own compute energy: bench cases, with the shortcuts", "[validation][own-energy]") {
  for (const char* f : {"bench/gshard_600b_1024.yaml", "bench/gshard_600b_4096.yaml", "bench/h100_1024_moe.yaml",
                        "bench/megatron_1t_512.yaml"}) {
    SECTION(f) { check_replica(f, {}); }
  }
}

TEST_CASE("validation own compute energy: every phase its own activity", "[validation][own-energy]") {
  for (const char* f : {"bench/gshard_600b_1024.yaml", "scenarios/examples/a100-dense-tensor-pipeline.yaml",
                        "scenarios/examples/h100-zipf-dropless.yaml", "scenarios/examples/two-datacenter-data-parallel.yaml",
                        "scenarios/examples/tpu-v4-3d-torus.yaml", "scenarios/examples/tpu-v4-glam-2d-sharding.yaml"}) {
    SECTION(f) { check_replica(f, moesim::testing::no_shortcuts()); }
  }
}

TEST_CASE("validation own compute energy: published training runs", "[validation][own-energy]") {
  for (const char* f : {"gshard_600b", "switch_c_1_5t", "t5_11b", "evolved_transformer_nas", "korthikanti_175b_sp_selective",
                        "gshard_128e_36l", "lamda_137b", "st_moe_32b_cf1.25"}) {
    SECTION(f) { check_replica(std::string("scenarios/published/") + f + ".yaml", {}); }
  }
}
