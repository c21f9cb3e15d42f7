// SPDX-License-Identifier: Apache-2.0
#pragma once
// One scenario simulated two ways, every figure of the step compared: the engine's exact shortcuts against the run they
// stand for. The pipeline steady state (EngineOptions::pipeline_steady_state, engine/job.cpp) against the simulation of
// every micro-batch, merged chains of phases (EngineOptions::merge_chains, engine.cpp) against one activity per
// phase, replayed pipeline sends (EngineOptions::replay_pipeline_p2p) against sends simulated in full, and rounds timed
// alone on their links (EngineOptions::rounds_alone) against rounds in SimGrid's max-min system. Used by the engine unit tests (small cases) and the validation suite (the published runs and bench cases).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/loader.hpp"

namespace moesim::testing {

inline const catalog::Catalog& source_catalog() {
  static const catalog::Catalog cat = catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return cat;
}

/** A scenario file of the source tree (path relative to its root), against the source catalog. */
inline scenario::Scenario load_source_scenario(const std::string& file) {
  return scenario::load_file(std::string(MOESIM_SOURCE_ROOT) + "/" + file, source_catalog());
}

inline engine::JobResult simulate(const scenario::Scenario& s, const engine::EngineOptions& opt) {
  return engine::job_from_json(
      engine::run_isolated([&] { return engine::to_json(engine::simulate_job(s, source_catalog(), opt)); }).value);
}

inline engine::JobResult simulate(const scenario::Scenario& s, bool steady_state) {
  engine::EngineOptions opt;
  opt.pipeline_steady_state = steady_state;
  return simulate(s, opt);
}

/** Options with every exact shortcut off that changes how the step runs in SimGrid: no memos, every round in the
 *  max-min system, one activity per phase. */
inline engine::EngineOptions no_shortcuts() {
  engine::EngineOptions o;
  o.memoize = false;
  o.rounds_alone = false;
  o.merge_chains = false;
  return o;
}

/** |a - b| within `rel` of the larger (exact zeros must stay zeros). */
inline bool close(double a, double b, double rel) { return std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)); }

/** Checks that every figure of the step (time, critical path and busy time by kind, energy and link bytes by site,
 *  collective bytes, FLOPs, MFU, phases) of `fast` equals `full`'s to `rel`, and that `fast`'s power series integrates
 *  to its chip energy. */
inline void check_same_step(const engine::JobResult& fast, const engine::JobResult& full, double rel = 1e-9) {
  INFO("fast " << fast.step_time_s << " s vs reference " << full.step_time_s << " s; wall " << fast.sim_wall_s << " vs "
                       << full.sim_wall_s << " s");
  CHECK(close(fast.step_time_s, full.step_time_s, rel));
  REQUIRE(fast.step_times_s.size() == full.step_times_s.size());
  for (std::size_t i = 0; i < full.step_times_s.size(); ++i) CHECK(close(fast.step_times_s[i], full.step_times_s[i], rel));
  CHECK(close(fast.train_time_s, full.train_time_s, rel));
  CHECK(close(fast.model_flops_per_step, full.model_flops_per_step, rel));
  CHECK(close(fast.hardware_flops_per_step, full.hardware_flops_per_step, rel));
  CHECK(close(fast.mfu, full.mfu, rel));
  CHECK(fast.phases_per_step == full.phases_per_step);
  CHECK(close(fast.wan_time_per_step_s, full.wan_time_per_step_s, rel));
  auto same_map = [&](const std::map<std::string, double>& a, const std::map<std::string, double>& b, const char* what) {
    CHECK(a.size() == b.size());
    for (const auto& [k, v] : b) {
      INFO(what << " " << k);
      REQUIRE(a.count(k) == 1);
      // Parts of the step, each summed from thousands of clock differences: equal to `rel` of the step (a kind that
      // takes milliseconds of a 35 s step carries the step's rounding, not its own).
      INFO("fast " << a.at(k) << " vs reference " << v);
      CHECK(std::abs(a.at(k) - v) <= rel * std::max({std::abs(v), std::abs(a.at(k)), full.step_time_s}));
    }
  };
  same_map(fast.breakdown_s, full.breakdown_s, "critical path");
  same_map(fast.busy_s, full.busy_s, "busy");
  same_map(fast.collective_bytes_per_step, full.collective_bytes_per_step, "collective bytes");
  REQUIRE(fast.sites.size() == full.sites.size());
  for (std::size_t i = 0; i < full.sites.size(); ++i) {
    CHECK(close(fast.sites[i].chip_energy_per_step_j, full.sites[i].chip_energy_per_step_j, rel));
    for (std::size_t c = 0; c < full.sites[i].link_bytes_per_step.size(); ++c)
      CHECK(close(fast.sites[i].link_bytes_per_step[c], full.sites[i].link_bytes_per_step[c], rel));
  }
  // The power series (the first step's): ends at the step's end and, where the job is that one step, integrates to
  // the chips' energy per step (one quantity, one truth).
  REQUIRE(!fast.power_t_s.empty());
  if (fast.step_times_s.size() != 1) return;
  REQUIRE(fast.power_t_s.size() == fast.power_w.size());
  double energy = 0.0, chips = 0.0;
  for (std::size_t i = 0; i < fast.power_t_s.size(); ++i) {
    const double end = i + 1 < fast.power_t_s.size() ? fast.power_t_s[i + 1] : fast.step_time_s;
    CHECK(end > fast.power_t_s[i]);
    energy += fast.power_w[i] * (end - fast.power_t_s[i]);
  }
  for (const auto& site : fast.sites) chips += site.chip_energy_per_step_j;
  CHECK(close(energy, chips, 1e-9));
}

/** Simulates `s` with and without the steady state and checks that the steady state was used and that the step equals
 *  the full simulation's (check_same_step). */
inline void check_steady_state_equals_full(const scenario::Scenario& s, double rel = 1e-9) {
  INFO(s.name);
  const engine::JobResult fast = simulate(s, true), full = simulate(s, false);
  REQUIRE(fast.steady_state_from_microbatches == s.parallelism.pipeline);
  REQUIRE(full.steady_state_from_microbatches == 0);
  check_same_step(fast, full, rel);
}

/** Simulates `s` with the engine shortcut `option` on and off (every other option as `base`) and checks that the steps
 *  are the same (check_same_step). Returns the run with the shortcut. */
inline engine::JobResult check_shortcut_exact(const scenario::Scenario& s, bool engine::EngineOptions::*option,
                                              const char* what, engine::EngineOptions base, double rel) {
  INFO(s.name << ": " << what);
  base.*option = true;
  const engine::JobResult fast = simulate(s, base);
  base.*option = false;
  const engine::JobResult full = simulate(s, base);
  check_same_step(fast, full, rel);
  return fast;
}

/** Merged chains against one activity per phase (EngineOptions::merge_chains). */
inline engine::JobResult check_chains_equal_phase_by_phase(const scenario::Scenario& s, engine::EngineOptions base = {},
                                                           double rel = 1e-9) {
  return check_shortcut_exact(s, &engine::EngineOptions::merge_chains, "merged chains vs one activity per phase", base, rel);
}

/** Pipeline sends replayed where they run alone on their links against every send in full
 *  (EngineOptions::replay_pipeline_p2p). */
inline engine::JobResult check_p2p_replay_equals_full(const scenario::Scenario& s, engine::EngineOptions base = {},
                                                      double rel = 1e-9) {
  return check_shortcut_exact(s, &engine::EngineOptions::replay_pipeline_p2p, "pipeline sends replayed vs in full", base, rel);
}

/** Collective rounds timed alone on their links against every round in SimGrid's max-min system
 *  (EngineOptions::rounds_alone). Both runs leave the rounds not timed alone in SimGrid's solver (own_network_rounds
 *  false), so the reference is SimGrid's own; own_network_test.cpp compares moesim's replica with it. */
inline engine::JobResult check_rounds_alone_equal_simgrid(const scenario::Scenario& s, engine::EngineOptions base = {},
                                                          double rel = 1e-9) {
  base.own_network_rounds = false;
  return check_shortcut_exact(s, &engine::EngineOptions::rounds_alone, "rounds timed alone vs in SimGrid", base, rel);
}

}  // namespace moesim::testing
