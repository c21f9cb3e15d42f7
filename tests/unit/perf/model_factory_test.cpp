// SPDX-License-Identifier: Apache-2.0
// make_compute_model: which model an accelerator gets, and the refusals.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <memory>

#include "moesim/core/error.hpp"
#include "moesim/perf/measured_model.hpp"
#include "moesim/perf/model_factory.hpp"
#include "moesim/perf/transfer_model.hpp"
#include "perf_test_support.hpp"

namespace moesim::perf {
namespace {

using Catch::Matchers::Contains;

/** tests/data/perf/<dir>/measured with the real catalog's accelerators. */
ModelSources sources(const std::string& dir, bool allow_synthetic) {
  ModelSources s;
  s.measured_dir = test::data(dir + "/measured");
  s.accelerator = [](const std::string& name) -> std::optional<catalog::AcceleratorSpec> {
    try {
      return test::accelerator(name);
    } catch (const Error&) {
      return std::nullopt;
    }
  };
  s.allow_synthetic = allow_synthetic;
  return s;
}

TEST_CASE("perf::device_slugs_for: catalog accelerators map to the profiler's device slugs", "[perf][factory]") {
  CHECK(device_slugs_for("h100") == std::vector<std::string>{"h100_sxm", "h100"});
  CHECK(device_slugs_for("h200") == std::vector<std::string>{"h200"});
  CHECK(device_slugs_for("tpu_v3") == std::vector<std::string>{"tpu_v3"});
  CHECK(accelerator_for_device("h100_sxm") == std::optional<std::string>("h100"));
  CHECK(accelerator_for_device("a100_sxm4_80gb") == std::optional<std::string>("a100"));
  CHECK_FALSE(accelerator_for_device("h100_pcie").has_value());  // a different board than the catalog's SXM5
}

TEST_CASE("perf::make_compute_model: measured, transferred or roofline", "[perf][factory]") {
  const auto s = sources("factory", true);
  SECTION("the measured device gets its tables") {
    const auto m = make_compute_model(test::accelerator("h100"), test::efficiency(), s);
    const auto* table = dynamic_cast<const MeasuredTableModel*>(m.get());
    REQUIRE(table != nullptr);
    CHECK(m->planned_path(KernelClass::gemm) == TimePath::measured);
    CHECK(m->planned_path(KernelClass::optimizer) == TimePath::roofline);
    CHECK(m->synthetic());
    CHECK_THAT(m->describe(), Contains("h100_sxm.json") && Contains("SYNTHETIC"));
  }
  SECTION("another GPU gets efficiencies transferred from it") {
    const auto m = make_compute_model(test::accelerator("h200"), test::efficiency(), s);
    const auto* tr = dynamic_cast<const TransferModel*>(m.get());
    REQUIRE(tr != nullptr);
    CHECK(tr->target_rates().bytes_per_s == Approx(4.3e12));  // the H200's measured bandwidth (catalog)
    CHECK(m->planned_path(KernelClass::grouped_gemm) == TimePath::transferred);
    CHECK_THAT(m->describe(), Contains("h100_sxm.json"));
    for (const auto& [cls, path] : compute_paths(*m)) CHECK_THAT(path, Contains("synthetic"));
  }
  SECTION("a TPU keeps the published efficiencies") {
    const auto m = make_compute_model(test::accelerator("tpu_v3"), test::efficiency(), s);
    CHECK(dynamic_cast<const RooflineModel*>(m.get()) != nullptr);
  }
  SECTION("no profile directory: roofline") {
    const auto m = make_compute_model(test::accelerator("h100"), test::efficiency(), sources("no_such_dir", true));
    CHECK(dynamic_cast<const RooflineModel*>(m.get()) != nullptr);
  }
}

TEST_CASE("perf::make_compute_model: without measured profiles in profiles/, every run stays on the roofline",
          "[perf][factory]") {
  namespace fs = std::filesystem;
  bool any_profile = false;
  for (const auto& de : fs::directory_iterator(test::real_profiles() + "/measured"))
    any_profile = any_profile || de.path().extension() == ".json";
  // TPUs keep the published efficiencies whatever is measured.
  CHECK(dynamic_cast<const RooflineModel*>(
            make_compute_model(test::accelerator("tpu_v3"), test::efficiency(), test::real_profiles()).get()) != nullptr);
  if (any_profile) return;  // GPU runs then use the profiles; the fixture tests above cover that
  for (const char* name : {"h100", "h200", "a100", "v100", "tpu_v2", "tpu_v4"}) {
    const auto m = make_compute_model(test::accelerator(name), test::efficiency(), test::real_profiles());
    INFO(name);
    CHECK(dynamic_cast<const RooflineModel*>(m.get()) != nullptr);
    // Same model, same provenance string as before measured profiles existed.
    CHECK(m->describe() == RooflineModel(test::accelerator(name), test::efficiency()).describe());
  }
}

TEST_CASE("perf::make_compute_model: refuses profiles that may not be used", "[perf][factory]") {
  SECTION("a profile marked measured=false is never used as measured data") {
    CHECK_THROWS_WITH(make_compute_model(test::accelerator("h100"), test::efficiency(), sources("factory", false)),
                      Contains("\"measured\": false") && Contains("h100_sxm.json") && Contains("refusing"));
    // ... nor as the source of a transfer.
    CHECK_THROWS_AS(make_compute_model(test::accelerator("a100"), test::efficiency(), sources("factory", false)), Error);
  }
  SECTION("a profile whose device does not match its file name") {
    CHECK_THROWS_WITH(make_compute_model(test::accelerator("h200"), test::efficiency(), sources("factory_mismatch", true)),
                      Contains("provenance.device is 'h100_sxm'") && Contains("h200.json"));
  }
  SECTION("a malformed profile is an input error, not a silent fallback") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("moesim_perf_factory_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    fs::copy_file(test::data("malformed/zero_time.json"), dir / "h100_sxm.json", fs::copy_options::overwrite_existing);
    ModelSources s = sources("factory", true);
    s.measured_dir = dir.string();
    CHECK_THROWS_AS(make_compute_model(test::accelerator("h100"), test::efficiency(), s), InputError);
    CHECK_THROWS_AS(make_compute_model(test::accelerator("a100"), test::efficiency(), s), InputError);  // as a transfer source
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace moesim::perf
