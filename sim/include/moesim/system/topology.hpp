// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/workload/mesh.hpp"

namespace moesim::system {

/** Link classes, for network energy (bytes per class x energy per bit) and reports. */
enum class LinkClass { ici, nvlink, nic, fabric, wan };
std::string to_string(LinkClass c);
inline constexpr int kLinkClassCount = 5;

enum class SiteKind { torus, nvlink_fat_tree };

/** One datacenter's share of the cluster: its chips and how they are wired. */
struct Site {
  int index = 0;
  std::string datacenter;        ///< placement name
  SiteKind kind = SiteKind::torus;
  std::vector<int> dims;         ///< torus dimensions (chips)
  int gpus_per_node = 0;         ///< fat-tree sites
  int nodes_per_leaf = 0;
  double oversubscription = 1.0;
  std::vector<int> chips;        ///< global chip ids, in local order (local index = position)
  int nodes() const { return gpus_per_node > 0 ? static_cast<int>(chips.size()) / gpus_per_node : 0; }
  /** The local-index stride of torus dimension `dim`: a chip's local index is the sum of its coordinates times
   *  these (dimension 0 varies fastest). The one statement of the layout: Topology::coords, coord and chip_at and
   *  the collectives' torus lines all go through it. */
  int stride(std::size_t dim) const {
    int s = 1;
    for (std::size_t i = 0; i < dim; ++i) s *= dims[i];
    return s;
  }
};

/** The logical cluster: sites, chip placement, per-link figures. Built from the scenario and the
 *  accelerator catalog; the platform layer turns it into SimGrid zones, collectives into traffic. */
class Topology {
 public:
  static Topology build(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel, const workload::DeviceMesh& mesh);
  /** Same, with the datacenter (placement index) of every chip given (serving: whole replicas per site). */
  static Topology build_for_sites(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel, int devices_per_chip,
                                  const std::vector<int>& chip_site);

  const std::vector<Site>& sites() const { return sites_; }
  int chips() const { return static_cast<int>(site_of_.size()); }
  int site_of(int chip) const { return site_of_[static_cast<std::size_t>(chip)]; }
  int local_of(int chip) const { return local_of_[static_cast<std::size_t>(chip)]; }
  /** Torus coordinates of a chip within its site (dimension 0 varies fastest). */
  std::vector<int> coords(int chip) const;
  /** Coordinate `dim` of a torus chip (coords(chip)[dim], without building the vector). */
  int coord(int chip, std::size_t dim) const;
  int chip_at(int site, const std::vector<int>& coords) const;
  /** Fat-tree sites: node index and GPU index within the node. */
  int node_of(int chip) const { return local_of(chip) / sites_[static_cast<std::size_t>(site_of(chip))].gpus_per_node; }
  int gpu_of(int chip) const { return local_of(chip) % sites_[static_cast<std::size_t>(site_of(chip))].gpus_per_node; }

  int devices_per_chip() const { return devices_per_chip_; }

  // Per-link figures (bytes/s per direction, seconds), after scenario overrides.
  double ici_bandwidth_bytes_per_s = 0.0;
  double ici_latency_s = 0.0;
  double nvlink_bandwidth_bytes_per_s = 0.0;
  double nvlink_latency_s = 0.0;
  double nic_bandwidth_bytes_per_s = 0.0;
  double nic_latency_s = 0.0;
  double wan_bandwidth_bytes_per_s = 0.0;
  double wan_latency_s = 0.0;
  double collective_overhead_s = 0.0;  ///< per collective (catalog), see TrafficPlan::overhead_s

 private:
  /** Sites, torus dimensions or nodes, and link figures once site_of_ is known. */
  static void finish(Topology& t, const scenario::Scenario& s, const catalog::AcceleratorSpec& accel,
                     const std::string& empty_site_reason);

  std::vector<Site> sites_;
  std::vector<int> site_of_;
  std::vector<int> local_of_;
  int devices_per_chip_ = 1;
};

}  // namespace moesim::system
