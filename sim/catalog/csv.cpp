// SPDX-License-Identifier: Apache-2.0
#include "csv.hpp"

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::catalog::detail {

CsvTable CsvTable::read(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file, 0, 0, "", "cannot open CSV file");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.rfind("\xEF\xBB\xBF", 0) == 0) data.erase(0, 3);  // UTF-8 byte-order mark

  CsvTable table;
  table.file_ = file;
  std::vector<std::vector<std::string>> records;
  std::vector<int> record_lines;

  std::vector<std::string> cells;
  std::string cell;
  bool in_quotes = false;
  bool any = false;  // the current record has content
  int line = 1;
  int record_line = 1;
  auto end_record = [&]() {
    cells.push_back(cell);
    cell.clear();
    const bool blank = !any && cells.size() == 1 && cells.front().empty();
    if (!blank) {
      records.push_back(cells);
      record_lines.push_back(record_line);
    }
    cells.clear();
    any = false;
  };
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < data.size() && data[i + 1] == '"') {
          cell += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        cell += c;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_quotes = true;
        any = true;
        break;
      case ',':
        cells.push_back(cell);
        cell.clear();
        any = true;
        break;
      case '\r':
        break;  // CRLF: the '\n' ends the record
      case '\n':
        end_record();
        ++line;
        record_line = line;
        break;
      default:
        cell += c;
        any = true;
    }
  }
  if (in_quotes) throw InputError(file, record_line, 0, "", "unterminated quoted cell");
  if (any || !cell.empty() || !cells.empty()) end_record();

  if (records.empty()) throw InputError(file, 1, 0, "", "empty CSV file: expected a header row");
  table.header_ = records.front();
  for (std::size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() != table.header_.size()) {
      throw InputError(file, record_lines[r], 0, "",
                       fmt::format("expected {} cells (as the header has), got {}", table.header_.size(),
                                   records[r].size()));
    }
    table.rows_.push_back(CsvRow{record_lines[r], std::move(records[r])});
  }
  return table;
}

std::size_t CsvTable::column(const std::string& name) const {
  for (std::size_t i = 0; i < header_.size(); ++i)
    if (header_[i] == name) return i;
  throw InputError(file_, 1, 0, name, fmt::format("missing column; the header has: {}", text::join(header_)));
}

}  // namespace moesim::catalog::detail
