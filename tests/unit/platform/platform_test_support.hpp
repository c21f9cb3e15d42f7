// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers for the platform tests. SimGrid keeps one engine per process, so every platform is built in
// a forked child (in_child) that returns what the test asserts on as JSON; the test cases therefore
// pass whether ctest runs them one per process or the binary runs them all in one.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>
#include <simgrid/s4u.hpp>

#include "../system/system_test_support.hpp"
#include "moesim/platform/platform.hpp"

namespace moesim::platform::test {

/** Runs `fn` in a forked child and returns its JSON; an exception in the child comes back as
 *  std::runtime_error with its message, a child killed by a signal as std::runtime_error too. */
inline nlohmann::json in_child(const std::function<nlohmann::json()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    // Catch2's fatal-signal handlers would report a crash here as a test failure of the child; let the
    // signal kill the child instead so that the parent sees it.
    for (int sig : {SIGABRT, SIGSEGV, SIGFPE, SIGILL, SIGBUS, SIGTERM}) ::signal(sig, SIG_DFL);
    nlohmann::json out;
    try {
      out = {{"ok", true}, {"value", fn()}};
    } catch (const std::exception& e) {
      out = {{"ok", false}, {"error", e.what()}};
    }
    const std::string s = out.dump();
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::write(fds[1], s.data() + off, s.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string data;
  char buf[1 << 15];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) throw std::runtime_error(std::string("child died with signal ") + strsignal(WTERMSIG(status)));
  const nlohmann::json out = nlohmann::json::parse(data);
  if (!out.at("ok").get<bool>()) throw std::runtime_error(out.at("error").get<std::string>());
  return out.at("value");
}

/** A SimGrid engine for the child (quiet logs), with the engine's host model (ptask_L07) unless `default_models`. */
inline void start_engine(bool default_models = false) {
  static int argc = default_models ? 2 : 3;
  static char arg0[] = "moesim_tests_platform";
  static char arg1[] = "--log=root.thres:critical";
  static char arg2[] = "--cfg=host/model:ptask_L07";
  static char* argv[] = {arg0, arg1, arg2, nullptr};
  static sg4::Engine* engine = new sg4::Engine(&argc, argv);  // lives until the child exits
  (void)engine;
}

/** start_engine(), then the platform of `f`. */
inline std::unique_ptr<Platform> build(const system::test::Fixture& f, int pacers = 2) {
  start_engine();
  return Platform::build(f.topo, f.accel, power_states(f.accel), pacers);
}

/** A route as JSON: link names, their classes, and the route latency. */
inline nlohmann::json route(sg4::Host* a, sg4::Host* b) {
  std::vector<sg4::Link*> links;
  double lat = 0.0;
  a->route_to(b, links, &lat);
  nlohmann::json names = nlohmann::json::array(), classes = nlohmann::json::array(), bws = nlohmann::json::array();
  for (const sg4::Link* l : links) {
    names.push_back(l->get_name());
    classes.push_back(system::to_string(Platform::link_class(l)));
    bws.push_back(l->get_bandwidth());
  }
  return {{"links", names}, {"classes", classes}, {"bandwidths", bws}, {"latency_s", lat}};
}

}  // namespace moesim::platform::test
