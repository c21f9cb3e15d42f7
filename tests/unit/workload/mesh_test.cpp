// SPDX-License-Identifier: Apache-2.0
// DeviceMesh: parallel ranks <-> devices <-> chips, and the communication groups.

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "moesim/core/error.hpp"
#include "moesim/workload/mesh.hpp"

using moesim::scenario::ParallelismSpec;
using moesim::workload::DeviceMesh;

namespace {

ParallelismSpec par(int data, int expert, int tensor, int pipeline) {
  ParallelismSpec p;
  p.data = data;
  p.expert = expert;
  p.tensor = tensor;
  p.pipeline = pipeline;
  return p;
}

/** Checks that `groups` partition `devices`: every device in exactly one group, each of `size`. */
void check_partition(const std::vector<std::vector<int>>& groups, const std::vector<int>& devices, std::size_t count,
                     std::size_t size) {
  CHECK(groups.size() == count);
  std::map<int, int> seen;
  for (const auto& g : groups) {
    CHECK(g.size() == size);
    for (int d : g) ++seen[d];
  }
  CHECK(seen.size() == devices.size());
  for (int d : devices) {
    INFO("device " << d);
    CHECK(seen[d] == 1);
  }
}

}  // namespace

TEST_CASE("workload::DeviceMesh: ranks round-trip through device ids (data 2 x expert 3 x tensor 2 x pipeline 2)",
          "[workload][mesh]") {
  const DeviceMesh m(par(2, 3, 2, 2), 2);
  CHECK(m.devices() == 24);
  CHECK(m.chips() == 12);
  std::set<int> ids;
  for (int s = 0; s < 2; ++s)
    for (int d = 0; d < 2; ++d)
      for (int e = 0; e < 3; ++e)
        for (int t = 0; t < 2; ++t) {
          const int dev = m.device(s, d, e, t);
          INFO("s" << s << " d" << d << " e" << e << " t" << t << " -> " << dev);
          CHECK(dev >= 0);
          CHECK(dev < 24);
          CHECK(m.stage_of(dev) == s);
          CHECK(m.data_of(dev) == d);
          CHECK(m.expert_of(dev) == e);
          CHECK(m.tensor_of(dev) == t);
          CHECK(m.chip_of(dev) == dev / 2);
          ids.insert(dev);
        }
  CHECK(ids.size() == 24);  // a bijection onto 0..23
  SECTION("tensor-parallel ranks are adjacent: with 2 devices per chip a TP pair shares a chip") {
    for (int s = 0; s < 2; ++s)
      for (int d = 0; d < 2; ++d)
        for (int e = 0; e < 3; ++e) {
          CHECK(m.device(s, d, e, 1) == m.device(s, d, e, 0) + 1);
          CHECK(m.chip_of(m.device(s, d, e, 0)) == m.chip_of(m.device(s, d, e, 1)));
        }
  }
  SECTION("pipeline stages are contiguous blocks, outermost") {
    CHECK(m.stage_devices(0) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    const auto s1 = m.stage_devices(1);
    REQUIRE(s1.size() == 12);
    CHECK(s1.front() == 12);
    CHECK(s1.back() == 23);
  }
}

TEST_CASE("workload::DeviceMesh: parallelism.placement reorders the axes over devices", "[workload][mesh][placement]") {
  ParallelismSpec p = par(2, 3, 2, 2);
  p.placement = {"expert", "tensor", "pipeline", "data"};  // innermost first
  const DeviceMesh m(p, 1);
  // Strides: expert 1, tensor 3, pipeline 6, data 12.
  CHECK(m.device(0, 0, 1, 0) == 1);
  CHECK(m.device(0, 0, 0, 1) == 3);
  CHECK(m.device(1, 0, 0, 0) == 6);
  CHECK(m.device(0, 1, 0, 0) == 12);
  std::set<int> ids;
  for (int s = 0; s < 2; ++s)
    for (int d = 0; d < 2; ++d)
      for (int e = 0; e < 3; ++e)
        for (int t = 0; t < 2; ++t) {
          const int dev = m.device(s, d, e, t);
          CHECK(m.stage_of(dev) == s);
          CHECK(m.data_of(dev) == d);
          CHECK(m.expert_of(dev) == e);
          CHECK(m.tensor_of(dev) == t);
          ids.insert(dev);
        }
  CHECK(ids.size() == 24);
  // Expert groups (the all-to-alls) are now consecutive devices; a stage is no longer one block, and the i-th
  // device of two stages holds the same (data, expert, tensor) ranks.
  CHECK(m.expert_groups(0).front() == std::vector<int>{0, 1, 2});
  const auto s0 = m.stage_devices(0), s1 = m.stage_devices(1);
  REQUIRE(s0.size() == s1.size());
  for (std::size_t i = 0; i < s0.size(); ++i) {
    CHECK(m.data_of(s0[i]) == m.data_of(s1[i]));
    CHECK(m.expert_of(s0[i]) == m.expert_of(s1[i]));
    CHECK(m.tensor_of(s0[i]) == m.tensor_of(s1[i]));
    CHECK(m.stage_of(s1[i]) == 1);
  }
  SECTION("a placement that is not a permutation of the four axes is an error") {
    ParallelismSpec q = par(2, 3, 2, 2);
    q.placement = {"tensor", "tensor", "data", "pipeline"};
    CHECK_THROWS_WITH(DeviceMesh(q, 1), Catch::Contains("placement"));
  }
}

TEST_CASE("workload::DeviceMesh: communication groups partition each stage", "[workload][mesh]") {
  const int D = 2, E = 3, T = 2, P = 2;
  const DeviceMesh m(par(D, E, T, P), 1);
  for (int s = 0; s < P; ++s) {
    INFO("stage " << s);
    const auto devices = m.stage_devices(s);
    REQUIRE(devices.size() == static_cast<std::size_t>(D * E * T));
    // Expert (all-to-all) groups: one per (data, tensor), spanning the expert ranks.
    const auto eg = m.expert_groups(s);
    check_partition(eg, devices, D * T, E);
    for (const auto& g : eg) {
      std::set<int> experts;
      for (int dev : g) {
        CHECK(m.stage_of(dev) == s);
        CHECK(m.data_of(dev) == m.data_of(g[0]));
        CHECK(m.tensor_of(dev) == m.tensor_of(g[0]));
        experts.insert(m.expert_of(dev));
      }
      CHECK(experts.size() == static_cast<std::size_t>(E));
    }
    // Tensor groups: one per (data, expert).
    const auto tg = m.tensor_groups(s);
    check_partition(tg, devices, D * E, T);
    for (const auto& g : tg)
      for (int dev : g) {
        CHECK(m.data_of(dev) == m.data_of(g[0]));
        CHECK(m.expert_of(dev) == m.expert_of(g[0]));
      }
    // Dense gradient groups: one per tensor rank, spanning data x expert.
    const auto dg = m.dense_grad_groups(s);
    check_partition(dg, devices, T, D * E);
    for (const auto& g : dg)
      for (int dev : g) CHECK(m.tensor_of(dev) == m.tensor_of(g[0]));
    // Expert gradient groups: one per (expert, tensor), spanning data.
    const auto xg = m.expert_grad_groups(s);
    check_partition(xg, devices, E * T, D);
    for (const auto& g : xg)
      for (int dev : g) {
        CHECK(m.expert_of(dev) == m.expert_of(g[0]));
        CHECK(m.tensor_of(dev) == m.tensor_of(g[0]));
      }
  }
}

TEST_CASE("workload::DeviceMesh: invalid meshes are errors", "[workload][mesh]") {
  SECTION("a zero degree") { CHECK_THROWS_AS(DeviceMesh(par(0, 1, 1, 1), 1), moesim::Error); }
  SECTION("zero devices per chip") { CHECK_THROWS_AS(DeviceMesh(par(1, 1, 1, 1), 0), moesim::Error); }
  SECTION("devices that do not fill whole chips") {
    CHECK_THROWS_WITH(DeviceMesh(par(3, 1, 1, 1), 2), Catch::Contains("3 devices do not fill whole chips of 2"));
  }
}
