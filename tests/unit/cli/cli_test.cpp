// SPDX-License-Identifier: Apache-2.0
// The `moesim` command end to end: run, runs, compare, explain, and what an interrupted run leaves behind.
#include <catch2/catch.hpp>

#include <algorithm>

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Result = moesim::testing::CliResult;
using moesim::testing::slurp;

/** A fresh directory per test case. */
std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("cli", name); }

Result run_moesim(const std::string& args, const std::string& dir) { return moesim::testing::run_moesim_in(args, dir); }

const std::string kData = MOESIM_TEST_DATA "/cli/";

std::string integrity(const std::string& db) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  std::string v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

/** Starts `moesim run` in the background; returns its pid. */
pid_t start_run(const std::string& scenario, const std::string& db, const std::string& dir) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string out = dir + "/bg.txt";
    FILE* f = std::freopen(out.c_str(), "w", stdout);
    (void)f;
    f = std::freopen((dir + "/bg_err.txt").c_str(), "w", stderr);
    (void)f;
    ::execl(MOESIM_BINARY, MOESIM_BINARY, "--profiles", MOESIM_SOURCE_ROOT "/profiles", "run", scenario.c_str(), "--db",
            db.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/** Waits until the store holds a run in state `running` (the simulation has started). */
void wait_for_running(const std::string& db) {
  for (int i = 0; i < 300; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!fs::exists(db)) continue;
    try {
      const moesim::store::Store s(db, moesim::store::Store::Mode::read_only);
      for (const auto& r : s.list_runs())
        if (r.status == moesim::store::RunStatus::running) return;
    } catch (const std::exception&) {
      // the store may still be migrating
    }
  }
  FAIL("the run never reached state `running`");
}

}  // namespace

TEST_CASE("cli::run: stores a complete run whose JSON has every documented field", "[cli]") {
  const std::string dir = scratch("run");
  const std::string db = dir + "/runs.db";
  const Result r = run_moesim("run " MOESIM_SOURCE_ROOT "/scenarios/examples/tpu-v3-torus-moe.yaml --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  for (const char* k : {"step_time_s", "step_time_spread_s", "steps", "train_time_s", "train_days", "tokens_dropped_fraction",
                        "step_breakdown_s", "mfu", "run_id", "it_energy_mwh", "facility_energy_mwh", "network_energy_mwh",
                        "co2e_gross_t", "co2e_net_t", "embodied_co2e_t", "datacenters"})
    CHECK(j.contains(k));
  CHECK(j["status"] == "complete");
  CHECK(j["train_days"].get<double>() == Approx(j["train_time_s"].get<double>() / 86400.0).epsilon(1e-12));
  CHECK(j["facility_energy_mwh"].get<double>() > j["it_energy_mwh"].get<double>());  // PUE > 1
  double breakdown = 0.0;
  for (const auto& [k, v] : j["step_breakdown_s"].items()) breakdown += v.get<double>();
  CHECK(breakdown == Approx(j["step_time_s"].get<double>()).epsilon(1e-9));  // the critical path covers the step
  for (const char* k : {"name", "facility_energy_mwh", "co2e_gross_t", "co2e_net_t"}) CHECK(j["datacenters"][0].contains(k));

  const Result show = run_moesim("runs show " + std::to_string(j["run_id"].get<int>()) + " --json --db " + db, dir);
  REQUIRE(show.status == 0);
  CHECK(json::parse(show.out) == j);  // what was printed is what was stored
  const Result list = run_moesim("runs list --json --db " + db, dir);
  REQUIRE(list.status == 0);
  const json runs = json::parse(list.out);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]["status"] == "complete");
  CHECK(runs[0]["train_days"].get<double>() == Approx(j["train_days"].get<double>()));
}

TEST_CASE("cli::run: a bad scenario is a located error, exit 1, nothing stored", "[cli]") {
  const std::string dir = scratch("bad");
  const std::string db = dir + "/runs.db";
  const Result r = run_moesim("run " + kData + "bad_key.yaml --db " + db, dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("bad_key.yaml:6:") != std::string::npos);
  CHECK(r.err.find("topolgy") != std::string::npos);
  CHECK(r.err.find("did you mean 'topology'") != std::string::npos);
  CHECK_FALSE(fs::exists(db));  // the store is opened only once the scenario is valid

  SECTION("an unknown subcommand or a missing file also exits non-zero") {
    CHECK(run_moesim("frobnicate", dir).status != 0);
    const Result missing = run_moesim("run /nonexistent.yaml --db " + db, dir);
    CHECK(missing.status == 1);
    CHECK(missing.err.find("/nonexistent.yaml") != std::string::npos);
  }
}

TEST_CASE("cli::run: an interrupted run is never complete and the store stays intact", "[cli]") {
  const std::string dir = scratch("interrupt");
  const std::string db = dir + "/runs.db";
  const std::string scenario = kData + "slow.yaml";

  SECTION("Ctrl-C (SIGINT): the run is marked failed, exit 130") {
    const pid_t pid = start_run(scenario, db, dir);
    wait_for_running(db);
    ::kill(pid, SIGINT);
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 130);
    const moesim::store::Store s(db, moesim::store::Store::Mode::read_only);
    const auto runs = s.list_runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].status == moesim::store::RunStatus::failed);
    CHECK(s.get_run(runs[0].id).error_message == "interrupted");
    CHECK(integrity(db) == "ok");
  }
  SECTION("kill -9: the run stays `running`, never complete") {
    const pid_t pid = start_run(scenario, db, dir);
    wait_for_running(db);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    const moesim::store::Store s(db, moesim::store::Store::Mode::read_only);
    const auto runs = s.list_runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].status == moesim::store::RunStatus::running);
    CHECK(integrity(db) == "ok");
  }
}

TEST_CASE("cli::compare: alternatives stored under one comparison, ranked by CO2e, Pareto front marked", "[cli]") {
  const std::string dir = scratch("compare");
  const std::string db = dir + "/runs.db";
  const Result r = run_moesim("compare " + kData + "small_compare.yaml --json --db " + db + " --alt '{label: taiwan, placement: [{datacenter: gcp_asia_east1_2024}]}'", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const auto& rows = j["alternatives"];
  REQUIRE(rows.size() == 5);  // base + 3 in the file + 1 on the command line
  std::set<std::string> labels;
  for (const auto& row : rows) {
    labels.insert(row["label"].get<std::string>());
    CHECK(row["status"] == "complete");
  }
  CHECK(labels == std::set<std::string>{"base", "finland", "iowa_2019", "half_the_chips", "taiwan"});
  // Ranked by gross CO2e, 1..5; the Pareto flags agree with a direct dominance check.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i]["rank"].get<int>() == static_cast<int>(i) + 1);
    if (i > 0) CHECK(rows[i]["co2e_gross_t"].get<double>() >= rows[i - 1]["co2e_gross_t"].get<double>());
    bool dominated = false;
    for (const auto& o : rows) {
      const double dt = o["train_days"].get<double>(), dc = o["co2e_gross_t"].get<double>();
      const double t = rows[i]["train_days"].get<double>(), c = rows[i]["co2e_gross_t"].get<double>();
      if (dt <= t && dc <= c && (dt < t || dc < c)) dominated = true;
    }
    CHECK(rows[i]["pareto"].get<bool>() == !dominated);
  }
  // Same job, different grids: equal training time; fewer chips: a longer run.
  auto row = [&](const std::string& label) {
    for (const auto& x : rows)
      if (x["label"] == label) return x;
    FAIL("no row " << label);
    return json();
  };
  CHECK(row("finland")["train_days"].get<double>() == Approx(row("base")["train_days"].get<double>()));
  CHECK(row("finland")["co2e_gross_t"].get<double>() < row("base")["co2e_gross_t"].get<double>());
  CHECK(row("half_the_chips")["train_days"].get<double>() > row("base")["train_days"].get<double>());
  // The store links every run to the comparison.
  const moesim::store::Store s(db, moesim::store::Store::Mode::read_only);
  const auto cmp = s.get_comparison(j["comparison_id"].get<std::int64_t>());
  CHECK(cmp.run_ids.size() == 5);
}

TEST_CASE("cli::compare: an alternative with an unknown datacenter fails before anything is stored", "[cli]") {
  const std::string dir = scratch("compare_bad");
  const std::string db = dir + "/runs.db";
  const Result r = run_moesim("compare " + kData + "bad_alternative.yaml --db " + db, dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("gcp_europe_nort1_2024") != std::string::npos);
  CHECK(r.err.find("gcp_europe_north1_2024") != std::string::npos);  // the closest name is suggested
  CHECK_FALSE(fs::exists(db));
}

TEST_CASE("cli::compare: an alternative labelled like the base is refused before anything is stored", "[cli]") {
  const std::string dir = scratch("compare_base_label");
  const std::string db = dir + "/runs.db";
  const Result r = run_moesim("compare " + kData + "small_compare.yaml --db " + db + " --alt '{label: base, seed: 3}'", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("duplicate alternative label 'base'") != std::string::npos);
  CHECK_FALSE(fs::exists(db));
}

TEST_CASE("cli::compare: --jobs is checked like sweep's and plan's (1 to 1024)", "[cli]") {
  const std::string dir = scratch("compare_jobs");
  const std::string db = dir + "/runs.db";
  for (const std::string j : {"0", "-3", "1025"}) {
    const Result r = run_moesim("compare " + kData + "small_compare.yaml -j " + j + " --db " + db, dir);
    CHECK(r.status != 0);
    CHECK(r.err.find("--jobs") != std::string::npos);
    CHECK(r.err.find("not in range 1 to 1024") != std::string::npos);
    CHECK_FALSE(fs::exists(db));
  }
}

TEST_CASE("cli::run: the README's GShard-600B example states the figures the run prints", "[cli]") {
  const std::string dir = scratch("readme_gshard");
  const Result r = run_moesim("run " MOESIM_SOURCE_ROOT "/scenarios/published/gshard_600b.yaml --no-store --json", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  std::string readme = moesim::testing::slurp(MOESIM_SOURCE_ROOT "/README.md");
  std::replace(readme.begin(), readme.end(), '\n', ' ');
  // A figure as the prose rounds it: within half a unit of its last decimal.
  auto close = [](const std::string& text, double value) {
    const auto dot = text.find('.');
    const int decimals = dot == std::string::npos ? 0 : static_cast<int>(text.size() - dot - 1);
    return std::abs(std::stod(text) - value) <= 0.5 * std::pow(10.0, -decimals) + 1e-9;
  };
  std::smatch m;
  const std::regex time_re(R"(gshard_600b\.yaml`: step time ([0-9.]+) s \(([0-9.]+) steps/s\), +([0-9 ]+) steps → ([0-9.]+) days, MFU ([0-9.]+) %)");
  REQUIRE(std::regex_search(readme, m, time_re));
  INFO(m[0].str());
  CHECK(close(m[1].str(), j.at("step_time_s").get<double>()));
  CHECK(close(m[2].str(), 1.0 / j.at("step_time_s").get<double>()));
  std::string steps = m[3].str();
  steps.erase(std::remove(steps.begin(), steps.end(), ' '), steps.end());
  CHECK(std::stoll(steps) == j.at("steps").get<long long>());
  CHECK(close(m[4].str(), j.at("train_days").get<double>()));
  CHECK(close(m[5].str(), 100.0 * j.at("mfu").get<double>()));
  const std::regex energy_re(R"(([0-9.]+) MWh facility energy and ([0-9.]+) / ([0-9.]+) tCO2e \(gross / net\))");
  REQUIRE(std::regex_search(readme, m, energy_re));
  INFO(m[0].str());
  CHECK(close(m[1].str(), j.at("facility_energy_mwh").get<double>()));
  CHECK(close(m[2].str(), j.at("co2e_gross_t").get<double>()));
  CHECK(close(m[3].str(), j.at("co2e_net_t").get<double>()));
}

TEST_CASE("cli::run: the README's MLPerf serving example is the summary the run prints", "[cli][serving]") {
  const std::string dir = scratch("readme_mlperf");
  const Result r = run_moesim("run " MOESIM_SOURCE_ROOT "/scenarios/published/mlperf41_mixtral_h200_server.yaml --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string readme = moesim::testing::slurp(MOESIM_SOURCE_ROOT "/README.md");
  const std::string marker = "`moesim run scenarios/published/mlperf41_mixtral_h200_server.yaml`";
  const auto at = readme.find(marker);
  REQUIRE(at != std::string::npos);
  const auto open = readme.find("```\n", at) + 4, close = readme.find("```", open);
  std::istringstream block(readme.substr(open, close - open));
  int lines = 0;
  for (std::string line; std::getline(block, line); ++lines) {
    INFO(line);
    CHECK(r.out.find(line + "\n") != std::string::npos);  // each line of the README's excerpt, as printed
  }
  CHECK(lines >= 6);
}

TEST_CASE("cli::explain: docs/scenario.md is generated from the field table and up to date", "[cli]") {
  const std::string dir = scratch("explain");
  const Result r = run_moesim("explain --markdown", dir);
  REQUIRE(r.status == 0);
  INFO("regenerate with: build/moesim explain --markdown > docs/scenario.md");
  CHECK(r.out == slurp(MOESIM_SOURCE_ROOT "/docs/scenario.md"));
}

TEST_CASE("cli::explain KEY: one section, or a clear error for an unknown key", "[cli]") {
  const std::string dir = scratch("explain_key");
  const Result ok = run_moesim("explain serving.slo model.kv_heads", dir);
  INFO(ok.err);
  REQUIRE(ok.status == 0);
  CHECK(ok.out.find("serving.slo.ttft_ms  (") != std::string::npos);
  CHECK(ok.out.find("model.kv_heads  (") != std::string::npos);
  CHECK(ok.out.find("model.d_model  (") == std::string::npos);
  const Result md = run_moesim("explain --markdown routing", dir);
  REQUIRE(md.status == 0);
  CHECK(md.out.find("| `routing.type` |") != std::string::npos);
  CHECK(md.out.find("| `model.d_model` |") == std::string::npos);
  const Result bad = run_moesim("explain routing.tpye", dir);
  CHECK(bad.status != 0);
  CHECK(bad.err.find("no scenario field 'routing.tpye'") != std::string::npos);
  CHECK(bad.err.find("routing.type") != std::string::npos);
  CHECK(bad.out.empty());
}

TEST_CASE("cli::run: a GPU power limit is named in the summary and slows the step", "[cli]") {
  const std::string dir = scratch("power_limit");
  const std::string file = MOESIM_SOURCE_ROOT "/scenarios/examples/h100-zipf-dropless.yaml";
  const Result plain = run_moesim("run " + file + " --no-store --json", dir);
  const Result capped = run_moesim("run " + file + " --no-store --json --set cluster.power_limit_w=500", dir);
  INFO(capped.err);
  REQUIRE(plain.status == 0);
  REQUIRE(capped.status == 0);
  CHECK(json::parse(capped.out).at("step_time_s").get<double>() > json::parse(plain.out).at("step_time_s").get<double>());
  const Result text = run_moesim("run " + file + " --no-store --set cluster.power_limit_w=500", dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("GPU power limit 500 W") != std::string::npos);
  CHECK(run_moesim("run " + file + " --no-store", dir).out.find("power limit") == std::string::npos);
  const Result bad = run_moesim("run " + file + " --no-store --set cluster.power_limit_w=50", dir);
  CHECK(bad.status != 0);
  CHECK(bad.err.find("cluster.power_limit_w") != std::string::npos);
}

TEST_CASE("cli::run: a per-node expert dispatch and node-limited routing shorten a two-node all-to-all", "[cli]") {
  const std::string dir = scratch("per_node");
  // 16 experts on two 8-GPU H100 nodes, top-2.
  const std::string file = MOESIM_SOURCE_ROOT "/scenarios/examples/h100-zipf-dropless.yaml";
  auto a2a = [&](const std::string& sets) {
    const Result r = run_moesim("run " + file + " --no-store --json" + sets, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    return json::parse(r.out).at("step_breakdown_s").at("comm.all_to_all").get<double>();
  };
  const double nccl = a2a(""), per_node = a2a(" --set parallelism.expert_dispatch=per_node"),
               one_node = a2a(" --set parallelism.expert_dispatch=per_node --set routing.max_nodes=1");
  CHECK(per_node < nccl);
  CHECK(one_node < per_node);
}

TEST_CASE("cli::run: overlapping the expert all-to-alls with the other micro-batch's compute shortens a two-node step",
          "[cli][overlap]") {
  const std::string dir = scratch("overlap");
  // 16 experts on two 8-GPU H100 nodes, uniform routing, 8 micro-batches, one stage: the all-to-alls cross the network.
  const std::string file = MOESIM_SOURCE_ROOT "/scenarios/examples/h100-zipf-dropless.yaml";
  auto run = [&](const std::string& sets) {
    const Result r = run_moesim("run " + file + " --no-store --json --set routing.skew=0 --set parallelism.microbatches=8" + sets, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    return json::parse(r.out);
  };
  const json plain = run(""), free_sms = run(" --set parallelism.overlap_expert_comm=true --set parallelism.comm_sms=1"),
             deepseek = run(" --set parallelism.overlap_expert_comm=true");
  const double a2a_plain = plain.at("step_breakdown_s").at("comm.all_to_all").get<double>();
  const double a2a_free = free_sms.at("step_breakdown_s").at("comm.all_to_all").get<double>();
  // Hidden all-to-all time leaves the critical path; with (almost) every SM left to compute the step is shorter by
  // at least a third of the all-to-all time it had.
  CHECK(a2a_free < 0.5 * a2a_plain);
  CHECK(free_sms.at("step_time_s").get<double>() < plain.at("step_time_s").get<double>() - a2a_plain / 3.0);
  // 20 of 132 SMs held by the communication kernels slow the paired compute.
  CHECK(deepseek.at("step_time_s").get<double>() > free_sms.at("step_time_s").get<double>());
  // The summary says what ran: the overlap and the recomputed modules.
  const Result text = run_moesim("run " + file + " --no-store --set parallelism.overlap_expert_comm=true "
                                 "--set training.rematerialization=selective --set training.recompute_modules=layernorm,moe_act", dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("expert all-to-alls overlapped with compute (20 SMs to communication)") != std::string::npos);
  CHECK(text.out.find("selective recomputation (layernorm,moe_act)") != std::string::npos);
  CHECK(run_moesim("run " + file + " --no-store", dir).out.find("overlapped") == std::string::npos);
  // A shared expert computed beside the dispatch all-to-all instead of after the combine: a shorter step.
  const json shared = run(" --set model.shared_experts=1"),
             beside = run(" --set model.shared_experts=1 --set parallelism.overlap_shared_experts=true");
  CHECK(beside.at("step_time_s").get<double>() < shared.at("step_time_s").get<double>());
}

TEST_CASE("cli::run: the DualPipe schedules run end to end and the summary names the pipeline", "[cli][dualpipe]") {
  const std::string dir = scratch("dualpipe");
  const std::string file = MOESIM_SOURCE_ROOT "/scenarios/examples/a100-dense-tensor-pipeline.yaml";  // 2 stages, 8 micro-batches
  auto run = [&](const std::string& sets) {
    const Result r = run_moesim("run " + file + " --no-store --json" + sets, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    return json::parse(r.out);
  };
  const json plain = run(""), v = run(" --set parallelism.schedule=dualpipev"), dual = run(" --set parallelism.schedule=dualpipe");
  // The same work in a shorter bubble; DualPipe's two copies of the model sum their gradients.
  CHECK(v.at("step_time_s").get<double>() < plain.at("step_time_s").get<double>());
  CHECK(dual.at("step_time_s").get<double>() < plain.at("step_time_s").get<double>());
  CHECK(dual.at("step_breakdown_s").value("comm.dualpipe_grad_sync", 0.0) > 0.0);
  CHECK(plain.at("step_breakdown_s").value("comm.dualpipe_grad_sync", 0.0) == 0.0);
  const Result text = run_moesim("run " + file + " --no-store --set parallelism.schedule=dualpipe", dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("2-stage pipeline, DualPipe, 8 micro-batches") != std::string::npos);
  CHECK(run_moesim("run " + file + " --no-store", dir).out.find("2-stage pipeline, 1F1B, 8 micro-batches") != std::string::npos);
  // Refused with the key and the rule: an odd number of micro-batches for DualPipe.
  const Result bad = run_moesim("run " + file + " --no-store --set parallelism.schedule=dualpipe --set parallelism.microbatches=9", dir);
  CHECK(bad.status != 0);
  CHECK(bad.err.find("parallelism.microbatches") != std::string::npos);
  CHECK(bad.err.find("even") != std::string::npos);
}

TEST_CASE("cli::bench: JSON cases carry the issue's fields, and memoisation matches the fine-grained run", "[cli][bench]") {
  const std::string dir = scratch("bench");
  // GShard-600B at 1024 TPU v3 chips: one simulated step, about a second each way.
  const Result memo = run_moesim("bench --json --only gshard_600b_1024", dir);
  INFO(memo.err);
  REQUIRE(memo.status == 0);
  const Result full = run_moesim("bench --json --only gshard_600b_1024 --no-memo", dir);
  INFO(full.err);
  REQUIRE(full.status == 0);
  const json m = json::parse(memo.out).at("cases");
  const json f = json::parse(full.out).at("cases");
  REQUIRE(m.size() == 1);
  REQUIRE(f.size() == 1);
  for (const char* key : {"name", "chips", "wall_s", "peak_rss_mb", "step_time_s"}) {
    CHECK(m[0].contains(key));
    CHECK(f[0].contains(key));
  }
  CHECK(m[0].at("chips") == 1024);
  CHECK(m[0].at("wall_s").get<double>() > 0.0);
  CHECK(m[0].at("peak_rss_mb").get<double>() > 0.0);
  CHECK(m[0].at("memoize") == true);
  CHECK(f[0].at("memoize") == false);
  CHECK(m[0].at("collectives_memoized").get<int>() > 0);
  CHECK(f[0].at("collectives_memoized") == 0);
  // Replaying isolated collectives must not change the simulated step.
  CHECK(m[0].at("step_time_s").get<double>() == Approx(f[0].at("step_time_s").get<double>()).epsilon(1e-12));
  // Scaling: cases named "<family>-<chips>" report wall and memory ratios against the family's smallest case.
  const std::string bench = dir + "/bench";
  fs::create_directories(bench);
  std::string minimal = slurp(MOESIM_TEST_DATA "/scenario/minimal.yaml");
  const auto with = [&](const std::string& name, int chips, int data) {
    std::string t = minimal;
    t.replace(t.find("name: base"), 10, "name: " + name);
    t.replace(t.find("  count: 8"), 10, "  count: " + std::to_string(chips));
    t.replace(t.find("  expert: 8"), 11, "  expert: 8\n  data: " + std::to_string(data));
    std::ofstream(bench + "/" + name + ".yaml") << t;
  };
  with("tiny-8", 8, 1);
  with("tiny-16", 16, 2);
  ::setenv("MOESIM_BENCH", bench.c_str(), 1);
  const Result scaled = run_moesim("bench --json", dir);
  const Result text = run_moesim("bench", dir);
  const Result repeated = run_moesim("bench --json --repeat 3", dir);
  const Result repeat_zero = run_moesim("bench --repeat 0", dir);
  ::unsetenv("MOESIM_BENCH");
  // --repeat: each case's wall time is the median of its runs, its peak RSS the largest, and the ratios are of those.
  INFO(repeated.err);
  REQUIRE(repeated.status == 0);
  const json rep = json::parse(repeated.out);
  REQUIRE(rep.at("cases").size() == 2);
  for (const auto& c : rep.at("cases")) {
    CHECK(c.at("repeats") == 3);
    std::vector<double> runs = c.at("wall_s_runs").get<std::vector<double>>();
    REQUIRE(runs.size() == 3u);
    std::sort(runs.begin(), runs.end());
    CHECK(c.at("wall_s").get<double>() == runs[1]);
  }
  CHECK(rep.at("scaling")[0].at("wall_ratio").get<double>() ==
        Approx(rep.at("cases")[1].at("wall_s").get<double>() / rep.at("cases")[0].at("wall_s").get<double>()));
  CHECK(repeat_zero.status == 2);  // a usage error: at least one run
  CHECK(repeat_zero.err.find("--repeat") != std::string::npos);
  INFO(scaled.err);
  REQUIRE(scaled.status == 0);
  const json sc = json::parse(scaled.out);
  REQUIRE(sc.at("cases").size() == 2);
  REQUIRE(sc.at("scaling").size() == 1);
  const json& r = sc.at("scaling")[0];
  CHECK(r.at("family") == "tiny");
  CHECK(r.at("chips") == 16);
  CHECK(r.at("base_chips") == 8);
  CHECK(r.at("wall_ratio").get<double>() ==
        Approx(sc.at("cases")[1].at("wall_s").get<double>() / sc.at("cases")[0].at("wall_s").get<double>()));
  CHECK(text.out.find("scaling") != std::string::npos);
  // An unknown case name is an error, not an empty success.
  const Result none = run_moesim("bench --only no_such_case", dir);
  CHECK(none.status != 0);
  CHECK(none.err.find("no benchmark scenarios") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli::bench: plan_*.yaml cases run the whole `moesim plan` (a serving one with --max-rate)", "[cli][bench][plan]") {
  const std::string dir = scratch("bench_plan");
  const std::string bench = dir + "/bench";
  fs::create_directories(bench);
  // A serving plan on 2 GPUs (the CLI fixture shrunk) and a training plan of the tiny planner fixture, given a layout
  // so that it loads as a scenario (the plan replaces it).
  std::string serving = slurp(MOESIM_TEST_DATA "/cli/tiny_serving_plan.yaml");
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"count: 4", "count: 2"}, {"gpus_per_node: 4", "gpus_per_node: 2"},
                                 {"replicas: 4", "replicas: 2"}})
    serving.replace(serving.find(from), from.size(), to);
  std::ofstream(bench + "/plan_serving.yaml") << serving;
  std::string training = slurp(MOESIM_TEST_DATA "/cli/tiny_plan.yaml");
  training.replace(training.find("parallelism: auto"), 17, "parallelism: {data: 2}");
  std::ofstream(bench + "/plan_training.yaml") << training;
  ::setenv("MOESIM_BENCH", bench.c_str(), 1);
  const Result r = run_moesim("bench --json", dir);
  ::unsetenv("MOESIM_BENCH");
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  REQUIRE(j.at("cases").size() == 2);
  std::map<std::string, json> by_file;
  for (const auto& c : j.at("cases")) by_file[c.at("file").get<std::string>()] = c;
  const json& sv = by_file.at("plan_serving.yaml");
  const json& tr = by_file.at("plan_training.yaml");
  for (const json* c : {&sv, &tr}) {
    INFO(c->dump());
    CHECK(c->at("kind") == "plan");
    CHECK(c->at("wall_s").get<double>() > 0.0);
    CHECK(c->at("peak_rss_mb").get<double>() > 0.0);
    CHECK(c->at("simulated").get<int>() > 0);
    CHECK(c->at("best").is_string());
  }
  // 2 GPUs, 8 experts, 32 heads, 4 layers: t1 (e1, d2 e2), t2 (e1, e2), p2 t1 e1.
  CHECK(sv.at("layouts") == 5);
  CHECK(sv.at("simulated") == 5);
  CHECK(tr.at("layouts") == 48);  // as plan_cli_test.cpp counts them
  // The children's progress (the plan's own header on its stderr) stays out of the bench's output...
  CHECK(r.err.find("layouts enumerated") == std::string::npos);
  // ...and a child that fails has its error in the bench's (a valid scenario the plan refuses: two pools).
  std::string two_pools = serving;
  two_pools.replace(two_pools.find("{replicas: 2}"), 13, "{role: prefill, replicas: 1}\n    - {role: decode, replicas: 1}");
  std::ofstream(bench + "/plan_serving.yaml") << two_pools;
  ::setenv("MOESIM_BENCH", bench.c_str(), 1);
  const Result bad = run_moesim("bench --json --only plan_serving", dir);
  ::unsetenv("MOESIM_BENCH");
  CHECK(bad.status == 1);
  CHECK(bad.err.find("`moesim plan") != std::string::npos);
  CHECK(bad.err.find("splits one colocated pool") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli::bench --sweep: throughput ratio and per-point overhead are the figures they are computed from", "[cli][bench][sweep]") {
  const std::string dir = scratch("bench_sweep");
  const std::string bench = dir + "/bench";
  fs::create_directories(bench);
  // Six points, four of them valid (two do not divide): the sweep case and the merge case's source.
  fs::copy_file(kData + "small_sweep.yaml", bench + "/sweep_tiny.yaml");
  fs::copy_file(kData + "small_sweep.yaml", bench + "/merge_tiny.yaml");
  ::setenv("MOESIM_BENCH", bench.c_str(), 1);
  const Result j = run_moesim("bench --sweep --json", dir);
  const Result text = run_moesim("bench --sweep --only sweep_", dir);
  const Result plain = run_moesim("bench", dir);  // the sweep inputs are not cases of the plain bench
  const Result none = run_moesim("bench --sweep --only no_such_case", dir);
  ::unsetenv("MOESIM_BENCH");
  INFO(j.err);
  REQUIRE(j.status == 0);
  const json out = json::parse(j.out);
  REQUIRE(out.at("sweeps").size() == 1);
  const json& c = out.at("sweeps")[0];
  CHECK(c.at("file") == "sweep_tiny.yaml");
  REQUIRE(c.at("runs").size() == 2);
  const json& j1 = c.at("runs")[0];
  const json& j2 = c.at("runs")[1];
  CHECK(j1.at("jobs") == 1);
  CHECK(j2.at("jobs") == 2);
  for (const json* r : {&j1, &j2}) {
    CHECK(r->at("points") == 4);
    CHECK(r->at("wall_s").get<double>() > 0.0);
    CHECK(r->at("mean_point_simulation_wall_s").get<double>() > 0.0);
    CHECK(r->at("points_per_s").get<double>() == Approx(4.0 / r->at("wall_s").get<double>()).epsilon(1e-12));
  }
  CHECK(c.at("speedup_j2_over_j1").get<double>() ==
        Approx(j2.at("points_per_s").get<double>() / j1.at("points_per_s").get<double>()).epsilon(1e-12));
  CHECK(c.at("machine_two_process_ceiling").get<double>() > 0.0);
  CHECK(c.at("overhead_per_point_s").get<double>() ==
        Approx(j1.at("wall_s").get<double>() / 4.0 - j1.at("mean_point_simulation_wall_s").get<double>()).epsilon(1e-12));
  // The merge case: 100 shard stores of the source sweep's 4 runs, all 400 in the merged store.
  REQUIRE(out.at("merges").size() == 1);
  const json& m = out.at("merges")[0];
  CHECK(m.at("shards") == 100);
  CHECK(m.at("runs_per_shard") == 4);
  CHECK(m.at("runs_merged") == 400);
  CHECK(m.at("wall_s").get<double>() > 0.0);
  CHECK(m.at("method").get<std::string>().find("VACUUM INTO") != std::string::npos);
  // The text: the printed ratio is the ratio of the printed throughputs (to their printed precision).
  INFO(text.out);
  REQUIRE(text.status == 0);
  std::istringstream lines(text.out);
  std::vector<double> pps;
  double ratio = 0.0;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream w(line);
    std::string file;
    int points = 0, jobs = 0;
    double wall = 0.0, rate = 0.0;
    if (line.rfind("sweep_tiny.yaml", 0) == 0 && (w >> file >> points >> jobs >> wall >> rate)) pps.push_back(rate);
    const auto at = line.find("-j 1: x");
    if (at != std::string::npos) ratio = std::stod(line.substr(at + 7));
  }
  REQUIRE(pps.size() == 2);
  CHECK(ratio == Approx(pps[1] / pps[0]).epsilon(0.02));
  CHECK(text.out.find("merge ") == std::string::npos);  // --only sweep_ leaves the merge case out
  CHECK(plain.status != 0);
  CHECK(plain.err.find("no benchmark scenarios") != std::string::npos);
  CHECK(none.status != 0);
  CHECK(none.err.find("no sweep or merge benchmark scenarios") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli::compare: the text table's legend describes the Pareto column it prints", "[cli]") {
  const std::string dir = scratch("compare_text");
  const Result r = run_moesim("compare " + kData + "small_compare.yaml --db " + dir + "/runs.db", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::string legend, head;
  std::getline(lines, legend);
  std::getline(lines, head);
  CHECK(legend.find("Pareto: yes = on the time-CO2e Pareto front") != std::string::npos);
  CHECK(legend.find("* =") == std::string::npos);  // no row is marked with a star
  CHECK(head.substr(head.size() - 6) == "Pareto");
  CHECK(r.out.find(" yes\n") != std::string::npos);
}

TEST_CASE("cli::help: the descriptions name what the commands do, serving too, and report takes sweeps", "[cli]") {
  const std::string dir = scratch("help");
  const Result top = run_moesim("--help", dir);
  REQUIRE(top.status == 0);
  const std::string first = top.out.substr(0, top.out.find('\n'));
  CHECK(first.find("train") != std::string::npos);
  CHECK(first.find("serve") != std::string::npos);
  const Result report = run_moesim("report --help", dir);
  REQUIRE(report.status == 0);
  CHECK(report.out.find("run, comparison or sweep") != std::string::npos);
}
