// SPDX-License-Identifier: Apache-2.0
#include "moesim/energy/accounting.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"

namespace moesim::energy {

namespace {

InputError at(const std::string& file, const YAML::Node& n, const std::string& key, const std::string& msg) {
  return InputError(file, n.Mark().line + 1, n.Mark().column + 1, key, msg);
}

double sourced_number(const std::string& file, const YAML::Node& n, const std::string& key, std::string* source) {
  if (!n || !n.IsMap() || !n["value"] || !n["source"])
    throw at(file, n, key, "expected {value: NUMBER, source: \"citation\"}");
  double v = 0.0;
  if (!YAML::convert<double>::decode(n["value"], v) || v < 0.0) throw at(file, n["value"], key + ".value", "expected a number >= 0");
  if (source) *source += key + ": " + n["source"].as<std::string>() + " ";
  return v;
}

YAML::Node load_yaml(const std::string& file) {
  try {
    return YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    throw Error(fmt::format("cannot read {}", file));
  } catch (const YAML::Exception& e) {
    throw InputError(file, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg);
  }
}

}  // namespace

NetworkEnergyTable NetworkEnergyTable::load(const std::string& profiles_dir) {
  NetworkEnergyTable t;
  t.file_ = profiles_dir + "/network.yaml";
  const YAML::Node root = load_yaml(t.file_);
  const YAML::Node classes = root["link_classes"];
  if (!classes || !classes.IsMap()) throw InputError(t.file_, 1, 1, "link_classes", "expected a mapping of link classes");
  for (std::size_t c = 0; c < system::kLinkClassCount; ++c) {
    const std::string name = system::to_string(static_cast<system::LinkClass>(c));
    const YAML::Node n = classes[name];
    if (!n) throw InputError(t.file_, 1, 1, "link_classes." + name, "missing link class (need ici, nvlink, nic, fabric, wan)");
    LinkClassEnergy e;
    e.energy_per_bit_j = sourced_number(t.file_, n["energy_per_bit_j"], "link_classes." + name + ".energy_per_bit_j", &e.source);
    e.idle_w_per_link = sourced_number(t.file_, n["idle_w_per_link"], "link_classes." + name + ".idle_w_per_link", &e.source);
    const std::string inc = n["included_in"] ? n["included_in"].as<std::string>() : "";
    if (inc == "chip") e.included_in = IncludedIn::chip;
    else if (inc == "host_overhead") e.included_in = IncludedIn::host_overhead;
    else if (inc == "none") e.included_in = IncludedIn::none;
    else throw at(t.file_, n, "link_classes." + name + ".included_in", "expected one of: chip, host_overhead, none");
    t.classes_[c] = std::move(e);
  }
  return t;
}

EmbodiedFigures load_embodied(const std::string& profiles_dir, const catalog::AcceleratorSpec& accel) {
  const std::string file = profiles_dir + "/embodied.yaml";
  const YAML::Node root = load_yaml(file);
  const YAML::Node n = root["accelerators"] ? root["accelerators"][accel.name] : YAML::Node();
  if (!n) throw Error(fmt::format("{}: no embodied-carbon entry for accelerator '{}'", file, accel.name));
  EmbodiedFigures f;
  f.carbon_per_area_kgco2e_per_cm2 =
      sourced_number(file, n["carbon_per_area_kgco2e_per_cm2"], "accelerators." + accel.name + ".carbon_per_area_kgco2e_per_cm2", &f.source);
  if (n["other_fixed_kgco2e"])
    f.other_fixed_kgco2e = sourced_number(file, n["other_fixed_kgco2e"], "accelerators." + accel.name + ".other_fixed_kgco2e", &f.source);
  if (!accel.die_area_mm2 || !accel.lifetime_years)
    throw Error(fmt::format("accelerator '{}' has no die area or lifetime in its profile: embodied carbon unavailable", accel.name));
  constexpr double kMm2PerCm2 = 100.0;                           // 1 cm^2 = 100 mm^2
  constexpr double kSecondsPerYear = 365.0 * units::kSecondsPerDay;  // LLMCarbon counts 365-day years
  f.die_area_cm2 = *accel.die_area_mm2 / kMm2PerCm2;
  f.lifetime_s = *accel.lifetime_years * kSecondsPerYear;
  return f;
}

catalog::DatacenterSpec resolve_datacenter(const scenario::PlacementEntry& p, const catalog::Catalog& catalog) {
  return p.inline_spec ? *p.inline_spec : catalog.datacenter(p.datacenter);
}

double Accounting::it_energy_j() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.it_energy_j;
  return s;
}
double Accounting::network_energy_j() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.network_energy_j;
  return s;
}
double Accounting::facility_energy_j() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.facility_energy_j;
  return s;
}
double Accounting::co2e_gross_kg() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.co2e_gross_kg;
  return s;
}
double Accounting::co2e_net_kg() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.co2e_net_kg;
  return s;
}
double Accounting::embodied_co2e_kg() const {
  double s = 0.0;
  for (const auto& x : sites) s += x.embodied_co2e_kg;
  return s;
}

Accounting account(const engine::JobResult& job, const scenario::Scenario& s, const catalog::Catalog& catalog,
                   const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied) {
  Accounting a;
  a.duration_pinned = s.training.duration_days.has_value();
  a.duration_s = a.duration_pinned ? *s.training.duration_days * units::kSecondsPerDay : job.train_time_s;
  a.power_pinned = s.energy.average_chip_power_w.has_value();
  a.embodied = embodied.has_value();
  if (!(job.step_time_s > 0.0)) throw Error("energy accounting: the simulated step time is zero");
  const double steps_in_job = a.duration_s / job.step_time_s;  // equals job.steps unless the duration is pinned
  double chip_w_sum = 0.0;
  int chips = 0;
  for (std::size_t i = 0; i < job.sites.size(); ++i) {
    const engine::SiteStepFigures& f = job.sites[i];
    SiteAccount acc;
    acc.datacenter = resolve_datacenter(s.placement[i], catalog);
    acc.chips = f.chips;
    acc.share = f.share;
    const double sim_power_w = f.chip_energy_per_step_j / job.step_time_s;  // all chips of the site
    acc.it_energy_j = a.power_pinned ? *s.energy.average_chip_power_w * f.chips * a.duration_s : sim_power_w * a.duration_s;
    chip_w_sum += acc.it_energy_j / a.duration_s;
    chips += f.chips;
    for (std::size_t c = 0; c < system::kLinkClassCount; ++c) {
      const auto cls = static_cast<system::LinkClass>(c);
      const LinkClassEnergy& e = network.get(cls);
      if (e.included_in != IncludedIn::none) continue;
      const std::string name = system::to_string(cls);
      double links = 0.0;
      if (cls == system::LinkClass::wan) {
        auto it = f.link_counts.find("wan_half");
        links = it == f.link_counts.end() ? 0.0 : 0.5 * it->second;
      } else {
        auto it = f.link_counts.find(name);
        links = it == f.link_counts.end() ? 0.0 : it->second;
      }
      const double dynamic = f.link_bytes_per_step[c] * units::kBitsPerByte * e.energy_per_bit_j * steps_in_job;
      const double idle = e.idle_w_per_link * links * a.duration_s;
      acc.network_energy_by_class_j[name] = dynamic + idle;
      acc.network_energy_j += dynamic + idle;
    }
    acc.facility_energy_j = (acc.it_energy_j + acc.network_energy_j) * acc.datacenter.pue;
    const double kwh = units::joules_to_kwh(acc.facility_energy_j);
    acc.co2e_gross_kg = kwh * acc.datacenter.gross_kgco2e_per_kwh;
    acc.co2e_net_kg = kwh * acc.datacenter.net_or_gross_kgco2e_per_kwh();
    if (embodied) {
      acc.embodied_co2e_kg = f.chips * (embodied->die_area_cm2 * embodied->carbon_per_area_kgco2e_per_cm2 + embodied->other_fixed_kgco2e) *
                             a.duration_s / embodied->lifetime_s;
    }
    a.sites.push_back(std::move(acc));
  }
  a.average_chip_power_w = chips > 0 ? chip_w_sum / chips : 0.0;
  return a;
}

}  // namespace moesim::energy
