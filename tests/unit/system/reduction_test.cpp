// SPDX-License-Identifier: Apache-2.0
// All-reduce, reduce-scatter and all-gather plans. The invariant checked everywhere: in a bandwidth-
// optimal ring all-reduce of a B-byte buffer over n members, every member sends 2 (n-1)/n x B in total
// (reduce-scatter (n-1)/n x B, then all-gather the same; Patarasuk & Yuan 2009, "Bandwidth optimal
// all-reduce algorithms for clusters of workstations", JPDC 69(2)). Per torus dimension and for the
// hierarchical NVLink + rails variant the sum over rounds telescopes to the same total.

#include <catch2/catch.hpp>

#include <set>

#include "moesim/core/error.hpp"
#include "system_test_support.hpp"

using moesim::workload::CollectiveOp;
namespace t = moesim::system::test;

namespace {

/** Chips of row `y` of a torus site 0 (dimension 0 varies along it). */
std::vector<int> row(const t::Fixture& f, int y, const std::vector<int>& xs) {
  std::vector<int> out;
  for (int x : xs) out.push_back(f.topo.chip_at(0, {x, y}));
  return out;
}

}  // namespace

TEST_CASE("system::plan_collective: ring all-reduce over full torus rings sends 2(n-1)/n x B per chip", "[system][reduction]") {
  // 8x4 torus, four independent all-reduce groups: the four rows (8-rings along dimension 0).
  const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(1, 32)), t::torus_chip());
  std::vector<std::vector<int>> rows;
  for (int y = 0; y < 4; ++y) rows.push_back(row(f, y, t::iota(8)));
  const double B = 8e6;

  SECTION("all-reduce: reduce-scatter round then all-gather round") {
    const auto plan = f.plan(t::work(CollectiveOp::all_reduce, rows, B));
    CHECK(plan.algorithm == "torus bidirectional ring per dimension");
    REQUIRE(plan.rounds.size() == 2);
    CHECK(plan.rounds[0].name == "reduce-scatter dim 0");
    CHECK(plan.rounds[1].name == "all-gather dim 0");
    const auto sent = t::sent_by(plan);
    REQUIRE(sent.size() == 32u);
    for (const auto& [chip, bytes] : sent) CHECK(bytes == Approx(2.0 * 7.0 / 8.0 * B));
    // Bidirectional: half the buffer each way, (n-1)/n of it crosses each hop, per round.
    for (const auto& r : plan.rounds)
      for (const auto& [pair, bytes] : t::loads(r)) {
        CHECK(t::torus_neighbours(f.topo, pair.first, pair.second));
        CHECK(bytes == Approx(7.0 / 8.0 * B / 2.0));
      }
    CHECK(plan.intra_chip_bytes == 0.0);
  }
  SECTION("reduce-scatter and all-gather alone are the two halves") {
    for (auto op : {CollectiveOp::reduce_scatter, CollectiveOp::all_gather}) {
      const auto plan = f.plan(t::work(op, rows, B));
      REQUIRE(plan.rounds.size() == 1);
      for (const auto& [chip, bytes] : t::sent_by(plan)) CHECK(bytes == Approx(7.0 / 8.0 * B));
    }
  }
}

TEST_CASE("system::plan_collective: all-reduce over a full 2D torus telescopes to 2(n-1)/n x B", "[system][reduction]") {
  // Both dimensions are whole rings, so both carry data in every round (scaling-book: gathering over N axes has N
  // times the bandwidth): half the buffer reduce-scatters along dimension 0 then 1, the other half along 1 then 0.
  // Per chip still 2 x (3/4 B + 3/4 x B/4) = 2 x 15/16 B; per link and direction in a round, one half: round 0
  // 3/4 x (B/2) / 2, round 1 3/4 x (B/8) / 2 (the half shrunk by 4), the all-gather mirrored. The sequential
  // order (all of B along dimension 0 first) would put 3/4 x B / 2 on dimension 0's links in round 0 and leave
  // dimension 1's idle: twice the time.
  const t::Fixture f = t::torus({4, 4});
  const double B = 1.6e7;
  const auto plan = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(16)}, B));
  REQUIRE(plan.rounds.size() == 4);
  CHECK(plan.rounds[0].name == "reduce-scatter dim 0");
  CHECK(plan.rounds[1].name == "reduce-scatter dim 1");
  CHECK(plan.rounds[2].name == "all-gather dim 1");
  CHECK(plan.rounds[3].name == "all-gather dim 0");
  for (const auto& [chip, bytes] : t::sent_by(plan)) CHECK(bytes == Approx(2.0 * 15.0 / 16.0 * B));
  const double per_link[4] = {3.0 / 4.0 * (B / 2.0) / 2.0, 3.0 / 4.0 * (B / 8.0) / 2.0, 3.0 / 4.0 * (B / 8.0) / 2.0,
                              3.0 / 4.0 * (B / 2.0) / 2.0};
  for (std::size_t r = 0; r < 4; ++r) {
    const auto l = t::loads(plan.rounds[r]);
    CHECK(l.size() == 64u);  // every directed link of the 4x4 torus (16 chips x 4) busy in every round
    for (const auto& [pair, bytes] : l) CHECK(bytes == Approx(per_link[r]));
  }
}

TEST_CASE("system::plan_collective: an all-gather over a whole 3D torus uses the three dimensions at once", "[system][reduction]") {
  // 4x2x2: the buffer in thirds, each taking the dimensions in a rotated order (widest first: 0, then 1, 2). The
  // all-gather of a B-byte result ends with each third along its first dimension at full size (B/3), before that
  // at B/3 over the product of the other two. Every directed link is busy in every round, and per chip the total
  // sent is (n-1)/n x B as for one ring.
  const t::Fixture f = t::torus({4, 2, 2});
  const double B = 1.2e7;
  const auto plan = f.plan(t::work(CollectiveOp::all_gather, {t::iota(16)}, B));
  REQUIRE(plan.rounds.size() == 3);
  for (const auto& [chip, bytes] : t::sent_by(plan)) CHECK(bytes == Approx(15.0 / 16.0 * B));
  // Last round: the third that started (in the reduce-scatter order) along dimension 0 grows 4x along it: 3/4 x
  // (B/3) / 2 each way on dimension 0's links; the thirds that started along dimension 1 or 2 grow 2x along
  // theirs: 1/2 x (B/3) / 2 each way, and on a ring of 2 both ways reach the one neighbour.
  const auto last = t::loads(plan.rounds[2]);
  CHECK(last.size() == 16u * 2u + 16u + 16u);  // dimension 0: 16 chips x 2 directions; dimensions 1 and 2: 16 each
  for (const auto& [pair, bytes] : last) {
    const bool along0 = f.topo.coords(pair.first)[0] != f.topo.coords(pair.second)[0];
    CHECK(bytes == Approx(along0 ? 3.0 / 4.0 * (B / 3.0) / 2.0 : 2.0 * (1.0 / 2.0 * (B / 3.0) / 2.0)));
  }
  // The latency: each third crosses every dimension once, so the rounds pay the dimensions' steps once in all.
  double alpha = 0.0;
  for (const auto& r : plan.rounds) alpha += r.alpha_s;
  CHECK(alpha > 0.0);
  CHECK(alpha == Approx(2.0 * f.topo.ici_latency_s + 1.0 * f.topo.ici_latency_s + 1.0 * f.topo.ici_latency_s));
}

TEST_CASE("system::plan_collective: a 4x4 block of a larger torus uses both of its segments at once", "[system][reduction]") {
  // The chips x, y in 0..3 of an 8x8 torus: along each dimension the group holds an unbroken segment of 4, whose
  // folded ring runs only on the links between its own members, so both dimensions carry half the buffer in round 0.
  // A folded ring puts both logical directions on every link of the segment: 2 x 3/4 x (B/2) / 2 per directed link.
  const t::Fixture f = t::torus({8, 8});
  std::vector<int> group;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) group.push_back(f.topo.chip_at(0, {x, y}));
  const double B = 8e6;
  const auto plan = f.plan(t::work(CollectiveOp::reduce_scatter, {group}, B));
  REQUIRE(plan.rounds.size() == 2);
  std::set<int> dims;
  for (const auto& [pair, bytes] : t::loads(plan.rounds[0])) {
    dims.insert(f.topo.coords(pair.first)[0] != f.topo.coords(pair.second)[0] ? 0 : 1);
    CHECK(bytes == Approx(2.0 * 3.0 / 4.0 * (B / 2.0) / 2.0));
  }
  CHECK(dims == std::set<int>{0, 1});
  // The same link-bytes in all as one dimension after the other (3/4 x B / 2 x 2 on 24 directed links, then a
  // quarter of it on the other dimension's 24), in half the time of round 0's 3/4 x B per link.
  double total = 0.0;
  for (const auto& [pair, bytes] : t::loads(plan)) total += bytes;
  CHECK(total == Approx(24.0 * 3.0 / 4.0 * B + 24.0 * 3.0 / 4.0 * (B / 4.0)));
}

TEST_CASE("system::plan_collective: a dimension held only in part keeps its place in the order", "[system][reduction]") {
  // On an 8x4 torus a group of the 4 chips x in {0, 2, 4, 6} of rows 0..3: dimension 1 is a whole 4-ring,
  // dimension 0 every other chip of the 8-ring (shared with the group at the odd x). Only one dimension is whole,
  // so the buffer is not split: widest first, dimension 1 (4 members, whole) and dimension 0 (4 members) tie on
  // width and keep their order; all of B goes along the first, then B/4 along the second.
  const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(1, 32)), t::torus_chip());
  std::vector<int> group;
  for (int y = 0; y < 4; ++y)
    for (int x : {0, 2, 4, 6}) group.push_back(f.topo.chip_at(0, {x, y}));
  const double B = 8e6;
  const auto plan = f.plan(t::work(CollectiveOp::reduce_scatter, {group}, B));
  REQUIRE(plan.rounds.size() == 2);
  for (std::size_t r = 0; r < 2; ++r) {
    std::set<int> dims;
    for (const auto& [pair, bytes] : t::loads(plan.rounds[r])) {
      dims.insert(f.topo.coords(pair.first)[0] != f.topo.coords(pair.second)[0] ? 0 : 1);
      CHECK(bytes == Approx(3.0 / 4.0 * (r == 0 ? B : B / 4.0) / 2.0));
    }
    CHECK(dims.size() == 1u);  // one dimension per round: nothing split
  }
}

TEST_CASE("system::plan_collective: a ring of every other chip passes through the chips in between", "[system][reduction]") {
  // Members at x = 0, 2, 4, 6 of the 8-ring in row 0: m = 4 members, each sends (m-1)/m x B/2 each way
  // to its ring neighbour two hops away; every directed link of the row lies on exactly one such path.
  const t::Fixture f(t::scenario_for("torus_2d", {8, 4}, t::par(1, 32)), t::torus_chip());
  const double B = 4e6;
  const auto plan = f.plan(t::work(CollectiveOp::reduce_scatter, {row(f, 0, {0, 2, 4, 6})}, B));
  REQUIRE(plan.rounds.size() == 1);
  const auto l = t::loads(plan.rounds[0]);
  CHECK(l.size() == 16u);  // 8 links x 2 directions of row 0
  for (const auto& [pair, bytes] : l) {
    CHECK(t::torus_neighbours(f.topo, pair.first, pair.second));
    CHECK(f.topo.coords(pair.first)[1] == 0);
    CHECK(bytes == Approx(3.0 / 4.0 * B / 2.0));
  }
}

TEST_CASE("system::plan_collective: hierarchical all-reduce on GPU nodes (NVLink + rails)", "[system][reduction]") {
  // 3 nodes x 4 GPUs, one group of all 12: reduce-scatter in the node (each GPU sends each peer its
  // B/4 shard), ring along each rail on the shard ((3-1)/3 of B/4), then the mirror image.
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(12, 1), {{"dc_a", 1.0}}, moesim::scenario::SplitKind::data, 4, 1),
                     t::gpu(4));
  const double B = 1.2e7;
  const auto plan = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(12)}, B));
  CHECK(plan.algorithm == "hierarchical ring (NVLink + rails)");
  REQUIRE(plan.rounds.size() == 4);
  for (std::size_t r : {0u, 3u})
    for (const auto& [pair, bytes] : t::loads(plan.rounds[r])) {
      CHECK(f.topo.node_of(pair.first) == f.topo.node_of(pair.second));
      CHECK(bytes == Approx(B / 4.0));
    }
  for (std::size_t r : {1u, 2u})
    for (const auto& [pair, bytes] : t::loads(plan.rounds[r])) {
      CHECK(f.topo.gpu_of(pair.first) == f.topo.gpu_of(pair.second));  // rails: same GPU index
      CHECK(f.topo.node_of(pair.first) != f.topo.node_of(pair.second));
      CHECK(bytes == Approx(2.0 / 3.0 * B / 4.0));
    }
  // The telescoping sum: 2 x (3/4 B + 2/3 x B/4) = 2 x 11/12 B = 2 (n-1)/n B for n = 12.
  for (const auto& [gpu, bytes] : t::sent_by(plan)) CHECK(bytes == Approx(2.0 * 11.0 / 12.0 * B));
}

TEST_CASE("system::plan_collective: all-reduce across datacenters rings the site borders", "[system][reduction]") {
  // Two sites of 8 GPUs (data-parallel halves); the group spans both.
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(16, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}},
                                     moesim::scenario::SplitKind::data, 4, 1),
                     t::gpu(4));
  REQUIRE(f.topo.sites().size() == 2);
  const double B = 1e8;
  const auto plan = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(16)}, B));
  CHECK(plan.algorithm == "hierarchical cross-site ring");
  const int border0 = f.topo.chips(), border1 = f.topo.chips() + 1;
  const auto l = t::loads(plan);
  // A ring all-reduce of the whole buffer between S = 2 borders: each sends 2 (S-1)/S x B = B.
  REQUIRE(l.count({border0, border1}) == 1);
  REQUIRE(l.count({border1, border0}) == 1);
  CHECK(l.at({border0, border1}) == Approx(B));
  CHECK(l.at({border1, border0}) == Approx(B));
  // The WAN round sits between the sites' reduce-scatter and all-gather rounds.
  std::size_t wan_round = plan.rounds.size();
  for (std::size_t r = 0; r < plan.rounds.size(); ++r)
    if (t::loads(plan.rounds[r]).count({border0, border1})) wan_round = r;
  CHECK(plan.rounds[wan_round].name == "ring across datacenters (WAN)");
  CHECK(wan_round == 2);  // after the node and rail reduce-scatter rounds
  CHECK(plan.rounds.size() == 5);
  SECTION("reduce-scatter alone crosses the WAN once: (S-1)/S x B") {
    const auto rs = f.plan(t::work(CollectiveOp::reduce_scatter, {t::iota(16)}, B));
    CHECK(t::loads(rs).at({border0, border1}) == Approx(B / 2.0));
  }
}

TEST_CASE("system::plan_collective: degenerate collectives", "[system][reduction]") {
  const t::Fixture f = t::torus({4, 4}, 2);
  SECTION("zero bytes plan nothing") {
    const auto plan = f.plan(t::work(CollectiveOp::all_reduce, {t::iota(32)}, 0.0));
    CHECK(plan.empty());
    CHECK(plan.algorithm == "none");
  }
  SECTION("the two devices of one chip reduce on the chip") {
    const auto plan = f.plan(t::work(CollectiveOp::all_reduce, {{0, 1}}, 1e6));
    CHECK(plan.empty());
    CHECK(plan.algorithm == "intra-chip");
  }
  SECTION("single-member groups are skipped") {
    const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {{0}, {5}}, 1e6));
    CHECK(plan.empty());
  }
}
