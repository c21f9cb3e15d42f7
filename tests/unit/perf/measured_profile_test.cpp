// SPDX-License-Identifier: Apache-2.0
// MeasuredProfile: loading, labelling of synthetic files, entry selection, and every malformed file.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "moesim/core/error.hpp"
#include "moesim/perf/measured_profile.hpp"
#include "perf_test_support.hpp"

namespace moesim::perf {
namespace {

using Catch::Matchers::Contains;

TEST_CASE("perf::MeasuredProfile: loads a valid profile and labels a synthetic one as such", "[perf][profile]") {
  const MeasuredProfile p = MeasuredProfile::load(test::data("malformed/valid.json"));
  CHECK_FALSE(p.measured());
  CHECK(p.synthetic());
  CHECK_THAT(p.label(), Contains("SYNTHETIC") && Contains("not a measurement"));
  CHECK_THAT(p.citation(), Contains("valid.json") && Contains("SYNTHETIC"));
  CHECK(p.device() == "synthetic_small");
  CHECK(p.ceilings().matmul_bf16_flops_per_s == Approx(7.98e14));
  CHECK(p.ceilings().copy_bytes_per_s == Approx(3.0e12));
  CHECK_FALSE(p.ceilings().matmul_fp32_flops_per_s.has_value());  // null in the file = unknown
  REQUIRE(p.entries().size() == 12);
  const ProfileEntry& e = p.entries().front();
  CHECK(e.cls == KernelClass::gemm);
  CHECK(e.kernel == "qkv_proj");
  CHECK(e.m == 512);
  CHECK(e.n == 12288);
  CHECK(e.k == 4096);
  CHECK(e.line == test::line_of(test::data("malformed/valid.json"), "\"qkv_proj\""));
}

TEST_CASE("perf::MeasuredProfile: kernel_entries drops dense_ffn and keeps the fastest expert-FFN strategy", "[perf][profile]") {
  // The kernels/ fixture in the same format: 15 entries, one dense_ffn, three expert-FFN strategies of one shape.
  const MeasuredProfile p = MeasuredProfile::load(std::string(MOESIM_TEST_DATA) + "/kernels/measured_synthetic.json");
  CHECK_FALSE(p.measured());
  REQUIRE(p.entries().size() == 15);
  const auto used = p.kernel_entries();
  CHECK(used.size() == 12);
  int grouped = 0;
  for (const ProfileEntry* e : used) {
    CHECK(e->kernel != "dense_ffn");
    if (e->cls == KernelClass::grouped_gemm) {
      ++grouped;
      CHECK(e->strategy == "grouped");  // the file marks it fastest, and it has the minimum time
      REQUIRE(e->fastest.has_value());
      CHECK(*e->fastest);
    }
  }
  CHECK(grouped == 1);
  CHECK(p.skipped_count() == 1);
}

TEST_CASE("perf::MeasuredProfile: serving classes, fp8 entries and the fp8 ceiling load", "[perf][profile]") {
  const MeasuredProfile p = MeasuredProfile::load(std::string(MOESIM_TEST_DATA) + "/kernels/measured_synthetic.json");
  REQUIRE(p.ceilings().matmul_fp8_flops_per_s.has_value());
  CHECK(*p.ceilings().matmul_fp8_flops_per_s == Approx(1.0e15));
  int decode = 0, prefill = 0, fp8_gemm = 0;
  for (const ProfileEntry& e : p.entries()) {
    if (e.cls == KernelClass::decode_attention) {
      ++decode;
      CHECK(e.kernel == "decode_attention");
      CHECK(e.kv_len == 2048);
      CHECK(e.q_heads == 32);
      CHECK(e.kv_heads == 8);
      CHECK(e.d_head == 128);
      CHECK(e.block_size == 16);
      CHECK((e.dtype == "bf16" || e.dtype == "fp8"));
      CHECK(e.flops > 0.0);
    }
    if (e.cls == KernelClass::prefill_attention) {
      ++prefill;
      CHECK(e.seq == 512);
      CHECK(e.tokens == 2048);
    }
    if (e.cls == KernelClass::gemm && e.dtype == "fp8") {
      ++fp8_gemm;
      CHECK(e.n == 6144);
    }
  }
  CHECK(decode == 2);
  CHECK(prefill == 1);
  CHECK(fp8_gemm == 1);
  SECTION("a serving class with zero FLOPs is refused") {
    std::string text = test::read_text(std::string(MOESIM_TEST_DATA) + "/kernels/measured_synthetic.json");
    const std::string needle = "\"kernel_class\": \"prefill_attention\"";
    const auto at = text.find(needle);
    REQUIRE(at != std::string::npos);
    const auto flops = text.find("\"flops\": ", at);
    const auto end = text.find(',', flops);
    text.replace(flops, end - flops, "\"flops\": 0");
    CHECK_THROWS_WITH(MeasuredProfile::parse(text, "edited.json"), Contains("must be > 0 for kernel_class prefill_attention"));
  }
}

TEST_CASE("perf::MeasuredProfile: malformed files are rejected with file, line and key", "[perf][profile]") {
  struct Case {
    const char* file;
    const char* key;      // InputError::key()
    const char* message;  // part of the message
    const char* line_of;  // text on the expected line ("" = not checked)
  };
  const std::vector<Case> cases = {
      {"bad_syntax", "", "JSON syntax error", "\"repeats\": 20,,"},
      {"bad_format", "format", "moesim-measured-profile", "\"format\""},
      {"bad_version", "format_version", "knows version 1", "\"format_version\""},
      {"no_provenance", "provenance", "required key is missing", ""},
      {"no_measured_flag", "provenance.measured", "required key is missing", "\"provenance\""},
      {"measured_and_synthetic", "provenance.synthetic", "both measured and synthetic", "\"synthetic\""},
      {"no_ceilings", "ceilings", "required key is missing", ""},
      {"no_copy_ceiling", "ceilings.copy_bytes_per_s", "required key is missing", "\"ceilings\""},
      {"empty_entries", "entries", "non-empty array", "\"entries\""},
      {"bad_kernel_class", "entries[4].kernel_class", "allowed: gemm, batched_gemm, grouped_gemm", "\"matmul\""},
      {"bad_dtype", "entries[4].dtype", "allowed: bf16, fp32, fp8", "\"fp16\""},
      {"zero_time", "entries[8].time_s", "must be > 0", ""},
      {"negative_time", "entries[8].time_s", "must be > 0", ""},
      {"null_time", "entries[8].time_s", "is null", ""},
      {"missing_time", "entries[8].time_s", "required key is missing", ""},
      {"inconsistent_rate", "entries[0].achieved_flops_per_s", "differs from flops / time_s", ""},
      {"gemm_flops_mismatch", "entries[0].flops", "2·m·n·k", ""},
      {"grouped_no_strategy", "entries[4].strategy", "need a strategy", ""},
      {"bad_activation", "entries[4].activation", "allowed: relu, gelu, swiglu, geglu", "\"tanh\""},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.file) {
      const std::string file = test::data(std::string("malformed/") + c.file + ".json");
      try {
        MeasuredProfile::load(file);
        FAIL("no error for " << file);
      } catch (const InputError& e) {
        INFO(e.what());
        CHECK(e.file() == file);
        CHECK(e.key() == c.key);
        CHECK_THAT(e.message(), Contains(c.message));
        CHECK(e.line() >= 1);
        CHECK(e.column() >= 1);
        if (!std::string(c.line_of).empty()) CHECK(e.line() == test::line_of(file, c.line_of));
      }
    }
  }
}

TEST_CASE("perf::MeasuredProfile: an entry error points at the entry's line", "[perf][profile]") {
  const std::string file = test::data("malformed/zero_time.json");
  try {
    MeasuredProfile::load(file);
    FAIL("no error");
  } catch (const InputError& e) {
    // Entries are written one per line: the bad time is on the first router entry's line.
    CHECK(e.line() == test::line_of(file, "\"kernel_class\": \"router\""));
  }
}

TEST_CASE("perf::MeasuredProfile: a missing file is an error naming it", "[perf][profile]") {
  CHECK_THROWS_AS(MeasuredProfile::load(test::data("no_such_profile.json")), Error);
  CHECK_THROWS_WITH(MeasuredProfile::load(test::data("no_such_profile.json")), Contains("no_such_profile.json"));
}

TEST_CASE("perf::MeasuredProfile: parse accepts unknown keys and rejects a non-object", "[perf][profile]") {
  std::string text = test::read_text(test::data("malformed/valid.json"));
  text.insert(text.find("\"format\""), "\"a_future_field\": {\"x\": 1},\n  ");
  CHECK_NOTHROW(MeasuredProfile::parse(text, "future.json"));
  CHECK_THROWS_AS(MeasuredProfile::parse("[1, 2]", "array.json"), InputError);
}

}  // namespace
}  // namespace moesim::perf
