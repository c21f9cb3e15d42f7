// SPDX-License-Identifier: Apache-2.0
// parallelism.overlap_tensor_comm simulated: the sequence-parallel all-gathers and reduce-scatters run beside their
// GEMMs, so the step is shorter than in turn but not by more than those collectives took, and the step-time lower
// bound still holds.
#include <catch2/catch.hpp>

#include <string>

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

engine::JobResult run(const moesim::scenario::Scenario& s) {
  return engine::job_from_json(engine::run_isolated([&] { return engine::to_json(engine::simulate_job(s, real_catalog())); }).value);
}

}  // namespace

TEST_CASE("engine: overlap_tensor_comm hides the tensor-parallel collectives behind their GEMMs", "[engine][overlap]") {
  const std::string f = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/published/korthikanti_22b_sp_selective.yaml";
  const auto plain_s = moesim::scenario::load_file(f, real_catalog());
  const auto over_s = moesim::scenario::load_file(f, real_catalog(), {"parallelism.overlap_tensor_comm=true"});
  const engine::JobResult plain = run(plain_s), over = run(over_s);
  const double tp_plain = plain.breakdown_s.at("comm.tensor_parallel");
  INFO("plain " << plain.step_time_s << " s (tensor-parallel " << tp_plain << " s), overlapped " << over.step_time_s << " s");
  REQUIRE(tp_plain > 0.0);
  CHECK(over.step_time_s < plain.step_time_s);
  CHECK(over.step_time_s > plain.step_time_s - tp_plain);  // the GEMMs beside them run on fewer SMs; last chunks exposed
  CHECK(over.breakdown_s.at("comm.tensor_parallel") < tp_plain / 2.0);
  CHECK(over.hardware_flops_per_step == Approx(plain.hardware_flops_per_step).epsilon(1e-12));
  const double bound = engine::train_time_lower_bound_s(over_s, real_catalog());
  CHECK(bound <= over.train_time_s * (1.0 + 1e-9));
  CHECK(bound >= 0.5 * over.train_time_s);
}
