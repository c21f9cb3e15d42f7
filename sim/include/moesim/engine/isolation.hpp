// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <functional>
#include <string>
#include <vector>

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

/** True in the child of run_isolated (or IsolatedPool) while it runs `fn`: the process ends with _exit once its result
 *  is written, so what `fn` builds need not be torn down (simulate_job leaves SimGrid's engine to the exit). */
bool in_isolated_child();

/** Several isolated children at once (e.g. the alternatives of a comparison on 2 cores). */
class IsolatedPool {
 public:
  IsolatedPool() = default;
  ~IsolatedPool();  ///< kills children still running
  IsolatedPool(const IsolatedPool&) = delete;
  IsolatedPool& operator=(const IsolatedPool&) = delete;

  /** Forks a child running `fn`; returns its ticket. */
  int start(const std::function<nlohmann::json()>& fn);
  std::size_t running() const { return children_.size(); }
  /** Waits for any child; returns its ticket and its result, or its error message in `error`. */
  struct Done {
    int ticket = -1;
    IsolatedResult result;
    std::string error;  ///< empty when ok
  };
  Done wait_any(const volatile bool* interrupted = nullptr);

 private:
  struct Child {
    int ticket;
    int pid;
    int fd;
    std::string data;
    double start_s;
  };
  std::vector<Child> children_;
  int next_ticket_ = 0;
};

}  // namespace moesim::engine
