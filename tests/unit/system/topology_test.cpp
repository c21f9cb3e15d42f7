// SPDX-License-Identifier: Apache-2.0
// Topology::build: which chips go to which datacenter (placement shares x split dimension), chips never
// split between datacenters, torus coordinates, fat-tree node / GPU indices, link figures and errors.

#include <catch2/catch.hpp>

#include <set>

#include "moesim/core/error.hpp"
#include "system_test_support.hpp"

using moesim::scenario::SplitKind;
using moesim::system::SiteKind;
using moesim::system::Topology;
namespace t = moesim::system::test;

namespace {

std::vector<int> chips_of_site(const Topology& topo, int site) { return topo.sites()[static_cast<std::size_t>(site)].chips; }

}  // namespace

TEST_CASE("system::Topology: sites get whole units of the split dimension by cumulative share", "[system][topology]") {
  SECTION("split data: replicas 0 of 4 in the first site, 1-3 in the second") {
    // device = data_idx x 2 + expert_idx (one device per chip): replica d is chips 2d, 2d+1.
    const t::Fixture f(t::scenario_for("torus_2d", {2, 4}, t::par(4, 2), {{"dc_a", 0.25}, {"dc_b", 0.75}}), t::torus_chip());
    REQUIRE(f.topo.sites().size() == 2);
    CHECK(chips_of_site(f.topo, 0) == std::vector<int>{0, 1});
    CHECK(chips_of_site(f.topo, 1) == std::vector<int>{2, 3, 4, 5, 6, 7});
    CHECK(f.topo.sites()[0].datacenter == "dc_a");
    CHECK(f.topo.sites()[1].datacenter == "dc_b");
    for (int c = 0; c < 8; ++c) {
      CHECK(f.topo.site_of(c) == (c < 2 ? 0 : 1));
      CHECK(f.topo.local_of(c) == (c < 2 ? c : c - 2));
    }
  }
  SECTION("split expert: experts 0 of 4 in the first site, in every replica") {
    // device = data_idx x 4 + expert_idx: expert 0 is on chips 0 and 4.
    const t::Fixture f(t::scenario_for("torus_2d", {2, 4}, t::par(2, 4), {{"dc_a", 0.25}, {"dc_b", 0.75}}, SplitKind::expert),
                       t::torus_chip());
    CHECK(chips_of_site(f.topo, 0) == std::vector<int>{0, 4});
    CHECK(chips_of_site(f.topo, 1) == std::vector<int>{1, 2, 3, 5, 6, 7});
    CHECK(f.topo.local_of(4) == 1);
    CHECK(f.topo.local_of(5) == 3);
  }
  SECTION("split pipeline: stages by share, three sites") {
    const t::Fixture f(t::scenario_for("torus_2d", {2, 4}, t::par(1, 2, 1, 4), {{"a", 0.25}, {"b", 0.5}, {"c", 0.25}}, SplitKind::pipeline),
                       t::torus_chip());
    REQUIRE(f.topo.sites().size() == 3);
    CHECK(chips_of_site(f.topo, 0) == std::vector<int>{0, 1});
    CHECK(chips_of_site(f.topo, 1) == std::vector<int>{2, 3, 4, 5});
    CHECK(chips_of_site(f.topo, 2) == std::vector<int>{6, 7});
  }
  SECTION("a site's torus is a near-square factorisation of its chips when the scenario dims do not fit") {
    const t::Fixture f(t::scenario_for("torus_2d", {2, 4}, t::par(4, 2), {{"dc_a", 0.25}, {"dc_b", 0.75}}), t::torus_chip());
    CHECK(f.topo.sites()[0].dims == std::vector<int>{1, 2});
    CHECK(f.topo.sites()[1].dims == std::vector<int>{2, 3});
    const t::Fixture g(t::scenario_for("torus_3d", {4, 4, 4}, t::par(2, 32), {{"a", 0.5}, {"b", 0.5}}), t::torus_chip());
    CHECK(g.topo.sites()[0].dims == std::vector<int>{2, 4, 4});
  }
  SECTION("a single site keeps the scenario's dims") {
    const t::Fixture f = t::torus({4, 2});
    CHECK(f.topo.sites()[0].dims == std::vector<int>{4, 2});
    CHECK(f.topo.sites()[0].kind == SiteKind::torus);
  }
}

TEST_CASE("system::Topology: placement errors", "[system][topology]") {
  SECTION("a chip's devices never split between datacenters") {
    // Two devices per chip; split expert with expert = 4: experts 0 and 1 share chip 0, but a 0.25 share
    // sends expert 0 to dc_a and expert 1 to dc_b.
    const auto s = t::scenario_for("torus_2d", {2, 1}, t::par(1, 4), {{"dc_a", 0.25}, {"dc_b", 0.75}}, SplitKind::expert);
    const auto a = t::torus_chip(2);
    const moesim::workload::DeviceMesh mesh(s.parallelism, 2);
    CHECK_THROWS_AS(Topology::build(s, a, mesh), moesim::Error);
    CHECK_THROWS_WITH(Topology::build(s, a, mesh),
                      Catch::Contains("placement splits the 2 devices of chip 0 between datacenters 'dc_a' and 'dc_b'") &&
                          Catch::Contains("keeps chips whole"));
    // The same shares with a split that keeps chips whole are fine.
    auto ok = s;
    ok.parallelism = t::par(2, 2);
    ok.split = SplitKind::data;
    const moesim::workload::DeviceMesh mesh2(ok.parallelism, 2);
    CHECK_NOTHROW(Topology::build(ok, a, mesh2));
  }
  SECTION("a datacenter with no chips") {
    // 2 replicas: cumulative 0.1 x 2 rounds to 0 units for dc_a.
    const auto s = t::scenario_for("torus_2d", {2, 1}, t::par(2, 1), {{"dc_a", 0.1}, {"dc_b", 0.9}});
    const moesim::workload::DeviceMesh mesh(s.parallelism, 1);
    CHECK_THROWS_WITH(Topology::build(s, t::torus_chip(), mesh), Catch::Contains("datacenter 'dc_a' received no chips"));
  }
  SECTION("GPU sites hold whole nodes and whole leaf groups") {
    const auto s = t::scenario_for("nvlink_fat_tree", {}, t::par(12, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}}, SplitKind::data, 4, 1);
    const moesim::workload::DeviceMesh mesh(s.parallelism, 1);
    CHECK_THROWS_WITH(Topology::build(s, t::gpu(4), mesh), Catch::Contains("placement[0]: datacenter 'dc_a' gets 6 GPUs (share 0.5 of cluster.count 12), not whole nodes of 4"));
    const auto s2 = t::scenario_for("nvlink_fat_tree", {}, t::par(12, 1), {{"dc_a", 1.0}}, SplitKind::data, 4, 2);
    const moesim::workload::DeviceMesh mesh2(s2.parallelism, 1);
    CHECK_THROWS_WITH(Topology::build(s2, t::gpu(4), mesh2), Catch::Contains("3 nodes do not fill whole leaf groups of 2 nodes"));
  }
  SECTION("missing link figures") {
    auto a = t::torus_chip();
    a.ici_link_bandwidth_bytes_per_s = 0.0;
    const auto s = t::scenario_for("torus_2d", {2, 2}, t::par(1, 4));
    const moesim::workload::DeviceMesh mesh(s.parallelism, 1);
    CHECK_THROWS_WITH(Topology::build(s, a, mesh), Catch::Contains("has no ICI link bandwidth for a torus"));
    auto g = t::gpu(4);
    g.nic_bandwidth_bytes_per_s = 0.0;
    const auto sg = t::scenario_for("nvlink_fat_tree", {}, t::par(4, 1));
    const moesim::workload::DeviceMesh gmesh(sg.parallelism, 1);
    CHECK_THROWS_WITH(Topology::build(sg, g, gmesh), Catch::Contains("lacks NVLink or NIC bandwidth"));
  }
}

TEST_CASE("system::Topology: torus coordinates round-trip through chip_at", "[system][topology]") {
  for (const auto& dims : {std::vector<int>{4, 4}, std::vector<int>{8, 2}, std::vector<int>{4, 3, 2}}) {
    const t::Fixture f = t::torus(dims);
    INFO("dims " << dims.size());
    std::set<std::vector<int>> seen;
    for (int c = 0; c < f.topo.chips(); ++c) {
      const auto co = f.topo.coords(c);
      REQUIRE(co.size() == dims.size());
      for (std::size_t d = 0; d < dims.size(); ++d) {
        CHECK(co[d] >= 0);
        CHECK(co[d] < dims[d]);
      }
      CHECK(f.topo.chip_at(0, co) == c);
      seen.insert(co);
    }
    CHECK(seen.size() == static_cast<std::size_t>(f.topo.chips()));  // a bijection
  }
  SECTION("dimension 0 varies fastest") {
    const t::Fixture f = t::torus({4, 3, 2});
    CHECK(f.topo.coords(1) == std::vector<int>{1, 0, 0});
    CHECK(f.topo.coords(4) == std::vector<int>{0, 1, 0});
    CHECK(f.topo.coords(12) == std::vector<int>{0, 0, 1});
    CHECK(f.topo.coords(23) == std::vector<int>{3, 2, 1});
  }
  SECTION("in a second site, coordinates are local") {
    const t::Fixture f(t::scenario_for("torus_2d", {2, 4}, t::par(4, 2), {{"dc_a", 0.5}, {"dc_b", 0.5}}), t::torus_chip());
    CHECK(f.topo.sites()[1].dims == std::vector<int>{2, 2});
    CHECK(f.topo.coords(4) == std::vector<int>{0, 0});
    CHECK(f.topo.coords(7) == std::vector<int>{1, 1});
    CHECK(f.topo.chip_at(1, {1, 0}) == 5);
  }
}

TEST_CASE("system::Topology: fat-tree node and GPU indices, link figures", "[system][topology]") {
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(4, 4), {{"dc_a", 0.5}, {"dc_b", 0.5}}, SplitKind::data, 4, 16),
                     t::gpu(4));
  REQUIRE(f.topo.sites().size() == 2);
  for (const auto& site : f.topo.sites()) {
    CHECK(site.kind == SiteKind::nvlink_fat_tree);
    CHECK(site.gpus_per_node == 4);
    CHECK(site.nodes() == 2);
    CHECK(site.nodes_per_leaf == 2);  // min(16, nodes)
  }
  for (int c = 0; c < 16; ++c) {
    CHECK(f.topo.node_of(c) == (c % 8) / 4);
    CHECK(f.topo.gpu_of(c) == c % 4);
  }
  CHECK(f.topo.nvlink_bandwidth_bytes_per_s == 4e11);
  CHECK(f.topo.nic_bandwidth_bytes_per_s == 5e10);
  CHECK(f.topo.nic_latency_s == 2e-6);
  CHECK(f.topo.wan_bandwidth_bytes_per_s == 1.25e10);
  CHECK(f.topo.wan_latency_s == 0.01);
  SECTION("collectives get the NVLink line rate times the accelerator's NVLink efficiency") {
    auto a = t::gpu(4);
    a.nvlink_efficiency = 0.82;
    const Topology o = Topology::build(f.scenario, a, f.mesh);
    CHECK(o.nvlink_bandwidth_bytes_per_s == Approx(0.82 * 4e11));
    CHECK(o.nic_bandwidth_bytes_per_s == 5e10);  // the NIC keeps its figure
  }
  SECTION("scenario link overrides replace the NIC figures on a fat-tree and the ICI figures on a torus") {
    auto s = f.scenario;
    s.cluster.topology.link_bandwidth_bytes_per_s = 2.5e10;
    s.cluster.topology.link_latency_s = 5e-6;
    const Topology o = Topology::build(s, f.accel, f.mesh);
    CHECK(o.nic_bandwidth_bytes_per_s == 2.5e10);
    CHECK(o.nic_latency_s == 5e-6);
    CHECK(o.nvlink_bandwidth_bytes_per_s == 4e11);
    auto ts = t::scenario_for("torus_2d", {2, 2}, t::par(1, 4));
    ts.cluster.topology.link_bandwidth_bytes_per_s = 2.5e10;
    const moesim::workload::DeviceMesh mesh(ts.parallelism, 1);
    const Topology to = Topology::build(ts, t::torus_chip(), mesh);
    CHECK(to.ici_bandwidth_bytes_per_s == 2.5e10);
    CHECK(to.ici_latency_s == 1e-6);  // no latency override: the accelerator's
  }
}
