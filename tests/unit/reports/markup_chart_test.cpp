// SPDX-License-Identifier: Apache-2.0
// Building blocks of the reports: escaping, number formatting, the SVG chart kit, and the test's
// own XML checker (which must reject what a strict parser rejects, or the HTML tests prove nothing).
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "moesim/reports/markup.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/reports/svg_chart.hpp"
#include "report_test_support.hpp"
#include "xml_check.hpp"

using Catch::Matchers::Contains;
namespace r = moesim::reports;
namespace svg = moesim::reports::svg;
namespace t = moesim::reports::test;

TEST_CASE("reports::XmlParser: accepts well-formed XML and rejects malformed documents", "[reports][xml]") {
  // Messages are Expat's (XML_ErrorString), prefixed with line:column.
  const auto root = t::parse_xml("<!DOCTYPE html>\n<a x=\"1 &amp; 2\" y='&lt;'><b>t&#233;xt &#x41;</b><c/><!-- c --></a>\n");
  CHECK(root->name == "a");
  CHECK(root->attr("x") == "1 & 2");
  CHECK(root->attr("y") == "<");
  CHECK(root->all_text() == "t\xC3\xA9xt A");
  SECTION("unclosed element") { CHECK_THROWS_WITH(t::parse_xml("<a><b></a>"), Contains("1:9: mismatched tag")); }
  SECTION("never closed") { CHECK_THROWS_WITH(t::parse_xml("<a><b/>"), Contains("no element found")); }
  SECTION("unquoted attribute") { CHECK_THROWS_WITH(t::parse_xml("<a x=1/>"), Contains("1:6: not well-formed")); }
  SECTION("duplicate attribute") { CHECK_THROWS_WITH(t::parse_xml("<a x='1' x='2'/>"), Contains("duplicate")); }
  SECTION("bare ampersand") { CHECK_THROWS(t::parse_xml("<a>fish & chips</a>")); }
  SECTION("HTML-only entity") { CHECK_THROWS_WITH(t::parse_xml("<a>&nbsp;</a>"), Contains("undefined entity")); }
  SECTION("< in an attribute") { CHECK_THROWS_WITH(t::parse_xml("<a x='<'/>"), Contains("'<'")); }
  SECTION("two roots") { CHECK_THROWS_WITH(t::parse_xml("<a/><b/>"), Contains("junk after document element")); }
  SECTION("control character") { CHECK_THROWS_WITH(t::parse_xml("<a>\x01</a>"), Contains("1:4: not well-formed")); }
  SECTION("invalid UTF-8") { CHECK_THROWS_WITH(t::parse_xml("<a>\xC3</a>"), Contains("1:4: not well-formed")); }
  SECTION("CDATA, which reports never emit") { CHECK_THROWS_WITH(t::parse_xml("<a><![CDATA[x]]></a>"), Contains("CDATA")); }
  SECTION("attributes run together") { CHECK_THROWS_WITH(t::parse_xml("<a x='1'y='2'/>"), Contains("1:9: not well-formed")); }
}

TEST_CASE("reports::markup: escaping for XML, Markdown and CSV", "[reports]") {
  SECTION("XML") {
    CHECK(r::xml_escape("a<b & \"c\" 'd'>") == "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
    CHECK(r::xml_escape(std::string("x\x01y")) == "x\xEF\xBF\xBDy");
    CHECK(r::xml_escape("tab\tand\nnewline") == "tab\tand\nnewline");
    // The escaped text round-trips through a strict parser.
    const std::string nasty = "<script>alert('x')</script> & \"q\" \xC3\xA9";
    CHECK(t::parse_xml("<p a=\"" + r::xml_escape(nasty) + "\">" + r::xml_escape(nasty) + "</p>")->all_text() == nasty);
  }
  SECTION("Markdown") {
    CHECK(r::markdown_escape("a|b") == "a\\|b");
    CHECK(r::markdown_escape("<x> & *y*") == "&lt;x&gt; &amp; \\*y\\*");
    CHECK(r::markdown_escape("gcp_us_central1_2021") == "gcp_us_central1_2021");  // intraword: not emphasis
    CHECK(r::markdown_escape("_lead and trail_") == "\\_lead and trail\\_");
    CHECK(r::markdown_escape("two\nlines") == "two lines");
  }
  SECTION("CSV") {
    CHECK(r::csv_field("plain") == "plain");
    CHECK(r::csv_field("a,b") == "\"a,b\"");
    CHECK(r::csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
    CHECK(r::csv_field("two\nlines") == "\"two\nlines\"");
  }
}

TEST_CASE("reports::markup: numbers for people and for machines", "[reports]") {
  CHECK(r::format_value(30.6229) == "30.62");
  CHECK(r::format_value(1024.0) == "1024");
  CHECK(r::format_value(0.00123456) == "0.001235");
  CHECK(r::format_value(6155.217) == "6155");
  CHECK(r::format_value(238418.58, 6) == "238419");
  CHECK(r::format_value(0.0) == "0");
  CHECK(r::format_value(1.5e9) == "1.500e+09");
  CHECK(r::format_value(2.5e-7) == "2.500e-07");
  CHECK(r::format_value(std::numeric_limits<double>::quiet_NaN()) == "\xE2\x80\x93");
  CHECK(r::format_value(-std::numeric_limits<double>::infinity()) == "-inf");
  SECTION("format_exact round-trips every double") {
    for (double v : {0.1, 1.0 / 3.0, 6.02214076e23, 4.9e-324, 1.7976931348623157e308, -2.5, 110242692396.40547}) {
      CHECK(std::strtod(r::format_exact(v).c_str(), nullptr) == v);
    }
    CHECK(r::format_exact(std::numeric_limits<double>::infinity()) == "inf");
    CHECK(r::format_exact(std::numeric_limits<double>::quiet_NaN()) == "nan");
  }
}

TEST_CASE("reports::XmlWriter: refuses unbalanced documents", "[reports]") {
  r::XmlWriter w;
  w.open("a").open("b");
  SECTION("closing the wrong element") { CHECK_THROWS_AS(w.close("a"), std::logic_error); }
  SECTION("reading an unfinished document") { CHECK_THROWS_AS(w.str(), std::logic_error); }
  SECTION("balanced") {
    w.close("b").close("a");
    CHECK(w.str() == "<a><b></b></a>");
  }
}

TEST_CASE("reports::svg: nice ticks cover the range with steps of 1, 2 or 5 x 10^k", "[reports][svg]") {
  struct Case {
    double lo, hi;
  };
  for (const Case& c : {Case{0, 30.62}, Case{0, 0.0031}, Case{3.3, 17.9}, Case{-4, 12}, Case{0, 289.792}, Case{0, 1.3}, Case{2.0, 2.0}, Case{0, 0}}) {
    INFO("range " << c.lo << " .. " << c.hi);
    const svg::Ticks tk = svg::nice_ticks(c.lo, c.hi, 5);
    CHECK(tk.lo <= c.lo);
    CHECK(tk.hi >= c.hi);
    CHECK(tk.hi > tk.lo);
    REQUIRE(tk.values.size() >= 2);
    CHECK(tk.values.size() <= 12);
    CHECK(tk.values.front() == Approx(tk.lo));
    CHECK(tk.values.back() == Approx(tk.hi));
    const double mantissa = tk.step / std::pow(10.0, std::floor(std::log10(tk.step)));
    CHECK((mantissa == Approx(1.0) || mantissa == Approx(2.0) || mantissa == Approx(5.0)));
    // Labels are distinct: enough decimals for the step.
    for (std::size_t i = 1; i < tk.values.size(); ++i) CHECK(svg::tick_label(tk.values[i], tk.decimals) != svg::tick_label(tk.values[i - 1], tk.decimals));
  }
  CHECK(svg::tick_label(-0.0, 1) == "0");
  CHECK(svg::nice_ticks(std::nan(""), 1.0).hi == 1.0);
}

TEST_CASE("reports::svg: bar charts are well-formed and carry every value exactly", "[reports][svg]") {
  svg::BarChart c;
  c.id = "t";
  c.title = "Energy <per> site & more";
  c.value_axis_label = "energy (MWh)";
  c.unit = "MWh";
  c.category_keys = {"a", "b&c"};
  c.category_labels = {"site a", "a very long datacenter name that goes on and on and on beyond the limit"};
  c.series = {{"it", "IT", svg::kOkabeIto[5]}, {"network", "network", svg::kOkabeIto[1]}};
  c.values = {{1.0 / 3.0, 2.5}, {0.1, std::nan("")}};
  for (bool stacked : {false, true}) {
    c.stacked = stacked;
    INFO("stacked " << stacked);
    const auto root = t::parse_xml(svg::bar_chart(c));
    CHECK(root->name == "svg");
    CHECK(root->attr("xmlns") == "http://www.w3.org/2000/svg");
    const auto bars = root->by_class("bar");
    REQUIRE(bars.size() == 4);
    for (const auto* b : bars) {
      const std::size_t s = b->attr("data-series") == "it" ? 0 : 1;
      const std::size_t k = b->attr("data-category") == "a" ? 0 : 1;
      CHECK(b->attr("data-unit") == "MWh");
      const double v = std::strtod(b->attr("data-value").c_str(), nullptr);
      if (std::isnan(c.values[s][k])) {
        CHECK(std::isnan(v));
        CHECK(std::strtod(b->attr("width").c_str(), nullptr) == 0.0);
      } else {
        CHECK(v == c.values[s][k]);
        CHECK(std::strtod(b->attr("width").c_str(), nullptr) > 0.0);
      }
    }
    CHECK(root->all_text().find("Energy <per> site & more") != std::string::npos);
    CHECK(root->by_class("legend").size() == 1);
    CHECK(root->by_class("axis-label").front()->all_text() == "energy (MWh)");
    CHECK(root->by_class("tick").size() >= 3);
  }
  SECTION("a shape mismatch is a bug, reported") {
    c.values.pop_back();
    CHECK_THROWS_AS(svg::bar_chart(c), std::invalid_argument);
  }
}

TEST_CASE("reports::svg: scatter and line charts carry their points", "[reports][svg]") {
  svg::ScatterChart s;
  s.id = "s";
  s.title = "tradeoff";
  s.x_axis_label = "training time (days)";
  s.y_axis_label = "CO2e gross (t)";
  s.x_unit = "days";
  s.y_unit = "t";
  s.points = {{"1", "A", 10, 40, true}, {"2", "B", 12, 20, true}, {"3", "C", 15, 25, false}, {"4", "D", 20, 10, true}};
  auto root = t::parse_xml(svg::scatter_chart(s));
  const auto pts = root->by_class("point");
  REQUIRE(pts.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(pts[i]->attr("data-key") == s.points[i].key);
    CHECK(std::strtod(pts[i]->attr("data-x").c_str(), nullptr) == s.points[i].x);
    CHECK(std::strtod(pts[i]->attr("data-y").c_str(), nullptr) == s.points[i].y);
    CHECK(pts[i]->attr("data-pareto") == (s.points[i].on_front ? "true" : "false"));
  }
  const auto front = root->by_class("pareto-front");
  REQUIRE(front.size() == 1);
  CHECK(front[0]->attr("data-keys") == "1 2 4");  // in x order

  svg::LineChart l;
  l.id = "l";
  l.title = "power";
  l.x_axis_label = "time (s)";
  l.y_axis_label = "power (kW)";
  l.x_unit = "s";
  l.y_unit = "kW";
  l.series_label = "total";
  l.x = {0.0, 0.1, 0.2};
  l.y = {190.464, 289.792000043008, 288.0};
  root = t::parse_xml(svg::line_chart(l));
  const auto line = root->by_class("series-line");
  REQUIRE(line.size() == 1);
  CHECK(line[0]->attr("data-x") == "0 0.1 0.2");
  CHECK(line[0]->attr("data-y") == "190.464 289.792000043008 288");
  l.y.pop_back();
  CHECK_THROWS_AS(svg::line_chart(l), std::invalid_argument);
}

TEST_CASE("reports::svg line_chart: further series, steps, marked points, a fixed y range and a shaded x range", "[reports][svg]") {
  svg::LineChart l;
  l.id = "l";
  l.title = "batch and queue";
  l.x_axis_label = "time (s)";
  l.y_axis_label = "count";
  l.x_unit = "s";
  l.y_unit = "count";
  l.series_label = "batch";
  l.series_key = "batch_sequences";
  l.x = {0.0, 1.0, 2.0};
  l.y = {1.0, 2.0, 3.0};
  l.steps = true;
  l.more_series.push_back({"queue_requests", "queue", svg::kOkabeIto[6], {0.0, 1.0, 2.0}, {0.0, 0.0, 1.0}});
  l.markers = {{"p50", "P50 1 s", 1.0, 50.0}};
  l.markers_label = "percentiles";
  l.y_min = 0.0;
  l.y_max = 100.0;
  l.band_x0 = 0.5;
  l.band_x1 = 2.5;
  l.band_label = "window";
  auto root = t::parse_xml(svg::line_chart(l));
  const auto lines = root->by_class("series-line");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]->attr("data-series") == "batch_sequences");
  CHECK(lines[1]->attr("data-series") == "queue_requests");
  CHECK(lines[1]->attr("data-y") == "0 0 1");
  // Steps: each value is drawn from its x to the next (the last for the interval before it): two vertices per value.
  std::size_t vertices = 0;
  for (char c : lines[0]->attr("points")) vertices += c == ',';
  CHECK(vertices == 6);
  const auto markers = root->by_class("marker");
  REQUIRE(markers.size() == 1);
  CHECK(markers[0]->attr("data-key") == "p50");
  CHECK(markers[0]->attr("data-x") == "1");
  CHECK(markers[0]->attr("data-y") == "50");
  CHECK(root->by_class("marker-label").front()->all_text() == "P50 1 s");
  const auto band = root->by_class("x-band");
  REQUIRE(band.size() == 1);
  CHECK(band[0]->attr("data-x0") == "0.5");
  CHECK(band[0]->attr("data-x1") == "2.5");
  const auto legend = root->by_class("legend");
  REQUIRE(legend.size() == 1);
  CHECK(legend[0]->by_name("text").size() == 4);  // two series, the band, the markers
  const auto y_ticks = root->find_all([](const t::XmlNode& n) { return n.attr("class") == "tick" && n.parent->attr("class") == "axis y-axis"; });
  REQUIRE_FALSE(y_ticks.empty());
  CHECK(y_ticks.front()->all_text() == "0");
  CHECK(y_ticks.back()->all_text() == "100");
  const auto x_ticks = root->find_all([](const t::XmlNode& n) { return n.attr("class") == "tick" && n.parent->attr("class") == "axis x-axis"; });
  REQUIRE_FALSE(x_ticks.empty());
  CHECK(std::strtod(x_ticks.back()->all_text().c_str(), nullptr) >= 3.0);  // the last step ends at 3
  l.more_series[0].y.pop_back();
  CHECK_THROWS_AS(svg::line_chart(l), std::invalid_argument);
}

TEST_CASE("reports::svg line_chart: steps_end_x ends the last step where its shorter interval ends", "[reports][svg]") {
  svg::LineChart l;
  l.id = "l";
  l.title = "power";
  l.x_axis_label = "time (s)";
  l.y_axis_label = "W";
  l.series_label = "power";
  l.x = {0.0, 1.0, 2.0};
  l.y = {1.0, 2.0, 3.0};
  l.steps = true;
  // The vertices' x pixels: (x0, end0), (x1, end1), (x2, end2); the last step's width over the one before it.
  auto last_over_previous = [](const svg::LineChart& c) {
    auto root = t::parse_xml(svg::line_chart(c));
    std::istringstream points(root->by_class("series-line").front()->attr("points"));
    std::vector<double> px;
    for (std::string v; points >> v;) px.push_back(std::strtod(v.c_str(), nullptr));
    REQUIRE(px.size() == 6);
    return (px[5] - px[4]) / (px[3] - px[2]);
  };
  CHECK(last_over_previous(l) == Approx(1.0).epsilon(0.01));  // by default: as long as the interval before it
  l.steps_end_x = 2.4;                                          // a last interval of 0.4 (a run ending inside it)
  CHECK(last_over_previous(l) == Approx(0.4).epsilon(0.02));
}

TEST_CASE("reports::pareto_front: the time-CO2e front of a hand-made set", "[reports][pareto]") {
  // (days, tCO2e): C is dominated by B (faster and cleaner); A, B and D each win somewhere.
  const std::vector<std::pair<double, double>> pts = {{10, 40}, {12, 20}, {15, 25}, {20, 10}};
  CHECK(r::pareto_front(pts) == std::vector<bool>{true, true, false, true});
  SECTION("ties: equal in one coordinate and better in the other dominates") {
    CHECK(r::pareto_front({{10, 20}, {11, 20}}) == std::vector<bool>{true, false});
    CHECK(r::pareto_front({{10, 20}, {10, 21}}) == std::vector<bool>{true, false});
  }
  SECTION("identical points are both on the front") { CHECK(r::pareto_front({{10, 20}, {10, 20}}) == std::vector<bool>{true, true}); }
  SECTION("NaN is never on the front and dominates nothing") {
    CHECK(r::pareto_front({{std::nan(""), 0}, {10, 20}}) == std::vector<bool>{false, true});
  }
  SECTION("empty") { CHECK(r::pareto_front({}).empty()); }
}

TEST_CASE("reports::parse_format and parse_target: accepted spellings and clear errors", "[reports]") {
  CHECK(r::parse_format("html") == r::Format::html);
  CHECK(r::parse_format("md") == r::Format::markdown);
  CHECK(r::parse_format("markdown") == r::Format::markdown);
  CHECK(r::parse_format("csv") == r::Format::csv);
  CHECK(r::parse_target("12").kind == r::ReportTarget::Kind::run);
  CHECK(r::parse_target("12").id == 12);
  CHECK(r::parse_target("c3").kind == r::ReportTarget::Kind::comparison);
  CHECK(r::parse_target("comparison:3").id == 3);
  for (const char* sweep : {"s4", "S4", "sweep:4", "sweep-4"}) {
    INFO(sweep);
    CHECK(r::parse_target(sweep).kind == r::ReportTarget::Kind::sweep);
    CHECK(r::parse_target(sweep).id == 4);
  }
  SECTION("bad format") { CHECK_THROWS_WITH(r::parse_format("pdf"), Contains("allowed: html, md, markdown, csv")); }
  SECTION("bad ids") {
    for (const char* bad : {"", "x", "c", "-1", "0", "1.5", "comparison:", "c-2", "99999999999999999999", "s", "sweep:", "sweep-x",
                            "s0", "sweep"})
      CHECK_THROWS_WITH(r::parse_target(bad), Contains("allowed: a run id N"));
  }
}

TEST_CASE("reports::svg scatter: log-axis ticks read as written, labels never cover a marker", "[reports][svg]") {
  // Issue 10, item 6. A placement study: four sites with the same training time and CO2e over a decade,
  // a WAN split far away, and a point close to another's label position.
  svg::ScatterChart s;
  s.id = "tradeoff";
  s.title = "time and carbon";
  s.x_axis_label = "training time (days)";
  s.y_axis_label = "CO2e gross (t)";
  s.x_unit = "days";
  s.y_unit = "t";
  s.points = {{"1", "finland_2024", 3.588, 1.192, true},    {"2", "base", 3.588, 12.52, false},
              {"3", "taiwan_2024", 3.588, 13.32, false},     {"4", "iowa_2019", 3.588, 14.66, false},
              {"5", "iowa_finland_split", 69.46, 557.2, false}, {"6", "neighbour", 4.1, 14.0, false},
              {"7", "tiny", 0.004, 0.002, true}};
  const auto root = t::parse_xml(svg::scatter_chart(s));

  SECTION("log ticks: each with its own decimals") {
    std::vector<std::string> ticks;
    for (const auto* n : root->by_class("tick")) ticks.push_back(n->all_text());
    REQUIRE_FALSE(ticks.empty());
    for (const auto& tick : ticks) {
      INFO(tick);
      // 0.001 ... 1000: no trailing zeros after the point ("100.000"), and no "0.00" for 0.001.
      if (tick.find('.') != std::string::npos) CHECK(tick.back() != '0');
      CHECK(std::strtod(tick.c_str(), nullptr) > 0.0);
    }
    CHECK(std::find(ticks.begin(), ticks.end(), "100") != ticks.end());
    CHECK(std::find(ticks.begin(), ticks.end(), "0.001") != ticks.end());
  }
  SECTION("no label box covers a marker; every leader starts at its own point") {
    struct Circle {
      double x, y;
      std::string label;
    };
    std::vector<Circle> circles;
    for (const auto* c : root->by_class("point"))
      circles.push_back({std::stod(c->attr("cx")), std::stod(c->attr("cy")), c->attr("data-label")});
    const auto labels = root->by_class("point-label");
    REQUIRE(labels.size() == circles.size());
    for (const auto* l : labels) {
      const std::string text = l->all_text();
      // The box the chart reserves for a label: 12 px font, about 7.6 px per glyph, from 12 px above the
      // baseline to 3 px below it, growing left of x when anchored at its end.
      const double x = std::stod(l->attr("x")), base = std::stod(l->attr("y"));
      const double width = 7.6 * static_cast<double>(text.size());
      const double x0 = l->attr("text-anchor") == "end" ? x - width : x, x1 = x0 + width;
      for (const auto& c : circles) {
        INFO(text << " against the marker of " << c.label);
        const bool overlaps = x0 < c.x + 6 && c.x - 6 < x1 && base - 12 < c.y + 6 && c.y - 6 < base + 3;
        CHECK_FALSE(overlaps);
      }
    }
    // A leader follows its point's circle and precedes its label: it starts at that circle's edge and ends at
    // that label, which sits clear of every other marker (checked above).
    const t::XmlNode* group = root->by_class("points").at(0);
    const t::XmlNode* circle = nullptr;
    int leaders = 0;
    for (const auto& child : group->children) {
      if (child->name == "circle") circle = child.get();
      if (child->attr("class") != "leader") continue;
      REQUIRE(circle != nullptr);
      ++leaders;
      const double lx = std::stod(child->attr("x1")), ly = std::stod(child->attr("y1"));
      CHECK(std::hypot(std::stod(circle->attr("cx")) - lx, std::stod(circle->attr("cy")) - ly) == Approx(6.0));
    }
    CHECK(leaders > 0);  // the stacked sites needed them
  }
}
