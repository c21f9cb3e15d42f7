// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to the engine layer: the signature by which the engine caches a collective's traffic plan and memoises
// its isolated duration, shared with the step-time lower bound (bound.cpp), which caches its per-collective bound
// the same way.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "moesim/workload/step_graph.hpp"

namespace moesim::engine::detail {

/** A compact signature of a collective's traffic inputs: FNV-1a's step (xor, multiply by its 64-bit prime) over
 *  8-byte words rather than single bytes (a collective's groups and weights run to tens of kilobytes at thousands of
 *  chips), the tail byte by byte. */
struct Hasher {
  std::uint64_t h = 1469598103934665603ULL;
  void bytes(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::uint64_t word;
      std::memcpy(&word, c + i, 8);
      h ^= word;
      h *= 1099511628211ULL;
      h ^= h >> 32;  // the multiply carries low bits upward only: fold the high half back so every bit reaches all
    }
    for (; i < n; ++i) {
      h ^= c[i];
      h *= 1099511628211ULL;
    }
  }
  template <class T>
  void value(const T& v) {
    bytes(&v, sizeof(v));
  }
};

/** Hashes a collective's traffic inputs; its size only if `with_bytes`. */
inline std::uint64_t signature_of(const workload::CollectiveWork& w, bool with_bytes) {
  Hasher h;
  h.value(static_cast<int>(w.op));
  if (with_bytes) h.value(w.bytes_per_device);
  for (const auto& g : w.groups) {
    h.value(g.size());
    h.bytes(g.data(), g.size() * sizeof(int));
  }
  for (const auto* vv : {&w.send_weight, &w.recv_weight})
    for (const auto& v : *vv) {
      h.value(v.size());
      h.bytes(v.data(), v.size() * sizeof(double));
    }
  h.value(w.per_node.top_k);
  h.value(w.per_node.experts);
  h.value(w.per_node.max_nodes);
  return h.h;
}

inline std::uint64_t signature(const workload::CollectiveWork& w) { return signature_of(w, true); }

/** The signature of a collective's shape: the same operation over the same groups with the same weights, of any size.
 *  Every flow of its traffic plan is proportional to its size (system::plan_collective), so one plan per shape,
 *  scaled, serves all its sizes. */
inline std::uint64_t shape_signature(const workload::CollectiveWork& w) { return signature_of(w, false); }

}  // namespace moesim::engine::detail
