// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/bound.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <unordered_map>
#include <vector>

#include <boost/graph/topological_sort.hpp>

#include "moesim/system/collectives.hpp"
#include "signature.hpp"
#include "training_setup.hpp"

namespace moesim::engine {

namespace {

/** Per-chip facts the link bounds need, computed once per topology. */
class LinkBound {
 public:
  LinkBound(const system::Topology& topo, const workload::DeviceMesh& mesh) : topo_(topo), mesh_(mesh) {
    coords_.reserve(static_cast<std::size_t>(topo.chips()));
    for (int c = 0; c < topo.chips(); ++c) {
      const system::Site& site = topo.sites()[static_cast<std::size_t>(topo.site_of(c))];
      coords_.push_back(site.kind == system::SiteKind::torus ? topo.coords(c) : std::vector<int>{});
    }
  }

  /** The collective's duration can be no shorter than this (see bound.hpp). */
  double collective_s(const workload::CollectiveWork& w) {
    const std::uint64_t sig = detail::signature(w);
    if (auto it = cache_.find(sig); it != cache_.end()) return it->second;
    const system::TrafficPlan plan = system::plan_collective(w, topo_, mesh_);
    double total = plan.empty() ? 0.0 : plan.overhead_s;
    for (const auto& round : plan.rounds) total += std::max(round.alpha_s, round_bytes_s(round));
    cache_.emplace(sig, total);
    return total;
  }

 private:
  /** The time the round's bytes need on the most loaded link class of one chip. */
  double round_bytes_s(const system::Round& round) const {
    const int n = topo_.chips();
    // Per chip: bytes out and in over torus links, NVLink and NIC.
    std::vector<double> out(static_cast<std::size_t>(n), 0.0), in(static_cast<std::size_t>(n), 0.0);
    std::vector<double> nv_out(out), nv_in(out), nic_out(out), nic_in(out);
    std::unordered_map<std::uint64_t, double> pair_bytes;  // torus neighbours: bytes src -> dst
    double worst = 0.0;
    for (const auto& batch : round.batches)
      for (const auto& f : batch.flows) {
        if (f.src == f.dst || f.src >= n || f.dst >= n || f.src < 0 || f.dst < 0) continue;  // WAN: not bounded
        const int site = topo_.site_of(f.src);
        if (topo_.site_of(f.dst) != site) continue;
        const auto s = static_cast<std::size_t>(f.src), d = static_cast<std::size_t>(f.dst);
        if (topo_.sites()[static_cast<std::size_t>(site)].kind == system::SiteKind::torus) {
          out[s] += f.bytes;
          in[d] += f.bytes;
          pair_bytes[(static_cast<std::uint64_t>(f.src) << 32) | static_cast<std::uint32_t>(f.dst)] += f.bytes;
        } else if (topo_.node_of(f.src) == topo_.node_of(f.dst)) {
          nv_out[s] += f.bytes;
          nv_in[d] += f.bytes;
        } else {
          nic_out[s] += f.bytes;
          nic_in[d] += f.bytes;
        }
      }
    for (int c = 0; c < n; ++c) {
      const auto i = static_cast<std::size_t>(c);
      const system::Site& site = topo_.sites()[static_cast<std::size_t>(topo_.site_of(c))];
      if (site.kind == system::SiteKind::torus) {
        // A torus chip has one split-duplex link to its next neighbour in each dimension longer than 1, and its
        // previous neighbour's link towards it: 2 links out and 2 in per such dimension.
        int dims = 0;
        for (int len : site.dims) dims += len > 1 ? 1 : 0;
        if (dims > 0 && topo_.ici_bandwidth_bytes_per_s > 0.0)
          worst = std::max(worst, std::max(out[i], in[i]) / (2.0 * dims * topo_.ici_bandwidth_bytes_per_s));
      } else {
        if (topo_.nvlink_bandwidth_bytes_per_s > 0.0)
          worst = std::max(worst, std::max(nv_out[i], nv_in[i]) / topo_.nvlink_bandwidth_bytes_per_s);
        if (topo_.nic_bandwidth_bytes_per_s > 0.0)
          worst = std::max(worst, std::max(nic_out[i], nic_in[i]) / topo_.nic_bandwidth_bytes_per_s);
      }
    }
    // Torus neighbours: the bytes from one chip to one neighbour share the links between the two (one; two when
    // the dimension has length 2 and both chips' links join them).
    for (const auto& [key, bytes] : pair_bytes) {
      const int a = static_cast<int>(key >> 32), b = static_cast<int>(key & 0xffffffffULL);
      const auto& ca = coords_[static_cast<std::size_t>(a)];
      const auto& cb = coords_[static_cast<std::size_t>(b)];
      const auto& dims = topo_.sites()[static_cast<std::size_t>(topo_.site_of(a))].dims;
      int differ = -1, count = 0;
      for (std::size_t k = 0; k < ca.size() && k < cb.size(); ++k)
        if (ca[k] != cb[k]) {
          differ = static_cast<int>(k);
          ++count;
        }
      if (count != 1 || !(topo_.ici_bandwidth_bytes_per_s > 0.0)) continue;
      const int len = dims[static_cast<std::size_t>(differ)];
      const int step = ((cb[static_cast<std::size_t>(differ)] - ca[static_cast<std::size_t>(differ)]) % len + len) % len;
      if (step != 1 && step != len - 1) continue;  // not neighbours: only the chip totals bound it
      const double links = len == 2 ? 2.0 : 1.0;
      worst = std::max(worst, bytes / (links * topo_.ici_bandwidth_bytes_per_s));
    }
    return worst;
  }

  const system::Topology& topo_;
  const workload::DeviceMesh& mesh_;
  std::vector<std::vector<int>> coords_;
  std::unordered_map<std::uint64_t, double> cache_;
};

double longest_path_s(const workload::BuiltStep& step, LinkBound& links) {
  const workload::StepGraph& g = step.graph;
  std::vector<workload::PhaseId> rev;
  rev.reserve(boost::num_vertices(g));
  boost::topological_sort(g, std::back_inserter(rev));
  std::vector<double> finish(boost::num_vertices(g), 0.0);
  double longest = 0.0;
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
    const workload::PhaseId v = *it;
    double start = 0.0;
    for (auto [e, eend] = boost::in_edges(v, g); e != eend; ++e) start = std::max(start, finish[boost::source(*e, g)]);
    const workload::Phase& ph = g[v];
    double d = 0.0;
    if (ph.type == workload::Phase::Type::compute) {
      for (double t : ph.compute.time_s) d = std::max(d, t);
    } else if (ph.type == workload::Phase::Type::collective) {
      d = links.collective_s(ph.comm);
    }
    finish[v] = start + d;
    longest = std::max(longest, finish[v]);
  }
  return longest;
}

}  // namespace

double train_time_lower_bound_s(const scenario::Scenario& s, const catalog::Catalog& catalog) {
  // Built as simulate_job builds its steps (engine/job.cpp).
  const detail::TrainingSetup setup(s, catalog);
  LinkBound links(setup.topo, setup.mesh);
  const int steps = std::max(1, s.training.steps_simulated);
  double bound = 0.0, hw_per_step = 0.0;
  for (int k = 0; k < steps; ++k) {
    const workload::BuiltStep step = setup.build(s, k);
    bound += longest_path_s(step, links) / steps;
    hw_per_step += step.stats.hardware_flops / steps;
  }
  const double n_steps = std::ceil(s.training.hardware_flops ? *s.training.hardware_flops / hw_per_step : s.steps());
  return n_steps * bound;
}

}  // namespace moesim::engine
