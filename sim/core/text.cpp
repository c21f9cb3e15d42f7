// SPDX-License-Identifier: Apache-2.0
#include "moesim/core/text.hpp"

#include <algorithm>
#include <numeric>

namespace moesim::text {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> closest(const std::string& name, const std::vector<std::string>& candidates,
                                 std::size_t max_count) {
  std::vector<std::pair<double, std::string>> scored;
  scored.reserve(candidates.size());
  for (const auto& c : candidates) {
    double score = static_cast<double>(edit_distance(name, c));
    if (!name.empty() && c.find(name) != std::string::npos) score -= 0.5 * static_cast<double>(name.size());
    scored.emplace_back(score, c);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < scored.size() && i < max_count; ++i) out.push_back(scored[i].second);
  return out;
}

bool likely_typo(const std::string& name, const std::string& candidate) {
  const std::size_t d = edit_distance(name, candidate);
  const std::size_t limit = name.size() <= 4 ? 1 : name.size() < 9 ? 2 : 3;
  return d <= limit && d < name.size() && d + 1 < candidate.size();
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace moesim::text
