// SPDX-License-Identifier: Apache-2.0
// `moesim sweep` and `moesim db merge` end to end: a local sweep, resuming (a rerun and after kill -9), shards
// merged into exactly the numbers of the local sweep, the Slurm array script run task by task, and the unhappy
// paths (unknown key, all points invalid, bad --shard, bad shard files) with their exit statuses.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using moesim::store::RunStatus;
using moesim::store::Store;

namespace {

using Result = moesim::testing::CliResult;
using moesim::testing::slurp;

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("sweep", name); }

/** Runs `moesim ARGS` (with `env` prefixed, e.g. "SLURM_ARRAY_TASK_ID=1 ") outside any Slurm array of the caller's. */
Result run_moesim(const std::string& args, const std::string& dir, const std::string& env = "") {
  return moesim::testing::run_moesim_in(args, dir, moesim::testing::RunIn::test_cwd,
                                        "env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT -u SLURM_ARRAY_TASK_MIN " + env);
}

const std::string kData = MOESIM_TEST_DATA "/cli/";
const std::string kSweep = kData + "small_sweep.yaml";
const std::string kResume = kData + "resume_sweep.yaml";  // four points of about 0.5 s each

/** Every complete sweep run of a store by point hash: its metrics and datacenter results, bit for bit; except
 *  `sim_wall_s`, the simulator's own wall time, a measurement of the machine rather than a result of the model. */
std::map<std::string, std::string> numbers_by_point(const std::string& db) {
  const Store s(db, Store::Mode::read_only);
  std::map<std::string, std::string> out;
  for (const auto& r : s.list_runs()) {
    if (r.point_hash.empty() || r.status != RunStatus::complete) continue;
    const auto run = s.get_run(r.id);
    std::string text;
    for (const auto& m : run.metrics) {
      if (m.name == "sim_wall_s") continue;
      std::uint64_t bits = 0;
      std::memcpy(&bits, &m.value, sizeof bits);
      text += m.name + "=" + std::to_string(bits) + ";";
    }
    for (const auto& d : run.datacenters) {
      std::uint64_t bits = 0;
      std::memcpy(&bits, &d.co2e_gross_kg, sizeof bits);
      text += d.name + ":" + std::to_string(bits) + ";";
    }
    out[r.point_hash] = text;
  }
  return out;
}

}  // namespace

TEST_CASE("cli::sweep: every point runs once, skipped points keep their reason, a rerun runs nothing", "[cli][sweep]") {
  const std::string dir = scratch("local");
  const std::string db = dir + "/sweep.db";
  const Result r = run_moesim("sweep " + kSweep + " --json -j 2 --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["points"] == 6);
  CHECK(j["run"] == 4);
  CHECK(j["skipped"] == 2);
  CHECK(j["already_complete"] == 0);
  CHECK(j["failed"] == 0);
  {
    const Store s(db, Store::Mode::read_only);
    const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
    REQUIRE(sweep.points.size() == 6);
    std::size_t skipped = 0;
    for (const auto& p : sweep.points) {
      INFO(p.label);
      if (!p.skip_reason.empty()) {
        ++skipped;
        CHECK(p.label.find("parallelism.data=3") != std::string::npos);
        CHECK_FALSE(p.run_id.has_value());
      } else {
        CHECK(p.run_status == RunStatus::complete);
        CHECK(s.get_run(*p.run_id).point_hash == p.point_hash);
        CHECK(s.get_run(*p.run_id).alternative_label == p.label);
      }
    }
    CHECK(skipped == 2);
    CHECK(s.list_runs().size() == 4);
    // Different sites, same job: equal training time; the zipped pairs change it.
    CHECK(s.get_run(*sweep.points[0].run_id).metric("train_time_s")->value ==
          s.get_run(*sweep.points[3].run_id).metric("train_time_s")->value);
  }
  const Result again = run_moesim("sweep " + kSweep + " --json --db " + db, dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  const json k = json::parse(again.out);
  CHECK(k["sweep_id"] == j["sweep_id"]);
  CHECK(k["run"] == 0);
  CHECK(k["already_complete"] == 4);
  CHECK(Store(db, Store::Mode::read_only).list_runs().size() == 4);
  // Not on a TTY: one line per point on stderr.
  const Result plain = run_moesim("sweep " + kSweep + " --db " + dir + "/plain.db", dir);
  REQUIRE(plain.status == 0);
  CHECK(plain.err.find("[sweep] 4/4 point") != std::string::npos);
  CHECK(plain.err.find("skipped:") != std::string::npos);
  CHECK(plain.out.find("4 run now, 0 already complete, 2 skipped, 0 failed") != std::string::npos);
}

TEST_CASE("cli::sweep: the --set overrides a sweep ran with are stored and shown in its reports", "[cli][sweep]") {
  const std::string dir = scratch("overrides");
  const std::string db = dir + "/sweep.db";
  const Result r = run_moesim("sweep " + kSweep + " --json --set training.tokens=5e8 --set model.top_k=1 --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["overrides"] == json::array({"training.tokens=5e8", "model.top_k=1"}));
  const std::string id = std::to_string(j["sweep_id"].get<std::int64_t>());
  CHECK(Store(db, Store::Mode::read_only).get_sweep(j["sweep_id"].get<std::int64_t>()).overrides == j["overrides"]);
  for (const char* f : {"md", "html", "csv"}) {
    const Result rep = run_moesim(std::string("report s") + id + " --format " + f + " -o " + dir + "/rep --db " + db, dir);
    INFO(rep.err);
    REQUIRE(rep.status == 0);
    const std::string text = slurp(dir + "/rep/sweep-" + id + "." + f);
    if (std::string(f) == "csv") {
      CHECK(text.substr(0, text.find('\n')).find(",sweep_overrides") != std::string::npos);
      CHECK(text.find("\"[\"\"training.tokens=5e8\"\",\"\"model.top_k=1\"\"]\"") != std::string::npos);
    } else {
      CHECK(text.find("Every point ran with --set training.tokens=5e8, --set model.top_k=1") != std::string::npos);
    }
  }
  // The same file without them is another sweep, whose report says it had none.
  const Result plain = run_moesim("sweep " + kSweep + " --json --db " + db, dir);
  REQUIRE(plain.status == 0);
  CHECK(json::parse(plain.out)["sweep_id"] != j["sweep_id"]);
  const std::string pid = std::to_string(json::parse(plain.out)["sweep_id"].get<std::int64_t>());
  REQUIRE(run_moesim("report s" + pid + " --format md -o " + dir + "/rep --db " + db, dir).status == 0);
  CHECK(slurp(dir + "/rep/sweep-" + pid + ".md").find("No --set overrides") != std::string::npos);
}

TEST_CASE("cli::sweep: a sweep killed with kill -9 and restarted finishes the rest and loses nothing", "[cli][sweep]") {
  const std::string dir = scratch("resume");
  const std::string db = dir + "/sweep.db";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* f = std::freopen((dir + "/bg.txt").c_str(), "w", stdout);
    f = std::freopen((dir + "/bg_err.txt").c_str(), "w", stderr);
    (void)f;
    ::execl(MOESIM_BINARY, MOESIM_BINARY, "--profiles", MOESIM_SOURCE_ROOT "/profiles", "sweep", kResume.c_str(), "-j", "1",
            "--db", db.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill it once the first point is complete and the next one started.
  std::size_t complete_before = 0;
  for (int i = 0; i < 1200 && complete_before == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (!fs::exists(db)) continue;
    try {
      const Store s(db, Store::Mode::read_only);
      for (const auto& r : s.list_runs()) complete_before += r.status == RunStatus::complete ? 1 : 0;
    } catch (const std::exception&) {
    }
  }
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  REQUIRE(complete_before >= 1);
  std::size_t complete_at_kill = 0;
  {
    const Store s(db, Store::Mode::read_only);
    for (const auto& r : s.list_runs()) complete_at_kill += r.status == RunStatus::complete ? 1 : 0;
  }
  INFO("complete when killed: " << complete_at_kill);
  REQUIRE(complete_at_kill < 4);  // killed before the end: something is left to resume
  const Result r = run_moesim("sweep " + kResume + " --json -j 2 --db " + dir + "/sweep.db", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["already_complete"].get<std::size_t>() == complete_at_kill);
  CHECK(j["run"].get<std::size_t>() == 4 - complete_at_kill);
  const Store s(db, Store::Mode::read_only);
  const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
  std::size_t complete = 0;
  for (const auto& p : sweep.points) complete += p.run_status == RunStatus::complete ? 1 : 0;
  CHECK(complete == 4);
  for (const auto& run : s.list_runs()) {
    // A run the kill left behind is marked abandoned, never left `running`.
    CHECK(run.status != RunStatus::running);
    if (run.status == RunStatus::failed) CHECK(s.get_run(run.id).error_message.find("abandoned") != std::string::npos);
  }
  // Exactly the numbers of an uninterrupted sweep.
  const Result fresh = run_moesim("sweep " + kResume + " --json --db " + dir + "/fresh.db", dir);
  REQUIRE(fresh.status == 0);
  CHECK(numbers_by_point(db) == numbers_by_point(dir + "/fresh.db"));
}

TEST_CASE("cli::sweep: shards merged give exactly the numbers of a local sweep", "[cli][sweep][merge]") {
  const std::string dir = scratch("shards");
  const Result local = run_moesim("sweep " + kSweep + " --json -j 2 --db " + dir + "/local.db", dir);
  REQUIRE(local.status == 0);
  // Shard 0 by flag, shard 1 from Slurm's environment (an array indexed from 1, as --array=1-2 gives).
  const Result s0 = run_moesim("sweep " + kSweep + " --json --shard 0/2 --db " + dir + "/s0.db", dir);
  INFO(s0.err);
  REQUIRE(s0.status == 0);
  const Result s1 = run_moesim("sweep " + kSweep + " --json --db " + dir + "/s1.db", dir,
                               "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=2 ");
  INFO(s1.err);
  REQUIRE(s1.status == 0);
  const json j0 = json::parse(s0.out), j1 = json::parse(s1.out);
  CHECK(j1["shard"]["index"] == 1);
  CHECK(j1["shard"]["count"] == 2);
  CHECK(j0["shard_points"].get<int>() + j1["shard_points"].get<int>() == 6);
  CHECK(j0["run"].get<int>() + j1["run"].get<int>() == 4);
  CHECK(j0["run"].get<int>() == 2);  // four equal-cost points: two each
  CHECK(j0["definition_hash"] == j1["definition_hash"]);
  CHECK(j0["definition_hash"] == json::parse(local.out)["definition_hash"]);

  const std::string merged = dir + "/merged.db";
  const Result m = run_moesim("db merge " + merged + " " + dir + "/s0.db " + dir + "/s1.db --json", dir);
  INFO(m.err);
  REQUIRE(m.status == 0);
  CHECK(numbers_by_point(merged) == numbers_by_point(dir + "/local.db"));
  CHECK(numbers_by_point(merged).size() == 4);
  // Idempotent: merging again changes nothing.
  const Result m2 = run_moesim("db merge " + merged + " " + dir + "/s1.db " + dir + "/s0.db", dir);
  REQUIRE(m2.status == 0);
  CHECK(m2.out.find("0 runs copied, 2 already present") != std::string::npos);
  const Store s(merged, Store::Mode::read_only);
  CHECK(s.list_runs().size() == 4);
  REQUIRE(s.list_sweeps().size() == 1);
  CHECK(s.get_sweep(s.list_sweeps()[0].id).points.size() == 6);
  // runs list and report read the merged store as a local one.
  const Result list = run_moesim("runs list --json --db " + merged, dir);
  REQUIRE(list.status == 0);
  CHECK(json::parse(list.out).size() == 4);
  const Result rep = run_moesim("report " + std::to_string(s.list_runs()[0].id) + " --format md -o " + dir + "/rep --db " + merged, dir);
  INFO(rep.err);
  CHECK(rep.status == 0);
  // The sweep's report, from a shard (half the points held) and from the merged store (all of them).
  const std::int64_t sweep_id = s.list_sweeps()[0].id;
  const Result md = run_moesim("report s" + std::to_string(sweep_id) + " --format md -o " + dir + "/rep --db " + merged, dir);
  INFO(md.err);
  REQUIRE(md.status == 0);
  const std::string text = slurp(dir + "/rep/sweep-" + std::to_string(sweep_id) + ".md");
  CHECK(text.find("# Sweep " + std::to_string(sweep_id) + ": small-sweep") != std::string::npos);
  CHECK(text.find("Complete 4, skipped 2, failed 0, not finished 0, not in this store 0.") != std::string::npos);
  CHECK(text.find("| placement | cluster.count | parallelism.data |") != std::string::npos);
  CHECK(text.find("## Skipped points") != std::string::npos);
  CHECK(text.find("24 devices, but the cluster has 8 chips") != std::string::npos);
  // The grid figures behind the points' CO2e keep their datasets' licences and attributions, as in a run's report.
  CHECK(text.find("## Data sources and licences") != std::string::npos);
  CHECK(text.find("Google Cloud region carbon data") != std::string::npos);
  const Result csv = run_moesim("report sweep:1 --format csv -o " + dir + "/rep --db " + dir + "/s0.db", dir);
  INFO(csv.err);
  REQUIRE(csv.status == 0);
  const std::string table = slurp(dir + "/rep/sweep-1.csv");
  CHECK(table.rfind("point,placement,cluster.count,parallelism.data,status,run_id,point_hash,skip_reason,", 0) == 0);
  CHECK(std::count(table.begin(), table.end(), '\n') == 7);  // the header and all six points
  CHECK(table.find("not in this store") != std::string::npos);  // the other shard's points
  const Result html = run_moesim("report s" + std::to_string(sweep_id) + " -o " + dir + "/rep --db " + merged, dir);
  INFO(html.err);
  REQUIRE(html.status == 0);
  const std::string page = slurp(dir + "/rep/sweep-" + std::to_string(sweep_id) + ".html");
  CHECK(page.find("Metrics against the swept axes") != std::string::npos);
  CHECK(page.find("<section id=\"licences\">") != std::string::npos);
  CHECK(page.find(fmt::format("id=\"sweep-{}-pareto\"", sweep_id)) != std::string::npos);
  const Result none = run_moesim("report s99 --format md -o " + dir + "/rep --db " + merged, dir);
  CHECK(none.status == 1);
  CHECK(none.err.find("no sweep with id 99") != std::string::npos);
  // A sweep resumed on the merged store runs nothing.
  const Result resumed = run_moesim("sweep " + kSweep + " --json --db " + merged, dir);
  REQUIRE(resumed.status == 0);
  CHECK(json::parse(resumed.out)["run"] == 0);
}

TEST_CASE("cli::sweep: the Slurm array script runs the shards, task by task, into stores that merge", "[cli][sweep][slurm]") {
  const std::string dir = scratch("slurm");
  const Result r = run_moesim("sweep " + kSweep + " --slurm-script --shards 2 --partition debug --time 00:10:00 --mem 2G -j 1 --db " +
                                  dir + "/study.db",
                              dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.rfind("#!/bin/bash\n", 0) == 0);
  for (const char* s : {"#SBATCH --array=0-1\n", "#SBATCH --partition=debug\n", "#SBATCH --time=00:10:00\n", "#SBATCH --mem=2G\n",
                        "#SBATCH --cpus-per-task=1\n", "shard${SLURM_ARRAY_TASK_ID}.db", "db merge"})
    CHECK(r.out.find(s) != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/study.db"));  // printing the script runs nothing
  const std::string script = dir + "/job.sh";
  std::ofstream(script) << r.out;
  // What sbatch would do: run the script once per array index with SLURM_ARRAY_TASK_ID and _COUNT set.
  for (int task = 0; task < 2; ++task) {
    const std::string cmd = "cd " + dir + " && SLURM_ARRAY_TASK_ID=" + std::to_string(task) +
                            " SLURM_ARRAY_TASK_COUNT=2 bash " + script + " > task.out 2>&1";
    INFO(slurp(dir + "/task.out"));
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  REQUIRE(fs::exists(dir + "/study.shard0.db"));
  REQUIRE(fs::exists(dir + "/study.shard1.db"));
  const Result m = run_moesim("db merge " + dir + "/study.db " + dir + "/study.shard0.db " + dir + "/study.shard1.db", dir);
  REQUIRE(m.status == 0);
  CHECK(numbers_by_point(dir + "/study.db").size() == 4);
  SECTION("--slurm-script without --shards is a usage error") {
    const Result u = run_moesim("sweep " + kSweep + " --slurm-script", dir);
    CHECK(u.status == 2);
    CHECK(u.err.find("--shards") != std::string::npos);
  }
}

TEST_CASE("cli::sweep: bad sweeps and bad shards are clear errors with the documented exit statuses", "[cli][sweep]") {
  const std::string dir = scratch("errors");
  const std::string db = dir + "/sweep.db";
  SECTION("an unknown key: exit 1, the valid keys listed, nothing stored") {
    const Result r = run_moesim("sweep " + kData + "sweep_unknown_key.yaml --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("sweep_unknown_key.yaml:14:") != std::string::npos);
    CHECK(r.err.find("did you mean 'cluster.count'") != std::string::npos);
    CHECK(r.err.find("cluster.accelerator") != std::string::npos);
    CHECK_FALSE(fs::exists(db));
  }
  SECTION("all points invalid: exit 1, the first reason, nothing stored") {
    const Result r = run_moesim("sweep " + kData + "sweep_all_invalid.yaml --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("none of the sweep's 2 points resolves") != std::string::npos);
    CHECK(r.err.find("tpu_v99") != std::string::npos);
    CHECK_FALSE(fs::exists(db));
  }
  SECTION("no sweep section: exit 1") {
    const Result r = run_moesim("sweep " + kData + "small_compare.yaml --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("no `sweep:` section") != std::string::npos);
  }
  SECTION("a bad --shard or Slurm environment: exit 2") {
    for (const char* shard : {"2/2", "abc", "1/0", "-1/2", "1"}) {
      INFO(shard);
      const Result r = run_moesim(std::string("sweep ") + kSweep + " --shard " + shard + " --db " + db, dir);
      CHECK(r.status == 2);
      CHECK(r.err.find("--shard") != std::string::npos);
    }
    const Result e = run_moesim("sweep " + kSweep + " --db " + db, dir, "SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=2 ");
    CHECK(e.status == 2);
    CHECK(e.err.find("SLURM_ARRAY_TASK_ID") != std::string::npos);
    CHECK_FALSE(fs::exists(db));
  }
  SECTION("merging a file that is not a store: exit 1, the file named") {
    const std::string bad = dir + "/notes.db";
    std::ofstream(bad) << "not a database, just text that is long enough to fill the SQLite header bytes..........";
    const Result r = run_moesim("db merge " + dir + "/out.db " + bad, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot merge " + bad) != std::string::npos);
    const Result u = run_moesim("db merge " + dir + "/out.db", dir);
    CHECK(u.status == 2);
  }
}

TEST_CASE("cli::sweep: two points that resolve to the same scenario run once, both linked to the run", "[cli][sweep]") {
  const std::string dir = scratch("dup");
  const std::string db = dir + "/sweep.db";
  const Result r = run_moesim("sweep " + kData + "dup_sweep.yaml --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["run"] == 1);
  CHECK(j["already_complete"] == 1);
  const Store s(db, Store::Mode::read_only);
  const auto sweep = s.get_sweep(j["sweep_id"].get<std::int64_t>());
  REQUIRE(sweep.points.size() == 2);
  CHECK(sweep.points[0].point_hash == sweep.points[1].point_hash);
  CHECK(sweep.points[0].run_id == sweep.points[1].run_id);
  CHECK(sweep.points[1].run_status == RunStatus::complete);
  CHECK(s.list_runs().size() == 1);
}

TEST_CASE("cli::sweep --submit: the script goes to sbatch from the PATH, or stays on disk with a clear error", "[cli][sweep][slurm]") {
  const std::string dir = scratch("submit");
  fs::create_directories(dir + "/bin");
  fs::create_directories(dir + "/empty");
  {
    // A stand-in for sbatch: keeps the script it was given and answers as sbatch does.
    std::ofstream f(dir + "/bin/sbatch");
    f << "#!/bin/sh\ncp \"$1\" " << dir << "/submitted.sh\necho \"Submitted batch job 42\"\n";
  }
  fs::permissions(dir + "/bin/sbatch", fs::perms::owner_all);
  const std::string args = "sweep " + kSweep + " --submit --shards 3 --db " + dir + "/study.db";
  const Result r = run_moesim(args, dir, "PATH=" + dir + "/bin:/usr/bin:/bin ");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("Submitted batch job 42") != std::string::npos);
  CHECK(r.out.find("db merge") != std::string::npos);
  const Result printed = run_moesim("sweep " + kSweep + " --slurm-script --shards 3 --db " + dir + "/study.db", dir);
  CHECK(slurp(dir + "/submitted.sh") == printed.out);
  CHECK(slurp(dir + "/study.sbatch.sh") == printed.out);
  CHECK_FALSE(fs::exists(dir + "/study.db"));  // submitting runs nothing here

  const Result missing = run_moesim(args, dir, "PATH=" + dir + "/empty ");
  CHECK(missing.status == 1);
  CHECK(missing.err.find("sbatch is not on the PATH") != std::string::npos);
  CHECK(missing.err.find(dir + "/study.sbatch.sh") != std::string::npos);
  const Result no_shards = run_moesim("sweep " + kSweep + " --submit --db " + dir + "/study.db", dir);
  CHECK(no_shards.status == 2);
}

TEST_CASE("cli::sweep: a Slurm-only option without --slurm-script or --submit is refused before anything runs",
          "[cli][sweep][slurm]") {
  const std::string dir = scratch("slurm_only");
  const std::string db = dir + "/sweep.db";
  for (const std::string opt : {"--shards 2", "--partition debug", "--time 00:10:00", "--mem 2G"}) {
    INFO(opt);
    const Result r = run_moesim("sweep " + kSweep + " " + opt + " --db " + db, dir);
    INFO(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("sweep: " + opt + " ") != std::string::npos);  // the option and the value given
    CHECK(r.err.find("needs --slurm-script") != std::string::npos);
    CHECK(r.err.find("--submit") != std::string::npos);
    CHECK(r.err.find("[sweep]") == std::string::npos);  // no point ran
    CHECK_FALSE(fs::exists(db));
  }
  // With --slurm-script they are the script's settings, as before.
  const Result ok = run_moesim("sweep " + kSweep + " --slurm-script --shards 2 --mem 2G --db " + db, dir);
  CHECK(ok.status == 0);
  CHECK(ok.out.find("#SBATCH --mem=2G\n") != std::string::npos);
}

TEST_CASE("cli::sweep --submit: a failing sbatch is reported by its exit code, not the raw wait status", "[cli][sweep][slurm]") {
  const std::string dir = scratch("submit_fails");
  fs::create_directories(dir + "/bin");
  std::ofstream(dir + "/bin/sbatch") << "#!/bin/sh\necho 'sbatch: error: invalid partition specified' >&2\nexit 3\n";
  fs::permissions(dir + "/bin/sbatch", fs::perms::owner_all);
  const Result r = run_moesim("sweep " + kSweep + " --submit --shards 2 --db " + dir + "/study.db", dir,
                              "PATH=" + dir + "/bin:/usr/bin:/bin ");
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.find("failed with exit code 3") != std::string::npos);
  CHECK(r.err.find("status 768") == std::string::npos);
  CHECK(r.err.find(dir + "/study.sbatch.sh") != std::string::npos);  // where the script is
}

TEST_CASE("cli::db merge: a bad input is refused before the output store is created", "[cli][sweep][merge]") {
  const std::string dir = scratch("merge_checks");
  const std::string out = dir + "/out.db";
  SECTION("an input that is not a SQLite database") {
    const std::string bad = dir + "/notes.db";
    std::ofstream(bad) << "not a database, just text that is long enough to fill the SQLite header bytes..........";
    const Result r = run_moesim("db merge " + out + " " + bad, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot merge " + bad) != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  SECTION("an input that does not exist, after a good one: nothing merged, no output store") {
    const Result s0 = run_moesim("sweep " + kSweep + " --json --shard 0/2 --db " + dir + "/s0.db", dir);
    REQUIRE(s0.status == 0);
    const Result r = run_moesim("db merge " + out + " " + dir + "/s0.db " + dir + "/missing.db", dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot merge " + dir + "/missing.db: no such file") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  SECTION("a store of runs and no sweep: nothing it could merge") {
    {
      Store runs_only(dir + "/runs.db");  // an empty store: no sweep, no run
    }
    const Result r = run_moesim("db merge " + out + " " + dir + "/runs.db", dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot merge " + dir + "/runs.db: it holds no sweep (0 runs outside any)") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("cli::sweep: a point's errors name the sweep point and the sweep file, not a --set with a made-up location",
          "[cli][sweep]") {
  const std::string dir = scratch("point_origin");
  const Result none = run_moesim("sweep " + kData + "sweep_all_invalid.yaml --db " + dir + "/none.db", dir);
  INFO(none.err);
  CHECK(none.status == 1);
  CHECK(none.err.find("sweep_all_invalid.yaml: sweep point 0 (cluster.accelerator=\"tpu_v99\"): cluster.accelerator: ") !=
        std::string::npos);
  CHECK(none.err.find("--set") == std::string::npos);
  CHECK(none.err.find(":1:1") == std::string::npos);
  // A skipped point's stored reason, likewise.
  const Result r = run_moesim("sweep " + kSweep + " --json --db " + dir + "/sweep.db", dir);
  REQUIRE(r.status == 0);
  const Store s(dir + "/sweep.db", Store::Mode::read_only);
  std::size_t skipped = 0;
  for (const auto& p : s.get_sweep(json::parse(r.out)["sweep_id"].get<std::int64_t>()).points) {
    if (p.skip_reason.empty()) continue;
    ++skipped;
    INFO(p.skip_reason);
    CHECK(p.skip_reason.find(fmt::format("small_sweep.yaml: sweep point {} ({})", p.index, p.label)) != std::string::npos);
    CHECK(p.skip_reason.find("--set") == std::string::npos);
  }
  CHECK(skipped == 2);
  // A real --set keeps its label.
  const Result set = run_moesim("sweep " + kSweep + " --set cluster.accelerator=tpu_v99 --db " + dir + "/set.db", dir);
  CHECK(set.status == 1);
  CHECK(set.err.find("--set cluster.accelerator=tpu_v99") != std::string::npos);
}

TEST_CASE("cli::sweep: the report of a store that lacks points names their values and both ways to get them",
          "[cli][sweep][merge]") {
  const std::string dir = scratch("missing_points");
  const Result s0 = run_moesim("sweep " + kSweep + " --json --shard 0/2 --db " + dir + "/s0.db", dir);
  INFO(s0.err);
  REQUIRE(s0.status == 0);
  {
    // The stored axes record each axis' dimension of the enumeration: the two zipped axes share one.
    const Store s(dir + "/s0.db", Store::Mode::read_only);
    const json axes = s.get_sweep(1).axes;
    REQUIRE(axes.size() == 3);
    CHECK(axes[0]["dimension"] == 0);
    CHECK(axes[1]["dimension"] == 1);
    CHECK(axes[2]["dimension"] == 1);
  }
  const Result md = run_moesim("report s1 --format md -o " + dir + "/rep --db " + dir + "/s0.db", dir);
  INFO(md.err);
  REQUIRE(md.status == 0);
  const std::string text = slurp(dir + "/rep/sweep-1.md");
  INFO(text);
  CHECK(text.find("run the same `moesim sweep` command again (it resumes)") != std::string::npos);
  CHECK(text.find("`moesim db merge`") != std::string::npos);
  CHECK(text.find("| ? |") == std::string::npos);
  // Points 2 and 5 (8 chips, data 3: skipped), whichever shard holds them, with their values.
  std::size_t rows_8_3 = 0;
  for (std::size_t at = text.find("| 8 | 3 |"); at != std::string::npos; at = text.find("| 8 | 3 |", at + 1)) ++rows_8_3;
  CHECK(rows_8_3 == 2);
}
