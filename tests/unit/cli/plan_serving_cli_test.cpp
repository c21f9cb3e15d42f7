// SPDX-License-Identifier: Apache-2.0
// `moesim plan` on a serving scenario (tests/data/cli/tiny_serving_plan.yaml, 4 H100s): --dry-run lists the splits
// of the pool with the memory model's figures and prunes what does not fit; a real plan simulates the rest as a sweep
// of serving.pools and ranks them (at the scenario's load: P99 SLOs met first, then the --rank-by figure; with
// --max-rate: by the highest rate), every ranked figure the stored run's; and the unhappy paths.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

using nlohmann::json;
using moesim::store::Store;

namespace {

using Result = moesim::testing::CliResult;

Result run_moesim(const std::string& args, const std::string& dir) {
  return moesim::testing::run_moesim_in(args, dir, moesim::testing::RunIn::test_cwd,
                                        "env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN ");
}

const std::string kPlan = MOESIM_TEST_DATA "/cli/tiny_serving_plan.yaml";

/** The stored run's metric, as `--json` and the table must show it. */
double stored(const Store& db, std::int64_t run, const std::string& name) {
  const auto r = db.get_run(run);
  const auto* m = r.metric(name);
  REQUIRE(m != nullptr);
  return m->value;
}

}  // namespace

TEST_CASE("cli::plan serving --dry-run: every split of the pool, with its memory, nothing simulated", "[cli][plan][serving]") {
  const std::string dir = moesim::testing::scratch_dir("plan_serving", "dry");
  const std::string db = dir + "/plan.db";
  const Result r = run_moesim("plan " + kPlan + " --dry-run --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["kind"] == "serving");
  CHECK(j["devices"] == 4);
  // 4 GPUs, 8 experts, 32 heads, 4 layers: pipeline 1: t1 (e1, d2 e2, d4 e4), t2 (e1, e2, d2 e4), t4 (e1, e4);
  // pipeline 2: t1 (e1, d2 e2), t2 (e1, e2); pipeline 4: t1 e1.
  CHECK(j["layouts"] == 13);
  CHECK(j["simulate"] == 13);  // a 4-layer model fits one GPU
  std::set<std::string> labels;
  for (const auto& c : j["candidates"]) {
    INFO(c.dump());
    labels.insert(c["layout"].get<std::string>());
    CHECK(c["replicas"].get<int>() * c["data"].get<int>() * c["tensor"].get<int>() * c["pipeline"].get<int>() == 4);
    CHECK(c["weights_bytes"].get<double>() > 0.0);
    CHECK(c["kv_cache_bytes"].get<double>() > 0.0);
    CHECK(c["weights_bytes"].get<double>() + c["kv_cache_bytes"].get<double>() < c["memory_capacity_bytes"].get<double>());
  }
  CHECK(labels.size() == 13);
  CHECK(labels.count("r4 d1 t1 e1 p1") == 1);
  CHECK(labels.count("r1 d2 t2 e4 p1") == 1);
  CHECK_FALSE(std::filesystem::exists(db));  // nothing stored

  // A 32-layer model in bf16 (~87 GiB of weights) fits no single 80 GB GPU: those splits are pruned with the memory
  // model's figures, the others kept.
  const Result big = run_moesim("plan " + kPlan + " --dry-run --json --set model.layers=32 --db " + db, dir);
  INFO(big.err);
  REQUIRE(big.status == 0);
  const json b = json::parse(big.out);
  CHECK(b["out_of_memory"].get<int>() > 0);
  CHECK(b["simulate"].get<int>() > 0);
  for (const auto& c : b["candidates"]) {
    INFO(c.dump());
    const int per_replica = c["data"].get<int>() * c["tensor"].get<int>() * c["pipeline"].get<int>();
    if (per_replica == 1) {
      CHECK(c["verdict"] == "out_of_memory");
      CHECK(c["reason"].get<std::string>().find("does not fit a serving replica") != std::string::npos);
    }
  }
  // The text form states the rules and the counts.
  const Result text = run_moesim("plan " + kPlan + " --dry-run --list --set model.layers=32 --db " + db, dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("13 layouts enumerated") != std::string::npos);
  CHECK(text.out.find("replicas x data x tensor x pipeline = the 4 devices") != std::string::npos);
  CHECK(text.out.find("r4 d1 t1 e1 p1         out_of_memory") != std::string::npos);
}

TEST_CASE("cli::plan serving: simulates the splits as a sweep of serving.pools and ranks them, figures from the store",
          "[cli][plan][serving]") {
  const std::string dir = moesim::testing::scratch_dir("plan_serving", "load");
  const std::string db = dir + "/plan.db";
  const Result r = run_moesim("plan " + kPlan + " --json --top 100 --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["simulated"] == 13);
  REQUIRE(j["ranked"].size() == 13);
  const Store s(db, Store::Mode::read_only);
  const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
  CHECK(sweep.points.size() == 13);
  bool met_seen_after_missed = false, missed = false;
  double last_e2e = 0.0;
  for (const auto& row : j["ranked"]) {
    INFO(row.dump());
    const std::int64_t run = row["run_id"].get<std::int64_t>();
    // One truth: every figure the plan shows is the stored run's.
    CHECK(row["e2e_p99_s"].get<double>() == stored(s, run, "e2e_p99_s"));
    CHECK(row["ttft_p99_s"].get<double>() == stored(s, run, "ttft_p99_s"));
    CHECK(row["tpot_p99_s"].get<double>() == stored(s, run, "tpot_p99_s"));
    CHECK(row["output_tokens_per_s"].get<double>() == stored(s, run, "output_tokens_per_s"));
    CHECK(row["energy_per_output_token_j"].get<double>() == stored(s, run, "energy_per_output_token_j"));
    CHECK(row["co2e_gross_g_per_1k_tokens"].get<double>() == Approx(1000.0 * stored(s, run, "co2e_gross_kg_per_1k_tokens")));
    CHECK(row["slo_p99_met"].get<bool>() == (stored(s, run, "slo_p99_met") > 0.5));
    // The run simulated this layout's pool.
    const auto rec = s.get_run(run);
    const json pools = rec.scenario.at("serving").at("pools");
    REQUIRE(pools.size() == 1);
    CHECK(pools[0]["replicas"] == row["replicas"]);
    CHECK(pools[0]["tensor"] == row["tensor"]);
    CHECK(pools[0]["expert"] == row["expert"]);
    // Order: SLOs met first, then the P99 end-to-end latency ascending within each group.
    const bool met = row["slo_p99_met"].get<bool>();
    if (met && missed) met_seen_after_missed = true;
    if (!met && !missed) {
      missed = true;
      last_e2e = 0.0;
    }
    CHECK(row["e2e_p99_s"].get<double>() >= last_e2e);
    last_e2e = row["e2e_p99_s"].get<double>();
  }
  CHECK_FALSE(met_seen_after_missed);
  // A rerun resumes (nothing simulated again) and --rank-by energy orders the same runs by J per output token.
  const Result again = run_moesim("plan " + kPlan + " --json --top 100 --rank-by energy --db " + db, dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(again.err.find("13 already complete") != std::string::npos);
  const json a = json::parse(again.out);
  CHECK(a["sweep_id"] == j["sweep_id"]);
  double last_j = 0.0;
  bool energy_missed = false;
  for (const auto& row : a["ranked"]) {
    if (!row["slo_p99_met"].get<bool>() && !energy_missed) {
      energy_missed = true;
      last_j = 0.0;
    }
    CHECK(row["energy_per_output_token_j"].get<double>() >= last_j);
    last_j = row["energy_per_output_token_j"].get<double>();
  }
}

TEST_CASE("cli::plan serving --max-rate: each split a capacity search, ranked by the highest rate", "[cli][plan][serving][max-rate]") {
  const std::string dir = moesim::testing::scratch_dir("plan_serving", "rate");
  const std::string db = dir + "/plan.db";
  const Result r = run_moesim("plan " + kPlan + " --max-rate --rate-tolerance 0.1 --max-pipeline 1 --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["max_rate"] == true);
  CHECK(j["layouts"] == 8);  // pipeline 1 only
  REQUIRE(j["ranked"].size() == 8);
  const Store s(db, Store::Mode::read_only);
  double last = std::numeric_limits<double>::infinity();
  for (const auto& row : j["ranked"]) {
    INFO(row.dump());
    const double rate = row["max_rate_rps"].get<double>();
    CHECK(rate == stored(s, row["run_id"].get<std::int64_t>(), "max_rate_rps"));
    CHECK(rate <= last);
    CHECK(row["slo_p99_met"].get<bool>());  // the stored run is the one at the highest rate meeting the SLOs
    last = rate;
    // Sizing for the scenario's load: the fewest replicas whose share of the searched rate covers it, and their devices.
    const double load = j["load_rps"].get<double>();
    const long long n = row["replicas_for_load"].get<long long>();
    const double per_replica = rate / row["replicas"].get<double>();
    CHECK(static_cast<double>(n) * per_replica >= load * (1.0 - 1e-12));
    CHECK(static_cast<double>(n - 1) * per_replica < load);
    CHECK(row["devices_for_load"].get<long long>() ==
          n * row["data"].get<long long>() * row["tensor"].get<long long>() * row["pipeline"].get<long long>());
  }
  // Four replicas of one GPU each serve more than one replica of four GPUs (a small model: replicas scale, tensor
  // parallelism adds collectives).
  double r4 = 0.0, r1t4 = 0.0;
  for (const auto& row : j["ranked"]) {
    if (row["layout"] == "r4 d1 t1 e1 p1") r4 = row["max_rate_rps"].get<double>();
    if (row["layout"] == "r1 d1 t4 e1 p1") r1t4 = row["max_rate_rps"].get<double>();
  }
  CHECK(r4 > r1t4);
  CHECK(r1t4 > 0.0);
}

TEST_CASE("cli::plan serving: unhappy paths", "[cli][plan][serving][errors]") {
  const std::string dir = moesim::testing::scratch_dir("plan_serving", "errors");
  const std::string db = dir + "/plan.db";
  // Disaggregated pools: the plan splits one colocated pool.
  const Result dis = run_moesim("plan " + kPlan +
                                    " --dry-run --db " + db +
                                    " --set 'serving.pools=[{role: prefill, replicas: 2}, {role: decode, replicas: 2}]'",
                                dir);
  CHECK(dis.status == 1);
  CHECK(dis.err.find("serving.pools") != std::string::npos);
  CHECK(dis.err.find("splits one colocated pool") != std::string::npos);
  CHECK(dis.err.find("2 pools") != std::string::npos);
  // --max-rate needs a serving scenario; --rate-tolerance needs --max-rate.
  const Result train = run_moesim("plan " MOESIM_TEST_DATA "/cli/tiny_plan.yaml --max-rate --dry-run --db " + db, dir);
  CHECK(train.status == 2);
  CHECK(train.err.find("training scenario") != std::string::npos);
  const Result tol = run_moesim("plan " + kPlan + " --rate-tolerance 0.1 --dry-run --db " + db, dir);
  CHECK(tol.status == 2);
  CHECK(tol.err.find("give --max-rate") != std::string::npos);
  // Options that only shape a training plan are refused, not silently ignored; the default factor is not a request.
  const Result exh = run_moesim("plan " + kPlan + " --exhaustive --dry-run --db " + db, dir);
  CHECK(exh.status == 2);
  CHECK(exh.err.find("--exhaustive") != std::string::npos);
  CHECK(exh.err.find("only shapes a training plan") != std::string::npos);
  const Result both = run_moesim("plan " + kPlan + " --exhaustive --max-microbatch-factor 2 --dry-run --db " + db, dir);
  CHECK(both.status == 2);
  CHECK(both.err.find("--exhaustive") != std::string::npos);
  CHECK(both.err.find("--max-microbatch-factor") != std::string::npos);
  CHECK(both.err.find("drop them") != std::string::npos);
  const Result virt = run_moesim("plan " + kPlan + " --max-virtual-stages 4 --dry-run --db " + db, dir);
  CHECK(virt.status == 2);
  CHECK(virt.err.find("--max-virtual-stages") != std::string::npos);
  // --max-rate on an offline scenario: there is no rate to search.
  const Result offline = run_moesim("plan " + kPlan + " --max-rate --dry-run --set 'serving.arrival={type: offline}' --set serving.requests=100 --set serving.duration_s=null --set serving.warmup_s=null --db " + db, dir);
  CHECK(offline.status == 1);
  CHECK(offline.err.find("serving.arrival.type") != std::string::npos);
  // A broken scenario is the loader's error, not a training-plan message.
  const Result broken = run_moesim("plan " + kPlan + " --dry-run --set serving.scheduler.type=fifo --db " + db, dir);
  CHECK(broken.status == 1);
  CHECK(broken.err.find("serving.scheduler.type") != std::string::npos);
  CHECK(broken.err.find("the base of a training plan") == std::string::npos);
  CHECK_FALSE(std::filesystem::exists(db));
}
