// SPDX-License-Identifier: Apache-2.0
// The HTML report of a sweep, from hand-built sweeps in a store (report_test_support.hpp): well-formed; every
// metric drawn against the swept axes (a heat map for two dimensions, one per combination of the others for three,
// a line for one numeric axis, bars for one axis of names, zipped axes as one dimension) with exactly the values of
// the points table (one quantity, one truth); the Pareto front of the complete points; skipped points with reasons.
// The Markdown and HTML header counts each axis' distinct values; the CSV names each ranking column with its unit.
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "moesim/reports/report.hpp"
#include "moesim/reports/svg_chart.hpp"
#include "moesim/store/store.hpp"
#include "report_checks.hpp"
#include "report_test_support.hpp"
#include "xml_check.hpp"

using moesim::store::Store;
using moesim::store::SweepPointRecord;
namespace r = moesim::reports;
namespace t = moesim::reports::test;
using nlohmann::json;

namespace {

/** A sweep over `axes` (key -> values, the last varying fastest) whose points are complete runs, except those
 *  `skip` names (skipped with a reason). Training days and CO2e follow from the point index. */
std::int64_t make_sweep(Store& db, const std::vector<std::pair<std::string, json>>& axes, const std::vector<std::size_t>& skip = {},
                        bool zipped = false) {
  json ax = json::array();
  std::size_t count = 1;
  for (const auto& [k, v] : axes) {
    ax.push_back({{"key", k}, {"values", v}});
    count = zipped ? v.size() : count * v.size();
  }
  const std::int64_t id = db.open_sweep("test-sweep", fmt::format("{:032x}", count + axes.size()), static_cast<std::int64_t>(count), ax);
  for (std::size_t i = 0; i < count; ++i) {
    std::string label;
    std::size_t rest = i;
    std::vector<std::string> parts(axes.size());
    for (std::size_t a = axes.size(); a-- > 0;) {
      const json& values = axes[a].second;
      parts[a] = axes[a].first + "=" + values[zipped ? i : rest % values.size()].dump();
      rest /= values.size();
    }
    for (std::size_t a = 0; a < parts.size(); ++a) label += (a ? ", " : "") + parts[a];
    SweepPointRecord p;
    p.index = static_cast<std::int64_t>(i);
    p.label = label;
    p.point_hash = fmt::format("{:032x}", i + 1);
    if (std::find(skip.begin(), skip.end(), i) != skip.end()) {
      p.skip_reason = fmt::format("point {} does not fit: 90 GiB > 80 GiB", i);
    } else {
      moesim::store::RunRecord h = t::header("test-sweep", "site_" + std::to_string(i));
      h.alternative_label = label;
      h.point_hash = p.point_hash;
      const std::int64_t run = db.begin_run(h);
      t::RunSpec spec;
      spec.label = std::to_string(i);
      spec.train_days = 2.0 + 0.37 * static_cast<double>(i);
      spec.co2e_gross_t = 9.0 - 0.61 * static_cast<double>(i % 5);
      spec.datacenters = 1;
      db.complete_run(run, t::results(spec));
      p.run_id = run;
    }
    db.set_sweep_point(id, p);
  }
  return id;
}

/** The values drawn for metric `field` (heat-map cells and bars carry data-value; a line carries its y list). */
std::vector<double> drawn(const t::XmlNode& doc, std::int64_t sweep, const std::string& field) {
  const std::string prefix = fmt::format("sweep-{}-metric-{}", sweep, field);
  std::vector<double> out;
  for (const auto* svg : doc.by_name("svg")) {
    const std::string id = svg->attr("id");
    if (id != prefix && id.rfind(prefix + "-", 0) != 0) continue;
    for (const auto* n : svg->find_all([](const t::XmlNode& x) { return x.has("data-value") && x.name == "rect"; }))
      out.push_back(t::num(n->attr("data-value")));
    for (const auto* n : svg->by_class("series-line")) {
      std::string ys = n->attr("data-y");
      std::replace(ys.begin(), ys.end(), ',', ' ');
      std::istringstream in(ys);
      for (double y; in >> y;) out.push_back(y);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

/** The values of column `field` in the points table. */
std::vector<double> tabled(const t::XmlNode& doc, const std::string& field) {
  std::vector<double> out;
  for (const auto* table : doc.by_class("sweep-points"))
    for (const auto* n : table->find_all([&](const t::XmlNode& x) { return x.name == "td" && x.attr("data-field") == field; }))
      out.push_back(t::num(n->attr("data-value")));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<const t::XmlNode*> charts_of(const t::XmlNode& doc, std::int64_t sweep, const std::string& field) {
  const std::string prefix = fmt::format("sweep-{}-metric-{}", sweep, field);
  return doc.find_all([&](const t::XmlNode& x) {
    return x.name == "svg" && (x.attr("id") == prefix || x.attr("id").rfind(prefix + "-", 0) == 0);
  });
}

}  // namespace

TEST_CASE("reports::sweep html: heat maps of two dimensions hold exactly the table's values", "[reports][sweep][html]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  // 3 x 2 points, point 4 skipped.
  const std::int64_t id = make_sweep(db, {{"cluster.count", json::array({256, 512, 1024})}, {"parallelism.data", json::array({1, 2})}}, {4});
  const std::string html = r::render_sweep_report(db, id, r::Format::html);
  const auto doc = t::parse_xml(html);
  for (const std::string field : {"train_days", "facility_energy", "co2e_gross", "co2e_net"}) {
    INFO(field);
    const auto charts = charts_of(*doc, id, field);
    REQUIRE(charts.size() == 1);
    // A 3 x 2 grid: five cells with values, the skipped point an empty cell.
    CHECK(charts[0]->by_class("cell").size() == 5);
    CHECK(charts[0]->find_all([](const t::XmlNode& x) { return x.name == "rect" && x.has("data-row") && !x.has("data-value"); }).size() == 1);
    const auto d = drawn(*doc, id, field), tv = tabled(*doc, field);
    REQUIRE(d.size() == 5);
    CHECK(d == tv);
  }
  // Row and column labels are the swept values.
  const auto cells = charts_of(*doc, id, "train_days")[0]->by_class("cell");
  CHECK(cells.front()->attr("data-row") == "256");
  CHECK(cells.front()->attr("data-column") == "1");
  // The Pareto scatter has every complete point; the skipped one is listed with its reason.
  const auto* pareto = doc->by_id(fmt::format("sweep-{}-pareto", id));
  REQUIRE(pareto != nullptr);
  CHECK(html.find("point 4 does not fit: 90 GiB &gt; 80 GiB") != std::string::npos);
  CHECK(doc->by_class("sweep-skipped").size() == 1);
  CHECK(html.find("Complete 5, skipped 1, failed 0, not finished 0, not in this store 0.") != std::string::npos);
}

TEST_CASE("reports::sweep html: one numeric axis is a line, one axis of names is bars, zipped axes are one dimension",
          "[reports][sweep][html]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  const std::int64_t line = make_sweep(db, {{"model.capacity_factor", json::array({2.0, 1.0, 1.5})}});
  {
    const auto doc = t::parse_xml(r::render_sweep_report(db, line, r::Format::html));
    const auto charts = charts_of(*doc, line, "train_days");
    REQUIRE(charts.size() == 1);
    const auto lines = charts[0]->by_class("series-line");
    REQUIRE(lines.size() == 1);
    // x in increasing order whatever the sweep's order.
    std::string xs = lines[0]->attr("data-x");
    std::replace(xs.begin(), xs.end(), ',', ' ');
    std::istringstream in(xs);
    std::vector<double> x;
    for (double v; in >> v;) x.push_back(v);
    CHECK(x == std::vector<double>{1.0, 1.5, 2.0});
    CHECK(drawn(*doc, line, "train_days") == tabled(*doc, "train_days"));
  }
  Store db2((dir.path() / "s2.db").string());
  const std::int64_t bars = make_sweep(db2, {{"cluster.accelerator", json::array({"h100", "a100"})}});
  {
    const auto doc = t::parse_xml(r::render_sweep_report(db2, bars, r::Format::html));
    const auto charts = charts_of(*doc, bars, "co2e_gross");
    REQUIRE(charts.size() == 1);
    CHECK(charts[0]->by_class("series-line").empty());
    CHECK(drawn(*doc, bars, "co2e_gross").size() == 2);
    CHECK(drawn(*doc, bars, "co2e_gross") == tabled(*doc, "co2e_gross"));
    CHECK(charts[0]->all_text().find("h100") != std::string::npos);  // names without JSON quotes
  }
  Store db3((dir.path() / "s3.db").string());
  const std::int64_t zip = make_sweep(db3, {{"cluster.count", json::array({8, 16, 32})}, {"parallelism.data", json::array({1, 2, 4})}}, {},
                                      true);
  {
    const auto doc = t::parse_xml(r::render_sweep_report(db3, zip, r::Format::html));
    const auto charts = charts_of(*doc, zip, "train_days");
    REQUIRE(charts.size() == 1);
    // One dimension ("cluster.count / parallelism.data" moving together): bars of its three values, not a diagonal map.
    CHECK(charts[0]->by_class("cell").empty());
    CHECK(charts[0]->all_text().find("16 / 2") != std::string::npos);
    CHECK(drawn(*doc, zip, "train_days").size() == 3);
  }
}

TEST_CASE("reports::sweep html: three dimensions give one heat map per value of the third", "[reports][sweep][html]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  const std::int64_t id = make_sweep(db, {{"cluster.accelerator", json::array({"h100", "a100"})},
                                          {"cluster.count", json::array({8, 16})},
                                          {"parallelism.data", json::array({1, 2, 4})}});
  const auto doc = t::parse_xml(r::render_sweep_report(db, id, r::Format::html));
  const auto charts = charts_of(*doc, id, "train_days");
  CHECK(charts.size() == 3);  // rows accelerator, columns count, one map per data degree
  for (const auto* c : charts) CHECK(c->by_class("cell").size() == 4);
  CHECK(drawn(*doc, id, "train_days") == tabled(*doc, "train_days"));
}

TEST_CASE("reports::sweep md/html: an axis listed a value per point (a plan's sweep, zipped) counts its distinct values",
          "[reports][sweep]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  // Five points, zipped as a plan stores its layouts: data takes 3 values, expert 3, tensor 1.
  const std::int64_t id = make_sweep(db,
                                     {{"parallelism.data", json::array({8, 4, 8, 2, 4})},
                                      {"parallelism.expert", json::array({1, 2, 1, 4, 2})},
                                      {"parallelism.tensor", json::array({1, 1, 1, 1, 1})}},
                                     {}, true);
  const std::string md = r::render_sweep_report(db, id, r::Format::markdown);
  // 3 x 3 x 1 = 9 combinations for 5 points: the header says the points are not every combination.
  const std::string note = " (not every combination of them, 9: zipped axes, or a list of points as a plan stores)";
  CHECK(md.find("5 points over `parallelism.data` (3 values), `parallelism.expert` (3 values), `parallelism.tensor` (1 value)" + note +
                ";") != std::string::npos);
  CHECK(md.find("(5 values)") == std::string::npos);
  const std::string html = r::render_sweep_report(db, id, r::Format::html);
  CHECK(html.find("5 points over parallelism.data (3 values), parallelism.expert (3 values), parallelism.tensor (1 value)" + note +
                  ".") != std::string::npos);
  // A cartesian sweep: each axis its own values, as before.
  Store db2((dir.path() / "s2.db").string());
  const std::int64_t grid = make_sweep(db2, {{"cluster.count", json::array({256, 512, 1024})}, {"parallelism.data", json::array({1, 2})}});
  CHECK(r::render_sweep_report(db2, grid, r::Format::markdown).find("6 points over `cluster.count` (3 values), `parallelism.data` (2 values);") !=
        std::string::npos);  // every combination: no note
}

TEST_CASE("reports::sweep csv: each ranking column carries its unit in its name, documented in reports/README.md",
          "[reports][sweep][csv]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  const std::int64_t id = make_sweep(db, {{"parallelism.data", json::array({1, 2})}});
  const auto rows = t::parse_csv(r::render_sweep_report(db, id, r::Format::csv));
  REQUIRE(rows.size() >= 3);
  const std::vector<std::string>& head = rows[0];
  const std::vector<std::string> expected = {"point", "parallelism.data", "status", "run_id", "point_hash", "skip_reason",
                                             "run_error", "train_days", "facility_energy_mwh", "co2e_gross_t", "co2e_net_t",
                                             "wan_bytes_per_step_gb", "wan_time_per_step_s", "pareto", "sweep_overrides"};
  CHECK(head == expected);
  // The values are those of the Markdown table's columns, in the units the names give (MWh, t).
  const auto col = [&](const std::string& name) {
    return static_cast<std::size_t>(std::find(head.begin(), head.end(), name) - head.begin());
  };
  for (std::size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].size() != head.size()) continue;
    CHECK(t::num(rows[i][col("co2e_gross_t")]) == Approx(9.0 - 0.61 * static_cast<double>((i - 1) % 5)).epsilon(1e-9));
  }
  const std::string readme = t::read_text_file(std::string(MOESIM_SOURCE_ROOT) + "/reports/README.md");
  for (std::size_t c = col("skip_reason"); c < head.size(); ++c) {
    INFO(head[c]);
    CHECK(readme.find("`" + head[c] + "`") != std::string::npos);
  }
}

namespace {

/** A sweep of `point_count` points over `axes` (stored as given) of which the store holds point 0 (complete) and
 *  point 1 (its run left `running`, as by a killed sweep): the store of a sweep stopped early, or of one shard. */
std::int64_t partial_sweep(Store& db, const json& axes, std::int64_t point_count) {
  const std::int64_t id = db.open_sweep("partial", fmt::format("{:032x}", 77 + point_count), point_count, axes);
  for (std::int64_t i = 0; i < 2; ++i) {
    std::string label;
    for (const auto& a : axes) label += (label.empty() ? "" : ", ") + a["key"].get<std::string>() + "=" + a["values"][0].dump();
    SweepPointRecord p;
    p.index = i;
    p.label = label;
    p.point_hash = fmt::format("{:032x}", i + 1);
    moesim::store::RunRecord h = t::header("partial", "site_" + std::to_string(i));
    h.alternative_label = label;
    h.point_hash = p.point_hash;
    p.run_id = db.begin_run(h);
    if (i == 0) {
      t::RunSpec spec;
      spec.label = "0";
      spec.datacenters = 1;
      db.complete_run(*p.run_id, t::results(spec));
    }
    db.set_sweep_point(id, p);
  }
  return id;
}

}  // namespace

TEST_CASE("reports::sweep: points the store does not hold show their values and how to get them", "[reports][sweep]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  SECTION("axes that record their dimension (zipped axes share one)") {
    // cluster.count x (parallelism.data zip parallelism.expert): 2 x 2 points, the last dimension the fastest.
    const json axes = json::array({{{"key", "cluster.count"}, {"values", {64, 128}}, {"dimension", 0}},
                                   {{"key", "parallelism.data"}, {"values", {8, 16}}, {"dimension", 1}},
                                   {{"key", "parallelism.expert"}, {"values", {4, 2}}, {"dimension", 1}}});
    const std::int64_t id = partial_sweep(db, axes, 4);
    const std::string md = r::render_sweep_report(db, id, r::Format::markdown);
    INFO(md);
    CHECK(md.find("not finished 1, not in this store 2.") != std::string::npos);
    // The store cannot tell an interrupted sweep from a shard's store: both remedies, in one sentence.
    CHECK(md.find("2 of the sweep's points are not in this store, which does not record whether the sweep ran in shards: "
                  "if it was stopped before it reached them, run the same `moesim sweep` command again (it resumes); "
                  "if it ran in shards, run the shards that hold them and `moesim db merge` their stores here.") !=
          std::string::npos);
    CHECK(md.find("1 of the sweep's points did not finish") != std::string::npos);
    CHECK(md.find("| 2 | 128 | 8 | 4 | \xE2\x80\x93 | not in this store |") != std::string::npos);
    CHECK(md.find("| 3 | 128 | 16 | 2 | \xE2\x80\x93 | not in this store |") != std::string::npos);
    CHECK(md.find("| ? |") == std::string::npos);
    const auto rows = t::parse_csv(r::render_sweep_report(db, id, r::Format::csv));
    REQUIRE(rows.size() == 5);
    CHECK(rows[3][0] == "2");
    CHECK(rows[3][1] == "128");
    CHECK(rows[3][2] == "8");
    CHECK(rows[3][3] == "4");
    const std::string html = r::render_sweep_report(db, id, r::Format::html);
    CHECK(html.find("run the same `moesim sweep` command again (it resumes)") != std::string::npos);
  }
  SECTION("axes stored without their dimension: independent when their counts multiply to the points") {
    const json axes = json::array({{{"key", "cluster.count"}, {"values", {64, 128}}}, {{"key", "parallelism.data"}, {"values", {8, 16}}}});
    const std::int64_t id = partial_sweep(db, axes, 4);
    const std::string md = r::render_sweep_report(db, id, r::Format::markdown);
    INFO(md);
    CHECK(md.find("| 2 | 128 | 8 |") != std::string::npos);
    CHECK(md.find("| 3 | 128 | 16 |") != std::string::npos);
  }
  SECTION("axes stored without their dimension that cannot be told apart: ?") {
    // 2 x 2 x 2 values for 4 points: which two axes are zipped is not recorded.
    const json axes = json::array({{{"key", "cluster.count"}, {"values", {64, 128}}},
                                   {{"key", "parallelism.data"}, {"values", {8, 16}}},
                                   {{"key", "parallelism.expert"}, {"values", {4, 2}}}});
    const std::int64_t id = partial_sweep(db, axes, 4);
    const std::string md = r::render_sweep_report(db, id, r::Format::markdown);
    CHECK(md.find("| 2 | ? | ? | ? |") != std::string::npos);
  }
}

TEST_CASE("reports/README.md: wan_time_per_step_s is the time WAN traffic is in flight, not a critical-path share",
          "[reports][sweep]") {
  const std::string readme = t::read_text_file(std::string(MOESIM_SOURCE_ROOT) + "/reports/README.md");
  const std::size_t at = readme.find("| `wan_time_per_step_s` |");
  REQUIRE(at != std::string::npos);
  const std::string row = readme.substr(at, readme.find('\n', at) - at);
  INFO(row);
  // engine.cpp: wan_busy_s adds the wall time while any WAN-crossing round runs, overlapped with compute or not.
  CHECK(row.find("WAN communication on the step's critical path") == std::string::npos);
  CHECK(row.find("in flight") != std::string::npos);
  CHECK(row.find("overlapped with compute or not") != std::string::npos);
}

TEST_CASE("reports::svg heat_map: viridis ends, shape errors", "[reports][svg]") {
  namespace svg = moesim::reports::svg;
  CHECK(svg::viridis(0.0) == "#440154");
  CHECK(svg::viridis(1.0) == "#FDE725");
  CHECK(svg::viridis(-3.0) == "#440154");
  CHECK(svg::viridis(4.0 / 9.0) == "#26828E");
  svg::HeatMap h;
  h.id = "h";
  h.row_labels = {"a", "b"};
  h.column_labels = {"x"};
  h.values = {{1.0}};
  CHECK_THROWS_AS(svg::heat_map(h), std::invalid_argument);
  h.values = {{1.0}, {std::nan("")}};
  const auto doc = t::parse_xml(svg::heat_map(h));
  CHECK(doc->by_class("cell").size() == 1);
}

TEST_CASE("reports::sweep: a failed point's error is in every format", "[reports][sweep]") {
  t::TempDir dir;
  Store db((dir.path() / "s.db").string());
  // Two points: point 0 completes; point 1's run failed (an interrupted sweep marks its run so).
  const std::int64_t id = make_sweep(db, {{"parallelism.data", json::array({1, 2})}}, {1});
  SweepPointRecord p;
  p.index = 1;
  p.label = "parallelism.data=2";
  p.point_hash = fmt::format("{:032x}", 2);
  moesim::store::RunRecord h = t::header("test-sweep", "site_1");
  h.alternative_label = p.label;
  h.point_hash = p.point_hash;
  const std::int64_t run = db.begin_run(h);
  db.fail_run(run, "interrupted");
  p.run_id = run;
  db.set_sweep_point(id, p);
  const std::string md = r::render_sweep_report(db, id, r::Format::markdown);
  CHECK(md.find("## Failed points") != std::string::npos);
  CHECK(md.find(fmt::format("| 1 | parallelism.data=2 | {} | interrupted |", run)) != std::string::npos);
  const auto rows = t::parse_csv(r::render_sweep_report(db, id, r::Format::csv));
  REQUIRE(rows.size() == 3);
  const auto col = static_cast<std::size_t>(std::find(rows[0].begin(), rows[0].end(), "run_error") - rows[0].begin());
  REQUIRE(col < rows[0].size());
  CHECK(rows[1][col].empty());
  CHECK(rows[2][col] == "interrupted");
  const std::string html = r::render_sweep_report(db, id, r::Format::html);
  CHECK(html.find("Failed points") != std::string::npos);
  CHECK(html.find(">interrupted<") != std::string::npos);
}
