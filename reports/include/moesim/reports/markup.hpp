// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

/** Escaping and number formatting shared by the HTML, Markdown and CSV writers. */
namespace moesim::reports {

/** Text made safe for XML/XHTML content and quoted attribute values: & < > " ' become entities;
 *  control characters XML 1.0 forbids (all below U+0020 but tab, newline, carriage return) become
 *  U+FFFD. */
std::string xml_escape(std::string_view text);

/** Text made safe for a cell of a GitHub-flavoured Markdown table: backslash, | * ` [ ] escaped,
 *  < > & as HTML entities, `_` escaped where it could start or end emphasis (not inside a word),
 *  newlines turned into spaces. */
std::string markdown_escape(std::string_view text);

/** One CSV field (RFC 4180): quoted when it holds a comma, a double quote, CR or LF; quotes doubled. */
std::string csv_field(std::string_view text);

/** A value for people: `significant` significant digits, fixed notation between 1e-4 and 1e7,
 *  scientific outside; whole numbers without decimals (1024, not 1024.00); "–" for NaN,
 *  "inf"/"-inf" for infinities. */
std::string format_value(double v, int significant = 4);

/** A value for machines: the shortest decimal form that reads back to the same double ("nan",
 *  "inf", "-inf" for the non-finite values). Used for data-value attributes and CSV cells. */
std::string format_exact(double v);

/** Minimal XHTML writer: every element opened is closed (close() checks the name), attribute values
 *  and text escaped. Used for the HTML report and its inline SVG. */
class XmlWriter {
 public:
  using Attributes = std::vector<std::pair<std::string, std::string>>;
  /** `<name attrs>`; must be matched by close(name). */
  XmlWriter& open(const std::string& name, const Attributes& attrs = {});
  /** `</name>`; throws std::logic_error when `name` is not the innermost open element (a bug). */
  XmlWriter& close(const std::string& name);
  /** `<name attrs>text</name>` (text escaped). */
  XmlWriter& element(const std::string& name, const Attributes& attrs, std::string_view text);
  /** `<name attrs/>`. */
  XmlWriter& empty(const std::string& name, const Attributes& attrs = {});
  /** Escaped text. */
  XmlWriter& text(std::string_view t);
  /** Markup produced by another XmlWriter (already balanced and escaped). */
  XmlWriter& raw(std::string_view markup);
  /** The document; throws std::logic_error when elements are still open (a bug). */
  std::string str() const;
  /** Elements still open (0 once the document is complete). */
  std::size_t depth() const { return stack_.size(); }

 private:
  std::string out_;
  std::vector<std::string> stack_;
};

}  // namespace moesim::reports
