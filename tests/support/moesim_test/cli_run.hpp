// SPDX-License-Identifier: Apache-2.0
#pragma once
// Running the built `moesim` binary from the CLI tests: its exit status, stdout and stderr.
// Needs MOESIM_BINARY and MOESIM_SOURCE_ROOT (set by tests/CMakeLists.txt for the cli suite).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace moesim::testing {

struct CliResult {
  int status = -1;  ///< exit status; -1 if killed by a signal
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/** A fresh directory $TMPDIR/moesim_<prefix>_<name>_<pid> (kept after the test, for inspection on failure). */
inline std::string scratch_dir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("moesim_" + prefix + "_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

/** Where `moesim` runs: in the test's working directory, or in `dir` (for relative paths and files it writes). */
enum class RunIn { test_cwd, dir };

/** `moesim --profiles <source>/profiles ARGS`, stderr captured in DIR/stderr.txt. `prefix` goes before the binary
 *  (e.g. "env -u SLURM_ARRAY_TASK_ID VAR=1 "). */
inline CliResult run_moesim_in(const std::string& args, const std::string& dir, RunIn where = RunIn::test_cwd,
                               const std::string& prefix = "") {
  const std::string err_file = dir + "/stderr.txt";
  const std::string cmd = (where == RunIn::dir ? "cd " + dir + " && " : std::string()) + prefix + std::string(MOESIM_BINARY) +
                          " --profiles " MOESIM_SOURCE_ROOT "/profiles " + args + " 2>" + err_file;
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof(buf), p)) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = slurp(err_file);
  return r;
}

}  // namespace moesim::testing
