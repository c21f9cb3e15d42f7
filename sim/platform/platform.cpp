// SPDX-License-Identifier: Apache-2.0
#include "moesim/platform/platform.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::platform {

using NetPoint = simgrid::kernel::routing::NetPoint;
using Direction = sg4::LinkInRoute::Direction;

double PowerStates::compute_w(double flop_utilisation, double hbm_utilisation) const {
  return curve.power_w(flop_utilisation, hbm_utilisation);
}

double PowerStates::load_for_power(double power_w) const {
  const double span = full_w - active_w;
  return span > 0.0 ? std::clamp((power_w - active_w) / span, 0.0, 1.0) : 0.0;
}

std::string PowerStates::wattage_per_state() const {
  return fmt::format("{}:{}:{},{}:{}:{}", idle_w, active_w, full_w, active_w, active_w, full_w);
}

PowerStates power_states(const catalog::AcceleratorSpec& accel) {
  PowerStates p;
  const bool chip = accel.power_convention == catalog::PowerConvention::chip;
  p.host_overhead_w = chip ? accel.host_overhead_w : 0.0;
  p.idle_w = accel.idle_w + p.host_overhead_w;
  p.active_w = accel.active_w + p.host_overhead_w;
  p.full_w = accel.full_w + p.host_overhead_w;
  p.memory_bound_w = (accel.memory_bound_w > 0.0 ? accel.memory_bound_w : accel.full_w) + p.host_overhead_w;
  p.curve = accel.power_curve().shifted(p.host_overhead_w);
  p.convention = chip ? fmt::format("chip figures idle {} / active {} / full {} W + host overhead {} W per chip", accel.idle_w,
                                    accel.active_w, accel.full_w, accel.host_overhead_w)
                      : fmt::format("system figures idle {} / active {} / full {} W per chip (host share included)", accel.idle_w,
                                    accel.active_w, accel.full_w);
  p.convention += fmt::format("; computing: active + span x FLOP utilisation / {}", accel.flop_utilisation_at_full_w);
  if (p.memory_bound_w != p.full_w)
    p.convention += fmt::format(" + (memory-bound {} W{} - active) x HBM utilisation / {}", p.memory_bound_w - p.host_overhead_w,
                                chip ? " + host overhead" : "", accel.hbm_utilisation_at_memory_bound_w);
  else
    p.convention += fmt::format(" + span x HBM utilisation / {}", accel.hbm_utilisation_at_memory_bound_w);
  p.convention += ", at most full";
  if (!(p.full_w > 0.0) || p.active_w > p.full_w || p.idle_w > p.active_w || p.memory_bound_w > p.full_w ||
      p.memory_bound_w < p.active_w)
    throw Error(fmt::format("accelerator '{}': power states must satisfy 0 <= idle <= active <= memory-bound <= full, full > 0 "
                            "(got {} / {} / {} / {} W)", accel.name, p.idle_w, p.active_w, p.memory_bound_w, p.full_w));
  if (!(p.curve.flop_utilisation_at_full_w > 0.0 && p.curve.flop_utilisation_at_full_w <= 1.0) ||
      !(p.curve.hbm_utilisation_at_memory_bound_w > 0.0 && p.curve.hbm_utilisation_at_memory_bound_w <= 1.0))
    throw Error(fmt::format("accelerator '{}': the power curve's utilisation anchors must lie in (0, 1] (got {} and {})", accel.name,
                            p.curve.flop_utilisation_at_full_w, p.curve.hbm_utilisation_at_memory_bound_w));
  return p;
}

system::LinkClass Platform::link_class(const sg4::Link* link) {
  const std::string& n = link->get_name();
  auto starts = [&](const char* p) { return n.rfind(p, 0) == 0; };
  if (starts("wan_")) return system::LinkClass::wan;
  if (starts("nvlink_")) return system::LinkClass::nvlink;
  if (starts("nic_")) return system::LinkClass::nic;
  if (n.find("_ici_") != std::string::npos) return system::LinkClass::ici;
  return system::LinkClass::fabric;  // SimGrid fat-tree cables ("link_from_...")
}

std::unique_ptr<Platform> Platform::build(const system::Topology& topo, const catalog::AcceleratorSpec& accel,
                                          const PowerStates& power, int pacers, bool selective_update) {
  auto p = std::make_unique<Platform>();
  // Host speed is only a unit: a compute phase of t seconds puts load x t x speed FLOPs on a chip and lasts t
  // (a pacer host times it), so that the chip draws the power curve's value (engine).
  p->chip_speed_ = accel.peak_matmul_flops_per_s.count("bf16") ? accel.peak_matmul_flops_per_s.at("bf16")
                                                               : accel.peak_matmul_flops_per_s.begin()->second;
  // Two pstates of the same speed, idle and running a job (kIdlePstate, kJobPstate); a compute phase's power is the
  // load it puts on the chip (PowerStates::load_for).
  const std::string watts = power.wattage_per_state();
  p->chips_.assign(static_cast<std::size_t>(topo.chips()), nullptr);
  p->ports_.assign(static_cast<std::size_t>(topo.chips()), nullptr);

  auto* root = sg4::create_full_zone("world");  // the first zone: SimGrid creates the models with it
  if (!selective_update) drop_selective_update();
  // A chip's host: it runs the compute phases and carries the power states. `zone` routes it (a torus position), or
  // nullptr: a GPU's host sits in a zone without routes and its traffic leaves from a port (make_port).
  auto* unrouted = sg4::create_empty_zone("chips");
  unrouted->set_parent(root);
  auto make_chip = [&](sg4::NetZone* zone, int global, const system::Site& site) {
    sg4::Host* h = (zone != nullptr ? zone : unrouted)
                       ->create_host(fmt::format("chip{}", global), std::vector<double>{p->chip_speed_, p->chip_speed_});
    h->set_property("wattage_per_state", watts);
    h->set_property("datacenter", site.datacenter);
    p->chips_[static_cast<std::size_t>(global)] = h;
    if (zone != nullptr) p->ports_[static_cast<std::size_t>(global)] = h;
    return h;
  };
  // A GPU is two hosts: its chip host, unrouted, and its port ("portN", in its node's zone), the endpoint of its
  // traffic, which draws no power. ptask_L07 (SimGrid 3.32 src/surf/ptask_L07.cpp) enters every host of a parallel
  // task into the max-min system through the host's CPU, with weight 0 where the task computes nothing: with one host
  // per GPU, a hierarchical all-to-all's rail batches (a hundred GPUs each) and the compute phases on those GPUs were
  // one connected set of constraints, which the selective update SimGrid hard-codes for ptasks walks at every start
  // and end (System::update_modified_cnst_set_rec, whose walk revisits a task's constraint list once per constraint).
  // Traffic puts no load on a CPU, so the split changes no rate, time or joule. The 1024-H100 bench case: 0.92x wall
  // time (medians of 5 paired runs). On a torus the split did not pay (the 4096-chip case, whose rings have at most
  // 48 hosts: 1.09x; 65,536 chips: +130 MB), so torus chips are their own endpoints.
  auto make_port = [&](sg4::NetZone* node, int global, const system::Site& site) {
    make_chip(nullptr, global, site);
    sg4::Host* port = node->create_host(fmt::format("port{}", global), p->pacer_speed_flops_per_s());
    port->set_property("wattage_per_state", "0:0");
    p->ports_[static_cast<std::size_t>(global)] = port;
    return port;
  };

  for (const system::Site& site : topo.sites()) {
    const std::string sn = fmt::format("site{}", site.index);
    if (site.kind == system::SiteKind::torus) {
      // Dimensions of size 1 carry no traffic, and SimGrid 3.32 names a torus link after its two ends
      // (TorusZone::create_torus_links), so two of them give one chip two links of the same name and
      // abort the run (e.g. a 1-chip site, or a 2-chip site of a 3D torus: dims 1 x 1 x 2). Dropping them
      // keeps every chip's linear id (a size-1 dimension multiplies it by 1), so routes are unchanged.
      std::vector<unsigned long> dims;
      for (int d : site.dims)
        if (d > 1) dims.push_back(static_cast<unsigned long>(d));
      if (dims.empty()) dims.push_back(1);
      sg4::ClusterCallbacks cb(
          [&, sn](sg4::NetZone* zone, const std::vector<unsigned long>&, unsigned long id) -> std::pair<NetPoint*, NetPoint*> {
            sg4::Host* h = make_chip(zone, site.chips[id], site);
            return {h->get_netpoint(), nullptr};
          });
      auto* z = sg4::create_torus_zone(sn + "_ici", root, dims, cb, topo.ici_bandwidth_bytes_per_s, topo.ici_latency_s,
                                       sg4::Link::SharingPolicy::SPLITDUPLEX);
      z->seal();
      p->link_counts_[system::LinkClass::ici] += static_cast<int>(site.chips.size() * site.dims.size());
    } else {
      const int g = site.gpus_per_node;
      const int nodes = site.nodes();
      sg4::ClusterCallbacks cb([&, sn, g](sg4::NetZone* zone, const std::vector<unsigned long>&,
                                          unsigned long id) -> std::pair<NetPoint*, NetPoint*> {
        auto* node = sg4::create_full_zone(fmt::format("{}_node{}", sn, id));
        node->set_parent(zone);
        NetPoint* gw = node->create_router(fmt::format("{}_node{}_gw", sn, id));
        std::vector<sg4::Host*> gpus;
        std::vector<sg4::Link*> nvlink, nic;
        for (int k = 0; k < g; ++k) {
          const int global = site.chips[id * static_cast<unsigned long>(g) + static_cast<unsigned long>(k)];
          gpus.push_back(make_port(node, global, site));
          nvlink.push_back(node->create_split_duplex_link(fmt::format("nvlink_chip{}", global), topo.nvlink_bandwidth_bytes_per_s)
                               ->set_latency(topo.nvlink_latency_s));
          nic.push_back(node->create_split_duplex_link(fmt::format("nic_chip{}", global), topo.nic_bandwidth_bytes_per_s)
                            ->set_latency(topo.nic_latency_s));
        }
        for (int a = 0; a < g; ++a) {
          // NVSwitch: GPU a -> GPU b crosses a's and b's NVLink ports; to other nodes, a's NIC (rail a).
          node->add_route(gpus[a]->get_netpoint(), gw, nullptr, nullptr, {sg4::LinkInRoute(nic[a], Direction::UP)}, true);
          for (int b = a + 1; b < g; ++b)
            node->add_route(gpus[a]->get_netpoint(), gpus[b]->get_netpoint(), nullptr, nullptr,
                            {sg4::LinkInRoute(nvlink[a], Direction::UP), sg4::LinkInRoute(nvlink[b], Direction::DOWN)}, true);
        }
        node->seal();
        return {node->get_netpoint(), gw};
      });
      const int npl = site.nodes_per_leaf;
      const int leaves = nodes / npl;
      const auto uplinks = static_cast<unsigned int>(std::max(1.0, std::round(npl * g / site.oversubscription)));
      // SimGrid's fat-tree routes per node (d-mod-k on the node's position), not per GPU: with g parallel
      // node-to-leaf cables, every GPU of a node takes the same cable to a given destination node, so the
      // g rails of a node would share one NIC's bandwidth (a 2-node all-to-all ran g times too slowly).
      // Each level's parallel cables are therefore one aggregate cable: node-leaf g x NIC (the node's
      // rails; each GPU is still held to its own NIC by nic_chipN), leaf-spine uplinks x NIC (the leaf's
      // uplinks after oversubscription), shared max-min fairly, as ECMP spreads flows over the cables.
      const double nic_bw = topo.nic_bandwidth_bytes_per_s;
      const std::vector<sg4::Link*> before = sg4::Engine::get_instance()->get_all_links();
      sg4::NetZone* z = nullptr;
      if (leaves > 1) {
        z = sg4::create_fatTree_zone(sn + "_fabric", root,
                                     sg4::FatTreeParams(2, {static_cast<unsigned>(npl), static_cast<unsigned>(leaves)}, {1, 1}, {1, 1}),
                                     cb, g * nic_bw, topo.nic_latency_s, sg4::Link::SharingPolicy::SPLITDUPLEX);
        p->link_counts_[system::LinkClass::fabric] += nodes * g + leaves * static_cast<int>(uplinks);
      } else {
        z = sg4::create_fatTree_zone(sn + "_fabric", root, sg4::FatTreeParams(1, {static_cast<unsigned>(nodes)}, {1}, {1}), cb,
                                     g * nic_bw, topo.nic_latency_s, sg4::Link::SharingPolicy::SPLITDUPLEX);
        p->link_counts_[system::LinkClass::fabric] += nodes * g;
      }
      if (leaves > 1) {
        // Cables named "link_from_<child>_<parent>_<n>" (SimGrid 3.32 FatTreeZone::add_link); compute
        // nodes are ids 0 .. nodes-1, so a cable whose child is a switch is a leaf-spine uplink.
        std::set<const sg4::Link*> old(before.begin(), before.end());
        for (sg4::Link* l : sg4::Engine::get_instance()->get_all_links()) {
          int child = -1, parent = -1, serial = -1;
          if (old.count(l) || std::sscanf(l->get_cname(), "link_from_%d_%d_%d", &child, &parent, &serial) != 3) continue;
          if (child >= nodes) l->set_bandwidth(uplinks * nic_bw);
        }
      }
      z->seal();
      p->link_counts_[system::LinkClass::nvlink] += nodes * g;
      p->link_counts_[system::LinkClass::nic] += nodes * g;
    }
  }

  // Site borders and the WAN between them.
  std::vector<sg4::NetZone*> edges;
  for (const system::Site& site : topo.sites()) {
    auto* edge = sg4::create_full_zone(fmt::format("site{}_edge", site.index));
    edge->set_parent(root);
    sg4::Host* b = edge->create_host(fmt::format("site{}_border", site.index), 1e9);
    b->set_property("wattage_per_state", "0:0");
    edge->seal();
    edges.push_back(edge);
    p->borders_.push_back(b);
  }
  const auto nsites = topo.sites().size();
  for (std::size_t a = 0; a < nsites; ++a)
    for (std::size_t b = a + 1; b < nsites; ++b) {
      if (!(topo.wan_bandwidth_bytes_per_s > 0))
        throw Error("a job across datacenters needs a WAN bandwidth (scenario wan.bandwidth_gbps)");
      sg4::Link* wan = root->create_split_duplex_link(fmt::format("wan_{}_{}", a, b), topo.wan_bandwidth_bytes_per_s)
                           ->set_latency(topo.wan_latency_s);
      root->add_route(edges[a]->get_netpoint(), edges[b]->get_netpoint(), p->borders_[a]->get_netpoint(),
                      p->borders_[b]->get_netpoint(), {sg4::LinkInRoute(wan, Direction::UP)}, true);
      p->link_counts_[system::LinkClass::wan] += 1;
    }

  // Pacers: zero-power hosts whose only job is to make an activity last a given time.
  auto* pz = sg4::create_full_zone("pacers");
  pz->set_parent(root);
  for (int i = 0; i < pacers; ++i) {
    sg4::Host* h = pz->create_host(fmt::format("pacer{}", i), p->pacer_speed_flops_per_s());
    h->set_property("wattage_per_state", "0:0");
    p->pacers_.push_back(h);
  }
  pz->seal();
  unrouted->seal();
  root->seal();
  for (std::size_t i = 0; i < p->chips_.size(); ++i)
    if (p->chips_[i] == nullptr || p->ports_[i] == nullptr) throw Error(fmt::format("internal error: chip {} was not placed on the platform", i));
  return p;
}

}  // namespace moesim::platform
