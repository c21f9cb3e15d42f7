// SPDX-License-Identifier: Apache-2.0
// run_isolated: a function run in a forked child returns its JSON; an exception becomes moesim::Error
// with the same message; a child that dies by a signal or exits without a result is an error too, and
// the caller survives; the child dies with its parent.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "moesim/core/error.hpp"
#include "moesim/engine/isolation.hpp"

using moesim::engine::run_isolated;
using nlohmann::json;

TEST_CASE("engine::run_isolated: returns the child's JSON from another process", "[engine][isolation]") {
  const int parent = static_cast<int>(::getpid());
  const auto r = run_isolated([] { return json{{"pid", static_cast<int>(::getpid())}, {"x", 0.1 + 0.2}}; });
  CHECK(r.value["pid"].get<int>() != parent);
  CHECK(r.value["x"].get<double>() == 0.1 + 0.2);  // doubles survive the pipe bit for bit
  CHECK(r.wall_s >= 0.0);
  CHECK(r.peak_rss_mb > 0.0);
}

TEST_CASE("engine::run_isolated: failures in the child become moesim::Error", "[engine][isolation]") {
  SECTION("an exception's message is propagated") {
    CHECK_THROWS_AS(run_isolated([]() -> json { throw moesim::Error("scenario 'x': boom at step 3"); }), moesim::Error);
    CHECK_THROWS_WITH(run_isolated([]() -> json { throw std::runtime_error("scenario 'x': boom at step 3"); }),
                      "scenario 'x': boom at step 3");
  }
  SECTION("a child killed by a signal is reported with the signal") {
    CHECK_THROWS_WITH(run_isolated([]() -> json {
                        ::raise(SIGKILL);
                        return json();
                      }),
                      Catch::Contains("died with signal 9"));
    CHECK_THROWS_WITH(run_isolated([]() -> json {
                        ::signal(SIGABRT, SIG_DFL);  // not Catch2's handler, inherited through fork
                        std::abort();
                      }),
                      Catch::Contains("died with signal 6"));
  }
  SECTION("a child that exits without a result") {
    CHECK_THROWS_WITH(run_isolated([]() -> json { ::_exit(3); }), Catch::Contains("returned no result (exit status 3)"));
  }
  SECTION("the caller carries on afterwards") {
    CHECK(run_isolated([] { return json(42); }).value == 42);
  }
}

TEST_CASE("engine::run_isolated: the simulation process dies with a killed parent", "[engine][isolation]") {
  // This test process becomes a subreaper, so the simulation process, orphaned when its parent is killed, is
  // reparented here and can be waited for (under init it would linger as a zombie or keep running unseen).
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  int pids[2];
  REQUIRE(::pipe(pids) == 0);
  const pid_t parent = ::fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    // The stand-in for `moesim`: runs a simulation that would take a minute, and reports its process id.
    ::close(pids[0]);
    const int fd = pids[1];
    try {
      run_isolated([fd]() -> json {
        const int self = static_cast<int>(::getpid());
        (void)!::write(fd, &self, sizeof(self));
        ::sleep(60);
        return json();
      });
    } catch (...) {
    }
    ::_exit(0);
  }
  ::close(pids[1]);
  int child = 0;
  REQUIRE(::read(pids[0], &child, sizeof(child)) == static_cast<ssize_t>(sizeof(child)));
  ::close(pids[0]);
  REQUIRE(child > 0);
  ::kill(parent, SIGKILL);  // as `kill -9 moesim`
  int status = 0;
  REQUIRE(::waitpid(parent, &status, 0) == parent);

  // The orphan must be gone within seconds, killed by SIGKILL (it would otherwise sleep out its minute).
  bool reaped = false;
  for (int i = 0; i < 100 && !reaped; ++i) {
    reaped = ::waitpid(child, &status, WNOHANG) == child;
    if (!reaped) ::usleep(50000);
  }
  if (!reaped) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  REQUIRE(reaped);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}
