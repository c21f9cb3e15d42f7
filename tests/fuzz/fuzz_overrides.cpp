// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: command-line values. The input's first line is a `--set` (KEY.PATH=VALUE, or a bare value for
// a key chosen from the field table by its first byte), the rest an `--alt` mapping; both on top of
// scenarios/quickstart.yaml. Seed corpus: tests/fuzz/corpus/overrides/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "moesim/core/error.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim/scenario/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string base = MOESIM_SOURCE_ROOT "/scenarios/quickstart.yaml";
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto nl = text.find('\n');
  std::string set = text.substr(0, nl);
  const std::string alt = nl == std::string::npos ? std::string() : text.substr(nl + 1);
  if (set.find('=') == std::string::npos && !set.empty()) {
    // A bare value: give it a real key, so the fuzzer reaches the typed checks of every field.
    const auto& fields = moesim::scenario::fields();
    const auto& f = fields[static_cast<unsigned char>(set[0]) % fields.size()];
    std::string path = f.path;
    for (auto p = path.find("[]"); p != std::string::npos; p = path.find("[]")) path.erase(p, 2);
    set = path + "=" + set.substr(1);
  }
  const auto& catalog = moesim::fuzz::real_catalog();
  try {
    moesim::scenario::load_file(base, catalog, {set});
  } catch (const moesim::Error&) {
  }
  if (!alt.empty()) {
    try {
      moesim::scenario::load_alternatives(base, catalog, {}, {alt});
    } catch (const moesim::Error&) {
    }
  }
  return 0;
}
