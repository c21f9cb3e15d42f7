// SPDX-License-Identifier: Apache-2.0
// Serving workload: arrival processes and lengths against their distributions, the request trace reader
// and its errors, KV-cache sizes computed by hand, replica memory, and the per-layer iteration plans
// (collectives of each layout, expert-load skew).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/perf/model_factory.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/serving.hpp"
#include "moesim_test/temp_dir.hpp"

using moesim::InputError;
using moesim::workload::IterationModel;
using moesim::workload::IterationShape;
using moesim::workload::LayerKind;
using moesim::workload::Request;
namespace sc = moesim::scenario;
namespace wl = moesim::workload;

namespace {

const moesim::catalog::Catalog& catalog() {
  static const auto c = moesim::catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return c;
}

/** A small serving scenario; `serving` and `model_extra` lines are spliced in. */
sc::Scenario scenario(const std::string& serving, const std::string& model_extra = "", const std::string& cluster = "h100",
                      int count = 8, const std::string& top = "") {
  const std::string yaml = "name: t\nseed: 3\n" + top +
                           "model:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  experts: 8\n  top_k: 2\n"
                           "  vocab: 32000\n  seq_len: 2048\n  activation: swiglu\n" +
                           model_extra + "serving:\n" + serving + "cluster:\n  accelerator: " + cluster +
                           "\n  count: " + std::to_string(count) + "\nplacement:\n  - datacenter: gcp_us_central1_2023\n";
  return sc::load_string(yaml, "test.yaml", catalog());
}

const char* kPool8 = "  pools:\n    - {replicas: 8}\n";

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }
double cv(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1)) / m;
}
std::vector<double> gaps(const std::vector<Request>& r) {
  std::vector<double> g;
  for (std::size_t i = 1; i < r.size(); ++i) g.push_back(r[i].arrival_s - r[i - 1].arrival_s);
  return g;
}

}  // namespace

TEST_CASE("workload::generate_requests: arrival processes follow their distributions", "[workload][serving]") {
  const std::string lengths = "  prompt_length: {type: fixed, value: 100}\n  output_length: {type: fixed, value: 10}\n";
  SECTION("poisson: exponential gaps, mean 1/rate and coefficient of variation 1") {
    const auto r = wl::generate_requests(scenario("  arrival: {type: poisson, rate_per_s: 50}\n" + lengths + "  requests: 40000\n" + kPool8));
    REQUIRE(r.size() == 40000);
    const auto g = gaps(r);
    CHECK(mean(g) == Approx(1.0 / 50).epsilon(0.02));  // 4 standard errors of 0.5 %
    CHECK(cv(g) == Approx(1.0).epsilon(0.03));
  }
  SECTION("gamma: mean 1/rate and the given coefficient of variation") {
    for (double c : {0.5, 2.0}) {
      const auto r = wl::generate_requests(scenario("  arrival: {type: gamma, rate_per_s: 20, cv: " + std::to_string(c) + "}\n" +
                                                    lengths + "  requests: 40000\n" + kPool8));
      const auto g = gaps(r);
      CHECK(mean(g) == Approx(1.0 / 20).epsilon(0.03));
      CHECK(cv(g) == Approx(c).epsilon(0.05));
    }
  }
  SECTION("constant, bursts and offline") {
    auto r = wl::generate_requests(scenario("  arrival: {type: constant, rate_per_s: 4}\n" + lengths + "  duration_s: 2\n" + kPool8));
    REQUIRE(r.size() == 8);
    for (std::size_t i = 0; i < r.size(); ++i) CHECK(r[i].arrival_s == Approx(0.25 * i));
    r = wl::generate_requests(scenario("  arrival: {type: bursts, rate_per_s: 6, burst_size: 3}\n" + lengths + "  requests: 9\n" + kPool8));
    REQUIRE(r.size() == 9);
    CHECK(r[0].arrival_s == 0.0);
    CHECK(r[2].arrival_s == 0.0);
    CHECK(r[3].arrival_s == Approx(0.5));  // bursts at 6 / 3 = 2 per second
    CHECK(r[8].arrival_s == Approx(1.0));
    r = wl::generate_requests(scenario("  arrival: {type: offline}\n" + lengths + "  requests: 5\n" + kPool8));
    REQUIRE(r.size() == 5);
    for (const auto& q : r) CHECK(q.arrival_s == 0.0);
  }
  SECTION("the duration bounds the arrivals; the count bounds them when it comes first") {
    auto r = wl::generate_requests(scenario("  arrival: {type: poisson, rate_per_s: 100}\n" + lengths + "  duration_s: 10\n" + kPool8));
    CHECK(r.back().arrival_s < 10.0);
    CHECK(static_cast<double>(r.size()) == Approx(1000).margin(4 * std::sqrt(1000.0)));
    r = wl::generate_requests(scenario("  arrival: {type: poisson, rate_per_s: 100}\n" + lengths + "  duration_s: 10\n  requests: 50\n" + kPool8));
    CHECK(r.size() == 50);
  }
  SECTION("same seed, same requests") {
    const std::string s = "  arrival: {type: gamma, rate_per_s: 10, cv: 3}\n  prompt_length: {type: lognormal, mean: 300, sigma: 1}\n"
                          "  output_length: {type: uniform, min: 5, max: 50}\n  requests: 1000\n" + std::string(kPool8);
    const auto a = wl::generate_requests(scenario(s)), b = wl::generate_requests(scenario(s));
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].arrival_s == b[i].arrival_s);
      CHECK(a[i].prompt_tokens == b[i].prompt_tokens);
      CHECK(a[i].output_tokens == b[i].output_tokens);
    }
  }
}

TEST_CASE("workload::generate_requests: length distributions", "[workload][serving]") {
  const std::string arrive = "  arrival: {type: offline}\n  requests: 40000\n" + std::string(kPool8);
  SECTION("lognormal has the given mean and log-standard deviation") {
    const auto r = wl::generate_requests(scenario("  prompt_length: {type: lognormal, mean: 400, sigma: 0.8}\n"
                                                  "  output_length: {type: fixed, value: 1}\n" + arrive));
    std::vector<double> p, lp;
    for (const auto& q : r) {
      p.push_back(q.prompt_tokens);
      lp.push_back(std::log(q.prompt_tokens));
    }
    CHECK(mean(p) == Approx(400).epsilon(0.02));
    const double m = mean(lp);
    double s = 0.0;
    for (double x : lp) s += (x - m) * (x - m);
    CHECK(std::sqrt(s / static_cast<double>(lp.size())) == Approx(0.8).epsilon(0.03));
  }
  SECTION("lognormal clamps to [min, max]; uniform covers [min, max] with the midpoint as mean") {
    const auto r = wl::generate_requests(scenario("  prompt_length: {type: lognormal, mean: 400, sigma: 1.5, min: 50, max: 1000}\n"
                                                  "  output_length: {type: uniform, min: 10, max: 30}\n" + arrive));
    std::vector<double> out;
    int lo = 1 << 30, hi = 0, olo = 1 << 30, ohi = 0;
    for (const auto& q : r) {
      lo = std::min(lo, q.prompt_tokens);
      hi = std::max(hi, q.prompt_tokens);
      olo = std::min(olo, q.output_tokens);
      ohi = std::max(ohi, q.output_tokens);
      out.push_back(q.output_tokens);
    }
    CHECK(lo == 50);
    CHECK(hi == 1000);
    CHECK(olo == 10);
    CHECK(ohi == 30);
    CHECK(mean(out) == Approx(20.0).epsilon(0.01));
  }
}

TEST_CASE("workload::read_request_trace: reads a trace and names every malformed cell", "[workload][serving]") {
  moesim::testing::TempDir dir;
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string p = dir.file(name);
    std::ofstream(p, std::ios::binary) << text;
    return p;
  };
  SECTION("a valid trace, with a task column and comments") {
    const auto r = wl::read_request_trace(write("ok.csv", "# synthetic\narrival_s,prompt_tokens,output_tokens,task\n0,10,5,0\n0.5, 20 ,6,1\r\n"));
    REQUIRE(r.size() == 2);
    CHECK(r[1].arrival_s == 0.5);
    CHECK(r[1].prompt_tokens == 20);
    CHECK(r[1].task == 1);
  }
  SECTION("a UTF-8 byte order mark, whitespace-only lines and indented comments (Excel's CSV UTF-8, hand edits)") {
    const auto r = wl::read_request_trace(write("bom.csv", "\xEF\xBB\xBF" "arrival_s,prompt_tokens,output_tokens\r\n"
                                                           "  \r\n0,10,5\r\n\t \n   # an indented comment\n\t#another\n1.5,20,6\n   \n"));
    REQUIRE(r.size() == 2);
    CHECK(r[0].prompt_tokens == 10);
    CHECK(r[0].line == 3);
    CHECK(r[1].arrival_s == 1.5);
    CHECK(r[1].output_tokens == 6);
    CHECK(r[1].line == 7);  // skipped lines still count
    // A byte order mark is only one at the start of the file: elsewhere it is a malformed cell.
    CHECK_THROWS_WITH(wl::read_request_trace(write("bom2.csv", "arrival_s,prompt_tokens,output_tokens\n\xEF\xBB\xBF" "0,10,5\n")),
                      Catch::Contains("expected a number"));
  }
  struct Case {
    const char* text;
    int line;
    int column;
    const char* key;
    const char* message;
  };
  const Case cases[] = {
      {"arrival,prompt,output\n0,1,1\n", 1, 1, "header", "expected the header"},
      {"arrival_s,prompt_tokens,output_tokens\n0,1\n", 2, 1, "row", "expected 3 columns"},
      {"arrival_s,prompt_tokens,output_tokens\n0,abc,1\n", 2, 3, "prompt_tokens", "expected a whole number, got 'abc'"},
      {"arrival_s,prompt_tokens,output_tokens\n0,1.5,1\n", 2, 3, "prompt_tokens", "expected a whole number"},
      {"arrival_s,prompt_tokens,output_tokens\n0,0,1\n", 2, 3, "prompt_tokens", "out of range"},
      {"arrival_s,prompt_tokens,output_tokens\n0x1p3,1,1\n", 2, 1, "arrival_s", "expected a number"},
      {"arrival_s,prompt_tokens,output_tokens\n2,1,1\n1,1,1\n", 3, 1, "arrival_s", "must be ascending"},
      {"arrival_s,prompt_tokens,output_tokens\r0,1,1\r", 1, 38, "trace", "CR-only"},
      {"", 1, 1, "header", "the trace is empty"},
      {"arrival_s,prompt_tokens,output_tokens\n", 1, 1, "row", "no requests"},
  };
  int k = 0;
  for (const Case& c : cases) {
    INFO(c.text);
    const std::string p = write("bad" + std::to_string(k++) + ".csv", c.text);
    try {
      wl::read_request_trace(p);
      FAIL("no error");
    } catch (const InputError& e) {
      CHECK(e.file() == p);
      CHECK(e.line() == c.line);
      CHECK(e.column() == c.column);
      CHECK(e.key() == c.key);
      CHECK(std::string(e.what()).find(c.message) != std::string::npos);
    }
  }
  CHECK_THROWS_AS(wl::read_request_trace(dir.file("missing.csv")), InputError);
}

TEST_CASE("workload::kv cache: bytes per token by hand for MHA, GQA and MLA", "[workload][serving]") {
  sc::ModelSpec m;
  m.heads = 32;
  m.kv_heads = 32;
  m.d_head = 128;
  // Keys and values: 2 x 32 heads x 128 x 2 bytes (bf16) = 16 KiB per token and layer.
  CHECK(wl::kv_bytes_per_token_layer(m, "bf16") == 16384.0);
  m.kv_heads = 8;  // GQA (Mixtral): 2 x 8 x 128 x 1 byte (fp8) = 2 KiB
  CHECK(wl::kv_bytes_per_token_layer(m, "fp8") == 2048.0);
  m.mla_kv_lora_rank = 512;  // MLA (DeepSeek-V3): (512 + 64) x 2 bytes
  m.mla_qk_rope_head_dim = 64;
  CHECK(wl::kv_bytes_per_token_layer(m, "bf16") == 1152.0);
}

TEST_CASE("workload::replica_memory: weights, workspace and KV blocks", "[workload][serving]") {
  const std::string base = "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 100}\n"
                           "  output_length: {type: fixed, value: 10}\n  requests: 1\n";
  const auto s = scenario(base + "  pools:\n    - {replicas: 4, tensor: 2}\n  kv_cache: {memory_fraction: 0.5, block_tokens: 16}\n",
                          "  kv_heads: 2\n");
  const auto& accel = catalog().accelerator("h100");
  const auto mem = wl::replica_memory(s, s.serving->pools[0], accel);
  // Weights per GPU by hand: per layer attention Q,O 2 x 1024 x 128 x 8/2 heads, K,V 2 x 1024 x 128 x 1 head;
  // router 1024 x 8; experts 8 x 3 x 1024 x 4096 / 2; plus embedding and output projection 32000 x 1024 / 2.
  const double layer = 2.0 * 1024 * 128 * 4 + 2.0 * 1024 * 128 * 1 + 1024.0 * 8 + 8.0 * 3 * 1024 * 4096 / 2;
  CHECK(mem.weights_bytes == Approx((4 * layer + 2 * 32000.0 * 1024 / 2) * 2));
  // KV per token on one GPU: 4 layers x 2 x 1 head x 128 x 2 bytes; the cache gets 50 % of HBM minus the rest.
  CHECK(mem.kv_bytes_per_token == Approx(4 * 2 * 1 * 128 * 2.0));
  CHECK(mem.kv_bytes == Approx(0.5 * accel.hbm_bytes - mem.weights_bytes - mem.workspace_bytes));
  CHECK(mem.kv_blocks == static_cast<long long>(std::floor(mem.kv_bytes / mem.kv_bytes_per_token / 16)));
  // Over the whole replica a token is 4 layers x 2 x 2 KV heads x 128 x 2 bytes (what a transfer moves).
  CHECK(mem.kv_bytes_per_token_replica == Approx(4 * 2 * 2 * 128 * 2.0));
  SECTION("TensorRT-LLM's convention: the fraction of what weights and workspace leave") {
    const auto f = scenario(base + "  pools:\n    - {replicas: 4, tensor: 2}\n  kv_cache: {memory_fraction: 0.5, memory_fraction_of: free}\n",
                            "  kv_heads: 2\n");
    const auto m2 = wl::replica_memory(f, f.serving->pools[0], accel);
    CHECK(m2.kv_bytes == Approx(0.5 * (accel.hbm_bytes - m2.weights_bytes - m2.workspace_bytes)));
  }
  SECTION("a model that does not fit names the numbers and what would help") {
    const auto big = scenario(base + "  pools:\n    - {replicas: 8}\n", "  expert_d_ff: 524288\n");
    try {
      wl::replica_memory(big, big.serving->pools[0], accel);
      FAIL("no error");
    } catch (const moesim::Error& e) {
      const std::string m = e.what();
      CHECK(m.find("does not fit a serving replica") != std::string::npos);
      CHECK(m.find("GiB of weights") != std::string::npos);
      CHECK(m.find("tensor or expert parallelism") != std::string::npos);
      // The keys to change: the model's size, the pool (by its index), the accelerator, the memory fraction.
      for (const char* key : {"model.layers", "model.d_model", "serving.pools[0]", "cluster.accelerator", "serving.kv_cache.memory_fraction"})
        CHECK(m.find(key) != std::string::npos);
    }
  }
}

TEST_CASE("workload::IterationModel: collectives of each layout and the cost of skew", "[workload][serving]") {
  const std::string base = "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 100}\n"
                           "  output_length: {type: fixed, value: 10}\n  requests: 1\n";
  const auto& accel = catalog().accelerator("h100");
  const auto eff = moesim::perf::EfficiencyTable::load(catalog().profiles_dir());
  const moesim::perf::RooflineModel compute(accel, eff);
  SECTION("tensor parallel: an all-reduce after attention and after the experts, of tokens x d_model x 2 bytes") {
    const auto s = scenario(base + "  pools:\n    - {replicas: 2, tensor: 4}\n");
    const IterationModel m(s, s.serving->pools[0], accel, compute);
    const auto plan = m.layer(LayerKind::moe, 64);
    REQUIRE(plan.collectives.size() == 2);
    for (const auto& c : plan.collectives) {
      CHECK(c.op == wl::CollectiveOp::all_reduce);
      CHECK(c.bytes_per_device == 64 * 1024 * 2.0);
      REQUIRE(c.groups.size() == 1);
      CHECK(c.groups[0] == std::vector<int>{0, 1, 2, 3});
    }
    CHECK(plan.segments.size() == 3);
  }
  SECTION("expert parallel with data-parallel attention: dispatch and combine all-to-alls over the stage") {
    const auto s = scenario(base + "  pools:\n    - {replicas: 1, data: 8, expert: 8}\n");
    const IterationModel m(s, s.serving->pools[0], accel, compute);
    const auto plan = m.layer(LayerKind::moe, 800);
    REQUIRE(plan.collectives.size() == 2);
    for (const auto& c : plan.collectives) {
      CHECK(c.op == wl::CollectiveOp::all_to_all);
      // Each rank holds 800 / 8 tokens and sends its top-2 assignments: 100 x 2 x 1024 x 2 bytes.
      CHECK(c.bytes_per_device == 100 * 2 * 1024 * 2.0);
      REQUIRE(c.groups.size() == 1);
      CHECK(c.groups[0].size() == 8);
    }
    CHECK(m.layer(LayerKind::dense, 800).collectives.empty());  // DP attention + tensor 1: no collective
  }
  SECTION("a Zipf-skewed router makes the slowest expert rank slower than a balanced one") {
    const std::string pool = "  pools:\n    - {replicas: 1, data: 8, expert: 8}\n";
    const std::string model = "  expert_d_ff: 4096\n";
    auto uni = scenario(base + pool, model);
    auto skew = scenario(base + pool, model, "h100", 8, "routing: {type: zipf, skew: 1.2}\n");
    const IterationModel mu(uni, uni.serving->pools[0], accel, compute), ms(skew, skew.serving->pools[0], accel, compute);
    auto slowest = [](const wl::LayerPlan& p) {
      double w = 0.0;
      for (const auto& d : p.segments[1]) w = std::max(w, d.total());
      return w + p.imbalance_wait_s;
    };
    CHECK(slowest(ms.layer(LayerKind::moe, 4096)) > 1.3 * slowest(mu.layer(LayerKind::moe, 4096)));
  }
  SECTION("task routing with only the task's experts loaded: no expert weights beyond top_k, no all-to-all") {
    auto task = scenario(base + "  pools:\n    - {replicas: 8}\n  task_experts_only: true\n", "", "h100", 8,
                         "routing: {type: task, tasks: 4}\n");
    const auto mem = wl::replica_memory(task, task.serving->pools[0], accel);
    auto full = scenario(base + "  pools:\n    - {replicas: 8}\n");
    const auto mem_full = wl::replica_memory(full, full.serving->pools[0], accel);
    // 4 layers x (8 - 2) experts x 3 x 1024 x 4096 x 2 bytes fewer.
    CHECK(mem_full.weights_bytes - mem.weights_bytes == Approx(4 * 6 * 3 * 1024.0 * 4096 * 2));
  }
  SECTION("decode attention reads every cached token: its memory-bound time grows with the context") {
    const auto s = scenario(base + "  pools:\n    - {replicas: 8}\n");
    const IterationModel m(s, s.serving->pools[0], accel, compute);
    IterationShape a, b;
    a.decode_seqs = b.decode_seqs = 64;
    a.decode_context = 64 * 1000.0;
    b.decode_context = 64 * 8000.0;
    const auto ta = m.attention(a).front(), tb = m.attention(b).front();
    CHECK(ta.compute_bound.time_s == 0.0);
    CHECK(tb.memory_bound.time_s > 6.0 * ta.memory_bound.time_s);
    // It keeps the HBM busy and the matrix units nearly idle, which sets its power (the curve's memory term).
    CHECK(tb.memory_bound.hbm_utilisation() > 0.5);
    CHECK(tb.memory_bound.hbm_utilisation() <= 0.9 + 1e-9);  // the roofline's HBM ceiling (efficiency.yaml)
    CHECK(tb.memory_bound.flop_utilisation() < 0.1);
  }
  SECTION("a large prefill's projections are compute-bound and keep the matrix units busy") {
    const auto s = scenario(base + "  pools:\n    - {replicas: 8}\n");
    const IterationModel m(s, s.serving->pools[0], accel, compute);
    const auto plan = m.layer(LayerKind::dense, 8192);
    const auto& w = plan.segments.front().front();
    CHECK(w.compute_bound.flop_utilisation() > 0.5);
    CHECK(w.compute_bound.flop_utilisation() <= 0.807 + 1e-9);  // the GEMM ceiling (efficiency.yaml gpu gemm)
    CHECK(w.compute_bound.flop_utilisation() > w.memory_bound.flop_utilisation());
  }
}

TEST_CASE("workload::replica_memory: the static scheduler's workspace holds its batch's whole prefill", "[workload][serving]") {
  // A small dense model on one H100: d_head 256 / 4 = 64; per token 4 x 256 (hidden states) + 2 x 1024 (gelu FFN
  // intermediate) + (4 + 2 x 4) x 64 (Q, K, V) = 3840 values x 2 bytes (bf16) = 7680 bytes; fp32 logits 1000 x 4 bytes
  // per sampled sequence.
  const auto& accel = catalog().accelerator("h100");
  auto load = [](const std::string& serving, int count = 1) {
    const std::string yaml = "name: w\nseed: 3\nmodel: {layers: 2, d_model: 256, d_ff: 1024, heads: 4, vocab: 1000, seq_len: 8192}\n"
                             "serving:\n  arrival: {type: offline}\n  output_length: {type: fixed, value: 50}\n" + serving +
                             "cluster: {accelerator: h100, count: " + std::to_string(count) + ", topology: {gpus_per_node: " + std::to_string(count) + "}}\n"
                             "placement: [{datacenter: gcp_us_central1_2023}]\n";
    return sc::load_string(yaml, "test.yaml", catalog());
  };
  const std::string lengths = "  prompt_length: {type: fixed, value: 4000}\n  requests: 64\n  pools: [{replicas: 1}]\n";
  SECTION("continuous: the token budget, 4096 x 7680 + 256 sequences' logits") {
    const auto s = load(lengths + "  scheduler: {type: continuous, max_batched_tokens: 4096}\n");
    CHECK(wl::replica_memory(s, s.serving->pools[0], accel).workspace_bytes == Approx(4096.0 * 7680 + 256.0 * 1000 * 4));  // 32,481,280
  }
  SECTION("static: the 64 requests' prompts of 4000 tokens at once, 64 x 4000 x 7680 + 64 logits") {
    const auto s = load(lengths + "  scheduler: {type: static, max_batched_tokens: 4096}\n");
    const auto mem = wl::replica_memory(s, s.serving->pools[0], accel);
    CHECK(mem.workspace_bytes == Approx(64.0 * 4000 * 7680 + 64.0 * 1000 * 4));  // 1,966,336,000
    CHECK(mem.workspace_tokens == 256000.0);
    // max_sequences bounds the batch below the request count.
    const auto few = load(lengths + "  scheduler: {type: static, max_batched_tokens: 4096, max_sequences: 16}\n");
    CHECK(wl::replica_memory(few, few.serving->pools[0], accel).workspace_bytes == Approx(16.0 * 4000 * 7680 + 16.0 * 1000 * 4));
  }
  SECTION("static over two data ranks: ceil(63 / 2) = 32 sequences of the uniform's max prompt, 3000, on a rank") {
    const auto s = load("  prompt_length: {type: uniform, min: 100, max: 3000}\n  requests: 63\n  pools: [{replicas: 1, data: 2}]\n"
                        "  scheduler: {type: static, max_batched_tokens: 4096}\n", 2);
    const auto mem = wl::replica_memory(s, s.serving->pools[0], accel);
    CHECK(mem.workspace_bytes == Approx(32.0 * 3000 * 7680 + 32.0 * 1000 * 4));  // 737,408,000
    CHECK(mem.workspace_tokens == 63.0 * 3000);
  }
  SECTION("static over a trace: the served rows and their longest prompt") {
    moesim::testing::TempDir dir;
    const std::string csv = dir.file("t.csv");
    std::ofstream(csv) << "arrival_s,prompt_tokens,output_tokens\n0,100,5\n0,3500,5\n0,7000,5\n";
    // serving.requests 2: the third row (7000 tokens) is not served; 2 sequences of the longest, 3500.
    const std::string yaml = "name: w\nseed: 3\nmodel: {layers: 2, d_model: 256, d_ff: 1024, heads: 4, vocab: 1000, seq_len: 8192}\n"
                             "serving:\n  arrival: {type: trace, trace_csv: " + csv + "}\n  prompt_length: {type: trace}\n"
                             "  output_length: {type: trace}\n  requests: 2\n  pools: [{replicas: 1}]\n"
                             "  scheduler: {type: static, max_batched_tokens: 4096}\n"
                             "cluster: {accelerator: h100, count: 1, topology: {gpus_per_node: 1}}\nplacement: [{datacenter: gcp_us_central1_2023}]\n";
    const auto t = sc::load_string(yaml, "test.yaml", catalog());
    CHECK(wl::replica_memory(t, t.serving->pools[0], accel).workspace_bytes == Approx(2.0 * 3500 * 7680 + 2.0 * 1000 * 4));
  }
}

TEST_CASE("workload::replica_memory: a static decode pool's workspace holds its decode step, not a prefill",
          "[workload][serving]") {
  // The dense model of the test above (7680 bytes of activations per token, 1000 x 4 bytes of logits per sampled
  // sequence), disaggregated over two H100s: 64 requests of 4000-token prompts. The prefill pool's static batch
  // prefills 64 x 4000 tokens; the decode pool's batch arrives with its caches and computes one token per sequence.
  const auto& accel = catalog().accelerator("h100");
  const auto s = sc::load_string(
      "name: w\nseed: 3\nmodel: {layers: 2, d_model: 256, d_ff: 1024, heads: 4, vocab: 1000, seq_len: 8192}\n"
      "serving:\n  arrival: {type: offline}\n  output_length: {type: fixed, value: 50}\n"
      "  prompt_length: {type: fixed, value: 4000}\n  requests: 64\n"
      "  pools: [{role: prefill, replicas: 1}, {role: decode, replicas: 1}]\n"
      "  scheduler: {type: static, max_batched_tokens: 4096}\n"
      "cluster: {accelerator: h100, count: 2, topology: {gpus_per_node: 2}}\nplacement: [{datacenter: gcp_us_central1_2023}]\n",
      "test.yaml", catalog());
  const auto prefill = wl::replica_memory(s, s.serving->pools[0], accel);
  const auto decode = wl::replica_memory(s, s.serving->pools[1], accel);
  CHECK(prefill.workspace_bytes == Approx(64.0 * 4000 * 7680 + 64.0 * 1000 * 4));  // 1,966,336,000
  CHECK(prefill.workspace_tokens == 256000.0);
  CHECK(decode.workspace_bytes == Approx(64.0 * 7680 + 64.0 * 1000 * 4));  // 747,520 (was the prefill's 1,966,336,000)
  CHECK(decode.workspace_tokens == 64.0);
  // The same weights on both: what the decode pool's workspace no longer takes goes to its KV cache.
  REQUIRE(decode.weights_bytes == prefill.weights_bytes);
  const auto& v = *s.serving;
  const double freed = (64.0 * 4000 * 7680 + 64.0 * 1000 * 4) - (64.0 * 7680 + 64.0 * 1000 * 4);
  CHECK(decode.kv_bytes - prefill.kv_bytes == Approx((v.kv_fraction_of_free ? v.kv_memory_fraction : 1.0) * freed).epsilon(1e-9));
  CHECK(decode.kv_blocks > prefill.kv_blocks);
}

namespace {

/** The ep scenario with one MoE layer (8 experts, top-2) on 4 H100s (by default one replica, expert-parallel over 4),
 *  with the `routing` section and the serving `arrival` lines. */
sc::Scenario ep_scenario(const std::string& routing, const std::string& arrival,
                         const std::string& pool = "{replicas: 1, data: 4, expert: 4}") {
  const std::string yaml = "name: ep\nseed: 3\n"
                           "model: {layers: 1, d_model: 2048, d_ff: 8192, expert_d_ff: 8192, heads: 16, experts: 8, top_k: 2, "
                           "vocab: 32000, seq_len: 1024}\n" + routing +
                           "serving:\n" + arrival +
                           "  requests: 256\n  pools: [" + pool + "]\n"
                           "cluster: {accelerator: h100, count: 4, topology: {gpus_per_node: 4}}\nplacement: [{datacenter: gcp_us_central1_2023}]\n";
  return sc::load_string(yaml, "test.yaml", catalog());
}

/** The slowest expert rank of a layer plan's expert segment (between the two all-to-alls), with the imbalance wait. */
double slowest_expert_rank(const wl::LayerPlan& p) {
  double w = 0.0;
  for (const auto& d : p.segments.at(1)) w = std::max(w, d.total());
  return w + p.imbalance_wait_s;
}

}  // namespace

TEST_CASE("workload::task routing: the trace's task column sets the task mix", "[workload][serving]") {
  moesim::testing::TempDir dir;
  auto trace = [&](const std::string& name, int tasks_mod, bool column = true) {
    const std::string p = dir.file(name);
    std::ofstream out(p);
    out << (column ? "arrival_s,prompt_tokens,output_tokens,task\n" : "arrival_s,prompt_tokens,output_tokens\n");
    for (int i = 0; i < 256; ++i) out << "0,100,50" << (column ? "," + std::to_string(i % tasks_mod) : std::string()) << "\n";
    return p;
  };
  const std::string task = "routing: {type: task, tasks: 4}\n";
  auto arrival = [](const std::string& csv) {
    return "  arrival: {type: trace, trace_csv: " + csv + "}\n  prompt_length: {type: trace}\n  output_length: {type: trace}\n";
  };
  const std::string one = trace("one.csv", 1), four = trace("four.csv", 4), none = trace("none.csv", 1, false);
  SECTION("the mix is the served requests' task frequencies; no column, or no trace: uniform (empty)") {
    CHECK(wl::task_mix(ep_scenario(task, arrival(one))) == std::vector<double>{1.0, 0.0, 0.0, 0.0});
    CHECK(wl::task_mix(ep_scenario(task, arrival(four))) == std::vector<double>{0.25, 0.25, 0.25, 0.25});
    CHECK(wl::task_mix(ep_scenario(task, arrival(none))).empty());
    CHECK(wl::task_mix(ep_scenario(task, "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 100}\n"
                                         "  output_length: {type: fixed, value: 50}\n")).empty());
  }
  SECTION("the router puts a task's share on its experts") {
    const auto s = ep_scenario(task, arrival(one));
    const wl::Router r(s.routing, 8, 2, 1.0, s.seed, {1.0, 0.0, 0.0, 0.0});
    const auto experts = wl::task_experts(s.routing, 8, 2, s.seed, 0, 0);
    std::vector<double> want(8, 0.0);
    for (int e : experts) want[static_cast<std::size_t>(e)] = 0.5;
    CHECK(r.popularity(0) == want);
    CHECK_THROWS_AS(wl::Router(s.routing, 8, 2, 1.0, s.seed, {1.0, 0.0}), moesim::Error);  // not one weight per task
  }
  SECTION("every request of task 0: the layer costs what a load vector on task 0's two experts costs") {
    const auto& accel = catalog().accelerator("h100");
    const auto eff = moesim::perf::EfficiencyTable::load(catalog().profiles_dir());
    const moesim::perf::RooflineModel compute(accel, eff);
    const auto s_one = ep_scenario(task, arrival(one)), s_four = ep_scenario(task, arrival(four)),
               s_none = ep_scenario(task, arrival(none)), s_uniform = ep_scenario("", arrival(none));
    const auto experts = wl::task_experts(s_one.routing, 8, 2, s_one.seed, 0, 0);
    std::string load = "routing: {type: load_vector, load: [";
    for (int e = 0; e < 8; ++e)
      load += std::string(e ? ", " : "") + (std::find(experts.begin(), experts.end(), e) != experts.end() ? "1" : "0");
    const auto s_load = ep_scenario(load + "]}\n", arrival(none));
    const IterationModel m_one(s_one, s_one.serving->pools[0], accel, compute), m_four(s_four, s_four.serving->pools[0], accel, compute),
        m_none(s_none, s_none.serving->pools[0], accel, compute), m_load(s_load, s_load.serving->pools[0], accel, compute),
        m_uniform(s_uniform, s_uniform.serving->pools[0], accel, compute);
    const double tokens = 256.0 * 100;  // the offline prefill of 256 prompts of 100 tokens
    const double t_one = slowest_expert_rank(m_one.layer(LayerKind::moe, tokens));
    CHECK(t_one == slowest_expert_rank(m_load.layer(LayerKind::moe, tokens)));
    // Tasks i % 4: the uniform task mix, as a trace without the column.
    const double t_four = slowest_expert_rank(m_four.layer(LayerKind::moe, tokens));
    CHECK(t_four == slowest_expert_rank(m_none.layer(LayerKind::moe, tokens)));
    CHECK(t_four != t_one);
    // Task 0's two experts (6 and 3 with seed 3: ranks 3 and 1 of the four, 2 experts each) take all 2 x 25600
    // assignments, 25600 rows each; a balanced router gives every rank 2 x 6400 rows: about twice the work.
    CHECK(experts == std::vector<int>{6, 3});
    const double t_uniform = slowest_expert_rank(m_uniform.layer(LayerKind::moe, tokens));
    INFO("task 0 only " << t_one << " s, tasks i % 4 " << t_four << " s, uniform router " << t_uniform << " s");
    CHECK(t_one > 1.5 * t_uniform);
  }
  SECTION("serving.task_experts_only with a trace of several tasks names the file and the tasks") {
    const std::string two = trace("two.csv", 2);
    const auto s = ep_scenario(task, arrival(two) + "  task_experts_only: true\n", "{replicas: 4}");
    try {
      wl::generate_requests(s);
      FAIL("no error");
    } catch (const InputError& e) {
      CHECK(e.file() == two);
      CHECK(e.line() == 3);  // the first request of another task than the first one's
      CHECK(e.key() == "task");
      CHECK(std::string(e.what()).find("the trace has tasks 0, 1") != std::string::npos);
    }
    // One task throughout is what the option means.
    CHECK(wl::generate_requests(ep_scenario(task, arrival(one) + "  task_experts_only: true\n", "{replicas: 4}")).size() == 256);
  }
}
