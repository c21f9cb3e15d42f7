// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "moesim/store/store.hpp"

/** Energy reports and placement comparisons, read from the run store only (never from the
 *  simulator's memory): self-contained HTML with inline SVG charts, Markdown with the same tables,
 *  and CSV with CodeCarbon-style columns. reports/README.md documents every section and column. */
namespace moesim::reports {

/** Output format of a report file. */
enum class Format { html, markdown, csv };

/** "html", "md"/"markdown" or "csv" → Format; anything else throws moesim::Error naming the allowed
 *  spellings. */
Format parse_format(const std::string& text);
/** File extension of a format, without the dot: "html", "md", "csv". */
std::string extension(Format f);

/** What `moesim report ID` names: a run, a comparison or a sweep. */
struct ReportTarget {
  enum class Kind { run, comparison, sweep };
  Kind kind = Kind::run;
  std::int64_t id = 0;
};
/** "N" (a run), "cN" or "comparison:N" (a comparison), "sN", "sweep:N" or "sweep-N" (a sweep), N a positive
 *  integer; anything else throws
 *  moesim::Error saying which spellings are allowed. */
ReportTarget parse_target(const std::string& text);

/** Writes the report of run `run_id` into `out_dir` (created if missing) as run-<id>.<ext>;
 *  returns the file path. Throws moesim::Error for an unknown id ("no run with id N in PATH") or an
 *  unwritable directory. The file is written to a temporary name and renamed, so a reader never
 *  sees half a report. */
std::string write_run_report(const store::Store& db, std::int64_t run_id, Format f, const std::string& out_dir);
/** Writes the report of comparison `comparison_id` (every run of it) into `out_dir` as
 *  comparison-<id>.<ext>; returns the file path. Throws moesim::Error for an unknown id ("no
 *  comparison with id N in PATH"), a comparison without runs, or an unwritable directory. */
std::string write_comparison_report(const store::Store& db, std::int64_t comparison_id, Format f,
                                    const std::string& out_dir);
/** Writes the report of sweep `sweep_id` into `out_dir` as sweep-<id>.<ext> (md or csv; html throws, not written
 *  yet): every point of the sweep (those the store does not hold say so) with its axis values, status, the
 *  ranking columns of a comparison and the Pareto flag, then the skipped points and their reasons. */
std::string write_sweep_report(const store::Store& db, std::int64_t sweep_id, Format f, const std::string& out_dir);
std::string render_sweep_report(const store::Store& db, std::int64_t sweep_id, Format f);
/** write_run_report, write_comparison_report or write_sweep_report, as `target` says. */
std::string write_report(const store::Store& db, const ReportTarget& target, Format f, const std::string& out_dir);

/** The report of a run or a comparison as a string (what the write_* functions put in the file). */
std::string render_run_report(const store::Store& db, std::int64_t run_id, Format f);
std::string render_comparison_report(const store::Store& db, std::int64_t comparison_id, Format f);

/** One alternative of a comparison, in output units (days, MWh, tonnes CO2e, ms, grams). Totals are
 *  summed over the run's datacenters (facility energy and CO2e) or read from its metrics (training
 *  time `train_time_s`, `wan_bytes_per_step`, `wan_time_per_step_s`; the serving fields from the
 *  serving metrics of the same names). Values a run does not have are NaN: a failed or running run
 *  has none, a serving run no training time or WAN-per-step figures, a training run no serving
 *  fields. A comparison holds runs of one kind (comparison_rows refuses a mix). */
struct ComparisonRow {
  std::int64_t run_id;
  std::string label;        ///< the run's alternative_label ("run N" when it has none)
  std::string status;       ///< "complete", "failed" or "running"
  double train_days;
  double facility_energy_mwh;
  double co2e_gross_t;      ///< location-based
  double co2e_net_t;        ///< market-based
  double wan_bytes_per_step;
  double wan_time_per_step_s;
  /** Training: on the (train_days, co2e_gross_t) Pareto front of the ranked rows. Serving: on the
   *  (ttft_p99_ms, gco2e_gross_per_1k_tokens) front. */
  bool pareto;
  /** 1 = best. Training: least gross CO2e (ties: fewer days, then lower run id). Serving: least
   *  gross CO2e per 1000 output tokens (ties: lower P99 TTFT, then lower run id). 0 = not ranked. */
  int rank;
  std::string kind = "training";  ///< the runs' kind: "training" or "serving"
  // Serving fields (NaN for training runs), from the metrics named in brackets.
  double throughput_rps = std::numeric_limits<double>::quiet_NaN();             ///< requests/s [throughput_rps]
  double output_tokens_per_s = std::numeric_limits<double>::quiet_NaN();        ///< tokens/s [output_tokens_per_s]
  double ttft_p99_ms = std::numeric_limits<double>::quiet_NaN();                ///< ms [ttft_p99_s]
  double tpot_p99_ms = std::numeric_limits<double>::quiet_NaN();                ///< ms [tpot_p99_s]
  double goodput_fraction = std::numeric_limits<double>::quiet_NaN();           ///< 1 [goodput_fraction]
  double energy_per_output_token_j = std::numeric_limits<double>::quiet_NaN();  ///< facility J per output token [energy_per_output_token_j]
  double gco2e_gross_per_1k_tokens = std::numeric_limits<double>::quiet_NaN();  ///< g per 1000 output tokens [co2e_gross_kg_per_1k_tokens]
  double gco2e_net_per_1k_tokens = std::numeric_limits<double>::quiet_NaN();    ///< g per 1000 output tokens [co2e_net_kg_per_1k_tokens]
  double max_rate_rps = std::numeric_limits<double>::quiet_NaN();  ///< requests/s [max_rate_rps]: runs of a capacity search
};

/** The rows of comparison `comparison_id`: ranked rows first (rank 1, 2, ...), then the rows that
 *  cannot be ranked (status not complete, or no finite training time or gross CO2e; serving: no
 *  finite gross CO2e per 1000 tokens or P99 TTFT) in run-id order, with rank 0 and pareto false.
 *  An empty comparison gives no rows. Throws moesim::Error ("no comparison with id N in PATH") for
 *  an unknown id, and for a comparison that mixes training and serving runs (they have no common
 *  figure of merit). */
std::vector<ComparisonRow> comparison_rows(const store::Store& db, std::int64_t comparison_id);

/** Empty unless the runs of comparison `comparison_id` mix lifecycle and operational grid intensities; then the
 *  sentence the comparison's text, Markdown and HTML print under the ranking (detail::grid_basis_note). */
std::string comparison_grid_basis_note(const store::Store& db, std::int64_t comparison_id);

/** Pareto front of points to be minimised in both coordinates: flag i is true when no other point
 *  is at least as good in both coordinates and strictly better in one. A point with a NaN
 *  coordinate is never on the front and dominates nothing. Identical points are all on the front
 *  (neither is strictly better). */
std::vector<bool> pareto_front(const std::vector<std::pair<double, double>>& points);

/** The ranked rows as an aligned plain-text table (for `moesim compare`); serving rows get the
 *  serving columns (output tokens/s, P99 TTFT and TPOT, goodput, J per output token, gCO2e per 1000
 *  tokens gross and net). */
std::string comparison_table_text(const std::vector<ComparisonRow>& rows);
/** The ranked rows as a GitHub-flavoured Markdown table. */
std::string comparison_table_markdown(const std::vector<ComparisonRow>& rows);

}  // namespace moesim::reports
