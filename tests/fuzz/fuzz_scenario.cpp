// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: arbitrary bytes as a scenario file, through the loader (YAML, the field table, the cross-field
// checks) and, for its `compare:` alternatives, through load_alternatives. Seed corpus: scenarios/ and bench/.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "moesim/core/error.hpp"
#include "moesim/scenario/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto& catalog = moesim::fuzz::real_catalog();
  try {
    moesim::scenario::load_string(text, "fuzz.yaml", catalog);
  } catch (const moesim::Error&) {
  }
  if (text.find("compare") != std::string::npos) {
    try {
      moesim::scenario::load_alternatives(moesim::fuzz::scratch_file(text, ".yaml"), catalog);
    } catch (const moesim::Error&) {
    }
  }
  return 0;
}
