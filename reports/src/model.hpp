// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to moesim_reports: what the three writers derive from stored runs, so HTML, Markdown
// and CSV show the same numbers computed the same way.
#include <functional>
#include <optional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/core/units.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/store/store.hpp"

namespace moesim::reports::detail {

/** The metric `name` of run `r`, NaN when the run has none. */
double metric_or_nan(const store::RunRecord& r, const std::string& name);

/** PUE overhead of a datacenter in J: facility − IT − network (the energy the facility spends
 *  beyond what reaches the IT equipment and the network). */
double overhead_j(const store::DatacenterResult& d);

/** Sums over a run's datacenters, SI. */
struct Totals {
  double it_j = 0.0;
  double network_j = 0.0;
  double overhead_j = 0.0;
  double facility_j = 0.0;
  double gross_kg = 0.0;
  double net_kg = 0.0;
  double embodied_kg = 0.0;
};
Totals totals(const store::RunRecord& r);

/** The alternative label of a run, or "run N" when it has none. */
std::string run_label(const store::RunRecord& r);

/** pareto_front() (report.hpp). */
std::vector<bool> pareto_flags(const std::vector<std::pair<double, double>>& points);

/** Rows of a comparison from its runs (see comparison_rows). */
std::vector<ComparisonRow> rows_from_runs(const std::vector<store::RunRecord>& runs);

/** A unit a quantity is shown in: value_shown = value_si / divisor. */
struct DisplayUnit {
  double divisor = 1.0;
  std::string unit;
};
/** MWh when the largest energy is at least 1 MWh, else kWh. */
DisplayUnit energy_unit(double max_j);
/** t when the largest mass is at least 1 t, else kg. */
DisplayUnit mass_unit(double max_kg);
/** MW, kW or W by the largest power. */
DisplayUnit power_unit(double max_w);

/** A licence of data a report reproduces, with where to read it. */
struct LicenceInfo {
  std::string id;    ///< SPDX identifier as stored (e.g. "ODbL-1.0")
  std::string name;  ///< full name, or the stored text when not a known identifier
  std::string url;   ///< empty when unknown
  std::string obligation;  ///< what reproducing the data obliges (share-alike), empty if nothing
};
LicenceInfo licence_info(const std::string& id);

/** The grid dataset a datacenter's figures came from ("google", "electricity_maps", "ember"), read
 *  from the "grid key DATASET/..." mention in its provenance sources or a "grid:DATASET/" name;
 *  empty when none. */
std::string grid_dataset(const std::string& datacenter_name, const nlohmann::json& provenance_entry);
/** Attribution the dataset's licence notice asks for (profiles/grid/<dataset>/LICENCE.md); empty
 *  for an unknown dataset. */
std::string dataset_attribution(const std::string& dataset);

/** One datacenter's data provenance as stored in a run's provenance "datacenters" list. */
struct DatacenterSource {
  std::string name;
  std::string licence;
  std::string notes;
  std::string dataset;      ///< grid_dataset()
  std::string attribution;  ///< stored "attribution" if any, else dataset_attribution(dataset)
  std::vector<std::pair<std::string, std::string>> sources;  ///< field → source text
  std::string grid_basis;   ///< "lifecycle", "operational", "unspecified" (Ember), or "" (not stated)
};
std::vector<DatacenterSource> datacenter_sources(const store::RunRecord& r);

/** Empty unless the datacenters of `runs` mix lifecycle and operational grid intensities; then a sentence naming
 *  each basis and the alternatives (run_label, datacenter) on it: lifecycle intensities include upstream emissions,
 *  so part of a difference between such alternatives is the basis, not the grid. */
std::string grid_basis_note(const std::vector<store::RunRecord>& runs);

/** What a serving run's series over time cover, from its stored power series and provenance: each point from its x to
 *  the next, the last to end_s (its x + series_last_interval_s). NaN when there is no such series. */
struct SeriesSpan {
  double start_s = std::numeric_limits<double>::quiet_NaN();  ///< the first point's x (0 for the whole run)
  double end_s = std::numeric_limits<double>::quiet_NaN();    ///< the end of the last point's interval
  std::size_t points = 0;
  bool whole_run = false;  ///< from 0 to the run's end (its last completion, or the window's end when later)
};
SeriesSpan series_span(const store::RunRecord& r);

/** " (INTERVAL s)", with "; the first, FIRST s, from 0" when a serving run's first point is shorter (a warm-up that is
 *  not a whole number of intervals) and "; the last, LAST s, to the window's end" (offline) or "to the last completion"
 *  (an open-loop drain) when its last is, from the run's provenance; empty when it records no interval. */
std::string interval_text(const store::RunRecord& r);

/** One sentence saying what the series over time cover: "N samples over the whole run, 0 to END s" (or, for a run
 *  stored before they did, "N samples from START s to END s of a run lasting M s"). */
std::string series_span_text(const store::RunRecord& r);

/** The text of a Markdown report's "Data sources and licences" section about `runs` (markdown_report.cpp). */
std::string markdown_licences(const std::vector<store::RunRecord>& runs);

/** Licences of every datacenter of `runs` (deduplicated by licence and dataset) with the
 *  datacenters they cover. */
struct LicenceUse {
  LicenceInfo licence;
  std::string dataset;
  std::string attribution;
  std::vector<std::string> datacenters;
};
std::vector<LicenceUse> licence_uses(const std::vector<store::RunRecord>& runs);

/** Leaves of a JSON document as "a.b[2].c" → text (strings unquoted, other scalars as JSON), in
 *  document order; empty objects and arrays are no leaves. */
std::vector<std::pair<std::string, std::string>> flatten(const nlohmann::json& j);

/** Counts of kernel classes by compute path ("measured", "transferred", "roofline", ...) from the
 *  provenance's compute_paths, as "roofline 8, measured 2"; empty when absent. */
std::string compute_path_summary(const nlohmann::json& provenance);

/** A provenance string field, or "" when absent or not a string. */
std::string prov_string(const nlohmann::json& provenance, const std::string& key);
/** "" unless energy.average_chip_power_w pinned the run's power: then a sentence saying the energy totals use that
 *  power per chip while the power series is the simulated one (so it does not integrate to the totals). */
std::string pinned_power_note(const store::RunRecord& r);

/** Phase kinds of a run ordered by critical-path contribution, largest first (ties by name). */
std::vector<store::PhaseBreakdown> breakdown_by_contribution(const store::RunRecord& r);

/** Phase kinds with the largest critical-path time summed over `runs`, at most `max_kinds`, largest
 *  first; `has_other` says whether kinds were left out. */
std::vector<std::string> top_phase_kinds(const std::vector<const store::RunRecord*>& runs, std::size_t max_kinds, bool* has_other);

/** How the resolved scenario of each later run differs from the first run's: (run label, field path,
 *  first run's value, this run's value), "(absent)" where a field is missing. */
struct ScenarioDifference {
  std::string label;
  std::string path;
  std::string base;
  std::string value;
};
std::vector<ScenarioDifference> scenario_differences(const std::vector<store::RunRecord>& runs);

/** The run's power series ("power_w"), or nullptr. */
const store::Series* power_series(const store::RunRecord& r);

/** One quantity of a run's summary table, in the unit shown. */
struct SummaryRow {
  std::string label;
  std::string metric;  ///< stored metric name, or "pue_overhead_j" (derived: facility − IT − network metrics)
  double value = 0.0;  ///< in `unit`
  std::string unit;
  int significant = 4;
  std::string text;    ///< shown instead of the number when not empty (a yes/no figure); value still carried
};
/** The summary rows of a training run (only quantities the run has). */
std::vector<SummaryRow> summary_rows(const store::RunRecord& r);

// ---- serving runs ------------------------------------------------------------------------------
// Every serving figure a report shows is computed once here; HTML tables and charts, Markdown and
// CSV read these same values ("one quantity, one truth").

/** Whether `r` is a serving run (RunRecord::kind "serving"). */
bool is_serving(const store::RunRecord& r);

/** The run's series called `name`, or nullptr. */
const store::Series* find_series(const store::RunRecord& r, const std::string& name);

/** Milliseconds per second (latencies are shown in ms). */
inline constexpr double kMsPerSecond = 1000.0;
/** The conversions of serving figures to the units shown, each done one way only, so that a
 *  quantity shown in two places is the same double in both. */
inline double to_ms(double s) { return s * kMsPerSecond; }
inline double to_grams(double kg) { return kg * units::kGramsPerKg; }
inline double to_percent(double fraction) { return fraction * 100.0; }
inline double to_kwh(double j) { return units::joules_to_kwh(j); }
inline double to_gb(double bytes) { return bytes / units::kGB; }
inline double as_is(double v) { return v; }

/** A serving ratio metric of `r` (per output token, per 1000 tokens, per request), NaN when the run
 *  lacks it or when the count it divides by (metric `count_metric`) is not positive: the simulator
 *  then stores 0, which is no figure (and would rank a run that produced nothing first). */
double serving_ratio(const store::RunRecord& r, const std::string& metric, const std::string& count_metric);

/** The summary rows of a serving run (only quantities the run has). */
std::vector<SummaryRow> serving_summary_rows(const store::RunRecord& r);

/** One statistic of the latency table: metric infix ("p99") and column header ("P99"). */
struct LatencyStat {
  std::string key;
  std::string header;
};
/** mean, P50, P90, P95, P99, max. */
const std::vector<LatencyStat>& latency_stats();
/** One latency distribution of a serving run in ms: ms[i] = metric `<key>_<latency_stats()[i].key>_s`
 *  × 1000, NaN where not stored. */
struct LatencyRow {
  std::string key;    ///< "ttft", "tpot", "itl", "e2e", "queue"
  std::string label;  ///< e.g. "Time to first token (TTFT)"
  std::vector<double> ms;
  /** The statistic `stat` ("p99"), NaN for an unknown one. */
  double at(const std::string& stat) const;
};
/** TTFT, TPOT, ITL, E2E and queueing, in that order. */
std::vector<LatencyRow> latency_rows(const store::RunRecord& r);

/** A per-datacenter serving column: `value` from the run's site.NAME.* metrics, `total` the
 *  run-level figure of the same quantity. */
struct ServingSiteColumn {
  std::string field;
  std::string header;
  std::string unit;
  int significant;
  std::function<double(const store::RunRecord&, const store::DatacenterResult&)> value;
  std::function<double(const store::RunRecord&)> total;
};
/** Output tokens, facility J per output token, gross and net gCO2e per 1000 output tokens. */
const std::vector<ServingSiteColumn>& serving_site_columns();
/** serving_site_columns() evaluated once for a run: values[c][d] is column c of datacenter d,
 *  totals[c] the run-level figure. The per-datacenter charts and table both read these numbers. */
struct ServingSiteTable {
  std::vector<ServingSiteColumn> columns;
  std::vector<std::vector<double>> values;
  std::vector<double> totals;
  /** Why some datacenter that generated tokens has no per-token figure ("" when every one has): the run stored
   *  none because a request's prefill and decode can run in different datacenters. */
  std::string note;
  /** Index of the column with `field`; throws std::logic_error when absent (a bug). */
  std::size_t column(const std::string& field) const;
};
ServingSiteTable serving_site_table(const store::RunRecord& r);

/** A numeric column of the provenance's serving-pool table (provenance "pools"). */
struct PoolColumn {
  std::string key;     ///< field of a pool entry
  std::string header;
  std::string unit;    ///< unit shown
  double divisor;      ///< shown = stored / divisor
  int significant;
};
const std::vector<PoolColumn>& pool_columns();
/** Column `c` of pool entry `pool`, in the unit shown; NaN when absent or not a number. */
double pool_value(const nlohmann::json& pool, const PoolColumn& c);
/** The provenance's "pools" entries (empty when none). */
std::vector<nlohmann::json> provenance_pools(const nlohmann::json& provenance);

/** The runs' kind, "training" or "serving" ("training" when there are none); throws moesim::Error
 *  naming `context` and the run ids of each kind when they mix. */
std::string runs_kind(const std::vector<store::RunRecord>& runs, const std::string& context);

/** A numeric column of a datacenter table: header, unit shown, value from the stored result. */
struct DatacenterColumn {
  std::string field;   ///< data-field in HTML
  std::string header;  ///< without the unit
  std::string unit;
  int significant;
  std::function<double(const store::DatacenterResult&)> value;  ///< NaN: not available
};
/** Site columns (chips, share, PUE, intensities, CFE). */
const std::vector<DatacenterColumn>& site_columns();
/** Energy and emissions columns; the embodied column only when `with_embodied`. In MWh and t, or
 *  in kWh and kg when `small` (a serving window uses a tiny fraction of a training job's energy). */
std::vector<DatacenterColumn> energy_columns(bool with_embodied, bool small = false);

/** A numeric column of the ranking table. */
struct RankingColumn {
  std::string field;
  std::string header;
  std::string unit;
  int significant;
  std::function<double(const ComparisonRow&)> value;
};
/** The training ranking columns. */
const std::vector<RankingColumn>& ranking_columns();
/** The serving ranking columns: output tokens/s, P99 TTFT and TPOT (ms), goodput (%), J per output
 *  token, gross and net gCO2e per 1000 output tokens. */
const std::vector<RankingColumn>& serving_ranking_columns();
/** serving_ranking_columns() when the rows are serving rows, else ranking_columns(). */
const std::vector<RankingColumn>& ranking_columns_for(const std::vector<ComparisonRow>& rows);

/** Whether the run stored an embodied-carbon figure (metric embodied_co2e_kg). */
bool has_embodied(const store::RunRecord& r);

std::string html_run(const store::RunRecord& r, const std::string& db_path);
std::string html_comparison(const store::Comparison& c, const std::vector<store::RunRecord>& runs,
                            const std::vector<ComparisonRow>& rows, const std::string& db_path);
std::string markdown_run(const store::RunRecord& r, const std::string& db_path);
std::string markdown_comparison(const store::Comparison& c, const std::vector<store::RunRecord>& runs,
                                const std::vector<ComparisonRow>& rows, const std::string& db_path);
/** One header line, then one row per run and datacenter (a run without datacenters: one row with
 *  the datacenter columns empty). Columns: csv_columns(). */
std::string csv_report(const std::vector<store::RunRecord>& runs);

/** Name, unit and meaning of each CSV column, in order (documented in reports/README.md). */
struct CsvColumn {
  const char* name;
  const char* unit;
  const char* meaning;
};
const std::vector<CsvColumn>& csv_columns();

}  // namespace moesim::reports::detail
