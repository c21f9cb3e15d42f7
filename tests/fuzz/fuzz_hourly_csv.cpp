// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: arbitrary bytes as an hourly intensity CSV (HourlyIntensity::load), then the integration of a
// job over it from its first hour, for a duration taken from the input's length (up to absurd ones). Seed corpus:
// tests/data/energy/ and tests/fuzz/corpus/hourly/.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "moesim/core/error.hpp"
#include "moesim/energy/hourly.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto h = moesim::energy::HourlyIntensity::load(moesim::fuzz::scratch_file(text, ".csv"));
    (void)h.covered_range();
    // 0 s, an hour, the whole series, and a duration growing with the input (to 1e300 s).
    for (const double d : {0.0, 3600.0, 3600.0 * static_cast<double>(h.hours()), std::pow(10.0, static_cast<double>(size % 301))}) {
      try {
        (void)h.integrate(h.first_hour_utc_s(), d, 1e9);
      } catch (const moesim::Error&) {
      }
    }
  } catch (const moesim::Error&) {
  }
  return 0;
}
