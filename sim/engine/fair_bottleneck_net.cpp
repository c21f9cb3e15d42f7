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
  // The task is solved at the next solve, with every task connected to it: those on a link it shares now (or on a link
  // another task shares with it later, which marks the link then).
  touched_tasks_.push_back(id);
  const Task& t = tasks_[id];
  if (t.w.empty()) return;
  if (link_tasks_.size() < bandwidth_.size()) link_tasks_.resize(bandwidth_.size());
  for (const auto& [l, w] : t.w) {
    auto& on = link_tasks_[static_cast<std::size_t>(l)];
    on.push_back(id);
    if (on.size() > 1) touched_links_.push_back(l);
  }
}

void FairBottleneckNet::leave(std::size_t id) {
  // The tasks left on its links are solved again at the next solve (a link it held alone has nobody to tell).
  for (const auto& [l, w] : tasks_[id].w) {
    auto& on = link_tasks_[static_cast<std::size_t>(l)];
    on.erase(std::find(on.begin(), on.end(), id));
    if (!on.empty()) touched_links_.push_back(l);
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

bool FairBottleneckNet::alone_on_links(const Task& t) const {
  for (const auto& [l, w] : t.w)
    if (link_tasks_[static_cast<std::size_t>(l)].size() != 1) return false;
  return true;
}

double FairBottleneckNet::solve_alone(const Task& t) {
  // The passes of the general solve below, for a variable that is the only element of each of its constraints: each
  // share is the constraint's remaining capacity (over 1 variable), the raise the smallest share over weight, and the
  // variable leaves with the first of its constraints to saturate. The same operations in the same order as there,
  // without its per-solve tables (a component of one variable is solved on its own either way).
  const std::size_t n = t.w.size();
  alone_remaining_.resize(n);
  alone_usage_.resize(n);
  for (std::size_t i = 0; i < n; ++i) alone_remaining_[i] = bandwidth_[static_cast<std::size_t>(t.w[i].first)];
  double rate = 0.0;
  while (true) {
    for (std::size_t i = 0; i < n; ++i) alone_usage_[i] = alone_remaining_[i] / 1;
    double mu = DBL_MAX;
    for (std::size_t i = 0; i < n; ++i) mu = std::min(mu, alone_usage_[i] / t.w[i].second);
    rate += mu;
    bool saturated = false;
    for (std::size_t i = 0; i < n; ++i) {
      double& remaining = alone_remaining_[i];
      const double w = t.w[i].second;
      if (!fatpipe_[static_cast<std::size_t>(t.w[i].first)]) {
        double_update(remaining, w * mu, kMaxminPrecision);
      } else {
        double& usage = alone_usage_[i];
        usage = std::min(usage, w * mu);
        double_update(remaining, usage, kMaxminPrecision);
      }
      saturated = saturated || remaining <= 0.0;
    }
    if (saturated) return rate;
  }
}

void FairBottleneckNet::solve() {
  dirty_ = false;
  if (link_slot_.size() < bandwidth_.size()) link_slot_.resize(bandwidth_.size(), -1);
  // The tasks to solve: every live one, or (incremental) the tasks enabled since the last solve and every task connected
  // through shared links to them or to a link a task left, found by a walk over links and tasks (from the links where
  // tasks met or parted: join, leave), in id order; the others keep their rates.
  std::vector<std::size_t>& solved = solved_;
  solved.clear();
  if (!incremental_) {
    solved = live_;
  } else {
    if (link_seen_.size() < bandwidth_.size()) link_seen_.resize(bandwidth_.size(), 0);
    if (task_seen_.size() < tasks_.size()) task_seen_.resize(tasks_.size(), 0);
    std::vector<int>& seen_links = seen_links_;
    std::vector<int>& stack = stack_;
    seen_links.clear();
    stack.clear();
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
      if (!task_seen_[id] && tasks_[id].live) {  // enabled since, on no link shared since (or on none at all)
        task_seen_[id] = 1;
        solved.push_back(id);
      }
    for (int l : seen_links) link_seen_[static_cast<std::size_t>(l)] = 0;
    for (std::size_t id : solved) task_seen_[id] = 0;
    std::sort(solved.begin(), solved.end());
  }
  touched_links_.clear();
  touched_tasks_.clear();
  // The variables (enabled tasks with a link, numbered k in id order; an enabled task without any gets the value 1, as
  // in do_solve) and the constraints they load (links, numbered s in the order the variables first use them). Each
  // variable's (s, weight) pairs follow its links; each constraint's elements (k, weight) are stored contiguously in
  // variable order, the order in which they are summed.
  Scratch& x = scratch_;
  x.var_task.clear();
  x.var_first.clear();
  x.var_el.clear();
  x.cnst_link.clear();
  x.cnst_first.clear();
  for (std::size_t id : solved) {
    Task& t = tasks_[id];
    t.rate = 0.0;
    if (!t.enabled) continue;
    if (t.w.empty()) {
      t.rate = 1.0;
      continue;
    }
    if (incremental_ && alone_on_links(t)) {
      t.rate = solve_alone(t);
      ++solved_alone_;
      continue;
    }
    x.var_task.push_back(id);
    x.var_first.push_back(x.var_el.size());
    for (const auto& [l, w] : t.w) {
      int& slot = link_slot_[static_cast<std::size_t>(l)];
      if (slot < 0) {
        slot = static_cast<int>(x.cnst_link.size());
        x.cnst_link.push_back(l);
        x.cnst_first.push_back(0);
      }
      ++x.cnst_first[static_cast<std::size_t>(slot)];
      x.var_el.emplace_back(slot, w);
    }
  }
  const std::size_t nv = x.var_task.size(), nc = x.cnst_link.size();
  x.var_first.push_back(x.var_el.size());
  // Counts to offsets; then each variable's elements placed at its constraints' cursors.
  std::size_t sum = 0;
  for (std::size_t s = 0; s < nc; ++s) {
    const std::size_t count = x.cnst_first[s];
    x.cnst_first[s] = sum;
    sum += count;
  }
  x.cnst_first.push_back(sum);
  x.el_var.resize(sum);
  x.el_w.resize(sum);
  x.cursor.assign(x.cnst_first.begin(), x.cnst_first.end() - 1);
  for (std::size_t k = 0; k < nv; ++k)
    for (std::size_t e = x.var_first[k]; e < x.var_first[k + 1]; ++e) {
      const auto [slot, w] = x.var_el[e];
      const std::size_t pos = x.cursor[static_cast<std::size_t>(slot)]++;
      x.el_var[pos] = k;
      x.el_w[pos] = w;
    }
  x.remaining.resize(nc);
  x.usage.assign(nc, 0.0);
  x.fat.resize(nc);
  for (std::size_t s = 0; s < nc; ++s) {
    const auto l = static_cast<std::size_t>(x.cnst_link[s]);
    x.remaining[s] = bandwidth_[l];
    x.fat[s] = fatpipe_[l] ? 1 : 0;
    link_slot_[l] = -1;
  }
  x.rate.assign(nv, 0.0);
  x.mu.assign(nv, 0.0);
  x.in_list.assign(nv, 1);
  std::vector<std::size_t>& var_list = x.var_list;
  std::vector<std::size_t>& cnst_list = x.cnst_list;
  var_list.resize(nv);
  for (std::size_t k = 0; k < nv; ++k) var_list[k] = k;
  cnst_list.resize(nc);
  for (std::size_t s = 0; s < nc; ++s) cnst_list[s] = s;
  while (!var_list.empty()) {
    // Each constraint's share: its remaining capacity over its unsaturated variables (one on a FATPIPE link).
    std::size_t keep = 0;
    for (std::size_t s : cnst_list) {
      int nb = 0;
      for (std::size_t e = x.cnst_first[s]; e < x.cnst_first[s + 1]; ++e) nb += x.in_list[x.el_var[e]];
      if (nb > 0 && x.fat[s]) nb = 1;
      if (nb == 0) {
        x.remaining[s] = 0.0;
        x.usage[s] = 0.0;
        continue;
      }
      x.usage[s] = x.remaining[s] / nb;
      cnst_list[keep++] = s;
    }
    cnst_list.resize(keep);
    // Each unsaturated variable rises by its smallest share over weight.
    for (std::size_t k : var_list) {
      double min_inc = DBL_MAX;
      for (std::size_t e = x.var_first[k]; e < x.var_first[k + 1]; ++e) {
        const auto [slot, w] = x.var_el[e];
        min_inc = std::min(min_inc, x.usage[static_cast<std::size_t>(slot)] / w);
      }
      x.mu[k] = min_inc;
      x.rate[k] += min_inc;
    }
    // Each constraint loses every variable's weight x raise (the saturated ones' last raise again, as do_solve does);
    // one left with less than the precision saturates, with its variables.
    keep = 0;
    bool saturated = false;
    for (std::size_t s : cnst_list) {
      double& remaining = x.remaining[s];
      const std::size_t first = x.cnst_first[s], last = x.cnst_first[s + 1];
      if (!x.fat[s]) {
        for (std::size_t e = first; e < last; ++e) double_update(remaining, x.el_w[e] * x.mu[x.el_var[e]], kMaxminPrecision);
      } else {
        double& usage = x.usage[s];
        for (std::size_t e = first; e < last; ++e) usage = std::min(usage, x.el_w[e] * x.mu[x.el_var[e]]);
        double_update(remaining, usage, kMaxminPrecision);
      }
      if (remaining <= 0.0) {
        saturated = true;
        for (std::size_t e = first; e < last; ++e) x.in_list[x.el_var[e]] = 0;
        continue;
      }
      cnst_list[keep++] = s;
    }
    cnst_list.resize(keep);
    if (saturated) {
      keep = 0;
      for (std::size_t k : var_list)
        if (x.in_list[k]) var_list[keep++] = k;
      var_list.resize(keep);
    }
  }
  for (std::size_t k = 0; k < nv; ++k) tasks_[x.var_task[k]].rate = x.rate[k];
}

}  // namespace moesim::engine
