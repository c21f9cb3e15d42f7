// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the energy tests: hand-built jobs, scenarios and datacenters (no simulation),
// temporary CSV files, and catching an InputError to inspect it.

#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "moesim/catalog/datacenter.hpp"
#include "moesim/core/error.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim_test/input_error.hpp"

namespace moesim::energy::test {

/** tests/data/energy/<rel>. */
inline std::string data(const std::string& rel) { return std::string(MOESIM_TEST_DATA) + "/energy/" + rel; }

/** A directory of this test process under the system temp dir (ctest runs every TEST_CASE in its
 *  own process, so the pid keeps concurrent tests apart), removed when the process exits. */
inline std::filesystem::path temp_dir() {
  struct Owned {
    std::filesystem::path path;
    ~Owned() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);  // best effort: a leftover temp dir is harmless
    }
  };
  static const Owned dir{[] {
    auto d = std::filesystem::temp_directory_path() / ("moesim_energy_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }()};
  return dir.path;
}

/** Writes `text` to temp_dir()/name and returns the path. */
inline std::string write_file(const std::string& name, const std::string& text) {
  const auto path = temp_dir() / name;
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return path.string();
}

using moesim::testing::expect_input_error;

/** Runs `f` expecting a moesim::Error that is NOT an InputError, and returns its message. */
template <typename F>
std::string expect_plain_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    FAIL("expected a plain moesim::Error, got InputError: " << e.what());
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected moesim::Error");
  throw std::logic_error("unreachable");
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/** A datacenter with the figures the energy layer reads. */
inline catalog::DatacenterSpec site(const std::string& name, double pue, double gross_kgco2e_per_kwh,
                                    std::optional<double> net_kgco2e_per_kwh = std::nullopt,
                                    const std::string& hourly_csv = "") {
  catalog::DatacenterSpec dc;
  dc.name = name;
  dc.pue = pue;
  dc.gross_kgco2e_per_kwh = gross_kgco2e_per_kwh;
  dc.net_kgco2e_per_kwh = net_kgco2e_per_kwh;
  dc.hourly_intensity_csv = hourly_csv;
  return dc;
}

/** One site's per-step figures: `chips` chips drawing `chip_power_w` each for the whole step. */
inline engine::SiteStepFigures site_figures(int chips, double chip_power_w, double step_time_s, double share = 1.0) {
  engine::SiteStepFigures f;
  f.chips = chips;
  f.share = share;
  f.chip_energy_per_step_j = chips * chip_power_w * step_time_s;
  return f;
}

/** A job of `steps` steps of `step_time_s` over the given sites (built by hand, no simulation). */
inline engine::JobResult job(double step_time_s, double steps, std::vector<engine::SiteStepFigures> sites) {
  engine::JobResult j;
  j.step_time_s = step_time_s;
  j.steps = steps;
  j.train_time_s = step_time_s * steps;
  for (const auto& s : sites) j.chips += s.chips;
  j.sites = std::move(sites);
  return j;
}

/** A scenario placing the job in the given inline datacenters (shares from the job's sites). */
inline scenario::Scenario scenario_at(const std::vector<catalog::DatacenterSpec>& sites,
                                      const std::string& start_time_utc = "", const std::string& source_file = "") {
  scenario::Scenario s;
  s.name = "energy-test";
  s.source_file = source_file;
  s.energy.start_time_utc = start_time_utc;
  for (const auto& dc : sites) {
    scenario::PlacementEntry p;
    p.datacenter = dc.name;
    p.inline_spec = dc;
    p.share = 1.0 / static_cast<double>(sites.size());
    s.placement.push_back(std::move(p));
  }
  return s;
}

/** A network table where every link class is already inside the chip figure (adds nothing). */
inline NetworkEnergyTable network_inside_chips() {
  NetworkEnergyTable t;
  for (int c = 0; c < system::kLinkClassCount; ++c) {
    LinkClassEnergy e;
    e.included_in = IncludedIn::chip;
    t.set(static_cast<system::LinkClass>(c), e);
  }
  return t;
}

}  // namespace moesim::energy::test
