// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
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

/** Which intensity a site's gross (location-based) CO2e used. */
enum class GrossBasis {
  annual,  ///< facility kWh x DatacenterSpec::gross_kgco2e_per_kwh
  hourly,  ///< sum over the hours run of facility kWh in the hour x the series' gco2e_per_kwh
};
/** Which intensity a site's net (market-based) CO2e used. */
enum class NetBasis {
  annual_net,             ///< facility kWh x DatacenterSpec::net_kgco2e_per_kwh
  annual_gross_fallback,  ///< no net figure published: net = gross (annual)
  hourly_market,          ///< the series' market_gco2e_per_kwh column, hour by hour
  hourly_gross_fallback,  ///< hourly series without a market column and no annual net figure: net = hourly gross
};
/** "annual" or "hourly" (the provenance spelling). */
std::string to_string(GrossBasis b);
/** The enumerator's name, e.g. "hourly_market" (the provenance spelling). */
std::string to_string(NetBasis b);

/** How a site's CO2e was computed: annual figures or an hourly series integrated over the run, with
 *  the series file, the hours it covers and the hours the job overlapped. Kept in run provenance. */
struct IntensityBasis {
  GrossBasis gross = GrossBasis::annual;
  NetBasis net = NetBasis::annual_gross_fallback;
  std::string series_file;            ///< resolved path of the hourly CSV; empty on the annual basis
  std::string series_covers;          ///< "<first hour> to <end> (N hours)"
  std::size_t series_hours = 0;
  /** The start of what is accounted: energy.start_time_utc, normalised (for a serving run, plus its window's start,
   *  serving.warmup_s, rounded down to the second); empty if no start time was given. */
  std::string job_start_utc;
  std::string job_end_utc;            ///< its end: start + duration (a serving run: its window's end), rounded up to the second
  std::string first_hour_utc;         ///< first series hour the job overlaps
  std::size_t hours_touched = 0;      ///< series hours with a non-zero overlap (partial first/last included)
  /** co2e_gross_kg / facility kWh: the mean of the hours' intensities weighted by the energy drawn in each (constant
   *  power for training; a serving run's power series). */
  double effective_gross_kgco2e_per_kwh = 0.0;
  double effective_net_kgco2e_per_kwh = 0.0;    ///< co2e_net_kg / facility kWh
  std::string note;                   ///< why annual figures were used where an hourly study was hinted at
};
/** The record as JSON (provenance.datacenters[i].intensity_basis). */
nlohmann::json to_json(const IntensityBasis& b);

/** One datacenter's energy and emissions for the whole job. SI: J, kg. */
struct SiteAccount {
  catalog::DatacenterSpec datacenter;
  int chips = 0;
  double share = 0.0;
  double it_energy_j = 0.0;        ///< chips incl. host overhead
  double network_energy_j = 0.0;   ///< links not already inside the IT figure (fabric switches, WAN)
  double wan_energy_j = 0.0;       ///< the WAN part of network_energy_j: carrier networks, outside the datacenter
  /** (IT + network inside the datacenter) x PUE + WAN: the energy the job draws for this site. The WAN's energy is
   *  drawn by carrier networks, not the datacenter, so the datacenter's PUE does not apply to it. */
  double facility_energy_j = 0.0;
  double co2e_gross_kg = 0.0;      ///< facility energy x location-based intensity
  double co2e_net_kg = 0.0;        ///< facility energy x market-based intensity (gross if none published)
  double embodied_co2e_kg = 0.0;   ///< only when asked
  std::map<std::string, double> network_energy_by_class_j;
  IntensityBasis intensity;        ///< annual or hourly, and the series used

  /** The location-based intensity this site's gross CO2e used: the annual figure, or on an hourly series its
   *  energy-weighted mean over the hours run (co2e_gross_kg / facility kWh), so that energy x it = the CO2e. */
  double applied_gross_kgco2e_per_kwh() const;
  /** The market-based one, likewise; none where no net figure is published and net falls back to the annual gross. */
  std::optional<double> applied_net_kgco2e_per_kwh() const;
};

/** The job's energy and emissions, per datacenter and in total. */
struct Accounting {
  double duration_s = 0.0;
  bool duration_pinned = false;       ///< from training.duration_days
  bool power_pinned = false;          ///< from energy.average_chip_power_w
  double average_chip_power_w = 0.0;  ///< IT power per chip over the job (incl. host overhead)
  bool embodied = false;
  std::string start_time_utc;         ///< energy.start_time_utc normalised to YYYY-MM-DDTHH:MM:SSZ; empty if none
  std::vector<SiteAccount> sites;
  double it_energy_j() const;
  double network_energy_j() const;
  double wan_energy_j() const;
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
 *  - network: bytes x links per step x job.steps x J/bit plus idle W per link x duration, for classes whose
 *    energy is not already inside the IT figure. A pinned duration changes how long the job ran, not the
 *    bytes its steps moved: the per-bit part follows job.steps whatever the duration, only the per-second
 *    parts (chip power, idle links, embodied carbon) scale with it;
 *  - facility: (IT + network inside the datacenter) x PUE, plus the WAN's energy without PUE (carrier networks
 *    draw it, not the datacenter); its CO2e at the site's grid intensity, as Cloud Carbon Footprint does for
 *    networking (the carrier's electricity is drawn along the route, from the grids the site is on);
 *  - embodied (energy.embodied): chips x die area x carbon per area x duration / lifetime (LLMCarbon);
 *  - CO2e: facility kWh x the annual gross / net intensity; or, when the datacenter has an
 *    hourly_intensity_csv AND the scenario has energy.start_time_utc, gross = the facility energy
 *    integrated over the hours the job runs (HourlyIntensity::integrate). A training job draws its
 *    average facility power uniformly over its duration (the simulated power profile repeats every
 *    step, far shorter than an hour). A serving scenario's `job` is its measurement window
 *    (engine::window_as_job): it runs from energy.start_time_utc + the window's start
 *    (engine::window_start_s: serving.warmup_s, 0 offline) for the window's length, and each hour gets
 *    the share of the facility energy that the window's power series (job.power_t_s / power_w, times from
 *    the window's start; here the deployment's total chip power, whose shape every site is given: account_serving
 *    gives each site its own chips' power instead) draws in it;
 *    without a series, or with energy.average_chip_power_w pinned, constant power. Net = the series'
 *    market column if present, else the annual net figure, else the hourly gross. A start time without
 *    a series uses the annual figures and says so in SiteAccount::intensity.note. Throws moesim::Error
 *    when the series does not cover the run, and moesim::InputError for a malformed start time or CSV. */
Accounting account(const engine::JobResult& job, const scenario::Scenario& s, const catalog::Catalog& catalog,
                   const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied);

/** A serving run's accounting: account(engine::window_as_job(r), ...), except that on an hourly series each site's
 *  hours are weighted by what its own chips draw in each (engine::window_site_power_w), not by the whole deployment's
 *  power: two sites whose load differs over time (a trace, a load-aware router) each get the intensity of the hours
 *  they drew in. With energy.average_chip_power_w pinned, constant power, as account(); a result without per-site
 *  series (built by hand) gives every site the deployment's shape, as account(). */
Accounting account_serving(const engine::ServingResult& r, const scenario::Scenario& s, const catalog::Catalog& catalog,
                           const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied);

/** The datacenter of a placement entry: inline spec or catalog entry. */
catalog::DatacenterSpec resolve_datacenter(const scenario::PlacementEntry& p, const catalog::Catalog& catalog);

/** Path of a placement's hourly intensity CSV, or "" when it has none. A relative path is resolved
 *  against the scenario file's directory for an inline datacenter (against the working directory
 *  when the scenario has no file) and made absolute; a catalog datacenter's path was already resolved
 *  by the catalog layer against the directory of its datacenters/ *.yaml file and is returned as is. */
std::string hourly_series_path(const scenario::PlacementEntry& p, const catalog::DatacenterSpec& dc,
                               const scenario::Scenario& s);

/** energy.start_time_utc as seconds since the Unix epoch, or nullopt when empty. Throws
 *  moesim::InputError (the scenario file, key energy.start_time_utc) when malformed. */
std::optional<std::int64_t> start_time_utc_s(const scenario::Scenario& s);

/** Checks, without simulating, what account() will need of the hourly inputs: a well-formed start
 *  time, every referenced series readable and valid, and each series starting no later than the start
 *  time (the end is checked by account(), once the duration is known — or here, when
 *  training.duration_days pins it). A serving run is checked over its measurement window: from the start
 *  time + the window's start (serving.warmup_s) to + its end where the arrivals fix it before simulating
 *  (serving.duration_s, or the last arrival; engine::known_window, which generates the requests), else its
 *  start alone. Call before a long simulation to fail fast (the CLI's prepare_run does, after
 *  engine::check_feasible). */
void check_hourly_inputs(const scenario::Scenario& s, const catalog::Catalog& catalog);

}  // namespace moesim::energy
