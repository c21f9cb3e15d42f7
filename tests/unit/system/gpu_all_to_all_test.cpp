// SPDX-License-Identifier: Apache-2.0
// All-to-all on GPU clusters (hierarchical NVLink + rails, "2DH" in DeepSpeed-MoE/Tutel), non-uniform
// (routed) volumes, all-to-all across datacenters, and send/recv. Expected volumes are recomputed here
// from the definition traffic(i -> j) = B x send[i] x recv[j] / sum(recv) (uniform: B / members).

#include <catch2/catch.hpp>

#include <numeric>

#include "moesim/core/error.hpp"
#include "system_test_support.hpp"

using moesim::scenario::SplitKind;
using moesim::workload::CollectiveOp;
namespace t = moesim::system::test;

namespace {

/** 2 nodes x 4 GPUs (one leaf per node), one expert-parallel group of all 8 GPUs. */
t::Fixture two_nodes() {
  return t::Fixture(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, 1), t::gpu(4));
}

}  // namespace

TEST_CASE("system::plan_collective: hierarchical all-to-all moves every byte once per hop it needs", "[system][gpu]") {
  const t::Fixture f = two_nodes();
  const double B = 8e6;
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(8)}, B));
  CHECK(plan.algorithm == "hierarchical all-to-all (NVLink + rails)");
  REQUIRE(plan.rounds.size() == 2);
  CHECK(plan.rounds[0].name == "all-to-all intra-node (NVLink)");
  CHECK(plan.rounds[1].name == "all-to-all inter-node (rails)");

  const auto nv = t::loads(plan.rounds[0]), rail = t::loads(plan.rounds[1]);
  for (const auto& [pair, bytes] : nv) {
    CHECK(f.topo.node_of(pair.first) == f.topo.node_of(pair.second));
    CHECK(f.topo.gpu_of(pair.first) != f.topo.gpu_of(pair.second));
  }
  for (const auto& [pair, bytes] : rail) {
    CHECK(f.topo.gpu_of(pair.first) == f.topo.gpu_of(pair.second));  // rails only connect same-index GPUs
    CHECK(f.topo.node_of(pair.first) != f.topo.node_of(pair.second));
  }
  // A byte from (node a, GPU i) to (node b, GPU j) crosses NVLink iff i != j and a rail iff a != b.
  // Uniform: B/8 per ordered pair. Pairs with i != j: 8 x 6 = 48 (both nodes), with a != b: 8 x 4 = 32,
  // with both: 8 x 3 = 24; every one of the 8 x 7 = 56 inter-GPU pairs is covered: 48 + 32 - 24 = 56.
  const double pair = B / 8.0;
  CHECK(t::total(nv) == Approx(48 * pair));
  CHECK(t::total(rail) == Approx(32 * pair));
  CHECK(t::total(nv) + t::total(rail) - 24 * pair == Approx(8 * 7 * pair));  // the total inter-GPU volume
  // Per flow: NVLink (a,i) -> (a,j) carries what i sends to GPU j of both nodes; a rail (a,j) -> (b,j)
  // what the 4 GPUs of node a send to (b,j).
  for (const auto& [p, bytes] : nv) CHECK(bytes == Approx(2 * pair));
  for (const auto& [p, bytes] : rail) CHECK(bytes == Approx(4 * pair));
  CHECK(nv.size() == 2u * 4u * 3u);
  CHECK(rail.size() == 4u * 2u);
  CHECK(plan.intra_chip_bytes == Approx(8 * pair));  // each GPU's share to itself
}

TEST_CASE("system::plan_collective: routed (non-uniform) all-to-all sends more to heavy receivers", "[system][gpu]") {
  const double B = 1e7;
  // Expert 5 is popular: it receives 5x the share of the others; GPU 0 sends twice the others.
  const std::vector<double> send{2, 1, 1, 1, 1, 1, 1, 1};
  const std::vector<double> recv{1, 1, 1, 1, 1, 5, 1, 1};
  const double recv_sum = std::accumulate(recv.begin(), recv.end(), 0.0);
  auto vol = [&](int i, int j) { return B * send[static_cast<std::size_t>(i)] * recv[static_cast<std::size_t>(j)] / recv_sum; };
  auto w = t::work(CollectiveOp::all_to_all, {t::iota(8)}, B);
  w.send_weight = {send};
  w.recv_weight = {recv};

  SECTION("hierarchical on GPU nodes: per-flow volumes follow the weights") {
    const t::Fixture f = two_nodes();
    const auto plan = f.plan(w);
    REQUIRE(plan.rounds.size() == 2);
    for (const auto& [p, bytes] : t::loads(plan.rounds[0])) {  // (a,i) -> (a,j): i's traffic to GPU j of every node
      const int i = p.first, j = f.topo.gpu_of(p.second);
      CHECK(bytes == Approx(vol(i, j) + vol(i, 4 + j)));
    }
    for (const auto& [p, bytes] : t::loads(plan.rounds[1])) {  // (a,j) -> (b,j): node a's traffic to (b,j)
      const int a = f.topo.node_of(p.first);
      double want = 0.0;
      for (int i = 4 * a; i < 4 * a + 4; ++i) want += vol(i, p.second);
      CHECK(bytes == Approx(want));
    }
    // The heavy receiver (GPU 5 = node 1, GPU 1) gets 5x what its rail peer GPU 4 gets from node 0.
    const auto rail = t::loads(plan.rounds[1]);
    CHECK(rail.at({1, 5}) == Approx(5.0 * rail.at({0, 4})));
  }
  SECTION("direct on a torus: each chip receives in proportion to its weight") {
    const t::Fixture f = t::torus({4, 2});
    const auto plan = f.plan(w);
    CHECK(plan.algorithm == "direct all-to-all");
    std::map<int, double> received;
    for (const auto& [p, bytes] : t::loads(plan)) {
      CHECK(bytes == Approx(vol(p.first, p.second)));
      received[p.second] += bytes;
    }
    const double senders = std::accumulate(send.begin(), send.end(), 0.0);
    for (const auto& [j, bytes] : received)
      CHECK(bytes == Approx(B * recv[static_cast<std::size_t>(j)] / recv_sum * (senders - send[static_cast<std::size_t>(j)])));
    CHECK(received.at(5) > 4.0 * received.at(4));
    double self = 0.0;
    for (int i = 0; i < 8; ++i) self += vol(i, i);
    CHECK(plan.intra_chip_bytes == Approx(self));
  }
  SECTION("a receiver weight sum of zero plans nothing") {
    auto z = w;
    z.recv_weight = {std::vector<double>(8, 0.0)};
    CHECK(two_nodes().plan(z).empty());
  }
}

TEST_CASE("system::plan_collective: all-to-all across datacenters crosses between the borders", "[system][cross-site]") {
  // 16 GPUs, expert-parallel over both sites: experts 0-7 in dc_a, 8-15 in dc_b.
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 16), {{"dc_a", 0.5}, {"dc_b", 0.5}}, SplitKind::expert, 4, 1),
                     t::gpu(4));
  const double B = 1.6e7;
  const auto plan = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(16)}, B));
  CHECK(plan.algorithm == "hierarchical cross-site all-to-all");
  const int b0 = f.topo.chips(), b1 = b0 + 1;
  const auto l = t::loads(plan);
  // 8 senders x 8 receivers x B/16 each way.
  CHECK(l.at({b0, b1}) == Approx(8 * 8 * B / 16.0));
  CHECK(l.at({b1, b0}) == Approx(8 * 8 * B / 16.0));
  // Inside each site the 8 members run the hierarchical algorithm on their own share (B/16 per pair).
  double intra_site = 0.0;
  for (const auto& [p, bytes] : l) {
    if (p.first >= f.topo.chips() || p.second >= f.topo.chips()) continue;
    CHECK(f.topo.site_of(p.first) == f.topo.site_of(p.second));
    if (f.topo.node_of(p.first) != f.topo.node_of(p.second)) intra_site += bytes;
  }
  CHECK(intra_site == Approx(2 /*sites*/ * 4 /*rails*/ * 2 /*directions*/ * 4 * B / 16.0));
  SECTION("uneven shares: the border flow is |site a| x |site b| x B / members") {
    const t::Fixture g(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 16), {{"dc_a", 0.25}, {"dc_b", 0.75}}, SplitKind::expert, 4, 1),
                       t::gpu(4));
    const auto lg = t::loads(g.plan(t::work(CollectiveOp::all_to_all, {t::iota(16)}, B)));
    CHECK(lg.at({b0, b1}) == Approx(4 * 12 * B / 16.0));
    CHECK(lg.at({b1, b0}) == Approx(12 * 4 * B / 16.0));
  }
}

TEST_CASE("system::plan_collective: send/recv", "[system][p2p]") {
  const double B = 5e6;
  SECTION("between the two devices of one chip: on-chip, no traffic") {
    const t::Fixture f = t::torus({2, 2}, 2);
    const auto plan = f.plan(t::work(CollectiveOp::send_recv, {{0, 1}}, B));
    CHECK(plan.empty());
    CHECK(plan.intra_chip_bytes == B);
  }
  SECTION("between chips: one end-to-end flow of B") {
    const t::Fixture f = t::torus({2, 2}, 2);
    const auto plan = f.plan(t::work(CollectiveOp::send_recv, {{0, 7}, {2, 4}}, B));
    const auto l = t::loads(plan);
    CHECK(l.size() == 2u);
    CHECK(l.at({0, 3}) == B);
    CHECK(l.at({1, 2}) == B);
  }
  SECTION("between datacenters: border to border") {
    const t::Fixture f(t::scenario_for("torus_2d", {2, 2}, t::par(1, 1, 1, 4), {{"dc_a", 0.5}, {"dc_b", 0.5}}, SplitKind::pipeline),
                       t::torus_chip());
    const auto plan = f.plan(t::work(CollectiveOp::send_recv, {{1, 2}}, B));
    REQUIRE(plan.rounds.size() == 1);
    CHECK(plan.rounds[0].name == "send/recv across datacenters");
    const auto l = t::loads(plan);
    CHECK(l.size() == 1u);
    CHECK(l.at({f.topo.chips(), f.topo.chips() + 1}) == B);
  }
  SECTION("groups must be pairs") {
    const t::Fixture f = t::torus({2, 2});
    CHECK_THROWS_WITH(f.plan(t::work(CollectiveOp::send_recv, {{0, 1, 2}}, B)),
                      Catch::Contains("send_recv groups must be (source, destination) pairs"));
  }
}

TEST_CASE("system::per_node_network_fraction: distinct remote nodes per token over remote copies, by hand", "[system][gpu]") {
  using moesim::system::per_node_network_fraction;
  using PerNode = moesim::workload::CollectiveWork::PerNode;
  SECTION("2 nodes, 4 experts (2 per node), top-2: brute force over the 6 expert pairs") {
    // A token on node 0: 5 of the 6 pairs touch node 1 ({0,1} does not); copies to node 1 per token: 2 x 1/2 = 1.
    int touch = 0, copies = 0;
    for (int a = 0; a < 4; ++a)
      for (int b = a + 1; b < 4; ++b) {
        touch += (a >= 2 || b >= 2) ? 1 : 0;
        copies += (a >= 2 ? 1 : 0) + (b >= 2 ? 1 : 0);
      }
    CHECK(per_node_network_fraction(PerNode{2, 4, 0}, 2) == Approx(static_cast<double>(touch) / copies).epsilon(1e-12));
    CHECK(per_node_network_fraction(PerNode{2, 4, 0}, 2) == Approx(5.0 / 6.0).epsilon(1e-12));
  }
  SECTION("DeepSeek-V3: 256 experts over 8 nodes, top-8; node-limited to 4") {
    double none = 1.0;
    for (int i = 0; i < 8; ++i) none *= (224.0 - i) / (256.0 - i);
    CHECK(per_node_network_fraction(PerNode{8, 256, 0}, 8) == Approx(7.0 * (1.0 - none) / 7.0).epsilon(1e-12));
    // At most 4 nodes, 3.5 of them remote on average, for 7 remote copies.
    CHECK(per_node_network_fraction(PerNode{8, 256, 4}, 8) == Approx(0.5).epsilon(1e-12));
    // A limit above the unlimited count changes nothing.
    CHECK(per_node_network_fraction(PerNode{8, 256, 8}, 8) == per_node_network_fraction(PerNode{8, 256, 0}, 8));
  }
  SECTION("per copy, or one node: 1") {
    CHECK(per_node_network_fraction(PerNode{0, 256, 0}, 8) == 1.0);
    CHECK(per_node_network_fraction(PerNode{8, 256, 0}, 1) == 1.0);
    CHECK(per_node_network_fraction(PerNode{1, 8, 0}, 2) == Approx(1.0).epsilon(1e-12));  // top-1: nothing to merge
  }
}

TEST_CASE("system::plan_collective: a per-node dispatch scales the rails, not NVLink", "[system][gpu]") {
  const t::Fixture f = two_nodes();
  const double B = 8e6;
  const auto plain = f.plan(t::work(CollectiveOp::all_to_all, {t::iota(8)}, B));
  auto w = t::work(CollectiveOp::all_to_all, {t::iota(8)}, B);
  w.per_node = {2, 8, 0};  // 8 experts over 2 nodes, top-2
  const auto deep = f.plan(w);
  const double fraction = moesim::system::per_node_network_fraction(w.per_node, 2);
  CHECK(fraction < 1.0);
  CHECK(deep.algorithm == "per-node all-to-all (rails once per node, NVLink forwarding)");
  // NCCL's hierarchical all-to-all: the NVLink step, then the network step. DeepEP forwards over NVLink as the network
  // delivers (DeepSeek-V3 §3.2.2: IB and NVLink fully overlapped): one round holding both, the rails scaled, paying
  // both steps' latencies once.
  REQUIRE(plain.rounds.size() == 2);
  REQUIRE(deep.rounds.size() == 1);
  CHECK(t::total(t::loads(deep.rounds[0])) ==
        Approx(t::total(t::loads(plain.rounds[0])) + fraction * t::total(t::loads(plain.rounds[1]))));
  CHECK(deep.rounds[0].alpha_s == Approx(plain.rounds[0].alpha_s + plain.rounds[1].alpha_s));
}
