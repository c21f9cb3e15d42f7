// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the workload tests: the real catalog and efficiency table, scenarios from YAML
// text, and step-graph queries.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/training_step.hpp"

namespace moesim::workload::test {

inline std::string profiles_dir() { return std::string(MOESIM_SOURCE_ROOT) + "/profiles"; }

inline const catalog::Catalog& real_catalog() {
  static const catalog::Catalog cat = catalog::Catalog::load(profiles_dir());
  return cat;
}

inline const perf::EfficiencyTable& efficiency() {
  static const perf::EfficiencyTable table = perf::EfficiencyTable::load(profiles_dir());
  return table;
}

inline scenario::Scenario load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return scenario::load_string(yaml, "test.yaml", real_catalog(), overrides);
}

/** A scenario with the given model block (indented two spaces), training and cluster. */
inline std::string scenario_yaml(const std::string& model_block, const std::string& accelerator, int count,
                                 const std::string& parallelism_block, double batch_tokens,
                                 const std::string& extra = "") {
  return "name: workload-test\n"
         "model:\n" +
         model_block +
         "training:\n"
         "  tokens: 1.0e12\n"
         "  batch_tokens: " +
         std::to_string(static_cast<long long>(batch_tokens)) +
         "\n"
         "parallelism:\n" +
         parallelism_block + "cluster:\n  accelerator: " + accelerator + "\n  count: " + std::to_string(count) +
         "\nplacement:\n  - datacenter: gcp_us_central1_2023\n" + extra;
}

/** Builds one training step of `s` with the roofline compute model of its accelerator. */
struct StepFixture {
  scenario::Scenario scenario;
  const catalog::AcceleratorSpec& accel;
  perf::RooflineModel compute;
  DeviceMesh mesh;
  explicit StepFixture(scenario::Scenario s)
      : scenario(std::move(s)),
        accel(real_catalog().accelerator(scenario.cluster.accelerator)),
        compute(accel, efficiency()),
        mesh(scenario.parallelism, accel.devices_per_chip) {}
  BuiltStep build(bool remat, int step_index = 0, bool selective = false) const {
    return step_builder(scenario.model.type).build(StepContext{scenario, accel, compute, mesh, remat, step_index, selective});
  }
};

/** Every phase of the graph, in vertex order. */
inline std::vector<const Phase*> all_phases(const StepGraph& g) {
  std::vector<const Phase*> out;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) out.push_back(&g[v]);
  return out;
}

inline std::size_t count_kind(const StepGraph& g, const std::string& kind) {
  std::size_t n = 0;
  for (const Phase* p : all_phases(g))
    if (p->kind == kind) ++n;
  return n;
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/** Mean device time of one compute kind summed over the step's compute phases. */
inline double kind_s(const BuiltStep& b, const std::string& kind) {
  double s = 0.0;
  for (const Phase* p : all_phases(b.graph)) {
    if (p->type != Phase::Type::compute) continue;
    auto it = p->compute.kind_time_s.find(kind);
    if (it != p->compute.kind_time_s.end()) s += it->second;
  }
  return s;
}

}  // namespace moesim::workload::test
