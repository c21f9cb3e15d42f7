// SPDX-License-Identifier: Apache-2.0
// `moesim compare SCENARIO`: the scenario and each alternative (its `compare:` section and --alt) are
// simulated in their own processes, `--jobs` at a time, stored under one comparison id, and ranked by
// gross CO2e with the time-CO2e Pareto front marked (reports::comparison_rows).
#include <unistd.h>

#include <cmath>
#include <deque>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "commands.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/store/store.hpp"
#include "record.hpp"
#include "run_job.hpp"

namespace moesim::cli {

namespace {
nlohmann::json row_json(const reports::ComparisonRow& r) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  if (r.kind == "serving")
    return {{"run_id", r.run_id},
            {"label", r.label},
            {"kind", r.kind},
            {"status", r.status},
            {"rank", r.rank},
            {"pareto", r.pareto},
            {"throughput_rps", num(r.throughput_rps)},
            {"output_tokens_per_s", num(r.output_tokens_per_s)},
            {"ttft_p99_ms", num(r.ttft_p99_ms)},
            {"tpot_p99_ms", num(r.tpot_p99_ms)},
            {"goodput_fraction", num(r.goodput_fraction)},
            {"energy_per_output_token_j", num(r.energy_per_output_token_j)},
            {"gco2e_gross_per_1000_tokens", num(r.gco2e_gross_per_1k_tokens)},
            {"gco2e_net_per_1000_tokens", num(r.gco2e_net_per_1k_tokens)},
            {"facility_energy_mwh", num(r.facility_energy_mwh)},
            {"co2e_gross_t", num(r.co2e_gross_t)},
            {"co2e_net_t", num(r.co2e_net_t)}};
  return {{"run_id", r.run_id},
          {"kind", "training"},
          {"label", r.label},
          {"status", r.status},
          {"rank", r.rank},
          {"pareto", r.pareto},
          {"train_days", num(r.train_days)},
          {"facility_energy_mwh", num(r.facility_energy_mwh)},
          {"co2e_gross_t", num(r.co2e_gross_t)},
          {"co2e_net_t", num(r.co2e_net_t)},
          {"wan_bytes_per_step", num(r.wan_bytes_per_step)},
          {"wan_time_per_step_s", num(r.wan_time_per_step_s)}};
}
}  // namespace

int cmd_compare(const GlobalOptions& g, const CompareOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  const scenario::Scenario base = scenario::load_file(o.scenario, catalog, o.overrides);
  std::vector<scenario::Alternative> alts = scenario::load_alternatives(o.scenario, catalog, o.overrides, o.alternatives);
  if (alts.empty())
    throw Error(fmt::format("{}: nothing to compare: add a `compare:` section (a list of alternatives with a `label:` and "
                            "the keys they change) or --alt '{{label: NAME, KEY: VALUE}}'",
                            o.scenario));
  for (const auto& a : alts)
    if (a.scenario.is_serving() != base.is_serving())
      throw InputError(o.scenario, 0, 0, "compare[]", fmt::format("alternative '{}' {} while the scenario {}: compare training "
                                                                  "with training and serving with serving",
                                                                  a.label, a.scenario.is_serving() ? "serves" : "trains",
                                                                  base.is_serving() ? "serves" : "trains"));
  // Check every alternative before anything is written: a bad one is reported with its label.
  std::vector<std::pair<std::string, PreparedRun>> runs;
  runs.emplace_back(scenario::kBaseAlternativeLabel, prepare_run(catalog, base));
  for (auto& a : alts) {
    try {
      runs.emplace_back(a.label, prepare_run(catalog, std::move(a.scenario)));
    } catch (const Error& e) {
      throw Error(fmt::format("alternative '{}': {}", a.label, e.what()));
    }
  }

  store::Store db(o.db);
  std::vector<store::RunRecord> headers;
  for (const auto& [label, p] : runs) {
    store::RunRecord h = make_header(p.scenario);
    h.alternative_label = label;
    headers.push_back(std::move(h));
  }
  // The comparison and every one of its runs in one transaction: a comparison is never stored short of runs.
  const auto [cmp, ids] = db.begin_comparison(base.name, headers);
  for (auto& h : headers) h.comparison_id = cmp;

  install_interrupt_handler();
  const bool tty = isatty(2) && !o.json;
  std::deque<std::size_t> queue;
  for (std::size_t i = 0; i < runs.size(); ++i) queue.push_back(i);
  std::map<int, std::size_t> by_ticket;
  std::size_t finished = 0;
  try {
    engine::IsolatedPool pool;
    while (!queue.empty() || pool.running() > 0) {
      while (!queue.empty() && static_cast<int>(pool.running()) < std::max(1, o.jobs)) {
        const std::size_t i = queue.front();
        queue.pop_front();
        const PreparedRun* p = &runs[i].second;
        by_ticket[pool.start([p, &catalog] { return simulate_json(catalog, *p); })] = i;
      }
      engine::IsolatedPool::Done d = pool.wait_any(interrupt_flag());
      const std::size_t i = by_ticket.at(d.ticket);
      ++finished;
      if (tty) std::cerr << fmt::format("\r[compare] {}/{} done ({})      ", finished, runs.size(), runs[i].first) << std::flush;
      if (!d.error.empty()) {
        db.fail_run(ids[i], d.error);
        continue;
      }
      try {
        db.complete_run(ids[i], finish_run(catalog, runs[i].second, d.result.value, headers[i]));
      } catch (const std::exception& e) {
        db.fail_run(ids[i], e.what());
      }
    }
  } catch (const Error& e) {
    // Interrupted (or the pool failed): runs not finished are marked failed, never complete.
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (db.get_run(ids[i]).status == store::RunStatus::running) db.fail_run(ids[i], e.what());
    throw;
  }
  if (tty) std::cerr << "\n";

  const auto rows = reports::comparison_rows(db, cmp);
  if (o.json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : rows) a.push_back(row_json(r));
    std::cout << nlohmann::json{{"comparison_id", cmp}, {"scenario", base.name}, {"alternatives", a}}.dump(2) << "\n";
  } else {
    const bool serving = base.is_serving();
    std::size_t complete = 0;
    for (const auto& r : rows) complete += r.status == "complete" ? 1 : 0;
    std::cout << fmt::format("moesim comparison {} of {}: {} alternatives{} (ranked by {}; Pareto: yes = on the {} Pareto front)\n", cmp,
                             base.name, rows.size(),
                             complete == rows.size() ? "" : fmt::format(", {} of them complete", complete),
                             serving ? "gross gCO2e per 1000 output tokens" : "gross tCO2e",
                             serving ? "P99 TTFT-carbon per token" : "time-CO2e")
              << reports::comparison_table_text(rows);
    if (const std::string note = reports::comparison_grid_basis_note(db, cmp); !note.empty()) std::cout << "note: " << note << "\n";
    std::cout << fmt::format("stored in {}; report: moesim report c{} --format html --db {}\n", o.db, cmp, o.db);
  }
  return 0;
}

}  // namespace moesim::cli
