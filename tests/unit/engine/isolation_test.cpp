// SPDX-License-Identifier: Apache-2.0
// run_isolated: a function run in a forked child returns its JSON; an exception becomes moesim::Error
// with the same message; a child that dies by a signal or exits without a result is an error too, and
// the caller survives.

#include <catch2/catch.hpp>

#include <signal.h>
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
