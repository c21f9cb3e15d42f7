// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/platform/platform.hpp"
#include "moesim/system/topology.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/training_step.hpp"

namespace moesim::engine {

/** Knobs of the discrete-event run (not of the physics). */
struct EngineOptions {
  int pacers = 512;           ///< pacer hosts timing compute chunks, memoised phases and collective latencies
  int chunk_hosts = 512;      ///< hosts per compute parallel task (SimGrid's ptask setup grows ~N^2)
  bool memoize = true;        ///< replay isolated collectives already simulated with the same traffic
  int power_samples = 400;    ///< points of the power-over-time series of the first step
  bool trace = false;         ///< record every phase's start and end (first step)
  /** Training with a 1F1B pipeline of a dense model and many micro-batches: simulate the steps of p, p + 1 and p + 2
   *  micro-batches (p = pipeline stages) and, where the three lie on a line (each further micro-batch adds one
   *  steady-state period), extrapolate the step to its micro-batch count (job.cpp; false: every micro-batch). */
  bool pipeline_steady_state = true;
  /** Serving: let replicas work ahead of the clock through memoised stretches when routing allows it
   *  (false: every iteration is its own SimGrid activity, the reference the fast path is tested against). */
  bool serving_fast_path = true;
  /** Run each chain of phases whose durations are known when it starts (compute, memoised collectives) and that
   *  nothing else joins as one activity (engine.cpp, "Chains"); false: one activity per phase, the reference. */
  bool merge_chains = true;
  /** Replay a pipeline send (comm.pipeline_p2p) from its memo when nothing else uses its links while it runs (engine.cpp,
   *  "Pipeline sends"); a run in which a replayed send turns out to share a link stops, and the step is simulated again
   *  without replaying that send and those of its signature. false: every send in full, the reference (as every send
   *  was before). Needs `memoize`. */
  bool replay_pipeline_p2p = true;
  /** Time a collective's round from its links' loads, as SimGrid's ptask_L07 would, when its batches use pairwise
   *  disjoint links and nothing else holds them (engine.cpp, "Rounds alone on their links"); a run in which other
   *  traffic takes such a round's link before it ends stops, and the step is simulated again with that collective's
   *  rounds, and those of its kind and signature, in SimGrid. false: every round in SimGrid's max-min system, the
   *  reference. */
  bool rounds_alone = true;
  /** With rounds_alone: time a round alone only where no other collective that shares a link with its collective can
   *  start before the round ends, by a lower bound on when each phase can start (engine.cpp, "Lookahead"); such a round
   *  never meets a conflict. false: time it whenever nothing holds its links when it starts, and stop and run the step
   *  again when a later collective takes one (the previous behaviour, kept to test that path). */
  bool rounds_lookahead = true;
  /** Rounds in SimGrid's solver (own_network_rounds false, or serving): a round of at least this many batches
   *  (parallel tasks) is waited for as one: maestro starts its batches, which
   *  release an empty task when the last one ends, and the driver waits for that task alone (engine.cpp, "Joined
   *  rounds"). SimGrid 3.32's wait_any costs O(pending activities) per completion. 0: every batch waited for, the
   *  reference. The GShard-600B case on 65,536 chips (rounds of 512 and more batches): 372 -> 199 s, same step. */
  int join_batches = 512;
  /** Keep SimGrid's selective update of the max-min system, which ptask_L07 hard-codes on and its solver never reads
   *  (platform::drop_selective_update); false drops it: the same rates to every bit, less wall time (README, "The simulator's own
   *  cost"). true: SimGrid as configured by itself, the reference. */
  bool lmm_selective_update = false;
  /** Training: the rounds that go into SimGrid's max-min system (those not timed alone nor replayed) are computed
   *  instead by moesim's replica of ptask_L07 and FairBottleneck for tasks that only move bytes
   *  (FairBottleneckNet; engine.cpp, "Rounds in moesim's replica of the network model"), which SimGrid wakes only at
   *  its next event: the same rates, without SimGrid's per-task route lookups and energy bookkeeping. Every network
   *  task of the step goes there, so none shares a link with a task left in SimGrid's system. Serving (several
   *  graphs in several actors) keeps SimGrid's. false: every round in SimGrid, the reference. */
  bool own_network_rounds = true;
  /** Training: a compute activity (a phase or a chain, per chunk of chips) runs on its pacer alone, and moesim adds
   *  the joules host_energy would integrate from its chips' loads (slope x load over its duration, per chip: engine.cpp,
   *  "moesim's replica of host_energy"); SimGrid's energy plugin keeps integrating every chip's active and idle power.
   *  host_energy is linear in a host's load and a compute activity's loads are constant, so the joules are the
   *  plugin's, without thousands of max-min elements and energy updates per activity. Serving keeps the plugin for
   *  all of it. false: the chips' loads in SimGrid and every joule from the plugin, the reference. */
  bool own_compute_energy = true;
};

/** One phase of a simulated step, for traces. */
struct PhaseTrace {
  std::string label;
  std::string kind;
  int stage = 0;
  double start_s = 0.0;
  double end_s = 0.0;
  bool on_critical_path = false;
  bool memoized = false;
  /** Compute phases: achieved matrix-unit and HBM utilisation (workload::ComputeWork) and the power per chip,
   *  host overhead included, the chips drew while computing it (the power curve); other phases: 0, 0 and the
   *  active power. */
  double flop_utilisation = 0.0;
  double hbm_utilisation = 0.0;
  double power_w = 0.0;
};

/** Results of one simulated step. Times in seconds from the step's start. */
struct StepResult {
  double duration_s = 0.0;
  std::map<std::string, double> busy_s;           ///< summed phase time by kind (concurrent phases add up)
  std::map<std::string, double> critical_path_s;  ///< time each kind contributes to the critical path
  std::vector<double> site_energy_j;              ///< chip-host energy per site during the step (host_energy)
  /** Bytes x links traversed, by link class and site (WAN counted on the sending site). */
  std::vector<std::array<double, system::kLinkClassCount>> site_link_bytes;
  /** Power series (first step only): power_w[i] is the chips' average power from power_t_s[i] to power_t_s[i + 1]
   *  (the last interval ends with the step), so sum(power_w x interval) = the step's chip energy. */
  std::vector<double> power_t_s;
  std::vector<double> power_w;
  workload::StepStats stats;
  /** Time at least one round with cross-datacenter traffic was in flight: the union of the rounds' intervals, each from
   *  the round's start (its latency wait, and a first round's launch cost, included) to the end of its last batch. */
  double wan_busy_s = 0.0;
  int phases = 0;
  int collectives_detailed = 0;
  int collectives_memoized = 0;
  /** Times the step was simulated again because a replayed pipeline send or a round timed alone shared a link with
   *  other traffic (EngineOptions::replay_pipeline_p2p, rounds_alone); the figures are the last run's. */
  int reruns = 0;
  int rounds_alone = 0;  ///< collective rounds timed alone on their links (EngineOptions::rounds_alone)
  std::map<std::string, std::string> algorithms;  ///< collective kind -> algorithm used
  std::vector<PhaseTrace> trace;                  ///< when EngineOptions::trace (first step)
};

/** Runs step DAGs on SimGrid (ptask_L07 host model, host_energy plugin). One Simulator per process:
 *  SimGrid's engine is a process-wide singleton (run each simulation in its own process; see
 *  sim/engine/isolation.hpp).
 *
 *  Compute phases are parallel tasks on the chips (a chip is busy for the slowest of its devices), in
 *  chunks of `chunk_hosts`, each timed by a pacer host; every chip carries the load at which host_energy
 *  draws the power curve at the phase's achieved utilisation (platform::PowerStates::load_for). Collective phases are the system layer's rounds; each batch of a round is
 *  one parallel task whose byte matrix holds the batch's flows. A collective that cannot overlap other
 *  traffic and whose exact traffic was already simulated in isolation is replayed as a timed delay
 *  (memoisation). While a step runs, every chip is in the job's power state (platform::kJobPstate), in which
 *  a chip that is not computing draws the `active` power (communicating, waiting), not `idle`. */
class Simulator {
 public:
  Simulator(const system::Topology& topo, const catalog::AcceleratorSpec& accel, const platform::PowerStates& power,
            const workload::DeviceMesh& mesh, EngineOptions options = {});
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  /** Simulates `steps` steps back to back; `build(i)` builds step i's graph (called just before it runs). */
  std::vector<StepResult> run(int steps, const std::function<workload::BuiltStep(int)>& build);
  /** The next step to simulate, and whether it records the power series (and, with EngineOptions::trace, the trace). */
  struct NextStep {
    /** On the heap: Boost 1.74's adjacency_list has no move constructor, so a step held by value is copied whole (and
     *  so is one passed through std::make_unique: build it with `new workload::BuiltStep(builder(...))`, which
     *  constructs the returned step in place). */
    std::unique_ptr<workload::BuiltStep> step;
    bool record_power = false;
  };
  /** Simulates steps back to back for as long as `next(done)` returns one; `done` holds the results so far (a
   *  driver that decides what to simulate from what it has seen, e.g. the pipeline steady state in job.cpp). */
  std::vector<StepResult> run_while(const std::function<std::optional<NextStep>(const std::vector<StepResult>&)>& next);

  const platform::Platform& platform() const;

  // ---- For drivers with their own actors (serving) ------------------------------------------
  /** Runs one phase DAG from inside an actor, in simulated time; `chips` are in the job's power state
   *  (active power) while it runs. No power series; the collective memo is shared. */
  StepResult run_graph(workload::BuiltStep& step, const std::vector<int>& chips);
  /** Holds `chips` in the job's power state from now on, between graphs too (a serving deployment keeps its chips in
   *  a job for the whole run: they wait at active power, not idle). One more reference to the state run_graph takes
   *  and releases for its chips. Not an activity: no simulated time passes. */
  void hold_job(const std::vector<int>& chips);
  /** A pacer host for a timed delay (exclusive until released); throws when none is left. */
  simgrid::s4u::Host* take_pacer();
  void release_pacer(simgrid::s4u::Host* pacer);
  /** Runs the SimGrid engine until every actor has finished. */
  void run_actors();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moesim::engine
