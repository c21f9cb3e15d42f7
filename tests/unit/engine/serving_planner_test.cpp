// SPDX-License-Identifier: Apache-2.0
// The serving planner (engine/planner.hpp, ServingLayout): the enumeration against a brute-force filter of every
// (replicas, data, tensor, expert, pipeline) tuple by the stated rules, a dense model, the memory screen (what does
// not fit a replica is pruned with workload::replica_memory's reason; what fits carries its weights and KV cache), and
// the unhappy paths.

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/planner.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/serving.hpp"

using moesim::engine::PlanSpace;
using moesim::engine::ServingLayout;
using moesim::engine::Verdict;

namespace {

const moesim::catalog::Catalog& real_catalog() {
  static const moesim::catalog::Catalog cat = moesim::catalog::Catalog::load(MOESIM_SOURCE_ROOT "/profiles");
  return cat;
}

PlanSpace space(long long devices, int experts, int heads, int layers, int max_tensor) {
  PlanSpace s;
  s.devices = devices;
  s.experts = experts;
  s.heads = heads;
  s.layers = layers;
  s.max_tensor = max_tensor;
  s.max_tensor_basis = "test";
  return s;
}

using Tuple = std::tuple<int, int, int, int, int>;  // replicas, data, tensor, expert, pipeline

/** Every tuple of 1..devices that the rules admit, written as the rules read (not as the enumeration loops). */
std::set<Tuple> brute_force(const PlanSpace& s) {
  std::set<Tuple> out;
  const int n = static_cast<int>(s.devices);
  for (int r = 1; r <= n; ++r)
    for (int d = 1; d <= n; ++d)
      for (int t = 1; t <= n; ++t)
        for (int e = 1; e <= n; ++e)
          for (int p = 1; p <= n; ++p) {
            if (static_cast<long long>(r) * d * t * p != s.devices) continue;
            if (s.heads % t != 0 || t > s.max_tensor) continue;
            if (s.layers % p != 0 || (s.max_pipeline > 0 && p > s.max_pipeline)) continue;
            const bool in_tensor_groups = e == 1 && d == 1;
            const bool spread = s.experts > 0 && e == d * t && e > 1 && s.experts % e == 0;
            if (!in_tensor_groups && !spread) continue;
            out.insert({r, d, t, e, p});
          }
  return out;
}

std::set<Tuple> as_set(const std::vector<ServingLayout>& ls) {
  std::set<Tuple> out;
  for (const auto& l : ls) out.insert({l.replicas, l.data, l.tensor, l.expert, l.pipeline});
  return out;
}

/** A serving scenario of a Mixtral-shaped MoE (`layers` layers) on `gpus` H100s in one NVLink node. */
std::string serving_yaml(int layers, int gpus, const std::string& dtype) {
  return "name: serving-plan-test\nmodel: {layers: " + std::to_string(layers) +
         ", d_model: 4096, d_ff: 14336, heads: 32, kv_heads: 8, experts: 8, top_k: 2, vocab: 32000, seq_len: 4096, dtype: " +
         dtype + ", activation: swiglu}\n"
         "serving:\n  arrival: {type: poisson, rate_per_s: 10}\n  prompt_length: {type: fixed, value: 100}\n"
         "  output_length: {type: fixed, value: 20}\n  duration_s: 2\n  pools: [{replicas: " + std::to_string(gpus) +
         "}]\n  scheduler: {type: continuous, max_sequences: 16, max_batched_tokens: 1024}\n"
         "cluster: {accelerator: h100, count: " + std::to_string(gpus) + ", topology: {type: nvlink_fat_tree, gpus_per_node: " +
         std::to_string(gpus) + "}}\nplacement: [{datacenter: gcp_us_central1_2023}]\n";
}

}  // namespace

TEST_CASE("engine::enumerate_serving_layouts: exactly the tuples the rules admit, each once", "[engine][planner][serving]") {
  for (const PlanSpace& s : {space(8, 8, 32, 8, 8), space(8, 8, 32, 8, 4), space(12, 4, 6, 6, 8), space(16, 64, 16, 4, 8),
                             space(6, 0, 8, 3, 8)}) {
    INFO("devices " << s.devices << " experts " << s.experts << " heads " << s.heads << " layers " << s.layers
                    << " max tensor " << s.max_tensor);
    const auto layouts = moesim::engine::enumerate_serving_layouts(s);
    const std::set<Tuple> got = as_set(layouts);
    CHECK(got.size() == layouts.size());  // no layout twice
    CHECK(got == brute_force(s));
  }
  // A hand count: 8 devices, 8 experts, 32 heads, 8 layers, tensor up to 8. Pipeline 1: t1 (d1 e1, d2 e2, d4 e4,
  // d8 e8), t2 (d1 e1, d1 e2, d2 e4, d4 e8), t4 (d1 e1, d1 e4, d2 e8), t8 (d1 e1, d1 e8): 13; pipeline 2 (4 devices):
  // 4 + 3 = 7... written out: t1 (e1, d2 e2, d4 e4), t2 (e1, e2, d2 e4), t4 (e1, e4): 8; pipeline 4: t1 (e1, d2 e2),
  // t2 (e1, e2): 4; pipeline 8: 1. Total 26.
  CHECK(moesim::engine::enumerate_serving_layouts(space(8, 8, 32, 8, 8)).size() == 26);
  // --max-pipeline 1 keeps the 13 of pipeline 1.
  PlanSpace one = space(8, 8, 32, 8, 8);
  one.max_pipeline = 1;
  CHECK(moesim::engine::enumerate_serving_layouts(one).size() == 13);
}

TEST_CASE("engine::enumerate_serving_layouts: a dense model splits only into replicas, tensor and pipeline",
          "[engine][planner][serving]") {
  const auto layouts = moesim::engine::enumerate_serving_layouts(space(4, 0, 4, 4, 4));
  for (const auto& l : layouts) {
    CHECK(l.expert == 1);
    CHECK(l.data == 1);
    CHECK(l.replicas * l.tensor * l.pipeline == 4);
  }
  CHECK(layouts.size() == 6);  // (t, p) in {1,2,4}^2 with t x p dividing 4
  CHECK(layouts.front().label() == "r4 d1 t1 e1 p1");
  CHECK(layouts.front().pool("siteA").dump() == R"({"data":1,"datacenter":"siteA","expert":1,"pipeline":1,"replicas":4,"tensor":1})");
}

TEST_CASE("engine::enumerate_serving_layouts: one device per replica is always a layout, no device is an error",
          "[engine][planner][serving][errors]") {
  CHECK_THROWS_WITH(moesim::engine::enumerate_serving_layouts(space(0, 8, 4, 4, 8)), Catch::Contains("at least one device"));
  // 7 devices, 4 heads, 4 layers, tensor at most 1: only 7 replicas of one device are left.
  const auto seven = moesim::engine::enumerate_serving_layouts(space(7, 8, 4, 4, 1));
  REQUIRE(seven.size() == 1);
  CHECK(seven.front().label() == "r7 d1 t1 e1 p1");
}

TEST_CASE("engine::screen_serving_layouts: a replica that cannot hold the model is pruned with its figures",
          "[engine][planner][serving]") {
  // 32 layers of a Mixtral-shaped model in bf16 is ~87 GiB of weights: one 80 GB H100 cannot hold it; two can.
  const std::string yaml = serving_yaml(32, 4, "bf16");
  const auto resolve = [&](const ServingLayout& l) {
    return moesim::scenario::load_string(yaml, "serving-plan-test.yaml", real_catalog(),
                                         {"serving.pools=" + nlohmann::json::array({l.pool()}).dump()});
  };
  const auto& accel = real_catalog().accelerator("h100");
  const std::vector<ServingLayout> layouts = {{4, 1, 1, 1, 1}, {2, 1, 2, 1, 1}, {1, 1, 4, 4, 1}, {2, 1, 1, 1, 2}};
  const auto c = moesim::engine::screen_serving_layouts(layouts, resolve, accel);
  REQUIRE(c.size() == 4);
  CHECK(c[0].verdict == Verdict::out_of_memory);
  CHECK_THAT(c[0].reason, Catch::Contains("does not fit a serving replica"));
  for (std::size_t i = 1; i < c.size(); ++i) {
    INFO(c[i].layout.label() << ": " << c[i].reason);
    CHECK(c[i].verdict == Verdict::simulate);
    CHECK(c[i].reason.empty());
    // The figures are the memory model's for that pool, not recomputed here.
    const auto s = resolve(c[i].layout);
    const auto m = moesim::workload::replica_memory(s, s.serving->pools.front(), accel);
    CHECK(c[i].weights_bytes == m.weights_bytes);
    CHECK(c[i].kv_bytes == m.kv_bytes);
    CHECK(c[i].weights_bytes + c[i].kv_bytes < c[i].capacity_bytes);
  }
  // Splitting over more devices leaves each less weight.
  CHECK(c[2].weights_bytes < c[1].weights_bytes);
  CHECK_NOTHROW(moesim::engine::require_simulable(c));
  // Only the layout that does not fit: nothing to simulate, and the error names it.
  const auto none = moesim::engine::screen_serving_layouts({layouts[0]}, resolve, accel);
  CHECK_THROWS_WITH(moesim::engine::require_simulable(none),
                    Catch::Contains("r4 d1 t1 e1 p1 (out_of_memory)") && Catch::Contains("does not fit a serving replica"));
  // A layout the resolver refuses (expert 3 is neither 1 nor data x tensor) is invalid with the resolver's reason.
  const auto bad = moesim::engine::screen_serving_layouts({{1, 1, 4, 3, 1}}, resolve, accel);
  CHECK(bad[0].verdict == Verdict::invalid);
  CHECK_THAT(bad[0].reason, Catch::Contains("serving.pools[0].expert") && Catch::Contains("must be 1"));
}

TEST_CASE("engine::replicas_for_load: the fewest replicas whose share of the searched rate covers the load",
          "[engine][planner][serving]") {
  const ServingLayout four{4, 1, 2, 1, 1};  // 4 replicas of 2 devices sustained together...
  CHECK(moesim::engine::replicas_for_load(four, 400.0, 100.0) == 1);  // ...100 req/s each
  CHECK(moesim::engine::replicas_for_load(four, 400.0, 100.5) == 2);
  CHECK(moesim::engine::replicas_for_load(four, 400.0, 400.0) == 4);
  CHECK(moesim::engine::replicas_for_load(four, 400.0, 1000.0) == 10);
  // A ratio of rounded figures a hair above a whole number is that number (0.3 / 0.1 = 3.0000000000000004).
  CHECK(moesim::engine::replicas_for_load({1, 1, 1, 1, 1}, 0.1, 0.3) == 3);
  // No capacity or no load: nothing to size.
  CHECK(moesim::engine::replicas_for_load(four, 0.0, 100.0) == 0);
  CHECK(moesim::engine::replicas_for_load(four, 400.0, 0.0) == 0);
  CHECK(moesim::engine::replicas_for_load(four, std::numeric_limits<double>::infinity(), 100.0) == 0);
  CHECK(moesim::engine::replicas_for_load(four, std::numeric_limits<double>::quiet_NaN(), 100.0) == 0);
  // Beyond kMaxReplicasForLoad (a count no cluster holds, and past which a long long could overflow): not sized.
  CHECK(moesim::engine::replicas_for_load({1, 1, 1, 1, 1}, 1.0, moesim::engine::kMaxReplicasForLoad) == 1'000'000'000'000LL);
  CHECK(moesim::engine::replicas_for_load({1, 1, 1, 1, 1}, 1.0, 2.0 * moesim::engine::kMaxReplicasForLoad) == 0);
  CHECK(moesim::engine::replicas_for_load({1, 1, 1, 1, 1}, 1e-300, 1e300) == 0);
  // Brute force: the smallest n with n x per-replica rate >= load.
  for (double rate : {37.0, 123.4, 512.0})
    for (double load : {1.0, 36.9, 99.0, 500.0, 4096.5}) {
      const long long n = moesim::engine::replicas_for_load(four, rate, load);
      long long k = 1;
      while (static_cast<double>(k) * rate / 4.0 < load) ++k;
      CHECK(n == k);
    }
}
