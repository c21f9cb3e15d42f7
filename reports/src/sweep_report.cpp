// SPDX-License-Identifier: Apache-2.0
// The report of a sweep (`moesim report sN`): every point of the sweep with its axis values, status and the
// ranking columns of `compare` (training: days, facility MWh, gross and net tCO2e, WAN; serving: throughput,
// P99 latencies, J and gCO2e per token), the time–CO2e Pareto front among complete points, and the skipped
// points with their reasons. Markdown and CSV; read from the store only, so a merged store reports like a local one.
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "model.hpp"
#include "moesim/core/error.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/reports/report.hpp"

namespace moesim::reports {

namespace {

/** One point of the whole sweep as the store knows it. */
struct PointView {
  std::int64_t index = 0;
  std::vector<std::string> axis_values;  ///< JSON text of each axis' value
  std::string label;
  std::string status;  ///< complete, failed, running, skipped, or "not in this store"
  std::string skip_reason;
  const ComparisonRow* row = nullptr;
};

/** The axis values of point `index`: the odometer of store::SweepRecord::axes, zip groups not known to the
 *  store, so they are read back from the stored label when the point is held; else "?". */
std::vector<std::string> values_from_label(const std::string& label, const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    const std::string start = keys[k] + "=";
    const std::size_t at = label.find(start);
    if (at == std::string::npos) {
      out.push_back("?");
      continue;
    }
    const std::size_t from = at + start.size();
    std::size_t to = label.size();
    if (k + 1 < keys.size()) {
      const std::size_t next = label.find(", " + keys[k + 1] + "=", from);
      if (next != std::string::npos) to = next;
    }
    out.push_back(label.substr(from, to - from));
  }
  return out;
}

}  // namespace

std::string render_sweep_report(const store::Store& db, std::int64_t sweep_id, Format f) {
  const store::SweepRecord sweep = db.get_sweep(sweep_id);
  std::vector<std::string> keys;
  for (const auto& a : sweep.axes) keys.push_back(a.value("key", std::string("?")));
  std::vector<store::RunRecord> runs;
  for (const auto& p : sweep.points)
    if (p.run_id) runs.push_back(db.get_run(*p.run_id));
  detail::runs_kind(runs, fmt::format("sweep {} in {}", sweep_id, db.path()));
  const std::vector<ComparisonRow> rows = detail::rows_from_runs(runs);
  std::map<std::int64_t, const ComparisonRow*> by_run;
  for (const auto& r : rows) by_run[r.run_id] = &r;
  std::map<std::int64_t, const store::SweepPointRecord*> held;
  for (const auto& p : sweep.points) held[p.index] = &p;

  std::vector<PointView> points;
  std::size_t complete = 0, skipped = 0, failed = 0, running = 0, missing = 0;
  for (std::int64_t i = 0; i < sweep.point_count; ++i) {
    PointView v;
    v.index = i;
    auto it = held.find(i);
    if (it == held.end()) {
      v.status = "not in this store";
      v.axis_values.assign(keys.size(), "?");
      ++missing;
    } else {
      const store::SweepPointRecord& p = *it->second;
      v.label = p.label;
      v.axis_values = values_from_label(p.label, keys);
      if (!p.skip_reason.empty()) {
        v.status = "skipped";
        v.skip_reason = p.skip_reason;
        ++skipped;
      } else if (p.run_id && by_run.count(*p.run_id)) {
        v.row = by_run.at(*p.run_id);
        v.status = v.row->status;
      } else {
        v.status = "not run";
      }
      if (v.status == "complete") ++complete;
      if (v.status == "failed") ++failed;
      if (v.status == "running" || v.status == "not run") ++running;
    }
    points.push_back(std::move(v));
  }
  const auto& columns = detail::ranking_columns_for(rows);
  const bool serving = !rows.empty() && rows.front().kind == "serving";

  if (f == Format::csv) {
    std::vector<std::string> head = {"point"};
    for (const auto& k : keys) head.push_back(k);
    for (const char* h : {"status", "run_id", "point_hash", "skip_reason"}) head.push_back(h);
    for (const auto& c : columns) head.push_back(c.field);
    head.push_back("pareto");
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
      for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_field(cells[i]);
      out += "\n";
    };
    line(head);
    for (const auto& v : points) {
      std::vector<std::string> cells = {std::to_string(v.index)};
      for (const auto& x : v.axis_values) cells.push_back(x);
      cells.push_back(v.status);
      cells.push_back(v.row ? std::to_string(v.row->run_id) : "");
      const auto h = held.find(v.index);
      cells.push_back(h == held.end() ? "" : h->second->point_hash);
      cells.push_back(v.skip_reason);
      for (const auto& c : columns) {
        const double x = v.row ? c.value(*v.row) : std::numeric_limits<double>::quiet_NaN();
        cells.push_back(std::isfinite(x) ? fmt::format("{}", x) : "");
      }
      cells.push_back(v.row && v.row->rank > 0 ? (v.row->pareto ? "true" : "false") : "");
      line(cells);
    }
    return out;
  }
  if (f == Format::html)
    throw Error("a sweep's report is written as md or csv (--format md|csv); the HTML sweep report with charts is not "
                "there yet");

  std::string out = fmt::format("# Sweep {}: {}\n\n", sweep.id, markdown_escape(sweep.scenario_name));
  std::string axes;
  for (const auto& a : sweep.axes)
    axes += fmt::format("{}`{}` ({} values)", axes.empty() ? "" : ", ", a.value("key", std::string("?")),
                        a.contains("values") ? a["values"].size() : 0);
  out += fmt::format("{} points over {}; definition hash `{}`; created {}; store `{}`.\n\n", sweep.point_count, axes,
                     sweep.definition_hash, sweep.created_at_utc, markdown_escape(db.path()));
  out += fmt::format("Complete {}, skipped {}, failed {}, not finished {}, not in this store {}{}.\n\n", complete, skipped, failed,
                     running, missing, missing ? " (run their shards and `moesim db merge` them here)" : "");
  out += fmt::format("Pareto: a complete point no other beats on both {}.\n\n",
                     serving ? "P99 TTFT and gross gCO2e per 1000 output tokens" : "training days and gross tCO2e");
  out += "| Point |";
  for (const auto& k : keys) out += " " + markdown_escape(k) + " |";
  out += " Run | Status |";
  for (const auto& c : columns) out += " " + markdown_escape(fmt::format("{} ({})", c.header, c.unit)) + " |";
  out += " Pareto |\n|---:|";
  for (std::size_t k = 0; k < keys.size(); ++k) out += " --- |";
  out += " ---: | --- |";
  for (std::size_t k = 0; k < columns.size(); ++k) out += " ---: |";
  out += " --- |\n";
  for (const auto& v : points) {
    out += fmt::format("| {} |", v.index);
    for (const auto& x : v.axis_values) out += " " + markdown_escape(x) + " |";
    out += fmt::format(" {} | {} |", v.row ? std::to_string(v.row->run_id) : "\xE2\x80\x93", v.status);
    for (const auto& c : columns) out += " " + (v.row ? format_value(c.value(*v.row), c.significant) : "\xE2\x80\x93") + " |";
    out += fmt::format(" {} |\n", v.row && v.row->rank > 0 ? (v.row->pareto ? "yes" : "no") : "\xE2\x80\x93");
  }
  if (skipped > 0) {
    out += "\n## Skipped points\n\n| Point | Values | Reason |\n|---:|---|---|\n";
    for (const auto& v : points)
      if (v.status == "skipped")
        out += fmt::format("| {} | {} | {} |\n", v.index, markdown_escape(v.label), markdown_escape(v.skip_reason));
  }
  return out;
}

}  // namespace moesim::reports
