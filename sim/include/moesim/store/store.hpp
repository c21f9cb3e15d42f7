// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::store {

/** One scalar result with its unit, e.g. {"step_time_s", 1.39, "s"}. */
struct Metric {
  std::string name;
  double value = 0.0;
  std::string unit;
};

/** Energy and emissions of one datacenter of a run. SI units inside (J, kg). */
struct DatacenterResult {
  std::string name;
  std::string display_name;
  std::string country_iso_code;
  std::string region;
  double share = 0.0;                ///< fraction of the job's devices placed here
  int chips = 0;
  double pue = 1.0;
  double gross_kgco2e_per_kwh = 0.0;
  std::optional<double> net_kgco2e_per_kwh;
  std::optional<double> cfe_fraction;
  double it_energy_j = 0.0;          ///< accelerators + host overhead
  double network_energy_j = 0.0;     ///< links and switches attributed to this site
  double facility_energy_j = 0.0;    ///< (it + network) x PUE
  double co2e_gross_kg = 0.0;
  double co2e_net_kg = 0.0;
  double embodied_co2e_kg = 0.0;     ///< 0 when not asked
};

/** Time of one phase kind within a step (mean over simulated steps). */
struct PhaseBreakdown {
  std::string phase_kind;        ///< e.g. "compute.expert_ffn", "comm.all_to_all"
  double time_s = 0.0;           ///< summed busy time of phases of this kind
  double critical_path_s = 0.0;  ///< time this kind contributes to the step's critical path
};

/** A named series (e.g. total power over one simulated step). */
struct Series {
  std::string name;
  std::string x_unit;
  std::string y_unit;
  std::vector<double> x;
  std::vector<double> y;
};

/** One measured request of a serving run (seconds from the start of the simulation). */
struct RequestTiming {
  double arrival_s = 0.0;
  double first_token_s = 0.0;
  double end_s = 0.0;
  double queue_s = 0.0;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int replica = 0;
  int preemptions = 0;
};

/** Life cycle of a run: `running` from begin_run() until complete_run() or fail_run() moves it to
 *  one of the two final states. A process killed in between leaves the run `running`. */
enum class RunStatus { running, complete, failed };
/** "running", "complete" or "failed" (the spelling stored in the `runs.status` column). */
std::string to_string(RunStatus s);

/** Metric names the store itself reads (for RunSummary); the engine writes them. */
namespace metric_names {
/** Simulated wall-clock time of the whole training job, in seconds → RunSummary::train_days. */
inline constexpr const char* kTrainTime_s = "train_time_s";
}  // namespace metric_names

/** Everything stored about one run. get_run() returns what was written, doubles bit for bit,
 *  with one exception SQLite imposes: -0.0 reads back as +0.0 (integral REAL values are stored as
 *  integers; sqlite.org/datatype3.html). NaN cannot be stored and is refused. */
struct RunRecord {
  std::int64_t id = 0;                 ///< assigned by the store
  std::string kind = "training";       ///< "training" or "serving" (written by begin_run)
  std::string scenario_name;
  std::string scenario_file;
  nlohmann::json scenario;             ///< the resolved scenario (every field, defaults filled in)
  std::uint64_t seed = 0;
  std::string moesim_version;
  std::string git_hash;
  RunStatus status = RunStatus::running;
  std::string error_message;           ///< for failed runs
  std::string created_at_utc;          ///< ISO 8601, set by the store
  std::string finished_at_utc;         ///< ISO 8601, set by complete_run()/fail_run(); empty while running
  std::optional<std::int64_t> comparison_id;
  std::string alternative_label;       ///< e.g. "gcp_us_central1_2021" within a comparison
  /** A sweep's run: the content hash of its resolved scenario (scenario::content_hash); empty for other runs. */
  std::string point_hash;
  std::vector<Metric> metrics;
  std::vector<DatacenterResult> datacenters;
  std::vector<PhaseBreakdown> breakdown;
  std::vector<Series> series;
  nlohmann::json provenance;           ///< profiles used (measured/transferred/roofline), data sources, licences
  /** Serving: every measured request, written by complete_run() when present; get_run() leaves it empty
   *  (read them with Store::request_timings()). */
  std::vector<RequestTiming> requests;

  /** The metric called `name`, or nullptr when the run has none of that name. */
  const Metric* metric(const std::string& name) const;
  /** The named metric's value, or `fallback` when the run has none. */
  double metric_or(const std::string& name, double fallback = 0.0) const;
};

/** Short row for listings. The three totals are derived when the run has the data, else empty:
 *  train_days = metric `train_time_s` / 86400; facility_energy_mwh = sum of the datacenters'
 *  facility_energy_j / 3.6e9; co2e_gross_t = sum of the datacenters' co2e_gross_kg / 1000. */
struct RunSummary {
  std::int64_t id = 0;
  std::string kind = "training";
  std::string scenario_name;
  RunStatus status = RunStatus::running;
  std::string created_at_utc;
  std::optional<std::int64_t> comparison_id;
  std::string alternative_label;
  std::string point_hash;  ///< sweep runs only
  std::optional<double> train_days;
  std::optional<double> facility_energy_mwh;
  std::optional<double> co2e_gross_t;
};

/** One point of a sweep as a store holds it. */
struct SweepPointRecord {
  std::int64_t index = 0;                 ///< position in the sweep's enumeration
  std::string label;                      ///< "cluster.count=8, model.experts=4"
  std::string point_hash;                 ///< empty when the point did not resolve
  std::string skip_reason;                ///< non-empty: the point was skipped (not run), and why
  std::optional<std::int64_t> run_id;     ///< the run that computed it
  std::optional<RunStatus> run_status;    ///< that run's status (read by get_sweep; ignored when written)
};

/** A sweep (moesim sweep): its identity and the points this store holds (a shard holds some of them). */
struct SweepRecord {
  std::int64_t id = 0;
  std::string scenario_name;
  std::string definition_hash;  ///< the same sweep has the same hash in every store (shards, merged stores)
  std::int64_t point_count = 0; ///< points of the whole sweep
  nlohmann::json axes;          ///< [{key, values, dimension}] as enumerated: dimension = the axis's place in the odometer (a zip group's axes share one; absent in stores written before it)
  nlohmann::json overrides;     ///< the --set overrides every point ran with, in order ("key=value" strings); null: not recorded (a sweep stored before schema version 4)
  std::string created_at_utc;
  std::vector<SweepPointRecord> points;  ///< by index (get_sweep only)
};

/** What Store::merge_from did. */
struct MergeStats {
  std::int64_t sweeps_added = 0;
  std::int64_t runs_copied = 0;
  std::int64_t runs_already_present = 0;  ///< a run of the same point hash was already there (complete)
  std::int64_t points_added = 0;
  std::int64_t points_updated = 0;
  std::int64_t runs_left_out = 0;         ///< runs of no sweep, or still `running`: not merged
};

/** A set of runs of one scenario's alternatives (moesim compare). */
struct Comparison {
  std::int64_t id = 0;
  std::string scenario_name;
  std::string created_at_utc;
  std::vector<std::int64_t> run_ids;
};

/** The SQLite run store. WAL journal, foreign keys on, STRICT tables, schema versioned with
 *  migrations. A run is written with begin_run() (status running) and finished by complete_run()
 *  or fail_run(), each one transaction: a run killed in between stays `running`, never `complete`.
 *  All failures throw moesim::Error with the database path and SQLite's message.
 *  Any number of processes may open the same file (readers never block the writer, nor it them);
 *  one Store object must not be used from two threads at once. A moved-from Store may only be
 *  destroyed or assigned to. */
class Store {
 public:
  /** read_write creates the file if absent and migrates it; read_only (reports, `runs list`)
   *  never writes and needs a store already at kSchemaVersion. */
  enum class Mode { read_write, read_only };
  /** Schema this binary writes. Version 0 was the first layout (no comparisons, no provenance);
   *  opening an older store read-write migrates it, a newer one is refused. */
  static constexpr int kSchemaVersion = 4;
  /** Marks a SQLite file as a moesim run store (`PRAGMA application_id`; the bytes "MoES"). */
  static constexpr std::int32_t kApplicationId = 0x4d6f4553;
  /** How long a write waits for another connection's write lock before failing, in seconds. */
  static constexpr double kDefaultBusyTimeout_s = 5.0;

  /** Opens (read_write: creates if absent, then migrates to kSchemaVersion) the store at `path`.
   *  read_only opens with SQLITE_OPEN_READONLY and refuses stores that need a migration.
   *  busy_timeout_s bounds how long any statement waits for a lock held by another connection. */
  explicit Store(const std::string& path, Mode mode = Mode::read_write,
                 double busy_timeout_s = kDefaultBusyTimeout_s);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;

  /** The database path as given to the constructor (used in every error message). */
  const std::string& path() const;
  /** The schema version of the open database (kSchemaVersion once opened). */
  int schema_version() const;
  /** How the store was opened. */
  Mode mode() const;

  /** Inserts an empty comparison; runs join it through RunRecord::comparison_id. Returns its id. */
  std::int64_t create_comparison(const std::string& scenario_name);
  /** A comparison and all its runs (`running`), inserted in ONE transaction: a comparison killed while it is
   *  being created leaves nothing, and one killed later has every alternative it was asked for, the unfinished
   *  ones `running` (or `failed`), so what is missing is always visible. Each header's comparison_id is ignored
   *  (set to the new comparison). Returns the comparison id and the run ids, in the order of `headers`. */
  std::pair<std::int64_t, std::vector<std::int64_t>> begin_comparison(const std::string& scenario_name,
                                                                      const std::vector<RunRecord>& headers);
  /** Inserts the run's identity (kind, scenario_name, scenario_file, scenario, seed, moesim_version,
   *  git_hash, comparison_id, alternative_label) with status `running`; returns its id. Other
   *  fields of `header` are ignored. Throws when comparison_id names no comparison. */
  std::int64_t begin_run(const RunRecord& header);
  /** Writes the results of `results` (metrics, datacenters, breakdown, series, provenance) to run
   *  `id` and marks it complete, in one transaction: on any failure nothing is written and the run
   *  stays `running`. Only a `running` run can be completed. Names must be unique per run (metric,
   *  datacenter, phase kind, series); values must not be NaN; a series needs x.size() == y.size(). */
  void complete_run(std::int64_t id, const RunRecord& results);
  /** Marks the `running` run `id` failed with `message` (one transaction). */
  void fail_run(std::int64_t id, const std::string& message);

  /** All runs (or those of one comparison), oldest first, read in one snapshot. */
  std::vector<RunSummary> list_runs(std::optional<std::int64_t> comparison_id = std::nullopt) const;
  /** Throws moesim::Error("no run with id N in PATH") when absent. */
  RunRecord get_run(std::int64_t id) const;
  /** The request timings stored with run `id` (empty when none were recorded), in arrival order. */
  std::vector<RequestTiming> request_timings(std::int64_t id) const;
  /** Whether a run with this id exists, whatever its status. */
  bool has_run(std::int64_t id) const;
  /** Throws moesim::Error("no comparison with id N in PATH") when absent. */
  Comparison get_comparison(std::int64_t id) const;
  /** Whether a comparison with this id exists. */
  bool has_comparison(std::int64_t id) const;

  /** The sweep with this definition hash, created (with no points) when absent; returns its id. `overrides`: the
   *  --set overrides every point runs with, a JSON array of "key=value" strings (the definition hash covers them). */
  std::int64_t open_sweep(const std::string& scenario_name, const std::string& definition_hash, std::int64_t point_count,
                          const nlohmann::json& axes, const nlohmann::json& overrides = nlohmann::json::array());
  /** Inserts or replaces point `p.index` of sweep `sweep_id` (one transaction). */
  void set_sweep_point(std::int64_t sweep_id, const SweepPointRecord& p);
  /** The oldest complete run whose point hash is `point_hash`, if any. */
  std::optional<std::int64_t> find_complete_run(const std::string& point_hash) const;
  /** Throws moesim::Error("no sweep with id N in PATH") when absent. */
  SweepRecord get_sweep(std::int64_t id) const;
  /** Every sweep, oldest first, without their points. */
  std::vector<SweepRecord> list_sweeps() const;
  /** Copies the sweeps, sweep points and sweep runs (with every result row) of the store at `shard_path` into this
   *  one, in ONE transaction: deduplicated by point hash (a point already complete here is not copied again) and
   *  by sweep definition hash, so merging a shard twice adds nothing. Refuses, naming the file, a shard that is not
   *  a moesim store, is of another schema version, fails `PRAGMA integrity_check`, or is this store itself.
   *  Runs of no sweep (run, compare) and runs still `running` are left out (counted in the result). */
  MergeStats merge_from(const std::string& shard_path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moesim::store
