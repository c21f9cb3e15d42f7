// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/system/topology.hpp"

namespace moesim::energy {

/** Where a link class's energy is already counted: on the chip (its measured power), in the per-chip
 *  host overhead, or nowhere (the energy layer adds it). */
enum class IncludedIn { chip, host_overhead, none };

/** Energy figures of one link class (profiles/network.yaml), with sources. */
struct LinkClassEnergy {
  double energy_per_bit_j = 0.0;  ///< per bit per link traversed
  double idle_w_per_link = 0.0;   ///< static power of one bidirectional link (both ends)
  IncludedIn included_in = IncludedIn::none;
  std::string source;
};

/** profiles/network.yaml. */
class NetworkEnergyTable {
 public:
  static NetworkEnergyTable load(const std::string& profiles_dir);
  const LinkClassEnergy& get(system::LinkClass c) const { return classes_[static_cast<std::size_t>(c)]; }
  void set(system::LinkClass c, LinkClassEnergy e) { classes_[static_cast<std::size_t>(c)] = std::move(e); }
  const std::string& file() const { return file_; }

 private:
  std::array<LinkClassEnergy, system::kLinkClassCount> classes_{};
  std::string file_;
};

/** Embodied carbon inputs per accelerator (profiles/embodied.yaml + die area/lifetime from the catalog). */
struct EmbodiedFigures {
  double carbon_per_area_kgco2e_per_cm2 = 0.0;
  double other_fixed_kgco2e = 0.0;  ///< per chip (memory, package) when the method counts it
  double die_area_cm2 = 0.0;
  double lifetime_s = 0.0;
  std::string source;
};
/** Reads profiles/embodied.yaml for `accel`; throws moesim::Error when the accelerator has no entry. */
EmbodiedFigures load_embodied(const std::string& profiles_dir, const catalog::AcceleratorSpec& accel);

/** One datacenter's energy and emissions for the whole job. SI: J, kg. */
struct SiteAccount {
  catalog::DatacenterSpec datacenter;
  int chips = 0;
  double share = 0.0;
  double it_energy_j = 0.0;        ///< chips incl. host overhead
  double network_energy_j = 0.0;   ///< links not already inside the IT figure (fabric switches, WAN)
  double facility_energy_j = 0.0;  ///< (IT + network) x PUE
  double co2e_gross_kg = 0.0;      ///< facility energy x location-based intensity
  double co2e_net_kg = 0.0;        ///< facility energy x market-based intensity (gross if none published)
  double embodied_co2e_kg = 0.0;   ///< only when asked
  std::map<std::string, double> network_energy_by_class_j;
};

/** The job's energy and emissions, per datacenter and in total. */
struct Accounting {
  double duration_s = 0.0;
  bool duration_pinned = false;       ///< from training.duration_days
  bool power_pinned = false;          ///< from energy.average_chip_power_w
  double average_chip_power_w = 0.0;  ///< IT power per chip over the job (incl. host overhead)
  bool embodied = false;
  std::vector<SiteAccount> sites;
  double it_energy_j() const;
  double network_energy_j() const;
  double facility_energy_j() const;
  double co2e_gross_kg() const;
  double co2e_net_kg() const;
  double embodied_co2e_kg() const;
};

/** Scales the simulated steps to the job and applies PUE and grid intensities (Patterson et al. 2021:
 *  MWh = hours x chips x W per chip x PUE / 1e6; tCO2e = MWh x kgCO2e/kWh).
 *  - duration: training.duration_days if given, else the simulated steps x mean step time;
 *  - IT energy: energy.average_chip_power_w x chips x duration if given, else the simulated mean IT
 *    power (SimGrid host_energy over the steps) x duration;
 *  - network: bytes x links per class x J/bit plus idle W per link x duration, for classes whose
 *    energy is not already inside the IT figure;
 *  - embodied (energy.embodied): chips x die area x carbon per area x duration / lifetime (LLMCarbon). */
Accounting account(const engine::JobResult& job, const scenario::Scenario& s, const catalog::Catalog& catalog,
                   const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied);

/** The datacenter of a placement entry: inline spec or catalog entry. */
catalog::DatacenterSpec resolve_datacenter(const scenario::PlacementEntry& p, const catalog::Catalog& catalog);

}  // namespace moesim::energy
