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
#include "record.hpp"
#include "run_job.hpp"

namespace moesim::cli {

namespace {

/** Doubling / halving steps allowed while bracketing (2^16 = 65536x the scenario's rate either way). */
constexpr int kMaxBracketSteps = 16;

struct Probe {
  double rate_per_s = 0.0;
  bool ok = false;          ///< P99 TTFT and TPOT within the SLOs
  double ttft_p99_s = 0.0;
  double tpot_p99_s = 0.0;
  double output_tokens_per_s = 0.0;
  long long requests = 0;
  nlohmann::json result;    ///< the ServingResult JSON
};

}  // namespace

int cmd_max_rate(const GlobalOptions& g, const RunOptions& o) {
  const catalog::Catalog catalog = load_catalog(g);
  const scenario::Scenario base = scenario::load_file(o.scenario, catalog, o.overrides);
  if (!o.report_dir.empty()) {
    if (o.no_store) throw Error("--report needs the run store (it reads the run back from it); drop --no-store");
    check_output_directory(o.report_dir, "--report");
  }
  if (!base.is_serving())
    throw InputError(o.scenario, 0, 0, "--max-rate", "searches the arrival rate of a serving scenario; this one trains");
  const std::string type = base.serving->arrival.type;
  if (type != "poisson" && type != "gamma" && type != "constant" && type != "bursts")
    throw InputError(o.scenario, 0, 0, "serving.arrival.type",
                     fmt::format("--max-rate varies the arrival rate: the arrival type must be poisson, gamma, constant or "
                                 "bursts, not {}", type));
  if (!o.trace.empty()) throw Error("--trace is for training steps; drop it with --max-rate");
  install_interrupt_handler();
  const bool tty = isatty(2) && !o.json;
  std::vector<Probe> probes;
  std::optional<PreparedRun> best_prepared;
  auto prepare = [&](double rate) {
    std::vector<std::string> ov = o.overrides;
    ov.push_back(fmt::format("serving.arrival.rate_per_s={:.17g}", rate));
    return prepare_run(catalog, scenario::load_file(o.scenario, catalog, ov));
  };
  auto probe = [&](double rate) -> Probe {
    Probe p;
    p.rate_per_s = rate;
    const PreparedRun prepared = prepare(rate);
    const engine::IsolatedResult iso = engine::run_isolated([&] { return simulate_json(catalog, prepared); }, interrupt_flag());
    const engine::ServingResult r = engine::serving_from_json(iso.value);
    p.ttft_p99_s = r.ttft.p99_s;
    p.tpot_p99_s = r.tpot.p99_s;
    p.output_tokens_per_s = r.output_tokens_per_s;
    p.requests = r.requests_measured;
    p.ok = r.slo_p99_met && r.requests_measured > 0;
    p.result = iso.value;
    probes.push_back(p);
    if (tty)
      std::cerr << fmt::format("\r[max-rate] probe {}: {:.4g} requests/s -> P99 TTFT {:.1f} ms, TPOT {:.1f} ms ({})      ", probes.size(),
                               rate, 1e3 * p.ttft_p99_s, 1e3 * p.tpot_p99_s, p.ok ? "meets the SLOs" : "misses")
                << std::flush;
    return p;
  };
  const double slo_ttft = base.serving->slo_ttft_s, slo_tpot = base.serving->slo_tpot_s;
  const double r0 = base.serving->arrival.rate_per_s;
  Probe lo, hi;
  bool have_hi = false;
  const Probe first = probe(r0);
  if (first.ok) {
    lo = first;
    double r = r0;
    for (int i = 0; i < kMaxBracketSteps; ++i) {
      r *= 2.0;
      Probe p = probe(r);
      if (!p.ok) {
        hi = p;
        have_hi = true;
        break;
      }
      lo = p;
    }
    if (!have_hi)
      throw Error(fmt::format("--max-rate: the SLOs (P99 TTFT {:.0f} ms, TPOT {:.0f} ms) still hold at {:.4g} requests/s, {}x the "
                              "scenario's rate; raise serving.arrival.rate_per_s or lengthen serving.duration_s (short runs "
                              "never fill the queue)",
                              1e3 * slo_ttft, 1e3 * slo_tpot, lo.rate_per_s, 1 << kMaxBracketSteps));
  } else {
    hi = first;
    have_hi = true;
    double r = r0;
    bool found = false;
    for (int i = 0; i < kMaxBracketSteps; ++i) {
      r /= 2.0;
      Probe p;
      try {
        p = probe(r);
      } catch (const Error&) {
        break;  // too few requests left at this rate to simulate anything
      }
      if (p.ok) {
        lo = p;
        found = true;
        break;
      }
      hi = p;
      if (p.requests <= 1) break;
    }
    if (!found)
      throw Error(fmt::format("--max-rate: the SLOs cannot be met at any rate: at {:.4g} requests/s ({} request{} measured) P99 TTFT "
                              "is {:.1f} ms (limit {:.0f}) and P99 TPOT {:.1f} ms (limit {:.0f}); an unloaded replica is already "
                              "slower than the limits: relax serving.slo, or give replicas more devices or faster accelerators",
                              hi.rate_per_s, hi.requests, hi.requests == 1 ? "" : "s", 1e3 * hi.ttft_p99_s, 1e3 * slo_ttft,
                              1e3 * hi.tpot_p99_s, 1e3 * slo_tpot));
  }
  while ((hi.rate_per_s - lo.rate_per_s) / lo.rate_per_s > o.rate_tolerance) {
    Probe p = probe(0.5 * (lo.rate_per_s + hi.rate_per_s));
    (p.ok ? lo : hi) = p;
  }
  if (tty) std::cerr << "\n";

  // The run at the highest rate found: stored like any run, with the search's bracket.
  const PreparedRun prepared = prepare(lo.rate_per_s);
  store::RunRecord header = make_header(prepared.scenario);
  store::RunRecord rec = finish_run(catalog, prepared, lo.result, header);
  rec.metrics.push_back({"max_rate_rps", lo.rate_per_s, "requests/s"});
  rec.metrics.push_back({"max_rate_upper_rps", hi.rate_per_s, "requests/s"});
  rec.metrics.push_back({"max_rate_probes", static_cast<double>(probes.size()), "simulations"});
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
    nlohmann::json ps = nlohmann::json::array();
    for (const Probe& p : probes)
      ps.push_back({{"rate_per_s", p.rate_per_s}, {"meets_slo", p.ok}, {"ttft_p99_s", p.ttft_p99_s}, {"tpot_p99_s", p.tpot_p99_s},
                    {"output_tokens_per_s", p.output_tokens_per_s}});
    out["max_rate"] = {{"rate_per_s", lo.rate_per_s}, {"upper_rate_per_s", hi.rate_per_s}, {"slo_ttft_s", slo_ttft},
                       {"slo_tpot_s", slo_tpot}, {"probes", ps}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("highest rate meeting P99 TTFT <= {:.0f} ms and P99 TPOT <= {:.0f} ms: {:.4g} requests/s (misses at "
                             "{:.4g}; {} simulations)\n",
                             1e3 * slo_ttft, 1e3 * slo_tpot, lo.rate_per_s, hi.rate_per_s, probes.size())
              << record_summary(rec) << (db ? fmt::format("  stored in {} as run {}\n", o.db, rec.id) : "")
              << (report.empty() ? "" : fmt::format("  report: {}\n", report));
  }
  return 0;
}

}  // namespace moesim::cli
