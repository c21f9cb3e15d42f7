// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <simgrid/s4u.hpp>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/system/topology.hpp"

namespace moesim::platform {

namespace sg4 = simgrid::s4u;

/** Power of one chip host in SimGrid's host_energy states: idle (nothing running), active (running
 *  something but 0 % of the matrix units: communicating, waiting) and full compute. */
struct PowerStates {
  double idle_w = 0.0;
  double active_w = 0.0;
  double full_w = 0.0;
  /** Full load on memory-bound kernels (the chip's second pstate, same speed); = full_w when the catalog
   *  has no separate figure. */
  double memory_bound_w = 0.0;
  double host_overhead_w = 0.0;  ///< included in the three states above (chip-convention figures)
  std::string convention;        ///< how the states were built from the catalog
};

/** SimGrid pstates of a chip host: both run at the same speed, they differ in the power at full load. */
inline constexpr unsigned long kComputeBoundPstate = 0;
inline constexpr unsigned long kMemoryBoundPstate = 1;

/** Builds the host power states from the catalog: chip figures plus the per-chip host overhead when
 *  the figures follow the `chip` convention; `system` figures already include it. */
PowerStates power_states(const catalog::AcceleratorSpec& accel);

/** The SimGrid platform of one simulation:
 *  - a root `full` zone;
 *  - per site, a torus zone of chip hosts (ICI links, split-duplex) or a two-level fat-tree of GPU
 *    nodes, each node a `full` zone of GPU hosts with per-GPU NVLink links (NVSwitch) and per-GPU NIC
 *    links to a gateway into the fat-tree (rails; leaf uplinks sized by the oversubscription);
 *  - per site an edge zone with a border host, the sites' borders joined by split-duplex WAN links;
 *  - a zone of pacer hosts (no power, no links) used to time memoised phases.
 *  Chip hosts carry host_energy power states; the energy plugin must be initialised before build().
 *  Link names carry their class (ici / nvlink / nic / fabric / wan) for network energy. */
class Platform {
 public:
  static std::unique_ptr<Platform> build(const system::Topology& topo, const catalog::AcceleratorSpec& accel,
                                         const PowerStates& power, int pacers);

  sg4::Host* chip(int id) const { return chips_[static_cast<std::size_t>(id)]; }
  const std::vector<sg4::Host*>& chips() const { return chips_; }
  sg4::Host* border(int site) const { return borders_[static_cast<std::size_t>(site)]; }
  /** A chip (id < chips) or a site border (id = chips + site), as in system::Flow. */
  sg4::Host* endpoint(int id) const {
    return id < static_cast<int>(chips_.size()) ? chips_[static_cast<std::size_t>(id)]
                                                : borders_[static_cast<std::size_t>(id) - chips_.size()];
  }
  const std::vector<sg4::Host*>& pacers() const { return pacers_; }
  /** Class of a link from its name. */
  static system::LinkClass link_class(const sg4::Link* link);
  /** Number of links of each class (for switch/port idle power). */
  const std::map<system::LinkClass, int>& link_counts() const { return link_counts_; }
  double chip_speed_flops_per_s() const { return chip_speed_; }
  double pacer_speed_flops_per_s() const { return 1e9; }

 private:
  std::vector<sg4::Host*> chips_;
  std::vector<sg4::Host*> borders_;
  std::vector<sg4::Host*> pacers_;
  std::map<system::LinkClass, int> link_counts_;
  double chip_speed_ = 0.0;
};

}  // namespace moesim::platform
