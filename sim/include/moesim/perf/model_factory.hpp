// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/perf/compute_model.hpp"

namespace moesim::perf {

/** Measured-profile device slugs (profiles/measured/<device>.json; kernels/ device_slug()) of a
 *  catalog accelerator, from the CUDA device names of the boards the catalog entries describe:
 *  h100 (H100 SXM5 80GB, "NVIDIA H100 80GB HBM3") -> h100_sxm; h200 ("NVIDIA H200") -> h200;
 *  a100 (A100 SXM4 80GB, "NVIDIA A100-SXM4-80GB") -> a100_sxm4_80gb; v100 (V100 SXM2 32GB,
 *  "Tesla V100-SXM2-32GB") -> tesla_v100_sxm2_32gb. Every accelerator also matches a file named
 *  after itself (<name>.json). */
std::vector<std::string> device_slugs_for(const std::string& accelerator);
/** The catalog accelerator a profile's device slug belongs to; nullopt if none. */
std::optional<std::string> accelerator_for_device(const std::string& device_slug);

/** Where make_compute_model() looks. */
struct ModelSources {
  std::string measured_dir;  ///< directory of <device>.json profiles (may not exist)
  /** Catalog lookup of an accelerator by name (nullopt if unknown): the measured device's datasheet. */
  std::function<std::optional<catalog::AcceleratorSpec>(const std::string&)> accelerator;
  /** Tests only: accept profiles whose provenance says measured=false (labelled synthetic everywhere). */
  bool allow_synthetic = false;
};

/** The compute-time model of `accel`:
 *  - measured: a profile of this device exists (device_slugs_for(accel)): MeasuredTableModel, falling
 *    back to a TransferModel calibrated on the same profile with the profile's own ceilings;
 *  - transferred: `accel` is a GPU and a profile of another catalog GPU exists: TransferModel
 *    calibrated on it (the first such file in name order; named in describe());
 *  - roofline: otherwise (RooflineModel with `efficiency`), and always for TPUs: their kernels are
 *    XLA-fused programs on a 128x128 systolic MXU with one-hot einsum dispatch and no per-kernel
 *    launch, so a GPU's per-class cuBLAS / gather efficiencies and launch floors do not describe them;
 *    GShard's own TPU v3 measurements (profiles/efficiency.yaml) are the better source.
 *  Each model falls back to the roofline for the classes it lacks (the optimizer is never profiled).
 *  Throws moesim::InputError for a malformed profile and moesim::Error for a profile that is not a
 *  measurement (provenance measured=false) unless sources.allow_synthetic, or whose
 *  provenance.device does not match its file name. */
std::unique_ptr<ComputeTimeModel> make_compute_model(const catalog::AcceleratorSpec& accel, const EfficiencyTable& efficiency,
                                                     const ModelSources& sources);
/** As above with `profiles_dir`/measured and the accelerators of `profiles_dir`/accelerators/. */
std::unique_ptr<ComputeTimeModel> make_compute_model(const catalog::AcceleratorSpec& accel, const EfficiencyTable& efficiency,
                                                     const std::string& profiles_dir);

}  // namespace moesim::perf
