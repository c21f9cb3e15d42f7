// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

namespace moesim::workload {

/** Collective operations the system layer knows how to turn into traffic. */
enum class CollectiveOp { all_to_all, all_reduce, reduce_scatter, all_gather, send_recv };
std::string to_string(CollectiveOp op);

/** Compute on a set of devices: each device busy for its own time; the phase ends when the slowest
 *  finishes (SPMD bulk-synchronous semantics). */
struct ComputeWork {
  std::vector<int> devices;
  std::vector<double> time_s;        ///< per device, same order as `devices`
  /** Time split by phase kind ("compute.attention", ...), mean over devices; sums to mean(time_s). */
  std::map<std::string, double> kind_time_s;
  double hardware_flops = 0.0;       ///< executed FLOPs summed over devices (with padding, remat, dispatch)
  double model_flops = 0.0;          ///< useful model FLOPs summed over devices (for MFU)
  /** Summed over devices: the time the phase's matrix-unit FLOPs (tile-padded, remat and einsum
   *  dispatch included) would take at the matrix units' datasheet peak (perf::PeakTimes), weighted by each
   *  kernel's energy per operation under a power limit (perf::power_peak_times; 1 without one). */
  double matrix_s = 0.0;
  /** Summed over devices: the time the phase's HBM bytes would take at the datasheet bandwidth (weighted as matrix_s). */
  double hbm_s = 0.0;

  /** Achieved matrix-unit utilisation over the devices' busy time (matrix_s / sum of time_s); sets the
   *  chips' power while they run the phase (catalog::AcceleratorSpec::compute_power_w). */
  double flop_utilisation() const;
  /** Achieved HBM-bandwidth utilisation over the devices' busy time (hbm_s / sum of time_s). */
  double hbm_utilisation() const;
};

/** A collective among independent groups of devices (all groups run the same operation at once). */
struct CollectiveWork {
  CollectiveOp op = CollectiveOp::all_to_all;
  std::vector<std::vector<int>> groups;
  /** Bytes each device contributes: all-to-all: what one device sends in total (to all members,
   *  itself included); all-reduce/reduce-scatter/all-gather: the full buffer size;
   *  send_recv: bytes each device of groups[g][0] sends to groups[g][1]. */
  double bytes_per_device = 0.0;
  /** Optional (all-to-all with unbalanced routing): per group, per member, relative send volume and
   *  relative share received. Empty = uniform. Traffic i->j = send[i] x recv[j] / sum(recv). */
  std::vector<std::vector<double>> send_weight;
  std::vector<std::vector<double>> recv_weight;
  /** All-to-all of routed tokens dispatched once per destination node (DeepEP; DeepSeek-V3, arXiv 2412.19437
   *  §3.2.2; scenario parallelism.expert_dispatch: per_node): bytes_per_device counts one copy per (token, expert),
   *  top_k of them per token over `experts` experts spread evenly over the group's members; a token's copies for the
   *  experts of one node cross the network once and are forwarded over NVLink there. max_nodes > 0: node-limited
   *  routing (routing.max_nodes), each token's experts on at most that many nodes. top_k = 0: one network copy per
   *  (token, expert), as NCCL's all-to-all sends them. */
  struct PerNode {
    int top_k = 0;
    int experts = 0;
    int max_nodes = 0;
  } per_node;
};

/** One node of the step graph. */
struct Phase {
  enum class Type { compute, collective, marker };
  Type type = Type::marker;
  std::string kind;      ///< "compute.*", "comm.all_to_all", "comm.all_reduce", "comm.p2p", "marker"
  std::string label;     ///< human-readable, e.g. "L3 fwd moe.dispatch"
  int stage = 0;
  int microbatch = 0;
  /** The phase may run while gradient all-reduces of its stage are in flight (last micro-batch's
   *  backward with overlapped gradient reduction): its network time depends on that traffic, so the
   *  engine never replays it from a memo. */
  bool overlaps_grad_reduce = false;
  ComputeWork compute;   ///< when type == compute
  CollectiveWork comm;   ///< when type == collective
};

/** The step as a DAG of phases (Boost.Graph). Edges are "must finish before". */
using StepGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, Phase>;
using PhaseId = StepGraph::vertex_descriptor;

/** Adds a phase depending on `after` (any number of predecessors). */
PhaseId add_phase(StepGraph& g, Phase p, const std::vector<PhaseId>& after);

/** Summary of a built step (independent of the simulation). */
struct StepStats {
  double tokens = 0.0;                 ///< tokens of the global batch
  double model_flops = 0.0;            ///< useful FLOPs of the step (all devices)
  double hardware_flops = 0.0;         ///< executed FLOPs of the step (all devices)
  double routed_tokens = 0.0;          ///< tokens of the routing draws (every MoE layer and micro-batch)
  double assignments = 0.0;            ///< token-to-expert choices of the router (top_k per routed token)
  double skipped = 0.0;                ///< second choices the second-expert policy did not dispatch
  double dropped = 0.0;                ///< dispatched assignments dropped by capacity
  double first_dropped = 0.0;          ///< first choices dropped by capacity
  bool routing_exact = true;
  std::map<std::string, double> bytes_by_op;  ///< collective bytes by op (sum over devices)
};

}  // namespace moesim::workload
