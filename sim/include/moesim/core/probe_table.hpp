// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

namespace moesim {

/** A hash table by open addressing with linear probing, for the hot lookups where a node-based map costs a bucket
 *  division and a node's cache miss per probe (Boost 1.74 has no flat map). Its slots are values of `Slot`, a small
 *  copyable type whose value-initialised `Slot{}` marks an empty slot (e.g. 1 + an index into the caller's array,
 *  or a non-zero key with a pointer); what a slot means, how it hashes and when it matches are the caller's. The
 *  table holds a power of two of slots (at least 1024) and grows before it is more than half full. */
template <class Slot>
class ProbeTable {
 public:
  /** The slot that `same` accepts among those probed from hash `h`, or else the empty slot where the sought entry
   *  belongs, which the caller fills before the next call. `occupied` is the number of filled slots; `hash_of(slot)`
   *  gives a filled slot's hash when the table grows. */
  template <class Same, class HashOf>
  Slot& find(std::size_t h, std::size_t occupied, Same same, HashOf hash_of) {
    if (2 * (occupied + 1) > slots_.size()) grow(hash_of);
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = h & mask;
    while (!(slots_[i] == Slot{}) && !same(slots_[i])) i = (i + 1) & mask;
    return slots_[i];
  }

 private:
  /** Doubles the slots and enters every filled one again. */
  template <class HashOf>
  void grow(HashOf hash_of) {
    std::vector<Slot> old(std::max<std::size_t>(1024, 2 * slots_.size()), Slot{});
    old.swap(slots_);
    const std::size_t mask = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s == Slot{}) continue;
      std::size_t i = hash_of(s) & mask;
      while (!(slots_[i] == Slot{})) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
};

}  // namespace moesim
