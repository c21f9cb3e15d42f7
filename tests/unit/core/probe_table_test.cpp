// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "moesim/core/probe_table.hpp"

namespace {
/** The caller's side of an index table: keys in a dense array, slots holding 1 + their index. `hash` may be a poor
 *  hash on purpose, to make the probes collide. */
struct Indexed {
  std::vector<std::uint64_t> keys;
  moesim::ProbeTable<std::uint32_t> table;
  std::size_t (*hash)(std::uint64_t);
  /** The key's index, entering it when new. */
  std::uint32_t index(std::uint64_t k) {
    std::uint32_t& slot = table.find(
        hash(k), keys.size(), [&](std::uint32_t s) { return keys[s - 1] == k; },
        [&](std::uint32_t s) { return hash(keys[s - 1]); });
    if (slot == 0) {
      keys.push_back(k);
      slot = static_cast<std::uint32_t>(keys.size());
    }
    return slot - 1;
  }
};
std::size_t good_hash(std::uint64_t k) { return static_cast<std::size_t>(k * 0x9E3779B97F4A7C15ULL >> 7); }
std::size_t clumped_hash(std::uint64_t k) { return static_cast<std::size_t>(k % 7); }  // long probe runs
}  // namespace

TEST_CASE("core::ProbeTable: finds what was entered, through growth and colliding probes, as a map does",
          "[core][probe_table]") {
  for (auto* hash : {&good_hash, &clumped_hash}) {
    Indexed t{{}, {}, hash};
    std::map<std::uint64_t, std::uint32_t> reference;
    std::mt19937_64 rng(3);
    // 5000 lookups over 3000 possible keys: repeats and new keys mixed, the table growing from 1024 slots to 8192.
    for (int i = 0; i < 5000; ++i) {
      const std::uint64_t k = 1 + rng() % 3000;
      const auto it = reference.emplace(k, static_cast<std::uint32_t>(reference.size())).first;
      REQUIRE(t.index(k) == it->second);
      CHECK(t.keys.size() == reference.size());
    }
    // Every key found again at its index after the last growth, and none entered twice.
    for (const auto& [k, idx] : reference) CHECK(t.index(k) == idx);
    CHECK(t.keys.size() == reference.size());
  }
}

TEST_CASE("core::ProbeTable: slots holding a key and a pointer, and the empty slot returned for the caller to fill",
          "[core][probe_table]") {
  moesim::ProbeTable<std::pair<std::uint64_t, const int*>> table;
  const std::vector<int> values{10, 20, 30};
  std::size_t filled = 0;
  auto find = [&](std::uint64_t key) -> std::pair<std::uint64_t, const int*>& {
    return table.find(
        static_cast<std::size_t>(key), filled, [key](const auto& s) { return s.first == key; },
        [](const auto& s) { return static_cast<std::size_t>(s.first); });
  };
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto& slot = find(1024 * (i + 1));  // the same home slot for all three in a 1024-slot table
    REQUIRE(slot.second == nullptr);
    slot = {1024 * (i + 1), &values[i]};
    ++filled;
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto& slot = find(1024 * (i + 1));
    REQUIRE(slot.second != nullptr);
    CHECK(*slot.second == values[i]);
  }
  CHECK(find(4096).second == nullptr);  // absent: its (empty) slot, after the three it collides with
}
