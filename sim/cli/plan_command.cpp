// SPDX-License-Identifier: Apache-2.0
// `moesim plan SCENARIO`: the parallelism planner. The layouts of engine/planner.hpp become the points of a sweep
// with one zipped axis group (parallelism.data, .expert, .tensor, .pipeline, .microbatches, .zero_stage,
// .virtual_stages, .schedule); the
// layouts that are invalid, do not fit or are dominated are stored as skipped points with their reason, the rest
// run as `moesim sweep` runs them (child processes, resumable, shardable), and the completed runs are ranked.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/engine/bound.hpp"
#include "moesim/engine/planner.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/scenario/sweep.hpp"
#include "moesim/store/store.hpp"
#include "sweep_plan.hpp"

namespace moesim::cli {

namespace {

using nlohmann::json;

/** A layout in `plan --json`: its label, each degree and its schedule. */
json layout_json(const engine::Layout& l) {
  return {{"layout", l.label()},       {"data", l.data},
          {"expert", l.expert},        {"tensor", l.tensor},
          {"pipeline", l.pipeline},    {"microbatches", l.microbatches},
          {"zero_stage", l.zero_stage}, {"virtual_stages", l.virtual_stages},
          {"schedule", l.schedule}};
}

/** The schedule column of the ranked table: "1f1b", "interleaved v2", "dualpipe". */
std::string schedule_text(const engine::Layout& l) {
  return l.schedule == "interleaved_1f1b" ? fmt::format("interleaved v{}", l.virtual_stages) : l.schedule;
}

/** One simulated layout's figures, from its stored run. */
struct Ranked {
  engine::Layout layout;
  std::int64_t run_id = 0;
  double step_time_s = 0.0, train_days = 0.0, facility_mwh = 0.0, co2e_t = 0.0, mfu = 0.0, dropped = 0.0;
  bool remat = false, selective = false;
};

}  // namespace

int cmd_plan(const GlobalOptions& g, const PlanOptions& o) {
  const json raw = scenario::raw_document(o.scenario, o.overrides);
  if (raw.is_object() && raw.contains("serving")) return cmd_plan_serving(g, o);
  if (o.max_rate)
    throw UsageError("--max-rate searches the arrival rate of each serving layout; " + o.scenario +
                     " is a training scenario (its plan ranks by --rank-by time, energy or co2e)");
  const auto wall0 = std::chrono::steady_clock::now();
  const Shard shard = parse_shard(o.shard, std::getenv("SLURM_ARRAY_TASK_ID"), std::getenv("SLURM_ARRAY_TASK_COUNT"),
                                  std::getenv("SLURM_ARRAY_TASK_MIN"));
  const catalog::Catalog catalog = load_catalog(g);
  const scenario::Scenario base = scenario::load_plan_base(o.scenario, catalog, o.overrides);
  const catalog::AcceleratorSpec& accel = catalog.accelerator(base.cluster.accelerator);
  engine::PlanSpace space = engine::plan_space(base, accel, o.max_microbatch_factor);
  space.max_pipeline = o.max_pipeline;
  // Sequence parallelism (and the tensor-parallel overlap, which needs it) asked for in the file applies where there
  // is a tensor group to shard over: the plan turns both off on tensor-1 layouts rather than find those invalid.
  const json* par = raw.contains("parallelism") && raw["parallelism"].is_object() ? &raw["parallelism"] : nullptr;
  auto asked = [&](const char* k) { return par && par->contains(k) && (*par)[k].is_boolean() && (*par)[k].get<bool>(); };
  space.sequence_parallel = asked("sequence_parallel");
  // The pipeline schedule: a DualPipe schedule the file names is kept on the pipelined layouts; otherwise the plan
  // chooses between 1F1B and the interleaved schedule, up to --max-virtual-stages chunks per stage (or the file's own
  // virtual_stages, if larger).
  const std::string sched = par && par->contains("schedule") && (*par)["schedule"].is_string() ? (*par)["schedule"].get<std::string>() : "";
  if (sched == "dualpipe" || sched == "dualpipev") space.dual_schedule = sched;
  space.max_virtual_stages = o.max_virtual_stages;
  if (!o.max_virtual_stages_given && par && par->contains("virtual_stages") && (*par)["virtual_stages"].is_number_integer())
    space.max_virtual_stages = std::max(space.max_virtual_stages, (*par)["virtual_stages"].get<int>());
  space.overlap_tensor_comm = space.sequence_parallel && asked("overlap_tensor_comm");
  // Extra plan axes, each a value per layout: the tensor keys on where tensor > 1 and off where tensor = 1; the stage
  // sizes the file gives (first/last_stage_layers) where there is a pipeline and left out (null) where there is none.
  struct ExtraAxis {
    std::string key;
    std::function<json(const engine::Layout&)> value;
  };
  std::vector<ExtraAxis> extra_axes;
  const auto with_tensor = [](const engine::Layout& l) { return json(l.tensor > 1); };
  if (space.sequence_parallel) extra_axes.push_back({"parallelism.sequence_parallel", with_tensor});
  if (space.overlap_tensor_comm) extra_axes.push_back({"parallelism.overlap_tensor_comm", with_tensor});
  for (const char* k : {"first_stage_layers", "last_stage_layers"})
    if (par && par->contains(k) && (*par)[k].is_number_integer()) {
      const json layers = (*par)[k];
      extra_axes.push_back({std::string("parallelism.") + k,
                            [layers](const engine::Layout& l) { return l.pipeline > 1 ? layers : json(nullptr); }});
      space.stage_layers = true;
    }
  const std::vector<engine::Layout> layouts = engine::enumerate_layouts(space);
  // The --set expressions that make the file one layout: the plan resolves each with them, and prints the best's.
  auto layout_overrides = [&](const engine::Layout& l) {
    std::vector<std::string> sets = l.overrides();
    for (const auto& a : extra_axes) sets.push_back(a.key + "=" + a.value(l).dump());
    return sets;
  };
  auto resolve = [&](const engine::Layout& l) {
    // The layout's values are the plan's, not a --set the user typed: an error about one names the layout.
    std::vector<std::string> all = o.overrides;
    std::vector<std::string> origins(o.overrides.size());
    const std::string origin = fmt::format("{}: plan layout {}", o.scenario, l.label());
    for (auto& s : layout_overrides(l)) {
      all.push_back(std::move(s));
      origins.push_back(origin);
    }
    return scenario::load_file(o.scenario, catalog, all, origins);
  };
  const std::vector<engine::Candidate> candidates = engine::screen_layouts(layouts, resolve, accel);
  std::map<engine::Verdict, std::size_t> counts;
  std::map<std::string, std::size_t> reasons;  // invalid reasons (first line), to summarise
  for (const auto& c : candidates) {
    ++counts[c.verdict];
    if (c.verdict != engine::Verdict::invalid) continue;
    // Summarised by reason: the layout named in it ("FILE: plan layout LABEL: ") left out, so that one rule broken by
    // many layouts is one line.
    std::string why = c.reason.substr(0, c.reason.find('\n'));
    const std::string named = fmt::format("plan layout {}: ", c.layout.label());
    if (const auto at = why.find(named); at != std::string::npos) why.erase(0, at + named.size());
    ++reasons[why];
  }
  const double gib = units::kGiB;
  const std::vector<std::string> rules = engine::enumeration_rules(space);
  auto summary_text = [&] {
    std::string out = fmt::format("moesim plan of {} on {} x {} ({} devices): {} layouts enumerated; {} to simulate, {} "
                                  "do not fit in memory, {} invalid, {} dominated (not simulated)\n",
                                  base.name, base.cluster.count, accel.name, space.devices, candidates.size(),
                                  counts[engine::Verdict::simulate], counts[engine::Verdict::out_of_memory],
                                  counts[engine::Verdict::invalid], counts[engine::Verdict::dominated]);
    out += "rules:\n";
    for (const auto& r : rules) out += "  - " + r + "\n";
    // The memory prunes summarised: the range of what they need against the capacity.
    double lo = 0.0, hi = 0.0, cap = 0.0;
    bool any = false;
    for (const auto& c : candidates)
      if (c.verdict == engine::Verdict::out_of_memory) {
        lo = any ? std::min(lo, c.need_bytes) : c.need_bytes;
        hi = any ? std::max(hi, c.need_bytes) : c.need_bytes;
        cap = c.capacity_bytes;
        any = true;
      }
    if (any)
      out += fmt::format("out of memory: {} layouts need {:.1f} to {:.1f} GiB per device, {:.1f} GiB available\n",
                         counts[engine::Verdict::out_of_memory], lo / gib, hi / gib, cap / gib);
    for (const auto& [why, n] : reasons) out += fmt::format("invalid ({}): {}\n", n, why);
    return out;
  };

  // Every layout with its verdict and reason (--list), as JSON and as text lines; without --list the text lists the
  // layouts to simulate only.
  auto candidates_json = [&] {
    json list = json::array();
    for (const auto& c : candidates) {
      json item = layout_json(c.layout);
      item["verdict"] = engine::to_string(c.verdict);
      item["reason"] = c.reason;
      item["memory_need_bytes"] = c.need_bytes;
      item["memory_capacity_bytes"] = c.capacity_bytes;
      list.push_back(std::move(item));
    }
    return list;
  };
  auto candidates_text = [&] {
    std::string out;
    for (const auto& c : candidates) {
      if (!o.list_pruned && c.verdict != engine::Verdict::simulate) continue;
      out += fmt::format("  {:<28} {:<13} {:6.1f} GiB{}{}\n", c.layout.label(), engine::to_string(c.verdict),
                         c.need_bytes / gib, c.remat ? " full" : c.selective ? " selective" : "",
                         c.reason.empty() ? "" : "  " + c.reason);
    }
    return out;
  };

  if (o.dry_run) {
    if (o.json) {
      const json list = candidates_json();
      std::cout << json{{"scenario", base.name},
                        {"devices", space.devices},
                        {"rules", rules},
                        {"layouts", candidates.size()},
                        {"simulate", counts[engine::Verdict::simulate]},
                        {"out_of_memory", counts[engine::Verdict::out_of_memory]},
                        {"invalid", counts[engine::Verdict::invalid]},
                        {"dominated", counts[engine::Verdict::dominated]},
                        {"candidates", list}}
                       .dump(2)
                << "\n";
    } else {
      std::cout << summary_text() << candidates_text();
    }
    engine::require_simulable(candidates, accel.name);
    return 0;
  }
  engine::require_simulable(candidates, accel.name);

  // The plan as a sweep: one zip group of the eight layout keys (and the extra axes above), a point per layout, the
  // screened-out ones pre-skipped.
  scenario::SweepDefinition def;
  def.file = o.scenario;
  std::vector<std::size_t> group;
  for (const auto& kv : engine::Layout{}.values()) {  // the eight layout keys, in values()'s order
    group.push_back(def.axes.size());
    def.axes.push_back({kv.first, {}});
  }
  for (const auto& c : candidates) {
    const auto values = c.layout.values();
    for (std::size_t k = 0; k < values.size(); ++k) def.axes[k].values.push_back(values[k].second);
  }
  for (const auto& a : extra_axes) {
    scenario::SweepAxis axis{a.key, {}};
    for (const auto& c : candidates) axis.values.push_back(a.value(c.layout));
    group.push_back(def.axes.size());
    def.axes.push_back(std::move(axis));
  }
  def.dimensions.push_back(group);
  std::map<std::size_t, std::string> preskip;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    scenario::SweepPoint p;
    p.index = i;
    for (auto& kv : candidates[i].layout.values()) p.assignment.push_back(std::move(kv));
    for (const auto& a : extra_axes) p.assignment.emplace_back(a.key, a.value(candidates[i].layout));
    def.points.push_back(std::move(p));
    if (candidates[i].verdict != engine::Verdict::simulate)
      preskip[i] = fmt::format("plan: {}: {}", engine::to_string(candidates[i].verdict), candidates[i].reason);
  }
  // --list without --dry-run: every layout with its verdict before the runs (stderr, as the summary: stdout is the
  // ranked table or, with --json, one JSON object, which then holds the list as `candidates`).
  if (!o.json) std::cerr << summary_text() << (o.list_pruned ? candidates_text() : std::string());
  SweepOptions so;
  so.scenario = o.scenario;
  so.db = o.db;
  so.overrides = o.overrides;
  so.jobs = o.jobs;
  so.json = false;
  // The plan may run its sweep several times (a batch of layouts at a time, then once more to record the bounded
  // ones): the sweep's summary is printed once, for the whole plan. "run now" adds up every call; "already
  // complete" counts only what was complete before the plan started (the last call also finds complete the points
  // the earlier calls ran).
  std::size_t ran_total = 0, failed_total = 0;
  SweepCounts last;
  auto print_summary = [&] {
    if (last.sweep_id == 0) return;  // no sweep call got as far as its summary
    SweepCounts all = last;
    all.ran = ran_total;
    all.failed = failed_total;
    const std::size_t ran_before_last = ran_total - last.ran;
    all.reused = last.reused - std::min(last.reused, ran_before_last);
    // To stderr with --json, so stdout is one JSON object.
    (o.json ? std::cerr : std::cout) << sweep_summary_line(all, shard, o.db);
  };
  auto sweep_with = [&](const std::map<std::size_t, std::string>& skip) {
    std::int64_t id = 0;
    SweepCounts c;
    try {
      const StdoutToStderr quiet(o.json);  // anything the sweep itself prints: stdout stays one JSON object
      id = run_sweep(catalog, so, def, shard, skip, &c);
    } catch (...) {
      if (c.sweep_id != 0) {
        ran_total += c.ran;
        failed_total += c.failed;
        last = c;
        print_summary();
      }
      throw;
    }
    ran_total += c.ran;
    failed_total += c.failed;
    last = c;
    return id;
  };
  std::int64_t sweep_id = 0;
  // Branch and bound (ranked by time, one shard): each layout's training time has a lower bound computed without
  // simulating (engine/bound.hpp: the step DAG's longest path at durations no phase can beat). Layouts are
  // simulated in the order of their bounds, a few at a time; once the best simulated layout is at least as fast as
  // the next bound, no layout left can beat it, and the rest are stored as skipped with both figures.
  const bool bound_and_prune = !o.exhaustive && o.rank_by == "time" && shard.count == 1;
  std::size_t n_bounded = 0;
  if (!bound_and_prune) {
    sweep_id = sweep_with(preskip);
    print_summary();
  } else {
    std::vector<std::pair<double, std::size_t>> order;  // (lower bound of the training time, candidate)
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (candidates[i].verdict != engine::Verdict::simulate) continue;
      double bound = 0.0;  // a layout whose bound cannot be computed is simulated first
      try {
        bound = engine::train_time_lower_bound_s(resolve(candidates[i].layout), catalog);
      } catch (const Error&) {
      }
      order.emplace_back(bound, i);
    }
    std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const std::size_t batch_size = static_cast<std::size_t>(std::max(2, 2 * o.jobs));
    double best_s = std::numeric_limits<double>::infinity();
    std::string best_label;
    std::vector<bool> chosen(candidates.size(), false);
    std::size_t next = 0;
    while (true) {
      std::vector<std::size_t> batch;
      for (; next < order.size() && batch.size() < batch_size && order[next].first < best_s; ++next) batch.push_back(order[next].second);
      if (batch.empty()) break;
      for (std::size_t i : batch) chosen[i] = true;
      std::map<std::size_t, std::string> skip = preskip;
      for (const auto& [bound, i] : order)
        if (!chosen[i]) skip[i] = "plan: not simulated yet (its lower bound comes later in the plan)";
      sweep_id = sweep_with(skip);
      const store::Store db(o.db, store::Store::Mode::read_only);
      for (const auto& p : db.get_sweep(sweep_id).points) {
        const auto i = static_cast<std::size_t>(p.index);
        if (i >= chosen.size() || !chosen[i] || !p.run_id || p.run_status != store::RunStatus::complete) continue;
        const double t = db.get_run(*p.run_id).metric_or(store::metric_names::kTrainTime_s,
                                   std::numeric_limits<double>::infinity());
        if (t < best_s) {
          best_s = t;
          best_label = candidates[i].layout.label();
        }
      }
    }
    for (const auto& [bound, i] : order)
      if (!chosen[i]) {
        ++n_bounded;
        preskip[i] = fmt::format("plan: bounded: it trains in at least {:.4g} days (a lower bound), no faster than {} "
                                 "simulated at {:.4g} days",
                                 bound / 86400.0, best_label, best_s / 86400.0);
      }
    sweep_id = sweep_with(preskip);
    print_summary();
    if (!o.json && n_bounded > 0)
      std::cerr << fmt::format("plan: {} of {} layouts not simulated: their lower bounds cannot beat {} ({:.4g} days)\n",
                               n_bounded, order.size(), best_label, best_s / 86400.0);
  }

  // Rank the layouts whose runs completed (this shard's, or all of them once merged into one store).
  store::Store db(o.db, store::Store::Mode::read_only);
  const store::SweepRecord sweep = db.get_sweep(sweep_id);
  std::vector<Ranked> ranked;
  for (const auto& p : sweep.points) {
    if (!p.run_id || p.run_status != store::RunStatus::complete) continue;
    const store::RunRecord r = db.get_run(*p.run_id);
    Ranked k;
    k.layout = candidates.at(static_cast<std::size_t>(p.index)).layout;
    k.run_id = r.id;
    k.step_time_s = r.metric_or("step_time_s");
    k.train_days = r.metric_or(store::metric_names::kTrainTime_s) / 86400.0;
    k.facility_mwh = r.metric_or("facility_energy_j") / 3.6e9;
    k.co2e_t = r.metric_or("co2e_gross_kg") / 1000.0;
    k.mfu = r.metric_or("mfu");
    k.dropped = r.metric_or("tokens_dropped_fraction");
    k.remat = r.metric_or("rematerialization") > 0.5;
    k.selective = r.metric_or("selective_recomputation") > 0.5;
    ranked.push_back(k);
  }
  auto key = [&](const Ranked& r) {
    return o.rank_by == "energy" ? r.facility_mwh : o.rank_by == "co2e" ? r.co2e_t : r.train_days;
  };
  // The tokens dropped by expert capacity depend on the layout (routing groups are per device): shown, not ranked.
  // Ties (the same figure) keep the enumeration order: the simpler layout (fewer pipeline stages, less tensor) first.
  std::stable_sort(ranked.begin(), ranked.end(), [&](const Ranked& a, const Ranked& b) { return key(a) < key(b); });
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();

  if (o.json) {
    json rows = json::array();
    for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < o.top; ++i) {
      const Ranked& r = ranked[i];
      json row = layout_json(r.layout);
      row.update(json{{"rank", i + 1},
                      {"run_id", r.run_id},
                      {"step_time_s", r.step_time_s},
                      {"train_days", r.train_days},
                      {"facility_energy_mwh", r.facility_mwh},
                      {"co2e_gross_t", r.co2e_t},
                      {"mfu", r.mfu},
                      {"tokens_dropped_fraction", r.dropped},
                      {"rematerialization", r.remat ? "full" : r.selective ? "selective" : "none"}});
      rows.push_back(std::move(row));
    }
    json out{{"sweep_id", sweep_id},
                      {"scenario", base.name},
                      {"devices", space.devices},
                      {"rank_by", o.rank_by},
                      {"rules", rules},
                      {"layouts", candidates.size()},
                      {"simulated", ranked.size()},
                      {"out_of_memory", counts[engine::Verdict::out_of_memory]},
                      {"invalid", counts[engine::Verdict::invalid]},
                      {"dominated", counts[engine::Verdict::dominated]},
                      {"bounded", n_bounded},
                      {"wall_s", wall_s},
                      {"ranked", rows}};
    if (!ranked.empty()) out["best_overrides"] = layout_overrides(ranked.front().layout);
    if (o.list_pruned) out["candidates"] = candidates_json();
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("\nlayouts of {} ranked by {} ({} simulated of {}; sweep s{} in {}: `moesim report s{} --db {}`; "
                           "{:.0f} s)\n",
                           base.name, o.rank_by == "time" ? "training time" : o.rank_by == "energy" ? "facility energy" : "gross CO2e",
                           ranked.size(), candidates.size(), sweep_id, o.db, sweep_id, o.db, wall_s);
  std::cout << "| rank | data | expert | tensor | pipeline | schedule | micro-batches | ZeRO | recompute | step time (s) | days | "
               "MWh | tCO2e | MFU | dropped |\n";
  std::cout << "|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n";
  // Significant digits, as `runs list` and the sweep report (reports::format_value): fixed decimals would print a
  // small scenario's layouts as identical rows of 0.00.
  const auto sig = [](double v, int digits) { return reports::format_value(v, digits); };
  for (std::size_t i = 0; i < ranked.size() && static_cast<int>(i) < o.top; ++i) {
    const Ranked& r = ranked[i];
    std::cout << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}% | {}% |\n", i + 1,
                             r.layout.data, r.layout.expert, r.layout.tensor, r.layout.pipeline, schedule_text(r.layout),
                             r.layout.microbatches,
                             r.layout.zero_stage, r.remat ? "full" : r.selective ? "selective" : "none", sig(r.step_time_s, 4),
                             sig(r.train_days, 4), sig(r.facility_mwh, 4), sig(r.co2e_t, 4), sig(100.0 * r.mfu, 3),
                             sig(100.0 * r.dropped, 3));
  }
  // The best layout as a command (`parallelism: auto` files refuse `run` until a layout is given).
  if (!ranked.empty()) {
    std::string cmd = "moesim run " + o.scenario;
    for (const auto& set : o.overrides) cmd += " --set '" + set + "'";
    for (const auto& set : layout_overrides(ranked.front().layout)) cmd += " --set " + set;
    std::cout << "\nrun the best: " << cmd << "\n";
  }
  return 0;
}

}  // namespace moesim::cli
