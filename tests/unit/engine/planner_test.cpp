// SPDX-License-Identifier: Apache-2.0
// The parallelism planner (engine/planner.hpp): the enumeration against hand-listed layouts, memory pruning with
// its reason, the two dominance rules, and the unhappy paths (no valid layout; a model that fits nowhere).

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "moesim/engine/planner.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/memory.hpp"

using moesim::engine::Candidate;
using moesim::engine::Layout;
using moesim::engine::PlanSpace;
using moesim::engine::Verdict;

namespace {

const moesim::catalog::Catalog& real_catalog() {
  static const moesim::catalog::Catalog cat = moesim::catalog::Catalog::load(MOESIM_SOURCE_ROOT "/profiles");
  return cat;
}

/** 4 devices, 2 experts, 2 heads, 2 layers, 4 sequences, tensor at most 2, micro-batches up to 2 x pipeline. */
PlanSpace tiny_space() {
  PlanSpace s;
  s.devices = 4;
  s.experts = 2;
  s.heads = 2;
  s.d_ff = 8;
  s.expert_d_ff = 8;
  s.layers = 2;
  s.sequences = 4;
  s.max_tensor = 2;
  s.max_tensor_basis = "test";
  s.max_microbatch_factor = 2;
  return s;
}

/** A training scenario on `gpus` H100s (one node) with `layout`'s parallelism; `model` is a YAML flow mapping. */
moesim::scenario::Scenario load(const std::string& model, int gpus, const std::string& batch_tokens, const Layout& l) {
  const std::string yaml = "name: plan-test\nmodel: " + model + "\ntraining: {tokens: 1.0e9, batch_tokens: " + batch_tokens +
                           ", optimizer: adamw, rematerialization: none}\nparallelism: auto\n"
                           "cluster: {accelerator: h100, count: " + std::to_string(gpus) +
                           ", topology: {type: nvlink_fat_tree, gpus_per_node: " + std::to_string(gpus) + "}}\n"
                           "placement: [{datacenter: gcp_us_central1_2023}]\n";
  return moesim::scenario::load_string(yaml, "plan-test.yaml", real_catalog(), l.overrides());
}

}  // namespace

TEST_CASE("engine::enumerate_layouts: the hand-listed layouts of a tiny space, in order", "[engine][planner]") {
  const std::vector<Layout> got = moesim::engine::enumerate_layouts(tiny_space());
  // By hand: pipeline 1 or 2 (divides 2 layers), tensor 1 or 2, data x expert = 4 / (t p) dividing 4 sequences,
  // expert dividing 2 experts, micro-batches powers of two dividing 4 / (d e) sequences, with a pipeline from p to 2p.
  const std::vector<std::vector<int>> expected = {
      // d, e, t, p, m
      {4, 1, 1, 1, 1}, {2, 2, 1, 1, 1},                                      // p1 t1: one sequence a replica
      {2, 1, 2, 1, 1}, {2, 1, 2, 1, 2}, {1, 2, 2, 1, 1}, {1, 2, 2, 1, 2},    // p1 t2: two
      {2, 1, 1, 2, 2}, {1, 2, 1, 2, 2},                                      // p2 t1: two; m >= p
      {1, 1, 2, 2, 2}, {1, 1, 2, 2, 4},                                      // p2 t2: four; m in [2, 4]
  };
  REQUIRE(got.size() == expected.size() * 4);  // ZeRO 0 to 3 each
  for (std::size_t i = 0; i < expected.size(); ++i) {
    for (int z = 0; z < 4; ++z) {
      const Layout& l = got[i * 4 + static_cast<std::size_t>(z)];
      INFO(i << " " << l.label());
      CHECK(std::vector<int>{l.data, l.expert, l.tensor, l.pipeline, l.microbatches} == expected[i]);
      CHECK(l.zero_stage == z);
      CHECK(l.data * l.expert * l.tensor * l.pipeline == 4);
    }
  }
  CHECK(got.front().label() == "d4 e1 t1 p1 m1 z0");
  CHECK(got.front().overrides().at(0) == "parallelism.data=4");
}

TEST_CASE("engine::enumerate_layouts: the tensor bound and a dense model", "[engine][planner]") {
  PlanSpace s = tiny_space();
  s.max_tensor = 1;
  for (const Layout& l : moesim::engine::enumerate_layouts(s)) CHECK(l.tensor == 1);
  s.max_pipeline = 1;  // --max-pipeline 1: no pipeline layouts, and the rule says so
  for (const Layout& l : moesim::engine::enumerate_layouts(s)) CHECK(l.pipeline == 1);
  CHECK_THAT(moesim::engine::enumeration_rules(s).at(3), Catch::Contains("at most 1 (--max-pipeline)"));
  s.max_pipeline = 0;
  s.experts = 0;  // dense: expert parallelism 1 only
  const auto dense = moesim::engine::enumerate_layouts(s);
  REQUIRE_FALSE(dense.empty());
  for (const Layout& l : dense) CHECK(l.expert == 1);
}

TEST_CASE("engine::enumerate_layouts: interleaved 1F1B chunk counts and a DualPipe schedule, against a brute force",
          "[engine][planner]") {
  PlanSpace s = tiny_space();
  s.layers = 12;  // 12, 6 or 3 layers per stage at pipeline 1, 2, 4: chunk counts 2, 3, 4, 6 where they divide
  s.devices = 8;
  s.sequences = 16;
  const std::vector<Layout> plain = moesim::engine::enumerate_layouts(s);  // max_virtual_stages 1: 1F1B only
  for (const Layout& l : plain) {
    CHECK(l.schedule == "1f1b");
    CHECK(l.virtual_stages == 1);
  }
  for (int max_v : {2, 3, 6}) {
    s.max_virtual_stages = max_v;
    const std::vector<Layout> got = moesim::engine::enumerate_layouts(s);
    // Brute force: every plain layout, and for each pipelined one whose micro-batches are a multiple of its stages,
    // one interleaved twin per v in [2, max_v] dividing its layers per stage.
    std::size_t expected = plain.size();
    for (const Layout& l : plain)
      if (l.pipeline > 1 && l.microbatches % l.pipeline == 0)
        for (int v = 2; v <= max_v; ++v) expected += (s.layers / l.pipeline) % v == 0 ? 1 : 0;
    INFO("max_virtual_stages " << max_v);
    CHECK(got.size() == expected);
    std::set<std::string> labels;
    for (const Layout& l : got) {
      labels.insert(l.label());
      if (l.schedule == "1f1b") {
        CHECK(l.virtual_stages == 1);
        continue;
      }
      INFO(l.label());
      CHECK(l.schedule == "interleaved_1f1b");
      CHECK(l.pipeline > 1);
      CHECK(l.microbatches % l.pipeline == 0);
      CHECK((s.layers / l.pipeline) % l.virtual_stages == 0);
      CHECK(l.virtual_stages >= 2);
      CHECK(l.virtual_stages <= max_v);
      CHECK(l.label().find(" v" + std::to_string(l.virtual_stages)) != std::string::npos);
      CHECK(l.overrides().at(6) == "parallelism.virtual_stages=" + std::to_string(l.virtual_stages));
      CHECK(l.overrides().at(7) == "parallelism.schedule=interleaved_1f1b");
    }
    CHECK(labels.size() == got.size());  // every layout its own label
  }
  // A DualPipe schedule from the scenario: every pipelined layout runs it (two chunks), the others 1F1B; no
  // interleaved layouts, and the same layouts as plain 1F1B otherwise.
  s.dual_schedule = "dualpipev";
  const std::vector<Layout> dual = moesim::engine::enumerate_layouts(s);
  REQUIRE(dual.size() == plain.size());
  for (std::size_t i = 0; i < dual.size(); ++i) {
    INFO(dual[i].label());
    CHECK(dual[i].schedule == (dual[i].pipeline > 1 ? "dualpipev" : "1f1b"));
    CHECK(dual[i].virtual_stages == (dual[i].pipeline > 1 ? 2 : 1));
    Layout same = dual[i];
    same.schedule = "1f1b";
    same.virtual_stages = 1;
    CHECK(same == plain[i]);
  }
  CHECK_THAT(moesim::engine::enumeration_rules(s).at(6), Catch::Contains("dualpipev where pipeline > 1"));
}

TEST_CASE("engine::enumerate_layouts: no valid layout is an error that says why", "[engine][planner][errors]") {
  PlanSpace s = tiny_space();
  s.devices = 3;  // 3 divides neither the layers (pipeline), the heads (tensor) nor the 4 sequences (data x expert)
  CHECK_THROWS_WITH(moesim::engine::enumerate_layouts(s),
                    Catch::Contains("no valid layout of the 3 devices") && Catch::Contains("pipeline can be 1") &&
                        Catch::Contains("must divide the 4 sequences"));
  s.devices = 0;
  CHECK_THROWS_AS(moesim::engine::enumerate_layouts(s), moesim::Error);
}

TEST_CASE("engine::screen_layouts: what does not fit is pruned with bytes needed vs available - dominance rules",
          "[engine][planner][memory]") {
  // An MoE of 8 experts of 4096 x 16384 in 4 layers on 8 H100s: about 4.3e9 parameters, 16 bytes each with mixed-
  // precision Adam (~69 GB) plus activations: replicated on every GPU it cannot fit 80 GB; sharded it does.
  const std::string model =
      "{layers: 4, d_model: 4096, d_ff: 16384, heads: 32, experts: 8, top_k: 2, vocab: 32000, seq_len: 2048}";
  const auto& accel = real_catalog().accelerator("h100");
  const moesim::scenario::Scenario base = moesim::scenario::load_plan_base(
      MOESIM_SOURCE_ROOT "/tests/data/cli/tiny_plan.yaml", real_catalog(),
      {"model=" + model, "training.batch_tokens=131072", "training.rematerialization=none", "cluster.count=8",
       "cluster.topology.gpus_per_node=8"});
  const PlanSpace space = moesim::engine::plan_space(base, accel);
  CHECK(space.devices == 8);
  CHECK(space.max_tensor == 8);
  CHECK(space.sequences == 64);
  const auto layouts = moesim::engine::enumerate_layouts(space);
  const auto candidates = moesim::engine::screen_layouts(
      layouts, [&](const Layout& l) { return load(model, 8, "131072", l); }, accel);
  REQUIRE(candidates.size() == layouts.size());
  std::size_t oom = 0, fit = 0, dominated = 0;
  for (const Candidate& c : candidates) {
    INFO(c.layout.label() << ": " << c.reason);
    REQUIRE(c.verdict != Verdict::invalid);  // the enumeration's rules are the resolver's (and stricter)
    // The verdict is the memory model's: recomputed here for the layout.
    const auto m = moesim::workload::estimate_memory_need(load(model, 8, "131072", c.layout), accel);
    CHECK(c.need_bytes == Approx(m.total_bytes()));
    if (c.verdict == Verdict::out_of_memory) {
      ++oom;
      CHECK(m.total_bytes() > m.capacity_bytes);
      CHECK_THAT(c.reason, Catch::Contains("GiB needed per device") && Catch::Contains("GiB available"));
    } else {
      CHECK(m.total_bytes() <= m.capacity_bytes);
      ++fit;
    }
    if (c.verdict == Verdict::dominated) {
      ++dominated;
      CHECK_THAT(c.reason, Catch::StartsWith("dominated by"));
    }
    // Rule 1: a ZeRO-1 layout that fits is never simulated (its ZeRO-2 twin fits and is).
    if (c.layout.zero_stage == 1 && c.verdict != Verdict::out_of_memory) CHECK(c.verdict == Verdict::dominated);
  }
  // The fully replicated layout (data 8, no ZeRO) cannot fit; the fully sharded one (expert 8, ZeRO 3) does.
  auto find = [&](Layout l) {
    return std::find_if(candidates.begin(), candidates.end(), [&](const Candidate& c) { return c.layout == l; });
  };
  const auto replicated = find({8, 1, 1, 1, 1, 0});
  REQUIRE(replicated != candidates.end());
  CHECK(replicated->verdict == Verdict::out_of_memory);
  const auto sharded = find({1, 8, 1, 1, 1, 3});
  REQUIRE(sharded != candidates.end());
  CHECK(sharded->verdict == Verdict::simulate);
  // Rule 2: without a pipeline, more micro-batches of the same layout and rematerialisation are dominated.
  const auto more_micro = find({1, 8, 1, 1, 2, 3});
  REQUIRE(more_micro != candidates.end());
  CHECK(more_micro->verdict == Verdict::dominated);
  CHECK_THAT(more_micro->reason, Catch::Contains("d1 e8 t1 p1 m1 z3"));
  CHECK(oom > 0);
  CHECK(fit > 0);
  CHECK(dominated > 0);
  CHECK_NOTHROW(moesim::engine::require_simulable(candidates, "h100"));
}

TEST_CASE("engine::require_simulable: a model that fits nowhere names the smallest memory needed",
          "[engine][planner][errors]") {
  // The same MoE, 64 layers on 2 GPUs: nothing fits.
  const std::string model =
      "{layers: 64, d_model: 4096, d_ff: 16384, heads: 32, experts: 8, top_k: 2, vocab: 32000, seq_len: 2048}";
  const auto& accel = real_catalog().accelerator("h100");
  const moesim::scenario::Scenario base = moesim::scenario::load_plan_base(
      MOESIM_SOURCE_ROOT "/tests/data/cli/tiny_plan.yaml", real_catalog(),
      {"model=" + model, "training.batch_tokens=131072", "training.rematerialization=none"});
  const auto layouts = moesim::engine::enumerate_layouts(moesim::engine::plan_space(base, accel));
  const auto candidates = moesim::engine::screen_layouts(
      layouts, [&](const Layout& l) { return load(model, 2, "131072", l); }, accel);
  double smallest = 1e300;
  std::string label;
  for (const Candidate& c : candidates) {
    REQUIRE(c.verdict == Verdict::out_of_memory);
    if (c.need_bytes < smallest) {
      smallest = c.need_bytes;
      label = c.layout.label();
    }
  }
  CHECK_THROWS_WITH(moesim::engine::require_simulable(candidates, "h100"),
                    Catch::Contains("no layout fits in memory") &&
                        Catch::Contains(fmt::format("{:.1f} GiB per device ({})", smallest / moesim::units::kGiB, label)));
  // Every layout invalid: the error quotes the resolver's reasons.
  std::vector<Candidate> invalid(2);
  invalid[0].verdict = invalid[1].verdict = Verdict::invalid;
  invalid[0].reason = "tensor parallelism 3 must divide heads 4";
  CHECK_THROWS_WITH(moesim::engine::require_simulable(invalid, "h100"),
                    Catch::Contains("none of the 2 layouts resolves") && Catch::Contains("must divide heads 4"));
}

TEST_CASE("scenario: `parallelism: auto` is refused where one layout is needed, and only `auto`", "[engine][planner][errors]") {
  const std::string file = MOESIM_SOURCE_ROOT "/tests/data/cli/tiny_plan.yaml";
  CHECK_THROWS_WITH(moesim::scenario::load_file(file, real_catalog()),
                    Catch::Contains("parallelism") && Catch::Contains("moesim plan"));
  CHECK_THROWS_WITH(moesim::scenario::load_file(file, real_catalog(), {"parallelism=automatic"}),
                    Catch::Contains("expected a mapping with keys (data, expert") && Catch::Contains("or `auto`") &&
                        Catch::Contains("got automatic"));
  // A layout given on the command line replaces `auto`, the other keys take their defaults.
  const auto s = moesim::scenario::load_file(file, real_catalog(), {"parallelism.data=2"});
  CHECK(s.parallelism.data == 2);
  CHECK(s.parallelism.tensor == 1);
  CHECK(s.parallelism.zero_stage == 0);
}
