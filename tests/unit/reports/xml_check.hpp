// SPDX-License-Identifier: Apache-2.0
#pragma once
// XML well-formedness for the report tests: Expat parses a document into a small tree (XmlNode) that the
// tests query, and anything a conforming XML parser rejects throws.
#include <expat.h>

#include <algorithm>
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

/** Builds an XmlNode tree with Expat (Debian libexpat1-dev), a conforming non-validating XML 1.0 parser:
 *  it rejects unclosed or mismatched tags, unquoted or duplicate attributes, '<' in attribute values, a
 *  bare '&', entities no DTD declares (HTML's &nbsp;), forbidden control characters, invalid UTF-8 and a
 *  second root element. The reports never emit CDATA sections or a DTD internal subset; those are
 *  refused here too, so a report that starts emitting them is noticed. */
class XmlParser {
 public:
  explicit XmlParser(const std::string& doc) : s_(doc) {}

  /** Parses the whole document; returns its root element. Throws std::runtime_error("line:col: ..."). */
  std::unique_ptr<XmlNode> parse() {
    std::unique_ptr<XML_ParserStruct, decltype(&XML_ParserFree)> p(XML_ParserCreate("UTF-8"), &XML_ParserFree);
    if (!p) throw std::runtime_error("XML_ParserCreate failed");
    parser_ = p.get();
    XML_SetUserData(parser_, this);
    XML_SetElementHandler(parser_, &XmlParser::on_start, &XmlParser::on_end);
    XML_SetCharacterDataHandler(parser_, &XmlParser::on_text);
    XML_SetStartCdataSectionHandler(parser_, &XmlParser::on_cdata);
    XML_SetStartDoctypeDeclHandler(parser_, &XmlParser::on_doctype);
    if (XML_Parse(parser_, s_.data(), static_cast<int>(s_.size()), XML_TRUE) == XML_STATUS_ERROR) {
      if (!error_.empty()) throw std::runtime_error(error_);
      fail(XML_ErrorString(XML_GetErrorCode(parser_)));
    }
    if (!root_) fail("no root element");
    return std::move(root_);
  }

 private:
  const std::string& s_;
  XML_Parser parser_ = nullptr;
  std::unique_ptr<XmlNode> root_;
  XmlNode* open_ = nullptr;  ///< innermost open element
  std::string error_;        ///< a refusal of ours (CDATA, internal subset), which stops Expat

  [[noreturn]] void fail(const std::string& what) const {
    const auto line = XML_GetCurrentLineNumber(parser_);
    const auto col = XML_GetCurrentColumnNumber(parser_) + 1;
    const auto at = static_cast<std::size_t>(std::max<XML_Index>(0, XML_GetCurrentByteIndex(parser_)));
    const std::size_t from = at >= 30 ? at - 30 : 0;
    throw std::runtime_error(std::to_string(line) + ":" + std::to_string(col) + ": " + what + " near \"" +
                             s_.substr(std::min(from, s_.size()), 60) + "\"");
  }
  void refuse(const std::string& what) {
    if (error_.empty()) {
      try {
        fail(what);
      } catch (const std::runtime_error& e) {
        error_ = e.what();
      }
    }
    XML_StopParser(parser_, XML_FALSE);
  }

  static void on_start(void* self, const XML_Char* name, const XML_Char** attrs) {
    auto* x = static_cast<XmlParser*>(self);
    auto node = std::make_unique<XmlNode>();
    node->name = name;
    node->parent = x->open_;
    for (const XML_Char** a = attrs; *a != nullptr; a += 2) node->attrs[a[0]] = a[1];
    XmlNode* raw = node.get();
    if (x->open_ == nullptr) x->root_ = std::move(node);
    else x->open_->children.push_back(std::move(node));
    x->open_ = raw;
  }
  static void on_end(void* self, const XML_Char* /*name*/) {
    auto* x = static_cast<XmlParser*>(self);
    x->open_ = x->open_->parent;
  }
  /** Character data arrives in pieces; consecutive pieces join into one text node. */
  static void on_text(void* self, const XML_Char* text, int len) {
    auto* x = static_cast<XmlParser*>(self);
    if (x->open_ == nullptr) return;
    auto& kids = x->open_->children;
    if (kids.empty() || !kids.back()->is_text()) {
      auto t = std::make_unique<XmlNode>();
      t->name = "#text";
      t->parent = x->open_;
      kids.push_back(std::move(t));
    }
    kids.back()->text.append(text, static_cast<std::size_t>(len));
  }
  static void on_cdata(void* self) { static_cast<XmlParser*>(self)->refuse("CDATA sections are not expected in reports"); }
  static void on_doctype(void* self, const XML_Char* /*name*/, const XML_Char* /*sysid*/, const XML_Char* /*pubid*/,
                         int has_internal_subset) {
    if (has_internal_subset != 0) static_cast<XmlParser*>(self)->refuse("a DTD internal subset is not expected in reports");
  }
};

/** Parses `doc`, throwing std::runtime_error when it is not well-formed XML. */
inline std::unique_ptr<XmlNode> parse_xml(const std::string& doc) { return XmlParser(doc).parse(); }

}  // namespace moesim::reports::test
