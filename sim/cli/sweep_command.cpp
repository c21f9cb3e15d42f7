// SPDX-License-Identifier: Apache-2.0
// `moesim sweep SCENARIO`: the points of the scenario's `sweep:` section (scenario/sweep.hpp) simulated in child
// processes like `compare`'s alternatives (engine::IsolatedPool), each stored as a run with its point hash under
// one sweep; points already complete in the store are not run again (resume), `--shard I/N` runs one cost-balanced
// shard, `--slurm-script` prints the sbatch array that runs them all; `moesim db merge` joins the shards' stores.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/scenario/sweep.hpp"
#include "moesim/store/store.hpp"
#include "max_rate_search.hpp"
#include "record.hpp"
#include "run_job.hpp"
#include "sweep_plan.hpp"

namespace moesim::cli {

namespace {

using nlohmann::json;

/** A point as this command sees it: resolved (or why not), its hash, estimated cost and shard. */
struct PlannedPoint {
  scenario::SweepPoint point;
  std::optional<scenario::Scenario> scenario;
  std::string hash;
  std::string skip_reason;
  double cost = 0.0;
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/** "moesim.db" -> "moesim": the stem the shards' stores are named after. */
std::string db_stem(const std::string& db) {
  return db.size() > 3 && db.compare(db.size() - 3, 3, ".db") == 0 ? db.substr(0, db.size() - 3) : db;
}

/** What a non-zero std::system() status means: the command's exit code, the signal that ended it, or that no shell
 *  could be started (status -1). */
std::string describe_exit(int status) {
  if (status == -1) return "could not be started (no shell)";
  if (WIFEXITED(status)) return fmt::format("failed with exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return fmt::format("failed (wait status {})", status);
}

/** Where a sweep point's values come from, for error messages: the sweep file and the point (index and values). */
std::string point_origin(const std::string& file, const scenario::SweepPoint& p) {
  return fmt::format("{}: sweep point {} ({})", file, p.index, p.label());
}

/** The scenario at `point` (the file, then `overrides` as --set, then the point's values, then `extra` as --set):
 *  as scenario::load_point, but an error about one of the point's values names the sweep point and the file
 *  (point_origin), not a --set with a made-up location. */
scenario::Scenario load_point_named(const std::string& file, const catalog::Catalog& catalog,
                                    const std::vector<std::string>& overrides, const scenario::SweepPoint& point,
                                    const std::vector<std::string>& extra = {}) {
  std::vector<std::string> all = overrides;
  std::vector<std::string> origins(overrides.size());
  const std::string origin = point_origin(file, point);
  for (auto& x : point.overrides()) {
    all.push_back(std::move(x));
    origins.push_back(origin);
  }
  for (const auto& x : extra) {
    all.push_back(x);
    origins.emplace_back();
  }
  return scenario::load_file(file, catalog, all, origins);
}

/** A point's skip reason for its own progress line, which names the point already: without the point_origin prefix. */
std::string without_origin(const std::string& file, const scenario::SweepPoint& p, const std::string& reason) {
  const std::string prefix = point_origin(file, p) + ": ";
  return reason.rfind(prefix, 0) == 0 ? reason.substr(prefix.size()) : reason;
}

int print_slurm_script(const GlobalOptions& g, const SweepOptions& o, const scenario::SweepDefinition& def) {
  if (o.shards < 1)
    throw UsageError(fmt::format("{} needs --shards N (the number of array tasks, 1 or more)", o.submit ? "--submit" : "--slurm-script"));
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string scenario = fs::absolute(o.scenario, ec).string();
  const std::string stem = fs::absolute(db_stem(o.db), ec).string();
  std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec || self.empty()) self = "moesim";
  std::string cmd = shell_quote(self);
  if (!g.profiles_dir.empty()) cmd += " --profiles " + shell_quote(fs::absolute(g.profiles_dir, ec).string());
  cmd += fmt::format(" sweep {} --db {}\".shard${{SLURM_ARRAY_TASK_ID}}.db\" -j {}", shell_quote(scenario), shell_quote(stem), o.jobs);
  for (const auto& s : o.overrides) cmd += " --set " + shell_quote(s);
  if (o.max_rate) cmd += fmt::format(" --max-rate --rate-tolerance {}", o.rate_tolerance);
  std::string out;
  out += "#!/bin/bash\n";
  out += fmt::format("# moesim sweep of {}: {} points in {} array tasks, each writing its own store\n", o.scenario,
                     def.points.size(), o.shards);
  out += fmt::format("#SBATCH --job-name=moesim-sweep\n#SBATCH --array=0-{}\n", o.shards - 1);
  if (!o.partition.empty()) out += fmt::format("#SBATCH --partition={}\n", o.partition);
  out += fmt::format("#SBATCH --time={}\n#SBATCH --mem={}\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task={}\n", o.time, o.mem,
                     o.jobs);
  out += fmt::format("#SBATCH --output={}.shard%a.log\n", stem);
  out += "set -euo pipefail\n";
  out += "# moesim reads its shard (I of N) from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT; a rerun resumes.\n";
  out += "exec " + cmd + "\n";
  out += fmt::format("# when every task is done: moesim db merge {} {}.shard*.db\n", shell_quote(fs::absolute(o.db, ec).string()),
                     shell_quote(stem));
  if (!o.submit) {
    std::cout << out;
    return 0;
  }
  // --submit: the script next to the shards' stores, handed to sbatch (found on the PATH, never guessed).
  std::string sbatch;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    for (std::string d; std::getline(dirs, d, ':');) {
      const fs::path candidate = fs::path(d.empty() ? "." : d) / "sbatch";
      if (::access(candidate.c_str(), X_OK) == 0) {
        sbatch = candidate.string();
        break;
      }
    }
  }
  const std::string script = stem + ".sbatch.sh";
  {
    std::ofstream f(script);
    f << out;
    if (!f) throw Error(fmt::format("--submit: cannot write the job script {}", script));
  }
  if (sbatch.empty())
    throw Error(fmt::format("--submit: sbatch is not on the PATH (is this a Slurm login node?); the job script is in {}: "
                            "submit it with `sbatch {}` where Slurm runs",
                            script, script));
  std::cout.flush();
  const int status = std::system((shell_quote(sbatch) + " " + shell_quote(script)).c_str());
  if (status != 0)
    throw Error(fmt::format("--submit: `sbatch {}` {}; the job script is in {}", script, describe_exit(status), script));
  std::cout << fmt::format("submitted {}; when every task is done: moesim db merge {} {}.shard*.db\n", script,
                           fs::absolute(o.db, ec).string(), stem);
  return 0;
}


/** The point's scenario with its arrival rate set to `rate` (after the point's own values, so a rate axis is the
 *  search's starting rate), checked and ready to simulate. */
PreparedRun prepare_at_rate(const catalog::Catalog& catalog, const SweepOptions& o, const scenario::SweepPoint& point, double rate,
                            double scale) {
  // The point's own arrival period, which a lengthened probe scales (read only then: a scale-1 probe sets the rate).
  std::vector<std::string> ov = {rate_override(rate)};
  if (scale != 1.0) ov = rate_overrides(load_point_named(o.scenario, catalog, o.overrides, point, {}), rate, scale);
  return prepare_run(catalog, load_point_named(o.scenario, catalog, o.overrides, point, ov));
}

/** Stores what a point's capacity search returned: the run at the rate found (its scenario at that rate, the
 *  search's figures as metrics), a skip when no rate meets the SLOs (a finding, not a failure), or a failed run when
 *  the child failed. Sets `outcome` to the point's record; returns the verdict for the progress line. */
std::string finish_rate_search(store::Store& db, const catalog::Catalog& catalog, const SweepOptions& o, std::int64_t sweep_id,
                               const PlannedPoint& pp, const store::RunRecord& point_header, const engine::IsolatedPool::Done& d,
                               store::SweepPointRecord& outcome) {
  outcome = {static_cast<std::int64_t>(pp.point.index), pp.point.label(), pp.hash, "", std::nullopt, {}};
  std::string verdict;
  if (!d.error.empty()) {
    const std::int64_t id = db.begin_run(point_header);
    db.fail_run(id, d.error);
    outcome.run_id = id;
    verdict = "failed: " + d.error;
  } else if (d.result.value.contains("no_rate")) {
    outcome.skip_reason = "capacity search: " + d.result.value["no_rate"].get<std::string>();
    verdict = "skipped: " + outcome.skip_reason;
  } else {
    const RateSearch found = RateSearch::from_json(d.result.value.at("max_rate"));
    const PreparedRun at = prepare_at_rate(catalog, o, pp.point, found.rate_per_s, found.duration_scale);
    store::RunRecord header = make_header(at.scenario);
    header.alternative_label = pp.point.label();
    header.point_hash = pp.hash;
    const std::int64_t id = db.begin_run(header);
    try {
      store::RunRecord rec = finish_run(catalog, at, d.result.value.at("result"), header);
      found.add_metrics(rec);
      db.complete_run(id, rec);
      verdict = fmt::format("complete (max rate {:.4g} requests/s, {} simulations)", found.sustained_rate_per_s, found.probes.size());
    } catch (const std::exception& e) {
      db.fail_run(id, e.what());
      verdict = std::string("failed: ") + e.what();
    }
    outcome.run_id = id;
  }
  db.set_sweep_point(sweep_id, outcome);
  return verdict;
}

}  // namespace

void check_slurm_only_options(const SweepOptions& o, const std::vector<std::string>& given) {
  if (o.slurm_script || o.submit || given.empty()) return;
  const std::string& name = given.front();
  std::string value, what;
  if (name == "--shards") {
    value = std::to_string(o.shards);
    what = "the number of Slurm array tasks";
  } else if (name == "--partition") {
    value = o.partition;
    what = "the Slurm partition";
  } else if (name == "--time") {
    value = o.time;
    what = "the Slurm time limit per task";
  } else {
    value = o.mem;
    what = "the Slurm memory per task";
  }
  throw UsageError(fmt::format("sweep: {} {} is {} of the job script, and needs --slurm-script (print the script) or "
                               "--submit (submit it); without them the sweep runs here and would ignore it: give one of "
                               "them, or drop {}{}",
                               name, value, what, name, name == "--shards" ? " (--shard I/N runs one shard of N here)" : ""));
}

int cmd_sweep(const GlobalOptions& g, const SweepOptions& o) {
  const scenario::SweepDefinition def = scenario::load_sweep(o.scenario);
  // Which shard, before any work: a bad --shard is a usage error.
  Shard shard = parse_shard(o.shard, std::getenv("SLURM_ARRAY_TASK_ID"), std::getenv("SLURM_ARRAY_TASK_COUNT"),
                            std::getenv("SLURM_ARRAY_TASK_MIN"));
  if (o.slurm_script || o.submit) return print_slurm_script(g, o, def);

  const catalog::Catalog catalog = load_catalog(g);
  run_sweep(catalog, o, def, shard, {});
  return 0;
}

std::string sweep_summary_line(const SweepCounts& c, const Shard& shard, const std::string& db) {
  return fmt::format("moesim sweep {} of {}: {} points{}: {} run now, {} already complete, {} skipped, {} failed; "
                     "stored in {}\n",
                     c.sweep_id, c.scenario, c.points,
                     shard.count > 1 ? fmt::format(", shard {}/{} holds {}", shard.index, shard.count, c.shard_points) : "",
                     c.ran, c.reused, c.skipped, c.failed, db);
}

std::int64_t run_sweep(const catalog::Catalog& catalog, const SweepOptions& o, const scenario::SweepDefinition& def,
                       const Shard& shard, const std::map<std::size_t, std::string>& preskip, SweepCounts* counts) {
  std::vector<PlannedPoint> plan;
  std::string scenario_name;
  json identity = json::array();
  json axes = json::array();
  for (const auto& a : def.axes) axes.push_back({{"key", a.key}, {"values", a.values}});
  // Each axis' dimension of the enumeration (a zip group's axes share one), so that a report can name the values of
  // the points a store does not hold: point i is the odometer reading i over the dimensions, the last one fastest.
  for (std::size_t d = 0; d < def.dimensions.size(); ++d)
    for (const std::size_t a : def.dimensions[d])
      if (a < axes.size()) axes[a]["dimension"] = d;
  for (const auto& p : def.points) {
    PlannedPoint pp{p, std::nullopt, "", "", 0.0};
    try {
      scenario::Scenario resolved = load_point_named(o.scenario, catalog, o.overrides, p);
      if (o.max_rate) check_rate_searchable(resolved, o.scenario);
      pp.scenario = std::move(resolved);
      // A capacity search is another question about the same scenario: its own identity (resume never mixes them).
      pp.hash = o.max_rate ? scenario::content_hash(json{{"scenario", pp.scenario->resolved},
                                                         {"search", {{"kind", "max_rate"}, {"rate_tolerance", o.rate_tolerance}}}})
                           : scenario::content_hash(pp.scenario->resolved);
      pp.cost = estimated_cost(pp.scenario->resolved);
      if (scenario_name.empty()) scenario_name = pp.scenario->name;
      identity.push_back(pp.hash);
      if (auto why = preskip.find(p.index); why != preskip.end()) {  // decided by the caller (the planner): not run
        pp.skip_reason = why->second;
        pp.scenario.reset();
        pp.cost = 0.0;
      }
    } catch (const Error& e) {
      pp.skip_reason = e.what();
      identity.push_back("unresolved: " + p.label());
    }
    plan.push_back(std::move(pp));
  }
  const std::size_t resolved = static_cast<std::size_t>(
      std::count_if(plan.begin(), plan.end(), [](const PlannedPoint& p) { return p.scenario.has_value(); }));
  if (resolved == 0 && preskip.empty()) {
    // The reason names the point when the point's own value is at fault (point_origin); else it is named here.
    const std::string& why = plan[0].skip_reason;
    throw Error(fmt::format("{}: none of the sweep's {} points resolves to a valid scenario; the first: {}", o.scenario,
                            plan.size(),
                            why.rfind(point_origin(o.scenario, plan[0].point), 0) == 0
                                ? why
                                : fmt::format("point 0 ({}): {}", plan[0].point.label(), why)));
  }
  const std::string definition_hash =
      scenario::fnv1a_128_hex(json{{"scenario", scenario_name}, {"points", identity}}.dump());
  std::vector<double> costs;
  for (const auto& p : plan) costs.push_back(p.cost);
  const std::vector<int> owner = assign_shards(costs, shard.count);

  store::Store db(o.db);
  const std::int64_t sweep_id = db.open_sweep(scenario_name, definition_hash, static_cast<std::int64_t>(plan.size()), axes, json(o.overrides));
  // Runs a killed sweep left `running` (one sweep process per store at a time), by point hash.
  std::map<std::string, std::vector<std::int64_t>> left_running;
  for (const auto& r : db.list_runs())
    if (r.status == store::RunStatus::running && !r.point_hash.empty()) left_running[r.point_hash].push_back(r.id);

  const bool tty = isatty(2) && !o.json;
  std::size_t mine = 0, reused = 0, skipped = 0, failed = 0, ran = 0;
  std::string first_skip_reason;  // of this process's points, for the all-skipped error
  std::vector<std::size_t> queue;
  std::map<std::string, std::size_t> first_of_hash;  // point hash -> the first point of the shard to run it
  std::vector<std::size_t> duplicates;
  std::map<std::size_t, store::SweepPointRecord> outcome;  // what each point queued to run became
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (owner[i] != shard.index) continue;
    ++mine;
    PlannedPoint& pp = plan[i];
    store::SweepPointRecord rec;
    rec.index = static_cast<std::int64_t>(i);
    rec.label = pp.point.label();
    rec.point_hash = pp.hash;
    if (!pp.scenario) {
      rec.skip_reason = pp.skip_reason;
    } else if (auto done = db.find_complete_run(pp.hash)) {
      rec.run_id = done;
      ++reused;
    } else if (first_of_hash.count(pp.hash)) {
      duplicates.push_back(i);  // resolves to the scenario of an earlier point: run once, linked to both
      continue;
    } else {
      first_of_hash[pp.hash] = i;
      queue.push_back(i);
      continue;
    }
    if (!rec.skip_reason.empty()) {
      ++skipped;
      if (first_skip_reason.empty()) first_skip_reason = rec.skip_reason;
      if (!tty && !o.json && !preskip.count(i))
        std::cerr << fmt::format("[sweep] point {} ({}): skipped: {}\n", i, rec.label,
                                 without_origin(o.scenario, pp.point, rec.skip_reason));
    }
    db.set_sweep_point(sweep_id, rec);
  }

  // Feasibility (memory, topology) and energy data of the points to run: a failure skips that point only.
  std::vector<std::pair<std::size_t, PreparedRun>> runs;
  for (std::size_t i : queue) {
    PlannedPoint& pp = plan[i];
    store::SweepPointRecord rec;
    rec.index = static_cast<std::int64_t>(i);
    rec.label = pp.point.label();
    rec.point_hash = pp.hash;
    try {
      runs.emplace_back(i, prepare_run(catalog, std::move(*pp.scenario)));
      continue;
    } catch (const Error& e) {
      rec.skip_reason = e.what();
    }
    ++skipped;
    if (first_skip_reason.empty()) first_skip_reason = rec.skip_reason;
    if (!tty && !o.json)
      std::cerr << fmt::format("[sweep] point {} ({}): skipped: {}\n", i, rec.label,
                               without_origin(o.scenario, pp.point, rec.skip_reason));
    db.set_sweep_point(sweep_id, rec);
    outcome[i] = rec;
  }

  install_interrupt_handler();
  std::vector<std::int64_t> ids(runs.size(), 0);
  std::vector<store::RunRecord> headers(runs.size());
  std::deque<std::size_t> todo;
  for (std::size_t k = 0; k < runs.size(); ++k) todo.push_back(k);
  std::map<int, std::size_t> by_ticket;
  std::size_t finished = 0;
  try {
    engine::IsolatedPool pool;
    while (!todo.empty() || pool.running() > 0) {
      while (!todo.empty() && static_cast<int>(pool.running()) < std::max(1, o.jobs)) {
        const std::size_t k = todo.front();
        todo.pop_front();
        const std::size_t i = runs[k].first;
        headers[k] = make_header(runs[k].second.scenario);
        headers[k].alternative_label = plan[i].point.label();
        headers[k].point_hash = plan[i].hash;
        // A run of this point left `running` by a killed sweep will never finish: it is marked abandoned.
        for (const std::int64_t old : left_running[plan[i].hash])
          db.fail_run(old, "abandoned: the sweep process stopped before this run finished; the point was run again");
        const PreparedRun* p = &runs[k].second;
        if (o.max_rate) {
          // The search's probes are simulated in grandchildren; its run is stored when it ends, at the rate found.
          by_ticket[pool.start([&, p, i] {
            try {
              const RateSearch found = search_max_rate(p->scenario, o.rate_tolerance, [&](double rate, double scale) {
                const PreparedRun at = prepare_at_rate(catalog, o, plan[i].point, rate, scale);
                return engine::run_isolated([&] { return simulate_json(catalog, at); }).value;
              });
              return json{{"max_rate", found.to_json()}, {"result", found.result}};
            } catch (const Error& e) {
              return json{{"no_rate", e.what()}};
            }
          })] = k;
          continue;
        }
        ids[k] = db.begin_run(headers[k]);
        outcome[i] = {static_cast<std::int64_t>(i), headers[k].alternative_label, plan[i].hash, "", ids[k], {}};
        db.set_sweep_point(sweep_id, outcome[i]);
        by_ticket[pool.start([p, &catalog] { return simulate_json(catalog, *p); })] = k;
      }
      engine::IsolatedPool::Done d = pool.wait_any(interrupt_flag());
      const std::size_t k = by_ticket.at(d.ticket);
      const std::size_t i = runs[k].first;
      ++finished;
      std::string verdict = "complete";
      if (o.max_rate) {
        verdict = finish_rate_search(db, catalog, o, sweep_id, plan[i], headers[k], d, outcome[i]);
        if (verdict.rfind("failed", 0) == 0) {
          ++failed;
        } else if (verdict.rfind("skipped", 0) == 0) {
          ++skipped;
          if (first_skip_reason.empty()) first_skip_reason = outcome[i].skip_reason;
        } else {
          ++ran;
        }
        ids[k] = outcome[i].run_id.value_or(0);
      } else if (!d.error.empty()) {
        db.fail_run(ids[k], d.error);
        verdict = "failed: " + d.error;
        ++failed;
      } else {
        try {
          db.complete_run(ids[k], finish_run(catalog, runs[k].second, d.result.value, headers[k]));
          ++ran;
        } catch (const std::exception& e) {
          db.fail_run(ids[k], e.what());
          verdict = std::string("failed: ") + e.what();
          ++failed;
        }
      }
      if (tty)
        // One line that \r can overwrite: a long label is cut (a wrapped line would not be overwritten).
        std::cerr << fmt::format("\r[sweep] {}/{} run ({} already complete, {} skipped) point {}: {:.40}      ", finished,
                                 runs.size(), reused, skipped, i, plan[i].point.label())
                  << std::flush;
      else if (!o.json)
        // A point skipped by its capacity search has no run: no run id to print.
        std::cerr << fmt::format("[sweep] {}/{} point {} ({}): {}{} in {:.2f} s\n", finished, runs.size(), i,
                                 plan[i].point.label(), ids[k] != 0 ? fmt::format("run {} ", ids[k]) : "", verdict,
                                 d.result.wall_s);
    }
  } catch (const Error& e) {
    // Interrupted (or the pool failed): started runs not finished are marked failed; a rerun runs them again.
    for (std::size_t k = 0; k < ids.size(); ++k)
      if (ids[k] != 0 && db.get_run(ids[k]).status == store::RunStatus::running) db.fail_run(ids[k], e.what());
    throw;
  }
  if (tty) std::cerr << "\n";
  for (std::size_t i : duplicates) {
    store::SweepPointRecord rec = outcome.at(first_of_hash.at(plan[i].hash));
    rec.index = static_cast<std::int64_t>(i);
    rec.label = plan[i].point.label();
    db.set_sweep_point(sweep_id, rec);
    ++(rec.skip_reason.empty() ? reused : skipped);
  }

  const SweepCounts totals{sweep_id, scenario_name, plan.size(), mine, ran, reused, skipped, failed};
  if (counts != nullptr) {
    *counts = totals;
  } else if (o.json) {
    std::cout << json{{"sweep_id", sweep_id},
                      {"definition_hash", definition_hash},
                      {"scenario", scenario_name},
                      {"overrides", o.overrides},
                      {"points", plan.size()},
                      {"shard", {{"index", shard.index}, {"count", shard.count}}},
                      {"shard_points", mine},
                      {"run", ran},
                      {"already_complete", reused},
                      {"skipped", skipped},
                      {"failed", failed}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << sweep_summary_line(totals, shard, o.db);
  }
  if (failed > 0)
    throw Error(fmt::format("{} of the sweep's points failed (`moesim runs list --db {}` shows why); run the same command "
                            "again to retry them",
                            failed, o.db));
  if (mine > 0 && skipped == mine && shard.count == 1)
    throw Error(fmt::format("every point of the sweep was skipped (`moesim runs list` has none): the first: {}",
                            first_skip_reason));
  return sweep_id;
}

int cmd_db_merge(const DbMergeOptions& o) {
  // Every input checked before the output store is opened (and so created when absent): a merge refused for a bad
  // input leaves no empty store behind. Store::merge_from checks each again (and its integrity) as it merges.
  for (const auto& shard : o.shards) {
    std::error_code ec;
    if (!std::filesystem::exists(shard, ec))
      throw Error(fmt::format("cannot merge {}: no such file; give the shard stores to merge (e.g. {}.shard*.db)", shard,
                              db_stem(o.out)));
    if (std::filesystem::is_directory(shard, ec))
      throw Error(fmt::format("cannot merge {}: it is a directory; give the shard stores to merge (SQLite files)", shard));
    std::size_t sweeps = 0, runs = 0;
    try {
      const store::Store in(shard, store::Store::Mode::read_only);
      sweeps = in.list_sweeps().size();
      runs = in.list_runs().size();
    } catch (const Error& e) {
      throw Error(fmt::format("cannot merge {}: {}", shard, e.what()));
    }
    // A store of runs and comparisons only would merge nothing: said, rather than an empty store and exit 0.
    if (sweeps == 0)
      throw Error(fmt::format("cannot merge {}: it holds no sweep ({} run{} outside any); db merge gathers the shard stores of "
                              "a sweep (moesim sweep --shard); runs and comparisons stay in the store that ran them",
                              shard, runs, runs == 1 ? "" : "s"));
  }
  store::Store out(o.out);
  json results = json::array();
  for (const auto& shard : o.shards) {
    const store::MergeStats s = out.merge_from(shard);
    results.push_back({{"shard", shard},
                       {"sweeps_added", s.sweeps_added},
                       {"runs_copied", s.runs_copied},
                       {"runs_already_present", s.runs_already_present},
                       {"points_added", s.points_added},
                       {"points_updated", s.points_updated},
                       {"runs_left_out", s.runs_left_out}});
    if (!o.json)
      std::cout << fmt::format("{}: {} runs copied, {} already present, {} points added, {} updated{}\n", shard, s.runs_copied,
                               s.runs_already_present, s.points_added, s.points_updated,
                               s.runs_left_out ? fmt::format(", {} runs of no sweep or unfinished left out", s.runs_left_out) : "");
  }
  if (o.json) std::cout << json{{"out", o.out}, {"shards", results}}.dump(2) << "\n";
  return 0;
}

}  // namespace moesim::cli
