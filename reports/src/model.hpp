// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to moesim_reports: what the three writers derive from stored runs, so HTML, Markdown
// and CSV show the same numbers computed the same way.
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

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
};
std::vector<DatacenterSource> datacenter_sources(const store::RunRecord& r);

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
};
/** The summary rows of a run (only quantities the run has). */
std::vector<SummaryRow> summary_rows(const store::RunRecord& r);

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
/** Energy and emissions columns; the embodied column only when `with_embodied`. */
std::vector<DatacenterColumn> energy_columns(bool with_embodied);

/** A numeric column of the ranking table. */
struct RankingColumn {
  std::string field;
  std::string header;
  std::string unit;
  int significant;
  std::function<double(const ComparisonRow&)> value;
};
const std::vector<RankingColumn>& ranking_columns();

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
