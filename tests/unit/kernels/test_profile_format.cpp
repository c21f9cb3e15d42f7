// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>

#include "moesim/core/error.hpp"
#include "moesim/kernels/profile_format.hpp"

using namespace moesim::kernels;
using namespace moesim::kernels::profile;

TEST_CASE("kernels::profile::summarize: median and linear p10/p90") {
  const Stats s = summarize({10, 1, 9, 2, 8, 3, 7, 4, 6, 5});
  CHECK(s.median_s == 5.5);
  CHECK(s.p10_s == Approx(1.9));  // rank 0.9 between 1 and 2
  CHECK(s.p90_s == Approx(9.1));
  CHECK(s.repeats == 10);
  CHECK(summarize({3.0}).median_s == 3.0);
  SECTION("no samples") { CHECK_THROWS_AS(summarize({}), moesim::Error); }
  SECTION("a negative or non-finite sample") {
    CHECK_THROWS_AS(summarize({1.0, -1.0}), moesim::Error);
    CHECK_THROWS_AS(summarize({1.0, std::nan("")}), moesim::Error);
  }
}

TEST_CASE("kernels::profile::device_slug: file names from CUDA device names") {
  CHECK(device_slug("NVIDIA H100 80GB HBM3") == "h100_sxm");
  CHECK(device_slug("NVIDIA H100 PCIe") == "h100_pcie");
  CHECK(device_slug("NVIDIA H100 NVL") == "h100_nvl");
  CHECK(device_slug("NVIDIA H200") == "h200");
  CHECK(device_slug("NVIDIA A100-SXM4-80GB") == "a100_sxm4_80gb");
  CHECK(device_slug("Tesla V100-SXM2-16GB") == "tesla_v100_sxm2_16gb");
  SECTION("a name with no letters or digits") { CHECK_THROWS_AS(device_slug(" -- "), moesim::Error); }
}

TEST_CASE("kernels::profile::json: escaping and numbers") {
  CHECK(json_escape("a\"b\\c\n") == "a\\\"b\\\\c\\n");
  CHECK(json_escape(std::string(1, '\x01')) == "\\u0001");
  CHECK(json_number(3.0) == "3");
  CHECK(json_number(1.5e-6) == "1.5e-06");
  CHECK(json_number(std::nan("")) == "null");
  CHECK(json_number(INFINITY) == "null");
}

TEST_CASE("kernels::profile::to_json: a profile with every required field parses back") {
  Profile p;
  p.provenance = {{"measured", false}, {"synthetic", true}, {"gpu_name", std::string("test \"gpu\"")}};
  p.ceilings = {{"matmul_bf16_flops_per_s", 8e14}, {"copy_bytes_per_s", 3e12}};
  Entry e;
  e.kernel_class = KernelClass::permute;
  e.kernel = "permute";
  e.dtype = DType::bf16;
  e.fields = {{"tokens", std::int64_t{4096}}, {"d_model", std::int64_t{4096}}, {"top_k", std::int64_t{2}}};
  e.cost = permute_cost(8192, 8192, 4096, DType::bf16);
  e.stats = summarize({1e-4, 2e-4, 3e-4});
  p.entries.push_back(e);
  p.skipped.push_back({"expert_ffn fp32 big", "time budget"});
  const auto j = nlohmann::json::parse(to_json(p));
  CHECK(j.at("format") == kFormatName);
  CHECK(j.at("format_version") == kFormatVersion);
  CHECK(j.at("provenance").at("gpu_name") == "test \"gpu\"");
  CHECK(j.at("ceilings").at("copy_bytes_per_s") == 3e12);
  const auto& x = j.at("entries").at(0);
  CHECK(x.at("kernel_class") == "permute");
  CHECK(x.at("dtype") == "bf16");
  CHECK(x.at("tokens") == 4096);
  CHECK(x.at("time_s").get<double>() == Approx(2e-4));
  CHECK(x.at("time_p10_s").get<double>() == Approx(1.2e-4));
  CHECK(x.at("repeats") == 3);
  CHECK(x.at("flops") == 0);
  CHECK(x.at("achieved_bytes_per_s").get<double>() == Approx(e.cost.bytes / 2e-4));
  CHECK(j.at("skipped").at(0).at("reason") == "time budget");
  SECTION("ceilings are required") {
    p.ceilings = {{"copy_bytes_per_s", 3e12}};
    CHECK_THROWS_WITH(to_json(p), Catch::Contains("matmul_bf16_flops_per_s"));
  }
}
