// SPDX-License-Identifier: Apache-2.0
#pragma once
// A small strict XML 1.0 well-formedness checker for the report tests: it parses a document into a
// tree and throws on anything a conforming XML parser rejects that our writer could produce
// (unclosed or mismatched tags, unquoted or duplicate attributes, '<' in attribute values, bare '&',
// unknown entities, forbidden control characters, invalid UTF-8, more than one root element).
// Written for these tests; it does not handle DTD internal subsets or CDATA sections, which the
// reports never emit (and it rejects them).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim::reports::test {

struct XmlNode {
  std::string name;  ///< element name, or "#text" for a text node
  std::map<std::string, std::string> attrs;
  std::vector<std::unique_ptr<XmlNode>> children;
  std::string text;  ///< decoded text of a "#text" node
  XmlNode* parent = nullptr;

  bool is_text() const { return name == "#text"; }
  bool has(const std::string& a) const { return attrs.count(a) != 0; }
  std::string attr(const std::string& a) const {
    auto it = attrs.find(a);
    return it == attrs.end() ? std::string() : it->second;
  }
  /** The attribute on this element or the nearest ancestor that has it. */
  std::string inherited(const std::string& a) const {
    for (const XmlNode* n = this; n != nullptr; n = n->parent)
      if (n->has(a)) return n->attr(a);
    return "";
  }
  /** All text below this node, in document order. */
  std::string all_text() const {
    if (is_text()) return text;
    std::string s;
    for (const auto& c : children) s += c->all_text();
    return s;
  }
  /** Every element below (and including) this one for which `pred` holds, in document order. */
  std::vector<const XmlNode*> find_all(const std::function<bool(const XmlNode&)>& pred) const {
    std::vector<const XmlNode*> out;
    collect(pred, out);
    return out;
  }
  std::vector<const XmlNode*> by_name(const std::string& n) const {
    return find_all([&](const XmlNode& x) { return x.name == n; });
  }
  /** Elements whose class attribute contains the word `cls`. */
  std::vector<const XmlNode*> by_class(const std::string& cls) const {
    return find_all([&](const XmlNode& x) {
      const std::string c = " " + x.attr("class") + " ";
      return c.find(" " + cls + " ") != std::string::npos;
    });
  }
  /** The first element with id `id`, or nullptr. */
  const XmlNode* by_id(const std::string& id) const {
    auto v = find_all([&](const XmlNode& x) { return x.attr("id") == id; });
    return v.empty() ? nullptr : v.front();
  }

 private:
  void collect(const std::function<bool(const XmlNode&)>& pred, std::vector<const XmlNode*>& out) const {
    if (!is_text() && pred(*this)) out.push_back(this);
    for (const auto& c : children) c->collect(pred, out);
  }
};

class XmlParser {
 public:
  explicit XmlParser(const std::string& doc) : s_(doc) {}

  /** Parses the whole document; returns its root element. Throws std::runtime_error("line:col: ..."). */
  std::unique_ptr<XmlNode> parse() {
    check_utf8();
    skip_prolog();
    if (!at("<")) fail("expected the root element");
    auto root = element(nullptr);
    skip_misc();
    if (i_ != s_.size()) fail("content after the root element");
    return root;
  }

 private:
  const std::string& s_;
  std::size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    std::size_t line = 1, col = 1;
    for (std::size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    const std::size_t from = i_ >= 30 ? i_ - 30 : 0;
    throw std::runtime_error(std::to_string(line) + ":" + std::to_string(col) + ": " + what + " near \"" + s_.substr(from, 60) + "\"");
  }
  bool at(const char* t) const { return s_.compare(i_, std::char_traits<char>::length(t), t) == 0; }
  void expect(const char* t) {
    if (!at(t)) fail(std::string("expected '") + t + "'");
    i_ += std::char_traits<char>::length(t);
  }
  static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void skip_space() {
    while (i_ < s_.size() && space(s_[i_])) ++i_;
  }
  static bool name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || static_cast<unsigned char>(c) >= 0x80;
  }
  static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }
  std::string name() {
    if (i_ >= s_.size() || !name_start(s_[i_])) fail("expected a name");
    const std::size_t b = i_;
    while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    return s_.substr(b, i_ - b);
  }

  void check_utf8() {
    for (std::size_t k = 0; k < s_.size();) {
      const unsigned char c = static_cast<unsigned char>(s_[k]);
      int n = 0;
      std::uint32_t cp = 0;
      if (c < 0x80) {
        n = 0;
        cp = c;
      } else if ((c & 0xE0) == 0xC0) {
        n = 1;
        cp = c & 0x1F;
      } else if ((c & 0xF0) == 0xE0) {
        n = 2;
        cp = c & 0x0F;
      } else if ((c & 0xF8) == 0xF0) {
        n = 3;
        cp = c & 0x07;
      } else {
        i_ = k;
        fail("invalid UTF-8 lead byte");
      }
      if (k + static_cast<std::size_t>(n) >= s_.size() + (n == 0 ? 1 : 0)) {
        i_ = k;
        fail("truncated UTF-8 sequence");
      }
      for (int m = 1; m <= n; ++m) {
        const unsigned char d = static_cast<unsigned char>(s_[k + static_cast<std::size_t>(m)]);
        if ((d & 0xC0) != 0x80) {
          i_ = k;
          fail("invalid UTF-8 continuation byte");
        }
        cp = (cp << 6) | (d & 0x3F);
      }
      if (cp < 0x20 && cp != 0x9 && cp != 0xA && cp != 0xD) {
        i_ = k;
        fail("control character not allowed in XML 1.0");
      }
      k += static_cast<std::size_t>(n) + 1;
    }
  }

  void comment() {
    expect("<!--");
    const std::size_t e = s_.find("-->", i_);
    if (e == std::string::npos) fail("unterminated comment");
    i_ = e + 3;
  }
  void pi() {
    expect("<?");
    const std::size_t e = s_.find("?>", i_);
    if (e == std::string::npos) fail("unterminated processing instruction");
    i_ = e + 2;
  }
  void skip_misc() {
    for (;;) {
      skip_space();
      if (at("<!--")) {
        comment();
      } else if (at("<?")) {
        pi();
      } else {
        return;
      }
    }
  }
  void skip_prolog() {
    skip_misc();
    if (at("<!DOCTYPE")) {
      i_ += 9;
      while (i_ < s_.size() && s_[i_] != '>') {
        if (s_[i_] == '[') fail("DTD internal subsets are not supported");
        ++i_;
      }
      expect(">");
    }
    skip_misc();
  }

  std::string entity() {
    expect("&");
    const std::size_t e = s_.find(';', i_);
    if (e == std::string::npos || e - i_ > 10) fail("'&' that starts no entity reference");
    const std::string ref = s_.substr(i_, e - i_);
    i_ = e + 1;
    if (ref == "amp") return "&";
    if (ref == "lt") return "<";
    if (ref == "gt") return ">";
    if (ref == "quot") return "\"";
    if (ref == "apos") return "'";
    if (ref.size() > 1 && ref[0] == '#') {
      std::uint32_t cp = 0;
      try {
        cp = ref[1] == 'x' ? static_cast<std::uint32_t>(std::stoul(ref.substr(2), nullptr, 16)) : static_cast<std::uint32_t>(std::stoul(ref.substr(1)));
      } catch (...) {
        fail("bad character reference &" + ref + ";");
      }
      if (cp == 0 || cp > 0x10FFFF || (cp < 0x20 && cp != 0x9 && cp != 0xA && cp != 0xD)) fail("character reference to a forbidden character");
      std::string out;
      if (cp < 0x80) {
        out += static_cast<char>(cp);
      } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      }
      return out;
    }
    fail("unknown entity &" + ref + "; (XML defines only amp, lt, gt, quot, apos)");
  }

  std::unique_ptr<XmlNode> element(XmlNode* parent) {
    expect("<");
    auto node = std::make_unique<XmlNode>();
    node->parent = parent;
    node->name = name();
    for (;;) {
      const bool had_space = i_ < s_.size() && space(s_[i_]);
      skip_space();
      if (at("/>")) {
        i_ += 2;
        return node;
      }
      if (at(">")) {
        ++i_;
        break;
      }
      if (!had_space) fail("attributes must be separated by white space");
      const std::string a = name();
      skip_space();
      expect("=");
      skip_space();
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) fail("attribute value of '" + a + "' is not quoted");
      const char q = s_[i_++];
      std::string v;
      while (i_ < s_.size() && s_[i_] != q) {
        if (s_[i_] == '<') fail("'<' in the value of attribute '" + a + "'");
        if (s_[i_] == '&') {
          v += entity();
        } else {
          v += s_[i_++];
        }
      }
      if (i_ >= s_.size()) fail("unterminated attribute value");
      ++i_;
      if (node->attrs.count(a)) fail("duplicate attribute '" + a + "'");
      node->attrs[a] = v;
    }
    // Content.
    std::string text;
    auto flush = [&]() {
      if (text.empty()) return;
      auto t = std::make_unique<XmlNode>();
      t->name = "#text";
      t->text = text;
      t->parent = node.get();
      node->children.push_back(std::move(t));
      text.clear();
    };
    for (;;) {
      if (i_ >= s_.size()) fail("element <" + node->name + "> is never closed");
      if (at("</")) {
        flush();
        i_ += 2;
        const std::string end = name();
        if (end != node->name) fail("</" + end + "> closes <" + node->name + ">");
        skip_space();
        expect(">");
        return node;
      }
      if (at("<!--")) {
        flush();
        comment();
      } else if (at("<![CDATA[")) {
        fail("CDATA sections are not expected in reports");
      } else if (at("<?")) {
        flush();
        pi();
      } else if (at("<")) {
        flush();
        node->children.push_back(element(node.get()));
      } else if (at("&")) {
        text += entity();
      } else if (at("]]>")) {
        fail("']]>' in text");
      } else {
        text += s_[i_++];
      }
    }
  }
};

/** Parses `doc`, throwing std::runtime_error when it is not well-formed XML. */
inline std::unique_ptr<XmlNode> parse_xml(const std::string& doc) { return XmlParser(doc).parse(); }

}  // namespace moesim::reports::test
