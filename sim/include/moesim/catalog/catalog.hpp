// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/catalog/datacenter.hpp"

namespace moesim::catalog {

/** Annual grid carbon intensity of one zone (Google region, Electricity Maps zone, Ember country).
 *  Keyed "google/REGION/YEAR", "electricity_maps/ZONE/YEAR" or "ember/CODE". */
struct GridIntensity {
  std::string key;
  std::string dataset;      ///< "google", "electricity_maps", "ember"
  std::string zone;         ///< region / zone / country code
  std::string zone_name;    ///< human-readable
  int year = 0;
  double kgco2e_per_kwh = 0.0;             ///< location-based (gross) intensity
  std::optional<double> cfe_fraction;      ///< carbon-free share 0..1 where the dataset gives one
  std::string basis;        ///< "lifecycle" or "operational"
  std::string source;       ///< citation of the dataset
  std::string licence;      ///< e.g. "Apache-2.0", "ODbL-1.0", "CC-BY-SA-4.0"
};

/** A datacenter on a grid entry's annual figure: gross intensity with its source ("grid key KEY: BASIS intensity,
 *  SOURCE", which the reports read for the dataset's attribution), zone, year and licence. No CFE and no net
 *  intensity: a dataset's carbon-free share is the zone's generation mix, not an operator's hourly-matched CFE.
 *  The `grid:` datacenters of the catalog and a scenario's inline `grid:` datacenter both come from here. */
void apply_grid_intensity(DatacenterSpec& dc, const GridIntensity& g);

/** The profiles/ directory: accelerators and datacenters, loaded once.
 *  Lookups of unknown names throw moesim::Error listing the closest known names. */
class Catalog {
 public:
  /** Loads `profiles_dir`/accelerators/ *.yaml and `profiles_dir`/datacenters/ *. Throws
   *  moesim::InputError (file:line:column, key) on malformed data. */
  static Catalog load(const std::string& profiles_dir);
  /** The directory named by $MOESIM_PROFILES, else the source tree's profiles/. */
  static std::string default_profiles_dir();

  const AcceleratorSpec& accelerator(const std::string& name) const;
  const DatacenterSpec& datacenter(const std::string& name) const;
  bool has_accelerator(const std::string& name) const { return accelerators_.count(name) != 0; }
  bool has_datacenter(const std::string& name) const { return datacenters_.count(name) != 0; }
  std::vector<std::string> accelerator_names() const;
  std::vector<std::string> datacenter_names() const;
  const std::map<std::string, AcceleratorSpec>& accelerators() const { return accelerators_; }
  const std::map<std::string, DatacenterSpec>& datacenters() const { return datacenters_; }
  const std::string& profiles_dir() const { return profiles_dir_; }

  /** Grid intensity by key; throws moesim::Error suggesting the closest keys. */
  const GridIntensity& grid(const std::string& key) const;
  bool has_grid(const std::string& key) const { return grid_.count(key) != 0; }
  std::vector<std::string> grid_keys() const;

  /** For tests and inline scenario datacenters. */
  void add_accelerator(AcceleratorSpec spec);
  void add_datacenter(DatacenterSpec spec);

 private:
  std::string profiles_dir_;
  std::map<std::string, AcceleratorSpec> accelerators_;
  std::map<std::string, DatacenterSpec> datacenters_;
  std::map<std::string, GridIntensity> grid_;
};

/** Parses one accelerator profile (profiles/accelerators/NAME.yaml; `name` must equal NAME).
 *  Throws moesim::InputError (file:line:column, key, what was expected) on malformed data. */
AcceleratorSpec load_accelerator_file(const std::string& file);

/** Reads a grid manifest (profiles/grid/datasets.yaml) and every CSV it names; entries keyed
 *  "dataset/zone/year" or "dataset/zone" (see GridIntensity). Intensities are converted from
 *  gCO2e/kWh to kgCO2e/kWh. An empty intensity cell makes the row absent, an empty carbon-free
 *  cell makes cfe_fraction absent (never zero). Throws moesim::InputError on malformed data. */
std::map<std::string, GridIntensity> load_grid_manifest(const std::string& manifest_file);

/** Parses one datacenter profile (profiles/datacenters/ *.yaml): explicit `datacenters:` entries and
 *  the entries generated from `grid` (`google_cloud_regions:` -> gcp_REGION_YEAR, `grid_datacenters:`
 *  -> grid:KEY). Throws moesim::InputError on malformed data. */
std::vector<DatacenterSpec> load_datacenter_file(const std::string& file,
                                                 const std::map<std::string, GridIntensity>& grid);

}  // namespace moesim::catalog
