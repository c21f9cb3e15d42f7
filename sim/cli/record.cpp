// SPDX-License-Identifier: Apache-2.0
#include "record.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "moesim/core/units.hpp"
#include "moesim/core/version.hpp"
#include "serving_record.hpp"

namespace moesim::cli {

using nlohmann::json;

store::RunRecord make_header(const scenario::Scenario& s) {
  store::RunRecord r;
  r.kind = s.is_serving() ? "serving" : "training";
  r.scenario_name = s.name;
  r.scenario_file = s.source_file;
  r.scenario = s.resolved;
  r.seed = s.seed;
  r.moesim_version = kVersion;
  r.git_hash = kGitHash;
  return r;
}

store::RunRecord make_record(const scenario::Scenario& s, const engine::JobResult& job, const energy::Accounting& acc,
                             const catalog::Catalog& catalog, const energy::NetworkEnergyTable& network) {
  store::RunRecord r = make_header(s);
  auto add = [&](const std::string& name, double value, const std::string& unit) { r.metrics.push_back({name, value, unit}); };
  add("step_time_s", job.step_time_s, "s");
  add("step_time_spread_s", job.step_time_spread_s, "s");
  add("steps", job.steps, "steps");
  add("tokens", job.tokens, "tokens");
  add("tokens_derived", job.tokens_derived ? 1.0 : 0.0, "bool");
  add(store::metric_names::kTrainTime_s, job.train_time_s, "s");
  add("tokens_dropped_fraction", job.tokens_dropped_fraction, "1");
  add("first_choice_dropped_fraction", job.first_choice_dropped_fraction, "1");
  add("second_choice_skipped_fraction", job.second_choice_skipped_fraction, "1");
  add("mfu", job.mfu, "1");
  add("hfu", job.hfu, "1");
  add("model_flops_per_step", job.model_flops_per_step, "FLOP");
  add("hardware_flops_per_step", job.hardware_flops_per_step, "FLOP");
  add("chips", job.chips, "chips");
  add("devices", job.devices, "devices");
  add("duration_s", acc.duration_s, "s");
  add("duration_pinned", acc.duration_pinned ? 1.0 : 0.0, "bool");
  add("power_pinned", acc.power_pinned ? 1.0 : 0.0, "bool");
  add("average_chip_power_w", acc.average_chip_power_w, "W");
  add("peak_chip_power_w", job.peak_chip_power_w, "W");
  add("it_energy_j", acc.it_energy_j(), "J");
  add("network_energy_j", acc.network_energy_j(), "J");
  add("wan_energy_j", acc.wan_energy_j(), "J");
  add("facility_energy_j", acc.facility_energy_j(), "J");
  add("co2e_gross_kg", acc.co2e_gross_kg(), "kgCO2e");
  add("co2e_net_kg", acc.co2e_net_kg(), "kgCO2e");
  if (acc.embodied) add("embodied_co2e_kg", acc.embodied_co2e_kg(), "kgCO2e");
  add("memory_params_bytes", job.memory.params_bytes, "B");
  add("memory_grads_bytes", job.memory.grads_bytes, "B");
  add("memory_optimizer_bytes", job.memory.optimizer_bytes, "B");
  add("memory_activations_bytes", job.memory.activations_bytes, "B");
  add("memory_capacity_bytes", job.memory.capacity_bytes, "B");
  add("rematerialization", job.memory.remat ? 1.0 : 0.0, "bool");
  add("selective_recomputation", job.memory.selective ? 1.0 : 0.0, "bool");
  for (const auto& [op, b] : job.collective_bytes_per_step) add("collective_bytes_per_step." + op, b, "B");
  double wan = 0.0;
  for (const auto& site : job.sites) wan += site.link_bytes_per_step[static_cast<std::size_t>(system::LinkClass::wan)];
  add("wan_bytes_per_step", wan, "B");
  add("wan_time_per_step_s", job.wan_time_per_step_s, "s");
  add("phases_per_step", job.phases_per_step, "phases");
  add("collectives_detailed", job.collectives_detailed, "collectives");
  add("collectives_memoized", job.collectives_memoized, "collectives");
  add("sim_wall_s", job.sim_wall_s, "s");
  add("steady_state_from_microbatches", job.steady_state_from_microbatches, "micro-batches");

  for (const auto& site : acc.sites) {
    store::DatacenterResult d;
    d.name = site.datacenter.name;
    d.display_name = site.datacenter.display_name.empty() ? site.datacenter.name : site.datacenter.display_name;
    d.country_iso_code = site.datacenter.country_iso_code;
    d.region = site.datacenter.cloud_region.empty() ? site.datacenter.location : site.datacenter.cloud_region;
    d.share = site.share;
    d.chips = site.chips;
    d.pue = site.datacenter.pue;
    d.gross_kgco2e_per_kwh = site.applied_gross_kgco2e_per_kwh();
    d.net_kgco2e_per_kwh = site.applied_net_kgco2e_per_kwh();
    d.cfe_fraction = site.datacenter.cfe_fraction;
    d.it_energy_j = site.it_energy_j;
    d.network_energy_j = site.network_energy_j;
    d.facility_energy_j = site.facility_energy_j;
    d.co2e_gross_kg = site.co2e_gross_kg;
    d.co2e_net_kg = site.co2e_net_kg;
    d.embodied_co2e_kg = site.embodied_co2e_kg;
    r.datacenters.push_back(std::move(d));
  }
  std::set<std::string> kinds;
  for (const auto& [k, v] : job.busy_s) kinds.insert(k);
  for (const auto& [k, v] : job.breakdown_s) kinds.insert(k);
  for (const auto& k : kinds) {
    store::PhaseBreakdown b;
    b.phase_kind = k;
    b.time_s = job.busy_s.count(k) ? job.busy_s.at(k) : 0.0;
    b.critical_path_s = job.breakdown_s.count(k) ? job.breakdown_s.at(k) : 0.0;
    r.breakdown.push_back(std::move(b));
  }
  if (!job.power_t_s.empty()) r.series.push_back({"power_w", "s", "W", job.power_t_s, job.power_w});

  const auto& accel = catalog.accelerator(s.cluster.accelerator);
  json dcs = json::array();
  for (const auto& site : acc.sites)
    dcs.push_back({{"name", site.datacenter.name}, {"sources", site.datacenter.sources}, {"licence", site.datacenter.licence},
                   {"notes", site.datacenter.notes}, {"intensity_basis", energy::to_json(site.intensity)},
                   {"grid_basis", site.datacenter.grid_basis}});
  json net = json::object();
  for (std::size_t c = 0; c < system::kLinkClassCount; ++c) {
    const auto& e = network.get(static_cast<system::LinkClass>(c));
    net[system::to_string(static_cast<system::LinkClass>(c))] = {
        {"energy_per_bit_j", e.energy_per_bit_j}, {"idle_w_per_link", e.idle_w_per_link},
        {"included_in", e.included_in == energy::IncludedIn::chip ? "chip" : e.included_in == energy::IncludedIn::host_overhead ? "host_overhead" : "none"},
        {"source", e.source}};
  }
  r.provenance = {{"moesim_version", kVersion},
                  {"git_hash", kGitHash},
                  {"profiles_dir", catalog.profiles_dir()},
                  {"compute_model", job.compute_model},
                  {"compute_paths", job.compute_paths},
                  {"accelerator", {{"name", accel.name}, {"sources", accel.sources}, {"notes", accel.notes}}},
                  {"power_convention", job.power_convention},
                  {"collective_algorithms", job.algorithms},
                  {"datacenters", dcs},
                  {"network_energy", net},
                  {"routing_exact", job.routing_exact},
                  {"step_times_s", job.step_times_s}};
  return r;
}

std::string assumed_pue_notes(const store::RunRecord& r) {
  // A `grid:` site has no facility of its own: its PUE is the catalog's industry average. Say so where it is used.
  std::string out;
  const json& dcs = r.provenance.contains("datacenters") ? r.provenance["datacenters"] : json::array();
  for (std::size_t k = 0; k < r.datacenters.size(); ++k) {
    const store::DatacenterResult& d = r.datacenters[k];
    if (d.name.rfind(catalog::kGridDatacenterPrefix, 0) != 0) continue;
    std::string source;
    if (k < dcs.size() && dcs[k].contains("sources") && dcs[k]["sources"].contains("pue"))
      source = dcs[k]["sources"]["pue"].get<std::string>();
    out += fmt::format("    {}: PUE {:.2f} is the industry average assumed for grid zones{}; for your facility's PUE give "
                       "an inline datacenter (placement[].datacenter: {{name, pue, grid}})\n",
                       d.name, d.pue, source.empty() ? "" : " (" + source.substr(0, source.find(':')) + ")");
  }
  return out;
}

json incomplete_record_json(const store::RunRecord& r) {
  // A failed or unfinished training run has no results: its figures are null (as in `runs list --json`), never 0. A
  // serving run keeps the serving shape (serving_record_json).
  json out = {{"run_id", r.id},
              {"kind", r.kind.empty() ? "training" : r.kind},
              {"scenario", r.scenario_name},
              {"status", store::to_string(r.status)},
              {"error", r.error_message.empty() ? json(nullptr) : json(r.error_message)},
              {"created_at_utc", r.created_at_utc},
              {"finished_at_utc", r.finished_at_utc.empty() ? json(nullptr) : json(r.finished_at_utc)},
              {"seed", r.seed},
              {"moesim_version", r.moesim_version},
              {"train_days", nullptr},
              {"facility_energy_mwh", nullptr},
              {"co2e_gross_t", nullptr}};
  if (r.comparison_id) {
    out["comparison_id"] = *r.comparison_id;
    out["alternative"] = r.alternative_label;
  }
  return out;
}

std::string run_heading(const store::RunRecord& r) {
  return r.id > 0 ? fmt::format("moesim run {}", r.id) : std::string("moesim run (not stored)");
}

std::string incomplete_record_summary(const store::RunRecord& r) {
  std::string out = fmt::format("{}: {} ({}{})\n", run_heading(r), r.scenario_name, r.kind == "serving" ? "serving, " : "",
                                store::to_string(r.status));
  if (r.status == store::RunStatus::failed)
    out += fmt::format("  error: {}\n", r.error_message.empty() ? "(none recorded)" : r.error_message);
  out += fmt::format("  started {}{}\n", r.created_at_utc,
                     r.finished_at_utc.empty() ? "" : fmt::format(", ended {}", r.finished_at_utc));
  out += r.status == store::RunStatus::failed
             ? "  no results: the run failed before it completed\n"
             : "  no results yet: the run is still simulating, or its process was killed (a killed run stays `running`)\n";
  return out;
}

json record_json(const store::RunRecord& r) {
  using namespace units;
  // A serving run keeps the serving shape whatever its status (null figures when it has no results).
  if (r.kind == "serving") return serving_record_json(r);
  if (r.status != store::RunStatus::complete) return incomplete_record_json(r);
  json bd = json::object(), busy = json::object();
  for (const auto& b : r.breakdown) {
    if (b.critical_path_s > 0) bd[b.phase_kind] = b.critical_path_s;
    busy[b.phase_kind] = b.time_s;
  }
  json dcs = json::array();
  for (const auto& d : r.datacenters) {
    json o = {{"name", d.name},
              {"display_name", d.display_name},
              {"chips", d.chips},
              {"share", d.share},
              {"pue", d.pue},
              {"gross_kgco2e_per_kwh", d.gross_kgco2e_per_kwh},
              {"net_kgco2e_per_kwh", d.net_kgco2e_per_kwh ? json(*d.net_kgco2e_per_kwh) : json(nullptr)},
              {"cfe_fraction", d.cfe_fraction ? json(*d.cfe_fraction) : json(nullptr)},
              {"it_energy_mwh", joules_to_mwh(d.it_energy_j)},
              {"network_energy_mwh", joules_to_mwh(d.network_energy_j)},
              {"facility_energy_mwh", joules_to_mwh(d.facility_energy_j)},
              {"co2e_gross_t", kg_to_tonnes(d.co2e_gross_kg)},
              {"co2e_net_t", kg_to_tonnes(d.co2e_net_kg)}};
    if (r.metric("embodied_co2e_kg")) o["embodied_co2e_t"] = kg_to_tonnes(d.embodied_co2e_kg);
    dcs.push_back(std::move(o));
  }
  json metrics = json::object();
  for (const auto& m : r.metrics) metrics[m.name] = {{"value", m.value}, {"unit", m.unit}};
  const double train_s = r.metric_or(store::metric_names::kTrainTime_s);
  json out = {{"run_id", r.id},
              {"scenario", r.scenario_name},
              {"status", store::to_string(r.status)},
              {"seed", r.seed},
              {"moesim_version", r.moesim_version},
              {"step_time_s", r.metric_or("step_time_s")},
              {"step_time_spread_s", r.metric_or("step_time_spread_s")},
              {"steps", static_cast<long long>(std::llround(r.metric_or("steps")))},
              {"train_time_s", train_s},
              {"train_days", seconds_to_days(train_s)},
              {"tokens_dropped_fraction", r.metric_or("tokens_dropped_fraction")},
              {"first_choice_dropped_fraction", r.metric_or("first_choice_dropped_fraction")},
              {"second_choice_skipped_fraction", r.metric_or("second_choice_skipped_fraction")},
              {"step_breakdown_s", bd},
              {"step_busy_s", busy},
              {"mfu", r.metric_or("mfu")},
              {"hfu", r.metric_or("hfu")},
              {"chips", static_cast<long long>(r.metric_or("chips"))},
              {"devices", static_cast<long long>(r.metric_or("devices"))},
              {"duration_days", seconds_to_days(r.metric_or("duration_s"))},
              {"duration_pinned", r.metric_or("duration_pinned") != 0.0},
              {"average_chip_power_w", r.metric_or("average_chip_power_w")},
              {"it_energy_mwh", joules_to_mwh(r.metric_or("it_energy_j"))},
              {"network_energy_mwh", joules_to_mwh(r.metric_or("network_energy_j"))},
              {"wan_energy_mwh", joules_to_mwh(r.metric_or("wan_energy_j"))},
              {"facility_energy_mwh", joules_to_mwh(r.metric_or("facility_energy_j"))},
              {"co2e_gross_t", kg_to_tonnes(r.metric_or("co2e_gross_kg"))},
              {"co2e_net_t", kg_to_tonnes(r.metric_or("co2e_net_kg"))},
              {"embodied_co2e_t", r.metric("embodied_co2e_kg") ? json(kg_to_tonnes(r.metric_or("embodied_co2e_kg"))) : json(nullptr)},
              {"datacenters", dcs},
              {"metrics", metrics}};
  if (r.comparison_id) {
    out["comparison_id"] = *r.comparison_id;
    out["alternative"] = r.alternative_label;
  }
  return out;
}

std::string power_limit_text(const store::RunRecord& r) {
  if (!r.scenario.is_object() || !r.scenario.contains("cluster")) return "";
  const nlohmann::json& c = r.scenario["cluster"];
  if (!c.contains("power_limit_w") || !c["power_limit_w"].is_number()) return "";
  return fmt::format("   GPU power limit {:g} W", c["power_limit_w"].get<double>());
}

/** ", selective recomputation (modules)" from the stored scenario's training.recompute_modules. */
std::string selective_text(const store::RunRecord& r) {
  std::string modules = "core_attn";
  if (r.scenario.is_object() && r.scenario.contains("training") && r.scenario["training"].contains("recompute_modules") &&
      r.scenario["training"]["recompute_modules"].is_string())
    modules = r.scenario["training"]["recompute_modules"].get<std::string>();
  return fmt::format(", selective recomputation ({})", modules);
}

/** "   expert all-to-alls overlapped ..." when parallelism.overlap_expert_comm was on. */
std::string overlap_text(const store::RunRecord& r) {
  if (!r.scenario.is_object() || !r.scenario.contains("parallelism")) return "";
  const nlohmann::json& p = r.scenario["parallelism"];
  if (!p.contains("overlap_expert_comm") || !p["overlap_expert_comm"].is_boolean() || !p["overlap_expert_comm"].get<bool>())
    return "";
  const long long sms = p.contains("comm_sms") && p["comm_sms"].is_number_integer() ? p["comm_sms"].get<long long>() : 0;
  return fmt::format("   expert all-to-alls overlapped with compute ({} SMs to communication)", sms);
}

/** "   16-stage pipeline, DualPipe, 120 micro-batches" for a pipelined run (parallelism.pipeline > 1). */
std::string pipeline_text(const store::RunRecord& r) {
  if (!r.scenario.is_object() || !r.scenario.contains("parallelism") || !r.scenario["parallelism"].is_object()) return "";
  const nlohmann::json& p = r.scenario["parallelism"];
  auto integer = [&](const char* key) {
    return p.contains(key) && p[key].is_number_integer() ? p[key].get<long long>() : 1LL;
  };
  const long long stages = integer("pipeline");
  if (stages < 2) return "";
  const std::string schedule = p.contains("schedule") && p["schedule"].is_string() ? p["schedule"].get<std::string>() : "1f1b";
  const std::string name = schedule == "dualpipe"           ? "DualPipe"
                           : schedule == "dualpipev"        ? "DualPipeV"
                           : schedule == "interleaved_1f1b" ? fmt::format("interleaved 1F1B ({} chunks per stage)", integer("virtual_stages"))
                                                            : std::string("1F1B");
  return fmt::format("   {}-stage pipeline, {}, {} micro-batches", stages, name, integer("microbatches"));
}

std::string record_summary(const store::RunRecord& r) {
  using namespace units;
  if (r.status != store::RunStatus::complete) return incomplete_record_summary(r);
  if (r.kind == "serving") return serving_record_summary(r);
  const double step = r.metric_or("step_time_s"), spread = r.metric_or("step_time_spread_s");
  const double train_s = r.metric_or(store::metric_names::kTrainTime_s);
  std::string out;
  out += fmt::format("{}: {} ({})\n", run_heading(r), r.scenario_name, store::to_string(r.status));
  out += fmt::format("  chips {:.0f} ({:.0f} devices)   memory/device {:.1f} of {:.1f} GiB{}{}{}{}\n", r.metric_or("chips"),
                     r.metric_or("devices"),
                     (r.metric_or("memory_params_bytes") + r.metric_or("memory_grads_bytes") + r.metric_or("memory_optimizer_bytes") +
                      r.metric_or("memory_activations_bytes")) / kGiB,
                     r.metric_or("memory_capacity_bytes") / kGiB, r.metric_or("rematerialization") != 0           ? ", rematerialized"
                     : r.metric_or("selective_recomputation") != 0 ? selective_text(r)
                                                                     : "",
                     power_limit_text(r), pipeline_text(r), overlap_text(r));
  const std::size_t simulated = r.provenance.contains("step_times_s") ? r.provenance["step_times_s"].size() : 0;
  out += fmt::format("  step time       {:.4f} s ({} over {} simulated steps)   {:.3g} steps/s\n", step,
                     spread == 0.0 ? std::string("the same") : fmt::format("spread {:.2g} s", spread), simulated,
                     step > 0 ? 1.0 / step : 0.0);
  if (const double from = r.metric_or("steady_state_from_microbatches"); from > 0)
    out += fmt::format("                  pipeline steady state: extrapolated from the steps of {:.0f}, {:.0f} and {:.0f} micro-batches "
                       "(--no-steady-state simulates them all)\n",
                       from, from + 1, from + 2);
  const double dropped = r.metric_or("tokens_dropped_fraction");
  out += fmt::format("  training        {:.0f} steps -> {:.2f} days   MFU {:.1f} % (model FLOPs)   HFU {:.1f} % (FLOPs executed)   "
                     "token assignments dropped {}\n",
                     r.metric_or("steps"), seconds_to_days(train_s), 100.0 * r.metric_or("mfu"), 100.0 * r.metric_or("hfu"),
                     dropped == 0.0 ? std::string("none") : fmt::format("{:.2f} %", 100.0 * dropped));
  const double first_dropped = r.metric_or("first_choice_dropped_fraction"), skipped = r.metric_or("second_choice_skipped_fraction");
  if (first_dropped > 0.0 || skipped > 0.0)
    out += fmt::format("  routing         first choices dropped {:.2f} % of tokens   second choices not dispatched {:.2f} %\n",
                       100.0 * first_dropped, 100.0 * skipped);
  out += "  step breakdown (critical path):\n";
  std::vector<std::pair<double, std::string>> parts;
  for (const auto& b : r.breakdown)
    if (b.critical_path_s > 0) parts.emplace_back(b.critical_path_s, b.phase_kind);
  std::sort(parts.rbegin(), parts.rend());
  for (const auto& [t, k] : parts) out += fmt::format("    {:<28} {:>10.4f} s  {:5.1f} %\n", k, t, step > 0 ? 100.0 * t / step : 0.0);
  const double wan_j = r.metric_or("wan_energy_j");
  out += fmt::format("  energy          IT {:.3f} MWh + network {:.3f} MWh -> facility {:.3f} MWh{}{}   ({:.0f} W/chip)\n",
                     joules_to_mwh(r.metric_or("it_energy_j")), joules_to_mwh(r.metric_or("network_energy_j")),
                     joules_to_mwh(r.metric_or("facility_energy_j")),
                     wan_j > 0.0 ? fmt::format(" (of which WAN {:.3f} MWh, drawn by carrier networks: no PUE)", joules_to_mwh(wan_j))
                                 : std::string(),
                     r.metric_or("duration_pinned") != 0 ? fmt::format(" over the pinned {:.2f} days", seconds_to_days(r.metric_or("duration_s"))) : "",
                     r.metric_or("average_chip_power_w"));
  out += fmt::format("  emissions       {:.3f} tCO2e gross (location), {:.3f} tCO2e net (market)", kg_to_tonnes(r.metric_or("co2e_gross_kg")),
                     kg_to_tonnes(r.metric_or("co2e_net_kg")));
  if (r.metric("embodied_co2e_kg")) out += fmt::format(", {:.3f} tCO2e embodied", kg_to_tonnes(r.metric_or("embodied_co2e_kg")));
  out += "\n";
  for (const auto& d : r.datacenters)
    out += fmt::format("    {:<34} {:>5} chips  PUE {:.2f}  {:>9.3f} MWh  {:>8.3f} t gross  {:>8.3f} t net\n", d.name, d.chips, d.pue,
                       joules_to_mwh(d.facility_energy_j), kg_to_tonnes(d.co2e_gross_kg), kg_to_tonnes(d.co2e_net_kg));
  out += assumed_pue_notes(r);
  return out;
}

}  // namespace moesim::cli
