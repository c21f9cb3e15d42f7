// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private to the catalog layer: a small RFC 4180 CSV reader for the shipped grid datasets.

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moesim::catalog::detail {

/** One data row with the 1-based line number it starts on. */
struct CsvRow {
  int line = 0;
  std::vector<std::string> cells;
};

/** A CSV file read whole: header names and rows. Quoted cells ("a, b", "" for a quote), CRLF line
 *  ends and a UTF-8 byte-order mark are handled. Every row must have as many cells as the header;
 *  otherwise InputError(file, line). Blank lines are skipped. */
class CsvTable {
 public:
  static CsvTable read(const std::string& file);

  const std::string& file() const { return file_; }
  const std::vector<std::string>& header() const { return header_; }
  const std::vector<CsvRow>& rows() const { return rows_; }
  /** Index of column `name`; throws InputError (line 1) listing the columns when absent. */
  std::size_t column(const std::string& name) const;

 private:
  std::string file_;
  std::vector<std::string> header_;
  std::vector<CsvRow> rows_;
};

}  // namespace moesim::catalog::detail
