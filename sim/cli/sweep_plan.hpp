// SPDX-License-Identifier: Apache-2.0
#pragma once
// Sharding a sweep: which shard this process runs, each point's estimated cost, and the cost-balanced
// assignment of points to shards that every shard computes identically.
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/scenario/sweep.hpp"

namespace moesim::cli {

struct Shard {
  int index = 0;  ///< from 0
  int count = 1;
};

/** `--shard I/N` when given, else SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN (0 when unset) of
 *  SLURM_ARRAY_TASK_COUNT when both are set, else 0/1. Throws UsageError for text that is not I/N with
 *  0 <= I < N, or environment values that are not such integers (naming the variable). */
Shard parse_shard(const std::string& flag, const char* task_id, const char* task_count, const char* task_min);

/** Estimated cost of simulating a resolved scenario, in arbitrary units, to balance shards (not a time):
 *  chips × layers × simulated steps for training (the engine simulates every layer's phases on every device
 *  for each simulated step, so its event count grows with their product), chips × layers × requests for serving
 *  (each request's iterations run every layer; duration × rate when requests is unbounded). */
double estimated_cost(const nlohmann::json& resolved);

/** Shard of each point: longest-processing-time-first greedy (Graham 1969: within 4/3 of the optimal makespan)
 *  — points by decreasing cost (ties: lower index first) each to the shard with the least cost so far (ties: the
 *  lowest shard). Deterministic, so every shard computes the same assignment. */
std::vector<int> assign_shards(const std::vector<double>& costs, int shard_count);

/** What one run_sweep call did with its shard's points. */
struct SweepCounts {
  std::int64_t sweep_id = 0;
  std::string scenario;          ///< the scenario's name
  std::size_t points = 0;        ///< of the whole sweep
  std::size_t shard_points = 0;  ///< of this shard
  std::size_t ran = 0;           ///< simulated by this call
  std::size_t reused = 0;        ///< already complete in the store
  std::size_t skipped = 0;
  std::size_t failed = 0;
};

/** While alive and `active`, what is written to std::cout goes to std::cerr: a command whose stdout must stay one JSON
 *  object (`--json`) runs something that prints. */
class StdoutToStderr {
 public:
  explicit StdoutToStderr(bool active) : saved_(active ? std::cout.rdbuf(std::cerr.rdbuf()) : nullptr) {}
  ~StdoutToStderr() {
    if (saved_) std::cout.rdbuf(saved_);
  }
  StdoutToStderr(const StdoutToStderr&) = delete;
  StdoutToStderr& operator=(const StdoutToStderr&) = delete;

 private:
  std::streambuf* saved_;
};

/** The summary line `moesim sweep` prints: "moesim sweep ID of NAME: N points: X run now, Y already complete, ...". */
std::string sweep_summary_line(const SweepCounts& c, const Shard& shard, const std::string& db);

struct SweepOptions;
/** Refuses (UsageError) a Slurm-only option of `moesim sweep` given without --slurm-script or --submit, where the
 *  sweep would run here and ignore it. `given`: the names of those options on the command line (--shards,
 *  --partition, --time, --mem), the first one named in the error. */
void check_slurm_only_options(const SweepOptions& o, const std::vector<std::string>& given);

/** Runs `def`'s points of `shard` as `moesim sweep` does (o.scenario, o.overrides, o.db, o.jobs, o.json), stored as
 *  one sweep; points listed in `preskip` (index -> reason) are recorded as skipped with that reason, not run.
 *  Returns the sweep's id in o.db. Throws when points failed or every point was skipped. With `counts`, the summary
 *  (text or JSON) is not printed: the counts are written there (before any throw) for the caller to report. */
std::int64_t run_sweep(const catalog::Catalog& catalog, const SweepOptions& o, const scenario::SweepDefinition& def,
                       const Shard& shard, const std::map<std::size_t, std::string>& preskip,
                       SweepCounts* counts = nullptr);

}  // namespace moesim::cli
