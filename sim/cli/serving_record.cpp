// SPDX-License-Identifier: Apache-2.0
// The store record, JSON and summary of a serving run.
#include <optional>
#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "moesim/core/units.hpp"
#include "moesim/core/version.hpp"
#include "moesim/reports/markup.hpp"
#include "record.hpp"
#include "serving_record.hpp"

namespace moesim::cli {

using nlohmann::json;

namespace {


std::optional<double> metric_value(const store::RunRecord& r, const std::string& name) {
  const store::Metric* m = r.metric(name);
  return m ? std::optional<double>(m->value) : std::nullopt;
}

/** Tokens per 1000 for "per 1000 tokens" figures. */
constexpr double kPerThousand = 1000.0;
constexpr double kGramsPerKg = 1000.0;

/** A stored metric as JSON, scaled; null when the run does not have it (a ratio whose denominator was 0). */
json metric_json(const store::RunRecord& r, const std::string& name, double scale = 1.0) {
  const store::Metric* m = r.metric(name);
  return m ? json(m->value * scale) : json(nullptr);
}

/** A stored metric to 4 significant digits (scaled), or an en dash when the run has none. Defined after sig_text. */
std::string metric_sig(const store::RunRecord& r, const std::string& name, double scale = 1.0);

const char* kDistributions[] = {"ttft", "tpot", "itl", "e2e", "queue"};

/** `v` to `significant` digits without trailing zeros ("0.5", "0.2", "2000", "0.0149"): a limit reads as it was
 *  given, and a small figure keeps its digits instead of rounding to 0. */
std::string sig_text(double v, int significant) {
  std::string s = reports::format_value(v, significant);
  if (s.find('.') != std::string::npos && s.find('e') == std::string::npos) {
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

/** Seconds as the summary prints a window: one decimal from 1 s up (as before), significant digits below it (a
 *  window of a few ms would read "0.0 s"). */
std::string metric_sig(const store::RunRecord& r, const std::string& name, double scale) {
  const store::Metric* m = r.metric(name);
  return m ? sig_text(m->value * scale, 4) : std::string("\u2013");
}

std::string seconds_text(double s) { return s >= 1.0 ? fmt::format("{:.1f}", s) : sig_text(s, 3); }

/** The roles of the serving pools with replicas in each datacenter, from the run's resolved scenario: a pool pinned
 *  to a datacenter (serving.pools[].datacenter) is there only; another is spread over every datacenter by the shares
 *  (each share a whole number of its replicas, so each gets some). Empty when the scenario does not say. */
std::map<std::string, std::set<std::string>> site_roles(const store::RunRecord& r) {
  std::map<std::string, std::set<std::string>> out;
  const json& sc = r.scenario;
  if (!sc.is_object() || !sc.contains("serving") || !sc["serving"].is_object()) return out;
  const json& pools = sc["serving"].value("pools", json::array());
  for (const auto& pool : pools) {
    const std::string role = pool.value("role", "colocated");
    const std::string dc = pool.value("datacenter", "");
    for (const auto& d : r.datacenters)
      if (dc.empty() || dc == d.name) out[d.name].insert(role);
  }
  return out;
}

/** Per-datacenter lines of the serving summary: each datacenter's facility energy and gross and net CO2e (the
 *  stored DatacenterResult, which the reports' energy table shows), the output tokens generated there, and energy
 *  and CO2e per token where the run stored them (make_serving_record does only when every request is served whole
 *  in one datacenter: colocated pools, or a single datacenter); elsewhere the role of the site's tokens. */
std::string serving_site_lines(const store::RunRecord& r) {
  using namespace units;
  const auto roles = site_roles(r);
  bool whole = true;  // make_serving_record stores a site's ratios only when requests are served whole in one site
  std::string out;
  for (const auto& d : r.datacenters) {
    const std::string site = fmt::format("site.{}.", d.name);
    const double tokens = r.metric_or(site + "output_tokens");
    const bool has_ratio = r.metric(site + "energy_per_output_token_j") != nullptr;
    whole = whole && (has_ratio || tokens <= 0.0);
    std::string per_token;
    if (has_ratio && tokens > 0.0) {
      per_token = fmt::format("{:>8} J/token  {:>9} gCO2e/1000 tokens gross  ({:.0f} output tokens)",
                              metric_sig(r, site + "energy_per_output_token_j"),
                              metric_sig(r, site + "co2e_gross_kg_per_1k_tokens", kGramsPerKg), tokens);
    } else if (tokens <= 0.0) {
      per_token = "no output token generated here: no per-token figure";
    } else {
      const auto it = roles.find(d.name);
      const std::set<std::string> here = it == roles.end() ? std::set<std::string>() : it->second;
      const char* which = here.count("prefill") && here.count("decode") ? "prefill and decode"
                          : here.count("prefill")                         ? "prefill: each request's first token"
                          : here.count("decode")                          ? "decode: every token after the first"
                                                                          : "generated here";
      per_token = fmt::format("{:.0f} output tokens ({})", tokens, which);
    }
    out += fmt::format("    {:<34} {:>5} chips  PUE {:.2f}  facility {:>9} kWh  CO2e {:>9} g gross {:>9} g net   {}\n", d.name, d.chips,
                       d.pue, sig_text(joules_to_kwh(d.facility_energy_j), 4), sig_text(d.co2e_gross_kg * kGramsPerKg, 4),
                       sig_text(d.co2e_net_kg * kGramsPerKg, 4), per_token);
  }
  if (!whole)
    out += "    (disaggregated pools over several datacenters: a request's prefill and decode can run in different ones, each "
           "credited with the tokens its replicas generate, a prefill replica each request's first; energy per token is "
           "the whole run's, above, not per datacenter)\n";
  return out;
}

}  // namespace

store::RunRecord make_serving_record(const scenario::Scenario& s, const engine::ServingResult& r, const energy::Accounting& acc,
                                     const catalog::Catalog& catalog, const energy::NetworkEnergyTable& network) {
  store::RunRecord rec = make_header(s);
  auto add = [&](const std::string& name, double value, const std::string& unit) { rec.metrics.push_back({name, value, unit}); };
  const double window = r.window_end_s - r.window_start_s;
  add("requests_total", static_cast<double>(r.requests_total), "requests");
  add("requests_measured", static_cast<double>(r.requests_measured), "requests");
  add("requests_completed", static_cast<double>(r.requests_completed), "requests");
  add("window_start_s", r.window_start_s, "s");
  add("window_s", window, "s");
  add("makespan_s", r.makespan_s, "s");
  const std::pair<const char*, const engine::LatencyStats*> dists[] = {
      {"ttft", &r.ttft}, {"tpot", &r.tpot}, {"itl", &r.itl}, {"e2e", &r.e2e}, {"queue", &r.queue}};
  for (const auto& [name, st] : dists) {
    // No sample, no figure: TPOT and ITL of requests that all produce one token (they are not 0), or of none.
    if (st->count == 0) continue;
    add(fmt::format("{}_mean_s", name), st->mean_s, "s");
    add(fmt::format("{}_p50_s", name), st->p50_s, "s");
    add(fmt::format("{}_p90_s", name), st->p90_s, "s");
    add(fmt::format("{}_p95_s", name), st->p95_s, "s");
    add(fmt::format("{}_p99_s", name), st->p99_s, "s");
    add(fmt::format("{}_max_s", name), st->max_s, "s");
  }
  add("throughput_rps", r.throughput_rps, "requests/s");
  add("input_tokens_per_s", r.input_tokens_per_s, "tokens/s");
  add("output_tokens_per_s", r.output_tokens_per_s, "tokens/s");
  add("output_tokens_per_s_per_device", r.output_tokens_per_s_per_device, "tokens/s");
  add("input_tokens", r.input_tokens_window, "tokens");
  add("output_tokens", r.output_tokens_window, "tokens");
  add("output_tokens_requested", r.output_tokens_requested_window, "tokens");
  // Of the tokens the measured requests ask for, the share generated before the window closes (warm-up arrivals'
  // tokens, which output_tokens counts as the server's throughput, are not theirs): at most 1; below 1 by the tail
  // of requests still running at the window's end, and far below when the deployment falls behind. (The server's
  // throughput against the offered load is output_tokens / output_tokens_requested.)
  add("output_tokens_measured", r.output_tokens_measured_window, "tokens");
  if (r.output_tokens_requested_window > 0.0)
    add("output_served_fraction", r.output_tokens_measured_window / r.output_tokens_requested_window, "1");
  add("backlog_growth_fraction", r.backlog_growth_fraction, "1");
  add("falls_behind", engine::falls_behind(r) ? 1.0 : 0.0, "bool");
  add("goodput_fraction", r.goodput_fraction, "1");
  add("goodput_rps", r.goodput_rps, "requests/s");
  add("slo_ttft_s", r.slo_ttft_s, "s");
  add("slo_tpot_s", r.slo_tpot_s, "s");
  add("slo_p99_met", r.slo_p99_met ? 1.0 : 0.0, "bool");
  add("preemptions", static_cast<double>(r.preemptions), "preemptions");
  add("mean_batch_sequences", r.mean_batch_sequences, "sequences");
  add("mean_kv_use", r.mean_kv_use, "1");
  add("mean_queue_requests", r.mean_queue_requests, "requests");
  add("mfu", r.mfu, "1");
  add("model_flops", r.model_flops_window, "FLOP");
  add("kv_transfer_bytes", r.kv_transfer_bytes, "B");
  add("iterations", static_cast<double>(r.iterations), "iterations");
  add("layer_shapes_simulated", static_cast<double>(r.layer_shapes_simulated), "layers");
  add("layer_replays", static_cast<double>(r.layer_replays), "layers");
  add("attention_shapes", static_cast<double>(r.attention_shapes), "shapes");
  add("chips", r.chips, "chips");
  add("devices", r.devices, "devices");
  add("duration_s", acc.duration_s, "s");
  add("power_pinned", acc.power_pinned ? 1.0 : 0.0, "bool");
  add("average_chip_power_w", acc.average_chip_power_w, "W");
  add("peak_chip_power_w", r.peak_chip_power_w, "W");
  add("it_energy_j", acc.it_energy_j(), "J");
  add("network_energy_j", acc.network_energy_j(), "J");
  add("wan_energy_j", acc.wan_energy_j(), "J");
  add("facility_energy_j", acc.facility_energy_j(), "J");
  add("co2e_gross_kg", acc.co2e_gross_kg(), "kgCO2e");
  add("co2e_net_kg", acc.co2e_net_kg(), "kgCO2e");
  if (acc.embodied) add("embodied_co2e_kg", acc.embodied_co2e_kg(), "kgCO2e");
  // Ratios per token or per request exist only when something was counted: a window with no output token has no
  // J/token (absent, so `--json` gives null and the summary and reports "–"), not 0.
  // Per request: over the requests served (finished) in the window, as per token over the tokens generated in it.
  const double tokens = r.output_tokens_window, requests = static_cast<double>(r.requests_completed);
  auto ratio = [&](const std::string& name, double num, double den, const char* unit) {
    if (den > 0.0) add(name, num / den, unit);
  };
  ratio("energy_per_output_token_j", acc.facility_energy_j(), tokens, "J/token");
  ratio("it_energy_per_output_token_j", acc.it_energy_j(), tokens, "J/token");
  ratio("energy_per_request_j", acc.facility_energy_j(), requests, "J/request");
  ratio("co2e_gross_kg_per_1k_tokens", acc.co2e_gross_kg() * kPerThousand, tokens, "kgCO2e/1000 tokens");
  ratio("co2e_net_kg_per_1k_tokens", acc.co2e_net_kg() * kPerThousand, tokens, "kgCO2e/1000 tokens");
  ratio("co2e_gross_kg_per_request", acc.co2e_gross_kg(), requests, "kgCO2e/request");
  ratio("co2e_net_kg_per_request", acc.co2e_net_kg(), requests, "kgCO2e/request");
  if (acc.embodied) ratio("embodied_co2e_kg_per_1k_tokens", acc.embodied_co2e_kg() * kPerThousand, tokens, "kgCO2e/1000 tokens");
  // Per datacenter: the output tokens generated there, and energy and CO2e per token only when they are the cost of
  // a token, i.e. every request is served whole in one datacenter (one datacenter, or colocated pools). With prefill
  // and decode pools that can sit in different datacenters a prefill site is credited with each request's first
  // token and a decode site with the others: a per-site ratio would divide one phase's energy by another phase's
  // tokens, so none is stored (the summary, JSON and reports then say why).
  bool colocated = true;
  for (const auto& pool : s.serving->pools) colocated = colocated && pool.role == scenario::PoolRole::colocated;
  const bool whole = colocated || acc.sites.size() == 1;
  for (std::size_t i = 0; i < acc.sites.size() && i < r.site_output_tokens.size(); ++i) {
    const auto& site = acc.sites[i];
    add(fmt::format("site.{}.output_tokens", site.datacenter.name), r.site_output_tokens[i], "tokens");
    if (!whole) continue;
    ratio(fmt::format("site.{}.energy_per_output_token_j", site.datacenter.name), site.facility_energy_j, r.site_output_tokens[i], "J/token");
    ratio(fmt::format("site.{}.co2e_gross_kg_per_1k_tokens", site.datacenter.name), site.co2e_gross_kg * kPerThousand,
          r.site_output_tokens[i], "kgCO2e/1000 tokens");
    ratio(fmt::format("site.{}.co2e_net_kg_per_1k_tokens", site.datacenter.name), site.co2e_net_kg * kPerThousand,
          r.site_output_tokens[i], "kgCO2e/1000 tokens");
  }
  for (std::size_t p = 0; p < r.pools.size(); ++p) {
    const auto& f = r.pools[p];
    add(fmt::format("pool{}.weights_bytes", p), f.weights_bytes, "B");
    add(fmt::format("pool{}.workspace_bytes", p), f.workspace_bytes, "B");
    add(fmt::format("pool{}.kv_bytes", p), f.kv_bytes, "B");
    add(fmt::format("pool{}.kv_blocks", p), static_cast<double>(f.kv_blocks), "blocks");
  }
  double wan = 0.0;
  for (const auto& site : r.sites) wan += site.link_bytes_per_step[static_cast<std::size_t>(system::LinkClass::wan)];
  add("wan_bytes", wan, "B");
  add("sim_wall_s", r.sim_wall_s, "s");

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
    rec.datacenters.push_back(std::move(d));
  }

  // Series over the run (x: interval start) and latency CDFs (x: latency, y: fraction of requests).
  auto series = [&](const char* name, const char* y_unit) {
    auto it = r.series.find(name);
    auto t = r.series.find("t_s");
    if (it == r.series.end() || t == r.series.end() || it->second.empty()) return;
    rec.series.push_back({name, "s", y_unit, t->second, it->second});
  };
  series("power_w", "W");
  series("queue_requests", "requests");
  series("batch_sequences", "sequences");
  series("kv_use", "1");
  auto cdf = [&](const char* name, const std::vector<double>& q) {
    if (q.empty()) return;
    std::vector<double> y;
    for (std::size_t i = 0; i < q.size(); ++i) y.push_back(static_cast<double>(i) / static_cast<double>(q.size() - 1));
    rec.series.push_back({name, "s", "1", q, y});
  };
  cdf("ttft_cdf", r.ttft_cdf_s);
  cdf("tpot_cdf", r.tpot_cdf_s);
  cdf("e2e_cdf", r.e2e_cdf_s);
  for (const auto& q : r.requests)
    rec.requests.push_back({q.arrival_s, q.first_token_s, q.end_s, q.queue_s, q.prompt_tokens, q.output_tokens, q.replica, q.preemptions});

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
  json pools = json::array();
  for (const auto& f : r.pools)
    pools.push_back({{"role", f.role}, {"replicas", f.replicas}, {"devices_per_replica", f.devices_per_replica},
                     {"weights_bytes", f.weights_bytes}, {"workspace_bytes", f.workspace_bytes}, {"kv_bytes", f.kv_bytes},
                     {"kv_bytes_per_token", f.kv_bytes_per_token}, {"kv_blocks", f.kv_blocks}, {"block_tokens", f.block_tokens}});
  rec.provenance = {{"moesim_version", kVersion},
                    {"git_hash", kGitHash},
                    {"profiles_dir", catalog.profiles_dir()},
                    {"compute_model", r.compute_model},
                    {"compute_paths", r.compute_paths},
                    {"accelerator", {{"name", accel.name}, {"sources", accel.sources}, {"notes", accel.notes}}},
                    {"power_convention", r.power_convention},
                    {"collective_algorithms", r.algorithms},
                    {"datacenters", dcs},
                    {"network_energy", net},
                    {"pools", pools},
                    {"memo_buckets_per_octave", s.serving->memo_buckets_per_octave},
                    {"window", "throughput and energy from the warm-up's end to the end of the arrivals (duration_s, or "
                               "the last arrival); offline, or every request arriving at one instant: to the last "
                               "completion; latencies of the requests arriving in it"},
                    {"series_interval_s", r.series_interval_s},
                    {"series_first_interval_s", r.series_first_interval_s},
                    {"series_last_interval_s", r.series_last_interval_s}};
  return rec;
}

json serving_record_json(const store::RunRecord& r) {
  using namespace units;
  json out = {{"run_id", r.id}, {"kind", "serving"}, {"scenario", r.scenario_name}, {"status", store::to_string(r.status)},
              {"seed", r.seed}, {"moesim_version", r.moesim_version}};
  // A failed or unfinished run has no results: every figure key a complete serving run has, null (never 0, and none of
  // a training run's keys), with its error and times as for training (incomplete_record_json). The keys are those
  // written below, so the two shapes cannot drift apart.
  const bool complete = r.status == store::RunStatus::complete;
  if (!complete) {
    out["error"] = r.error_message.empty() ? json(nullptr) : json(r.error_message);
    out["created_at_utc"] = r.created_at_utc;
    out["finished_at_utc"] = r.finished_at_utc.empty() ? json(nullptr) : json(r.finished_at_utc);
  }
  auto put = [&](const std::string& key, const auto& value) { out[key] = complete ? json(value()) : json(nullptr); };
  for (const char* name : kDistributions)
    put(fmt::format("{}_s", name), [&] {
      json d = json::object();
      for (const char* stat : {"mean", "p50", "p90", "p95", "p99", "max"}) {
        const std::optional<double> v = metric_value(r, fmt::format("{}_{}_s", name, stat));
        d[stat] = v ? json(*v) : json(nullptr);  // null: no request had such a latency (TPOT of one-token outputs)
      }
      return d;
    });
  auto count = [&](const char* name) { return [&r, name] { return static_cast<long long>(r.metric_or(name)); }; };
  auto value = [&](const char* name) { return [&r, name] { return r.metric_or(name); }; };
  auto stored = [&](const char* name, double scale = 1.0) { return [&r, name, scale] { return metric_json(r, name, scale); }; };
  put("requests_measured", count("requests_measured"));
  put("requests_completed", count("requests_completed"));
  put("window_s", value("window_s"));
  put("throughput_rps", value("throughput_rps"));
  put("input_tokens_per_s", value("input_tokens_per_s"));
  put("output_tokens_per_s", value("output_tokens_per_s"));
  put("output_tokens_per_s_per_device", value("output_tokens_per_s_per_device"));
  put("goodput_fraction", value("goodput_fraction"));
  put("goodput_rps", value("goodput_rps"));
  put("slo_p99_met", [&] { return r.metric_or("slo_p99_met") != 0.0; });
  put("preemptions", count("preemptions"));
  put("mfu", value("mfu"));
  put("chips", count("chips"));
  put("devices", count("devices"));
  put("average_chip_power_w", value("average_chip_power_w"));
  put("energy_per_output_token_j", stored("energy_per_output_token_j"));
  put("energy_per_request_j", stored("energy_per_request_j"));
  put("gco2e_gross_per_1000_tokens", stored("co2e_gross_kg_per_1k_tokens", kGramsPerKg));
  put("gco2e_net_per_1000_tokens", stored("co2e_net_kg_per_1k_tokens", kGramsPerKg));
  put("gco2e_gross_per_request", stored("co2e_gross_kg_per_request", kGramsPerKg));
  put("gco2e_net_per_request", stored("co2e_net_kg_per_request", kGramsPerKg));
  put("embodied_gco2e_per_1000_tokens", stored("embodied_co2e_kg_per_1k_tokens", kGramsPerKg));
  put("it_energy_kwh", [&] { return joules_to_kwh(r.metric_or("it_energy_j")); });
  put("facility_energy_kwh", [&] { return joules_to_kwh(r.metric_or("facility_energy_j")); });
  put("co2e_gross_kg", value("co2e_gross_kg"));
  put("co2e_net_kg", value("co2e_net_kg"));
  put("datacenters", [&] {
    json dcs = json::array();
    for (const auto& d : r.datacenters) {
      const double t = r.metric_or(fmt::format("site.{}.output_tokens", d.name));
      dcs.push_back({{"name", d.name},
                     {"display_name", d.display_name},
                     {"chips", d.chips},
                     {"pue", d.pue},
                     {"gross_kgco2e_per_kwh", d.gross_kgco2e_per_kwh},
                     {"net_kgco2e_per_kwh", d.net_kgco2e_per_kwh ? json(*d.net_kgco2e_per_kwh) : json(nullptr)},
                     {"output_tokens", t},
                     {"facility_energy_kwh", joules_to_kwh(d.facility_energy_j)},
                     {"energy_per_output_token_j", metric_json(r, fmt::format("site.{}.energy_per_output_token_j", d.name))},
                     {"gco2e_gross_per_1000_tokens", metric_json(r, fmt::format("site.{}.co2e_gross_kg_per_1k_tokens", d.name), kGramsPerKg)},
                     {"gco2e_net_per_1000_tokens", metric_json(r, fmt::format("site.{}.co2e_net_kg_per_1k_tokens", d.name), kGramsPerKg)},
                     {"co2e_gross_kg", d.co2e_gross_kg},
                     {"co2e_net_kg", d.co2e_net_kg}});
    }
    return dcs;
  });
  put("metrics", [&] {
    json metrics = json::object();
    for (const auto& m : r.metrics) metrics[m.name] = {{"value", m.value}, {"unit", m.unit}};
    return metrics;
  });
  if (r.comparison_id) {
    out["comparison_id"] = *r.comparison_id;
    out["alternative"] = r.alternative_label;
  }
  return out;
}

std::string serving_record_summary(const store::RunRecord& r) {
  using namespace units;
  std::string out = fmt::format("{}: {} (serving, {})\n", run_heading(r), r.scenario_name, store::to_string(r.status));
  if (r.status != store::RunStatus::complete) {
    if (!r.error_message.empty()) out += fmt::format("  error: {}\n", r.error_message);
    return out;
  }
  const double ms = 1e3;
  out += fmt::format("  {:.0f} chips ({:.0f} devices)   {:.0f} requests measured over {} s (of {:.0f} simulated){}\n",
                     r.metric_or("chips"), r.metric_or("devices"), r.metric_or("requests_measured"),
                     seconds_text(r.metric_or("window_s")), r.metric_or("requests_total"), power_limit_text(r));
  out += "  latency (ms)        mean      P50      P90      P95      P99\n";
  const std::pair<const char*, const char*> rows[] = {{"ttft", "TTFT"}, {"tpot", "TPOT"}, {"itl", "ITL"}, {"e2e", "E2E"}, {"queue", "queueing"}};
  for (const auto& [key, label] : rows) {
    auto cell = [&, key = key](const char* stat) {
      const std::optional<double> v = metric_value(r, fmt::format("{}_{}_s", key, stat));
      return v ? fmt::format("{:>8.1f}", ms * *v) : fmt::format("{:>8}", "\u2013");  // no sample: an en dash
    };
    out += fmt::format("    {:<14} {} {} {} {} {}\n", label, cell("mean"), cell("p50"), cell("p90"), cell("p95"), cell("p99"));
  }
  out += fmt::format("  throughput      {:.2f} requests/s served   {:.0f} output tokens/s ({:.0f} per device)   {:.0f} input tokens/s\n",
                     r.metric_or("throughput_rps"), r.metric_or("output_tokens_per_s"), r.metric_or("output_tokens_per_s_per_device"),
                     r.metric_or("input_tokens_per_s"));
  out += fmt::format("  goodput         {:.1f} % of requests within TTFT {} ms and TPOT {} ms ({:.2f} requests/s); P99 "
                     "targets {}\n",
                     100.0 * r.metric_or("goodput_fraction"), sig_text(ms * r.metric_or("slo_ttft_s"), 4),
                     sig_text(ms * r.metric_or("slo_tpot_s"), 4),
                     r.metric_or("goodput_rps"), r.metric_or("slo_p99_met") != 0.0 ? "met" : "missed");
  if (const double g = r.metric_or("backlog_growth_fraction"); r.metric_or("falls_behind") != 0.0)
    out += fmt::format("  overloaded      the deployment falls behind its arrivals: {:.1f} % of the requests arriving in the window's "
                       "second half were added to those waiting or in flight; its queue and latencies grow with the run's "
                       "length (a longer serving.duration_s shows it), so these latencies are not a steady state\n",
                       100.0 * g);
  out += fmt::format("  batching        {:.1f} sequences in flight (all replicas, time mean)   KV cache {:.1f} % used   queue {:.2f}   "
                     "preemptions {:.0f}   MFU "
                     "{:.1f} %\n",
                     r.metric_or("mean_batch_sequences"), 100.0 * r.metric_or("mean_kv_use"), r.metric_or("mean_queue_requests"),
                     r.metric_or("preemptions"), 100.0 * r.metric_or("mfu"));
  // Facility = (IT + network) x PUE + WAN (the WAN is outside every datacenter): each term shown, so they add up.
  const double wan_j = r.metric_or("wan_energy_j");
  out += fmt::format("  energy          {} J per output token, {} J per request (facility)   IT {} kWh + network {} kWh{} -> "
                     "facility {} kWh   ({} W/chip{})\n",
                     metric_sig(r, "energy_per_output_token_j"), metric_sig(r, "energy_per_request_j"),
                     sig_text(joules_to_kwh(r.metric_or("it_energy_j")), 4), sig_text(joules_to_kwh(r.metric_or("network_energy_j")), 4),
                     wan_j > 0.0 ? fmt::format(" (x PUE) + WAN {} kWh", sig_text(joules_to_kwh(wan_j), 4)) : std::string(" (x PUE)"),
                     sig_text(joules_to_kwh(r.metric_or("facility_energy_j")), 4), sig_text(r.metric_or("average_chip_power_w"), 4),
                     r.metric_or("power_pinned") != 0.0 ? ", pinned by energy.average_chip_power_w" : "");
  out += fmt::format("  emissions       {} gCO2e per 1000 tokens gross, {} net   {} g per request gross\n",
                     metric_sig(r, "co2e_gross_kg_per_1k_tokens", kGramsPerKg), metric_sig(r, "co2e_net_kg_per_1k_tokens", kGramsPerKg),
                     metric_sig(r, "co2e_gross_kg_per_request", kGramsPerKg));
  if (r.metric("embodied_co2e_kg") != nullptr)
    out += fmt::format("  embodied        {} gCO2e per 1000 tokens ({} g of the chips' manufacture, amortised over the window)\n",
                       metric_sig(r, "embodied_co2e_kg_per_1k_tokens", kGramsPerKg), sig_text(r.metric_or("embodied_co2e_kg") * kGramsPerKg, 4));
  out += serving_site_lines(r);
  out += assumed_pue_notes(r);
  return out;
}

}  // namespace moesim::cli
