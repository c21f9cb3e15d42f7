// SPDX-License-Identifier: Apache-2.0
// The measured-profile format (profiles/measured/README.md): the synthetic fixture, and every real
// profile committed under profiles/measured/, must hold the required fields with consistent values.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "moesim/kernels/counting.hpp"
#include "moesim/kernels/types.hpp"

using namespace moesim::kernels;
using nlohmann::json;

namespace {

json load(const std::filesystem::path& p) {
  std::ifstream f(p);
  REQUIRE(f.good());
  return json::parse(f);
}

std::int64_t i(const json& e, const char* key) { return e.at(key).get<std::int64_t>(); }

// Recomputes flops/bytes from the shape fields with the counting conventions.
Cost expected_cost(const json& e) {
  const DType dt = parse_dtype(e.at("dtype").get<std::string>());
  const std::string kernel = e.at("kernel");
  switch (parse_kernel_class(e.at("kernel_class").get<std::string>())) {
    case KernelClass::gemm:
      if (kernel == "dense_ffn") {
        return dense_ffn_cost(i(e, "tokens"), i(e, "d_model"), i(e, "d_ff"),
                              parse_activation(e.at("activation").get<std::string>()), dt);
      }
      return gemm_cost(i(e, "m"), i(e, "n"), i(e, "k"), dt,
                       dtype_bytes(parse_dtype(e.value("output_dtype", to_string(dt)))));
    case KernelClass::batched_gemm: return batched_gemm_cost(i(e, "batch"), i(e, "m"), i(e, "n"), i(e, "k"), dt);
    case KernelClass::grouped_gemm: {
      // every expert has ≥ 1 row in the fixture and in the profiler's grids (count_min ≥ 1)
      const std::int64_t active = i(e, "count_min") > 0 ? i(e, "experts") : -1;
      return expert_ffn_cost(i(e, "tokens"), active, i(e, "d_model"), i(e, "d_ff"),
                             parse_activation(e.at("activation").get<std::string>()), dt);
    }
    case KernelClass::router: {
      const std::int64_t kept = static_cast<std::int64_t>(
          std::llround((1.0 - e.at("drop_rate").get<double>()) * static_cast<double>(i(e, "tokens") * i(e, "top_k"))));
      return router_cost(i(e, "tokens"), i(e, "experts"), i(e, "top_k"), kept);
    }
    case KernelClass::permute: return permute_cost(i(e, "rows"), i(e, "rows"), i(e, "d_model"), dt);
    case KernelClass::unpermute: return unpermute_cost(i(e, "tokens"), i(e, "top_k"), i(e, "rows"), i(e, "d_model"), dt);
    case KernelClass::elementwise:
      return activation_cost(i(e, "tokens"), i(e, "d_ff"), parse_activation(e.at("activation").get<std::string>()), dt);
    case KernelClass::decode_attention:
      // every sequence of a profiled batch has the same KV length
      return decode_attention_cost(std::vector<std::int64_t>(static_cast<std::size_t>(i(e, "batch")), i(e, "kv_len")),
                                   i(e, "q_heads"), i(e, "kv_heads"), i(e, "d_head"), i(e, "block_size"), dt);
    case KernelClass::prefill_attention: {
      // seq_lens: the batch's lengths, comma-separated (q_len = kv_len: a plain prefill)
      std::vector<std::int64_t> lens;
      std::stringstream ss(e.at("seq_lens").get<std::string>());
      for (std::string item; std::getline(ss, item, ',');) lens.push_back(std::stoll(item));
      CHECK(static_cast<std::int64_t>(lens.size()) == i(e, "batch"));
      return prefill_attention_cost(lens, lens, i(e, "q_heads"), i(e, "kv_heads"), i(e, "d_head"), e.at("causal").get<bool>(), dt);
    }
  }
  return {};
}

void check_profile(const json& doc) {
  CHECK(doc.at("format") == "moesim-measured-profile");
  CHECK(doc.at("format_version") == 1);
  const json& prov = doc.at("provenance");
  CHECK(prov.at("measured").is_boolean());
  CHECK(prov.contains("gpu_name"));
  CHECK(doc.at("ceilings").at("matmul_bf16_flops_per_s").get<double>() > 0);
  CHECK(doc.at("ceilings").at("copy_bytes_per_s").get<double>() > 0);
  REQUIRE(doc.at("entries").is_array());
  for (const json& e : doc.at("entries")) {
    INFO(e.dump());
    for (const char* key : {"kernel_class", "kernel", "dtype", "flops", "bytes", "time_s", "time_p10_s", "time_p90_s",
                            "repeats", "achieved_flops_per_s", "achieved_bytes_per_s"}) {
      REQUIRE(e.contains(key));
    }
    const auto cls = parse_kernel_class(e.at("kernel_class").get<std::string>());
    const double t = e.at("time_s");
    CHECK(t > 0);
    CHECK(e.at("time_p10_s").get<double>() <= t);
    CHECK(e.at("time_p90_s").get<double>() >= t);
    CHECK(e.at("repeats").get<int>() >= 1);
    CHECK(e.at("achieved_flops_per_s").get<double>() == Approx(e.at("flops").get<double>() / t));
    CHECK(e.at("achieved_bytes_per_s").get<double>() == Approx(e.at("bytes").get<double>() / t));
    if (cls == KernelClass::grouped_gemm) {
      CHECK(e.contains("strategy"));
      CHECK(e.at("fastest").is_boolean());
    }
    if (cls == KernelClass::grouped_gemm && i(e, "count_min") < 1) continue;  // active-expert count not recorded
    const Cost c = expected_cost(e);
    CHECK(e.at("flops").get<double>() == Approx(c.flops));
    CHECK(e.at("bytes").get<double>() == Approx(c.bytes));
  }
}

}  // namespace

TEST_CASE("kernels::measured_format: the synthetic fixture follows the format and its formula") {
  const json doc = load(std::filesystem::path(MOESIM_TEST_DATA) / "kernels" / "measured_synthetic.json");
  check_profile(doc);
  const json& prov = doc.at("provenance");
  CHECK(prov.at("synthetic") == true);
  CHECK(prov.at("measured") == false);
  // time_s = (max(flops/P, bytes/BW) + T0) · strategy factor, as the fixture's note states
  const double bw = prov.at("formula_bytes_per_s");
  const double t0 = prov.at("formula_floor_s");
  std::set<std::string> classes;
  int fastest = 0;
  for (const json& e : doc.at("entries")) {
    classes.insert(e.at("kernel_class").get<std::string>());
    const double p = prov.at("formula_peak_" + e.at("dtype").get<std::string>() + "_flops_per_s").get<double>();
    double factor = 1.0;
    if (e.contains("strategy")) {
      const std::string s = e.at("strategy");
      factor = s == "loop" ? 1.3 : s == "grouped" ? 1.1 : 1.2;
      fastest += e.at("fastest").get<bool>();
    }
    const double want = (std::max(e.at("flops").get<double>() / p, e.at("bytes").get<double>() / bw) + t0) * factor;
    CHECK(e.at("time_s").get<double>() == Approx(want).epsilon(1e-12));
  }
  CHECK(fastest == 1);
  std::set<std::string> all;
  for (KernelClass c : kernel_classes()) all.insert(to_string(c));
  CHECK(classes == all);  // the fixture exercises every class of the format
}

TEST_CASE("kernels::measured_format: committed measured profiles follow the format") {
  const auto dir = std::filesystem::path(MOESIM_SOURCE_ROOT) / "profiles" / "measured";
  int checked = 0;
  if (std::filesystem::exists(dir)) {
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      if (f.path().extension() != ".json") continue;
      INFO(f.path().string());
      const json doc = load(f.path());
      check_profile(doc);
      CHECK(doc.at("provenance").at("measured") == true);
      ++checked;
    }
  }
  if (checked == 0) WARN("no measured profile under profiles/measured/ yet (run kernels/profile_on_gpu.sh on a GPU)");
}
