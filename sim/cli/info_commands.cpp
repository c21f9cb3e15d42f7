// SPDX-License-Identifier: Apache-2.0
#include <cctype>
#include <cmath>
#include <initializer_list>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/units.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim/store/store.hpp"
#include "moesim/workload/training_step.hpp"
#include "record.hpp"

namespace moesim::cli {

using nlohmann::json;

int cmd_explain(bool markdown, const std::vector<std::string>& keys) {
  std::cout << (markdown ? scenario::explain_markdown(keys) : scenario::explain_text(keys));
  return 0;
}

int cmd_list(const GlobalOptions& g, const std::string& what, const std::string& filter) {
  // --filter matches any of an entry's names (key, display name, region, country, zone), ignoring case.
  const auto lower = [](std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  const std::string needle = lower(filter);
  auto keep = [&](std::initializer_list<std::string> names) {
    if (needle.empty()) return true;
    for (const auto& n : names)
      if (lower(n).find(needle) != std::string::npos) return true;
    return false;
  };
  std::size_t shown = 0;
  if (what == "models") {
    for (const auto& n : workload::step_builder_names())
      if (keep({n})) {
        std::cout << n << "\n";
        ++shown;
      }
  } else {
  const catalog::Catalog c = load_catalog(g);
  if (what == "accelerators") {
    for (const auto& [n, a] : c.accelerators())
      if (keep({n, a.display_name})) {
        ++shown;
        // No bf16 peak (V100: fp16 tensor cores only) prints "n/a", not 0.0.
        const auto bf16 = a.peak_matmul_flops_per_s.find("bf16");
        std::cout << fmt::format("{:<10} {:<24} {:>7} TFLOP/s bf16  {:>6.1f} GiB HBM  {:>5.0f} W full\n", n, a.display_name,
                                 bf16 == a.peak_matmul_flops_per_s.end() || !(bf16->second > 0.0)
                                     ? std::string("n/a")
                                     : fmt::format("{:.1f}", bf16->second / 1e12),
                                 a.hbm_bytes / units::kGiB, a.full_w);
      }
  } else if (what == "datacenters") {
    for (const auto& [n, d] : c.datacenters())
      if (keep({n, d.display_name, d.location, d.cloud_region, d.country_iso_code, d.grid_zone}) &&
          n.rfind(catalog::kGridDatacenterPrefix, 0) != 0 && ++shown)
        std::cout << fmt::format("{:<40} PUE {:.2f}  gross {:.3f} kg/kWh  net {}  CFE {}\n", n, d.pue, d.gross_kgco2e_per_kwh,
                                 d.net_kgco2e_per_kwh ? fmt::format("{:.3f}", *d.net_kgco2e_per_kwh) : "-",
                                 d.cfe_fraction ? fmt::format("{:.0f} %", 100 * *d.cfe_fraction) : "-");
    if (filter.empty())
      std::cout << fmt::format("(and every grid zone as '{}<grid key>': moesim list grid)\n", catalog::kGridDatacenterPrefix);
  } else {
    for (const auto& k : c.grid_keys()) {
      const auto& gi = c.grid(k);
      if (keep({k, gi.zone_name, gi.zone})) {
        ++shown;
        std::cout << fmt::format("{:<40} {:.3f} kg/kWh  {}  ({})\n", k, gi.kgco2e_per_kwh, gi.zone_name, gi.licence);
      }
    }
  }
  }
  if (shown == 0 && !filter.empty())
    std::cerr << fmt::format("moesim: no {} match '{}' (the filter matches names, display names, regions, countries and "
                             "zones, ignoring case){}\n",
                             what, filter, what == "datacenters" ? "; grid zones: moesim list grid --filter TEXT" : "");
  return 0;
}

namespace {

/** A quantity shown in the largest of `steps` ({size of the unit in SI, its symbol}, ascending) in which it reads at
 *  least 1 (the smallest below that), to three significant digits with its unit: "15.6 Wh", "1.23 GWh". */
std::string scaled_text(double si, std::initializer_list<std::pair<double, const char*>> steps) {
  const std::pair<double, const char*>* chosen = steps.begin();
  for (const auto& s : steps)
    if (std::fabs(si) >= s.first) chosen = &s;
  return fmt::format("{} {}", reports::format_value(si / chosen->first, 3), chosen->second);
}

}  // namespace

std::string scaled_energy_text(double joules) {
  constexpr double kJoulesPerWh = units::kJoulesPerKwh / 1e3;  // SI prefix k = 1e3
  constexpr double kJoulesPerGwh = units::kJoulesPerMwh * 1e3;  // SI prefix G = 1e3 M
  return scaled_text(joules, {{kJoulesPerWh, "Wh"}, {units::kJoulesPerKwh, "kWh"}, {units::kJoulesPerMwh, "MWh"}, {kJoulesPerGwh, "GWh"}});
}

std::string scaled_mass_text(double kg) {
  constexpr double kKgPerGram = 1.0 / units::kGramsPerKg;
  constexpr double kKgPerKilotonne = units::kKgPerTonne * 1e3;  // SI prefix k = 1e3
  return scaled_text(kg, {{kKgPerGram, "g"}, {1.0, "kg"}, {units::kKgPerTonne, "t"}, {kKgPerKilotonne, "kt"}});
}

int cmd_runs_list(const RunsOptions& o) {
  store::Store db(o.db, store::Store::Mode::read_only);
  const auto runs = db.list_runs();
  if (o.json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : runs)
      a.push_back({{"id", r.id}, {"kind", r.kind}, {"scenario", r.scenario_name}, {"status", store::to_string(r.status)}, {"created_at_utc", r.created_at_utc},
                   {"comparison_id", r.comparison_id ? nlohmann::json(*r.comparison_id) : nlohmann::json(nullptr)},
                   {"alternative", r.alternative_label},
                   {"point_hash", r.point_hash.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.point_hash)},
                   {"train_days", r.train_days ? nlohmann::json(*r.train_days) : nlohmann::json(nullptr)},
                   {"facility_energy_mwh", r.facility_energy_mwh ? nlohmann::json(*r.facility_energy_mwh) : nlohmann::json(nullptr)},
                   {"co2e_gross_t", r.co2e_gross_t ? nlohmann::json(*r.co2e_gross_t) : nlohmann::json(nullptr)}});
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  // Every kind in one table. A serving run's window draws a few Wh where a training job draws MWh, so each cell carries
  // its own unit (`runs show ID` gives the same figures; `--json` keeps fixed units: MWh and t).
  std::cout << fmt::format("{:>5}  {:<9} {:<28} {:<9} {:<20} {:>10} {:>15} {:>12}\n", "id", "kind", "scenario", "status", "created (UTC)",
                           "days", "facility energy", "CO2e gross");
  // Three significant digits, as the comparison table.
  auto opt = [](const std::optional<double>& v) { return v ? reports::format_value(*v, 3) : std::string("-"); };
  auto energy = [](const std::optional<double>& mwh) { return mwh ? scaled_energy_text(*mwh * units::kJoulesPerMwh) : std::string("-"); };
  auto mass = [](const std::optional<double>& t) { return t ? scaled_mass_text(*t * units::kKgPerTonne) : std::string("-"); };
  for (const auto& r : runs)
    std::cout << fmt::format("{:>5}  {:<9} {:<28} {:<9} {:<20} {:>10} {:>15} {:>12}\n", r.id, r.kind, r.scenario_name, store::to_string(r.status),
                             r.created_at_utc.substr(0, 19), opt(r.train_days), energy(r.facility_energy_mwh), mass(r.co2e_gross_t));
  return 0;
}

int cmd_runs_show(const RunsOptions& o) {
  store::Store db(o.db, store::Store::Mode::read_only);
  const store::RunRecord r = db.get_run(o.id);
  if (o.json)
    std::cout << record_json(r).dump(2) << "\n";
  else
    std::cout << record_summary(r);
  return 0;
}

int cmd_runs_requests(const RunsOptions& o) {
  store::Store db(o.db, store::Store::Mode::read_only);
  const store::RunRecord r = db.get_run(o.id);
  if (r.kind != "serving")
    throw Error(fmt::format("run {} in {} is a {} run: only serving runs have request timings", o.id, o.db, r.kind));
  const std::vector<store::RequestTiming> timings = db.request_timings(o.id);
  if (timings.empty())
    throw Error(fmt::format("run {} in {} stored no request timings: run the scenario with serving.record_requests: true "
                            "to keep them",
                            o.id, o.db));
  // Derived as the run's metrics are: TTFT from arrival to the first token, TPOT over the tokens after the first (none
  // for a one-token output), E2E from arrival to the last token.
  auto tpot = [](const store::RequestTiming& q) {
    return q.output_tokens > 1 ? std::optional<double>((q.end_s - q.first_token_s) / (q.output_tokens - 1)) : std::nullopt;
  };
  if (o.json) {
    json out = json::array();
    for (std::size_t i = 0; i < timings.size(); ++i) {
      const auto& q = timings[i];
      const auto t = tpot(q);
      out.push_back({{"request", i}, {"arrival_s", q.arrival_s}, {"first_token_s", q.first_token_s}, {"end_s", q.end_s},
                     {"queue_s", q.queue_s}, {"ttft_s", q.first_token_s - q.arrival_s}, {"tpot_s", t ? json(*t) : json(nullptr)},
                     {"e2e_s", q.end_s - q.arrival_s}, {"prompt_tokens", q.prompt_tokens}, {"output_tokens", q.output_tokens},
                     {"replica", q.replica}, {"preemptions", q.preemptions}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "request,arrival_s,first_token_s,end_s,queue_s,ttft_s,tpot_s,e2e_s,prompt_tokens,output_tokens,replica,preemptions\n";
  for (std::size_t i = 0; i < timings.size(); ++i) {
    const auto& q = timings[i];
    const auto t = tpot(q);
    std::cout << fmt::format("{},{},{},{},{},{},{},{},{},{},{},{}\n", i, q.arrival_s, q.first_token_s, q.end_s, q.queue_s,
                             q.first_token_s - q.arrival_s, t ? fmt::format("{}", *t) : std::string(), q.end_s - q.arrival_s,
                             q.prompt_tokens, q.output_tokens, q.replica, q.preemptions);
  }
  return 0;
}

}  // namespace moesim::cli
