// SPDX-License-Identifier: Apache-2.0
#pragma once
// Golden scenario tests: run an example with the `moesim` binary (`run FILE --json --no-store`), keep the
// key outputs, and compare them with tests/golden/expected/NAME.json. The simulator is deterministic, so
// the tolerance is tight (1e-9 relative). After an intended model change, regenerate the expected files
// with tests/golden/regenerate.sh (it sets MOESIM_GOLDEN_UPDATE=1 and runs this suite) and review the diff.

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::golden {

namespace fs = std::filesystem;
using nlohmann::json;

inline fs::path source_root() { return fs::path(MOESIM_SOURCE_ROOT); }
inline fs::path examples_dir() { return source_root() / "scenarios" / "examples"; }
inline fs::path expected_dir() { return source_root() / "tests" / "golden" / "expected"; }

/** Relative tolerance of every golden comparison, with an absolute floor for values that are zero up
 *  to rounding (e.g. a dropped fraction of 1e-14 from summing per-expert counts). */
constexpr double kRelTol = 1e-9;
constexpr double kAbsTol = 1e-12;

inline const char* regenerate_hint() {
  return "if the change is intended, regenerate the expected files with\n"
         "  tests/golden/regenerate.sh <build-dir>\n"
         "and review the diff of tests/golden/expected/ before committing";
}

/** Result of one `moesim run --json --no-store`. */
struct RunOutput {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
  json parsed;  ///< stdout as JSON when it parses
};

/** Runs `moesim ARGS` (ARGS already shell-quoted), capturing stdout (parsed as JSON when it is) and
 *  stderr; `tag` names the temporary stderr file. */
inline RunOutput run_moesim_args(const std::string& args, const std::string& tag) {
  const fs::path err = fs::temp_directory_path() / ("moesim_golden_" + tag + ".stderr");
  const std::string cmd = "'" + std::string(MOESIM_BINARY) + "' " + args + " 2>'" + err.string() + "'";
  RunOutput out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.stdout_text.append(buf, n);
  const int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err);
  std::stringstream ss;
  ss << e.rdbuf();
  out.stderr_text = ss.str();
  std::error_code ec;
  fs::remove(err, ec);
  try {
    out.parsed = json::parse(out.stdout_text);
  } catch (const std::exception&) {
    out.parsed = json();
  }
  return out;
}

inline RunOutput run_moesim(const fs::path& scenario) {
  return run_moesim_args("run '" + scenario.string() + "' --json --no-store", scenario.stem().string());
}

/** The outputs a golden file pins: time, tokens, efficiency, energy, carbon and the per-phase-kind
 *  critical-path breakdown, plus a few structural facts (chips, datacenters). */
inline json key_outputs(const json& run) {
  json k = json::object();
  if (run.value("kind", "training") == "serving") {
    // Serving: latency percentiles, throughput, goodput, energy and carbon per token, per datacenter.
    for (const char* d : {"ttft_s", "tpot_s", "itl_s", "e2e_s"})
      for (const char* q : {"mean", "p50", "p99"}) k[std::string(d) + "." + q] = run.at(d).at(q);
    for (const char* name : {"requests_measured", "throughput_rps", "output_tokens_per_s", "goodput_fraction", "preemptions",
                             "energy_per_output_token_j", "gco2e_gross_per_1000_tokens", "gco2e_net_per_1000_tokens", "chips"})
      k[name] = run.at(name);
    json dcs = json::array();
    for (const json& d : run.at("datacenters"))
      dcs.push_back({{"name", d.at("name")}, {"chips", d.at("chips")}, {"energy_per_output_token_j", d.at("energy_per_output_token_j")},
                     {"gco2e_gross_per_1000_tokens", d.at("gco2e_gross_per_1000_tokens")}});
    k["datacenters"] = dcs;
    return k;
  }
  for (const char* name : {"step_time_s", "step_time_spread_s", "train_days", "tokens_dropped_fraction", "mfu", "facility_energy_mwh",
                           "co2e_gross_t", "co2e_net_t", "chips"})
    k[name] = run.at(name);
  k["step_breakdown_s"] = run.at("step_breakdown_s");
  json dcs = json::array();
  for (const json& d : run.at("datacenters")) dcs.push_back({{"name", d.at("name")}, {"chips", d.at("chips")}, {"facility_energy_mwh", d.at("facility_energy_mwh")}});
  k["datacenters"] = dcs;
  k["wan_time_per_step_s"] = run.at("metrics").at("wan_time_per_step_s").at("value");
  return k;
}

inline bool numbers_match(double got, double want) {
  return std::fabs(got - want) <= kRelTol * std::max(std::fabs(got), std::fabs(want)) + kAbsTol;
}

/** Every difference between `got` and `want` (same structure; numbers within tolerance), as lines
 *  "path: got X, expected Y". */
inline void diff(const json& got, const json& want, const std::string& path, std::vector<std::string>& out) {
  if (want.is_number() && got.is_number()) {
    if (!numbers_match(got.get<double>(), want.get<double>()))
      out.push_back(path + ": got " + got.dump() + ", expected " + want.dump() + " (relative difference " +
                    std::to_string(std::fabs(got.get<double>() - want.get<double>()) /
                                   std::max(std::fabs(want.get<double>()), kAbsTol)) +
                    ")");
    return;
  }
  if (want.is_object() && got.is_object()) {
    for (const auto& [k, v] : want.items()) {
      if (!got.contains(k)) out.push_back(path + "." + k + ": missing (expected " + v.dump() + ")");
      else diff(got.at(k), v, path + "." + k, out);
    }
    for (const auto& [k, v] : got.items())
      if (!want.contains(k)) out.push_back(path + "." + k + ": unexpected (got " + v.dump() + ")");
    return;
  }
  if (want.is_array() && got.is_array()) {
    if (want.size() != got.size()) {
      out.push_back(path + ": " + std::to_string(got.size()) + " entries, expected " + std::to_string(want.size()));
      return;
    }
    for (std::size_t i = 0; i < want.size(); ++i) diff(got[i], want[i], path + "[" + std::to_string(i) + "]", out);
    return;
  }
  if (got != want) out.push_back(path + ": got " + got.dump() + ", expected " + want.dump());
}

inline bool update_mode() {
  const char* v = std::getenv("MOESIM_GOLDEN_UPDATE");
  return v != nullptr && std::string(v) == "1";
}

/** Compares `got` with the golden file `expected` (or, in update mode, writes it with `source` named
 *  in its comment). */
inline void check_against(const json& got, const fs::path& expected, const std::string& source, const std::string& name) {
  if (update_mode()) {
    json file = {{"_comment", "Golden outputs of " + source + ". Generated by tests/golden/regenerate.sh; do not edit by hand."},
                 {"outputs", got}};
    fs::create_directories(expected.parent_path());
    std::ofstream(expected) << file.dump(2) << "\n";
    WARN("wrote " << expected.string());
    return;
  }
  INFO("expected file " << expected.string());
  REQUIRE(fs::exists(expected));
  const json want = json::parse(std::ifstream(expected)).at("outputs");
  std::vector<std::string> differences;
  diff(got, want, name, differences);
  std::string report;
  for (const auto& d : differences) report += "  " + d + "\n";
  INFO("differences from the golden file:\n" << report << regenerate_hint());
  CHECK(differences.empty());
}

/** Runs scenarios/examples/NAME.yaml and checks it against expected/NAME.json (or rewrites that file
 *  in update mode). Returns the full run JSON for further, example-specific checks. */
inline json check_golden(const std::string& name) {
  const fs::path scenario = examples_dir() / (name + ".yaml");
  REQUIRE(fs::exists(scenario));
  const RunOutput r = run_moesim(scenario);
  INFO("moesim run " << scenario.string() << " --json --no-store\nstderr:\n" << r.stderr_text);
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.parsed.is_object());
  check_against(key_outputs(r.parsed), expected_dir() / (name + ".json"), "scenarios/examples/" + name + ".yaml", name);
  return r.parsed;
}

/** Runs `moesim compare scenarios/compare/FILE.yaml --json` into a fresh temporary store and checks
 *  every alternative's label, status, rank, Pareto mark, days, energy, CO2e and WAN figures against
 *  expected/compare/FILE.json. Returns the full comparison JSON. */
inline json check_golden_comparison(const std::string& file) {
  const fs::path scenario = source_root() / "scenarios" / "compare" / (file + ".yaml");
  REQUIRE(fs::exists(scenario));
  const fs::path db = fs::temp_directory_path() / ("moesim_golden_compare_" + file + "_" + std::to_string(::getpid()) + ".db");
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix, ec);
  const RunOutput r = run_moesim_args("compare '" + scenario.string() + "' --json --db '" + db.string() + "'", "compare_" + file);
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix, ec);
  INFO("moesim compare " << scenario.string() << " --json\nstderr:\n" << r.stderr_text);
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.parsed.is_object());
  json got = json::array();
  for (const json& a : r.parsed.at("alternatives")) {
    json k = json::object();
    for (const char* key : {"label", "status", "rank", "pareto", "train_days", "facility_energy_mwh", "co2e_gross_t", "co2e_net_t",
                            "wan_bytes_per_step", "wan_time_per_step_s"})
      k[key] = a.at(key);
    got.push_back(k);
  }
  check_against(got, expected_dir() / "compare" / (file + ".json"), "scenarios/compare/" + file + ".yaml", file);
  return r.parsed;
}

}  // namespace moesim::golden
