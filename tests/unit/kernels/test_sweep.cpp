// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <set>

#include "moesim/core/error.hpp"
#include "moesim/kernels/sweep.hpp"

using namespace moesim::kernels;
using namespace moesim::kernels::sweep;

namespace {
// Planning ceilings (estimates only): H100 measured 798 TFLOP/s bf16 and 3.0 TB/s copy
// (shared notes/moe-kernels.md §4), H100 SXM datasheet 67 TFLOP/s fp32.
constexpr Ceilings kH100{798e12, 67e12, 3.0e12, 5e-6};
}  // namespace

TEST_CASE("kernels::sweep::plan: the full grid covers the scenario models and the asked ranges") {
  const auto jobs = plan({});
  std::set<std::int64_t> tpe, ks, es_router;
  std::set<std::string> ffn_models, dense_models;
  std::set<std::string> strategies_needed;
  for (const Job& j : jobs) {
    if (j.kernel == "expert_ffn") {
      tpe.insert(j.tokens_per_expert);
      ffn_models.insert(j.model);
      CHECK(std::accumulate(j.counts.begin(), j.counts.end(), std::int64_t{0}) == j.experts * j.tokens_per_expert);
      CHECK(j.variants == 4);
    }
    if (j.kernel == "dense_ffn") dense_models.insert(j.model);
    if (j.kernel == "router") {
      ks.insert(j.top_k);
      es_router.insert(j.experts);
    }
    CHECK(j.cost.bytes > 0);
    CHECK(j.set_bytes > 0);
    CHECK(j.set_bytes < 40e9);  // fits in 0.6 of an 80 GB H100's free memory
  }
  CHECK(*tpe.begin() == 1);
  CHECK(*tpe.rbegin() == 16384);
  CHECK(tpe.size() >= 10);
  CHECK(ks == std::set<std::int64_t>{1, 2, 8});
  CHECK(es_router.count(8) == 1);
  CHECK(es_router.count(2048) == 1);
  CHECK(ffn_models == std::set<std::string>{"gshard_600b", "switch_base", "switch_c", "st_moe_32b", "mixtral_like"});
  CHECK(dense_models.size() == models().size());  // T5-XXL (dense) included
  // bf16 first: a budget that runs out drops fp32 shapes first
  const auto first_fp32 = std::find_if(jobs.begin(), jobs.end(), [](const Job& j) { return j.dtype == DType::fp32 && j.kernel != "router"; });
  CHECK(std::none_of(first_fp32, jobs.end(), [](const Job& j) { return j.dtype == DType::bf16; }));
}

TEST_CASE("kernels::sweep::plan: the full sweep's estimate leaves room in the 5-minute target") {
  const TimingPolicy policy;
  double total = 0.0;
  for (const Job& j : plan({})) total += estimate_job_s(j, kH100, policy);
  // A roofline lower bound; real kernels reach ~50-90 % of it, and the profiler's --budget-s
  // (270 s) stops starting new shapes in any case.
  CHECK(total > 10.0);
  CHECK(total < 150.0);
  double quick = 0.0;
  for (const Job& j : plan({true, {DType::bf16, DType::fp32}, ""})) quick += estimate_job_s(j, kH100, policy);
  CHECK(quick < 15.0);
  CHECK(plan({true, {DType::bf16, DType::fp32}, ""}).size() < plan({}).size() / 10);
}

TEST_CASE("kernels::sweep::plan: --only and --dtype select, unknown names are rejected") {
  const auto only_ffn = plan({false, {DType::bf16}, "expert_ffn"});
  REQUIRE_FALSE(only_ffn.empty());
  CHECK(std::all_of(only_ffn.begin(), only_ffn.end(), [](const Job& j) { return j.kernel == "expert_ffn" && j.dtype == DType::bf16; }));
  const auto gemms = plan({true, {DType::fp32}, "gemm"});
  REQUIRE_FALSE(gemms.empty());
  CHECK(std::all_of(gemms.begin(), gemms.end(), [](const Job& j) { return j.kernel_class == KernelClass::gemm; }));
  SECTION("unknown kernel") { CHECK_THROWS_WITH(plan({false, {DType::bf16}, "conv2d"}), Catch::Contains("allowed: expert_ffn")); }
  SECTION("no dtype") { CHECK_THROWS_AS(plan({false, {}, ""}), moesim::Error); }
}

TEST_CASE("kernels::sweep::expert_counts: balanced and Zipf-skewed rows per expert") {
  CHECK(expert_counts("balanced", 4, 10) == std::vector<std::int64_t>{10, 10, 10, 10});
  const auto s = expert_counts("skewed", 8, 100);
  CHECK(std::accumulate(s.begin(), s.end(), std::int64_t{0}) == 800);
  CHECK(std::is_sorted(s.rbegin(), s.rend()));
  CHECK(s[0] > 2 * s[1] - 2);  // share ∝ 1/(e+1)
  SECTION("unknown distribution") { CHECK_THROWS_AS(expert_counts("uniform", 4, 10), moesim::Error); }
  SECTION("no experts") { CHECK_THROWS_AS(expert_counts("balanced", 0, 10), moesim::Error); }
}

TEST_CASE("kernels::sweep::TimingPolicy: repeats follow the run time within bounds") {
  const TimingPolicy p;
  CHECK(p.repeats_for(1e-6) == p.max_repeats);
  CHECK(p.repeats_for(1.0) == p.min_repeats);
  CHECK(p.repeats_for(0.005) == 10);
  const Job big = [] {
    Job j;
    j.dtype = DType::fp32;
    j.cost.flops = 1e14;  // 1.5 s at 67 TFLOP/s: over max_run_s, so skipped
    return j;
  }();
  CHECK(estimate_job_s(big, kH100, p) == 0.0);
}
