// SPDX-License-Identifier: Apache-2.0
#include "moesim/energy/accounting.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/energy/hourly.hpp"
#include "moesim/engine/serving.hpp"

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
  if (!n["source"].IsScalar()) throw at(file, n["source"], key + ".source", "expected a citation (text)");
  if (source) *source += key + ": " + n["source"].Scalar() + " ";
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

/** What a serving run's hourly accounting adds to a coverage error: where its measurement window lies after
 *  energy.start_time_utc, and the keys that place it. Empty for training. */
std::string window_context(const scenario::Scenario& s, double offset_s, std::optional<double> end_s) {
  if (!s.is_serving()) return "";
  const bool offline = s.serving->arrival.type == "offline";
  return fmt::format(" (a serving run is measured over its window, {:g} s to {} after energy.start_time_utc: {})", offset_s,
                     end_s ? fmt::format("{:g} s", *end_s) : std::string("its last completion"),
                     offline ? "from the start to the last completion"
                             : "from serving.warmup_s to serving.duration_s, or to the last arrival when the requests end first");
}

/** Sets the site's gross and net CO2e from its facility energy (see account()): the run is `duration_s` long from
 *  `offset_s` after the start time (a serving window after its warm-up), drawing its energy with the shape of
 *  `profile` (empty: constant power). */
void apply_intensity(SiteAccount& acc, const std::string& series_path, const std::optional<std::int64_t>& start_s,
                     double offset_s, double duration_s, const PowerProfile& profile, const std::string& context) {
  const catalog::DatacenterSpec& dc = acc.datacenter;
  IntensityBasis& b = acc.intensity;
  const double kwh = units::joules_to_kwh(acc.facility_energy_j);
  if (start_s) {
    // In doubles first: a job of a billion days must not overflow the timestamp.
    const double begin_s = static_cast<double>(*start_s) + std::floor(offset_s);
    const double end_s = static_cast<double>(*start_s) + std::ceil(offset_s + duration_s);
    b.job_start_utc = begin_s < 9.2e18 ? format_utc_timestamp(static_cast<std::int64_t>(begin_s)) : "beyond the year 9999";
    b.job_end_utc = end_s < 9.2e18 ? format_utc_timestamp(static_cast<std::int64_t>(end_s)) : "beyond the year 9999";
  }
  if (!start_s || series_path.empty()) {
    b.gross = GrossBasis::annual;
    b.net = dc.net_kgco2e_per_kwh ? NetBasis::annual_net : NetBasis::annual_gross_fallback;
    acc.co2e_gross_kg = kwh * dc.gross_kgco2e_per_kwh;
    acc.co2e_net_kg = kwh * dc.net_or_gross_kgco2e_per_kwh();
    if (start_s)
      b.note = "energy.start_time_utc is set but this datacenter has no hourly_intensity_csv: annual intensities used";
    else if (!series_path.empty())
      b.note = fmt::format("hourly series {} not used: the scenario has no energy.start_time_utc; annual intensities used",
                           series_path);
  } else {
    const HourlyIntensity series = HourlyIntensity::load(series_path);
    HourlyEmissions e;
    try {
      e = series.integrate(*start_s, offset_s, duration_s, acc.facility_energy_j, profile);
    } catch (const Error& err) {
      throw Error(fmt::format("datacenter '{}': {}{}", dc.name, err.what(), context));
    }
    b.gross = GrossBasis::hourly;
    b.series_file = series_path;
    b.series_covers = series.covered_range();
    b.series_hours = series.hours();
    b.first_hour_utc = format_utc_timestamp(series.first_hour_utc_s() + static_cast<std::int64_t>(e.first_hour) *
                                                                   static_cast<std::int64_t>(units::kSecondsPerHour));
    b.hours_touched = e.hours_touched;
    acc.co2e_gross_kg = e.gross_kgco2e;
    if (e.market_kgco2e) {
      b.net = NetBasis::hourly_market;
      acc.co2e_net_kg = *e.market_kgco2e;
    } else if (dc.net_kgco2e_per_kwh) {
      b.net = NetBasis::annual_net;
      acc.co2e_net_kg = kwh * *dc.net_kgco2e_per_kwh;
    } else {
      b.net = NetBasis::hourly_gross_fallback;
      acc.co2e_net_kg = acc.co2e_gross_kg;
    }
  }
  // The WAN's energy is the carrier networks' (outside the datacenter, no PUE: account()): the datacenter operator's
  // contractual instruments (PPAs, certificates), which make its market-based (net) figure, do not cover another
  // company's electricity, which the GHG Protocol's Scope 2 Guidance (2015) leaves to a location-based figure (it is
  // the operator's Scope 3). The WAN joules take the gross intensity in the net figure too.
  const double wan_kwh = units::joules_to_kwh(acc.wan_energy_j);
  if (wan_kwh > 0.0 && kwh > 0.0) acc.co2e_net_kg += wan_kwh * (acc.co2e_gross_kg - acc.co2e_net_kg) / kwh;
  b.effective_gross_kgco2e_per_kwh = kwh > 0.0 ? acc.co2e_gross_kg / kwh : 0.0;
  b.effective_net_kgco2e_per_kwh = kwh > 0.0 ? acc.co2e_net_kg / kwh : 0.0;
}

}  // namespace

std::string to_string(GrossBasis b) { return b == GrossBasis::hourly ? "hourly" : "annual"; }

std::string to_string(NetBasis b) {
  switch (b) {
    case NetBasis::annual_net: return "annual_net";
    case NetBasis::annual_gross_fallback: return "annual_gross_fallback";
    case NetBasis::hourly_market: return "hourly_market";
    case NetBasis::hourly_gross_fallback: return "hourly_gross_fallback";
  }
  return "unknown";
}

nlohmann::json to_json(const IntensityBasis& b) {
  nlohmann::json j = {{"gross", to_string(b.gross)},
                      {"net", to_string(b.net)},
                      {"effective_gross_kgco2e_per_kwh", b.effective_gross_kgco2e_per_kwh},
                      {"effective_net_kgco2e_per_kwh", b.effective_net_kgco2e_per_kwh}};
  if (!b.job_start_utc.empty()) {
    j["job_start_utc"] = b.job_start_utc;
    j["job_end_utc"] = b.job_end_utc;
  }
  if (b.gross == GrossBasis::hourly) {
    j["series_file"] = b.series_file;
    j["series_covers"] = b.series_covers;
    j["series_hours"] = b.series_hours;
    j["first_hour_utc"] = b.first_hour_utc;
    j["hours_touched"] = b.hours_touched;
  }
  if (!b.note.empty()) j["note"] = b.note;
  return j;
}

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
    const std::string inc = n["included_in"] && n["included_in"].IsScalar() ? n["included_in"].Scalar() : "";
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

std::string hourly_series_path(const scenario::PlacementEntry& p, const catalog::DatacenterSpec& dc,
                               const scenario::Scenario& s) {
  namespace fs = std::filesystem;
  if (dc.hourly_intensity_csv.empty()) return "";
  const fs::path csv(dc.hourly_intensity_csv);
  if (!p.inline_spec || csv.is_absolute()) return csv.string();
  // Absolute, so that the run's provenance names the file whatever the working directory was.
  const fs::path base = s.source_file.empty() ? fs::path() : fs::path(s.source_file).parent_path();
  return fs::absolute(base / csv).lexically_normal().string();
}

std::optional<std::int64_t> start_time_utc_s(const scenario::Scenario& s) {
  if (s.energy.start_time_utc.empty()) return std::nullopt;
  try {
    return parse_utc_timestamp_s(s.energy.start_time_utc);
  } catch (const Error& e) {
    throw InputError(s.source_file, 0, 0, "energy.start_time_utc", e.what());
  }
}

void check_hourly_inputs(const scenario::Scenario& s, const catalog::Catalog& catalog) {
  const std::optional<std::int64_t> start = start_time_utc_s(s);
  // A pinned duration lets the whole run be checked now; otherwise only its start. A serving run is accounted over its
  // measurement window, known before simulating where the arrivals fix its end (engine::known_window; found once, when
  // a series needs it).
  double offset_s = 0.0;
  double known_duration_s = s.training.duration_days ? *s.training.duration_days * units::kSecondsPerDay : 0.0;
  std::optional<engine::KnownWindow> window;
  for (const auto& p : s.placement) {
    const catalog::DatacenterSpec dc = resolve_datacenter(p, catalog);
    const std::string path = hourly_series_path(p, dc, s);
    if (path.empty()) continue;
    // Read and checked even when no start time uses it: a broken series is found now, not on first use.
    const HourlyIntensity series = HourlyIntensity::load(path);
    if (!start) continue;
    if (s.is_serving() && !window) {
      window = engine::known_window(s);
      offset_s = window->start_s;
      known_duration_s = window->end_s ? std::max(0.0, *window->end_s - window->start_s) : 0.0;
    }
    try {
      series.integrate(*start, offset_s, known_duration_s, 0.0, PowerProfile{});
    } catch (const Error& err) {
      throw Error(fmt::format("datacenter '{}': {}{}", dc.name, err.what(),
                              window_context(s, offset_s, window ? window->end_s : std::nullopt)));
    }
  }
}

namespace {
double total(const std::vector<SiteAccount>& sites, double SiteAccount::*field) {
  double sum = 0.0;
  for (const auto& x : sites) sum += x.*field;
  return sum;
}
}  // namespace

double SiteAccount::applied_gross_kgco2e_per_kwh() const {
  return intensity.gross == GrossBasis::hourly ? intensity.effective_gross_kgco2e_per_kwh : datacenter.gross_kgco2e_per_kwh;
}

std::optional<double> SiteAccount::applied_net_kgco2e_per_kwh() const {
  switch (intensity.net) {
    case NetBasis::annual_net: return datacenter.net_kgco2e_per_kwh;
    case NetBasis::annual_gross_fallback: return std::nullopt;
    case NetBasis::hourly_market:
    case NetBasis::hourly_gross_fallback: return intensity.effective_net_kgco2e_per_kwh;
  }
  return std::nullopt;
}

double Accounting::it_energy_j() const { return total(sites, &SiteAccount::it_energy_j); }
double Accounting::network_energy_j() const { return total(sites, &SiteAccount::network_energy_j); }
double Accounting::wan_energy_j() const { return total(sites, &SiteAccount::wan_energy_j); }
double Accounting::facility_energy_j() const { return total(sites, &SiteAccount::facility_energy_j); }
double Accounting::co2e_gross_kg() const { return total(sites, &SiteAccount::co2e_gross_kg); }
double Accounting::co2e_net_kg() const { return total(sites, &SiteAccount::co2e_net_kg); }
double Accounting::embodied_co2e_kg() const { return total(sites, &SiteAccount::embodied_co2e_kg); }

namespace {

/** account() with each site's power profile given (site_profiles[i] for job.sites[i]); none: the job's own. */
Accounting account_sites(const engine::JobResult& job, const scenario::Scenario& s, const catalog::Catalog& catalog,
                         const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied,
                         const std::vector<PowerProfile>* site_profiles) {
  Accounting a;
  a.duration_pinned = s.training.duration_days.has_value();
  a.duration_s = a.duration_pinned ? *s.training.duration_days * units::kSecondsPerDay : job.train_time_s;
  a.power_pinned = s.energy.average_chip_power_w.has_value();
  a.embodied = embodied.has_value();
  const std::optional<std::int64_t> start_s = start_time_utc_s(s);
  if (start_s) a.start_time_utc = format_utc_timestamp(*start_s);
  // A serving run is accounted over its measurement window (engine::window_as_job), which starts after the warm-up,
  // and draws what its power series says, hour by hour (its load follows its arrivals). A training job draws its
  // average power throughout (its power profile repeats every step, far shorter than an hour).
  const double offset_s = s.is_serving() ? engine::window_start_s(*s.serving) : 0.0;
  PowerProfile profile;
  if (s.is_serving() && !a.power_pinned) profile = PowerProfile{job.power_t_s, job.power_w};
  if (site_profiles && site_profiles->size() != job.sites.size())
    throw Error(fmt::format("energy accounting: {} site power profiles for {} sites (internal error)", site_profiles->size(),
                            job.sites.size()));
  const std::string context =
      window_context(s, offset_s, s.is_serving() ? std::optional<double>(offset_s + a.duration_s) : std::nullopt);
  if (job.sites.size() != s.placement.size())
    throw Error(fmt::format("energy accounting: the job has {} sites but the scenario places it in {} datacenters",
                            job.sites.size(), s.placement.size()));
  if (!(job.step_time_s > 0.0)) throw Error("energy accounting: the simulated step time is zero");
  // Two extrapolations from the simulated steps to the job. A pinned duration (training.duration_days: a published
  // training time) changes how long the job ran, not what it did: the same job.steps steps, each moving the same bytes.
  // So what is drawn per second (chip power, idle link power) x duration_s, and what is drawn per bit x the bytes
  // actually moved, job.steps x bytes per step, whatever the duration.
  if (!(job.steps > 0.0)) throw Error("energy accounting: the job has no steps");
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
      const double dynamic = f.link_bytes_per_step[c] * job.steps * units::kBitsPerByte * e.energy_per_bit_j;
      const double idle = e.idle_w_per_link * links * a.duration_s;
      acc.network_energy_by_class_j[name] = dynamic + idle;
      acc.network_energy_j += dynamic + idle;
      if (cls == system::LinkClass::wan) acc.wan_energy_j += dynamic + idle;
    }
    // PUE is the datacenter's overhead on what runs inside it (The Green Grid, White Paper 49). The WAN between
    // sites is drawn by carrier networks (the core routers and optical line systems of Aslan et al. 2018's
    // 0.004 kWh/GB, profiles/network.yaml), outside any datacenter: it is added without the PUE.
    acc.facility_energy_j = (acc.it_energy_j + acc.network_energy_j - acc.wan_energy_j) * acc.datacenter.pue + acc.wan_energy_j;
    acc.datacenter.hourly_intensity_csv = hourly_series_path(s.placement[i], acc.datacenter, s);
    // A site draws with the shape of its own chips' power where it is known (a serving run's sites load differently
    // over time: a trace, a router), else the whole job's.
    const PowerProfile& shape = site_profiles && s.is_serving() && !a.power_pinned ? (*site_profiles)[i] : profile;
    apply_intensity(acc, acc.datacenter.hourly_intensity_csv, start_s, offset_s, a.duration_s, shape, context);
    if (embodied) {
      acc.embodied_co2e_kg = f.chips * (embodied->die_area_cm2 * embodied->carbon_per_area_kgco2e_per_cm2 + embodied->other_fixed_kgco2e) *
                             a.duration_s / embodied->lifetime_s;
    }
    a.sites.push_back(std::move(acc));
  }
  a.average_chip_power_w = chips > 0 ? chip_w_sum / chips : 0.0;
  return a;
}

}  // namespace

Accounting account(const engine::JobResult& job, const scenario::Scenario& s, const catalog::Catalog& catalog,
                   const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied) {
  return account_sites(job, s, catalog, network, embodied, nullptr);
}

Accounting account_serving(const engine::ServingResult& r, const scenario::Scenario& s, const catalog::Catalog& catalog,
                           const NetworkEnergyTable& network, const std::optional<EmbodiedFigures>& embodied) {
  const engine::JobResult job = engine::window_as_job(r);
  const std::vector<std::vector<double>> site_w = engine::window_site_power_w(r);
  if (site_w.size() != job.sites.size()) return account_sites(job, s, catalog, network, embodied, nullptr);
  std::vector<PowerProfile> profiles;
  for (const auto& w : site_w) profiles.push_back(PowerProfile{job.power_t_s, w});
  return account_sites(job, s, catalog, network, embodied, &profiles);
}

}  // namespace moesim::energy
