// SPDX-License-Identifier: Apache-2.0
#pragma once
// The error a test expects from bad input: the moesim::InputError that `f` throws (any other outcome fails the test).
#include <catch2/catch.hpp>

#include <exception>
#include <stdexcept>

#include "moesim/core/error.hpp"

namespace moesim::testing {

/** Runs `f` expecting a moesim::InputError and returns it; another exception, or none, fails the test. */
template <typename F>
InputError expect_input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e;
  } catch (const std::exception& e) {
    FAIL("expected moesim::InputError, got another exception: " << e.what());
  }
  FAIL("expected moesim::InputError, nothing was thrown");
  throw std::logic_error("unreachable");
}

}  // namespace moesim::testing
