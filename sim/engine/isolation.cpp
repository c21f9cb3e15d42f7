// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/isolation.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
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

IsolatedResult run_isolated(const std::function<nlohmann::json()>& fn, const volatile bool* interrupted) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(fmt::format("cannot create a pipe for the simulation process: {}", std::strerror(errno)));
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(fmt::format("cannot start the simulation process: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::signal(SIGINT, SIG_DFL);
    nlohmann::json out;
    try {
      out = {{"ok", true}, {"value", fn()}};
    } catch (const std::exception& e) {
      out = {{"ok", false}, {"error", e.what()}};
    } catch (...) {
      out = {{"ok", false}, {"error", "unknown error in the simulation process"}};
    }
    write_all(fds[1], out.dump());
    ::close(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string data;
  char buf[1 << 16];
  bool killed = false;
  while (true) {
    if (interrupted != nullptr && *interrupted && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int pr = ::poll(&pfd, 1, 200);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  IsolatedResult res;
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports kilobytes
  if (killed || (interrupted != nullptr && *interrupted)) throw Error("interrupted");
  if (WIFSIGNALED(status))
    throw Error(fmt::format("the simulation process died with signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status))));
  nlohmann::json out;
  try {
    out = nlohmann::json::parse(data);
  } catch (const std::exception&) {
    throw Error(fmt::format("the simulation process returned no result (exit status {})",
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  if (!out.value("ok", false)) throw Error(out.value("error", std::string("simulation failed")));
  res.value = std::move(out["value"]);
  return res;
}

}  // namespace moesim::engine
