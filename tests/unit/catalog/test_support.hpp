// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the catalog tests.

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim::catalog::test {

/** The repository's real profiles/ directory. */
inline std::string real_profiles() { return std::string(MOESIM_SOURCE_ROOT) + "/profiles"; }

/** tests/data/catalog/<rel>. */
inline std::string data(const std::string& rel) { return std::string(MOESIM_TEST_DATA) + "/catalog/" + rel; }

/** 1-based number of the first line of `file` containing `needle`; throws if none does, so a test
 *  cannot pass by comparing against a line that does not exist. */
inline int line_of(const std::string& file, const std::string& needle) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot open " + file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n)
    if (line.find(needle) != std::string::npos) return n;
  throw std::runtime_error("'" + needle + "' not found in " + file);
}

/** Splits a line on commas (for the unquoted Google CSVs only). */
inline std::vector<std::string> split_commas(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',') out.emplace_back();
    else if (c != '\r') out.back() += c;
  }
  return out;
}

}  // namespace moesim::catalog::test
