// SPDX-License-Identifier: Apache-2.0
#include "app.hpp"

int main(int argc, char** argv) { return moesim::cli::main(argc, argv); }
