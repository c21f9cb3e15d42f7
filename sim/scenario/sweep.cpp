// SPDX-License-Identifier: Apache-2.0
#include "moesim/scenario/sweep.hpp"

#include <fmt/format.h>

#include "moesim/scenario/loader.hpp"

namespace moesim::scenario {

std::string SweepPoint::label() const {
  std::string out;
  for (const auto& [key, value] : assignment) out += (out.empty() ? "" : ", ") + key + "=" + value.dump();
  return out;
}

std::vector<std::string> SweepPoint::overrides() const {
  std::vector<std::string> out;
  // JSON is YAML (a flow scalar, sequence or mapping): the value reaches the field walker exactly as written.
  for (const auto& [key, value] : assignment) out.push_back(key + "=" + value.dump());
  return out;
}

Scenario load_point(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides,
                    const SweepPoint& point) {
  std::vector<std::string> all = overrides;
  for (auto& o : point.overrides()) all.push_back(std::move(o));
  return load_file(path, catalog, all);
}

std::string fnv1a_128_hex(const std::string& bytes) {
  __extension__ typedef unsigned __int128 u128;  // GCC and Clang; __extension__: not ISO C++
  const u128 prime = (static_cast<u128>(1) << 88) + 0x13b;
  u128 h = (static_cast<u128>(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
  for (const unsigned char c : bytes) {
    h ^= c;
    h *= prime;  // modulo 2^128 by unsigned wrap-around
  }
  return fmt::format("{:016x}{:016x}", static_cast<unsigned long long>(h >> 64), static_cast<unsigned long long>(h));
}

std::string content_hash(const nlohmann::json& resolved) { return fnv1a_128_hex(resolved.dump()); }

}  // namespace moesim::scenario
