// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"

namespace moesim::cli {

struct GlobalOptions {
  std::string profiles_dir;  ///< empty: Catalog::default_profiles_dir()
};
struct RunOptions {
  std::string scenario;
  bool json = false;
  std::string db = "moesim.db";
  bool no_store = false;
  std::vector<std::string> overrides;
  std::string trace;  ///< CSV of the first step's phases
  bool no_steady_state = false;  ///< simulate every micro-batch of a pipeline (EngineOptions::pipeline_steady_state)
  std::string report_dir;  ///< also write the run's HTML report here (from the store)
  bool max_rate = false;   ///< serving: search the highest arrival rate meeting the P99 SLOs
  double rate_tolerance = 0.02;  ///< relative width of the bracket at which the search stops
};
struct CompareOptions {
  std::string scenario;
  bool json = false;
  std::string db = "moesim.db";
  std::vector<std::string> overrides;
  std::vector<std::string> alternatives;
  int jobs = 2;
};
struct SweepOptions {
  std::string scenario;
  std::string db = "moesim.db";
  std::vector<std::string> overrides;
  int jobs = 2;
  bool json = false;
  std::string shard;          ///< "I/N"; empty: SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else 0/1
  bool slurm_script = false;  ///< print an sbatch array script instead of running
  bool submit = false;        ///< write that script to DB.sbatch.sh and run sbatch on it
  int shards = 0;             ///< --slurm-script: array tasks
  std::string partition;      ///< --slurm-script: sbatch --partition (empty: the cluster's default)
  std::string time = "04:00:00";  ///< --slurm-script: sbatch --time per task
  std::string mem = "8G";     ///< --slurm-script: sbatch --mem per task
  bool max_rate = false;      ///< serving: each point is a capacity search (run --max-rate)
  double rate_tolerance = 0.02;  ///< --max-rate: relative width of the bracket at which a search stops
};
struct DbMergeOptions {
  std::string out;
  std::vector<std::string> shards;
  bool json = false;
};
struct ReportOptions {
  std::string id;
  std::string format = "html";
  std::string output_dir = "reports/out";
  std::string db = "moesim.db";
};
struct RunsOptions {
  std::string db = "moesim.db";
  bool json = false;
  std::int64_t id = 0;
};
struct ValidateOptions {
  std::string manifest;      ///< empty: validation/published.yaml
  bool json = false;
  std::string markdown_out;  ///< also write the Markdown table here
  int jobs = 2;
};
struct BenchOptions {
  bool json = false;
  std::string only;
  bool no_memo = false;  ///< simulate every collective in full (the fine-grained reference for memoisation)
  bool no_steady_state = false;  ///< simulate every micro-batch of a pipeline
  bool no_chains = false;        ///< one activity per phase (EngineOptions::merge_chains)
  bool no_own_network = false;  ///< rounds in SimGrid's solver, not moesim's replica (EngineOptions::own_network_rounds)
  bool no_own_energy = false;   ///< compute loads in SimGrid, every joule from its plugin (EngineOptions::own_compute_energy)
  bool no_alone = false;  ///< every round in SimGrid, every send in full (EngineOptions::rounds_alone, replay_pipeline_p2p)
  bool sweep = false;    ///< the sweep cases (bench/sweep_*.yaml at -j 1 and -j 2) and the merge case (bench/merge_*.yaml)
  int repeat = 1;        ///< runs of each training case, the cases taking turns: its median wall time, its largest peak RSS
};

catalog::Catalog load_catalog(const GlobalOptions& g);

int cmd_run(const GlobalOptions& g, const RunOptions& o);
/** `moesim run --max-rate`: bisection of the arrival rate for the highest one meeting the P99 TTFT and TPOT
 *  SLOs (Vidur-Search style); stores and prints the run at that rate with its cost per token. */
int cmd_max_rate(const GlobalOptions& g, const RunOptions& o);
int cmd_compare(const GlobalOptions& g, const CompareOptions& o);
int cmd_report(const GlobalOptions& g, const ReportOptions& o);
/** `moesim sweep`: every point of the scenario's `sweep:` section (or this shard's), in child processes, stored
 *  with its point hash; points already complete in the store are not run again. */
int cmd_sweep(const GlobalOptions& g, const SweepOptions& o);
struct PlanOptions {
  std::string scenario;
  std::string db = "moesim.db";
  std::vector<std::string> overrides;
  int jobs = 2;
  std::string rank_by = "time";  ///< time | energy | co2e
  int top = 10;
  bool json = false;
  bool dry_run = false;
  bool list_pruned = false;  ///< --dry-run: every layout with its verdict, not only the counts
  std::string shard;
  int max_microbatch_factor = 2;
  bool max_microbatch_factor_given = false;  ///< given on the command line (a serving plan refuses it)
  int max_virtual_stages = 2;  ///< interleaved 1F1B layouts up to this many chunks per stage (1: none)
  bool max_virtual_stages_given = false;     ///< given on the command line (else the scenario's virtual_stages may raise it)
  int max_pipeline = 0;  ///< 0: no bound
  bool exhaustive = false;  ///< simulate every candidate, even those whose lower bound cannot beat the best found
  bool max_rate = false;       ///< serving: each layout a capacity search (as `sweep --max-rate`)
  double rate_tolerance = 0.02;  ///< --max-rate: relative width of the bracket at which a search stops
};
/** `moesim plan SCENARIO`: the parallelism planner (engine/planner.hpp) — enumerates the layouts, prunes what does
 *  not fit, simulates the rest as a sweep (stored like `moesim sweep`'s, so resumable and `report sN` works) and
 *  prints them ranked. */
int cmd_plan(const GlobalOptions& g, const PlanOptions& o);
/** `moesim plan SERVING.yaml` (cmd_plan hands a serving scenario to it): the splits of one colocated pool
 *  (engine::ServingLayout), screened by the replica memory model, simulated as a sweep of serving.pools at the
 *  scenario's load or, with --max-rate, each a capacity search, and ranked. */
int cmd_plan_serving(const GlobalOptions& g, const PlanOptions& o);

/** `moesim db merge OUT SHARD...`: shard stores into one (Store::merge_from, one transaction per shard). */
int cmd_db_merge(const DbMergeOptions& o);

/** A command-line mistake found after parsing (e.g. --shard 3/2): exit status 2, like CLI11's own. */
class UsageError : public Error {
 public:
  using Error::Error;
};
int cmd_explain(bool markdown, const std::vector<std::string>& keys);
int cmd_list(const GlobalOptions& g, const std::string& what, const std::string& filter);
/** `moesim runs list`: one row per run, every kind in one table; energy and CO2e each with its own unit. */
int cmd_runs_list(const RunsOptions& o);
/** An energy for people, in Wh, kWh, MWh or GWh (the largest it reads at least 1 in), three significant digits and
 *  the unit: "15.6 Wh" (a serving window), "1.23 GWh" (a training job). */
std::string scaled_energy_text(double joules);
/** A mass of CO2e the same way, in g, kg, t or kt: "6.69 g". */
std::string scaled_mass_text(double kg);
int cmd_runs_show(const RunsOptions& o);
/** A serving run's stored request timings as CSV (or JSON): the times, and the TTFT, TPOT and E2E derived from them. */
int cmd_runs_requests(const RunsOptions& o);
int cmd_bench(const GlobalOptions& g, const BenchOptions& o);
int cmd_validate(const GlobalOptions& g, const ValidateOptions& o);

/** True once SIGINT/SIGTERM arrived while a simulation runs (see install_interrupt_handler). */
const volatile bool* interrupt_flag();
void install_interrupt_handler();

}  // namespace moesim::cli
