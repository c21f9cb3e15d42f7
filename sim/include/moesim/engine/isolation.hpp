// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace moesim::engine {

/** What a child process returned. */
struct IsolatedResult {
  nlohmann::json value;     ///< the function's result (when ok)
  double peak_rss_mb = 0.0; ///< the child's peak resident set size (getrusage)
  double wall_s = 0.0;
};

/** Runs `fn` in a forked child process and returns its JSON result. SimGrid keeps one engine per
 *  process, so each simulation gets a fresh process; a crash or abort in the child becomes a
 *  moesim::Error here instead of taking the caller down. An exception thrown by `fn` is re-thrown
 *  as moesim::Error with its message. If `interrupted` becomes true (e.g. from a SIGINT handler),
 *  the child is killed and moesim::Error("interrupted") is thrown. */
IsolatedResult run_isolated(const std::function<nlohmann::json()>& fn, const volatile bool* interrupted = nullptr);

}  // namespace moesim::engine
