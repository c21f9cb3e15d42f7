// SPDX-License-Identifier: Apache-2.0
#pragma once
// A scenario's `sweep:` section (fields.cpp declares it): axes of values for scenario keys, multiplied
// (cartesian product) or advanced together (`zip:` groups), enumerated into points in a fixed order. Each
// point is the scenario with `--set KEY=VALUE` overrides; its identity is the content hash of the scenario it
// resolves to.
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::scenario {

/** One axis: a key path and the values it takes, in the order given. */
struct SweepAxis {
  std::string key;
  std::vector<nlohmann::json> values;
};

/** One point of a sweep: its position in the enumeration and the value of every axis. */
struct SweepPoint {
  std::size_t index = 0;
  std::vector<std::pair<std::string, nlohmann::json>> assignment;  ///< (key, value), in axis order

  /** "cluster.count=8, model.experts=4" (values as JSON): the point's label in listings and reports. */
  std::string label() const;
  /** The assignment as --set expressions ("cluster.count=8"). */
  std::vector<std::string> overrides() const;
};

/** A sweep as written in the scenario file, with its points enumerated. */
struct SweepDefinition {
  std::string file;
  std::vector<SweepAxis> axes;
  /** The enumeration's dimensions, outermost first: each is one axis or a zip group (axis indices). */
  std::vector<std::vector<std::size_t>> dimensions;
  std::vector<SweepPoint> points;
};

/** The most points one sweep may enumerate (a bound on a typo like a 1000-value axis times another). */
inline constexpr std::size_t kMaxSweepPoints = 1000000;

/** Reads the `sweep:` section of the scenario file `path` and enumerates its points: dimensions in the order of
 *  their first axis, the last one varying fastest (nested loops in the order written). Every problem of the
 *  definition — no section, an empty axis, a key that is not a scenario key (the error lists the valid ones),
 *  a key given twice, zip groups of unequal lengths or naming no axis — is a located moesim::InputError: the whole
 *  sweep is refused before any point runs. Whether each point resolves is checked later, point by point. */
SweepDefinition load_sweep(const std::string& path);

/** The scenario at `point`: the file, then `overrides` (--set), then the point's values. Throws what load_file
 *  throws when the point does not resolve. */
Scenario load_point(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides,
                    const SweepPoint& point);

/** FNV-1a, 128 bits (Fowler, Noll, Vo; the parameters of draft-eastlake-fnv, §2: offset basis
 *  0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b), as 32 lowercase hex digits. */
std::string fnv1a_128_hex(const std::string& bytes);

/** The content hash of a resolved scenario: fnv1a_128_hex of its canonical JSON (nlohmann::json::dump(): keys
 *  sorted, no whitespace, integers as integers, doubles in their shortest round-trip form), so it is the same
 *  on every machine and in every run for the same resolved scenario. */
std::string content_hash(const nlohmann::json& resolved);

}  // namespace moesim::scenario
