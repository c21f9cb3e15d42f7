// SPDX-License-Identifier: Apache-2.0
// The serving driver: request arrivals, a global router and one batching scheduler per replica, as SimGrid
// actors on the cluster platform. An iteration's layers run as phases on the replica's chips (compute as
// parallel tasks, compute-bound and memory-bound kernels as separate phases at the power of their own achieved
// utilisation, collectives as the system layer's rounds) the first
// time their token count is seen, and are replayed from a memo afterwards (see DESIGN.md §8).
#include "moesim/engine/serving.hpp"

#include <simgrid/Exception.hpp>
#include <simgrid/plugins/energy.h>
#include <simgrid/s4u.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <numeric>
#include <tuple>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "moesim/perf/model_factory.hpp"
#include "moesim/perf/power_limit.hpp"
#include "moesim/platform/platform.hpp"
#include "moesim/system/collectives.hpp"
#include "moesim/system/topology.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/serving.hpp"

namespace moesim::engine {

namespace sg4 = simgrid::s4u;
using nlohmann::json;
using workload::DeviceWork;
using workload::IterationShape;
using workload::LayerKind;

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LatencyStats, count, mean_s, p50_s, p90_s, p95_s, p99_s, max_s)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(RequestRecord, arrival_s, first_token_s, end_s, queue_s, prompt_tokens, output_tokens,
                                   replica, preemptions)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PoolFigures, role, replicas, devices_per_replica, weights_bytes, workspace_bytes, kv_bytes,
                                   kv_bytes_per_token, kv_blocks, block_tokens)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ServingResult, scenario_name, accelerator, chips, devices, pools, requests_total,
                                   requests_measured, window_start_s, window_end_s, makespan_s, ttft, tpot, itl, e2e, queue,
                                   requests_completed, throughput_rps, input_tokens_per_s, output_tokens_per_s, output_tokens_per_s_per_device,
                                   input_tokens_window, output_tokens_window, output_tokens_requested_window, output_tokens_measured_window,
                                   backlog_growth_fraction, arrivals_late, in_system_mid, in_system_end, goodput_fraction, goodput_rps, slo_ttft_s,
                                   slo_tpot_s, slo_p99_met, preemptions, mean_batch_sequences, mean_kv_use,
                                   mean_queue_requests, model_flops_window, mfu, kv_transfer_bytes, iterations,
                                   layer_shapes_simulated, layer_replays, attention_shapes, sites, site_output_tokens, series,
                                   series_interval_s, series_first_interval_s, series_last_interval_s, site_power_w, ttft_cdf_s, tpot_cdf_s, e2e_cdf_s, peak_chip_power_w,
                                   power_convention, compute_model, compute_paths, algorithms, sim_wall_s, requests)

json to_json(const ServingResult& r) {
  json j;
  to_json(j, r);
  return j;
}

ServingResult serving_from_json(const json& j) { return j.get<ServingResult>(); }

/** Growth of the requests in the system that chance allows: 3 standard deviations of the difference of two about
 *  Poisson-distributed counts of mean `mean` (falls_behind). */
double chance_growth(const ServingResult& r) {
  const double mean = 0.5 * static_cast<double>(r.in_system_end + r.in_system_mid);
  return 3.0 * std::sqrt(2.0 * std::max(mean, 1.0));
}

bool falls_behind(const ServingResult& r) {
  const double growth = static_cast<double>(r.in_system_end - r.in_system_mid);
  return r.backlog_growth_fraction > kMaxBacklogGrowth && growth > chance_growth(r);
}

double backlog_resolution(const ServingResult& r) {
  if (r.window_end_s <= r.window_start_s || (r.in_system_mid == 0 && r.in_system_end == 0 && r.arrivals_late == 0)) return 0.0;
  return std::max(kMaxBacklogGrowth, chance_growth(r) / static_cast<double>(std::max(r.arrivals_late, 1LL)));
}

namespace {

/** The series' points that overlap the window, each {index, its start in the window (seconds from the window's
 *  start)}: a point's average holds over its interval's part in the window (the whole interval but where pair merging
 *  left one straddling an edge). window_as_job and window_site_power_w take the same points. */
std::vector<std::pair<std::size_t, double>> window_points(const ServingResult& r) {
  std::vector<std::pair<std::size_t, double>> out;
  const auto t = r.series.find("t_s");
  if (t == r.series.end()) return out;
  for (std::size_t i = 0; i < t->second.size(); ++i) {
    const double a = t->second[i], b = i + 1 < t->second.size() ? t->second[i + 1] : a + r.series_last_interval_s;
    if (std::min(b, r.window_end_s) - std::max(a, r.window_start_s) <= 0.0) continue;
    out.emplace_back(i, std::max(a, r.window_start_s) - r.window_start_s);
  }
  return out;
}

}  // namespace

std::vector<std::vector<double>> window_site_power_w(const ServingResult& r) {
  std::vector<std::vector<double>> out(r.site_power_w.size());
  const auto points = window_points(r);
  for (std::size_t k = 0; k < r.site_power_w.size(); ++k)
    for (const auto& [i, t] : points)
      if (i < r.site_power_w[k].size()) out[k].push_back(r.site_power_w[k][i]);
  return out;
}

JobResult window_as_job(const ServingResult& r) {
  JobResult j;
  j.scenario_name = r.scenario_name;
  j.accelerator = r.accelerator;
  j.chips = r.chips;
  j.devices = r.devices;
  const double window = r.window_end_s - r.window_start_s;
  j.step_times_s = {window};
  j.step_time_s = window;
  j.steps = 1.0;
  j.train_time_s = window;
  j.sites = r.sites;
  const auto p = r.series.find("power_w");
  for (const auto& [i, t] : window_points(r))
    if (p != r.series.end() && i < p->second.size()) {
      j.power_t_s.push_back(t);
      j.power_w.push_back(p->second[i]);
    }
  j.peak_chip_power_w = r.peak_chip_power_w;
  j.power_convention = r.power_convention;
  j.compute_model = r.compute_model;
  j.compute_paths = r.compute_paths;
  j.algorithms = r.algorithms;
  j.sim_wall_s = r.sim_wall_s;
  return j;
}

double window_start_s(const scenario::ServingSpec& v) { return v.arrival.type == "offline" ? 0.0 : v.warmup_s; }

namespace {

/** SimGrid 3.32's time precision (its `surf/precision` configuration, "Numerical precision used when updating
 *  simulation times (in seconds)", default 1e-9 s in src/kernel/lmm/System.cpp; the engine does not change it, see
 *  fair_bottleneck_net.cpp): a queueing delay below it is the clock's rounding, not a wait, and counts as 0. */
constexpr double kClockPrecision_s = 1e-9;

/** The window a serving run is measured over. Offline (MLPerf's scenario: every request at once; or, with no
 *  duration_s, requests that all arrive at one instant after the warm-up, which have no arrival period to measure
 *  over): from the warm-up's end (0 for the offline arrival type) to the last completion (end_s infinite until
 *  then). Otherwise from the warm-up's end to the end of the arrival period: duration_s, or the last arrival when
 *  the request count ends the arrivals first. */
struct MeasuredWindow {
  bool offline = false;
  double start_s = 0.0;
  double end_s = 0.0;
  long long requests = 0;  ///< requests arriving in the window (all of them offline)
};

MeasuredWindow measured_window(const scenario::ServingSpec& v, const std::vector<workload::Request>& reqs) {
  MeasuredWindow w;
  const bool count_bound = v.requests > 0 && static_cast<long long>(reqs.size()) >= v.requests;
  const bool one_instant = !reqs.empty() && reqs.back().arrival_s <= reqs.front().arrival_s &&
                           reqs.front().arrival_s >= v.warmup_s && (count_bound || !(v.duration_s > 0.0));
  w.offline = v.arrival.type == "offline" || one_instant;
  w.start_s = window_start_s(v);
  w.end_s = w.offline ? std::numeric_limits<double>::infinity()
                      : (v.duration_s > 0.0 && !count_bound ? v.duration_s : reqs.empty() ? 0.0 : reqs.back().arrival_s);
  for (const auto& r : reqs)
    if (w.offline || r.arrival_s >= w.start_s) ++w.requests;
  return w;
}

/** The total length of the overlap with [from, to] of the n spans span(i) = {x, y}. */
template <typename Span>
double overlap_sum(std::size_t n, const Span& span, double from, double to) {
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto [x, y] = span(i);
    sum += std::max(0.0, std::min(y, to) - std::max(x, from));
  }
  return sum;
}

/** The average number of the n spans span(i) = {x, y} open over each interval [edges[j], edges[j + 1]) (increasing
 *  edges: the series' points and the end of the last one, whatever their lengths): each span's overlap with an
 *  interval, summed, over the interval's length. O(spans log bins + bins): a span's partial end intervals directly,
 *  the whole ones between them through a difference array. */
template <typename Span>
std::vector<double> bin_averages(std::size_t n, const Span& span, const std::vector<double>& edges) {
  if (edges.size() < 2) return {};
  const std::size_t bins = edges.size() - 1;
  std::vector<double> part(bins, 0.0), diff(bins + 1, 0.0);
  const auto nb = static_cast<long long>(bins);
  // The interval holding t: -1 before the first, nb from the last's end on.
  auto bin_of = [&](double t) { return static_cast<long long>(std::upper_bound(edges.begin(), edges.end(), t) - edges.begin()) - 1; };
  for (std::size_t i = 0; i < n; ++i) {
    const auto [x, y] = span(i);
    if (!(y > x)) continue;
    const long long kx = bin_of(x), ky = bin_of(y);
    if (ky < 0 || kx >= nb) continue;
    auto add = [&](long long j, double len) {
      if (j >= 0 && j < nb) part[static_cast<std::size_t>(j)] += len;
    };
    if (kx == ky) {
      add(kx, y - x);
      continue;
    }
    if (kx >= 0) add(kx, edges[static_cast<std::size_t>(kx) + 1] - x);
    if (ky < nb) add(ky, y - edges[static_cast<std::size_t>(ky)]);
    const long long lo = std::max(kx + 1, 0LL), hi = std::min(ky, nb);  // whole intervals [lo, hi)
    if (lo < hi) {
      diff[static_cast<std::size_t>(lo)] += 1.0;
      diff[static_cast<std::size_t>(hi)] -= 1.0;
    }
  }
  std::vector<double> out(bins);
  double open = 0.0;
  for (std::size_t j = 0; j < bins; ++j) {
    open += diff[j];
    const double len = edges[j + 1] - edges[j];
    out[j] = len > 0.0 ? part[j] / len + open : 0.0;
  }
  return out;
}

/** Refuses a workload whose measured window holds no request (every metric would be of nothing). */
void check_window(const scenario::Scenario& s, const MeasuredWindow& w, const std::vector<workload::Request>& reqs) {
  if (w.offline || (w.end_s > w.start_s && w.requests > 0)) return;
  const double last = reqs.empty() ? 0.0 : reqs.back().arrival_s;
  throw InputError(s.source_file, 0, 0, "serving.warmup_s",
                   fmt::format("no request arrives in the measured window ({} s of warm-up; the {} request{} arrive{} from {} "
                               "to {} s{}): nothing to measure; shorten the warm-up or lengthen the arrivals",
                               s.serving->warmup_s, reqs.size(), reqs.size() == 1 ? "" : "s", reqs.size() == 1 ? "s" : "",
                               reqs.empty() ? 0.0 : reqs.front().arrival_s, last,
                               s.serving->duration_s > 0.0 ? fmt::format(", serving.duration_s {} s", s.serving->duration_s) : ""));
}

/** Least load of a chip replaying a memoised stretch (replay_span): every chip of the stretch carries a load in its
 *  parallel task; one with nothing to compute draws 1e-9 of the active-to-full span above active power (negligible).
 *  Outside any task a chip draws active power as well: a deployment holds its chips in the job's power state
 *  throughout (Simulator::hold_job). */
constexpr double kBackgroundLoad = 1e-9;
/** ITL histogram: log-spaced bins of 0.1 % from 1 us (resolution of the reported percentiles). */
constexpr double kItlBinRatio = 1.001;
constexpr double kItlMin_s = 1e-6;
constexpr std::size_t kItlBins = 25000;  // up to 1e-6 x 1.001^25000 ~ 7e4 s
/** Series are sampled at a fixed interval, doubled (pairs merged) whenever they exceed this many points. */
constexpr std::size_t kMaxSeriesPoints = 800;

/** Rounds a positive count to `per_octave` geometric buckets per doubling (exact below 2 x per_octave). */
double bucket(double x, int per_octave) {
  if (per_octave <= 0 || x <= 2.0 * per_octave) return std::round(x * 1e6) / 1e6;
  const double b = std::round(std::log2(x) * per_octave);
  return std::round(std::exp2(b / per_octave));
}

LatencyStats stats_of(std::vector<double>& v) {
  LatencyStats s;
  s.count = static_cast<long long>(v.size());
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.mean_s = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  auto q = [&](double p) {  // nearest rank
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
  };
  s.p50_s = q(0.50);
  s.p90_s = q(0.90);
  s.p95_s = q(0.95);
  s.p99_s = q(0.99);
  s.max_s = v.back();
  return s;
}

std::vector<double> cdf_of(const std::vector<double>& sorted) {
  std::vector<double> out;
  if (sorted.empty()) return out;
  for (int p = 0; p <= 100; ++p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    out.push_back(sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)]);
  }
  return out;
}

/** A sequence admitted to a replica, with the per-request state the per-token loop touches kept inline
 *  (contiguous in the replica's batch; written back to the per-request arrays when it leaves). */
struct Seq {
  int id = 0;
  int ctx = 0;           ///< tokens whose keys and values are cached here
  int prefill_left = 0;  ///< tokens to compute before its next token (prompt, or prompt + generated after preemption)
  int step = 0;          ///< tokens it computes in the iteration being formed (0: not in it)
  int generated = 0;     ///< tokens produced so far
  int output = 0;        ///< tokens to produce
  bool measured = false; ///< arrived in the measurement window
  long long blocks = 0;  ///< KV blocks held
  double last_token_s = 0.0;
};

struct Replica {
  int index = 0;  ///< global replica index (pool order, then replica order)
  int pool = 0;
  int site = 0;
  int first_device = 0;
  std::vector<std::vector<int>> stage_chips;  ///< global chip ids of each pipeline stage
  std::vector<int> chips;                      ///< all chips of the replica
  std::deque<int> waiting;                     ///< request ids, first come first served
  std::vector<Seq> running;
  long long blocks_total = 0;
  long long blocks_used = 0;
  int transfers_in_flight = 0;  ///< KV caches on their way to this (decode) replica
  double busy_until = -1.0;     ///< when its last iteration ended (energy bookkeeping across waits between iterations)
  std::vector<int> own;         ///< fast path: the requests routed to it, in arrival order
  std::size_t cursor = 0;       ///< fast path: the next of `own` to arrive
  sg4::MutexPtr mutex;
  sg4::ConditionVariablePtr cv;
  // Static batching (FasterTransformer): the batch in flight.
  bool static_active = false;
  int static_prompt = 0, static_steps = 0, static_done_steps = 0;
  // KV use over time: block-seconds held up to kv_t_s (brought up to date before every change of blocks_used).
  double kv_block_s = 0.0, kv_t_s = 0.0;
  /** A stretch of constant KV use: from t_s, with block_s block-seconds held before it, `blocks` held over it. */
  struct KvStretch {
    double t_s = 0.0, block_s = 0.0, blocks = 0.0;
  };
  /** The stretches since the simulated clock while the replica works ahead of it (fast_scheduler: up to a whole
   *  stretch of iterations past a sample or a window edge), so that the block-seconds up to any time from the clock
   *  on are exact, not those up to kv_t_s (which made the window's mean KV use depend on the sampling interval). */
  std::vector<KvStretch> kv_ahead;
  long long outstanding() const { return static_cast<long long>(waiting.size() + running.size()) + transfers_in_flight; }
  void kv_advance(double now) {
    const double clock = sg4::Engine::get_clock();
    if (kv_t_s <= clock) kv_ahead.clear();  // every stretch recorded ended by the clock: no query reaches back to it
    if (now > kv_t_s) {
      if (now > clock) kv_ahead.push_back({kv_t_s, kv_block_s, static_cast<double>(blocks_used)});
      kv_block_s += static_cast<double>(blocks_used) * (now - kv_t_s);
      kv_t_s = now;
    }
  }
  /** Block-seconds held from 0 to t, for t from the clock on (also when the replica has worked ahead of t). */
  double kv_area(double t) const {
    if (t >= kv_t_s || kv_ahead.empty()) return kv_block_s + static_cast<double>(blocks_used) * (t - kv_t_s);
    // The last stretch starting at or before t (the first, for a t a rounding before it).
    auto it = std::upper_bound(kv_ahead.begin(), kv_ahead.end(), t, [](double x, const KvStretch& k) { return x < k.t_s; });
    const KvStretch& k = it == kv_ahead.begin() ? *it : *std::prev(it);
    return k.block_s + k.blocks * (t - k.t_s);
  }
};

/** Memoised cost of one layer of a kind at a token count, per chip of a pipeline stage. */
struct LayerCost {
  std::vector<double> busy_s;   ///< per stage chip: time computing
  std::vector<double> extra_j;  ///< per stage chip: energy above active power while computing (power curve)
  double comm_s = 0.0;                  ///< collectives (simulated once on SimGrid), incl. the imbalance wait
  double model_flops = 0.0;
  std::vector<std::array<double, system::kLinkClassCount>> site_link_bytes;
};

class Driver {
 public:
  Driver(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options);
  ServingResult run();

 private:
  // ---- set-up ----
  void build_replicas();
  // ---- actors ----
  void arrivals();
  void scheduler(Replica& r);
  void monitor();
  // ---- scheduling ----
  int route(int pool, int request);
  void enqueue(Replica& r, int request);
  bool form_batch(Replica& r, IterationShape& shape, double now);
  bool form_static(Replica& r, IterationShape& shape, double now);
  Seq admit(int id, int ctx, int prefill_left, long long blocks) const;
  void preempt(Replica& r, std::size_t slot, double now);
  void apply(Replica& r, double now);
  void token(Replica& r, Seq& q, double now, bool window_now);
  void finish_request(Replica& r, int id, double now);
  void hand_off(Replica& r, int id);
  // ---- costs ----
  double execute(Replica& r, const IterationShape& shape);
  const LayerCost& layer_cost(Replica& r, int stage, LayerKind kind, double tokens, bool& simulated_now);
  const DeviceWork& attention_cost(const Replica& r, const IterationShape& shape);
  const DeviceWork& ends_cost(const Replica& r, int stage, const IterationShape& shape);
  /** Time of the activations' send from `stage` to the next; simulated in detail the first time (then
   *  `simulated_now`: the time has already passed), replayed afterwards. */
  double pipeline_send(Replica& r, int stage, double tokens, bool& simulated_now);
  /** Replays `busy` compute then `comm_s` on `chips`, with `extra_j` above active power per chip. */
  void replay(const std::vector<int>& chips, const std::vector<double>& busy, const std::vector<double>& extra_j, double comm_s);
  /** One parallel task of `total_s` on `chips` whose energy on each chip is active power over total_s plus its
   *  `extra_j` (the power curve above active while it computed). */
  void replay_span(const std::vector<int>& chips, const std::vector<double>& extra_j, double total_s);
  /** Fast path (see fast_scheduler): the cost of an iteration from the memo alone; false when a layer shape
   *  has not been simulated yet. Adds the per-chip compute times to `busy` and energies above active to
   *  `extra_j`, and returns the duration in `time_s`. */
  bool cached_cost(Replica& r, const IterationShape& shape, double t0, std::vector<double>& busy, std::vector<double>& extra_j,
                   double& time_s);
  /** Power above active (W) of a chip running `w`: the power curve at w's achieved utilisation. */
  double extra_w(const workload::KernelWork& w) const {
    return power_.compute_w(w.flop_utilisation(), w.hbm_utilisation()) - power_.active_w;
  }
  /** Energy above active power of a chip running `w` (both regimes). */
  double extra_j(const DeviceWork& w) const {
    return w.compute_bound.time_s * extra_w(w.compute_bound) + w.memory_bound.time_s * extra_w(w.memory_bound);
  }
  void fast_scheduler(Replica& r);

 public:
  /** Batch formation (serving.scheduler.type) and routing (serving.router.type) policies, by scenario name. */
  using FormFn = bool (Driver::*)(Replica&, IterationShape&, double);
  using LoadFn = double (Driver::*)(const Replica&) const;  ///< nullptr: round-robin
  static const std::map<std::string, FormFn>& schedulers();
  static const std::map<std::string, LoadFn>& routers();

 private:
  bool form(Replica& r, IterationShape& shape, double now) { return (this->*form_)(r, shape, now); }
  double load_outstanding(const Replica& r) const { return static_cast<double>(r.outstanding()); }
  double load_kv(const Replica& r) const;
  FormFn form_ = nullptr;
  LoadFn load_ = nullptr;
  std::vector<double> per_chip(const std::vector<int>& stage_devices_global, const std::vector<DeviceWork>& w, bool memory) const;
  // ---- measurement ----
  bool in_window(double t) const { return t >= window_start_ && t <= window_end_ + 1e-12; }
  std::vector<double> site_energy() const;
  void snapshot_window_end();
  void all_done();

  const scenario::Scenario& s_;
  const scenario::ServingSpec& v_;
  const catalog::Catalog& catalog_;
  const catalog::AcceleratorSpec& accel_;
  EngineOptions opt_;
  std::unique_ptr<perf::ComputeTimeModel> compute_;
  std::unique_ptr<workload::DeviceMesh> mesh_;
  std::unique_ptr<system::Topology> topo_;
  platform::PowerStates power_;
  std::unique_ptr<Simulator> sim_;
  std::vector<std::unique_ptr<workload::IterationModel>> models_;  // per pool
  std::vector<workload::ReplicaMemory> memory_;                    // per pool
  std::vector<std::vector<int>> pool_replicas_;                    // per pool: replica indices
  std::vector<Replica> replicas_;
  std::vector<int> rr_next_;  // round-robin cursor per pool
  int prefill_pool_ = -1, decode_pool_ = -1, colocated_pool_ = -1;

  std::vector<workload::Request> requests_;
  std::vector<double> first_token_, end_, scheduled_, last_token_;
  std::vector<int> generated_, preemptions_, first_replica_;
  std::vector<double> requeued_at_;                    ///< when a preempted request went back to the queue (-1: not)
  std::vector<std::pair<double, double>> requeue_spans_;  ///< preempted requests' waits for re-admission
  long long remaining_ = 0;
  bool done_ = false;
  bool fast_ = false;  ///< replicas work ahead of the clock (fast_scheduler)
  double next_sample_s_ = std::numeric_limits<double>::infinity();  ///< the monitor's next sample time
  std::exception_ptr failure_;

  double window_start_ = 0.0, window_end_ = 0.0;
  bool offline_ = false;
  std::vector<double> energy_at_start_, energy_at_end_;
  double kv_at_start_ = 0.0, kv_at_end_ = 0.0;  ///< block-seconds held by all replicas from 0 to the window's edges
  double series_until_ = 0.0;                   ///< the end of the last sampled interval
  std::vector<double> series_energy_;           ///< site joules at series_until_
  double series_kv_ = 0.0;                      ///< block-seconds at series_until_
  double series_first_interval_ = 0.0;          ///< open loop: the length of the first, shorter, point from 0 (0: none)
  double series_last_interval_ = 0.0;           ///< the length of the last, shorter, point to the run's end (0: none)
  /** Appends the point [t, t + dt) to the series, its averages from the site joules `e` and block-seconds `kv` at its
   *  end, `end` (t + dt, as the grid computes it), against those at series_until_; then moves series_until_ there. */
  void push_point(double t, double dt, double end, const std::vector<double>& e, double kv);
  /** Site joules and block-seconds when the last request finished (run_end_s_), for the series' last point. */
  void snapshot_run_end();
  double run_end_s_ = -1.0;
  std::vector<double> energy_at_run_end_;
  double kv_at_run_end_ = 0.0;
  double kv_area(double t) const;
  double kv_blocks_total() const;
  bool end_taken_ = false;

  std::map<std::tuple<int, int, int, double>, LayerCost> layers_;
  std::map<std::tuple<int, double, double, double, double>, DeviceWork> attention_;
  std::map<std::tuple<int, int, double, double>, DeviceWork> ends_;
  std::map<std::tuple<int, int, double>, double> sends_;

  // measurement
  std::vector<double> itl_hist_;
  double itl_last_gap_ = -1.0;
  std::size_t itl_last_bin_ = 0;

  double itl_sum_ = 0.0;
  long long itl_count_ = 0;
  double itl_max_ = 0.0;
  double input_tokens_ = 0.0, output_tokens_ = 0.0, model_flops_ = 0.0, kv_transfer_bytes_ = 0.0;
  double output_tokens_measured_ = 0.0;  ///< generated in the window by the measured requests
  long long preemption_count_ = 0, iterations_ = 0, layer_sims_ = 0, layer_replays_ = 0;
  std::vector<std::array<double, system::kLinkClassCount>> site_link_bytes_;
  std::vector<double> site_tokens_;
  std::map<std::string, std::string> algorithms_;
  std::map<std::string, std::vector<double>> series_;
  double interval_ = 0.0;
};

Driver::Driver(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options)
    : s_(s), v_(*s.serving), catalog_(catalog), accel_(catalog.accelerator(s.cluster.accelerator)), opt_(options) {
  auto names = [](const auto& m) {
    std::vector<std::string> v;
    for (const auto& [k, f] : m) v.push_back(k);
    return text::join(v);
  };
  const auto sched = schedulers().find(v_.scheduler);
  if (sched == schedulers().end())
    throw Error(fmt::format("unknown serving scheduler '{}'; valid: {}", v_.scheduler, names(schedulers())));
  form_ = sched->second;
  const auto router = routers().find(v_.router);
  if (router == routers().end()) throw Error(fmt::format("unknown serving router '{}'; valid: {}", v_.router, names(routers())));
  load_ = router->second;
  const perf::EfficiencyTable eff = perf::EfficiencyTable::load(catalog.profiles_dir());
  compute_ = perf::with_power_limit(perf::make_compute_model(accel_, eff, catalog.profiles_dir()), accel_, s.cluster.power_limit_w);
  int devices = 0;
  for (std::size_t p = 0; p < v_.pools.size(); ++p) {
    const auto& pool = v_.pools[p];
    devices += pool.replicas * pool.devices_per_replica();
    memory_.push_back(workload::replica_memory(s, pool, accel_));
    models_.push_back(std::make_unique<workload::IterationModel>(s, pool, accel_, *compute_));
    if (pool.role == scenario::PoolRole::prefill) prefill_pool_ = static_cast<int>(p);
    else if (pool.role == scenario::PoolRole::decode) decode_pool_ = static_cast<int>(p);
    else colocated_pool_ = static_cast<int>(p);
  }
  // A flat mesh: device d is on chip d / devices_per_chip (the system layer only needs that mapping).
  scenario::ParallelismSpec flat;
  flat.data = devices;
  mesh_ = std::make_unique<workload::DeviceMesh>(flat, accel_.devices_per_chip);
  const auto sites = workload::replica_sites(s);
  std::vector<int> chip_site(static_cast<std::size_t>(mesh_->chips()), 0);
  int dev = 0;
  for (std::size_t p = 0; p < v_.pools.size(); ++p)
    for (int r = 0; r < v_.pools[p].replicas; ++r)
      for (int k = 0; k < v_.pools[p].devices_per_replica(); ++k, ++dev)
        chip_site[static_cast<std::size_t>(mesh_->chip_of(dev))] = sites[p][static_cast<std::size_t>(r)];
  topo_ = std::make_unique<system::Topology>(system::Topology::build_for_sites(s, accel_, accel_.devices_per_chip, chip_site));
  power_ = platform::power_states(accel_);
  int replicas = 0;
  for (const auto& pool : v_.pools) replicas += pool.replicas;
  opt_.pacers = std::max(opt_.pacers, 4 * replicas + 64);
  sim_ = std::make_unique<Simulator>(*topo_, accel_, power_, *mesh_, opt_);
  site_link_bytes_.assign(topo_->sites().size(), {});
  site_tokens_.assign(topo_->sites().size(), 0.0);
  build_replicas();

  requests_ = workload::generate_requests(s);
  const std::size_t n = requests_.size();
  first_token_.assign(n, -1.0);
  end_.assign(n, -1.0);
  scheduled_.assign(n, -1.0);
  last_token_.assign(n, 0.0);
  generated_.assign(n, 0);
  preemptions_.assign(n, 0);
  requeued_at_.assign(n, -1.0);
  first_replica_.assign(n, -1);
  remaining_ = static_cast<long long>(n);
  itl_hist_.assign(kItlBins, 0.0);
  const MeasuredWindow w = measured_window(v_, requests_);
  check_window(s_, w, requests_);
  offline_ = w.offline;
  window_start_ = w.start_s;
  window_end_ = w.end_s;
  interval_ = v_.sample_interval_s > 0.0 ? v_.sample_interval_s : offline_ ? 0.01 : (window_end_ - window_start_) / 400.0;
  if (!offline_ && v_.sample_interval_s > 0.0) {
    // The window a whole number of intervals (the series then integrates to the window's figures): the asked-for
    // interval, shortened to divide it.
    const double window = window_end_ - window_start_;
    interval_ = window / std::max(1.0, std::ceil(window / v_.sample_interval_s - 1e-9));
  }
  // The fast path needs routing that no replica's state can change (round-robin, or one replica) and one pool of
  // single-stage replicas.
  fast_ = colocated_pool_ >= 0 && v_.pools.size() == 1 && v_.pools[0].pipeline == 1 &&
          (load_ == nullptr || v_.pools[0].replicas == 1) && opt_.memoize && opt_.serving_fast_path;
  if (fast_) {
    const auto& idx = pool_replicas_[static_cast<std::size_t>(colocated_pool_)];
    for (std::size_t i = 0; i < requests_.size(); ++i)
      replicas_[static_cast<std::size_t>(idx[i % idx.size()])].own.push_back(static_cast<int>(i));
  }
}

void Driver::build_replicas() {
  int dev = 0;
  for (std::size_t p = 0; p < v_.pools.size(); ++p) {
    const auto& pool = v_.pools[p];
    std::vector<int> idx;
    const auto sites = workload::replica_sites(s_);
    for (int r = 0; r < pool.replicas; ++r) {
      Replica rep;
      rep.index = static_cast<int>(replicas_.size());
      rep.pool = static_cast<int>(p);
      rep.site = sites[p][static_cast<std::size_t>(r)];
      rep.first_device = dev;
      for (int st = 0; st < pool.pipeline; ++st) {
        std::vector<int> chips;
        for (int local : models_[p]->stage_devices(st)) {
          const int c = mesh_->chip_of(dev + local);
          if (chips.empty() || chips.back() != c) chips.push_back(c);
        }
        rep.stage_chips.push_back(chips);
        rep.chips.insert(rep.chips.end(), chips.begin(), chips.end());
      }
      rep.blocks_total = memory_[p].kv_blocks;
      rep.mutex = sg4::Mutex::create();
      rep.cv = sg4::ConditionVariable::create();
      dev += pool.devices_per_replica();
      idx.push_back(rep.index);
      replicas_.push_back(std::move(rep));
    }
    pool_replicas_.push_back(std::move(idx));
  }
  rr_next_.assign(v_.pools.size(), 0);
}

std::vector<double> Driver::site_energy() const {
  std::vector<double> e(topo_->sites().size(), 0.0);
  const auto& chips = sim_->platform().chips();
  for (std::size_t c = 0; c < chips.size(); ++c)
    e[static_cast<std::size_t>(topo_->site_of(static_cast<int>(c)))] += sg_host_get_consumed_energy(chips[c]);
  return e;
}

// ---- actors -------------------------------------------------------------------------------------

void Driver::arrivals() {
  const int entry = colocated_pool_ >= 0 ? colocated_pool_ : prefill_pool_;
  std::vector<Replica*> woken;
  for (std::size_t i = 0; i < requests_.size();) {
    if (done_) return;
    const double t = requests_[i].arrival_s;
    if (t > sg4::Engine::get_clock()) sg4::this_actor::sleep_until(t);
    // Every request arriving at this instant is routed and queued before any replica is woken: a notification is
    // a simcall, after which a woken replica may form its batch before this actor queues the rest of the instant's
    // arrivals, and requests that arrived together would wait an iteration apart (as the fast path never does).
    const double now = std::max(t, sg4::Engine::get_clock());
    woken.clear();
    for (; i < requests_.size() && requests_[i].arrival_s <= now; ++i) {
      Replica& r = replicas_[static_cast<std::size_t>(route(entry, static_cast<int>(i)))];
      r.waiting.push_back(static_cast<int>(i));
      if (std::find(woken.begin(), woken.end(), &r) == woken.end()) woken.push_back(&r);
    }
    for (Replica* r : woken) r->cv->notify_all();
  }
}

const std::map<std::string, Driver::FormFn>& Driver::schedulers() {
  static const std::map<std::string, FormFn> m = {
      {"static", &Driver::form_static},           // FasterTransformer request-level batches
      {"continuous", &Driver::form_batch},        // Orca / vLLM / TensorRT-LLM iteration-level batching
      {"chunked_prefill", &Driver::form_batch},   // Sarathi-Serve (form_batch reads the chunk budget)
  };
  return m;
}

const std::map<std::string, Driver::LoadFn>& Driver::routers() {
  static const std::map<std::string, LoadFn> m = {
      {"round_robin", nullptr},
      {"least_outstanding", &Driver::load_outstanding},
      {"least_kv", &Driver::load_kv},
  };
  return m;
}

double Driver::load_kv(const Replica& r) const {
  // Blocks held plus those the queued prompts will need, as a fraction of the replica's cache.
  double want = static_cast<double>(r.blocks_used);
  for (int q : r.waiting) want += std::ceil(static_cast<double>(requests_[static_cast<std::size_t>(q)].prompt_tokens) / v_.kv_block_tokens);
  return r.blocks_total > 0 ? want / static_cast<double>(r.blocks_total) : want;
}

int Driver::route(int pool, int request) {
  const auto& idx = pool_replicas_[static_cast<std::size_t>(pool)];
  if (load_ == nullptr || idx.size() == 1)
    return idx[static_cast<std::size_t>(rr_next_[static_cast<std::size_t>(pool)]++ % static_cast<int>(idx.size()))];
  int best = idx.front();
  double best_load = std::numeric_limits<double>::infinity();
  for (int i : idx) {
    const double load = (this->*load_)(replicas_[static_cast<std::size_t>(i)]);
    if (load < best_load) {
      best_load = load;
      best = i;
    }
  }
  (void)request;
  return best;
}

void Driver::enqueue(Replica& r, int request) {
  r.waiting.push_back(request);
  r.cv->notify_all();
}

void Driver::scheduler(Replica& r) {
  IterationShape shape;
  while (true) {
    {
      std::unique_lock<sg4::Mutex> lock(*r.mutex);
      while (!done_ && r.waiting.empty() && r.running.empty() && !r.static_active) r.cv->wait(lock);
    }
    if (done_ && r.waiting.empty() && r.running.empty()) return;
    shape = IterationShape{};
    const bool any = form(r, shape, sg4::Engine::get_clock());
    if (!any) {
      // Nothing can run now (KV cache full of transfers not yet admitted cannot happen; a prompt waiting for
      // blocks that running sequences will free is served after them): wait for a change.
      if (r.running.empty() && !r.static_active)
        throw Error(fmt::format("serving: replica {} cannot admit request {} ({} prompt tokens) with {} free KV blocks of {} "
                                "tokens and nothing running (internal error: feasibility was checked)",
                                r.index, r.waiting.front(), requests_[static_cast<std::size_t>(r.waiting.front())].prompt_tokens,
                                r.blocks_total - r.blocks_used, v_.kv_block_tokens));
      std::unique_lock<sg4::Mutex> lock(*r.mutex);
      r.cv->wait(lock);
      continue;
    }
    execute(r, shape);
    ++iterations_;
    apply(r, sg4::Engine::get_clock());
  }
}

/** The key under which the monitor keeps site k's power series among its own (ServingResult::site_power_w). */
std::string site_power_key(std::size_t k) { return fmt::format("site_power_w.{}", k); }

void Driver::push_point(double t, double dt, double end, const std::vector<double>& e, double kv) {
  auto total = [](const std::vector<double>& x) { return std::accumulate(x.begin(), x.end(), 0.0); };
  const double cap = kv_blocks_total();
  // Queue and batch series are integrated from the requests' own times after the run (run()).
  series_["t_s"].push_back(t);
  series_["queue_requests"].push_back(0.0);
  series_["batch_sequences"].push_back(0.0);
  series_["kv_use"].push_back(cap > 0 ? (kv - series_kv_) / (cap * dt) : 0.0);
  series_["power_w"].push_back((total(e) - total(series_energy_)) / dt);
  for (std::size_t k = 0; k < e.size(); ++k)
    series_[site_power_key(k)].push_back((e[k] - (k < series_energy_.size() ? series_energy_[k] : 0.0)) / dt);
  series_until_ = end;
  series_energy_ = e;
  series_kv_ = kv;
}

void Driver::snapshot_run_end() {
  run_end_s_ = sg4::Engine::get_clock();
  energy_at_run_end_ = site_energy();
  kv_at_run_end_ = kv_area(run_end_s_);
}

void Driver::monitor() {
  // Samples on a grid anchored at the window's start, so that the window is a whole number of intervals and
  // the power series integrates exactly to the window's joules. Open-loop runs keep the interval (a long
  // drain adds points); offline runs, whose end is unknown, double it (merging pairs) past kMaxSeriesPoints.
  // The series cover the whole run: where the grid's first point comes after 0 (a warm-up that is not a whole
  // number of intervals), a shorter first point covers [0, t0); run() adds a shorter last one to the run's end.
  const double t0 = offline_ ? 0.0 : window_start_ - std::floor(window_start_ / interval_) * interval_;
  series_until_ = 0.0;
  series_energy_ = site_energy();
  series_kv_ = kv_area(0.0);
  if (t0 > kClockPrecision_s) {
    next_sample_s_ = t0;
    sg4::this_actor::sleep_until(t0);
    push_point(0.0, t0, t0, site_energy(), kv_area(t0));
    series_first_interval_ = t0;
  } else if (t0 > 0.0) {  // the grid's rounding: no point of its own
    sg4::this_actor::sleep_until(t0);
    series_until_ = t0;
    series_energy_ = site_energy();
    series_kv_ = kv_area(t0);
  }
  bool start_taken = false;
  auto close_to = [&](double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); };
  auto take_start = [&](const std::vector<double>& e) {
    energy_at_start_ = e;
    kv_at_start_ = kv_area(window_start_);
    start_taken = true;
  };
  if (close_to(t0, window_start_)) take_start(series_energy_);
  // The first point on the grid (after the shorter one from 0, if any).
  const std::size_t head = series_first_interval_ > 0.0 ? 1 : 0;
  long long k = 0;
  double base = t0;
  // Open-loop runs sample to the window's end even when the last request finished before it: the window's
  // stretch without requests (the chips waiting in the job, at active power) is part of its joules and of its power
  // series (run() keeps the simulation alive until then).
  while (!done_ || (!offline_ && !end_taken_)) {
    const double t = base + static_cast<double>(k) * interval_, next = base + static_cast<double>(k + 1) * interval_;
    if (!start_taken && window_start_ < next && !close_to(window_start_, next)) {
      sg4::this_actor::sleep_until(window_start_);
      take_start(site_energy());
      if (done_) break;
    }
    if (!offline_ && !end_taken_ && window_end_ < next && !close_to(window_end_, next)) {
      sg4::this_actor::sleep_until(window_end_);
      snapshot_window_end();
      if (done_) break;
    }
    next_sample_s_ = next;
    sg4::this_actor::sleep_until(next);
    const std::vector<double> e = site_energy();
    if (!start_taken && close_to(next, window_start_)) take_start(e);
    if (!offline_ && !end_taken_ && close_to(next, window_end_)) snapshot_window_end();
    push_point(t, interval_, next, e, kv_area(next));
    ++k;
    const std::size_t points = series_["t_s"].size() - head;
    const bool merge = points >= (offline_ ? kMaxSeriesPoints : 100 * kMaxSeriesPoints);
    if (merge && points % 2 == 0) {
      // Merge pairs of grid points (the shorter first one stays): the interval doubles; every average stays the
      // average over its merged interval.
      for (auto& [name, v] : series_) {
        std::vector<double> merged(v.begin(), v.begin() + static_cast<long>(head));
        for (std::size_t i = head; i + 1 < v.size(); i += 2) merged.push_back(name == "t_s" ? v[i] : 0.5 * (v[i] + v[i + 1]));
        v = std::move(merged);
      }
      base = series_["t_s"][head];
      interval_ *= 2.0;
      k = static_cast<long long>(series_["t_s"].size() - head);
    }
  }
}

void Driver::snapshot_window_end() {
  if (end_taken_) return;
  energy_at_end_ = site_energy();
  end_taken_ = true;
  if (offline_) window_end_ = sg4::Engine::get_clock();
  kv_at_end_ = kv_area(window_end_);
}

double Driver::kv_area(double t) const {
  double a = 0.0;
  for (const Replica& r : replicas_) a += r.kv_area(t);
  return a;
}

double Driver::kv_blocks_total() const {
  double cap = 0.0;
  for (const Replica& r : replicas_) cap += static_cast<double>(r.blocks_total);
  return cap;
}

void Driver::all_done() {
  done_ = true;
  for (Replica& r : replicas_) r.cv->notify_all();
}

// ---- scheduling ---------------------------------------------------------------------------------

Seq Driver::admit(int id, int ctx, int prefill_left, long long blocks) const {
  const auto i = static_cast<std::size_t>(id);
  Seq q;
  q.id = id;
  q.ctx = ctx;
  q.prefill_left = prefill_left;
  q.blocks = blocks;
  q.generated = generated_[i];
  q.output = requests_[i].output_tokens;
  q.measured = offline_ || requests_[i].arrival_s >= window_start_;
  q.last_token_s = last_token_[i];
  return q;
}

void Driver::preempt(Replica& r, std::size_t slot, double now) {
  Seq& q = r.running[slot];
  r.blocks_used -= q.blocks;
  const auto i = static_cast<std::size_t>(q.id);
  generated_[i] = q.generated;
  last_token_[i] = q.last_token_s;
  ++preemptions_[i];
  ++preemption_count_;
  requeued_at_[i] = now;
  // vLLM's recomputation: the sequence goes back to the head of the queue; its cache is rebuilt from the
  // prompt and the tokens generated so far.
  r.waiting.push_front(q.id);
  r.running.erase(r.running.begin() + static_cast<long>(slot));
}

bool Driver::form_batch(Replica& r, IterationShape& shape, double now) {
  r.kv_advance(now);
  const bool chunked = v_.scheduler == "chunked_prefill";
  // Both limits hold: a chunked iteration's budget is the smaller of the chunk and the iteration's token limit.
  long long budget = chunked ? std::min<long long>(v_.chunk_tokens, v_.max_batched_tokens) : v_.max_batched_tokens;
  const long long bt = v_.kv_block_tokens;
  bool any = false;
  auto want_prefill = [&] {
    if (r.waiting.empty() || static_cast<int>(r.running.size()) >= v_.max_sequences) return false;
    const int id = r.waiting.front();
    const auto& q = requests_[static_cast<std::size_t>(id)];
    const long long need = (static_cast<long long>(q.prompt_tokens) + generated_[static_cast<std::size_t>(id)] + bt - 1) / bt;
    return r.blocks_total - r.blocks_used >= need;
  };
  const bool prefill_only = v_.separate_prefill && !chunked && want_prefill();
  // 1. Decodes (one token each) and, with chunking, prompts still in progress. A decoding sequence needs room
  //    for one more token: when the cache is full, the most recently admitted sequences are preempted (vLLM).
  for (std::size_t i = 0; i < r.running.size(); ++i) {
    r.running[i].step = 0;
    if (budget <= 0) continue;
    if (r.running[i].prefill_left == 0) {
      if (prefill_only) continue;
      const long long need = (r.running[i].ctx + 1 + bt - 1) / bt - r.running[i].blocks;
      if (need > 0) {
        bool self = false;
        while (r.blocks_total - r.blocks_used < need) {
          const std::size_t victim = r.running.size() - 1;
          self = victim == i;
          preempt(r, victim, now);
          if (self) break;
        }
        if (self) break;  // it preempted itself: nothing after it is left
        r.running[i].blocks += need;
        r.blocks_used += need;
      }
      Seq& d = r.running[i];
      d.step = 1;
      shape.decode_seqs += 1.0;
      shape.decode_context += d.ctx + 1.0;
      shape.sampled += 1.0;
      --budget;
      any = true;
    } else if (chunked) {
      Seq& q = r.running[i];
      const int c = static_cast<int>(std::min<long long>(q.prefill_left, budget));
      q.step = c;
      shape.prefill_tokens += c;
      shape.prefill_pairs += c * (q.ctx + (c + 1) / 2.0);
      if (c == q.prefill_left) shape.sampled += 1.0;
      budget -= c;
      any = true;
    }
  }
  // 2. New prompts (or preempted sequences to recompute), first come first served.
  while (!r.waiting.empty() && budget > 0 && static_cast<int>(r.running.size()) < v_.max_sequences) {
    if (v_.separate_prefill && !chunked && !prefill_only && any) break;
    const int id = r.waiting.front();
    const auto i = static_cast<std::size_t>(id);
    const auto& rq = requests_[i];
    const bool transferred = decode_pool_ >= 0 && r.pool == decode_pool_ && generated_[i] == 1 && preemptions_[i] == 0 &&
                             first_replica_[i] != r.index;
    if (transferred) {
      // A KV cache that arrived from a prefill replica: admitted with its prompt's keys and values cached.
      const long long need = (rq.prompt_tokens + 1 + bt - 1) / bt;
      if (r.blocks_total - r.blocks_used < need) break;
      r.waiting.pop_front();
      r.running.push_back(admit(id, rq.prompt_tokens, 0, need));
      r.blocks_used += need;
      Seq& q = r.running.back();
      q.step = 1;
      shape.decode_seqs += 1.0;
      shape.decode_context += q.ctx + 1.0;
      shape.sampled += 1.0;
      --budget;
      any = true;
      continue;
    }
    const int tokens = rq.prompt_tokens + generated_[i];
    if (!chunked && tokens > budget && any) break;
    const long long need = (tokens + bt - 1) / bt;
    if (r.blocks_total - r.blocks_used < need) break;
    r.waiting.pop_front();
    if (scheduled_[i] < 0.0) scheduled_[i] = now;
    if (requeued_at_[i] >= 0.0) {
      requeue_spans_.emplace_back(requeued_at_[i], now);
      requeued_at_[i] = -1.0;
    }
    r.running.push_back(admit(id, 0, tokens, need));
    r.blocks_used += need;
    const int c = chunked ? static_cast<int>(std::min<long long>(tokens, budget)) : tokens;
    r.running.back().step = c;
    shape.prefill_tokens += c;
    shape.prefill_pairs += c * ((c + 1) / 2.0);
    if (c == tokens) shape.sampled += 1.0;
    budget -= c;
    any = true;
  }
  return any;
}

bool Driver::form_static(Replica& r, IterationShape& shape, double now) {
  r.kv_advance(now);
  const long long bt = v_.kv_block_tokens;
  // Disaggregated: a prefill pool's batch holds its prompts only and hands every sequence on after its first token
  // (apply()); a decode pool's batch is of sequences whose prompts' KV caches arrived from a prefill replica, so it
  // starts with a decode step.
  const bool prefill_pool = prefill_pool_ >= 0 && r.pool == prefill_pool_;
  const bool decode_pool = decode_pool_ >= 0 && r.pool == decode_pool_;
  if (!r.static_active) {
    // A new batch: up to max_sequences queued requests, each with its whole sequence's KV reserved (FasterTransformer
    // batches by count; max_batched_tokens bounds each prompt, checked before the run).
    int max_prompt = 0, max_output = 0;
    while (!r.waiting.empty() && static_cast<int>(r.running.size()) < v_.max_sequences) {
      const int id = r.waiting.front();
      const auto& rq = requests_[static_cast<std::size_t>(id)];
      const long long need = (rq.prompt_tokens + (prefill_pool ? 0 : rq.output_tokens) + bt - 1) / bt;
      if (r.blocks_total - r.blocks_used < need) break;
      r.waiting.pop_front();
      if (decode_pool) {
        r.running.push_back(admit(id, rq.prompt_tokens, 0, need));  // its first token came from the prefill pool
      } else {
        scheduled_[static_cast<std::size_t>(id)] = now;
        r.running.push_back(admit(id, 0, rq.prompt_tokens, need));
        r.running.back().step = rq.prompt_tokens;
      }
      r.blocks_used += need;
      max_prompt = std::max(max_prompt, rq.prompt_tokens);
      max_output = std::max(max_output, rq.output_tokens);
    }
    if (r.running.empty()) return false;
    r.static_active = true;
    r.static_prompt = max_prompt;
    r.static_steps = max_output;
    r.static_done_steps = 0;
    if (!decode_pool) {
      // Prefill of the whole batch, padded to its longest prompt.
      const double n = static_cast<double>(r.running.size());
      shape.prefill_tokens = n * max_prompt;
      shape.prefill_pairs = n * max_prompt * (max_prompt + 1) / 2.0;
      shape.sampled = n;
      return true;
    }
  }
  // Decode steps: every slot computes, finished or not, until the longest output is done.
  const double n = static_cast<double>(r.running.size());
  shape.decode_seqs = n;
  shape.decode_context = n * (r.static_prompt + r.static_done_steps + 1.0);
  shape.sampled = n;
  for (Seq& q : r.running) q.step = q.generated < q.output ? 1 : 0;
  return true;
}

void Driver::token(Replica& r, Seq& q, double now, bool window_now) {
  if (q.generated > 0 && q.measured) {
    const double gap = now - q.last_token_s;
    itl_sum_ += gap;
    ++itl_count_;
    itl_max_ = std::max(itl_max_, gap);
    // Most gaps of an iteration are equal (every decode of the batch waited the same iteration): reuse the bin.
    if (gap != itl_last_gap_) {
      const double idx = gap <= kItlMin_s ? 0.0 : std::floor(std::log(gap / kItlMin_s) / std::log(kItlBinRatio));
      itl_last_bin_ = std::min(kItlBins - 1, static_cast<std::size_t>(idx));
      itl_last_gap_ = gap;
    }
    itl_hist_[itl_last_bin_] += 1.0;
  }
  ++q.generated;
  q.last_token_s = now;
  if (window_now) {
    output_tokens_ += 1.0;
    if (q.measured) output_tokens_measured_ += 1.0;
    site_tokens_[static_cast<std::size_t>(r.site)] += 1.0;
  }
  if (q.generated == 1) {
    const auto i = static_cast<std::size_t>(q.id);
    first_token_[i] = now;
    first_replica_[i] = r.index;
    if (window_now) input_tokens_ += requests_[i].prompt_tokens;
  }
}

void Driver::finish_request(Replica& r, int id, double now) {
  end_[static_cast<std::size_t>(id)] = now;
  (void)r;
  if (--remaining_ == 0 && !fast_) {  // the fast path finishes once its clock has caught up (fast_scheduler)
    if (offline_) snapshot_window_end();
    snapshot_run_end();
    all_done();
  }
}

void Driver::apply(Replica& r, double now) {
  r.kv_advance(now);
  const bool window_now = in_window(now);
  if (v_.scheduler == "static") {
    const bool prefill = r.static_done_steps == 0 && r.running.front().prefill_left > 0;
    // A prefill pool's batch ends with its prefill: each sequence not finished by its first token goes on to a decode
    // replica, with its KV cache (hand_off), and the batch's blocks are free again.
    const bool hands_on = prefill && prefill_pool_ >= 0 && r.pool == prefill_pool_;
    if (!prefill) ++r.static_done_steps;
    bool all = true;
    for (Seq& q : r.running) {
      if (q.step > 0) {
        if (prefill) {
          q.ctx = q.prefill_left;
          q.prefill_left = 0;
        } else {
          ++q.ctx;
        }
        token(r, q, now, window_now);
        if (q.generated >= q.output) {
          finish_request(r, q.id, now);
        } else if (hands_on) {
          generated_[static_cast<std::size_t>(q.id)] = q.generated;
          last_token_[static_cast<std::size_t>(q.id)] = q.last_token_s;
          hand_off(r, q.id);
        }
      }
      all = all && (hands_on || q.generated >= q.output);
    }
    if (all) {
      r.blocks_used = 0;
      r.running.clear();
      r.static_active = false;
    }
    return;
  }
  const bool prefill_pool = prefill_pool_ >= 0 && r.pool == prefill_pool_;
  std::size_t w = 0;
  for (std::size_t k = 0; k < r.running.size(); ++k) {
    Seq& q = r.running[k];
    bool stays = true;
    if (q.step > 0) {
      bool produced = true;
      if (q.prefill_left > 0) {
        q.ctx += q.step;
        q.prefill_left -= q.step;
        produced = q.prefill_left == 0;
      } else {
        ++q.ctx;
      }
      if (produced) {
        token(r, q, now, window_now);
        if (q.generated >= q.output) {
          stays = false;
          finish_request(r, q.id, now);
        } else if (prefill_pool) {
          stays = false;
          generated_[static_cast<std::size_t>(q.id)] = q.generated;
          last_token_[static_cast<std::size_t>(q.id)] = q.last_token_s;
          hand_off(r, q.id);
        }
      }
    }
    if (!stays) {
      r.blocks_used -= q.blocks;
      continue;
    }
    if (w != k) r.running[w] = q;
    ++w;
  }
  r.running.resize(w);
}

void Driver::hand_off(Replica& from, int id) {
  Replica& to = replicas_[static_cast<std::size_t>(route(decode_pool_, id))];
  ++to.transfers_in_flight;
  const double bytes = memory_[static_cast<std::size_t>(from.pool)].kv_bytes_per_token_replica *
                       requests_[static_cast<std::size_t>(id)].prompt_tokens;
  if (in_window(sg4::Engine::get_clock())) kv_transfer_bytes_ += bytes;
  // Each device of the prefill replica sends its shard of the cache to a device of the decode replica.
  const int dp = v_.pools[static_cast<std::size_t>(from.pool)].devices_per_replica();
  const int dd = v_.pools[static_cast<std::size_t>(to.pool)].devices_per_replica();
  const int pairs = std::max(dp, dd);
  workload::BuiltStep step;
  workload::Phase start;
  start.label = "kv transfer start";
  step.start = workload::add_phase(step.graph, std::move(start), {});
  workload::Phase ph;
  ph.type = workload::Phase::Type::collective;
  ph.kind = "comm.kv_transfer";
  ph.label = fmt::format("KV cache of request {} replica {} -> {}", id, from.index, to.index);
  ph.overlaps_grad_reduce = true;  // shares links with other transfers: never replayed from the memo
  ph.comm.op = workload::CollectiveOp::send_recv;
  for (int k = 0; k < pairs; ++k) ph.comm.groups.push_back({from.first_device + k % dp, to.first_device + k % dd});
  ph.comm.bytes_per_device = bytes / pairs;
  const workload::PhaseId p = workload::add_phase(step.graph, std::move(ph), {step.start});
  workload::Phase end;
  end.label = "kv transfer end";
  step.end = workload::add_phase(step.graph, std::move(end), {p});
  const int to_index = to.index;
  sg4::Actor::create(fmt::format("kv{}", id), sim_->platform().pacers().front(), [this, step, to_index, id]() mutable {
    try {
      const StepResult res = sim_->run_graph(step, {});
      if (in_window(sg4::Engine::get_clock()))
        for (std::size_t s = 0; s < res.site_link_bytes.size(); ++s)
          for (std::size_t c = 0; c < system::kLinkClassCount; ++c) site_link_bytes_[s][c] += res.site_link_bytes[s][c];
      for (const auto& [k, a] : res.algorithms) algorithms_[k] = a;
      Replica& dst = replicas_[static_cast<std::size_t>(to_index)];
      --dst.transfers_in_flight;
      enqueue(dst, id);
    } catch (const simgrid::ForcefulKillException&) {
      throw;
    } catch (...) {
      if (!failure_) failure_ = std::current_exception();
      all_done();
    }
  });
}

// ---- costs --------------------------------------------------------------------------------------

std::vector<double> Driver::per_chip(const std::vector<int>& devices, const std::vector<DeviceWork>& w, bool memory) const {
  std::vector<double> out;
  int last_chip = -1;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const int c = mesh_->chip_of(devices[i]);
    const double t = memory ? w[i].memory_bound.time_s : w[i].compute_bound.time_s;
    if (c != last_chip) {
      out.push_back(t);
      last_chip = c;
    } else {
      out.back() = std::max(out.back(), t);  // a chip is busy for its slowest device
    }
  }
  return out;
}

const LayerCost& Driver::layer_cost(Replica& r, int stage, LayerKind kind, double tokens, bool& simulated_now) {
  const double tb = bucket(tokens, v_.memo_buckets_per_octave);
  const auto key = std::make_tuple(r.pool, stage, static_cast<int>(kind), tb);
  auto it = layers_.find(key);
  simulated_now = false;
  if (it != layers_.end()) return it->second;
  const workload::IterationModel& model = *models_[static_cast<std::size_t>(r.pool)];
  const workload::LayerPlan plan = model.layer(kind, tb);
  std::vector<int> devices;
  for (int local : model.stage_devices(stage)) devices.push_back(r.first_device + local);
  // The layer as a chain of phases on the replica's chips: per segment its compute-bound and its
  // memory-bound part (each at the power of its own achieved utilisation), then the collective that follows it.
  workload::BuiltStep step;
  workload::Phase start;
  start.label = "layer start";
  step.start = workload::add_phase(step.graph, std::move(start), {});
  workload::PhaseId last = step.start;
  LayerCost cost;
  cost.model_flops = plan.model_flops;
  double compute_s = 0.0;
  for (std::size_t i = 0; i < plan.segments.size(); ++i) {
    double extra[2] = {0.0, 0.0};  // power above active of the compute-bound and the memory-bound phase
    for (bool mem : {false, true}) {
      workload::Phase ph;
      ph.type = workload::Phase::Type::compute;
      ph.kind = "compute";
      ph.label = fmt::format("{} layer seg{} {}", kind == LayerKind::moe ? "moe" : "dense", i, mem ? "memory-bound" : "compute-bound");
      ph.compute.devices = devices;
      double worst = 0.0;
      for (const DeviceWork& w : plan.segments[i]) {
        const workload::KernelWork& k = mem ? w.memory_bound : w.compute_bound;
        ph.compute.time_s.push_back(k.time_s);
        ph.compute.matrix_s += k.matrix_s;
        ph.compute.hbm_s += k.hbm_s;
        worst = std::max(worst, k.time_s);
      }
      if (worst <= 0.0) continue;
      ph.compute.kind_time_s[mem ? "compute.memory_bound" : "compute.compute_bound"] = worst;
      // The power the engine gives this phase (the curve at the phase's utilisation over all its devices).
      extra[mem ? 1 : 0] = power_.compute_w(ph.compute.flop_utilisation(), ph.compute.hbm_utilisation()) - power_.active_w;
      last = workload::add_phase(step.graph, std::move(ph), {last});
    }
    const std::vector<double> cb = per_chip(devices, plan.segments[i], false), mb = per_chip(devices, plan.segments[i], true);
    compute_s += *std::max_element(cb.begin(), cb.end()) + *std::max_element(mb.begin(), mb.end());
    cost.busy_s.resize(cb.size(), 0.0);
    cost.extra_j.resize(cb.size(), 0.0);
    for (std::size_t c = 0; c < cb.size(); ++c) {
      cost.busy_s[c] += cb[c] + mb[c];
      cost.extra_j[c] += cb[c] * extra[0] + mb[c] * extra[1];
    }
    if (i < plan.collectives.size()) {
      workload::Phase ph;
      ph.type = workload::Phase::Type::collective;
      ph.kind = plan.collective_kinds[i];
      ph.label = fmt::format("{} layer {}", kind == LayerKind::moe ? "moe" : "dense", ph.kind);
      ph.comm = plan.collectives[i];
      for (auto& g : ph.comm.groups)
        for (int& d : g) d = devices[static_cast<std::size_t>(d)];
      last = workload::add_phase(step.graph, std::move(ph), {last});
    }
  }
  workload::Phase end;
  end.label = "layer end";
  step.end = workload::add_phase(step.graph, std::move(end), {last});
  const StepResult res = sim_->run_graph(step, r.stage_chips[static_cast<std::size_t>(stage)]);
  for (const auto& [k, a] : res.algorithms) algorithms_[k] = a;
  cost.comm_s = std::max(0.0, res.duration_s - compute_s) + plan.imbalance_wait_s;
  cost.site_link_bytes = res.site_link_bytes;
  simulated_now = true;
  ++layer_sims_;
  if (in_window(sg4::Engine::get_clock()))
    for (std::size_t s = 0; s < cost.site_link_bytes.size(); ++s)
      for (std::size_t c = 0; c < system::kLinkClassCount; ++c) site_link_bytes_[s][c] += cost.site_link_bytes[s][c];
  // The imbalance wait was not part of the simulated chain: the chips wait it out now.
  if (plan.imbalance_wait_s > 0.0)
    replay(r.stage_chips[static_cast<std::size_t>(stage)], std::vector<double>(cost.busy_s.size(), 0.0),
           std::vector<double>(cost.busy_s.size(), 0.0), plan.imbalance_wait_s);
  return layers_.emplace(key, std::move(cost)).first->second;
}

const DeviceWork& Driver::attention_cost(const Replica& r, const IterationShape& shape) {
  const int b = v_.memo_buckets_per_octave;
  IterationShape q;
  q.prefill_tokens = bucket(shape.prefill_tokens, b);
  q.prefill_pairs = bucket(shape.prefill_pairs, b);
  q.decode_seqs = bucket(shape.decode_seqs, b);
  q.decode_context = bucket(shape.decode_context, b);
  const auto key = std::make_tuple(r.pool, q.prefill_tokens, q.prefill_pairs, q.decode_seqs, q.decode_context);
  auto it = attention_.find(key);
  if (it != attention_.end()) return it->second;
  const auto w = models_[static_cast<std::size_t>(r.pool)]->attention(q);
  // Every device of a stage does the same attention work (the batch is split evenly over data ranks).
  return attention_.emplace(key, w.front()).first->second;
}

const DeviceWork& Driver::ends_cost(const Replica& r, int stage, const IterationShape& shape) {
  const int b = v_.memo_buckets_per_octave;
  IterationShape q;
  q.prefill_tokens = bucket(shape.tokens(), b);
  q.sampled = bucket(shape.sampled, b);
  const auto key = std::make_tuple(r.pool, stage, q.prefill_tokens, q.sampled);
  auto it = ends_.find(key);
  if (it != ends_.end()) return it->second;
  const auto w = models_[static_cast<std::size_t>(r.pool)]->ends(stage, q);
  return ends_.emplace(key, w.front()).first->second;
}

double Driver::pipeline_send(Replica& r, int stage, double tokens, bool& simulated_now) {
  const double tb = bucket(tokens, v_.memo_buckets_per_octave);
  const auto key = std::make_tuple(r.pool, stage, tb);
  auto it = sends_.find(key);
  simulated_now = false;
  if (it != sends_.end()) return it->second;
  const workload::IterationModel& model = *models_[static_cast<std::size_t>(r.pool)];
  workload::BuiltStep step;
  workload::Phase start;
  start.label = "send start";
  step.start = workload::add_phase(step.graph, std::move(start), {});
  workload::Phase ph;
  ph.type = workload::Phase::Type::collective;
  ph.kind = "comm.pipeline_p2p";
  ph.label = fmt::format("pipeline stage{}->stage{}", stage, stage + 1);
  ph.comm.op = workload::CollectiveOp::send_recv;
  const auto src = model.stage_devices(stage), dst = model.stage_devices(stage + 1);
  for (std::size_t i = 0; i < src.size(); ++i) ph.comm.groups.push_back({r.first_device + src[i], r.first_device + dst[i]});
  ph.comm.bytes_per_device = model.pipeline_bytes_per_device(tb);
  const workload::PhaseId p = workload::add_phase(step.graph, std::move(ph), {step.start});
  workload::Phase end;
  end.label = "send end";
  step.end = workload::add_phase(step.graph, std::move(end), {p});
  const StepResult res = sim_->run_graph(step, r.chips);
  // Sent once in detail here; replayed for later iterations of the same size.
  sends_.emplace(key, res.duration_s);
  simulated_now = true;
  return res.duration_s;
}

void Driver::replay(const std::vector<int>& chips, const std::vector<double>& busy, const std::vector<double>& extra_j, double comm_s) {
  double longest = 0.0;
  for (std::size_t i = 0; i < chips.size(); ++i) longest = std::max(longest, busy[i]);
  replay_span(chips, extra_j, longest + comm_s);
}

void Driver::replay_span(const std::vector<int>& chips, const std::vector<double>& extra_j, double total) {
  // One parallel task replays the whole stretch: a pacer host times it, and each chip runs at the constant load
  // whose power, integrated by the energy plugin, gives exactly the energy of its compute at the power curve
  // (extra_j above active) and the rest at active power (SimGrid's host_energy in the job pstate: P = epsilon + load x
  // (max - epsilon), epsilon = active). The first occurrence of every layer shape ran as real phases (layer_cost());
  // replaying it this way costs one activity per stretch.
  if (!(total > 0.0)) return;
  const auto& hosts = sim_->platform().chips();
  const double speed = sim_->platform().chip_speed_flops_per_s();
  const double span = power_.full_w - power_.active_w;
  sg4::Host* pacer = sim_->take_pacer();
  std::vector<sg4::Host*> hs;
  std::vector<double> flops;
  hs.reserve(chips.size() + 1);
  flops.reserve(chips.size() + 1);
  for (std::size_t i = 0; i < chips.size(); ++i) {
    sg4::Host* h = hosts[static_cast<std::size_t>(chips[i])];
    const double load = span > 0.0 ? std::clamp(extra_j[i] / (span * total), kBackgroundLoad, 1.0) : kBackgroundLoad;
    hs.push_back(h);
    flops.push_back(load * speed * total);
  }
  hs.push_back(pacer);
  flops.push_back(sim_->platform().pacer_speed_flops_per_s() * total);
  auto ex = sg4::Exec::init()->set_hosts(hs)->set_flops_amounts(flops)->set_bytes_amounts({});
  ex->vetoable_start();
  ex->wait();
  sim_->release_pacer(pacer);
}

bool Driver::cached_cost(Replica& r, const IterationShape& shape, double t0, std::vector<double>& busy_s, std::vector<double>& extra,
                         double& time_s) {
  const workload::IterationModel& model = *models_[static_cast<std::size_t>(r.pool)];
  const double tb = bucket(shape.tokens(), v_.memo_buckets_per_octave);
  const LayerCost* costs[2] = {nullptr, nullptr};
  for (LayerKind kind : {LayerKind::dense, LayerKind::moe}) {
    if (model.layers(0, kind) == 0) continue;
    auto it = layers_.find(std::make_tuple(r.pool, 0, static_cast<int>(kind), tb));
    if (it == layers_.end()) return false;
    costs[static_cast<int>(kind)] = &it->second;
  }
  const DeviceWork& attn = attention_cost(r, shape);
  const DeviceWork& ends = ends_cost(r, 0, shape);
  const bool window = in_window(t0);
  const std::size_t n = r.stage_chips[0].size();
  double busy = 0.0, comm = 0.0, flops = 0.0;
  int layers = 0;
  const double attn_j = extra_j(attn), ends_j = extra_j(ends);
  for (std::size_t k = 0; k < n; ++k) {
    double b = ends.total(), e = ends_j;
    for (int kind = 0; kind < 2; ++kind) {
      if (!costs[kind]) continue;
      const int count = model.layers(0, static_cast<LayerKind>(kind));
      b += count * (costs[kind]->busy_s[k] + attn.total());
      e += count * (costs[kind]->extra_j[k] + attn_j);
    }
    busy_s[k] += b;
    extra[k] += e;
    busy = std::max(busy, b);
  }
  for (int kind = 0; kind < 2; ++kind) {
    if (!costs[kind]) continue;
    const int count = model.layers(0, static_cast<LayerKind>(kind));
    layers += count;
    comm += count * costs[kind]->comm_s;
    flops += count * costs[kind]->model_flops;
    if (window)
      for (std::size_t s = 0; s < costs[kind]->site_link_bytes.size(); ++s)
        for (std::size_t cl = 0; cl < system::kLinkClassCount; ++cl) site_link_bytes_[s][cl] += count * costs[kind]->site_link_bytes[s][cl];
  }
  layer_replays_ += layers;
  if (window) model_flops_ += flops + model.attention_flops(shape) * s_.model.decoder_layers + model.ends_flops(shape);
  time_s = busy + comm + v_.iteration_overhead_s;
  return true;
}

void Driver::fast_scheduler(Replica& r) {
  // The replica works ahead of the simulated clock through stretches of iterations whose costs are all in the
  // memo: its own arrivals (round-robin routing does not depend on any replica's state) join at iteration
  // boundaries as in scheduler(); every token gets its exact time; then one parallel task replays the stretch's
  // time and energy on its chips. A stretch ends at the monitor's next sample, at the window's edges, after
  // kMaxStretch iterations, or before an iteration that needs a detailed simulation. Results equal the
  // iteration-by-iteration path's; only the activities SimGrid handles are fewer.
  constexpr int kMaxStretch = 4096;
  const std::vector<int>& chips = r.stage_chips[0];
  std::vector<double> busy(chips.size(), 0.0), extra(chips.size(), 0.0);
  double span_start = sg4::Engine::get_clock(), t = span_start;
  int stretch = 0;
  auto flush = [&] {
    if (stretch == 0 && !(t > span_start)) return;
    if (span_start > r.busy_until)
      for (int c : r.chips) sg_host_get_consumed_energy(sim_->platform().chips()[static_cast<std::size_t>(c)]);
    replay_span(chips, extra, t - sg4::Engine::get_clock());
    r.busy_until = sg4::Engine::get_clock();
    std::fill(busy.begin(), busy.end(), 0.0);
    std::fill(extra.begin(), extra.end(), 0.0);
    stretch = 0;
    span_start = t = sg4::Engine::get_clock();
  };
  auto barrier = [&] {
    double b = next_sample_s_;
    if (window_start_ > span_start) b = std::min(b, window_start_);
    if (!offline_ && window_end_ > span_start) b = std::min(b, window_end_);
    return b;
  };
  IterationShape shape;
  while (true) {
    while (r.cursor < r.own.size() && requests_[static_cast<std::size_t>(r.own[r.cursor])].arrival_s <= t)
      r.waiting.push_back(r.own[r.cursor++]);
    if (r.waiting.empty() && r.running.empty() && !r.static_active) {
      flush();
      if (r.cursor >= r.own.size()) return;
      sg4::this_actor::sleep_until(requests_[static_cast<std::size_t>(r.own[r.cursor])].arrival_s);
      span_start = t = sg4::Engine::get_clock();
      continue;
    }
    shape = IterationShape{};
    const bool any = form(r, shape, t);
    if (!any)
      throw Error(fmt::format("serving: replica {} cannot admit request {} ({} prompt tokens) with {} free KV blocks of {} "
                              "tokens and nothing running (internal error: feasibility was checked)",
                              r.index, r.waiting.front(), requests_[static_cast<std::size_t>(r.waiting.front())].prompt_tokens,
                              r.blocks_total - r.blocks_used, v_.kv_block_tokens));
    double dt = 0.0;
    if (cached_cost(r, shape, t, busy, extra, dt)) {
      t += dt;
      ++stretch;
    } else {
      // A new layer shape: bring the clock to the stretch's end, then simulate this iteration in detail.
      flush();
      execute(r, shape);
      span_start = t = sg4::Engine::get_clock();
    }
    ++iterations_;
    apply(r, t);
    if (remaining_ == 0) {
      flush();
      if (offline_) snapshot_window_end();
      snapshot_run_end();
      all_done();
      return;
    }
    if (stretch >= kMaxStretch || t >= barrier()) flush();
  }
}

double Driver::execute(Replica& r, const IterationShape& shape) {
  const workload::IterationModel& model = *models_[static_cast<std::size_t>(r.pool)];
  const double t0 = sg4::Engine::get_clock();
  if (t0 > r.busy_until) {
    // The energy plugin brings a host's joules up to date when one of its activities changes state, and at
    // the start of single-host executions only: a parallel task starting on a chip that was waiting (at active
    // power, Simulator::hold_job) would have the wait charged at the task's load. Bring the waiting chips up to date first.
    for (int c : r.chips) sg_host_get_consumed_energy(sim_->platform().chips()[static_cast<std::size_t>(c)]);
  }
  const double tokens = shape.tokens();
  double flops = 0.0;
  const DeviceWork& attn = attention_cost(r, shape);
  for (int st = 0; st < model.stages(); ++st) {
    const auto& chips = r.stage_chips[static_cast<std::size_t>(st)];
    if (model.stages() > 1) {
      // A stage's chips wait while the other stages run (in this iteration or, for the first stage, the last
      // one's later stages): bring their joules up to date at their waiting power before their task starts.
      for (int c : chips) sg_host_get_consumed_energy(sim_->platform().chips()[static_cast<std::size_t>(c)]);
    }
    std::vector<double> busy(chips.size(), 0.0), extra(chips.size(), 0.0);
    // The host's work for the iteration (scheduling, inputs, sampling) keeps the devices waiting once per iteration.
    double comm = st == 0 ? v_.iteration_overhead_s : 0.0;
    int layers = 0;
    for (LayerKind kind : {LayerKind::dense, LayerKind::moe}) {
      const int count = model.layers(st, kind);
      if (count == 0) continue;
      layers += count;
      bool simulated = false;
      const LayerCost& c = layer_cost(r, st, kind, tokens, simulated);
      const int replayed = count - (simulated ? 1 : 0);  // a layer simulated just now has already run
      layer_replays_ += replayed;
      for (std::size_t k = 0; k < chips.size(); ++k) {
        busy[k] += replayed * c.busy_s[k];
        extra[k] += replayed * c.extra_j[k];
      }
      comm += replayed * c.comm_s;
      flops += count * c.model_flops;
      if (in_window(t0) && replayed > 0)
        for (std::size_t s = 0; s < c.site_link_bytes.size(); ++s)
          for (std::size_t cl = 0; cl < system::kLinkClassCount; ++cl) site_link_bytes_[s][cl] += replayed * c.site_link_bytes[s][cl];
    }
    const DeviceWork& ends = ends_cost(r, st, shape);
    const double own_j = layers * extra_j(attn) + extra_j(ends);
    for (std::size_t k = 0; k < chips.size(); ++k) {
      busy[k] += layers * attn.total() + ends.total();
      extra[k] += own_j;
    }
    if (st + 1 < model.stages()) {
      bool sent_now = false;
      const double send = pipeline_send(r, st, tokens, sent_now);
      if (!sent_now) comm += send;
    }
    replay(chips, busy, extra, comm);
  }
  if (in_window(t0)) {
    flops += model.attention_flops(shape) * s_.model.decoder_layers + model.ends_flops(shape);
    model_flops_ += flops;
  }
  r.busy_until = sg4::Engine::get_clock();
  return r.busy_until - t0;
}

// ---- the run ------------------------------------------------------------------------------------

ServingResult Driver::run() {
  const auto wall0 = std::chrono::steady_clock::now();
  sg4::Host* home = sim_->platform().pacers().front();
  auto guard = [this](const std::function<void()>& f) {
    return [this, f]() {
      try {
        f();
      } catch (const simgrid::ForcefulKillException&) {
        throw;  // a daemon (the monitor) ended with the simulation: SimGrid unwinds it
      } catch (...) {
        if (!failure_) failure_ = std::current_exception();
        all_done();
      }
    };
  };
  if (!fast_) sg4::Actor::create("arrivals", home, guard([this] { arrivals(); }));
  for (Replica& r : replicas_) {
    Replica* rp = &r;
    // A deployment holds its chips in a job for the whole run: between iterations, and on a replica with nothing to
    // do, they wait at the accelerator's active power (in a job, waiting; profiles/accelerators/ *.yaml), not its idle
    // power (powered on, no job). Simulator::hold_job keeps them there between the graphs run on them.
    if (fast_)
      sg4::Actor::create(fmt::format("replica{}", r.index), home, guard([this, rp] {
        sim_->hold_job(rp->chips);
        fast_scheduler(*rp);
      }));
    else
      sg4::Actor::create(fmt::format("replica{}", r.index), home, guard([this, rp] {
        sim_->hold_job(rp->chips);
        scheduler(*rp);
      }));
  }
  sg4::Actor::create("monitor", home, guard([this] { monitor(); }))->daemonize();
  if (!offline_) {
    // Every rate of an open-loop run divides by its window, so the window is simulated to its end even when the
    // last request finished before it: the chips draw their waiting (active) power meanwhile, and the monitor takes the
    // window's closing energy at window_end_. This actor outlives that sample by a microsecond so that the
    // daemon monitor is still running when the clock reaches window_end_.
    const double until = window_end_ + std::max(1e-6, 1e-9 * window_end_);
    sg4::Actor::create("window", home, guard([until] { sg4::this_actor::sleep_until(until); }));
  }
  sim_->run_actors();
  if (failure_) std::rethrow_exception(failure_);
  if (remaining_ > 0)
    throw Error(fmt::format("serving: the simulation stopped with {} of {} requests unfinished (internal error)", remaining_,
                            requests_.size()));
  if (!end_taken_) snapshot_window_end();
  if (energy_at_start_.empty()) energy_at_start_.assign(energy_at_end_.size(), 0.0);

  ServingResult out;
  out.scenario_name = s_.name;
  out.accelerator = accel_.name;
  out.chips = mesh_->chips();
  out.devices = mesh_->devices();
  for (std::size_t p = 0; p < v_.pools.size(); ++p) {
    const auto& m = memory_[p];
    out.pools.push_back({scenario::to_string(v_.pools[p].role), v_.pools[p].replicas, v_.pools[p].devices_per_replica(),
                         m.weights_bytes, m.workspace_bytes, m.kv_bytes, m.kv_bytes_per_token, m.kv_blocks, m.block_tokens});
  }
  out.requests_total = static_cast<long long>(requests_.size());
  out.window_start_s = window_start_;
  out.window_end_s = window_end_;
  const double window = window_end_ - window_start_;
  double makespan = 0.0;
  std::vector<double> ttft, tpot, e2e, queue;
  double requested = 0.0;  // output tokens the measured requests ask for
  long long good = 0, completed = 0;
  for (std::size_t i = 0; i < requests_.size(); ++i) {
    makespan = std::max(makespan, end_[i]);
    // Served in the window: a request finishing in it, whenever it arrived (warm-up arrivals included), as output
    // tokens/s counts the tokens generated in it. An overloaded deployment serves fewer than arrive.
    if (offline_ || (end_[i] > window_start_ && end_[i] <= window_end_)) ++completed;
    const bool measured = offline_ || requests_[i].arrival_s >= window_start_;
    if (!measured) continue;
    const double a = requests_[i].arrival_s;
    ttft.push_back(first_token_[i] - a);
    e2e.push_back(end_[i] - a);
    const double waited = (scheduled_[i] >= 0.0 ? scheduled_[i] : first_token_[i]) - a;
    queue.push_back(waited < kClockPrecision_s ? 0.0 : waited);
    requested += requests_[i].output_tokens;
    const bool multi = requests_[i].output_tokens > 1;
    const double t_pot = multi ? (end_[i] - first_token_[i]) / (requests_[i].output_tokens - 1) : 0.0;
    if (multi) tpot.push_back(t_pot);
    if (ttft.back() <= v_.slo_ttft_s && (!multi || t_pot <= v_.slo_tpot_s)) ++good;
    if (v_.record_requests)
      out.requests.push_back({a, first_token_[i], end_[i], queue.back(), requests_[i].prompt_tokens, requests_[i].output_tokens,
                              first_replica_[i], preemptions_[i]});
  }
  out.makespan_s = makespan;
  out.requests_measured = static_cast<long long>(ttft.size());
  out.ttft = stats_of(ttft);
  out.tpot = stats_of(tpot);
  out.e2e = stats_of(e2e);
  out.queue = stats_of(queue);
  out.ttft_cdf_s = cdf_of(ttft);
  out.tpot_cdf_s = cdf_of(tpot);
  out.e2e_cdf_s = cdf_of(e2e);
  // Inter-token latency from the histogram (bin upper edges), mean and max exact.
  out.itl.count = itl_count_;
  if (itl_count_ > 0) {
    out.itl.mean_s = itl_sum_ / static_cast<double>(itl_count_);
    out.itl.max_s = itl_max_;
    auto q = [&](double p) {
      const double target = std::ceil(p * static_cast<double>(itl_count_));
      double cum = 0.0;
      for (std::size_t b = 0; b < itl_hist_.size(); ++b) {
        cum += itl_hist_[b];
        if (cum >= target) return std::min(itl_max_, kItlMin_s * std::pow(kItlBinRatio, static_cast<double>(b) + 1.0));
      }
      return itl_max_;
    };
    out.itl.p50_s = q(0.50);
    out.itl.p90_s = q(0.90);
    out.itl.p95_s = q(0.95);
    out.itl.p99_s = q(0.99);
  }
  out.requests_completed = completed;
  out.throughput_rps = window > 0 ? static_cast<double>(completed) / window : 0.0;
  out.input_tokens_window = input_tokens_;
  out.output_tokens_window = output_tokens_;
  out.output_tokens_requested_window = requested;
  out.output_tokens_measured_window = output_tokens_measured_;
  out.input_tokens_per_s = window > 0 ? input_tokens_ / window : 0.0;
  out.output_tokens_per_s = window > 0 ? output_tokens_ / window : 0.0;
  out.output_tokens_per_s_per_device = out.output_tokens_per_s / out.devices;
  out.goodput_fraction = out.requests_measured > 0 ? static_cast<double>(good) / static_cast<double>(out.requests_measured) : 0.0;
  // The requests served per second that meet both SLOs: the served rate at the measured requests' goodput fraction
  // (a rate of arrivals would exceed what an overloaded deployment serves).
  out.goodput_rps = out.goodput_fraction * out.throughput_rps;
  out.slo_ttft_s = v_.slo_ttft_s;
  out.slo_tpot_s = v_.slo_tpot_s;
  out.slo_p99_met = out.ttft.p99_s <= v_.slo_ttft_s && out.tpot.p99_s <= v_.slo_tpot_s;
  out.preemptions = preemption_count_;
  out.kv_transfer_bytes = kv_transfer_bytes_;
  out.iterations = iterations_;
  out.layer_shapes_simulated = layer_sims_;
  out.layer_replays = layer_replays_;
  out.attention_shapes = static_cast<long long>(attention_.size());
  out.model_flops_window = model_flops_;
  const double device_peak = accel_.peak_flops_for(s_.model.dtype) / accel_.devices_per_chip;
  out.mfu = window > 0 ? model_flops_ / (window * out.devices * device_peak) : 0.0;
  // Series and time-weighted means. Requests waiting (arrival to first admission, and a preempted sequence until it is
  // admitted again) and sequences in flight (admission to completion, in any pool or in a KV transfer) are integrated
  // exactly from each request's times: every series value is the average over its sampling interval, and the means
  // are the averages over the window, so the mean queue length is the window's requests/s times their mean
  // queueing delay (Little's law; a re-admission's wait is in the queue, not in the queueing delay, which ends at the
  // first admission) up to the requests that straddle the window's edges. KV use is the block-seconds held over
  // each interval; power is the interval's energy over its length.
  // The series' last point: to the run's end where the grid's last sample came before it. Offline, the window ends at
  // the last completion, inside an interval; open loop, a drain past the window's end (the window itself is a whole
  // number of intervals, sampled to its end however early the last request finished).
  if (run_end_s_ > series_until_ + kClockPrecision_s) {
    const double dt = run_end_s_ - series_until_;
    push_point(series_until_, dt, run_end_s_, energy_at_run_end_, kv_at_run_end_);
    series_last_interval_ = dt;
  }
  // Each site's power, kept with the others while sampling (pairs merged alike), is a series of its own in the result.
  for (std::size_t k = 0; k < topo_->sites().size(); ++k) {
    const auto it = series_.find(site_power_key(k));
    out.site_power_w.push_back(it == series_.end() ? std::vector<double>{} : it->second);
    if (it != series_.end()) series_.erase(it);
  }
  out.series = series_;
  out.series_interval_s = interval_;
  out.series_first_interval_s = series_["t_s"].empty() ? 0.0 : series_first_interval_ > 0.0 ? series_first_interval_ : interval_;
  out.series_last_interval_s = series_["t_s"].empty() ? 0.0 : series_last_interval_ > 0.0 ? series_last_interval_ : interval_;
  {
    auto admitted = [&](std::size_t i) {
      const double a = requests_[i].arrival_s, adm = scheduled_[i] >= 0.0 ? scheduled_[i] : first_token_[i];
      return adm - a < kClockPrecision_s ? a : adm;  // as the queueing delay: rounding is no wait
    };
    auto waiting = [&](std::size_t i) { return std::pair<double, double>{requests_[i].arrival_s, admitted(i)}; };
    auto in_flight = [&](std::size_t i) { return std::pair<double, double>{admitted(i), end_[i]}; };
    const std::size_t count = requests_.size();
    // A preempted sequence waits for re-admission: it is queued, not in flight, meanwhile.
    auto requeued = [&](std::size_t k) { return requeue_spans_[k]; };
    const std::size_t requeues = requeue_spans_.size();
    const auto& t = out.series["t_s"];
    if (!t.empty()) {
      // The points' intervals: each to the next, the last to series_until_ (a shorter first and last included).
      std::vector<double> edges = t;
      edges.push_back(series_until_);
      out.series["queue_requests"] = bin_averages(count, waiting, edges);
      out.series["batch_sequences"] = bin_averages(count, in_flight, edges);
      if (requeues > 0) {
        const std::vector<double> back = bin_averages(requeues, requeued, edges);
        for (std::size_t j = 0; j < back.size(); ++j) {
          out.series["queue_requests"][j] += back[j];
          out.series["batch_sequences"][j] -= back[j];
        }
      }
    }
    const double w_end = offline_ ? makespan : window_end_, w = w_end - window_start_;
    if (w > 0.0) {
      const double back = overlap_sum(requeues, requeued, window_start_, w_end);
      out.mean_queue_requests = (overlap_sum(count, waiting, window_start_, w_end) + back) / w;
      out.mean_batch_sequences = (overlap_sum(count, in_flight, window_start_, w_end) - back) / w;
    }
    // Keeping up: requests in the system (arrived, not finished) at the window's end against its middle, over the
    // requests arriving between the two. A deployment that keeps up holds about as many at both (the warm-up's fill
    // is over by the middle); one that falls behind by x % of its load gains about x % of those arrivals.
    if (!offline_ && window_end_ > window_start_) {
      const double mid = 0.5 * (window_start_ + window_end_);
      long long at_mid = 0, at_end = 0, arrivals = 0;
      for (std::size_t i = 0; i < requests_.size(); ++i) {
        const double a = requests_[i].arrival_s;
        if (a <= mid && end_[i] > mid) ++at_mid;
        if (a <= window_end_ && end_[i] > window_end_) ++at_end;
        if (a > mid && a <= window_end_) ++arrivals;
      }
      out.backlog_growth_fraction = arrivals > 0 ? static_cast<double>(at_end - at_mid) / static_cast<double>(arrivals) : 0.0;
      out.arrivals_late = arrivals;
      out.in_system_mid = at_mid;
      out.in_system_end = at_end;
    }
    // KV use over the window: the block-seconds held in it over the blocks times its length.
    const double cap = kv_blocks_total();
    if (cap > 0.0 && w > 0.0) out.mean_kv_use = (kv_at_end_ - kv_at_start_) / (cap * (window_end_ - window_start_));
  }
  for (const auto& site : topo_->sites()) {
    SiteStepFigures f;
    f.datacenter = site.datacenter;
    f.chips = static_cast<int>(site.chips.size());
    f.share = s_.placement[static_cast<std::size_t>(site.index)].share;
    f.chip_energy_per_step_j = energy_at_end_[static_cast<std::size_t>(site.index)] - energy_at_start_[static_cast<std::size_t>(site.index)];
    f.link_bytes_per_step = site_link_bytes_[static_cast<std::size_t>(site.index)];
    f.link_counts = site_link_counts(site, static_cast<int>(topo_->sites().size()));
    out.sites.push_back(std::move(f));
  }
  out.site_output_tokens = site_tokens_;
  out.peak_chip_power_w = power_.full_w;
  out.power_convention = power_.convention;
  out.compute_model = compute_->describe();
  out.compute_paths = perf::compute_paths(*compute_);
  out.algorithms = algorithms_;
  out.sim_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return out;
}

}  // namespace

std::vector<std::string> serving_scheduler_names() {
  std::vector<std::string> v;
  for (const auto& [k, f] : Driver::schedulers()) v.push_back(k);
  return v;
}

std::vector<std::string> serving_router_names() {
  std::vector<std::string> v;
  for (const auto& [k, f] : Driver::routers()) v.push_back(k);
  return v;
}

KnownWindow known_window(const scenario::Scenario& s) {
  KnownWindow k;
  if (!s.serving) return k;
  k.start_s = window_start_s(*s.serving);
  const std::vector<workload::Request> reqs = workload::generate_requests(s);
  if (reqs.empty()) return k;
  const MeasuredWindow w = measured_window(*s.serving, reqs);
  if (!w.offline) k.end_s = w.end_s;
  return k;
}

void check_serving_feasible(const scenario::Scenario& s, const catalog::Catalog& catalog) {
  const auto& accel = catalog.accelerator(s.cluster.accelerator);
  accel.peak_flops_for(s.model.dtype);
  const scenario::ServingSpec& v = *s.serving;
  std::vector<workload::ReplicaMemory> mem;
  for (const auto& pool : v.pools) mem.push_back(workload::replica_memory(s, pool, accel));
  // Topology (whole GPU nodes per site, torus shapes).
  int devices = 0;
  for (const auto& pool : v.pools) devices += pool.replicas * pool.devices_per_replica();
  scenario::ParallelismSpec flat;
  flat.data = devices;
  const workload::DeviceMesh mesh(flat, accel.devices_per_chip);
  const auto sites = workload::replica_sites(s);
  std::vector<int> chip_site(static_cast<std::size_t>(mesh.chips()), 0);
  int dev = 0;
  for (std::size_t p = 0; p < v.pools.size(); ++p)
    for (int r = 0; r < v.pools[p].replicas; ++r)
      for (int k = 0; k < v.pools[p].devices_per_replica(); ++k, ++dev)
        chip_site[static_cast<std::size_t>(mesh.chip_of(dev))] = sites[p][static_cast<std::size_t>(r)];
  system::Topology::build_for_sites(s, accel, accel.devices_per_chip, chip_site);
  // Requests: the trace parses, and the largest request fits one data rank's KV cache.
  const std::vector<workload::Request> reqs = workload::generate_requests(s);
  if (reqs.empty()) {
    if (v.arrival.type == "trace") {
      // A trace is never empty (read_request_trace refuses one): its first arrival is at or after duration_s.
      const std::vector<workload::Request> rows = workload::read_request_trace(v.arrival.trace_csv);
      throw InputError(s.source_file, 0, 0, "serving.duration_s",
                       fmt::format("the request trace {} has no request arriving before serving.duration_s = {} s: its first "
                                   "arrival is at {} s, at or after duration_s; lengthen duration_s or shift the trace's "
                                   "arrivals",
                                   v.arrival.trace_csv, v.duration_s, rows.empty() ? 0.0 : rows.front().arrival_s));
    }
    throw Error("serving: the workload has no requests (check serving.requests, duration_s and the arrival rate)");
  }
  check_window(s, measured_window(v, reqs), reqs);
  std::size_t worst = 0;
  for (std::size_t i = 1; i < reqs.size(); ++i)
    if (reqs[i].prompt_tokens + reqs[i].output_tokens > reqs[worst].prompt_tokens + reqs[worst].output_tokens) worst = i;
  const auto& big = reqs[worst];
  for (std::size_t p = 0; p < v.pools.size(); ++p) {
    const double rank_tokens = mem[p].kv_tokens() / v.pools[p].data;
    const double need = static_cast<double>(big.prompt_tokens) + big.output_tokens;
    if (need > rank_tokens)
      throw InputError(s.source_file, 0, 0, fmt::format("serving.pools[{}]", p),
                       fmt::format("the KV cache of one replica holds {:.0f} tokens per data rank ({} blocks of {} tokens, "
                                   "{:.2f} GiB per device at {:.0f} bytes per token) but request {} needs {} ({} prompt + {} "
                                   "output): give the pool more devices per replica, an fp8 KV cache, or shorter requests",
                                   rank_tokens, mem[p].kv_blocks, v.kv_block_tokens, mem[p].kv_bytes / (1024.0 * 1024.0 * 1024.0),
                                   mem[p].kv_bytes_per_token, worst, need, big.prompt_tokens, big.output_tokens));
    const bool chunked = v.scheduler == "chunked_prefill";
    if (!chunked && v.pools[p].role != scenario::PoolRole::decode && big.prompt_tokens + big.output_tokens > v.max_batched_tokens) {
      // A prompt (or a preempted sequence to recompute) must fit one iteration's token budget.
      std::size_t longest = 0;
      for (std::size_t i = 1; i < reqs.size(); ++i)
        if (reqs[i].prompt_tokens > reqs[longest].prompt_tokens) longest = i;
      if (reqs[longest].prompt_tokens > v.max_batched_tokens)
        throw InputError(s.source_file, 0, 0, "serving.scheduler.max_batched_tokens",
                         fmt::format("request {} has a {}-token prompt but an iteration computes at most {} tokens; raise "
                                     "max_batched_tokens or use scheduler type chunked_prefill",
                                     longest, reqs[longest].prompt_tokens, v.max_batched_tokens));
    }
  }
}

ServingResult simulate_serving(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options) {
  check_serving_feasible(s, catalog);
  Driver d(s, catalog, options);
  return d.run();
}

}  // namespace moesim::engine
