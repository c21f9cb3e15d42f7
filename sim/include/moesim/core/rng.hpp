// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <random>

namespace moesim {

/** Deterministic random numbers. std::mt19937_64's output sequence is fixed by the C++ standard;
 *  the conversions below are written out here (not std::*_distribution, whose algorithms are
 *  implementation-defined) so that a scenario and seed give identical numbers everywhere. */
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  /** A stream derived from this seed and a label, e.g. one per simulated step. */
  static Rng derived(std::uint64_t seed, std::uint64_t stream) {
    // SplitMix64 finaliser mixes (seed, stream) into a new seed (Steele et al. 2014).
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return Rng(z ^ (z >> 31));
  }
  std::uint64_t next_u64() { return engine_(); }
  /** Uniform in [0, 1) with 53 random bits. */
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  /** Uniform integer in [0, n). */
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : static_cast<std::uint64_t>(uniform() * static_cast<double>(n)); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace moesim
