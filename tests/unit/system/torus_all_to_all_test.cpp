// SPDX-License-Identifier: Apache-2.0
// Torus all-to-all: the closed-form ring load against a brute-force count of shortest-path crossings,
// and the dimension-ordered plan's per-link loads, rounds and neighbour-only flows on full and partial
// product grids. Expected loads are recomputed here by routing every member pair hop by hop.

#include <catch2/catch.hpp>

#include <set>

#include "system_test_support.hpp"

using moesim::system::ring_all_to_all_link_load;
using moesim::workload::CollectiveOp;
namespace t = moesim::system::test;

namespace {

/** Brute force: every ordered pair of an n-ring exchanges 1 unit along the shorter direction (ties
 *  split in half between the two directions); returns the units crossing each directed neighbour pair
 *  (x -> x+1 and x -> x-1). For n = 2 both directions of travel reach the same neighbour, so they add
 *  up on the one directed pair, as on SimGrid's torus (tested in tests/unit/platform). */
t::PairLoads brute_force_ring(int n) {
  t::PairLoads l;
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      if (a == b) continue;
      const int up = ((b - a) % n + n) % n, down = n - up;
      const double w_up = up < down ? 1.0 : up == down ? 0.5 : 0.0;
      const double w_down = 1.0 - w_up;
      for (int h = 0; h < up && w_up > 0; ++h) l[{(a + h) % n, (a + h + 1) % n}] += w_up;
      for (int h = 0; h < down && w_down > 0; ++h) l[{((a - h) % n + n) % n, ((a - h - 1) % n + n) % n}] += w_down;
    }
  return l;
}

/** Brute force for one round of a dimension-ordered all-to-all: within every torus line along `dim`,
 *  every ordered pair of group chips exchanges `v` bytes along the shorter direction (ties split),
 *  walking through the chips in between, group members or not. */
t::PairLoads brute_force_round(const moesim::system::Topology& topo, const std::vector<int>& chips, int dim, double v) {
  t::PairLoads l;
  const int site = topo.site_of(chips.front());
  const int n = topo.sites()[static_cast<std::size_t>(site)].dims[static_cast<std::size_t>(dim)];
  for (int a : chips)
    for (int b : chips) {
      auto ca = topo.coords(a);
      const auto cb = topo.coords(b);
      bool same_line = a != b;
      for (std::size_t d = 0; d < ca.size(); ++d)
        if (static_cast<int>(d) != dim && ca[d] != cb[d]) same_line = false;
      if (!same_line) continue;
      const int up = ((cb[static_cast<std::size_t>(dim)] - ca[static_cast<std::size_t>(dim)]) % n + n) % n, down = n - up;
      auto walk = [&](int hops, int step, double bytes) {
        auto c = ca;
        for (int h = 0; h < hops; ++h) {
          auto next = c;
          next[static_cast<std::size_t>(dim)] = ((c[static_cast<std::size_t>(dim)] + step) % n + n) % n;
          l[{topo.chip_at(site, c), topo.chip_at(site, next)}] += bytes;
          c = next;
        }
      };
      if (up < down) walk(up, +1, v);
      else if (down < up) walk(down, -1, v);
      else {
        walk(up, +1, v / 2.0);
        walk(down, -1, v / 2.0);
      }
    }
  return l;
}

void check_same_loads(const t::PairLoads& got, const t::PairLoads& want) {
  CHECK(got.size() == want.size());
  for (const auto& [pair, bytes] : want) {
    INFO("link " << pair.first << " -> " << pair.second);
    auto it = got.find(pair);
    REQUIRE(it != got.end());
    CHECK(t::close(it->second, bytes));
  }
  for (const auto& [pair, bytes] : got) {
    INFO("unexpected link " << pair.first << " -> " << pair.second);
    CHECK(want.count(pair) == 1);
  }
}

}  // namespace

TEST_CASE("system::ring_all_to_all_link_load: equals a brute-force count of shortest-path crossings", "[system][torus]") {
  for (int n = 2; n <= 9; ++n) {
    INFO("ring of " << n);
    const t::PairLoads l = brute_force_ring(n);
    // Every directed neighbour pair exists and carries the same load (the ring is symmetric).
    CHECK(l.size() == static_cast<std::size_t>(n == 2 ? 2 : 2 * n));
    for (const auto& [pair, load] : l) CHECK(ring_all_to_all_link_load(n) == Approx(load).epsilon(1e-15));
  }
  SECTION("degenerate rings carry nothing") {
    CHECK(ring_all_to_all_link_load(1) == 0.0);
    CHECK(ring_all_to_all_link_load(0) == 0.0);
  }
}

TEST_CASE("system::plan_collective: dimension-ordered all-to-all on a full 4x4 torus", "[system][torus]") {
  const t::Fixture f = t::torus({4, 4});
  const double B = 1.6e6;  // bytes each device sends in total (to every member, itself included)
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(16)}, B));
  CHECK(plan.algorithm == "torus dimension-ordered all-to-all");
  REQUIRE(plan.rounds.size() == 2);  // one per spanned dimension
  for (std::size_t r = 0; r < plan.rounds.size(); ++r) {
    INFO("round " << r << " (" << plan.rounds[r].name << ")");
    const t::PairLoads l = t::loads(plan.rounds[r]);
    // Each chip holds D = B bytes and sends D/4 to each chip of its 4-ring: D/n x L(n) per directed link.
    CHECK(l.size() == 16u * 2u);  // every chip to its up and down neighbour along this dimension
    for (const auto& [pair, bytes] : l) {
      CHECK(t::torus_neighbours(f.topo, pair.first, pair.second));
      const auto ca = f.topo.coords(pair.first), cb = f.topo.coords(pair.second);
      CHECK(ca[1 - r] == cb[1 - r]);  // round r moves data along dimension r only
      CHECK(bytes == Approx(B / 4.0 * ring_all_to_all_link_load(4)).epsilon(1e-12));
    }
    check_same_loads(l, brute_force_round(f.topo, t::iota(16), static_cast<int>(r), B / 4.0));
  }
  // One device per chip: only each device's share to itself stays on the chip.
  CHECK(plan.intra_chip_bytes == Approx(16 * B / 16.0));
}

TEST_CASE("system::plan_collective: dimension-ordered all-to-all on a full 32x32 torus", "[system][torus]") {
  const t::Fixture f = t::torus({32, 32});
  const double B = 3.2e7;
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(1024)}, B));
  REQUIRE(plan.rounds.size() == 2);
  // L(32) = 1 + 2 + ... + 15 (pairs at distance d < 16 cross d links one way) + 16/2 (antipodal pairs
  // split both ways) = 120 + 8 = 128, so each directed link carries B/32 x 128 = 4 B.
  REQUIRE(ring_all_to_all_link_load(32) == 128.0);
  for (std::size_t r = 0; r < 2; ++r) {
    const t::PairLoads l = t::loads(plan.rounds[r]);
    CHECK(l.size() == 1024u * 2u);
    std::size_t not_neighbours = 0, wrong = 0;
    for (const auto& [pair, bytes] : l) {
      not_neighbours += t::torus_neighbours(f.topo, pair.first, pair.second) ? 0 : 1;
      wrong += t::close(bytes, 4.0 * B) ? 0 : 1;
    }
    CHECK(not_neighbours == 0);
    CHECK(wrong == 0);
  }
  SECTION("two devices per chip (TPU v3 cores): the chip's data doubles, a quarter of the pairs stay on chip") {
    const t::Fixture f2 = t::torus({32, 32}, 2);
    const auto p2 = f2.plan(t::work(CollectiveOp::all_to_all, {t::iota(2048)}, B));
    REQUIRE(p2.rounds.size() == 2);
    // Each chip holds D = 2 devices x B = 2B; per link 2B/32 x 128 = 8B.
    for (const auto& [pair, bytes] : t::loads(p2.rounds[0])) CHECK(bytes == Approx(8.0 * B).epsilon(1e-12));
    // On-chip: each chip's 2 x 2 device pairs (own share included) exchange B/2048 each.
    CHECK(p2.intra_chip_bytes == Approx(1024.0 * 4.0 * B / 2048.0));
  }
}

TEST_CASE("system::plan_collective: a partial product grid matches brute-force shortest-path routing", "[system][torus]") {
  // 8x8 torus, expert 4 x data 16: each expert-gradient group (devices e, e+4, e+8, ...) sits on columns
  // {e, e+4} (two of eight, antipodal on the ring) and all eight rows: a 2 x 8 product grid.
  const t::Fixture f(t::scenario_for("torus_2d", {8, 8}, t::par(16, 4)), t::torus_chip());
  const double B = 1e6;
  std::vector<std::vector<int>> groups = f.mesh.expert_grad_groups(0);
  REQUIRE(groups.size() == 4);
  for (std::size_t e = 0; e < groups.size(); ++e) {
    INFO("group of expert " << e);
    std::set<int> columns;
    for (int d : groups[e]) columns.insert(f.topo.coords(f.mesh.chip_of(d))[0]);
    CHECK(columns == std::set<int>{static_cast<int>(e), static_cast<int>(e) + 4});
  }
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, groups, B));
  REQUIRE(plan.rounds.size() == 2);
  // Every chip holds D = B bytes (one device per chip) and sends D/m to each of the m group members of
  // its line along the round's dimension: m = 2 columns in round 0, m = 8 rows in round 1. All four
  // groups run at once and share the row rings of round 0, so their loads add up.
  const int m[2] = {2, 8};
  for (int r = 0; r < 2; ++r) {
    INFO("round " << r);
    t::PairLoads want;
    for (const auto& g : groups) {
      std::vector<int> chips;
      for (int d : g) chips.push_back(f.mesh.chip_of(d));
      for (const auto& [k, v] : brute_force_round(f.topo, chips, r, B / m[r])) want[k] += v;
    }
    const t::PairLoads got = t::loads(plan.rounds[static_cast<std::size_t>(r)]);
    check_same_loads(got, want);
    for (const auto& [pair, bytes] : got) CHECK(t::torus_neighbours(f.topo, pair.first, pair.second));
  }
  // Round 0: columns e and e+4 are antipodal on the 8-ring, so each pair's B/2 splits both ways and
  // crosses 4 links each way: every directed link of a row carries B/4 per group, B for the 4 groups.
  const t::PairLoads l0 = t::loads(plan.rounds[0]);
  CHECK(l0.size() == 8u * 8u * 2u);
  for (const auto& [pair, bytes] : l0) CHECK(bytes == Approx(B));

  SECTION("adjacent partial rows: 2 of 8 rows of an 8x8 torus") {
    // expert 16 x data 4: expert group d is chips 16d .. 16d+15 = rows 2d and 2d+1, all columns.
    const t::Fixture g(t::scenario_for("torus_2d", {8, 8}, t::par(4, 16)), t::torus_chip());
    const auto eg = g.mesh.expert_groups(0);
    const auto p = g.plan(t::work(CollectiveOp::all_to_all, eg, B));
    REQUIRE(p.rounds.size() == 2);
    t::PairLoads want0, want1;
    for (const auto& grp : eg) {
      for (const auto& [k, v] : brute_force_round(g.topo, grp, 0, B / 8.0)) want0[k] += v;
      for (const auto& [k, v] : brute_force_round(g.topo, grp, 1, B / 2.0)) want1[k] += v;
    }
    check_same_loads(t::loads(p.rounds[0]), want0);
    check_same_loads(t::loads(p.rounds[1]), want1);
    // Rows 2d and 2d+1 are adjacent: the short way carries B/2 over one link; the rest of the ring idles.
    for (const auto& [pair, bytes] : want1) CHECK(bytes == Approx(B / 2.0));
  }
}

TEST_CASE("system::plan_collective: a group that is not a product grid is routed directly", "[system][torus]") {
  // Chips (0,0), (1,0), (0,1) of a 4x4 torus: an L shape, not every coordinate combination present.
  const t::Fixture f = t::torus({4, 4});
  const std::vector<int> group{f.topo.chip_at(0, {0, 0}), f.topo.chip_at(0, {1, 0}), f.topo.chip_at(0, {0, 1})};
  const double B = 3e6;
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {group}, B));
  CHECK(plan.algorithm == "direct all-to-all");
  REQUIRE(plan.rounds.size() == 1);
  const t::PairLoads l = t::loads(plan);
  CHECK(l.size() == 6u);  // every ordered pair, end to end (SimGrid routes them)
  for (const auto& [pair, bytes] : l) CHECK(bytes == Approx(B / 3.0));
}
