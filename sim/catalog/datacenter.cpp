// SPDX-License-Identifier: Apache-2.0
// Datacenter profiles: explicit sites (`datacenters:`), Google Cloud region-years generated from the
// Google grid CSVs (`google_cloud_regions:`), and any grid zone as a datacenter (`grid_datacenters:`).

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <filesystem>

#include "loaders.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "yaml_fields.hpp"

namespace moesim::catalog::detail {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kFileKeys = {"datacenters", "google_cloud_regions", "grid_datacenters"};
const std::vector<std::string> kSiteKeys = {
    "name", "display_name", "provider", "location", "cloud_region", "country_iso_code", "grid_zone", "year", "pue",
    "gross_kgco2e_per_kwh", "net_kgco2e_per_kwh", "cfe_fraction", "hourly_intensity_csv",
    "wan_bandwidth_bytes_per_s", "wan_latency_s", "licence", "notes"};
const std::vector<std::string> kGcpKeys = {"dataset", "name_prefix", "fleet_pue", "regions", "regions_source", "notes"};
const std::vector<std::string> kGridDcKeys = {"datasets", "default_pue", "notes"};

int read_year(const MapReader& r, const std::string& key) {
  const YAML::Node n = r.node(key);
  if (!n) r.fail(n, r.path_of(key), "missing required field (expected a year, e.g. 2021)");
  const auto v = n.IsScalar() ? parse_double(n.Scalar()) : std::nullopt;
  if (!v || std::floor(*v) != *v || *v < 1900 || *v > 2200)
    r.fail(n, r.path_of(key), "expected a year (an integer such as 2021)");
  return static_cast<int>(*v);
}

void check_iso3(const MapReader& r, const YAML::Node& at, const std::string& key, const std::string& code) {
  const bool ok = code.size() == 3 && std::isupper(static_cast<unsigned char>(code[0])) &&
                  std::isupper(static_cast<unsigned char>(code[1])) && std::isupper(static_cast<unsigned char>(code[2]));
  if (!ok) r.fail(at, key, fmt::format("'{}' is not an ISO 3166-1 alpha-3 code (three capital letters)", code));
}

DatacenterSpec read_site(const MapReader& r, const fs::path& dir) {
  DatacenterSpec dc;
  dc.name = r.required_string("name");
  if (dc.name.rfind(kGridDatacenterPrefix, 0) == 0)
    r.fail(r.node("name"), r.path_of("name"),
           fmt::format("names starting with '{}' are reserved for generated grid datacenters", kGridDatacenterPrefix));
  dc.display_name = r.required_string("display_name");
  dc.provider = r.required_string("provider");
  dc.location = r.required_string("location");
  dc.cloud_region = r.optional_string("cloud_region").value_or("");
  dc.country_iso_code = r.optional_string("country_iso_code").value_or("");
  if (!dc.country_iso_code.empty())
    check_iso3(r, r.node("country_iso_code"), r.path_of("country_iso_code"), dc.country_iso_code);
  dc.grid_zone = r.optional_string("grid_zone").value_or("");
  dc.year = read_year(r, "year");

  const Sourced pue = r.required_number("pue", Range::at_least_one);
  dc.pue = pue.value;
  dc.sources["pue"] = pue.source;
  const Sourced gross = r.required_number("gross_kgco2e_per_kwh", Range::non_negative);
  dc.gross_kgco2e_per_kwh = gross.value;
  dc.sources["gross_kgco2e_per_kwh"] = gross.source;
  if (const auto net = r.optional_number("net_kgco2e_per_kwh", Range::non_negative)) {
    dc.net_kgco2e_per_kwh = net->value;
    dc.sources["net_kgco2e_per_kwh"] = net->source;
  }
  if (const auto cfe = r.optional_number("cfe_fraction", Range::fraction)) {
    dc.cfe_fraction = cfe->value;
    dc.sources["cfe_fraction"] = cfe->source;
  }
  if (const auto csv = r.optional_string("hourly_intensity_csv")) {
    const fs::path p(*csv);
    dc.hourly_intensity_csv = p.is_absolute() ? p.string() : (dir / p).lexically_normal().string();
  }
  if (const auto bw = r.optional_number("wan_bandwidth_bytes_per_s", Range::non_negative)) {
    dc.wan_bandwidth_bytes_per_s = bw->value;
    dc.sources["wan_bandwidth_bytes_per_s"] = bw->source;
  }
  if (const auto lat = r.optional_number("wan_latency_s", Range::non_negative)) {
    dc.wan_latency_s = lat->value;
    dc.sources["wan_latency_s"] = lat->source;
  }
  dc.licence = r.optional_string("licence").value_or("");
  dc.notes = r.optional_string("notes").value_or("");
  return dc;
}

std::vector<std::string> dataset_names(const std::map<std::string, GridIntensity>& grid) {
  std::vector<std::string> out;
  for (const auto& kv : grid)
    if (out.empty() || out.back() != kv.second.dataset) out.push_back(kv.second.dataset);
  return out;
}

bool has_dataset(const std::map<std::string, GridIntensity>& grid, const std::string& dataset) {
  for (const auto& kv : grid)
    if (kv.second.dataset == dataset) return true;
  return false;
}

/** gcp_<region with '-' -> '_'>_<year> for every Google grid entry, with the fleet PUE of that year. */
void generate_gcp(const MapReader& r, const std::map<std::string, GridIntensity>& grid,
                  std::vector<DatacenterSpec>& out) {
  const std::string dataset = r.required_string("dataset");
  if (!has_dataset(grid, dataset))
    r.fail(r.node("dataset"), r.path_of("dataset"),
           fmt::format("no grid dataset '{}' is loaded (profiles/grid/datasets.yaml); loaded: {}", dataset,
                       text::join(dataset_names(grid))));
  const std::string prefix = r.required_string("name_prefix");
  const std::string regions_source = r.required_string("regions_source");
  const std::string notes = r.optional_string("notes").value_or("");

  // fleet_pue: {YEAR: {value, source}, ...}
  const YAML::Node fleet = r.node("fleet_pue");
  if (!fleet || !fleet.IsMap()) r.fail(fleet, r.path_of("fleet_pue"), "expected a mapping year -> {value, source}");
  std::vector<std::string> years;
  for (const auto& kv : fleet) years.push_back(kv.first.Scalar());
  const MapReader pr(fleet, r.file(), r.path_of("fleet_pue"), years);
  std::map<int, Sourced> pue_by_year;
  for (const auto& y : years) {
    const auto v = parse_double(y);
    if (!v || std::floor(*v) != *v) pr.fail(fleet, pr.path_of(y), "expected a year as key");
    pue_by_year[static_cast<int>(*v)] = pr.required_number(y, Range::at_least_one);
  }

  // regions: {region: ISO-3166 alpha-3}
  const YAML::Node regions = r.node("regions");
  if (!regions || !regions.IsMap()) r.fail(regions, r.path_of("regions"), "expected a mapping region -> alpha-3 code");
  std::map<std::string, std::string> country;
  for (const auto& kv : regions) {
    const std::string code = kv.second.IsScalar() ? kv.second.Scalar() : std::string();
    check_iso3(r, kv.second, r.path_of("regions." + kv.first.Scalar()), code);
    country[kv.first.Scalar()] = code;
  }

  for (const auto& kv : grid) {
    const GridIntensity& g = kv.second;
    if (g.dataset != dataset) continue;
    const auto pue = pue_by_year.find(g.year);
    if (pue == pue_by_year.end())
      r.fail(fleet, r.path_of("fleet_pue"), fmt::format("no fleet PUE for {}, needed by grid entry '{}'", g.year, g.key));
    const auto iso = country.find(g.zone);
    if (iso == country.end())
      r.fail(regions, r.path_of("regions"),
             fmt::format("region '{}' (grid entry '{}') has no country code here", g.zone, g.key));

    DatacenterSpec dc;
    std::string region_id = g.zone;
    for (char& c : region_id)
      if (c == '-') c = '_';
    dc.name = fmt::format("{}{}_{}", prefix, region_id, g.year);
    dc.display_name = fmt::format("Google Cloud {} ({}), {}", g.zone, g.zone_name, g.year);
    dc.provider = "google";
    dc.location = g.zone_name;
    dc.cloud_region = g.zone;
    dc.country_iso_code = iso->second;
    dc.year = g.year;
    dc.pue = pue->second.value;
    dc.sources["pue"] = pue->second.source;
    dc.gross_kgco2e_per_kwh = g.kgco2e_per_kwh;
    dc.sources["gross_kgco2e_per_kwh"] =
        fmt::format("grid key {}: {} intensity, {}", g.key, g.basis, g.source);
    dc.grid_basis = g.basis;
    if (g.cfe_fraction) {
      dc.cfe_fraction = g.cfe_fraction;
      dc.sources["cfe_fraction"] = fmt::format("grid key {}: Google CFE, {}", g.key, g.source);
    }
    dc.sources["country_iso_code"] = regions_source;
    dc.licence = g.licence;
    dc.notes = notes;
    out.push_back(std::move(dc));
  }
}

/** grid:<key> for every entry of the listed datasets, with a default PUE; no net intensity, no CFE. */
void generate_grid(const MapReader& r, const std::map<std::string, GridIntensity>& grid,
                   std::vector<DatacenterSpec>& out) {
  const YAML::Node list = r.node("datasets");
  if (!list || !list.IsSequence() || list.size() == 0)
    r.fail(list, r.path_of("datasets"), "expected a non-empty list of grid dataset names");
  const Sourced pue = r.required_number("default_pue", Range::at_least_one);
  const std::string notes = r.optional_string("notes").value_or("");
  for (const auto& item : list) {
    const std::string dataset = item.IsScalar() ? item.Scalar() : std::string();
    if (!has_dataset(grid, dataset))
      r.fail(item, r.path_of("datasets"),
             fmt::format("no grid dataset '{}' is loaded; loaded: {}", dataset, text::join(dataset_names(grid))));
    for (const auto& kv : grid) {
      const GridIntensity& g = kv.second;
      if (g.dataset != dataset) continue;
      DatacenterSpec dc;
      dc.name = kGridDatacenterPrefix + g.key;
      dc.display_name = fmt::format("{} grid average ({}, {}), {}", g.zone_name, g.dataset, g.zone, g.year);
      dc.provider = "generic";
      dc.location = g.zone_name;
      dc.pue = pue.value;
      dc.sources["pue"] = pue.source;
      apply_grid_intensity(dc, g);
      dc.notes = notes;
      out.push_back(std::move(dc));
    }
  }
}

}  // namespace

std::vector<DatacenterSpec> parse_datacenter_file(const std::string& file,
                                                  const std::map<std::string, GridIntensity>& grid) {
  const YAML::Node root = load_yaml_file(file);
  const MapReader top(root, file, "", kFileKeys);
  const fs::path dir = fs::path(file).parent_path();
  std::vector<DatacenterSpec> out;
  if (top.has("datacenters")) {
    const YAML::Node list = top.node("datacenters");
    if (!list.IsSequence()) top.fail(list, "datacenters", "expected a list of datacenters");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const MapReader r(list[i], file, fmt::format("datacenters[{}]", i), kSiteKeys);
      out.push_back(read_site(r, dir));
    }
  }
  if (top.has("google_cloud_regions"))
    generate_gcp(MapReader(top.node("google_cloud_regions"), file, "google_cloud_regions", kGcpKeys), grid, out);
  if (top.has("grid_datacenters"))
    generate_grid(MapReader(top.node("grid_datacenters"), file, "grid_datacenters", kGridDcKeys), grid, out);
  return out;
}

}  // namespace moesim::catalog::detail

namespace moesim::catalog {

void apply_grid_intensity(DatacenterSpec& dc, const GridIntensity& g) {
  dc.grid_zone = g.zone;
  dc.year = g.year;
  dc.gross_kgco2e_per_kwh = g.kgco2e_per_kwh;
  dc.sources["gross_kgco2e_per_kwh"] = fmt::format("grid key {}: {} intensity, {}", g.key, g.basis, g.source);
  dc.grid_basis = g.basis;
  dc.licence = g.licence;
}

}  // namespace moesim::catalog
