// SPDX-License-Identifier: Apache-2.0
#include "moesim/workload/routing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

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

Router::Router(const scenario::RoutingSpec& spec, int experts, int top_k, double capacity_factor, std::uint64_t seed,
               std::vector<double> task_mix)
    : spec_(spec),
      experts_(experts),
      top_k_(top_k),
      capacity_factor_(capacity_factor),
      dropless_(spec.dropless),
      second_probability_(top_k == 2 ? second_dispatch_probability(spec) : 1.0),
      seed_(seed),
      task_mix_(std::move(task_mix)) {
  if (experts_ <= 0) throw Error("Router needs at least one expert");
  if (!task_mix_.empty()) {
    if (spec.type != "task" || static_cast<int>(task_mix_.size()) != spec.tasks)
      throw Error(fmt::format("a task mix of {} weights needs task routing with as many tasks (routing.type {}, tasks {})",
                              task_mix_.size(), spec.type, spec.tasks));
    if (std::any_of(task_mix_.begin(), task_mix_.end(), [](double w) { return !(w >= 0.0) || !std::isfinite(w); }) ||
        !(std::accumulate(task_mix_.begin(), task_mix_.end(), 0.0) > 0.0))
      throw Error("a task mix needs finite weights >= 0, at least one > 0");
  }
  if (top_k_ < 1 || top_k_ > experts_) throw Error(fmt::format("top_k {} must be in [1, {}]", top_k_, experts_));
  if (spec.second_expert_policy != scenario::SecondExpertPolicy::all && top_k_ != 2)
    throw Error(fmt::format("a second-expert policy other than 'all' needs top_k 2 (got top_k {})", top_k_));
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
    // Each task sends all its tokens to its own top_k experts: expert e's popularity is the weight of the tasks
    // using it (with tasks drawn uniformly, their number; with a task mix, their share of the requests).
    std::fill(p.begin(), p.end(), 0.0);
    for (int t = 0; t < spec_.tasks; ++t) {
      const double w = task_mix_.empty() ? 1.0 : task_mix_[static_cast<std::size_t>(t)];
      if (w == 0.0) continue;
      for (int e : task_experts(spec_, experts_, top_k_, seed_, moe_layer, t)) p[static_cast<std::size_t>(e)] += w;
    }
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

RoutingGroups mesh_tensorflow_groups(long long n, long long max_group_size, long long mesh_dim_size) {
  if (n < 1 || max_group_size < 1 || mesh_dim_size < 1)
    throw Error(fmt::format("Mesh-TensorFlow group split needs n, max_group_size and mesh_dim_size >= 1 (got {}, {}, {})", n,
                            max_group_size, mesh_dim_size));
  if (n % mesh_dim_size != 0)
    throw Error(fmt::format("Mesh-TensorFlow group split: n={} is not a multiple of mesh_dim_size={}", n, mesh_dim_size));
  long long groups = std::max(1LL, n / max_group_size);
  while (groups % mesh_dim_size != 0 || n % groups != 0) ++groups;  // ends at n at the latest
  return {groups, static_cast<double>(n / groups)};
}

RoutingGroups routing_groups(const scenario::RoutingSpec& spec, double device_tokens, int expert_parallel) {
  if (spec.group_split == scenario::GroupSplit::mesh_tensorflow) {
    const long long ep = std::max(1, expert_parallel);
    const long long per_device = std::max(1LL, std::llround(device_tokens));
    const RoutingGroups all = mesh_tensorflow_groups(per_device * ep, std::max(1, spec.group_size_tokens), ep);
    return {all.groups / ep, all.group_tokens};
  }
  const double group = spec.group_size_tokens > 0 ? std::min<double>(spec.group_size_tokens, device_tokens) : device_tokens;
  return {std::max(1LL, std::llround(device_tokens / group)), group};
}

double second_dispatch_probability(const scenario::RoutingSpec& spec) {
  using P = scenario::SecondExpertPolicy;
  const double g2 = spec.second_gate, t = spec.second_expert_threshold;
  switch (spec.second_expert_policy) {
    case P::all: return 1.0;
    case P::none: return 0.0;
    case P::threshold: return g2 > t ? 1.0 : 0.0;  // Mesh-TF: mtf.greater(gate_2, threshold)
    case P::random:
      // Mesh-TF: uniform < gate_2 / max(threshold, 1e-9); a uniform in [0, 1) is below x with probability min(1, x).
      return std::min(1.0, g2 / std::max(t, 1e-9));
  }
  return 1.0;
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

const std::vector<double>& Router::dispatch_probability(int moe_layer) const {
  auto it = dispatch_.find(moe_layer);
  if (it != dispatch_.end()) return it->second;
  const std::vector<double>& p = popularity(moe_layer);
  std::vector<double> pi(p.size());
  if (top_k_ == 1) {
    pi = p;
  } else if (top_k_ == 2) {
    // Second choice: e with probability sum_{j != e} p_j p_e / (1 - p_j) = p_e (W - p_e / (1 - p_e)), W = sum_j p_j / (1 - p_j).
    // An expert with p_j = 1 leaves nothing to redraw: the sampler then takes the lowest other index.
    const auto sure = std::find(p.begin(), p.end(), 1.0);
    std::vector<double> second(p.size(), 0.0);
    if (sure != p.end()) {
      second[sure == p.begin() ? 1 : 0] = 1.0;
    } else {
      double w = 0.0;
      for (double x : p) w += x / (1.0 - x);
      for (std::size_t e = 0; e < p.size(); ++e) second[e] = std::max(0.0, p[e] * (w - p[e] / (1.0 - p[e])));
    }
    for (std::size_t e = 0; e < p.size(); ++e) pi[e] = std::min(1.0, p[e] + second_probability_ * second[e]);
  } else {
    for (std::size_t e = 0; e < p.size(); ++e) pi[e] = std::min(1.0, top_k_ * p[e]);
  }
  return dispatch_.emplace(moe_layer, std::move(pi)).first->second;
}

Router::Overflow Router::overflow(double trials, double p, double cap) const {
  const auto key = std::make_tuple(trials, p, cap);
  auto it = overflow_.find(key);
  if (it != overflow_.end()) return it->second;
  Overflow o;
  const double mean = trials * p, var = trials * p * (1.0 - p);
  if (!std::isfinite(cap) || cap >= trials || p <= 0.0) {
    // No count can exceed the capacity: nothing overflows.
  } else if (p >= 1.0) {
    o.mean = trials - cap;  // X = trials always; min(X, C) = C has no variance
    o.sd_excess = 0.0;
  } else {
    // Sum over the tail x = C+1 .. trials by the pmf recurrence in log space, from the first term on;
    // stop past the mode once terms fall 50 e-folds below the largest.
    const double log_ratio = std::log(p) - std::log1p(-p);
    const double x0 = std::floor(cap) + 1.0;
    double log_pmf = std::lgamma(trials + 1.0) - std::lgamma(x0 + 1.0) - std::lgamma(trials - x0 + 1.0) + x0 * std::log(p) +
                     (trials - x0) * std::log1p(-p);
    const double mode = std::floor((trials + 1.0) * p);
    double ey = 0.0, ey2 = 0.0, exy = 0.0, peak = log_pmf;
    for (double x = x0; x <= trials; x += 1.0) {
      peak = std::max(peak, log_pmf);
      if (x > mode && log_pmf < peak - 50.0) break;
      const double pmf = std::exp(log_pmf), y = x - cap;
      ey += y * pmf;
      ey2 += y * y * pmf;
      exy += x * y * pmf;
      log_pmf += std::log((trials - x) / (x + 1.0)) + log_ratio;
    }
    // Below the resolution of the expected count (relative 2^-52) the overflow cannot show in a double.
    if (ey > mean * std::numeric_limits<double>::epsilon()) {
      o.mean = ey;
      // Var min(X, C) = Var X - (2 Cov(X, Y) - Var Y) with Y = X - min(X, C); sd X - sd min = that gap / (sd X + sd min).
      const double gap = std::max(0.0, 2.0 * (exy - mean * ey) - (ey2 - ey * ey));
      const double var_kept = std::max(0.0, var - gap);
      const double sd_sum = std::sqrt(var) + std::sqrt(var_kept);
      o.sd_excess = sd_sum > 0.0 ? gap / sd_sum : 0.0;
    }
  }
  overflow_.emplace(key, o);
  return o;
}

RoutingDraw Router::draw(int moe_layer, int groups, double group_tokens, Rng& rng) const {
  const std::vector<double>& p = popularity(moe_layer);
  const std::size_t E = p.size();
  RoutingDraw d;
  d.assigned.assign(E, 0.0);
  d.processed.assign(E, 0.0);
  d.tokens = group_tokens * groups;
  d.assignments = static_cast<double>(top_k_) * d.tokens;
  const double cap = capacity(group_tokens);
  const double q = second_probability_;

  if (d.assignments <= kExactLimit) {
    d.exact = true;
    const AliasTable table(p);
    const auto tokens = static_cast<long long>(std::llround(group_tokens));
    std::vector<double> first(E), count(E);
    std::vector<std::size_t> chosen(static_cast<std::size_t>(top_k_));
    for (int g = 0; g < groups; ++g) {
      std::fill(first.begin(), first.end(), 0.0);
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
          if (j == 0) first[e] += 1.0;
          // The second-expert policy: a uniform draw only where the outcome is uncertain, so that policies
          // that use every (or no) second choice leave the random stream as it was.
          if (j == 1 && (q <= 0.0 || (q < 1.0 && !(rng.uniform() < q)))) {
            d.skipped += 1.0;
            continue;
          }
          count[e] += 1.0;
        }
      }
      // First choices are placed first: min(F, C) of them are kept, and all choices together keep min(X, C).
      for (std::size_t e = 0; e < E; ++e) {
        const double kept = std::min(count[e], cap);
        d.assigned[e] += count[e];
        d.processed[e] += kept;
        d.dropped += count[e] - kept;
        d.first_dropped += first[e] - std::min(first[e], cap);
      }
    }
  } else {
    d.exact = false;
    const double G = groups, S = group_tokens;
    const std::vector<double>& pi = dispatch_probability(moe_layer);
    // Per-expert counts: G S pi_e plus a normal deviate, never below 0 nor above one per token. Independent
    // deviates would not conserve the assignments (the counts must sum to the choices dispatched; the audit saw
    // +0.07 % of expert FLOPs). The deviates are the multinomial's Gaussian limit instead: Y_e = a_e z_e - w_e W,
    // W = sum_j a_j z_j, w_e = pi_e / sum(pi), whose sum over the experts is 0 and whose covariance is the
    // multinomial's -N p_i p_j; a_e^2 = pi_e (1 - pi_e) / (1 - w_e) keeps each expert's variance at its binomial
    // pi_e (1 - pi_e) per token (exactly for equal pi, closely otherwise). E normal draws, as before.
    const double N = G * S;
    std::vector<double> z(E), a(E);
    double pi_sum = 0.0;
    for (std::size_t e = 0; e < E; ++e) pi_sum += pi[e];
    double W = 0.0;
    for (std::size_t e = 0; e < E; ++e) {
      z[e] = normal(rng);
      const double w = pi_sum > 0.0 ? pi[e] / pi_sum : 0.0;
      a[e] = w < 1.0 ? std::sqrt(pi[e] * (1.0 - pi[e]) / (1.0 - w)) : 0.0;
      W += a[e] * z[e];
    }
    const auto count = [&](double prob, double dev) {
      return std::clamp(N * prob + std::sqrt(N * prob * (1.0 - prob)) * dev, 0.0, N);
    };
    double assigned_sum = 0.0;
    for (std::size_t e = 0; e < E; ++e) {
      const double w = pi_sum > 0.0 ? pi[e] / pi_sum : 0.0;
      const double sd = std::sqrt(pi[e] * (1.0 - pi[e]));
      const double dev = sd > 0.0 ? (a[e] * z[e] - w * W) / sd : 0.0;  // the expert's standardised deviate
      const auto over = [&](double prob, double n) {
        const Overflow o = overflow(S, prob, cap);
        if (o.mean == 0.0) return 0.0;
        return std::clamp(G * o.mean + std::sqrt(G) * o.sd_excess * dev, std::max(0.0, n - G * cap), n);
      };
      const double assigned = count(pi[e], dev);
      const double dropped = over(pi[e], assigned);
      d.assigned[e] = assigned;
      d.processed[e] = assigned - dropped;
      d.dropped += dropped;
      assigned_sum += assigned;
      d.first_dropped += top_k_ == 1 ? dropped : over(p[e], count(p[e], dev));
    }
    // Second choices not dispatched: the router's choices less those dispatched.
    if (top_k_ == 2 && q < 1.0) d.skipped = std::max(0.0, d.assignments - assigned_sum);
  }
  return d;
}

}  // namespace moesim::workload
