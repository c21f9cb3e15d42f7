// SPDX-License-Identifier: Apache-2.0
#include "max_rate_search.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/fields.hpp"

namespace moesim::cli {

nlohmann::json RateSearch::to_json() const {
  nlohmann::json ps = nlohmann::json::array();
  for (const RateProbe& p : probes)
    ps.push_back({{"rate_per_s", p.rate_per_s}, {"accepted", p.ok}, {"meets_slo", p.slo_met}, {"keeps_up", p.keeps_up},
                  {"ttft_p99_s", p.ttft_p99_s}, {"tpot_p99_s", p.tpot_p99_s}, {"output_tokens_per_s", p.output_tokens_per_s},
                  {"requests", p.requests}, {"window_arrival_rate_per_s", p.window_arrival_rate_per_s},
                  {"backlog_growth_fraction", p.backlog_growth_fraction}, {"duration_scale", p.duration_scale},
                  {"backlog_resolution", p.backlog_resolution}});
  return {{"sustained_rate_per_s", sustained_rate_per_s}, {"rate_per_s", rate_per_s}, {"upper_rate_per_s", upper_rate_per_s},
          {"duration_scale", duration_scale}, {"backlog_resolution", backlog_resolution},
          {"resolution_target", resolution_target}, {"slo_ttft_s", slo_ttft_s},
          {"slo_tpot_s", slo_tpot_s}, {"probes", ps}};
}

RateSearch RateSearch::from_json(const nlohmann::json& j) {
  RateSearch s;
  s.rate_per_s = j.at("rate_per_s").get<double>();
  s.sustained_rate_per_s = j.value("sustained_rate_per_s", s.rate_per_s);
  s.upper_rate_per_s = j.at("upper_rate_per_s").get<double>();
  s.duration_scale = j.value("duration_scale", 1.0);
  s.backlog_resolution = j.value("backlog_resolution", 0.0);
  s.resolution_target = j.value("resolution_target", 0.0);
  s.slo_ttft_s = j.at("slo_ttft_s").get<double>();
  s.slo_tpot_s = j.at("slo_tpot_s").get<double>();
  for (const auto& p : j.at("probes")) {
    RateProbe r;
    r.rate_per_s = p.at("rate_per_s").get<double>();
    r.slo_met = p.at("meets_slo").get<bool>();
    r.ok = p.value("accepted", r.slo_met);
    r.ttft_p99_s = p.at("ttft_p99_s").get<double>();
    r.tpot_p99_s = p.at("tpot_p99_s").get<double>();
    r.output_tokens_per_s = p.at("output_tokens_per_s").get<double>();
    r.requests = p.value("requests", 0LL);
    r.window_arrival_rate_per_s = p.value("window_arrival_rate_per_s", r.rate_per_s);
    r.keeps_up = p.value("keeps_up", true);
    r.backlog_growth_fraction = p.value("backlog_growth_fraction", 0.0);
    r.duration_scale = p.value("duration_scale", 1.0);
    r.backlog_resolution = p.value("backlog_resolution", 0.0);
    s.probes.push_back(std::move(r));
  }
  return s;
}

void RateSearch::add_metrics(store::RunRecord& rec) const {
  rec.metrics.push_back({"max_rate_rps", sustained_rate_per_s, "requests/s"});
  rec.metrics.push_back({"max_rate_probe_rps", rate_per_s, "requests/s"});
  rec.metrics.push_back({"max_rate_upper_rps", upper_rate_per_s, "requests/s"});
  rec.metrics.push_back({"max_rate_probes", static_cast<double>(probes.size()), "simulations"});
}

void check_rate_searchable(const scenario::Scenario& s, const std::string& scenario_file) {
  if (!s.is_serving())
    throw InputError(scenario_file, 0, 0, "--max-rate", "searches the arrival rate of a serving scenario; this one trains");
  const std::string type = s.serving->arrival.type;
  if (type != "poisson" && type != "gamma" && type != "constant" && type != "bursts")
    throw InputError(scenario_file, 0, 0, "serving.arrival.type",
                     fmt::format("--max-rate varies the arrival rate: the arrival type must be poisson, gamma, constant or "
                                 "bursts, not {}",
                                 type));
}

std::string rate_override(double rate) { return fmt::format("serving.arrival.rate_per_s={:.17g}", rate); }

std::vector<std::string> rate_overrides(const scenario::Scenario& base, double rate, double scale) {
  std::vector<std::string> ov = {rate_override(rate)};
  if (scale != 1.0) {
    const auto& v = *base.serving;
    if (v.duration_s > 0.0) ov.push_back(fmt::format("serving.duration_s={:.17g}", v.warmup_s + scale * (v.duration_s - v.warmup_s)));
    if (v.requests > 0) ov.push_back(fmt::format("serving.requests={}", static_cast<long long>(std::llround(scale * static_cast<double>(v.requests)))));
  }
  return ov;
}

double max_duration_scale(const scenario::Scenario& base) {
  const auto& v = *base.serving;
  double cap = std::numeric_limits<double>::infinity();
  const auto* duration = scenario::find_field("serving.duration_s");
  const auto* requests = scenario::find_field("serving.requests");
  if (v.duration_s > v.warmup_s && duration != nullptr && duration->max)
    cap = std::min(cap, (*duration->max - v.warmup_s) / (v.duration_s - v.warmup_s));
  if (v.requests > 0 && requests != nullptr && requests->max)
    cap = std::min(cap, std::floor(*requests->max) / static_cast<double>(v.requests));
  return std::max(1.0, cap);
}

RateSearch search_max_rate(const scenario::Scenario& base, double tolerance, const std::function<nlohmann::json(double, double)>& simulate,
                           const std::function<void(const RateProbe&)>& on_probe) {
  RateSearch s;
  s.slo_ttft_s = base.serving->slo_ttft_s;
  s.slo_tpot_s = base.serving->slo_tpot_s;
  s.resolution_target = std::max(engine::kMaxBacklogGrowth, tolerance);
  const double scale_cap = max_duration_scale(base);
  auto probe = [&](double rate) -> RateProbe {
    RateProbe p;
    p.rate_per_s = rate;
    engine::ServingResult r;
    for (int k = 0;; ++k) {
      p.result = simulate(rate, p.duration_scale);
      r = engine::serving_from_json(p.result);
      p.backlog_resolution = engine::backlog_resolution(r);
      // Lengthened only when it would be accepted: a rejected probe's verdict stands however long it runs.
      const bool would_accept = r.slo_p99_met && r.requests_measured > 0 && !engine::falls_behind(r);
      if (!would_accept || p.backlog_resolution <= s.resolution_target || k == engine::kMaxProbeLengthening ||
          2.0 * p.duration_scale > scale_cap)
        break;  // resolved, or as long as the search lengthens, or the fields' maxima would be passed
      p.duration_scale *= 2.0;
    }
    p.ttft_p99_s = r.ttft.p99_s;
    p.tpot_p99_s = r.tpot.p99_s;
    p.output_tokens_per_s = r.output_tokens_per_s;
    p.requests = r.requests_measured;
    const double window = r.window_end_s - r.window_start_s;
    p.window_arrival_rate_per_s = window > 0.0 ? static_cast<double>(r.requests_measured) / window : 0.0;
    p.backlog_growth_fraction = r.backlog_growth_fraction;
    p.keeps_up = !engine::falls_behind(r);
    p.slo_met = r.slo_p99_met && r.requests_measured > 0;
    p.ok = p.slo_met && p.keeps_up;
    s.probes.push_back(p);
    if (on_probe) on_probe(p);
    return p;
  };
  const double r0 = base.serving->arrival.rate_per_s;
  RateProbe lo, hi;
  const RateProbe first = probe(r0);
  if (first.ok) {
    lo = first;
    bool have_hi = false;
    double r = r0;
    for (int i = 0; i < kMaxBracketSteps && !have_hi; ++i) {
      r *= 2.0;
      RateProbe p = probe(r);
      if (p.ok) {
        lo = std::move(p);
      } else {
        hi = std::move(p);
        have_hi = true;
      }
    }
    if (!have_hi) {
      // What bounds the run: a request count alone ends the arrivals after that many whatever the rate.
      const auto& v = *base.serving;
      const std::string remedy =
          v.duration_s > 0.0
              ? "raise serving.arrival.rate_per_s or lengthen serving.duration_s (short runs never fill the queue)"
              : fmt::format("serving.requests ({}) ends the arrivals, and so few requests never fill the queue at any rate: "
                            "give serving.duration_s (the search then sends requests for that long) or many more requests",
                            v.requests);
      throw Error(fmt::format("--max-rate: the SLOs (P99 TTFT {:g} ms, TPOT {:g} ms) still hold at {:.4g} requests/s, {}x the "
                              "scenario's rate; {}",
                              1e3 * s.slo_ttft_s, 1e3 * s.slo_tpot_s, lo.rate_per_s, 1 << kMaxBracketSteps, remedy));
    }
  } else {
    hi = first;
    double r = r0;
    bool found = false;
    for (int i = 0; i < kMaxBracketSteps; ++i) {
      r /= 2.0;
      RateProbe p;
      try {
        p = probe(r);
      } catch (const Error&) {
        break;  // too few requests left at this rate to simulate anything
      }
      if (p.ok) {
        lo = std::move(p);
        found = true;
        break;
      }
      hi = std::move(p);
      if (hi.requests <= 1) break;
    }
    if (!found)
      throw Error(fmt::format("--max-rate: the SLOs cannot be met at any rate: at {:.4g} requests/s ({} request{} measured) P99 TTFT "
                              "is {:.1f} ms (limit {:g}) and P99 TPOT {:.1f} ms (limit {:g}); an unloaded replica is already "
                              "slower than the limits: relax serving.slo, or give replicas more devices or faster accelerators",
                              hi.rate_per_s, hi.requests, hi.requests == 1 ? "" : "s", 1e3 * hi.ttft_p99_s, 1e3 * s.slo_ttft_s,
                              1e3 * hi.tpot_p99_s, 1e3 * s.slo_tpot_s));
  }
  while ((hi.rate_per_s - lo.rate_per_s) / lo.rate_per_s > tolerance) {
    RateProbe p = probe(0.5 * (lo.rate_per_s + hi.rate_per_s));
    (p.ok ? lo : hi) = std::move(p);
  }
  s.rate_per_s = lo.rate_per_s;
  s.sustained_rate_per_s = std::min(lo.rate_per_s, lo.window_arrival_rate_per_s);
  s.upper_rate_per_s = hi.rate_per_s;
  s.duration_scale = lo.duration_scale;
  s.backlog_resolution = lo.backlog_resolution;
  s.result = lo.result;
  return s;
}

}  // namespace moesim::cli
