// SPDX-License-Identifier: Apache-2.0
// Router: expert popularity, capacity, exact and approximate routing draws.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "moesim/core/error.hpp"
#include "moesim/workload/routing.hpp"

using moesim::Rng;
using moesim::scenario::RoutingSpec;
using moesim::workload::Router;
using moesim::workload::RoutingDraw;

namespace {

RoutingSpec spec(const std::string& type, double skew = 0.0, std::vector<double> load = {}, bool dropless = false) {
  RoutingSpec s;
  s.type = type;
  s.skew = skew;
  s.load = std::move(load);
  s.dropless = dropless;
  return s;
}

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

/** E[min(X, c)] for X ~ Binomial(n, p), summed term by term with lgamma (independent of the Router). */
double expected_min_binomial(int n, double p, int c) {
  double e = 0.0;
  for (int x = 0; x <= n; ++x) {
    const double log_pmf = std::lgamma(n + 1.0) - std::lgamma(x + 1.0) - std::lgamma(n - x + 1.0) +
                           x * std::log(p) + (n - x) * std::log1p(-p);
    e += std::min(x, c) * std::exp(log_pmf);
  }
  return e;
}

/** Checks the invariants every draw must satisfy; returns the drop fraction. */
double check_draw(const RoutingDraw& d, int k, int groups, double group_tokens, double cap) {
  const double assignments = static_cast<double>(k) * group_tokens * groups;
  CHECK(d.assignments == assignments);
  CHECK(d.tokens == group_tokens * groups);
  if (d.exact) CHECK(sum(d.assigned) == d.dispatched());  // every sampled, dispatched assignment is counted
  for (std::size_t e = 0; e < d.assigned.size(); ++e) {
    INFO("expert " << e);
    CHECK(d.processed[e] >= 0.0);
    CHECK(d.processed[e] <= d.assigned[e] + 1e-9);
    if (std::isfinite(cap)) CHECK(d.processed[e] <= groups * cap + 1e-9);
  }
  CHECK(d.dropped == Approx(sum(d.assigned) - sum(d.processed)).margin(1e-6));
  CHECK(d.dropped >= 0.0);
  return d.dropped / sum(d.assigned);
}

}  // namespace

TEST_CASE("workload::Router: capacity is ceil(capacity_factor x top_k x group tokens / experts)", "[workload][routing]") {
  SECTION("rounded up") {
    const Router r(spec("uniform"), 8, 2, 1.25, 1);
    // 1.25 x 2 x 1000 / 8 = 312.5 -> 313.
    CHECK(r.capacity(1000) == 313.0);
    CHECK(r.capacity(1000) == std::ceil(1.25 * 2 * 1000 / 8));
  }
  SECTION("exact") {
    const Router r(spec("uniform"), 8, 1, 1.0, 1);
    CHECK(r.capacity(64) == 8.0);  // a balanced load fills every expert exactly
    CHECK(r.capacity(65) == 9.0);
  }
  SECTION("GShard: 2N/E per group for top-2 is capacity_factor 1") {
    const Router r(spec("uniform"), 2048, 2, 1.0, 1);
    CHECK(r.capacity(2048) == 2.0);  // 2 x 2048 / 2048
  }
  SECTION("dropless: unlimited") {
    const Router r(spec("uniform", 0.0, {}, true), 8, 2, 1.25, 1);
    CHECK(r.dropless());
    CHECK(std::isinf(r.capacity(1000)));
  }
}

TEST_CASE("workload::expert_capacity: GShard and Mesh-TensorFlow conventions, floor and ceiling",
          "[workload][routing]") {
  RoutingSpec gshard = spec("uniform");
  SECTION("GShard: ceil(cf x k x S / E)") {
    CHECK(moesim::workload::expert_capacity(gshard, 8, 2, 1.25, 1000) == 313.0);  // ceil(312.5)
  }
  SECTION("Mesh-TensorFlow: floor(cf x S / E), top_k not counted") {
    RoutingSpec mtf = spec("uniform");
    mtf.capacity_counts_top_k = false;
    CHECK(moesim::workload::expert_capacity(mtf, 8, 2, 1.25, 1000) == 156.0);  // floor(156.25)
  }
  SECTION("a minimum capacity") {
    RoutingSpec m = spec("uniform");
    m.min_expert_capacity = 4;
    CHECK(moesim::workload::expert_capacity(m, 8, 1, 1.0, 16) == 4.0);   // ceil(2) raised to 4
    CHECK(moesim::workload::expert_capacity(m, 8, 1, 1.0, 800) == 100.0);
  }
  SECTION("never more than the group's tokens") {
    CHECK(moesim::workload::expert_capacity(gshard, 8, 2, 100.0, 64) == 64.0);
  }
  SECTION("dropless") {
    CHECK(std::isinf(moesim::workload::expert_capacity(spec("uniform", 0.0, {}, true), 8, 2, 1.0, 64)));
  }
}

TEST_CASE("workload::Router: bad construction arguments are errors", "[workload][routing]") {
  SECTION("no experts") { CHECK_THROWS_AS(Router(spec("uniform"), 0, 1, 1.0, 1), moesim::Error); }
  SECTION("top_k above the experts") {
    CHECK_THROWS_WITH(Router(spec("uniform"), 4, 5, 1.0, 1), Catch::Contains("top_k 5 must be in [1, 4]"));
  }
  SECTION("top_k 0") { CHECK_THROWS_AS(Router(spec("uniform"), 4, 0, 1.0, 1), moesim::Error); }
}

TEST_CASE("workload::Router: popularity", "[workload][routing]") {
  SECTION("uniform sums to 1 and is uniform") {
    const Router r(spec("uniform"), 16, 2, 1.0, 7);
    const auto& p = r.popularity(0);
    REQUIRE(p.size() == 16);
    CHECK(sum(p) == Approx(1.0).epsilon(1e-12));
    for (double x : p) CHECK(x == Approx(1.0 / 16).epsilon(1e-12));
  }
  SECTION("Zipf with skew 0 is uniform") {
    const Router r(spec("zipf", 0.0), 16, 2, 1.0, 7);
    for (double x : r.popularity(3)) CHECK(x == Approx(1.0 / 16).epsilon(1e-12));
  }
  SECTION("Zipf with skew > 0: the sorted popularities are 1/rank^skew, normalised") {
    const int E = 64;
    const double skew = 1.2;
    const Router r(spec("zipf", skew), E, 2, 1.0, 7);
    std::vector<double> p = r.popularity(0);
    CHECK(sum(p) == Approx(1.0).epsilon(1e-12));
    std::sort(p.begin(), p.end(), std::greater<>());
    double h = 0.0;
    for (int rank = 1; rank <= E; ++rank) h += std::pow(rank, -skew);
    for (int rank = 1; rank <= E; ++rank) {
      INFO("rank " << rank);
      CHECK(p[static_cast<std::size_t>(rank - 1)] == Approx(std::pow(rank, -skew) / h).epsilon(1e-12));
    }
    CHECK(p.front() > p.back());
  }
  SECTION("the hot experts of a layer are fixed across calls and routers, and differ between layers and seeds") {
    const Router a(spec("zipf", 1.0), 64, 2, 1.0, 7);
    const Router b(spec("zipf", 1.0), 64, 2, 1.0, 7);
    const Router other_seed(spec("zipf", 1.0), 64, 2, 1.0, 8);
    const std::vector<double> first = a.popularity(5);
    CHECK(a.popularity(5) == first);
    CHECK(b.popularity(5) == first);
    CHECK(a.popularity(6) != first);  // a different permutation of the same values
    CHECK(other_seed.popularity(5) != first);
    std::vector<double> s5 = first, s6 = a.popularity(6);
    std::sort(s5.begin(), s5.end());
    std::sort(s6.begin(), s6.end());
    REQUIRE(s5.size() == s6.size());
    for (std::size_t i = 0; i < s5.size(); ++i) CHECK(s5[i] == Approx(s6[i]).epsilon(1e-12));
    // The hottest expert is not always expert 0 (the ranks are shuffled).
    int hot_not_zero = 0;
    for (int layer = 0; layer < 8; ++layer) {
      const auto& p = a.popularity(layer);
      if (std::max_element(p.begin(), p.end()) - p.begin() != 0) ++hot_not_zero;
    }
    CHECK(hot_not_zero > 0);
  }
  SECTION("a load vector is normalised") {
    const Router r(spec("load_vector", 0.0, {1, 3, 0, 4}), 4, 1, 1.0, 7);
    const auto& p = r.popularity(0);
    REQUIRE(p.size() == 4);
    CHECK(p[0] == Approx(0.125));
    CHECK(p[1] == Approx(0.375));
    CHECK(p[2] == 0.0);
    CHECK(p[3] == Approx(0.5));
    CHECK(r.popularity(9) == p);  // the same for every layer
  }
}

TEST_CASE("workload::Router: exact draws conserve assignments and respect capacity", "[workload][routing]") {
  const int E = 16, k = 2, G = 8;
  const double S = 256;
  for (const auto& [name, sp] : std::vector<std::pair<std::string, RoutingSpec>>{
           {"uniform", spec("uniform")}, {"zipf 1.2", spec("zipf", 1.2)}}) {
    INFO(name);
    const Router r(sp, E, k, 1.0, 3);
    Rng rng(11);
    const RoutingDraw d = r.draw(0, G, S, rng);
    CHECK(d.exact);
    const double cap = r.capacity(S);
    REQUIRE(cap == 32.0);  // 1.0 x 2 x 256 / 16
    check_draw(d, k, G, S, cap);
    for (std::size_t e = 0; e < d.assigned.size(); ++e) {
      // Integer counts; an expert whose total over all groups fits one group's capacity lost nothing.
      CHECK(d.assigned[e] == std::floor(d.assigned[e]));
      if (d.assigned[e] <= cap) CHECK(d.processed[e] == d.assigned[e]);
    }
  }
  SECTION("a skewed router drops tokens at capacity factor 1") {
    const Router r(spec("zipf", 1.2), E, k, 1.0, 3);
    Rng rng(11);
    const RoutingDraw d = r.draw(0, G, S, rng);
    CHECK(d.dropped > 0.0);
    // The hottest expert gets ~ k S p_max per group, far above the capacity of 32.
    const auto& p = r.popularity(0);
    const auto hot = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
    CHECK(d.processed[hot] == G * r.capacity(S));
  }
  SECTION("a huge capacity drops nothing") {
    const Router r(spec("zipf", 1.2), E, k, 100.0, 3);
    Rng rng(11);
    const RoutingDraw d = r.draw(0, G, S, rng);
    CHECK(d.dropped == 0.0);
    CHECK(d.processed == d.assigned);
  }
  SECTION("dropless drops nothing") {
    const Router r(spec("zipf", 1.2, {}, true), E, k, 1.0, 3);
    Rng rng(11);
    const RoutingDraw d = r.draw(0, G, S, rng);
    check_draw(d, k, G, S, r.capacity(S));
    CHECK(d.dropped == 0.0);
  }
}

TEST_CASE("workload::Router: hand-checkable draws", "[workload][routing]") {
  SECTION("E=2, k=1, load [1, 0]: every token to expert 0, capacity C per group") {
    const Router r(spec("load_vector", 0.0, {1, 0}), 2, 1, 1.0, 5);
    const int G = 5;
    const double S = 100;
    const double C = r.capacity(S);
    REQUIRE(C == 50.0);  // ceil(1 x 1 x 100 / 2)
    Rng rng(1);
    const RoutingDraw d = r.draw(0, G, S, rng);
    CHECK(d.exact);
    CHECK(d.assigned == std::vector<double>{G * S, 0.0});
    CHECK(d.processed == std::vector<double>{G * C, 0.0});
    CHECK(d.dropped == G * (S - C));
  }
  SECTION("E=2, k=2: each token takes both experts, whatever their popularity") {
    const Router r(spec("load_vector", 0.0, {1, 0}), 2, 2, 1.0, 5);
    Rng rng(1);
    const RoutingDraw d = r.draw(0, 3, 40, rng);
    CHECK(d.assigned == std::vector<double>{120.0, 120.0});
    CHECK(d.dropped == 0.0);  // capacity = 1 x 2 x 40 / 2 = 40 = every token
  }
  SECTION("top-k picks distinct experts: with k = E every expert sees every token once") {
    const Router r(spec("zipf", 2.0), 4, 4, 1.0, 5);
    Rng rng(2);
    const RoutingDraw d = r.draw(1, 2, 50, rng);
    CHECK(d.assigned == std::vector<double>(4, 100.0));
  }
}

TEST_CASE("workload::Router: the normal approximation agrees with exact sampling", "[workload][routing]") {
  // Uniform top-2 over 16 experts: a token includes expert e with probability exactly 2/16, independently
  // of other tokens, so the per-group count is Binomial(S, 1/8) on both paths and the expected drop
  // fraction is 1 - E[min(X, C)] / (k S / E), computed here from the binomial pmf.
  const int E = 16, k = 2;
  const double S = 512;
  const Router r(spec("uniform"), E, k, 1.0, 9);
  const double C = r.capacity(S);
  REQUIRE(C == 64.0);
  const double expected = 1.0 - expected_min_binomial(512, 1.0 / 8.0, 64) / 64.0;
  REQUIRE(expected > 0.02);  // a case with real drops (about 5 %)

  // Pool several draws on each path so that ~16384 expert-groups are sampled whatever kExactLimit is
  // (the sampling sd of the pooled drop fraction is then ~1 %).
  const int exact_groups = static_cast<int>(Router::kExactLimit / (k * S));  // the largest exact draw
  const int approx_groups = 4 * exact_groups;
  const int reps = std::max(1, 1024 / exact_groups);
  Rng rng(21);
  double dropped_exact = 0.0, total_exact = 0.0, dropped_approx = 0.0, total_approx = 0.0, assigned_approx = 0.0;
  for (int rep = 0; rep < reps; ++rep) {
    const RoutingDraw ex = r.draw(0, exact_groups, S, rng);
    const RoutingDraw ap = r.draw(0, approx_groups, S, rng);
    REQUIRE(ex.exact);
    REQUIRE_FALSE(ap.exact);
    const double fe = check_draw(ex, k, exact_groups, S, C);
    const double fa = check_draw(ap, k, approx_groups, S, C);
    dropped_exact += fe * sum(ex.assigned);
    total_exact += sum(ex.assigned);
    dropped_approx += fa * sum(ap.assigned);
    total_approx += sum(ap.assigned);
    assigned_approx += sum(ap.assigned);
  }
  const double f_exact = dropped_exact / total_exact, f_approx = dropped_approx / total_approx;
  INFO("expected " << expected << ", exact " << f_exact << ", approx " << f_approx << " over " << reps << " draws each");
  CHECK(f_exact == Approx(expected).epsilon(0.04));
  CHECK(f_approx == Approx(expected).epsilon(0.04));
  CHECK(f_approx == Approx(f_exact).epsilon(0.04));
  // The approximation keeps the totals: assigned sums to k S G up to the normal noise (a few sd).
  CHECK(assigned_approx == Approx(static_cast<double>(k) * S * approx_groups * reps).epsilon(0.01));

  SECTION("skewed (Zipf 0.5 over 64 experts): within a few percent too") {
    const Router z(spec("zipf", 0.5), 64, 2, 1.25, 9);
    const double S2 = 1024;
    const int g_exact = static_cast<int>(Router::kExactLimit / (2 * S2));
    const int reps2 = std::max(1, 512 / g_exact);
    Rng rng2(5);
    double de = 0.0, te = 0.0, da = 0.0, ta = 0.0;
    for (int rep = 0; rep < reps2; ++rep) {
      const RoutingDraw ze = z.draw(0, g_exact, S2, rng2);
      const RoutingDraw za = z.draw(0, 4 * g_exact, S2, rng2);
      REQUIRE(ze.exact);
      REQUIRE_FALSE(za.exact);
      de += check_draw(ze, 2, g_exact, S2, z.capacity(S2)) * sum(ze.assigned);
      te += sum(ze.assigned);
      da += check_draw(za, 2, 4 * g_exact, S2, z.capacity(S2)) * sum(za.assigned);
      ta += sum(za.assigned);
    }
    const double fe = de / te, fa = da / ta;
    INFO("exact " << fe << ", approx " << fa);
    REQUIRE(fe > 0.02);
    CHECK(fa == Approx(fe).epsilon(0.05));
  }
}

TEST_CASE("workload::Router: the normal approximation conserves assignments and keeps each expert's binomial spread",
          "[workload][routing]") {
  // Dropless-sized capacity (factor 8 over 8 experts): nothing drops, so processed = assigned.
  for (const char* type : {"uniform", "zipf"}) {
    INFO(type);
    const int E = 8, k = 2;
    const double S = 4096;
    const Router r(type == std::string("zipf") ? spec("zipf", 0.8) : spec("uniform"), E, k, 8.0, 3);
    const int G = static_cast<int>(Router::kExactLimit / (k * S)) * 4;
    Rng rng(17);
    std::vector<double> mean(E, 0.0), sq(E, 0.0);
    const int reps = 400;
    for (int rep = 0; rep < reps; ++rep) {
      const RoutingDraw d = r.draw(0, G, S, rng);
      REQUIRE_FALSE(d.exact);
      // Every draw: the counts sum to the k choices of every token, to rounding.
      CHECK(sum(d.assigned) == Approx(static_cast<double>(k) * S * G).epsilon(1e-12));
      for (int e = 0; e < E; ++e) {
        mean[static_cast<std::size_t>(e)] += d.assigned[static_cast<std::size_t>(e)] / reps;
        sq[static_cast<std::size_t>(e)] += d.assigned[static_cast<std::size_t>(e)] * d.assigned[static_cast<std::size_t>(e)] / reps;
      }
    }
    if (type == std::string("uniform")) {
      // Each expert's count over N = G S tokens: Binomial(N, k/E), variance N (k/E)(1 - k/E); the sample
      // variance of 400 draws is within about 3 x sqrt(2/400) = 21 % of it.
      const double N = S * G, pi = static_cast<double>(k) / E;
      for (int e = 0; e < E; ++e) {
        const double m = mean[static_cast<std::size_t>(e)], var = sq[static_cast<std::size_t>(e)] - m * m;
        CHECK(m == Approx(N * pi).margin(5.0 * std::sqrt(N * pi * (1.0 - pi) / reps)));  // 5 sd of the mean
        CHECK(var == Approx(N * pi * (1.0 - pi)).epsilon(0.21));
      }
    }
  }
}

TEST_CASE("workload::Router: draws are deterministic for a seed and differ between streams", "[workload][routing]") {
  const Router r(spec("zipf", 0.8), 32, 2, 1.0, 4);
  for (const int groups : {4, 4096}) {  // exact and approximate paths
    INFO("groups " << groups);
    Rng a = Rng::derived(4, 0), b = Rng::derived(4, 0), c = Rng::derived(4, 1);
    const RoutingDraw da = r.draw(2, groups, 512, a);
    const RoutingDraw db = r.draw(2, groups, 512, b);
    const RoutingDraw dc = r.draw(2, groups, 512, c);
    CHECK(da.exact == (groups == 4));
    CHECK(da.assigned == db.assigned);
    CHECK(da.processed == db.processed);
    CHECK(da.dropped == db.dropped);
    CHECK(da.assigned != dc.assigned);
  }
}
