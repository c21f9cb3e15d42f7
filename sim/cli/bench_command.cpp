// SPDX-License-Identifier: Apache-2.0
// `moesim bench`: measures the simulator itself on the scenarios under bench/ (GShard-600B at 1024,
// 4096 and 16384 TPU v3 chips; a 1024-GPU H100 cluster with hierarchical all-to-all). Each case runs in
// its own process, one at a time, so its wall time and peak resident memory are its own.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/version.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/loader.hpp"

namespace moesim::cli {

namespace {
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
    if (tty) std::cerr << fmt::format("[bench] {} ...", s.name) << std::flush;
    const engine::IsolatedResult iso = engine::run_isolated(
        [&] { return engine::to_json(engine::simulate_job(s, catalog)); }, interrupt_flag());
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
                        {"collectives_memoized", job.collectives_memoized}};
    if (!o.json)
      std::cout << fmt::format("{:<28} {:>7} {:>10.2f} {:>12.0f} {:>10.4f} {:>9} {:>10}\n", s.name, job.chips, iso.wall_s,
                               iso.peak_rss_mb, job.step_time_s, job.phases_per_step,
                               fmt::format("{}/{}", job.collectives_memoized, job.collectives_memoized + job.collectives_detailed))
                << std::flush;
    cases.push_back(std::move(c));
  }
  if (o.json) {
    utsname u{};
    uname(&u);
    std::cout << nlohmann::json{{"moesim_version", kVersion},
                                {"git_hash", kGitHash},
                                {"machine", {{"cpus", std::thread::hardware_concurrency()}, {"system", u.sysname}, {"release", u.release}, {"arch", u.machine}}},
                                {"cases", cases}}
                     .dump(2)
              << "\n";
  }
  return 0;
}

}  // namespace moesim::cli
