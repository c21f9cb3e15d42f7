// SPDX-License-Identifier: Apache-2.0
// The SimGrid platform built from a Topology: routes between chips have the expected link classes and
// counts (torus: dimension-ordered ICI hops; GPU node: NVLink in, NIC + fabric between nodes), the WAN
// joins site borders, hosts carry the power states, and power_states() applies the host-overhead
// convention. Platforms are built in forked children (see platform_test_support.hpp).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "platform_test_support.hpp"

using moesim::platform::Platform;
using moesim::platform::power_states;
using moesim::scenario::SplitKind;
using nlohmann::json;
namespace t = moesim::system::test;
namespace pt = moesim::platform::test;
namespace sg4 = simgrid::s4u;

namespace {

/** Hops between two chips of one torus site under shortest-direction routing in every dimension. */
int torus_hops(const moesim::system::Topology& topo, int a, int b) {
  const auto& dims = topo.sites()[static_cast<std::size_t>(topo.site_of(a))].dims;
  const auto ca = topo.coords(a), cb = topo.coords(b);
  int hops = 0;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    const int up = ((cb[d] - ca[d]) % dims[d] + dims[d]) % dims[d];
    hops += std::min(up, dims[d] - up);
  }
  return hops;
}

std::vector<std::string> strings(const json& j) { return j.get<std::vector<std::string>>(); }

/** "a:b:c, d:e:f" -> {a, b, c, d, e, f} */
std::vector<double> watts(std::string s) {
  std::replace(s.begin(), s.end(), ',', ':');
  std::vector<double> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ':');) out.push_back(std::strtod(part.c_str(), nullptr));
  return out;
}

t::Fixture two_gpu_nodes(int nodes_per_leaf) {
  return t::Fixture(t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, nodes_per_leaf),
                    t::gpu(4));
}

}  // namespace

TEST_CASE("platform::Platform: torus routes are shortest-path ICI hops", "[platform][torus]") {
  for (const auto& dims : {std::vector<int>{4, 4}, std::vector<int>{2, 3, 4}}) {
    const t::Fixture f = t::torus(dims);
    INFO("torus of " << f.topo.chips() << " chips");
    const json routes = pt::in_child([&] {
      auto p = pt::build(f);
      json all = json::array();
      for (int a = 0; a < f.topo.chips(); ++a)
        for (int b = 0; b < f.topo.chips(); ++b)
          if (a != b) all.push_back({{"a", a}, {"b", b}, {"route", pt::route(p->endpoint(a), p->endpoint(b))}});
      return all;
    });
    REQUIRE(routes.size() == static_cast<std::size_t>(f.topo.chips() * (f.topo.chips() - 1)));
    for (const json& r : routes) {
      const int a = r["a"], b = r["b"];
      INFO("route " << a << " -> " << b);
      const auto classes = strings(r["route"]["classes"]);
      CHECK(static_cast<int>(classes.size()) == torus_hops(f.topo, a, b));
      for (const auto& c : classes) CHECK(c == "ici");
      for (double bw : r["route"]["bandwidths"].get<std::vector<double>>()) CHECK(bw == f.topo.ici_bandwidth_bytes_per_s);
      CHECK(r["route"]["latency_s"].get<double>() == Approx(torus_hops(f.topo, a, b) * f.topo.ici_latency_s));
    }
  }
  SECTION("a 2-chip ring: the two directions use different directed links") {
    const t::Fixture f = t::torus({2, 1});
    const json r = pt::in_child([&] {
      auto p = pt::build(f);
      return json{pt::route(p->endpoint(0), p->endpoint(1)), pt::route(p->endpoint(1), p->endpoint(0))};
    });
    REQUIRE(r[0]["links"].size() == 1);
    REQUIRE(r[1]["links"].size() == 1);
    CHECK(r[0]["links"][0] != r[1]["links"][0]);  // split-duplex: UP one way, DOWN the other
  }
}

TEST_CASE("platform::Platform: torus sites with several dimensions of size 1 build", "[platform][torus]") {
  // Regression: SimGrid 3.32 names torus links "<zone>_link_from_<a>_to_<b>", so a chip with two
  // size-1 dimensions got two links "from_0_to_0" and SimGrid aborted. A 2-chip site of a 3D torus
  // (dims 1 x 1 x 2) and a 1-chip site (1 x 1) used to crash.
  const t::Fixture f(t::scenario_for("torus_3d", {2, 2, 2}, t::par(4, 2), {{"dc_a", 0.25}, {"dc_b", 0.75}}), t::torus_chip());
  REQUIRE(f.topo.sites()[0].dims == std::vector<int>{1, 1, 2});
  const json r = pt::in_child([&] {
    auto p = pt::build(f);
    return json{pt::route(p->endpoint(0), p->endpoint(1)), pt::route(p->endpoint(1), p->endpoint(0))};
  });
  CHECK(strings(r[0]["classes"]) == std::vector<std::string>{"ici"});
  CHECK(strings(r[1]["classes"]) == std::vector<std::string>{"ici"});
  CHECK(r[0]["links"][0] != r[1]["links"][0]);
  const t::Fixture one(t::scenario_for("torus_2d", {2, 1}, t::par(2, 1), {{"dc_a", 0.5}, {"dc_b", 0.5}}), t::torus_chip());
  REQUIRE(one.topo.sites()[0].dims == std::vector<int>{1, 1});
  CHECK_NOTHROW(pt::in_child([&] {
    pt::build(one);
    return json();
  }));
}

TEST_CASE("platform::Platform: GPU nodes route through NVLink inside and NIC + fabric between", "[platform][gpu]") {
  // 2 nodes x 4 GPUs. nodes_per_leaf 1: two leaves joined by a spine; nodes_per_leaf 2: one switch.
  for (int npl : {1, 2}) {
    const t::Fixture f = two_gpu_nodes(npl);
    INFO("nodes_per_leaf " << npl);
    const json r = pt::in_child([&] {
      auto p = pt::build(f);
      json out = json::object();
      out["intra"] = pt::route(p->endpoint(0), p->endpoint(3));
      out["inter"] = pt::route(p->endpoint(1), p->endpoint(6));
      out["back"] = pt::route(p->endpoint(6), p->endpoint(1));
      json counts = json::object();
      for (const auto& [c, n] : p->link_counts()) counts[moesim::system::to_string(c)] = n;
      out["counts"] = counts;
      return out;
    });
    // Inside a node (NVSwitch): the source's NVLink port out, the destination's in.
    CHECK(strings(r["intra"]["classes"]) == std::vector<std::string>{"nvlink", "nvlink"});
    CHECK(strings(r["intra"]["links"]) == std::vector<std::string>{"nvlink_chip0_UP", "nvlink_chip3_DOWN"});
    CHECK(r["intra"]["latency_s"].get<double>() == Approx(2 * f.topo.nvlink_latency_s));
    // Between nodes: the source GPU's NIC, the fabric cables (node-leaf, [leaf-spine, spine-leaf,] leaf-node),
    // the destination GPU's NIC.
    const int fabric = npl == 1 ? 4 : 2;
    for (const char* key : {"inter", "back"}) {
      INFO(key);
      const auto classes = strings(r[key]["classes"]);
      REQUIRE(classes.size() == static_cast<std::size_t>(2 + fabric));
      CHECK(classes.front() == "nic");
      CHECK(classes.back() == "nic");
      for (std::size_t i = 1; i + 1 < classes.size(); ++i) CHECK(classes[i] == "fabric");
      CHECK(r[key]["latency_s"].get<double>() == Approx((2 + fabric) * f.topo.nic_latency_s));
    }
    CHECK(r["inter"]["links"].front() == "nic_chip1_UP");
    CHECK(r["inter"]["links"].back() == "nic_chip6_DOWN");
    CHECK(r["back"]["links"].front() == "nic_chip6_UP");
    CHECK(r["counts"]["nvlink"] == 8);
    CHECK(r["counts"]["nic"] == 8);
    // Bandwidths: each GPU's NIC (5e10 B/s); the node's cable to its leaf aggregates its 4 rails
    // (4 x 5e10); leaf-spine cables aggregate the leaf's uplinks (1 node x 4 GPUs / oversubscription 1).
    const auto bws = r["inter"]["bandwidths"].get<std::vector<double>>();
    CHECK(bws.front() == 5e10);
    CHECK(bws.back() == 5e10);
    for (std::size_t i = 1; i + 1 < bws.size(); ++i) CHECK(bws[i] == 2e11);
  }
  SECTION("oversubscribed leaves: the leaf-spine cables carry uplinks = nodes_per_leaf x GPUs / oversubscription NICs") {
    auto s = two_gpu_nodes(1).scenario;
    s.cluster.topology.oversubscription = 2.0;
    const t::Fixture f(s, t::gpu(4));
    const json r = pt::in_child([&] {
      auto p = pt::build(f);
      return pt::route(p->endpoint(0), p->endpoint(4));
    });
    CHECK(r["bandwidths"].get<std::vector<double>>() == std::vector<double>{5e10, 2e11, 1e11, 1e11, 2e11, 5e10});
  }
}

TEST_CASE("platform::Platform: the WAN joins site borders", "[platform][wan]") {
  auto s = t::scenario_for("torus_2d", {2, 2}, t::par(4, 1), {{"dc_a", 0.25}, {"dc_b", 0.25}, {"dc_c", 0.5}});
  s.wan.bandwidth_bytes_per_s = 1.25e10;
  s.wan.latency_s = 0.03;
  const t::Fixture f(s, t::torus_chip());
  REQUIRE(f.topo.sites().size() == 3);
  const json r = pt::in_child([&] {
    auto p = pt::build(f);
    json out = json::object();
    out["b0b1"] = pt::route(p->border(0), p->border(1));
    out["b2b0"] = pt::route(p->border(2), p->border(0));
    out["endpoint_is_border"] = p->endpoint(f.topo.chips() + 2) == p->border(2);
    out["endpoint_is_chip"] = p->endpoint(3) == p->chip(3);  // a torus chip is its own endpoint
    out["wan_links"] = p->link_counts().at(moesim::system::LinkClass::wan);
    return out;
  });
  for (const char* key : {"b0b1", "b2b0"}) {
    INFO(key);
    CHECK(strings(r[key]["classes"]) == std::vector<std::string>{"wan"});
    CHECK(r[key]["bandwidths"][0].get<double>() == 1.25e10);
    CHECK(r[key]["latency_s"].get<double>() == Approx(0.03));
  }
  CHECK(r["b0b1"]["links"][0] == "wan_0_1_UP");
  CHECK(r["b2b0"]["links"][0] == "wan_0_2_DOWN");
  CHECK(r["endpoint_is_border"] == true);
  CHECK(r["endpoint_is_chip"] == true);
  CHECK(r["wan_links"] == 3);  // a full mesh of 3 sites

  SECTION("several sites without a WAN bandwidth is an error") {
    auto no_wan = s;
    no_wan.wan.bandwidth_bytes_per_s = 0.0;
    const t::Fixture g(no_wan, t::torus_chip());
    CHECK_THROWS_WITH(pt::in_child([&] {
                        pt::build(g);
                        return json();
                      }),
                      Catch::Contains("needs a WAN bandwidth"));
  }
}

TEST_CASE("platform::Platform: chip hosts carry the power states and the chip speed", "[platform][power]") {
  for (const auto& accel : {t::torus_chip(), t::gpu(4)}) {
    INFO(accel.name);
    const bool torus = accel.kind == moesim::catalog::AcceleratorKind::tpu;
    const t::Fixture f(torus ? t::scenario_for("torus_2d", {2, 2}, t::par(1, 4))
                             : t::scenario_for("nvlink_fat_tree", {}, t::par(1, 8), {{"dc_a", 1.0}}, SplitKind::data, 4, 1),
                       accel);
    const json r = pt::in_child([&] {
      auto p = pt::build(f, 3);
      json out = json::object();
      json chips = json::array();
      for (auto* h : p->chips())
        chips.push_back({{"watts", h->get_property("wattage_per_state")}, {"dc", h->get_property("datacenter")}, {"speed", h->get_speed()},
                         {"pstates", h->get_pstate_count()}});
      out["chips"] = chips;
      out["border"] = p->border(0)->get_property("wattage_per_state");
      // A GPU's traffic leaves from its port, in its node's zone; its chip host has no route, so the parallel tasks
      // of collectives and of compute never share a host (and a constraint) in the max-min system. A torus chip
      // is its own endpoint.
      json ports = json::array();
      for (int c = 0; c < f.topo.chips(); ++c) {
        simgrid::s4u::Host* port = p->endpoint(c);
        ports.push_back({{"name", port->get_name()}, {"watts", port->get_property("wattage_per_state")},
                         {"zone", port->get_englobing_zone()->get_name()}, {"chip_zone", p->chip(c)->get_englobing_zone()->get_name()}});
      }
      out["ports"] = ports;
      json pacers = json::array();
      for (auto* h : p->pacers()) pacers.push_back(h->get_property("wattage_per_state"));
      out["pacers"] = pacers;
      out["speed"] = p->chip_speed_flops_per_s();
      return out;
    });
    const auto ps = power_states(accel);
    REQUIRE(r["chips"].size() == static_cast<std::size_t>(f.topo.chips()));
    for (const json& c : r["chips"]) {
      // Two pstates of the same speed. No job (kIdlePstate): idle, active (a compute phase that achieves nothing),
      // full (the measured maximum). A job running (kJobPstate, the engine's steps): active when nothing computes.
      // The engine sets a compute phase's power through the load it puts on the chip.
      CHECK(watts(c["watts"]) == std::vector<double>{ps.idle_w, ps.active_w, ps.full_w, ps.active_w, ps.active_w, ps.full_w});
      CHECK(c["pstates"] == 2);
      CHECK(moesim::platform::kIdlePstate == 0);
      CHECK(moesim::platform::kJobPstate == 1);
      CHECK(c["dc"] == "dc_a");
      CHECK(c["speed"].get<double>() == accel.peak_matmul_flops_per_s.at("bf16"));
    }
    REQUIRE(r["ports"].size() == static_cast<std::size_t>(f.topo.chips()));
    for (std::size_t c = 0; c < r["ports"].size(); ++c) {
      const json& port = r["ports"][c];
      if (torus) {
        CHECK(port["name"] == "chip" + std::to_string(c));
        CHECK(port["zone"] == port["chip_zone"]);
        CHECK(port["zone"] != "chips");
        continue;
      }
      CHECK(port["name"] == "port" + std::to_string(c));
      CHECK(watts(port["watts"]) == std::vector<double>{0.0, 0.0});
      CHECK(port["chip_zone"] == "chips");
      CHECK(port["zone"] != "chips");
    }
    // Borders and pacers are bookkeeping hosts: they draw nothing.
    CHECK(watts(r["border"]) == std::vector<double>{0.0, 0.0});
    CHECK(r["pacers"].size() == 3);
    for (const json& w : r["pacers"]) CHECK(watts(w) == std::vector<double>{0.0, 0.0});
  }
}

TEST_CASE("platform::PowerStates: the power curve with the host overhead, and the load that draws it", "[platform][power]") {
  auto a = t::gpu(4);  // chip convention: active 150, full 700 W + 50 W host overhead
  a.flop_utilisation_at_full_w = 0.8;
  a.memory_bound_w = 480;
  a.hbm_utilisation_at_memory_bound_w = 0.9;
  const auto p = power_states(a);
  SECTION("the curve carries the host overhead and keeps its end points") {
    CHECK(p.compute_w(0.0, 0.0) == 200.0);
    CHECK(p.compute_w(0.8, 0.0) == Approx(750.0));
    CHECK(p.compute_w(0.0, 0.9) == Approx(530.0));
    CHECK(p.compute_w(0.4, 0.45) == Approx(200.0 + 550.0 * 0.5 + 330.0 * 0.5));
    CHECK(p.compute_w(1.0, 1.0) == Approx(750.0));
    CHECK(p.compute_w(-0.5, -0.5) == 200.0);
  }
  SECTION("host_energy at the load draws the curve: active + load x (full - active)") {
    for (int i = 0; i <= 20; ++i) {
      const double u = i / 20.0, load = p.load_for(u, 0.3);
      CHECK(load >= 0.0);
      CHECK(load <= 1.0);
      CHECK(p.active_w + load * (p.full_w - p.active_w) == Approx(p.compute_w(u, 0.3)));
    }
    CHECK(p.load_for(0.0, 0.0) == 0.0);
    CHECK(p.load_for(0.8, 0.0) == 1.0);
    CHECK(p.load_for_power(10000.0) == 1.0);
  }
  SECTION("a flat curve (no measured rise) puts no load") {
    auto flat = a;
    flat.active_w = flat.full_w = flat.memory_bound_w = 400;
    const auto f = power_states(flat);
    CHECK(f.compute_w(0.7, 0.2) == 450.0);
    CHECK(f.load_for(0.7, 0.2) == 0.0);
  }
  SECTION("utilisation anchors outside (0, 1] are an error naming the accelerator") {
    auto bad = a;
    bad.flop_utilisation_at_full_w = 0.0;
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("fixture_gpu") && Catch::Contains("(0, 1]"));
    bad = a;
    bad.hbm_utilisation_at_memory_bound_w = 1.5;
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("(0, 1]"));
  }
}

TEST_CASE("platform::power_states: host overhead only for chip-convention figures", "[platform][power]") {
  auto a = t::gpu(4);  // chip convention: 100 / 150 / 700 W + 50 W host overhead
  SECTION("chip convention adds the overhead to every state") {
    const auto p = power_states(a);
    CHECK(p.idle_w == 150.0);
    CHECK(p.active_w == 200.0);
    CHECK(p.full_w == 750.0);
    CHECK(p.host_overhead_w == 50.0);
    CHECK_THAT(p.convention, Catch::Contains("chip figures") && Catch::Contains("host overhead 50 W"));
  }
  SECTION("system convention already includes the host share") {
    a.power_convention = moesim::catalog::PowerConvention::system;
    const auto p = power_states(a);
    CHECK(p.idle_w == 100.0);
    CHECK(p.active_w == 150.0);
    CHECK(p.full_w == 700.0);
    CHECK(p.host_overhead_w == 0.0);
    CHECK_THAT(p.convention, Catch::Contains("system figures"));
  }
  SECTION("states out of order are an error naming the accelerator and the rule") {
    auto bad = a;
    bad.idle_w = 200;  // idle > active
    CHECK_THROWS_AS(power_states(bad), moesim::Error);
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("fixture_gpu") && Catch::Contains("0 <= idle <= active <= memory-bound <= full"));
    bad = a;
    bad.active_w = 800;  // active > full
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("0 <= idle <= active <= memory-bound <= full"));
    bad = a;
    bad.memory_bound_w = 120;  // memory-bound below active: the curve would fall with HBM traffic
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("memory-bound"));
    bad = a;
    bad.full_w = 0;
    bad.active_w = 0;
    bad.idle_w = 0;
    bad.host_overhead_w = 0;  // full must be > 0
    CHECK_THROWS_WITH(power_states(bad), Catch::Contains("full > 0"));
  }
}

TEST_CASE("platform::drop_selective_update: ptask_L07's three models get one new max-min system", "[platform][solver]") {
  SECTION("under ptask_L07, before any host") {
    const json r = pt::in_child([] {
      pt::start_engine();
      sg4::create_full_zone("world");  // SimGrid creates the models with the first zone
      simgrid::kernel::lmm::System* before = moesim::platform::ptask_maxmin_system();
      simgrid::kernel::lmm::System* after = moesim::platform::drop_selective_update();
      return json{{"replaced", after != before}, {"shared", moesim::platform::ptask_maxmin_system() == after}};
    });
    CHECK(r.at("replaced").get<bool>());
    CHECK(r.at("shared").get<bool>());
  }
  SECTION("a platform built on the new system runs a parallel task at its link's rate") {
    const json r = pt::in_child([] {
      const auto p = pt::build(t::torus({4, 4}));
      sg4::Host* a = p->endpoint(0);
      sg4::Host* b = p->endpoint(1);
      const json route = pt::route(a, b);
      const double bytes = 1e9;
      sg4::Actor::create("driver", p->pacers().front(), [&] {
        sg4::Exec::init()->set_hosts({a, b})->set_flops_amounts({0.0, 0.0})->set_bytes_amounts({0.0, bytes, 0.0, 0.0})->wait();
      });
      sg4::Engine::get_instance()->run();
      return json{{"end_s", sg4::Engine::get_clock()},
                  {"expected_s", route.at("latency_s").get<double>() + bytes / route.at("bandwidths").at(0).get<double>()},
                  {"hops", route.at("links").size()}};
    });
    CHECK(r.at("hops").get<std::size_t>() == 1);
    CHECK(r.at("end_s").get<double>() == Approx(r.at("expected_s").get<double>()).epsilon(1e-12));
  }
  SECTION("SimGrid's default models (a CPU and a network system apart) are an error naming ptask_L07") {
    CHECK_THROWS_WITH(pt::in_child([] {
                        pt::start_engine(true);
                        sg4::create_full_zone("world");
                        moesim::platform::drop_selective_update();
                        return json{};
                      }),
                      Catch::Contains("ptask_L07"));
  }
}
