// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the serving driver's tests (serving_test.cpp, serving_window_test.cpp): the real catalog, a
// serving simulation in a child process (SimGrid keeps one engine per process), request-trace files, and the
// window's joules from the energy plugin and from the power series.
#include <array>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "moesim/catalog/catalog.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim_test/temp_dir.hpp"

namespace moesim::engine::serving_test {

inline const catalog::Catalog& catalog() {
  static const auto c = catalog::Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return c;
}

/** Simulates `s` in a child process and returns its result. */
inline ServingResult simulate(const scenario::Scenario& s) {
  const auto iso = run_isolated([&] { return to_json(simulate_serving(s, catalog())); });
  return serving_from_json(iso.value);
}

/** A trace file of requests {arrival_s, prompt_tokens, output_tokens}. */
inline std::string trace(const testing::TempDir& dir, const std::string& name, const std::vector<std::array<double, 3>>& rows) {
  const std::string p = dir.file(name);
  std::ofstream out(p);
  out << "arrival_s,prompt_tokens,output_tokens\n";
  for (const auto& r : rows) out << r[0] << "," << static_cast<int>(r[1]) << "," << static_cast<int>(r[2]) << "\n";
  return p;
}

/** The chips' joules over the window, from the energy plugin, and from the power series. */
inline std::pair<double, double> window_joules(const ServingResult& r) {
  double plugin = 0.0;
  for (const auto& site : r.sites) plugin += site.chip_energy_per_step_j;
  const auto& t = r.series.at("t_s");
  const auto& p = r.series.at("power_w");
  double series = 0.0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    // A point covers the interval to the next one; the last, series_last_interval_s.
    const double span = i + 1 < t.size() ? t[i + 1] - t[i] : r.series_last_interval_s;
    if (t[i] >= r.window_start_s - 1e-9 && t[i] + span <= r.window_end_s + 1e-9) series += p[i] * span;
  }
  return {plugin, series};
}

}  // namespace moesim::engine::serving_test
