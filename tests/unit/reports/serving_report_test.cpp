// SPDX-License-Identifier: Apache-2.0
// Reports of serving runs, from hand-built serving RunRecords (report_test_support.hpp): the HTML is
// well-formed and every number equals the store's; every number drawn twice (chart and table) is the
// same computed value; Markdown and CSV carry the serving fields; failed serving runs show their
// error; serving comparisons rank by gross CO2e per 1000 output tokens with the (P99 TTFT, CO2e per
// 1000 tokens) Pareto front; a comparison mixing training and serving runs is refused.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/reports/markup.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/store/store.hpp"
#include "report_checks.hpp"
#include "report_test_support.hpp"
#include "xml_check.hpp"

using Catch::Matchers::Contains;
using moesim::store::DatacenterResult;
using moesim::store::RunRecord;
using moesim::store::Store;
namespace r = moesim::reports;
namespace t = moesim::reports::test;
using t::check_display;
using t::expected_dc;
using t::num;
using t::parse_csv;
using t::csv_same;
using t::same;
using t::shown_in_si;

namespace {

const std::string kScenario = "serving <test> & \"co\", ltd";

/** A store with one two-datacenter serving run. */
struct OneServingRun {
  t::TempDir dir;
  std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  OneServingRun() {
    Store db(path);
    t::ServingSpec spec;
    spec.label = "x";
    spec.embodied = true;
    id = t::add_serving_run(db, t::serving_header(kScenario), spec);
  }
};

/** Serving alternatives as (P99 TTFT in s, gCO2e per 1000 tokens): A (0.040, 0.30), B (0.020, 0.30),
 *  C (0.060, 0.10), D and E both (0.030, 0.20), plus a failed and a still-running one. Ranking by
 *  CO2e per 1000 tokens, ties by P99 TTFT then run id: C, D, E, B, A. A is dominated by B (as clean,
 *  slower); D and E are identical, so both are on the front. */
struct ServingAlternatives {
  t::TempDir dir;
  std::string path = dir.file("runs.db");
  std::int64_t comparison = 0;
  std::map<std::string, std::int64_t> ids;
  ServingAlternatives() {
    Store db(path);
    comparison = db.create_comparison(kScenario);
    struct Alt {
      const char* label;
      double ttft_p99_s;
      double g_per_1k;
      int datacenters;
    };
    const Alt alts[] = {{"A", 0.040, 0.30, 1}, {"B", 0.020, 0.30, 2}, {"C", 0.060, 0.10, 1}, {"D", 0.030, 0.20, 2}, {"E", 0.030, 0.20, 2}};
    for (const auto& a : alts) {
      t::ServingSpec s;
      s.label = a.label;
      s.ttft_p99_s = a.ttft_p99_s;
      s.co2e_gross_g_per_1k_tokens = a.g_per_1k;
      s.datacenters = a.datacenters;
      ids[a.label] = t::add_serving_run(db, t::serving_header(kScenario, a.label, comparison), s);
    }
    ids["F"] = db.begin_run(t::serving_header(kScenario, "F", comparison));
    db.fail_run(ids["F"], "KV cache does not fit: 81 GB > 80 GB <per device>");
    ids["R"] = db.begin_run(t::serving_header(kScenario, "R", comparison));
  }
};

double metric(const RunRecord& run, const std::string& name) {
  const auto* m = run.metric(name);
  REQUIRE(m != nullptr);
  return m->value;
}

/** Numeric cells (elements with data-value) below `n`. */
std::vector<const t::XmlNode*> valued(const t::XmlNode& n) {
  return n.find_all([](const t::XmlNode& x) { return x.has("data-value"); });
}

/** The element with data-field `field` below `n` (exactly one). */
const t::XmlNode& field_cell(const t::XmlNode& n, const std::string& field) {
  const auto v = n.find_all([&](const t::XmlNode& x) { return x.attr("data-field") == field; });
  REQUIRE(v.size() == 1);
  return *v.front();
}

std::vector<double> numbers(const std::string& list) {
  std::istringstream in(list);
  std::vector<double> out;
  for (std::string w; in >> w;) out.push_back(num(w));
  return out;
}

/** The `tr` of a table of class `cls` whose attribute `attr` is `value`. */
const t::XmlNode& table_row(const t::XmlNode& root, const std::string& cls, const std::string& attr, const std::string& value) {
  const auto tables = root.by_class(cls);
  REQUIRE(tables.size() == 1);
  const auto rows = tables[0]->find_all([&](const t::XmlNode& n) { return n.name == "tr" && n.attr(attr) == value; });
  REQUIRE(rows.size() == 1);
  return *rows.front();
}

/** Class of the nearest enclosing <table>. */
std::string table_class(const t::XmlNode& n) {
  for (const t::XmlNode* p = n.parent; p != nullptr; p = p->parent)
    if (p->name == "table") return p->attr("class");
  return "";
}

/** The cells of a Markdown table row "| a | b |". */
std::vector<std::string> md_cells(const std::string& line) {
  std::vector<std::string> out;
  const std::string inner = line.substr(2, line.size() - 4);
  std::size_t from = 0;
  for (std::size_t at; (at = inner.find(" | ", from)) != std::string::npos; from = at + 3) out.push_back(inner.substr(from, at - from));
  out.push_back(inner.substr(from));
  return out;
}

/** The run's value of a summary row's metric as the summary should show it, in SI. */
double expected_summary(const RunRecord& run, const std::string& m) {
  if (m == "pue_overhead_j") return metric(run, "facility_energy_j") - metric(run, "it_energy_j") - metric(run, "network_energy_j");
  return metric(run, m);
}

}  // namespace

TEST_CASE("reports::serving html: a serving run report is well-formed and every number equals the store's", "[reports][html][serving]") {
  OneServingRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  REQUIRE(run.kind == "serving");
  const std::string html = r::render_run_report(db, f.id, r::Format::html);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(html));
  CHECK(html.find("<script") == std::string::npos);
  CHECK(root->by_name("header").front()->attr("data-kind") == "serving");
  CHECK(root->by_name("h1").front()->all_text().find(kScenario) != std::string::npos);

  SECTION("serving sections replace the training ones") {
    for (const char* id : {"summary", "latency", "datacenters", "over-time", "scenario", "provenance", "licences", "metrics"}) {
      INFO(id);
      CHECK(root->by_id(id) != nullptr);
    }
    CHECK(root->by_id("breakdown") == nullptr);
    CHECK(root->by_id("power") == nullptr);
    CHECK(root->by_id("step-breakdown-" + std::to_string(f.id)) == nullptr);
  }
  SECTION("summary") {
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-metric") && n.inherited("class") == "summary"; });
    std::set<std::string> seen;
    for (const auto* tr : rows) {
      const std::string m = tr->attr("data-metric");
      seen.insert(m);
      const auto cells = valued(*tr);
      REQUIRE(cells.size() == 1);
      INFO("metric " << m);
      CHECK(same(shown_in_si(*cells[0]), expected_summary(run, m)));
      if (m == "slo_p99_met") {
        CHECK(cells[0]->all_text() == "yes");
      } else {
        check_display(*cells[0]);
      }
    }
    for (const char* m : {"requests_measured", "window_s", "throughput_rps", "input_tokens_per_s", "output_tokens_per_s",
                          "output_tokens_per_s_per_device", "goodput_fraction", "goodput_rps", "slo_ttft_s", "slo_tpot_s", "slo_p99_met",
                          "preemptions", "mean_batch_sequences", "mean_kv_use", "mfu", "energy_per_output_token_j", "energy_per_request_j",
                          "co2e_gross_kg_per_1k_tokens", "co2e_net_kg_per_1k_tokens", "co2e_gross_kg_per_request", "co2e_net_kg_per_request",
                          "embodied_co2e_kg_per_1k_tokens", "it_energy_j", "pue_overhead_j", "facility_energy_j", "co2e_gross_kg"}) {
      INFO(m);
      CHECK(seen.count(m) == 1);
    }
    CHECK(seen.count("train_time_s") == 0);
    CHECK(table_row(*root, "summary", "data-metric", "facility_energy_j").find_all([](const t::XmlNode& n) { return n.has("data-unit"); })
              .front()
              ->attr("data-unit") == "kWh");
  }
  SECTION("latency table, in ms") {
    const auto rows = root->by_class("latency").front()->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-metric"); });
    REQUIRE(rows.size() == 5);
    for (const auto* tr : rows) {
      const auto cells = valued(*tr);
      REQUIRE(cells.size() == 6);
      for (const auto* td : cells) {
        const std::string m = tr->attr("data-metric") + "_" + td->attr("data-field") + "_s";
        INFO(m);
        CHECK(td->attr("data-unit") == "ms");
        CHECK(same(shown_in_si(*td), metric(run, m)));
        check_display(*td);
      }
    }
  }
  SECTION("datacenter tables, in kWh and kg") {
    std::size_t checked = 0;
    const auto trs = root->find_all(
        [](const t::XmlNode& n) { return n.name == "tr" && n.has("data-datacenter") && table_class(n) != "datacenters per-token"; });
    for (const auto* tr : trs) {
      const std::string name = tr->attr("data-datacenter");
      for (const auto* td : valued(*tr)) {
        const std::string field = td->attr("data-field");
        double want = 0.0;
        if (name == "total") {
          for (const auto& d : run.datacenters) want += expected_dc(d, field);
        } else {
          const auto it = std::find_if(run.datacenters.begin(), run.datacenters.end(), [&](const DatacenterResult& d) { return d.name == name; });
          REQUIRE(it != run.datacenters.end());
          want = expected_dc(*it, field);
        }
        INFO(name << " " << field);
        CHECK(same(shown_in_si(*td), want));
        if (field == "it_energy" || field == "co2e_gross") CHECK(td->attr("data-unit") == (field == "it_energy" ? "kWh" : "kg"));
        check_display(*td);
        ++checked;
      }
    }
    CHECK(checked == run.datacenters.size() * (6 + 7) + 7);
  }
  SECTION("per output token, per datacenter and for the run") {
    const auto rows = root->by_class("per-token").front()->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-datacenter"); });
    REQUIRE(rows.size() == run.datacenters.size() + 1);
    for (const auto* tr : rows) {
      const std::string name = tr->attr("data-datacenter");
      const std::string prefix = name == "total" ? "" : "site." + name + ".";
      const std::map<std::string, std::string> metric_of = {{"output_tokens", "output_tokens"},
                                                            {"energy_per_output_token", "energy_per_output_token_j"},
                                                            {"co2e_gross_per_1k_tokens", "co2e_gross_kg_per_1k_tokens"},
                                                            {"co2e_net_per_1k_tokens", "co2e_net_kg_per_1k_tokens"}};
      const auto cells = valued(*tr);
      REQUIRE(cells.size() == metric_of.size());
      for (const auto* td : cells) {
        INFO(name << " " << td->attr("data-field"));
        const double want = metric(run, prefix + metric_of.at(td->attr("data-field")));
        // CO2e per 1000 tokens is stored in kg and shown in g: the unit table converts back.
        CHECK(same(shown_in_si(*td), want));
        check_display(*td);
      }
    }
    // The site figures are what they claim: site energy (CO2e) over site tokens.
    for (const auto& d : run.datacenters) {
      const double tokens = metric(run, "site." + d.name + ".output_tokens");
      CHECK(same(metric(run, "site." + d.name + ".energy_per_output_token_j"), d.facility_energy_j / tokens));
      CHECK(same(metric(run, "site." + d.name + ".co2e_gross_kg_per_1k_tokens"), d.co2e_gross_kg * 1000.0 / tokens));
    }
  }
  SECTION("provenance: serving pools and the window") {
    const auto& pool = table_row(*root, "pools", "data-pool", "0");
    const auto& p = run.provenance["pools"][0];
    const std::map<std::string, double> divisor = {{"weights_bytes", 1e9}, {"workspace_bytes", 1e9}, {"kv_bytes", 1e9}};
    std::size_t n = 0;
    for (const auto* td : valued(pool)) {
      const std::string k = td->attr("data-field");
      INFO(k);
      CHECK(same(num(td->attr("data-value")) * (divisor.count(k) ? divisor.at(k) : 1.0), p[k].get<double>()));
      ++n;
    }
    CHECK(n == 8);
    CHECK_THAT(pool.all_text(), Contains("colocated"));
    CHECK_THAT(root->by_id("provenance")->all_text(), Contains("warm-up's end to the last arrival"));
    CHECK(root->by_id("provenance")->all_text().find("\"pools\"") == std::string::npos);  // shown as a table, not as raw JSON
  }
  SECTION("all stored metrics, exactly") {
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-metric") && n.inherited("class") == "metrics"; });
    REQUIRE(rows.size() == run.metrics.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK(rows[i]->attr("data-metric") == run.metrics[i].name);
      CHECK(num(valued(*rows[i]).front()->attr("data-value")) == run.metrics[i].value);
    }
  }
  SECTION("charts: titles, labelled axes with units, legends") {
    for (const std::string id : {"cdf-ttft-", "cdf-tpot-", "cdf-e2e-", "power-", "batch-queue-", "kv-use-", "energy-per-token-", "co2e-per-1k-tokens-",
                                 "energy-per-datacenter-", "co2e-per-datacenter-"}) {
      const auto* chart = root->by_id(id + std::to_string(f.id));
      INFO(id);
      REQUIRE(chart != nullptr);
      CHECK(chart->by_class("legend").size() == 1);
      CHECK_FALSE(chart->by_class("chart-title").front()->all_text().empty());
      for (const auto* label : chart->by_class("axis-label")) CHECK_THAT(label->all_text(), Contains("("));
    }
    const auto* ttft = root->by_id("cdf-ttft-" + std::to_string(f.id));
    const auto labels = ttft->by_class("axis-label");
    REQUIRE(labels.size() == 2);
    CHECK_THAT(labels[0]->all_text(), Contains("(ms)"));
    CHECK_THAT(labels[1]->all_text(), Contains("(%)"));
    const auto ticks = ttft->find_all([](const t::XmlNode& n) { return n.attr("class") == "tick" && n.parent->attr("class") == "axis y-axis"; });
    REQUIRE_FALSE(ticks.empty());
    CHECK(ticks.front()->all_text() == "0");
    CHECK(ticks.back()->all_text() == "100");
  }
}

TEST_CASE("reports::serving html: one quantity, one truth: a number drawn in a chart and shown in a table is the same value",
          "[reports][html][serving]") {
  OneServingRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_run_report(db, f.id, r::Format::html)));
  const std::string id = std::to_string(f.id);

  SECTION("J per output token and gCO2e per 1000 tokens: bars equal the per-token table cells") {
    std::size_t bars = 0;
    for (const char* chart_id : {"energy-per-token-", "co2e-per-1k-tokens-"}) {
      const auto* chart = root->by_id(chart_id + id);
      REQUIRE(chart != nullptr);
      for (const auto* b : chart->by_class("bar")) {
        const auto& row = table_row(*root, "per-token", "data-datacenter", b->attr("data-category"));
        const auto& cell = field_cell(row, b->attr("data-series"));
        INFO(chart_id << b->attr("data-category") << " " << b->attr("data-series"));
        CHECK(b->attr("data-value") == cell.attr("data-value"));  // the same double, not merely close
        CHECK(b->attr("data-unit") == cell.attr("data-unit"));
        ++bars;
      }
    }
    CHECK(bars == 3 * run.datacenters.size());
  }
  SECTION("run-level per-token figures: the summary equals the per-token table's total row") {
    const auto& total = table_row(*root, "per-token", "data-datacenter", "total");
    const std::pair<const char*, const char*> pairs[] = {{"energy_per_output_token_j", "energy_per_output_token"},
                                                         {"co2e_gross_kg_per_1k_tokens", "co2e_gross_per_1k_tokens"},
                                                         {"co2e_net_kg_per_1k_tokens", "co2e_net_per_1k_tokens"}};
    for (const auto& [m, field] : pairs) {
      const auto& summary = *valued(table_row(*root, "summary", "data-metric", m)).front();
      const auto& cell = field_cell(total, field);
      INFO(m);
      CHECK(summary.attr("data-value") == cell.attr("data-value"));
      CHECK(summary.attr("data-unit") == cell.attr("data-unit"));
    }
  }
  SECTION("latency distributions: the P50, P90 and P99 markers are the latency table's cells; the curve passes through them") {
    for (const char* d : {"ttft", "tpot", "e2e"}) {
      const auto* chart = root->by_id(fmt::format("cdf-{}-{}", d, id));
      REQUIRE(chart != nullptr);
      const auto& row = table_row(*root, "latency", "data-metric", d);
      const auto markers = chart->by_class("marker");
      REQUIRE(markers.size() == 3);
      const auto lines = chart->by_class("series-line");
      REQUIRE(lines.size() == 1);
      const std::vector<double> xs = numbers(lines[0]->attr("data-x")), ys = numbers(lines[0]->attr("data-y"));
      REQUIRE(xs.size() == 101);
      for (const auto* m : markers) {
        const std::string stat = m->attr("data-key").substr(std::string(d).size() + 1);
        const auto& cell = field_cell(row, stat);
        INFO(d << " " << stat);
        CHECK(m->attr("data-x") == cell.attr("data-value"));
        CHECK(m->attr("data-x-unit") == cell.attr("data-unit"));
        const double pct = num(stat.substr(1));
        CHECK(num(m->attr("data-y")) == pct);
        const std::size_t k = static_cast<std::size_t>(pct);
        CHECK(same(ys[k], pct));
        CHECK(same(xs[k], num(m->attr("data-x"))));  // the stored CDF and the stored percentile agree
      }
      // The curve itself is the stored series, in ms and %.
      const auto* s = &*std::find_if(run.series.begin(), run.series.end(), [&](const auto& x) { return x.name == std::string(d) + "_cdf"; });
      for (std::size_t k = 0; k < xs.size(); ++k) {
        CHECK(same(xs[k] / 1000.0, s->x[k]));
        CHECK(same(ys[k] / 100.0, s->y[k]));
      }
    }
  }
  SECTION("power over time, integrated over the measurement window, is the IT energy of the summary") {
    const auto* chart = root->by_id("power-" + id);
    REQUIRE(chart != nullptr);
    const auto lines = chart->by_class("series-line");
    REQUIRE(lines.size() == 1);
    const double to_w = t::unit_divisor(lines[0]->attr("data-y-unit"));
    const std::vector<double> xs = numbers(lines[0]->attr("data-x")), ys = numbers(lines[0]->attr("data-y"));
    const auto bands = chart->by_class("x-band");
    REQUIRE(bands.size() == 1);
    const double w0 = num(bands[0]->attr("data-x0")), w1 = num(bands[0]->attr("data-x1"));
    CHECK(w0 == metric(run, "window_start_s"));
    CHECK(w1 == metric(run, "window_start_s") + metric(run, "window_s"));
    REQUIRE(xs.size() >= 2);
    double joules = 0.0;
    for (std::size_t k = 0; k < xs.size(); ++k) {  // each value holds over [x_k, x_k+1); the last as long as the one before
      const double end = k + 1 < xs.size() ? xs[k + 1] : 2 * xs[k] - xs[k - 1];
      const double a = std::max(xs[k], w0), b = std::min(end, w1);
      if (b > a) joules += ys[k] * to_w * (b - a);
    }
    const auto& it = *valued(table_row(*root, "summary", "data-metric", "it_energy_j")).front();
    CHECK(same(joules, shown_in_si(it), 1e-12));
  }
  SECTION("batch, queue and KV use over time are the stored series") {
    const auto* bq = root->by_id("batch-queue-" + id);
    REQUIRE(bq != nullptr);
    const auto lines = bq->by_class("series-line");
    REQUIRE(lines.size() == 2);
    for (const auto* l : lines) {
      const auto& s = *std::find_if(run.series.begin(), run.series.end(), [&](const auto& x) { return x.name == l->attr("data-series"); });
      CHECK(numbers(l->attr("data-y")) == s.y);
    }
    const auto* kv = root->by_id("kv-use-" + id);
    REQUIRE(kv != nullptr);
    const auto kv_line = kv->by_class("series-line");
    REQUIRE(kv_line.size() == 1);
    CHECK(kv_line[0]->attr("data-y-unit") == "%");
    const auto kv_y = numbers(kv_line[0]->attr("data-y"));
    const auto& s = *std::find_if(run.series.begin(), run.series.end(), [](const auto& x) { return x.name == "kv_use"; });
    REQUIRE(kv_y.size() == s.y.size());
    for (std::size_t k = 0; k < s.y.size(); ++k) CHECK(same(kv_y[k] / 100.0, s.y[k]));
  }
}

TEST_CASE("reports::serving markdown: the serving tables with the stored values", "[reports][markdown][serving]") {
  OneServingRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  const std::string md = r::render_run_report(db, f.id, r::Format::markdown);
  for (const char* h : {"# moesim serving energy report", "## Summary", "## Latency", "## Energy and CO2e per datacenter", "### Per output token",
                        "## Power, batch and KV cache over time", "## Scenario", "## Provenance", "### Serving pools", "## All stored metrics"})
    CHECK_THAT(md, Contains(h));
  CHECK(md.find("## Step time by phase kind") == std::string::npos);
  CHECK(md.find("## Power over one simulated step") == std::string::npos);
  // The value cell of the row starting with `start` (cells after the first, 0-based `k`).
  auto cell = [&](const std::string& start, std::size_t k = 0) {
    const std::size_t at = md.find("| " + start + " | ");
    REQUIRE(at != std::string::npos);
    std::size_t b = at + start.size() + 5;
    for (std::size_t i = 0; i < k; ++i) b = md.find(" | ", b) + 3;
    return md.substr(b, md.find(" |", b) - b);
  };
  CHECK(cell("Requests measured (arriving in the window)") == "505");
  CHECK(same(num(cell("Requests served (finishing in the window)")), metric(run, "requests_completed"), 1e-9));
  CHECK(same(num(cell("Throughput (requests served per second)")), metric(run, "throughput_rps"), 1e-3));
  // Requests served per second of the window: the same quantity twice.
  CHECK(same(metric(run, "throughput_rps"), metric(run, "requests_completed") / metric(run, "window_s"), 1e-12));
  CHECK(same(num(cell("Output tokens per second per device")), metric(run, "output_tokens_per_s_per_device"), 1e-3));
  CHECK(same(num(cell("Goodput (requests within both SLOs)")), 100.0 * metric(run, "goodput_fraction"), 1e-3));
  CHECK(num(cell("TTFT limit (SLO)")) == 2000.0);
  CHECK(cell("P99 TTFT and P99 TPOT within the limits") == "yes");
  CHECK(same(num(cell("Energy per output token (facility)")), metric(run, "energy_per_output_token_j"), 1e-3));
  CHECK(same(num(cell("Energy per request (facility)")), metric(run, "energy_per_request_j"), 1e-3));
  CHECK(same(num(cell("CO2e gross per 1000 output tokens (location-based)")), 1000.0 * metric(run, "co2e_gross_kg_per_1k_tokens"), 1e-3));
  CHECK(same(num(cell("CO2e net per request")), 1000.0 * metric(run, "co2e_net_kg_per_request"), 1e-3));
  CHECK(same(num(cell("Facility energy ((IT + network) × PUE, WAN without PUE)")), metric(run, "facility_energy_j") / 3.6e6, 1e-3));
  // Latency row: mean, P50, P90, P95, P99, max in ms.
  const char* stats[] = {"mean", "p50", "p90", "p95", "p99", "max"};
  for (std::size_t k = 0; k < 6; ++k) CHECK(same(num(cell("Time to first token (TTFT)", k)), 1000.0 * metric(run, std::string("ttft_") + stats[k] + "_s"), 1e-3));
  // Per output token, per datacenter: output tokens, J/token, g per 1000 tokens gross and net.
  for (const auto& d : run.datacenters) {
    const std::string label = r::markdown_escape(d.display_name + " (" + d.name + ")");
    const std::size_t table = md.find("### Per output token");
    const std::size_t at = md.find("| " + label + " | ", table);
    REQUIRE(at != std::string::npos);
    const std::vector<std::string> cells = md_cells(md.substr(at, md.find('\n', at) - at));
    REQUIRE(cells.size() == 5);
    CHECK(same(num(cells[1]), metric(run, "site." + d.name + ".output_tokens"), 1e-6));
    CHECK(same(num(cells[2]), metric(run, "site." + d.name + ".energy_per_output_token_j"), 1e-3));
    CHECK(same(num(cells[3]), 1000.0 * metric(run, "site." + d.name + ".co2e_gross_kg_per_1k_tokens"), 1e-3));
    CHECK(same(num(cells[4]), 1000.0 * metric(run, "site." + d.name + ".co2e_net_kg_per_1k_tokens"), 1e-3));
  }
  CHECK_THAT(md, Contains("| 0 | colocated | 4 | 2 | 3.436 | 0.5784 | 73.29 | 8192 | 559193 | 16 |"));
}

TEST_CASE("reports::serving csv: serving columns from the run, training columns empty on serving rows and vice versa", "[reports][csv][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t sid = 0, tid = 0;
  {
    Store db(path);
    t::ServingSpec spec;
    spec.label = "x";
    sid = t::add_serving_run(db, t::serving_header(kScenario), spec);
    t::RunSpec tspec;
    tspec.label = "y";
    tid = t::add_run(db, t::header(kScenario), tspec);
  }
  const Store db(path, Store::Mode::read_only);
  const RunRecord run = db.get_run(sid);
  const auto rows = parse_csv(r::render_run_report(db, sid, r::Format::csv));
  REQUIRE(rows.size() == 1 + run.datacenters.size());
  const auto& head = rows[0];
  auto col = [&](const std::string& name) {
    const auto it = std::find(head.begin(), head.end(), name);
    REQUIRE(it != head.end());
    return static_cast<std::size_t>(it - head.begin());
  };
  const std::vector<std::string> training_only = {"train_days", "train_time_s", "step_time_s", "step_time_spread_s", "steps", "hfu",
                                                  "tokens_dropped_fraction", "wan_bytes_per_step", "wan_time_per_step_s"};
  // Serving column -> (metric, factor to the CSV unit).
  const std::vector<std::tuple<std::string, std::string, double>> serving_cols = {
      {"requests_measured", "requests_measured", 1.0}, {"requests_completed", "requests_completed", 1.0}, {"window_s", "window_s", 1.0}, {"throughput_rps", "throughput_rps", 1.0},
      {"input_tokens_per_s", "input_tokens_per_s", 1.0}, {"output_tokens_per_s", "output_tokens_per_s", 1.0},
      {"output_tokens_per_s_per_device", "output_tokens_per_s_per_device", 1.0}, {"goodput_fraction", "goodput_fraction", 1.0},
      {"goodput_rps", "goodput_rps", 1.0}, {"slo_ttft_s", "slo_ttft_s", 1.0}, {"slo_tpot_s", "slo_tpot_s", 1.0},
      {"ttft_p50_s", "ttft_p50_s", 1.0}, {"ttft_p99_s", "ttft_p99_s", 1.0}, {"tpot_p50_s", "tpot_p50_s", 1.0}, {"tpot_p99_s", "tpot_p99_s", 1.0},
      {"itl_p99_s", "itl_p99_s", 1.0}, {"e2e_p50_s", "e2e_p50_s", 1.0}, {"e2e_p99_s", "e2e_p99_s", 1.0}, {"queue_p99_s", "queue_p99_s", 1.0},
      {"preemptions", "preemptions", 1.0}, {"mean_batch_sequences", "mean_batch_sequences", 1.0}, {"mean_kv_use", "mean_kv_use", 1.0},
      {"output_tokens", "output_tokens", 1.0}, {"energy_per_output_token_j", "energy_per_output_token_j", 1.0},
      {"it_energy_per_output_token_j", "it_energy_per_output_token_j", 1.0}, {"energy_per_request_j", "energy_per_request_j", 1.0},
      {"gco2e_gross_per_1000_tokens", "co2e_gross_kg_per_1k_tokens", 1000.0}, {"gco2e_net_per_1000_tokens", "co2e_net_kg_per_1k_tokens", 1000.0},
      {"gco2e_gross_per_request", "co2e_gross_kg_per_request", 1000.0}, {"gco2e_net_per_request", "co2e_net_kg_per_request", 1000.0}};
  for (std::size_t i = 0; i < run.datacenters.size(); ++i) {
    const auto& row = rows[i + 1];
    const DatacenterResult& d = run.datacenters[i];
    REQUIRE(row.size() == head.size());
    INFO("datacenter " << d.name);
    CHECK(row[col("kind")] == "serving");
    CHECK(csv_same(num(row[col("duration")]), metric(run, "window_s")));
    CHECK(csv_same(num(row[col("emissions")]), d.co2e_gross_kg));
    CHECK(csv_same(num(row[col("energy_consumed")]), d.facility_energy_j / 3.6e6));
    CHECK(csv_same(num(row[col("mfu")]), metric(run, "mfu")));
    CHECK(csv_same(num(row[col("average_chip_power_w")]), metric(run, "average_chip_power_w")));
    CHECK(row[col("slo_p99_met")] == "true");
    for (const auto& [c, m, factor] : serving_cols) {
      INFO(c);
      CHECK(csv_same(num(row[col(c)]), metric(run, m) * factor));
    }
    CHECK(csv_same(num(row[col("site_output_tokens")]), metric(run, "site." + d.name + ".output_tokens")));
    CHECK(csv_same(num(row[col("site_energy_per_output_token_j")]), metric(run, "site." + d.name + ".energy_per_output_token_j")));
    CHECK(csv_same(num(row[col("site_gco2e_gross_per_1000_tokens")]), 1000.0 * metric(run, "site." + d.name + ".co2e_gross_kg_per_1k_tokens")));
    CHECK(csv_same(num(row[col("site_gco2e_net_per_1000_tokens")]), 1000.0 * metric(run, "site." + d.name + ".co2e_net_kg_per_1k_tokens")));
    for (const auto& c : training_only) {
      INFO(c);
      CHECK(row[col(c)].empty());
    }
  }
  SECTION("a training run's rows leave every serving column empty") {
    const auto trows = parse_csv(r::render_run_report(db, tid, r::Format::csv));
    REQUIRE(trows.size() == 3);
    CHECK(trows[0] == head);
    const std::size_t first_serving = col("kind") + 1;
    for (std::size_t i = 1; i < trows.size(); ++i) {
      CHECK(trows[i][col("kind")] == "training");
      CHECK_FALSE(trows[i][col("train_days")].empty());
      for (std::size_t c = first_serving; c < head.size(); ++c) {
        INFO(head[c]);
        CHECK(trows[i][c].empty());
      }
    }
  }
  SECTION("reports/README.md documents every column") {
    const std::string readme = t::read_text_file(std::string(MOESIM_SOURCE_ROOT) + "/reports/README.md");
    for (const auto& c : head) CHECK_THAT(readme, Contains("| `" + c + "` |"));
  }
}

TEST_CASE("reports::serving: a failed serving run shows its status and error in every format", "[reports][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store db(path);
    id = db.begin_run(t::serving_header(kScenario));
    db.fail_run(id, "KV cache does not fit: 81 GB > 80 GB <per device> & more");
  }
  const Store db(path, Store::Mode::read_only);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_run_report(db, id, r::Format::html)));
  const auto* header = root->by_name("header").front();
  CHECK(header->attr("data-status") == "failed");
  CHECK(header->attr("data-kind") == "serving");
  CHECK_THAT(header->all_text(), Contains("Status: failed"));
  const auto notices = root->by_class("notice");
  REQUIRE(notices.size() == 1);
  CHECK_THAT(notices[0]->all_text(), Contains("This serving run failed: KV cache does not fit: 81 GB > 80 GB <per device> & more"));
  for (const char* absent : {"summary", "latency", "datacenters", "over-time", "metrics"}) CHECK(root->by_id(absent) == nullptr);
  CHECK(root->by_id("scenario") != nullptr);
  CHECK(root->by_id("provenance") != nullptr);

  const std::string md = r::render_run_report(db, id, r::Format::markdown);
  CHECK_THAT(md, Contains("Status: **failed**"));
  CHECK_THAT(md, Contains("This serving run failed:** KV cache does not fit: 81 GB &gt; 80 GB &lt;per device&gt; &amp; more"));
  CHECK(md.find("## Summary") == std::string::npos);
  CHECK(md.find("## Latency") == std::string::npos);

  const auto rows = parse_csv(r::render_run_report(db, id, r::Format::csv));
  REQUIRE(rows.size() == 2);
  const auto& head = rows[0];
  auto at = [&](const std::string& c) { return rows[1][static_cast<std::size_t>(std::find(head.begin(), head.end(), c) - head.begin())]; };
  CHECK(at("status") == "failed");
  CHECK(at("kind") == "serving");
  CHECK(at("datacenter").empty());
  CHECK(at("energy_per_output_token_j").empty());
  CHECK(at("ttft_p99_s").empty());
}

TEST_CASE("reports::serving: the series over time say what they cover, the same words in Markdown and HTML",
          "[reports][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t old_style = 0, whole = 0;
  {
    Store db(path);
    t::ServingSpec spec;
    spec.label = "x";
    // The fixture's series: 60 points of 0.5 s from 0 to 30 s; the run lasts 30.3 s (makespan_s). A run stored before
    // the series covered every run: its text says which part they cover, not "the whole run".
    old_style = t::add_serving_run(db, t::serving_header(kScenario), spec);
    // As the simulator now stores them: a shorter first point [0, 0.2) before a grid of 0.5 s from 0.2 s, and a shorter
    // last one, [30.2, 30.3), to the last completion (past the window's end, 30 s): 62 points, 0 to 30.3 s.
    whole = db.begin_run(t::serving_header(kScenario));
    RunRecord rec = t::serving_results(spec);
    for (auto& series : rec.series) {
      if (series.name.find("_cdf") != std::string::npos) continue;
      std::vector<double> x = {0.0}, y = {series.y.front()};
      for (std::size_t k = 0; k < series.x.size(); ++k) {
        x.push_back(0.2 + 0.5 * static_cast<double>(k));
        y.push_back(series.y[k]);
      }
      x.push_back(30.2);
      y.push_back(series.y.back());
      series.x = x;
      series.y = y;
    }
    rec.provenance["series_first_interval_s"] = 0.2;
    rec.provenance["series_last_interval_s"] = 0.1;
    db.complete_run(whole, rec);
  }
  const Store db(path, Store::Mode::read_only);
  const std::string covers_part = "60 samples from 0 s to 30 s of a run lasting 30.30 s";
  const std::string covers_all = "62 samples over the whole run, 0 to 30.30 s";
  const std::string intervals = "(0.5000 s; the first, 0.2000 s, from 0; the last, 0.1000 s, to the last completion)";
  for (const auto& [id, covers] : {std::pair{old_style, covers_part}, std::pair{whole, covers_all}}) {
    INFO("run " << id);
    const std::string md = r::render_run_report(db, id, r::Format::markdown);
    const std::string html = r::render_run_report(db, id, r::Format::html);
    CHECK_THAT(md, Contains(covers + ", each the average over the sampling interval that starts at it ("));
    CHECK_THAT(html, Contains(covers + ". Each value is the average over the sampling interval that starts at it ("));
    CHECK((md.find("over the whole run") != std::string::npos) == (id == whole));
    CHECK((html.find("over the whole run") != std::string::npos) == (id == whole));
    CHECK((md.find(intervals) != std::string::npos) == (id == whole));
    CHECK((html.find(intervals) != std::string::npos) == (id == whole));
  }
}

TEST_CASE("reports::comparison_rows: serving alternatives ranked by gross CO2e per 1000 tokens, front over (P99 TTFT, CO2e per 1000 tokens)",
          "[reports][pareto][serving]") {
  ServingAlternatives f;
  const Store db(f.path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, f.comparison);
  REQUIRE(rows.size() == 7);
  const std::vector<std::string> order = {"C", "D", "E", "B", "A", "F", "R"};
  const std::vector<int> ranks = {1, 2, 3, 4, 5, 0, 0};
  const std::vector<bool> front = {true, true, true, true, false, false, false};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << " " << rows[i].label);
    CHECK(rows[i].label == order[i]);
    CHECK(rows[i].run_id == f.ids[order[i]]);
    CHECK(rows[i].rank == ranks[i]);
    CHECK(rows[i].pareto == front[i]);
    CHECK(rows[i].kind == "serving");
    CHECK(std::isnan(rows[i].train_days));
    CHECK(std::isnan(rows[i].wan_bytes_per_step));
  }
  for (std::size_t i = 0; i < 5; ++i) {
    const RunRecord run = db.get_run(rows[i].run_id);
    double fac = 0, gross = 0;
    for (const auto& d : run.datacenters) {
      fac += d.facility_energy_j;
      gross += d.co2e_gross_kg;
    }
    INFO(rows[i].label);
    CHECK(same(rows[i].ttft_p99_ms, 1000.0 * metric(run, "ttft_p99_s")));
    CHECK(same(rows[i].tpot_p99_ms, 1000.0 * metric(run, "tpot_p99_s")));
    CHECK(rows[i].output_tokens_per_s == metric(run, "output_tokens_per_s"));
    CHECK(rows[i].throughput_rps == metric(run, "throughput_rps"));
    CHECK(rows[i].goodput_fraction == metric(run, "goodput_fraction"));
    CHECK(rows[i].energy_per_output_token_j == metric(run, "energy_per_output_token_j"));
    CHECK(same(rows[i].gco2e_gross_per_1k_tokens, 1000.0 * metric(run, "co2e_gross_kg_per_1k_tokens")));
    CHECK(same(rows[i].gco2e_net_per_1k_tokens, 1000.0 * metric(run, "co2e_net_kg_per_1k_tokens")));
    CHECK(same(rows[i].gco2e_gross_per_1k_tokens, gross * 1e6 / metric(run, "output_tokens"), 1e-9));
    CHECK(same(rows[i].facility_energy_mwh, fac / 3.6e9));
  }
  CHECK(rows[5].status == "failed");
  CHECK(std::isnan(rows[5].gco2e_gross_per_1k_tokens));
  CHECK(rows[6].status == "running");

  SECTION("plain-text and Markdown tables show the serving columns") {
    const std::string text = r::comparison_table_text(rows);
    for (const char* h : {"Output throughput (tokens/s)", "P99 TTFT (ms)", "P99 TPOT (ms)", "Goodput (%)", "Energy per output token (J/token)",
                          "CO2e gross per 1000 tokens (g)", "CO2e net per 1000 tokens (g)"})
      CHECK_THAT(text, Contains(h));
    CHECK(text.find("Training (days)") == std::string::npos);
    const std::string md = r::comparison_table_markdown(rows);
    std::istringstream in(md);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 2 + rows.size());
    const auto c = md_cells(lines[2]);
    const r::ComparisonRow& row = rows[0];
    CHECK(c == std::vector<std::string>{"1", "C", std::to_string(f.ids["C"]), "complete", r::format_value(row.output_tokens_per_s),
                                        r::format_value(row.ttft_p99_ms), r::format_value(row.tpot_p99_ms), r::format_value(100.0 * row.goodput_fraction, 3),
                                        r::format_value(row.energy_per_output_token_j), r::format_value(row.gco2e_gross_per_1k_tokens),
                                        r::format_value(row.gco2e_net_per_1k_tokens), "yes"});
    CHECK(c[5] == "60");  // P99 TTFT of C: 0.060 s in ms
  }
}

TEST_CASE("reports::serving: a run without output tokens has no per-token figures and is not ranked", "[reports][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t c = 0, idle = 0, busy = 0;
  {
    Store db(path);
    c = db.create_comparison(kScenario);
    t::ServingSpec none;
    none.label = "idle";
    none.output_tokens = 0.0;  // the simulator then stores 0 J/token and 0 g per 1000 tokens
    t::ServingSpec some;
    some.label = "busy";
    some.co2e_gross_g_per_1k_tokens = 5.0;
    idle = t::add_serving_run(db, t::serving_header(kScenario, "idle", c), none);
    busy = t::add_serving_run(db, t::serving_header(kScenario, "busy", c), some);
  }
  const Store db(path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, c);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].run_id == busy);
  CHECK(rows[0].rank == 1);
  CHECK(rows[1].run_id == idle);
  CHECK(rows[1].rank == 0);  // a stored 0 g per 1000 tokens would otherwise rank it first
  CHECK(std::isnan(rows[1].gco2e_gross_per_1k_tokens));
  CHECK(std::isnan(rows[1].energy_per_output_token_j));
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_run_report(db, idle, r::Format::html)));
  for (const char* m : {"energy_per_output_token_j", "co2e_gross_kg_per_1k_tokens"}) {
    const auto& cell = *valued(table_row(*root, "summary", "data-metric", m)).front();
    CHECK(cell.attr("data-value") == "nan");
    CHECK(cell.all_text() == "\xE2\x80\x93");
  }
  for (const auto* td : valued(*root->by_class("per-token").front()))
    if (td->attr("data-field") != "output_tokens") CHECK(td->attr("data-value") == "nan");
  const auto csv = parse_csv(r::render_run_report(db, idle, r::Format::csv));
  const auto& head = csv[0];
  auto at = [&](const std::string& col) { return csv[1][static_cast<std::size_t>(std::find(head.begin(), head.end(), col) - head.begin())]; };
  CHECK(at("output_tokens") == "0");
  CHECK(at("energy_per_output_token_j").empty());
  CHECK(at("gco2e_gross_per_1000_tokens").empty());
  CHECK(at("site_energy_per_output_token_j").empty());
  CHECK_FALSE(at("energy_per_request_j").empty());  // requests were measured
}

TEST_CASE("reports::serving: a serving comparison whose runs all failed is reported, unranked", "[reports][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t c = 0;
  {
    Store db(path);
    c = db.create_comparison(kScenario);
    const std::int64_t a = db.begin_run(t::serving_header(kScenario, "a", c));
    db.fail_run(a, "no KV cache left");
    db.begin_run(t::serving_header(kScenario, "b", c));
  }
  const Store db(path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, c);
  REQUIRE(rows.size() == 2);
  for (const auto& row : rows) {
    CHECK(row.kind == "serving");
    CHECK(row.rank == 0);
    CHECK_FALSE(row.pareto);
  }
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_comparison_report(db, c, r::Format::html)));
  CHECK(root->by_class("point").empty());
  CHECK_THAT(root->by_id("latency")->all_text(), Contains("No alternative completed."));
  CHECK(root->by_class("notice").size() == 2);
  CHECK_THAT(r::render_comparison_report(db, c, r::Format::markdown), Contains("No alternative completed."));
  CHECK(parse_csv(r::render_comparison_report(db, c, r::Format::csv)).size() == 3);
}

TEST_CASE("reports::comparison: a comparison mixing training and serving runs is refused", "[reports][serving]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t c = 0, tid = 0, sid = 0;
  {
    Store db(path);
    c = db.create_comparison(kScenario);
    t::RunSpec train;
    train.label = "train";
    t::ServingSpec serve;
    serve.label = "serve";
    tid = t::add_run(db, t::header(kScenario, "train", c), train);
    sid = t::add_serving_run(db, t::serving_header(kScenario, "serve", c), serve);
  }
  const Store db(path, Store::Mode::read_only);
  const std::string why = fmt::format("comparison {} in {} mixes training runs ({}) and serving runs ({})", c, path, tid, sid);
  CHECK_THROWS_AS(r::comparison_rows(db, c), moesim::Error);
  CHECK_THROWS_WITH(r::comparison_rows(db, c), Contains(why));
  for (r::Format fmt : {r::Format::html, r::Format::markdown, r::Format::csv})
    CHECK_THROWS_WITH(r::render_comparison_report(db, c, fmt), Contains(why) && Contains("compare each kind separately"));
  // Each run on its own still reports.
  CHECK_NOTHROW(r::render_run_report(db, tid, r::Format::html));
  CHECK_NOTHROW(r::render_run_report(db, sid, r::Format::html));
}

TEST_CASE("reports::serving html: a serving comparison report ranks, plots and tabulates the same numbers", "[reports][html][serving]") {
  ServingAlternatives f;
  const Store db(f.path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, f.comparison);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_comparison_report(db, f.comparison, r::Format::html)));
  const std::string cid = std::to_string(f.comparison);
  CHECK_THAT(root->by_name("h1").front()->all_text(), Contains("serving comparison"));
  CHECK(root->by_id("breakdown") == nullptr);
  CHECK(root->by_id("latency") != nullptr);
  std::map<std::int64_t, const r::ComparisonRow*> row_of;
  for (const auto& row : rows) row_of[row.run_id] = &row;
  auto want = [&](const r::ComparisonRow& row, const std::string& field) {
    if (field == "output_tokens_per_s") return row.output_tokens_per_s;
    if (field == "ttft_p99") return row.ttft_p99_ms / 1000.0;  // in SI, as shown_in_si gives
    if (field == "tpot_p99") return row.tpot_p99_ms / 1000.0;
    if (field == "goodput") return row.goodput_fraction;
    if (field == "energy_per_output_token") return row.energy_per_output_token_j;
    if (field == "co2e_gross_per_1k_tokens") return row.gco2e_gross_per_1k_tokens / 1000.0;
    if (field == "co2e_net_per_1k_tokens") return row.gco2e_net_per_1k_tokens / 1000.0;
    FAIL("unknown ranking field " << field);
    return 0.0;
  };

  SECTION("ranking table") {
    const auto trs = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-rank"); });
    REQUIRE(trs.size() == rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK(num(trs[i]->attr("data-run")) == rows[i].run_id);
      CHECK(num(trs[i]->attr("data-rank")) == rows[i].rank);
      CHECK(trs[i]->attr("data-pareto") == (rows[i].pareto ? "true" : "false"));
      const auto cells = valued(*trs[i]);
      CHECK(cells.size() == 7);
      for (const auto* td : cells) {
        INFO(rows[i].label << " " << td->attr("data-field"));
        CHECK(same(shown_in_si(*td), want(rows[i], td->attr("data-field"))));
        check_display(*td);
      }
    }
  }
  SECTION("scatter points, bars and ranking cells are the same values") {
    const auto* chart = root->by_id("tradeoff-" + cid);
    REQUIRE(chart != nullptr);
    const auto pts = chart->by_class("point");
    REQUIRE(pts.size() == 5);
    for (const auto* p : pts) {
      const std::string run = p->attr("data-key");
      const auto& tr = table_row(*root, "ranking", "data-run", run);
      CHECK(p->attr("data-x") == field_cell(tr, "ttft_p99").attr("data-value"));
      CHECK(p->attr("data-x-unit") == field_cell(tr, "ttft_p99").attr("data-unit"));
      CHECK(p->attr("data-y") == field_cell(tr, "co2e_gross_per_1k_tokens").attr("data-value"));
      CHECK(p->attr("data-y-unit") == field_cell(tr, "co2e_gross_per_1k_tokens").attr("data-unit"));
      CHECK(p->attr("data-pareto") == tr.attr("data-pareto"));
    }
    const auto front = chart->by_class("pareto-front");
    REQUIRE(front.size() == 1);
    std::size_t bars = 0;
    for (const char* id : {"co2e-per-1k-tokens-per-alternative-", "energy-per-token-per-alternative-", "tokens-per-alternative-"}) {
      const auto* bc = root->by_id(id + cid);
      REQUIRE(bc != nullptr);
      for (const auto* b : bc->by_class("bar")) {
        const auto& cell = field_cell(table_row(*root, "ranking", "data-run", b->attr("data-category")), b->attr("data-series"));
        INFO(id << b->attr("data-category") << " " << b->attr("data-series"));
        CHECK(b->attr("data-value") == cell.attr("data-value"));
        CHECK(b->attr("data-unit") == cell.attr("data-unit"));
        ++bars;
      }
    }
    CHECK(bars == 5 * 4);
  }
  SECTION("latency per alternative") {
    const auto trs = root->by_class("latency").front()->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-run"); });
    REQUIRE(trs.size() == 5);
    for (const auto* tr : trs) {
      const RunRecord run = db.get_run(static_cast<std::int64_t>(num(tr->attr("data-run"))));
      const auto cells = valued(*tr);
      REQUIRE(cells.size() == 8);
      for (const auto* td : cells) CHECK(same(shown_in_si(*td), metric(run, td->attr("data-field") + std::string("_s"))));
    }
  }
  SECTION("per-token figures of every datacenter of every complete alternative") {
    const auto trs = root->by_class("per-token").front()->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-datacenter"); });
    CHECK(trs.size() == 1 + 2 + 1 + 2 + 2);
    for (const auto* tr : trs) {
      const RunRecord run = db.get_run(static_cast<std::int64_t>(num(tr->attr("data-run"))));
      const std::string prefix = "site." + tr->attr("data-datacenter") + ".";
      CHECK(same(shown_in_si(field_cell(*tr, "energy_per_output_token")), metric(run, prefix + "energy_per_output_token_j")));
      CHECK(same(shown_in_si(field_cell(*tr, "co2e_gross_per_1k_tokens")), metric(run, prefix + "co2e_gross_kg_per_1k_tokens")));
    }
  }
  SECTION("failed and running alternatives are listed with their status") {
    const auto notices = root->by_class("notice");
    REQUIRE(notices.size() == 2);
    CHECK_THAT(notices[0]->all_text(), Contains("KV cache does not fit: 81 GB > 80 GB <per device>"));
  }
  SECTION("Markdown: the same ranking table, per-token and latency tables") {
    const std::string md = r::render_comparison_report(db, f.comparison, r::Format::markdown);
    CHECK_THAT(md, Contains("# moesim serving comparison"));
    CHECK_THAT(md, Contains(r::comparison_table_markdown(rows)));
    CHECK_THAT(md, Contains("### Per output token"));
    CHECK_THAT(md, Contains("## Latency per alternative"));
    CHECK(md.find("## Step time by phase kind") == std::string::npos);
    CHECK_THAT(md, Contains("failed:** KV cache does not fit"));
  }
}
