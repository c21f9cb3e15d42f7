// SPDX-License-Identifier: Apache-2.0
// The serving driver's window figures against hand numbers: chips held in the job between iterations (active, not
// idle, power), the mean KV use whatever the sampling interval, the output tokens of the measured requests, and a
// trace that serves nothing before serving.duration_s.
#include <catch2/catch.hpp>

#include <array>
#include <fstream>
#include <string>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim_test/temp_dir.hpp"
#include "serving_test_support.hpp"

namespace sc = moesim::scenario;
namespace en = moesim::engine;

namespace {

using moesim::engine::serving_test::catalog;
using moesim::engine::serving_test::simulate;
using moesim::engine::serving_test::trace;
using moesim::engine::serving_test::window_joules;

const char* kModel = "model: {layers: 4, d_model: 1024, d_ff: 4096, heads: 8, vocab: 32000, seq_len: 2048}\n";
const char* kH100x8 = "cluster: {accelerator: h100, count: 8}\nplacement:\n  - datacenter: {name: dcA, pue: 1.0, gross_kgco2e_per_kwh: 0.5}\n";

sc::Scenario load(const std::string& serving, const std::string& cluster = kH100x8) {
  return sc::load_string(std::string("name: t\nseed: 9\n") + kModel + "serving:\n" + serving + cluster, "test.yaml", catalog());
}

std::string trace_serving(const std::string& path) {
  return "  arrival: {type: trace, trace_csv: " + path + "}\n  prompt_length: {type: trace}\n  output_length: {type: trace}\n"
         "  record_requests: true\n  pools: [{replicas: 1, tensor: 8}]\n  scheduler: {type: continuous}\n";
}

}  // namespace

TEST_CASE("engine::serving: chips waiting between iterations draw the active (in-job) power, not idle", "[engine][serving]") {
  // TPU v4 (profiles/accelerators/tpu_v4.yaml): idle 90 W (powered on, no job), active 121 W (in a job, waiting),
  // plus the 156 W host share per chip: a deployment's chips wait at 121 + 156 = 277 W, never at 90 + 156 = 246 W.
  const auto& v4 = catalog().accelerator("tpu_v4");
  REQUIRE(v4.idle_w == 90.0);
  REQUIRE(v4.active_w == 121.0);
  REQUIRE(v4.host_overhead_w == 156.0);
  const double floor_w = 121.0 + 156.0;  // 277 W per chip
  const std::string cluster = "cluster: {accelerator: tpu_v4, count: 4}\nplacement:\n  - datacenter: {name: dcA, pue: 1.0, gross_kgco2e_per_kwh: 0.5}\n";
  SECTION("a deployment at very low load averages the active floor") {
    // One 80-token request every 10 s on 4 chips for 100 s: a few ms of work per request, so the chips wait
    // over 99.9 % of the window. Idle waiting gave 246 W per chip.
    const auto r = simulate(load("  arrival: {type: constant, rate_per_s: 0.1}\n  prompt_length: {type: fixed, value: 16}\n"
                                 "  output_length: {type: fixed, value: 64}\n  duration_s: 100\n  warmup_s: 0\n"
                                 "  pools: [{replicas: 1, tensor: 4}]\n",
                                 cluster));
    const double window = r.window_end_s - r.window_start_s;
    REQUIRE(window == Approx(100.0));
    const auto [plugin, series] = window_joules(r);
    const double per_chip_w = plugin / (4 * window);
    CHECK(per_chip_w >= floor_w * (1.0 - 1e-9));
    CHECK(per_chip_w < floor_w + 1.0);  // the work adds well under a watt on average
    CHECK(series == Approx(plugin).epsilon(1e-6));
    for (double p : r.series.at("power_w")) CHECK(p >= 4 * floor_w * (1.0 - 1e-9));
  }
  SECTION("pipeline stages waiting for each other, offline, never fall below the floor") {
    // 4 stages on 4 chips: one stage computes at a time, the three others wait in the job.
    const auto r = simulate(load("  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 16}\n"
                                 "  output_length: {type: fixed, value: 64}\n  requests: 64\n  pools: [{replicas: 1, pipeline: 4}]\n",
                                 cluster));
    const auto [plugin, series] = window_joules(r);
    CHECK(series == Approx(plugin).epsilon(1e-6));
    CHECK(plugin / (4 * (r.window_end_s - r.window_start_s)) > floor_w);
    for (double p : r.series.at("power_w")) CHECK(p >= 4 * floor_w * (1.0 - 1e-9));
  }
}

TEST_CASE("engine::serving: the mean KV use is the block-seconds of the window whatever the sampling interval",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  // A 100-token prompt takes ceil(100 / 16) = 7 blocks of 16 tokens, and its 10 output tokens fit them (at most 109
  // tokens cached): each request holds 7 blocks from its admission to its end. The window is [1, 4] s (warm-up 1 s,
  // duration 4 s); a request arrives at 1 s, on the window's edge, where the replica working ahead of the clock (fast
  // path) once counted its whole stay as held before the window when the monitor had no sample due.
  const auto p = trace(dir, "kv.csv", {{0.2, 100, 10}, {1.0, 100, 10}, {1.7, 100, 10}, {2.4, 100, 10}, {3.1, 100, 10}});
  std::vector<en::ServingResult> runs;
  for (const char* interval : {"0", "0.5", "1", "3", "0.37"})
    runs.push_back(simulate(load(trace_serving(p) + "  duration_s: 4\n  warmup_s: 1\n  sample_interval_s: " + interval + "\n")));
  const auto& r = runs.front();
  REQUIRE(r.window_start_s == 1.0);
  REQUIRE(r.window_end_s == 4.0);
  REQUIRE(r.requests.size() == 4);  // arriving at 1.0, 1.7, 2.4 and 3.1 s; the one at 0.2 s is done by 1 s
  double block_s = 0.0;
  for (const auto& q : r.requests) {
    REQUIRE(q.end_s < 4.0);
    block_s += 7.0 * (q.end_s - (q.arrival_s + q.queue_s));
  }
  REQUIRE(r.pools.size() == 1);
  const double hand = block_s / (static_cast<double>(r.pools[0].kv_blocks) * 3.0);
  CHECK(r.mean_kv_use > 0.0);
  for (const auto& x : runs) {
    INFO("sample interval " << x.series_interval_s);
    CHECK(x.mean_kv_use == Approx(hand).epsilon(1e-6));
    CHECK(x.mean_kv_use == Approx(r.mean_kv_use).epsilon(1e-12));
  }
}

TEST_CASE("engine::serving: the window's output tokens of the measured requests exclude the warm-up's", "[engine][serving]") {
  moesim::testing::TempDir dir;
  // Window [0.01, 2] s (warm-up 0.01 s, to the last arrival). The 400-token request arriving at 0 is warm-up: its
  // tokens after 0.01 s count in output_tokens_window (the server's view) but not as measured. The measured requests,
  // at 1 and 2 s, ask for 10 + 10 = 20 tokens; the one at 1 s generates its 10 before 2 s, the one at 2 s none in the
  // window (it arrives at its end): 10 measured tokens, half of those asked for.
  const auto p = trace(dir, "warm.csv", {{0.0, 100, 400}, {1.0, 100, 10}, {2.0, 100, 10}});
  const auto r = simulate(load(trace_serving(p) + "  warmup_s: 0.01\n"));
  REQUIRE(r.window_start_s == 0.01);
  REQUIRE(r.window_end_s == 2.0);
  REQUIRE(r.requests.size() == 2);
  REQUIRE(r.requests[0].end_s < 2.0);
  CHECK(r.output_tokens_requested_window == 20.0);
  CHECK(r.output_tokens_measured_window == 10.0);
  CHECK(r.output_tokens_measured_window <= r.output_tokens_requested_window);
  CHECK(r.output_tokens_window > r.output_tokens_measured_window);  // the warm-up request's tokens in the window
  // Stored and read back.
  CHECK(en::serving_from_json(en::to_json(r)).output_tokens_measured_window == 10.0);
}

TEST_CASE("engine::serving: a trace whose every arrival is at or after duration_s is refused naming the trace",
          "[engine][serving]") {
  moesim::testing::TempDir dir;
  const auto p = trace(dir, "late.csv", {{5.0, 100, 10}, {6.0, 100, 10}});
  const auto s = load(trace_serving(p) + "  duration_s: 4\n");
  try {
    en::check_serving_feasible(s, catalog());
    FAIL("expected an InputError");
  } catch (const moesim::InputError& e) {
    CHECK(e.file() == "test.yaml");
    CHECK(e.key() == "serving.duration_s");
    const std::string what = e.message();
    CHECK(what.find(p) != std::string::npos);
    CHECK(what.find("first arrival is at 5 s") != std::string::npos);
    CHECK(what.find("serving.duration_s = 4 s") != std::string::npos);
  }
}
