// SPDX-License-Identifier: Apache-2.0
// The latency (alpha) term of each collective round, on hand-computed cases. Fixture figures: 1 us per ICI hop;
// GPU NVLink step 1 us, network step 2 us (system_test_support.hpp). Rules (collectives.cpp, ring_steps):
//   a torus dimension whose members spread evenly round the whole ring: floor(m/2) steps of one member spacing;
//   a group holding a segment of the ring: m - 1 steps of up to its largest inner gap;
//   NVLink node round of a reduction: k - 1 NVLink steps; ring along the rails: nodes - 1 network steps;
//   hierarchical all-to-all: one NVLink step, then one network step;
//   direct all-to-all (one node, or groups the hierarchical path does not cover): one step of the longest route.

#include <catch2/catch.hpp>

#include "system_test_support.hpp"

using moesim::workload::CollectiveOp;
namespace t = moesim::system::test;

TEST_CASE("collectives: a 4-ring all-reduce pays floor(4/2) hop steps per half", "[system][latency]") {
  const t::Fixture f = t::torus({4, 1});
  const auto p = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(4)}, 4e6));
  REQUIRE(p.rounds.size() == 2);  // reduce-scatter, all-gather
  for (const auto& r : p.rounds) {
    CHECK(r.steps == 2);
    CHECK(r.alpha_s == Approx(2e-6));
  }
}

TEST_CASE("collectives: a 4x4 torus all-to-all pays floor(4/2) hops per dimension", "[system][latency]") {
  const t::Fixture f = t::torus({4, 4});
  const auto p = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(16)}, 16e6));
  REQUIRE(p.rounds.size() == 2);  // one round per dimension
  for (const auto& r : p.rounds) {
    CHECK(r.steps == 2);
    CHECK(r.alpha_s == Approx(2e-6));
  }
}

TEST_CASE("collectives: members spaced evenly pay hops x spacing - a segment pays m - 1 steps", "[system][latency]") {
  SECTION("4 members every 2nd chip of an 8-ring: 2 steps of 2 hops") {
    // 8 chips x 1 device, tensor 2: the 4 members of a data group sit on every other chip.
    const t::Fixture f(t::scenario_for("torus_2d", {8, 1}, t::par(4, 1, 2)), t::torus_chip());
    const auto p = f.plan(t::work(CollectiveOp::all_reduce, {{0, 2, 4, 6}}, 4e6));
    REQUIRE(p.rounds.size() == 2);
    CHECK(p.rounds[0].steps == 2);
    CHECK(p.rounds[0].alpha_s == Approx(2 * 2e-6));
  }
  SECTION("a 4-chip segment of an 8-ring: a line, 3 steps of 1 hop") {
    const t::Fixture f(t::scenario_for("torus_2d", {8, 1}, t::par(2, 1, 4)), t::torus_chip());
    const auto p = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(4)}, 4e6));
    REQUIRE(p.rounds.size() == 2);
    CHECK(p.rounds[0].steps == 3);
    CHECK(p.rounds[0].alpha_s == Approx(3e-6));
  }
}

TEST_CASE("collectives: a segment's ring folds back through its own links", "[system][placement]") {
  // A tensor group of chips 0..3 on an 8-ring all-reduces without touching chips 4..7 (the long way round).
  const t::Fixture f(t::scenario_for("torus_2d", {8, 1}, t::par(2, 1, 4)), t::torus_chip());
  const double B = 8e6;
  const auto p = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(4)}, B));
  for (const auto& r : p.rounds)
    for (const auto& b : r.batches)
      for (const auto& fl : b.flows) {
        INFO("flow " << fl.src << " -> " << fl.dst);
        CHECK(fl.src < 4);
        CHECK(fl.dst < 4);
      }
  // A line's ring: every inner link carries (m-1)/m x B per direction per half (both logical rings cross it
  // once each way with (m-1)/m x B/2), as a unidirectional ring of the group would.
  const auto l = t::loads(p.rounds[0]);
  CHECK(l.at({1, 2}) == Approx(0.75 * B));
  CHECK(l.at({2, 1}) == Approx(0.75 * B));
}

TEST_CASE("collectives: GPU rounds pay NCCL's per-step latencies", "[system][latency][gpu]") {
  // 2 nodes x 4 GPUs.
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, moesim::scenario::SplitKind::data, 4, 1),
                     t::gpu(4));
  SECTION("all-reduce: 3 NVLink steps in the node, 1 network step along each rail, and back") {
    const auto p = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(8)}, 8e6));
    REQUIRE(p.rounds.size() == 4);
    CHECK(p.rounds[0].alpha_s == Approx(3 * 1e-6));
    CHECK(p.rounds[1].alpha_s == Approx(1 * 2e-6));
    CHECK(p.rounds[2].alpha_s == Approx(1 * 2e-6));
    CHECK(p.rounds[3].alpha_s == Approx(3 * 1e-6));
  }
  SECTION("all-to-all: one NVLink step, then one network step") {
    const auto p = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(8)}, 8e6));
    REQUIRE(p.rounds.size() == 2);
    CHECK(p.rounds[0].alpha_s == Approx(1e-6));
    CHECK(p.rounds[1].alpha_s == Approx(2e-6));
  }
}

TEST_CASE("collectives: a direct all-to-all pays one step of its longest route", "[system][latency][gpu]") {
  SECTION("one node of 4 GPUs: one NVLink step") {
    const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 4), {{"dc_a", 1.0}}, moesim::scenario::SplitKind::data, 4, 1),
                       t::gpu(4));
    const auto p = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(4)}, 4e6));
    REQUIRE(p.rounds.size() == 1);
    CHECK(p.rounds[0].steps == 1);
    CHECK(p.rounds[0].alpha_s == Approx(1e-6));
  }
  SECTION("3 of 4 GPUs on one node and 1 on another (uneven: no hierarchical rounds): one network step") {
    const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, moesim::scenario::SplitKind::data, 4, 1),
                       t::gpu(4));
    const auto p = f.plan(t::work(CollectiveOp::all_to_all, {{1, 2, 3, 4}}, 4e6));
    REQUIRE(p.rounds.size() == 1);
    CHECK(p.rounds[0].steps == 1);
    CHECK(p.rounds[0].alpha_s == Approx(2e-6));
  }
}

TEST_CASE("collectives: a reduce-scatter runs the widest dimension first", "[system][placement]") {
  // 4 chips spaced 4 apart on a 16-ring (x) times a full 4-ring (y): y (4 members, whole ring) and x (4 members)
  // tie; with 2 members in x the y ring (4) goes first and shrinks the buffer before x.
  const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(8, 1, 4)), t::torus_chip());
  // Data group of tensor rank 0: chips 0 and 4 in every row -> x coords {0, 4}, y coords {0..3}.
  std::vector<int> group;
  for (int d = 0; d < 8; ++d) group.push_back(f.mesh.device(0, d, 0, 0));
  const auto p = f.plan(t::work(CollectiveOp::reduce_scatter, {group}, 8e6));
  REQUIRE(p.rounds.size() == 2);
  CHECK(p.rounds[0].name == "reduce-scatter dim 1");
  CHECK(p.rounds[1].name == "reduce-scatter dim 0");
}
