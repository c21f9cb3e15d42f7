// SPDX-License-Identifier: Apache-2.0
#pragma once
// The capacity search of a serving scenario: the highest arrival rate whose P99 TTFT and P99 TPOT meet the
// scenario's SLOs, by bracketing (doubling or halving from the scenario's rate) and bisection, as Vidur-Search
// does. Used by `moesim run --max-rate` (one search) and `moesim sweep --max-rate` (one search per point).
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/scenario/scenario.hpp"
#include "moesim/store/store.hpp"

namespace moesim::cli {

/** Doubling / halving steps allowed while bracketing (2^16 = 65536x the scenario's rate either way). */
inline constexpr int kMaxBracketSteps = 16;

/** One simulation of the search. */
struct RateProbe {
  double rate_per_s = 0.0;
  bool ok = false;  ///< P99 TTFT and TPOT within the SLOs, at least one request measured, and keeping up
  bool slo_met = false;  ///< P99 TTFT and TPOT within the SLOs
  bool keeps_up = true;  ///< not engine::falls_behind: a rate past the capacity fails even when a short run meets the SLOs
  double backlog_growth_fraction = 0.0;
  double ttft_p99_s = 0.0;
  double tpot_p99_s = 0.0;
  double output_tokens_per_s = 0.0;
  long long requests = 0;
  /** The arrival rate the run realised in its measured window (its arrivals there over the window's length):
   *  a Poisson or gamma process's count in a finite window scatters about the nominal rate (by 1/sqrt(count)). */
  double window_arrival_rate_per_s = 0.0;
  /** The probe's arrival period as a multiple of the scenario's (1, or 2, 4, 8 when a shorter run could not tell a
   *  backlog growth of the search's tolerance from chance), and the growth its run resolves. */
  double duration_scale = 1.0;
  double backlog_resolution = 0.0;
  nlohmann::json result;  ///< the ServingResult JSON
};

/** What the search found: `rate_per_s` meets the SLOs (its probe's result is `result`), `upper_rate_per_s`
 *  misses them, and they are within the tolerance of each other. `sustained_rate_per_s`, the answer, is the
 *  lower of `rate_per_s` and the arrival rate its run realised in the measured window: a run whose window drew
 *  fewer arrivals than its nominal rate only showed that the deployment keeps up with those (a 10 s window of
 *  1380 requests/s can draw 1356/s, 2 % less, and pass where a long run at 1380 falls behind). */
struct RateSearch {
  double rate_per_s = 0.0;
  double sustained_rate_per_s = 0.0;
  double upper_rate_per_s = 0.0;
  double duration_scale = 1.0;  ///< of the accepted probe (its run is `result`): the stored run's arrival period scale
  double backlog_resolution = 0.0;  ///< of the accepted probe: the backlog growth its run tells from chance
  double resolution_target = 0.0;   ///< what the search asked of its probes: the tolerance, at least kMaxBacklogGrowth
  double slo_ttft_s = 0.0;
  double slo_tpot_s = 0.0;
  std::vector<RateProbe> probes;
  nlohmann::json result;

  /** The search as JSON ({rate_per_s, upper_rate_per_s, slo_ttft_s, slo_tpot_s, probes: [...]}): the `max_rate`
   *  object of `run --max-rate --json`, and what a sweep's child process sends back with the result. */
  nlohmann::json to_json() const;
  static RateSearch from_json(const nlohmann::json& j);
  /** The search's figures as run metrics: max_rate_rps (sustained_rate_per_s), max_rate_probe_rps (rate_per_s),
   *  max_rate_upper_rps, max_rate_probes. */
  void add_metrics(store::RunRecord& rec) const;
};

/** Throws a located moesim::InputError (file `scenario_file`) unless `s` is a serving scenario whose arrival rate
 *  can be varied (poisson, gamma, constant or bursts arrivals). */
void check_rate_searchable(const scenario::Scenario& s, const std::string& scenario_file);

/** Searches the rate of `base` (check_rate_searchable first) to a relative bracket width `tolerance`.
 *  `simulate(rate, scale)` returns the ServingResult JSON of the scenario at that rate with its arrival period
 *  (duration_s and requests) multiplied by `scale` (scenario_at_rate); `on_probe` sees each probe. A probe that meets
 *  the SLOs and keeps up, but whose run cannot tell a backlog growth of `tolerance` (at least
 *  engine::kMaxBacklogGrowth) from chance, is run again twice as long (up to engine::kMaxProbeLengthening times)
 *  before it is accepted: the rate found is then within the tolerance of one the deployment sustains.
 *  Throws moesim::Error when the SLOs hold even at 2^16 times the scenario's rate, or at no rate. */
RateSearch search_max_rate(const scenario::Scenario& base, double tolerance,
                           const std::function<nlohmann::json(double, double)>& simulate,
                           const std::function<void(const RateProbe&)>& on_probe = {});

/** The --set overrides that put a serving scenario at `rate` requests/s with its arrival period `scale` times its
 *  own (serving.duration_s and serving.requests, whichever it gives, scaled; the warm-up kept). */
std::vector<std::string> rate_overrides(const scenario::Scenario& base, double rate, double scale);
/** The one --set of a probe at its scenario's own arrival period (rate_overrides at scale 1). */
std::string rate_override(double rate);

/** The largest arrival-period scale rate_overrides may apply to `base` with serving.duration_s and
 *  serving.requests still within their fields' maxima (at least 1): a lengthened probe stops there. */
double max_duration_scale(const scenario::Scenario& base);

}  // namespace moesim::cli
