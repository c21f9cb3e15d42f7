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

/** The chip hosts' two pstates (the same speed): no job on the chip, and a job running on it. */
constexpr unsigned long kIdlePstate = 0;
constexpr unsigned long kJobPstate = 1;

/** Power of one chip host (host overhead included) in SimGrid's host_energy model, two pstates: kIdlePstate
 *  "idle:active:full" (idle with nothing running) and kJobPstate "active:active:full" (a job on the chip: active while
 *  it computes nothing, communicating or waiting); in both linear in the load from active up to full. A compute phase
 *  loads each chip by the fraction of the active-to-full span that the power curve gives at the phase's achieved
 *  utilisation (catalog::PowerCurve; load_for), so the energy plugin integrates the curve exactly. */
struct PowerStates {
  double idle_w = 0.0;
  double active_w = 0.0;
  double full_w = 0.0;
  /** Memory-bound kernels at the catalog's HBM utilisation anchor; = full_w when the catalog has no
   *  separate figure. */
  double memory_bound_w = 0.0;
  double host_overhead_w = 0.0;  ///< included in every figure above and in the curve (chip-convention figures)
  catalog::PowerCurve curve;     ///< the catalog's curve, host overhead included
  std::string convention;        ///< how the states were built from the catalog

  /** The power curve (host overhead included) at the given achieved utilisations. */
  double compute_w(double flop_utilisation, double hbm_utilisation) const;
  /** The host load in [0, 1] at which host_energy draws `power_w`: (power_w - active_w) / (full_w - active_w),
   *  0 when the span is empty. */
  double load_for_power(double power_w) const;
  /** load_for_power(compute_w(flop_utilisation, hbm_utilisation)). */
  double load_for(double flop_utilisation, double hbm_utilisation) const {
    return load_for_power(compute_w(flop_utilisation, hbm_utilisation));
  }
  /** The host property value: "idle:active:full,active:active:full" (kIdlePstate, kJobPstate). */
  std::string wattage_per_state() const;
};

/** Builds the host power states from the catalog: chip figures plus the per-chip host overhead when
 *  the figures follow the `chip` convention; `system` figures already include it. */
PowerStates power_states(const catalog::AcceleratorSpec& accel);

/** Gives ptask_L07's models a max-min system without selective update, before any host or link exists (the root zone
 *  must exist: it creates the models). SimGrid 3.32's ptask_L07 builds its system with selective update hard-coded on
 *  (src/surf/ptask_L07.cpp, surf_host_model_init_ptask_L07), but its solver, FairBottleneck::do_solve
 *  (src/kernel/lmm/fair_bottleneck.cpp), computes every variable at every solve, and the model updates every started
 *  action (HostL07Model::update_actions_state): the modified set selective update maintains is never read. Maintaining
 *  it is not free: each expand() of a new parallel task onto a constraint, and each change of a variable, walks the
 *  whole connected set of constraints (System::update_modified_cnst_set_rec), revisiting a task's constraint list at
 *  each of its constraints, so O(constraints^2) per task. The same solver then gives the same rates, to every bit.
 *  Returns the new system; throws Error where the three models do not share one system (not ptask_L07). */
simgrid::kernel::lmm::System* drop_selective_update();
/** The max-min system ptask_L07's host, CPU and network models share; throws Error where they do not share one. */
simgrid::kernel::lmm::System* ptask_maxmin_system();

/** The SimGrid platform of one simulation:
 *  - a root `full` zone;
 *  - per site, a torus zone of chip hosts (ICI links, split-duplex) or a two-level fat-tree of GPU
 *    nodes, each node a `full` zone of GPU ports with per-GPU NVLink links (NVSwitch) and per-GPU NIC
 *    links to a gateway into the fat-tree (rails; leaf uplinks sized by the oversubscription);
 *  - per site an edge zone with a border host, the sites' borders joined by split-duplex WAN links;
 *  - a zone without routes ("chips") of the GPUs' chip hosts: a GPU computes on its chip host and its traffic
 *    leaves from its port (no power), so that collectives and compute never share a host in the max-min system;
 *  - a zone of pacer hosts (no power, no links) used to time memoised phases.
 *  Chip hosts carry host_energy power states (ports, borders and pacers draw nothing); the energy plugin must be
 *  initialised before build().
 *  Link names carry their class (ici / nvlink / nic / fabric / wan) for network energy. */
class Platform {
 public:
  /** `selective_update`: keep SimGrid's selective update of the max-min system (false: drop_selective_update). */
  static std::unique_ptr<Platform> build(const system::Topology& topo, const catalog::AcceleratorSpec& accel,
                                         const PowerStates& power, int pacers, bool selective_update = false);

  sg4::Host* chip(int id) const { return chips_[static_cast<std::size_t>(id)]; }
  const std::vector<sg4::Host*>& chips() const { return chips_; }
  sg4::Host* border(int site) const { return borders_[static_cast<std::size_t>(site)]; }
  /** The network endpoint of a chip (id < chips: a GPU's port, a torus chip's own host) or a site border
   *  (id = chips + site), as in system::Flow. A GPU's chip host (chip()) has no route. */
  sg4::Host* endpoint(int id) const {
    return id < static_cast<int>(ports_.size()) ? ports_[static_cast<std::size_t>(id)]
                                                : borders_[static_cast<std::size_t>(id) - ports_.size()];
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
  std::vector<sg4::Host*> ports_;  ///< per chip: its network endpoint
  std::vector<sg4::Host*> borders_;
  std::vector<sg4::Host*> pacers_;
  std::map<system::LinkClass, int> link_counts_;
  double chip_speed_ = 0.0;
};

}  // namespace moesim::platform
