// SPDX-License-Identifier: Apache-2.0
// `moesim bench`: measures the simulator itself on the scenarios under bench/ (GShard-600B at 1024,
// 4096 and 16384 TPU v3 chips; a 1024-GPU H100 cluster with hierarchical all-to-all). Each case runs in
// its own process, one at a time, so its wall time and peak resident memory are its own. `moesim bench --sweep`
// measures sweeps instead: bench/sweep_*.yaml run by `moesim sweep` at -j 1 and -j 2 (throughput and the per-point
// cost beyond the simulation itself), and `moesim db merge` of 100 shard stores built from bench/merge_*.yaml.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/stats.hpp"
#include "moesim/core/version.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/store/store.hpp"

#include <sqlite3.h>

namespace moesim::cli {

namespace {

/** What every `bench --json` starts with: the build and the machine its figures were measured on. */
nlohmann::json bench_identity() {
  utsname u{};
  uname(&u);
  return {{"moesim_version", kVersion},
          {"git_hash", kGitHash},
          {"machine", {{"cpus", std::thread::hardware_concurrency()}, {"system", u.sysname}, {"release", u.release}, {"arch", u.machine}}}};
}

/** In a forked child: die with the parent (the signal survives exec), as engine/isolation.cpp's children do. */
void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
}

/** Scratch files of a child command (a store's path: with its -wal and -shm files; an output file), removed when this
 *  goes out of scope, whether the command succeeded or threw. */
struct ScratchFiles {
  std::vector<std::string> paths;
  ~ScratchFiles() {
    for (const auto& p : paths) std::filesystem::remove(p);
  }
};

/** What a child `moesim` command cost: wall time, and the peak resident memory of it and its own children (wait4:
 *  Linux reports the child's and its reaped descendants' largest RSS there; not getrusage(RUSAGE_CHILDREN), which
 *  would be the largest of every process this bench has reaped, earlier cases included). */
struct ChildCost {
  double wall_s = 0.0;
  double peak_rss_mb = 0.0;
};

/** Runs this very binary as `moesim ARGS...` in a child process, its stdout into `out_file` (/dev/null when empty)
 *  and its stderr (progress lines, which would interleave with the bench's table) into a scratch file; throws naming
 *  `what`, with the end of that stderr, when it fails. */
ChildCost run_child(const std::vector<std::string>& args, const std::string& out_file, const std::string& what) {
  ScratchFiles scratch;
  const std::string err_file = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_stderr_{}.txt", ::getpid())).string();
  scratch.paths.push_back(err_file);
  std::vector<std::string> argv_s = {"moesim"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  std::cout.flush();  // the child must not inherit (and later flush) our buffered output
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("bench: cannot fork");
  if (pid == 0) {
    die_with_parent(parent);
    FILE* f = std::freopen(out_file.empty() ? "/dev/null" : out_file.c_str(), "w", stdout);
    FILE* e = std::freopen(err_file.c_str(), "w", stderr);
    (void)f;
    (void)e;
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(err_file);
    std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    constexpr std::size_t kTail = 2000;  // the end of the child's stderr: its error message
    if (err.size() > kTail) err = "..." + err.substr(err.size() - kTail);
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    throw Error(fmt::format("bench: `moesim {}` failed{}", what, err.empty() ? std::string() : ":\n" + err));
  }
  return {wall, static_cast<double>(ru.ru_maxrss) / 1024.0};
}

/** Removes a store and its WAL files. */
void remove_store(const std::string& db) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
}

/** A scratch store's path for a child command (any old one removed); `files` removes it and its WAL files later. */
std::string scratch_store(const char* tag, ScratchFiles& files) {
  const std::string db = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_{}_{}.db", tag, ::getpid())).string();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(db + suffix);
    files.paths.push_back(db + suffix);
  }
  return db;
}

/** `moesim compare FILE` (alternatives `jobs` at a time, stored) in a child process, measured. */
nlohmann::json time_comparison(const std::string& file, const std::string& profiles_dir, int jobs) {
  ScratchFiles scratch;
  const std::string db = scratch_store("compare", scratch);
  const ChildCost c =
      run_child({"--profiles", profiles_dir, "compare", file, "--db", db, "-j", std::to_string(jobs)}, "", "compare " + file);
  return {{"wall_s", c.wall_s}, {"peak_rss_mb", c.peak_rss_mb}};
}

/** `moesim run FILE --max-rate --no-store` in a child process, measured, with the rate it found. */
nlohmann::json time_max_rate(const std::string& file, const std::string& profiles_dir) {
  const std::string out = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_maxrate_{}.json", ::getpid())).string();
  const ScratchFiles scratch{{out}};
  const ChildCost c =
      run_child({"--profiles", profiles_dir, "run", file, "--max-rate", "--no-store", "--json"}, out, "run " + file + " --max-rate");
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  return {{"wall_s", c.wall_s},
          {"peak_rss_mb", c.peak_rss_mb},
          {"max_rate_rps", j.at("max_rate").at("sustained_rate_per_s")},
          {"probes", j.at("max_rate").at("probes").size()}};
}

/** `moesim plan FILE --json` (with --max-rate for a serving plan; layouts 2 at a time) in a child process, measured,
 *  with its counts and its best layout. */
nlohmann::json time_plan(const std::string& file, const std::string& profiles_dir, bool serving) {
  ScratchFiles scratch;
  const std::string db = scratch_store("plan", scratch);
  const std::string out = db + ".json";
  scratch.paths.push_back(out);
  std::vector<std::string> args = {"--profiles", profiles_dir, "plan", file, "--json", "--db", db, "-j", "2"};
  if (serving) args.emplace_back("--max-rate");
  const ChildCost c = run_child(args, out, "plan " + file);
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  return {{"wall_s", c.wall_s},
          {"peak_rss_mb", c.peak_rss_mb},
          {"layouts", j.at("layouts")},
          {"simulated", j.at("simulated")},
          {"best", j.at("ranked").empty() ? nlohmann::json() : j.at("ranked").front().at("layout")}};
}

/** A case's scaling family: its name without a trailing chip count ("bench-gshard-600b-4096" ->
 *  "bench-gshard-600b"); empty when the name does not end in "-<chips>". */
std::string scaling_family(const std::string& name, int chips) {
  const std::string tail = "-" + std::to_string(chips);
  if (name.size() <= tail.size() || name.compare(name.size() - tail.size(), tail.size(), tail) != 0) return {};
  return name.substr(0, name.size() - tail.size());
}

/** Wall-time and memory ratios of the single-run training cases of one family (the same model on more chips)
 *  against the family's smallest case: the scaling the targets are stated in (4096/1024 <= 4.5). */
nlohmann::json scaling_ratios(const nlohmann::json& cases) {
  std::map<std::string, std::vector<const nlohmann::json*>> families;
  for (const auto& c : cases)
    if (c.contains("step_time_s")) {  // single training runs only
      const std::string fam = scaling_family(c.at("name").get<std::string>(), c.at("chips").get<int>());
      if (!fam.empty()) families[fam].push_back(&c);
    }
  nlohmann::json out = nlohmann::json::array();
  for (auto& [fam, members] : families) {
    if (members.size() < 2) continue;
    std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) { return a->at("chips") < b->at("chips"); });
    const nlohmann::json& base = *members.front();
    for (std::size_t k = 1; k < members.size(); ++k) {
      const nlohmann::json& c = *members[k];
      out.push_back({{"family", fam},
                     {"chips", c.at("chips")},
                     {"base_chips", base.at("chips")},
                     {"chips_ratio", c.at("chips").get<double>() / base.at("chips").get<double>()},
                     {"wall_ratio", c.at("wall_s").get<double>() / base.at("wall_s").get<double>()},
                     {"peak_rss_ratio", c.at("peak_rss_mb").get<double>() / base.at("peak_rss_mb").get<double>()}});
    }
  }
  return out;
}

/** Runs this very binary as `moesim ARGS...` in a child process (its stdout to /dev/null); the wall seconds it took.
 *  A child that fails is an error naming `what`. */
double time_moesim(const std::vector<std::string>& args, const std::string& what) { return run_child(args, "", what).wall_s; }

/** The simulator's own wall time (the `sim_wall_s` metric) of every complete run of a store. */
std::vector<double> point_sim_walls(const std::string& db) {
  const store::Store s(db, store::Store::Mode::read_only);
  std::vector<double> out;
  for (const auto& r : s.list_runs()) {
    if (r.status != store::RunStatus::complete) continue;
    for (const auto& m : s.get_run(r.id).metrics)
      if (m.name == "sim_wall_s") out.push_back(m.value);
  }
  return out;
}

/** What N processes at once get from this machine's cores: N children each spin (a dependent integer loop) for
 *  `seconds` at the same time; returns their iterations summed. Measured once with 1 and once with 2 processes,
 *  the ratio is the machine's two-process ceiling: on 2 idle physical cores about 2, less when other work or the
 *  hypervisor takes cores. A sweep's -j 2 speedup is read against it. */
double spin_iterations(int processes, double seconds) {
  std::vector<std::pair<pid_t, int>> kids;
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  for (int k = 0; k < processes; ++k) {
    int fds[2];
    if (::pipe(fds) != 0) throw Error("bench: cannot create a pipe");
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("bench: cannot fork");
    if (pid == 0) {
      die_with_parent(parent);
      ::close(fds[0]);
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      std::uint64_t n = 0, x = 88172645463325252ULL;
      while (std::chrono::steady_clock::now() < end)
        for (int i = 0; i < 4096; ++i, ++n) x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64: no memory traffic
      volatile std::uint64_t sink = x;  // the loop's result is used: the compiler keeps the loop
      (void)sink;
      const double out = static_cast<double>(n);
      const ssize_t w = ::write(fds[1], &out, sizeof out);
      ::_exit(w == static_cast<ssize_t>(sizeof out) ? 0 : 1);
    }
    ::close(fds[1]);
    kids.emplace_back(pid, fds[0]);
  }
  double total = 0.0;
  for (auto& [pid, fd] : kids) {
    double v = 0.0;
    if (::read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v)) total += v;
    ::close(fd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  return total;
}

/** A sweep case: the whole `moesim sweep FILE` into a fresh store at -j 1 and at -j 2 (each point in its own
 *  process, as always). Throughput is simulated points per wall second; the per-point overhead is what -j 1 spends
 *  per point beyond the point's own simulation (its `sim_wall_s`): planning, forking, storing. */
nlohmann::json bench_sweep(const std::string& file, const std::string& profiles_dir, const std::string& tmp) {
  nlohmann::json runs = nlohmann::json::array();
  for (const int jobs : {1, 2}) {
    const std::string db = fmt::format("{}/sweep_j{}.db", tmp, jobs);
    remove_store(db);
    // Other work on the machine takes cores from -j 2 first: the 1-minute load average is recorded with the figure.
    double load[1] = {0.0};
    if (::getloadavg(load, 1) != 1) load[0] = -1.0;
    const double wall =
        time_moesim({"--profiles", profiles_dir, "sweep", file, "--db", db, "-j", std::to_string(jobs), "--json"}, "sweep " + file);
    const std::vector<double> sims = point_sim_walls(db);
    remove_store(db);
    if (sims.empty()) throw Error(fmt::format("bench: `moesim sweep {}` simulated no point", file));
    double sum = 0.0;
    for (double v : sims) sum += v;
    const double points = static_cast<double>(sims.size());
    runs.push_back({{"jobs", jobs},
                    {"points", sims.size()},
                    {"wall_s", wall},
                    {"points_per_s", points / wall},
                    {"mean_point_simulation_wall_s", sum / points},
                    {"load_average_1m_before", load[0]}});
  }
  const double one = spin_iterations(1, 1.0);
  const double two = spin_iterations(2, 1.0);
  const nlohmann::json& j1 = runs[0];
  const double points = j1.at("points").get<double>();
  return {{"file", std::filesystem::path(file).filename().string()},
          {"runs", runs},
          // -j 2 throughput over -j 1 (the target: >= 1.8 on 2 cores)
          {"speedup_j2_over_j1", runs[1].at("points_per_s").get<double>() / j1.at("points_per_s").get<double>()},
          // two spinning processes' work against one's, in the same time (2 on two idle cores): the machine's ceiling
          {"machine_two_process_ceiling", two / one},
          // -j 1 wall time per point minus the mean simulation wall time of a point (the target: < 50 ms)
          {"overhead_per_point_s", j1.at("wall_s").get<double>() / points - j1.at("mean_point_simulation_wall_s").get<double>()}};
}

constexpr int kMergeShards = 100;

void sql(sqlite3* db, const std::string& text, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(fmt::format("bench: {}: {}", what, m));
  }
}

/** The merge case: one real sweep of FILE (its N runs), copied into 100 shard stores that look like the shards of
 *  one 100*N-point sweep, then `moesim db merge` of all 100 into a fresh store, timed as a whole process. */
nlohmann::json bench_merge(const std::string& file, const std::string& profiles_dir, const std::string& tmp) {
  const std::string base = tmp + "/merge_base.db";
  remove_store(base);
  const double sweep_wall = time_moesim({"--profiles", profiles_dir, "sweep", file, "--db", base, "-j", "2", "--json"}, "sweep " + file);
  std::size_t runs_per_shard = 0;
  {
    const store::Store s(base, store::Store::Mode::read_only);
    for (const auto& r : s.list_runs()) runs_per_shard += r.status == store::RunStatus::complete && !r.point_hash.empty();
  }
  if (runs_per_shard == 0) throw Error(fmt::format("bench: `moesim sweep {}` stored no complete run to merge", file));
  std::vector<std::string> args = {"db", "merge", tmp + "/merged.db"};
  remove_store(args[2]);
  sqlite3* src = nullptr;
  if (sqlite3_open_v2(base.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(src);
    throw Error(fmt::format("bench: cannot open {}", base));
  }
  try {
    for (int k = 0; k < kMergeShards; ++k) {
      const std::string shard = fmt::format("{}/shard{}.db", tmp, k);
      remove_store(shard);
      sql(src, fmt::format("VACUUM INTO '{}'", shard), "copy " + base);
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(shard.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        throw Error(fmt::format("bench: cannot open {}", shard));
      }
      // Shard k holds points 100k.. of the big sweep: point hashes distinct per shard (their first four hex digits
      // replaced by k's), point indices offset by k*N, the one sweep 100 times as long.
      const std::string prefix = fmt::format("'{:04x}'", k);
      try {
        sql(db,
            fmt::format("BEGIN; UPDATE runs SET point_hash = {0} || substr(point_hash, 5) WHERE point_hash IS NOT NULL; "
                        "UPDATE sweep_points SET idx = idx + {1}, point_hash = CASE WHEN point_hash IS NULL THEN NULL "
                        "ELSE {0} || substr(point_hash, 5) END; UPDATE sweeps SET point_count = point_count * {2}; COMMIT;",
                        prefix, static_cast<std::int64_t>(k) * static_cast<std::int64_t>(runs_per_shard) * 100, kMergeShards),
            "rewrite " + shard);
      } catch (...) {
        sqlite3_close(db);
        throw;
      }
      sqlite3_close(db);
      args.push_back(shard);
    }
  } catch (...) {
    sqlite3_close(src);
    throw;
  }
  sqlite3_close(src);
  const double wall = time_moesim(args, "db merge");
  std::size_t merged = 0;
  {
    const store::Store s(args[2], store::Store::Mode::read_only);
    for (const auto& r : s.list_runs()) merged += r.status == store::RunStatus::complete;
  }
  for (std::size_t i = 2; i < args.size(); ++i) remove_store(args[i]);
  remove_store(base);
  return {{"file", std::filesystem::path(file).filename().string()},
          {"shards", kMergeShards},
          {"runs_per_shard", runs_per_shard},
          {"runs_merged", merged},
          {"source_sweep_wall_s", sweep_wall},
          {"wall_s", wall},
          {"method",
           fmt::format("one real {}-point sweep of {} (-j 2), copied {} times with SQLite's VACUUM INTO; copy k's point "
                       "hashes get k as their first four hex digits and its point indices are offset by k x points, so the "
                       "copies are the {} disjoint shards of one sweep of {} points; then `moesim db merge` of all of them "
                       "into a fresh store, timed as one process",
                       runs_per_shard, std::filesystem::path(file).filename().string(), kMergeShards, kMergeShards,
                       runs_per_shard * kMergeShards)}};
}

/** `moesim bench --sweep`: the sweep cases, then the merge case, of bench/ (filtered by --only). */
int bench_sweeps(const std::string& dir, const std::string& profiles_dir, const BenchOptions& o) {
  std::vector<std::string> sweeps, merges;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string stem = e.path().stem().string();
      if (e.path().extension() != ".yaml" || (!o.only.empty() && stem.find(o.only) == std::string::npos)) continue;
      if (stem.rfind("sweep_", 0) == 0) sweeps.push_back(e.path().string());
      if (stem.rfind("merge_", 0) == 0) merges.push_back(e.path().string());
    }
  std::sort(sweeps.begin(), sweeps.end());
  std::sort(merges.begin(), merges.end());
  if (sweeps.empty() && merges.empty())
    throw Error(fmt::format("no sweep or merge benchmark scenarios (sweep_*.yaml, merge_*.yaml) in '{}'{}", dir,
                            o.only.empty() ? "" : fmt::format(" matching '{}'", o.only)));
  const std::string tmp = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_sweep_{}", ::getpid())).string();
  std::filesystem::create_directories(tmp);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{tmp};
  install_interrupt_handler();
  const bool tty = isatty(2) && !o.json;
  nlohmann::json sweep_cases = nlohmann::json::array(), merge_cases = nlohmann::json::array();
  if (!o.json && !sweeps.empty())
    std::cout << fmt::format("{:<28} {:>6} {:>5} {:>10} {:>10} {:>18} {:>10}\n", "sweep case", "points", "jobs", "wall (s)", "points/s",
                             "mean point sim (s)", "load avg");
  for (const auto& f : sweeps) {
    if (tty) std::cerr << fmt::format("[bench] {} ...", f) << std::flush;
    nlohmann::json c = bench_sweep(f, profiles_dir, tmp);
    if (tty) std::cerr << "\r" << std::string(70, ' ') << "\r";
    if (!o.json) {
      for (const auto& r : c.at("runs"))
        std::cout << fmt::format("{:<28} {:>6} {:>5} {:>10.2f} {:>10.3f} {:>18.4f} {:>10.2f}\n", c.at("file").get<std::string>(),
                                 r.at("points").get<int>(), r.at("jobs").get<int>(), r.at("wall_s").get<double>(),
                                 r.at("points_per_s").get<double>(), r.at("mean_point_simulation_wall_s").get<double>(),
                                 r.at("load_average_1m_before").get<double>());
      std::cout << fmt::format("{:<28} -j 2 throughput / -j 1: x{:.3f} (target >= 1.8); overhead per point beyond its "
                               "simulation at -j 1: {:.1f} ms (target < 50 ms)\n"
                               "{:<28} this machine's ceiling for two processes (two spinning processes' work against one's): "
                               "x{:.3f}\n",
                               "", c.at("speedup_j2_over_j1").get<double>(), c.at("overhead_per_point_s").get<double>() * 1e3,
                               "", c.at("machine_two_process_ceiling").get<double>())
                << std::flush;
    }
    sweep_cases.push_back(std::move(c));
  }
  for (const auto& f : merges) {
    if (tty) std::cerr << fmt::format("[bench] {} ...", f) << std::flush;
    nlohmann::json c = bench_merge(f, profiles_dir, tmp);
    if (tty) std::cerr << "\r" << std::string(70, ' ') << "\r";
    if (!o.json)
      std::cout << fmt::format("merge {}: {} shard stores of {} runs each into one store of {} runs: {:.2f} s (target < 10 s)\n"
                               "  method: {}\n",
                               c.at("file").get<std::string>(), c.at("shards").get<int>(), c.at("runs_per_shard").get<int>(),
                               c.at("runs_merged").get<int>(), c.at("wall_s").get<double>(), c.at("method").get<std::string>())
                << std::flush;
    merge_cases.push_back(std::move(c));
  }
  if (o.json) {
    nlohmann::json out = bench_identity();
    out["sweeps"] = sweep_cases;
    out["merges"] = merge_cases;
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

/** bench/ next to the profiles directory (the source tree), or $MOESIM_BENCH. */
std::string bench_dir(const catalog::Catalog& catalog) {
  if (const char* env = std::getenv("MOESIM_BENCH")) return env;
  return (std::filesystem::path(catalog.profiles_dir()).parent_path() / "bench").string();
}
}  // namespace

int cmd_bench(const GlobalOptions& g, const BenchOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  const std::string dir = bench_dir(catalog);
  if (o.sweep) return bench_sweeps(dir, catalog.profiles_dir(), o);
  std::vector<std::string> files;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string stem = e.path().stem().string();
      if (stem.rfind("sweep_", 0) == 0 || stem.rfind("merge_", 0) == 0) continue;  // `moesim bench --sweep`'s cases
      if (e.path().extension() == ".yaml" && (o.only.empty() || stem.find(o.only) != std::string::npos))
        files.push_back(e.path().string());
    }
  std::vector<std::pair<int, scenario::Scenario>> todo;  // smallest cluster first
  for (const auto& f : files) {
    scenario::Scenario s = scenario::load_file(f, catalog);
    todo.emplace_back(s.cluster.count, std::move(s));
  }
  std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first, a.second.name) < std::tie(b.first, b.second.name);
  });
  if (files.empty())
    throw Error(fmt::format("no benchmark scenarios in '{}'{}", dir, o.only.empty() ? "" : fmt::format(" matching '{}'", o.only)));

  install_interrupt_handler();
  const bool tty = isatty(2) && !o.json;
  // The kinds of case: a comparison, a capacity search, a serving run, else a single-run training case; and one run of
  // a training case in its own process with the options asked for.
  auto is_comparison = [](const scenario::Scenario& s) { return !s.compare.is_null() && !s.compare.empty(); };
  auto is_max_rate = [](const scenario::Scenario& s) {
    return std::filesystem::path(s.source_file).stem().string().rfind("max_rate_", 0) == 0;
  };
  auto is_plan = [](const scenario::Scenario& s) {
    return std::filesystem::path(s.source_file).stem().string().rfind("plan_", 0) == 0;
  };
  auto is_training_case = [&](const scenario::Scenario& s) {
    return !is_comparison(s) && !is_max_rate(s) && !is_plan(s) && !s.is_serving();
  };
  auto run_training = [&](const scenario::Scenario& s, int run) {
    if (tty) std::cerr << fmt::format("[bench] {} ({} of {}) ...", s.name, run + 1, o.repeat) << std::flush;
    engine::IsolatedResult iso = engine::run_isolated(
        [&] {
          engine::EngineOptions opt;
          opt.memoize = !o.no_memo;
          opt.pipeline_steady_state = !o.no_steady_state;
          opt.merge_chains = !o.no_chains;
          opt.rounds_alone = opt.replay_pipeline_p2p = !o.no_alone;
          opt.own_network_rounds = !o.no_own_network;
          opt.own_compute_energy = !o.no_own_energy;
          return engine::to_json(engine::simulate_job(s, catalog, opt));
        },
        interrupt_flag());
    if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
    return iso;
  };
  // --repeat: the training cases take turns (run 1 of each, then run 2 of each, ...), so that a drift of the machine's
  // speed during the bench falls on every case alike and the ratios between cases keep their meaning.
  std::map<const scenario::Scenario*, std::vector<engine::IsolatedResult>> repeated_runs;  // by case
  if (o.repeat > 1)
    for (int run = 0; run < o.repeat; ++run)
      for (const auto& [chips, s] : todo)
        if (is_training_case(s)) repeated_runs[&s].push_back(run_training(s, run));
  nlohmann::json cases = nlohmann::json::array();
  if (!o.json) {
    if (o.repeat > 1)
      std::cout << fmt::format("each training case run {} times, the cases taking turns: its median wall time, its largest peak RSS\n",
                               o.repeat);
    std::cout << fmt::format("{:<28} {:>7} {:>10} {:>12} {:>10} {:>9} {:>10}\n", "case", "chips", "wall (s)", "peak RSS (MB)",
                             "step (s)", "phases", "memoised");
  }
  for (const auto& [chips, s] : todo) {
    const std::string file = s.source_file;
    if (is_comparison(s)) {
      // A comparison case: the whole `moesim compare` (alternatives simulated 2 at a time, stored).
      if (o.no_memo) {  // the child `moesim compare` always memoises; its figures would not be the reference
        if (!o.json) std::cout << fmt::format("{:<28} skipped: --no-memo applies to single-run cases\n", s.name);
        continue;
      }
      if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
      const nlohmann::json t = time_comparison(file, catalog.profiles_dir(), 2);
      if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
      const int alternatives = static_cast<int>(s.compare.size()) + 1;
      if (!o.json)
        std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10} {:>9} {:>10}\n", s.name, s.cluster.count,
                                 t["wall_s"].get<double>(), t["peak_rss_mb"].get<double>(), "-", "-",
                                 fmt::format("{} alts", alternatives))
                  << std::flush;
      cases.push_back({{"name", s.name}, {"file", std::filesystem::path(file).filename().string()}, {"chips", s.cluster.count},
                       {"alternatives", alternatives}, {"jobs", 2}, {"wall_s", t["wall_s"]}, {"peak_rss_mb", t["peak_rss_mb"]}});
      continue;
    }
    if (is_plan(s)) {
      // A plan: the whole `moesim plan` (a serving scenario's with --max-rate: every layout a capacity search).
      if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
      const nlohmann::json t = time_plan(file, catalog.profiles_dir(), s.is_serving());
      if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
      if (!o.json)
        std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10} {:>9} {:>10}\n", s.name, s.cluster.count,
                                 t["wall_s"].get<double>(), t["peak_rss_mb"].get<double>(), "-", "-",
                                 fmt::format("{} layouts", t["layouts"].get<std::size_t>()))
                  << fmt::format("{:<28} {} simulated; best {}\n", "", t["simulated"].get<std::size_t>(),
                                 t["best"].is_string() ? t["best"].get<std::string>() : std::string("none"))
                  << std::flush;
      cases.push_back({{"name", s.name}, {"file", std::filesystem::path(file).filename().string()}, {"chips", s.cluster.count},
                       {"kind", "plan"}, {"wall_s", t["wall_s"]}, {"peak_rss_mb", t["peak_rss_mb"]},
                       {"layouts", t["layouts"]}, {"simulated", t["simulated"]}, {"best", t["best"]}});
      continue;
    }
    if (is_max_rate(s)) {
      // A capacity search: the whole `moesim run --max-rate` (every probe a simulation of its own).
      if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
      const nlohmann::json t = time_max_rate(file, catalog.profiles_dir());
      if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
      if (!o.json)
        std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10} {:>9} {:>10}\n", s.name, s.cluster.count,
                                 t["wall_s"].get<double>(), t["peak_rss_mb"].get<double>(), "-", "-",
                                 fmt::format("{} probes", t["probes"].get<std::size_t>()))
                  << fmt::format("{:<28} highest rate meeting the SLOs: {:.4g} requests/s\n", "", t["max_rate_rps"].get<double>())
                  << std::flush;
      cases.push_back({{"name", s.name}, {"file", std::filesystem::path(file).filename().string()}, {"chips", s.cluster.count},
                       {"kind", "max_rate"}, {"wall_s", t["wall_s"]}, {"peak_rss_mb", t["peak_rss_mb"]},
                       {"max_rate_rps", t["max_rate_rps"]}, {"probes", t["probes"]}});
      continue;
    }
    if (s.is_serving()) {
      // A serving run: wall time against the simulated time (how much faster than real time).
      if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
      const engine::IsolatedResult iso = engine::run_isolated(
          [&] {
            engine::EngineOptions opt;
            opt.memoize = !o.no_memo;
            opt.merge_chains = !o.no_chains;
            return engine::to_json(engine::simulate_serving(s, catalog, opt));
          },
          interrupt_flag());
      if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
      const engine::ServingResult r = engine::serving_from_json(iso.value);
      const double simulated = r.makespan_s;
      if (!o.json)
        std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10} {:>9} {:>10}\n", s.name, r.chips, iso.wall_s, iso.peak_rss_mb,
                                 "-", "-", fmt::format("{}x real", static_cast<long long>(simulated / iso.wall_s)))
                  << fmt::format("{:<28} {:.0f} simulated s, {} requests, {} iterations, {} layer shapes simulated\n", "", simulated,
                                 r.requests_total, r.iterations, r.layer_shapes_simulated)
                  << std::flush;
      cases.push_back({{"name", s.name}, {"file", std::filesystem::path(file).filename().string()}, {"chips", r.chips},
                       {"kind", "serving"}, {"wall_s", iso.wall_s}, {"peak_rss_mb", iso.peak_rss_mb},
                       {"simulated_s", simulated}, {"times_real_time", simulated / iso.wall_s}, {"requests", r.requests_total},
                       {"iterations", r.iterations}, {"layer_shapes_simulated", r.layer_shapes_simulated},
                       {"simulation_wall_s", r.sim_wall_s}});
      continue;
    }
    // The median wall time of its runs (--repeat: taken in turns above), the largest peak RSS. The simulator is
    // deterministic, so every run must give the same step: a difference is an error, not noise.
    std::vector<engine::IsolatedResult> runs;
    if (o.repeat > 1) runs = std::move(repeated_runs.at(&s));
    else runs.push_back(run_training(s, 0));
    std::vector<double> walls;
    double peak_rss_mb = 0.0;
    std::optional<engine::JobResult> first;
    for (std::size_t run = 0; run < runs.size(); ++run) {
      const engine::IsolatedResult& iso = runs[run];
      engine::JobResult job = engine::job_from_json(iso.value);
      if (first && job.step_time_s != first->step_time_s)
        throw Error(fmt::format("bench: {}: run {} gave a step of {} s where run 1 gave {} s (the simulator must be deterministic)",
                                s.name, run + 1, job.step_time_s, first->step_time_s));
      walls.push_back(iso.wall_s);
      peak_rss_mb = std::max(peak_rss_mb, iso.peak_rss_mb);
      if (!first) first = std::move(job);
    }
    const engine::JobResult& job = *first;
    const double wall_s = median(walls);
    nlohmann::json c = {{"name", s.name},
                        {"file", std::filesystem::path(file).filename().string()},
                        {"chips", job.chips},
                        {"devices", job.devices},
                        {"steps_simulated", s.training.steps_simulated},
                        {"wall_s", wall_s},
                        {"peak_rss_mb", peak_rss_mb},
                        {"repeats", o.repeat},
                        {"wall_s_runs", walls},
                        {"simulation_wall_s", job.sim_wall_s},
                        {"step_time_s", job.step_time_s},
                        {"phases_per_step", job.phases_per_step},
                        {"collectives_detailed", job.collectives_detailed},
                        {"collectives_memoized", job.collectives_memoized},
                        {"reruns", job.reruns},
                        {"rounds_alone", job.rounds_alone},
                        {"memoize", !o.no_memo},
                        {"merge_chains", !o.no_chains},
                        {"alone_on_links", !o.no_alone},
                        {"own_network_rounds", !o.no_own_network},
                        {"own_compute_energy", !o.no_own_energy},
                        {"steady_state_from_microbatches", job.steady_state_from_microbatches}};
    if (!o.json)
      std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10.4f} {:>9} {:>10}\n", s.name, job.chips, wall_s,
                               peak_rss_mb, job.step_time_s, job.phases_per_step,
                               fmt::format("{}/{}", job.collectives_memoized, job.collectives_memoized + job.collectives_detailed))
                << (job.steady_state_from_microbatches > 0
                        ? fmt::format("{:<28} pipeline steady state: simulated the steps of {}, {} and {} of its {} micro-batches\n", "",
                                      job.steady_state_from_microbatches, job.steady_state_from_microbatches + 1,
                                      job.steady_state_from_microbatches + 2, s.parallelism.microbatches)
                        : std::string())
                << std::flush;
    cases.push_back(std::move(c));
  }
  const nlohmann::json scaling = scaling_ratios(cases);
  if (!o.json && !scaling.empty()) {
    std::cout << "scaling (the same model on more chips; wall time and peak memory against the smallest case):\n";
    for (const auto& r : scaling)
      std::cout << fmt::format("  {:<26} {:>6}/{:<6} chips x{:<5.0f} wall x{:<6.2f} peak RSS x{:.2f}\n", r.at("family").get<std::string>(),
                               r.at("chips").get<int>(), r.at("base_chips").get<int>(), r.at("chips_ratio").get<double>(),
                               r.at("wall_ratio").get<double>(), r.at("peak_rss_ratio").get<double>());
  }
  if (o.json) {
    nlohmann::json out = bench_identity();
    out["cases"] = cases;
    out["scaling"] = scaling;
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace moesim::cli
