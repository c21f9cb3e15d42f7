// SPDX-License-Identifier: Apache-2.0
// simulate_job on a small real scenario (profiles/ catalog), each run in its own process: determinism
// (same scenario + seed -> bit-identical step times), sensitivity to the seed, the mean / spread /
// breakdown / MFU bookkeeping, per-site energy bounds, and the JSON that carries the result out of the
// child process.

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/platform/platform.hpp"
#include "moesim/scenario/loader.hpp"

using moesim::engine::JobResult;
using moesim::engine::run_isolated;
namespace engine = moesim::engine;

namespace {

const moesim::catalog::Catalog& real_catalog() {
  static const moesim::catalog::Catalog cat = moesim::catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return cat;
}

/** 8 H100s in one node, 8 experts with Zipf-skewed dropless routing: every step draws a different
 *  expert load, so step times differ between steps and between seeds. */
moesim::scenario::Scenario zipf_scenario(int seed) {
  const std::string yaml = "name: engine-job-test\n"
                           "seed: " + std::to_string(seed) + "\n"
                           "model: {layers: 2, d_model: 1024, d_ff: 4096, heads: 8, experts: 8, top_k: 2, vocab: 32000,\n"
                           "        seq_len: 1024, dtype: bf16}\n"
                           "training: {tokens: 1.0e10, batch_tokens: 131072, steps_simulated: 3}\n"
                           "routing: {type: zipf, skew: 1.2, dropless: true}\n"
                           "parallelism: {expert: 8}\n"
                           "cluster: {accelerator: h100, count: 8}\n"
                           "placement: [{datacenter: gcp_us_central1_2023}]\n";
  return moesim::scenario::load_string(yaml, "engine-job-test.yaml", real_catalog());
}

/** 8 H100s, 8 experts, uniform top-2 routing with Mesh-TensorFlow's capacity floor(cf x S / E), groups of 1024
 *  (16 a device) and `routing_extra` added to the routing section. */
moesim::scenario::Scenario top2_scenario(double capacity_factor, const std::string& routing_extra) {
  const std::string yaml = "name: engine-job-top2\n"
                           "model: {layers: 2, d_model: 1024, d_ff: 4096, heads: 8, experts: 8, top_k: 2, vocab: 32000,\n"
                           "        seq_len: 1024, dtype: bf16, capacity_factor: " + std::to_string(capacity_factor) + "}\n"
                           "training: {tokens: 1.0e10, batch_tokens: 131072, steps_simulated: 2}\n"
                           "routing: {type: uniform, group_size_tokens: 1024, group_split: mesh_tensorflow,\n"
                           "          capacity_counts_top_k: false" + routing_extra + "}\n"
                           "parallelism: {expert: 8}\n"
                           "cluster: {accelerator: h100, count: 8}\n"
                           "placement: [{datacenter: gcp_us_central1_2023}]\n";
  return moesim::scenario::load_string(yaml, "engine-job-top2.yaml", real_catalog());
}

/** E[(X - c)+] for X ~ Binomial(n, p), term by term (independent of the Router). */
double expected_overflow(int n, double p, int c) {
  double e = 0.0;
  for (int x = c + 1; x <= n; ++x)
    e += (x - c) * std::exp(std::lgamma(n + 1.0) - std::lgamma(x + 1.0) - std::lgamma(n - x + 1.0) + x * std::log(p) +
                            (n - x) * std::log1p(-p));
  return e;
}

JobResult simulate_in_child(const moesim::scenario::Scenario& s) {
  return engine::job_from_json(run_isolated([&] { return engine::to_json(engine::simulate_job(s, real_catalog())); }).value);
}

}  // namespace

TEST_CASE("engine::simulate_job: the same scenario and seed give bit-identical step times", "[engine][job]") {
  const auto s = zipf_scenario(7);
  const JobResult a = simulate_in_child(s);
  const JobResult b = simulate_in_child(s);
  REQUIRE(a.step_times_s.size() == 3);
  CHECK(a.step_times_s == b.step_times_s);  // exact: same draws, same event order, same doubles
  CHECK(a.step_time_s == b.step_time_s);
  CHECK(a.sites.at(0).chip_energy_per_step_j == b.sites.at(0).chip_energy_per_step_j);
  CHECK(a.breakdown_s == b.breakdown_s);

  SECTION("the routing draws matter: steps differ, and another seed gives other times") {
    CHECK(a.step_time_spread_s > 0.0);
    const JobResult c = simulate_in_child(zipf_scenario(8));
    CHECK(c.step_times_s != a.step_times_s);
  }
}

TEST_CASE("engine::simulate_job: step statistics, breakdown, MFU and energy bounds", "[engine][job]") {
  const auto s = zipf_scenario(3);
  const JobResult r = simulate_in_child(s);
  const auto& t = r.step_times_s;
  REQUIRE(t.size() == 3);
  const double mean = std::accumulate(t.begin(), t.end(), 0.0) / 3.0;
  double ss = 0.0;
  for (double x : t) ss += (x - mean) * (x - mean);
  CHECK(r.step_time_s == Approx(mean).epsilon(1e-15));
  CHECK(r.step_time_spread_s == Approx(std::sqrt(ss / 2.0)).epsilon(1e-12));  // sample standard deviation
  CHECK(r.steps == Approx(1e10 / 131072.0));
  CHECK(r.train_time_s == Approx(r.steps * r.step_time_s).epsilon(1e-15));
  CHECK(r.tokens_dropped_fraction == 0.0);  // dropless

  double cp = 0.0;
  for (const auto& [k, v] : r.breakdown_s) cp += v;
  CHECK(cp == Approx(r.step_time_s).epsilon(1e-12));  // mean of per-step critical paths = mean step time

  const auto& accel = real_catalog().accelerator("h100");
  CHECK(r.mfu == Approx(r.model_flops_per_step / (r.step_time_s * 8 * accel.peak_flops_for("bf16"))).epsilon(1e-12));
  CHECK(r.mfu > 0.0);
  CHECK(r.mfu < 1.0);
  CHECK(r.hfu >= r.mfu);

  // Every chip draws at least the active power (the job runs) and at most full power for the whole step.
  const auto p = moesim::platform::power_states(accel);
  REQUIRE(r.sites.size() == 1);
  CHECK(r.sites[0].chips == 8);
  const double e = r.sites[0].chip_energy_per_step_j;
  CHECK(e >= 8 * p.active_w * r.step_time_s * (1 - 1e-9));
  CHECK(e <= 8 * p.full_w * r.step_time_s * (1 + 1e-9));
  CHECK(r.peak_chip_power_w == p.full_w);

  SECTION("the result survives the JSON that carries it out of the child") {
    const JobResult back = engine::job_from_json(engine::to_json(r));
    CHECK(back.step_times_s == r.step_times_s);
    CHECK(back.breakdown_s == r.breakdown_s);
    CHECK(back.sites.at(0).link_bytes_per_step == r.sites.at(0).link_bytes_per_step);
    CHECK(back.mfu == r.mfu);
  }
}

TEST_CASE("engine::simulate_job: routing fractions of Mesh-TensorFlow's top-2 gating", "[engine][job][routing]") {
  SECTION("random policy, g2 0.1 against threshold 0.2: half the second choices dispatched") {
    // Groups of 1024 over 8 experts, capacity floor(1.0 x 1024 / 8) = 128. First choices: Binomial(1024, 1/8)
    // an expert; dispatched choices: Binomial(1024, (1 + 0.5) / 8), mean 192.
    const JobResult r = simulate_in_child(
        top2_scenario(1.0, ", second_expert_policy: random, second_expert_threshold: 0.2, second_gate: 0.1"));
    CHECK(r.second_choice_skipped_fraction == Approx(0.5).margin(0.01));
    CHECK(r.tokens_dropped_fraction == Approx(expected_overflow(1024, 1.5 / 8, 128) / 192.0).epsilon(0.02));
    CHECK(r.first_choice_dropped_fraction == Approx(expected_overflow(1024, 1.0 / 8, 128) / 128.0).epsilon(0.1));
    CHECK(r.first_choice_dropped_fraction < r.tokens_dropped_fraction);
  }
  SECTION("all: every second choice dispatched, about half of all beyond the capacity") {
    const JobResult r = simulate_in_child(top2_scenario(1.0, ""));
    CHECK(r.second_choice_skipped_fraction == 0.0);
    CHECK(r.tokens_dropped_fraction == Approx(expected_overflow(1024, 2.0 / 8, 128) / 256.0).epsilon(0.02));
  }
  SECTION("a capacity no group can fill drops nothing, exactly") {
    // floor(4 x 1024 / 8) = 512 against 256 +- 14 assignments an expert.
    const JobResult r = simulate_in_child(top2_scenario(4.0, ""));
    CHECK(r.tokens_dropped_fraction == 0.0);
    CHECK(r.first_choice_dropped_fraction == 0.0);
  }
}
