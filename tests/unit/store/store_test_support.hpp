// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared helpers of the store tests: a temporary directory, a raw SQLite connection for looking
// behind the Store's back, a fully populated run, and bit-exact comparison of runs.
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/temp_dir.hpp"

namespace moesim::store::test {

/** A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction. */
class TempDir : public moesim::testing::TempDir {
 public:
  TempDir() : moesim::testing::TempDir("moesim-store") {}
};

/** A plain SQLite connection, independent of the Store (the tests' view of the file). */
class RawDb {
 public:
  explicit RawDb(const std::string& path, int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_close(db_);
      throw std::runtime_error("RawDb: cannot open " + path + ": " + message);
    }
    sqlite3_extended_result_codes(db_, 1);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  sqlite3* handle() const { return db_; }

  /** Runs SQL; returns SQLite's result code and keeps the message in last_error(). */
  int try_exec(const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    last_error_ = message != nullptr ? message : "";
    sqlite3_free(message);
    return rc;
  }
  void exec(const std::string& sql) {
    if (try_exec(sql) != SQLITE_OK) throw std::runtime_error("RawDb: " + last_error_ + " in: " + sql);
  }
  /** The first column of the first row as text ("" for NULL or no row). */
  std::string text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("RawDb: ") + sqlite3_errmsg(db_) + " in: " + sql);
    }
    std::string out;
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_finalize(stmt);
      throw std::runtime_error("RawDb: " + message + " in: " + sql);
    }
    sqlite3_finalize(stmt);
    return out;
  }
  std::int64_t integer(const std::string& sql) { return std::stoll(text(sql)); }
  const std::string& last_error() const { return last_error_; }

 private:
  sqlite3* db_ = nullptr;
  std::string last_error_;
};

/** A forked child process with a pipe from it to the parent. The child runs `body(write_fd)`
 *  and exits (never returning into the test framework); the parent reads what it sends. A child
 *  still running when this object dies is killed and reaped. */
class Child {
 public:
  template <class Body>
  explicit Child(Body body) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      close(fds[0]);
      int code = 0;
      try {
        body(fds[1]);
      } catch (...) {
        code = 2;
      }
      _exit(code);
    }
    close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /** Reads exactly `n` bytes, waiting at most `timeout_ms` for each chunk. */
  bool read_exactly(void* buffer, std::size_t n, int timeout_ms) {
    auto* out = static_cast<char*>(buffer);
    std::size_t got = 0;
    while (got < n) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return false;
      const ssize_t r = read(fd_, out + got, n - got);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }
  /** Everything the child sends until it closes the pipe (or `timeout_ms` passes without data). */
  std::string read_all(int timeout_ms) {
    std::string out;
    char c = 0;
    while (read_exactly(&c, 1, timeout_ms)) out += c;
    return out;
  }
  /** Sends `signal` (0: none) and reaps the child; returns its wait status. */
  int wait(int signal = 0) {
    if (signal != 0) kill(pid_, signal);
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) throw std::runtime_error("waitpid failed");
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

/** Writes all of `data` to `fd` (in a child: its result for the parent). */
inline bool send(int fd, const void* data, std::size_t n) {
  return write(fd, data, n) == static_cast<ssize_t>(n);
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/** The header of a run as the engine would begin it. */
inline RunRecord sample_header(const std::string& scenario_name = "gshard-600b") {
  RunRecord r;
  r.scenario_name = scenario_name;
  r.scenario_file = "scenarios/examples/" + scenario_name + ".yaml";
  r.scenario = nlohmann::json{
      {"name", scenario_name},
      {"seed", 1},
      {"model", {{"type", "moe_transformer"}, {"layers", 36}, {"experts", 2048}, {"capacity_factor", 2.0}}},
      {"training", {{"tokens", 1.0e12}, {"batch_tokens", 4194304}}},
      {"placement", nlohmann::json::array({{{"datacenter", "google_us_east_nc_2020"}, {"share", 1.0}}})},
  };
  r.seed = 1;
  r.moesim_version = "0.1.0";
  r.git_hash = "0123456789ab";
  return r;
}

/** Results of a run: `metrics` metrics, two datacenters (one with the optional fields unset), a
 *  breakdown and two series of `points` points. Values are arbitrary but distinct. */
inline RunRecord sample_results(int metrics = 4, int points = 16) {
  RunRecord r;
  r.metrics.push_back({metric_names::kTrainTime_s, 4.0 * 86400.0, "s"});
  for (int i = 1; i < metrics; ++i) r.metrics.push_back({"metric_" + std::to_string(i), 0.1 * i, "J"});
  DatacenterResult a;
  a.name = "google_us_east_nc_2020";
  a.display_name = "Google, North Carolina (2020)";
  a.country_iso_code = "US";
  a.region = "us-east1";
  a.share = 0.75;
  a.chips = 768;
  a.pue = 1.1;
  a.gross_kgco2e_per_kwh = 0.429;
  a.net_kgco2e_per_kwh = 0.33;
  a.cfe_fraction = 0.23;
  a.it_energy_j = 7.2e9;
  a.network_energy_j = 1.0e8;
  a.facility_energy_j = (7.2e9 + 1.0e8) * 1.1;
  a.co2e_gross_kg = 957.0;
  a.co2e_net_kg = 736.0;
  a.embodied_co2e_kg = 12.5;
  DatacenterResult b;
  b.name = "example_eu";
  b.display_name = "Example EU";
  b.country_iso_code = "FI";
  b.region = "europe-north1";
  b.share = 0.25;
  b.chips = 256;
  b.pue = 1.09;
  b.gross_kgco2e_per_kwh = 0.08;
  b.it_energy_j = 2.4e9;
  b.network_energy_j = 3.0e7;
  b.facility_energy_j = (2.4e9 + 3.0e7) * 1.09;
  b.co2e_gross_kg = 58.0;
  b.co2e_net_kg = 58.0;
  r.datacenters = {a, b};
  r.breakdown = {{"compute.expert_ffn", 0.8, 0.7}, {"comm.all_to_all", 0.45, 0.4}, {"compute.attention", 0.1, 0.1}};
  for (const char* name : {"power_total", "power_network"}) {
    Series s;
    s.name = name;
    s.x_unit = "s";
    s.y_unit = "W";
    for (int k = 0; k < points; ++k) {
      s.x.push_back(0.001 * k);
      s.y.push_back(250000.0 + 37.0 * std::sin(0.1 * k));
    }
    r.series.push_back(s);
  }
  r.provenance = nlohmann::json{{"perf", {{"tpu_v3", "roofline"}}}, {"grid", {"source", "Google CFE 2020"}}};
  return r;
}

/** Bit-exact double equality (distinguishes -0.0 from 0.0; NaN never stored). */
inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

inline bool same_bits(const std::optional<double>& a, const std::optional<double>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || same_bits(*a, *b);
}

/** Checks that `got` holds the results `want` exactly (metrics, datacenters, breakdown, series,
 *  provenance). */
inline void require_same_results(const RunRecord& got, const RunRecord& want) {
  REQUIRE(got.metrics.size() == want.metrics.size());
  for (std::size_t i = 0; i < want.metrics.size(); ++i) {
    INFO("metric " << i << " " << want.metrics[i].name);
    CHECK(got.metrics[i].name == want.metrics[i].name);
    CHECK(got.metrics[i].unit == want.metrics[i].unit);
    CHECK(same_bits(got.metrics[i].value, want.metrics[i].value));
  }
  REQUIRE(got.datacenters.size() == want.datacenters.size());
  for (std::size_t i = 0; i < want.datacenters.size(); ++i) {
    const DatacenterResult& g = got.datacenters[i];
    const DatacenterResult& w = want.datacenters[i];
    INFO("datacenter " << w.name);
    CHECK(g.name == w.name);
    CHECK(g.display_name == w.display_name);
    CHECK(g.country_iso_code == w.country_iso_code);
    CHECK(g.region == w.region);
    CHECK(same_bits(g.share, w.share));
    CHECK(g.chips == w.chips);
    CHECK(same_bits(g.pue, w.pue));
    CHECK(same_bits(g.gross_kgco2e_per_kwh, w.gross_kgco2e_per_kwh));
    CHECK(same_bits(g.net_kgco2e_per_kwh, w.net_kgco2e_per_kwh));
    CHECK(same_bits(g.cfe_fraction, w.cfe_fraction));
    CHECK(same_bits(g.it_energy_j, w.it_energy_j));
    CHECK(same_bits(g.network_energy_j, w.network_energy_j));
    CHECK(same_bits(g.facility_energy_j, w.facility_energy_j));
    CHECK(same_bits(g.co2e_gross_kg, w.co2e_gross_kg));
    CHECK(same_bits(g.co2e_net_kg, w.co2e_net_kg));
    CHECK(same_bits(g.embodied_co2e_kg, w.embodied_co2e_kg));
  }
  REQUIRE(got.breakdown.size() == want.breakdown.size());
  for (std::size_t i = 0; i < want.breakdown.size(); ++i) {
    CHECK(got.breakdown[i].phase_kind == want.breakdown[i].phase_kind);
    CHECK(same_bits(got.breakdown[i].time_s, want.breakdown[i].time_s));
    CHECK(same_bits(got.breakdown[i].critical_path_s, want.breakdown[i].critical_path_s));
  }
  REQUIRE(got.series.size() == want.series.size());
  for (std::size_t i = 0; i < want.series.size(); ++i) {
    const Series& g = got.series[i];
    const Series& w = want.series[i];
    INFO("series " << w.name);
    CHECK(g.name == w.name);
    CHECK(g.x_unit == w.x_unit);
    CHECK(g.y_unit == w.y_unit);
    REQUIRE(g.x.size() == w.x.size());
    REQUIRE(g.y.size() == w.y.size());
    std::size_t mismatches = 0;
    for (std::size_t k = 0; k < w.x.size(); ++k) {
      if (!same_bits(g.x[k], w.x[k]) || !same_bits(g.y[k], w.y[k])) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
  CHECK(got.provenance == want.provenance);
}

}  // namespace moesim::store::test
