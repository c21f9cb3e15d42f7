// SPDX-License-Identifier: Apache-2.0
// The Simulator on hand-built step graphs, each simulation in its own process (run_isolated):
// compute time and host_energy joules, collective time from bytes / bandwidth (+ latency), the WAN
// (latency + bytes / bandwidth, not the TCP-window bound), hierarchical GPU rounds, memoisation, and the
// critical-path breakdown. Expected values are computed by hand from the fixture figures:
//   torus chip: 1e11 B/s per ICI link and direction, system-convention power 100 / 150 / 400 W;
//   GPU: NVLink 4e11 B/s, NIC 5e10 B/s, 1 / 2 us latency, chip power 100 / 150 / 700 W + 50 W host.

#include <catch2/catch.hpp>

#include <cmath>
#include <utility>

#include "engine_test_support.hpp"

using moesim::scenario::SplitKind;
using moesim::workload::CollectiveOp;
using nlohmann::json;
namespace t = moesim::system::test;
namespace et = moesim::engine::test;

namespace {

/** The background task holds 1e-9 of a chip (engine.cpp kBackgroundLoad), so times carry a relative
 *  error of that order. */
constexpr double kRel = 1e-7;

t::Fixture torus_no_latency(std::vector<int> dims) {
  int n = 1;
  for (int d : dims) n *= d;
  auto a = t::torus_chip();
  a.ici_latency_s = 0.0;
  return t::Fixture(t::scenario_for("torus_2d", dims, t::par(1, n)), a);
}

}  // namespace

TEST_CASE("engine::Simulator: a compute phase takes its time and draws full power - idle chips draw active", "[engine][energy]") {
  // Both ways of counting the compute joules: moesim's replica of host_energy (the default) and the plugin alone.
  moesim::engine::EngineOptions opt;
  opt.own_compute_energy = GENERATE(true, false);
  INFO("own_compute_energy " << opt.own_compute_energy);
  const t::Fixture f = torus_no_latency({2, 2});
  SECTION("two of four chips compute for 0.5 s") {
    const json r = et::simulate(f, [] {
      et::StepBuilder b;
      const auto c = b.compute({0, 1}, {0.5, 0.5}, "compute.test", {b.start()});
      return b.finish({c});
    }, 1, opt)[0];
    CHECK(r["duration_s"].get<double>() == Approx(0.5).epsilon(kRel));
    // 2 chips x 0.5 s x 400 W (full) + 2 chips x 0.5 s x 150 W (active: the job runs, they wait).
    REQUIRE(r["site_energy_j"].size() == 1);
    CHECK(r["site_energy_j"][0].get<double>() == Approx(2 * 0.5 * 400 + 2 * 0.5 * 150).epsilon(kRel));
    CHECK(r["busy_s"]["compute.test"].get<double>() == Approx(0.5).epsilon(kRel));
  }
  SECTION("imbalance: the slowest chip sets the time, the others fall back to active power") {
    const json r = et::simulate(f, [] {
      et::StepBuilder b;
      const auto c = b.compute({0, 1, 2}, {0.5, 0.25, 0.1}, "compute.test", {b.start()});
      return b.finish({c});
    }, 1, opt)[0];
    CHECK(r["duration_s"].get<double>() == Approx(0.5).epsilon(kRel));
    const double want = 0.5 * 400                  // chip 0
                        + 0.25 * 400 + 0.25 * 150  // chip 1
                        + 0.1 * 400 + 0.4 * 150    // chip 2
                        + 0.5 * 150;               // chip 3
    CHECK(r["site_energy_j"][0].get<double>() == Approx(want).epsilon(kRel));
  }
  SECTION("chip convention: the host overhead is drawn in every state") {
    const t::Fixture g(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, 1), t::gpu(4));
    const json r = et::simulate(g, [] {
      et::StepBuilder b;
      const auto c = b.compute({0}, {2.0}, "compute.test", {b.start()});
      return b.finish({c});
    }, 1, opt)[0];
    // 1 GPU x 2 s x (700 + 50) W + 7 GPUs x 2 s x (150 + 50) W.
    CHECK(r["site_energy_j"][0].get<double>() == Approx(2.0 * 750 + 7 * 2.0 * 200).epsilon(kRel));
  }
}

TEST_CASE("engine::Simulator: a compute phase draws the power curve at its achieved utilisation", "[engine][energy][power]") {
  moesim::engine::EngineOptions opt;
  opt.own_compute_energy = GENERATE(true, false);
  INFO("own_compute_energy " << opt.own_compute_energy);
  // Fixture curve (system convention, no host overhead): active 150 W, full 400 W reached at 80 % of the
  // matrix peak, memory-bound 250 W at 50 % of the HBM bandwidth. P = 150 + min(250, 250 u_f / 0.8 + 100 u_m / 0.5).
  // The energy plugin integrates the curve exactly (the chips' load sets it; PowerStates::load_for).
  auto a = t::torus_chip();
  a.ici_latency_s = 0.0;
  a.flop_utilisation_at_full_w = 0.8;
  a.memory_bound_w = 250;
  a.hbm_utilisation_at_memory_bound_w = 0.5;
  const t::Fixture f(t::scenario_for("torus_2d", {2, 2}, t::par(1, 4)), a);
  // Two of the four chips compute for 0.5 s at the given utilisations; the other two wait at active power.
  auto energy = [&](double u_flop, double u_hbm) {
    const json r = et::simulate(f, [u_flop, u_hbm] {
      et::StepBuilder b;
      const auto c = b.compute({0, 1}, {0.5, 0.5}, "compute.test", {b.start()}, "compute", u_flop, u_hbm);
      return b.finish({c});
    }, 1, opt)[0];
    CHECK(r["duration_s"].get<double>() == Approx(0.5).epsilon(kRel));
    return std::make_pair(r["site_energy_j"][0].get<double>(), r["trace"][0]["power_w"].get<double>());
  };
  auto want = [](double chip_w) { return 2 * 0.5 * chip_w + 2 * 0.5 * 150; };
  SECTION("matrix units at half their full-power utilisation: halfway between active and full") {
    const auto [e, p] = energy(0.4, 0.0);
    CHECK(p == Approx(275.0));
    CHECK(e == Approx(want(275.0)).epsilon(kRel));
  }
  SECTION("HBM only: the memory-bound line") {
    CHECK(energy(0.0, 0.25).first == Approx(want(200.0)).epsilon(kRel));
    CHECK(energy(0.0, 0.5).first == Approx(want(250.0)).epsilon(kRel));
  }
  SECTION("matrix and HBM work add; the curve stops at full power") {
    CHECK(energy(0.4, 0.25).first == Approx(want(325.0)).epsilon(kRel));
    CHECK(energy(0.8, 0.0).first == Approx(want(400.0)).epsilon(kRel));
    CHECK(energy(1.0, 1.0).first == Approx(want(400.0)).epsilon(kRel));
  }
  SECTION("nothing achieved: active power, the curve's low end") {
    CHECK(energy(0.0, 0.0).first == Approx(want(150.0)).epsilon(kRel));
  }
  SECTION("a phase at low achieved utilisation draws less than one at high") {
    const double low = energy(0.2, 0.05).first, high = energy(0.6, 0.05).first;
    CHECK(low < high);
    CHECK(high - low == Approx(2 * 0.5 * 250 * 0.4 / 0.8).epsilon(1e-6));  // 2 chips x 0.5 s x 125 W
  }
  SECTION("anywhere on the curve, not only at round values") {
    const double exact_w = 150 + 250 * 0.401 / 0.8 + 100 * 0.013 / 0.5;  // 278.0125 W
    const auto [e, p] = energy(0.401, 0.013);
    CHECK(p == Approx(exact_w));
    CHECK(e == Approx(want(exact_w)).epsilon(kRel));
  }
  SECTION("imbalance: a chip busy part of the phase draws the curve while busy, active power after") {
    const json r = et::simulate(f, [] {
      et::StepBuilder b;
      const auto c = b.compute({0, 1}, {0.5, 0.2}, "compute.test", {b.start()}, "compute", 0.4, 0.0);
      return b.finish({c});
    }, 1, opt)[0];
    CHECK(r["duration_s"].get<double>() == Approx(0.5).epsilon(kRel));
    const double expect = 0.5 * 275 + (0.2 * 275 + 0.3 * 150) + 2 * 0.5 * 150;
    CHECK(r["site_energy_j"][0].get<double>() == Approx(expect).epsilon(kRel));
  }
}

TEST_CASE("engine::Simulator: a collective over one torus link takes bytes / bandwidth (+ latency)", "[engine][network]") {
  // 2-chip torus: each chip sends b = B/2 of an all-to-all to the other over its own directed link.
  const double B = 2e9, bw = 1e11;
  SECTION("all-to-all, no latency") {
    const t::Fixture f = torus_no_latency({2, 1});
    const json r = et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.collective(t::work(CollectiveOp::all_to_all, {{0, 1}}, B), "comm.all_to_all", {b.start()});
      return b.finish({c});
    })[0];
    CHECK(r["duration_s"].get<double>() == Approx(B / 2.0 / bw).epsilon(kRel));
    CHECK(r["busy_s"]["comm.all_to_all"].get<double>() == Approx(B / 2.0 / bw).epsilon(kRel));
    // Both chips communicate: active power for the whole step.
    CHECK(r["site_energy_j"][0].get<double>() == Approx(2 * 150 * B / 2.0 / bw).epsilon(kRel));
    // Network footprint: 2 flows x B/2 x 1 ICI link.
    CHECK(r["site_link_bytes"][0][0].get<double>() == Approx(B));
  }
  SECTION("send/recv with a per-hop latency") {
    const t::Fixture f = t::torus({2, 1});  // 1 us per hop
    const json r = et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.collective(t::work(CollectiveOp::send_recv, {{0, 1}}, B), "comm.p2p", {b.start()});
      return b.finish({c});
    })[0];
    CHECK(r["duration_s"].get<double>() == Approx(1e-6 + B / bw).epsilon(kRel));
  }
}

TEST_CASE("engine::Simulator: a WAN transfer takes latency + bytes / bandwidth", "[engine][wan]") {
  // Regression guard: SimGrid's ptask_L07 bounds a task's rate by the TCP window, gamma / (2 x latency)
  // with gamma = 4 MiB by default: over a 30 ms WAN that is ~70 MB/s, so 1 GB would take ~14 s instead
  // of 0.11 s. The engine lifts the bound (network/TCP-gamma).
  auto s = t::scenario_for("torus_2d", {2, 1}, t::par(2, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}});
  s.wan.bandwidth_bytes_per_s = 1.25e10;  // 100 Gbit/s
  s.wan.latency_s = 0.03;
  const t::Fixture f(s, t::torus_chip());
  REQUIRE(f.topo.site_of(0) != f.topo.site_of(1));
  const double B = 1e9;
  const json r = et::simulate(f, [&] {
    et::StepBuilder b;
    const auto c = b.collective(t::work(CollectiveOp::send_recv, {{0, 1}}, B), "comm.p2p", {b.start()});
    return b.finish({c});
  })[0];
  CHECK(r["duration_s"].get<double>() == Approx(0.03 + B / 1.25e10).epsilon(kRel));
  CHECK(r["wan_busy_s"].get<double>() == Approx(r["duration_s"].get<double>()).epsilon(kRel));
  // WAN bytes are counted on the sending site.
  CHECK(r["site_link_bytes"][0][4].get<double>() == Approx(B));
  CHECK(r["site_link_bytes"][1][4].get<double>() == 0.0);
}

TEST_CASE("engine::Simulator: WAN-busy time counts a cross-site round from its start, latency wait included", "[engine][wan]") {
  // One chip per site: the all-reduce is one ring round between the sites' borders, alpha = 2 one-way WAN latencies
  // (reduce-scatter and all-gather steps). SimGrid charges one as the flows' route latency; the engine waits out the
  // other before the bytes flow. With a near-infinite WAN bandwidth the round is all latency: it is in flight, and the
  // WAN busy, for its whole alpha.
  auto s = t::scenario_for("torus_2d", {2, 1}, t::par(2, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}});
  s.wan.bandwidth_bytes_per_s = 1e18;
  const double L = 0.03;
  s.wan.latency_s = L;
  const t::Fixture f(s, t::torus_chip());
  REQUIRE(f.topo.site_of(0) != f.topo.site_of(1));
  const auto w = t::work(CollectiveOp::all_reduce, {{0, 1}}, 1e6);
  double wan_alpha_s = 0.0;
  int wan_rounds = 0;
  for (const auto& round : f.plan(w).rounds) {
    bool wan = false;
    for (const auto& batch : round.batches)
      for (const auto& fl : batch.flows) wan = wan || fl.src >= f.topo.chips() || fl.dst >= f.topo.chips();
    if (!wan) continue;
    ++wan_rounds;
    wan_alpha_s += round.alpha_s;
  }
  REQUIRE(wan_rounds == 1);
  REQUIRE(wan_alpha_s == Approx(2 * L));
  moesim::engine::EngineOptions opt;
  opt.own_network_rounds = GENERATE(true, false);
  INFO("own_network_rounds " << opt.own_network_rounds);
  SECTION("after compute: the WAN is busy for the round's alpha, not its route latency alone") {
    const json r = et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.compute({0, 1}, {0.5, 0.5}, "compute.test", {b.start()});
      const auto ar = b.collective(w, "comm.all_reduce", {c});
      return b.finish({ar});
    }, 1, opt)[0];
    const double step_s = r["duration_s"].get<double>();
    const double wan_s = r["wan_busy_s"].get<double>();
    CHECK(step_s == Approx(0.5 + wan_alpha_s).epsilon(kRel));
    CHECK(wan_s == Approx(wan_alpha_s).epsilon(kRel));
    CHECK(wan_s >= wan_rounds * 2 * L * (1 - kRel));
    CHECK(wan_s <= step_s);
  }
  SECTION("twice in a row: the replayed one counts its waits too") {
    const json r = et::simulate(f, [&] {
      et::StepBuilder b;
      const auto ar1 = b.collective(w, "comm.all_reduce", {b.start()}, false, "first");
      const auto ar2 = b.collective(w, "comm.all_reduce", {ar1}, false, "second");
      return b.finish({ar2});
    }, 1, opt)[0];
    CHECK(r["collectives_memoized"] == 1);
    CHECK(r["duration_s"].get<double>() == Approx(2 * wan_alpha_s).epsilon(kRel));
    CHECK(r["wan_busy_s"].get<double>() == Approx(2 * wan_alpha_s).epsilon(kRel));
  }
}

TEST_CASE("engine::Simulator: hierarchical all-to-all rounds run at NVLink, then NIC bandwidth per GPU", "[engine][gpu]") {
  // 2 nodes x 4 GPUs, one leaf per node. Per GPU: round 0 sends 3 NVLink flows of 2 x B/8 (its traffic to
  // GPU j of both nodes) through its own NVLink port; round 1 sends one rail flow of 4 x B/8 (node's
  // traffic to its peer GPU) through its own NIC. Each rail has its own NIC and fabric path, so the 4
  // rails of a node run in parallel.
  const t::Fixture f(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, 1), t::gpu(4));
  const double B = 8e8;
  const json r = et::simulate(f, [&] {
    et::StepBuilder b;
    const auto c = b.collective(t::work(CollectiveOp::all_to_all, {t::iota(8)}, B), "comm.all_to_all", {b.start()});
    return b.finish({c});
  })[0];
  const double nvlink_round = 3 * (2 * B / 8) / 4e11 + 2 * 1e-6;         // NVLink out + in: 2 x 1 us
  const double rail_round = (4 * B / 8) / 5e10 + (2 + 4) * 2e-6;         // 2 NIC + 4 fabric cables, 2 us each
  CHECK(r["duration_s"].get<double>() == Approx(nvlink_round + rail_round).epsilon(kRel));
  CHECK(r["algorithms"]["comm.all_to_all"] == "hierarchical all-to-all (NVLink + rails)");
}

TEST_CASE("engine::Simulator: leaf uplinks limit inter-leaf rails only when oversubscribed", "[engine][gpu]") {
  // 4 nodes x 4 GPUs, 2 nodes per leaf (2 leaves). Rail round: every GPU sends one flow of V = 4 x B/16
  // to its peer on each of the 3 other nodes. Per GPU NIC and per node-leaf cable (4 rails, 4 NICs
  // wide): 3V at NIC speed. Leaf uplinks carry 2 nodes x 2 remote nodes x 4 rails x V = 16V over
  // uplinks = 2 nodes x 4 GPUs / oversubscription NICs: 8 NICs (non-blocking, 2V per NIC: not the
  // bottleneck) or 2 NICs at oversubscription 4 (8V per NIC: the bottleneck).
  const double B = 1.6e9, V = 4 * B / 16, nic = 5e10;
  const double nvlink_round = 3 * (4 * B / 16) / 4e11 + 2 * 1e-6;
  const double rail_latency = (2 + 4) * 2e-6;
  for (double oversubscription : {1.0, 4.0}) {
    INFO("oversubscription " << oversubscription);
    auto s = t::scenario_for("nvlink_fat_tree", {}, t::par(1, 16), {{"dc_a", 1.0}}, SplitKind::data, 4, 2);
    s.cluster.topology.oversubscription = oversubscription;
    const t::Fixture f(s, t::gpu(4));
    const json r = et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.collective(t::work(CollectiveOp::all_to_all, {t::iota(16)}, B), "comm.all_to_all", {b.start()});
      return b.finish({c});
    })[0];
    const double rail_round = (oversubscription == 1.0 ? 3 * V : 8 * V) / nic + rail_latency;
    CHECK(r["duration_s"].get<double>() == Approx(nvlink_round + rail_round).epsilon(kRel));
  }
}

TEST_CASE("engine::Simulator: an isolated collective simulated once is replayed", "[engine][memo]") {
  const t::Fixture f = t::torus({4, 4});
  const auto w = t::work(CollectiveOp::all_to_all, {t::iota(16)}, 1.6e8);
  auto two_in_a_row = [&](bool second_overlaps, const std::string& second_kind) {
    return [=] {
      et::StepBuilder b;
      const auto c1 = b.collective(w, "comm.all_to_all", {b.start()}, false, "first");
      const auto c2 = b.collective(w, second_kind, {c1}, second_overlaps, "second");
      return b.finish({c2});
    };
  };
  SECTION("the same traffic twice: the second is a timed replay of the first") {
    const json steps = et::simulate(f, two_in_a_row(false, "comm.all_to_all"), 2);
    const json& r = steps[0];
    CHECK(r["collectives_detailed"] == 1);
    CHECK(r["collectives_memoized"] == 1);
    REQUIRE(r["trace"].size() == 2);
    const json &first = r["trace"][0], &second = r["trace"][1];
    CHECK(first["label"] == "first");
    CHECK(first["memoized"] == false);
    CHECK(second["memoized"] == true);
    const double d1 = first["end_s"].get<double>() - first["start_s"].get<double>();
    const double d2 = second["end_s"].get<double>() - second["start_s"].get<double>();
    CHECK(d1 > 0.0);
    CHECK(d2 == Approx(d1).epsilon(1e-9));
    CHECK(r["duration_s"].get<double>() == Approx(2 * d1).epsilon(1e-9));
    // The memo outlives the step: the next step replays both.
    CHECK(steps[1]["collectives_detailed"] == 0);
    CHECK(steps[1]["collectives_memoized"] == 2);
    CHECK(steps[1]["duration_s"].get<double>() == Approx(r["duration_s"].get<double>()).epsilon(1e-9));
  }
  SECTION("a collective that overlaps gradient reduction is never replayed") {
    const json r = et::simulate(f, two_in_a_row(true, "comm.all_to_all"))[0];
    CHECK(r["collectives_detailed"] == 2);
    CHECK(r["collectives_memoized"] == 0);
    CHECK(r["trace"][1]["memoized"] == false);
  }
  auto two_sends = [=] {
    et::StepBuilder b;
    const auto c1 = b.collective(w, "comm.pipeline_p2p", {b.start()}, false, "first");
    const auto c2 = b.collective(w, "comm.pipeline_p2p", {c1}, false, "second");
    return b.finish({c2});
  };
  SECTION("a pipeline send that runs alone on its links is replayed") {
    const json r = et::simulate(f, two_sends)[0];
    CHECK(r["collectives_detailed"] == 1);
    CHECK(r["collectives_memoized"] == 1);
    CHECK(r["reruns"] == 0);
    moesim::engine::EngineOptions opt;
    opt.replay_pipeline_p2p = false;
    const json full = et::simulate(f, two_sends, 1, opt)[0];
    CHECK(full["collectives_memoized"] == 0);
    CHECK(r["duration_s"].get<double>() == Approx(full["duration_s"].get<double>()).epsilon(1e-12));
  }
  SECTION("a send replays only a send's memo") {
    const json r = et::simulate(f, two_in_a_row(false, "comm.pipeline_p2p"))[0];
    CHECK(r["collectives_memoized"] == 0);
  }
  SECTION("a pipeline send that shared its links while it ran is not memoised") {
    // first (send) and other (all-to-all, same chips) at once, then second (the same send): no memo to replay. (Rounds
    // timed alone off: either collective's first round would be, and the step would run again when the other starts.)
    moesim::engine::EngineOptions simgrid_rounds;
    simgrid_rounds.rounds_alone = false;
    const json r = et::simulate(f, [=] {
      et::StepBuilder b;
      const auto c1 = b.collective(w, "comm.pipeline_p2p", {b.start()}, false, "first");
      const auto c3 = b.collective(w, "comm.all_to_all", {b.start()}, false, "other");
      const auto c2 = b.collective(w, "comm.pipeline_p2p", {c1, c3}, false, "second");
      return b.finish({c2});
    }, 1, simgrid_rounds)[0];
    CHECK(r["collectives_detailed"] == 3);
    CHECK(r["collectives_memoized"] == 0);
    CHECK(r["reruns"] == 0);
  }
  SECTION("a replayed send whose links other traffic takes while it runs: the step is simulated again in full") {
    // first (send), then second (the same send, replayed) and, 10 us later, an all-to-all over the same links.
    auto graph = [=] {
      et::StepBuilder b;
      const auto c1 = b.collective(w, "comm.pipeline_p2p", {b.start()}, false, "first");
      const auto c2 = b.collective(w, "comm.pipeline_p2p", {c1}, false, "second");
      const auto x = b.compute({0}, {1e-5}, "compute.x", {c1}, "x");
      const auto c3 = b.collective(w, "comm.all_to_all", {x}, false, "other");
      return b.finish({c2, c3});
    };
    const json r = et::simulate(f, graph)[0];
    moesim::engine::EngineOptions opt;
    opt.replay_pipeline_p2p = false;
    opt.rounds_alone = false;
    const json full = et::simulate(f, graph, 1, opt)[0];
    CHECK(r["reruns"] == 1);
    CHECK(full["reruns"] == 0);
    // The second run's figures: the two sends and the all-to-all share the links, as without replays.
    CHECK(r["collectives_detailed"] == full["collectives_detailed"]);
    CHECK(r["collectives_memoized"] == full["collectives_memoized"]);
    CHECK(r["duration_s"].get<double>() == Approx(full["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["site_energy_j"][0].get<double>() == Approx(full["site_energy_j"][0].get<double>()).epsilon(1e-12));
    for (const auto& p : r["trace"]) CHECK(p["memoized"] == false);
  }
  SECTION("memoisation can be switched off") {
    moesim::engine::EngineOptions opt;
    opt.memoize = false;
    const json r = et::simulate(f, two_in_a_row(false, "comm.all_to_all"), 1, opt)[0];
    CHECK(r["collectives_detailed"] == 2);
    CHECK(r["collectives_memoized"] == 0);
  }
}

TEST_CASE("engine::Simulator: the critical-path breakdown sums to the step time", "[engine][critical-path]") {
  // start -> { A: 1.0 s compute on chip 0 | C: all-to-all among chips 2, 3 } -> B: 0.2 s compute on chip 0 -> end
  const t::Fixture f = torus_no_latency({2, 2});
  auto graph = [](double collective_bytes) {
    return [=] {
      et::StepBuilder b;
      const auto a = b.compute({0}, {1.0}, "compute.x", {b.start()}, "A");
      const auto c = b.collective(t::work(CollectiveOp::all_to_all, {{2, 3}}, collective_bytes), "comm.all_to_all", {b.start()});
      const auto bb = b.compute({0}, {0.2}, "compute.y", {a, c}, "B");
      return b.finish({bb});
    };
  };
  SECTION("compute on the critical path, the collective hidden behind it") {
    // C: each chip sends 3e10 / 2 bytes at 1e11 B/s = 0.15 s < 1.0 s.
    const json r = et::simulate(f, graph(3e10))[0];
    CHECK(r["duration_s"].get<double>() == Approx(1.2).epsilon(kRel));
    CHECK(et::sum_values(r["critical_path_s"]) == Approx(r["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["critical_path_s"]["compute.x"].get<double>() == Approx(1.0).epsilon(kRel));
    CHECK(r["critical_path_s"]["compute.y"].get<double>() == Approx(0.2).epsilon(kRel));
    CHECK(r["critical_path_s"].value("comm.all_to_all", 0.0) == 0.0);
    CHECK(r["busy_s"]["comm.all_to_all"].get<double>() == Approx(0.15).epsilon(kRel));
    for (const json& p : r["trace"]) CHECK(p["critical"] == (p["label"] != "collective"));
  }
  SECTION("the collective on the critical path when it is longer") {
    // C: 6e11 / 2 bytes at 1e11 B/s = 3 s.
    const json r = et::simulate(f, graph(6e11))[0];
    CHECK(r["duration_s"].get<double>() == Approx(3.2).epsilon(kRel));
    CHECK(et::sum_values(r["critical_path_s"]) == Approx(r["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["critical_path_s"]["comm.all_to_all"].get<double>() == Approx(3.0).epsilon(kRel));
    CHECK(r["critical_path_s"]["compute.y"].get<double>() == Approx(0.2).epsilon(kRel));
    CHECK(r["critical_path_s"].value("compute.x", 0.0) == 0.0);
  }
}

TEST_CASE("engine::Simulator: a round pays its latency before its bytes (alpha-beta)", "[engine][network][latency]") {
  // 4-ring all-reduce of B per chip, 1 us per hop: each half is 2 hop steps (alpha = 2 us; SimGrid charges 1 us
  // of it on the neighbour flows itself) and (m-1)/m x B/2 per link and direction (beta).
  const t::Fixture f = t::torus({4, 1});
  const double B = 4e8, bw = 1e11;
  const json r = et::simulate(f, [&] {
    et::StepBuilder b;
    const auto c = b.collective(t::work(CollectiveOp::all_reduce, {t::iota(4)}, B), "comm.grad_all_reduce", {b.start()});
    return b.finish({c});
  })[0];
  const double half = 2e-6 + 0.75 * B / 2.0 / bw;
  CHECK(r["duration_s"].get<double>() == Approx(2 * half).epsilon(kRel));
}

TEST_CASE("engine::Simulator: the TPU ICI efficiency and launch cost reproduce the two measured AllGathers they come from",
          "[engine][network][latency]") {
  // jax-ml/scaling-book sharding.md, Pop Quiz 2, TPU v5e (4.5e10 B/s links, 1 us per hop): an AllGather over a 4-chip
  // axis without wraparound (here a 4-chip segment of an 8-ring: a line) measured 680 us with 8.4 MB shards and about
  // 8 us with 32 kB shards. The shipped TPU profiles take ici_efficiency 0.83 and collective_overhead_s 2.4 us from
  // these two; this checks that the model, run through SimGrid, gives both back.
  auto chip = t::torus_chip();
  chip.ici_link_bandwidth_bytes_per_s = 4.5e10;
  chip.ici_latency_s = 1e-6;
  chip.ici_efficiency = 0.83;
  chip.collective_overhead_s = 2.4e-6;
  const t::Fixture f(t::scenario_for("torus_2d", {8, 1}, t::par(2, 1, 4)), chip);
  auto gather_s = [&](double shard_bytes) {
    return et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.collective(t::work(CollectiveOp::all_gather, {t::iota(4)}, 4 * shard_bytes), "comm.all_gather", {b.start()});
      return b.finish({c});
    })[0]["duration_s"].get<double>();
  };
  const double big = gather_s(512.0 * 8192 * 2), small = gather_s(64.0 * 256 * 2);
  INFO("8.4 MB shards: " << big * 1e6 << " us, 32 kB shards: " << small * 1e6 << " us");
  CHECK(big == Approx(680e-6).epsilon(0.01));
  CHECK(small == Approx(8e-6).epsilon(0.02));
  // At the line rate (efficiency 1) the large gather is the book's theory plus latency, 20 % short of the measurement.
  chip.ici_efficiency = 1.0;
  const t::Fixture line(t::scenario_for("torus_2d", {8, 1}, t::par(2, 1, 4)), chip);
  const double ideal = et::simulate(line, [&] {
    et::StepBuilder b;
    const auto c = b.collective(t::work(CollectiveOp::all_gather, {t::iota(4)}, 4 * 512.0 * 8192 * 2), "comm.all_gather", {b.start()});
    return b.finish({c});
  })[0]["duration_s"].get<double>();
  CHECK(ideal == Approx(5.4e-6 + 3 * 512.0 * 8192 * 2 / 4.5e10).epsilon(1e-3));
}

TEST_CASE("engine::Simulator: the torus all-to-all grows ~9x from 16 to 2048 partitions (GShard section 5)", "[engine][network]") {
  // Lepikhin et al. 2020 section 5: at a fixed 8 MB per partition, AllToAll time grows about 9x from 16 to 2048
  // partitions on the TPU v3 2D torus (shared/reference/published-runs.md). Two partitions (cores) per chip:
  // 8 chips as a [4, 2] slice and 1024 chips as the [32, 32] pod; 1e11 B/s links, 1 us per hop.
  const double per_partition = 8e6;
  auto a2a_time = [&](std::vector<int> dims) {
    const t::Fixture f = t::torus(dims, 2);
    const int parts = f.mesh.devices();
    return et::simulate(f, [&] {
      et::StepBuilder b;
      const auto c = b.collective(t::work(CollectiveOp::all_to_all, {t::iota(parts)}, per_partition), "comm.all_to_all", {b.start()});
      return b.finish({c});
    })[0]["duration_s"].get<double>();
  };
  const double small = a2a_time({4, 2}), large = a2a_time({32, 32});
  INFO("16 partitions: " << small << " s, 2048 partitions: " << large << " s");
  CHECK(large / small == Approx(9.0).epsilon(0.25));
}

TEST_CASE("engine::Simulator: a round alone on its links is timed from their loads, as SimGrid would run it",
          "[engine][rounds-alone]") {
  const t::Fixture f = t::torus({4, 4});
  // A dimension-ordered all-to-all on a 4 x 4 torus: each round's rings use disjoint links.
  const auto w = t::work(CollectiveOp::all_to_all, {t::iota(16)}, 1.6e8);
  moesim::engine::EngineOptions simgrid;
  simgrid.rounds_alone = false;
  simgrid.own_network_rounds = false;  // the rounds in SimGrid's own solver
  SECTION("alone: the same step, each round one timed delay") {
    auto one = [=] {
      et::StepBuilder b;
      const auto c = b.collective(w, "comm.all_to_all", {b.start()}, false, "a2a");
      return b.finish({c});
    };
    const json r = et::simulate(f, one)[0], ref = et::simulate(f, one, 1, simgrid)[0];
    CHECK(r["rounds_alone"].get<int>() > 0);
    CHECK(ref["rounds_alone"] == 0);
    CHECK(r["reruns"] == 0);
    CHECK(r["duration_s"].get<double>() == Approx(ref["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["site_energy_j"][0].get<double>() == Approx(ref["site_energy_j"][0].get<double>()).epsilon(1e-12));
  }
  // The all-to-all starts; 10 us later an all-reduce over the same chips, sharing its links.
  const auto ar = t::work(CollectiveOp::all_reduce, {t::iota(16)}, 1.6e8);
  auto two = [=](double after_s) {
    return [=] {
      et::StepBuilder b;
      const auto c = b.collective(w, "comm.all_to_all", {b.start()}, false, "a2a");
      const auto x = b.compute({0}, {after_s}, "compute.x", {b.start()}, "x");
      const auto a = b.collective(ar, "comm.grad_all_reduce", {x}, true, "all-reduce");
      return b.finish({c, a});
    };
  };
  SECTION("lookahead: a round that another collective could join is not timed alone, and nothing runs twice") {
    // 10 us: the all-reduce can start during the all-to-all's first round. 10 s: it starts after the all-to-all.
    const json r = et::simulate(f, two(1e-5))[0], ref = et::simulate(f, two(1e-5), 1, simgrid)[0];
    const json late = et::simulate(f, two(10.0))[0];
    CHECK(r["reruns"] == 0);
    CHECK(late["reruns"] == 0);
    CHECK(late["rounds_alone"].get<int>() > r["rounds_alone"].get<int>());
    CHECK(r["duration_s"].get<double>() == Approx(ref["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["site_energy_j"][0].get<double>() == Approx(ref["site_energy_j"][0].get<double>()).epsilon(1e-12));
  }
  SECTION("without lookahead, another collective takes its links while a round runs: the step is simulated again") {
    moesim::engine::EngineOptions no_lookahead;
    no_lookahead.rounds_lookahead = false;
    const json r = et::simulate(f, two(1e-5), 1, no_lookahead)[0], ref = et::simulate(f, two(1e-5), 1, simgrid)[0];
    CHECK(r["reruns"] == 1);
    CHECK(r["duration_s"].get<double>() == Approx(ref["duration_s"].get<double>()).epsilon(1e-12));
    CHECK(r["busy_s"]["comm.all_to_all"].get<double>() == Approx(ref["busy_s"]["comm.all_to_all"].get<double>()).epsilon(1e-12));
    CHECK(r["site_energy_j"][0].get<double>() == Approx(ref["site_energy_j"][0].get<double>()).epsilon(1e-12));
  }
}
