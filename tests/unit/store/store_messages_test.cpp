// SPDX-License-Identifier: Apache-2.0
// What the store says and leaves behind in the situations a user hit (issue 10, items 9, 20, 23): reading leaves no
// -wal/-shm files, a store on a read-only mount can be read, a full disk says "disk full" and where, a damaged
// user_version is named, a directory given as the store is named.
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::RunStatus;
using moesim::store::Store;
namespace fs = std::filesystem;
namespace t = moesim::store::test;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const moesim::Error& e) {
    return e.what();
  }
  return "";
}

/** In a child: a private mount namespace with a tmpfs of `size` at `dir` (needs CAP_SYS_ADMIN, as root in most
 *  containers). False when the system does not allow it. */
bool mount_private_tmpfs(const std::string& dir, const std::string& size) {
  if (unshare(CLONE_NEWNS) != 0) return false;
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  return mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
}

}  // namespace

TEST_CASE("store::Store: reading a store leaves no -wal or -shm file behind", "[store][messages]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store store(path);
    id = store.begin_run(t::sample_header());
  }
  REQUIRE_FALSE(fs::exists(path + "-wal"));  // the writer's close merged and removed them
  {
    const Store reader(path, Store::Mode::read_only);
    CHECK(reader.list_runs().size() == 1);
    CHECK(reader.get_run(id).status == RunStatus::running);
  }
  CHECK_FALSE(fs::exists(path + "-wal"));
  CHECK_FALSE(fs::exists(path + "-shm"));
  SECTION("and a read-only store still refuses writes, in plain words") {
    Store reader(path, Store::Mode::read_only);
    const std::string msg = error_of([&] { reader.begin_run(t::sample_header()); });
    CHECK_THAT(msg, Contains("database is read-only: " + path) && Contains("opened the store for reading only"));
    CHECK_THAT(msg, !Contains("Mode::"));
  }
}

TEST_CASE("store::Store: a directory given as the store is named as such", "[store][messages]") {
  t::TempDir dir;
  for (const auto mode : {Store::Mode::read_write, Store::Mode::read_only}) {
    const std::string msg = error_of([&] { Store s(dir.path().string(), mode); });
    CHECK_THAT(msg, Contains("is a directory"));
    CHECK_THAT(msg, !Contains("disk I/O error"));
  }
}

TEST_CASE("store::Store: a user_version no moesim wrote is named, not migrated over", "[store][messages]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  { Store store(path); }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA user_version = -1", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  for (const auto mode : {Store::Mode::read_write, Store::Mode::read_only}) {
    const std::string msg = error_of([&] { Store s(path, mode); });
    CHECK_THAT(msg, Contains("user_version is -1, not a moesim schema version"));
    CHECK_THAT(msg, !Contains("already exists"));
  }
}

TEST_CASE("store::Store: a store on a read-only mount can be listed and read", "[store][messages]") {
  t::TempDir dir;
  t::Child child([&](int fd) {
    std::string reply = "S";  // no private mounts here: skipped
    if (mount_private_tmpfs(dir.path().string(), "4m")) {
      const std::string path = dir.file("runs.db");
      std::int64_t id = 0;
      {
        Store store(path);
        id = store.begin_run(t::sample_header());
      }
      if (mount("tmpfs", dir.path().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
        reply = "S";
      } else {
        reply = "E" + error_of([&] {
                  const Store reader(path, Store::Mode::read_only);
                  if (reader.list_runs().size() != 1 || reader.get_run(id).status != RunStatus::running)
                    throw moesim::Error("wrong content");
                });
      }
    }
    _exit(t::send(fd, reply.data(), reply.size()) ? 0 : 1);
  });
  const std::string reply = child.read_all(30000);
  child.wait();
  if (reply == "S") {
    WARN("cannot mount a private tmpfs here: read-only mount check skipped");
  } else {
    REQUIRE_FALSE(reply.empty());
    CHECK(reply.substr(1) == "");  // opened, listed and read without an error
  }
}

TEST_CASE("store::Store: a full disk says \"disk full\" and where, and keeps what was committed", "[store][messages]") {
  t::TempDir dir;
  t::Child child([&](int fd) {
    std::string reply = "S";
    if (mount_private_tmpfs(dir.path().string(), "256k")) {
      const std::string path = dir.file("runs.db");
      std::string message;
      std::int64_t committed = 0;
      try {
        Store store(path);
        for (int k = 0; k < 100000; ++k) {
          const std::int64_t id = store.begin_run(t::sample_header());
          store.complete_run(id, t::sample_results(64, 256));
          ++committed;
        }
      } catch (const moesim::Error& e) {
        message = e.what();
      }
      std::int64_t complete = -1;
      try {
        const Store reader(path, Store::Mode::read_only);
        complete = 0;
        for (const auto& r : reader.list_runs()) complete += r.status == RunStatus::complete ? 1 : 0;
      } catch (const moesim::Error& e) {
        message += " | reading back: " + std::string(e.what());
      }
      reply = "E" + std::to_string(committed) + "|" + std::to_string(complete) + "|" + message;
    }
    _exit(t::send(fd, reply.data(), reply.size()) ? 0 : 1);
  });
  const std::string reply = child.read_all(60000);
  child.wait();
  if (reply == "S") {
    WARN("cannot mount a private tmpfs here: full-disk check skipped");
    return;
  }
  REQUIRE(reply.size() > 1);
  const std::string body = reply.substr(1);
  const auto bar1 = body.find('|'), bar2 = body.find('|', bar1 + 1);
  const std::string committed = body.substr(0, bar1), complete = body.substr(bar1 + 1, bar2 - bar1 - 1);
  const std::string message = body.substr(bar2 + 1);
  INFO(message);
  CHECK_THAT(message, Contains("disk full: " + dir.file("runs.db")));
  CHECK_THAT(message, Contains("no space left on the filesystem holding " + dir.path().string()));
  CHECK_THAT(message, !Contains("reading back"));
  CHECK(committed == complete);  // every committed run reads back complete; the failed one is not half-written
}

TEST_CASE("store::Store::begin_comparison: the comparison and all its runs, or nothing", "[store][messages]") {
  // Issue 10, item 21: a comparison killed while its runs were being begun showed "3 alternatives" of 7.
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  Store store(path);
  std::vector<moesim::store::RunRecord> headers;
  for (const char* label : {"base", "finland", "taiwan"}) {
    auto h = t::sample_header();
    h.alternative_label = label;
    headers.push_back(h);
  }
  const auto [cmp, ids] = store.begin_comparison("gshard", headers);
  REQUIRE(ids.size() == 3);
  const auto c = store.get_comparison(cmp);
  CHECK(c.run_ids == ids);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const auto r = store.get_run(ids[k]);
    CHECK(r.status == RunStatus::running);
    CHECK(r.comparison_id == cmp);
    CHECK(r.alternative_label == headers[k].alternative_label);
  }
  SECTION("a failure on the last run leaves neither the comparison nor its first runs") {
    auto bad = headers;
    bad.back().kind = "bogus";  // refused by the runs.kind CHECK constraint, after two runs were inserted
    CHECK_THROWS_AS(store.begin_comparison("half", bad), moesim::Error);
    CHECK_FALSE(store.has_comparison(cmp + 1));
    CHECK(store.list_runs().size() == 3);  // only the first comparison's
  }
}
