// SPDX-License-Identifier: Apache-2.0
#include "moesim/workload/routing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::workload {

namespace {

/** Walker's alias method: O(1) draws from a discrete distribution (Vose's construction). */
class AliasTable {
 public:
  explicit AliasTable(const std::vector<double>& p) : prob_(p.size()), alias_(p.size()) {
    const std::size_t n = p.size();
    std::vector<double> scaled(n);
    std::vector<std::size_t> small, large;
    for (std::size_t i = 0; i < n; ++i) {
      scaled[i] = p[i] * static_cast<double>(n);
      (scaled[i] < 1.0 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      std::size_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (std::size_t i : large) prob_[i] = 1.0;
    for (std::size_t i : small) prob_[i] = 1.0;
  }
  std::size_t sample(Rng& rng) const {
    const std::size_t i = static_cast<std::size_t>(rng.below(prob_.size()));
    return rng.uniform() < prob_[i] ? i : alias_[i];
  }

 private:
  std::vector<double> prob_;
  std::vector<std::size_t> alias_;
};

/** Standard normal deviate (Box-Muller, written out for reproducibility across standard libraries). */
double normal(Rng& rng) {
  double u1 = rng.uniform();
  while (u1 <= 0.0) u1 = rng.uniform();
  const double u2 = rng.uniform();
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

}  // namespace

Router::Router(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, std::uint64_t seed)
    : spec_(spec),
      experts_(experts),
      top_k_(top_k),
      capacity_factor_(capacity_factor),
      dropless_(spec.dropless),
      seed_(seed) {
  if (experts_ <= 0) throw Error("Router needs at least one expert");
  if (top_k_ < 1 || top_k_ > experts_) throw Error(fmt::format("top_k {} must be in [1, {}]", top_k_, experts_));
}

const std::vector<double>& Router::popularity(int moe_layer) const {
  auto it = popularity_.find(moe_layer);
  if (it != popularity_.end()) return it->second;
  std::vector<double> p(static_cast<std::size_t>(experts_), 1.0);
  if (spec_.type == "zipf" && spec_.skew > 0.0) {
    std::vector<double> by_rank(p.size());
    for (std::size_t r = 0; r < p.size(); ++r) by_rank[r] = std::pow(static_cast<double>(r + 1), -spec_.skew);
    // Which expert holds which rank: a permutation fixed per layer by the scenario seed.
    std::vector<std::size_t> perm(p.size());
    std::iota(perm.begin(), perm.end(), 0);
    Rng rng = Rng::derived(seed_, 0x5a1f0000ULL + static_cast<std::uint64_t>(moe_layer));
    for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
    for (std::size_t r = 0; r < p.size(); ++r) p[perm[r]] = by_rank[r];
  } else if (spec_.type == "load_vector") {
    p = spec_.load;
  } else if (spec_.type == "task" && spec_.tasks > 0) {
    // Each task sends all its tokens to its own top_k experts; with tasks drawn uniformly, expert e's
    // popularity is the number of tasks using it.
    std::fill(p.begin(), p.end(), 0.0);
    for (int t = 0; t < spec_.tasks; ++t)
      for (int e : task_experts(spec_, experts_, top_k_, seed_, moe_layer, t)) p[static_cast<std::size_t>(e)] += 1.0;
  }
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= sum;
  return popularity_.emplace(moe_layer, std::move(p)).first->second;
}

std::vector<int> task_experts(const scenario::RoutingSpec& spec, int experts, int top_k, std::uint64_t seed, int moe_layer,
                              int task) {
  (void)spec;
  // A partial Fisher-Yates shuffle seeded by (seed, layer, task): the task's k distinct experts.
  std::vector<int> perm(static_cast<std::size_t>(experts));
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng = Rng::derived(seed, 0x7a5c0000ULL + (static_cast<std::uint64_t>(moe_layer) << 20) + static_cast<std::uint64_t>(task));
  for (int i = 0; i < top_k; ++i) std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(i) + rng.below(static_cast<std::uint64_t>(experts - i))]);
  perm.resize(static_cast<std::size_t>(top_k));
  return perm;
}

double expert_capacity(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, double group_tokens) {
  if (spec.dropless) return std::numeric_limits<double>::infinity();
  double c = spec.capacity_counts_top_k ? std::ceil(capacity_factor * top_k * group_tokens / experts)
                                        : std::floor(capacity_factor * group_tokens / experts);
  c = std::max(c, static_cast<double>(spec.min_expert_capacity));
  return std::min(c, group_tokens);
}

double Router::capacity(double group_tokens) const {
  return expert_capacity(spec_, experts_, top_k_, capacity_factor_, group_tokens);
}

Router::Moments Router::moments(double trials, double p, double cap) const {
  const auto key = std::make_tuple(trials, p, cap);
  auto it = moments_.find(key);
  if (it != moments_.end()) return it->second;
  Moments m;
  const double mean = trials * p, var = trials * p * (1.0 - p);
  if (!std::isfinite(cap) || cap >= trials || cap > mean + 40.0 * std::sqrt(var) + 40.0) {
    m.mean_min = mean;
    m.var_min = var;
  } else if (p >= 1.0) {
    m.mean_min = std::min(trials, cap);
    m.var_min = 0.0;
  } else {
    // Binomial pmf by recurrence in log space, x = 0 .. cap-1; the rest of the mass sits at cap.
    const double log_ratio = std::log(p) - std::log1p(-p);
    double log_pmf = trials * std::log1p(-p);
    double mass = 0.0, s1 = 0.0, s2 = 0.0;
    for (double x = 0.0; x < cap; x += 1.0) {
      const double pmf = std::exp(log_pmf);
      mass += pmf;
      s1 += x * pmf;
      s2 += x * x * pmf;
      log_pmf += std::log((trials - x) / (x + 1.0)) + log_ratio;
    }
    const double tail = std::max(0.0, 1.0 - mass);
    m.mean_min = s1 + cap * tail;
    m.var_min = std::max(0.0, s2 + cap * cap * tail - m.mean_min * m.mean_min);
  }
  moments_.emplace(key, m);
  return m;
}

RoutingDraw Router::draw(int moe_layer, int groups, double group_tokens, Rng& rng) const {
  const std::vector<double>& p = popularity(moe_layer);
  const std::size_t E = p.size();
  RoutingDraw d;
  d.assigned.assign(E, 0.0);
  d.processed.assign(E, 0.0);
  d.assignments = static_cast<double>(top_k_) * group_tokens * groups;
  const double cap = capacity(group_tokens);

  if (d.assignments <= kExactLimit) {
    d.exact = true;
    const AliasTable table(p);
    const auto tokens = static_cast<long long>(std::llround(group_tokens));
    std::vector<double> count(E);
    std::vector<std::size_t> chosen(static_cast<std::size_t>(top_k_));
    for (int g = 0; g < groups; ++g) {
      std::fill(count.begin(), count.end(), 0.0);
      for (long long t = 0; t < tokens; ++t) {
        for (int j = 0; j < top_k_; ++j) {
          std::size_t e = table.sample(rng);
          // k distinct experts per token: redraw duplicates (bounded), then take the first unused one.
          for (int tries = 0; std::find(chosen.begin(), chosen.begin() + j, e) != chosen.begin() + j; ++tries) {
            if (tries < 64) {
              e = table.sample(rng);
            } else {
              e = 0;
              while (std::find(chosen.begin(), chosen.begin() + j, e) != chosen.begin() + j) ++e;
            }
          }
          chosen[static_cast<std::size_t>(j)] = e;
          count[e] += 1.0;
        }
      }
      for (std::size_t e = 0; e < E; ++e) {
        d.assigned[e] += count[e];
        d.processed[e] += std::min(count[e], cap);
      }
    }
  } else {
    d.exact = false;
    const double G = groups;
    for (std::size_t e = 0; e < E; ++e) {
      // A token includes expert e with probability ~ k p_e (distinctness ignored).
      const double q = std::min(1.0, top_k_ * p[e]);
      const Moments m = moments(group_tokens, q, cap);
      const double z = normal(rng);
      const double assigned = std::max(0.0, G * group_tokens * q + std::sqrt(G * group_tokens * q * (1.0 - q)) * z);
      double processed = std::max(0.0, G * m.mean_min + std::sqrt(G * m.var_min) * z);
      processed = std::min({processed, assigned, std::isfinite(cap) ? G * cap : assigned});
      d.assigned[e] = assigned;
      d.processed[e] = processed;
    }
  }
  double processed_sum = 0.0, assigned_sum = 0.0;
  for (std::size_t e = 0; e < E; ++e) {
    processed_sum += d.processed[e];
    assigned_sum += d.assigned[e];
  }
  d.dropped = std::max(0.0, assigned_sum - processed_sum);
  return d;
}

}  // namespace moesim::workload
