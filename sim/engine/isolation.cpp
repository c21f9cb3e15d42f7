// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/isolation.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <string>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::engine {

namespace {
void write_all(int fd, const std::string& s) {
  const char* p = s.data();
  std::size_t left = s.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}
}  // namespace

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

bool g_isolated_child = false;

/** The child's side: run fn, write {"ok":..., "value"|"error"} to fd, exit without unwinding the parent's state. */
[[noreturn]] void child_main(int fd, const std::function<nlohmann::json()>& fn) {
  g_isolated_child = true;
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  nlohmann::json out;
  try {
    out = {{"ok", true}, {"value", fn()}};
  } catch (const std::bad_alloc&) {
    // The step graph (or the run's series) needs more memory than the system grants. Say so, with the size reached,
    // instead of the bare "std::bad_alloc".
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    out = {{"ok", false},
           {"error", fmt::format("the simulation ran out of memory ({:.0f} MB resident when an allocation failed): the step is "
                                 "too large for this machine; simulate fewer micro-batches per step (parallelism.microbatches "
                                 "with a larger micro-batch), fewer steps (training.steps_simulated) or fewer chips",
                                 static_cast<double>(ru.ru_maxrss) / 1024.0)}};
  } catch (const std::exception& e) {
    out = {{"ok", false}, {"error", e.what()}};
  } catch (...) {
    out = {{"ok", false}, {"error", "unknown error in the simulation process"}};
  }
  write_all(fd, out.dump());
  ::close(fd);
  ::_exit(0);
}

/** Reaps `pid` and turns its output into a result (throws moesim::Error on failure). */
IsolatedResult finish_child(int pid, const std::string& data, double start_s) {
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  IsolatedResult res;
  res.wall_s = now_s() - start_s;
  res.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports kilobytes
  if (WIFSIGNALED(status))
    throw Error(fmt::format("the simulation process died with signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status))));
  nlohmann::json out;
  try {
    out = nlohmann::json::parse(data);
  } catch (const std::exception&) {
    throw Error(fmt::format("the simulation process returned no result (exit status {})", WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  if (!out.value("ok", false)) throw Error(out.value("error", std::string("simulation failed")));
  res.value = std::move(out["value"]);
  return res;
}

std::pair<int, int> fork_child(const std::function<nlohmann::json()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(fmt::format("cannot create a pipe for the simulation process: {}", std::strerror(errno)));
  // Output buffered in the parent would otherwise be written twice if the child flushes it.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(fmt::format("cannot start the simulation process: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    // The child dies with its parent: a killed `moesim` must not leave a simulation running under init.
    // PR_SET_PDEATHSIG fires when the forking thread exits; the getppid() check covers a parent that died
    // between fork() and prctl() (the child was then already reparented, and no signal would come).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::close(fds[0]);
    child_main(fds[1], fn);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

}  // namespace

bool in_isolated_child() { return g_isolated_child; }

IsolatedResult run_isolated(const std::function<nlohmann::json()>& fn, const volatile bool* interrupted) {
  IsolatedPool pool;
  pool.start(fn);
  IsolatedPool::Done d = pool.wait_any(interrupted);
  if (!d.error.empty()) throw Error(d.error);
  return std::move(d.result);
}

IsolatedPool::~IsolatedPool() {
  for (const Child& c : children_) {
    ::kill(c.pid, SIGKILL);
    ::close(c.fd);
    int status = 0;
    ::waitpid(c.pid, &status, 0);
  }
}

int IsolatedPool::start(const std::function<nlohmann::json()>& fn) {
  const double t0 = now_s();
  auto [pid, fd] = fork_child(fn);
  children_.push_back({next_ticket_, pid, fd, {}, t0});
  return next_ticket_++;
}

IsolatedPool::Done IsolatedPool::wait_any(const volatile bool* interrupted) {
  if (children_.empty()) throw Error("internal error: wait_any with no simulation process running");
  char buf[1 << 16];
  while (true) {
    if (interrupted != nullptr && *interrupted) {
      for (const Child& c : children_) ::kill(c.pid, SIGKILL);
      throw Error("interrupted");  // the destructor reaps the children
    }
    std::vector<pollfd> pfds;
    for (const Child& c : children_) pfds.push_back({c.fd, POLLIN, 0});
    const int pr = ::poll(pfds.data(), pfds.size(), 200);
    if (pr <= 0) continue;  // timeout or EINTR: check the interrupt flag again
    for (std::size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = children_[i];
      const ssize_t n = ::read(c.fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        c.data.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      // EOF: the child is done.
      ::close(c.fd);
      Child done = std::move(c);
      children_.erase(children_.begin() + static_cast<long>(i));
      Done d;
      d.ticket = done.ticket;
      try {
        d.result = finish_child(done.pid, done.data, done.start_s);
      } catch (const std::exception& e) {
        d.error = e.what();
      }
      return d;
    }
  }
}

}  // namespace moesim::engine
