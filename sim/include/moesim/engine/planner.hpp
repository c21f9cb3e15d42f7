// SPDX-License-Identifier: Apache-2.0
#pragma once
// The parallelism planner (`moesim plan`, `parallelism: auto`): every layout (data, expert, tensor, pipeline,
// micro-batches, ZeRO stage, pipeline schedule) of a training scenario's model on its cluster under the rules below, each resolved
// and checked against the memory model (workload::estimate_memory_need); what fits is simulated as a sweep by the
// command line and ranked there.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::engine {

/** What the enumeration reads from the scenario. */
struct PlanSpace {
  long long devices = 0;         ///< chips x devices per chip
  int experts = 0;               ///< 0: a dense model
  int heads = 0;
  int d_ff = 0;
  int expert_d_ff = 0;
  int layers = 0;                ///< encoder + decoder layers
  long long sequences = 0;       ///< sequences per step (training.batch_tokens / seq_len)
  int max_tensor = 1;            ///< the largest tensor degree considered
  std::string max_tensor_basis;  ///< why (one NVLink node, one torus row)
  int max_microbatch_factor = 2; ///< micro-batches at most this many times the pipeline stages (pipeline > 1)
  int max_pipeline = 0;          ///< at most this many pipeline stages (--max-pipeline); 0: no bound
  /** The scenario asks for sequence parallelism / the tensor-parallel overlap (which needs it): on where tensor > 1,
   *  off on tensor-1 layouts, which have no tensor group to shard over. */
  bool sequence_parallel = false;
  bool overlap_tensor_comm = false;
  /** Megatron-LM's interleaved 1F1B: with a pipeline, layouts of v = 2 .. max_virtual_stages model chunks per stage
   *  as well as plain 1F1B (v dividing layers / pipeline, micro-batches a multiple of the stages); 1: none. */
  int max_virtual_stages = 1;
  /** The scenario's DualPipe schedule (dualpipe or dualpipev), used on every pipelined layout (1F1B where there is no
   *  pipeline); empty: the plan chooses between 1F1B and the interleaved schedule. */
  std::string dual_schedule;
  /** The scenario sizes the first or last pipeline stage (first/last_stage_layers): kept where pipeline > 1, left out
   *  where there is no pipeline; the sizes are for one model chunk per stage, so no interleaved layouts. */
  bool stage_layers = false;
};

/** The space of `base` (a scenario from scenario::load_plan_base) on `accel`: the tensor bound is the GPUs of one
 *  NVLink node (cluster.topology.gpus_per_node) on a fat tree, one torus row (dims[0] chips x devices per chip) on a
 *  torus, where the default placement keeps tensor ranks on the nearest links. */
PlanSpace plan_space(const scenario::Scenario& base, const catalog::AcceleratorSpec& accel, int max_microbatch_factor = 2);

/** One layout. */
struct Layout {
  int data = 1, expert = 1, tensor = 1, pipeline = 1, microbatches = 1, zero_stage = 0;
  int virtual_stages = 1;          ///< model chunks per pipeline stage (interleaved 1F1B when > 1; 2 for DualPipe)
  std::string schedule = "1f1b";   ///< parallelism.schedule: 1f1b, interleaved_1f1b, dualpipe or dualpipev
  /** "d2 e1024 t1 p1 m1 z0", then " v2" (interleaved) or " dualpipe" / " dualpipev" when the schedule is not 1F1B. */
  std::string label() const;
  /** The eight scenario keys and their values, in a fixed order ("parallelism.data": 2, ..., virtual_stages,
   *  schedule): the one list the --set expressions and the plan's sweep axes are made from. */
  std::vector<std::pair<std::string, nlohmann::json>> values() const;
  /** --set expressions of values() ("parallelism.data=2", ..., "parallelism.schedule=1f1b"). */
  std::vector<std::string> overrides() const;
  bool operator==(const Layout& o) const;
};

/** The enumeration rules, one sentence each (help text, docs, the plan's output). */
std::vector<std::string> enumeration_rules(const PlanSpace& s);

/** Every layout under enumeration_rules(s), in a fixed order (pipeline, tensor, expert, micro-batches, ZeRO stage
 *  ascending, data following). Throws moesim::Error naming the devices and what rules out each split when there is
 *  none. */
std::vector<Layout> enumerate_layouts(const PlanSpace& s);

/** What the planner does with a layout. */
enum class Verdict {
  simulate,       ///< valid, fits, not dominated
  invalid,        ///< the scenario does not resolve with it (the resolver's reason)
  out_of_memory,  ///< does not fit: reason has bytes needed vs available
  dominated,      ///< fits, but another layout is at least as good by a stated rule (not simulated)
};
std::string to_string(Verdict v);

struct Candidate {
  Layout layout;
  Verdict verdict = Verdict::simulate;
  std::string reason;           ///< empty for simulate
  double need_bytes = 0.0;      ///< per device, most loaded stage (0 when invalid)
  double capacity_bytes = 0.0;
  bool remat = false, selective = false;
};

/** Checks each layout: `resolve` turns it into a scenario (throwing moesim::Error, kept as the reason, when it does
 *  not resolve); the memory model prunes what does not fit; then two dominance rules, each naming the layout that
 *  dominates: (1) ZeRO stage 1 when stage 2 of the same layout fits: moesim builds the same step phases for
 *  stages 1 and 2 (training_step.cpp: a gradient reduce-scatter, the sharded optimizer, a parameter all-gather) and
 *  stage 2 needs less memory, so its rematerialisation is never heavier — its step time and energy are never
 *  worse; (2) without a pipeline, of the micro-batch counts of one (data, expert, tensor, ZeRO) layout with the same
 *  rematerialisation only the fewest is simulated: more micro-batches then only split the same work, with the same
 *  recomputation, into smaller pieces (a rule, stated in the output, not a proof). */
std::vector<Candidate> screen_layouts(const std::vector<Layout>& layouts,
                                      const std::function<scenario::Scenario(const Layout&)>& resolve,
                                      const catalog::AcceleratorSpec& accel);

/** Throws moesim::Error when no candidate is left to simulate: no valid layout (the first reasons), or none fits (the
 *  smallest memory any valid layout needs, and its layout, against the device's capacity). */
void require_simulable(const std::vector<Candidate>& candidates, const std::string& accelerator);

// ---- Serving -----------------------------------------------------------------------------------------------------
// `moesim plan SERVING.yaml`: the splits of one colocated pool over the cluster's devices (scenario::PoolSpec:
// replicas of data x tensor x pipeline devices, experts whole over a replica's data x tensor ranks or in every tensor
// group), each checked against the replica memory model (workload::replica_memory) and simulated at the scenario's
// load or by a capacity search.

/** One serving layout: `replicas` replicas of data x tensor x pipeline devices, expert 1 or data x tensor. */
struct ServingLayout {
  int replicas = 1, data = 1, tensor = 1, expert = 1, pipeline = 1;
  /** "r8 d1 t1 e1 p1". */
  std::string label() const;
  /** The pool as scenario YAML/JSON ({"replicas": 8, "data": 1, ...}); `datacenter` pins it when not empty. */
  nlohmann::json pool(const std::string& datacenter = "") const;
  bool operator==(const ServingLayout& o) const;
};

/** The serving enumeration rules, one sentence each (help text, the plan's output). */
std::vector<std::string> serving_enumeration_rules(const PlanSpace& s);

/** Every serving layout of `s.devices` under serving_enumeration_rules(s), in a fixed order (pipeline, tensor, data
 *  ascending; expert 1 before data x tensor). Throws moesim::Error when there is none. */
std::vector<ServingLayout> enumerate_serving_layouts(const PlanSpace& s);

struct ServingCandidate {
  ServingLayout layout;
  Verdict verdict = Verdict::simulate;  ///< simulate, invalid or out_of_memory (no dominance rule for serving)
  std::string reason;                   ///< empty for simulate
  double weights_bytes = 0.0;           ///< per device, most loaded (0 when invalid or out of memory)
  double kv_bytes = 0.0;                ///< left for the KV cache on that device
  double capacity_bytes = 0.0;
};

/** Checks each layout: `resolve` turns it into a scenario (moesim::Error: invalid, with the resolver's reason), then
 *  workload::replica_memory on that accelerator (moesim::MemoryFitError: out_of_memory, with its figures). */
std::vector<ServingCandidate> screen_serving_layouts(const std::vector<ServingLayout>& layouts,
                                                     const std::function<scenario::Scenario(const ServingLayout&)>& resolve,
                                                     const catalog::AcceleratorSpec& accel);

/** Replicas of `layout` to serve `load_rps`, from a capacity search that found `layout.replicas` replicas together
 *  sustaining `max_rate_rps`: ceil(load_rps / (max_rate_rps / layout.replicas)). Linear in replicas (each serves its
 *  share of the arrivals, as a router spreads them on average): a sizing estimate, not a simulation. 0 (nothing to
 *  size; printed as "-") when max_rate_rps or load_rps is not positive or not finite, or when the need exceeds
 *  kMaxReplicasForLoad, more replicas than any cluster holds (and a bound that keeps the count exact in a long long). */
inline constexpr double kMaxReplicasForLoad = 1e12;
long long replicas_for_load(const ServingLayout& layout, double max_rate_rps, double load_rps);

/** Throws moesim::Error when no serving candidate is left to simulate (the first reasons of each kind). */
void require_simulable(const std::vector<ServingCandidate>& candidates);

}  // namespace moesim::engine
