// SPDX-License-Identifier: Apache-2.0
// Reports generated from a store of hand-made runs: the HTML is well-formed XML and every number in
// its tables and charts equals the store's (after unit conversion); the Markdown has the same
// tables; the CSV has one row per run and datacenter with the documented columns; comparisons rank
// and flag the Pareto front; bad ids and unwritable directories are clear errors.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

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

namespace {

const std::string kScenario = "moe <test> & \"co\", ltd";

using t::check_display;
using t::expected_dc;
using t::num;
using t::parse_csv;
using t::csv_same;
using t::same;
using t::shown_in_si;

/** A store with one two-datacenter run (embodied carbon asked) whose name needs escaping. */
struct OneRun {
  t::TempDir dir;
  std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  OneRun() {
    Store db(path);
    t::RunSpec spec;
    spec.label = "x";
    spec.train_days = 3.6;
    spec.co2e_gross_t = 6.155;
    spec.embodied = true;
    spec.wan_bytes_per_step = 1.5e9;
    id = t::add_run(db, t::header(kScenario), spec);
  }
};

/** A comparison: the hand-made 4-point set (days, tCO2e) A (10, 40), B (12, 20), C (15, 25),
 *  D (20, 10), plus a failed and a still-running alternative. */
struct FourPoints {
  t::TempDir dir;
  std::string path = dir.file("runs.db");
  std::int64_t comparison = 0;
  std::map<std::string, std::int64_t> ids;
  FourPoints() {
    Store db(path);
    comparison = db.create_comparison(kScenario);
    const std::vector<t::RunSpec> specs = {{"A", 10, 40, 2}, {"B", 12, 20, 1}, {"C", 15, 25, 2}, {"D", 20, 10, 3}};
    for (const auto& s : specs) ids[s.label] = t::add_run(db, t::header(kScenario, s.label, comparison), s);
    ids["F"] = db.begin_run(t::header(kScenario, "F", comparison));
    db.fail_run(ids["F"], "out of memory: 17.2 GiB > 16 GiB <per device>");
    ids["R"] = db.begin_run(t::header(kScenario, "R", comparison));
  }
};

const std::vector<std::string> kCsvColumns = {
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate", "energy_consumed",
    "country_iso_code", "region", "pue", "status", "alternative_label", "datacenter", "datacenter_display_name", "share", "chips",
    "accelerator", "it_energy_kwh", "network_energy_kwh", "pue_overhead_kwh", "emissions_net_kg", "emissions_embodied_kg",
    "grid_gross_kgco2e_per_kwh", "grid_net_kgco2e_per_kwh", "cfe_fraction", "grid_licence", "grid_attribution", "grid_basis", "train_days", "train_time_s", "step_time_s",
    "step_time_spread_s", "steps", "mfu", "hfu", "tokens_dropped_fraction", "average_chip_power_w", "wan_bytes_per_step",
    "wan_time_per_step_s", "moesim_version", "git_hash", "seed",
    // serving columns (empty on training rows)
    "kind", "requests_measured", "requests_completed", "window_s", "throughput_rps", "input_tokens_per_s", "output_tokens_per_s",
    "output_tokens_per_s_per_device", "goodput_fraction", "goodput_rps", "slo_ttft_s", "slo_tpot_s", "slo_p99_met", "ttft_p50_s",
    "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "itl_p50_s", "itl_p99_s", "e2e_p50_s", "e2e_p99_s", "queue_p50_s", "queue_p99_s",
    "preemptions", "mean_batch_sequences", "mean_kv_use", "output_tokens", "energy_per_output_token_j", "it_energy_per_output_token_j",
    "energy_per_request_j", "gco2e_gross_per_1000_tokens", "gco2e_net_per_1000_tokens", "gco2e_gross_per_request",
    "gco2e_net_per_request", "site_output_tokens", "site_energy_per_output_token_j", "site_gco2e_gross_per_1000_tokens",
    "site_gco2e_net_per_1000_tokens"};

}  // namespace

TEST_CASE("reports::html: a run report is well-formed and every number equals the store's", "[reports][html]") {
  OneRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  const std::string html = r::render_run_report(db, f.id, r::Format::html);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(html));
  CHECK(root->name == "html");
  CHECK(root->attr("xmlns") == "http://www.w3.org/1999/xhtml");

  SECTION("self-contained: no script, no external resource") {
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    CHECK(html.find("<img") == std::string::npos);
    CHECK(html.find("url(") == std::string::npos);
    CHECK(root->find_all([](const t::XmlNode& n) { return n.has("src"); }).empty());
  }
  SECTION("text from the store is escaped and reads back unchanged") {
    CHECK(root->by_name("h1").front()->all_text().find(kScenario) != std::string::npos);
    const auto pre = root->by_class("scenario");
    REQUIRE(pre.size() == 1);
    CHECK(nlohmann::json::parse(pre[0]->all_text()) == run.scenario);
  }
  SECTION("summary table") {
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-metric") && n.inherited("class") == "summary"; });
    std::set<std::string> seen;
    for (const auto* tr : rows) {
      const std::string m = tr->attr("data-metric");
      seen.insert(m);
      const auto cells = tr->find_all([](const t::XmlNode& n) { return n.has("data-value"); });
      REQUIRE(cells.size() == 1);
      const double want = m == "pue_overhead_j"
                              ? run.metric("facility_energy_j")->value - run.metric("it_energy_j")->value - run.metric("network_energy_j")->value
                              : run.metric(m)->value;
      INFO("metric " << m);
      CHECK(same(shown_in_si(*cells[0]), want));
      check_display(*cells[0]);
    }
    for (const char* m : {"train_time_s", "step_time_s", "mfu", "it_energy_j", "network_energy_j", "pue_overhead_j", "facility_energy_j",
                          "co2e_gross_kg", "co2e_net_kg", "embodied_co2e_kg", "wan_bytes_per_step", "average_chip_power_w"})
      CHECK(seen.count(m) == 1);
  }
  SECTION("datacenter tables, total row included") {
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-datacenter"); });
    CHECK(rows.size() == 2 * run.datacenters.size() + 1);
    std::size_t cells_checked = 0;
    for (const auto* tr : rows) {
      const std::string name = tr->attr("data-datacenter");
      for (const auto* td : tr->find_all([](const t::XmlNode& n) { return n.name == "td" && n.has("data-field"); })) {
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
        check_display(*td);
        ++cells_checked;
      }
    }
    CHECK(cells_checked == run.datacenters.size() * (6 + 7) + 7);
  }
  SECTION("energy and CO2e charts") {
    const auto* energy = root->by_id("energy-per-datacenter-" + std::to_string(f.id));
    const auto* co2e = root->by_id("co2e-per-datacenter-" + std::to_string(f.id));
    REQUIRE(energy != nullptr);
    REQUIRE(co2e != nullptr);
    const std::map<std::string, std::string> field_of = {{"it", "it_energy"}, {"network", "network_energy"}, {"overhead", "overhead_energy"},
                                                          {"gross", "co2e_gross"}, {"net", "co2e_net"}, {"embodied", "co2e_embodied"}};
    std::size_t bars = 0;
    for (const auto* chart : {energy, co2e}) {
      for (const auto* b : chart->by_class("bar")) {
        const auto it = std::find_if(run.datacenters.begin(), run.datacenters.end(),
                                     [&](const DatacenterResult& d) { return d.name == b->attr("data-category"); });
        REQUIRE(it != run.datacenters.end());
        INFO(b->attr("data-category") << " " << b->attr("data-series"));
        CHECK(same(shown_in_si(*b), expected_dc(*it, field_of.at(b->attr("data-series")))));
        ++bars;
      }
      CHECK(chart->by_class("legend").size() == 1);
      CHECK_FALSE(chart->by_class("axis-label").front()->all_text().empty());
    }
    CHECK(bars == run.datacenters.size() * 6);
  }
  SECTION("step-time breakdown") {
    const auto* chart = root->by_id("step-breakdown-" + std::to_string(f.id));
    REQUIRE(chart != nullptr);
    const auto bars = chart->by_class("bar");
    CHECK(bars.size() == 2 * run.breakdown.size());
    for (const auto* b : bars) {
      const auto it = std::find_if(run.breakdown.begin(), run.breakdown.end(), [&](const auto& k) { return k.phase_kind == b->attr("data-category"); });
      REQUIRE(it != run.breakdown.end());
      CHECK(same(shown_in_si(*b), b->attr("data-series") == "busy" ? it->time_s : it->critical_path_s));
    }
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-phase"); });
    CHECK(rows.size() == run.breakdown.size());
    // Ordered by contribution to the critical path.
    double last = INFINITY;
    for (const auto* tr : rows) {
      const auto it = std::find_if(run.breakdown.begin(), run.breakdown.end(), [&](const auto& k) { return k.phase_kind == tr->attr("data-phase"); });
      REQUIRE(it != run.breakdown.end());
      CHECK(it->critical_path_s <= last);
      last = it->critical_path_s;
      for (const auto* td : tr->find_all([](const t::XmlNode& n) { return n.has("data-field"); })) {
        const std::string field = td->attr("data-field");
        const double want = field == "critical_path" ? it->critical_path_s
                            : field == "busy"        ? it->time_s
                                                     : it->critical_path_s / run.metric("step_time_s")->value;
        CHECK(same(shown_in_si(*td), want));
      }
    }
  }
  SECTION("power over one step") {
    const auto* chart = root->by_id("power-" + std::to_string(f.id));
    REQUIRE(chart != nullptr);
    const auto lines = chart->by_class("series-line");
    REQUIRE(lines.size() == 1);
    std::istringstream xs(lines[0]->attr("data-x")), ys(lines[0]->attr("data-y"));
    const double divisor = t::unit_divisor(lines[0]->attr("data-y-unit"));
    CHECK(lines[0]->attr("data-y-unit") == "kW");
    const auto& s = run.series.front();
    std::size_t k = 0;
    std::string x, y;
    while (xs >> x && ys >> y) {
      REQUIRE(k < s.x.size());
      CHECK(num(x) == s.x[k]);
      CHECK(same(num(y) * divisor, s.y[k]));
      ++k;
    }
    CHECK(k == s.x.size());
    // The power holds from one event to the next: drawn as steps (two vertices per sample), not joined by lines.
    std::size_t vertices = 0;
    for (char ch : lines[0]->attr("points")) vertices += ch == ',';
    CHECK(vertices == 2 * s.x.size());
    const auto labels = chart->by_class("axis-label");
    REQUIRE(labels.size() == 2);
    CHECK_THAT(labels[0]->all_text(), Contains("(s)"));
    CHECK_THAT(labels[1]->all_text(), Contains("(kW)"));
  }
  SECTION("all stored metrics, exactly") {
    const auto rows = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-metric") && n.inherited("class") == "metrics"; });
    REQUIRE(rows.size() == run.metrics.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK(rows[i]->attr("data-metric") == run.metrics[i].name);
      const auto cell = rows[i]->find_all([](const t::XmlNode& n) { return n.has("data-value"); });
      REQUIRE(cell.size() == 1);
      CHECK(num(cell[0]->attr("data-value")) == run.metrics[i].value);
      CHECK(cell[0]->attr("data-unit") == run.metrics[i].unit);
    }
  }
  SECTION("provenance and licences") {
    const auto paths = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-kernel"); });
    CHECK(paths.size() == run.provenance["compute_paths"].size());
    const auto links = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-link-class"); });
    CHECK(links.size() == run.provenance["network_energy"].size());
    const auto odbl = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.attr("data-licence") == "ODbL-1.0"; });
    REQUIRE(odbl.size() == 1);
    CHECK_THAT(odbl[0]->all_text(), Contains("Electricity Maps"));
    CHECK_THAT(odbl[0]->all_text(), Contains("grid:electricity_maps/DE/2023"));
    const auto anchors = odbl[0]->by_name("a");
    REQUIRE(anchors.size() == 1);
    CHECK(anchors[0]->attr("href") == "https://opendatacommons.org/licenses/odbl/1-0/");
    CHECK_THAT(root->by_id("provenance")->all_text(), Contains("tpu_v3"));
    CHECK_THAT(root->by_id("provenance")->all_text(), Contains("a <note> & more"));
  }
}

TEST_CASE("reports::comparison_rows: ranking by gross CO2e and the Pareto front", "[reports][pareto]") {
  FourPoints f;
  const Store db(f.path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, f.comparison);
  REQUIRE(rows.size() == 6);
  // D (10 t) < B (20 t) < C (25 t) < A (40 t); C is dominated by B; F and R are unranked, last.
  const std::vector<std::string> order = {"D", "B", "C", "A", "F", "R"};
  const std::vector<int> ranks = {1, 2, 3, 4, 0, 0};
  const std::vector<bool> front = {true, true, false, true, false, false};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << " " << rows[i].label);
    CHECK(rows[i].label == order[i]);
    CHECK(rows[i].run_id == f.ids[order[i]]);
    CHECK(rows[i].rank == ranks[i]);
    CHECK(rows[i].pareto == front[i]);
  }
  for (std::size_t i = 0; i < 4; ++i) {
    const RunRecord run = db.get_run(rows[i].run_id);
    double fac = 0, gross = 0, net = 0;
    for (const auto& d : run.datacenters) {
      fac += d.facility_energy_j;
      gross += d.co2e_gross_kg;
      net += d.co2e_net_kg;
    }
    CHECK(rows[i].status == "complete");
    CHECK(same(rows[i].train_days, run.metric("train_time_s")->value / 86400.0));
    CHECK(same(rows[i].facility_energy_mwh, fac / 3.6e9));
    CHECK(same(rows[i].co2e_gross_t, gross / 1000.0));
    CHECK(same(rows[i].co2e_net_t, net / 1000.0));
    CHECK(rows[i].wan_bytes_per_step == run.metric("wan_bytes_per_step")->value);
  }
  CHECK(rows[4].status == "failed");
  CHECK(rows[5].status == "running");
  CHECK(std::isnan(rows[4].train_days));
  CHECK(std::isnan(rows[5].co2e_gross_t));

  SECTION("plain-text table: aligned, one line per alternative") {
    const std::string text = r::comparison_table_text(rows);
    std::istringstream in(text);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 2 + rows.size());
    auto glyphs = [](const std::string& s) {
      std::size_t n = 0;
      for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      return n;
    };
    for (const auto& l : lines) CHECK(glyphs(l) == glyphs(lines[0]));
    CHECK_THAT(lines[0], Contains("CO2e gross (t)"));
    CHECK_THAT(lines[2], Contains(" D "));
    CHECK_THAT(lines[6], Contains("failed"));
    CHECK_THAT(r::comparison_table_text({}), Contains("(no runs)"));
  }
  SECTION("Markdown table") {
    const std::string md = r::comparison_table_markdown(rows);
    std::istringstream in(md);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 2 + rows.size());
    for (const auto& l : lines) CHECK((l.front() == '|' && l.back() == '|'));
    CHECK_THAT(lines[1], Contains("---:"));
    CHECK_THAT(lines[2], Contains("| 1 | D |"));
    CHECK_THAT(lines[4], Contains("| no |"));
  }
}

TEST_CASE("reports::html: a comparison report shows the ranking, the front and the failed runs", "[reports][html]") {
  FourPoints f;
  const Store db(f.path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, f.comparison);
  const std::string html = r::render_comparison_report(db, f.comparison, r::Format::html);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(html));
  std::map<std::int64_t, RunRecord> runs;
  for (const auto& [label, id] : f.ids) runs[id] = db.get_run(id);

  SECTION("ranking table") {
    const auto trs = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-rank"); });
    REQUIRE(trs.size() == rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK(num(trs[i]->attr("data-run")) == rows[i].run_id);
      CHECK(num(trs[i]->attr("data-rank")) == rows[i].rank);
      CHECK(trs[i]->attr("data-pareto") == (rows[i].pareto ? "true" : "false"));
      for (const auto* td : trs[i]->find_all([](const t::XmlNode& n) { return n.has("data-field"); })) {
        const std::string field = td->attr("data-field");
        const double want = field == "train_days"           ? rows[i].train_days * 86400.0
                            : field == "facility_energy"    ? rows[i].facility_energy_mwh * 3.6e9
                            : field == "co2e_gross"         ? rows[i].co2e_gross_t * 1000.0
                            : field == "co2e_net"           ? rows[i].co2e_net_t * 1000.0
                            : field == "wan_bytes_per_step" ? rows[i].wan_bytes_per_step
                                                            : rows[i].wan_time_per_step_s;
        INFO(rows[i].label << " " << field);
        CHECK(same(shown_in_si(*td), want));
        check_display(*td);
      }
    }
  }
  SECTION("time-CO2e scatter with the Pareto front") {
    const auto* chart = root->by_id("tradeoff-" + std::to_string(f.comparison));
    REQUIRE(chart != nullptr);
    const auto pts = chart->by_class("point");
    REQUIRE(pts.size() == 4);  // failed and running runs are not plotted
    for (const auto* p : pts) {
      const RunRecord& run = runs.at(static_cast<std::int64_t>(num(p->attr("data-key"))));
      double gross = 0;
      for (const auto& d : run.datacenters) gross += d.co2e_gross_kg;
      CHECK(same(num(p->attr("data-x")) * t::unit_divisor(p->attr("data-x-unit")), run.metric("train_time_s")->value));
      CHECK(same(num(p->attr("data-y")) * t::unit_divisor(p->attr("data-y-unit")), gross));
      CHECK(p->attr("data-pareto") == (run.alternative_label == "C" ? "false" : "true"));
    }
    const auto front = chart->by_class("pareto-front");
    REQUIRE(front.size() == 1);
    CHECK(front[0]->attr("data-keys") == fmt::format("{} {} {}", f.ids["A"], f.ids["B"], f.ids["D"]));
    const auto labels = chart->by_class("axis-label");
    REQUIRE(labels.size() == 2);
    CHECK(labels[0]->all_text() == "training time (days)");
    CHECK(labels[1]->all_text() == "CO2e gross (t)");
  }
  SECTION("bars per alternative") {
    for (const char* id : {"co2e-per-alternative-", "days-per-alternative-", "energy-per-alternative-"}) {
      const auto* chart = root->by_id(id + std::to_string(f.comparison));
      REQUIRE(chart != nullptr);
      for (const auto* b : chart->by_class("bar")) {
        const RunRecord& run = runs.at(static_cast<std::int64_t>(num(b->attr("data-category"))));
        CHECK(run.status == moesim::store::RunStatus::complete);
        const std::string s = b->attr("data-series");
        double want = 0;
        if (s == "train_days") want = run.metric("train_time_s")->value;
        for (const auto& d : run.datacenters) {
          if (s == "gross") want += d.co2e_gross_kg;
          if (s == "net") want += d.co2e_net_kg;
          if (s == "it") want += d.it_energy_j;
          if (s == "network") want += d.network_energy_j;
          if (s == "overhead") want += d.facility_energy_j - d.it_energy_j - d.network_energy_j;
        }
        INFO(id << " " << run.alternative_label << " " << s);
        CHECK(same(shown_in_si(*b), want, 1e-11));
      }
    }
  }
  SECTION("datacenters of every complete alternative") {
    const auto trs = root->find_all([](const t::XmlNode& n) { return n.name == "tr" && n.has("data-datacenter"); });
    CHECK(trs.size() == 2 * (2 + 1 + 2 + 3));  // sites table and energy table
    for (const auto* tr : trs) {
      const RunRecord& run = runs.at(static_cast<std::int64_t>(num(tr->attr("data-run"))));
      const auto it = std::find_if(run.datacenters.begin(), run.datacenters.end(), [&](const DatacenterResult& d) { return d.name == tr->attr("data-datacenter"); });
      REQUIRE(it != run.datacenters.end());
      for (const auto* td : tr->find_all([](const t::XmlNode& n) { return n.has("data-field"); })) CHECK(same(shown_in_si(*td), expected_dc(*it, td->attr("data-field"))));
    }
  }
  SECTION("failed and running alternatives are listed with their status") {
    const auto notices = root->by_class("notice");
    REQUIRE(notices.size() == 2);
    CHECK_THAT(notices[0]->all_text(), Contains("out of memory: 17.2 GiB > 16 GiB <per device>"));
    CHECK_THAT(notices[1]->all_text(), Contains("still running"));
  }
  SECTION("scenario differences between alternatives") {
    const auto diff = root->by_class("scenario-diff");
    REQUIRE(diff.size() == 1);
    CHECK_THAT(diff[0]->all_text(), Contains("placement[0].datacenter"));
  }
}

TEST_CASE("reports::markdown: the same tables as the HTML report", "[reports][markdown]") {
  OneRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  const std::string md = r::render_run_report(db, f.id, r::Format::markdown);
  for (const char* h : {"## Summary", "## Energy and CO2e per datacenter", "### Sites", "### Energy and emissions", "## Step time by phase kind",
                        "## Power over one simulated step", "## Scenario", "## Provenance", "## Data sources and licences", "## All stored metrics",
                        "| Quantity | Value | Unit |", "| --- | ---: | --- |"})
    CHECK_THAT(md, Contains(h));
  CHECK_THAT(md, Contains("moe &lt;test&gt; &amp; \"co\", ltd"));
  // Every summary value, parsed back from its cell, matches the store to the shown precision.
  auto cell_after = [&](const std::string& row_start) {
    const std::size_t at = md.find("| " + row_start + " | ");
    REQUIRE(at != std::string::npos);
    const std::size_t b = at + row_start.size() + 5;
    return md.substr(b, md.find(" |", b) - b);
  };
  CHECK(same(num(cell_after("IT energy")), run.metric("it_energy_j")->value / 3.6e9, 1e-3));
  CHECK(same(num(cell_after("CO2e gross (location-based)")), run.metric("co2e_gross_kg")->value / 1000.0, 1e-3));
  CHECK(same(num(cell_after("Training time")), run.metric("train_time_s")->value / 86400.0, 1e-3));
  // Both datacenters appear in both tables (names escaped), and the total row.
  for (const auto& d : run.datacenters) {
    std::size_t n = 0;
    const std::string name = r::markdown_escape(d.name);
    for (std::size_t at = md.find(name); at != std::string::npos; at = md.find(name, at + 1)) ++n;
    CHECK(n >= 2);
  }
  CHECK_THAT(md, Contains("| Total |"));
  // The scenario block is the stored JSON.
  const std::size_t b = md.find("```json\n", md.find("## Scenario")) + 8;
  CHECK(nlohmann::json::parse(md.substr(b, md.find("\n```", b) - b)) == run.scenario);

  SECTION("comparison") {
    FourPoints c;
    const Store cdb(c.path, Store::Mode::read_only);
    const std::string cmd = r::render_comparison_report(cdb, c.comparison, r::Format::markdown);
    CHECK_THAT(cmd, Contains(r::comparison_table_markdown(r::comparison_rows(cdb, c.comparison))));
    CHECK_THAT(cmd, Contains("failed:** out of memory"));
    CHECK_THAT(cmd, Contains("## Datacenters of each alternative"));
    CHECK_THAT(cmd, Contains("placement\\[0\\].datacenter"));
  }
}

TEST_CASE("reports::csv: one row per run and datacenter with CodeCarbon-style columns", "[reports][csv]") {
  OneRun f;
  const Store db(f.path, Store::Mode::read_only);
  const RunRecord run = db.get_run(f.id);
  const auto rows = parse_csv(r::render_run_report(db, f.id, r::Format::csv));
  REQUIRE(rows.size() == 1 + run.datacenters.size());
  CHECK(rows[0] == kCsvColumns);
  // Numbers at 12 significant digits at most: no 0.41272000000000003 (issue 10, item 5). Ids and counts are
  // integers and dates are not numbers, so only cells that read wholly as a decimal with a point are looked at.
  int decimals_seen = 0;
  for (std::size_t k = 1; k < rows.size(); ++k)
    for (const auto& cell : rows[k]) {
      char* end = nullptr;
      std::strtod(cell.c_str(), &end);
      if (cell.empty() || end != cell.c_str() + cell.size() || cell.find('.') == std::string::npos) continue;
      ++decimals_seen;
      const std::string mantissa = cell.substr(0, cell.find_first_of("eE"));
      const auto digits = std::count_if(mantissa.begin(), mantissa.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
      const auto leading = mantissa.find_first_not_of("-0.");
      const auto significant = leading == std::string::npos ? 0 : digits - std::count_if(mantissa.begin(), mantissa.begin() + static_cast<long>(leading), [](char c) { return c == '0'; });
      INFO(cell);
      CHECK(significant <= 12);
    }
  CHECK(decimals_seen > 10);
  auto col = [&](const std::string& name) { return static_cast<std::size_t>(std::find(kCsvColumns.begin(), kCsvColumns.end(), name) - kCsvColumns.begin()); };
  for (std::size_t i = 0; i < run.datacenters.size(); ++i) {
    const auto& row = rows[i + 1];
    const DatacenterResult& d = run.datacenters[i];
    REQUIRE(row.size() == kCsvColumns.size());
    INFO("datacenter " << d.name);
    CHECK(row[col("project_name")] == kScenario);  // quoted: it holds a comma and quotes
    CHECK(row[col("run_id")] == std::to_string(f.id));
    CHECK(row[col("experiment_id")].empty());
    CHECK(row[col("timestamp")] == run.finished_at_utc);
    CHECK(csv_same(num(row[col("duration")]), run.metric("duration_s")->value));
    CHECK(csv_same(num(row[col("emissions")]), d.co2e_gross_kg));
    CHECK(csv_same(num(row[col("emissions_rate")]), d.co2e_gross_kg / run.metric("duration_s")->value));
    CHECK(csv_same(num(row[col("energy_consumed")]), d.facility_energy_j / 3.6e6));
    CHECK(row[col("country_iso_code")] == d.country_iso_code);
    CHECK(row[col("region")] == d.region);
    CHECK(csv_same(num(row[col("pue")]), d.pue));
    CHECK(row[col("datacenter")] == d.name);
    CHECK(row[col("datacenter_display_name")] == d.display_name);
    CHECK(csv_same(num(row[col("share")]), d.share));
    CHECK(csv_same(num(row[col("chips")]), d.chips));
    CHECK(row[col("accelerator")] == "tpu_v3");
    CHECK(csv_same(num(row[col("it_energy_kwh")]), d.it_energy_j / 3.6e6));
    CHECK(csv_same(num(row[col("network_energy_kwh")]), d.network_energy_j / 3.6e6));
    CHECK(csv_same(num(row[col("pue_overhead_kwh")]), (d.facility_energy_j - d.it_energy_j - d.network_energy_j) / 3.6e6));
    CHECK(csv_same(num(row[col("emissions_net_kg")]), d.co2e_net_kg));
    CHECK(csv_same(num(row[col("emissions_embodied_kg")]), d.embodied_co2e_kg));
    CHECK(csv_same(num(row[col("grid_gross_kgco2e_per_kwh")]), d.gross_kgco2e_per_kwh));
    CHECK(row[col("grid_net_kgco2e_per_kwh")] == (d.net_kgco2e_per_kwh ? r::format_exact(*d.net_kgco2e_per_kwh) : ""));
    CHECK(row[col("cfe_fraction")] == (d.cfe_fraction ? r::format_exact(*d.cfe_fraction) : ""));
    CHECK(row[col("grid_licence")] == (i == 0 ? "ODbL-1.0" : "Figures quoted from a publication (facts, cited)"));
    // The attribution the licence requires, as the report's licence table gives it (one truth: dataset_attribution).
    if (i == 0) CHECK_THAT(row[col("grid_attribution")], Contains("Data from Electricity Maps"));
    else CHECK(row[col("grid_attribution")].empty());
    CHECK(csv_same(num(row[col("train_days")]), run.metric("train_time_s")->value / 86400.0));
    CHECK(csv_same(num(row[col("step_time_s")]), run.metric("step_time_s")->value));
    CHECK(csv_same(num(row[col("mfu")]), run.metric("mfu")->value));
    CHECK(csv_same(num(row[col("wan_bytes_per_step")]), run.metric("wan_bytes_per_step")->value));
    CHECK(row[col("status")] == "complete");
    CHECK(row[col("seed")] == "1");
  }
  SECTION("reports/README.md documents every column") {
    const std::string readme = t::read_text_file(std::string(MOESIM_SOURCE_ROOT) + "/reports/README.md");
    for (const auto& c : kCsvColumns) CHECK_THAT(readme, Contains("| `" + c + "` |"));
  }
  SECTION("a comparison: every run, failed and running ones with empty energy columns") {
    FourPoints c;
    const Store cdb(c.path, Store::Mode::read_only);
    const auto crows = parse_csv(r::render_comparison_report(cdb, c.comparison, r::Format::csv));
    REQUIRE(crows.size() == 1 + (2 + 1 + 2 + 3) + 2);
    std::map<std::string, int> per_status;
    for (std::size_t i = 1; i < crows.size(); ++i) {
      REQUIRE(crows[i].size() == kCsvColumns.size());
      ++per_status[crows[i][col("status")]];
      CHECK(crows[i][col("experiment_id")] == std::to_string(c.comparison));
      if (crows[i][col("status")] != "complete") {
        CHECK(crows[i][col("energy_consumed")].empty());
        CHECK(crows[i][col("emissions")].empty());
        CHECK(crows[i][col("datacenter")].empty());
      }
    }
    CHECK(per_status["complete"] == 8);
    CHECK(per_status["failed"] == 1);
    CHECK(per_status["running"] == 1);
  }
}

TEST_CASE("reports::write_report: files land in the output directory, created if missing", "[reports]") {
  OneRun f;
  FourPoints c;
  const Store db(f.path, Store::Mode::read_only);
  const std::string out = f.dir.file("out/nested");
  for (r::Format fmt : {r::Format::html, r::Format::markdown, r::Format::csv}) {
    const std::string path = r::write_run_report(db, f.id, fmt, out);
    CHECK(path == out + "/run-" + std::to_string(f.id) + "." + r::extension(fmt));
    CHECK(t::read_text_file(path) == r::render_run_report(db, f.id, fmt));
  }
  const Store cdb(c.path, Store::Mode::read_only);
  const std::string path = r::write_report(cdb, r::parse_target("c" + std::to_string(c.comparison)), r::Format::html, out);
  CHECK(path == out + "/comparison-" + std::to_string(c.comparison) + ".html");
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    CHECK(e.path().filename().string().front() != '.');  // no temporary file left behind
    ++files;
  }
  CHECK(files == 4);
}

TEST_CASE("reports::write_report: bad ids, empty comparisons and unwritable directories are clear errors", "[reports]") {
  OneRun f;
  Store db(f.path);
  const std::string out = f.dir.file("out");
  SECTION("unknown run id") {
    CHECK_THROWS_MATCHES(r::write_run_report(db, 999, r::Format::html, out), moesim::Error,
                         Catch::Matchers::Message("no run with id 999 in " + f.path));
    CHECK_FALSE(std::filesystem::exists(out));
  }
  SECTION("unknown comparison id") {
    CHECK_THROWS_MATCHES(r::write_comparison_report(db, 77, r::Format::csv, out), moesim::Error,
                         Catch::Matchers::Message("no comparison with id 77 in " + f.path));
    CHECK_THROWS_AS(r::comparison_rows(db, 77), moesim::Error);
  }
  SECTION("empty comparison") {
    const std::int64_t c = db.create_comparison("nothing yet");
    CHECK(r::comparison_rows(db, c).empty());
    for (r::Format fmt : {r::Format::html, r::Format::markdown, r::Format::csv})
      CHECK_THROWS_WITH(r::write_comparison_report(db, c, fmt, out), Contains("has no runs"));
  }
  SECTION("output directory under a regular file") {
    const std::string file = f.dir.file("plain");
    std::ofstream(file) << "x";
    CHECK_THROWS_WITH(r::write_run_report(db, f.id, r::Format::html, file + "/sub"), Contains("cannot create report directory " + file + "/sub"));
    CHECK_THROWS_WITH(r::write_run_report(db, f.id, r::Format::csv, file), Contains(file));
    CHECK(t::read_text_file(file) == "x");
  }
}

TEST_CASE("reports::html: a failed run's report shows why and no results", "[reports][html]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store db(path);
    id = db.begin_run(t::header(kScenario));
    db.fail_run(id, "profile <tpu_v9> & friends not found");
  }
  const Store db(path, Store::Mode::read_only);
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_run_report(db, id, r::Format::html)));
  const auto notices = root->by_class("notice");
  REQUIRE(notices.size() == 1);
  CHECK_THAT(notices[0]->all_text(), Contains("profile <tpu_v9> & friends not found"));
  CHECK(root->by_id("summary") == nullptr);
  CHECK(root->by_id("scenario") != nullptr);
  CHECK_THAT(r::render_run_report(db, id, r::Format::markdown), Contains("This run failed"));
  const auto rows = parse_csv(r::render_run_report(db, id, r::Format::csv));
  REQUIRE(rows.size() == 2);
  CHECK(rows[1][11] == "failed");
}

TEST_CASE("reports::comparison: a comparison whose runs all failed is reported, unranked", "[reports]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t c = 0;
  {
    Store db(path);
    c = db.create_comparison(kScenario);
    const std::int64_t a = db.begin_run(t::header(kScenario, "a", c));
    db.fail_run(a, "no WAN");
    db.begin_run(t::header(kScenario, "b", c));
  }
  const Store db(path, Store::Mode::read_only);
  const auto rows = r::comparison_rows(db, c);
  REQUIRE(rows.size() == 2);
  for (const auto& row : rows) {
    CHECK(row.rank == 0);
    CHECK_FALSE(row.pareto);
  }
  std::unique_ptr<t::XmlNode> root;
  REQUIRE_NOTHROW(root = t::parse_xml(r::render_comparison_report(db, c, r::Format::html)));
  CHECK(root->by_class("point").empty());
  CHECK_THAT(root->by_id("tradeoff-" + std::to_string(c))->all_text(), Contains("no complete run to plot"));
  CHECK(root->by_class("notice").size() == 2);
  CHECK_THAT(r::render_comparison_report(db, c, r::Format::markdown), Contains("No alternative completed."));
  CHECK(parse_csv(r::render_comparison_report(db, c, r::Format::csv)).size() == 3);
}

TEST_CASE("reports::cli: moesim report writes the file and prints its path", "[reports][cli]") {
  FourPoints f;
  const std::string out = f.dir.file("cli-out");
  auto run = [](const std::string& args, std::string& output) {
    const std::string cmd = std::string(MOESIM_BINARY) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    output.clear();
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const Store db(f.path, Store::Mode::read_only);
  std::string output;
  const std::string id = std::to_string(f.ids["B"]);
  REQUIRE(run("report " + id + " --format csv --db " + f.path + " -o " + out, output) == 0);
  CHECK(output == out + "/run-" + id + ".csv\n");
  CHECK(t::read_text_file(out + "/run-" + id + ".csv") == r::render_run_report(db, f.ids["B"], r::Format::csv));
  const std::string cid = std::to_string(f.comparison);
  REQUIRE(run("report c" + cid + " --format md --db " + f.path + " -o " + out, output) == 0);
  CHECK(t::read_text_file(out + "/comparison-" + cid + ".md") == r::render_comparison_report(db, f.comparison, r::Format::markdown));
  SECTION("unknown id: exit status 1 and the store's message") {
    CHECK(run("report 4242 --db " + f.path + " -o " + out, output) == 1);
    CHECK_THAT(output, Contains("no run with id 4242 in " + f.path));
  }
  SECTION("malformed id") {
    CHECK(run("report x12 --db " + f.path + " -o " + out, output) == 1);
    CHECK_THAT(output, Contains("allowed: a run id N"));
  }
}
