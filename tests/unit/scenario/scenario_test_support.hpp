// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the scenario tests: the real catalog, a small valid scenario to mutate line by
// line, and lookups of where a given text sits in a YAML document (so expected line/column numbers are
// computed from the text under test, never copied from the loader's output).

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim_test/input_error.hpp"

namespace moesim::scenario::test {

/** The repository's real profiles/ catalog, loaded once per test process. */
inline const catalog::Catalog& real_catalog() {
  static const catalog::Catalog cat = catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return cat;
}

/** tests/data/scenario/<rel>. */
inline std::string data(const std::string& rel) { return std::string(MOESIM_TEST_DATA) + "/scenario/" + rel; }

/** Reads a whole file (throws if it cannot). */
inline std::string slurp(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot open " + file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/** A small valid decoder-only MoE scenario on one 8-GPU H100 node, one key per line so a test can
 *  change exactly one line. 64 sequences of 1024 tokens per step over 8 expert-parallel replicas. */
inline std::string base_yaml() {
  return "name: base\n"
         "model:\n"
         "  layers: 4\n"
         "  d_model: 512\n"
         "  d_ff: 2048\n"
         "  heads: 8\n"
         "  experts: 8\n"
         "  moe_every: 2\n"
         "  top_k: 2\n"
         "  vocab: 32000\n"
         "  seq_len: 1024\n"
         "training:\n"
         "  tokens: 1.0e9\n"
         "  batch_tokens: 65536\n"
         "parallelism:\n"
         "  expert: 8\n"
         "cluster:\n"
         "  accelerator: h100\n"
         "  count: 8\n"
         "placement:\n"
         "  - datacenter: gcp_us_central1_2023\n";
}

/** Splits text into lines (without the newline). */
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

inline std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

/** `text` with the line equal to `old_line` replaced by `new_text` (which may span several lines,
 *  or be empty to delete the line). Throws unless exactly one line matches, so a fixture typo cannot
 *  turn a test into a no-op. */
inline std::string replace_line(const std::string& text, const std::string& old_line, const std::string& new_text) {
  auto lines = lines_of(text);
  int found = 0;
  std::vector<std::string> out;
  for (const auto& l : lines) {
    if (l == old_line) {
      ++found;
      if (!new_text.empty()) {
        for (const auto& n : lines_of(new_text)) out.push_back(n);
      }
    } else {
      out.push_back(l);
    }
  }
  if (found != 1) throw std::runtime_error("replace_line: '" + old_line + "' matched " + std::to_string(found) + " lines");
  return join_lines(out);
}

inline std::string remove_line(const std::string& text, const std::string& old_line) {
  return replace_line(text, old_line, "");
}

/** 1-based line of the first line of `text` containing `needle`; throws if none. */
inline int line_in(const std::string& text, const std::string& needle) {
  const auto lines = lines_of(text);
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].find(needle) != std::string::npos) return static_cast<int>(i) + 1;
  throw std::runtime_error("'" + needle + "' not found");
}

/** 1-based column where `part` starts on the first line containing `needle`; throws if absent. */
inline int column_in(const std::string& text, const std::string& needle, const std::string& part) {
  const auto lines = lines_of(text);
  const std::string& l = lines.at(static_cast<std::size_t>(line_in(text, needle) - 1));
  const auto pos = l.find(part, l.find(needle));
  if (pos == std::string::npos) throw std::runtime_error("'" + part + "' not found after '" + needle + "'");
  return static_cast<int>(pos) + 1;
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

using moesim::testing::expect_input_error;

/** Loads `yaml` (labelled "test.yaml") and returns the InputError it must raise. */
inline InputError load_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return expect_input_error([&] { load_string(yaml, "test.yaml", real_catalog(), overrides); });
}

inline Scenario load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return load_string(yaml, "test.yaml", real_catalog(), overrides);
}

}  // namespace moesim::scenario::test
