// SPDX-License-Identifier: Apache-2.0
// Two properties of traffic plans the engine relies on to plan less:
// - Every flow is proportional to the collective's size. The engine plans each shape (operation, groups, weights)
//   once and scales that plan for the shape's other sizes (engine.cpp, plan_for); here every algorithm's plan at one
//   size is compared with its plan at another, flow by flow.
// - Groups sharing a torus line are summed per link before their flows are entered (PlanBuilder::ring): the plan of
//   several groups equals the sum of the groups' plans, to the last bit, in the order the groups come.

#include <catch2/catch.hpp>

#include "system_test_support.hpp"

using moesim::scenario::SplitKind;
using moesim::system::TrafficPlan;
using moesim::workload::CollectiveOp;
using moesim::workload::CollectiveWork;
namespace t = moesim::system::test;

namespace {

/** Plans `w` at two sizes and checks that the second is the first scaled, flow by flow (same structure, same
 *  latencies). */
void check_scales(const t::Fixture& f, CollectiveWork w) {
  const double b1 = 3.0e6, b2 = 7.3e8;
  w.bytes_per_device = b1;
  const TrafficPlan p1 = f.plan(w);
  w.bytes_per_device = b2;
  const TrafficPlan p2 = f.plan(w);
  REQUIRE_FALSE(p1.empty());
  CHECK(p1.algorithm == p2.algorithm);
  CHECK(p1.overhead_s == p2.overhead_s);
  CHECK(t::close(p2.intra_chip_bytes, p1.intra_chip_bytes * (b2 / b1)));
  REQUIRE(p1.rounds.size() == p2.rounds.size());
  for (std::size_t r = 0; r < p1.rounds.size(); ++r) {
    const auto& r1 = p1.rounds[r];
    const auto& r2 = p2.rounds[r];
    CHECK(r1.name == r2.name);
    CHECK(r1.alpha_s == r2.alpha_s);
    CHECK(r1.steps == r2.steps);
    REQUIRE(r1.batches.size() == r2.batches.size());
    for (std::size_t b = 0; b < r1.batches.size(); ++b) {
      const auto& f1 = r1.batches[b].flows;
      const auto& f2 = r2.batches[b].flows;
      REQUIRE(f1.size() == f2.size());
      for (std::size_t i = 0; i < f1.size(); ++i) {
        CHECK(f1[i].src == f2[i].src);
        CHECK(f1[i].dst == f2[i].dst);
        CHECK(f1[i].bytes > 0.0);
        CHECK(t::close(f2[i].bytes, f1[i].bytes * (b2 / b1)));
      }
    }
  }
}

/** Groups of `m` chips spaced `step` apart along dimension 0 of an n x rows torus, `per_line` of them per row (each
 *  shifted by one chip): partial rings that share their row's links, as data-parallel expert replicas do. */
std::vector<std::vector<int>> spaced_groups(const t::Fixture& f, int n, int rows, int m, int step, int per_line) {
  std::vector<std::vector<int>> groups;
  for (int y = 0; y < rows; ++y)
    for (int k = 0; k < per_line; ++k) {
      std::vector<int> g;
      for (int i = 0; i < m; ++i) g.push_back(f.topo.chip_at(0, {(k + i * step) % n, y}));
      groups.push_back(g);
    }
  return groups;
}

}  // namespace

TEST_CASE("system::plan_collective: every flow is proportional to the collective's size", "[system][plan]") {
  SECTION("torus: all-reduce, reduce-scatter, all-gather over whole and partial rings; all-to-all") {
    const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(1, 32)), t::torus_chip());
    for (auto op : {CollectiveOp::all_reduce, CollectiveOp::reduce_scatter, CollectiveOp::all_gather}) {
      check_scales(f, t::work(op, spaced_groups(f, 8, 4, 2, 3, 3), 1.0));  // irregular partial rings, shared lines
      check_scales(f, t::work(op, {t::iota(32)}, 1.0));                    // the whole torus, both dimensions
    }
    check_scales(f, t::work(CollectiveOp::all_to_all, {t::iota(32)}, 1.0));
    check_scales(f, t::work(CollectiveOp::all_to_all, spaced_groups(f, 8, 4, 4, 2, 2), 1.0));
  }
  SECTION("torus with two devices per chip: traffic between a chip's devices stays on the chip") {
    const t::Fixture f = t::torus({4, 4}, 2);
    check_scales(f, t::work(CollectiveOp::all_to_all, {t::iota(32)}, 1.0));
  }
  SECTION("GPU nodes: hierarchical all-reduce and all-to-all, routed (weighted) all-to-all, send/recv") {
    const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, 1), t::gpu(4));
    check_scales(f, t::work(CollectiveOp::all_reduce, {t::iota(8)}, 1.0));
    check_scales(f, t::work(CollectiveOp::all_to_all, {t::iota(8)}, 1.0));
    CollectiveWork routed = t::work(CollectiveOp::all_to_all, {t::iota(8)}, 1.0);
    routed.send_weight = {{1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 3.0, 1.0}};
    routed.recv_weight = {{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}};
    check_scales(f, routed);
    check_scales(f, t::work(CollectiveOp::send_recv, {{0, 5}, {1, 6}, {2, 2}}, 1.0));
  }
  SECTION("two datacenters: the WAN rounds too") {
    const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(16, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}}, SplitKind::data, 4, 1),
                       t::gpu(4));
    check_scales(f, t::work(CollectiveOp::all_reduce, {t::iota(16)}, 1.0));
    check_scales(f, t::work(CollectiveOp::all_to_all, {t::iota(16)}, 1.0));
  }
}

TEST_CASE("system::plan_collective: groups sharing a torus line add up on its links, in the order they come", "[system][plan]") {
  const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(1, 32)), t::torus_chip());
  // Three groups per row, of 2 chips 3 apart: their partial rings overlap on the row's links.
  const auto groups = spaced_groups(f, 8, 4, 2, 3, 3);
  const double B = 5.5e6;
  for (auto op : {CollectiveOp::all_reduce, CollectiveOp::all_to_all}) {
    const TrafficPlan together = f.plan(t::work(op, groups, B));
    // Each group alone, its loads summed round by round in group order: the same additions in the same order.
    std::vector<t::PairLoads> summed(together.rounds.size());
    for (const auto& g : groups) {
      const TrafficPlan alone = f.plan(t::work(op, {g}, B));
      REQUIRE(alone.rounds.size() == together.rounds.size());
      for (std::size_t r = 0; r < alone.rounds.size(); ++r)
        for (const auto& [pair, bytes] : t::loads(alone.rounds[r])) summed[r][pair] += bytes;
    }
    for (std::size_t r = 0; r < together.rounds.size(); ++r) {
      const t::PairLoads l = t::loads(together.rounds[r]);
      CHECK(l == summed[r]);
      // One batch per row: the groups of a row share its ring's parallel task.
      CHECK(together.rounds[r].batches.size() == 4u);
      for (const auto& [pair, bytes] : l) CHECK(t::torus_neighbours(f.topo, pair.first, pair.second));
    }
  }
}
