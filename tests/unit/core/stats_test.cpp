// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include "moesim/core/stats.hpp"

TEST_CASE("core::median: the middle value, the mean of the two middle ones, 0 when empty", "[core]") {
  CHECK(moesim::median({3.0, 1.0, 2.0}) == 2.0);
  CHECK(moesim::median({4.0, 1.0, 3.0, 2.0}) == 2.5);
  CHECK(moesim::median({7.5}) == 7.5);
  CHECK(moesim::median({}) == 0.0);
}
