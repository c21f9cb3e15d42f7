// SPDX-License-Identifier: Apache-2.0
#include "app.hpp"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <new>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/version.hpp"
#include "sweep_plan.hpp"

namespace moesim::cli {

int main(int argc, char** argv) {
  CLI::App app{"moesim: what does it cost, in days, MWh and tCO2e, to train this Mixture-of-Experts model on this "
               "cluster in this datacenter, and where should it run? And to serve it: latency (TTFT, TPOT), throughput, "
               "and energy and CO2e per token of an inference deployment"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("moesim {} ({})", kVersion, kGitHash));
  GlobalOptions g;
  app.add_option("--profiles", g.profiles_dir, "Profiles directory (default: $MOESIM_PROFILES or the source tree's profiles/)");

  // run
  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Simulate a scenario, store the run, print its summary");
  run_cmd->add_option("scenario", run.scenario, "Scenario YAML file")->required();
  run_cmd->add_flag("--json", run.json, "Print one JSON object instead of the summary");
  run_cmd->add_option("--db", run.db, "Run store (SQLite)")->default_val("moesim.db");
  run_cmd->add_flag("--no-store", run.no_store, "Do not write the run to the store");
  run_cmd->add_option("--set", run.overrides, "Override a scenario key: KEY.PATH=YAML (repeatable) (a mapping of another type: replaces; KEY=null removes)");
  run_cmd->add_option("--trace", run.trace, "Training: write the first step's phases (start, end, critical path) to this CSV");
  run_cmd->add_flag("--no-steady-state", run.no_steady_state,
                    "Training: simulate every micro-batch of a 1F1B pipeline instead of extrapolating the step from its steady state "
                    "(the steps of p, p + 1 and p + 2 micro-batches, p = stages; dense models)");
  run_cmd->add_option("--report", run.report_dir, "Also write the run's HTML report (read back from the store) into this directory");
  run_cmd->add_flag("--max-rate", run.max_rate,
                    "Serving: find the highest arrival rate whose P99 TTFT and TPOT meet serving.slo (bisection), and store the "
                    "run at that rate");
  auto* run_rate_tolerance =
      run_cmd->add_option("--rate-tolerance", run.rate_tolerance, "--max-rate: stop when the bracket is this narrow (relative)")
      ->default_val(0.02)->check(CLI::Range(0.001, 0.5));

  // compare
  CompareOptions cmp;
  auto* cmp_cmd = app.add_subcommand("compare", "Run a scenario's alternatives (compare: section and --alt) and rank them");
  cmp_cmd->add_option("scenario", cmp.scenario, "Scenario YAML file")->required();
  cmp_cmd->add_flag("--json", cmp.json, "Print one JSON object");
  cmp_cmd->add_option("--db", cmp.db, "Run store (SQLite)")->default_val("moesim.db");
  cmp_cmd->add_option("--set", cmp.overrides, "Override a scenario key for every alternative: KEY.PATH=YAML (a mapping of another type: replaces; KEY=null removes)");
  cmp_cmd->add_option("--alt", cmp.alternatives, "An extra alternative as YAML: '{label: x, placement: [...]}'");
  cmp_cmd->add_option("-j,--jobs", cmp.jobs, "Alternatives simulated at once")->default_val(2)->check(CLI::Range(1, 1024));

  // plan
  PlanOptions pl;
  auto* plan_cmd = app.add_subcommand(
      "plan",
      "Parallelism planner: enumerate every valid (data, expert, tensor, pipeline, micro-batches, ZeRO, schedule) layout of a "
      "training scenario (parallelism: auto or any), prune what does not fit in memory, simulate the rest as a sweep "
      "(resumable, `report sN`) and rank them. Rules: data x expert x tensor x pipeline = devices; expert divides the "
      "experts; tensor divides heads, d_ff and expert_d_ff and stays in one NVLink node (GPU) or torus row (TPU); "
      "pipeline divides the layers; data x expert divides the sequences of a step; micro-batches are powers of two "
      "dividing a replica's sequences (with a pipeline: P to K x P, K = --max-microbatch-factor); ZeRO 0-3; "
      "schedule 1F1B or, with a pipeline, interleaved 1F1B with 2 to --max-virtual-stages chunks per stage (a DualPipe "
      "schedule the scenario names is kept where pipelined). Not "
      "simulated, with the reason stored: ZeRO-1 where ZeRO-2 fits (same step, less memory), and without a pipeline "
      "all but the fewest micro-batches of the same rematerialisation. A serving scenario (one colocated pool): every "
      "split of the devices into replicas x data x tensor x pipeline (tensor divides the heads within one NVLink node or "
      "torus row, pipeline divides the layers, expert 1 or data x tensor), pruned by the replica memory model, each "
      "simulated at the scenario's load (ranked: P99 SLOs met first, then --rank-by: time = P99 end-to-end latency, "
      "energy = J per output token, co2e = gCO2e per 1000 tokens) or, with --max-rate, each a capacity search (ranked by "
      "the highest rate; energy/co2e: the cost per token at that rate)");
  plan_cmd->add_option("scenario", pl.scenario, "Training or serving scenario YAML file")->required();
  plan_cmd->add_option("--db", pl.db, "Run store (SQLite)")->default_val("moesim.db");
  plan_cmd->add_option("--set", pl.overrides, "Override a scenario key: KEY.PATH=YAML (a mapping of another type: replaces; KEY=null removes)");
  plan_cmd->add_option("-j,--jobs", pl.jobs, "Layouts simulated at once")->default_val(2)->check(CLI::Range(1, 1024));
  plan_cmd->add_option("--rank-by", pl.rank_by,
                       "Rank by training time, facility energy or gross CO2e (serving: P99 end-to-end latency or, with "
                       "--max-rate, the highest rate; J per output token; gCO2e per 1000 tokens)")
      ->default_val("time")->check(CLI::IsMember({"time", "energy", "co2e"}));
  plan_cmd->add_option("--top", pl.top, "Rows of the ranked table")->default_val(10)->check(CLI::Range(1, 1000000));
  plan_cmd->add_flag("--json", pl.json, "Print one JSON object");
  plan_cmd->add_flag("--dry-run", pl.dry_run, "Enumerate and prune only; simulate nothing");
  plan_cmd->add_flag("--list", pl.list_pruned, "Also list every layout with its verdict and reason");
  plan_cmd->add_option("--shard", pl.shard, "Simulate only shard I of N of the layouts (as `moesim sweep --shard`)");
  auto* plan_microbatch_factor = plan_cmd->add_option("--max-microbatch-factor", pl.max_microbatch_factor,
                       "Training: with a pipeline of P stages, micro-batches up to this many times P (refused on a serving scenario)")
      ->default_val(2)->check(CLI::Range(1, 1024));
  auto* plan_virtual_stages = plan_cmd->add_option("--max-virtual-stages", pl.max_virtual_stages,
                       "Training: with a pipeline, also Megatron-LM's interleaved 1F1B with 2 to this many model chunks per "
                       "stage (1: 1F1B only; default 2, or the scenario's virtual_stages if larger; refused on a serving "
                       "scenario)")
      ->default_val(2)->check(CLI::Range(1, 64));
  plan_cmd->add_flag("--exhaustive", pl.exhaustive,
                     "Training: simulate every layout that fits; by default (ranked by time, unsharded) a layout whose lower "
                     "bound on the training time is no better than the best layout simulated so far is skipped (a serving "
                     "plan simulates every layout that fits; refused there)");
  plan_cmd->add_flag("--max-rate", pl.max_rate,
                     "Serving: each layout a capacity search, the highest arrival rate meeting the P99 SLOs (as `sweep "
                     "--max-rate`)");
  auto* plan_rate_tolerance = plan_cmd->add_option("--rate-tolerance", pl.rate_tolerance, "--max-rate: stop when the bracket is this narrow (relative)")
      ->default_val(0.02)->check(CLI::Range(0.001, 0.5));
  plan_cmd->add_option("--max-pipeline", pl.max_pipeline,
                       "At most this many pipeline stages (0: no bound); the bound is stated in the output")
      ->default_val(0)->check(CLI::Range(0, 1000000));

  // sweep
  SweepOptions sw;
  auto* sweep_cmd = app.add_subcommand("sweep", "Run every point of a scenario's sweep: section (resumable; shardable as a Slurm array)");
  sweep_cmd->add_option("scenario", sw.scenario, "Scenario YAML file with a sweep: section")->required();
  sweep_cmd->add_option("--db", sw.db, "Run store (SQLite); with --slurm-script, the shards' stores are DB.shard<I>.db")->default_val("moesim.db");
  sweep_cmd->add_option("--set", sw.overrides, "Override a scenario key for every point: KEY.PATH=YAML (a mapping of another type: replaces; KEY=null removes)");
  sweep_cmd->add_option("-j,--jobs", sw.jobs, "Points simulated at once")->default_val(2)->check(CLI::Range(1, 1024));
  sweep_cmd->add_flag("--json", sw.json, "Print one JSON object");
  sweep_cmd->add_option("--shard", sw.shard, "Run only shard I of N (I from 0), balanced by estimated cost; default from "
                                             "SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT");
  sweep_cmd->add_flag("--slurm-script", sw.slurm_script, "Print an sbatch --array script that runs the sweep in --shards tasks");
  sweep_cmd->add_flag("--submit", sw.submit, "Write the --slurm-script script to DB.sbatch.sh and submit it with sbatch (from the PATH)");
  // Options of the job script only: refused without --slurm-script or --submit (check_slurm_only_options).
  const std::vector<CLI::Option*> sweep_slurm_only = {
      sweep_cmd->add_option("--shards", sw.shards, "--slurm-script/--submit: number of array tasks")->check(CLI::Range(1, 100000)),
      sweep_cmd->add_option("--partition", sw.partition, "--slurm-script/--submit: Slurm partition (default: the cluster's)"),
      sweep_cmd->add_option("--time", sw.time, "--slurm-script/--submit: time limit per task (sbatch --time)")->default_val("04:00:00"),
      sweep_cmd->add_option("--mem", sw.mem, "--slurm-script/--submit: memory per task (sbatch --mem)")->default_val("8G")};
  sweep_cmd->add_flag("--max-rate", sw.max_rate,
                      "Serving: each point is a capacity search, the highest arrival rate meeting the P99 TTFT and TPOT SLOs "
                      "(as `run --max-rate`); the run stored for a point is the simulation at that rate");
  auto* sweep_rate_tolerance =
      sweep_cmd->add_option("--rate-tolerance", sw.rate_tolerance, "--max-rate: stop when the bracket is this narrow (relative)")
      ->default_val(0.02)
      ->check(CLI::Range(0.001, 0.5));

  // db
  auto* db_cmd = app.add_subcommand("db", "Maintain run stores");
  db_cmd->require_subcommand(1);
  DbMergeOptions merge;
  auto* db_merge = db_cmd->add_subcommand("merge", "Merge sweep shard stores into one (idempotent, deduplicated by point hash)");
  db_merge->add_option("out", merge.out, "Output store (created if absent)")->required();
  db_merge->add_option("shards", merge.shards, "Shard stores")->required();
  db_merge->add_flag("--json", merge.json, "Print one JSON object");

  // report
  ReportOptions rep;
  auto* rep_cmd = app.add_subcommand("report", "Write an energy report of a run, comparison or sweep from the store");
  rep_cmd->add_option("id", rep.id, "Run id, c<ID> / comparison:<ID> for a comparison, s<ID> / sweep:<ID> for a sweep")->required();
  rep_cmd->add_option("--format", rep.format, "html, md or csv")->default_val("html")->check(CLI::IsMember({"html", "md", "csv"}));
  rep_cmd->add_option("-o,--output", rep.output_dir, "Output directory")->default_val("reports/out");
  rep_cmd->add_option("--db", rep.db, "Run store (SQLite)")->default_val("moesim.db");

  // explain / list
  bool markdown = false;
  std::vector<std::string> explain_keys;
  auto* explain_cmd = app.add_subcommand("explain", "Describe scenario fields (type, unit, default, allowed values, help)");
  explain_cmd->add_option("keys", explain_keys,
                          "Fields or sections to describe, e.g. serving.scheduler or model.kv_heads (default: every field)");
  explain_cmd->add_flag("--markdown", markdown, "Markdown table (docs/scenario.md)");
  std::string what, filter;
  auto* list_cmd = app.add_subcommand("list", "List catalog entries: accelerators, datacenters, grid, models");
  list_cmd->add_option("what", what, "accelerators | datacenters | grid | models")->required()
      ->check(CLI::IsMember({"accelerators", "datacenters", "grid", "models"}));
  list_cmd->add_option("--filter", filter, "Only names containing this text");

  // runs
  auto* runs_cmd = app.add_subcommand("runs", "Inspect the run store");
  runs_cmd->require_subcommand(1);
  RunsOptions runs;
  auto* runs_list = runs_cmd->add_subcommand("list", "List stored runs");
  runs_list->add_option("--db", runs.db, "Run store (SQLite)")->default_val("moesim.db");
  runs_list->add_flag("--json", runs.json, "JSON output");
  auto* runs_show = runs_cmd->add_subcommand("show", "Show one stored run");
  runs_show->add_option("id", runs.id, "Run id")->required();
  runs_show->add_option("--db", runs.db, "Run store (SQLite)")->default_val("moesim.db");
  runs_show->add_flag("--json", runs.json, "JSON output");
  auto* runs_requests = runs_cmd->add_subcommand(
      "requests", "Print a serving run's per-request timings (stored with serving.record_requests: true) as CSV");
  runs_requests->add_option("id", runs.id, "Run id")->required();
  runs_requests->add_option("--db", runs.db, "Run store (SQLite)")->default_val("moesim.db");
  runs_requests->add_flag("--json", runs.json, "JSON output (an array of objects) instead of CSV");

  // bench
  BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Measure the simulator itself (wall seconds, peak RSS per case)");
  bench_cmd->add_flag("--json", bench.json, "JSON output");
  bench_cmd->add_option("--only", bench.only, "Run only cases whose name contains this text");
  bench_cmd->add_flag("--no-memo", bench.no_memo,
                     "Simulate every collective in full instead of replaying isolated ones (the fine-grained reference)");
  bench_cmd->add_flag("--no-steady-state", bench.no_steady_state,
                      "Simulate every micro-batch of a 1F1B pipeline instead of extrapolating from its steady state");
  bench_cmd->add_flag("--no-chains", bench.no_chains,
                      "One SimGrid activity per phase instead of one per chain of phases of known duration (the reference)");
  bench_cmd->add_flag("--no-alone", bench.no_alone,
                      "Run every collective round in SimGrid's max-min system and every pipeline send in full, instead of "
                      "timing traffic alone on its links from their loads (the reference)");
  bench_cmd->add_flag("--no-own-network", bench.no_own_network,
                      "Run the rounds not timed alone in SimGrid's own max-min solver instead of moesim's replica of it "
                      "(the reference)");
  bench_cmd->add_flag("--no-own-energy", bench.no_own_energy,
                      "Put the chips' compute loads in SimGrid and take every joule from its energy plugin, instead of "
                      "moesim's replica of the plugin for compute activities (the reference)");
  bench_cmd->add_option("--repeat", bench.repeat,
                        "Run each training case this many times, the cases taking turns (run 1 of each, then run 2, ...), and "
                        "report its median wall time (and the largest peak RSS); the scaling ratios are of the medians")
      ->check(CLI::Range(1, 50))
      ->default_val(1);
  bench_cmd->add_flag("--sweep", bench.sweep,
                      "Measure sweeps instead: bench/sweep_*.yaml at -j 1 and -j 2, and `db merge` of 100 shard stores "
                      "built from bench/merge_*.yaml");

  // validate
  ValidateOptions val;
  auto* val_cmd = app.add_subcommand("validate", "Run the published runs and compare with the published figures");
  val_cmd->add_option("--manifest", val.manifest, "Validation manifest (default: validation/published.yaml beside the profiles directory in use, --profiles or $MOESIM_PROFILES)");
  val_cmd->add_flag("--json", val.json, "JSON output");
  val_cmd->add_option("--markdown-out", val.markdown_out, "Also write the Markdown table to this file");
  val_cmd->add_option("-j,--jobs", val.jobs, "Runs at once")->default_val(2);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints --help / --version (rc 0) or CLI11's message
    if (rc == 0) return kExitOk;
    // Under the deepest command given: if it has subcommands and none was recognised, say which exist.
    const auto all = [](CLI::App* a) { return a->get_subcommands([](CLI::App*) { return true; }); };
    CLI::App* at = &app;
    for (bool deeper = true; deeper;) {
      deeper = false;
      for (CLI::App* sub : all(at)) {
        if (sub->parsed()) {
          at = sub;
          deeper = true;
          break;
        }
      }
    }
    std::vector<std::string> names;
    bool any_parsed = false;
    for (CLI::App* sub : all(at)) {
      names.push_back(sub->get_name());
      any_parsed = any_parsed || sub->parsed();
    }
    if (!names.empty() && !any_parsed) {
      // The word that should have been a command: the first one after the deepest command recognised.
      std::vector<std::string> words;
      for (int k = 1; k < argc; ++k) {
        const std::string a = argv[k];
        if (a == "--profiles") {
          ++k;  // its value
          continue;
        }
        if (a.empty() || a[0] != '-') words.push_back(a);
      }
      std::size_t next = 0;
      if (at != &app) {
        const auto it = std::find(words.begin(), words.end(), at->get_name());
        next = it == words.end() ? words.size() : static_cast<std::size_t>(it - words.begin()) + 1;
      }
      const std::string prefix = at == &app ? "moesim" : "moesim " + at->get_name();
      if (next < words.size())
        std::cerr << fmt::format("{}: '{}' is not a command; commands: {}\n", prefix, words[next], fmt::join(names, ", "));
      else
        std::cerr << fmt::format("{}: give a command: {}\n", prefix, fmt::join(names, ", "));
    }
    return kExitUsage;
  }

  try {
    if (run_cmd->parsed()) {
      if (run_rate_tolerance->count() > 0 && !run.max_rate)
        throw UsageError("run: --rate-tolerance is the --max-rate search's stopping width; give --max-rate or drop it");
      return run.max_rate ? cmd_max_rate(g, run) : cmd_run(g, run);
    }
    if (cmp_cmd->parsed()) return cmd_compare(g, cmp);
    if (sweep_cmd->parsed()) {
      if (sweep_rate_tolerance->count() > 0 && !sw.max_rate)
        throw UsageError("sweep: --rate-tolerance is the --max-rate search's stopping width; give --max-rate or drop it");
      std::vector<std::string> slurm_only_given;
      for (const CLI::Option* opt : sweep_slurm_only)
        if (opt->count() > 0) slurm_only_given.push_back(opt->get_name());
      check_slurm_only_options(sw, slurm_only_given);
      return cmd_sweep(g, sw);
    }
    if (plan_cmd->parsed()) {
      if (plan_rate_tolerance->count() > 0 && !pl.max_rate)
        throw UsageError("plan: --rate-tolerance is the --max-rate search's stopping width; give --max-rate or drop it");
      pl.max_microbatch_factor_given = plan_microbatch_factor->count() > 0;
      pl.max_virtual_stages_given = plan_virtual_stages->count() > 0;
      return cmd_plan(g, pl);
    }
    if (db_merge->parsed()) return cmd_db_merge(merge);
    if (rep_cmd->parsed()) return cmd_report(g, rep);
    if (explain_cmd->parsed()) return cmd_explain(markdown, explain_keys);
    if (list_cmd->parsed()) return cmd_list(g, what, filter);
    if (runs_list->parsed()) return cmd_runs_list(runs);
    if (runs_show->parsed()) return cmd_runs_show(runs);
    if (runs_requests->parsed()) return cmd_runs_requests(runs);
    if (bench_cmd->parsed()) return cmd_bench(g, bench);
    if (val_cmd->parsed()) return cmd_validate(g, val);
  } catch (const UsageError& e) {
    std::cerr << "moesim: " << e.what() << "\n";
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "moesim: error: " << e.what() << "\n";
    return e.what() == std::string("interrupted") ? kExitInterrupted : kExitError;
  } catch (const std::bad_alloc&) {
    std::cerr << "moesim: error: out of memory: the run needs more memory than this machine grants; simulate fewer "
                 "micro-batches per step, fewer steps or fewer chips\n";
    return kExitError;
  } catch (const std::exception& e) {
    std::cerr << "moesim: internal error (a bug in moesim; please report it with the command line): " << e.what() << "\n";
    return kExitInternal;
  }
  return kExitOk;
}

}  // namespace moesim::cli
