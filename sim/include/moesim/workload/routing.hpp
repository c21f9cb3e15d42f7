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

/** Outcome of routing one MoE layer's tokens within one expert-parallel group. */
struct RoutingDraw {
  std::vector<double> assigned;   ///< per expert: token assignments before capacity (sum = k x tokens)
  std::vector<double> processed;  ///< per expert: assignments the expert computes (after capacity)
  double assignments = 0.0;       ///< k x tokens
  double dropped = 0.0;           ///< assignments beyond capacity
  bool exact = true;              ///< true: every token sampled; false: per-expert normal approximation
};

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
 *  seed, so a layer's hot experts stay the same from step to step); or a given load vector.
 *  Each token picks top_k distinct experts with probabilities p (a random router that follows the
 *  popularity; a trained router with a load-balancing loss sits between this and perfect balance).
 *  Capacity per expert per group: expert_capacity(); assignments beyond it are dropped (unless dropless).
 *
 *  Small draws sample every token (alias method). Large draws (more than kExactLimit assignments) use
 *  the per-group count X_e ~ Binomial(k x S, p_e): processed tokens of expert e over G groups are
 *  G x E[min(X_e, C)] + sqrt(G x Var[min(X_e, C)]) x N(0,1) (central limit theorem), drops
 *  G x (k S p_e - E[min(X_e, C)]); the k-distinct constraint is ignored there (error O(k p_max)). */
class Router {
 public:
  /** Assignments per draw sampled token by token; larger draws use the normal approximation (a step
   *  makes one draw per MoE layer, micro-batch and data-parallel replica, so this bounds the cost). */
  static constexpr double kExactLimit = 1 << 14;

  Router(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, std::uint64_t seed);

  /** Expert popularity of MoE layer `moe_layer` (sums to 1). */
  const std::vector<double>& popularity(int moe_layer) const;
  /** expert_capacity() with this router's settings. */
  double capacity(double group_tokens) const;
  /** Routes `groups` groups of `group_tokens` tokens each. */
  RoutingDraw draw(int moe_layer, int groups, double group_tokens, Rng& rng) const;

  int experts() const { return experts_; }
  int top_k() const { return top_k_; }
  bool dropless() const { return dropless_; }

 private:
  struct Moments {
    double mean_min = 0.0;  ///< E[min(X, C)]
    double var_min = 0.0;   ///< Var[min(X, C)]
  };
  Moments moments(double trials, double p, double cap) const;

  scenario::RoutingSpec spec_;
  int experts_;
  int top_k_;
  double capacity_factor_;
  bool dropless_;
  std::uint64_t seed_;
  mutable std::map<int, std::vector<double>> popularity_;
  mutable std::map<std::tuple<double, double, double>, Moments> moments_;
};

}  // namespace moesim::workload
