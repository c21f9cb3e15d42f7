// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to the engine layer: what simulate_job (job.cpp) and the training-time lower bound (bound.cpp) build from a
// training scenario before its steps, built once in one place so that the bound bounds the steps the job simulates.
#include <memory>

#include "moesim/catalog/catalog.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/perf/model_factory.hpp"
#include "moesim/perf/power_limit.hpp"
#include "moesim/system/topology.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/training_step.hpp"

namespace moesim::engine::detail {

struct TrainingSetup {
  const catalog::AcceleratorSpec& accel;
  const workload::StepBuilder& builder;
  workload::DeviceMesh mesh;
  workload::MemoryEstimate mem;
  perf::EfficiencyTable eff;
  /** Measured tables of this device, efficiencies transferred from a measured GPU, or the roofline; under the
   *  scenario's power limit when it sets one. */
  std::unique_ptr<perf::ComputeTimeModel> compute;
  system::Topology topo;

  TrainingSetup(const scenario::Scenario& s, const catalog::Catalog& catalog)
      : accel(catalog.accelerator(s.cluster.accelerator)),
        builder(workload::step_builder(s.model.type)),
        mesh(s.parallelism, accel.devices_per_chip),
        mem(workload::estimate_memory(s, accel)),
        eff(perf::EfficiencyTable::load(catalog.profiles_dir())),
        compute(perf::with_power_limit(perf::make_compute_model(accel, eff, catalog.profiles_dir()), accel, s.cluster.power_limit_w)),
        topo(system::Topology::build(s, accel, mesh)) {}

  /** Step k of the job, as simulate_job builds it. */
  workload::BuiltStep build(const scenario::Scenario& s, int k) const {
    return builder.build(workload::StepContext{s, accel, *compute, mesh, mem.remat, k, mem.selective});
  }
};

}  // namespace moesim::engine::detail
