// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/fair_bottleneck_net.hpp"

#include <algorithm>
#include <cfloat>
#include <limits>

#include "moesim/core/error.hpp"

namespace moesim::engine {

namespace {

// SimGrid 3.32 defaults (src/kernel/lmm/System.cpp): maxmin/precision and surf/precision; the engine sets neither.
constexpr double kMaxminPrecision = 1e-5;
constexpr double kSurfPrecision = 1e-9;

/** SimGrid's double_update (src/surf/surf_interface.hpp): subtract, and snap to 0 below the precision. */
inline void double_update(double& variable, double value, double precision) {
  variable -= value;
  if (variable < precision) variable = 0.0;
}

}  // namespace

FairBottleneckNet::FairBottleneckNet(const std::vector<double>& bandwidth_bytes_per_s, const std::vector<bool>& fatpipe,
                                     double now_s, bool incremental)
    : bandwidth_(bandwidth_bytes_per_s), fatpipe_(fatpipe), now_s_(now_s), incremental_(incremental) {}

void FairBottleneckNet::join(std::size_t id) {
  const Task& t = tasks_[id];
  if (t.w.empty()) {
    touched_tasks_.push_back(id);
    return;
  }
  if (link_tasks_.size() < bandwidth_.size()) link_tasks_.resize(bandwidth_.size());
  for (const auto& [l, w] : t.w) {
    link_tasks_[static_cast<std::size_t>(l)].push_back(id);
    touched_links_.push_back(l);
  }
}

void FairBottleneckNet::leave(std::size_t id) {
  for (const auto& [l, w] : tasks_[id].w) {
    auto& on = link_tasks_[static_cast<std::size_t>(l)];
    on.erase(std::find(on.begin(), on.end(), id));
    touched_links_.push_back(l);
  }
}

std::size_t FairBottleneckNet::add(Weights weights, double latency_s) {
  Task t;
  t.w = std::move(weights);
  for (std::size_t i = 0; i < t.w.size(); ++i) {
    const auto [l, w] = t.w[i];
    if (l < 0 || static_cast<std::size_t>(l) >= bandwidth_.size() || !(w > 0.0) || (i > 0 && t.w[i - 1].first >= l))
      throw Error("internal error: FairBottleneckNet: a task's weights must be on known links, sorted, unique and > 0");
  }
  t.latency_s = latency_s;
  t.enabled = !(latency_s > 0.0);
  if (t.w.empty()) t.remains = 0.0;  // nothing to move: L07Action sets its remains to 0; it ends at the next event
  tasks_.push_back(std::move(t));
  live_.push_back(tasks_.size() - 1);
  if (tasks_.back().enabled) join(tasks_.size() - 1);
  dirty_ = true;
  next_delta_s_ = std::numeric_limits<double>::infinity();
  next_known_ = false;
  return tasks_.size() - 1;
}

void FairBottleneckNet::advance(double now_s, std::vector<std::size_t>& ended) {
  if (now_s < now_s_) throw Error("internal error: FairBottleneckNet: time runs backwards");
  if (dirty_) solve();  // the rates of the stretch that ends now
  step(now_s - now_s_, ended);
  now_s_ = now_s;
}

void FairBottleneckNet::advance_to_next_event(double now_s, std::vector<std::size_t>& ended) {
  if (dirty_ || !next_known_ || !(next_delta_s_ < std::numeric_limits<double>::infinity()))
    throw Error("internal error: FairBottleneckNet: no next event to advance to");
  step(next_delta_s_, ended);
  now_s_ = std::max(now_s, now_s_);
}

void FairBottleneckNet::step(double delta, std::vector<std::size_t>& ended) {
  std::size_t out = 0;
  for (std::size_t id : live_) {
    Task& t = tasks_[id];
    // HostL07Model::update_actions_state.
    if (t.latency_s > 0.0) {
      if (t.latency_s > delta) double_update(t.latency_s, delta, kSurfPrecision);
      else t.latency_s = 0.0;
      if (t.latency_s <= 0.0) {
        t.enabled = true;
        dirty_ = true;
        join(id);
      }
    }
    double_update(t.remains, t.rate * delta, kMaxminPrecision * kSurfPrecision);
    if (t.remains <= 0.0 && t.enabled) {
      ended.push_back(id);
      t.rate = 0.0;
      t.live = false;
      leave(id);
      Weights().swap(t.w);  // an ended task keeps no memory
      dirty_ = true;
      continue;
    }
    live_[out++] = id;
  }
  live_.resize(out);
  next_delta_s_ = std::numeric_limits<double>::infinity();
  next_known_ = false;
}

double FairBottleneckNet::next_event_s() {
  if (dirty_) solve();
  if (next_known_) return now_s_ + next_delta_s_;  // nothing changed since: the engine asks at each of its events
  double min = std::numeric_limits<double>::infinity();
  for (std::size_t id : live_) {
    const Task& t = tasks_[id];
    if (t.enabled && t.rate > 0.0) min = std::min(min, t.remains > 0.0 ? t.remains / t.rate : 0.0);
    if (t.latency_s > 0.0) min = std::min(min, t.latency_s);
  }
  next_delta_s_ = min;
  next_known_ = true;
  return now_s_ + min;
}

void FairBottleneckNet::solve() {
  dirty_ = false;
  if (remaining_.size() < bandwidth_.size()) {
    remaining_.resize(bandwidth_.size(), 0.0);
    usage_.resize(bandwidth_.size(), 0.0);
    elements_.resize(bandwidth_.size());
  }
  // The tasks to solve: every live one, or (incremental) those connected through shared links to the links of tasks
  // that joined or left, found by a walk over links and tasks, in id order; the others keep their rates.
  std::vector<std::size_t> solved;
  if (!incremental_) {
    solved = live_;
  } else {
    if (link_seen_.size() < bandwidth_.size()) link_seen_.resize(bandwidth_.size(), 0);
    if (task_seen_.size() < tasks_.size()) task_seen_.resize(tasks_.size(), 0);
    std::vector<int> seen_links, stack;
    for (int l : touched_links_)
      if (!link_seen_[static_cast<std::size_t>(l)]) {
        link_seen_[static_cast<std::size_t>(l)] = 1;
        seen_links.push_back(l);
        stack.push_back(l);
      }
    while (!stack.empty()) {
      const int l = stack.back();
      stack.pop_back();
      for (std::size_t id : link_tasks_[static_cast<std::size_t>(l)]) {
        if (task_seen_[id]) continue;
        task_seen_[id] = 1;
        solved.push_back(id);
        for (const auto& [m, w] : tasks_[id].w)
          if (!link_seen_[static_cast<std::size_t>(m)]) {
            link_seen_[static_cast<std::size_t>(m)] = 1;
            seen_links.push_back(m);
            stack.push_back(m);
          }
      }
    }
    for (std::size_t id : touched_tasks_)
      if (!task_seen_[id] && tasks_[id].live) {  // enabled, without links: it ends at the next event
        task_seen_[id] = 1;
        solved.push_back(id);
      }
    for (int l : seen_links) link_seen_[static_cast<std::size_t>(l)] = 0;
    for (std::size_t id : solved) task_seen_[id] = 0;
    std::sort(solved.begin(), solved.end());
  }
  touched_links_.clear();
  touched_tasks_.clear();
  // The variables: enabled tasks with a link; an enabled task without any gets the value 1 (do_solve).
  std::vector<std::size_t> var_list;
  std::vector<int> cnst_list;
  for (std::size_t id : solved) {
    Task& t = tasks_[id];
    t.rate = 0.0;
    t.in_list = false;
    if (!t.enabled) continue;
    if (t.w.empty()) {
      t.rate = 1.0;
      continue;
    }
    t.in_list = true;
    var_list.push_back(id);
    for (const auto& [l, w] : t.w) {
      auto& el = elements_[static_cast<std::size_t>(l)];
      if (el.empty()) cnst_list.push_back(l);
      el.emplace_back(id, w);
    }
  }
  for (int l : cnst_list) {
    remaining_[static_cast<std::size_t>(l)] = bandwidth_[static_cast<std::size_t>(l)];
    usage_[static_cast<std::size_t>(l)] = 0.0;
  }
  const std::vector<int> all_cnst = cnst_list;
  while (!var_list.empty()) {
    // Each constraint's share: its remaining capacity over its unsaturated variables (one on a FATPIPE link).
    std::size_t keep = 0;
    for (int l : cnst_list) {
      const auto i = static_cast<std::size_t>(l);
      int nb = 0;
      for (const auto& [id, w] : elements_[i])
        if (tasks_[id].in_list) ++nb;
      if (nb > 0 && fatpipe_[i]) nb = 1;
      if (nb == 0) {
        remaining_[i] = 0.0;
        usage_[i] = 0.0;
        continue;
      }
      usage_[i] = remaining_[i] / nb;
      cnst_list[keep++] = l;
    }
    cnst_list.resize(keep);
    // Each unsaturated variable rises by its smallest share over weight.
    for (std::size_t id : var_list) {
      Task& t = tasks_[id];
      double min_inc = DBL_MAX;
      for (const auto& [l, w] : t.w) min_inc = std::min(min_inc, usage_[static_cast<std::size_t>(l)] / w);
      t.mu = min_inc;
      t.rate += min_inc;
    }
    // Each constraint loses every variable's weight x raise (the saturated ones' last raise again, as do_solve does);
    // one left with less than the precision saturates, with its variables.
    keep = 0;
    bool saturated = false;
    for (int l : cnst_list) {
      const auto i = static_cast<std::size_t>(l);
      double& remaining = remaining_[i];
      if (!fatpipe_[i]) {
        for (const auto& [id, w] : elements_[i]) double_update(remaining, w * tasks_[id].mu, kMaxminPrecision);
      } else {
        double& usage = usage_[i];
        for (const auto& [id, w] : elements_[i]) usage = std::min(usage, w * tasks_[id].mu);
        double_update(remaining, usage, kMaxminPrecision);
      }
      if (remaining <= 0.0) {
        saturated = true;
        for (const auto& [id, w] : elements_[i]) tasks_[id].in_list = false;
        continue;
      }
      cnst_list[keep++] = l;
    }
    cnst_list.resize(keep);
    if (saturated) {
      keep = 0;
      for (std::size_t id : var_list)
        if (tasks_[id].in_list) var_list[keep++] = id;
      var_list.resize(keep);
    }
  }
  for (int l : all_cnst) elements_[static_cast<std::size_t>(l)].clear();
}

}  // namespace moesim::engine
