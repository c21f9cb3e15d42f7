// SPDX-License-Identifier: Apache-2.0
// `moesim plan` end to end on a tiny MoE (tests/data/cli/tiny_plan.yaml, 2 H100s): --dry-run lists and prunes
// without simulating, a real plan simulates the survivors as a sweep and ranks them (by time, by energy), a rerun
// resumes, `report sN` reads the plan's sweep, `moesim run` refuses `parallelism: auto`, and the unhappy paths.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using moesim::store::Store;

namespace {

using Result = moesim::testing::CliResult;

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("plan", name); }

Result run_moesim(const std::string& args, const std::string& dir) {
  return moesim::testing::run_moesim_in(args, dir, moesim::testing::RunIn::test_cwd,
                                        "env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN ");
}

const std::string kPlan = MOESIM_TEST_DATA "/cli/tiny_plan.yaml";

}  // namespace

TEST_CASE("cli::plan --dry-run: the layouts and their verdicts, nothing simulated", "[cli][plan]") {
  const std::string dir = scratch("dry");
  const std::string db = dir + "/plan.db";
  const Result r = run_moesim("plan " + kPlan + " --dry-run --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  // 2 devices, 8 sequences: p1 t1 (e1 d2 or e2 d1) x m {1,2,4}; p1 t2 m {1,2,4,8}; p2 t1 m {2,4} (up to 2 x P by
  // default); x ZeRO 0-3.
  CHECK(j["layouts"] == 48);
  CHECK(j["candidates"].size() == 48);
  CHECK(j["simulate"].get<int>() + j["out_of_memory"].get<int>() + j["invalid"].get<int>() + j["dominated"].get<int>() == 48);
  CHECK(j["invalid"] == 0);
  CHECK(j["out_of_memory"] == 0);  // a tiny model fits everywhere
  // ZeRO-1 is dominated everywhere (ZeRO-2 fits); without a pipeline only m1 of each is left.
  int simulate = 0;
  for (const auto& c : j["candidates"]) {
    INFO(c.dump());
    if (c["zero_stage"] == 1) CHECK(c["verdict"] == "dominated");
    if (c["pipeline"] == 1 && c["microbatches"] != 1) CHECK(c["verdict"] == "dominated");
    if (c["verdict"] == "simulate") ++simulate;
  }
  // Simulated: p1: (d2 e1 t1), (d1 e2 t1), (d1 e1 t2) at m1; p2: m 2, 4; each with ZeRO 0, 2, 3.
  CHECK(simulate == (3 + 2) * 3);
  CHECK(j["simulate"] == simulate);
  CHECK_FALSE(fs::exists(db));  // nothing stored
  // The text form states the rules and the counts.
  const Result text = run_moesim("plan " + kPlan + " --dry-run --list --db " + db, dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("48 layouts enumerated; 15 to simulate, 0 do not fit in memory, 0 invalid, 33 dominated") !=
        std::string::npos);
  CHECK(text.out.find("pipeline divides the 2 layers") != std::string::npos);
  CHECK(text.out.find("d1 e2 t1 p1 m2 z0") != std::string::npos);  // --list shows the dominated ones too
}

TEST_CASE("cli::plan: simulates the survivors as a sweep, ranks them, resumes - report sN reads it", "[cli][plan]") {
  const std::string dir = scratch("real");
  const std::string db = dir + "/plan.db";
  const Result r = run_moesim("plan " + kPlan + " --json --top 100 -j 2 --exhaustive --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["layouts"] == 48);
  CHECK(j["simulated"] == 15);
  REQUIRE(j["ranked"].size() == 15);
  for (std::size_t i = 1; i < j["ranked"].size(); ++i)
    CHECK(j["ranked"][i - 1]["train_days"].get<double>() <= j["ranked"][i]["train_days"].get<double>());
  for (const auto& row : j["ranked"]) {
    CHECK(row["step_time_s"].get<double>() > 0.0);
    CHECK(row["facility_energy_mwh"].get<double>() > 0.0);
    CHECK(row["data"].get<int>() * row["expert"].get<int>() * row["tensor"].get<int>() * row["pipeline"].get<int>() == 2);
  }
  {
    const Store s(db, Store::Mode::read_only);
    const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
    CHECK(sweep.points.size() == 48);
    std::size_t skipped = 0;
    for (const auto& p : sweep.points)
      if (!p.skip_reason.empty()) {
        ++skipped;
        CHECK_THAT(p.skip_reason, Catch::StartsWith("plan: dominated: dominated by"));
      }
    CHECK(skipped == 33);
    CHECK(s.list_runs().size() == 15);
  }
  // Ranked by energy: ascending MWh; the same sweep, nothing simulated again.
  const Result e = run_moesim("plan " + kPlan + " --json --rank-by energy --top 5 --db " + db, dir);
  INFO(e.err);
  REQUIRE(e.status == 0);
  const json k = json::parse(e.out);
  CHECK(k["sweep_id"] == j["sweep_id"]);
  REQUIRE(k["ranked"].size() == 5);
  for (std::size_t i = 1; i < k["ranked"].size(); ++i)
    CHECK(k["ranked"][i - 1]["facility_energy_mwh"].get<double>() <= k["ranked"][i]["facility_energy_mwh"].get<double>());
  CHECK(Store(db, Store::Mode::read_only).list_runs().size() == 15);
  // The table form, and the plan's sweep in `report`.
  const Result t = run_moesim("plan " + kPlan + " --top 3 --db " + db, dir);
  REQUIRE(t.status == 0);
  CHECK(t.out.find("| rank | data | expert | tensor | pipeline |") != std::string::npos);
  CHECK(t.out.find("| 3 |") != std::string::npos);
  CHECK(t.out.find("| 4 |") == std::string::npos);
  {
    // Significant digits, not fixed decimals: a tiny model's step time, days, MWh and tCO2e are each a number above
    // zero (fixed decimals printed 0.00 and 0.0, the same in every row).
    std::istringstream lines(t.out);
    int rows = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("| 1 |", 0) != 0 && line.rfind("| 2 |", 0) != 0 && line.rfind("| 3 |", 0) != 0) continue;
      ++rows;
      INFO(line);
      std::vector<std::string> cells;
      std::istringstream in(line.substr(1));
      for (std::string cell; std::getline(in, cell, '|');) cells.push_back(cell.substr(1, cell.size() - 2));
      REQUIRE(cells.size() >= 13);
      CHECK(cells[5] == "1f1b");              // the schedule column (a 2-layer model: no interleaved layouts)
      for (std::size_t c = 9; c < 13; ++c) {  // step time, days, MWh, tCO2e
        INFO(cells[c]);
        CHECK(std::stod(cells[c]) > 0.0);
      }
    }
    CHECK(rows == 3);
  }
  // --list without --dry-run: every layout with its verdict and reason, then the plan as usual (resumed here).
  const Result listed = run_moesim("plan " + kPlan + " --list --top 3 --db " + db, dir);
  INFO(listed.err);
  REQUIRE(listed.status == 0);
  CHECK(listed.err.find("d1 e2 t1 p1 m2 z0") != std::string::npos);  // a dominated layout, listed
  CHECK(listed.err.find("dominated by") != std::string::npos);       // with its reason
  CHECK(listed.out.find("| rank | data | expert | tensor | pipeline |") != std::string::npos);
  const Result listed_json = run_moesim("plan " + kPlan + " --list --json --top 3 --db " + db, dir);
  REQUIRE(listed_json.status == 0);
  CHECK(json::parse(listed_json.out)["candidates"].size() == 48);
  const Result rep = run_moesim("report s" + std::to_string(j["sweep_id"].get<int>()) + " --format csv --db " + db +
                                    " -o " + dir + "/rep",
                                dir);
  INFO(rep.err);
  CHECK(rep.status == 0);
}

TEST_CASE("cli::plan: by time, layouts whose lower bound cannot beat the best simulated one are not simulated",
          "[cli][plan][bound]") {
  const std::string dir = scratch("bound");
  const Result all = run_moesim("plan " + kPlan + " --json --top 100 --exhaustive --db " + dir + "/all.db", dir);
  INFO(all.err);
  REQUIRE(all.status == 0);
  const json a = json::parse(all.out);
  const Result bounded = run_moesim("plan " + kPlan + " --json --top 100 --db " + dir + "/bounded.db", dir);
  INFO(bounded.err);
  REQUIRE(bounded.status == 0);
  const json b = json::parse(bounded.out);
  CHECK(a["bounded"] == 0);
  REQUIRE(a["simulated"] == 15);
  // Fewer simulated, none lost: simulated + bounded = the 15 survivors of the screening.
  CHECK(b["bounded"].get<int>() > 0);
  CHECK(b["simulated"].get<int>() + b["bounded"].get<int>() == 15);
  // The same best layout, with the same figures (the same scenario simulated), and every simulated layout ranked as in
  // the exhaustive plan.
  REQUIRE_FALSE(b["ranked"].empty());
  CHECK(b["ranked"][0]["layout"] == a["ranked"][0]["layout"]);
  CHECK(b["ranked"][0]["train_days"].get<double>() == a["ranked"][0]["train_days"].get<double>());
  // Every bounded layout's reason states its bound and the best layout; its bound is no better, and the exhaustive
  // plan confirms that it was indeed no faster.
  std::map<std::string, double> days;
  for (const auto& row : a["ranked"]) days[row["layout"].get<std::string>()] = row["train_days"].get<double>();
  const Store s(dir + "/bounded.db", Store::Mode::read_only), full(dir + "/all.db", Store::Mode::read_only);
  const auto sweep = s.get_sweep(b["sweep_id"].get<std::int64_t>());
  const auto full_sweep = full.get_sweep(a["sweep_id"].get<std::int64_t>());
  const double best_s = a["ranked"][0]["train_days"].get<double>() * 86400.0;
  int n = 0;
  for (const auto& p : sweep.points) {
    if (p.skip_reason.rfind("plan: bounded:", 0) != 0) continue;
    ++n;
    INFO(p.skip_reason);
    CHECK(p.skip_reason.find(a["ranked"][0]["layout"].get<std::string>()) != std::string::npos);
    // The same point (the same candidate order) in the exhaustive plan: simulated, and no faster than the best.
    const auto& q = full_sweep.points.at(static_cast<std::size_t>(p.index));
    REQUIRE(q.run_id);
    const auto run = full.get_run(*q.run_id);
    const auto* t = run.metric(moesim::store::metric_names::kTrainTime_s);
    REQUIRE(t != nullptr);
    CHECK(t->value >= best_s);
  }
  CHECK(n == b["bounded"].get<int>());
  for (const auto& row : b["ranked"]) CHECK(days.at(row["layout"].get<std::string>()) == row["train_days"].get<double>());
  // Ranking by energy is not bounded: every survivor is simulated.
  const Result e = run_moesim("plan " + kPlan + " --json --rank-by energy --db " + dir + "/energy.db", dir);
  REQUIRE(e.status == 0);
  CHECK(json::parse(e.out)["simulated"] == 15);
}

TEST_CASE("cli::plan: one sweep summary for the whole plan, its counts those of the plan", "[cli][plan][bound]") {
  const std::string dir = scratch("summary");
  const std::string db = dir + "/plan.db";
  // The summary lines ("moesim sweep N of NAME: ...") of `text`, and the counts of the first.
  auto summaries = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("moesim sweep ", 0) == 0) out.push_back(line);
    return out;
  };
  const std::regex counts_re(R"(: (\d+) points: (\d+) run now, (\d+) already complete, (\d+) skipped, (\d+) failed;)");
  // Bounded by time: the plan runs its sweep a batch at a time, then once more for the bounded layouts.
  const Result first = run_moesim("plan " + kPlan + " --json --top 100 --db " + db, dir);
  INFO(first.err);
  REQUIRE(first.status == 0);
  const json j = json::parse(first.out);
  REQUIRE(j["bounded"].get<int>() > 0);
  const auto lines = summaries(first.err);
  REQUIRE(lines.size() == 1);
  std::smatch m;
  REQUIRE(std::regex_search(lines[0], m, counts_re));
  CHECK(std::stoi(m[1].str()) == j["layouts"].get<int>());
  CHECK(std::stoi(m[2].str()) == j["simulated"].get<int>());
  CHECK(std::stoi(m[3].str()) == 0);
  CHECK(std::stoi(m[4].str()) == j["layouts"].get<int>() - j["simulated"].get<int>());
  CHECK(std::stoi(m[5].str()) == 0);
  // Again on the same store: nothing run, every simulated layout already complete; the text form prints it once too.
  const Result again = run_moesim("plan " + kPlan + " --top 3 --db " + db, dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  const auto again_lines = summaries(again.out);
  REQUIRE(again_lines.size() == 1);
  CHECK(summaries(again.err).empty());
  REQUIRE(std::regex_search(again_lines[0], m, counts_re));
  CHECK(std::stoi(m[2].str()) == 0);
  CHECK(std::stoi(m[3].str()) == j["simulated"].get<int>());
}

TEST_CASE("cli::plan and run: the unhappy paths", "[cli][plan][errors]") {
  const std::string dir = scratch("errors");
  // `run` refuses `parallelism: auto` and points to `moesim plan`.
  const Result run = run_moesim("run " + kPlan + " --no-store", dir);
  CHECK(run.status != 0);
  CHECK(run.err.find("moesim plan") != std::string::npos);
  // No layout fits: the error names the smallest need.
  const Result big = run_moesim("plan " + kPlan + " --dry-run --set model.layers=2 --set model.d_model=16384 --set "
                                "model.d_ff=262144 --set model.heads=128 --set training.rematerialization=none",
                                dir);
  CHECK(big.status == 1);
  CHECK(big.err.find("no layout fits in memory: the smallest need of the") != std::string::npos);
  CHECK(big.err.find("GiB per device (d") != std::string::npos);
  // No valid layout: 3 GPUs divide neither the 2 layers, the 4 heads nor the 8 sequences.
  const Result none = run_moesim("plan " + kPlan + " --dry-run --set cluster.count=3 --set cluster.topology.gpus_per_node=3",
                                 dir);
  CHECK(none.status == 1);
  CHECK(none.err.find("no valid layout of the 3 devices") != std::string::npos);
  // A serving scenario is planned as one (its pool's splits: plan_serving_cli_test.cpp); a bad --rank-by is a usage error.
  const Result serving = run_moesim("plan " MOESIM_SOURCE_ROOT "/scenarios/examples/serving-static.yaml --dry-run", dir);
  CHECK(serving.status == 0);
  CHECK(serving.out.find("(serving) on") != std::string::npos);
  CHECK(serving.out.find("replicas x data x tensor x pipeline") != std::string::npos);
  const Result rank = run_moesim("plan " + kPlan + " --rank-by speed", dir);
  CHECK(rank.status == 2);
}

TEST_CASE("cli::plan: the layout an example plan's description suggests for `moesim run` really runs", "[cli][plan]") {
  const std::string dir = scratch("suggested");
  int files = 0;
  for (const auto& entry : fs::directory_iterator(MOESIM_SOURCE_ROOT "/scenarios/plan")) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string text = moesim::testing::slurp(entry.path().string());
    std::string sets;
    const std::regex set_re(R"(--set\s+([A-Za-z0-9_.]+=[A-Za-z0-9_-]+))");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), set_re); it != std::sregex_iterator(); ++it)
      sets += " --set " + (*it)[1].str();
    if (sets.empty()) continue;
    ++files;
    INFO(entry.path().string() << ":" << sets);
    const Result r = run_moesim("run " + entry.path().string() + " --no-store" + sets, dir);
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(r.out.find("(complete)") != std::string::npos);
  }
  CHECK(files >= 1);  // scenarios/plan/h100-mixtral-8x7b.yaml suggests one
}

TEST_CASE("cli::plan --list: a pruned ZeRO-1 layout's reason is true of its ZeRO-2 twin", "[cli][plan]") {
  const std::string dir = scratch("zero_reason");
  // Mixtral-like, 8 layers on 16 GPUs: with auto recomputation some ZeRO-2 layouts fit with less recomputation than
  // their ZeRO-1 twins and so need more memory; "the same step, needs less memory" was printed for them too.
  const Result r = run_moesim(std::string("plan ") + MOESIM_SOURCE_ROOT + "/scenarios/plan/h100-mixtral-8x7b.yaml --set cluster.count=16 "
                              "--set model.layers=8 --set training.batch_tokens=262144 --dry-run --list --db " + dir + "/p.db",
                              dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  static const std::regex same(R"(build the same step, stage 2 needs no more memory \(([0-9.]+) vs ([0-9.]+) GiB\))");
  static const std::regex less(R"(fits with less recomputation \((none|selective) vs (selective|full); ([0-9.]+) vs ([0-9.]+) GiB\))");
  int n_same = 0, n_less = 0;
  std::istringstream in(r.out);  // --dry-run --list: the layouts are the output
  for (std::string line; std::getline(in, line);) {
    INFO(line);
    std::smatch m;
    if (std::regex_search(line, m, same)) {
      ++n_same;
      CHECK(std::stod(m[1].str()) <= std::stod(m[2].str()));
    } else if (std::regex_search(line, m, less)) {
      ++n_less;
      CHECK(m[1].str() != m[2].str());
      CHECK(line.find(" " + m[2].str() + "  dominated by") != std::string::npos);  // the ZeRO-1 layout's own mode
    }
  }
  CHECK(n_same > 0);
  CHECK(n_less > 0);
}

TEST_CASE("cli::plan: sequence parallelism asked for applies where tensor > 1 and is off on tensor-1 layouts",
          "[cli][plan]") {
  const std::string dir = scratch("sequence_parallel");
  const std::string db = dir + "/plan.db";
  const std::string sp = " --set 'parallelism={sequence_parallel: true, overlap_tensor_comm: true}'";
  const Result dry = run_moesim("plan " + kPlan + sp + " --dry-run --json --db " + db, dir);
  INFO(dry.err);
  REQUIRE(dry.status == 0);
  const json d = json::parse(dry.out);
  CHECK(d["invalid"] == 0);  // without the rule every tensor-1 layout would be refused for sequence parallelism
  CHECK(d["simulate"] == 15);  // the same survivors as without sequence parallelism
  bool stated = false;
  for (const auto& rule : d["rules"]) stated = stated || rule.get<std::string>().find("off where tensor = 1") != std::string::npos;
  CHECK(stated);
  // Simulated, each run has sequence parallelism and the overlap exactly where its layout has tensor 2.
  const Result r = run_moesim("plan " + kPlan + sp + " --json --top 100 --exhaustive --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  REQUIRE(j["ranked"].size() == 15);
  const Store s(db, Store::Mode::read_only);
  int with_tensor = 0;
  for (const auto& row : j["ranked"]) {
    INFO(row.dump());
    const auto run = s.get_run(row["run_id"].get<std::int64_t>());
    const bool t2 = row["tensor"] == 2;
    with_tensor += t2 ? 1 : 0;
    CHECK(run.scenario.at("parallelism").at("sequence_parallel").get<bool>() == t2);
    CHECK(run.scenario.at("parallelism").at("overlap_tensor_comm").get<bool>() == t2);
  }
  CHECK(with_tensor > 0);
  CHECK(with_tensor < 15);
}

TEST_CASE("cli::plan: pipeline schedules - interleaved 1F1B enumerated, a DualPipe schedule kept where pipelined",
          "[cli][plan]") {
  const std::string dir = scratch("schedules");
  const std::string db = dir + "/plan.db";
  const std::string four = " --set model.layers=4";  // 2 layers per stage at pipeline 2: room for two chunks each
  // A scenario asking for two chunks per stage: before, every layout without a pipeline was refused for it.
  const Result dry = run_moesim("plan " + kPlan + four + " --set 'parallelism={virtual_stages: 2}' --dry-run --json --db " + db, dir);
  INFO(dry.err);
  REQUIRE(dry.status == 0);
  const json d = json::parse(dry.out);
  CHECK(d["invalid"] == 0);
  int interleaved = 0, plain_pipelined = 0;
  for (const auto& c : d["candidates"]) {
    INFO(c.dump());
    const int p = c["pipeline"], v = c["virtual_stages"], m = c["microbatches"];
    const std::string sched = c["schedule"];
    if (sched == "interleaved_1f1b") {
      ++interleaved;
      CHECK(p == 2);
      CHECK(v == 2);
      CHECK(m % p == 0);
      CHECK(c["layout"].get<std::string>().find(" v2") != std::string::npos);
    } else {
      CHECK(sched == "1f1b");
      CHECK(v == 1);
      if (p > 1) ++plain_pipelined;
    }
  }
  CHECK(interleaved > 0);
  CHECK(interleaved == plain_pipelined);  // every pipelined layout here has its two-chunk twin (m is a multiple of 2)
  // --max-virtual-stages 1 turns the interleaved layouts off (and overrides the file's virtual_stages).
  const Result off = run_moesim("plan " + kPlan + four + " --set 'parallelism={virtual_stages: 2}' --max-virtual-stages 1 "
                                "--dry-run --json --db " + db, dir);
  REQUIRE(off.status == 0);
  CHECK(json::parse(off.out)["layouts"].get<int>() == d["layouts"].get<int>() - interleaved);
  // Simulated: each interleaved run stores the schedule and chunks it was given.
  const Result r = run_moesim("plan " + kPlan + four + " --json --top 100 --exhaustive --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const Store s(db, Store::Mode::read_only);
  int ran_interleaved = 0;
  const json ranked = json::parse(r.out)["ranked"];
  for (const auto& row : ranked) {
    const auto run = s.get_run(row["run_id"].get<std::int64_t>());
    CHECK(run.scenario.at("parallelism").at("schedule") == row["schedule"]);
    CHECK(run.scenario.at("parallelism").at("virtual_stages") == row["virtual_stages"]);
    ran_interleaved += row["schedule"] == "interleaved_1f1b" ? 1 : 0;
  }
  CHECK(ran_interleaved > 0);
  // The best layout as --set expressions (JSON) and as a command (text) that runs it: the same simulation.
  const json best = json::parse(r.out)["best_overrides"];
  REQUIRE(best.size() == 8);
  std::string sets;
  for (const auto& b : best) sets += " --set " + b.get<std::string>();
  const Result again = run_moesim("run " + kPlan + four + sets + " --json --no-store", dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(json::parse(again.out)["step_time_s"].get<double>() ==
        Approx(json::parse(r.out)["ranked"][0]["step_time_s"].get<double>()).epsilon(1e-12));
  const Result text = run_moesim("plan " + kPlan + four + " --top 1 --db " + db, dir);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("run the best: moesim run " + kPlan + " --set 'model.layers=4'" + sets) != std::string::npos);
  // A DualPipe schedule named in the file: kept on the pipelined layouts (whose own rules the resolver checks), 1F1B
  // without a pipeline (before, the plan's base itself was refused).
  const Result dual = run_moesim("plan " + kPlan + four + " --set 'parallelism={schedule: dualpipev}' --dry-run --json --db " + db, dir);
  INFO(dual.err);
  REQUIRE(dual.status == 0);
  const json dj = json::parse(dual.out);
  int dual_ok = 0;
  for (const auto& c : dj["candidates"]) {
    INFO(c.dump());
    const bool pipelined = c["pipeline"].get<int>() > 1;
    CHECK(c["schedule"] == (pipelined ? "dualpipev" : "1f1b"));
    if (pipelined && c["verdict"] != "invalid") ++dual_ok;
    if (c["verdict"] == "invalid") {
      CHECK(c["microbatches"].get<int>() < 2 * c["pipeline"].get<int>());  // DualPipeV's own rule: m >= 2P
      CHECK(c["reason"].get<std::string>().find("dualpipev needs at least 2 x pipeline") != std::string::npos);
    }
  }
  CHECK(dual_ok > 0);
  // Stage sizes in the file (last_stage_layers): kept on the pipelined layouts, left out without a pipeline (before,
  // every unpipelined layout was refused for them), and no interleaved layouts (the sizes are for one chunk per stage).
  const std::string last = " --set 'parallelism={last_stage_layers: 1}'";
  const Result sized = run_moesim("plan " + kPlan + four + last + " --json --top 100 --exhaustive --db " + db, dir);
  INFO(sized.err);
  REQUIRE(sized.status == 0);
  const json sj = json::parse(sized.out);
  CHECK(sj["invalid"] == 0);
  bool pipelined_ran = false, single_ran = false;
  const json sized_ranked = sj["ranked"];
  for (const auto& row : sized_ranked) {
    INFO(row.dump());
    CHECK(row["schedule"] == "1f1b");
    const auto run = s.get_run(row["run_id"].get<std::int64_t>());
    const json& par = run.scenario.at("parallelism");
    if (row["pipeline"].get<int>() > 1) {
      pipelined_ran = true;
      CHECK(par.at("last_stage_layers") == 1);
    } else {
      single_ran = true;
      CHECK_FALSE(par.contains("last_stage_layers"));
    }
  }
  CHECK(pipelined_ran);
  CHECK(single_ran);
}
