// SPDX-License-Identifier: Apache-2.0
// Grid carbon-intensity datasets: profiles/grid/datasets.yaml names each dataset's CSV files, their
// columns, basis, licence and attribution; this file turns their rows into GridIntensity entries.

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "csv.hpp"
#include "loaders.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "yaml_fields.hpp"

namespace moesim::catalog::detail {

namespace {

namespace fs = std::filesystem;

/** Percent to fraction (the Electricity Maps carbon-free share is given in %). */
constexpr double kPercentPerUnit = 100.0;

const std::vector<std::string> kDatasetKeys = {"licence", "attribution", "source", "key_has_year", "files"};
const std::vector<std::string> kFileKeys = {"path", "year", "basis", "columns"};
const std::vector<std::string> kColumnKeys = {"zone", "zone_name", "year", "intensity_gco2e_per_kwh", "cfe_fraction",
                                              "cfe_percent"};
const std::vector<std::string> kBases = {"lifecycle", "operational", "unspecified"};

constexpr std::size_t kNoColumn = static_cast<std::size_t>(-1);

/** Index of an optional column, kNoColumn when the manifest names none. */
std::size_t optional_column(const CsvTable& t, const std::optional<std::string>& name) {
  return name ? t.column(*name) : kNoColumn;
}

std::optional<double> cell_number(const CsvTable& t, const CsvRow& row, std::size_t col, Range range) {
  const std::string& text = row.cells[col];
  if (text.empty()) return std::nullopt;  // an empty cell is absent data, never zero
  const auto v = parse_double(text);
  const bool ok = v && std::isfinite(*v) && (range != Range::non_negative || *v >= 0.0) &&
                  (range != Range::fraction || (*v >= 0.0 && *v <= 1.0));
  if (!ok) {
    throw InputError(t.file(), row.line, static_cast<int>(col) + 1, t.header()[col],
                     fmt::format("expected a {}number, got '{}'", range == Range::fraction ? "0..1 " : "non-negative ",
                                 text));
  }
  return v;
}

void load_file(const std::string& dataset, const MapReader& ds, const YAML::Node& file_node, const fs::path& base_dir,
               bool key_has_year, std::map<std::string, GridIntensity>& out) {
  const MapReader fr(file_node, ds.file(), ds.path_of("files[]"), kFileKeys);
  const std::string rel = fr.required_string("path");
  const std::string basis = fr.required_choice("basis", kBases);
  if (!fr.has("columns")) fr.fail(file_node, fr.path_of("columns"), "missing required mapping of column names");
  const MapReader cr(fr.node("columns"), ds.file(), fr.path_of("columns"), kColumnKeys);
  std::optional<int> fixed_year;
  if (fr.has("year")) {
    const YAML::Node y = fr.node("year");
    const auto v = y.IsScalar() ? parse_double(y.Scalar()) : std::nullopt;
    if (!v || std::floor(*v) != *v) fr.fail(y, fr.path_of("year"), "expected an integer year");
    fixed_year = static_cast<int>(*v);
  }
  if (fixed_year && cr.has("year"))
    cr.fail(cr.node("year"), cr.path_of("year"), "give either the file's `year` or a `year` column, not both");
  if (!fixed_year && !cr.has("year"))
    fr.fail(file_node, fr.path_of("year"), "missing: give the file's `year` or name a `year` column");
  if (cr.has("cfe_fraction") && cr.has("cfe_percent"))
    cr.fail(cr.node("cfe_percent"), cr.path_of("cfe_percent"), "give cfe_fraction or cfe_percent, not both");

  const CsvTable t = CsvTable::read((base_dir / rel).string());
  const std::size_t c_zone = t.column(cr.required_string("zone"));
  const std::size_t c_intensity = t.column(cr.required_string("intensity_gco2e_per_kwh"));
  const auto c_cfe_pct = cr.optional_string("cfe_percent");
  const std::size_t i_name = optional_column(t, cr.optional_string("zone_name"));
  const std::size_t i_year = optional_column(t, cr.optional_string("year"));
  const std::size_t i_cfe = optional_column(t, c_cfe_pct ? c_cfe_pct : cr.optional_string("cfe_fraction"));

  for (const CsvRow& row : t.rows()) {
    const std::string& zone = row.cells[c_zone];
    if (zone.empty())
      throw InputError(t.file(), row.line, static_cast<int>(c_zone) + 1, t.header()[c_zone], "empty zone");
    const auto intensity_g = cell_number(t, row, c_intensity, Range::non_negative);
    if (!intensity_g) continue;  // no intensity for this zone/year: the entry is absent

    GridIntensity g;
    g.dataset = dataset;
    g.zone = zone;
    g.zone_name = i_name != kNoColumn ? row.cells[i_name] : zone;
    if (fixed_year) {
      g.year = *fixed_year;
    } else {
      const auto y = cell_number(t, row, i_year, Range::non_negative);
      if (!y || std::floor(*y) != *y)
        throw InputError(t.file(), row.line, static_cast<int>(i_year) + 1, t.header()[i_year], "expected a year");
      g.year = static_cast<int>(*y);
    }
    g.kgco2e_per_kwh = *intensity_g / units::kGramsPerKg;
    if (i_cfe != kNoColumn) {
      if (c_cfe_pct) {
        const auto pct = cell_number(t, row, i_cfe, Range::non_negative);
        if (pct && *pct > kPercentPerUnit)
          throw InputError(t.file(), row.line, static_cast<int>(i_cfe) + 1, t.header()[i_cfe],
                           fmt::format("expected a percentage 0..100, got '{}'", row.cells[i_cfe]));
        if (pct) g.cfe_fraction = *pct / kPercentPerUnit;
      } else {
        g.cfe_fraction = cell_number(t, row, i_cfe, Range::fraction);
      }
    }
    g.basis = basis;
    g.source = ds.required_string("source") + " (" + rel + ")";
    g.licence = ds.required_string("licence");
    g.key = key_has_year ? fmt::format("{}/{}/{}", dataset, zone, g.year) : fmt::format("{}/{}", dataset, zone);
    if (out.count(g.key))
      throw InputError(t.file(), row.line, static_cast<int>(c_zone) + 1, t.header()[c_zone],
                       fmt::format("duplicate grid key '{}'", g.key));
    out.emplace(g.key, std::move(g));
  }
}

}  // namespace

std::map<std::string, GridIntensity> parse_grid_manifest(const std::string& manifest_file) {
  const YAML::Node root = load_yaml_file(manifest_file);
  const MapReader top(root, manifest_file, "", {"datasets"});
  const YAML::Node datasets = top.node("datasets");
  if (!datasets || !datasets.IsMap()) top.fail(datasets, "datasets", "expected a mapping dataset-name -> description");
  const fs::path base_dir = fs::path(manifest_file).parent_path();

  std::map<std::string, GridIntensity> out;
  for (const auto& kv : datasets) {
    const std::string name = kv.first.Scalar();
    if (name.empty() || name.find('/') != std::string::npos)
      top.fail(kv.first, "datasets", fmt::format("dataset name '{}' must be non-empty and contain no '/'", name));
    const MapReader ds(kv.second, manifest_file, "datasets." + name, kDatasetKeys);
    ds.required_string("licence");
    ds.required_string("attribution");
    ds.required_string("source");
    const std::string has_year = ds.required_choice("key_has_year", {"true", "false"});
    const YAML::Node files = ds.node("files");
    if (!files || !files.IsSequence() || files.size() == 0)
      ds.fail(files, ds.path_of("files"), "expected a non-empty list of files");
    for (const auto& f : files) load_file(name, ds, f, base_dir, has_year == "true", out);
  }
  return out;
}

}  // namespace moesim::catalog::detail
