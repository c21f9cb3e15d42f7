// SPDX-License-Identifier: Apache-2.0
// `moesim bench`: measures the simulator itself on the scenarios under bench/ (GShard-600B at 1024,
// 4096 and 16384 TPU v3 chips; a 1024-GPU H100 cluster with hierarchical all-to-all). Each case runs in
// its own process, one at a time, so its wall time and peak resident memory are its own.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/version.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/loader.hpp"

namespace moesim::cli {

namespace {

/** In a forked child: die with the parent (the signal survives exec), as engine/isolation.cpp's children do. */
void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
}

/** Runs this very binary as `moesim compare FILE` in a child process and measures it (wall time, and the
 *  peak resident memory of it and its simulation processes, from wait4). */
nlohmann::json time_comparison(const std::string& file, const std::string& profiles_dir, int jobs) {
  const std::string db = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_{}.db", ::getpid())).string();
  std::filesystem::remove(db);
  const auto t0 = std::chrono::steady_clock::now();
  std::cout.flush();  // the child must not inherit (and later flush) our buffered output
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("bench: cannot fork");
  if (pid == 0) {
    die_with_parent(parent);
    FILE* f = std::freopen("/dev/null", "w", stdout);
    (void)f;
    const std::string j = std::to_string(jobs);
    ::execl("/proc/self/exe", "moesim", "--profiles", profiles_dir.c_str(), "compare", file.c_str(), "--db", db.c_str(), "-j",
            j.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage children{};
  ::getrusage(RUSAGE_CHILDREN, &children);  // includes the comparison's own simulation processes
  std::filesystem::remove(db);
  std::filesystem::remove(db + "-wal");
  std::filesystem::remove(db + "-shm");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw Error(fmt::format("bench: `moesim compare {}` failed", file));
  return {{"wall_s", wall}, {"peak_rss_mb", static_cast<double>(std::max(ru.ru_maxrss, children.ru_maxrss)) / 1024.0}};
}

/** Runs this very binary as `moesim run FILE --max-rate --no-store` in a child process and measures it. */
nlohmann::json time_max_rate(const std::string& file, const std::string& profiles_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  std::cout.flush();
  std::fflush(nullptr);
  const std::string out = (std::filesystem::temp_directory_path() / fmt::format("moesim_bench_maxrate_{}.json", ::getpid())).string();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("bench: cannot fork");
  if (pid == 0) {
    die_with_parent(parent);
    FILE* f = std::freopen(out.c_str(), "w", stdout);
    (void)f;
    ::execl("/proc/self/exe", "moesim", "--profiles", profiles_dir.c_str(), "run", file.c_str(), "--max-rate", "--no-store",
            "--json", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage children{};
  ::getrusage(RUSAGE_CHILDREN, &children);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw Error(fmt::format("bench: `moesim run {} --max-rate` failed", file));
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::filesystem::remove(out);
  return {{"wall_s", wall},
          {"peak_rss_mb", static_cast<double>(std::max(ru.ru_maxrss, children.ru_maxrss)) / 1024.0},
          {"max_rate_rps", j.at("max_rate").at("rate_per_s")},
          {"probes", j.at("max_rate").at("probes").size()}};
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

/** bench/ next to the profiles directory (the source tree), or $MOESIM_BENCH. */
std::string bench_dir(const catalog::Catalog& catalog) {
  if (const char* env = std::getenv("MOESIM_BENCH")) return env;
  return (std::filesystem::path(catalog.profiles_dir()).parent_path() / "bench").string();
}
}  // namespace

int cmd_bench(const GlobalOptions& g, const BenchOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  const std::string dir = bench_dir(catalog);
  std::vector<std::string> files;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".yaml" && (o.only.empty() || e.path().stem().string().find(o.only) != std::string::npos))
        files.push_back(e.path().string());
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
  nlohmann::json cases = nlohmann::json::array();
  if (!o.json)
    std::cout << fmt::format("{:<28} {:>7} {:>10} {:>12} {:>10} {:>9} {:>10}\n", "case", "chips", "wall (s)", "peak RSS (MB)",
                             "step (s)", "phases", "memoised");
  for (const auto& [chips, s] : todo) {
    const std::string file = s.source_file;
    if (!s.compare.is_null() && !s.compare.empty()) {
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
    if (std::filesystem::path(file).stem().string().rfind("max_rate_", 0) == 0) {
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
    if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
    const engine::IsolatedResult iso = engine::run_isolated(
        [&] {
          engine::EngineOptions opt;
          opt.memoize = !o.no_memo;
          return engine::to_json(engine::simulate_job(s, catalog, opt));
        },
        interrupt_flag());
    if (tty) std::cerr << "\r" << std::string(60, ' ') << "\r";
    const engine::JobResult job = engine::job_from_json(iso.value);
    nlohmann::json c = {{"name", s.name},
                        {"file", std::filesystem::path(file).filename().string()},
                        {"chips", job.chips},
                        {"devices", job.devices},
                        {"steps_simulated", s.training.steps_simulated},
                        {"wall_s", iso.wall_s},
                        {"peak_rss_mb", iso.peak_rss_mb},
                        {"simulation_wall_s", job.sim_wall_s},
                        {"step_time_s", job.step_time_s},
                        {"phases_per_step", job.phases_per_step},
                        {"collectives_detailed", job.collectives_detailed},
                        {"collectives_memoized", job.collectives_memoized},
                        {"memoize", !o.no_memo}};
    if (!o.json)
      std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10.4f} {:>9} {:>10}\n", s.name, job.chips, iso.wall_s,
                               iso.peak_rss_mb, job.step_time_s, job.phases_per_step,
                               fmt::format("{}/{}", job.collectives_memoized, job.collectives_memoized + job.collectives_detailed))
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
    utsname u{};
    uname(&u);
    std::cout << nlohmann::json{{"moesim_version", kVersion},
                                {"git_hash", kGitHash},
                                {"machine", {{"cpus", std::thread::hardware_concurrency()}, {"system", u.sysname}, {"release", u.release}, {"arch", u.machine}}},
                                {"cases", cases},
                                {"scaling", scaling}}
                     .dump(2)
              << "\n";
  }
  return 0;
}

}  // namespace moesim::cli
