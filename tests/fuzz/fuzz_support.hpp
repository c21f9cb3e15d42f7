// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the fuzz harnesses: the real catalog (loaded once), a scratch file for the APIs that read a path, and
// the one rule every harness checks: an input either loads or is refused with a moesim::Error (an InputError where
// it has a location). Any other exception, a crash, a hang (-timeout) or an allocation storm (-rss_limit_mb) is a
// finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "moesim/catalog/catalog.hpp"

namespace moesim::fuzz {

inline const catalog::Catalog& real_catalog() {
  static const catalog::Catalog cat = [] {
    const char* env = std::getenv("MOESIM_PROFILES");
    return catalog::Catalog::load(env != nullptr && *env != '\0' ? env : MOESIM_SOURCE_ROOT "/profiles");
  }();
  return cat;
}

/** A file holding `data`, rewritten on every call (one per process: fuzzers run single-threaded). */
inline std::string scratch_file(const std::string& data, const char* suffix) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  }();
  const std::string path = dir + "/moesim_fuzz_" + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace moesim::fuzz
