// SPDX-License-Identifier: Apache-2.0
#include "moesim/reports/markup.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

namespace moesim::reports {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += "\xEF\xBF\xBD";  // U+FFFD: XML 1.0 allows no other C0 control character
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string markdown_escape(std::string_view text) {
  auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || static_cast<unsigned char>(c) >= 0x80; };
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case '\\': case '|': case '*': case '`': case '[': case ']':
        out += '\\';
        out += c;
        break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '\n': case '\r': out += ' '; break;
      case '_': {
        // GFM: an underscore between two word characters never delimits emphasis.
        const bool inside = i > 0 && i + 1 < text.size() && word_char(text[i - 1]) && word_char(text[i + 1]);
        if (!inside) out += '\\';
        out += c;
        break;
      }
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
          out += "\xEF\xBF\xBD";
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string format_value(double v, int significant) {
  if (std::isnan(v)) return "\xE2\x80\x93";  // en dash: no value
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0.0) return "0";
  significant = std::max(1, significant);
  const double a = std::fabs(v);
  if (a >= 1e7 || a < 1e-4) return fmt::format("{:.{}e}", v, significant - 1);
  if (v == std::round(v)) return fmt::format("{:.0f}", v);  // counts and whole numbers: no ".00"
  const int magnitude = static_cast<int>(std::floor(std::log10(a)));
  const int decimals = std::clamp(significant - 1 - magnitude, 0, 12);
  return fmt::format("{:.{}f}", v, decimals);
}

std::string format_exact(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);  // fmt prints the shortest representation that round-trips
}

namespace {
// Elements after whose end tag a newline keeps the HTML source readable without changing layout.
const std::set<std::string>& block_elements() {
  static const std::set<std::string> names = {"html", "head", "body", "section", "table", "thead", "tbody", "tr",
                                              "p", "h1", "h2", "h3", "div", "svg", "ul", "ol", "li", "pre", "dl",
                                              "style", "title", "meta", "g", "header", "footer", "details", "figure",
                                              "figcaption", "caption", "dd", "dt", "nav"};
  return names;
}

std::string attributes(const XmlWriter::Attributes& attrs) {
  std::string out;
  for (const auto& [k, v] : attrs) {
    out += ' ';
    out += k;
    out += "=\"";
    out += xml_escape(v);
    out += '"';
  }
  return out;
}
}  // namespace

XmlWriter& XmlWriter::open(const std::string& name, const Attributes& attrs) {
  out_ += '<' + name + attributes(attrs) + '>';
  stack_.push_back(name);
  return *this;
}

XmlWriter& XmlWriter::close(const std::string& name) {
  if (stack_.empty() || stack_.back() != name)
    throw std::logic_error("XmlWriter: closing <" + name + "> but the innermost open element is <" +
                           (stack_.empty() ? std::string("none") : stack_.back()) + ">");
  stack_.pop_back();
  out_ += "</" + name + '>';
  if (block_elements().count(name)) out_ += '\n';
  return *this;
}

XmlWriter& XmlWriter::element(const std::string& name, const Attributes& attrs, std::string_view t) {
  open(name, attrs);
  text(t);
  return close(name);
}

XmlWriter& XmlWriter::empty(const std::string& name, const Attributes& attrs) {
  out_ += '<' + name + attributes(attrs) + "/>";
  if (block_elements().count(name)) out_ += '\n';
  return *this;
}

XmlWriter& XmlWriter::text(std::string_view t) {
  out_ += xml_escape(t);
  return *this;
}

XmlWriter& XmlWriter::raw(std::string_view markup) {
  out_ += markup;
  return *this;
}

std::string XmlWriter::str() const {
  if (!stack_.empty()) throw std::logic_error("XmlWriter: <" + stack_.back() + "> is still open");
  return out_;
}

}  // namespace moesim::reports
