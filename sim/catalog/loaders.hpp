// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private to the catalog layer: parsers for the files under profiles/.

#include <map>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/catalog/catalog.hpp"
#include "moesim/catalog/datacenter.hpp"

namespace moesim::catalog::detail {

/** Implementations of the public load_*_file functions of moesim/catalog/catalog.hpp. */
AcceleratorSpec parse_accelerator_file(const std::string& file);
std::map<std::string, GridIntensity> parse_grid_manifest(const std::string& manifest_file);
std::vector<DatacenterSpec> parse_datacenter_file(const std::string& file,
                                                  const std::map<std::string, GridIntensity>& grid);

}  // namespace moesim::catalog::detail
