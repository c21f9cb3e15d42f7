// SPDX-License-Identifier: Apache-2.0
// The Markdown report: the HTML report's tables (GitHub-flavoured Markdown), without the charts.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "model.hpp"
#include "moesim/core/units.hpp"
#include "moesim/reports/markup.hpp"

namespace moesim::reports::detail {

namespace {

using nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kMaxKindColumns = 7;  // as the HTML report's stacked bars

/** A Markdown table; `numeric[i]` right-aligns column i. Cells are escaped here. */
std::string table(const std::vector<std::string>& head, const std::vector<bool>& numeric, const std::vector<std::vector<std::string>>& rows) {
  std::string out = "|";
  for (const auto& h : head) out += " " + markdown_escape(h) + " |";
  out += "\n|";
  for (std::size_t i = 0; i < head.size(); ++i) out += i < numeric.size() && numeric[i] ? " ---: |" : " --- |";
  out += "\n";
  for (const auto& r : rows) {
    out += "|";
    for (const auto& c : r) out += " " + markdown_escape(c) + " |";
    out += "\n";
  }
  return out + "\n";
}

std::string code_block(const std::string& text, const std::string& lang) {
  std::size_t longest = 0, run = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(std::max<std::size_t>(3, longest + 1), '`');
  return fence + lang + "\n" + text + "\n" + fence + "\n\n";
}

/** "Header (unit)"; no unit for dimensionless values or where the header already names it ("Chips"). */
std::string with_unit(const std::string& header, const std::string& unit) {
  std::string lower = header;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return unit == "1" || lower == unit ? header : fmt::format("{} ({})", header, unit);
}

std::string dc_label(const store::DatacenterResult& d) {
  return d.display_name.empty() || d.display_name == d.name ? d.name : fmt::format("{} ({})", d.display_name, d.name);
}

std::string kv(const std::vector<std::pair<std::string, std::string>>& rows, const std::string& key_head = "Field",
               const std::string& value_head = "Value") {
  std::vector<std::vector<std::string>> cells;
  for (const auto& [k, v] : rows) cells.push_back({k, v});
  return table({key_head, value_head}, {false, false}, cells);
}

std::string datacenter_tables(const store::RunRecord& r) {
  std::string out = "### Sites\n\n";
  std::vector<std::string> head = {"Datacenter", "Country", "Region"};
  std::vector<bool> numeric = {false, false, false};
  for (const auto& c : site_columns()) {
    head.push_back(with_unit(c.header, c.unit));
    numeric.push_back(true);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : r.datacenters) {
    std::vector<std::string> row = {dc_label(d), d.country_iso_code, d.region};
    for (const auto& c : site_columns()) row.push_back(format_value(c.value(d), c.significant));
    rows.push_back(row);
  }
  out += table(head, numeric, rows);

  out += "### Energy and emissions\n\n";
  const auto cols = energy_columns(has_embodied(r), is_serving(r));
  head = {"Datacenter"};
  numeric = {false};
  for (const auto& c : cols) {
    head.push_back(with_unit(c.header, c.unit));
    numeric.push_back(true);
  }
  rows.clear();
  for (const auto& d : r.datacenters) {
    std::vector<std::string> row = {dc_label(d)};
    for (const auto& c : cols) row.push_back(format_value(c.value(d), c.significant));
    rows.push_back(row);
  }
  if (r.datacenters.size() > 1) {
    std::vector<std::string> row = {"Total"};
    for (const auto& c : cols) {
      double sum = 0.0;
      for (const auto& d : r.datacenters) sum += c.value(d);
      row.push_back(format_value(sum, c.significant));
    }
    rows.push_back(row);
  }
  out += table(head, numeric, rows);
  if (is_serving(r)) {
    out += "### Per output token\n\n";
    const ServingSiteTable t = serving_site_table(r);
    head = {"Datacenter"};
    numeric = {false};
    for (const auto& c : t.columns) {
      head.push_back(with_unit(c.header, c.unit));
      numeric.push_back(true);
    }
    rows.clear();
    for (std::size_t d = 0; d < r.datacenters.size(); ++d) {
      std::vector<std::string> row = {dc_label(r.datacenters[d])};
      for (std::size_t c = 0; c < t.columns.size(); ++c) row.push_back(format_value(t.values[c][d], t.columns[c].significant));
      rows.push_back(row);
    }
    if (r.datacenters.size() > 1) {
      std::vector<std::string> row = {"All datacenters"};
      for (std::size_t c = 0; c < t.columns.size(); ++c) row.push_back(format_value(t.totals[c], t.columns[c].significant));
      rows.push_back(row);
    }
    out += table(head, numeric, rows);
    out += "Output tokens generated in each datacenter during the measurement window; energy per output token is that datacenter's "
           "facility energy over them, CO2e per 1000 tokens its CO2e over them.\n\n";
    if (!t.note.empty()) out += t.note + "\n\n";
  }
  out += "Facility energy = (IT + network inside the datacenter) \xC3\x97 PUE + WAN energy (drawn by carrier networks, no PUE); "
         "PUE overhead = facility \xE2\x88\x92 IT \xE2\x88\x92 network. Gross CO2e uses the location-based grid intensity, net CO2e the "
         "market-based one (gross where none is published); on an hourly series the intensity shown is its energy-weighted "
         "mean over the hours run.\n\n";
  return out;
}

std::string licences(const std::vector<store::RunRecord>& runs) {
  std::string out =
      "moesim's code and its profile YAML files are Apache-2.0. The grid and datacenter figures this report reproduces keep the "
      "licence of the dataset they came from:\n\n";
  const auto uses = licence_uses(runs);
  if (uses.empty()) return out + "The runs stored no datacenter provenance.\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& u : uses) {
    std::string dcs;
    for (const auto& d : u.datacenters) dcs += (dcs.empty() ? "" : ", ") + d;
    rows.push_back({u.dataset.empty() ? "datacenter profile (published figures)" : u.dataset,
                    u.licence.url.empty() ? u.licence.name : fmt::format("{}, {}", u.licence.name, u.licence.url),
                    u.attribution.empty() ? "\xE2\x80\x93" : u.attribution, u.licence.obligation.empty() ? "\xE2\x80\x93" : u.licence.obligation, dcs});
  }
  return out + table({"Dataset", "Licence", "Attribution", "Obligation", "Datacenters"}, {}, rows);
}

std::string provenance(const store::RunRecord& r) {
  const json& p = r.provenance;
  std::string out;
  std::vector<std::pair<std::string, std::string>> rows = {{"moesim version", r.moesim_version}, {"git commit", r.git_hash}};
  std::set<std::string> shown = {"moesim_version", "git_hash"};
  auto add = [&](const char* key, const char* label) {
    if (p.is_object() && p.contains(key)) {
      rows.emplace_back(label, p[key].is_string() ? p[key].get<std::string>() : p[key].dump());
      shown.insert(key);
    }
  };
  add("profiles_dir", "profiles directory");
  add("compute_model", "compute-time model");
  if (!compute_path_summary(p).empty()) rows.emplace_back("kernel classes by compute path", compute_path_summary(p));
  add("power_convention", "power convention");
  add("routing_exact", "routing simulated exactly");
  add("step_times_s", "simulated step times (s)");
  add("window", "measurement window");
  add("series_interval_s", "series sampling interval (s)");
  add("series_first_interval_s", "the first series point's interval, from 0 (s)");
  add("series_last_interval_s", "the last series point's interval (s)");
  add("memo_buckets_per_octave", "iteration-cost memo buckets per octave");
  out += kv(rows);
  const std::vector<json> pools = provenance_pools(p);
  if (!pools.empty()) {
    shown.insert("pools");
    std::vector<std::string> head = {"Pool", "Role"};
    std::vector<bool> numeric = {true, false};
    for (const auto& c : pool_columns()) {
      head.push_back(with_unit(c.header, c.unit));
      numeric.push_back(true);
    }
    std::vector<std::vector<std::string>> cells;
    for (std::size_t i = 0; i < pools.size(); ++i) {
      std::vector<std::string> line = {std::to_string(i),
                                       pools[i].is_object() && pools[i].contains("role") && pools[i]["role"].is_string() ? pools[i]["role"].get<std::string>() : ""};
      for (const auto& c : pool_columns()) line.push_back(format_value(pool_value(pools[i], c), c.significant));
      cells.push_back(line);
    }
    out += "### Serving pools\n\nMemory of the most loaded device of a replica of each pool.\n\n" + table(head, numeric, cells);
  }
  auto string_map = [](const json& o) {
    std::vector<std::pair<std::string, std::string>> v;
    for (const auto& [k, x] : o.items()) v.emplace_back(k, x.is_string() ? x.get<std::string>() : x.dump());
    return v;
  };
  if (p.is_object() && p.contains("compute_paths") && p["compute_paths"].is_object()) {
    shown.insert("compute_paths");
    out += "### Compute time per kernel class\n\nmeasured: interpolated from profiled tables of this device; transferred: roofline with "
           "efficiencies calibrated on a measured device; roofline: roofline with published efficiencies.\n\n";
    out += kv(string_map(p["compute_paths"]), "Kernel class", "Path");
  }
  if (p.is_object() && p.contains("collective_algorithms") && p["collective_algorithms"].is_object()) {
    shown.insert("collective_algorithms");
    out += "### Collective algorithms\n\n" + kv(string_map(p["collective_algorithms"]), "Collective", "Algorithm");
  }
  if (p.is_object() && p.contains("accelerator") && p["accelerator"].is_object()) {
    shown.insert("accelerator");
    const json& a = p["accelerator"];
    out += "### Accelerator profile: " + markdown_escape(a.contains("name") && a["name"].is_string() ? a["name"].get<std::string>() : "?") + "\n\n";
    if (a.contains("notes") && a["notes"].is_string() && !a["notes"].get<std::string>().empty()) out += markdown_escape(a["notes"].get<std::string>()) + "\n\n";
    if (a.contains("sources") && a["sources"].is_object()) out += kv(string_map(a["sources"]), "Field", "Source");
  }
  const auto dcs = datacenter_sources(r);
  if (!dcs.empty()) shown.insert("datacenters");
  for (const auto& d : dcs) {
    out += "### Datacenter profile: " + markdown_escape(d.name) + "\n\n";
    std::vector<std::pair<std::string, std::string>> src = {{"licence", d.licence.empty() ? "not stated" : d.licence}};
    if (!d.attribution.empty()) src.emplace_back("attribution", d.attribution);
    if (!d.notes.empty()) src.emplace_back("notes", d.notes);
    for (const auto& s : d.sources) src.emplace_back("source of " + s.first, s.second);
    out += kv(src);
  }
  if (p.is_object() && p.contains("network_energy") && p["network_energy"].is_object()) {
    shown.insert("network_energy");
    constexpr double kPicojoulesPerJoule = 1e12;  // SI prefix
    std::vector<std::vector<std::string>> rows2;
    for (const auto& [k, v] : p["network_energy"].items()) {
      const double epb = v.contains("energy_per_bit_j") && v["energy_per_bit_j"].is_number() ? v["energy_per_bit_j"].get<double>() : kNaN;
      const double idle = v.contains("idle_w_per_link") && v["idle_w_per_link"].is_number() ? v["idle_w_per_link"].get<double>() : kNaN;
      rows2.push_back({k, format_value(epb * kPicojoulesPerJoule), format_value(idle),
                       v.contains("included_in") && v["included_in"].is_string() ? v["included_in"].get<std::string>() : "",
                       v.contains("source") && v["source"].is_string() ? v["source"].get<std::string>() : ""});
    }
    out += "### Network energy per link class\n\n" +
           table({"Link class", "Energy per bit (pJ/bit)", "Idle power per link (W)", "Already counted in", "Source"}, {false, true, true, false, false}, rows2);
  }
  if (p.is_object()) {
    json rest = json::object();
    for (const auto& [k, v] : p.items())
      if (!shown.count(k)) rest[k] = v;
    if (!rest.empty()) out += "### Other provenance\n\n" + code_block(rest.dump(2), "json");
  } else if (!p.is_null()) {
    out += "### Other provenance\n\n" + code_block(p.dump(2), "json");
  }
  return out;
}

std::string meta(const store::RunRecord& r) {
  std::string s = fmt::format("Status: **{}**. Created {}", store::to_string(r.status), r.created_at_utc);
  if (!r.finished_at_utc.empty()) s += fmt::format(", finished {}", r.finished_at_utc);
  s += fmt::format(". moesim {} (git {}), seed {}.", markdown_escape(r.moesim_version), markdown_escape(r.git_hash.empty() ? "unknown" : r.git_hash), r.seed);
  if (!r.scenario_file.empty()) s += " Scenario file: " + markdown_escape(r.scenario_file) + ".";
  if (r.comparison_id) s += fmt::format(" Alternative \xE2\x80\x9C{}\xE2\x80\x9D of comparison {}.", markdown_escape(r.alternative_label), *r.comparison_id);
  return s + "\n\n";
}


/** The training run's step-time breakdown and power sections. */
std::string training_sections(const store::RunRecord& r) {
  std::string out;
  std::vector<std::vector<std::string>> rows;
  out += "## Step time by phase kind\n\n";
  const auto kinds = breakdown_by_contribution(r);
  if (kinds.empty()) {
    out += "This run stored no step-time breakdown.\n\n";
  } else {
    double sum_cp = 0.0;
    for (const auto& k : kinds) sum_cp += k.critical_path_s;
    const double step = metric_or_nan(r, "step_time_s");
    const double denominator = std::isfinite(step) && step > 0 ? step : sum_cp;
    rows.clear();
    for (const auto& k : kinds)
      rows.push_back({k.phase_kind, format_value(k.critical_path_s), format_value(denominator > 0 ? 100.0 * k.critical_path_s / denominator : kNaN, 3),
                      format_value(k.time_s)});
    out += table({"Phase kind", "Critical path (s)", "Share of the step (%)", "Busy time (s)"}, {false, true, true, true}, rows);
    out += fmt::format("The critical-path contributions sum to {} s; the stored mean step time is {} s. Busy time counts every phase of a "
                       "kind, including phases that overlap others.\n\n",
                       format_value(sum_cp, 5), format_value(step, 5));
  }

  out += "## Power over one simulated step\n\n";
  const store::Series* s = power_series(r);
  if (s == nullptr || s->x.empty()) {
    out += "This run stored no power series.\n\n";
  } else {
    double lo = INFINITY, hi = -INFINITY, t_end = 0.0;
    for (std::size_t i = 0; i < s->y.size(); ++i) {
      if (!std::isfinite(s->y[i])) continue;
      lo = std::min(lo, s->y[i]);
      hi = std::max(hi, s->y[i]);
      if (std::isfinite(s->x[i])) t_end = std::max(t_end, s->x[i]);
    }
    const DisplayUnit pu = power_unit(hi);
    rows = {{"samples", std::to_string(s->x.size()), ""},
            {"last sample at", format_value(t_end, 5), s->x_unit.empty() ? "s" : s->x_unit},
            {"lowest total chip power", format_value(lo / pu.divisor), pu.unit},
            {"highest total chip power", format_value(hi / pu.divisor), pu.unit}};
    out += table({"Statistic", "Value", "Unit"}, {false, true, false}, rows);
    out += "Samples of the instantaneous total power of all chips, taken at simulation events during one simulated step (the HTML "
           "report plots them).\n\n";
    if (const std::string pinned = pinned_power_note(r); !pinned.empty()) out += pinned + "\n\n";
  }
  return out;
}

/** The serving run's latency table. */
std::string serving_latency(const store::RunRecord& r) {
  std::string out = "## Latency\n\n";
  {
    std::vector<std::string> head = {"Latency"};
    for (const auto& st : latency_stats()) head.push_back(st.header + " (ms)");
    std::vector<bool> numeric(head.size(), true);
    numeric[0] = false;
    std::vector<std::vector<std::string>> cells;
    for (const auto& row : latency_rows(r)) {
      std::vector<std::string> line = {row.label};
      for (double v : row.ms) line.push_back(format_value(v));
      cells.push_back(line);
    }
    out += table(head, numeric, cells);
    out += "Latencies of the requests arriving in the measurement window, each simulated to its end (the HTML report plots the "
           "TTFT, TPOT and E2E distributions).\n\n";
  }
  return out;
}

/** The statistics of a serving run's series over time. */
std::string serving_over_time(const store::RunRecord& r) {
  std::string out = "## Power, batch and KV cache over time\n\n";
  struct Shown {
    const char* series;
    const char* label;
    double (*convert)(double);  ///< stored -> shown (power: by its magnitude, below)
    const char* unit;
  };
  const Shown shown[] = {{"power_w", "total chip power", as_is, ""},
                         {"batch_sequences", "batch size", as_is, "sequences"},
                         {"queue_requests", "queue length", as_is, "requests"},
                         {"kv_use", "KV-cache use", to_percent, "%"}};
  std::vector<std::vector<std::string>> cells;
  std::size_t samples = 0;
  for (const auto& sh : shown) {
    const store::Series* s = find_series(r, sh.series);
    if (s == nullptr || s->y.empty()) continue;
    double lo = INFINITY, hi = -INFINITY, sum = 0.0;
    std::size_t n = 0;
    for (double y : s->y) {
      if (!std::isfinite(y)) continue;
      lo = std::min(lo, y);
      hi = std::max(hi, y);
      sum += y;
      ++n;
    }
    samples = std::max(samples, s->y.size());
    const double mean = n > 0 ? sum / static_cast<double>(n) : kNaN;
    if (std::string(sh.series) == "power_w") {
      const DisplayUnit u = power_unit(hi);
      cells.push_back({fmt::format("{} ({})", sh.label, sh.series), format_value(mean / u.divisor), format_value(lo / u.divisor),
                       format_value(hi / u.divisor), u.unit});
    } else {
      cells.push_back({fmt::format("{} ({})", sh.label, sh.series), format_value(sh.convert(mean)), format_value(sh.convert(lo)),
                       format_value(sh.convert(hi)), sh.unit});
    }
  }
  if (cells.empty()) return out + "This run stored no series over time.\n\n";
  out += table({"Series", "Mean of the samples", "Lowest", "Highest", "Unit"}, {false, true, true, true, false}, cells);
  // The power series' points are every series' (they share x); another's count is the same.
  std::string span = detail::series_span_text(r);
  if (span.empty()) span = fmt::format("{} sample{}", samples, samples == 1 ? "" : "s");
  out += fmt::format("{}, each the average over the sampling interval that starts at it{}; the HTML report plots them with the "
                     "measurement window marked.\n\n",
                     span, detail::interval_text(r));
  if (const std::string pinned = pinned_power_note(r); !pinned.empty()) out += pinned + "\n\n";
  return out;
}

}  // namespace

std::string markdown_run(const store::RunRecord& r, const std::string& db_path) {
  const bool serving = is_serving(r);
  std::string out = fmt::format("# moesim {} report \xE2\x80\x94 run {}: {}\n\n", serving ? "serving energy" : "energy", r.id, markdown_escape(r.scenario_name));
  out += meta(r);
  const bool complete = r.status == store::RunStatus::complete;
  const char* what = serving ? "This serving run" : "This run";
  if (r.status == store::RunStatus::failed)
    out += fmt::format("> **{} failed:** {}. It has no results; only its scenario is shown.\n\n", what, markdown_escape(r.error_message));
  if (r.status == store::RunStatus::running)
    out += fmt::format("> **{} is still running (or was interrupted):** it has no results; only its scenario is shown.\n\n", what);
  if (complete) {
    out += "## Summary\n\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : serving ? serving_summary_rows(r) : summary_rows(r))
      rows.push_back({s.label, s.text.empty() ? format_value(s.value, s.significant) : s.text, s.unit});
    out += table({"Quantity", "Value", "Unit"}, {false, true, false}, rows);
    if (serving) {
      const std::string window = prov_string(r.provenance, "window");
      if (!window.empty()) out += "Measurement window: " + markdown_escape(window) + ".\n\n";
      out += serving_latency(r);
    }

    out += "## Energy and CO2e per datacenter\n\n";
    out += r.datacenters.empty() ? "This run stored no datacenter results.\n\n" : datacenter_tables(r);

    out += serving ? serving_over_time(r) : training_sections(r);
  }
  out += "## Scenario\n\n";
  out += fmt::format("Resolved scenario \xE2\x80\x9C{}\xE2\x80\x9D (every field, defaults filled in), as stored with the run:\n\n", markdown_escape(r.scenario_name));
  out += code_block(r.scenario.dump(2), "json");
  out += "## Provenance\n\n" + provenance(r);
  out += "## Data sources and licences\n\n" + licences({r});
  if (complete) {
    out += "## All stored metrics\n\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : r.metrics) rows.push_back({m.name, format_exact(m.value), m.unit});
    out += table({"Metric", "Value", "Unit"}, {false, true, false}, rows);
  }
  out += fmt::format("---\nGenerated by moesim {} from the run store {}. Every number is read from the store.\n", markdown_escape(r.moesim_version),
                     markdown_escape(db_path));
  return out;
}

namespace {

/** The training comparison's step-time breakdown per alternative. */
std::string training_breakdown(const std::vector<ComparisonRow>& rows, const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  std::string out;
  out += "## Step time by phase kind\n\nContribution of each phase kind to the step's critical path (s).\n\n";
  {
    std::vector<const store::RunRecord*> done;
    std::vector<const ComparisonRow*> ranked;
    for (const auto& row : rows)
      if (row.rank > 0) {
        ranked.push_back(&row);
        done.push_back(by_id.at(row.run_id));
      }
    if (done.empty()) {
      out += "No alternative completed.\n\n";
    } else {
      bool other = false;
      const auto kinds = top_phase_kinds(done, kMaxKindColumns, &other);
      std::vector<std::string> head = {"Alternative", "Step time (s)"};
      for (const auto& k : kinds) head.push_back(k + " (s)");
      if (other) head.push_back("other (s)");
      std::vector<std::vector<std::string>> cells;
      for (std::size_t j = 0; j < done.size(); ++j) {
        const store::RunRecord& r = *done[j];
        std::vector<double> v(kinds.size(), 0.0);
        double rest = 0.0;
        for (const auto& b : r.breakdown) {
          auto it = std::find(kinds.begin(), kinds.end(), b.phase_kind);
          if (it != kinds.end()) {
            v[static_cast<std::size_t>(it - kinds.begin())] += b.critical_path_s;
          } else {
            rest += b.critical_path_s;
          }
        }
        std::vector<std::string> line = {fmt::format("#{} {}", ranked[j]->rank, ranked[j]->label), format_value(metric_or_nan(r, "step_time_s"), 5)};
        for (double x : v) line.push_back(format_value(x));
        if (other) line.push_back(format_value(rest));
        cells.push_back(line);
      }
      std::vector<bool> numeric(head.size(), true);
      numeric[0] = false;
      out += table(head, numeric, cells);
    }
  }
  return out;
}

/** The serving comparison's per-output-token figures of every datacenter and its latency table per alternative. */
std::string serving_comparison_sections(const std::vector<ComparisonRow>& rows, const std::map<std::int64_t, const store::RunRecord*>& by_id) {
  std::string out = "### Per output token\n\n";
  {
    std::vector<std::string> head = {"Alternative", "Run", "Datacenter"};
    std::vector<bool> numeric = {false, true, false};
    for (const auto& c : serving_site_columns()) {
      head.push_back(with_unit(c.header, c.unit));
      numeric.push_back(true);
    }
    std::vector<std::vector<std::string>> cells;
    for (const auto& row : rows) {
      const store::RunRecord& r = *by_id.at(row.run_id);
      const ServingSiteTable t = serving_site_table(r);
      for (std::size_t d = 0; d < r.datacenters.size(); ++d) {
        std::vector<std::string> line = {run_label(r), std::to_string(r.id), dc_label(r.datacenters[d])};
        for (std::size_t c = 0; c < t.columns.size(); ++c) line.push_back(format_value(t.values[c][d], t.columns[c].significant));
        cells.push_back(line);
      }
    }
    out += table(head, numeric, cells);
  }
  out += "## Latency per alternative\n\nLatencies of the requests arriving in each alternative's measurement window, in ms.\n\n";
  const std::pair<const char*, const char*> dists[] = {{"ttft", "TTFT"}, {"tpot", "TPOT"}, {"itl", "ITL"}, {"e2e", "E2E"}};
  const std::pair<const char*, const char*> stats[] = {{"p50", "P50"}, {"p99", "P99"}};
  std::vector<std::string> head = {"Alternative", "Run"};
  for (const auto& d : dists)
    for (const auto& st : stats) head.push_back(fmt::format("{} {} (ms)", st.second, d.second));
  std::vector<bool> numeric(head.size(), true);
  numeric[0] = false;
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows) {
    const store::RunRecord& r = *by_id.at(row.run_id);
    if (r.status != store::RunStatus::complete) continue;
    const std::vector<LatencyRow> lat = latency_rows(r);
    std::vector<std::string> line = {run_label(r), std::to_string(r.id)};
    for (const auto& d : dists) {
      const auto it = std::find_if(lat.begin(), lat.end(), [&](const LatencyRow& l) { return l.key == d.first; });
      for (const auto& st : stats) line.push_back(format_value(it->at(st.first)));
    }
    cells.push_back(line);
  }
  out += cells.empty() ? "No alternative completed.\n\n" : table(head, numeric, cells);
  return out;
}

}  // namespace

std::string markdown_comparison(const store::Comparison& cmp, const std::vector<store::RunRecord>& runs, const std::vector<ComparisonRow>& rows,
                                const std::string& db_path) {
  const bool serving = !rows.empty() && rows.front().kind == "serving";
  std::string out = fmt::format("# moesim {} comparison {}: {}\n\n", serving ? "serving" : "placement", cmp.id, markdown_escape(cmp.scenario_name));
  out += fmt::format("Created {}. {} alternatives.\n\n", cmp.created_at_utc, runs.size());
  std::map<std::int64_t, const store::RunRecord*> by_id;
  for (const auto& r : runs) by_id[r.id] = &r;
  for (const auto& r : runs) {
    if (r.status == store::RunStatus::failed)
      out += fmt::format("> **Alternative \xE2\x80\x9C{}\xE2\x80\x9D (run {}) failed:** {}. It is listed but not ranked.\n\n", markdown_escape(run_label(r)), r.id,
                         markdown_escape(r.error_message));
    if (r.status == store::RunStatus::running)
      out += fmt::format("> **Alternative \xE2\x80\x9C{}\xE2\x80\x9D (run {}) is still running or was interrupted.** It is listed but not ranked.\n\n",
                         markdown_escape(run_label(r)), r.id);
  }
  out += serving ? "## Ranking\n\nRanked by gross (location-based) CO2e per 1000 output tokens, ties by P99 TTFT. An alternative is on the "
                   "Pareto front when no other is at least as good in both P99 TTFT and gross CO2e per 1000 tokens and strictly better in "
                   "one. Runs that did not complete are listed last, unranked.\n\n"
                 : "## Ranking\n\nRanked by gross (location-based) CO2e, ties by training time. An alternative is on the Pareto front when no other is "
                   "at least as good in both training time and gross CO2e and strictly better in one. Runs that did not complete are listed last, "
                   "unranked.\n\n";
  out += comparison_table_markdown(rows) + "\n";
  if (const std::string note = grid_basis_note(runs); !note.empty()) out += "> **Note:** " + markdown_escape(note) + "\n\n";

  out += "## Datacenters of each alternative\n\n";
  {
    std::vector<DatacenterColumn> cols = site_columns();
    bool emb = false;
    for (const auto& r : runs) emb = emb || has_embodied(r);
    for (auto& c : energy_columns(emb, serving)) cols.push_back(c);
    std::vector<std::string> head = {"Alternative", "Run", "Datacenter", "Country"};
    std::vector<bool> numeric = {false, true, false, false};
    for (const auto& c : cols) {
      head.push_back(with_unit(c.header, c.unit));
      numeric.push_back(true);
    }
    std::vector<std::vector<std::string>> cells;
    for (const auto& row : rows) {
      const store::RunRecord& r = *by_id.at(row.run_id);
      for (const auto& d : r.datacenters) {
        std::vector<std::string> line = {run_label(r), std::to_string(r.id), dc_label(d), d.country_iso_code};
        for (const auto& c : cols) line.push_back(format_value(c.value(d), c.significant));
        cells.push_back(line);
      }
    }
    out += table(head, numeric, cells);
  }

  out += serving ? serving_comparison_sections(rows, by_id) : training_breakdown(rows, by_id);

  out += "## Scenario and alternatives\n\n";
  out += fmt::format("Resolved scenario of the first alternative, \xE2\x80\x9C{}\xE2\x80\x9D (run {}):\n\n", markdown_escape(run_label(runs.front())),
                     runs.front().id);
  out += code_block(runs.front().scenario.dump(2), "json");
  if (runs.size() > 1) {
    const auto diffs = scenario_differences(runs);
    out += "### How the other alternatives differ from it\n\n";
    if (diffs.empty()) {
      out += "They do not: every alternative has the same resolved scenario.\n\n";
    } else {
      std::vector<std::vector<std::string>> cells;
      for (const auto& d : diffs) cells.push_back({d.label, d.path, d.base, d.value});
      out += table({"Alternative", "Field", "First alternative", "This alternative"}, {}, cells);
    }
  }

  out += "## Provenance\n\n";
  {
    std::vector<std::vector<std::string>> cells;
    for (const auto& r : runs)
      cells.push_back({std::to_string(r.id), run_label(r), r.moesim_version, r.git_hash, prov_string(r.provenance, "compute_model"),
                       compute_path_summary(r.provenance), prov_string(r.provenance, "power_convention")});
    out += table({"Run", "Alternative", "moesim", "git", "Compute-time model", "Kernel classes by compute path", "Power convention"},
                 {true, false, false, false, false, false, false}, cells);
    out += "The report of each run (`moesim report RUN_ID`) lists its full provenance.\n\n";
  }
  out += "## Data sources and licences\n\n" + licences(runs);
  out += fmt::format("---\nGenerated by moesim {} from the run store {}. Every number is read from the store.\n",
                     markdown_escape(runs.front().moesim_version), markdown_escape(db_path));
  return out;
}

std::string markdown_licences(const std::vector<store::RunRecord>& runs) { return licences(runs); }

}  // namespace moesim::reports::detail
