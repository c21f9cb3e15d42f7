// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/store/store.hpp"
#include "record.hpp"
#include "run_job.hpp"

namespace moesim::cli {

namespace {
volatile bool g_interrupted = false;
extern "C" void on_signal(int) { g_interrupted = true; }
}  // namespace

const volatile bool* interrupt_flag() { return &g_interrupted; }

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

catalog::Catalog load_catalog(const GlobalOptions& g) {
  return catalog::Catalog::load(g.profiles_dir.empty() ? catalog::Catalog::default_profiles_dir() : g.profiles_dir);
}

void write_trace(const std::string& path, const engine::JobResult& job) {
  std::ofstream out(path);
  if (!out) throw Error(fmt::format("cannot write the trace file '{}'", path));
  out << "label,kind,stage,start_s,end_s,duration_s,critical_path,memoized,flop_utilisation,hbm_utilisation,power_w\n";
  for (const auto& t : job.trace)
    out << fmt::format("\"{}\",{},{},{:.9g},{:.9g},{:.9g},{},{},{:.4g},{:.4g},{:.5g}\n", t.label, t.kind, t.stage, t.start_s, t.end_s,
                       t.end_s - t.start_s, t.on_critical_path ? 1 : 0, t.memoized ? 1 : 0, t.flop_utilisation, t.hbm_utilisation,
                       t.power_w);
  if (!out) throw Error(fmt::format("error writing the trace file '{}'", path));
}

nlohmann::json simulate_json(const catalog::Catalog& catalog, const PreparedRun& p, const engine::EngineOptions& options) {
  if (p.scenario.is_serving()) return engine::to_json(engine::simulate_serving(p.scenario, catalog, options));
  return engine::to_json(engine::simulate_job(p.scenario, catalog, options));
}

store::RunRecord finish_run(const catalog::Catalog& catalog, const PreparedRun& p, const nlohmann::json& job_json,
                            const store::RunRecord& header, const std::string& trace_csv) {
  if (p.scenario.is_serving()) {
    const engine::ServingResult sr = engine::serving_from_json(job_json);
    const energy::Accounting acc = energy::account_serving(sr, p.scenario, catalog, p.network, p.embodied);
    store::RunRecord rec = make_serving_record(p.scenario, sr, acc, catalog, p.network);
    rec.comparison_id = header.comparison_id;
    rec.alternative_label = header.alternative_label;
    return rec;
  }
  const engine::JobResult job = engine::job_from_json(job_json);
  if (!trace_csv.empty()) write_trace(trace_csv, job);
  const energy::Accounting acc = energy::account(job, p.scenario, catalog, p.network, p.embodied);
  store::RunRecord rec = make_record(p.scenario, job, acc, catalog, p.network);
  rec.comparison_id = header.comparison_id;
  rec.alternative_label = header.alternative_label;
  return rec;
}

PreparedRun prepare_run(const catalog::Catalog& catalog, scenario::Scenario s) {
  PreparedRun p{std::move(s), energy::NetworkEnergyTable::load(catalog.profiles_dir()), std::nullopt};
  engine::check_feasible(p.scenario, catalog);
  energy::check_hourly_inputs(p.scenario, catalog);
  if (p.scenario.energy.embodied)
    p.embodied = energy::load_embodied(catalog.profiles_dir(), catalog.accelerator(p.scenario.cluster.accelerator));
  return p;
}

store::RunRecord execute_run(const catalog::Catalog& catalog, const PreparedRun& p, store::Store* db,
                             const store::RunRecord& header, bool progress, const std::string& trace_csv, bool steady_state) {
  std::int64_t id = 0;
  if (db) id = db->begin_run(header);
  try {
    engine::Progress report;
    if (progress)
      report = [name = p.scenario.name](int k, int n, const std::string& what) {
        std::cerr << fmt::format("\r[{}] step {}/{} {}   ", name, std::min(k + 1, n), n, what) << (k >= n ? "\n" : "") << std::flush;
      };
    const engine::IsolatedResult iso = engine::run_isolated(
        [&] {
          engine::EngineOptions opt;
          opt.trace = !trace_csv.empty();
          opt.pipeline_steady_state = steady_state;
          if (p.scenario.is_serving()) return simulate_json(catalog, p, opt);
          return engine::to_json(engine::simulate_job(p.scenario, catalog, opt, report));
        },
        interrupt_flag());
    store::RunRecord rec = finish_run(catalog, p, iso.value, header, trace_csv);
    if (db) {
      db->complete_run(id, rec);
      return db->get_run(id);
    }
    rec.status = store::RunStatus::complete;
    return rec;
  } catch (const std::exception& e) {
    if (db) {
      try {
        db->fail_run(id, e.what());
      } catch (const std::exception&) {
        // The original error matters more than a failure to record it.
      }
    }
    throw;
  }
}

void check_output_directory(const std::string& dir, const std::string& option) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir) || ::access(dir.c_str(), W_OK) != 0)
    throw Error(fmt::format("{} {}: cannot write there ({}); nothing was simulated or stored", option, dir,
                            ec ? ec.message() : fs::is_directory(dir) ? "not writable" : "not a directory"));
}

void check_output_file(const std::string& path, const std::string& option) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (fs::is_directory(p, ec) || !fs::is_directory(dir, ec) || ::access(dir.c_str(), W_OK) != 0)
    throw Error(fmt::format("{} {}: cannot write this file ({}); nothing was simulated or stored", option, path,
                            fs::is_directory(p, ec) ? "it is a directory" : "its directory does not exist or is not writable"));
}

void check_training_only_options(const scenario::Scenario& s, const RunOptions& o) {
  if (!s.is_serving()) return;
  if (!o.trace.empty())
    throw Error(fmt::format("--trace writes a training step's phases; {} is a serving scenario (drop --trace); nothing was "
                            "simulated or stored",
                            o.scenario));
  if (o.no_steady_state)
    throw Error(fmt::format("--no-steady-state is about a training step's 1F1B pipeline; {} is a serving scenario (drop "
                            "--no-steady-state); nothing was simulated or stored",
                            o.scenario));
}

int cmd_run(const GlobalOptions& g, const RunOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  scenario::Scenario s = scenario::load_file(o.scenario, catalog, o.overrides);
  check_training_only_options(s, o);
  PreparedRun p = [&] {
    try {
      return prepare_run(catalog, std::move(s));
    } catch (const MemoryFitError& e) {
      // The memory checks see the scenario, not its file: name the file here.
      throw MemoryFitError(fmt::format("{}: {}", o.scenario, e.what()));
    }
  }();
  // Every output is checked before the simulation: a run is never stored only to fail on its report.
  if (!o.report_dir.empty()) {
    if (o.no_store) throw Error("--report needs the run store (it reads the run back from it); drop --no-store");
    check_output_directory(o.report_dir, "--report");
  }
  if (!o.trace.empty()) check_output_file(o.trace, "--trace");
  std::unique_ptr<store::Store> db;
  if (!o.no_store) db = std::make_unique<store::Store>(o.db);
  install_interrupt_handler();
  const store::RunRecord rec = execute_run(catalog, p, db.get(), make_header(p.scenario), !o.json && isatty(2), o.trace,
                                               !o.no_steady_state);
  std::string report, report_error;
  if (!o.report_dir.empty()) {
    try {
      report = reports::write_run_report(*db, rec.id, reports::Format::html, o.report_dir);
    } catch (const std::exception& e) {
      // The run is stored: print it all the same, then say what failed and how to retry.
      report_error = fmt::format("the run is stored as run {} in {}, but its report could not be written: {}; write it "
                                 "with `moesim report {} --db {} -o DIR`",
                                 rec.id, o.db, e.what(), rec.id, o.db);
    }
  }
  if (o.json)
    std::cout << record_json(rec).dump(2) << "\n";
  else
    std::cout << record_summary(rec) << (db ? fmt::format("  stored in {} as run {}\n", o.db, rec.id) : "")
              << (report.empty() ? "" : fmt::format("  report: {}\n", report));
  std::cout.flush();
  if (!report_error.empty()) throw Error(report_error);
  return 0;
}

}  // namespace moesim::cli
