// SPDX-License-Identifier: Apache-2.0
// Router: top-2 gating as Mesh-TensorFlow and GShard define it (second-expert policy, first-choice priority,
// shared capacity, group split), checked against an independent brute-force sampler; exact zeros.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "moesim/core/error.hpp"
#include "moesim/workload/routing.hpp"

using moesim::Rng;
using moesim::scenario::GroupSplit;
using moesim::scenario::RoutingSpec;
using moesim::scenario::SecondExpertPolicy;
using moesim::workload::expert_capacity;
using moesim::workload::mesh_tensorflow_groups;
using moesim::workload::Router;
using moesim::workload::routing_groups;
using moesim::workload::RoutingDraw;
using moesim::workload::second_dispatch_probability;

namespace {

RoutingSpec gating(const std::string& type, double skew, SecondExpertPolicy policy, double threshold, double gate,
                   bool counts_top_k) {
  RoutingSpec s;
  s.type = type;
  s.skew = skew;
  s.second_expert_policy = policy;
  s.second_expert_threshold = threshold;
  s.second_gate = gate;
  s.capacity_counts_top_k = counts_top_k;
  return s;
}

/** Counts of a set of routing groups. */
struct Tally {
  double tokens = 0.0, dispatched = 0.0, skipped = 0.0, dropped = 0.0, first_dropped = 0.0;
  std::vector<double> processed;
};

/** Mesh-TensorFlow's _top_2_gating (tensorflow/mesh transformer/moe.py) and lingvo's Top2GatingOnLogits written
 *  out literally for one group, independently of the Router: each token takes its first choice and (top-2) a
 *  second one drawn without replacement from the popularity; the policy masks second choices; first choices get
 *  positions by an exclusive running count per expert and are kept below the capacity; second choices get
 *  positions after the expert's kept first choices (running count + mask_1_count) and are kept below the
 *  capacity. */
class BruteForce {
 public:
  BruteForce(std::vector<double> p, int k, double cap, const RoutingSpec& spec, std::uint64_t seed)
      : p_(std::move(p)), k_(k), cap_(cap), spec_(spec), gen_(seed) {}

  void group(int tokens, Tally& t) {
    const std::size_t E = p_.size();
    if (t.processed.empty()) t.processed.assign(E, 0.0);
    std::vector<std::size_t> first(static_cast<std::size_t>(tokens)), second(static_cast<std::size_t>(tokens));
    std::vector<bool> use_second(static_cast<std::size_t>(tokens), false);
    for (int s = 0; s < tokens; ++s) {
      const auto i = static_cast<std::size_t>(s);
      first[i] = pick(E);
      if (k_ == 2) {
        second[i] = pick(first[i]);
        use_second[i] = policy_uses_second();
        if (!use_second[i]) t.skipped += 1.0;
      }
    }
    std::vector<double> position(E, 0.0), kept_first(E, 0.0);
    for (int s = 0; s < tokens; ++s) {
      const std::size_t e = first[static_cast<std::size_t>(s)];
      t.dispatched += 1.0;
      if (position[e] < cap_) {
        kept_first[e] += 1.0;
        t.processed[e] += 1.0;
      } else {
        t.first_dropped += 1.0;
        t.dropped += 1.0;
      }
      position[e] += 1.0;
    }
    std::fill(position.begin(), position.end(), 0.0);
    for (int s = 0; s < tokens && k_ == 2; ++s) {
      if (!use_second[static_cast<std::size_t>(s)]) continue;
      const std::size_t e = second[static_cast<std::size_t>(s)];
      t.dispatched += 1.0;
      if (position[e] + kept_first[e] < cap_)
        t.processed[e] += 1.0;
      else
        t.dropped += 1.0;
      position[e] += 1.0;
    }
    t.tokens += tokens;
  }

 private:
  /** An expert drawn from the popularity, excluding `skip` (inverse CDF over what is left). */
  std::size_t pick(std::size_t skip) {
    double mass = 0.0;
    for (std::size_t e = 0; e < p_.size(); ++e)
      if (e != skip) mass += p_[e];
    double u = std::uniform_real_distribution<double>(0.0, mass)(gen_);
    std::size_t last = 0;
    for (std::size_t e = 0; e < p_.size(); ++e) {
      if (e == skip || p_[e] <= 0.0) continue;
      last = e;
      if (u < p_[e]) return e;
      u -= p_[e];
    }
    return last;
  }
  bool policy_uses_second() {
    const double g2 = spec_.second_gate, t = spec_.second_expert_threshold;
    switch (spec_.second_expert_policy) {
      case SecondExpertPolicy::all: return true;
      case SecondExpertPolicy::none: return false;
      case SecondExpertPolicy::threshold: return g2 > t;
      case SecondExpertPolicy::random: return std::uniform_real_distribution<double>(0.0, 1.0)(gen_) < g2 / std::max(t, 1e-9);
    }
    return true;
  }

  std::vector<double> p_;
  int k_;
  double cap_;
  RoutingSpec spec_;
  std::mt19937_64 gen_;
};

/** Mean and standard error of a quantity over independent batches. */
struct Estimate {
  std::vector<double> values;
  double mean() const { return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size()); }
  double se() const {
    const double m = mean();
    double ss = 0.0;
    for (double v : values) ss += (v - m) * (v - m);
    return std::sqrt(ss / static_cast<double>(values.size() - 1) / static_cast<double>(values.size()));
  }
};

/** The four figures compared between the samplers, per batch. */
struct Figures {
  Estimate dropped;        ///< dropped / dispatched
  Estimate first_dropped;  ///< first choices dropped / tokens
  Estimate skipped;        ///< second choices not dispatched / tokens
  Estimate hot_processed;  ///< processed assignments of the most popular expert / tokens
  void add(double tokens, double dispatched, double skipped_n, double dropped_n, double first_n, double hot) {
    dropped.values.push_back(dispatched > 0 ? dropped_n / dispatched : 0.0);
    first_dropped.values.push_back(first_n / tokens);
    skipped.values.push_back(skipped_n / tokens);
    hot_processed.values.push_back(hot / tokens);
  }
};

void check_agree(const char* what, const Estimate& a, const Estimate& b) {
  const double tol = 4.0 * std::sqrt(a.se() * a.se() + b.se() * b.se()) + 1e-9;
  INFO(what << ": " << a.mean() << " +- " << a.se() << " vs " << b.mean() << " +- " << b.se());
  CHECK(std::abs(a.mean() - b.mean()) <= tol);
}

/** Brute force vs Router exact draws vs Router large-draw approximation, on groups of S tokens. */
void compare_with_brute_force(const RoutingSpec& spec, int E, int k, double cf, int S) {
  const Router r(spec, E, k, cf, 7);
  const std::vector<double>& p = r.popularity(0);
  const auto hot = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
  const double cap = r.capacity(S);
  constexpr int kBatches = 24;
  const int exact_groups = static_cast<int>(Router::kExactLimit / (k * S));
  const int approx_groups = 4 * exact_groups;
  BruteForce brute(p, k, cap, spec, 99);
  Figures fb, fe, fa;
  Rng rng(5);
  for (int b = 0; b < kBatches; ++b) {
    Tally t;
    for (int g = 0; g < exact_groups; ++g) brute.group(S, t);
    fb.add(t.tokens, t.dispatched, t.skipped, t.dropped, t.first_dropped, t.processed[hot]);
    const RoutingDraw de = r.draw(0, exact_groups, S, rng);
    REQUIRE(de.exact);
    fe.add(de.tokens, de.dispatched(), de.skipped, de.dropped, de.first_dropped, de.processed[hot]);
    const RoutingDraw da = r.draw(0, approx_groups, S, rng);
    REQUIRE_FALSE(da.exact);
    fa.add(da.tokens, da.dispatched(), da.skipped, da.dropped, da.first_dropped, da.processed[hot]);
    // Conservation: choices = skipped + dropped + kept, exactly when sampled, up to the normal noise of the
    // per-expert counts in the approximation.
    for (const RoutingDraw* d : {&de, &da}) {
      CHECK(d->assignments == k * d->tokens);
      CHECK(std::accumulate(d->processed.begin(), d->processed.end(), 0.0) == Approx(d->kept()).epsilon(d->exact ? 1e-12 : 0.02));
      CHECK(d->first_dropped <= d->dropped + 1e-9);
    }
  }
  INFO("capacity " << cap << ", second dispatch probability " << r.second_probability());
  check_agree("dropped fraction, exact", fb.dropped, fe.dropped);
  check_agree("dropped fraction, approximation", fb.dropped, fa.dropped);
  check_agree("first-choice drops, exact", fb.first_dropped, fe.first_dropped);
  check_agree("first-choice drops, approximation", fb.first_dropped, fa.first_dropped);
  check_agree("skipped second choices, exact", fb.skipped, fe.skipped);
  check_agree("skipped second choices, approximation", fb.skipped, fa.skipped);
  check_agree("hottest expert's processed share, exact", fb.hot_processed, fe.hot_processed);
  check_agree("hottest expert's processed share, approximation", fb.hot_processed, fa.hot_processed);
}

}  // namespace

TEST_CASE("workload::Router: second-expert policies agree with a brute-force top-2 gating sampler",
          "[workload][routing][policy]") {
  // Mesh-TensorFlow capacity floor(cf S / E) (top-2 choices share it) or GShard's ceil(cf k S / E); 8 experts,
  // groups of 32 tokens, so that every case drops (first choices too) and sampling error stays small.
  const int E = 8, S = 32;
  SECTION("Mesh-TF, all: capacity 5 for a mean of 8 assignments an expert") {
    compare_with_brute_force(gating("uniform", 0.0, SecondExpertPolicy::all, 0.0, 0.5, false), E, 2, 1.25, S);
  }
  SECTION("Mesh-TF, random with threshold 0.2 and g2 0.1: half the second choices") {
    compare_with_brute_force(gating("uniform", 0.0, SecondExpertPolicy::random, 0.2, 0.1, false), E, 2, 1.25, S);
  }
  SECTION("Mesh-TF, random, skewed popularity") {
    compare_with_brute_force(gating("zipf", 1.0, SecondExpertPolicy::random, 0.2, 0.05, false), E, 2, 2.0, S);
  }
  SECTION("Mesh-TF, threshold: g2 above it uses every second choice") {
    compare_with_brute_force(gating("zipf", 0.6, SecondExpertPolicy::threshold, 0.2, 0.3, false), E, 2, 1.25, S);
  }
  SECTION("Mesh-TF, threshold: g2 below it uses none") {
    compare_with_brute_force(gating("zipf", 0.6, SecondExpertPolicy::threshold, 0.2, 0.1, false), E, 2, 1.25, S);
  }
  SECTION("none") {
    compare_with_brute_force(gating("uniform", 0.0, SecondExpertPolicy::none, 0.0, 0.5, false), E, 2, 1.0, S);
  }
  SECTION("GShard: capacity 2N/E, random with threshold 0.5 (dispatch if 2 g2 > uniform)") {
    compare_with_brute_force(gating("zipf", 0.7, SecondExpertPolicy::random, 0.5, 0.2, true), E, 2, 1.0, S);
  }
  SECTION("top-1 (Switch)") {
    compare_with_brute_force(gating("zipf", 0.5, SecondExpertPolicy::all, 0.0, 0.5, false), E, 1, 1.0, S);
  }
}

TEST_CASE("workload::Router: first-choice priority, hand-computed", "[workload][routing][policy]") {
  SECTION("load [1, 0], top-2, Mesh-TF capacity floor(1 x 10 / 2) = 5") {
    // Every token: first choice expert 0, second expert 1. Expert 0 keeps 5 of 10 first choices; expert 1's
    // 10 second choices fill its empty buffer up to 5. So 10 of 20 dispatched are dropped, 5 of them first choices.
    RoutingSpec all = gating("load_vector", 0.0, SecondExpertPolicy::all, 0.0, 0.5, false);
    all.load = {1.0, 0.0};
    RoutingSpec none = all;
    none.second_expert_policy = SecondExpertPolicy::none;
    for (const int groups : {3, 1000}) {  // exact, then the large-draw path (20000 assignments)
      INFO("groups " << groups);
      Rng rng(3);
      const RoutingDraw d = Router(all, 2, 2, 1.0, 1).draw(0, groups, 10, rng);
      CHECK(d.exact == (groups == 3));
      CHECK(d.assigned == std::vector<double>{10.0 * groups, 10.0 * groups});
      CHECK(d.processed == std::vector<double>{5.0 * groups, 5.0 * groups});
      CHECK(d.dropped == 10.0 * groups);
      CHECK(d.first_dropped == 5.0 * groups);
      CHECK(d.skipped == 0.0);
      // No second choices: expert 1 idle, only the first-choice overflow is lost.
      const RoutingDraw n = Router(none, 2, 2, 1.0, 1).draw(0, groups, 10, rng);
      CHECK(n.assigned == std::vector<double>{10.0 * groups, 0.0});
      CHECK(n.skipped == 10.0 * groups);
      CHECK(n.dropped == 5.0 * groups);
      CHECK(n.first_dropped == 5.0 * groups);
      CHECK(n.kept() == 5.0 * groups);
    }
  }
  SECTION("two experts, uniform, top-2, groups of 4, Mesh-TF capacity 2") {
    // Each token takes both experts, so each expert gets 4 assignments and keeps 2: 50 % dropped in every group.
    // First choices: F ~ Binomial(4, 1/2) per expert, E[(F - 2)+] = 1 x 4/16 + 2 x 1/16 = 6/16, so
    // 2 x 6/16 = 0.75 of the 4 tokens of a group lose their first choice: 0.1875.
    const RoutingSpec s = gating("uniform", 0.0, SecondExpertPolicy::all, 0.0, 0.5, false);
    const Router r(s, 2, 2, 1.0, 1);
    REQUIRE(r.capacity(4) == 2.0);
    Rng rng(8);
    double first = 0.0, tokens = 0.0;
    for (int rep = 0; rep < 40; ++rep) {
      const RoutingDraw d = r.draw(0, 2048, 4, rng);  // 16384 assignments: exact
      REQUIRE(d.exact);
      CHECK(d.dropped == 0.5 * d.dispatched());
      first += d.first_dropped;
      tokens += d.tokens;
    }
    CHECK(first / tokens == Approx(0.1875).margin(0.005));  // sd of the estimate: ~0.0015
    const RoutingDraw a = r.draw(0, 8192, 4, rng);
    REQUIRE_FALSE(a.exact);
    CHECK(a.dropped == 0.5 * a.dispatched());  // counts of 4 for certain: no noise
    CHECK(a.first_dropped / a.tokens == Approx(0.1875).margin(0.01));
  }
}

TEST_CASE("workload::second_dispatch_probability: the policies as the codes define them", "[workload][routing][policy]") {
  const auto q = [](SecondExpertPolicy p, double threshold, double gate) {
    return second_dispatch_probability(gating("uniform", 0.0, p, threshold, gate, false));
  };
  CHECK(q(SecondExpertPolicy::all, 0.0, 0.01) == 1.0);
  CHECK(q(SecondExpertPolicy::none, 0.2, 0.5) == 0.0);
  CHECK(q(SecondExpertPolicy::threshold, 0.2, 0.3) == 1.0);
  CHECK(q(SecondExpertPolicy::threshold, 0.2, 0.2) == 0.0);  // strictly greater (mtf.greater)
  CHECK(q(SecondExpertPolicy::random, 0.2, 0.1) == Approx(0.5));
  CHECK(q(SecondExpertPolicy::random, 0.2, 0.5) == 1.0);  // Mesh-TF default threshold with g1 = g2
  CHECK(q(SecondExpertPolicy::random, 0.5, 0.2) == Approx(0.4));  // GShard: 2 x g2
  CHECK(q(SecondExpertPolicy::random, 0.5, 0.5) == 1.0);
}

TEST_CASE("workload::Router: 'all', and 'random' that always dispatches, draw the same", "[workload][routing][policy]") {
  const Router all(gating("zipf", 0.8, SecondExpertPolicy::all, 0.0, 0.5, false), 16, 2, 1.25, 4);
  const Router sure(gating("zipf", 0.8, SecondExpertPolicy::random, 0.2, 0.5, false), 16, 2, 1.25, 4);
  REQUIRE(sure.second_probability() == 1.0);
  for (const int groups : {8, 4096}) {
    Rng a(11), b(11);
    const RoutingDraw da = all.draw(1, groups, 256, a), db = sure.draw(1, groups, 256, b);
    CHECK(da.assigned == db.assigned);
    CHECK(da.processed == db.processed);
    CHECK(da.dropped == db.dropped);
    CHECK(db.skipped == 0.0);
  }
}

TEST_CASE("workload::Router: a second-expert policy needs top-2", "[workload][routing][policy]") {
  const RoutingSpec s = gating("uniform", 0.0, SecondExpertPolicy::random, 0.2, 0.5, false);
  CHECK_THROWS_WITH(Router(s, 8, 1, 1.0, 1), Catch::Contains("needs top_k 2"));
  CHECK_THROWS_WITH(Router(s, 8, 3, 1.0, 1), Catch::Contains("needs top_k 2"));
  CHECK_NOTHROW(Router(s, 8, 2, 1.0, 1));
}

TEST_CASE("workload::expert_capacity: the published configurations, by hand", "[workload][routing][policy]") {
  RoutingSpec mtf = gating("uniform", 0.0, SecondExpertPolicy::all, 0.0, 0.5, false);
  mtf.min_expert_capacity = 4;  // Mesh-TF moe_min_expert_capacity
  // ST-MoE-32B: 64 experts, groups of 1024 (encoder) and 912 (decoder): floor(1.25 x 1024 / 64) = 20,
  // floor(1.25 x 912 / 64) = floor(17.8) = 17; at capacity factor 2.0: 32.
  CHECK(expert_capacity(mtf, 64, 2, 1.25, 1024) == 20.0);
  CHECK(expert_capacity(mtf, 64, 2, 1.25, 912) == 17.0);
  CHECK(expert_capacity(mtf, 64, 2, 2.0, 1024) == 32.0);
  // Switch-Base: 128 experts, top-1, capacity factor 1.0: floor(1024 / 128) = 8.
  CHECK(expert_capacity(mtf, 128, 1, 1.0, 1024) == 8.0);
  // The minimum: floor(1.25 x 64 / 64) = 1, raised to 4.
  CHECK(expert_capacity(mtf, 64, 2, 1.25, 64) == 4.0);
  // GShard-600B: 2N/E per group of 2048 tokens over 2048 experts = 2.
  const RoutingSpec gshard = gating("uniform", 0.0, SecondExpertPolicy::random, 0.5, 0.5, true);
  CHECK(expert_capacity(gshard, 2048, 2, 1.0, 2048) == 2.0);
}

TEST_CASE("workload::mesh_tensorflow_groups: Mesh-TensorFlow's _split_into_groups", "[workload][routing][policy]") {
  SECTION("hand cases") {
    // ST-MoE-32B decoder: 3648 tokens a device x 64 = 233472; 233472 // 1024 = 228 groups at least; the first
    // multiple of 64 from there that divides 233472 is 256: groups of 912.
    auto g = mesh_tensorflow_groups(233472, 1024, 64);
    CHECK(g.groups == 256);
    CHECK(g.group_tokens == 912.0);
    // Encoder: 16384 a device x 64: 1024 groups of 1024.
    g = mesh_tensorflow_groups(16384LL * 64, 1024, 64);
    CHECK(g.groups == 1024);
    CHECK(g.group_tokens == 1024.0);
    // 12 tokens, at most 5 a group, over 4 devices: 12 // 5 = 2, not a multiple of 4; 4 groups of 3.
    g = mesh_tensorflow_groups(12, 5, 4);
    CHECK(g.groups == 4);
    CHECK(g.group_tokens == 3.0);
    // Mesh-TF floors n / max_group_size: 7 tokens at most 4 a group stay one group of 7.
    g = mesh_tensorflow_groups(7, 4, 1);
    CHECK(g.groups == 1);
    CHECK(g.group_tokens == 7.0);
    // A prime number of tokens per device: one token a group.
    g = mesh_tensorflow_groups(13 * 2, 4, 2);
    CHECK(g.groups == 26);
    CHECK(g.group_tokens == 1.0);
  }
  SECTION("n not a multiple of the mesh dimension") {
    CHECK_THROWS_WITH(mesh_tensorflow_groups(10, 4, 4), Catch::Contains("n=10 is not a multiple of mesh_dim_size=4"));
    CHECK_THROWS_AS(mesh_tensorflow_groups(0, 4, 1), moesim::Error);
  }
  SECTION("per device, against the fixed split") {
    RoutingSpec s;
    s.group_size_tokens = 1024;
    s.group_split = GroupSplit::mesh_tensorflow;
    auto g = routing_groups(s, 3648, 64);
    CHECK(g.groups == 4);
    CHECK(g.group_tokens == 912.0);
    s.group_split = GroupSplit::fixed;
    g = routing_groups(s, 3648, 64);  // fixed: round(3648 / 1024) = 4 groups of 1024 (4096 tokens)
    CHECK(g.groups == 4);
    CHECK(g.group_tokens == 1024.0);
    s.group_size_tokens = 0;
    g = routing_groups(s, 3648, 64);
    CHECK(g.groups == 1);
    CHECK(g.group_tokens == 3648.0);
  }
}

TEST_CASE("workload::Router: exactly zero where nothing can drop", "[workload][routing][policy]") {
  const int E = 8;
  SECTION("dropless, exact and large draws") {
    RoutingSpec s = gating("zipf", 1.2, SecondExpertPolicy::all, 0.0, 0.5, true);
    s.dropless = true;
    const Router r(s, E, 2, 1.0, 2);
    for (const int groups : {4, 64}) {
      Rng rng(1);
      const RoutingDraw d = r.draw(0, groups, 1024, rng);
      CHECK(d.exact == (groups == 4));
      CHECK(d.dropped == 0.0);
      CHECK(d.first_dropped == 0.0);
      CHECK(d.processed == d.assigned);
    }
  }
  SECTION("capacity of a whole group: no count can exceed it") {
    const Router r(gating("zipf", 2.0, SecondExpertPolicy::all, 0.0, 0.5, true), E, 2, 100.0, 2);
    REQUIRE(r.capacity(512) == 512.0);
    Rng rng(1);
    const RoutingDraw d = r.draw(0, 256, 512, rng);
    REQUIRE_FALSE(d.exact);
    CHECK(d.dropped == 0.0);
    CHECK(d.first_dropped == 0.0);
    CHECK(d.processed == d.assigned);
  }
  SECTION("overflow below a double's resolution of the count is none") {
    // Uniform top-2 over 8 experts, groups of 8192: 2048 +- 42 assignments an expert; GShard capacity
    // ceil(1.25 x 2 x 8192 / 8) = 2560 is 12 standard deviations up (E[(X - C)+] ~ 1e-33).
    const Router r(gating("uniform", 0.0, SecondExpertPolicy::all, 0.0, 0.5, true), E, 2, 1.25, 2);
    Rng rng(1);
    const RoutingDraw d = r.draw(0, 64, 8192, rng);
    REQUIRE_FALSE(d.exact);
    CHECK(d.dropped == 0.0);
    CHECK(d.processed == d.assigned);
    // ... while a capacity 2.4 standard deviations up still drops, a little.
    const Router tight(gating("uniform", 0.0, SecondExpertPolicy::all, 0.0, 0.5, true), E, 2, 1.05, 2);
    const RoutingDraw t = tight.draw(0, 64, 8192, rng);
    CHECK(t.dropped > 0.0);
    CHECK(t.dropped / t.dispatched() < 1e-3);
  }
}
