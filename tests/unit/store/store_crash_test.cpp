// SPDX-License-Identifier: Apache-2.0
// A writer killed with SIGKILL — between begin_run and complete_run, in the middle of
// complete_run's inserts, or at the very moment of its COMMIT — never leaves a complete run, and
// the file stays intact.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <catch2/catch.hpp>

#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

/** Where the child stops and waits to be killed. */
enum class PausePoint {
  after_begin,    // begin_run committed, complete_run not called
  second_series,  // inside complete_run: metrics, datacenters, breakdown and one series inserted
  commit,         // inside complete_run: everything inserted, COMMIT about to happen
};

// State of the child process only (set after fork).
int g_pipe = -1;
PausePoint g_pause = PausePoint::after_begin;
bool g_armed = false;
int g_series_rows = 0;

[[noreturn]] void announce_and_wait() {
  const char k = 'K';
  if (write(g_pipe, &k, 1) != 1) _exit(4);
  for (;;) pause();
}

int on_commit(void*) {
  if (g_armed && g_pause == PausePoint::commit) announce_and_wait();
  return 0;  // let the commit proceed
}

void on_update(void*, int op, const char*, const char* table, sqlite3_int64) {
  if (g_armed && g_pause == PausePoint::second_series && op == SQLITE_INSERT && std::strcmp(table, "series") == 0 &&
      ++g_series_rows == 2) {
    announce_and_wait();
  }
}

// Runs for every connection the child opens, so the hooks sit on the Store's own connection.
int install_hooks(sqlite3* db, const char**, const struct sqlite3_api_routines*) {
  sqlite3_commit_hook(db, on_commit, nullptr);
  sqlite3_update_hook(db, on_update, nullptr);
  return SQLITE_OK;
}

[[noreturn]] void child(const std::string& path, PausePoint pause, const RunRecord& results) {
  g_pause = pause;
  try {
    sqlite3_auto_extension(reinterpret_cast<void (*)()>(install_hooks));
    Store store(path);
    const std::int64_t id = store.begin_run(t::sample_header("killed"));
    if (write(g_pipe, &id, sizeof id) != sizeof id) _exit(4);
    g_armed = true;
    if (pause == PausePoint::after_begin) announce_and_wait();
    store.complete_run(id, results);
    const char c = 'C';  // reaching here means the hook never fired
    (void)!write(g_pipe, &c, 1);
  } catch (const std::exception& e) {
    const char c = 'E';
    (void)!write(g_pipe, &c, 1);
    (void)!write(g_pipe, e.what(), std::strlen(e.what()));
  }
  _exit(3);
}

std::uintmax_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

}  // namespace

TEST_CASE("store::Store: a writer killed before its run completes leaves it running", "[store][crash]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t earlier = 0;
  const RunRecord earlier_results = t::sample_results();
  {
    Store store(path);  // created and migrated before the fork; closed so no connection crosses it
    earlier = store.begin_run(t::sample_header("earlier"));
    store.complete_run(earlier, earlier_results);
  }

  const PausePoint pause = GENERATE(PausePoint::after_begin, PausePoint::second_series, PausePoint::commit);
  INFO("pause point " << static_cast<int>(pause));
  // 200k points per series: more dirty pages than SQLite's default page cache holds, so part of
  // the open transaction spills into the WAL file before the kill.
  const RunRecord results = t::sample_results(50, 200000);

  t::Child writer([&](int fd) {
    g_pipe = fd;
    child(path, pause, results);
  });
  std::int64_t id = 0;
  char signal_byte = 0;
  const bool reached = writer.read_exactly(&id, sizeof id, 60000) && writer.read_exactly(&signal_byte, 1, 60000);
  // When the child ended on its own, collect what it said.
  const std::string child_message = reached && signal_byte != 'K' ? writer.read_all(5000) : std::string();

  // While the child sits inside its transaction, another connection sees the run still running
  // and none of its results.
  std::uintmax_t wal_bytes = 0;
  if (reached && signal_byte == 'K') {
    wal_bytes = file_size_or_zero(path + "-wal");
    Store reader(path, Store::Mode::read_only);
    const RunRecord seen = reader.get_run(id);
    CHECK(seen.status == RunStatus::running);
    CHECK(seen.metrics.empty());
    CHECK(seen.series.empty());
  }
  const int wstatus = writer.wait(SIGKILL);
  INFO("child says: " << signal_byte << child_message);
  REQUIRE(reached);
  REQUIRE(signal_byte == 'K');
  REQUIRE(WIFSIGNALED(wstatus));
  CHECK(WTERMSIG(wstatus) == SIGKILL);
  if (pause == PausePoint::commit) {
    // begin_run's committed rows take a few 4 KiB pages; megabytes of WAL mean uncommitted pages
    // of the open transaction were on disk when it died, and recovery had to ignore them.
    INFO("WAL bytes at the kill: " << wal_bytes);
    CHECK(wal_bytes > 1000000);
  }

  // Reopen after the crash: recovery, then the run as the next `moesim runs list` would see it.
  Store store(path);
  const RunRecord got = store.get_run(id);
  CHECK(got.status == RunStatus::running);
  CHECK(got.finished_at_utc.empty());
  CHECK(got.metrics.empty());
  CHECK(got.datacenters.empty());
  CHECK(got.breakdown.empty());
  CHECK(got.series.empty());
  CHECK(got.provenance.is_null());
  const auto runs = store.list_runs();
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].status == RunStatus::complete);
  CHECK(runs[1].id == id);
  CHECK(runs[1].status == RunStatus::running);
  CHECK_FALSE(runs[1].train_days.has_value());
  t::require_same_results(store.get_run(earlier), earlier_results);
  {
    t::RawDb raw(path);
    CHECK(raw.text("PRAGMA integrity_check") == "ok");
    CHECK(raw.text("PRAGMA foreign_key_check").empty());
    CHECK(raw.integer("SELECT count(*) FROM series_points") == 2 * 16);  // the earlier run's only
  }
  // The interrupted run can be recorded as failed, and the store takes new runs.
  store.fail_run(id, "interrupted");
  CHECK(store.get_run(id).status == RunStatus::failed);
  const std::int64_t next = store.begin_run(t::sample_header("next"));
  store.complete_run(next, t::sample_results());
  CHECK(store.get_run(next).status == RunStatus::complete);
}
