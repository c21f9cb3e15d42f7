// SPDX-License-Identifier: Apache-2.0
// The step-time lower bound (engine/bound.hpp) never exceeds what the engine simulates, on the shipped training
// examples and published runs of every topology kind (a TPU torus with all-to-alls, 3D tori, NVLink nodes with tensor
// and pipeline parallelism, two datacenters), and it is not loose (at least half).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/bound.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/loader.hpp"

namespace engine = moesim::engine;

namespace {

const moesim::catalog::Catalog& real_catalog() {
  static const moesim::catalog::Catalog cat = moesim::catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return cat;
}

}  // namespace

TEST_CASE("engine::train_time_lower_bound_s: at most the simulated training time, and at least half of it", "[engine][bound]") {
  const std::vector<std::string> files = {
      "scenarios/quickstart.yaml",
      "scenarios/examples/tpu-v3-torus-moe.yaml",
      "scenarios/examples/tpu-v4-3d-torus.yaml",
      "scenarios/examples/a100-dense-tensor-pipeline.yaml",
      "scenarios/examples/h100-zipf-dropless.yaml",
      "scenarios/examples/two-datacenter-data-parallel.yaml",
      "scenarios/published/gshard_512e_12l.yaml",
      "scenarios/published/switch_base_cf1.0.yaml",
      "scenarios/published/korthikanti_175b_sp_selective.yaml",
  };
  for (const auto& f : files) {
    INFO(f);
    const moesim::scenario::Scenario s = moesim::scenario::load_file(std::string(MOESIM_SOURCE_ROOT) + "/" + f, real_catalog());
    const double bound = engine::train_time_lower_bound_s(s, real_catalog());
    const engine::JobResult r = engine::job_from_json(
        engine::run_isolated([&] { return engine::to_json(engine::simulate_job(s, real_catalog())); }).value);
    INFO("bound " << bound << " s, simulated " << r.train_time_s << " s, ratio " << bound / r.train_time_s);
    CHECK(bound > 0.0);
    CHECK(bound <= r.train_time_s * (1.0 + 1e-9));
    CHECK(bound >= 0.5 * r.train_time_s);  // 0.87-0.9997 of it when written
    WARN(f << ": bound / simulated = " << bound / r.train_time_s);
  }
}
