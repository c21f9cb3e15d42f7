// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <optional>
#include <string>

namespace moesim::catalog {

/** Datacenter names starting with this prefix are generated from the shipped grid data:
 *  "grid:<dataset>/<zone>[/<year>]" (the grid key after the prefix), e.g. "grid:electricity_maps/DE/2023",
 *  "grid:ember/FRA". See profiles/README.md. */
inline constexpr const char* kGridDatacenterPrefix = "grid:";

/** A datacenter: where the energy is drawn and what its grid emits.
 *  gross (location-based) intensity: the grid's average; net (market-based): after the operator's
 *  carbon-free energy purchases. Both are separate inputs (Patterson et al. 2021's net is NOT
 *  gross x (1 - CFE)), CFE share reported beside them. */
struct DatacenterSpec {
  std::string name;          ///< catalog key, e.g. "gcp_us_central1_2021"
  std::string display_name;  ///< e.g. "Google Cloud us-central1 (Iowa), 2021"
  std::string provider;      ///< "google", "generic", ...
  std::string location;      ///< human-readable place
  std::string cloud_region;  ///< e.g. "us-central1"; empty if none
  std::string country_iso_code;  ///< ISO 3166-1 alpha-3 where known (CodeCarbon column)
  std::string grid_zone;     ///< Electricity Maps zone or Ember code, where known
  int year = 0;              ///< year of the grid figures

  double pue = 1.0;                       ///< power usage effectiveness (facility / IT energy)
  double gross_kgco2e_per_kwh = 0.0;      ///< location-based grid intensity
  std::optional<double> net_kgco2e_per_kwh;  ///< market-based, when known
  std::optional<double> cfe_fraction;     ///< hourly-matched carbon-free energy share, 0..1
  std::string hourly_intensity_csv;       ///< optional user-supplied hourly series (path)
  /** Accounting basis of gross_kgco2e_per_kwh where its dataset states one: "lifecycle" (generation plus upstream
   *  emissions: Google's 2019-2020 files, Electricity Maps) or "operational" (combustion only: Google's files from
   *  2021); empty where the source does not say (a published figure, a scenario's own number, Ember). */
  std::string grid_basis;

  /** Network between this site and others (WAN), used when a job spans datacenters. */
  double wan_bandwidth_bytes_per_s = 0.0;  ///< 0: use the scenario / default
  double wan_latency_s = 0.0;

  std::map<std::string, std::string> sources;  ///< field -> citation
  std::string licence;  ///< licence of the grid figures (e.g. "Apache-2.0", "ODbL-1.0")
  std::string notes;    ///< free text: how the figures were chosen or derived (added by the catalog layer)

  /** Net intensity if known, else gross (the market-based figure falls back to location-based). */
  double net_or_gross_kgco2e_per_kwh() const { return net_kgco2e_per_kwh.value_or(gross_kgco2e_per_kwh); }
};

}  // namespace moesim::catalog
