// SPDX-License-Identifier: Apache-2.0
#include "sweep_plan.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "commands.hpp"

namespace moesim::cli {

namespace {
bool parse_int(const std::string& s, long long& v) {
  if (s.empty() || s.size() > 12) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  v = std::stoll(s);
  return true;
}

double number_at(const nlohmann::json& j, const char* section, const char* key, double fallback) {
  if (!j.contains(section) || !j[section].is_object() || !j[section].contains(key) || !j[section][key].is_number()) return fallback;
  return j[section][key].get<double>();
}
}  // namespace

Shard parse_shard(const std::string& flag, const char* task_id, const char* task_count, const char* task_min) {
  Shard s;
  if (!flag.empty()) {
    const auto slash = flag.find('/');
    long long i = 0, n = 0;
    if (slash == std::string::npos || !parse_int(flag.substr(0, slash), i) || !parse_int(flag.substr(slash + 1), n) || n < 1 ||
        i >= n)
      throw UsageError(fmt::format("--shard {}: expected I/N with 0 <= I < N (e.g. --shard 0/4)", flag));
    s.index = static_cast<int>(i);
    s.count = static_cast<int>(n);
    return s;
  }
  if (task_id == nullptr || task_count == nullptr) return s;
  long long id = 0, count = 0, min = 0;
  if (!parse_int(task_id, id)) throw UsageError(fmt::format("SLURM_ARRAY_TASK_ID='{}' is not a task index", task_id));
  if (!parse_int(task_count, count) || count < 1)
    throw UsageError(fmt::format("SLURM_ARRAY_TASK_COUNT='{}' is not a task count", task_count));
  if (task_min != nullptr && !parse_int(task_min, min))
    throw UsageError(fmt::format("SLURM_ARRAY_TASK_MIN='{}' is not a task index", task_min));
  if (id < min || id - min >= count)
    throw UsageError(fmt::format("SLURM_ARRAY_TASK_ID={} is outside the array's {} tasks from {}; give --shard I/N (moesim "
                                 "expects --array=0-(N-1) or any N consecutive indices)",
                                 id, count, min));
  s.index = static_cast<int>(id - min);
  s.count = static_cast<int>(count);
  return s;
}

double estimated_cost(const nlohmann::json& resolved) {
  const double chips = number_at(resolved, "cluster", "count", 1.0);
  const double layers = number_at(resolved, "model", "layers", 1.0);
  double work = 1.0;
  if (resolved.contains("serving")) {
    work = number_at(resolved, "serving", "requests", 0.0);
    if (work <= 0.0) {
      double rate = 1.0;
      if (resolved["serving"].contains("arrival") && resolved["serving"]["arrival"].is_object())
        rate = resolved["serving"]["arrival"].value("rate_per_s", 1.0);
      work = number_at(resolved, "serving", "duration_s", 1.0) * rate;
    }
  } else {
    work = number_at(resolved, "training", "steps_simulated", 1.0);
  }
  return std::max(1.0, chips) * std::max(1.0, layers) * std::max(1.0, work);
}

std::vector<int> assign_shards(const std::vector<double>& costs, int shard_count) {
  std::vector<std::size_t> order(costs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<std::size_t>(std::max(1, shard_count)), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (std::size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());  // the first of equals: the lowest shard
    owner[i] = static_cast<int>(least - load.begin());
    *least += costs[i];
  }
  return owner;
}

}  // namespace moesim::cli
