// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/engine.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::engine {

/** Summary of one latency distribution over the measured requests (seconds). Percentiles are nearest-rank
 *  on the sorted values (ITL: on a log-bucketed histogram of every token gap, 0.1 % relative resolution). */
struct LatencyStats {
  long long count = 0;
  double mean_s = 0.0;
  double p50_s = 0.0;
  double p90_s = 0.0;
  double p95_s = 0.0;
  double p99_s = 0.0;
  double max_s = 0.0;
};

/** One measured request's timings (seconds from the start). */
struct RequestRecord {
  double arrival_s = 0.0;
  double first_token_s = 0.0;
  double end_s = 0.0;
  double queue_s = 0.0;  ///< arrival until its prompt first entered a batch
  int prompt_tokens = 0;
  int output_tokens = 0;
  int replica = 0;       ///< the replica that produced its first token (pool order, then replica order)
  int preemptions = 0;
};

/** Memory of one replica of a pool (the most loaded device). */
struct PoolFigures {
  std::string role;
  int replicas = 0;
  int devices_per_replica = 0;
  double weights_bytes = 0.0;
  double workspace_bytes = 0.0;
  double kv_bytes = 0.0;
  double kv_bytes_per_token = 0.0;
  long long kv_blocks = 0;
  int block_tokens = 0;
};

/** The simulated serving run. Throughput and energy are over the measurement window: from the warm-up's
 *  end to the last arrival (open-loop arrivals), or from 0 to the last completion (offline). Latencies are
 *  those of the requests arriving in the window, each simulated to its end. */
struct ServingResult {
  std::string scenario_name;
  std::string accelerator;
  int chips = 0;
  int devices = 0;
  std::vector<PoolFigures> pools;
  long long requests_total = 0;     ///< simulated (warm-up included)
  long long requests_measured = 0;  ///< arriving in the window
  double window_start_s = 0.0;
  double window_end_s = 0.0;
  double makespan_s = 0.0;          ///< until the last request completed
  LatencyStats ttft, tpot, itl, e2e, queue;
  /** Requests finishing in the window (all of them offline): what the deployment served, whatever it was asked. */
  long long requests_completed = 0;
  double throughput_rps = 0.0;      ///< requests completed in the window / window (not arrivals: see requests_completed)
  double input_tokens_per_s = 0.0;  ///< prompt tokens computed in the window / window
  double output_tokens_per_s = 0.0; ///< tokens generated in the window / window
  double output_tokens_per_s_per_device = 0.0;
  double input_tokens_window = 0.0;
  double output_tokens_window = 0.0;
  /** Output tokens the measured requests ask for (generated in the window or after it). A deployment that keeps up
   *  generates about as many in the window as its arrivals ask for (the requests in flight at the window's start
   *  and at its end balance); one that falls behind generates fewer, and its queue grows with the run's length. */
  double output_tokens_requested_window = 0.0;
  /** Output tokens generated in the window by the measured requests (those arriving at or after the window's start;
   *  offline: all of them): output_tokens_window without the warm-up arrivals' tokens. Over
   *  output_tokens_requested_window it is the share of what the measured requests ask for that the window served (at
   *  most 1; output_tokens_window, the server's view, also counts the warm-up requests finishing in the window). */
  double output_tokens_measured_window = 0.0;
  /** Requests in the system (arrived, not finished) at the window's end minus at its middle, over the requests
   *  arriving between the two: about 0 when the deployment keeps up with its load, about x when it falls behind by
   *  a fraction x of it (its queue, and so its latencies, then grow with the run's length). 0 offline. */
  double backlog_growth_fraction = 0.0;
  long long arrivals_late = 0;  ///< arrivals between the window's middle and its end (backlog_growth_fraction's denominator)
  long long in_system_mid = 0;  ///< requests in the system (arrived, not finished) at the window's middle
  long long in_system_end = 0;  ///< ... and at its end
  double goodput_fraction = 0.0;    ///< measured requests within both SLOs / measured requests
  double goodput_rps = 0.0;  ///< goodput_fraction x throughput_rps: requests served per second within both SLOs
  double slo_ttft_s = 0.0;
  double slo_tpot_s = 0.0;
  bool slo_p99_met = false;         ///< P99 TTFT and P99 TPOT within the SLOs
  long long preemptions = 0;
  double mean_batch_sequences = 0.0;  ///< time-weighted mean of sequences in flight (admitted, not finished; all replicas)
  double mean_kv_use = 0.0;           ///< mean of the KV-cache use series in the window (fraction of blocks)
  double mean_queue_requests = 0.0;   ///< time-weighted mean of requests waiting for admission
  double model_flops_window = 0.0;
  double mfu = 0.0;                   ///< model FLOPs in the window / (window x devices x peak)
  double kv_transfer_bytes = 0.0;     ///< KV caches moved between pools in the window
  long long iterations = 0;
  long long layer_shapes_simulated = 0;  ///< (pool, stage, layer kind, token bucket) simulated on SimGrid
  long long layer_replays = 0;           ///< layers replayed from the memo
  long long attention_shapes = 0;        ///< distinct attention shapes costed
  std::vector<SiteStepFigures> sites;    ///< chip energy and link bytes in the window (one "step" = the window)
  std::vector<double> site_output_tokens;  ///< tokens generated in the window by each site's replicas
  /** Series over the whole run, from 0 to its end (the last completion, or an open-loop window's end when that is
   *  later), at a fixed interval on a grid anchored at the window's start: t_s (interval start); queue_requests
   *  (requests waiting for admission), batch_sequences (sequences in flight) and kv_use (fraction of the KV blocks
   *  held), each the time average over its interval; power_w (average chip power over the interval, all sites). Each
   *  point covers the interval to the next. An open-loop window is a whole number of intervals; where the grid's first
   *  point comes after 0, the first point covers [0, it), series_first_interval_s; where the run ends inside an
   *  interval (offline: the window's end; open loop: a drain past it), the last covers the rest,
   *  series_last_interval_s (each at most series_interval_s; equal to it when not shorter). */
  std::map<std::string, std::vector<double>> series;
  double series_interval_s = 0.0;
  double series_first_interval_s = 0.0;
  double series_last_interval_s = 0.0;
  /** power_w of each site's chips (sites in `sites`' order), at the same points: they add up to power_w. */
  std::vector<std::vector<double>> site_power_w;
  /** Quantiles 0, 1, ..., 100 % of TTFT, TPOT and E2E (seconds): the latency CDFs. */
  std::vector<double> ttft_cdf_s, tpot_cdf_s, e2e_cdf_s;
  double peak_chip_power_w = 0.0;
  std::string power_convention;
  std::string compute_model;
  std::map<std::string, std::string> compute_paths;
  std::map<std::string, std::string> algorithms;
  double sim_wall_s = 0.0;
  std::vector<RequestRecord> requests;  ///< every measured request, when serving.record_requests
};

/** The backlog growth (ServingResult::backlog_growth_fraction) above which a deployment falls behind its load: 1 %
 *  of it. Chosen, not measured: half the capacity search's default --rate-tolerance (2 %), so that the rate it
 *  reports is within its tolerance of one the deployment sustains however long it runs. */
inline constexpr double kMaxBacklogGrowth = 0.01;

/** At most this many doublings of a capacity search probe's arrival period (8x) until its run resolves a backlog
 *  growth of the search's tolerance (backlog_resolution): an 8 s window of cross-site disaggregated serving with 80
 *  requests in the system resolves only 12 %, and accepted a rate 7 % above what the deployment sustains. Chosen, not
 *  measured: the cost of a probe grows with its length. */
inline constexpr int kMaxProbeLengthening = 3;

/** Whether the run falls behind its arrivals: the requests in the system grow between the window's middle and its
 *  end by more than kMaxBacklogGrowth of the arrivals in between, and by more than chance allows. In a steady state
 *  the number in the system is about Poisson-distributed (M/G/inf), so two counts apart differ by about
 *  sqrt(2 x mean) in a standard deviation; growth within 3 of those is noise (a lightly loaded run of a few hundred
 *  requests swings by several). False offline (its window is the whole drain). */
bool falls_behind(const ServingResult& r);

/** The smallest backlog growth, as a fraction of the arrivals between the window's middle and end, that
 *  falls_behind tells from chance in this run: 3 sqrt(2 x mean in the system) over those arrivals (at least
 *  kMaxBacklogGrowth). 0 offline. */
double backlog_resolution(const ServingResult& r);

nlohmann::json to_json(const ServingResult& r);
ServingResult serving_from_json(const nlohmann::json& j);

/** The window as one "step" of a job, for the energy layer: step time = window, one step; power_t_s / power_w the
 *  power series over the window (seconds from the window's start; each point to the next, the last to the window's
 *  end), which energy::account uses to weight an hourly grid intensity by the energy drawn in each hour. */
JobResult window_as_job(const ServingResult& r);

/** Each site's chip power over the window (ServingResult::site_power_w, sites in `sites`' order) at the points of
 *  window_as_job(r).power_t_s: what energy::account_serving weights each site's hourly grid intensity by. */
std::vector<std::vector<double>> window_site_power_w(const ServingResult& r);

/** The start of the measurement window, in seconds from the run's start: 0 for the offline arrival type (every
 *  request at once), serving.warmup_s otherwise (ServingResult::window_start_s). */
double window_start_s(const scenario::ServingSpec& v);

/** The measurement window as far as it is known before simulating, in seconds from the run's start. */
struct KnownWindow {
  double start_s = 0.0;
  /** Where the arrivals fix it: serving.duration_s, or the last arrival when serving.requests (or a trace's end)
   *  ends them first. None where the window lasts until the last completion (offline, or every request arriving at
   *  one instant), or where there are no requests. */
  std::optional<double> end_s;
};
/** The window simulate_serving() will measure, from the scenario alone (generates the requests, reading a trace, as
 *  the simulation does). Throws moesim::InputError as generate_requests() does. */
KnownWindow known_window(const scenario::Scenario& s);

/** The registries of batching schedulers and routers (serving.scheduler.type, serving.router.type). */
std::vector<std::string> serving_scheduler_names();
std::vector<std::string> serving_router_names();

/** Checks what can be checked without simulating: topology, memory of every pool, the requests (trace),
 *  and that the largest request fits a replica's KV cache. Throws moesim::Error / InputError. */
void check_serving_feasible(const scenario::Scenario& s, const catalog::Catalog& catalog);

/** Simulates the serving scenario on SimGrid (arrivals, router and per-replica schedulers are actors).
 *  Must run in a fresh process (see run_isolated). */
ServingResult simulate_serving(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options = {});

}  // namespace moesim::engine
