// SPDX-License-Identifier: Apache-2.0
// Shortcuts for traffic alone on its links (engine.cpp, "Pipeline sends" and round_alone). Rounds timed from their
// links' loads equal the rounds run in SimGrid's max-min system on the bench cases and the published TPU runs. Pipeline
// sends replayed from their memo where they run alone on their links (EngineOptions::replay_pipeline_p2p,
// engine.cpp "Pipeline sends") equal the sends simulated in full on every published pipelined run, the Megatron 1T
// bench case and the pipelined example: step time, critical path, busy time, energy, bytes and FLOPs to 1e-9, also
// where sends share leaf links with other sends and with data-parallel reductions. (The engine unit tests force the
// case where other traffic takes a link of a replayed send or a timed round, and the step is simulated again.)
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "moesim_test/job_compare.hpp"

namespace {

moesim::scenario::Scenario load(const std::string& file, const std::vector<std::string>& overrides = {}) {
  return moesim::scenario::load_file(std::string(MOESIM_SOURCE_ROOT) + "/" + file, moesim::testing::source_catalog(),
                                     overrides);
}

}  // namespace

TEST_CASE("validation p2p replay: published Megatron runs (Korthikanti et al.)", "[validation][p2p]") {
  for (const char* f : {"korthikanti_175b_full", "korthikanti_175b_sp_selective", "korthikanti_530b_full",
                        "korthikanti_530b_sp_selective", "korthikanti_1t_full", "korthikanti_1t_sp_selective"}) {
    SECTION(f) {
      const auto fast = moesim::testing::check_p2p_replay_equals_full(load(std::string("scenarios/published/") + f + ".yaml"));
      CHECK(fast.reruns == 0);  // stage boundaries on their own NICs: no send shares a link
    }
  }
}

TEST_CASE("validation p2p replay: the Megatron 1T bench case and the pipelined example", "[validation][p2p]") {
  for (const char* f : {"bench/megatron_1t_512.yaml", "scenarios/examples/a100-dense-tensor-pipeline.yaml"}) {
    SECTION(f) { moesim::testing::check_p2p_replay_equals_full(load(f)); }
  }
}

TEST_CASE("validation p2p replay: sends that share leaf links with other sends and data-parallel reductions",
          "[validation][p2p]") {
  // 8 nodes (tensor 8 fills one), pipeline 4 x data 2, one node per leaf switch, 4 layers per stage: every send
  // between stages, and the gradient all-reduces between replicas that overlap the backward pass, cross leaf links
  // other transfers also take. A send replays only where its links are free; the step equals the one with every send
  // in full (the engine tests force the case where a replayed send meets other traffic and the step is simulated
  // again).
  const auto s = load("scenarios/examples/a100-dense-tensor-pipeline.yaml",
                      {"cluster.count=64", "parallelism.tensor=8", "parallelism.data=2", "parallelism.pipeline=4",
                       "cluster.topology={type: nvlink_fat_tree, nodes_per_leaf: 1}", "model.layers=16", "model.d_ff=512",
                       "model.d_model=1024", "model.seq_len=8192"});
  const auto fast = moesim::testing::check_p2p_replay_equals_full(s);
  CHECK(fast.collectives_memoized > 0);
  // Rounds timed alone would meet the data-parallel reductions here. With the lookahead, a round that a reduction could
  // join is not timed alone: no step runs twice, and every step equals SimGrid's rounds.
  const auto ahead = moesim::testing::check_rounds_alone_equal_simgrid(s);
  CHECK(ahead.reruns == 0);
  CHECK(ahead.rounds_alone > 0);
  // Without it, steps run again and still equal SimGrid's rounds. Three steps of the same job: the collectives
  // excluded by the first step's conflicts stay excluded, so the later steps, which meet the same traffic, run once
  // each, and every step still equals SimGrid's.
  moesim::engine::EngineOptions no_lookahead;
  no_lookahead.rounds_lookahead = false;
  const auto rounds = moesim::testing::check_rounds_alone_equal_simgrid(s, no_lookahead);
  CHECK(rounds.reruns > 0);
  auto three = s;
  three.training.steps_simulated = 3;
  const auto later = moesim::testing::check_rounds_alone_equal_simgrid(three, no_lookahead);
  CHECK(later.step_times_s.size() == 3);
  CHECK(later.reruns == rounds.reruns);
  CHECK(later.rounds_alone > rounds.rounds_alone);
}

TEST_CASE("validation rounds alone: the GShard-600B and H100 bench cases on 1024 chips and GShard on 4096",
          "[validation][rounds-alone]") {
  // The expert-gradient buckets' rounds meet the backward pass's all-to-alls (H100, 4096 chips). With the lookahead
  // (EngineOptions::rounds_lookahead) a round they could join is not timed alone, and no step runs twice. Without it the
  // run stops at the first such conflict, and the rerun excludes every bucket of that signature: one rerun per
  // signature that meets a conflict, one on the H100 case and two on GShard's 4096 chips (three while TPU reductions ran
  // their torus dimensions one after another, one before TPU collectives ran at 83 % of the ICI line rate), within the three excluding runs (engine.cpp kExcludingRuns) after which
  // a run goes without shortcuts.
  moesim::engine::EngineOptions no_lookahead;
  no_lookahead.rounds_lookahead = false;
  const std::map<std::string, int> reruns = {
      {"bench/gshard_600b_1024.yaml", 0}, {"bench/h100_1024_moe.yaml", 1}, {"bench/gshard_600b_4096.yaml", 2}};
  for (const auto& [f, reruns_without_lookahead] : reruns) {
    SECTION(f) {
      const auto fast = moesim::testing::check_rounds_alone_equal_simgrid(load(f));
      CHECK(fast.rounds_alone > 0);
      CHECK(fast.reruns == 0);
      const auto stopped = moesim::testing::check_rounds_alone_equal_simgrid(load(f), no_lookahead);
      CHECK(stopped.reruns == reruns_without_lookahead);
      // The lookahead times alone only rounds that nothing joins, as the conflict check confirms after the fact.
      CHECK(fast.rounds_alone >= stopped.rounds_alone);
    }
  }
}

TEST_CASE("validation rounds alone: published GShard, T5, Switch, ST-MoE, Evolved Transformer and LaMDA runs",
          "[validation][rounds-alone]") {
  for (const char* f : {"gshard_600b", "gshard_128e_36l", "gshard_512e_12l", "t5_11b", "switch_c_1_5t", "switch_base_cf1.0",
                        "st_moe_32b_cf1.25", "evolved_transformer_nas", "lamda_137b"}) {
    SECTION(f) { moesim::testing::check_rounds_alone_equal_simgrid(load(std::string("scenarios/published/") + f + ".yaml")); }
  }
}

TEST_CASE("validation joined rounds: a round waited for as one equals every batch waited for", "[validation][join]") {
  // EngineOptions::join_batches: the 4096-chip case's stopped run and rerun, every round of two batches or more joined
  // against none joined; the 65,536-chip bench case gave the same step to every digit (372 -> 199 s).
  const auto s = load("bench/gshard_600b_4096.yaml");
  moesim::engine::EngineOptions joined, plain;
  joined.join_batches = 2;
  plain.join_batches = 0;
  joined.rounds_lookahead = plain.rounds_lookahead = false;  // the stopped run and the rerun
  joined.own_network_rounds = plain.own_network_rounds = false;  // rounds in SimGrid's solver, where they are joined
  const auto fast = moesim::testing::simulate(s, joined);
  const auto full = moesim::testing::simulate(s, plain);
  moesim::testing::check_same_step(fast, full, 1e-9);
  CHECK(fast.reruns == 2);  // the stopped runs and the rerun (links_alone_test above: two signatures meet conflicts)
}
