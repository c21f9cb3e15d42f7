// SPDX-License-Identifier: Apache-2.0
// moesim-profile: the measurement side of moesim (see kernels/README.md).
#include <iostream>

#include "moesim/core/error.hpp"
#include "profiler.hpp"

int main(int argc, char** argv) {
  try {
    bool help = false;
    const auto options = moesim::kernels::profiler::parse_options(argc, argv, &help);
    if (help) {
      std::cout << moesim::kernels::profiler::usage();
      return 0;
    }
    return moesim::kernels::profiler::run(options);
  } catch (const moesim::Error& e) {
    std::cerr << "moesim-profile: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moesim-profile: unexpected error: " << e.what() << '\n';
    return 3;
  }
}
