// SPDX-License-Identifier: Apache-2.0
// `moesim run` on serving scenarios end to end: the JSON's fields and their agreement with the stored run,
// request timings on request, --max-rate, and the unhappy paths (impossible SLOs, a KV cache smaller than a
// request, a malformed trace, a model that does not fit): each a clear error and nothing complete stored.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Result = moesim::testing::CliResult;

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("serving_cli", name); }

Result run_cli(const std::string& args, const std::string& dir) { return moesim::testing::run_moesim_in(args, dir); }

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

const char* kModel =
    "model:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  kv_heads: 2\n  experts: 8\n  top_k: 2\n"
    "  vocab: 32000\n  seq_len: 4096\n  activation: swiglu\n";
const char* kCluster = "cluster:\n  accelerator: h100\n  count: 8\nplacement:\n  - datacenter: gcp_us_central1_2023\n";

std::string scenario(const std::string& dir, const std::string& serving, const std::string& name = "s.yaml") {
  return write(dir + "/" + name, std::string("name: serving-cli\n") + kModel + "serving:\n" + serving + kCluster);
}

const char* kLight = "  arrival: {type: poisson, rate_per_s: 20}\n  prompt_length: {type: uniform, min: 50, max: 400}\n"
                     "  output_length: {type: uniform, min: 5, max: 60}\n  duration_s: 4\n  warmup_s: 1\n";

}  // namespace

TEST_CASE("cli::serving run: the JSON carries the serving metrics, equal to the stored ones", "[cli][serving]") {
  const std::string dir = scratch("json");
  const std::string db = dir + "/runs.db";
  const auto f = scenario(dir, std::string(kLight) + "  record_requests: true\n  pools:\n    - {replicas: 4, tensor: 2}\n");
  const Result r = run_cli("run " + f + " --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j.at("kind") == "serving");
  for (const char* d : {"ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s"})
    for (const char* q : {"mean", "p50", "p90", "p95", "p99", "max"}) CHECK(j.at(d).contains(q));
  for (const char* k : {"throughput_rps", "input_tokens_per_s", "output_tokens_per_s", "output_tokens_per_s_per_device",
                        "goodput_fraction", "goodput_rps", "energy_per_output_token_j", "energy_per_request_j",
                        "gco2e_gross_per_1000_tokens", "gco2e_net_per_1000_tokens", "gco2e_gross_per_request", "datacenters",
                        "preemptions", "mfu"})
    CHECK(j.contains(k));
  // One quantity, one truth: JSON fields are the stored metrics, converted.
  const moesim::store::Store store(db, moesim::store::Store::Mode::read_only);
  const auto rec = store.get_run(j.at("run_id").get<long long>());
  CHECK(rec.kind == "serving");
  CHECK(j.at("ttft_s").at("p99").get<double>() == rec.metric("ttft_p99_s")->value);
  CHECK(j.at("gco2e_gross_per_1000_tokens").get<double>() == Approx(rec.metric("co2e_gross_kg_per_1k_tokens")->value * 1000.0));
  CHECK(j.at("datacenters")[0].at("energy_per_output_token_j").get<double>() == Approx(j.at("energy_per_output_token_j").get<double>()));
  // Every measured request is stored, in arrival order, with coherent times.
  const auto timings = store.request_timings(rec.id);
  CHECK(static_cast<long long>(timings.size()) == j.at("requests_measured").get<long long>());
  for (std::size_t i = 1; i < timings.size(); ++i) CHECK(timings[i].arrival_s >= timings[i - 1].arrival_s);
  for (const auto& q : timings) CHECK(q.end_s >= q.first_token_s);
  // The series a report draws: power, queue, batch, KV use and the latency CDFs.
  std::set<std::string> names;
  for (const auto& s : rec.series) names.insert(s.name);
  for (const char* n : {"power_w", "queue_requests", "batch_sequences", "kv_use", "ttft_cdf", "tpot_cdf", "e2e_cdf"}) CHECK(names.count(n) == 1);
  // The summary names the latencies and the energy per token.
  const Result text = run_cli("runs show " + std::to_string(rec.id) + " --db " + db, dir);
  CHECK(text.out.find("TTFT") != std::string::npos);
  CHECK(text.out.find("J per output token") != std::string::npos);
}

TEST_CASE("cli::serving run: clear errors, nothing complete stored", "[cli][serving]") {
  const std::string dir = scratch("errors");
  const std::string db = dir + "/runs.db";
  struct Case {
    const char* what;
    std::string serving;
    const char* expect;
  };
  const Case cases[] = {
      {"a KV cache smaller than one request",
       "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 5000000}\n  output_length: {type: fixed, value: 5000000}\n"
       "  requests: 2\n  pools:\n    - {replicas: 8}\n  kv_cache: {memory_fraction: 0.2}\n",
       "needs 10000000 (5000000 prompt + 5000000 output)"},
      {"a model that does not fit",
       std::string(kLight) + "  pools:\n    - {replicas: 8}\n  scheduler: {max_batched_tokens: 90000000}\n",
       "does not fit a serving replica"},
      {"a prompt longer than an iteration's token budget",
       "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 3000}\n  output_length: {type: fixed, value: 5}\n"
       "  requests: 2\n  pools:\n    - {replicas: 8}\n  scheduler: {max_batched_tokens: 2048}\n",
       "serving.scheduler.max_batched_tokens"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const auto f = scenario(dir, c.serving);
    const Result r = run_cli("run " + f + " --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find(c.expect) != std::string::npos);
    INFO(r.err);
  }
  SECTION("a malformed trace names the trace file, line and column") {
    write(dir + "/trace.csv", "arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5,ten,5\n");
    const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: trace.csv}\n  prompt_length: {type: trace}\n"
                                 "  output_length: {type: trace}\n  pools:\n    - {replicas: 8}\n");
    const Result r = run_cli("run " + f + " --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find(dir + "/trace.csv:3:5") != std::string::npos);
    CHECK(r.err.find("expected a whole number, got 'ten'") != std::string::npos);
  }
  if (fs::exists(db)) {
    const moesim::store::Store store(db, moesim::store::Store::Mode::read_only);
    for (const auto& run : store.list_runs()) CHECK(run.status != moesim::store::RunStatus::complete);
  }
}

TEST_CASE("cli::serving --max-rate: the highest rate meeting the SLOs, or a clear error when none does", "[cli][serving]") {
  const std::string dir = scratch("maxrate");
  const std::string db = dir + "/runs.db";
  SECTION("a bracket around the limit; the run at the rate found is stored") {
    const auto f = scenario(dir, "  arrival: {type: poisson, rate_per_s: 20}\n  prompt_length: {type: fixed, value: 1000}\n"
                                 "  output_length: {type: fixed, value: 50}\n  duration_s: 6\n  pools:\n    - {replicas: 1, tensor: 8}\n"
                                 "  slo: {ttft_ms: 100, tpot_ms: 50}\n");
    const Result r = run_cli("run " + f + " --max-rate --rate-tolerance 0.05 --json --db " + db, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const json j = json::parse(r.out);
    const double rate = j.at("max_rate").at("rate_per_s").get<double>(), upper = j.at("max_rate").at("upper_rate_per_s").get<double>();
    CHECK(upper > rate);
    CHECK((upper - rate) / rate <= 0.05);
    CHECK(j.at("slo_p99_met") == true);
    CHECK(j.at("ttft_s").at("p99").get<double>() <= 0.1);
    // Every probe at or below the rate found met the SLOs, every one at or above the upper bound missed.
    for (const json& p : j.at("max_rate").at("probes")) {
      if (p.at("rate_per_s").get<double>() <= rate) CHECK(p.at("meets_slo") == true);
      if (p.at("rate_per_s").get<double>() >= upper) CHECK(p.at("meets_slo") == false);
    }
    CHECK(j.at("metrics").at("max_rate_rps").at("value").get<double>() == rate);
    CHECK(j.at("energy_per_output_token_j").get<double>() > 0.0);
  }
  SECTION("SLOs no rate can meet") {
    const auto f = scenario(dir, std::string(kLight) + "  pools:\n    - {replicas: 8}\n  slo: {ttft_ms: 0.001, tpot_ms: 0.001}\n");
    const Result r = run_cli("run " + f + " --max-rate --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot be met at any rate") != std::string::npos);
    CHECK(r.err.find("limit 0") != std::string::npos);
  }
  SECTION("only for rate-driven serving scenarios") {
    const auto f = scenario(dir, "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 10}\n  output_length: {type: fixed, value: 5}\n"
                                 "  requests: 4\n  pools:\n    - {replicas: 8}\n");
    const Result r = run_cli("run " + f + " --max-rate --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("serving.arrival.type") != std::string::npos);
  }
}
