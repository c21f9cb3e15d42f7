// SPDX-License-Identifier: Apache-2.0
#include "app.hpp"

#include <cstdio>

namespace moesim::cli {
int main(int argc, char** argv) {
  std::puts("moesim: not yet");
  return 0;
}
}  // namespace moesim::cli
