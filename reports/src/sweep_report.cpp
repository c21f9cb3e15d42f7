// SPDX-License-Identifier: Apache-2.0
// The report of a sweep (`moesim report sN`): every point of the sweep with its axis values, status and the
// ranking columns of `compare` (training: days, facility MWh, gross and net tCO2e, WAN; serving: throughput,
// P99 latencies, J and gCO2e per token), the time–CO2e Pareto front among complete points, and the skipped
// points with their reasons. Markdown and CSV; read from the store only, so a merged store reports like a local one.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "html_page.hpp"
#include "model.hpp"
#include "moesim/core/error.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/reports/svg_chart.hpp"

namespace moesim::reports {

namespace {

/** One point of the whole sweep as the store knows it. */
struct PointView {
  std::int64_t index = 0;
  std::vector<std::string> axis_values;  ///< JSON text of each axis' value
  std::string label;
  std::string status;  ///< complete, failed, running, skipped, or "not in this store"
  std::string skip_reason;
  std::string run_error;  ///< a failed run's error message (an interrupted sweep's "interrupted", a crash, ...)
  const ComparisonRow* row = nullptr;
};

/** The axis values (JSON text) of a point the store holds, read back from its stored label ("?" for an axis the
 *  label does not name); values_at derives those of the points it does not hold from the stored axes. */
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


struct SweepCounts {
  std::size_t complete, skipped, failed, running, missing;
};

/** What to do about the points a store does not hold, or holds unfinished, as one paragraph (empty when there are
 *  none). The store does not record whether the sweep ran in shards, so a missing point is either another shard's
 *  or one an interrupted sweep had not reached yet: both are said. */
std::string advice_text(const SweepCounts& n, const std::string& quote) {
  std::string out;
  if (n.missing > 0)
    out += fmt::format("{} of the sweep's points {} not in this store, which does not record whether the sweep ran in shards: "
                       "if it was stopped before it reached them, run the same {}moesim sweep{} command again (it resumes); "
                       "if it ran in shards, run the shards that hold them and {}moesim db merge{} their stores here.",
                       n.missing, n.missing == 1 ? "is" : "are", quote, quote, quote, quote);
  if (n.running > 0)
    out += fmt::format("{}{} of the sweep's points did not finish (the sweep was stopped while they ran, or before): run "
                       "the same {}moesim sweep{} command again to finish them (it resumes).",
                       out.empty() ? "" : " ", n.running, quote, quote);
  return out;
}

/** Each stored axis' dimension of the sweep's enumeration (scenario::load_sweep: dimensions in order, the last one
 *  fastest; a zip group's axes share one), or nothing when the stored axes do not tell. A sweep records the
 *  dimension of each axis (`dimension`); for one that does not, the axes are taken as independent when their
 *  value counts multiply to the point count, or as one zip group when each lists a value per point (a plan). */
std::optional<std::vector<std::size_t>> axis_dimensions(const nlohmann::json& axes, std::int64_t point_count) {
  const std::size_t n_axes = axes.is_array() ? axes.size() : 0;
  if (n_axes == 0 || point_count <= 0) return std::nullopt;
  std::vector<std::size_t> length(n_axes, 0);
  for (std::size_t a = 0; a < n_axes; ++a) {
    if (!axes[a].is_object() || !axes[a].contains("values") || !axes[a]["values"].is_array() || axes[a]["values"].empty())
      return std::nullopt;
    length[a] = axes[a]["values"].size();
  }
  std::vector<std::size_t> dim(n_axes, 0);
  const bool recorded = std::all_of(axes.begin(), axes.end(), [](const nlohmann::json& a) {
    return a.contains("dimension") && a["dimension"].is_number_unsigned();
  });
  if (recorded) {
    for (std::size_t a = 0; a < n_axes; ++a) {
      dim[a] = axes[a]["dimension"].get<std::size_t>();
      if (dim[a] >= n_axes) return std::nullopt;  // more dimensions than axes: not a sweep's
    }
  } else {
    double product = 1.0;
    for (std::size_t l : length) product *= static_cast<double>(l);
    const auto count = static_cast<std::size_t>(point_count);
    if (product == static_cast<double>(point_count)) {
      for (std::size_t a = 0; a < n_axes; ++a) dim[a] = a;
    } else if (!std::all_of(length.begin(), length.end(), [&](std::size_t l) { return l == count; })) {
      return std::nullopt;
    }
  }
  // Consistent: dimensions 0..D-1 each used, a dimension's axes of one length, their product the point count.
  const std::size_t n_dims = *std::max_element(dim.begin(), dim.end()) + 1;
  std::vector<std::size_t> dim_length(n_dims, 0);
  for (std::size_t a = 0; a < n_axes; ++a) {
    if (dim_length[dim[a]] != 0 && dim_length[dim[a]] != length[a]) return std::nullopt;
    dim_length[dim[a]] = length[a];
  }
  double product = 1.0;
  for (std::size_t l : dim_length) {
    if (l == 0) return std::nullopt;
    product *= static_cast<double>(l);
  }
  if (product != static_cast<double>(point_count)) return std::nullopt;
  return dim;
}

/** The values (JSON text) of every axis at point `index`: the odometer of scenario::load_sweep read backwards
 *  (the last dimension the fastest digit). */
std::vector<std::string> values_at(const nlohmann::json& axes, const std::vector<std::size_t>& dim, std::int64_t index) {
  const std::size_t n_dims = *std::max_element(dim.begin(), dim.end()) + 1;
  std::vector<std::size_t> dim_length(n_dims, 0);
  for (std::size_t a = 0; a < dim.size(); ++a) dim_length[dim[a]] = axes[a]["values"].size();
  std::vector<std::size_t> digit(n_dims, 0);
  auto rest = static_cast<std::size_t>(index);
  for (std::size_t d = n_dims; d-- > 0;) {
    digit[d] = rest % dim_length[d];
    rest /= dim_length[d];
  }
  std::vector<std::string> out;
  for (std::size_t a = 0; a < dim.size(); ++a) out.push_back(axes[a]["values"][digit[dim[a]]].dump());
  return out;
}

/** How many distinct values a stored axis takes. A plan's sweep (and a `zip:` group) lists one value per point,
 *  repeated, so the length of the list is the number of points, not of values. */
std::size_t distinct_values(const nlohmann::json& axis) {
  if (!axis.contains("values") || !axis["values"].is_array()) return 0;
  std::set<std::string> seen;
  for (const auto& v : axis["values"]) seen.insert(v.dump());
  return seen.size();
}

/** "`key` (N values), ..." for the report's header line; `quote` wraps each key (Markdown: a backtick). */
std::string axes_text(const store::SweepRecord& sweep, const std::string& quote) {
  std::string axes;
  double product = 1.0;
  for (const auto& a : sweep.axes) {
    const std::size_t n = distinct_values(a);
    product *= static_cast<double>(n);
    axes += fmt::format("{}{}{}{} ({} value{})", axes.empty() ? "" : ", ", quote, a.value("key", std::string("?")), quote, n,
                        n == 1 ? "" : "s");
  }
  // Zipped axes advance together, and a planner's layouts are a list: then the points are not every combination.
  if (sweep.axes.size() > 1 && product != static_cast<double>(sweep.point_count))
    axes += fmt::format(" (not every combination of them, {:.0f}: zipped axes, or a list of points as a plan stores)", product);
  return axes;
}

/** What the sweep's every point ran with besides its own values: the global --set overrides, in order; a sweep stored
 *  before schema version 4 did not record them, which is said rather than shown as none. */
std::string overrides_text(const store::SweepRecord& sweep) {
  if (!sweep.overrides.is_array())
    return "The --set overrides of this sweep were not recorded (a sweep stored before schema version 4).";
  if (sweep.overrides.empty()) return "No --set overrides: besides its own values, every point ran with the scenario file's.";
  std::string list;
  for (const auto& o : sweep.overrides)
    list += fmt::format("{}--set {}", list.empty() ? "" : ", ", o.is_string() ? o.get<std::string>() : o.dump());
  return fmt::format("Every point ran with {} (applied before the point's own values).", list);
}

/** The CSV cell of the overrides: the JSON array as stored, empty when not recorded. */
std::string overrides_cell(const store::SweepRecord& sweep) { return sweep.overrides.is_array() ? sweep.overrides.dump() : ""; }

/** The CSV header of a ranking column: its field with its unit as a suffix, as the run CSV names its columns
 *  (facility_energy_mwh, co2e_gross_t, wan_time_per_step_s, ttft_p99_ms, energy_per_output_token_j); a field that
 *  already ends in its unit (train_days, output_tokens_per_s, max_rate_rps) or a unitless one is kept. */
std::string csv_column(const detail::RankingColumn& c) {
  static const std::map<std::string, std::string> suffix = {
      {"1", ""},     {"days", "days"}, {"s", "s"},           {"ms", "ms"},          {"MWh", "mwh"},
      {"kWh", "kwh"}, {"t", "t"},      {"kg", "kg"},         {"g", "g"},            {"GB", "gb"},
      {"B", "bytes"}, {"%", "percent"}, {"J/token", "j"},    {"tokens/s", "per_s"}, {"requests/s", "rps"}};
  std::string unit;
  if (const auto it = suffix.find(c.unit); it != suffix.end()) {
    unit = it->second;
  } else {
    for (char ch : c.unit) unit += std::isalnum(static_cast<unsigned char>(ch)) ? static_cast<char>(std::tolower(static_cast<unsigned char>(ch))) : '_';
  }
  const auto ends_with = [&](const std::string& tail) {
    return c.field.size() >= tail.size() && c.field.compare(c.field.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (unit.empty() || ends_with("_" + unit)) return c.field;
  return c.field + "_" + unit;
}

/** The text of an axis value (JSON): a string without its quotes, anything else as written. */
std::string value_text(const std::string& json_text) {
  try {
    const nlohmann::json v = nlohmann::json::parse(json_text);
    if (v.is_string()) return v.get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return json_text;
}

/** The number an axis value holds, NaN when it is not a number. */
double value_number(const std::string& json_text) {
  try {
    const nlohmann::json v = nlohmann::json::parse(json_text);
    if (v.is_number()) return v.get<double>();
  } catch (const nlohmann::json::exception&) {
  }
  return std::numeric_limits<double>::quiet_NaN();
}

/** A dimension the charts plot against: one swept axis, or axes that vary together (zipped: each value of the
 *  first goes with one value of the others), with each point's value and the distinct values in sweep order. */
struct Dimension {
  std::vector<std::size_t> axes;
  std::string name;
  std::vector<std::string> value_of;  ///< per point (index into points)
  std::vector<std::string> values;    ///< distinct, first-appearance order
  bool numeric = false;               ///< one axis whose values are all numbers
};

/** The dimensions along which the complete points differ: axes with more than one value among them, those that
 *  move in lockstep with an earlier one merged into it. */
std::vector<Dimension> dimensions_of(const std::vector<std::string>& keys, const std::vector<PointView>& points,
                                     const std::vector<std::size_t>& shown) {
  std::vector<std::size_t> varying;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    std::set<std::string> distinct;
    for (std::size_t p : shown) distinct.insert(points[p].axis_values[k]);
    if (distinct.size() > 1) varying.push_back(k);
  }
  std::vector<Dimension> dims;
  std::vector<bool> used(keys.size(), false);
  for (std::size_t a : varying) {
    if (used[a]) continue;
    Dimension d;
    d.axes.push_back(a);
    for (std::size_t b : varying) {
      if (b <= a || used[b]) continue;
      std::map<std::string, std::set<std::string>> pairs, back;
      for (std::size_t p : shown) {
        pairs[points[p].axis_values[a]].insert(points[p].axis_values[b]);
        back[points[p].axis_values[b]].insert(points[p].axis_values[a]);
      }
      const bool lockstep = std::all_of(pairs.begin(), pairs.end(), [](const auto& e) { return e.second.size() == 1; }) &&
                            std::all_of(back.begin(), back.end(), [](const auto& e) { return e.second.size() == 1; });
      if (lockstep) {
        d.axes.push_back(b);
        used[b] = true;
      }
    }
    used[a] = true;
    for (std::size_t i = 0; i < d.axes.size(); ++i) d.name += (i ? " / " : "") + keys[d.axes[i]];
    d.value_of.assign(points.size(), "");
    std::set<std::string> seen;
    d.numeric = d.axes.size() == 1;
    for (std::size_t p : shown) {
      std::string v;
      for (std::size_t i = 0; i < d.axes.size(); ++i) v += (i ? " / " : "") + value_text(points[p].axis_values[d.axes[i]]);
      d.value_of[p] = v;
      if (seen.insert(v).second) d.values.push_back(v);
      if (d.numeric && !std::isfinite(value_number(points[p].axis_values[d.axes[0]]))) d.numeric = false;
    }
    dims.push_back(std::move(d));
  }
  return dims;
}

/** At most this many heat maps per metric when three or more dimensions vary (one per value of the others). */
constexpr std::size_t kMaxFacets = 12;

/** The charts of one metric against the sweep's dimensions. */
void metric_charts(XmlWriter& w, const detail::RankingColumn& col, const std::vector<Dimension>& dims, const std::vector<PointView>& points,
                   const std::vector<std::size_t>& shown, std::int64_t sweep_id) {
  const std::string value_label = col.unit == "1" ? col.header : fmt::format("{} ({})", col.header, col.unit);
  const std::string base_id = fmt::format("sweep-{}-metric-{}", sweep_id, col.field);
  std::vector<std::size_t> with_value;
  for (std::size_t p : shown)
    if (std::isfinite(col.value(*points[p].row))) with_value.push_back(p);
  if (with_value.empty()) {
    w.element("p", {{"class", "note"}}, fmt::format("{}: no complete point has a value.", col.header));
    return;
  }
  if (dims.size() == 1) {
    const Dimension& d = dims[0];
    if (d.numeric) {
      std::vector<std::pair<double, double>> xy;
      for (std::size_t p : with_value) xy.emplace_back(value_number(points[p].axis_values[d.axes[0]]), col.value(*points[p].row));
      std::sort(xy.begin(), xy.end());
      svg::LineChart c;
      c.id = base_id;
      c.title = fmt::format("{} against {}", col.header, d.name);
      c.x_axis_label = d.name;
      c.y_axis_label = value_label;
      c.x_unit = "1";
      c.y_unit = col.unit;
      c.series_label = col.header;
      c.series_key = col.field;
      for (const auto& [x, y] : xy) {
        c.x.push_back(x);
        c.y.push_back(y);
      }
      w.raw(svg::line_chart(c));
    } else {
      svg::BarChart c;
      c.id = base_id;
      c.title = fmt::format("{} for each {}", col.header, d.name);
      c.value_axis_label = value_label;
      c.unit = col.unit;
      c.series.push_back({col.field, col.header, svg::kOkabeIto[5]});
      c.values.emplace_back();
      for (std::size_t p : with_value) {
        c.category_keys.push_back(std::to_string(points[p].index));
        c.category_labels.push_back(d.value_of[p]);
        c.values[0].push_back(col.value(*points[p].row));
      }
      w.raw(svg::bar_chart(c));
    }
    return;
  }
  // Two or more dimensions: heat maps of the first two, one per combination of the others.
  const Dimension& rd = dims[0];
  const Dimension& cd = dims[1];
  std::vector<std::string> facets;
  std::map<std::string, std::vector<std::size_t>> facet_points;
  for (std::size_t p : with_value) {
    std::string f;
    for (std::size_t i = 2; i < dims.size(); ++i) f += (i > 2 ? ", " : "") + dims[i].name + " = " + dims[i].value_of[p];
    if (!facet_points.count(f)) facets.push_back(f);
    facet_points[f].push_back(p);
  }
  for (std::size_t fi = 0; fi < facets.size() && fi < kMaxFacets; ++fi) {
    svg::HeatMap h;
    h.id = facets.size() == 1 ? base_id : fmt::format("{}-{}", base_id, fi);
    h.title = facets[fi].empty() ? col.header : fmt::format("{} ({})", col.header, facets[fi]);
    h.row_axis_label = rd.name;
    h.column_axis_label = cd.name;
    h.value_label = value_label;
    h.unit = col.unit;
    h.significant = std::min(col.significant, 4);
    h.row_labels = rd.values;
    h.column_labels = cd.values;
    h.values.assign(rd.values.size(), std::vector<double>(cd.values.size(), std::numeric_limits<double>::quiet_NaN()));
    for (std::size_t p : facet_points[facets[fi]]) {
      const auto r = std::find(rd.values.begin(), rd.values.end(), rd.value_of[p]) - rd.values.begin();
      const auto k = std::find(cd.values.begin(), cd.values.end(), cd.value_of[p]) - cd.values.begin();
      h.values[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)] = col.value(*points[p].row);
    }
    w.raw(svg::heat_map(h));
  }
  if (facets.size() > kMaxFacets)
    w.element("p", {{"class", "note"}},
              fmt::format("{} more combinations of {} are not drawn (at most {} heat maps a metric): the table below and "
                          "`--format csv` hold every point.",
                          facets.size() - kMaxFacets, dims[2].name, kMaxFacets));
}

std::string html_sweep(const store::SweepRecord& sweep, const std::string& db_path, const std::vector<std::string>& keys,
                       const std::vector<PointView>& points, const std::vector<detail::RankingColumn>& columns,
                       const std::vector<ComparisonRow>& rows, const SweepCounts& n, bool serving, const std::string& version,
                       const std::vector<store::RunRecord>& runs) {
  using detail::close_table;
  using detail::header_row;
  using detail::open_table;
  using detail::text_cell;
  XmlWriter w;
  const std::string title = fmt::format("moesim sweep {}: {}", sweep.id, sweep.scenario_name);
  detail::open_page(w, title);
  w.open("header", {{"data-sweep", std::to_string(sweep.id)}});
  w.element("h1", {}, title);
  const std::string axes = axes_text(sweep, "");
  w.element("p", {{"class", "meta"}},
            fmt::format("{} points over {}. Definition hash {}; created {}.", sweep.point_count, axes, sweep.definition_hash,
                        sweep.created_at_utc));
  w.element("p", {{"class", "meta"}, {"data-overrides", overrides_cell(sweep)}}, overrides_text(sweep));
  w.element("p", {{"class", "meta"}, {"data-complete", std::to_string(n.complete)}, {"data-skipped", std::to_string(n.skipped)}},
            fmt::format("Complete {}, skipped {}, failed {}, not finished {}, not in this store {}.", n.complete, n.skipped,
                        n.failed, n.running, n.missing));
  w.close("header");
  if (n.missing > 0 || n.running > 0) w.element("div", {{"class", "notice"}}, advice_text(n, "`"));
  detail::nav(w, {{"charts", "Metrics against the swept axes"},
                  {"pareto", serving ? "P99 TTFT vs CO2e per 1000 tokens" : "Training time vs CO2e"},
                  {"points", "Every point"},
                  {"skipped", "Skipped points"},
                  {"licences", "Data sources and licences"}});
  // Points on lifecycle and on operational grid intensities: part of their CO2e difference is the basis.
  if (const std::string note = detail::grid_basis_note(runs); !note.empty())
    w.element("div", {{"class", "notice"}, {"id", "grid-basis-note"}}, note);

  std::vector<std::size_t> shown;  // complete points with a row
  for (std::size_t p = 0; p < points.size(); ++p)
    if (points[p].row != nullptr && points[p].status == "complete") shown.push_back(p);
  const std::vector<Dimension> dims = dimensions_of(keys, points, shown);

  w.open("section", {{"id", "charts"}});
  w.element("h2", {}, "Metrics against the swept axes");
  if (shown.empty()) {
    w.element("p", {}, "No point of this sweep is complete in this store.");
  } else if (dims.empty()) {
    w.element("p", {}, "The complete points do not differ in any swept value: the table below holds them.");
  } else {
    std::string how;
    if (dims.size() == 1)
      how = dims[0].numeric ? "a line over the swept values" : "a bar for each swept value";
    else
      how = fmt::format("heat maps, rows {} and columns {}{}", dims[0].name, dims[1].name,
                        dims.size() > 2 ? ", one for each combination of the other swept values" : "");
    w.element("p", {{"class", "note"}},
              fmt::format("Each metric of the complete points as {}. Axes that move together (zipped) are drawn as one. The "
                          "values are those of the table below.",
                          how));
    for (const auto& col : columns) metric_charts(w, col, dims, points, shown, sweep.id);
  }
  w.close("section");

  w.open("section", {{"id", "pareto"}});
  w.element("h2", {}, serving ? "P99 TTFT vs CO2e per 1000 tokens" : "Training time vs CO2e");
  {
    std::vector<const ComparisonRow*> ranked;
    for (const auto& r : rows)
      if (r.rank > 0) ranked.push_back(&r);
    std::map<std::int64_t, std::int64_t> point_of_run;
    for (const auto& p : points)
      if (p.row) point_of_run[p.row->run_id] = p.index;
    if (ranked.empty()) {
      w.element("p", {}, "No complete point to place.");
    } else {
      svg::ScatterChart s;
      s.id = fmt::format("sweep-{}-pareto", sweep.id);
      s.title = serving ? "P99 TTFT vs gross CO2e per 1000 output tokens, with the Pareto front"
                        : "Training time vs gross CO2e, with the Pareto front";
      s.x_axis_label = serving ? "P99 TTFT (ms)" : "training time (days)";
      s.y_axis_label = serving ? "CO2e gross per 1000 tokens (g)" : "CO2e gross (t)";
      s.x_unit = serving ? "ms" : "days";
      s.y_unit = serving ? "g" : "t";
      s.front_label = "Pareto front (no point is both faster and cleaner)";
      s.other_label = "dominated point";
      for (const auto* r : ranked)
        s.points.push_back({std::to_string(r->run_id), fmt::format("point {}", point_of_run[r->run_id]),
                            serving ? r->ttft_p99_ms : r->train_days, serving ? r->gco2e_gross_per_1k_tokens : r->co2e_gross_t,
                            r->pareto});
      w.raw(svg::scatter_chart(s));
    }
  }
  w.close("section");

  w.open("section", {{"id", "points"}});
  w.element("h2", {}, "Every point");
  open_table(w, {{"class", "sweep-points"}, {"data-sweep", std::to_string(sweep.id)}});
  std::vector<std::pair<std::string, bool>> heads = {{"Point", true}};
  for (const auto& k : keys) heads.emplace_back(k, false);
  heads.emplace_back("Run", true);
  heads.emplace_back("Status", false);
  for (const auto& c : columns) heads.emplace_back(detail::with_unit(c.header, c.unit), true);
  heads.emplace_back("Pareto front", false);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& v : points) {
    w.open("tr", {{"data-point", std::to_string(v.index)}, {"data-status", v.status}});
    text_cell(w, std::to_string(v.index), "num");
    for (const auto& x : v.axis_values) text_cell(w, value_text(x));
    text_cell(w, v.row ? std::to_string(v.row->run_id) : "\xE2\x80\x93", "num");
    text_cell(w, v.status);
    for (const auto& c : columns) {
      if (v.row)
        detail::num_cell(w, c.value(*v.row), c.unit, c.field, c.significant);
      else
        text_cell(w, "\xE2\x80\x93", "num");
    }
    text_cell(w, v.row && v.row->rank > 0 ? (v.row->pareto ? "yes" : "no") : "\xE2\x80\x93");
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  w.close("section");

  if (n.failed > 0) {
    w.open("section", {{"id", "failed"}});
    w.element("h2", {}, "Failed points");
    open_table(w, {{"class", "sweep-failed"}});
    header_row(w, {{"Point", true}, {"Values", false}, {"Run", true}, {"Error", false}});
    w.open("tbody");
    for (const auto& v : points) {
      if (v.status != "failed") continue;
      w.open("tr", {{"data-point", std::to_string(v.index)}});
      text_cell(w, std::to_string(v.index), "num");
      text_cell(w, v.label, "src");
      text_cell(w, v.row ? std::to_string(v.row->run_id) : "", "num");
      text_cell(w, v.run_error, "src");
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
    w.close("section");
  }
  w.open("section", {{"id", "skipped"}});
  w.element("h2", {}, "Skipped points");
  if (n.skipped == 0) {
    w.element("p", {}, "None: every point resolved to a scenario that fits.");
  } else {
    open_table(w, {{"class", "sweep-skipped"}});
    header_row(w, {{"Point", true}, {"Values", false}, {"Reason", false}});
    w.open("tbody");
    for (const auto& v : points) {
      if (v.status != "skipped") continue;
      w.open("tr", {{"data-point", std::to_string(v.index)}});
      text_cell(w, std::to_string(v.index), "num");
      text_cell(w, v.label, "src");
      text_cell(w, v.skip_reason, "src");
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
  }
  w.close("section");
  // The grid figures behind the points' CO2e keep their datasets' licences: the attribution they require.
  detail::html_licences_section(w, runs);
  detail::close_page(w, db_path, version);
  return w.str();
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

  // The values of the points this store does not hold, when the stored axes tell them.
  const std::optional<std::vector<std::size_t>> dims = axis_dimensions(sweep.axes, sweep.point_count);
  std::vector<PointView> points;
  std::size_t complete = 0, skipped = 0, failed = 0, running = 0, missing = 0;
  for (std::int64_t i = 0; i < sweep.point_count; ++i) {
    PointView v;
    v.index = i;
    auto it = held.find(i);
    if (it == held.end()) {
      v.status = "not in this store";
      if (dims) {
        v.axis_values = values_at(sweep.axes, *dims, i);
        for (std::size_t k = 0; k < keys.size(); ++k) v.label += (k ? ", " : "") + keys[k] + "=" + v.axis_values[k];
      } else {
        v.axis_values.assign(keys.size(), "?");
      }
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
        if (v.status == "failed")
          for (const auto& run : runs)
            if (run.id == *p.run_id) v.run_error = run.error_message.empty() ? "(no error recorded)" : run.error_message;
      } else {
        v.status = "not run";
      }
      if (v.status == "complete") ++complete;
      if (v.status == "failed") ++failed;
      if (v.status == "running" || v.status == "not run") ++running;
    }
    points.push_back(std::move(v));
  }
  // Capacity-search sweeps (`sweep --max-rate`) lead with the rate each point sustains under the SLOs.
  std::vector<detail::RankingColumn> columns = detail::ranking_columns_for(rows);
  if (std::any_of(rows.begin(), rows.end(), [](const ComparisonRow& r) { return std::isfinite(r.max_rate_rps); }))
    columns.insert(columns.begin(), {"max_rate_rps", "Max rate under SLO", "requests/s", 4,
                                     [](const ComparisonRow& r) { return r.max_rate_rps; }});
  const bool serving = !rows.empty() && rows.front().kind == "serving";

  if (f == Format::csv) {
    std::vector<std::string> head = {"point"};
    for (const auto& k : keys) head.push_back(k);
    for (const char* h : {"status", "run_id", "point_hash", "skip_reason", "run_error"}) head.push_back(h);
    for (const auto& c : columns) head.push_back(csv_column(c));
    head.push_back("pareto");
    head.push_back("sweep_overrides");
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
      cells.push_back(v.run_error);
      for (const auto& c : columns) {
        const double x = v.row ? c.value(*v.row) : std::numeric_limits<double>::quiet_NaN();
        cells.push_back(std::isfinite(x) ? fmt::format("{}", x) : "");
      }
      cells.push_back(v.row && v.row->rank > 0 ? (v.row->pareto ? "true" : "false") : "");
      cells.push_back(overrides_cell(sweep));
      line(cells);
    }
    return out;
  }
  if (f == Format::html) {
    const SweepCounts counts{complete, skipped, failed, running, missing};
    return html_sweep(sweep, db.path(), keys, points, columns, rows, counts, serving,
                      runs.empty() ? std::string("(no runs in this store)") : runs.front().moesim_version, runs);
  }

  std::string out = fmt::format("# Sweep {}: {}\n\n", sweep.id, markdown_escape(sweep.scenario_name));
  const std::string axes = axes_text(sweep, "`");
  out += fmt::format("{} points over {}; definition hash `{}`; created {}; store `{}`.\n\n", sweep.point_count, axes,
                     sweep.definition_hash, sweep.created_at_utc, markdown_escape(db.path()));
  out += markdown_escape(overrides_text(sweep)) + "\n\n";
  out += fmt::format("Complete {}, skipped {}, failed {}, not finished {}, not in this store {}.\n\n", complete, skipped, failed,
                     running, missing);
  if (const std::string advice = advice_text({complete, skipped, failed, running, missing}, "`"); !advice.empty())
    out += advice + "\n\n";
  if (const std::string note = detail::grid_basis_note(runs); !note.empty()) out += "> **Note:** " + markdown_escape(note) + "\n\n";
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
  if (failed > 0) {
    out += "\n## Failed points\n\n| Point | Values | Run | Error |\n|---:|---|---:|---|\n";
    for (const auto& v : points)
      if (v.status == "failed")
        out += fmt::format("| {} | {} | {} | {} |\n", v.index, markdown_escape(v.label), v.row ? v.row->run_id : 0,
                           markdown_escape(v.run_error));
  }
  out += "\n## Data sources and licences\n\n" + detail::markdown_licences(runs);
  return out;
}

}  // namespace moesim::reports
