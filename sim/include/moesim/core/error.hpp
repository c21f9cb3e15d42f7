// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <stdexcept>
#include <string>

namespace moesim {

/** Base class of every error moesim reports to the user (bad input, missing data, store failures).
 *  The CLI prints what() and exits non-zero; library code never calls exit(). */
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/** The model does not fit its devices' memory (training: the per-device estimate; serving: a replica's weights and
 *  activation workspace). An answer about the scenario rather than a broken input: callers turn it into a verdict
 *  (`moesim validate`'s `fits` rows), explain it (engine::check_feasible) or name the scenario file in it. */
class MemoryFitError : public Error {
 public:
  using Error::Error;
};

/** An error located in an input file (scenario, profile, CSV): "file:line:column: key: message".
 *  line/column are 1-based; 0 means unknown. */
class InputError : public Error {
 public:
  InputError(std::string file, int line, int column, std::string key, const std::string& message);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& key() const { return key_; }
  /** The message without the location prefix. */
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string message_;
};

}  // namespace moesim
