// SPDX-License-Identifier: Apache-2.0
// Golden tests of the example scenarios (scenarios/examples/): each example runs through the `moesim`
// binary and its key outputs must match tests/golden/expected/NAME.json within 1e-9 (the simulator is
// deterministic). Each test also checks what its example claims to show, independently of the golden
// numbers. Regenerate after an intended change: tests/golden/regenerate.sh <build-dir>.

#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "golden_support.hpp"

namespace g = moesim::golden;
using nlohmann::json;

namespace {

double breakdown_sum(const json& run) {
  double s = 0.0;
  for (const auto& [k, v] : run.at("step_breakdown_s").items()) s += v.get<double>();
  return s;
}

/** Checks every example shares: a complete run whose breakdown adds up to its step time. */
void common_checks(const json& run) {
  CHECK(run.at("status") == "complete");
  CHECK(run.at("step_time_s").get<double>() > 0.0);
  CHECK(breakdown_sum(run) == Approx(run.at("step_time_s").get<double>()).epsilon(1e-9));
  CHECK(run.at("train_days").get<double>() ==
        Approx(run.at("steps").get<double>() * run.at("step_time_s").get<double>() / 86400.0).epsilon(1e-12));
  CHECK(run.at("mfu").get<double>() > 0.0);
  CHECK(run.at("mfu").get<double>() < 1.0);
}

}  // namespace

TEST_CASE("golden::examples: every example has a golden file and every golden file an example", "[golden]") {
  std::set<std::string> examples, expected;
  for (const auto& e : g::fs::directory_iterator(g::examples_dir()))
    if (e.path().extension() == ".yaml") examples.insert(e.path().stem().string());
  if (g::fs::exists(g::expected_dir()))
    for (const auto& e : g::fs::directory_iterator(g::expected_dir()))
      if (e.path().extension() == ".json") expected.insert(e.path().stem().string());
  CHECK(examples.size() >= 5);
  if (!g::update_mode()) CHECK(examples == expected);
  // Each example is also listed below as its own golden test case.
  for (const char* name : {"tpu-v3-torus-moe", "a100-dense-tensor-pipeline", "h100-zipf-dropless", "two-datacenter-data-parallel",
                           "tpu-v4-3d-torus", "inline-datacenter-grid", "serving-continuous", "serving-chunked-prefill",
                           "serving-static", "serving-disaggregated", "serving-expert-parallel", "serving-two-sites",
                           "serving-trace", "tpu-v4-glam-2d-sharding"})
    CHECK(examples.count(name) == 1);
}

TEST_CASE("golden::tpu-v3-torus-moe: TPU v3 torus, expert parallel over 32 cores", "[golden]") {
  const json run = g::check_golden("tpu-v3-torus-moe");
  common_checks(run);
  CHECK(run.at("chips") == 16);
  CHECK(run.at("devices") == 32);
  // Capacity 1.25 with a Zipf skew: some tokens overflow popular experts, first choices too (fewer).
  CHECK(run.at("tokens_dropped_fraction").get<double>() > 0.0);
  CHECK(run.at("first_choice_dropped_fraction").get<double>() > 0.0);
  CHECK(run.at("first_choice_dropped_fraction").get<double>() < run.at("tokens_dropped_fraction").get<double>());
  CHECK(run.at("second_choice_skipped_fraction") == 0.0);  // policy 'all'
  CHECK(run.at("step_breakdown_s").contains("comm.all_to_all"));
  // Capacity-padded einsum dispatch: the step does not depend on the draw, so the steps have no spread (exactly).
  CHECK(run.at("step_time_spread_s") == 0.0);
}

TEST_CASE("golden::a100-dense-tensor-pipeline: dense model, tensor + pipeline parallel on A100s", "[golden]") {
  const json run = g::check_golden("a100-dense-tensor-pipeline");
  common_checks(run);
  CHECK(run.at("tokens_dropped_fraction") == 0.0);  // dense: no router
  const json& busy = run.at("step_busy_s");
  CHECK(busy.value("comm.tensor_parallel", 0.0) > 0.0);
  CHECK(busy.value("comm.pipeline_p2p", 0.0) > 0.0);
  CHECK_FALSE(busy.contains("comm.all_to_all"));
}

TEST_CASE("golden::h100-zipf-dropless: Zipf-skewed dropless routing varies between steps", "[golden]") {
  const json run = g::check_golden("h100-zipf-dropless");
  common_checks(run);
  CHECK(run.at("tokens_dropped_fraction") == 0.0);          // dropless
  CHECK(run.at("step_time_spread_s").get<double>() > 0.0);  // each step draws other expert loads
}

TEST_CASE("golden::two-datacenter-data-parallel: replicas in two Google regions over a WAN", "[golden]") {
  const json run = g::check_golden("two-datacenter-data-parallel");
  common_checks(run);
  const json& dcs = run.at("datacenters");
  REQUIRE(dcs.size() == 2);
  CHECK(dcs[0].at("name") == "gcp_us_central1_2023");
  CHECK(dcs[1].at("name") == "gcp_europe_west4_2023");
  CHECK(dcs[0].at("chips") == 16);
  CHECK(dcs[1].at("chips") == 16);
  CHECK(run.at("metrics").at("wan_time_per_step_s").at("value").get<double>() > 0.0);
  CHECK(run.at("metrics").at("wan_bytes_per_step").at("value").get<double>() > 0.0);
  // Capacity ceil(1.25 x 2 x 8192 / 8) = 2560 per group is 12 standard deviations above the 2048 assignments an
  // expert gets on average: the expected overflow is below a double's resolution of the count, so exactly 0.
  CHECK(run.at("tokens_dropped_fraction") == 0.0);
  CHECK(run.at("first_choice_dropped_fraction") == 0.0);
  // Per-site carbon follows each site's own grid: tCO2e = MWh x kgCO2e/kWh (1000 kWh/MWh, 1000 kg/t).
  for (const json& d : dcs)
    CHECK(d.at("co2e_gross_t").get<double>() ==
          Approx(d.at("facility_energy_mwh").get<double>() * d.at("gross_kgco2e_per_kwh").get<double>()).epsilon(1e-9));
}

TEST_CASE("golden::deepseek-v3-h800: MLA, a shared expert and 256 routed experts on 2048 H800s", "[golden]") {
  const json run = g::check_golden("deepseek-v3-h800");
  common_checks(run);
  CHECK(run.at("chips") == 2048);
  CHECK(run.at("tokens_dropped_fraction") == 0.0);  // dropless
  const json& br = run.at("step_breakdown_s");
  CHECK(br.value("compute.shared_experts", 0.0) > 0.0);  // the shared expert runs on every token
  CHECK(br.value("comm.all_to_all", 0.0) > 0.0);         // expert parallelism 64 over 8 nodes
  CHECK(br.value("comm.dualpipe_grad_sync", 0.0) > 0.0);  // DualPipe's two copies of the model sum their gradients
  CHECK(br.count("comm.embedding_grad_sync") == 0);       // ... the tied matrix's with them
}

TEST_CASE("golden::tpu-v4-3d-torus: TPU v4 4x4x4 torus", "[golden]") {
  const json run = g::check_golden("tpu-v4-3d-torus");
  common_checks(run);
  CHECK(run.at("chips") == 64);
  CHECK(run.at("devices") == 64);
  CHECK(run.at("step_time_spread_s") == 0.0);  // one simulated step
}

TEST_CASE("golden::tpu-v4-glam-2d-sharding: GLaM's GSPMD layout fits a TPU v4's 32 GiB", "[golden]") {
  const json run = g::check_golden("tpu-v4-glam-2d-sharding");
  common_checks(run);
  CHECK(run.at("chips") == 1024);
  const json& m = run.at("metrics");
  const double need = m.at("memory_params_bytes").at("value").get<double>() + m.at("memory_grads_bytes").at("value").get<double>() +
                      m.at("memory_optimizer_bytes").at("value").get<double>() +
                      m.at("memory_activations_bytes").at("value").get<double>();
  CHECK(need <= m.at("memory_capacity_bytes").at("value").get<double>());
  CHECK(m.at("memory_capacity_bytes").at("value").get<double>() == Approx(32.0 * 1024 * 1024 * 1024));
  // Model-axis activations: reduce-scatters and all-gathers, no tensor all-reduce (sequence parallelism); the
  // expert all-to-all; ZeRO-3's weight gathers.
  CHECK(m.at("collective_bytes_per_step.reduce_scatter").at("value").get<double>() > 0.0);
  CHECK(m.at("collective_bytes_per_step.all_to_all").at("value").get<double>() > 0.0);
  const json& busy = run.at("step_busy_s");
  CHECK(busy.value("comm.zero_all_gather", 0.0) > 0.0);
  // Each model rank dispatches its own 1/16 of the tokens: the einsums are a small part of the expert work.
  CHECK(busy.at("compute.dispatch").get<double>() < 0.05 * busy.at("compute.expert_ffn").get<double>());
}

TEST_CASE("golden::inline-datacenter-grid: an inline datacenter takes its intensity from the grid data", "[golden]") {
  const json run = g::check_golden("inline-datacenter-grid");
  common_checks(run);
  const json& dcs = run.at("datacenters");
  REQUIRE(dcs.size() == 1);
  CHECK(dcs[0].at("name") == "colo_frankfurt_2023");
  CHECK(dcs[0].at("pue").get<double>() == 1.58);
  // profiles/grid/electricity_maps/electricity-maps-yearly.csv, row "DE,2023,...": 379 gCO2e/kWh.
  CHECK(dcs[0].at("gross_kgco2e_per_kwh").get<double>() == Approx(0.379));
  CHECK(run.at("co2e_gross_t").get<double>() == Approx(run.at("facility_energy_mwh").get<double>() * 0.379).epsilon(1e-9));
}

namespace {
/** Checks every serving example shares: a complete run with ordered percentiles and consistent totals. */
void serving_checks(const json& run) {
  CHECK(run.at("status") == "complete");
  CHECK(run.at("kind") == "serving");
  for (const char* d : {"ttft_s", "tpot_s", "e2e_s"}) {
    const json& x = run.at(d);
    CHECK(x.at("p50").get<double>() <= x.at("p90").get<double>());
    CHECK(x.at("p90").get<double>() <= x.at("p99").get<double>());
    CHECK(x.at("p99").get<double>() <= x.at("max").get<double>());
  }
  CHECK(run.at("requests_measured").get<long long>() > 0);
  CHECK(run.at("output_tokens_per_s").get<double>() > 0.0);
  // J per token = facility energy / tokens, and gCO2e per 1000 tokens = the energy's CO2e / tokens x 1000.
  const double tokens = run.at("metrics").at("output_tokens").at("value").get<double>();
  const double kwh = run.at("facility_energy_kwh").get<double>();
  CHECK(run.at("energy_per_output_token_j").get<double>() == Approx(kwh * 3.6e6 / tokens).epsilon(1e-9));
  CHECK(run.at("gco2e_gross_per_1000_tokens").get<double>() ==
        Approx(run.at("co2e_gross_kg").get<double>() * 1000.0 / tokens * 1000.0).epsilon(1e-9));
}
}  // namespace

TEST_CASE("golden::serving-continuous: iteration-level batching on four tensor-parallel replicas", "[golden][serving]") {
  const json run = g::check_golden("serving-continuous");
  serving_checks(run);
  CHECK(run.at("throughput_rps").get<double>() == Approx(40.0).epsilon(0.15));  // keeps up with the arrivals
  CHECK(run.at("goodput_fraction").get<double>() > 0.99);
}

TEST_CASE("golden::serving-chunked-prefill: Sarathi chunks keep decodes flowing", "[golden][serving]") {
  const json run = g::check_golden("serving-chunked-prefill");
  serving_checks(run);
  const json whole = g::run_moesim(g::examples_dir() / "serving-continuous.yaml").parsed;
  // Same traffic, about the same tokens in the window; long prompts are cut into chunks, so their TTFT grows
  // and the worst stall of the decoding sequences (the longest inter-token gap) shrinks.
  CHECK(run.at("metrics").at("output_tokens").at("value").get<double>() ==
        Approx(whole.at("metrics").at("output_tokens").at("value").get<double>()).epsilon(0.001));
  CHECK(run.at("ttft_s").at("p99").get<double>() >= whole.at("ttft_s").at("p99").get<double>());
  CHECK(run.at("itl_s").at("max").get<double>() < whole.at("itl_s").at("max").get<double>());
}

TEST_CASE("golden::serving-static: request-level batches make short requests wait", "[golden][serving]") {
  const json run = g::check_golden("serving-static");
  serving_checks(run);
  // A request that finds a batch in flight waits for all of it: TTFT's tail is far above its median.
  CHECK(run.at("ttft_s").at("p99").get<double>() > 10.0 * run.at("ttft_s").at("p50").get<double>());
}

TEST_CASE("golden::serving-disaggregated: prefill and decode pools joined by KV transfers", "[golden][serving]") {
  const json run = g::check_golden("serving-disaggregated");
  serving_checks(run);
  CHECK(run.at("metrics").at("kv_transfer_bytes").at("value").get<double>() > 0.0);
}

TEST_CASE("golden::serving-expert-parallel: DP attention, expert all-to-alls, Zipf-skewed experts", "[golden][serving]") {
  const json run = g::check_golden("serving-expert-parallel");
  serving_checks(run);
  // Skewed expert loads on GPUs that all wait for the slowest: against a balanced router, prompts (many
  // tokens, compute-bound experts) take longer; small decode batches touch fewer distinct experts, so read
  // fewer expert weights and are no slower.
  const json balanced = g::run_moesim_args("run '" + (g::examples_dir() / "serving-expert-parallel.yaml").string() +
                                           "' --json --no-store --set routing.skew=0", "ep_balanced").parsed;
  // (The mean: with 225 requests the median moves with how arrivals fall into iterations, by about 1 %.)
  CHECK(run.at("ttft_s").at("mean").get<double>() > balanced.at("ttft_s").at("mean").get<double>());
  CHECK(run.at("tpot_s").at("mean").get<double>() <= balanced.at("tpot_s").at("mean").get<double>());
}

TEST_CASE("golden::serving-two-sites: one deployment, two grids", "[golden][serving]") {
  const json run = g::check_golden("serving-two-sites");
  serving_checks(run);
  const json& dcs = run.at("datacenters");
  REQUIRE(dcs.size() == 2);
  // The same hardware and traffic in both: equal energy per token, carbon per token in the ratio of the grids.
  CHECK(dcs[0].at("energy_per_output_token_j").get<double>() == Approx(dcs[1].at("energy_per_output_token_j").get<double>()).epsilon(0.02));
  CHECK(dcs[0].at("gco2e_gross_per_1000_tokens").get<double>() / dcs[1].at("gco2e_gross_per_1000_tokens").get<double>() ==
        Approx(dcs[0].at("gross_kgco2e_per_kwh").get<double>() / dcs[1].at("gross_kgco2e_per_kwh").get<double>()).epsilon(0.02));
}

TEST_CASE("golden::serving-trace: requests replayed from a trace file", "[golden][serving]") {
  const json run = g::check_golden("serving-trace");
  serving_checks(run);
  // The trace holds 200 requests, all measured (no warm-up); their output tokens all fall in the window
  // (it runs to the last arrival, after which a few tokens are produced in the drain).
  CHECK(run.at("requests_measured").get<long long>() == 200);
  CHECK(run.at("metrics").at("requests_total").at("value").get<double>() == 200.0);
}

TEST_CASE("golden::compare-small-placement: one alternative of every kind, ranked, with the Pareto front", "[golden][compare]") {
  const json cmp = g::check_golden_comparison("small_placement");
  std::map<std::string, json> by_label;
  for (const json& a : cmp.at("alternatives")) by_label[a.at("label").get<std::string>()] = a;
  REQUIRE(by_label.size() == 7);
  for (const auto& [label, a] : by_label) CHECK(a.at("status") == "complete");
  // Ranked by gross CO2e, 1..7 without gaps.
  double last = -1.0;
  int rank = 0;
  for (const json& a : cmp.at("alternatives")) {
    CHECK(a.at("rank") == ++rank);
    CHECK(a.at("co2e_gross_t").get<double>() >= last);
    last = a.at("co2e_gross_t").get<double>();
  }
  const auto days = [&](const char* l) { return by_label.at(l).at("train_days").get<double>(); };
  const auto wan = [&](const char* l) { return by_label.at(l).at("wan_bytes_per_step").get<double>(); };
  // A site or grid year changes carbon, not time; the same hardware in one site has no WAN traffic.
  CHECK(days("finland") == days("base"));
  CHECK(days("iowa_2019_grid") == days("base"));
  for (const char* l : {"base", "finland", "iowa_2019_grid", "a100", "half_the_gpus"}) CHECK(wan(l) == 0.0);
  // Splits pay for the WAN: the replica split moves gradients, the expert split every all-to-all.
  CHECK(wan("replicas_iowa_netherlands") > 0.0);
  CHECK(wan("experts_iowa_netherlands") > wan("replicas_iowa_netherlands"));
  CHECK(days("replicas_iowa_netherlands") > days("base"));
  CHECK(days("experts_iowa_netherlands") > days("replicas_iowa_netherlands"));
  // Slower hardware and fewer GPUs take longer.
  CHECK(days("a100") > days("base"));
  CHECK(days("half_the_gpus") > 1.5 * days("base"));
  // Finland's low-carbon grid at the base's speed is on the front; the dominated WAN splits are not.
  CHECK(by_label.at("finland").at("pareto") == true);
  CHECK(by_label.at("experts_iowa_netherlands").at("pareto") == false);
  CHECK(by_label.at("replicas_iowa_netherlands").at("pareto") == false);
}
