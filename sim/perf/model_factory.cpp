// SPDX-License-Identifier: Apache-2.0
// Chooses the compute-time model of an accelerator: measured tables, transferred efficiencies, or
// the published-efficiency roofline.
#include "moesim/perf/model_factory.hpp"

#include <algorithm>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/perf/measured_model.hpp"
#include "moesim/perf/measured_profile.hpp"
#include "moesim/perf/transfer_model.hpp"

namespace moesim::perf {

namespace fs = std::filesystem;

namespace {

/** Catalog accelerator -> device slugs of the boards it describes. The slugs are what kernels/
 *  device_slug() makes of the CUDA device name of that board (profiles/measured/README.md); the
 *  board is the one named in the catalog entry's display_name. */
const std::map<std::string, std::vector<std::string>>& slug_table() {
  static const std::map<std::string, std::vector<std::string>> t = {
      {"h100", {"h100_sxm"}},                // "NVIDIA H100 80GB HBM3" (SXM5 80GB)
      {"h200", {"h200"}},                    // "NVIDIA H200" (SXM 141GB)
      {"a100", {"a100_sxm4_80gb"}},          // "NVIDIA A100-SXM4-80GB"
      {"v100", {"tesla_v100_sxm2_32gb"}},    // "Tesla V100-SXM2-32GB"
  };
  return t;
}

/** Loads a profile found as `file` (stem `stem`) and checks it may be used. */
std::shared_ptr<const MeasuredProfile> load_checked(const fs::path& file, const std::string& stem, bool allow_synthetic) {
  auto p = std::make_shared<const MeasuredProfile>(MeasuredProfile::load(file.string()));
  const auto owner = accelerator_for_device(p->device());
  if (p->device() != stem && !(owner && *owner == stem))
    throw Error(fmt::format("{}: provenance.device is '{}' but the file is named '{}.json'; a profile is named after its device slug "
                            "(profiles/measured/README.md) or the catalog accelerator it belongs to",
                            file.string(), p->device(), stem));
  if (!p->measured() && !allow_synthetic)
    throw Error(fmt::format("{}: provenance says \"measured\": false{}; only real profiler runs may live under profiles/measured/ "
                            "(README there), refusing to use it as measured data",
                            file.string(), p->synthetic() ? " (a synthetic fixture)" : ""));
  return p;
}

}  // namespace

std::vector<std::string> device_slugs_for(const std::string& accelerator) {
  std::vector<std::string> out;
  auto it = slug_table().find(accelerator);
  if (it != slug_table().end()) out = it->second;
  if (std::find(out.begin(), out.end(), accelerator) == out.end()) out.push_back(accelerator);
  return out;
}

std::optional<std::string> accelerator_for_device(const std::string& device_slug) {
  for (const auto& [acc, slugs] : slug_table())
    if (std::find(slugs.begin(), slugs.end(), device_slug) != slugs.end()) return acc;
  return std::nullopt;
}

std::unique_ptr<ComputeTimeModel> make_compute_model(const catalog::AcceleratorSpec& accel, const EfficiencyTable& efficiency,
                                                     const ModelSources& sources) {
  auto roofline = [&] { return std::make_unique<RooflineModel>(accel, efficiency); };
  std::error_code ec;
  if (sources.measured_dir.empty() || !fs::is_directory(sources.measured_dir, ec)) return roofline();
  const fs::path dir(sources.measured_dir);

  // 1. A profile of this very device: its tables, and its own calibration outside them.
  for (const std::string& slug : device_slugs_for(accel.name)) {
    const fs::path file = dir / (slug + ".json");
    if (!fs::is_regular_file(file, ec)) continue;
    auto profile = load_checked(file, slug, sources.allow_synthetic);
    const DeviceRates rates = profile_rates(*profile, accel);
    auto cal = std::make_shared<const Calibration>(Calibration::fit(*profile, rates, accel));
    auto transfer = std::make_unique<TransferModel>(accel, cal, rates, roofline());
    return std::make_unique<MeasuredTableModel>(accel, profile, std::move(transfer));
  }
  // TPUs keep the published efficiencies (see the header).
  if (accel.kind != catalog::AcceleratorKind::gpu) return roofline();

  // 2. A profile of another catalog GPU, first in file-name order.
  std::vector<fs::path> files;
  for (const auto& de : fs::directory_iterator(dir, ec))
    if (de.is_regular_file() && de.path().extension() == ".json") files.push_back(de.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    const std::string stem = file.stem().string();
    std::optional<std::string> owner = accelerator_for_device(stem);
    if (!owner && sources.accelerator && sources.accelerator(stem)) owner = stem;
    if (!owner || !sources.accelerator) continue;  // a device the catalog does not describe: no datasheet to scale by
    const std::optional<catalog::AcceleratorSpec> spec = sources.accelerator(*owner);
    if (!spec || spec->kind != catalog::AcceleratorKind::gpu) continue;
    auto profile = load_checked(file, stem, sources.allow_synthetic);
    auto cal = std::make_shared<const Calibration>(Calibration::fit(*profile, profile_rates(*profile, spec), spec));
    return std::make_unique<TransferModel>(accel, cal, transfer_target_rates(accel, *profile, spec), roofline());
  }
  return roofline();
}

std::unique_ptr<ComputeTimeModel> make_compute_model(const catalog::AcceleratorSpec& accel, const EfficiencyTable& efficiency,
                                                     const std::string& profiles_dir) {
  ModelSources s;
  s.measured_dir = profiles_dir + "/measured";
  s.accelerator = [profiles_dir](const std::string& name) -> std::optional<catalog::AcceleratorSpec> {
    const std::string file = profiles_dir + "/accelerators/" + name + ".yaml";
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) return std::nullopt;
    return catalog::load_accelerator_file(file);
  };
  return make_compute_model(accel, efficiency, s);
}

}  // namespace moesim::perf
