// SPDX-License-Identifier: Apache-2.0
// The `serving:` section: a valid scenario resolves to a typed ServingSpec; every cross-field mistake is a
// located error naming the key and what is allowed.
#include <catch2/catch.hpp>

#include "scenario_test_support.hpp"

namespace t = moesim::scenario::test;
using moesim::scenario::PoolRole;

namespace {

/** A small valid serving scenario, one key per line so a test can change exactly one line. */
std::string serving_yaml() {
  return "name: s\n"
         "model:\n"
         "  layers: 4\n"
         "  d_model: 512\n"
         "  d_ff: 2048\n"
         "  heads: 8\n"
         "  kv_heads: 2\n"
         "  experts: 8\n"
         "  top_k: 2\n"
         "  vocab: 32000\n"
         "  seq_len: 1024\n"
         "serving:\n"
         "  arrival:\n"
         "    type: poisson\n"
         "    rate_per_s: 10\n"
         "  prompt_length:\n"
         "    type: lognormal\n"
         "    mean: 300\n"
         "    sigma: 0.8\n"
         "  output_length:\n"
         "    type: fixed\n"
         "    value: 50\n"
         "  duration_s: 30\n"
         "  pools:\n"
         "    - replicas: 4\n"
         "      tensor: 2\n"
         "cluster:\n"
         "  accelerator: h100\n"
         "  count: 8\n"
         "placement:\n"
         "  - datacenter: gcp_us_central1_2023\n";
}

}  // namespace

TEST_CASE("scenario::serving: a serving scenario resolves with its defaults", "[scenario][serving]") {
  const auto s = t::load(serving_yaml());
  REQUIRE(s.is_serving());
  const auto& v = *s.serving;
  CHECK(v.arrival.type == "poisson");
  CHECK(v.arrival.rate_per_s == 10.0);
  CHECK(v.prompt_tokens.type == "lognormal");
  CHECK(v.prompt_tokens.mean == 300.0);
  CHECK(v.output_tokens.value == 50.0);
  CHECK(v.duration_s == 30.0);
  REQUIRE(v.pools.size() == 1);
  CHECK(v.pools[0].role == PoolRole::colocated);
  CHECK(v.pools[0].replicas == 4);
  CHECK(v.pools[0].devices_per_replica() == 2);
  CHECK(v.scheduler == "continuous");
  CHECK(v.router == "round_robin");
  CHECK(v.kv_dtype == "bf16");        // = model.dtype
  CHECK(v.slo_ttft_s == Approx(2.0));  // MLPerf Mixtral server limits
  CHECK(v.slo_tpot_s == Approx(0.2));
  CHECK(s.model.kv_heads == 2);
  CHECK(s.resolved.contains("serving"));
  CHECK_FALSE(s.resolved.contains("training"));
  SECTION("kv_heads defaults to heads; MLA, shared experts and leading dense layers are read") {
    auto yaml = t::remove_line(serving_yaml(), "  kv_heads: 2");
    yaml = t::replace_line(yaml, "  seq_len: 1024",
                           "  seq_len: 1024\n  shared_experts: 1\n  first_dense_layers: 1\n  mla: {kv_lora_rank: 128, qk_rope_head_dim: 32}");
    const auto m = t::load(yaml);
    CHECK(m.model.kv_heads == 8);
    CHECK(m.model.shared_experts == 1);
    CHECK(m.model.is_mla());
    CHECK(m.model.mla_kv_lora_rank == 128);
    CHECK_FALSE(m.model.is_moe_layer(0));  // the leading dense layer
    CHECK(m.model.is_moe_layer(1));
  }
}

TEST_CASE("scenario::serving: mistakes are located errors naming the key", "[scenario][serving]") {
  struct Case {
    const char* what;
    std::string yaml;
    const char* key;
    const char* message;
  };
  const std::string y = serving_yaml();
  const Case cases[] = {
      {"training and serving", t::replace_line(y, "serving:", "training: {tokens: 1.0e9, batch_tokens: 65536}\nserving:"), "serving",
       "either `training`"},
      {"neither", t::join_lines({"name: s", "model: {layers: 2, d_model: 64, d_ff: 64, heads: 2, vocab: 10, seq_len: 8}",
                                 "cluster: {accelerator: h100, count: 8}", "placement: [{datacenter: gcp_us_central1_2023}]"}),
       "", "missing `training` or `serving`"},
      {"parallelism with serving", t::replace_line(y, "cluster:", "parallelism: {tensor: 2}\ncluster:"), "parallelism",
       "serving.pools[]"},
      {"poisson without a rate", t::remove_line(y, "    rate_per_s: 10"), "serving.arrival", "needs rate_per_s"},
      {"a rate for offline", t::replace_line(y, "    type: poisson", "    type: offline"), "serving.arrival.rate_per_s",
       "not used by arrival type offline"},
      {"fixed length without value", t::remove_line(y, "    value: 50"), "serving.output_length", "needs serving.output_length.value"},
      {"trace lengths without a trace", t::replace_line(y, "    type: fixed", "    type: trace"), "serving.output_length.type",
       "only with serving.arrival.type trace"},
      {"no end to the arrivals", t::remove_line(y, "  duration_s: 30"), "serving", "give serving.requests, serving.duration_s"},
      {"warm-up past the end", t::replace_line(y, "  duration_s: 30", "  duration_s: 30\n  warmup_s: 30"), "serving.warmup_s",
       "nothing would be measured"},
      {"pools not filling the cluster", t::replace_line(y, "    - replicas: 4", "    - replicas: 3"), "serving.pools",
       "the pools use 6 devices"},
      {"tensor not dividing heads", t::replace_line(t::replace_line(y, "      tensor: 2", "      tensor: 16"), "  count: 8", "  count: 64"),
       "serving.pools[0].tensor", "must divide heads 8"},
      {"expert parallelism of another size", t::replace_line(y, "      tensor: 2", "      tensor: 2\n      expert: 4"),
       "serving.pools[0].expert", "must be 1"},
      {"a decode pool alone", t::replace_line(y, "    - replicas: 4", "    - role: decode\n      replicas: 4"), "serving.pools",
       "needs a prefill pool and a decode pool"},
      {"an unknown scheduler", t::replace_line(y, "  pools:", "  scheduler: {type: sarathi}\n  pools:"), "serving.scheduler.type",
       "allowed: static, continuous, chunked_prefill"},
      {"chunk size for continuous", t::replace_line(y, "  pools:", "  scheduler: {chunk_tokens: 256}\n  pools:"),
       "serving.scheduler.chunk_tokens", "only used by scheduler type chunked_prefill"},
      {"kv_heads not dividing heads", t::replace_line(y, "  kv_heads: 2", "  kv_heads: 3"), "model.kv_heads", "must divide heads 8"},
      {"task routing without tasks", t::replace_line(y, "serving:", "routing: {type: task}\nserving:"), "routing", "routing.tasks"},
      {"task experts without task routing", t::replace_line(y, "  pools:", "  task_experts_only: true\n  pools:"),
       "serving.task_experts_only", "only with routing.type task"},
      {"a pool in an unknown datacenter", t::replace_line(y, "      tensor: 2", "      tensor: 2\n      datacenter: mars"),
       "serving.pools[0].datacenter", "not a datacenter of `placement`"},
      {"an absurd rate", t::replace_line(y, "    rate_per_s: 10", "    rate_per_s: 1e12"), "serving.arrival.rate_per_s", "out of range"},
      {"requests longer than the context", t::replace_line(y, "    sigma: 0.8", "    sigma: 0.8\n    max: 1000"), "serving.prompt_length",
       "1050 tokens of context (1000 prompt + 50 output at most), more than the model's context window model.seq_len = 1024"},
      {"a fixed output leaving no context", t::replace_line(y, "    value: 50", "    value: 2000"), "serving.prompt_length.mean",
       "leaves -976 tokens beside the other length's 2000"},
      {"two unbounded log-normals",
       t::replace_line(t::replace_line(y, "    type: fixed", "    type: lognormal"), "    value: 50", "    mean: 50\n    sigma: 0.5"),
       "serving.prompt_length.max", "both lengths are unbounded log-normals"},
      {"a fractional length", t::replace_line(y, "    value: 50", "    value: 50.5"), "serving.output_length.value", "integer"},
      {"a capacity factor for GPU serving", t::replace_line(y, "  top_k: 2", "  top_k: 2\n  capacity_factor: 1.25"),
       "model.capacity_factor", "is dropless"},
      {"token dropping in GPU serving", t::replace_line(y, "serving:", "routing: {dropless: false}\nserving:"), "routing.dropless",
       "is dropless"},
      {"a dtype the GPU's matrix units do not take",
       t::replace_line(t::replace_line(y, "  seq_len: 1024", "  seq_len: 1024\n  dtype: fp8"), "  accelerator: h100", "  accelerator: a100"),
       "model.dtype", "accelerator 'a100' (cluster.accelerator) has no matrix-unit peak for model.dtype fp8; its matrix units take bf16"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const auto e = t::load_error(c.yaml);
    CHECK(e.key() == c.key);
    CHECK(t::contains(e.message(), c.message));
    CHECK(e.line() >= 1);
  }
  SECTION("shares that split a replica") {
    auto yaml = t::replace_line(y, "  - datacenter: gcp_us_central1_2023",
                                "  - {datacenter: gcp_us_central1_2023, share: 0.3}\n  - {datacenter: gcp_europe_north1_2023, share: 0.7}\n"
                                "wan: {bandwidth_gbps: 100, latency_ms: 40}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].share");
    CHECK(t::contains(e.message(), "not a whole number of replicas"));
  }
}

TEST_CASE("scenario::serving: a log-normal length without a max is cut at the context the other length leaves",
          "[scenario][serving]") {
  // seq_len 1024, output fixed at 50: the prompt's log-normal is cut at 974, and the resolved scenario says so.
  const auto s = t::load(serving_yaml());
  CHECK(s.serving->prompt_tokens.max == 974.0);
  // A given max that fits is kept.
  const auto kept = t::load(t::replace_line(serving_yaml(), "    sigma: 0.8", "    sigma: 0.8\n    max: 900"));
  CHECK(kept.serving->prompt_tokens.max == 900.0);
}

TEST_CASE("scenario::serving: a tensor-parallel rank holds whole key/value heads", "[scenario][serving]") {
  // 12 query heads (d_head 64), 6 key/value heads: tensor 2 gives each rank 3 KV heads; tensor 4 would give 1.5.
  auto y = t::replace_line(serving_yaml(), "  d_model: 512", "  d_model: 768");
  y = t::replace_line(y, "  heads: 8", "  heads: 12");
  y = t::replace_line(y, "  kv_heads: 2", "  kv_heads: 6");
  const auto ok = t::load(y);
  CHECK(ok.serving->pools[0].tensor == 2);
  CHECK(ok.model.kv_heads == 6);
  const auto four = t::replace_line(t::replace_line(y, "      tensor: 2", "      tensor: 4"), "  count: 8", "  count: 16");
  const auto e = t::load_error(four);
  CHECK(e.key() == "serving.pools[0].tensor");
  CHECK(e.line() == t::line_in(four, "      tensor: 4"));
  CHECK(e.column() == t::column_in(four, "      tensor: 4", "4"));
  CHECK(t::contains(e.message(), "tensor parallelism 4 must divide kv_heads 6 when smaller"));
}

TEST_CASE("scenario::serving: a replica of one task's experts spreads them over at most top_k expert ranks",
          "[scenario][serving]") {
  // top_k 2: a replica holding only its task's 2 experts per MoE layer can give expert-parallel ranks 1 each (expert 2),
  // not half an expert each (expert 4, 2 / 4 = 0.5 experts per rank).
  auto y = t::replace_line(serving_yaml(), "serving:", "routing: {type: task, tasks: 4}\nserving:");
  y = t::replace_line(y, "  pools:", "  task_experts_only: true\n  pools:");
  const auto two = t::replace_line(y, "      tensor: 2", "      data: 2\n      expert: 2");
  const auto ok = t::load(two);
  CHECK(ok.serving->pools[0].expert == 2);
  CHECK(ok.serving->task_experts_only);
  auto four = t::replace_line(y, "    - replicas: 4", "    - replicas: 2");
  four = t::replace_line(four, "      tensor: 2", "      data: 4\n      expert: 4");
  const auto e = t::load_error(four);
  CHECK(e.key() == "serving.pools[0].expert");
  CHECK(e.line() == t::line_in(four, "      expert: 4"));
  CHECK(t::contains(e.message(), "expert parallelism 4 must divide top_k 2"));
  // Without task_experts_only every replica holds all 8 experts: 2 per rank, accepted.
  const auto all = t::load(t::remove_line(four, "  task_experts_only: true"));
  CHECK(all.serving->pools[0].expert == 4);
}
