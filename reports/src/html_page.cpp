// SPDX-License-Identifier: Apache-2.0
#include "html_page.hpp"

#include <cctype>

#include <fmt/format.h>

namespace moesim::reports::detail {

namespace {

const char* const kCss = R"(
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; font-size: 14px; line-height: 1.45;
       color: #1a1a1a; background: #ffffff; margin: 24px auto; max-width: 1240px; padding: 0 18px; }
h1 { font-size: 24px; margin: 0 0 6px 0; }
h2 { font-size: 19px; margin: 30px 0 10px 0; padding-bottom: 3px; border-bottom: 2px solid #0072B2; }
h3 { font-size: 15px; margin: 18px 0 6px 0; }
p { margin: 6px 0; }
.meta { color: #3a3a3a; }
nav ul { margin: 6px 0; padding-left: 20px; columns: 2; }
table { border-collapse: collapse; margin: 8px 0 14px 0; font-size: 13px; }
th, td { border: 1px solid #c8c8c8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eaf1f8; font-weight: bold; }
th .unit { font-weight: normal; color: #444444; }
.table-wrap { overflow-x: auto; max-width: 100%; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #f7f7f7; }
tr.total td { font-weight: bold; background: #eef5ee; }
td.src { font-size: 12px; max-width: 760px; }
code { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px; }
pre { background: #f6f6f6; border: 1px solid #dddddd; padding: 10px; overflow: auto; max-height: 520px; font-size: 12px;
      white-space: pre-wrap; overflow-wrap: anywhere; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 10px 0 18px 0; border: 1px solid #e0e0e0; }
.notice { border-left: 4px solid #D55E00; background: #fff3e8; padding: 8px 12px; margin: 10px 0; }
.note { color: #3a3a3a; font-size: 13px; }
footer { margin-top: 36px; color: #555555; font-size: 12px; border-top: 1px solid #cccccc; padding-top: 8px; }
)";

}  // namespace

/** A table cell holding a number: shown rounded, exact in data-value. */
void num_cell(XmlWriter& w, double v, const std::string& unit, const std::string& field, int significant) {
  w.element("td", {{"class", "num"}, {"data-field", field}, {"data-value", format_exact(v)}, {"data-unit", unit}}, format_value(v, significant));
}

/** A number shown as `shown` (a yes/no figure), exact in data-value. */
void num_text_cell(XmlWriter& w, double v, const std::string& unit, const std::string& field, const std::string& shown) {
  w.element("td", {{"class", "num"}, {"data-field", field}, {"data-value", format_exact(v)}, {"data-unit", unit}}, shown);
}

void text_cell(XmlWriter& w, const std::string& text, const std::string& cls) {
  if (cls.empty()) {
    w.element("td", {}, text);
  } else {
    w.element("td", {{"class", cls}}, text);
  }
}

/** Text with a line-break opportunity (<wbr/>) after each '.' and '_', so identifiers such as
 *  compute.cross_attention can wrap in narrow header cells. */
void breakable_text(XmlWriter& w, const std::string& t) {
  std::size_t from = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if ((t[i] == '.' || t[i] == '_') && i + 1 < t.size()) {
      w.text(t.substr(from, i + 1 - from));
      w.empty("wbr");
      from = i + 1;
    }
  }
  w.text(t.substr(from));
}

/** Header cells; a trailing " (unit)" goes on its own line so wide tables fit the page. */
void header_row(XmlWriter& w, const std::vector<std::pair<std::string, bool>>& heads) {
  w.open("thead").open("tr");
  for (const auto& [h, numeric] : heads) {
    w.open("th", numeric ? XmlWriter::Attributes{{"class", "num"}} : XmlWriter::Attributes{});
    const std::size_t unit = h.rfind(" (");
    if (unit != std::string::npos && h.back() == ')') {
      breakable_text(w, h.substr(0, unit));
      w.empty("br");
      w.element("span", {{"class", "unit"}}, h.substr(unit + 1));
    } else {
      breakable_text(w, h);
    }
    w.close("th");
  }
  w.close("tr").close("thead");
}

/** A table inside a horizontally scrollable wrapper (a wide table never widens the page). */
void open_table(XmlWriter& w, const XmlWriter::Attributes& attrs) {
  w.open("div", {{"class", "table-wrap"}});
  w.open("table", attrs);
}
void close_table(XmlWriter& w) { w.close("table").close("div"); }

/** "Header (unit)"; no unit for dimensionless values or where the header already names it ("Chips"). */
std::string with_unit(const std::string& header, const std::string& unit) {
  std::string lower = header;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return unit == "1" || lower == unit ? header : fmt::format("{} ({})", header, unit);
}

void open_page(XmlWriter& w, const std::string& title) {
  w.raw("<!DOCTYPE html>\n");
  w.open("html", {{"xmlns", "http://www.w3.org/1999/xhtml"}, {"lang", "en"}, {"xml:lang", "en"}});
  w.open("head");
  w.empty("meta", {{"charset", "utf-8"}});
  w.empty("meta", {{"name", "viewport"}, {"content", "width=device-width, initial-scale=1"}});
  w.empty("meta", {{"name", "generator"}, {"content", "moesim report"}});
  w.element("title", {}, title);
  w.open("style").raw(kCss).close("style");  // raw: CSS holds no < or &, and HTML does not decode entities in <style>
  w.close("head");
  w.open("body");
}

void close_page(XmlWriter& w, const std::string& db_path, const std::string& version) {
  w.open("footer");
  w.element("p", {}, fmt::format("Generated by moesim {} from the run store {}. Every number in this report is read from the store; "
                                 "derived values (PUE overhead, unit conversions, rankings) say how they were derived.",
                                 version, db_path));
  w.close("footer");
  w.close("body");
  w.close("html");
}

void nav(XmlWriter& w, const std::vector<std::pair<std::string, std::string>>& entries) {
  w.open("nav").element("strong", {}, "Contents").open("ul");
  for (const auto& [id, label] : entries) {
    w.open("li").element("a", {{"href", "#" + id}}, label).close("li");
  }
  w.close("ul").close("nav");
}

/** A two-column key/value table (text values). */
void kv_table(XmlWriter& w, const std::vector<std::pair<std::string, std::string>>& rows, const std::string& cls) {
  if (rows.empty()) return;
  open_table(w, cls.empty() ? XmlWriter::Attributes{} : XmlWriter::Attributes{{"class", cls}});
  w.open("tbody");
  for (const auto& [k, v] : rows) {
    w.open("tr").element("th", {}, k).element("td", {{"class", "src"}}, v).close("tr");
  }
  w.close("tbody");
  close_table(w);
}


}  // namespace moesim::reports::detail
