// SPDX-License-Identifier: Apache-2.0
// Every scenario shipped under scenarios/ (recursively) still loads, validates and passes the cheap
// feasibility checks (memory fit, topology, model registry) that `moesim run` performs before
// simulating; a scenario with a `compare:` section also resolves every alternative. No simulation.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/loader.hpp"

namespace fs = std::filesystem;

TEST_CASE("golden::scenarios: every scenario under scenarios/ validates", "[golden][scenarios]") {
  const auto catalog = moesim::catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(MOESIM_SOURCE_ROOT) / "scenarios"))
    if (e.is_regular_file() && (e.path().extension() == ".yaml" || e.path().extension() == ".yml")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 6);  // at least the examples
  for (const auto& f : files) {
    INFO(f.string());
    moesim::scenario::Scenario s;
    if (f.parent_path().filename() == "plan") {
      // scenarios/plan/: `parallelism: auto`, for `moesim plan`; a command that needs one layout refuses them.
      CHECK_THROWS_WITH(moesim::scenario::load_file(f.string(), catalog), Catch::Contains("moesim plan"));
      REQUIRE_NOTHROW(s = moesim::scenario::load_plan_base(f.string(), catalog));
      CHECK_FALSE(s.description.empty());
      std::ifstream in(f);
      std::string first;
      std::getline(in, first);
      CHECK(first == "# SPDX-License-Identifier: Apache-2.0");
      continue;
    }
    REQUIRE_NOTHROW(s = moesim::scenario::load_file(f.string(), catalog));
    CHECK_NOTHROW(moesim::engine::check_feasible(s, catalog));
    CHECK_FALSE(s.description.empty());  // scenarios are documentation: say what they show
    if (!s.compare.is_null() && !s.compare.empty()) {
      std::vector<moesim::scenario::Alternative> alts;
      REQUIRE_NOTHROW(alts = moesim::scenario::load_alternatives(f.string(), catalog));
      CHECK(alts.size() >= 1);
      for (const auto& a : alts) {
        INFO("alternative " << a.label);
        CHECK_NOTHROW(moesim::engine::check_feasible(a.scenario, catalog));
      }
    }
    // Every file carries its licence line (project rule).
    std::ifstream in(f);
    std::string first;
    std::getline(in, first);
    CHECK(first == "# SPDX-License-Identifier: Apache-2.0");
  }
}

TEST_CASE("golden::scenarios: a serving example's description states the arrival rate it sets", "[golden][scenarios]") {
  const auto catalog = moesim::catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  const std::regex stated(R"(arrivals at ([0-9.]+) requests/s)");
  int checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(MOESIM_SOURCE_ROOT) / "scenarios" / "examples")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path().string());
    const moesim::scenario::Scenario s = moesim::scenario::load_file(e.path().string(), catalog);
    std::smatch m;
    if (!s.is_serving() || !std::regex_search(s.description, m, stated)) continue;
    CHECK(std::stod(m[1].str()) == s.serving->arrival.rate_per_s);
    ++checked;
  }
  CHECK(checked >= 3);  // serving-continuous, serving-chunked-prefill, serving-static
}

TEST_CASE("golden::scenarios: the README names every request trace that ships", "[golden][scenarios]") {
  std::ifstream in(fs::path(MOESIM_SOURCE_ROOT) / "README.md");
  std::stringstream readme;
  readme << in.rdbuf();
  int traces = 0;
  for (const auto& e : fs::directory_iterator(fs::path(MOESIM_SOURCE_ROOT) / "scenarios" / "traces")) {
    INFO(e.path().string());
    CHECK(readme.str().find("scenarios/traces/" + e.path().filename().string()) != std::string::npos);
    ++traces;
  }
  CHECK(traces >= 1);
}
