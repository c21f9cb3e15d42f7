// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#include "moesim/core/rng.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::workload {

/** Outcome of routing one MoE layer's tokens within one expert-parallel group.
 *
 *  Every token makes top_k choices; a choice the second-expert policy does not use is `skipped` (never
 *  dispatched, as in Mesh-TensorFlow and GShard, where it is masked out before positions are counted); a
 *  dispatched choice beyond its expert's capacity is `dropped`. So assignments = skipped + dropped + kept(). */
struct RoutingDraw {
  std::vector<double> assigned;   ///< per expert: dispatched assignments before capacity
  std::vector<double> processed;  ///< per expert: assignments the expert computes (after capacity)
  double tokens = 0.0;            ///< tokens routed (groups x group tokens)
  double assignments = 0.0;       ///< the router's choices, top_k x tokens
  double skipped = 0.0;           ///< second choices the second-expert policy did not use
  double dropped = 0.0;           ///< dispatched assignments beyond capacity (exactly 0 when none can be)
  double first_dropped = 0.0;     ///< first choices beyond capacity: tokens that lost their top expert
  bool exact = true;              ///< true: every token sampled; false: per-expert normal approximation

  /** Assignments dispatched to experts (after the second-expert policy, before capacity). */
  double dispatched() const { return assignments - skipped; }
  /** Assignments the experts compute. */
  double kept() const { return assignments - skipped - dropped; }
};

/** Routing groups of one device for one MoE layer. */
struct RoutingGroups {
  long long groups = 1;      ///< groups per device
  double group_tokens = 0;   ///< tokens per group
};

/** Mesh-TensorFlow's _split_into_groups(n, max_group_size, mesh_dim_size) (tensorflow/mesh
 *  mesh_tensorflow/transformer/moe.py): n tokens in the fewest groups, starting from max(1, n // max_group_size),
 *  whose number is a multiple of mesh_dim_size and divides n. Returns the total number of groups and their
 *  size. Throws when n is not a multiple of mesh_dim_size (Mesh-TensorFlow raises ValueError). */
RoutingGroups mesh_tensorflow_groups(long long n, long long max_group_size, long long mesh_dim_size);

/** The routing groups of a device holding `device_tokens` tokens of an MoE layer, in an expert-parallel group
 *  of `expert_parallel` devices: spec.group_split fixed (groups of group_size_tokens, as many as fit, rounded; one
 *  group of the device's tokens when group_size_tokens is 0) or mesh_tensorflow (mesh_tensorflow_groups() over
 *  the expert replica's tokens, device_tokens x expert_parallel, with mesh_dim_size = expert_parallel: Mesh-TF's
 *  outer batch dimension is the replication of the experts). */
RoutingGroups routing_groups(const scenario::RoutingSpec& spec, double device_tokens, int expert_parallel);

/** Probability that a token's second choice is dispatched under spec.second_expert_policy, with every token's
 *  normalised second gate g2 = spec.second_gate: all 1; none 0; threshold 1 if g2 > threshold else 0; random
 *  min(1, g2 / threshold) (Mesh-TF _top_2_gating: uniform < g2 / threshold; lingvo Top2GatingOnLogits the same with
 *  legacy_mtf_behavior, which normalises the gates first; GShard Algorithm 1: 2 g2 > uniform). */
double second_dispatch_probability(const scenario::RoutingSpec& spec);

/** Task-level routing (Task-MoE, Kudugunta et al. 2021): the top_k distinct experts that every token of
 *  `task` goes to in MoE layer `moe_layer`, fixed by the seed. */
std::vector<int> task_experts(const scenario::RoutingSpec& spec, int experts, int top_k, std::uint64_t seed, int moe_layer,
                              int task);

/** Capacity of one expert for one routing group of `group_tokens` tokens (+inf when dropless):
 *  ceil(cf x k x S / E) when spec.capacity_counts_top_k (GShard), else floor(cf x S / E) (Mesh-TensorFlow,
 *  tensorflow/mesh transformer/moe.py), at least spec.min_expert_capacity, at most S. */
double expert_capacity(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, double group_tokens);

/** Token-to-expert routing model.
 *
 *  Expert popularity p_e: uniform; Zipf (p ~ 1/rank^skew, ranks shuffled per layer with the scenario
 *  seed, so a layer's hot experts stay the same from step to step); a given load vector; or, for task routing,
 *  the summed weight of the tasks whose top_k experts include e (task_experts(); the task mix, or uniform tasks).
 *  Each token picks top_k distinct experts with probabilities p, in order (a random router that follows the
 *  popularity; a trained router with a load-balancing loss sits between this and perfect balance). The first
 *  pick is the token's first choice; with top_k 2 the second is dispatched with second_dispatch_probability().
 *  Capacity C per expert per group: expert_capacity(). As in Mesh-TensorFlow's and GShard's top-2 gating, all
 *  first choices of a group take positions before any later choice and later choices fill what the expert's kept
 *  first choices left, so an expert with F first and T later dispatched assignments keeps min(F, C) first and
 *  min(F + T, C) in all; which tokens of a group are dropped does not change these counts.
 *
 *  Small draws sample every token (alias method). Large draws (more than kExactLimit assignments) use the
 *  per-group counts X_e ~ Binomial(S, pi_e), where pi_e is the probability that a token dispatches to e (k = 1:
 *  p_e; k = 2: p_e + q s_e with s_e = sum over j != e of p_j p_e / (1 - p_j), exact for sampling without
 *  replacement; k > 2: min(1, k p_e), exact for uniform popularity), and first-choice counts ~ Binomial(S, p_e).
 *  Over G groups: assigned G S pi_e + sqrt(G Var X_e) z and dropped G E[(X_e - C)+] + sqrt(G) (sd X_e -
 *  sd min(X_e, C)) z, one standard normal z per expert (the kept count min(X, C) then moves with X, central
 *  limit theorem); the overflow moments are summed over the binomial tail (X > C), so nothing is dropped,
 *  exactly, where no count can exceed C (C >= S, or dropless) or where the expected overflow is below the
 *  resolution of the assigned count. */
class Router {
 public:
  /** Assignments per draw sampled token by token; larger draws use the normal approximation (a step
   *  makes one draw per MoE layer, micro-batch and data-parallel replica, so this bounds the cost). */
  static constexpr double kExactLimit = 1 << 14;

  /** `task_mix` (routing.type task): the relative frequency of each task 0 .. spec.tasks - 1 (a request trace's
   *  task column: task_mix() in serving.hpp); empty = tasks drawn uniformly. */
  Router(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, std::uint64_t seed,
         std::vector<double> task_mix = {});

  /** Expert popularity of MoE layer `moe_layer` (sums to 1). */
  const std::vector<double>& popularity(int moe_layer) const;
  /** expert_capacity() with this router's settings. */
  double capacity(double group_tokens) const;
  /** Routes `groups` groups of `group_tokens` tokens each. */
  RoutingDraw draw(int moe_layer, int groups, double group_tokens, Rng& rng) const;

  int experts() const { return experts_; }
  int top_k() const { return top_k_; }
  bool dropless() const { return dropless_; }
  /** second_dispatch_probability() of this router's spec (1 unless top_k is 2). */
  double second_probability() const { return second_probability_; }

 private:
  /** Moments of Y = (X - C)+ for X ~ Binomial(trials, p): what a group's expert cannot take. */
  struct Overflow {
    double mean = 0.0;        ///< E[(X - C)+]
    double sd_excess = 0.0;   ///< sd(X) - sd(min(X, C)) >= 0: the overflow's share of X's noise
  };
  Overflow overflow(double trials, double p, double cap) const;
  /** Probability that a token dispatches to each expert (pi_e above) for MoE layer `moe_layer`. */
  const std::vector<double>& dispatch_probability(int moe_layer) const;

  scenario::RoutingSpec spec_;
  int experts_;
  int top_k_;
  double capacity_factor_;
  bool dropless_;
  double second_probability_;
  std::uint64_t seed_;
  std::vector<double> task_mix_;  ///< task routing: weight of each task (empty: uniform)
  mutable std::map<int, std::vector<double>> popularity_;
  mutable std::map<int, std::vector<double>> dispatch_;
  mutable std::map<std::tuple<double, double, double>, Overflow> overflow_;
};

}  // namespace moesim::workload
