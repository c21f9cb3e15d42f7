// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers for the engine tests: hand-built step graphs, and simulations run in a child process through
// engine::run_isolated (SimGrid keeps one engine per process), returning the step results as JSON.
// Accelerator and link figures are the system tests' fixtures (tests/unit/system/system_test_support.hpp):
// round numbers chosen so that expected times and joules can be computed by hand.

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../system/system_test_support.hpp"
#include "moesim/engine/engine.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/platform/platform.hpp"
#include "moesim/workload/step_graph.hpp"
#include "moesim/workload/training_step.hpp"

namespace moesim::engine::test {

using workload::Phase;
using workload::PhaseId;

/** Builds a step DAG phase by phase: a start marker, phases after given predecessors, an end marker. */
class StepBuilder {
 public:
  StepBuilder() {
    Phase start;
    start.label = "start";
    step_.start = workload::add_phase(step_.graph, start, {});
  }
  PhaseId start() const { return step_.start; }
  /** Compute phase: device `devices[i]` busy for `time_s[i]` seconds, attributed to `kind`, achieving
   *  `flop_utilisation` of the matrix units' peak and `hbm_utilisation` of the HBM bandwidth while busy
   *  (defaults: the matrix units at their peak, which the fixtures' power curves put at full power). */
  PhaseId compute(const std::vector<int>& devices, const std::vector<double>& time_s, const std::string& kind,
                  const std::vector<PhaseId>& after, const std::string& label = "compute", double flop_utilisation = 1.0,
                  double hbm_utilisation = 0.0) {
    Phase p;
    p.type = Phase::Type::compute;
    p.kind = "compute";
    p.label = label;
    p.compute.devices = devices;
    p.compute.time_s = time_s;
    double mean = 0.0, busy = 0.0;
    for (double t : time_s) {
      mean += t / static_cast<double>(time_s.size());
      busy += t;
    }
    p.compute.kind_time_s[kind] = mean;
    p.compute.matrix_s = flop_utilisation * busy;
    p.compute.hbm_s = hbm_utilisation * busy;
    return workload::add_phase(step_.graph, p, after);
  }
  PhaseId collective(const workload::CollectiveWork& w, const std::string& kind, const std::vector<PhaseId>& after,
                     bool overlaps_grad_reduce = false, const std::string& label = "collective") {
    Phase p;
    p.type = Phase::Type::collective;
    p.kind = kind;
    p.label = label;
    p.comm = w;
    p.overlaps_grad_reduce = overlaps_grad_reduce;
    return workload::add_phase(step_.graph, p, after);
  }
  workload::BuiltStep finish(const std::vector<PhaseId>& last) {
    Phase end;
    end.label = "end";
    step_.end = workload::add_phase(step_.graph, end, last);
    return step_;
  }

 private:
  workload::BuiltStep step_;
};

inline nlohmann::json to_json(const StepResult& r) {
  nlohmann::json trace = nlohmann::json::array();
  for (const auto& p : r.trace)
    trace.push_back({{"label", p.label}, {"kind", p.kind}, {"start_s", p.start_s}, {"end_s", p.end_s}, {"critical", p.on_critical_path},
                     {"memoized", p.memoized}, {"power_w", p.power_w}});
  nlohmann::json links = nlohmann::json::array();
  for (const auto& s : r.site_link_bytes) links.push_back(std::vector<double>(s.begin(), s.end()));
  return {{"duration_s", r.duration_s},
          {"busy_s", r.busy_s},
          {"critical_path_s", r.critical_path_s},
          {"site_energy_j", r.site_energy_j},
          {"site_link_bytes", links},
          {"wan_busy_s", r.wan_busy_s},
          {"phases", r.phases},
          {"collectives_detailed", r.collectives_detailed},
          {"collectives_memoized", r.collectives_memoized},
          {"reruns", r.reruns},
          {"rounds_alone", r.rounds_alone},
          {"algorithms", r.algorithms},
          {"trace", trace}};
}

/** Simulates `steps` steps of the graph `make` builds (called in the child, once per step) on the
 *  fixture's platform, in a child process; returns one JSON object per step. */
inline nlohmann::json simulate(const system::test::Fixture& f, const std::function<workload::BuiltStep()>& make, int steps = 1,
                               EngineOptions opt = {}) {
  opt.trace = true;
  return run_isolated([&] {
           const platform::PowerStates power = platform::power_states(f.accel);
           Simulator sim(f.topo, f.accel, power, f.mesh, opt);
           const auto results = sim.run(steps, [&](int) { return make(); });
           nlohmann::json out = nlohmann::json::array();
           for (const auto& r : results) out.push_back(to_json(r));
           return out;
         })
      .value;
}

inline double sum_values(const nlohmann::json& obj) {
  double s = 0.0;
  for (const auto& [k, v] : obj.items()) s += v.get<double>();
  return s;
}

}  // namespace moesim::engine::test
