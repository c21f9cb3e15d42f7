// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the system-layer tests: scenarios and accelerators built in code (so every figure
// the expected values use is visible in the test), a topology fixture, and plan queries.
//
// The accelerator figures below are TEST FIXTURES, not physical claims: round numbers chosen so that
// hand-computed expectations are exact. Tests that need real hardware load profiles/ instead.

#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/system/collectives.hpp"
#include "moesim/system/topology.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/step_graph.hpp"

namespace moesim::system::test {

/** A torus chip: fixture figures (1e11 B/s per ICI link per direction, 1 us per hop). */
inline catalog::AcceleratorSpec torus_chip(int devices_per_chip = 1) {
  catalog::AcceleratorSpec a;
  a.name = "fixture_torus_chip";
  a.kind = catalog::AcceleratorKind::tpu;
  a.devices_per_chip = devices_per_chip;
  a.peak_matmul_flops_per_s = {{"bf16", 1e14}};
  a.ici_links_per_chip = 4;
  a.ici_link_bandwidth_bytes_per_s = 1e11;
  a.ici_latency_s = 1e-6;
  a.power_convention = catalog::PowerConvention::system;
  a.idle_w = 100;
  a.active_w = 150;
  a.full_w = 400;
  return a;
}

/** A GPU: fixture figures (NVLink 4e11 B/s, NIC 5e10 B/s per direction, `gpus_per_node` per node). */
inline catalog::AcceleratorSpec gpu(int gpus_per_node = 4) {
  catalog::AcceleratorSpec a;
  a.name = "fixture_gpu";
  a.kind = catalog::AcceleratorKind::gpu;
  a.devices_per_chip = 1;
  a.peak_matmul_flops_per_s = {{"bf16", 1e15}};
  a.nvlink_bandwidth_bytes_per_s = 4e11;
  a.nvlink_latency_s = 1e-6;
  a.gpus_per_node = gpus_per_node;
  a.nic_bandwidth_bytes_per_s = 5e10;
  a.nic_latency_s = 2e-6;
  a.power_convention = catalog::PowerConvention::chip;
  a.idle_w = 100;
  a.active_w = 150;
  a.full_w = 700;
  a.host_overhead_w = 50;
  return a;
}

/** A resolved scenario holding only what Topology::build reads. */
inline scenario::Scenario scenario_for(const std::string& topology_type, std::vector<int> dims, scenario::ParallelismSpec par,
                                       std::vector<std::pair<std::string, double>> placement = {{"dc_a", 1.0}},
                                       scenario::SplitKind split = scenario::SplitKind::data, int gpus_per_node = 4,
                                       int nodes_per_leaf = 16) {
  scenario::Scenario s;
  s.name = "system-test";
  s.parallelism = par;
  s.cluster.topology.type = topology_type;
  s.cluster.topology.dims = std::move(dims);
  s.cluster.topology.gpus_per_node = gpus_per_node;
  s.cluster.topology.nodes_per_leaf = nodes_per_leaf;
  for (const auto& [dc, share] : placement) {
    scenario::PlacementEntry e;
    e.datacenter = dc;
    e.share = share;
    s.placement.push_back(e);
  }
  s.split = split;
  s.wan.bandwidth_bytes_per_s = 1.25e10;
  s.wan.latency_s = 0.01;
  return s;
}

inline scenario::ParallelismSpec par(int data, int expert, int tensor = 1, int pipeline = 1) {
  scenario::ParallelismSpec p;
  p.data = data;
  p.expert = expert;
  p.tensor = tensor;
  p.pipeline = pipeline;
  return p;
}

/** Scenario + accelerator + mesh + topology, kept together (Topology and plans hold references to none
 *  of them, but the tests read all four). */
struct Fixture {
  scenario::Scenario scenario;
  catalog::AcceleratorSpec accel;
  workload::DeviceMesh mesh;
  Topology topo;
  Fixture(scenario::Scenario s, catalog::AcceleratorSpec a)
      : scenario(std::move(s)),
        accel(std::move(a)),
        mesh(scenario.parallelism, accel.devices_per_chip),
        topo(Topology::build(scenario, accel, mesh)) {}
  TrafficPlan plan(const workload::CollectiveWork& w) const { return plan_collective(w, topo, mesh); }
};

/** A torus of `dims` chips with one device per chip and one expert-parallel group over all of them. */
inline Fixture torus(std::vector<int> dims, int devices_per_chip = 1) {
  int n = 1;
  for (int d : dims) n *= d;
  return Fixture(scenario_for(dims.size() == 3 ? "torus_3d" : "torus_2d", dims, par(1, n * devices_per_chip)),
                 torus_chip(devices_per_chip));
}

inline workload::CollectiveWork work(workload::CollectiveOp op, std::vector<std::vector<int>> groups, double bytes) {
  workload::CollectiveWork w;
  w.op = op;
  w.groups = std::move(groups);
  w.bytes_per_device = bytes;
  return w;
}

inline std::vector<int> iota(int n, int first = 0) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(first + i);
  return v;
}

using PairLoads = std::map<std::pair<int, int>, double>;

/** Bytes per directed endpoint pair in one round, summed over its batches. */
inline PairLoads loads(const Round& r) {
  PairLoads out;
  for (const auto& b : r.batches)
    for (const auto& f : b.flows) out[{f.src, f.dst}] += f.bytes;
  return out;
}

/** Bytes per directed endpoint pair over the whole plan. */
inline PairLoads loads(const TrafficPlan& p) {
  PairLoads out;
  for (const auto& r : p.rounds)
    for (const auto& [k, v] : loads(r)) out[k] += v;
  return out;
}

/** Bytes sent by every source endpoint over the whole plan. */
inline std::map<int, double> sent_by(const TrafficPlan& p) {
  std::map<int, double> out;
  for (const auto& r : p.rounds)
    for (const auto& b : r.batches)
      for (const auto& f : b.flows) out[f.src] += f.bytes;
  return out;
}

inline double total(const PairLoads& l) {
  double t = 0.0;
  for (const auto& [k, v] : l) t += v;
  return t;
}

/** Whether two chips of one torus site are neighbours: coordinates equal except in one dimension,
 *  where they differ by one step around the ring. */
inline bool torus_neighbours(const Topology& topo, int a, int b) {
  if (topo.site_of(a) != topo.site_of(b)) return false;
  const auto& dims = topo.sites()[static_cast<std::size_t>(topo.site_of(a))].dims;
  const auto ca = topo.coords(a), cb = topo.coords(b);
  int differing = 0;
  bool one_step = false;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (ca[d] == cb[d]) continue;
    ++differing;
    const int up = ((cb[d] - ca[d]) % dims[d] + dims[d]) % dims[d];
    one_step = up == 1 || up == dims[d] - 1;
  }
  return differing == 1 && one_step;
}

/** Relative comparison for volumes built from sums of doubles. */
inline bool close(double a, double b, double rel = 1e-12) {
  return std::fabs(a - b) <= rel * std::max({1.0, std::fabs(a), std::fabs(b)});
}

}  // namespace moesim::system::test
