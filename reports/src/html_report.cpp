// SPDX-License-Identifier: Apache-2.0
// The HTML report: one self-contained XHTML-compatible file (every element closed, attributes
// quoted, text escaped; inline CSS and SVG; no script, nothing fetched), so a strict XML parser can
// check it and a browser shows it offline. Every number shown carries its exact value in
// data-value (with data-unit, the unit shown) so tests compare the page with the store.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "html_page.hpp"
#include "model.hpp"
#include "moesim/core/units.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/reports/svg_chart.hpp"

namespace moesim::reports::detail {

namespace {

using nlohmann::json;
using Attrs = XmlWriter::Attributes;
namespace pal = svg;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kMaxStackedKinds = 7;  // phase kinds shown separately in stacked bars; the rest are "other"

std::string datacenter_title(const store::DatacenterResult& d) {
  return d.display_name.empty() || d.display_name == d.name ? d.name : d.display_name;
}

void datacenter_name_cell(XmlWriter& w, const store::DatacenterResult& d) {
  w.open("td");
  w.text(datacenter_title(d));
  if (!d.display_name.empty() && d.display_name != d.name) {
    w.empty("br");
    w.element("code", {}, d.name);
  }
  w.close("td");
}

// ---- sections shared by run and comparison reports ------------------------------------------

void datacenter_tables(XmlWriter& w, const store::RunRecord& r) {
  const bool many = r.datacenters.size() > 1;
  w.element("h3", {}, "Sites");
  open_table(w, {{"class", "datacenters sites"}, {"data-run", std::to_string(r.id)}});
  std::vector<std::pair<std::string, bool>> heads = {{"Datacenter", false}, {"Country", false}, {"Region", false}};
  for (const auto& c : site_columns()) heads.emplace_back(with_unit(c.header, c.unit), true);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& d : r.datacenters) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-datacenter", d.name}});
    datacenter_name_cell(w, d);
    text_cell(w, d.country_iso_code);
    text_cell(w, d.region);
    for (const auto& c : site_columns()) num_cell(w, c.value(d), c.unit, c.field, c.significant);
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);

  w.element("h3", {}, "Energy and emissions");
  const auto cols = energy_columns(has_embodied(r), is_serving(r));
  open_table(w, {{"class", "datacenters energy"}, {"data-run", std::to_string(r.id)}});
  heads = {{"Datacenter", false}};
  for (const auto& c : cols) heads.emplace_back(with_unit(c.header, c.unit), true);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& d : r.datacenters) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-datacenter", d.name}});
    datacenter_name_cell(w, d);
    for (const auto& c : cols) num_cell(w, c.value(d), c.unit, c.field, c.significant);
    w.close("tr");
  }
  if (many) {
    w.open("tr", {{"class", "total"}, {"data-run", std::to_string(r.id)}, {"data-datacenter", "total"}});
    text_cell(w, "Total");
    for (const auto& c : cols) {
      double sum = 0.0;
      for (const auto& d : r.datacenters) sum += c.value(d);
      num_cell(w, sum, c.unit, c.field, c.significant);
    }
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
}

void datacenter_charts(XmlWriter& w, const store::RunRecord& r) {
  double max_j = 0.0, max_kg = 0.0;
  for (const auto& d : r.datacenters) {
    max_j = std::max(max_j, d.facility_energy_j);
    max_kg = std::max({max_kg, d.co2e_gross_kg, d.co2e_net_kg, d.embodied_co2e_kg});
  }
  const DisplayUnit eu = energy_unit(max_j), mu = mass_unit(max_kg);
  svg::BarChart e;
  e.id = fmt::format("energy-per-datacenter-{}", r.id);
  e.title = "Energy per datacenter: IT + network + PUE overhead = facility energy";
  const char* span = is_serving(r) ? "the measurement window" : "the job";
  e.value_axis_label = fmt::format("energy over {} ({})", span, eu.unit);
  e.unit = eu.unit;
  e.stacked = true;
  e.series = {{"it", "IT (chips + host overhead)", pal::kOkabeIto[5]},
              {"network", "network", pal::kOkabeIto[1]},
              {"overhead", "PUE overhead (facility \xE2\x88\x92 IT \xE2\x88\x92 network)", pal::kOkabeIto[2]}};
  e.values.assign(3, {});
  std::vector<std::string> keys, labels;
  for (const auto& d : r.datacenters) {
    keys.push_back(d.name);
    labels.push_back(d.name);
    e.values[0].push_back(d.it_energy_j / eu.divisor);
    e.values[1].push_back(d.network_energy_j / eu.divisor);
    e.values[2].push_back(overhead_j(d) / eu.divisor);
  }
  e.category_keys = keys;
  e.category_labels = labels;
  w.raw(svg::bar_chart(e));

  svg::BarChart c;
  c.id = fmt::format("co2e-per-datacenter-{}", r.id);
  c.title = "CO2e per datacenter: gross (location-based) and net (market-based)";
  c.value_axis_label = fmt::format("CO2e over {} ({})", span, mu.unit);
  c.unit = mu.unit;
  c.series = {{"gross", "gross (location-based)", pal::kOkabeIto[6]}, {"net", "net (market-based)", pal::kOkabeIto[3]}};
  const bool emb = has_embodied(r);
  if (emb) c.series.push_back({"embodied", "embodied (chips, amortised)", pal::kOkabeIto[7]});
  c.values.assign(c.series.size(), {});
  for (const auto& d : r.datacenters) {
    c.values[0].push_back(d.co2e_gross_kg / mu.divisor);
    c.values[1].push_back(d.co2e_net_kg / mu.divisor);
    if (emb) c.values[2].push_back(d.embodied_co2e_kg / mu.divisor);
  }
  c.category_keys = keys;
  c.category_labels = labels;
  w.raw(svg::bar_chart(c));
}

void breakdown_section(XmlWriter& w, const store::RunRecord& r) {
  const auto kinds = breakdown_by_contribution(r);
  if (kinds.empty()) {
    w.element("p", {}, "This run stored no step-time breakdown.");
    return;
  }
  double sum_cp = 0.0;
  for (const auto& k : kinds) sum_cp += k.critical_path_s;
  const double step = metric_or_nan(r, "step_time_s");
  svg::BarChart b;
  b.id = fmt::format("step-breakdown-{}", r.id);
  b.title = "Step time by phase kind (mean over the simulated steps)";
  b.value_axis_label = "time per step (s)";
  b.unit = "s";
  b.series = {{"critical_path", "contribution to the step's critical path", pal::kOkabeIto[5]},
              {"busy", "busy time (summed over phases of the kind, overlaps included)", pal::kOkabeIto[1]}};
  b.values.assign(2, {});
  for (const auto& k : kinds) {
    b.category_keys.push_back(k.phase_kind);
    b.category_labels.push_back(k.phase_kind);
    b.values[0].push_back(k.critical_path_s);
    b.values[1].push_back(k.time_s);
  }
  w.raw(svg::bar_chart(b));
  open_table(w, {{"class", "breakdown"}, {"data-run", std::to_string(r.id)}});
  header_row(w, {{"Phase kind", false}, {"Critical path (s)", true}, {"Share of the step (%)", true}, {"Busy time (s)", true}});
  w.open("tbody");
  const double denominator = std::isfinite(step) && step > 0 ? step : sum_cp;
  for (const auto& k : kinds) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-phase", k.phase_kind}});
    w.open("td").element("code", {}, k.phase_kind).close("td");
    num_cell(w, k.critical_path_s, "s", "critical_path");
    num_cell(w, denominator > 0 ? 100.0 * k.critical_path_s / denominator : kNaN, "%", "share_of_step", 3);
    num_cell(w, k.time_s, "s", "busy");
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  w.open("p", {{"class", "note"}});
  w.text("The critical-path contributions sum to ");
  w.element("span", {{"data-field", "critical_path_sum"}, {"data-value", format_exact(sum_cp)}, {"data-unit", "s"}}, format_value(sum_cp, 5));
  w.text(" s; the stored mean step time is ");
  w.element("span", {{"data-field", "step_time"}, {"data-value", format_exact(step)}, {"data-unit", "s"}}, format_value(step, 5));
  w.text(" s. Shares are of the step time. Busy time counts every phase of a kind, including phases that overlap others, "
         "so it can exceed the critical-path contribution.");
  w.close("p");
}

void power_section(XmlWriter& w, const store::RunRecord& r) {
  const store::Series* s = power_series(r);
  if (s == nullptr || s->x.empty()) {
    w.element("p", {}, "This run stored no power series.");
    return;
  }
  double max_w = 0.0;
  for (double y : s->y)
    if (std::isfinite(y)) max_w = std::max(max_w, y);
  const DisplayUnit pu = power_unit(max_w);
  svg::LineChart c;
  c.id = fmt::format("power-{}", r.id);
  c.title = "Total chip power over one simulated step";
  c.x_axis_label = fmt::format("simulated time within the step ({})", s->x_unit.empty() ? "s" : s->x_unit);
  c.y_axis_label = fmt::format("total power of all chips ({})", pu.unit);
  c.x_unit = s->x_unit.empty() ? "s" : s->x_unit;
  c.y_unit = pu.unit;
  c.series_label = "sum over all chips (SimGrid host_energy)";
  c.steps = true;  // the power holds from one event to the next: drawn as steps, the area is the step's energy
  c.x = s->x;
  for (double y : s->y) c.y.push_back(y / pu.divisor);
  w.raw(svg::line_chart(c));
  const std::string convention = prov_string(r.provenance, "power_convention");
  w.element("p", {{"class", "note"}},
            fmt::format("{} samples of the total power of all chips, taken at the simulation events of one simulated step; "
                        "the power is constant from one event to the next, so each is drawn as a step to the next and "
                        "the area under them is the step's chip energy.{}",
                        s->x.size(), convention.empty() ? "" : " Power convention: " + convention + "."));
  if (const std::string pinned = pinned_power_note(r); !pinned.empty()) w.element("p", {{"class", "note"}}, pinned);
}

// ---- serving runs ----------------------------------------------------------------------------

/** Per-datacenter figures per output token: J/token and gCO2e/1000 tokens as bars and as a table,
 *  both drawn from one serving_site_table(). */
void serving_site_section(XmlWriter& w, const store::RunRecord& r) {
  const ServingSiteTable t = serving_site_table(r);
  const std::size_t jc = t.column("energy_per_output_token"), gc = t.column("co2e_gross_per_1k_tokens"), nc = t.column("co2e_net_per_1k_tokens");
  std::vector<std::string> keys;
  for (const auto& d : r.datacenters) keys.push_back(d.name);
  svg::BarChart j;
  j.id = fmt::format("energy-per-token-{}", r.id);
  j.title = "Energy per output token per datacenter (facility energy / output tokens)";
  j.value_axis_label = fmt::format("energy per output token ({})", t.columns[jc].unit);
  j.unit = t.columns[jc].unit;
  j.series = {{t.columns[jc].field, "facility energy per output token", pal::kOkabeIto[5]}};
  j.values = {t.values[jc]};
  j.category_keys = keys;
  j.category_labels = keys;
  w.raw(svg::bar_chart(j));
  svg::BarChart g;
  g.id = fmt::format("co2e-per-1k-tokens-{}", r.id);
  g.title = "CO2e per 1000 output tokens per datacenter: gross (location-based) and net (market-based)";
  g.value_axis_label = fmt::format("CO2e per 1000 output tokens ({})", t.columns[gc].unit);
  g.unit = t.columns[gc].unit;
  g.series = {{t.columns[gc].field, "gross (location-based)", pal::kOkabeIto[6]}, {t.columns[nc].field, "net (market-based)", pal::kOkabeIto[3]}};
  g.values = {t.values[gc], t.values[nc]};
  g.category_keys = keys;
  g.category_labels = keys;
  w.raw(svg::bar_chart(g));

  w.element("h3", {}, "Per output token");
  open_table(w, {{"class", "datacenters per-token"}, {"data-run", std::to_string(r.id)}});
  std::vector<std::pair<std::string, bool>> heads = {{"Datacenter", false}};
  for (const auto& c : t.columns) heads.emplace_back(with_unit(c.header, c.unit), true);
  header_row(w, heads);
  w.open("tbody");
  for (std::size_t d = 0; d < r.datacenters.size(); ++d) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-datacenter", r.datacenters[d].name}});
    datacenter_name_cell(w, r.datacenters[d]);
    for (std::size_t c = 0; c < t.columns.size(); ++c) num_cell(w, t.values[c][d], t.columns[c].unit, t.columns[c].field, t.columns[c].significant);
    w.close("tr");
  }
  if (r.datacenters.size() > 1) {
    w.open("tr", {{"class", "total"}, {"data-run", std::to_string(r.id)}, {"data-datacenter", "total"}});
    text_cell(w, "All datacenters");
    for (std::size_t c = 0; c < t.columns.size(); ++c) num_cell(w, t.totals[c], t.columns[c].unit, t.columns[c].field, t.columns[c].significant);
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  w.element("p", {{"class", "note"}},
            "Output tokens generated in each datacenter during the measurement window; energy per output token is that "
            "datacenter's facility energy over them, CO2e per 1000 tokens its CO2e over them (metrics site.NAME.*).");
  if (!t.note.empty()) w.element("p", {{"class", "note"}}, t.note);
}

/** The latency table; returns its rows, which the CDF charts mark. */
std::vector<LatencyRow> latency_table(XmlWriter& w, const store::RunRecord& r) {
  const std::vector<LatencyRow> rows = latency_rows(r);
  open_table(w, {{"class", "latency"}, {"data-run", std::to_string(r.id)}});
  std::vector<std::pair<std::string, bool>> heads = {{"Latency", false}};
  for (const auto& s : latency_stats()) heads.emplace_back(s.header + " (ms)", true);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& row : rows) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-metric", row.key}});
    text_cell(w, row.label);
    for (std::size_t i = 0; i < latency_stats().size(); ++i) num_cell(w, row.ms[i], "ms", latency_stats()[i].key);
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  return rows;
}

void latency_section(XmlWriter& w, const store::RunRecord& r) {
  const std::vector<LatencyRow> rows = latency_table(w, r);
  w.element("p", {{"class", "note"}},
            "Latencies of the requests arriving in the measurement window, each simulated to its end. TTFT: arrival to first "
            "output token; TPOT: (end \xE2\x88\x92 first token) / (output tokens \xE2\x88\x92 1) per request; ITL: time between consecutive "
            "output tokens; E2E: arrival to last token; queueing: arrival until the prompt first enters a batch.");
  struct Cdf {
    const char* series;
    const char* key;
    const char* what;
  };
  const Cdf cdfs[] = {{"ttft_cdf", "ttft", "time to first token"}, {"tpot_cdf", "tpot", "time per output token"}, {"e2e_cdf", "e2e", "end-to-end latency"}};
  constexpr double kPercentAll = 100.0;  // a CDF reaches 100 % of the requests
  const std::pair<const char*, double> marks[] = {{"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}};
  for (const auto& cdf : cdfs) {
    const store::Series* s = find_series(r, cdf.series);
    if (s == nullptr || s->x.empty()) {
      w.element("p", {}, fmt::format("This run stored no {} distribution (series {}).", cdf.what, cdf.series));
      continue;
    }
    const auto row = std::find_if(rows.begin(), rows.end(), [&](const LatencyRow& x) { return x.key == cdf.key; });
    svg::LineChart c;
    c.id = fmt::format("cdf-{}-{}", cdf.key, r.id);
    c.title = fmt::format("Distribution of the {} (CDF over the measured requests)", cdf.what);
    c.x_axis_label = fmt::format("{} (ms)", cdf.what);
    c.y_axis_label = "requests at or below (%)";
    c.x_unit = "ms";
    c.y_unit = "%";
    c.series_key = cdf.series;
    c.series_label = fmt::format("{} distribution (series {})", cdf.key, cdf.series);
    for (double x : s->x) c.x.push_back(to_ms(x));
    for (double y : s->y) c.y.push_back(to_percent(y));
    c.y_min = 0.0;
    c.y_max = kPercentAll;
    c.markers_label = "P50, P90, P99 of the latency table";
    for (const auto& [stat, pct] : marks) {
      const double x = row->at(stat);
      c.markers.push_back({fmt::format("{}_{}", cdf.key, stat), fmt::format("P{} {} ms", static_cast<int>(pct), format_value(x)), x, pct});
    }
    c.height_px = 340;
    w.raw(svg::line_chart(c));
  }
}

/** A line chart of serving series sharing x (interval start times), averaged over intervals: drawn as steps, with the
 *  measurement window shaded. */
svg::LineChart over_time_chart(const store::RunRecord& r, const std::string& id, const std::string& title) {
  svg::LineChart c;
  c.id = fmt::format("{}-{}", id, r.id);
  c.title = title;
  c.x_axis_label = "simulated time (s)";
  c.x_unit = "s";
  c.steps = true;
  // Every series over time shares x; the last point's interval may be shorter than the one before it.
  c.steps_end_x = detail::series_span(r).end_s;
  const double start = metric_or_nan(r, "window_start_s"), window = metric_or_nan(r, "window_s");
  if (std::isfinite(start) && std::isfinite(window)) {
    c.band_x0 = start;
    c.band_x1 = start + window;
    c.band_label = "measurement window";
  }
  return c;
}

void over_time_section(XmlWriter& w, const store::RunRecord& r) {
  const store::Series* power = find_series(r, "power_w");
  const store::Series* batch = find_series(r, "batch_sequences");
  const store::Series* queue = find_series(r, "queue_requests");
  const store::Series* kv = find_series(r, "kv_use");
  if (power != nullptr && !power->x.empty()) {
    double max_w = 0.0;
    for (double y : power->y)
      if (std::isfinite(y)) max_w = std::max(max_w, y);
    const DisplayUnit pu = power_unit(max_w);
    svg::LineChart c = over_time_chart(r, "power", "Total chip power over the run (average over each sampling interval)");
    c.y_axis_label = fmt::format("total power of all chips ({})", pu.unit);
    c.y_unit = pu.unit;
    c.series_key = "power_w";
    c.series_label = "all chips (series power_w)";
    c.x = power->x;
    for (double y : power->y) c.y.push_back(y / pu.divisor);
    w.raw(svg::line_chart(c));
  } else {
    w.element("p", {}, "This run stored no power series.");
  }
  if ((batch != nullptr && !batch->x.empty()) || (queue != nullptr && !queue->x.empty())) {
    svg::LineChart c = over_time_chart(r, "batch-queue", "Sequences in flight and requests waiting over the run (average over each sampling interval)");
    c.y_axis_label = "sequences, requests (count)";
    c.y_unit = "count";
    const store::Series* first = batch != nullptr ? batch : queue;
    c.series_key = first->name;
    c.series_label = batch != nullptr ? "sequences in flight: admitted, not finished, all replicas (batch_sequences)"
                                     : "queue length: requests waiting for admission (queue_requests)";
    c.colour = pal::kOkabeIto[5];
    c.x = first->x;
    c.y = first->y;
    if (batch != nullptr && queue != nullptr)
      c.more_series.push_back({queue->name, "queue length: requests waiting for admission (queue_requests)", pal::kOkabeIto[6], queue->x, queue->y});
    w.raw(svg::line_chart(c));
  }
  if (kv != nullptr && !kv->x.empty()) {
    svg::LineChart c = over_time_chart(r, "kv-use", "KV-cache use over the run (average over each sampling interval)");
    c.y_axis_label = "KV-cache blocks in use (%)";
    c.y_unit = "%";
    c.series_key = "kv_use";
    c.series_label = "blocks in use / blocks available, all replicas (series kv_use)";
    c.colour = pal::kOkabeIto[3];
    c.x = kv->x;
    for (double y : kv->y) c.y.push_back(to_percent(y));
    w.raw(svg::line_chart(c));
  }
  const std::string convention = prov_string(r.provenance, "power_convention");
  const std::string span = detail::series_span_text(r);
  w.element("p", {{"class", "note"}},
            fmt::format("{}Each value is the average over the sampling interval that starts at it{}; the shaded band is the "
                        "measurement window, over which throughput, energy and CO2e are accounted.{}",
                        span.empty() ? "" : span + ". ", detail::interval_text(r),
                        convention.empty() ? "" : " Power convention: " + convention + "."));
  if (const std::string pinned = pinned_power_note(r); !pinned.empty()) w.element("p", {{"class", "note"}}, pinned);
}

void licences_section(XmlWriter& w, const std::vector<store::RunRecord>& runs) {
  const auto uses = licence_uses(runs);
  w.element("p", {}, "moesim's code and its profile YAML files are Apache-2.0. The grid and datacenter figures this report "
                     "reproduces keep the licence of the dataset they came from:");
  if (uses.empty()) {
    w.element("p", {}, "The runs stored no datacenter provenance.");
    return;
  }
  open_table(w, {{"class", "licences"}});
  header_row(w, {{"Dataset", false}, {"Licence", false}, {"Attribution", false}, {"Obligation", false}, {"Datacenters", false}});
  w.open("tbody");
  for (const auto& u : uses) {
    w.open("tr", {{"data-licence", u.licence.id}});
    text_cell(w, u.dataset.empty() ? "datacenter profile (published figures)" : u.dataset);
    w.open("td");
    if (u.licence.url.empty()) {
      w.text(u.licence.name);
    } else {
      w.element("a", {{"href", u.licence.url}}, u.licence.name);
    }
    w.close("td");
    text_cell(w, u.attribution.empty() ? "\xE2\x80\x93" : u.attribution, "src");
    text_cell(w, u.licence.obligation.empty() ? "\xE2\x80\x93" : u.licence.obligation, "src");
    w.open("td");
    for (std::size_t i = 0; i < u.datacenters.size(); ++i) {
      if (i) w.text(", ");
      w.element("code", {}, u.datacenters[i]);
    }
    w.close("td");
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
}

void provenance_section(XmlWriter& w, const store::RunRecord& r) {
  const json& p = r.provenance;
  std::vector<std::pair<std::string, std::string>> rows = {{"moesim version", r.moesim_version}, {"git commit", r.git_hash}};
  std::set<std::string> shown = {"moesim_version", "git_hash"};
  auto add_string = [&](const char* key, const char* label) {
    if (p.is_object() && p.contains(key)) {
      rows.emplace_back(label, p[key].is_string() ? p[key].get<std::string>() : p[key].dump());
      shown.insert(key);
    }
  };
  add_string("profiles_dir", "profiles directory");
  add_string("compute_model", "compute-time model");
  if (!compute_path_summary(p).empty()) rows.emplace_back("kernel classes by compute path", compute_path_summary(p));
  add_string("power_convention", "power convention");
  add_string("routing_exact", "routing simulated exactly");
  add_string("step_times_s", "simulated step times (s)");
  add_string("window", "measurement window");
  add_string("series_interval_s", "series sampling interval (s)");
  add_string("series_first_interval_s", "the first series point's interval, from 0 (s)");
  add_string("series_last_interval_s", "the last series point's interval (s)");
  add_string("memo_buckets_per_octave", "iteration-cost memo buckets per octave");
  kv_table(w, rows);

  const std::vector<json> pools = provenance_pools(p);
  if (!pools.empty()) {
    shown.insert("pools");
    w.element("h3", {}, "Serving pools");
    w.element("p", {{"class", "note"}}, "Memory of the most loaded device of a replica of each pool.");
    open_table(w, {{"class", "pools"}});
    std::vector<std::pair<std::string, bool>> heads = {{"Pool", true}, {"Role", false}};
    for (const auto& c : pool_columns()) heads.emplace_back(with_unit(c.header, c.unit), true);
    header_row(w, heads);
    w.open("tbody");
    for (std::size_t i = 0; i < pools.size(); ++i) {
      w.open("tr", {{"data-pool", std::to_string(i)}});
      text_cell(w, std::to_string(i), "num");
      text_cell(w, pools[i].is_object() && pools[i].contains("role") && pools[i]["role"].is_string() ? pools[i]["role"].get<std::string>() : "");
      for (const auto& c : pool_columns()) num_cell(w, pool_value(pools[i], c), c.unit, c.key, c.significant);
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
  }

  if (p.is_object() && p.contains("compute_paths") && p["compute_paths"].is_object()) {
    shown.insert("compute_paths");
    w.element("h3", {}, "Compute time per kernel class");
    w.element("p", {{"class", "note"}},
              "measured: interpolated from profiled tables of this device; transferred: roofline with efficiencies calibrated "
              "on a measured device; roofline: roofline with published efficiencies.");
    open_table(w, {{"class", "compute-paths"}});
    header_row(w, {{"Kernel class", false}, {"Path", false}});
    w.open("tbody");
    for (const auto& [k, v] : p["compute_paths"].items()) {
      w.open("tr", {{"data-kernel", k}});
      w.open("td").element("code", {}, k).close("td");
      text_cell(w, v.is_string() ? v.get<std::string>() : v.dump());
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
  }
  if (p.is_object() && p.contains("collective_algorithms") && p["collective_algorithms"].is_object()) {
    shown.insert("collective_algorithms");
    w.element("h3", {}, "Collective algorithms");
    std::vector<std::pair<std::string, std::string>> algos;
    for (const auto& [k, v] : p["collective_algorithms"].items()) algos.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
    kv_table(w, algos);
  }
  if (p.is_object() && p.contains("accelerator") && p["accelerator"].is_object()) {
    shown.insert("accelerator");
    const json& a = p["accelerator"];
    w.element("h3", {}, "Accelerator profile: " + (a.contains("name") && a["name"].is_string() ? a["name"].get<std::string>() : std::string("?")));
    if (a.contains("notes") && a["notes"].is_string() && !a["notes"].get<std::string>().empty())
      w.element("p", {{"class", "note"}}, a["notes"].get<std::string>());
    if (a.contains("sources") && a["sources"].is_object()) {
      std::vector<std::pair<std::string, std::string>> src;
      for (const auto& [k, v] : a["sources"].items()) src.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
      kv_table(w, src, "sources");
    }
  }
  const auto dcs = datacenter_sources(r);
  if (!dcs.empty()) {
    shown.insert("datacenters");
    for (const auto& d : dcs) {
      w.element("h3", {}, "Datacenter profile: " + d.name);
      std::vector<std::pair<std::string, std::string>> src = {{"licence", d.licence.empty() ? "not stated" : d.licence}};
      if (!d.attribution.empty()) src.emplace_back("attribution", d.attribution);
      if (!d.notes.empty()) src.emplace_back("notes", d.notes);
      for (const auto& s : d.sources) src.emplace_back("source of " + s.first, s.second);
      kv_table(w, src, "sources");
    }
  }
  if (p.is_object() && p.contains("network_energy") && p["network_energy"].is_object()) {
    shown.insert("network_energy");
    w.element("h3", {}, "Network energy per link class");
    open_table(w, {{"class", "network-energy"}});
    header_row(w, {{"Link class", false}, {"Energy per bit (pJ/bit)", true}, {"Idle power per link (W)", true}, {"Already counted in", false},
                   {"Source", false}});
    w.open("tbody");
    constexpr double kPicojoulesPerJoule = 1e12;  // SI prefix
    for (const auto& [k, v] : p["network_energy"].items()) {
      w.open("tr", {{"data-link-class", k}});
      w.open("td").element("code", {}, k).close("td");
      const double epb = v.contains("energy_per_bit_j") && v["energy_per_bit_j"].is_number() ? v["energy_per_bit_j"].get<double>() : kNaN;
      const double idle = v.contains("idle_w_per_link") && v["idle_w_per_link"].is_number() ? v["idle_w_per_link"].get<double>() : kNaN;
      num_cell(w, epb * kPicojoulesPerJoule, "pJ/bit", "energy_per_bit");
      num_cell(w, idle, "W", "idle_w_per_link");
      text_cell(w, v.contains("included_in") && v["included_in"].is_string() ? v["included_in"].get<std::string>() : "");
      text_cell(w, v.contains("source") && v["source"].is_string() ? v["source"].get<std::string>() : "", "src");
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
  }
  if (p.is_object()) {
    json rest = json::object();
    for (const auto& [k, v] : p.items())
      if (!shown.count(k)) rest[k] = v;
    if (!rest.empty()) {
      w.element("h3", {}, "Other provenance");
      w.element("pre", {}, rest.dump(2));
    }
  } else if (!p.is_null()) {
    w.element("h3", {}, "Other provenance");
    w.element("pre", {}, p.dump(2));
  }
}

void metrics_table(XmlWriter& w, const store::RunRecord& r) {
  open_table(w, {{"class", "metrics"}, {"data-run", std::to_string(r.id)}});
  header_row(w, {{"Metric", false}, {"Value", true}, {"Unit", false}});
  w.open("tbody");
  for (const auto& m : r.metrics) {
    w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-metric", m.name}});
    w.open("td").element("code", {}, m.name).close("td");
    num_cell(w, m.value, m.unit, "stored", 7);
    text_cell(w, m.unit);
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
}

std::string meta_line(const store::RunRecord& r) {
  std::string s = fmt::format("Status: {}. Created {}", store::to_string(r.status), r.created_at_utc);
  if (!r.finished_at_utc.empty()) s += fmt::format(", finished {}", r.finished_at_utc);
  s += fmt::format(". moesim {} (git {}), seed {}.", r.moesim_version, r.git_hash.empty() ? "unknown" : r.git_hash, r.seed);
  if (!r.scenario_file.empty()) s += " Scenario file: " + r.scenario_file + ".";
  if (r.comparison_id) s += fmt::format(" Alternative \xE2\x80\x9C{}\xE2\x80\x9D of comparison {}.", r.alternative_label, *r.comparison_id);
  return s;
}

}  // namespace

std::string html_run(const store::RunRecord& r, const std::string& db_path) {
  XmlWriter w;
  const bool serving = is_serving(r);
  const std::string title = fmt::format("moesim {} report \xE2\x80\x94 run {}: {}", serving ? "serving energy" : "energy", r.id, r.scenario_name);
  open_page(w, title);
  w.open("header", {{"data-run", std::to_string(r.id)}, {"data-status", store::to_string(r.status)}, {"data-kind", r.kind}});
  w.element("h1", {}, title);
  w.element("p", {{"class", "meta"}}, meta_line(r));
  w.close("header");
  const bool complete = r.status == store::RunStatus::complete;
  if (!complete) {
    w.element("div", {{"class", "notice"}},
              r.status == store::RunStatus::failed
                  ? fmt::format("This {}run failed: {}. It has no results; only its scenario is shown.", serving ? "serving " : "", r.error_message)
                  : fmt::format("This {}run is still running (or was interrupted): it has no results; only its scenario is shown.",
                                serving ? "serving " : ""));
  }
  std::vector<std::pair<std::string, std::string>> toc;
  if (complete && serving) {
    toc = {{"summary", "Summary"},
           {"latency", "Latency"},
           {"datacenters", "Energy and CO2e per datacenter"},
           {"over-time", "Power, batch and KV cache over time"}};
  } else if (complete) {
    toc = {{"summary", "Summary"},
           {"datacenters", "Energy and CO2e per datacenter"},
           {"breakdown", "Step time by phase kind"},
           {"power", "Power over one step"}};
  }
  toc.insert(toc.end(), {{"scenario", "Scenario"}, {"provenance", "Provenance"}, {"licences", "Data sources and licences"}});
  if (complete) toc.emplace_back("metrics", "All stored metrics");
  nav(w, toc);

  if (complete) {
    w.open("section", {{"id", "summary"}});
    w.element("h2", {}, "Summary");
    open_table(w, {{"class", "summary"}, {"data-run", std::to_string(r.id)}});
    header_row(w, {{"Quantity", false}, {"Value", true}, {"Unit", false}});
    w.open("tbody");
    for (const auto& s : serving ? serving_summary_rows(r) : summary_rows(r)) {
      w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-metric", s.metric}});
      text_cell(w, s.label);
      if (s.text.empty()) {
        num_cell(w, s.value, s.unit, "summary", s.significant);
      } else {
        num_text_cell(w, s.value, s.unit, "summary", s.text);
      }
      text_cell(w, s.unit);
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
    if (!serving && r.metric("duration_pinned") && r.metric("duration_pinned")->value != 0.0)
      w.element("p", {{"class", "note"}}, "The energy-accounting duration is pinned by the scenario (training.duration_days), "
                                          "not the simulated training time.");
    if (serving) {
      const std::string window = prov_string(r.provenance, "window");
      w.element("p", {{"class", "note"}},
                fmt::format("Measurement window: {}. Goodput counts the measured requests whose TTFT and TPOT are both within the "
                            "limits; the P99 targets are met when the P99 TTFT and the P99 TPOT are. Energy per output token is facility "
                            "energy over the output tokens generated in the window.",
                            window.empty() ? "as stored with the run" : window));
    }
    w.close("section");

    if (serving) {
      w.open("section", {{"id", "latency"}});
      w.element("h2", {}, "Latency");
      latency_section(w, r);
      w.close("section");
    }

    w.open("section", {{"id", "datacenters"}});
    w.element("h2", {}, "Energy and CO2e per datacenter");
    if (r.datacenters.empty()) {
      w.element("p", {}, "This run stored no datacenter results.");
    } else {
      datacenter_charts(w, r);
      if (serving) serving_site_section(w, r);
      datacenter_tables(w, r);
      w.element("p", {{"class", "note"}},
                "Facility energy = (IT + network inside the datacenter) \xC3\x97 PUE + WAN energy (drawn by carrier networks, no PUE); "
                "PUE overhead = facility \xE2\x88\x92 IT \xE2\x88\x92 network. Gross CO2e uses the location-based grid intensity, net "
                "CO2e the market-based one (gross where none is published); on an hourly series the intensity shown is its "
                "energy-weighted mean over the hours run.");
    }
    w.close("section");

    if (serving) {
      w.open("section", {{"id", "over-time"}});
      w.element("h2", {}, "Power, batch and KV cache over time");
      over_time_section(w, r);
      w.close("section");
    } else {
      w.open("section", {{"id", "breakdown"}});
      w.element("h2", {}, "Step time by phase kind");
      breakdown_section(w, r);
      w.close("section");

      w.open("section", {{"id", "power"}});
      w.element("h2", {}, "Power over one simulated step");
      power_section(w, r);
      w.close("section");
    }
  }

  w.open("section", {{"id", "scenario"}});
  w.element("h2", {}, "Scenario");
  w.element("p", {}, fmt::format("Resolved scenario \xE2\x80\x9C{}\xE2\x80\x9D (every field, defaults filled in), as stored with the run.", r.scenario_name));
  w.element("pre", {{"class", "scenario"}}, r.scenario.dump(2));
  w.close("section");

  w.open("section", {{"id", "provenance"}});
  w.element("h2", {}, "Provenance");
  provenance_section(w, r);
  w.close("section");

  w.open("section", {{"id", "licences"}});
  w.element("h2", {}, "Data sources and licences");
  licences_section(w, {r});
  w.close("section");

  if (complete) {
    w.open("section", {{"id", "metrics"}});
    w.element("h2", {}, "All stored metrics");
    w.element("p", {{"class", "note"}}, "Every metric of the run as stored (SI units).");
    metrics_table(w, r);
    w.close("section");
  }
  close_page(w, db_path, r.moesim_version);
  return w.str();
}

namespace {

/** The training comparison's time-CO2e scatter and its bars of CO2e, training time and energy per alternative. */
void training_comparison_charts(XmlWriter& w, const store::Comparison& cmp, const std::vector<const ComparisonRow*>& ranked,
                                const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  w.open("section", {{"id", "tradeoff"}});
  w.element("h2", {}, "Training time vs CO2e");
  {
    svg::ScatterChart s;
    s.id = fmt::format("tradeoff-{}", cmp.id);
    s.title = "Training time vs gross CO2e, with the Pareto front";
    s.x_axis_label = "training time (days)";
    s.y_axis_label = "CO2e gross (t)";
    s.x_unit = "days";
    s.y_unit = "t";
    s.front_label = "Pareto front (no alternative is faster and cleaner)";
    s.other_label = "dominated alternative";
    for (const auto* row : ranked)
      s.points.push_back({std::to_string(row->run_id), fmt::format("#{} {}", row->rank, row->label), row->train_days, row->co2e_gross_t, row->pareto});
    w.raw(svg::scatter_chart(s));
  }
  w.close("section");

  w.open("section", {{"id", "charts"}});
  w.element("h2", {}, "CO2e, time and energy per alternative");
  if (ranked.empty()) {
    w.element("p", {}, "No alternative completed.");
  } else {
    std::vector<std::string> keys, labels;
    double max_kg = 0.0, max_j = 0.0;
    for (const auto* row : ranked) {
      keys.push_back(std::to_string(row->run_id));
      labels.push_back(fmt::format("#{} {}", row->rank, row->label));
      const Totals t = totals(*by_id.at(row->run_id));
      max_kg = std::max({max_kg, t.gross_kg, t.net_kg});
      max_j = std::max(max_j, t.facility_j);
    }
    const DisplayUnit mu = mass_unit(max_kg), eu = energy_unit(max_j);
    svg::BarChart c;
    c.id = fmt::format("co2e-per-alternative-{}", cmp.id);
    c.title = "CO2e per alternative (ranked)";
    c.value_axis_label = fmt::format("CO2e over the job ({})", mu.unit);
    c.unit = mu.unit;
    c.series = {{"gross", "gross (location-based)", pal::kOkabeIto[6]}, {"net", "net (market-based)", pal::kOkabeIto[3]}};
    c.values.assign(2, {});
    svg::BarChart d;
    d.id = fmt::format("days-per-alternative-{}", cmp.id);
    d.title = "Training time per alternative";
    d.value_axis_label = "training time (days)";
    d.unit = "days";
    d.series = {{"train_days", "simulated training time", pal::kOkabeIto[5]}};
    d.values.assign(1, {});
    svg::BarChart e;
    e.id = fmt::format("energy-per-alternative-{}", cmp.id);
    e.title = "Energy per alternative: IT + network + PUE overhead = facility energy";
    e.value_axis_label = fmt::format("energy over the job ({})", eu.unit);
    e.unit = eu.unit;
    e.stacked = true;
    e.series = {{"it", "IT (chips + host overhead)", pal::kOkabeIto[5]},
                {"network", "network", pal::kOkabeIto[1]},
                {"overhead", "PUE overhead", pal::kOkabeIto[2]}};
    e.values.assign(3, {});
    for (const auto* row : ranked) {
      const Totals t = totals(*by_id.at(row->run_id));
      c.values[0].push_back(t.gross_kg / mu.divisor);
      c.values[1].push_back(t.net_kg / mu.divisor);
      d.values[0].push_back(row->train_days);
      e.values[0].push_back(t.it_j / eu.divisor);
      e.values[1].push_back(t.network_j / eu.divisor);
      e.values[2].push_back(t.overhead_j / eu.divisor);
    }
    for (auto* ch : {&c, &d, &e}) {
      ch->category_keys = keys;
      ch->category_labels = labels;
      w.raw(svg::bar_chart(*ch));
    }
  }
  w.close("section");

}

/** The serving comparison's P99 TTFT vs gCO2e/1000 tokens scatter and its bars per alternative, every value read from the
 *  ranking's ComparisonRow (the numbers of the ranking table). */
void serving_comparison_charts(XmlWriter& w, const store::Comparison& cmp, const std::vector<const ComparisonRow*>& ranked) {
  const auto& cols = serving_ranking_columns();
  auto col = [&](const std::string& field) -> const RankingColumn& {
    return *std::find_if(cols.begin(), cols.end(), [&](const RankingColumn& c) { return c.field == field; });
  };
  const RankingColumn& ttft = col("ttft_p99");
  const RankingColumn& gross = col("co2e_gross_per_1k_tokens");
  const RankingColumn& net = col("co2e_net_per_1k_tokens");
  const RankingColumn& joules = col("energy_per_output_token");
  const RankingColumn& tokens = col("output_tokens_per_s");
  w.open("section", {{"id", "tradeoff"}});
  w.element("h2", {}, "P99 TTFT vs CO2e per 1000 tokens");
  {
    svg::ScatterChart s;
    s.id = fmt::format("tradeoff-{}", cmp.id);
    s.title = "P99 time to first token vs gross CO2e per 1000 output tokens, with the Pareto front";
    s.x_axis_label = fmt::format("P99 TTFT ({})", ttft.unit);
    s.y_axis_label = fmt::format("CO2e gross per 1000 output tokens ({})", gross.unit);
    s.x_unit = ttft.unit;
    s.y_unit = gross.unit;
    s.front_label = "Pareto front (no alternative is more responsive and cleaner)";
    s.other_label = "dominated alternative";
    for (const auto* row : ranked)
      s.points.push_back({std::to_string(row->run_id), fmt::format("#{} {}", row->rank, row->label), ttft.value(*row), gross.value(*row), row->pareto});
    w.raw(svg::scatter_chart(s));
  }
  w.close("section");

  w.open("section", {{"id", "charts"}});
  w.element("h2", {}, "CO2e, energy and throughput per alternative");
  if (ranked.empty()) {
    w.element("p", {}, "No alternative completed.");
  } else {
    std::vector<std::string> keys, labels;
    for (const auto* row : ranked) {
      keys.push_back(std::to_string(row->run_id));
      labels.push_back(fmt::format("#{} {}", row->rank, row->label));
    }
    svg::BarChart c;
    c.id = fmt::format("co2e-per-1k-tokens-per-alternative-{}", cmp.id);
    c.title = "CO2e per 1000 output tokens per alternative (ranked)";
    c.value_axis_label = fmt::format("CO2e per 1000 output tokens ({})", gross.unit);
    c.unit = gross.unit;
    c.series = {{gross.field, "gross (location-based)", pal::kOkabeIto[6]}, {net.field, "net (market-based)", pal::kOkabeIto[3]}};
    c.values.assign(2, {});
    svg::BarChart e;
    e.id = fmt::format("energy-per-token-per-alternative-{}", cmp.id);
    e.title = "Energy per output token per alternative (facility energy / output tokens)";
    e.value_axis_label = fmt::format("energy per output token ({})", joules.unit);
    e.unit = joules.unit;
    e.series = {{joules.field, "facility energy per output token", pal::kOkabeIto[5]}};
    e.values.assign(1, {});
    svg::BarChart t;
    t.id = fmt::format("tokens-per-alternative-{}", cmp.id);
    t.title = "Output throughput per alternative";
    t.value_axis_label = fmt::format("output tokens per second ({})", tokens.unit);
    t.unit = tokens.unit;
    t.series = {{tokens.field, "output tokens per second over the measurement window", pal::kOkabeIto[2]}};
    t.values.assign(1, {});
    for (const auto* row : ranked) {
      c.values[0].push_back(gross.value(*row));
      c.values[1].push_back(net.value(*row));
      e.values[0].push_back(joules.value(*row));
      t.values[0].push_back(tokens.value(*row));
    }
    for (auto* ch : {&c, &e, &t}) {
      ch->category_keys = keys;
      ch->category_labels = labels;
      w.raw(svg::bar_chart(*ch));
    }
  }
  w.close("section");
}

/** P50 and P99 of TTFT, TPOT, ITL and E2E for every complete alternative, in ranking order. */
void serving_latency_table(XmlWriter& w, const std::vector<ComparisonRow>& rows, const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  if (std::none_of(rows.begin(), rows.end(), [](const ComparisonRow& r) { return r.status == "complete"; })) {
    w.element("p", {}, "No alternative completed.");
    return;
  }
  open_table(w, {{"class", "latency"}});
  const std::pair<const char*, const char*> dists[] = {{"ttft", "TTFT"}, {"tpot", "TPOT"}, {"itl", "ITL"}, {"e2e", "E2E"}};
  const std::pair<const char*, const char*> stats[] = {{"p50", "P50"}, {"p99", "P99"}};
  std::vector<std::pair<std::string, bool>> heads = {{"Alternative", false}, {"Run", true}};
  for (const auto& d : dists)
    for (const auto& st : stats) heads.emplace_back(fmt::format("{} {} (ms)", st.second, d.second), true);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& row : rows) {
    const store::RunRecord& r = *by_id.at(row.run_id);
    if (r.status != store::RunStatus::complete) continue;
    const std::vector<LatencyRow> lat = latency_rows(r);
    w.open("tr", {{"data-run", std::to_string(r.id)}});
    text_cell(w, run_label(r));
    text_cell(w, std::to_string(r.id), "num");
    for (const auto& d : dists) {
      const auto it = std::find_if(lat.begin(), lat.end(), [&](const LatencyRow& l) { return l.key == d.first; });
      for (const auto& st : stats) num_cell(w, it->at(st.first), "ms", fmt::format("{}_{}", d.first, st.first));
    }
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  w.element("p", {{"class", "note"}}, "Latencies of the requests arriving in each alternative's measurement window (the run report "
                                      "of each alternative shows every statistic and the distributions).");
}

/** The training comparison's step-time breakdown per alternative (chart and table). */
void training_breakdown_section(XmlWriter& w, const store::Comparison& cmp, const std::vector<const ComparisonRow*>& ranked,
                                const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  w.open("section", {{"id", "breakdown"}});
  w.element("h2", {}, "Step time by phase kind");
  if (!ranked.empty()) {
    std::vector<const store::RunRecord*> done;
    for (const auto* row : ranked) done.push_back(by_id.at(row->run_id));
    bool other = false;
    const std::vector<std::string> kinds = top_phase_kinds(done, kMaxStackedKinds, &other);
    svg::BarChart b;
    b.id = fmt::format("step-breakdown-{}", cmp.id);
    b.title = "Step time by phase kind: contribution to the critical path";
    b.value_axis_label = "time per step (s)";
    b.unit = "s";
    b.stacked = true;
    const int colour_of[] = {5, 1, 2, 3, 6, 7, 4};  // Okabe–Ito entries, black kept for "other"
    for (std::size_t i = 0; i < kinds.size(); ++i) b.series.push_back({kinds[i], kinds[i], pal::kOkabeIto[colour_of[i]]});
    if (other) b.series.push_back({"other", "other phase kinds", "#9a9a9a"});
    b.values.assign(b.series.size(), {});
    for (const auto* row : ranked) {
      const store::RunRecord& r = *by_id.at(row->run_id);
      b.category_keys.push_back(std::to_string(r.id));
      b.category_labels.push_back(fmt::format("#{} {}", row->rank, row->label));
      double rest = 0.0;
      std::vector<double> v(kinds.size(), 0.0);
      for (const auto& k : r.breakdown) {
        auto it = std::find(kinds.begin(), kinds.end(), k.phase_kind);
        if (it != kinds.end()) {
          v[static_cast<std::size_t>(it - kinds.begin())] += k.critical_path_s;
        } else {
          rest += k.critical_path_s;
        }
      }
      for (std::size_t i = 0; i < kinds.size(); ++i) b.values[i].push_back(v[i]);
      if (other) b.values.back().push_back(rest);
    }
    w.raw(svg::bar_chart(b));
    open_table(w, {{"class", "breakdown"}});
    std::vector<std::pair<std::string, bool>> h = {{"Alternative", false}, {"Step time (s)", true}};
    for (const auto& k : kinds) h.emplace_back(k + " (s)", true);
    if (other) h.emplace_back("other (s)", true);
    header_row(w, h);
    w.open("tbody");
    for (std::size_t j = 0; j < ranked.size(); ++j) {
      const store::RunRecord& r = *by_id.at(ranked[j]->run_id);
      w.open("tr", {{"data-run", std::to_string(r.id)}});
      text_cell(w, b.category_labels[j]);
      num_cell(w, metric_or_nan(r, "step_time_s"), "s", "step_time", 5);
      for (std::size_t i = 0; i < b.series.size(); ++i) num_cell(w, b.values[i][j], "s", "critical_path:" + b.series[i].key);
      w.close("tr");
    }
    w.close("tbody");
    close_table(w);
  } else {
    w.element("p", {}, "No alternative completed.");
  }
  w.close("section");
}

/** Per output token figures of every datacenter of every alternative (serving_site_table of each run). */
void serving_site_comparison_table(XmlWriter& w, const std::vector<ComparisonRow>& rows, const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  w.element("h3", {}, "Per output token");
  open_table(w, {{"class", "datacenters per-token"}});
  std::vector<std::pair<std::string, bool>> h = {{"Alternative", false}, {"Run", true}, {"Datacenter", false}};
  for (const auto& c : serving_site_columns()) h.emplace_back(with_unit(c.header, c.unit), true);
  header_row(w, h);
  w.open("tbody");
  for (const auto& row : rows) {
    const store::RunRecord& r = *by_id.at(row.run_id);
    const ServingSiteTable t = serving_site_table(r);
    for (std::size_t d = 0; d < r.datacenters.size(); ++d) {
      w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-datacenter", r.datacenters[d].name}});
      text_cell(w, run_label(r));
      text_cell(w, std::to_string(r.id), "num");
      w.open("td", {{"title", datacenter_title(r.datacenters[d])}}).element("code", {}, r.datacenters[d].name).close("td");
      for (std::size_t c = 0; c < t.columns.size(); ++c) num_cell(w, t.values[c][d], t.columns[c].unit, t.columns[c].field, t.columns[c].significant);
      w.close("tr");
    }
  }
  w.close("tbody");
  close_table(w);
}

}  // namespace

std::string html_comparison(const store::Comparison& cmp, const std::vector<store::RunRecord>& runs, const std::vector<ComparisonRow>& rows,
                            const std::string& db_path) {
  XmlWriter w;
  const bool serving = !rows.empty() && rows.front().kind == "serving";
  const std::string title = fmt::format("moesim {} comparison {}: {}", serving ? "serving" : "placement", cmp.id, cmp.scenario_name);
  open_page(w, title);
  std::map<std::string, int> status_count;
  for (const auto& r : runs) ++status_count[store::to_string(r.status)];
  std::string counts;
  for (const auto& [s, n] : status_count) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, s);
  w.open("header", {{"data-comparison", std::to_string(cmp.id)}});
  w.element("h1", {}, title);
  w.element("p", {{"class", "meta"}}, fmt::format("Created {}. {} alternatives ({}).", cmp.created_at_utc, runs.size(), counts));
  w.close("header");
  std::map<std::int64_t, const store::RunRecord*> by_id;
  for (const auto& r : runs) by_id[r.id] = &r;
  for (const auto& r : runs) {
    if (r.status == store::RunStatus::complete) continue;
    w.element("div", {{"class", "notice"}, {"data-run", std::to_string(r.id)}},
              r.status == store::RunStatus::failed
                  ? fmt::format("Alternative \xE2\x80\x9C{}\xE2\x80\x9D (run {}) failed: {}. It is listed but not ranked.", run_label(r), r.id, r.error_message)
                  : fmt::format("Alternative \xE2\x80\x9C{}\xE2\x80\x9D (run {}) is still running or was interrupted. It is listed but not ranked.",
                                run_label(r), r.id));
  }
  if (serving) {
    nav(w, {{"ranking", "Ranking"},
            {"tradeoff", "P99 TTFT vs CO2e per 1000 tokens"},
            {"charts", "CO2e, energy and throughput per alternative"},
            {"latency", "Latency per alternative"},
            {"datacenters", "Datacenters of each alternative"},
            {"scenario", "Scenario and alternatives"},
            {"provenance", "Provenance"},
            {"licences", "Data sources and licences"}});
  } else {
    nav(w, {{"ranking", "Ranking"},
            {"tradeoff", "Training time vs CO2e"},
            {"charts", "CO2e, time and energy per alternative"},
            {"datacenters", "Datacenters of each alternative"},
            {"breakdown", "Step time by phase kind"},
            {"scenario", "Scenario and alternatives"},
            {"provenance", "Provenance"},
            {"licences", "Data sources and licences"}});
  }

  std::vector<const ComparisonRow*> ranked;
  for (const auto& row : rows)
    if (row.rank > 0) ranked.push_back(&row);

  w.open("section", {{"id", "ranking"}});
  w.element("h2", {}, "Ranking");
  w.element("p", {{"class", "note"}},
            serving ? "Ranked by gross (location-based) CO2e per 1000 output tokens, ties by P99 TTFT. An alternative is on the Pareto "
                      "front when no other is at least as good in both P99 TTFT and gross CO2e per 1000 tokens and strictly better in "
                      "one. Runs that did not complete are listed last, unranked."
                    : "Ranked by gross (location-based) CO2e, ties by training time. An alternative is on the Pareto front when no other "
                      "is at least as good in both training time and gross CO2e and strictly better in one. Runs that did not complete are "
                      "listed last, unranked.");
  const auto& ranking_cols = ranking_columns_for(rows);
  open_table(w, {{"class", "ranking"}, {"data-comparison", std::to_string(cmp.id)}});
  std::vector<std::pair<std::string, bool>> heads = {{"Rank", true}, {"Alternative", false}, {"Run", true}, {"Status", false}};
  for (const auto& c : ranking_cols) heads.emplace_back(with_unit(c.header, c.unit), true);
  heads.emplace_back("Pareto front", false);
  header_row(w, heads);
  w.open("tbody");
  for (const auto& row : rows) {
    w.open("tr", {{"data-run", std::to_string(row.run_id)}, {"data-rank", std::to_string(row.rank)}, {"data-pareto", row.pareto ? "true" : "false"},
                  {"data-status", row.status}});
    text_cell(w, row.rank > 0 ? std::to_string(row.rank) : "\xE2\x80\x93", "num");
    text_cell(w, row.label);
    text_cell(w, std::to_string(row.run_id), "num");
    text_cell(w, row.status);
    for (const auto& c : ranking_cols) num_cell(w, c.value(row), c.unit, c.field, c.significant);
    text_cell(w, row.rank == 0 ? "\xE2\x80\x93" : (row.pareto ? "yes" : "no"));
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  if (const std::string note = grid_basis_note(runs); !note.empty()) w.element("p", {{"class", "note"}, {"id", "grid-basis-note"}}, note);
  w.close("section");

  if (serving) {
    serving_comparison_charts(w, cmp, ranked);
    w.open("section", {{"id", "latency"}});
    w.element("h2", {}, "Latency per alternative");
    serving_latency_table(w, rows, by_id);
    w.close("section");
  } else {
    training_comparison_charts(w, cmp, ranked, by_id);
  }

  w.open("section", {{"id", "datacenters"}});
  w.element("h2", {}, "Datacenters of each alternative");
  {
    bool emb = false;
    for (const auto& r : runs) emb = emb || has_embodied(r);
    const std::vector<std::pair<std::string, std::vector<DatacenterColumn>>> tables = {{"Sites", site_columns()},
                                                                                      {"Energy and emissions", energy_columns(emb, serving)}};
    for (const auto& [heading, cols] : tables) {
      w.element("h3", {}, heading);
      open_table(w, {{"class", "datacenters"}});
      std::vector<std::pair<std::string, bool>> h = {{"Alternative", false}, {"Run", true}, {"Datacenter", false}};
      if (heading == "Sites") h.emplace_back("Country", false);
      for (const auto& c : cols) h.emplace_back(with_unit(c.header, c.unit), true);
      header_row(w, h);
      w.open("tbody");
      for (const auto& row : rows) {
        const store::RunRecord& r = *by_id.at(row.run_id);
        for (const auto& d : r.datacenters) {
          w.open("tr", {{"data-run", std::to_string(r.id)}, {"data-datacenter", d.name}});
          text_cell(w, run_label(r));
          text_cell(w, std::to_string(r.id), "num");
          w.open("td", {{"title", datacenter_title(d)}}).element("code", {}, d.name).close("td");
          if (heading == "Sites") text_cell(w, d.country_iso_code);
          for (const auto& c : cols) num_cell(w, c.value(d), c.unit, c.field, c.significant);
          w.close("tr");
        }
      }
      w.close("tbody");
      close_table(w);
    }
    if (serving) serving_site_comparison_table(w, rows, by_id);
  }
  w.close("section");

  if (!serving) training_breakdown_section(w, cmp, ranked, by_id);

  w.open("section", {{"id", "scenario"}});
  w.element("h2", {}, "Scenario and alternatives");
  const store::RunRecord& base = runs.front();
  w.element("p", {}, fmt::format("Resolved scenario of the first alternative, \xE2\x80\x9C{}\xE2\x80\x9D (run {}):", run_label(base), base.id));
  w.element("pre", {{"class", "scenario"}}, base.scenario.dump(2));
  {
    const auto diffs = scenario_differences(runs);
    if (runs.size() > 1) {
      w.element("h3", {}, "How the other alternatives differ from it");
      if (diffs.empty()) {
        w.element("p", {}, "They do not: every alternative has the same resolved scenario.");
      } else {
        open_table(w, {{"class", "scenario-diff"}});
        header_row(w, {{"Alternative", false}, {"Field", false}, {"First alternative", false}, {"This alternative", false}});
        w.open("tbody");
        for (const auto& d : diffs) {
          w.open("tr");
          text_cell(w, d.label);
          w.open("td").element("code", {}, d.path).close("td");
          text_cell(w, d.base, "src");
          text_cell(w, d.value, "src");
          w.close("tr");
        }
        w.close("tbody");
        close_table(w);
      }
    }
  }
  w.close("section");

  w.open("section", {{"id", "provenance"}});
  w.element("h2", {}, "Provenance");
  open_table(w, {{"class", "provenance"}});
  header_row(w, {{"Run", true}, {"Alternative", false}, {"moesim", false}, {"git", false}, {"Compute-time model", false},
                 {"Kernel classes by compute path", false}, {"Power convention", false}});
  w.open("tbody");
  for (const auto& r : runs) {
    w.open("tr", {{"data-run", std::to_string(r.id)}});
    text_cell(w, std::to_string(r.id), "num");
    text_cell(w, run_label(r));
    text_cell(w, r.moesim_version);
    text_cell(w, r.git_hash);
    text_cell(w, prov_string(r.provenance, "compute_model"), "src");
    text_cell(w, compute_path_summary(r.provenance));
    text_cell(w, prov_string(r.provenance, "power_convention"), "src");
    w.close("tr");
  }
  w.close("tbody");
  close_table(w);
  w.element("p", {{"class", "note"}}, "The report of each run (moesim report RUN_ID) lists its full provenance: "
                                      "profile sources, collective algorithms and network-energy figures.");
  w.close("section");

  w.open("section", {{"id", "licences"}});
  w.element("h2", {}, "Data sources and licences");
  licences_section(w, runs);
  w.close("section");

  close_page(w, db_path, runs.front().moesim_version);
  return w.str();
}

void html_licences_section(XmlWriter& w, const std::vector<store::RunRecord>& runs) {
  w.open("section", {{"id", "licences"}});
  w.element("h2", {}, "Data sources and licences");
  licences_section(w, runs);
  w.close("section");
}

}  // namespace moesim::reports::detail
