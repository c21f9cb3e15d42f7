// SPDX-License-Identifier: Apache-2.0
// Opening and writing failures: each one a moesim::Error that names the database and the cause.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

/** The message of the moesim::Error that opening `path` read-write throws ("" when it opens). */
std::string open_error(const std::string& path) {
  try {
    Store store(path);
  } catch (const moesim::Error& e) {
    return e.what();
  }
  return "";
}

constexpr uid_t kNobody = 65534;  // the conventional uid/gid of `nobody` on Debian (base-passwd)

}  // namespace

TEST_CASE("store::Store: a path that cannot hold a database is an error", "[store]") {
  t::TempDir dir;
  SECTION("the directory does not exist") {
    const std::string path = dir.file("missing/sub/runs.db");
    CHECK_THROWS_AS(Store(path), moesim::Error);
    CHECK_THROWS_WITH(Store(path), Contains("cannot open database: " + path) && Contains("does not exist"));
  }
  SECTION("the path is a directory") {
    CHECK_THROWS_WITH(Store(dir.path().string()), Contains("is a directory"));
  }
  SECTION("an empty path") { CHECK_THROWS_WITH(Store(""), Contains("path is empty")); }
  SECTION("read-only open of a file that does not exist") {
    const std::string path = dir.file("absent.db");
    CHECK_THROWS_WITH(Store(path, Store::Mode::read_only), Contains(path) && Contains("no such file"));
    CHECK_FALSE(std::filesystem::exists(path));  // and it was not created
  }
  SECTION("a negative busy timeout") {
    CHECK_THROWS_WITH(Store(dir.file("runs.db"), Store::Mode::read_write, -1.0), Contains("busy timeout"));
  }
}

TEST_CASE("store::Store: a file that is not a SQLite database is an error", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("notes.db");
  {
    std::ofstream out(path);
    for (int i = 0; i < 100; ++i) out << "name: gshard-600b\nseed: 1\n";
  }
  const auto mode = GENERATE(Store::Mode::read_write, Store::Mode::read_only);
  CHECK_THROWS_AS(Store(path, mode), moesim::Error);
  CHECK_THROWS_WITH(Store(path, mode), Contains("not a SQLite database: " + path));
  CHECK(t::read_text_file(path).rfind("name: gshard-600b\n", 0) == 0);  // untouched
}

TEST_CASE("store::Store: a store opened read-only refuses every write", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store store(path);
    id = store.begin_run(t::sample_header());
  }
  Store store(path, Store::Mode::read_only);
  CHECK(store.mode() == Store::Mode::read_only);
  const std::string expected = "database is read-only: " + path;
  CHECK_THROWS_WITH(store.begin_run(t::sample_header()), Contains(expected));
  CHECK_THROWS_WITH(store.complete_run(id, t::sample_results()), Contains(expected));
  CHECK_THROWS_WITH(store.fail_run(id, "x"), Contains(expected));
  CHECK_THROWS_WITH(store.create_comparison("x"), Contains(expected));
  CHECK(store.list_runs().size() == 1);
  CHECK(store.get_run(id).status == RunStatus::running);
}

TEST_CASE("store::Store: a read-only file opened read-write is an error", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  std::int64_t id = 0;
  {
    Store store(path);
    id = store.begin_run(t::sample_header());
  }
  REQUIRE(chmod(path.c_str(), 0444) == 0);
  const std::string expected = "database is read-only: " + path;

  if (geteuid() != 0) {
    CHECK_THAT(open_error(path), Contains(expected));
  } else {
    // Root writes through file permissions, so check as `nobody` in a child process.
    REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
    t::Child as_nobody([&](int fd) {
      std::string reply = "S";  // could not drop privileges
      if (setgid(kNobody) == 0 && setuid(kNobody) == 0) reply = "E" + open_error(path);
      _exit(t::send(fd, reply.data(), reply.size()) ? 0 : 1);
    });
    const std::string reply = as_nobody.read_all(30000);
    as_nobody.wait();
    if (reply == "S") {
      WARN("running as root and cannot switch to uid " << kNobody << ": read-only file check skipped");
    } else {
      REQUIRE(reply.size() > 1);
      CHECK_THAT(reply.substr(1), Contains(expected));
    }
  }
  // The read-only file still serves readers.
  Store reader(path, Store::Mode::read_only);
  CHECK(reader.get_run(id).status == RunStatus::running);
}
