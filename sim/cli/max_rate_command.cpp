// SPDX-License-Identifier: Apache-2.0
// `moesim run SCENARIO --max-rate`: the highest arrival rate whose P99 TTFT and P99 TPOT meet the scenario's
// SLOs, found by bracketing (doubling or halving from the scenario's rate) and bisection, as Vidur-Search
// does; each probe is a full simulation in its own process. The run at the rate found is stored with its
// energy and carbon per token.
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <optional>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/store/store.hpp"
#include "max_rate_search.hpp"
#include "record.hpp"
#include "run_job.hpp"

namespace moesim::cli {

int cmd_max_rate(const GlobalOptions& g, const RunOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  const scenario::Scenario base = scenario::load_file(o.scenario, catalog, o.overrides);
  if (!o.report_dir.empty()) {
    if (o.no_store) throw Error("--report needs the run store (it reads the run back from it); drop --no-store");
    check_output_directory(o.report_dir, "--report");
  }
  check_training_only_options(base, o);
  check_rate_searchable(base, o.scenario);
  install_interrupt_handler();
  const bool tty = isatty(2) && !o.json;
  auto prepare = [&](double rate, double scale) {
    std::vector<std::string> ov = o.overrides;
    for (auto& x : rate_overrides(base, rate, scale)) ov.push_back(std::move(x));
    return prepare_run(catalog, scenario::load_file(o.scenario, catalog, ov));
  };
  const RateSearch search = search_max_rate(
      base, o.rate_tolerance,
      [&](double rate, double scale) {
        const PreparedRun prepared = prepare(rate, scale);
        return engine::run_isolated([&] { return simulate_json(catalog, prepared); }, interrupt_flag()).value;
      },
      [&, n = 0](const RateProbe& p) mutable {
        ++n;
        if (tty)
          std::cerr << fmt::format("\r[max-rate] probe {}: {:.4g} requests/s -> P99 TTFT {:.1f} ms, TPOT {:.1f} ms ({})      ", n, p.rate_per_s,
                                   1e3 * p.ttft_p99_s, 1e3 * p.tpot_p99_s,
                                   p.ok ? "meets the SLOs" : !p.slo_met ? "misses" : "falls behind its arrivals")
                    << std::flush;
      });
  if (tty) std::cerr << "\n";

  // The run at the highest rate found: stored like any run, with the search's bracket.
  const PreparedRun prepared = prepare(search.rate_per_s, search.duration_scale);
  store::RunRecord header = make_header(prepared.scenario);
  store::RunRecord rec = finish_run(catalog, prepared, search.result, header);
  search.add_metrics(rec);
  std::unique_ptr<store::Store> db;
  if (!o.no_store) {
    db = std::make_unique<store::Store>(o.db);
    const std::int64_t id = db->begin_run(header);
    db->complete_run(id, rec);
    rec = db->get_run(id);
  } else {
    rec.status = store::RunStatus::complete;
  }
  std::string report;
  if (!o.report_dir.empty()) {
    if (!db) throw Error("--report needs the run store (it reads the run back from it); drop --no-store");
    report = reports::write_run_report(*db, rec.id, reports::Format::html, o.report_dir);
  }
  if (o.json) {
    nlohmann::json out = record_json(rec);
    out["max_rate"] = search.to_json();
    std::cout << out.dump(2) << "\n";
  } else {
    const std::string realised =
        search.sustained_rate_per_s < search.rate_per_s
            ? fmt::format("the arrival rate its run at {:.4g} requests/s drew in the measured window; ", search.rate_per_s)
            : std::string();
    std::string longer;
    if (search.duration_scale > 1.0)
      longer = fmt::format("; its run's arrival period is {:g}x the scenario's, as a shorter one could not tell a backlog "
                           "growing by {:g} % of the arrivals from chance",
                           search.duration_scale, 100.0 * search.resolution_target);
    if (search.backlog_resolution > search.resolution_target)
      longer += fmt::format("; even so its run tells a growing backlog from chance only above {:.3g} % of the arrivals: "
                            "lengthen serving.duration_s for a sharper answer",
                            100.0 * search.backlog_resolution);
    std::cout << fmt::format("highest rate meeting P99 TTFT <= {:g} ms and P99 TPOT <= {:g} ms and keeping up with its arrivals: "
                             "{:.4g} requests/s ({}at {:.4g} it misses the SLOs or falls behind; {} simulations{})\n",
                             1e3 * search.slo_ttft_s, 1e3 * search.slo_tpot_s, search.sustained_rate_per_s,
                             realised, search.upper_rate_per_s, search.probes.size(), longer)
              << record_summary(rec) << (db ? fmt::format("  stored in {} as run {}\n", o.db, rec.id) : "")
              << (report.empty() ? "" : fmt::format("  report: {}\n", report));
  }
  return 0;
}

}  // namespace moesim::cli
