// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <vector>

#include "moesim/scenario/scenario.hpp"

namespace moesim::workload {

/** Maps parallel ranks to devices and devices to chips.
 *  device = ((pipeline * data + data_idx) * expert + expert_idx) * tensor + tensor_idx:
 *  tensor-parallel ranks are adjacent (same chip / node), then expert-parallel, data, pipeline outermost.
 *  chip = device / devices_per_chip. */
class DeviceMesh {
 public:
  DeviceMesh(const scenario::ParallelismSpec& p, int devices_per_chip);

  int devices() const { return data_ * expert_ * tensor_ * pipeline_; }
  int chips() const { return devices() / devices_per_chip_; }
  int devices_per_chip() const { return devices_per_chip_; }
  int data() const { return data_; }
  int expert() const { return expert_; }
  int tensor() const { return tensor_; }
  int pipeline() const { return pipeline_; }

  /** Device id of a rank: the axes laid out in parallelism.placement order, innermost first. */
  int device(int stage, int data_idx, int expert_idx, int tensor_idx) const {
    return stage * stride_[kPipeline] + data_idx * stride_[kData] + expert_idx * stride_[kExpert] + tensor_idx * stride_[kTensor];
  }
  int chip_of(int device) const { return device / devices_per_chip_; }
  int stage_of(int device) const { return (device / stride_[kPipeline]) % pipeline_; }
  int data_of(int device) const { return (device / stride_[kData]) % data_; }
  int expert_of(int device) const { return (device / stride_[kExpert]) % expert_; }
  int tensor_of(int device) const { return (device / stride_[kTensor]) % tensor_; }

  /** Every device of pipeline stage `stage`, by (data, expert, tensor) rank: the i-th device of two stages
   *  hold the same ranks (pipeline sends pair them). */
  std::vector<int> stage_devices(int stage) const;
  /** Expert-parallel groups of a stage (all-to-all groups): one per (data, tensor). */
  std::vector<std::vector<int>> expert_groups(int stage) const;
  /** Tensor-parallel groups of a stage: one per (data, expert). */
  std::vector<std::vector<int>> tensor_groups(int stage) const;
  /** Groups that all-reduce dense gradients: one per (stage, tensor), spanning data x expert. */
  std::vector<std::vector<int>> dense_grad_groups(int stage) const;
  /** Groups that all-reduce expert gradients: one per (stage, expert, tensor), spanning data. */
  std::vector<std::vector<int>> expert_grad_groups(int stage) const;

 private:
  enum Axis { kTensor = 0, kExpert = 1, kData = 2, kPipeline = 3 };
  int data_, expert_, tensor_, pipeline_, devices_per_chip_;
  int stride_[4] = {1, 1, 1, 1};  ///< device-id stride of each axis
};

}  // namespace moesim::workload
