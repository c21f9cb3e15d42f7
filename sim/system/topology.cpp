// SPDX-License-Identifier: Apache-2.0
#include "moesim/system/topology.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::system {

std::string to_string(LinkClass c) {
  switch (c) {
    case LinkClass::ici: return "ici";
    case LinkClass::nvlink: return "nvlink";
    case LinkClass::nic: return "nic";
    case LinkClass::fabric: return "fabric";
    case LinkClass::wan: return "wan";
  }
  return "?";
}

namespace {

/** Near-square factorisation of n into `k` dimensions, smallest first. */
std::vector<int> factorise(int n, std::size_t k) {
  std::vector<int> dims;
  int rest = n;
  for (std::size_t left = k; left > 1; --left) {
    const double target = std::pow(static_cast<double>(rest), 1.0 / static_cast<double>(left));
    int best = 1;
    for (int d = 1; d <= rest; ++d)
      if (rest % d == 0 && std::fabs(d - target) < std::fabs(best - target)) best = d;
    dims.push_back(best);
    rest /= best;
  }
  dims.push_back(rest);
  std::sort(dims.begin(), dims.end());
  return dims;
}

}  // namespace

Topology Topology::build(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel,
                         const workload::DeviceMesh& mesh) {
  Topology t;
  t.devices_per_chip_ = mesh.devices_per_chip();

  // Which site each device goes to: whole units of the split dimension, by cumulative share.
  const int degree = s.split == scenario::SplitKind::data ? mesh.data()
                   : s.split == scenario::SplitKind::expert ? mesh.expert() : mesh.pipeline();
  std::vector<int> unit_site(static_cast<std::size_t>(degree), 0);
  double cum = 0.0;
  int unit = 0;
  for (std::size_t k = 0; k < s.placement.size(); ++k) {
    cum += s.placement[k].share;
    const int upto = k + 1 == s.placement.size() ? degree : static_cast<int>(std::llround(cum * degree));
    for (; unit < upto; ++unit) unit_site[static_cast<std::size_t>(unit)] = static_cast<int>(k);
  }
  const int chips = mesh.chips();
  t.site_of_.assign(static_cast<std::size_t>(chips), -1);
  for (int dev = 0; dev < mesh.devices(); ++dev) {
    const int u = s.split == scenario::SplitKind::data ? mesh.data_of(dev)
                : s.split == scenario::SplitKind::expert ? mesh.expert_of(dev) : mesh.stage_of(dev);
    const int site = unit_site[static_cast<std::size_t>(u)];
    int& cs = t.site_of_[static_cast<std::size_t>(mesh.chip_of(dev))];
    if (cs >= 0 && cs != site)
      throw Error(fmt::format("placement splits the {} devices of chip {} between datacenters '{}' and '{}'; "
                              "choose shares or a split dimension that keeps chips whole",
                              mesh.devices_per_chip(), mesh.chip_of(dev), s.placement[static_cast<std::size_t>(cs)].datacenter,
                              s.placement[static_cast<std::size_t>(site)].datacenter));
    cs = site;
  }

  finish(t, s, accel, fmt::format("share {{}} of {} {} units", degree, scenario::to_string(s.split)));
  return t;
}

Topology Topology::build_for_sites(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel, int devices_per_chip,
                                   const std::vector<int>& chip_site) {
  Topology t;
  t.devices_per_chip_ = devices_per_chip;
  t.site_of_ = chip_site;
  finish(t, s, accel, "share {} of the serving replicas");
  return t;
}

void Topology::finish(Topology& t, const scenario::Scenario& s, const catalog::AcceleratorSpec& accel,
                      const std::string& empty_site_reason) {
  const auto& topo = s.cluster.topology;
  const bool torus = topo.type == "torus_2d" || topo.type == "torus_3d";
  const int chips = static_cast<int>(t.site_of_.size());
  t.local_of_.assign(static_cast<std::size_t>(chips), 0);
  for (std::size_t k = 0; k < s.placement.size(); ++k) {
    Site site;
    site.index = static_cast<int>(k);
    site.datacenter = s.placement[k].datacenter;
    site.kind = torus ? SiteKind::torus : SiteKind::nvlink_fat_tree;
    for (int c = 0; c < chips; ++c)
      if (t.site_of_[static_cast<std::size_t>(c)] == site.index) {
        t.local_of_[static_cast<std::size_t>(c)] = static_cast<int>(site.chips.size());
        site.chips.push_back(c);
      }
    const int n = static_cast<int>(site.chips.size());
    if (n == 0)
      throw Error(fmt::format("datacenter '{}' received no chips ({})", site.datacenter,
                              fmt::format(fmt::runtime(empty_site_reason), s.placement[k].share)));
    if (torus) {
      int prod = 1;
      for (int d : topo.dims) prod *= d;
      site.dims = prod == n ? topo.dims : factorise(n, topo.type == "torus_3d" ? 3 : 2);
    } else {
      site.gpus_per_node = topo.gpus_per_node;
      if (n % site.gpus_per_node != 0)
        throw Error(fmt::format("placement[{}]: datacenter '{}' gets {} GPUs (share {:g} of cluster.count {}), not whole nodes of {} "
                                "(cluster.topology.gpus_per_node); give shares whose GPUs fill whole nodes",
                                k, site.datacenter, n, s.placement[k].share, chips, site.gpus_per_node));
      const int nodes = n / site.gpus_per_node;
      site.nodes_per_leaf = std::min(topo.nodes_per_leaf, nodes);
      if (nodes % site.nodes_per_leaf != 0)
        throw Error(fmt::format("datacenter '{}': {} nodes do not fill whole leaf groups of {} nodes "
                                "(cluster.topology.nodes_per_leaf)", site.datacenter, nodes, site.nodes_per_leaf));
      site.oversubscription = topo.oversubscription;
    }
    t.sites_.push_back(std::move(site));
  }

  const double bw_override = topo.link_bandwidth_bytes_per_s, lat_override = topo.link_latency_s;
  // What collectives get of an ICI link: the line rate (the accelerator's, or the scenario's override) times the
  // measured efficiency of TPU collectives (accelerator profile).
  t.ici_bandwidth_bytes_per_s = (bw_override > 0 ? bw_override : accel.ici_link_bandwidth_bytes_per_s) * accel.ici_efficiency;
  t.ici_latency_s = lat_override > 0 ? lat_override : accel.ici_latency_s;
  // What collectives get of NVLink: the line rate less the protocol's overhead (accelerator profile).
  t.nvlink_bandwidth_bytes_per_s = accel.nvlink_bandwidth_bytes_per_s * accel.nvlink_efficiency;
  t.nvlink_latency_s = accel.nvlink_latency_s;
  t.nic_bandwidth_bytes_per_s = (!torus && bw_override > 0) ? bw_override : accel.nic_bandwidth_bytes_per_s;
  t.nic_latency_s = (!torus && lat_override > 0) ? lat_override : accel.nic_latency_s;
  t.wan_bandwidth_bytes_per_s = s.wan.bandwidth_bytes_per_s;
  t.wan_latency_s = s.wan.latency_s;
  t.collective_overhead_s = accel.collective_overhead_s;
  if (torus && !(t.ici_bandwidth_bytes_per_s > 0))
    throw Error(fmt::format("accelerator '{}' has no ICI link bandwidth for a torus", accel.name));
  if (!torus && (!(t.nvlink_bandwidth_bytes_per_s > 0) || !(t.nic_bandwidth_bytes_per_s > 0)))
    throw Error(fmt::format("accelerator '{}' lacks NVLink or NIC bandwidth for an nvlink_fat_tree", accel.name));
}

std::vector<int> Topology::coords(int chip) const {
  const Site& s = sites_[static_cast<std::size_t>(site_of(chip))];
  std::vector<int> c(s.dims.size());
  for (std::size_t i = 0; i < s.dims.size(); ++i) c[i] = local_of(chip) / s.stride(i) % s.dims[i];
  return c;
}

int Topology::coord(int chip, std::size_t dim) const {
  const Site& s = sites_[static_cast<std::size_t>(site_of(chip))];
  return local_of(chip) / s.stride(dim) % s.dims[dim];
}

int Topology::chip_at(int site, const std::vector<int>& coords) const {
  const Site& s = sites_[static_cast<std::size_t>(site)];
  int l = 0;
  for (std::size_t i = 0; i < s.dims.size(); ++i) l += coords[i] * s.stride(i);
  return s.chips[static_cast<std::size_t>(l)];
}

}  // namespace moesim::system
