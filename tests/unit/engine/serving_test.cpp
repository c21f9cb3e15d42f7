// SPDX-License-Identifier: Apache-2.0
// The serving driver on SimGrid (each simulation in a child process): schedulers on hand-made traces with
// answers known from their structure, KV-cache preemption, disaggregated KV transfers, the power series
// against the energy plugin's joules, determinism, and the shape memo against exact shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <optional>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/serving.hpp"
#include "moesim_test/temp_dir.hpp"
#include "serving_test_support.hpp"

namespace sc = moesim::scenario;
namespace en = moesim::engine;
using nlohmann::json;

namespace {

using moesim::engine::serving_test::catalog;
using moesim::engine::serving_test::simulate;
using moesim::engine::serving_test::trace;
using moesim::engine::serving_test::window_joules;

const char* kModel =
    "model:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  kv_heads: 2\n  experts: 8\n  top_k: 2\n"
    "  vocab: 32000\n  seq_len: 4096\n  activation: swiglu\n";
const char* kCluster = "cluster:\n  accelerator: h100\n  count: 8\nplacement:\n  - datacenter: gcp_us_central1_2023\n";

sc::Scenario load(const std::string& serving, const std::string& extra = "") {
  return sc::load_string(std::string("name: t\nseed: 9\n") + kModel + extra + "serving:\n" + serving + kCluster, "test.yaml", catalog());
}

std::string trace_serving(const std::string& path, const std::string& scheduler, const std::string& pools = "    - {replicas: 8}\n") {
  return "  arrival: {type: trace, trace_csv: " + path + "}\n  prompt_length: {type: trace}\n  output_length: {type: trace}\n"
         "  record_requests: true\n  pools:\n" + pools + "  scheduler: " + scheduler + "\n";
}

}  // namespace

TEST_CASE("engine::serving: one sequence at a time serves requests back to back", "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Three identical requests at t = 0 on one replica that holds one sequence at a time: request i starts when
  // request i - 1 ends, so ends are equally spaced and each TTFT is the previous end plus one prefill.
  const auto p = trace(dir, "seq.csv", {{0, 200, 8}, {0, 200, 8}, {0, 200, 8}});
  const auto r = simulate(load(trace_serving(p, "{type: continuous, max_sequences: 1}", "    - {replicas: 1, tensor: 8}\n")));
  REQUIRE(r.requests.size() == 3);
  const auto& q = r.requests;
  const double service = q[0].end_s;  // one request alone, from 0
  CHECK(q[1].end_s == Approx(2 * service).epsilon(1e-9));
  CHECK(q[2].end_s == Approx(3 * service).epsilon(1e-9));
  CHECK(q[1].first_token_s - q[0].end_s == Approx(q[0].first_token_s).epsilon(1e-9));
  CHECK(q[1].queue_s == Approx(q[0].end_s).epsilon(1e-9));  // queued until the first left
  CHECK(r.output_tokens_window == 24.0);
  CHECK(r.preemptions == 0);
}

TEST_CASE("engine::serving: the host's per-iteration overhead delays every iteration by itself, on both paths",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // One request alone: 8 iterations (the prefill with the first token, then 7 decodes), each longer by the
  // overhead; the chips wait through it at their waiting power.
  const auto p = trace(dir, "one.csv", {{0, 200, 8}});
  const std::string pools = "    - {replicas: 1, tensor: 8}\n";
  auto run = [&](const std::string& overhead_ms, bool fast) {
    const auto s = load(trace_serving(p, "{type: continuous, iteration_overhead_ms: " + overhead_ms + "}", pools));
    const auto iso = en::run_isolated([&] {
      en::EngineOptions opt;
      opt.serving_fast_path = fast;
      return en::to_json(en::simulate_serving(s, catalog(), opt));
    });
    return en::serving_from_json(iso.value);
  };
  const auto base = run("0", true), slowed = run("5", true), slowed_slow_path = run("5", false);
  REQUIRE(base.requests.size() == 1);
  REQUIRE(slowed.requests.size() == 1);
  CHECK(slowed.iterations == base.iterations);
  CHECK(base.iterations == 8);
  CHECK(slowed.requests[0].first_token_s - base.requests[0].first_token_s == Approx(5e-3).epsilon(1e-9));
  CHECK(slowed.requests[0].end_s - base.requests[0].end_s == Approx(8 * 5e-3).epsilon(1e-9));
  CHECK(slowed.tpot.mean_s - base.tpot.mean_s == Approx(5e-3).epsilon(1e-9));
  // The iteration-by-iteration path agrees, energy included.
  CHECK(slowed_slow_path.requests[0].end_s == Approx(slowed.requests[0].end_s).epsilon(1e-12));
  double ef = 0.0, es = 0.0, eb = 0.0;
  for (const auto& x : slowed.sites) ef += x.chip_energy_per_step_j;
  for (const auto& x : slowed_slow_path.sites) es += x.chip_energy_per_step_j;
  for (const auto& x : base.sites) eb += x.chip_energy_per_step_j;
  CHECK(ef == Approx(es).epsilon(1e-6));
  CHECK(ef > eb);  // waiting chips still draw power
}

TEST_CASE("engine::serving: static batching holds a batch until its longest request ends - continuous does not",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Two slots; requests 0 (2 tokens) and 1 (30 tokens) fill them, request 2 waits.
  const auto p = trace(dir, "mix.csv", {{0, 100, 2}, {0, 100, 30}, {0, 100, 2}});
  const std::string pool = "    - {replicas: 1, tensor: 8}\n";
  const auto st = simulate(load(trace_serving(p, "{type: static, max_sequences: 2}", pool)));
  const auto co = simulate(load(trace_serving(p, "{type: continuous, max_sequences: 2}", pool)));
  REQUIRE(st.requests.size() == 3);
  REQUIRE(co.requests.size() == 3);
  // Static: request 2's first token comes only after request 1 (the batch's longest) is done.
  CHECK(st.requests[2].first_token_s > st.requests[1].end_s);
  // Continuous: request 2 takes request 0's slot as soon as it leaves, long before request 1 ends.
  CHECK(co.requests[2].first_token_s < co.requests[1].end_s);
  CHECK(co.requests[2].first_token_s > co.requests[0].end_s);
  // Both produce every token.
  CHECK(st.output_tokens_window == 34.0);
  CHECK(co.output_tokens_window == 34.0);
}

TEST_CASE("engine::serving: static batching with disaggregated pools prefills in one pool and decodes in the other",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Three requests of 300 + 20 tokens on a prefill replica and a decode replica (devices 0-3 and 4-7). The static prefill
  // batch ends with its first tokens and hands every sequence on with its KV cache; the decode replica's static batch
  // generates the other 19 tokens each. (The static scheduler once kept every sequence in the prefill pool and the
  // decode pool idle: no KV cache moved.)
  const auto p = trace(dir, "disagg.csv", {{0, 300, 20}, {0, 300, 20}, {0, 300, 20}});
  const std::string pools = "    - {role: prefill, replicas: 1, tensor: 4}\n    - {role: decode, replicas: 1, tensor: 4}\n";
  const auto st = simulate(load(trace_serving(p, "{type: static}", pools)));
  const auto co = simulate(load(trace_serving(p, "{type: continuous}", pools)));
  REQUIRE(st.requests.size() == 3);
  CHECK(st.output_tokens_window == 60.0);
  // The same prompts' caches move as under continuous batching: 900 prompt tokens' worth (the same size each, so
  // they arrive together and form one decode batch).
  CHECK(st.kv_transfer_bytes > 0.0);
  CHECK(st.kv_transfer_bytes == Approx(co.kv_transfer_bytes).epsilon(1e-12));
  for (const auto& q : st.requests) {
    CHECK(q.replica == 0);                 // the first token: the prefill replica's
    CHECK(q.end_s > q.first_token_s);      // the rest after the transfer, on the decode replica
  }
  // One prefill batch of the three, then one decode batch of the three: they share their first token's time, then
  // their last.
  CHECK(st.requests[1].first_token_s == st.requests[0].first_token_s);
  CHECK(st.requests[2].first_token_s == st.requests[0].first_token_s);
  CHECK(st.requests[2].end_s == Approx(st.requests[0].end_s).epsilon(1e-12));
}

TEST_CASE("engine::serving: chunked prefill spreads a long prompt over iterations of the chunk budget", "[engine][serving]") {
  moesim::testing::TempDir dir;
  const auto p = trace(dir, "chunk.csv", {{0, 2000, 4}});
  const std::string pool = "    - {replicas: 1, tensor: 8}\n";
  const auto whole = simulate(load(trace_serving(p, "{type: continuous, max_batched_tokens: 4096}", pool)));
  const auto chunked = simulate(load(trace_serving(p, "{type: chunked_prefill, chunk_tokens: 512}", pool)));
  // 2000 prompt tokens: one iteration whole, ceil(2000 / 512) = 4 chunks; then 3 decode iterations each.
  CHECK(whole.iterations == 1 + 3);
  CHECK(chunked.iterations == 4 + 3);
  CHECK(chunked.requests[0].first_token_s > whole.requests[0].first_token_s);
}

TEST_CASE("engine::serving: a full KV cache preempts and recomputes, and every request still finishes", "[engine][serving]") {
  const std::string base = "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 300}\n"
                           "  output_length: {type: fixed, value: 300}\n  requests: 40\n  record_requests: true\n";
  // Size the cache to about 8 sequences of 600 tokens: the fraction that leaves 8 x 600 tokens after the weights.
  const auto probe = load(base + "  pools:\n    - {replicas: 1, tensor: 8}\n");
  const auto mem = moesim::workload::replica_memory(probe, probe.serving->pools[0], catalog().accelerator("h100"));
  const double want = mem.weights_bytes + mem.workspace_bytes + 8 * 600 * mem.kv_bytes_per_token;
  const double fraction = want / mem.capacity_bytes;
  const auto s = load(base + "  pools:\n    - {replicas: 1, tensor: 8}\n  kv_cache: {memory_fraction: " + std::to_string(fraction) + "}\n"
                      "  scheduler: {type: continuous, max_sequences: 64}\n");
  const auto r = simulate(s);
  CHECK(r.preemptions > 0);
  CHECK(r.output_tokens_window == 40 * 300.0);
  CHECK(r.requests_measured == 40);
  CHECK(r.mean_kv_use > 0.5);
  // A preempted sequence waits in the queue for re-admission, not in flight: the queue holds more request-seconds
  // than the queueing delays (arrival to first admission), and queue plus batch still hold every request's life.
  double waited = 0.0, lived = 0.0;
  for (const auto& q : r.requests) {
    waited += q.queue_s;
    lived += q.end_s - q.arrival_s;
  }
  const double window = r.window_end_s - r.window_start_s;
  CHECK(r.mean_queue_requests * window > waited * 1.001);
  CHECK((r.mean_queue_requests + r.mean_batch_sequences) * window == Approx(lived).epsilon(1e-9));
}

TEST_CASE("engine::serving: disaggregated pools move every KV cache over the network", "[engine][serving]") {
  const std::string s = "  arrival: {type: poisson, rate_per_s: 20}\n  prompt_length: {type: fixed, value: 1000}\n"
                        "  output_length: {type: fixed, value: 20}\n  duration_s: 3\n"
                        "  pools:\n    - {role: prefill, replicas: 1, tensor: 4}\n    - {role: decode, replicas: 1, tensor: 4}\n";
  const auto sc = load(s);
  const auto r = simulate(sc);
  const auto mem = moesim::workload::replica_memory(sc, sc.serving->pools[0], catalog().accelerator("h100"));
  // Each request's prompt KV cache, 1000 tokens x the replica's bytes per token, moved once.
  CHECK(r.kv_transfer_bytes == Approx(static_cast<double>(r.requests_measured) * 1000 * mem.kv_bytes_per_token_replica).epsilon(0.05));
  CHECK(r.output_tokens_window > 0.0);
  CHECK(r.algorithms.count("comm.kv_transfer") == 1);
  // The second token waits for the transfer: TPOT of the first gap is above a plain decode step.
  CHECK(r.tpot.mean_s > 0.0);
}

TEST_CASE("engine::serving: the power series integrates to the energy plugin's joules, and reruns are identical",
          "[engine][serving]") {
  const auto s = load("  arrival: {type: poisson, rate_per_s: 30}\n  prompt_length: {type: lognormal, mean: 300, sigma: 0.8}\n"
                      "  output_length: {type: uniform, min: 10, max: 100}\n  duration_s: 6\n  warmup_s: 1\n"
                      "  pools:\n    - {replicas: 2, tensor: 4}\n");
  const auto a = simulate(s), b = simulate(s);
  CHECK(en::to_json(a).dump() != "");
  // Determinism: same scenario and seed, same numbers (wall time aside).
  json ja = en::to_json(a), jb = en::to_json(b);
  ja.erase("sim_wall_s");
  jb.erase("sim_wall_s");
  CHECK(ja == jb);
  // Power over the window, interval by interval, equals the chips' energy over the window.
  const auto [plugin, joules] = window_joules(a);
  CHECK(joules == Approx(plugin).epsilon(0.001));
  // Latency percentiles are ordered; the CDF ends at the maximum.
  CHECK(a.ttft.p50_s <= a.ttft.p90_s);
  CHECK(a.ttft.p90_s <= a.ttft.p99_s);
  CHECK(a.ttft.p99_s <= a.ttft.max_s);
  REQUIRE(a.ttft_cdf_s.size() == 101);
  CHECK(a.ttft_cdf_s.back() == a.ttft.max_s);
}

TEST_CASE("engine::serving: memoised shape buckets stay within a percent of exact shapes", "[engine][serving]") {
  const std::string s = "  arrival: {type: poisson, rate_per_s: 60}\n  prompt_length: {type: lognormal, mean: 500, sigma: 0.9}\n"
                        "  output_length: {type: lognormal, mean: 80, sigma: 0.6, max: 1024}\n  duration_s: 6\n  warmup_s: 1\n"
                        "  pools:\n    - {replicas: 2, tensor: 4}\n";
  const auto bucketed = simulate(load(s + "  memo_buckets_per_octave: 32\n"));
  const auto exact = simulate(load(s + "  memo_buckets_per_octave: 0\n"));
  CHECK(bucketed.layer_shapes_simulated < exact.layer_shapes_simulated);
  CHECK(bucketed.tpot.mean_s == Approx(exact.tpot.mean_s).epsilon(0.01));
  CHECK(bucketed.ttft.p99_s == Approx(exact.ttft.p99_s).epsilon(0.02));
  double eb = 0.0, ee = 0.0;
  for (const auto& site : bucketed.sites) eb += site.chip_energy_per_step_j;
  for (const auto& site : exact.sites) ee += site.chip_energy_per_step_j;
  CHECK(eb == Approx(ee).epsilon(0.01));
}

TEST_CASE("engine::serving: the scheduler and router registries are the choices the scenario allows", "[engine][serving]") {
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(sorted(moesim::scenario::find_field("serving.scheduler.type")->choices) == en::serving_scheduler_names());
  CHECK(sorted(moesim::scenario::find_field("serving.router.type")->choices) == en::serving_router_names());
}

TEST_CASE("engine::serving: the fast path gives the iteration-by-iteration path's results", "[engine][serving]") {
  for (const char* sched : {"continuous", "static", "chunked_prefill"}) {
    INFO(sched);
    const auto s = load("  arrival: {type: poisson, rate_per_s: 40}\n  prompt_length: {type: lognormal, mean: 400, sigma: 0.9}\n"
                        "  output_length: {type: uniform, min: 10, max: 120}\n  duration_s: 5\n  warmup_s: 1\n"
                        "  pools:\n    - {replicas: 4, tensor: 2}\n  scheduler: {type: " + std::string(sched) + "}\n");
    auto run = [&](bool fast) {
      const auto iso = en::run_isolated([&] {
        moesim::engine::EngineOptions opt;
        opt.serving_fast_path = fast;
        return en::to_json(en::simulate_serving(s, catalog(), opt));
      });
      return en::serving_from_json(iso.value);
    };
    const auto fast = run(true), slow = run(false);
    CHECK(fast.iterations == slow.iterations);
    CHECK(fast.output_tokens_window == slow.output_tokens_window);
    CHECK(fast.ttft.p99_s == Approx(slow.ttft.p99_s).epsilon(1e-9));
    CHECK(fast.tpot.mean_s == Approx(slow.tpot.mean_s).epsilon(1e-9));
    CHECK(fast.e2e.max_s == Approx(slow.e2e.max_s).epsilon(1e-9));
    double ef = 0.0, es = 0.0;
    for (const auto& x : fast.sites) ef += x.chip_energy_per_step_j;
    for (const auto& x : slow.sites) es += x.chip_energy_per_step_j;
    CHECK(ef == Approx(es).epsilon(1e-6));
  }
}

TEST_CASE("engine::serving: queue length and sequences in flight are time averages of the requests' own times",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Three identical requests at t = 0 on a replica that holds one sequence at a time (as above): request i waits
  // i x S and is in flight from i x S to (i + 1) x S, so over the run (offline: 0 to 3 S) one request is in flight
  // at every instant and 1 is waiting on average (0 + S + 2 S over 3 S): Little's law, exactly.
  const auto p = trace(dir, "seq.csv", {{0, 200, 100}, {0, 200, 100}, {0, 200, 100}});
  const auto r = simulate(load(trace_serving(p, "{type: continuous, max_sequences: 1}", "    - {replicas: 1, tensor: 8}\n")));
  REQUIRE(r.requests.size() == 3);
  const double S = r.requests[0].end_s;
  CHECK(r.makespan_s == Approx(3 * S).epsilon(1e-9));
  CHECK(r.mean_batch_sequences == Approx(1.0).epsilon(1e-9));
  CHECK(r.mean_queue_requests == Approx(1.0).epsilon(1e-9));
  double waited = 0.0;
  for (const auto& q : r.requests) waited += q.queue_s;
  CHECK(r.mean_queue_requests * r.makespan_s == Approx(waited).epsilon(1e-9));
  // Each series value is its interval's average: over the intervals sampled, the series integrate to the requests'
  // own waiting and in-flight time within them.
  const auto& t = r.series.at("t_s");
  REQUIRE(t.size() >= 5);
  // Each point covers the interval to the next; the last (offline) what is left of the window, no more.
  CHECK(r.series_last_interval_s > 0.0);
  CHECK(r.series_last_interval_s <= r.series_interval_s);
  CHECK(t.back() + r.series_last_interval_s == Approx(r.makespan_s).epsilon(1e-12));
  auto span = [&](std::size_t i) { return i + 1 < t.size() ? t[i + 1] - t[i] : r.series_last_interval_s; };
  const double from = t.front(), to = t.back() + r.series_last_interval_s;
  auto overlap = [&](double x, double y) { return std::max(0.0, std::min(y, to) - std::max(x, from)); };
  double want_queue = 0.0, want_flight = 0.0;
  for (const auto& q : r.requests) {
    want_queue += overlap(q.arrival_s, q.arrival_s + q.queue_s);
    want_flight += overlap(q.arrival_s + q.queue_s, q.end_s);
  }
  double queue_integral = 0.0, flight_integral = 0.0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    queue_integral += r.series.at("queue_requests")[i] * span(i);
    flight_integral += r.series.at("batch_sequences")[i] * span(i);
    CHECK(r.series.at("batch_sequences")[i] <= 1.0 + 1e-9);  // one sequence at a time
  }
  CHECK(want_queue > 0.5 * waited);
  CHECK(queue_integral == Approx(want_queue).epsilon(1e-9));
  CHECK(flight_integral == Approx(want_flight).epsilon(1e-9));
}

TEST_CASE("engine::serving: queueing delays are never below 0, and exactly 0 for a request admitted on arrival",
          "[engine][serving]") {
  // Disaggregated pools admit each lone request at once: the clock's last-bit rounding used to show as -2e-16 s.
  const auto r = simulate(load("  arrival: {type: poisson, rate_per_s: 5}\n  prompt_length: {type: fixed, value: 500}\n"
                               "  output_length: {type: fixed, value: 10}\n  duration_s: 4\n  record_requests: true\n"
                               "  pools:\n    - {role: prefill, replicas: 1, tensor: 4}\n    - {role: decode, replicas: 1, tensor: 4}\n"));
  REQUIRE(!r.requests.empty());
  long long zeros = 0;
  for (const auto& q : r.requests) {
    CHECK(q.queue_s >= 0.0);
    if (q.queue_s == 0.0) ++zeros;
  }
  CHECK(zeros > 0);
  CHECK(r.queue.mean_s >= 0.0);
  CHECK(r.queue.p50_s >= 0.0);
}

TEST_CASE("engine::serving: the backlog grows past the capacity and stays flat below it", "[engine][serving]") {
  // One tensor-parallel replica holding 4 sequences of 200 output tokens: its capacity is a few requests per second.
  auto at = [&](double rate) {
    return simulate(load("  arrival: {type: constant, rate_per_s: " + std::to_string(rate) + "}\n  prompt_length: {type: fixed, value: 100}\n"
                         "  output_length: {type: fixed, value: 200}\n  duration_s: 40\n  warmup_s: 5\n"
                         "  pools:\n    - {replicas: 1, tensor: 8}\n  scheduler: {type: continuous, max_sequences: 4}\n"));
  };
  const auto light = at(1.0);
  // Service: 4 sequences at a time, each about 200 decode iterations long.
  const double capacity = 4.0 / (light.e2e.mean_s);
  INFO("capacity about " << capacity << " requests/s");
  CHECK(std::abs(light.backlog_growth_fraction) <= 0.02);
  CHECK(light.output_tokens_window == Approx(light.output_tokens_requested_window).epsilon(0.05));
  const auto heavy = at(2.0 * capacity);
  // Serving half of what arrives: about half of the second half's arrivals stay in the system.
  CHECK(heavy.backlog_growth_fraction == Approx(0.5).margin(0.1));
  CHECK(heavy.output_tokens_window < 0.6 * heavy.output_tokens_requested_window);
  // Requests/s counts the requests served (finishing) in the window, as tokens/s the tokens generated there: an
  // overloaded deployment serves about half of its arrivals; each served request carries its 200 tokens.
  for (const auto* r : {&light, &heavy}) {
    const double window = r->window_end_s - r->window_start_s;
    CHECK(r->throughput_rps == Approx(static_cast<double>(r->requests_completed) / window).epsilon(1e-12));
    CHECK(r->throughput_rps * 200.0 == Approx(r->output_tokens_per_s).epsilon(0.05));
    CHECK(r->goodput_rps == Approx(r->goodput_fraction * r->throughput_rps).epsilon(1e-12));
  }
  CHECK(heavy.throughput_rps < 0.6 * static_cast<double>(heavy.requests_measured) / (heavy.window_end_s - heavy.window_start_s));
}

TEST_CASE("engine::serving: a window without requests is refused before anything runs, naming the warm-up",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  SECTION("generated arrivals: a warm-up that leaves no arrival in the window") {
    const auto s = load("  arrival: {type: constant, rate_per_s: 1}\n  prompt_length: {type: fixed, value: 10}\n"
                        "  output_length: {type: fixed, value: 5}\n  duration_s: 3\n  warmup_s: 2.999\n  pools:\n    - {replicas: 8}\n");
    try {
      en::check_feasible(s, catalog());
      FAIL("no error");
    } catch (const moesim::InputError& e) {
      const std::string what = e.what();
      CHECK(what.find("test.yaml") != std::string::npos);
      CHECK(what.find("serving.warmup_s") != std::string::npos);
      CHECK(what.find("no request arrives in the measured window") != std::string::npos);
    }
  }
  SECTION("a trace whose last request arrives before the warm-up ends") {
    const auto p = trace(dir, "early.csv", {{0.5, 100, 10}, {1.0, 100, 10}});
    const auto s = load(trace_serving(p, "{type: continuous}") + "  warmup_s: 10\n");
    CHECK_THROWS_WITH(en::check_feasible(s, catalog()), Catch::Contains("serving.warmup_s") && Catch::Contains("from 0.5 to 1 s"));
  }
}


TEST_CASE("engine::serving: a window that outlasts its last request is charged its idle time to the window's end",
          "[engine][serving]") {
  // One request every 10 s over a 100 s window: each is done in milliseconds, the last (at 90 s) long before the
  // window's end. Every joule-per-second figure divides by the window, so the chips' energy must cover all of it:
  // at least every chip's job-resident draw (active_w) for 100 s, and the power series must reach the window's end.
  const auto s = load("  arrival: {type: constant, rate_per_s: 0.1}\n  prompt_length: {type: fixed, value: 200}\n"
                      "  output_length: {type: fixed, value: 20}\n  duration_s: 100\n  warmup_s: 0\n  pools:\n    - {replicas: 2, tensor: 4}\n");
  const auto r = simulate(s);
  REQUIRE(r.makespan_s < 95.0);
  REQUIRE(r.window_end_s == Approx(100.0));
  const auto& h100 = catalog().accelerator("h100");
  const double floor_j = 8 * (std::min(h100.idle_w, h100.active_w) + h100.host_overhead_w) * (r.window_end_s - r.window_start_s);
  const auto [plugin, series] = window_joules(r);
  CHECK(plugin >= floor_j * (1.0 - 1e-9));
  CHECK(plugin < 8 * h100.full_w * (r.window_end_s - r.window_start_s));
  CHECK(series == Approx(plugin).epsilon(0.001));
  CHECK(r.series.at("t_s").back() + r.series_interval_s >= r.window_end_s - 1e-9);
}

TEST_CASE("engine::serving: pipeline stages waiting for each other are charged their waiting power, not the next stage's load",
          "[engine][serving]") {
  // The same replica split 8 ways by tensor or by pipeline reads the same bytes per chip per token, and one
  // stage works at a time: the chips' energy above their waiting draw must not grow with the number of stages
  // (it did, about as the stage count, while each stage's wait was billed at its next task's load).
  auto run = [&](const std::string& layout) {
    return simulate(sc::load_string(
        "name: t\nseed: 9\nmodel: {layers: 8, d_model: 2048, d_ff: 8192, heads: 16, kv_heads: 8, experts: 8, top_k: 2,"
        " vocab: 32000, seq_len: 4096, activation: swiglu}\nserving:\n  arrival: {type: constant, rate_per_s: 5}\n"
        "  prompt_length: {type: fixed, value: 400}\n  output_length: {type: fixed, value: 150}\n  duration_s: 8\n"
        "  warmup_s: 1\n  pools:\n    - {replicas: 1, " + layout + "}\n" + kCluster,
        "test.yaml", catalog()));
  };
  const auto tensor = run("tensor: 8"), pipe = run("pipeline: 8");
  const auto& h100 = catalog().accelerator("h100");
  auto above = [&](const en::ServingResult& r) {
    return window_joules(r).first - 8 * (h100.active_w + h100.host_overhead_w) * (r.window_end_s - r.window_start_s);
  };
  REQUIRE(above(tensor) > 0.0);
  // The pipeline's stages each compute one layer on one chip: the same work, at most a little less efficiently
  // (no tensor collectives, one chip's kernels), never several times the dynamic energy.
  CHECK(above(pipe) < 1.5 * above(tensor));
  for (const auto* r : {&tensor, &pipe}) {
    const auto [plugin, series] = window_joules(*r);
    CHECK(series == Approx(plugin).epsilon(0.001));
  }
}

TEST_CASE("engine::serving: requests arriving at the same instant join one batch, whatever the router or layout",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Four requests at one instant on two replicas: each replica prefills its two in one iteration, so all four
  // have one TTFT. Load-aware routers and pipelines take the iteration-by-iteration path, whose arrivals once
  // woke a replica before the instant's other arrivals were queued (two requests then waited an iteration).
  const auto p = trace(dir, "burst.csv", {{0.001, 100, 10}, {0.001, 100, 10}, {0.001, 100, 10}, {0.001, 100, 10}});
  auto run = [&](const std::string& router, const std::string& pools) {
    return simulate(load(trace_serving(p, "{type: continuous}", pools) + "  router: {type: " + router + "}\n"));
  };
  const auto rr = run("round_robin", "    - {replicas: 2, tensor: 4}\n");
  REQUIRE(rr.requests.size() == 4);
  for (const char* router : {"least_outstanding", "least_kv"}) {
    INFO(router);
    const auto r = run(router, "    - {replicas: 2, tensor: 4}\n");
    REQUIRE(r.requests.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(r.requests[i].first_token_s == Approx(rr.requests[i].first_token_s).epsilon(1e-12));
      CHECK(r.requests[i].queue_s == 0.0);
    }
  }
  for (const char* pools : {"    - {replicas: 1, tensor: 4, pipeline: 2}\n", "    - {replicas: 1, tensor: 8}\n"}) {
    INFO(pools);
    const auto r = run("round_robin", pools);
    REQUIRE(r.requests.size() == 4);
    for (std::size_t i = 1; i < 4; ++i) CHECK(r.requests[i].first_token_s == r.requests[0].first_token_s);
  }
}

TEST_CASE("engine::serving: the series cover the whole window, and KV use is a time average whatever the interval",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Offline, shorter than its 10 ms default interval: one point covering the run, not none.
  const auto p = trace(dir, "two.csv", {{0, 400, 15}, {0, 400, 15}});
  auto run = [&](const std::string& extra) {
    return simulate(load(trace_serving(p, "{type: continuous}", "    - {replicas: 1, tensor: 8}\n") + extra));
  };
  const auto coarse = run(""), fine = run("  sample_interval_s: 0.0001\n");
  REQUIRE(coarse.makespan_s < 0.01);
  REQUIRE(coarse.series.at("t_s").size() == 1);
  CHECK(coarse.series_last_interval_s == Approx(coarse.makespan_s).epsilon(1e-12));
  // Held blocks from admission to completion: the mean is no sampling artefact, and the series integrate to it.
  CHECK(coarse.mean_kv_use > 0.0);
  CHECK(coarse.mean_kv_use == Approx(fine.mean_kv_use).epsilon(1e-9));
  CHECK(coarse.series.at("kv_use")[0] == Approx(coarse.mean_kv_use).epsilon(1e-9));
  const auto& t = fine.series.at("t_s");
  const auto& kv = fine.series.at("kv_use");
  double area = 0.0;
  for (std::size_t i = 0; i < t.size(); ++i) area += kv[i] * (i + 1 < t.size() ? t[i + 1] - t[i] : fine.series_last_interval_s);
  CHECK(area == Approx(fine.mean_kv_use * fine.makespan_s).epsilon(1e-6));
  for (const auto* r : {&coarse, &fine}) {
    const auto [plugin, series] = window_joules(*r);
    CHECK(series == Approx(plugin).epsilon(1e-9));
  }
  // Open loop, an interval that does not divide the window: shortened to divide it, so nothing is left out.
  const auto q = trace(dir, "three.csv", {{0, 100, 10}, {1, 100, 10}, {2, 100, 10}});
  const auto open = simulate(load(trace_serving(q, "{type: continuous}", "    - {replicas: 1, tensor: 8}\n") +
                                  "  sample_interval_s: 0.7\n"));
  CHECK(open.series_interval_s == Approx(2.0 / 3.0).epsilon(1e-12));
  const auto [plugin, series] = window_joules(open);
  CHECK(series == Approx(plugin).epsilon(1e-9));
}

TEST_CASE("engine::serving: the series cover the whole run, from 0 to the last completion, a shorter first and last point included",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Warm-up 1 s, arrivals to 3 s: a 2 s window of 7 intervals of 2/7 s (sample_interval_s 0.3, shortened to divide it).
  // The grid anchored at the window's start puts its first point at 1 - 3 x 2/7 = 1/7 s, so a shorter first point
  // covers [0, 1/7). The last request (3000 tokens from 2.9 s) drains far past the window's end, inside an interval:
  // a shorter last point covers the rest. (The series once started at 1/7 s and stopped at the last sample before the
  // last completion: requests in flight then were in no point.)
  const auto p = trace(dir, "drain.csv", {{0.0, 200, 50}, {0.5, 200, 50}, {1.5, 200, 50}, {2.9, 200, 3000}});
  const auto r = simulate(load("  arrival: {type: trace, trace_csv: " + p + "}\n  prompt_length: {type: trace}\n"
                               "  output_length: {type: trace}\n  record_requests: true\n  warmup_s: 1\n  duration_s: 3\n"
                               "  sample_interval_s: 0.3\n  pools:\n    - {replicas: 1, tensor: 8}\n"));
  REQUIRE(r.window_start_s == 1.0);
  REQUIRE(r.window_end_s == 3.0);
  REQUIRE(r.series_interval_s == Approx(2.0 / 7.0).epsilon(1e-12));
  REQUIRE(r.makespan_s > 3.5);
  const auto& t = r.series.at("t_s");
  REQUIRE(t.size() >= 3);
  CHECK(t.front() == 0.0);
  CHECK(r.series_first_interval_s == Approx(1.0 / 7.0).epsilon(1e-9));
  CHECK(t[1] == Approx(r.series_first_interval_s).epsilon(1e-12));
  CHECK(r.series_last_interval_s > 0.0);
  CHECK(r.series_last_interval_s < r.series_interval_s);
  CHECK(t.back() + r.series_last_interval_s == Approx(r.makespan_s).epsilon(1e-12));
  for (std::size_t i = 2; i + 1 < t.size(); ++i) CHECK(t[i] - t[i - 1] == Approx(r.series_interval_s).epsilon(1e-9));
  // Every request is in the points from its arrival to its end. The first (at 0, some 50 ms) is in the first point;
  // the last, alone in flight through the last point, is all of it.
  const auto& flight = r.series.at("batch_sequences");
  CHECK(flight.front() > 0.0);
  CHECK(flight.front() <= 1.0 + 1e-9);
  CHECK(flight.back() == Approx(1.0).epsilon(1e-9));
  // From the window's start (a grid point) on, the series integrate to the measured requests' own times in flight
  // (the warm-up's two are done by 1 s).
  REQUIRE(r.requests.size() == 2);
  auto span = [&](std::size_t i) { return i + 1 < t.size() ? t[i + 1] - t[i] : r.series_last_interval_s; };
  double queue_integral = 0.0, flight_integral = 0.0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    queue_integral += r.series.at("queue_requests")[i] * span(i);
    if (t[i] >= r.window_start_s - 1e-9) flight_integral += flight[i] * span(i);
  }
  CHECK(queue_integral == Approx(0.0).margin(1e-12));  // one replica, never full: every request admitted on arrival
  double want_flight = 0.0;
  for (const auto& q : r.requests) want_flight += q.end_s - q.arrival_s - q.queue_s;
  CHECK(flight_integral == Approx(want_flight).epsilon(1e-9));
  // The window's part still integrates to the window's joules.
  const auto [plugin, series] = window_joules(r);
  CHECK(series == Approx(plugin).epsilon(1e-9));
  // One site: its power series is the total's.
  REQUIRE(r.site_power_w.size() == 1);
  CHECK(r.site_power_w[0] == r.series.at("power_w"));
}

TEST_CASE("engine::serving: max_batched_tokens caps a chunked iteration, and a static batch is bounded by its count",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  const auto p = trace(dir, "three.csv", {{0, 600, 3}, {0, 600, 3}, {0, 600, 3}});
  const std::string pools = "    - {replicas: 1, tensor: 8}\n";
  // Static (FasterTransformer): the three prompts form one batch, whatever their tokens add up to.
  const auto narrow = simulate(load(trace_serving(p, "{type: static, max_batched_tokens: 1000}", pools)));
  REQUIRE(narrow.requests.size() == 3);
  CHECK(narrow.requests[2].first_token_s == narrow.requests[0].first_token_s);
  // Chunked: the smaller of chunk_tokens and max_batched_tokens is an iteration's budget.
  const auto capped = simulate(load(trace_serving(p, "{type: chunked_prefill, chunk_tokens: 1000, max_batched_tokens: 100}", pools)));
  const auto chunk100 = simulate(load(trace_serving(p, "{type: chunked_prefill, chunk_tokens: 100}", pools)));
  const auto chunk1000 = simulate(load(trace_serving(p, "{type: chunked_prefill, chunk_tokens: 1000}", pools)));
  CHECK(capped.iterations == chunk100.iterations);
  CHECK(capped.iterations > chunk1000.iterations);
}

TEST_CASE("engine::serving: under a power limit the chips stay within it and take longer", "[engine][serving][power]") {
  moesim::testing::TempDir dir;
  // Long prompts all at once: the prefill GEMMs are compute-bound and draw more than 500 W at the nominal clock.
  std::vector<std::array<double, 3>> rows;
  for (int i = 0; i < 64; ++i) rows.push_back({0.0, 4000.0, 4.0});
  const auto p = trace(dir, "long.csv", rows);
  const auto& h100 = catalog().accelerator("h100");
  auto run = [&](std::optional<double> limit) {
    sc::Scenario s = load(trace_serving(p, "{type: continuous, max_batched_tokens: 16384}"));
    s.cluster.power_limit_w = limit;
    return simulate(s);
  };
  const auto nominal = run(std::nullopt), limited = run(500.0);
  auto peak_chip_w = [&](const en::ServingResult& r) {
    const auto& w = r.series.at("power_w");
    return *std::max_element(w.begin(), w.end()) / 8.0 - h100.host_overhead_w;
  };
  auto last_end = [](const en::ServingResult& r) {
    double t = 0.0;
    for (const auto& q : r.requests) t = std::max(t, q.end_s);
    return t;
  };
  REQUIRE(peak_chip_w(nominal) > 500.0);  // the limit binds
  CHECK(peak_chip_w(limited) <= 500.0 * (1.0 + 1e-9));
  CHECK(last_end(limited) > last_end(nominal));
  // Dynamic energy per unit of work falls with the voltage: the chips' joules above their active power are fewer.
  auto dynamic_j = [&](const en::ServingResult& r) {
    return window_joules(r).first - 8 * (h100.active_w + h100.host_overhead_w) * (r.window_end_s - r.window_start_s);
  };
  CHECK(dynamic_j(limited) < dynamic_j(nominal));
  // The power series still integrates to the energy plugin's joules.
  const auto [plugin, series] = window_joules(limited);
  CHECK(series == Approx(plugin).epsilon(1e-6));
  CHECK(limited.output_tokens_window == nominal.output_tokens_window);
}
