// SPDX-License-Identifier: Apache-2.0
#pragma once
// The pieces every HTML page of the reports shares: the page frame (inline CSS, header, footer), navigation,
// tables whose numeric cells carry their exact value (data-value, data-unit) and headers with units.
#include <string>
#include <utility>
#include <vector>

#include "moesim/reports/markup.hpp"
#include "moesim/store/store.hpp"

namespace moesim::reports::detail {

/** A table cell holding a number: shown rounded, exact in data-value. */
void num_cell(XmlWriter& w, double v, const std::string& unit, const std::string& field, int significant = 4);
/** A number shown as `shown` (a yes/no figure), exact in data-value. */
void num_text_cell(XmlWriter& w, double v, const std::string& unit, const std::string& field, const std::string& shown);
void text_cell(XmlWriter& w, const std::string& text, const std::string& cls = "");
/** Text with a line-break opportunity (<wbr/>) after each '.' and '_', so identifiers such as
 *  compute.cross_attention can wrap in narrow header cells. */
void breakable_text(XmlWriter& w, const std::string& t);
/** Header cells (text, numeric); a trailing " (unit)" goes on its own line so wide tables fit the page. */
void header_row(XmlWriter& w, const std::vector<std::pair<std::string, bool>>& heads);
/** A table inside a horizontally scrollable wrapper (a wide table never widens the page). */
void open_table(XmlWriter& w, const XmlWriter::Attributes& attrs);
void close_table(XmlWriter& w);
/** "Header (unit)"; no unit for dimensionless values or where the header already names it ("Chips"). */
std::string with_unit(const std::string& header, const std::string& unit);
/** <!DOCTYPE>, <html>, <head> with the inline CSS and `title`, and <body> opened. */
void open_page(XmlWriter& w, const std::string& title);
/** The footer (store and moesim version), </body></html>. */
void close_page(XmlWriter& w, const std::string& db_path, const std::string& version);

/** The "Data sources and licences" section of a page about `runs` (html_report.cpp): every dataset's licence,
 *  the attribution it requires, and the datacenters that used it. */
void html_licences_section(XmlWriter& w, const std::vector<store::RunRecord>& runs);
/** A contents list of (section id, label). */
void nav(XmlWriter& w, const std::vector<std::pair<std::string, std::string>>& entries);
/** A two-column key/value table (text values). */
void kv_table(XmlWriter& w, const std::vector<std::pair<std::string, std::string>>& rows, const std::string& cls = "");

}  // namespace moesim::reports::detail
