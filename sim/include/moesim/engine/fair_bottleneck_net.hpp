// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

namespace moesim::engine {

/** SimGrid 3.32's ptask_L07 host model, for parallel tasks that only move bytes, computed by moesim
 *  (EngineOptions::own_network_rounds; engine.cpp, "Rounds in moesim's replica of the network model").
 *
 *  What it replicates (read in the SimGrid v3.32 source):
 *  - A task is an L07Action of cost 1 (src/surf/ptask_L07.cpp): one max-min variable whose weight on each link is the
 *    bytes of the task's flows over it (summed; their largest on a FATPIPE link, lmm::System::expand). It first waits
 *    its latency, the longest route latency of its flows, with the variable disabled, then progresses at the
 *    variable's value; it ends when its remaining work reaches 0.
 *  - The values are those of lmm::FairBottleneck::do_solve (src/kernel/lmm/fair_bottleneck.cpp), step for step: each
 *    pass shares each constraint's remaining capacity equally among its unsaturated variables (one share on a
 *    FATPIPE link), raises each variable by its smallest share over weight, takes every variable's weight x raise off
 *    each constraint (the saturated variables' last raise included, as SimGrid does), and saturates a constraint
 *    whose remaining capacity falls below maxmin/precision (1e-5), with its variables.
 *  - Time advances as HostL07Model::update_actions_state does: latencies and remaining work are decreased with
 *    SimGrid's double_update and its precisions (surf/precision 1e-9 s for latencies, 1e-5 x 1e-9 for work), and the
 *    next event is the earliest latency end or remains / rate (HostL07Model::next_occurring_event).
 *  It equals SimGrid's own run where the tasks it holds share no link with any task left in SimGrid's system: a task
 *  that only moves bytes has weight 0 on its hosts' CPUs, which FairBottleneck skips, so its component of the system
 *  is solved alone whatever else runs. The order in which a constraint's elements are summed may differ from
 *  SimGrid's (its intrusive lists), which moves results by rounding only. The TCP-window bound of ptask_L07 is not
 *  modelled: the engine sets network/TCP-gamma to 1e30, which makes it unbounded. */
class FairBottleneckNet {
 public:
  /** (link id, weight in bytes), sorted by link, one entry per link, every weight > 0. */
  using Weights = std::vector<std::pair<int, double>>;

  /** `bandwidth_bytes_per_s` and `fatpipe`, by link id, are read at each solve (they may grow, not change).
   *  `incremental`: re-solve only the tasks connected (through shared links) to those added, enabled or ended since
   *  the last solve, as SimGrid's selective update does, and a task alone on each of its links on its own, without
   *  the general solve's tables; false: every task at every solve, all in the general solve (the reference of the
   *  tests). The values are the same either way: do_solve treats each connected component of the system on its own
   *  (a constraint's share, a variable's raise and a constraint's saturation involve only that component), and a
   *  component's elements are taken in the same order (task id). */
  FairBottleneckNet(const std::vector<double>& bandwidth_bytes_per_s, const std::vector<bool>& fatpipe, double now_s,
                    bool incremental = true);

  /** Adds a task at the current time (advance first). Returns its id (ids count up from 0). */
  std::size_t add(Weights weights, double latency_s);
  /** Brings every task to `now_s` (not before the current time); appends the ids of the tasks that ended, in id order. */
  void advance(double now_s, std::vector<std::size_t>& ended);
  /** Brings every task to its next event (next_event_s, with nothing added or ended since), the clock being `now_s`:
   *  the tasks advance by the interval next_event_s computed, as SimGrid's engine advances its actions by the smallest
   *  time to an event (EngineImpl::solve), not by a difference of clock readings, which rounding can make 0. */
  void advance_to_next_event(double now_s, std::vector<std::size_t>& ended);
  /** When the next task ends or ends its latency (absolute, s); +infinity when no task is left. */
  double next_event_s();
  /** Tasks not ended. */
  std::size_t live() const { return live_.size(); }
  /** How many times a task alone on its links was solved on its own (incremental only; for the tests). */
  std::size_t solved_alone() const { return solved_alone_; }

 private:
  struct Task {
    Weights w;
    double latency_s = 0.0;
    double remains = 1.0;
    double rate = 0.0;
    bool enabled = false;
    bool live = true;  ///< not ended
  };
  void solve();
  /** Whether an enabled task is the only one on each of its links (a component of its own). */
  bool alone_on_links(const Task& t) const;
  /** The value solve() gives such a task, computed on its own. */
  double solve_alone(const Task& t);
  void step(double delta_s, std::vector<std::size_t>& ended);
  /** A task joins (enabled) or leaves (ended) the system: its links are marked for the next solve. */
  void join(std::size_t id);
  void leave(std::size_t id);

  const std::vector<double>& bandwidth_;
  const std::vector<bool>& fatpipe_;
  double now_s_;
  std::vector<Task> tasks_;
  std::vector<std::size_t> live_;  ///< ids of the tasks not ended, in id order
  bool dirty_ = false;
  double next_delta_s_ = std::numeric_limits<double>::infinity();
  bool next_known_ = false;  ///< next_delta_s_ is up to date (nothing added, advanced or ended since)  ///< from the current time to the next event, as next_event_s found it (+inf: not known)
  bool incremental_ = true;
  std::size_t solved_alone_ = 0;
  /** By link id: the enabled tasks with a weight on it (ids, in the order they joined). */
  std::vector<std::vector<std::size_t>> link_tasks_;
  /** Links where tasks joined a task already there, or a task left others, since the last solve. */
  std::vector<int> touched_links_;
  std::vector<std::size_t> touched_tasks_;  ///< tasks enabled since the last solve
  // Scratch of solve(), by link id and by task id: flags of the walk; each link's constraint number s in the current
  // solve (-1 outside it).
  std::vector<char> link_seen_, task_seen_;
  std::vector<int> link_slot_;
  std::vector<std::size_t> solved_;       ///< the tasks of the current solve
  std::vector<int> seen_links_, stack_;   ///< the walk's links seen and links to visit
  /** Scratch of solve(), kept between solves for its capacity: the variables k and constraints s of one solve. */
  struct Scratch {
    std::vector<std::size_t> var_task;                ///< by k: the task id
    std::vector<std::size_t> var_first;               ///< by k: its first entry in var_el (k + 1: one past its last)
    std::vector<std::pair<int, double>> var_el;       ///< (s, weight), by variable
    std::vector<int> cnst_link;                       ///< by s: the link id
    std::vector<std::size_t> cnst_first, cursor;      ///< by s: its first element in el_var / el_w
    std::vector<std::size_t> el_var;                  ///< elements by constraint: the variable k
    std::vector<double> el_w;                         ///< elements by constraint: the weight
    std::vector<double> remaining, usage;             ///< by s
    std::vector<char> fat;                            ///< by s: a FATPIPE link
    std::vector<double> rate, mu;                     ///< by k
    std::vector<char> in_list;                        ///< by k: not saturated
    std::vector<std::size_t> var_list, cnst_list;     ///< unsaturated variables, constraints still sharing
  } scratch_;
  std::vector<double> alone_remaining_, alone_usage_;  ///< scratch of solve_alone(), by the task's link
};

}  // namespace moesim::engine
