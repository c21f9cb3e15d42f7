// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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

enum class RunStatus { running, complete, failed };
std::string to_string(RunStatus s);

/** Everything stored about one run. */
struct RunRecord {
  std::int64_t id = 0;                 ///< assigned by the store
  std::string scenario_name;
  std::string scenario_file;
  nlohmann::json scenario;             ///< the resolved scenario (every field, defaults filled in)
  std::uint64_t seed = 0;
  std::string moesim_version;
  std::string git_hash;
  RunStatus status = RunStatus::running;
  std::string error_message;           ///< for failed runs
  std::string created_at_utc;          ///< ISO 8601, set by the store
  std::optional<std::int64_t> comparison_id;
  std::string alternative_label;       ///< e.g. "gcp_us_central1_2021" within a comparison
  std::vector<Metric> metrics;
  std::vector<DatacenterResult> datacenters;
  std::vector<PhaseBreakdown> breakdown;
  std::vector<Series> series;
  nlohmann::json provenance;           ///< profiles used (measured/transferred/roofline), data sources, licences

  const Metric* metric(const std::string& name) const;
};

/** Short row for listings. */
struct RunSummary {
  std::int64_t id = 0;
  std::string scenario_name;
  RunStatus status = RunStatus::running;
  std::string created_at_utc;
  std::optional<std::int64_t> comparison_id;
  std::string alternative_label;
  std::optional<double> train_days;
  std::optional<double> facility_energy_mwh;
  std::optional<double> co2e_gross_t;
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
 *  All failures throw moesim::Error with the database path and SQLite's message. */
class Store {
 public:
  enum class Mode { read_write, read_only };
  static constexpr int kSchemaVersion = 1;

  explicit Store(const std::string& path, Mode mode = Mode::read_write);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;

  const std::string& path() const;
  int schema_version() const;

  std::int64_t create_comparison(const std::string& scenario_name);
  /** Inserts the run's identity (scenario, seed, version) with status `running`; returns its id. */
  std::int64_t begin_run(const RunRecord& header);
  /** Writes all results of run `id` and marks it complete, in one transaction. */
  void complete_run(std::int64_t id, const RunRecord& results);
  void fail_run(std::int64_t id, const std::string& message);

  std::vector<RunSummary> list_runs(std::optional<std::int64_t> comparison_id = std::nullopt) const;
  /** Throws moesim::Error("no run with id N in PATH") when absent. */
  RunRecord get_run(std::int64_t id) const;
  bool has_run(std::int64_t id) const;
  Comparison get_comparison(std::int64_t id) const;
  bool has_comparison(std::int64_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moesim::store
