// SPDX-License-Identifier: Apache-2.0
// check_feasible: a training run that does not fit in device memory is told what would make it fit (issue 10,
// item 8), with the memory each option gives, instead of generic advice that names what was already done.

#include <catch2/catch.hpp>

#include <string>

#include <fmt/format.h>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/memory.hpp"

namespace {

const moesim::catalog::Catalog& real_catalog() {
  static const moesim::catalog::Catalog cat = moesim::catalog::Catalog::load(MOESIM_SOURCE_ROOT "/profiles");
  return cat;
}

/** 12 layers of a 4096-wide MoE on one 8 x H100 node, no rematerialisation: ~237 GiB per GPU. */
moesim::scenario::Scenario too_big(const std::vector<std::string>& overrides = {}) {
  const std::string yaml =
      "name: oom\n"
      "model: {layers: 12, d_model: 4096, d_ff: 16384, heads: 32, experts: 8, top_k: 2, vocab: 32000, seq_len: 2048}\n"
      "training: {tokens: 1.0e9, batch_tokens: 262144, rematerialization: none}\n"
      "parallelism: {data: 1, expert: 8}\n"
      "cluster: {accelerator: h100, count: 8}\n"
      "placement: [{datacenter: gcp_us_central1_2023}]\n";
  return moesim::scenario::load_string(yaml, "oom.yaml", real_catalog(), overrides);
}

std::string feasibility_error(const moesim::scenario::Scenario& s) {
  try {
    moesim::engine::check_feasible(s, real_catalog());
  } catch (const moesim::Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("engine::check_feasible: out of memory names the options that fit, with their memory", "[engine][memory]") {
  const auto s = too_big();
  const std::string msg = feasibility_error(s);
  INFO(msg);
  REQUIRE(has(msg, "does not fit in device memory"));
  CHECK_FALSE(has(msg, "or rematerialization"));  // the generic advice is gone
  // Each option's figure is the memory estimate of the scenario with that change.
  auto fits_with = [&](const std::vector<std::string>& change) {
    const auto m = moesim::workload::estimate_memory(too_big(change), real_catalog().accelerator("h100"));
    return fmt::format("({:.1f} of {:.1f} GiB)", m.total_bytes() / moesim::units::kGiB, m.capacity_bytes / moesim::units::kGiB);
  };
  CHECK(has(msg, "it fits with training.rematerialization: full " + fits_with({"training.rematerialization=full"})));
  CHECK(has(msg, "parallelism.microbatches: 8 " + fits_with({"parallelism.microbatches=8"})));
  // ZeRO alone does not help this activation-bound model, and the message says so with its number.
  CHECK(has(msg, "not with parallelism.zero_stage: 1 ("));
  CHECK(has(msg, "parallelism.zero_stage: 3 ("));

  // Selective recomputation of every module this MoE has (no MLA): the estimate of that scenario.
  const auto every = moesim::workload::estimate_memory_need(
      too_big({"training.rematerialization=selective", "training.recompute_modules=core_attn,layernorm,moe_act"}),
      real_catalog().accelerator("h100"));
  CHECK(has(msg, fmt::format("training.rematerialization: selective + training.recompute_modules: core_attn,layernorm,moe_act ({:.1f}",
                             every.total_bytes() / moesim::units::kGiB)));

  SECTION("rematerialisation already on: not suggested again") {
    const std::string auto_msg = feasibility_error(too_big({"training.rematerialization=auto", "model.layers=300"}));
    INFO(auto_msg);
    REQUIRE(has(auto_msg, "with rematerialization)"));
    CHECK_FALSE(has(auto_msg, "training.rematerialization: full ("));
    CHECK(has(auto_msg, "it does not fit even with"));
    CHECK(has(auto_msg, "give more devices"));
  }
}
