// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/engine.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/workload/memory.hpp"

namespace moesim::engine {

/** Per-site simulation figures, per step (mean over the simulated steps). */
struct SiteStepFigures {
  std::string datacenter;
  int chips = 0;
  double share = 0.0;
  double chip_energy_per_step_j = 0.0;  ///< chip hosts incl. host overhead (SimGrid host_energy)
  std::array<double, system::kLinkClassCount> link_bytes_per_step{};  ///< bytes x links, by class
  std::map<std::string, int> link_counts;  ///< links of each class in this site (for idle power)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(SiteStepFigures, datacenter, chips, share, chip_energy_per_step_j, link_bytes_per_step,
                                   link_counts)

/** Links of each class within a site (fabric: switch ports; wan_half: half of each WAN link it touches),
 *  for static network power. */
std::map<std::string, int> site_link_counts(const system::Site& site, int sites);

/** The simulated job: a few steps in detail, the whole run extrapolated from their mean. */
struct JobResult {
  std::string scenario_name;
  std::string accelerator;
  int chips = 0;
  int devices = 0;
  workload::MemoryEstimate memory;
  std::vector<double> step_times_s;
  double step_time_s = 0.0;          ///< mean
  double step_time_spread_s = 0.0;   ///< sample standard deviation over the simulated steps (0 for one step)
  double steps = 0.0;                ///< optimizer steps of the whole run (tokens / batch tokens)
  double tokens = 0.0;               ///< training tokens (given, or derived from training.hardware_flops)
  bool tokens_derived = false;
  double train_time_s = 0.0;         ///< steps x mean step time
  /** Dispatched token-to-expert assignments dropped by capacity / dispatched assignments (exactly 0 when none can be). */
  double tokens_dropped_fraction = 0.0;
  /** First choices dropped by capacity / routed tokens: tokens that lost their top expert. */
  double first_choice_dropped_fraction = 0.0;
  /** Second choices the second-expert policy did not dispatch / routed tokens (top-2 only). */
  double second_choice_skipped_fraction = 0.0;
  bool routing_exact = true;
  double model_flops_per_step = 0.0;
  double hardware_flops_per_step = 0.0;
  double mfu = 0.0;                  ///< model FLOPs / (step time x devices x peak)
  double hfu = 0.0;                  ///< hardware FLOPs / (step time x devices x peak)
  std::map<std::string, double> breakdown_s;  ///< critical path by phase kind (mean), sums to step time
  std::map<std::string, double> busy_s;       ///< busy time by phase kind (mean)
  std::map<std::string, double> collective_bytes_per_step;  ///< by op, summed over devices
  std::map<std::string, std::string> algorithms;
  std::vector<SiteStepFigures> sites;
  double wan_time_per_step_s = 0.0;  ///< time per step with a cross-datacenter round in flight, its latency wait included (mean; StepResult::wan_busy_s)
  std::vector<double> power_t_s;     ///< first step: total chip power, averaged over each interval from here to the next point (the last to the step's end)
  std::vector<double> power_w;
  double peak_chip_power_w = 0.0;    ///< full-compute power of one chip (incl. host overhead)
  std::string power_convention;
  std::string compute_model;         ///< provenance of kernel times
  std::map<std::string, std::string> compute_paths;  ///< kernel class -> measured/transferred/roofline
  int phases_per_step = 0;
  int collectives_detailed = 0;
  int collectives_memoized = 0;
  /** Times simulated steps were run again because a replayed pipeline send or a round timed alone shared a link
   *  (StepResult::reruns), and the collective rounds timed alone on their links (StepResult::rounds_alone). */
  int reruns = 0;
  int rounds_alone = 0;
  double sim_wall_s = 0.0;           ///< wall-clock seconds the simulation took
  std::vector<PhaseTrace> trace;     ///< first step's phases, when EngineOptions::trace
  /** > 0: the step was extrapolated from simulated steps of this many, one more and two more micro-batches (the
   *  steady state of a 1F1B pipeline, EngineOptions::pipeline_steady_state); 0: every micro-batch was simulated. */
  int steady_state_from_microbatches = 0;
};

nlohmann::json to_json(const JobResult& r);
JobResult job_from_json(const nlohmann::json& j);

/** Progress callback: (step index, steps, message). */
using Progress = std::function<void(int, int, const std::string&)>;

/** Validates what can be checked without simulating (memory fit, topology, model registry; for a serving
 *  scenario check_serving_feasible()): throws moesim::Error with the numbers. Cheap; call before a run. */
void check_feasible(const scenario::Scenario& s, const catalog::Catalog& catalog);

/** Simulates the scenario on SimGrid. Must run in a process that has not run another simulation
 *  (see run_isolated). */
JobResult simulate_job(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options = {},
                       const Progress& progress = {});

}  // namespace moesim::engine
