// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/core/rng.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/mesh.hpp"
#include "moesim/workload/routing.hpp"
#include "moesim/workload/step_graph.hpp"

namespace moesim::workload {

/** Everything a step builder needs (all references outlive the call). */
struct StepContext {
  const scenario::Scenario& scenario;
  const catalog::AcceleratorSpec& accel;
  const perf::ComputeTimeModel& compute;
  const DeviceMesh& mesh;
  bool remat = false;  ///< full rematerialisation: every layer's forward recomputed before its backward
  int step_index = 0;  ///< which simulated step (routing draws differ per step)
  bool selective_remat = false;  ///< selective: only the attention core recomputed (Korthikanti et al. 2022 §5)
};

/** A built step: the DAG, its entry and exit, and counts that do not need simulation. */
struct BuiltStep {
  StepGraph graph;
  PhaseId start{};
  PhaseId end{};
  StepStats stats;
};

/** Builds one training step's phase DAG. One implementation per `model.type`. */
class StepBuilder {
 public:
  virtual ~StepBuilder() = default;
  virtual BuiltStep build(const StepContext& ctx) const = 0;
};

/** Registry: scenario `model.type` -> builder. Unknown names throw moesim::Error listing the valid ones. */
const StepBuilder& step_builder(const std::string& model_type);
std::vector<std::string> step_builder_names();

/** Bucket size for gradient all-reduce overlap: PyTorch DistributedDataParallel's default
 *  bucket_cap_mb = 25 (torch.nn.parallel.DistributedDataParallel documentation). */
inline constexpr double kGradBucketBytes = 25.0 * 1024.0 * 1024.0;

}  // namespace moesim::workload
