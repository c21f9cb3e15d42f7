// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <vector>

namespace moesim::text {

/** Levenshtein edit distance, used to suggest the closest valid names in error messages. */
std::size_t edit_distance(const std::string& a, const std::string& b);

/** Up to `max_count` names from `candidates` closest to `name` (edit distance, then a substring
 *  match bonus), best first. */
std::vector<std::string> closest(const std::string& name, const std::vector<std::string>& candidates,
                                 std::size_t max_count = 3);

/** Whether `candidate` is plausibly what was meant by the misspelt `name`: within 1 edit for names of up to 4
 *  characters, 2 up to 8, 3 beyond ('modle' -> 'model', but 'nope' is not a typo of 'type'). */
bool likely_typo(const std::string& name, const std::string& candidate);

/** "a, b, c" */
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

}  // namespace moesim::text
