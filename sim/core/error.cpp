// SPDX-License-Identifier: Apache-2.0
#include "moesim/core/error.hpp"

#include <fmt/format.h>

namespace moesim {

namespace {
std::string format_location(const std::string& file, int line, int column, const std::string& key,
                            const std::string& message) {
  std::string where = file.empty() ? "<input>" : file;
  if (line > 0) where += fmt::format(":{}", line);
  if (line > 0 && column > 0) where += fmt::format(":{}", column);
  if (key.empty()) return fmt::format("{}: {}", where, message);
  return fmt::format("{}: {}: {}", where, key, message);
}
}  // namespace

InputError::InputError(std::string file, int line, int column, std::string key, const std::string& message)
    : Error(format_location(file, line, column, key, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      message_(message) {}

}  // namespace moesim
