// SPDX-License-Identifier: Apache-2.0
// The capacity search against a deployment whose answer is known: a made-up run whose backlog grows exactly as far
// as the rate exceeds its capacity, with the chance fluctuation of a fixed number of requests in the system.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "max_rate_search.hpp"
#include "moesim/core/error.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/scenario.hpp"

namespace en = moesim::engine;
using moesim::cli::rate_overrides;
using moesim::cli::search_max_rate;

namespace {

moesim::scenario::Scenario base_scenario() {
  moesim::scenario::Scenario s;
  moesim::scenario::ServingSpec v;
  v.arrival.type = "poisson";
  v.arrival.rate_per_s = 50.0;
  v.duration_s = 10.0;
  v.warmup_s = 2.0;
  s.serving = v;
  return s;
}

/** A run at `rate` for `scale` times the 8 s window: capacity `capacity` requests/s, `in_system` requests in the
 *  system at the window's middle; beyond the capacity the excess accumulates over the window's second half. */
nlohmann::json fake_run(double rate, double scale, double capacity, double in_system) {
  en::ServingResult r;
  const double window = 8.0 * scale;
  r.window_start_s = 2.0;
  r.window_end_s = 2.0 + window;
  r.requests_measured = static_cast<long long>(rate * window);
  r.arrivals_late = static_cast<long long>(rate * window / 2.0);
  const double growth = std::floor(std::max(0.0, rate - capacity) * window / 2.0);
  r.in_system_mid = static_cast<long long>(in_system);
  r.in_system_end = static_cast<long long>(in_system + growth);
  r.backlog_growth_fraction = growth / static_cast<double>(r.arrivals_late);
  r.slo_p99_met = true;
  r.ttft.p99_s = 0.1;
  r.tpot.p99_s = 0.01;
  return en::to_json(r);
}

}  // namespace

TEST_CASE("cli::search_max_rate: a probe too short to tell a slow backlog from chance is run longer before it is accepted",
          "[cli][serving]") {
  const auto base = base_scenario();
  std::vector<std::pair<double, double>> calls;
  const auto found = search_max_rate(base, 0.02, [&](double rate, double scale) {
    calls.emplace_back(rate, scale);
    return fake_run(rate, scale, 100.0, 80.0);
  });
  // Within the tolerance of the capacity: an 8 s window with 80 requests in the system tells growth from chance only
  // above 9 % of its arrivals at 105 requests/s, and accepted rates up to about 110 before probes were lengthened.
  CHECK(found.rate_per_s <= 100.0 * 1.02);
  CHECK(found.rate_per_s >= 100.0 * 0.97);
  CHECK(found.resolution_target == 0.02);
  CHECK(std::any_of(calls.begin(), calls.end(), [](const auto& c) { return c.second > 1.0; }));
  CHECK(std::all_of(calls.begin(), calls.end(), [](const auto& c) { return c.second <= 8.0; }));
  CHECK(std::any_of(calls.begin(), calls.end(), [](const auto& c) { return c.second > 2.0; }));  // the cap below binds
  // The search reports the accepted probe's scale (the stored run is prepared at it) and what its run resolves.
  const auto accepted = std::find_if(found.probes.begin(), found.probes.end(), [&](const auto& p) { return p.rate_per_s == found.rate_per_s; });
  REQUIRE(accepted != found.probes.end());
  CHECK(found.duration_scale == accepted->duration_scale);
  CHECK(found.backlog_resolution <= found.resolution_target);
}

TEST_CASE("cli::search_max_rate: probes that resolve the tolerance already are not lengthened", "[cli][serving]") {
  const auto base = base_scenario();
  bool longer = false;
  const auto found = search_max_rate(base, 0.02, [&](double rate, double scale) {
    longer = longer || scale > 1.0;
    return fake_run(rate * 100.0, scale, 10000.0, 5.0);  // many arrivals, few in the system: sharp from the start
  });
  CHECK_FALSE(longer);
  CHECK(found.duration_scale == 1.0);
}

TEST_CASE("cli::rate_overrides: the rate, and the arrival period scaled after the warm-up", "[cli][serving]") {
  auto base = base_scenario();
  CHECK(rate_overrides(base, 12.5, 1.0) == std::vector<std::string>{"serving.arrival.rate_per_s=12.5"});
  CHECK(rate_overrides(base, 12.5, 4.0) == std::vector<std::string>{"serving.arrival.rate_per_s=12.5", "serving.duration_s=34"});
  base.serving->requests = 1000;
  CHECK(rate_overrides(base, 12.5, 2.0) ==
        std::vector<std::string>{"serving.arrival.rate_per_s=12.5", "serving.duration_s=18", "serving.requests=2000"});
}

TEST_CASE("cli::search_max_rate: a probe is lengthened no further than serving.duration_s and serving.requests allow",
          "[cli][serving]") {
  auto base = base_scenario();
  // 3.2e7 s is serving.duration_s's maximum: 2 + 8 x 2.5e6 s fits one doubling (2 + 16e6 s), not two (2 + 32e6 s).
  base.serving->duration_s = 2.0 + 8e6;
  CHECK(moesim::cli::max_duration_scale(base) == Approx((3.2e7 - 2.0) / 8e6));
  std::vector<double> scales;
  const auto found = search_max_rate(base, 0.02, [&](double rate, double scale) {
    scales.push_back(scale);
    for (const auto& o : rate_overrides(base, rate, scale))
      if (o.rfind("serving.duration_s=", 0) == 0) CHECK(std::stod(o.substr(19)) <= 3.2e7);
    return fake_run(rate, scale, 100.0, 80.0);
  });
  CHECK(*std::max_element(scales.begin(), scales.end()) == 2.0);
  CHECK(found.duration_scale <= 2.0);
  // serving.requests: 1e9 at most, so 3e8 requests can only be doubled once.
  base.serving->duration_s = 10.0;
  base.serving->requests = 300000000;
  CHECK(moesim::cli::max_duration_scale(base) == Approx(1e9 / 3e8));
  // A scenario already at a maximum is never lengthened (scale 1, not below).
  base.serving->requests = 1000000000;
  CHECK(moesim::cli::max_duration_scale(base) == 1.0);
}

TEST_CASE("cli::search_max_rate: SLOs that hold at every rate name what bounds the run", "[cli][serving]") {
  auto base = base_scenario();
  auto always_ok = [](double rate, double scale) { return fake_run(rate, scale, 1e12, 1.0); };
  try {
    search_max_rate(base, 0.02, always_ok);
    FAIL("expected an error");
  } catch (const moesim::Error& e) {
    CHECK(std::string(e.what()).find("lengthen serving.duration_s") != std::string::npos);
  }
  base.serving->duration_s = 0.0;  // a request count alone ends the arrivals
  base.serving->warmup_s = 0.0;
  base.serving->requests = 4;
  try {
    search_max_rate(base, 0.02, always_ok);
    FAIL("expected an error");
  } catch (const moesim::Error& e) {
    CHECK(std::string(e.what()).find("serving.requests (4) ends the arrivals") != std::string::npos);
    CHECK(std::string(e.what()).find("lengthen serving.duration_s") == std::string::npos);
  }
}
