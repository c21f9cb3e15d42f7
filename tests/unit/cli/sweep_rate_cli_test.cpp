// SPDX-License-Identifier: Apache-2.0
// `moesim sweep --max-rate`: each point of a serving sweep is a capacity search (the highest arrival rate meeting
// the P99 SLOs), stored as the run at that rate; the same search as `run --max-rate` on that point, resumable under
// its own identity, and points where no rate meets the SLOs are skipped with the search's reason.
#include <catch2/catch.hpp>

#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

using nlohmann::json;
using moesim::store::RunStatus;
using moesim::store::Store;

namespace {

using Result = moesim::testing::CliResult;

Result run_moesim(const std::string& args, const std::string& dir) {
  return moesim::testing::run_moesim_in(args, dir, moesim::testing::RunIn::test_cwd,
                                        "env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN ");
}

/** A number as the CSV report writes it (the shortest text that reads back the same double). */
std::string fmt_rate(double x) { return "," + fmt::format("{}", x) + ","; }

// Six points (three pool layouts x two accelerators) of about a second each.
const std::string kRateSweep = std::string(MOESIM_TEST_DATA) + "/cli/serving_rate_sweep.yaml";

}  // namespace

TEST_CASE("cli::sweep --max-rate: every point is a capacity search, stored at the rate it found", "[cli][sweep][max-rate]") {
  const std::string dir = moesim::testing::scratch_dir("sweep_rate", "search");
  const std::string db = dir + "/rate.db";
  const Result r = run_moesim("sweep " + kRateSweep + " --max-rate --rate-tolerance 0.05 -j 2 --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["points"] == 6);
  CHECK(j["run"] == 6);
  CHECK(j["failed"] == 0);
  std::int64_t a100_4x2 = 0;
  double a100_4x2_rate = 0.0;
  {
    const Store s(db, Store::Mode::read_only);
    const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
    REQUIRE(sweep.points.size() == 6);
    for (const auto& p : sweep.points) {
      INFO(p.label);
      REQUIRE(p.run_id.has_value());
      CHECK(p.run_status == RunStatus::complete);
      const auto run = s.get_run(*p.run_id);
      CHECK(run.point_hash == p.point_hash);
      const auto rate = run.metric("max_rate_rps");
      const auto upper = run.metric("max_rate_upper_rps");
      REQUIRE(rate != nullptr);
      REQUIRE(upper != nullptr);
      CHECK(rate->value > 0.0);
      // The bracket ends within the tolerance, the found rate below the rate that misses.
      const auto probe = run.metric("max_rate_probe_rps");
      REQUIRE(probe != nullptr);
      CHECK(upper->value > probe->value);
      CHECK((upper->value - probe->value) / probe->value <= 0.05);
      CHECK(run.metric("max_rate_probes")->value >= 2.0);
      // The stored run is the simulation at the rate found: its scenario says so, and it meets the SLOs.
      CHECK(run.scenario["serving"]["arrival"]["rate_per_s"].get<double>() == probe->value);
      CHECK(rate->value <= probe->value);
      CHECK(run.metric("ttft_p99_s")->value <= 0.300);
      CHECK(run.metric("tpot_p99_s")->value <= 0.030);
      if (p.label.find("\"replicas\":4") != std::string::npos && p.label.find("a100") != std::string::npos) {
        a100_4x2 = *p.run_id;
        a100_4x2_rate = rate->value;
      }
    }
  }
  REQUIRE(a100_4x2 != 0);

  // One search, one answer: `run --max-rate` on the same point finds the same rate, bit for bit.
  const Result one = run_moesim("run " + kRateSweep + " --set 'serving.pools=[{replicas: 4, tensor: 2}]' --set cluster.accelerator=a100 "
                                "--max-rate --rate-tolerance 0.05 --no-store --json",
                                dir);
  INFO(one.err);
  REQUIRE(one.status == 0);
  CHECK(json::parse(one.out)["max_rate"]["sustained_rate_per_s"].get<double>() == a100_4x2_rate);

  // Resumed under its own identity: a rerun searches nothing; a plain sweep of the same file is another question.
  const Result again = run_moesim("sweep " + kRateSweep + " --max-rate --rate-tolerance 0.05 --json --db " + db, dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(json::parse(again.out)["already_complete"] == 6);
  CHECK(json::parse(again.out)["run"] == 0);
  const Result other_tolerance = run_moesim("sweep " + kRateSweep + " --max-rate --rate-tolerance 0.2 --json --db " + db, dir);
  INFO(other_tolerance.err);
  REQUIRE(other_tolerance.status == 0);
  CHECK(json::parse(other_tolerance.out)["run"] == 6);

  // The sweep's report has the capacity column, equal to the stored metric.
  const Result csv = run_moesim("report s" + std::to_string(j["sweep_id"].get<std::int64_t>()) + " --format csv -o " + dir +
                                    " --db " + db,
                                dir);
  INFO(csv.err);
  REQUIRE(csv.status == 0);
  const std::string text = moesim::testing::slurp(dir + "/sweep-" + std::to_string(j["sweep_id"].get<std::int64_t>()) + ".csv");
  CHECK(text.find(",max_rate_rps,") != std::string::npos);
  CHECK(text.find(fmt_rate(a100_4x2_rate)) != std::string::npos);
}

TEST_CASE("cli::sweep --max-rate: unmeetable SLOs skip the point with the search's reason - training sweeps are refused",
          "[cli][sweep][max-rate]") {
  const std::string dir = moesim::testing::scratch_dir("sweep_rate", "unhappy");
  // No rate meets a 1 ms TPOT: every point is skipped with the reason, and the sweep says so (exit 1).
  const Result none = run_moesim("sweep " + kRateSweep + " --max-rate --set serving.slo.tpot_ms=1 --db " + dir + "/none.db", dir);
  CHECK(none.status == 1);
  CHECK(none.err.find("capacity search: --max-rate: the SLOs cannot be met at any rate") != std::string::npos);
  CHECK(none.err.find("every point of the sweep was skipped") != std::string::npos);
  // A skipped point has no run: its progress line names none (not "run 0").
  CHECK(none.err.find("): skipped: capacity search") != std::string::npos);
  CHECK(none.err.find("run 0 ") == std::string::npos);
  // A training sweep has no arrival rate to search.
  const Result training =
      run_moesim("sweep " + std::string(MOESIM_TEST_DATA) + "/cli/small_sweep.yaml --max-rate --db " + dir + "/t.db", dir);
  CHECK(training.status == 1);
  CHECK(training.err.find("searches the arrival rate of a serving scenario; this one trains") != std::string::npos);
}
