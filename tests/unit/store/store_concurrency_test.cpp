// SPDX-License-Identifier: Apache-2.0
// Readers in other threads and processes while a writer completes runs; a writer that cannot get
// the lock within the busy timeout.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::RunSummary;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

constexpr int kRuns = 40;
constexpr int kMetricsPerRun = 300;
constexpr int kPointsPerSeries = 2000;

/** What a reader saw. Plain data, so a forked reader can send it through a pipe. */
struct ReaderStats {
  int iterations = 0;
  int intermediate_snapshots = 0;  // snapshots with some runs complete and some not
  int complete_runs_checked = 0;
  int violations = 0;
  char first_violation[256] = {};
};

void violation(ReaderStats& s, const std::string& what) {
  if (s.violations++ == 0) std::strncpy(s.first_violation, what.c_str(), sizeof s.first_violation - 1);
}

/** Reads list_runs and every run it lists until all kRuns are complete (or a deadline passes),
 *  checking that a complete run always has all its results and a running one none. */
ReaderStats read_until_done(const std::string& path) {
  ReaderStats s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  try {
    Store store(path, Store::Mode::read_only);
    while (std::chrono::steady_clock::now() < deadline) {
      ++s.iterations;
      const std::vector<RunSummary> runs = store.list_runs();
      int complete = 0;
      for (const RunSummary& summary : runs) {
        if (summary.status == RunStatus::complete) {
          ++complete;
          if (!summary.train_days || !summary.facility_energy_mwh) violation(s, "complete run without totals");
        } else if (summary.train_days || summary.facility_energy_mwh) {
          violation(s, "running run with totals");
        }
        const RunRecord r = store.get_run(summary.id);
        if (r.status == RunStatus::complete) {
          ++s.complete_runs_checked;
          if (r.metrics.size() != kMetricsPerRun || r.datacenters.size() != 2 || r.series.size() != 2 ||
              r.series[1].y.size() != kPointsPerSeries || r.provenance.is_null()) {
            violation(s, "complete run " + std::to_string(r.id) + " with " + std::to_string(r.metrics.size()) +
                             " metrics");
          }
        } else if (!r.metrics.empty() || !r.series.empty() || !r.datacenters.empty()) {
          violation(s, "running run " + std::to_string(r.id) + " with results");
        }
      }
      if (complete > 0 && complete < kRuns) ++s.intermediate_snapshots;
      if (complete == kRuns) break;
    }
  } catch (const std::exception& e) {
    violation(s, std::string("reader threw: ") + e.what());
  }
  return s;
}

void write_runs(const std::string& path) {
  Store store(path);
  const RunRecord results = t::sample_results(kMetricsPerRun, kPointsPerSeries);
  for (int i = 0; i < kRuns; ++i) {
    const std::int64_t id = store.begin_run(t::sample_header("run" + std::to_string(i)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let readers see it running
    store.complete_run(id, results);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void check(const ReaderStats& s) {
  INFO("reader: " << s.iterations << " snapshots, " << s.intermediate_snapshots << " mid-way, "
                  << s.complete_runs_checked << " complete runs checked; first violation: " << s.first_violation);
  CHECK(s.violations == 0);
  CHECK(s.iterations >= 2);
  CHECK(s.intermediate_snapshots >= 1);
  CHECK(s.complete_runs_checked >= kRuns);
}

}  // namespace

TEST_CASE("store::Store: readers never see a half-written run", "[store][concurrency]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  { Store created(path); }

  SECTION("a reader thread with its own connection") {
    ReaderStats stats;
    std::thread reader([&] { stats = read_until_done(path); });
    write_runs(path);
    reader.join();
    check(stats);
  }

  SECTION("a reader process") {
    t::Child reader([&](int fd) {
      const ReaderStats stats = read_until_done(path);
      _exit(t::send(fd, &stats, sizeof stats) ? 0 : 1);
    });
    write_runs(path);
    ReaderStats stats;
    REQUIRE(reader.read_exactly(&stats, sizeof stats, 120000));
    const int wstatus = reader.wait();
    CHECK(WIFEXITED(wstatus));
    check(stats);
  }

  t::RawDb raw(path);
  CHECK(raw.text("PRAGMA integrity_check") == "ok");
  CHECK(raw.integer("SELECT count(*) FROM runs WHERE status = 'complete'") == kRuns);
}

TEST_CASE("store::Store: a write blocked beyond the busy timeout fails with a clear error", "[store][concurrency]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store created(path);
    id = created.begin_run(t::sample_header("pending"));
  }
  // Another connection holds the write lock with an open transaction.
  t::RawDb holder(path);
  holder.exec("BEGIN IMMEDIATE; INSERT INTO comparisons (scenario_name, created_at_utc) VALUES ('held', 'now')");

  Store store(path, Store::Mode::read_write, 0.2);  // opening a current store takes no write lock
  CHECK(store.list_runs().size() == 1);              // and reading is never blocked (WAL)

  const auto start = std::chrono::steady_clock::now();
  SECTION("begin_run") {
    CHECK_THROWS_WITH(store.begin_run(t::sample_header()),
                      Contains("database is locked") && Contains(path) && Contains("busy timeout of 0.2 s"));
  }
  SECTION("complete_run") {
    CHECK_THROWS_WITH(store.complete_run(id, t::sample_results()), Contains("database is locked"));
  }
  SECTION("fail_run") { CHECK_THROWS_WITH(store.fail_run(id, "x"), Contains("database is locked")); }
  const double waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(waited_s >= 0.15);  // it did wait for the lock (0.2 s, minus timer granularity)
  CHECK(waited_s < 4.0);

  CHECK(store.get_run(id).status == RunStatus::running);
  holder.exec("COMMIT");
  store.complete_run(id, t::sample_results());
  CHECK(store.get_run(id).status == RunStatus::complete);
  CHECK(store.begin_run(t::sample_header()) == id + 1);
}

TEST_CASE("store::Store: a new store cannot be created while another connection locks the file",
          "[store][concurrency]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  t::RawDb holder(path);
  holder.exec("BEGIN EXCLUSIVE; CREATE TABLE placeholder (x INTEGER)");
  CHECK_THROWS_WITH(Store(path, Store::Mode::read_write, 0.1), Contains("database is locked") && Contains(path));
  holder.exec("ROLLBACK");
  Store store(path, Store::Mode::read_write, 0.1);
  CHECK(store.schema_version() == Store::kSchemaVersion);
}
