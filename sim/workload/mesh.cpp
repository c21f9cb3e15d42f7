// SPDX-License-Identifier: Apache-2.0
#include "moesim/workload/mesh.hpp"

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim::workload {

DeviceMesh::DeviceMesh(const scenario::ParallelismSpec& p, int devices_per_chip)
    : data_(p.data), expert_(p.expert), tensor_(p.tensor), pipeline_(p.pipeline), devices_per_chip_(devices_per_chip) {
  if (data_ < 1 || expert_ < 1 || tensor_ < 1 || pipeline_ < 1 || devices_per_chip_ < 1)
    throw Error("DeviceMesh: every parallel degree must be >= 1");
  if (devices() % devices_per_chip_ != 0)
    throw Error(fmt::format("DeviceMesh: {} devices do not fill whole chips of {} devices", devices(), devices_per_chip_));
  const int degree[4] = {tensor_, expert_, data_, pipeline_};
  const char* names[4] = {"tensor", "expert", "data", "pipeline"};
  if (p.placement.size() != 4) throw Error("DeviceMesh: parallelism.placement must name the four parallel axes");
  bool seen[4] = {false, false, false, false};
  int stride = 1;
  for (const std::string& axis : p.placement) {
    int a = 0;
    while (a < 4 && axis != names[a]) ++a;
    if (a == 4 || seen[a]) throw Error(fmt::format("DeviceMesh: bad parallelism.placement axis '{}'", axis));
    seen[a] = true;
    stride_[a] = stride;
    stride *= degree[a];
  }
}

std::vector<int> DeviceMesh::stage_devices(int stage) const {
  std::vector<int> v;
  v.reserve(static_cast<std::size_t>(data_ * expert_ * tensor_));
  for (int d = 0; d < data_; ++d)
    for (int e = 0; e < expert_; ++e)
      for (int t = 0; t < tensor_; ++t) v.push_back(device(stage, d, e, t));
  return v;
}

std::vector<std::vector<int>> DeviceMesh::expert_groups(int stage) const {
  std::vector<std::vector<int>> out;
  for (int d = 0; d < data_; ++d)
    for (int t = 0; t < tensor_; ++t) {
      std::vector<int> g;
      for (int e = 0; e < expert_; ++e) g.push_back(device(stage, d, e, t));
      out.push_back(std::move(g));
    }
  return out;
}

std::vector<std::vector<int>> DeviceMesh::tensor_groups(int stage) const {
  std::vector<std::vector<int>> out;
  for (int d = 0; d < data_; ++d)
    for (int e = 0; e < expert_; ++e) {
      std::vector<int> g;
      for (int t = 0; t < tensor_; ++t) g.push_back(device(stage, d, e, t));
      out.push_back(std::move(g));
    }
  return out;
}

std::vector<std::vector<int>> DeviceMesh::dense_grad_groups(int stage) const {
  std::vector<std::vector<int>> out;
  for (int t = 0; t < tensor_; ++t) {
    std::vector<int> g;
    for (int d = 0; d < data_; ++d)
      for (int e = 0; e < expert_; ++e) g.push_back(device(stage, d, e, t));
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<std::vector<int>> DeviceMesh::expert_grad_groups(int stage) const {
  std::vector<std::vector<int>> out;
  for (int e = 0; e < expert_; ++e)
    for (int t = 0; t < tensor_; ++t) {
      std::vector<int> g;
      for (int d = 0; d < data_; ++d) g.push_back(device(stage, d, e, t));
      out.push_back(std::move(g));
    }
  return out;
}

}  // namespace moesim::workload
