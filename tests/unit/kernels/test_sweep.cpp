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
constexpr Ceilings kH100{798e12, 67e12, 3.0e12, 5e-6, 1.6e15};
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
      const std::int64_t largest = *std::max_element(j.counts.begin(), j.counts.end());
      if (j.dtype == DType::fp8) {
        CHECK(j.variants == 2);  // cuBLASLt loop + dense reference
      } else {
        CHECK(j.variants == (largest <= kFusedSmallMaxRows ? 5 : 4));  // fused_small where it can run
      }
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
  // bf16 first, then fp8, fp32 last: a budget that runs out drops fp32 shapes first
  const auto first_fp32 = std::find_if(jobs.begin(), jobs.end(), [](const Job& j) { return j.dtype == DType::fp32 && j.kernel != "router"; });
  CHECK(std::none_of(first_fp32, jobs.end(), [](const Job& j) { return j.dtype == DType::bf16 || j.dtype == DType::fp8; }));
  const auto first_fp8 = std::find_if(jobs.begin(), jobs.end(), [](const Job& j) { return j.dtype == DType::fp8; });
  REQUIRE(first_fp8 != jobs.end());
  CHECK(std::none_of(first_fp8, jobs.end(), [](const Job& j) { return j.dtype == DType::bf16; }));
}

TEST_CASE("kernels::sweep::plan: serving shapes: decode batch 1-512, KV 128-32k, prefill, fp8, small experts") {
  const auto jobs = plan({});
  std::set<std::int64_t> batches, lens, prefill_seqs, small_tpe;
  std::set<std::string> kv_dtypes, fp8_kernels;
  std::set<std::pair<std::int64_t, std::int64_t>> decode_pairs;
  for (const Job& j : jobs) {
    if (j.kernel_class == KernelClass::decode_attention) {
      batches.insert(j.batch);
      lens.insert(j.kv_len);
      kv_dtypes.insert(to_string(j.dtype));
      CHECK(j.q_heads % j.kv_heads == 0);
      CHECK(j.block_size == kDecodeBlockSize);
      CHECK(2.0 * static_cast<double>(j.batch * j.kv_len * j.kv_heads * j.d_head * static_cast<std::int64_t>(dtype_bytes(j.dtype))) <=
            kMaxDecodeKvBytes);
      const Cost want = decode_attention_cost(std::vector<std::int64_t>(static_cast<std::size_t>(j.batch), j.kv_len), j.q_heads,
                                              j.kv_heads, j.d_head, j.block_size, j.dtype);
      CHECK(j.cost.bytes == want.bytes);
      CHECK(j.cost.flops == want.flops);
      if (j.model == "mixtral_like" && j.dtype == DType::bf16) decode_pairs.insert({j.batch, j.kv_len});
    }
    if (j.kernel_class == KernelClass::prefill_attention) {
      CHECK(j.causal);
      CHECK(j.dtype == DType::bf16);
      CHECK(std::accumulate(j.seq_lens.begin(), j.seq_lens.end(), std::int64_t{0}) == j.tokens);
      prefill_seqs.insert(j.seq);
    }
    if (j.dtype == DType::fp8) fp8_kernels.insert(j.kernel);
    if (j.kernel == "expert_ffn" && j.dtype == DType::bf16 && j.distribution == "balanced" && j.tokens_per_expert <= 64) {
      small_tpe.insert(j.tokens_per_expert);
    }
  }
  CHECK(batches == std::set<std::int64_t>{1, 4, 16, 64, 256, 512});
  CHECK(lens == std::set<std::int64_t>{128, 512, 2048, 8192, 32768});
  CHECK(kv_dtypes == std::set<std::string>{"bf16", "fp8"});
  CHECK(decode_pairs.count({1, 32768}) == 1);
  CHECK(decode_pairs.count({512, 2048}) == 1);
  CHECK(decode_pairs.count({512, 32768}) == 0);  // a 69 GB cache: beyond kMaxDecodeKvBytes
  CHECK(prefill_seqs == std::set<std::int64_t>{0, 128, 512, 2048, 8192});  // 0: the mixed-length batch
  CHECK(fp8_kernels == std::set<std::string>{"decode_attention", "expert_ffn", "qkv_proj", "out_proj"});
  CHECK(small_tpe == std::set<std::int64_t>{1, 2, 4, 8, 16, 32, 64});
}

TEST_CASE("kernels::sweep::plan: the full sweep's estimate leaves room in the 5-minute target") {
  const TimingPolicy policy;
  const auto jobs = plan({});
  double gpu = 0.0;
  for (const Job& j : jobs) gpu += estimate_job_s(j, kH100, policy);
  // A roofline lower bound of the timed runs; real kernels reach ~50-90 % of it. With the assumed
  // per-shape setup the whole sweep must stay well inside the profiler's --budget-s (270 s), which
  // stops starting new shapes in any case.
  CHECK(gpu > 10.0);
  CHECK(gpu < 150.0);
  const double sweep = estimate_sweep_s(jobs, kH100, policy);
  CHECK(sweep > gpu);
  CHECK(sweep < 200.0);
  CHECK(sweep == Approx(gpu + policy.setup_s * static_cast<double>(std::count_if(jobs.begin(), jobs.end(), [&](const Job& j) {
                                                                       return estimate_job_s(j, kH100, policy) > 0.0;
                                                                     }))));
  const auto quick_jobs = plan({true, {DType::bf16, DType::fp8, DType::fp32}, ""});
  CHECK(estimate_sweep_s(quick_jobs, kH100, policy) < 15.0);
  CHECK(quick_jobs.size() < jobs.size() / 10);
}

TEST_CASE("kernels::sweep::plan: --only and --dtype select, unknown names are rejected") {
  const auto only_ffn = plan({false, {DType::bf16}, "expert_ffn"});
  REQUIRE_FALSE(only_ffn.empty());
  CHECK(std::all_of(only_ffn.begin(), only_ffn.end(), [](const Job& j) { return j.kernel == "expert_ffn" && j.dtype == DType::bf16; }));
  const auto gemms = plan({true, {DType::fp32}, "gemm"});
  REQUIRE_FALSE(gemms.empty());
  CHECK(std::all_of(gemms.begin(), gemms.end(), [](const Job& j) { return j.kernel_class == KernelClass::gemm; }));
  const auto decode = plan({false, {DType::fp8}, "decode_attention"});
  REQUIRE_FALSE(decode.empty());
  CHECK(std::all_of(decode.begin(), decode.end(), [](const Job& j) {
    return j.kernel_class == KernelClass::decode_attention && j.dtype == DType::fp8;
  }));
  CHECK(plan({false, {DType::fp8}, "prefill_attention"}).empty());  // prefill runs in bf16 only
  SECTION("unknown kernel") {
    CHECK_THROWS_WITH(plan({false, {DType::bf16}, "conv2d"}),
                      Catch::Contains("allowed: expert_ffn") && Catch::Contains("decode_attention"));
  }
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
  Job small;
  small.cost.bytes = 3.0e6;  // 1 us at 3 TB/s + 5 us floor = 6 us: 100 repeats + 3 warm-ups + 1 probe
  CHECK(estimate_job_s(small, kH100, p) == Approx(104 * 6e-6));
  Job decode = small;
  decode.kernel_class = KernelClass::decode_attention;
  decode.dtype = DType::fp8;
  decode.cost.flops = 67e12 * 1e-3;  // 1 ms on the CUDA cores, whatever the KV dtype
  CHECK(estimate_run_s(decode, kH100) == Approx(1e-3 + 5e-6));
  const Job big = [] {
    Job j;
    j.dtype = DType::fp32;
    j.cost.flops = 1e14;  // 1.5 s at 67 TFLOP/s: over max_run_s, so skipped
    return j;
  }();
  CHECK(estimate_job_s(big, kH100, p) == 0.0);
}
