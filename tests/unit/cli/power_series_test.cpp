// SPDX-License-Identifier: Apache-2.0
// One quantity, one truth: the stored power-over-one-step series of a training run integrates to the step's
// chip energy that the run's energy figures come from (issue: the series showed ~520 W/chip while the energy
// said ~990 W/chip, because it sampled instantaneous power just after phases ended).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

namespace fs = std::filesystem;

TEST_CASE("cli::run: the training power series integrates to the step's chip energy", "[cli][energy]") {
  const fs::path dir = fs::temp_directory_path() / ("moesim_power_series_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db = (dir / "runs.db").string();
  // The 175B pipeline runs through its steady state: the series carries the extrapolated periods at their mean power.
  for (const char* scenario : {"quickstart.yaml", "examples/tpu-v3-torus-moe.yaml", "published/korthikanti_175b_full.yaml"}) {
    INFO(scenario);
    const std::string cmd = std::string(MOESIM_BINARY) + " --profiles " MOESIM_SOURCE_ROOT "/profiles run " MOESIM_SOURCE_ROOT
                            "/scenarios/" + scenario + " --set training.steps_simulated=1 --json --db " + db + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    REQUIRE(pclose(p) == 0);
    const auto j = nlohmann::json::parse(out);
    const moesim::store::Store store(db, moesim::store::Store::Mode::read_only);
    const auto rec = store.get_run(j.at("run_id").get<long long>());
    const moesim::store::Series* power = nullptr;
    for (const auto& s : rec.series)
      if (s.name == "power_w") power = &s;
    REQUIRE(power != nullptr);
    REQUIRE(power->x.size() >= 2);
    const double step = rec.metric("step_time_s")->value;
    double joules = 0.0;
    for (std::size_t i = 0; i < power->x.size(); ++i) {
      const double end = i + 1 < power->x.size() ? power->x[i + 1] : step;
      joules += power->y[i] * (end - power->x[i]);
    }
    // The run's IT energy is the step's chip energy scaled from the step to the run.
    const double step_joules = rec.metric("it_energy_j")->value * step / rec.metric("duration_s")->value;
    CHECK(joules == Approx(step_joules).epsilon(0.001));
    // So the series' mean power per chip is the summary's.
    CHECK(joules / step / rec.metric("chips")->value == Approx(rec.metric("average_chip_power_w")->value).epsilon(0.001));
  }
  fs::remove_all(dir);
}

TEST_CASE("cli::run: the pipeline steady state is said in the summary and --no-steady-state simulates every micro-batch",
          "[cli][steady]") {
  const fs::path dir = fs::temp_directory_path() / ("moesim_steady_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto run = [&](const std::string& args) {
    const moesim::testing::CliResult r = moesim::testing::run_moesim_in(
        "run " MOESIM_SOURCE_ROOT "/scenarios/published/korthikanti_175b_full.yaml --no-store " + args, dir.string());
    REQUIRE(r.status == 0);
    return r.out;
  };
  const std::string text = run("");
  CHECK(text.find("pipeline steady state: extrapolated from the steps of 8, 9 and 10 micro-batches") != std::string::npos);
  CHECK(run("--no-steady-state").find("pipeline steady state") == std::string::npos);
  const auto fast = nlohmann::json::parse(run("--json")), full = nlohmann::json::parse(run("--json --no-steady-state"));
  auto metric = [](const nlohmann::json& j, const std::string& name) { return j.at("metrics").at(name).at("value").get<double>(); };
  CHECK(metric(fast, "steady_state_from_microbatches") == 8.0);
  CHECK(metric(full, "steady_state_from_microbatches") == 0.0);
  CHECK(fast.at("step_time_s").get<double>() == Approx(full.at("step_time_s").get<double>()).epsilon(1e-9));
  CHECK(fast.at("it_energy_mwh").get<double>() == Approx(full.at("it_energy_mwh").get<double>()).epsilon(1e-9));
  fs::remove_all(dir);
}
