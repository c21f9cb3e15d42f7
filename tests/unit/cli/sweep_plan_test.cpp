// SPDX-License-Identifier: Apache-2.0
// Sharding a sweep: --shard and the Slurm environment, the cost proxy, and the balance of the assignment.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "commands.hpp"
#include "sweep_plan.hpp"

using moesim::cli::assign_shards;
using moesim::cli::estimated_cost;
using moesim::cli::parse_shard;
using moesim::cli::UsageError;
using nlohmann::json;

TEST_CASE("cli::parse_shard: --shard wins, then SLURM_ARRAY_TASK_ID/COUNT (from the array's first index), else 0/1",
          "[cli][sweep]") {
  auto s = parse_shard("", nullptr, nullptr, nullptr);
  CHECK(s.index == 0);
  CHECK(s.count == 1);
  s = parse_shard("3/4", "0", "2", nullptr);
  CHECK(s.index == 3);
  CHECK(s.count == 4);
  s = parse_shard("", "2", "4", nullptr);
  CHECK(s.index == 2);
  CHECK(s.count == 4);
  s = parse_shard("", "5", "4", "2");  // --array=2-5
  CHECK(s.index == 3);
  s = parse_shard("", "7", nullptr, nullptr);  // not an array job: one shard
  CHECK(s.count == 1);
  for (const char* bad : {"4/4", "a/4", "1/0", "1", "/4", "1/", "-1/4", "1/4/2", " 1/4"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_shard(bad, nullptr, nullptr, nullptr), UsageError);
  }
  CHECK_THROWS_AS(parse_shard("", "x", "4", nullptr), UsageError);
  CHECK_THROWS_AS(parse_shard("", "4", "4", nullptr), UsageError);
  CHECK_THROWS_AS(parse_shard("", "1", "0", nullptr), UsageError);
  CHECK_THROWS_AS(parse_shard("", "1", "4", "2"), UsageError);
}

TEST_CASE("cli::estimated_cost: chips x layers x simulated steps (training), x requests (serving)", "[cli][sweep]") {
  const json t = {{"cluster", {{"count", 64}}}, {"model", {{"layers", 12}}}, {"training", {{"steps_simulated", 3}}}};
  CHECK(estimated_cost(t) == 64.0 * 12 * 3);
  const json v = {{"cluster", {{"count", 8}}}, {"model", {{"layers", 4}}}, {"serving", {{"requests", 1000}}}};
  CHECK(estimated_cost(v) == 8.0 * 4 * 1000);
  const json d = {{"cluster", {{"count", 8}}}, {"model", {{"layers", 4}}},
                  {"serving", {{"duration_s", 60.0}, {"arrival", {{"rate_per_s", 2.0}}}}}};
  CHECK(estimated_cost(d) == 8.0 * 4 * 120);
  CHECK(estimated_cost(json::object()) == 1.0);  // never zero: every point costs something
}

TEST_CASE("cli::assign_shards: cost-balanced (LPT), deterministic, every point exactly once", "[cli][sweep]") {
  // One expensive point and many cheap ones: I mod N would put the big one with a quarter of the small ones.
  std::vector<double> costs = {100.0};
  for (int i = 0; i < 99; ++i) costs.push_back(1.0 + (i % 7));
  for (int n : {1, 2, 3, 4, 7}) {
    INFO(n << " shards");
    const auto owner = assign_shards(costs, n);
    REQUIRE(owner.size() == costs.size());
    CHECK(owner == assign_shards(costs, n));
    std::vector<double> load(static_cast<std::size_t>(n), 0.0);
    for (std::size_t i = 0; i < costs.size(); ++i) {
      REQUIRE(owner[i] >= 0);
      REQUIRE(owner[i] < n);
      load[static_cast<std::size_t>(owner[i])] += costs[i];
    }
    const double total = std::accumulate(costs.begin(), costs.end(), 0.0);
    const double biggest = *std::max_element(costs.begin(), costs.end());
    const double lower_bound = std::max(total / n, biggest);  // no assignment can do better
    // Graham's bound for LPT: makespan <= (4/3 - 1/(3n)) x optimal.
    CHECK(*std::max_element(load.begin(), load.end()) <= (4.0 / 3.0 - 1.0 / (3.0 * n)) * lower_bound + 1e-9);
  }
  // Round robin would give shard 0 of 4 the 100 and 25 cheap points; LPT gives it the 100 alone plus few.
  const auto owner = assign_shards(costs, 4);
  double load0 = 0.0;
  for (std::size_t i = 0; i < costs.size(); ++i)
    if (owner[i] == owner[0]) load0 += costs[i];
  CHECK(load0 < 100.0 + 25.0);
  // Equal costs spread evenly.
  const auto even = assign_shards(std::vector<double>(10, 1.0), 3);
  CHECK(std::count(even.begin(), even.end(), 0) == 4);
  CHECK(std::count(even.begin(), even.end(), 1) == 3);
  CHECK(std::count(even.begin(), even.end(), 2) == 3);
}
