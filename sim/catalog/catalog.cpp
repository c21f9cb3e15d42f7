// SPDX-License-Identifier: Apache-2.0
#include "moesim/catalog/catalog.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "loaders.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::catalog {

namespace {

namespace fs = std::filesystem;

/** The *.yaml files of `dir`, sorted so that loading (and duplicate errors) are deterministic. */
std::vector<fs::path> yaml_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const auto ext = entry.path().extension().string();
    if (ext == ".yaml" || ext == ".yml") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

template <typename Map>
std::vector<std::string> keys_of(const Map& m) {
  std::vector<std::string> out;
  out.reserve(m.size());
  for (const auto& kv : m) out.push_back(kv.first);
  return out;
}

[[noreturn]] void unknown(const std::string& what, const std::string& name, const std::vector<std::string>& known,
                          const std::string& hint) {
  const auto near = text::closest(name, known, 3);
  std::string msg = fmt::format("unknown {} '{}'", what, name);
  if (!near.empty()) msg += fmt::format("; did you mean: {}?", text::join(near));
  if (!hint.empty()) msg += " " + hint;
  throw Error(msg);
}

}  // namespace

AcceleratorSpec load_accelerator_file(const std::string& file) { return detail::parse_accelerator_file(file); }

std::map<std::string, GridIntensity> load_grid_manifest(const std::string& manifest_file) {
  return detail::parse_grid_manifest(manifest_file);
}

std::vector<DatacenterSpec> load_datacenter_file(const std::string& file,
                                                 const std::map<std::string, GridIntensity>& grid) {
  return detail::parse_datacenter_file(file, grid);
}

Catalog Catalog::load(const std::string& profiles_dir) {
  const fs::path root(profiles_dir);
  if (!fs::is_directory(root))
    throw Error(fmt::format("profiles directory '{}' does not exist (set MOESIM_PROFILES or pass --profiles)",
                            profiles_dir));
  Catalog cat;
  cat.profiles_dir_ = profiles_dir;

  for (const auto& file : yaml_files(root / "accelerators")) cat.add_accelerator(load_accelerator_file(file.string()));

  const fs::path manifest = root / "grid" / "datasets.yaml";
  if (fs::exists(manifest)) cat.grid_ = load_grid_manifest(manifest.string());

  for (const auto& file : yaml_files(root / "datacenters")) {
    for (auto& dc : load_datacenter_file(file.string(), cat.grid_)) {
      if (cat.datacenters_.count(dc.name))
        throw InputError(file.string(), 0, 0, dc.name,
                         "datacenter name defined twice (names are unique across profiles/datacenters/)");
      cat.datacenters_.emplace(dc.name, std::move(dc));
    }
  }
  if (cat.accelerators_.empty())
    throw Error(fmt::format("profiles directory '{}' has no accelerator profiles (accelerators/*.yaml): is "
                            "MOESIM_PROFILES or --profiles pointing at moesim's profiles/ folder?",
                            profiles_dir));
  return cat;
}

std::string Catalog::default_profiles_dir() {
  const char* env = std::getenv("MOESIM_PROFILES");
  if (env != nullptr && *env != '\0') return env;
  return MOESIM_DEFAULT_PROFILES_DIR;
}

const AcceleratorSpec& Catalog::accelerator(const std::string& name) const {
  const auto it = accelerators_.find(name);
  if (it == accelerators_.end())
    unknown("accelerator", name, accelerator_names(),
            fmt::format("(known accelerators: {})", text::join(accelerator_names())));
  return it->second;
}

const DatacenterSpec& Catalog::datacenter(const std::string& name) const {
  const auto it = datacenters_.find(name);
  if (it == datacenters_.end())
    unknown("datacenter", name, datacenter_names(),
            fmt::format("({} known; any grid zone is available as {}<dataset>/<zone>[/<year>], see profiles/README.md)",
                        datacenters_.size(), kGridDatacenterPrefix));
  return it->second;
}

std::vector<std::string> Catalog::accelerator_names() const { return keys_of(accelerators_); }

std::vector<std::string> Catalog::datacenter_names() const { return keys_of(datacenters_); }

const GridIntensity& Catalog::grid(const std::string& key) const {
  const auto it = grid_.find(key);
  if (it == grid_.end())
    unknown("grid key", key, grid_keys(), "(keys are google/REGION/YEAR, electricity_maps/ZONE/YEAR, ember/CODE)");
  return it->second;
}

std::vector<std::string> Catalog::grid_keys() const { return keys_of(grid_); }

void Catalog::add_accelerator(AcceleratorSpec spec) {
  if (spec.name.empty()) throw Error("add_accelerator: the accelerator has no name");
  if (accelerators_.count(spec.name)) throw Error(fmt::format("accelerator '{}' is defined twice", spec.name));
  accelerators_.emplace(spec.name, std::move(spec));
}

void Catalog::add_datacenter(DatacenterSpec spec) {
  if (spec.name.empty()) throw Error("add_datacenter: the datacenter has no name");
  if (datacenters_.count(spec.name)) throw Error(fmt::format("datacenter '{}' is defined twice", spec.name));
  datacenters_.emplace(spec.name, std::move(spec));
}

}  // namespace moesim::catalog
