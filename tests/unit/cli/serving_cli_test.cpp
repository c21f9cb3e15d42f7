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
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "moesim/store/store.hpp"
#include "moesim_test/cli_run.hpp"
#include "serving_cli_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using moesim::testing::serving_cli::kModel;
using moesim::testing::serving_cli::Result;
using moesim::testing::serving_cli::run_cli;
using moesim::testing::serving_cli::write;

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("serving_cli", name); }
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
    const char* args = "";
  };
  const Case cases[] = {
      {"a KV cache smaller than one request (in a 10M-token context)",
       "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 5000000}\n  output_length: {type: fixed, value: 5000000}\n"
       "  requests: 2\n  pools:\n    - {replicas: 8}\n  kv_cache: {memory_fraction: 0.2}\n",
       "needs 10000000 (5000000 prompt + 5000000 output)", " --set model.seq_len=10000000"},
      {"a request longer than the model's context",
       "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 4000}\n  output_length: {type: fixed, value: 200}\n"
       "  requests: 2\n  pools:\n    - {replicas: 8}\n",
       "serving.prompt_length: a request can need 4200 tokens of context (4000 prompt + 200 output at most), more than the model's "
       "context window model.seq_len = 4096"},
      {"a model that does not fit",
       std::string(kLight) + "  pools:\n    - {replicas: 8}\n  scheduler: {max_batched_tokens: 90000000}\n",
       "does not fit a serving replica"},
      {"a warm-up that leaves no request to measure",
       "  arrival: {type: constant, rate_per_s: 1}\n  prompt_length: {type: fixed, value: 50}\n  output_length: {type: fixed, value: 5}\n"
       "  duration_s: 4\n  warmup_s: 3.9999\n  pools:\n    - {replicas: 8}\n",
       "serving.warmup_s: no request arrives in the measured window"},
      {"a prompt longer than an iteration's token budget",
       "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 3000}\n  output_length: {type: fixed, value: 5}\n"
       "  requests: 2\n  pools:\n    - {replicas: 8}\n  scheduler: {max_batched_tokens: 2048}\n",
       "serving.scheduler.max_batched_tokens"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const auto f = scenario(dir, c.serving);
    const Result r = run_cli("run " + f + " --db " + db + c.args, dir);
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
  SECTION("a trace row longer than the model's context names its line") {
    write(dir + "/long.csv", "arrival_s,prompt_tokens,output_tokens\n0,10,5\n# a comment\n0.5,4000,100\n");
    const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: long.csv}\n  prompt_length: {type: trace}\n"
                                 "  output_length: {type: trace}\n  pools:\n    - {replicas: 8}\n");
    const Result r = run_cli("run " + f + " --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find(dir + "/long.csv:4:1") != std::string::npos);
    CHECK(r.err.find("needs 4100 tokens of context (4000 prompt + 100 output), more than the model's context window "
                     "model.seq_len = 4096") != std::string::npos);
  }
  // Every one is found before the store is touched: not even a failed run is recorded.
  if (fs::exists(db)) {
    const moesim::store::Store store(db, moesim::store::Store::Mode::read_only);
    CHECK(store.list_runs().empty());
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
      if (p.at("rate_per_s").get<double>() <= rate) CHECK(p.at("accepted") == true);
      if (p.at("rate_per_s").get<double>() >= upper) CHECK(p.at("accepted") == false);
      // Accepted: the SLOs met and not falling behind.
      CHECK(p.at("accepted") == (p.at("meets_slo").get<bool>() && p.at("keeps_up").get<bool>()));
    }
    // The answer is the accepted run's rate or, if its window drew fewer arrivals, the rate it drew: what the
    // deployment was seen to keep up with.
    const double sustained = j.at("max_rate").at("sustained_rate_per_s").get<double>();
    double drawn = 0.0;
    for (const json& p : j.at("max_rate").at("probes"))
      if (p.at("rate_per_s").get<double>() == rate) drawn = p.at("window_arrival_rate_per_s").get<double>();
    CHECK(drawn == Approx(j.at("requests_measured").get<double>() / j.at("window_s").get<double>()).epsilon(1e-12));
    CHECK(sustained == std::min(rate, drawn));
    CHECK(j.at("metrics").at("max_rate_rps").at("value").get<double>() == sustained);
    CHECK(j.at("metrics").at("max_rate_probe_rps").at("value").get<double>() == rate);
    CHECK(j.at("energy_per_output_token_j").get<double>() > 0.0);
  }
  SECTION("SLOs no rate can meet") {
    const auto f = scenario(dir, std::string(kLight) + "  pools:\n    - {replicas: 8}\n  slo: {ttft_ms: 0.001, tpot_ms: 0.001}\n");
    const Result r = run_cli("run " + f + " --max-rate --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("cannot be met at any rate") != std::string::npos);
    CHECK(r.err.find("(limit 0.001)") != std::string::npos);
  }
  SECTION("the SLOs found are printed as given, not rounded to whole milliseconds") {
    const auto f = scenario(dir, "  arrival: {type: poisson, rate_per_s: 20}\n  prompt_length: {type: fixed, value: 1000}\n"
                                 "  output_length: {type: fixed, value: 50}\n  duration_s: 6\n  pools:\n    - {replicas: 1, tensor: 8}\n"
                                 "  slo: {ttft_ms: 100.5, tpot_ms: 50.25}\n");
    const Result r = run_cli("run " + f + " --max-rate --rate-tolerance 0.2 --no-store", dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("highest rate meeting P99 TTFT <= 100.5 ms and P99 TPOT <= 50.25 ms") != std::string::npos);
  }
  SECTION("only for rate-driven serving scenarios") {
    const auto f = scenario(dir, "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 10}\n  output_length: {type: fixed, value: 5}\n"
                                 "  requests: 4\n  pools:\n    - {replicas: 8}\n");
    const Result r = run_cli("run " + f + " --max-rate --db " + db, dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("serving.arrival.type") != std::string::npos);
  }
}

TEST_CASE("cli::serving run: training-only options, and --rate-tolerance without --max-rate, are refused before anything is stored",
          "[cli][serving]") {
  const std::string dir = scratch("refused_options");
  const std::string db = dir + "/runs.db";
  const auto f = scenario(dir, std::string(kLight) + "  pools:\n    - {replicas: 4, tensor: 2}\n");
  struct Case {
    std::string args;
    int status;
    const char* expect;
  };
  const Case cases[] = {
      {"run " + f + " --trace " + dir + "/trace.csv", 1, "--trace writes a training step's phases"},
      {"run " + f + " --no-steady-state", 1, "--no-steady-state is about a training step's 1F1B pipeline"},
      {"run " + f + " --max-rate --no-steady-state", 1, "--no-steady-state is about a training step's 1F1B pipeline"},
      {"run " + f + " --rate-tolerance 0.05", 2, "--rate-tolerance is the --max-rate search's stopping width"},
      {"sweep " + f + " --rate-tolerance 0.05", 2, "--rate-tolerance is the --max-rate search's stopping width"},
  };
  for (const Case& c : cases) {
    INFO(c.args);
    const Result r = run_cli(c.args + " --db " + db, dir);
    INFO(r.err);
    CHECK(r.status == c.status);
    CHECK(r.err.find(c.expect) != std::string::npos);
    if (c.status == 1) CHECK(r.err.find(f + " is a serving scenario") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir + "/trace.csv"));
  CHECK_FALSE(fs::exists(db));  // nothing simulated, nothing stored
}

TEST_CASE("cli::serving run: a model that does not fit names the scenario file and the keys involved", "[cli][serving]") {
  const std::string dir = scratch("no_fit");
  const auto f = scenario(dir, std::string(kLight) + "  pools:\n    - {replicas: 4, tensor: 2}\n");
  SECTION("too large a model") {
    const Result r = run_cli("run " + f + " --no-store --set model.layers=2000 --set model.d_model=8192", dir);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("moesim: error: " + f + ": the model does not fit a serving replica") != std::string::npos);
    for (const char* key : {"model.layers", "model.d_model", "cluster.accelerator", "serving.pools[0]", "serving.kv_cache.memory_fraction"})
      CHECK(r.err.find(key) != std::string::npos);
  }
  SECTION("a memory fraction below 1 % is printed with its digits, not rounded to 0 %") {
    const Result r = run_cli("run " + f + " --no-store --set serving.kv_cache.memory_fraction=0.004", dir);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("may use 0.4 % (serving.kv_cache.memory_fraction)") != std::string::npos);
  }
}

TEST_CASE("cli::serving runs list: a serving run's few Wh read in their own unit, equal to runs show's", "[cli][serving]") {
  const std::string dir = scratch("runs_list");
  const std::string db = dir + "/runs.db";
  const auto f = scenario(dir, std::string(kLight) + "  pools:\n    - {replicas: 4, tensor: 2}\n");
  const Result run = run_cli("run " + f + " --db " + db, dir);
  INFO(run.err);
  REQUIRE(run.status == 0);
  const Result r = run_cli("runs list --db " + db, dir);
  INFO(r.out);
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::string head, line;
  std::getline(lines, head);
  REQUIRE(std::getline(lines, line));
  // id, kind, scenario, status, created, days, facility energy (value, unit), CO2e gross (value, unit). The window's
  // energy is some Wh and its CO2e some g: each cell names its unit and shows three significant digits (in MWh and t
  // they read 1.56e-05 and 6.69e-06).
  std::istringstream words(line);
  std::vector<std::string> w;
  for (std::string x; words >> x;) w.push_back(x);
  REQUIRE(w.size() == 10);
  CHECK(w[1] == "serving");
  CHECK(w[5] == "-");
  CHECK(w[7] == "Wh");
  CHECK(w[9] == "g");
  for (const std::string& v : {w[6], w[8]}) {
    INFO(v);
    CHECK(v.find('e') == std::string::npos);  // no scientific notation
    CHECK(std::stod(v) >= 1.0);
    CHECK(std::stod(v) < 1000.0);
  }
  // Aligned: each cell ends under its heading's right edge.
  CHECK(line.size() == head.size());
  const std::string energy_cell = w[6] + " " + w[7], mass_cell = w[8] + " " + w[9];
  CHECK(line.find(energy_cell) + energy_cell.size() == head.find("facility energy") + std::string("facility energy").size());
  CHECK(line.find(mass_cell) + mass_cell.size() == head.size());
  // One quantity, one truth: the cells are runs show's figures (kWh, kg) to three significant digits, and `runs list
  // --json` keeps its fixed units (MWh, t), the same figures.
  const Result shown = run_cli("runs show 1 --json --db " + db, dir);
  REQUIRE(shown.status == 0);
  const json j = json::parse(shown.out);
  const double kwh = j.at("facility_energy_kwh").get<double>(), kg = j.at("co2e_gross_kg").get<double>();
  CHECK(std::stod(w[6]) == Approx(kwh * 1000.0).epsilon(5e-3));  // 1 kWh = 1000 Wh
  CHECK(std::stod(w[8]) == Approx(kg * 1000.0).epsilon(5e-3));   // 1 kg = 1000 g
  const Result listed = run_cli("runs list --json --db " + db, dir);
  REQUIRE(listed.status == 0);
  const json l = json::parse(listed.out);
  REQUIRE(l.size() == 1);
  CHECK(l[0].at("facility_energy_mwh").get<double>() == Approx(kwh / 1000.0).epsilon(1e-12));
  CHECK(l[0].at("co2e_gross_t").get<double>() == Approx(kg / 1000.0).epsilon(1e-12));
  CHECK(l[0].at("train_days").is_null());
}

TEST_CASE("cli::runs list: energy and CO2e cells scale their unit to the figure", "[cli][serving]") {
  using moesim::cli::scaled_energy_text;
  using moesim::cli::scaled_mass_text;
  CHECK(scaled_energy_text(0.0) == "0 Wh");
  CHECK(scaled_energy_text(56160.0) == "15.6 Wh");            // 56160 J / 3600 J per Wh
  CHECK(scaled_energy_text(3.6e6) == "1 kWh");
  CHECK(scaled_energy_text(29.3 * 3.6e6) == "29.3 kWh");
  CHECK(scaled_energy_text(71.23 * 3.6e9) == "71.2 MWh");      // T5-11B's order
  CHECK(scaled_energy_text(1234.0 * 3.6e9) == "1.23 GWh");
  CHECK(scaled_energy_text(360.0) == "0.100 Wh");             // below the smallest unit: that unit
  CHECK(scaled_mass_text(0.00669) == "6.69 g");
  CHECK(scaled_mass_text(6.91) == "6.91 kg");
  CHECK(scaled_mass_text(46500.0) == "46.5 t");
  CHECK(scaled_mass_text(2.5e6) == "2.50 kt");
}

TEST_CASE("cli::runs show --json: a failed serving run has a complete serving run's keys, null, and no training key",
          "[cli][serving]") {
  const std::string dir = scratch("failed_json");
  const std::string db = dir + "/runs.db";
  // A one-hour intensity series and a start one second before its end: the offline run's window (its end unknown
  // before simulating) outlasts the series, so accounting fails after the run was begun in the store.
  write(dir + "/one_hour.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,100\n");
  const std::string serving = "  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 1000}\n"
                              "  output_length: {type: fixed, value: 1500}\n  requests: 1500\n  pools:\n    - {replicas: 1, tensor: 8}\n";
  const auto failing = write(dir + "/late.yaml", std::string("name: serving-cli\n") + kModel + "serving:\n" + serving +
                                                     "cluster:\n  accelerator: h100\n  count: 8\n"
                                                     "energy: {start_time_utc: \"2024-03-01T00:59:59Z\"}\n"
                                                     "placement:\n  - datacenter: {name: dcH, pue: 1.1, hourly_intensity_csv: "
                                                     "one_hour.csv, gross_kgco2e_per_kwh: 0.3}\n");
  const Result bad = run_cli("run " + failing + " --db " + db, dir);
  REQUIRE(bad.status == 1);
  CHECK(bad.err.find("the series must cover the whole run") != std::string::npos);
  const auto ok = scenario(dir, serving);
  const Result good = run_cli("run " + ok + " --db " + db, dir);
  INFO(good.err);
  REQUIRE(good.status == 0);
  const Result failed_shown = run_cli("runs show 1 --json --db " + db, dir);
  const Result complete_shown = run_cli("runs show 2 --json --db " + db, dir);
  REQUIRE(failed_shown.status == 0);
  REQUIRE(complete_shown.status == 0);
  const json f = json::parse(failed_shown.out), c = json::parse(complete_shown.out);
  REQUIRE(f.at("status") == "failed");
  REQUIRE(c.at("status") == "complete");
  CHECK(f.at("kind") == "serving");
  CHECK(f.at("error").get<std::string>().find("the series must cover the whole run") != std::string::npos);
  // The keys: a complete serving run's, plus the failure's error and times.
  std::set<std::string> want, got;
  for (const auto& item : c.items()) want.insert(item.key());
  for (const char* k : {"error", "created_at_utc", "finished_at_utc"}) want.insert(k);
  for (const auto& item : f.items()) got.insert(item.key());
  CHECK(got == want);
  // No result is a figure: every one null, never 0; none of training's keys.
  for (const auto& item : c.items()) {
    if (std::set<std::string>{"run_id", "kind", "scenario", "status", "seed", "moesim_version"}.count(item.key())) continue;
    INFO(item.key());
    CHECK(f.at(item.key()).is_null());
  }
  for (const char* k : {"train_days", "facility_energy_mwh", "co2e_gross_t", "step_time_s", "steps"}) CHECK_FALSE(f.contains(k));
}

TEST_CASE("cli::serving --max-rate: a rate the deployment cannot keep up with is refused even when a short run meets the SLOs",
          "[cli][serving]") {
  const std::string dir = scratch("keepup");
  // The continuous-batching example: 12 s of arrivals, so past its capacity the queue has not yet pushed P99 TTFT
  // over 2 s; the search must stop where the backlog starts to grow.
  const Result r = run_cli(std::string("run ") + MOESIM_SOURCE_ROOT + "/scenarios/examples/serving-continuous.yaml --max-rate --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j.at("metrics").at("falls_behind").at("value").get<double>() == 0.0);
  bool behind_within_slo = false;
  for (const json& p : j.at("max_rate").at("probes"))
    if (p.at("meets_slo") == true && p.at("accepted") == false) behind_within_slo = true;
  CHECK(behind_within_slo);
  // At the rate found the deployment serves what arrives: the output tokens generated in the window match those the
  // requests arriving in it ask for.
  const json& m = j.at("metrics");
  CHECK(m.at("output_tokens").at("value").get<double>() / m.at("output_tokens_requested").at("value").get<double>() ==
        Approx(1.0).margin(0.02));
  // Of the measured requests' own tokens, all but the tail still running when the window closes.
  const double served = m.at("output_served_fraction").at("value").get<double>();
  CHECK(served <= 1.0);
  CHECK(served > 0.9);
}

TEST_CASE("cli::serving run: with no output token in the window, per-token figures are null and '–', not 0", "[cli][serving]") {
  const std::string dir = scratch("notokens");
  // A warm-up request, served before the window opens, and one arriving at the window's end (the last arrival ends
  // a trace's window): its tokens come after it.
  write(dir + "/one.csv", "arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.1,100,10\n");
  const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: one.csv}\n  prompt_length: {type: trace}\n"
                               "  output_length: {type: trace}\n  warmup_s: 0.05\n  pools:\n    - {replicas: 8}\n");
  const Result r = run_cli("run " + f + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  REQUIRE(j.at("metrics").at("output_tokens").at("value").get<double>() == 0.0);
  CHECK(j.at("energy_per_output_token_j").is_null());
  CHECK(j.at("gco2e_gross_per_1000_tokens").is_null());
  CHECK_FALSE(j.at("metrics").contains("energy_per_output_token_j"));
  const Result text = run_cli("run " + f + " --no-store", dir);
  CHECK(text.out.find("– J per output token") != std::string::npos);
  CHECK(text.out.find("0.000 J per output token") == std::string::npos);
}

TEST_CASE("cli::serving report: an offline run shorter than its interval has its series, the shorter last one named",
          "[cli][serving]") {
  const std::string dir = scratch("short_offline");
  // Two requests at once, served in a few milliseconds of the default 10 ms interval: one point covering the run.
  write(dir + "/two.csv", "arrival_s,prompt_tokens,output_tokens\n0,300,12\n0,300,12\n");
  const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: two.csv}\n  prompt_length: {type: trace}\n"
                               "  output_length: {type: trace}\n  pools:\n    - {replicas: 1, tensor: 8}\n");
  const Result r = run_cli("run " + f + " --json --db " + dir + "/runs.db", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j.at("metrics").at("mean_kv_use").at("value").get<double>() > 0.0);
  const auto id = std::to_string(j.at("run_id").get<long long>());
  const Result md = run_cli("report " + id + " --format md -o " + dir + "/rep --db " + dir + "/runs.db", dir);
  INFO(md.err);
  REQUIRE(md.status == 0);
  std::ifstream in(dir + "/rep/run-" + id + ".md");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("1 sample over the whole run") != std::string::npos);
  CHECK(text.find(" s; the last, ") != std::string::npos);
  CHECK(text.find("s, to the window's end)") != std::string::npos);
}

TEST_CASE("cli::runs requests: a serving run's stored request timings as CSV and JSON, or a clear error", "[cli][serving]") {
  const std::string dir = scratch("requests");
  write(dir + "/three.csv", "arrival_s,prompt_tokens,output_tokens\n0,300,12\n0.001,200,1\n0.002,100,5\n");
  const std::string body = "  arrival: {type: trace, trace_csv: three.csv}\n  prompt_length: {type: trace}\n"
                           "  output_length: {type: trace}\n  pools:\n    - {replicas: 1, tensor: 8}\n";
  const auto kept = scenario(dir, body + "  record_requests: true\n", "kept.yaml");
  const auto plain = scenario(dir, body, "plain.yaml");
  const std::string db = " --db " + dir + "/runs.db";
  const Result r = run_cli("run " + kept + " --json" + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json run = json::parse(r.out);
  const auto id = std::to_string(run.at("run_id").get<long long>());
  const Result csv = run_cli("runs requests " + id + db, dir);
  INFO(csv.err);
  REQUIRE(csv.status == 0);
  std::istringstream lines(csv.out);
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(lines, line)) rows.push_back(line);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0] == "request,arrival_s,first_token_s,end_s,queue_s,ttft_s,tpot_s,e2e_s,prompt_tokens,output_tokens,replica,preemptions");
  CHECK(rows[2].find(",,") != std::string::npos);  // one output token: no TPOT
  const Result js = run_cli("runs requests " + id + " --json" + db, dir);
  REQUIRE(js.status == 0);
  const json q = json::parse(js.out);
  REQUIRE(q.size() == 3);
  CHECK(q[1]["tpot_s"].is_null());
  // The figures the run printed are those of these requests: its maximum TTFT and E2E are theirs.
  double ttft_max = 0.0, e2e_max = 0.0;
  for (const auto& x : q) {
    ttft_max = std::max(ttft_max, x["ttft_s"].get<double>());
    e2e_max = std::max(e2e_max, x["e2e_s"].get<double>());
  }
  CHECK(ttft_max == Approx(run.at("ttft_s").at("max").get<double>()).epsilon(1e-12));
  CHECK(e2e_max == Approx(run.at("e2e_s").at("max").get<double>()).epsilon(1e-12));
  // Unhappy paths: a run that kept none, a run that does not exist.
  const Result p = run_cli("run " + plain + " --json" + db, dir);
  REQUIRE(p.status == 0);
  const Result none = run_cli("runs requests " + std::to_string(json::parse(p.out).at("run_id").get<long long>()) + db, dir);
  CHECK(none.status != 0);
  CHECK(none.err.find("serving.record_requests: true") != std::string::npos);
  const Result missing = run_cli("runs requests 999" + db, dir);
  CHECK(missing.status != 0);
  CHECK(missing.err.find("999") != std::string::npos);
}

TEST_CASE("cli::serving run: TPOT and ITL of one-token outputs are no figure (null and '–'), not 0 ms", "[cli][serving]") {
  const std::string dir = scratch("one_token");
  write(dir + "/ones.csv", "arrival_s,prompt_tokens,output_tokens\n0,100,1\n0.001,100,1\n");
  const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: ones.csv}\n  prompt_length: {type: trace}\n"
                               "  output_length: {type: trace}\n  pools:\n    - {replicas: 1, tensor: 8}\n");
  const Result r = run_cli("run " + f + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  for (const char* d : {"tpot_s", "itl_s"}) {
    INFO(d);
    CHECK(j.at(d).at("p99").is_null());
    CHECK(j.at(d).at("mean").is_null());
  }
  CHECK(j.at("ttft_s").at("p99").get<double>() > 0.0);
  CHECK_FALSE(j.at("metrics").contains("tpot_p99_s"));
  const Result text = run_cli("run " + f + " --no-store", dir);
  REQUIRE(text.status == 0);
  const auto row = text.out.substr(text.out.find("    TPOT"), 60);
  CHECK(row.find("\u2013") != std::string::npos);
  CHECK(row.find("0.0") == std::string::npos);
}

TEST_CASE("cli::serving run: a long warm-up request's tokens count as throughput but not in the measured requests' served fraction",
          "[cli][serving]") {
  const std::string dir = scratch("warmup_fraction");
  // One 400-token request arrives in the warm-up; the two measured ones (at 1 s and 2 s) ask for 10 tokens each.
  write(dir + "/t.csv", "arrival_s,prompt_tokens,output_tokens\n0,100,400\n1.0,100,10\n2.0,100,10\n");
  const auto f = scenario(dir, "  arrival: {type: trace, trace_csv: t.csv}\n  prompt_length: {type: trace}\n"
                               "  output_length: {type: trace}\n  warmup_s: 0.01\n  scheduler: {type: continuous}\n"
                               "  pools:\n    - {replicas: 1, tensor: 8}\n");
  const Result r = run_cli("run " + f + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const json& m = j.at("metrics");
  CHECK(m.at("output_tokens_requested").at("value").get<double>() == 20.0);
  const double measured = m.at("output_tokens_measured").at("value").get<double>();
  CHECK(measured <= 20.0);
  CHECK(m.at("output_tokens").at("value").get<double>() > measured);  // the warm-up request's tokens in the window
  const double fraction = m.at("output_served_fraction").at("value").get<double>();
  CHECK(fraction == Approx(measured / 20.0));
  CHECK(fraction <= 1.0);
}
