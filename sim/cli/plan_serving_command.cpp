// SPDX-License-Identifier: Apache-2.0
// `moesim plan SERVING.yaml`: the splits of one colocated serving pool over the cluster (engine/planner.hpp's
// ServingLayout) become the points of a sweep of `serving.pools`; the layouts that do not resolve or do not fit are
// stored as skipped points with their reason, the rest run as `moesim sweep` runs them (at the scenario's load, or
// each a capacity search with --max-rate), and the completed runs are ranked.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "max_rate_search.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/engine/planner.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/scenario/sweep.hpp"
#include "moesim/store/store.hpp"
#include "sweep_plan.hpp"

namespace moesim::cli {

namespace {

using nlohmann::json;

json layout_json(const engine::ServingLayout& l) {
  return {{"layout", l.label()}, {"replicas", l.replicas}, {"data", l.data},
          {"tensor", l.tensor},  {"expert", l.expert},     {"pipeline", l.pipeline}};
}

/** One simulated layout's figures, read back from its stored run (the numbers the store holds, not recomputed). */
struct RankedServing {
  engine::ServingLayout layout;
  std::int64_t run_id = 0;
  double max_rate_rps = 0.0;  ///< --max-rate only
  long long replicas_for_load = 0;  ///< --max-rate: replicas of this layout for the scenario's load (linear estimate)
  long long devices_for_load = 0;   ///< those replicas' devices
  double output_tokens_per_s = 0.0;
  double ttft_p99_s = 0.0, tpot_p99_s = 0.0, e2e_p99_s = 0.0;
  bool slo_met = false;
  double j_per_token = std::numeric_limits<double>::infinity();
  double g_co2e_per_1k_tokens = std::numeric_limits<double>::infinity();
};

}  // namespace

int cmd_plan_serving(const GlobalOptions& g, const PlanOptions& o) {
  // Options that only shape a training plan are refused rather than ignored: a serving plan simulates every layout
  // that fits (no lower bound to prune with) and a serving replica has no micro-batches.
  std::vector<std::string> training_only;
  if (o.exhaustive) training_only.push_back("--exhaustive (a serving plan simulates every layout that fits)");
  if (o.max_microbatch_factor_given) training_only.push_back("--max-microbatch-factor (serving has no micro-batches)");
  if (o.max_virtual_stages_given) training_only.push_back("--max-virtual-stages (a training pipeline schedule)");
  if (!training_only.empty())
    throw UsageError(fmt::format("plan: {} is a serving scenario; {} only shape{} a training plan: drop {}", o.scenario,
                                 fmt::join(training_only, " and "), training_only.size() == 1 ? "s" : "",
                                 training_only.size() == 1 ? "it" : "them"));
  const auto wall0 = std::chrono::steady_clock::now();
  const Shard shard = parse_shard(o.shard, std::getenv("SLURM_ARRAY_TASK_ID"), std::getenv("SLURM_ARRAY_TASK_COUNT"),
                                  std::getenv("SLURM_ARRAY_TASK_MIN"));
  const catalog::Catalog catalog = load_catalog(g);
  // The scenario as written must itself be a valid serving scenario: its pool is what the plan replaces.
  const scenario::Scenario base = scenario::load_file(o.scenario, catalog, o.overrides);
  const auto& pools = base.serving->pools;
  if (pools.size() != 1 || pools.front().role != scenario::PoolRole::colocated)
    throw InputError(o.scenario, 0, 0, "serving.pools",
                     fmt::format("`moesim plan` splits one colocated pool over the cluster; this scenario has {} pool{}{} "
                                 "(compare prefill/decode splits with a sweep of serving.pools, `moesim sweep`)",
                                 pools.size(), pools.size() == 1 ? "" : "s",
                                 pools.size() == 1 ? fmt::format(" of role {}", scenario::to_string(pools.front().role)) : ""));
  if (o.max_rate) check_rate_searchable(base, o.scenario);
  const std::string pinned = pools.front().datacenter;  // kept on every layout
  const double load_rps = base.serving->arrival.rate_per_s;  // the scenario's load (what --max-rate starts from)
  const catalog::AcceleratorSpec& accel = catalog.accelerator(base.cluster.accelerator);
  engine::PlanSpace space = engine::plan_space(base, accel);
  space.layers = base.model.decoder_layers;  // serving runs decoder stacks (the resolver refuses the others)
  space.max_pipeline = o.max_pipeline;
  const std::vector<engine::ServingLayout> layouts = engine::enumerate_serving_layouts(space);
  auto pool_override = [&](const engine::ServingLayout& l) {
    return "serving.pools=" + json::array({l.pool(pinned)}).dump();
  };
  auto resolve = [&](const engine::ServingLayout& l) {
    std::vector<std::string> all = o.overrides;
    std::vector<std::string> origins(o.overrides.size());
    all.push_back(pool_override(l));
    origins.push_back(fmt::format("{}: plan layout {}", o.scenario, l.label()));
    return scenario::load_file(o.scenario, catalog, all, origins);
  };
  const std::vector<engine::ServingCandidate> candidates = engine::screen_serving_layouts(layouts, resolve, accel);
  std::map<engine::Verdict, std::size_t> counts;
  for (const auto& c : candidates) ++counts[c.verdict];
  const double gib = units::kGiB;
  const std::vector<std::string> rules = engine::serving_enumeration_rules(space);
  const std::string how = o.max_rate ? "each a capacity search (--max-rate: the highest arrival rate meeting the P99 SLOs)"
                                     : fmt::format("each at the scenario's load ({:.4g} requests/s, {})",
                                                   base.serving->arrival.rate_per_s, base.serving->arrival.type);
  auto summary_text = [&] {
    std::string out = fmt::format("moesim plan of {} (serving) on {} x {} ({} devices): {} layouts enumerated; {} to "
                                  "simulate ({}), {} do not fit in memory, {} invalid\nrules:\n",
                                  base.name, base.cluster.count, accel.name, space.devices, candidates.size(),
                                  counts[engine::Verdict::simulate], how, counts[engine::Verdict::out_of_memory],
                                  counts[engine::Verdict::invalid]);
    for (const auto& r : rules) out += "  - " + r + "\n";
    return out;
  };
  auto candidates_json = [&] {
    json list = json::array();
    for (const auto& c : candidates) {
      json item = layout_json(c.layout);
      item["verdict"] = engine::to_string(c.verdict);
      item["reason"] = c.reason;
      item["weights_bytes"] = c.weights_bytes;
      item["kv_cache_bytes"] = c.kv_bytes;
      item["memory_capacity_bytes"] = c.capacity_bytes;
      list.push_back(std::move(item));
    }
    return list;
  };
  auto candidates_text = [&] {
    std::string out;
    for (const auto& c : candidates) {
      if (!o.list_pruned && c.verdict != engine::Verdict::simulate) continue;
      if (c.verdict == engine::Verdict::simulate)
        out += fmt::format("  {:<22} {:<13} weights {:.2f} GiB, KV cache {:.2f} GiB per device\n", c.layout.label(),
                           engine::to_string(c.verdict), c.weights_bytes / gib, c.kv_bytes / gib);
      else
        out += fmt::format("  {:<22} {:<13} {}\n", c.layout.label(), engine::to_string(c.verdict), c.reason);
    }
    return out;
  };

  if (o.dry_run) {
    if (o.json)
      std::cout << json{{"scenario", base.name},      {"kind", "serving"},
                        {"devices", space.devices},   {"rules", rules},
                        {"layouts", candidates.size()}, {"simulate", counts[engine::Verdict::simulate]},
                        {"out_of_memory", counts[engine::Verdict::out_of_memory]},
                        {"invalid", counts[engine::Verdict::invalid]}, {"candidates", candidates_json()}}
                       .dump(2)
                << "\n";
    else
      std::cout << summary_text() << candidates_text();
    engine::require_simulable(candidates);
    return 0;
  }
  engine::require_simulable(candidates);

  // The plan as a sweep of one axis, serving.pools, a point per layout; the screened-out ones pre-skipped.
  scenario::SweepDefinition def;
  def.file = o.scenario;
  scenario::SweepAxis axis{"serving.pools", {}};
  std::map<std::size_t, std::string> preskip;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const json value = json::array({candidates[i].layout.pool(pinned)});
    axis.values.push_back(value);
    scenario::SweepPoint p;
    p.index = i;
    p.assignment.emplace_back("serving.pools", value);
    def.points.push_back(std::move(p));
    if (candidates[i].verdict != engine::Verdict::simulate)
      preskip[i] = fmt::format("plan: {}: {}", engine::to_string(candidates[i].verdict), candidates[i].reason);
  }
  def.axes.push_back(std::move(axis));
  def.dimensions.push_back({0});
  if (!o.json) std::cerr << summary_text() << (o.list_pruned ? candidates_text() : std::string());
  SweepOptions so;
  so.scenario = o.scenario;
  so.db = o.db;
  so.overrides = o.overrides;
  so.jobs = o.jobs;
  so.max_rate = o.max_rate;
  so.rate_tolerance = o.rate_tolerance;
  std::int64_t sweep_id = 0;
  SweepCounts counted;
  {
    const StdoutToStderr quiet(o.json);  // anything the sweep prints: stdout stays one JSON object
    sweep_id = run_sweep(catalog, so, def, shard, preskip, &counted);
  }
  (o.json ? std::cerr : std::cout) << sweep_summary_line(counted, shard, o.db);

  // Rank what completed. --max-rate: the highest rate first, equal rates by J per output token (--rank-by energy /
  // co2e: the cost per token at that rate);
  // at the scenario's load: the layouts meeting both P99 SLOs first, then the lower P99 end-to-end latency (time), J
  // per output token (energy) or gCO2e per 1000 tokens (co2e).
  const store::Store db(o.db, store::Store::Mode::read_only);
  const store::SweepRecord sweep = db.get_sweep(sweep_id);
  std::vector<RankedServing> ranked;
  std::vector<std::string> not_ranked;  // simulated layouts with no run to rank (a capacity search found no rate)
  for (const auto& p : sweep.points) {
    const auto i = static_cast<std::size_t>(p.index);
    if (i >= candidates.size() || candidates[i].verdict != engine::Verdict::simulate) continue;
    if (!p.run_id || p.run_status != store::RunStatus::complete) {
      if (!p.skip_reason.empty()) not_ranked.push_back(candidates[i].layout.label() + ": " + p.skip_reason);
      continue;
    }
    const store::RunRecord r = db.get_run(*p.run_id);
    RankedServing k;
    k.layout = candidates[i].layout;
    k.run_id = r.id;
    k.max_rate_rps = r.metric_or("max_rate_rps", 0.0);
    k.replicas_for_load = engine::replicas_for_load(k.layout, k.max_rate_rps, load_rps);
    k.devices_for_load = k.replicas_for_load * k.layout.data * k.layout.tensor * k.layout.pipeline;
    k.output_tokens_per_s = r.metric_or("output_tokens_per_s", 0.0);
    k.ttft_p99_s = r.metric_or("ttft_p99_s", 0.0);
    k.tpot_p99_s = r.metric_or("tpot_p99_s", 0.0);
    k.e2e_p99_s = r.metric_or("e2e_p99_s", std::numeric_limits<double>::infinity());
    k.slo_met = r.metric_or("slo_p99_met", 0.0) > 0.5;
    k.j_per_token = r.metric_or("energy_per_output_token_j", std::numeric_limits<double>::infinity());
    k.g_co2e_per_1k_tokens = r.metric_or("co2e_gross_kg_per_1k_tokens", std::numeric_limits<double>::infinity()) * 1000.0;
    ranked.push_back(k);
  }
  auto cost = [&](const RankedServing& r) {
    return o.rank_by == "energy" ? r.j_per_token : o.rank_by == "co2e" ? r.g_co2e_per_1k_tokens : r.e2e_p99_s;
  };
  // Ties keep the enumeration order: fewer pipeline stages and less tensor parallelism first.
  std::stable_sort(ranked.begin(), ranked.end(), [&](const RankedServing& a, const RankedServing& b) {
    if (o.max_rate && o.rank_by == "time" && a.max_rate_rps != b.max_rate_rps) return a.max_rate_rps > b.max_rate_rps;
    if (o.max_rate) return (o.rank_by == "co2e" ? a.g_co2e_per_1k_tokens : a.j_per_token) <
                           (o.rank_by == "co2e" ? b.g_co2e_per_1k_tokens : b.j_per_token);
    if (a.slo_met != b.slo_met) return a.slo_met;
    return cost(a) < cost(b);
  });
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const char* key_text = o.max_rate ? (o.rank_by == "time"     ? "highest arrival rate meeting the P99 SLOs, then J per output token"
                                       : o.rank_by == "energy" ? "J per output token at that rate"
                                                               : "gCO2e per 1000 output tokens at that rate")
                                    : (o.rank_by == "time"     ? "P99 SLOs met, then P99 end-to-end latency"
                                       : o.rank_by == "energy" ? "P99 SLOs met, then J per output token"
                                                               : "P99 SLOs met, then gCO2e per 1000 output tokens");

  if (o.json) {
    json rows = json::array();
    for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < o.top; ++i) {
      const RankedServing& r = ranked[i];
      json row = layout_json(r.layout);
      row.update(json{{"rank", i + 1},
                      {"run_id", r.run_id},
                      {"output_tokens_per_s", r.output_tokens_per_s},
                      {"ttft_p99_s", r.ttft_p99_s},
                      {"tpot_p99_s", r.tpot_p99_s},
                      {"e2e_p99_s", r.e2e_p99_s},
                      {"slo_p99_met", r.slo_met},
                      {"energy_per_output_token_j", r.j_per_token},
                      {"co2e_gross_g_per_1k_tokens", r.g_co2e_per_1k_tokens}});
      if (o.max_rate) {
        row["max_rate_rps"] = r.max_rate_rps;
        row["replicas_for_load"] = r.replicas_for_load > 0 ? json(r.replicas_for_load) : json(nullptr);
        row["devices_for_load"] = r.replicas_for_load > 0 ? json(r.devices_for_load) : json(nullptr);
      }
      rows.push_back(std::move(row));
    }
    json out{{"sweep_id", sweep_id},     {"scenario", base.name},
             {"kind", "serving"},        {"devices", space.devices},
             {"rank_by", o.rank_by},     {"ranked_by", key_text},
             {"max_rate", o.max_rate},   {"load_rps", load_rps},  {"rules", rules},
             {"layouts", candidates.size()}, {"simulated", ranked.size()},
             {"out_of_memory", counts[engine::Verdict::out_of_memory]},
             {"invalid", counts[engine::Verdict::invalid]},
             {"not_ranked", not_ranked}, {"wall_s", wall_s},
             {"ranked", rows}};
    if (o.list_pruned) out["candidates"] = candidates_json();
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("\nserving layouts of {} ranked by {} ({} simulated of {}; sweep s{} in {}: `moesim report s{} "
                           "--db {}`; {:.0f} s)\n",
                           base.name, key_text, ranked.size(), candidates.size(), sweep_id, o.db, sweep_id, o.db, wall_s);
  const auto sig = [](double v, int digits) { return reports::format_value(v, digits); };
  const std::string sizing = fmt::format(" replicas (devices) for {} req/s |", sig(load_rps, 4));
  std::cout << "| rank | replicas | data | tensor | expert | pipeline |" << (o.max_rate ? " max rate (req/s) |" + sizing : "")
            << " output tok/s | TTFT P99 (ms) | TPOT P99 (ms) | E2E P99 (ms) | P99 SLOs | J/token | gCO2e/1000 tokens |\n";
  std::cout << "|---:|---:|---:|---:|---:|---:|" << (o.max_rate ? "---:|---:|" : "") << "---:|---:|---:|---:|---|---:|---:|\n";
  for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < o.top; ++i) {
    const RankedServing& r = ranked[i];
    std::cout << fmt::format("| {} | {} | {} | {} | {} | {} |{} {} | {} | {} | {} | {} | {} | {} |\n", i + 1, r.layout.replicas,
                             r.layout.data, r.layout.tensor, r.layout.expert, r.layout.pipeline,
                             o.max_rate ? fmt::format(" {} | {} |", sig(r.max_rate_rps, 4),
                                                       r.replicas_for_load > 0 ? fmt::format("{} ({})", r.replicas_for_load, r.devices_for_load)
                                                                               : std::string("-"))
                                        : std::string(),
                             sig(r.output_tokens_per_s, 4),
                             sig(1e3 * r.ttft_p99_s, 4), sig(1e3 * r.tpot_p99_s, 4), sig(1e3 * r.e2e_p99_s, 4),
                             r.slo_met ? "met" : "missed",
                             sig(r.j_per_token, 4), sig(r.g_co2e_per_1k_tokens, 4));
  }
  for (const auto& n : not_ranked) std::cout << "not ranked: " << n << "\n";
  return 0;
}

}  // namespace moesim::cli
