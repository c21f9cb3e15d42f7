// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "moesim/system/topology.hpp"
#include "moesim/workload/step_graph.hpp"

namespace moesim::system {

/** Bytes from one endpoint to another within a round. Endpoints are chip ids; a site's border
 *  (its WAN gateway) is `topology.chips() + site`. */
struct Flow {
  int src = 0;
  int dst = 0;
  double bytes = 0.0;
};

/** Flows simulated together as one parallel task (they progress at one rate and end together):
 *  one torus ring, one rail of a fat-tree, one node's NVLink exchange. */
struct Batch {
  std::vector<Flow> flows;
};

/** A synchronous step of a collective: all its batches run concurrently; the next round starts
 *  when every batch has finished. */
struct Round {
  std::string name;
  std::vector<Batch> batches;
  /** The round's latency (the alpha of the alpha-beta cost): its algorithm's sequential message steps times
   *  the latency of one step over the links it uses (per-hop ICI latency x hops per step, NCCL's per-step
   *  NVLink / network latency, the WAN's one-way latency), the most of any group in the round. The engine
   *  charges it before the round's bytes, less the route latency SimGrid itself adds to the flows. */
  double alpha_s = 0.0;
  int steps = 0;  ///< sequential message steps behind alpha_s (reports and tests)
};

/** A collective turned into traffic over the topology. */
struct TrafficPlan {
  std::string algorithm;      ///< e.g. "torus dimension-ordered all-to-all"
  std::vector<Round> rounds;
  double intra_chip_bytes = 0.0;  ///< exchanged between devices of the same chip (no link traffic)
  /** Fixed software cost paid before the first round (catalog collective_overhead_s). */
  double overhead_s = 0.0;
  bool empty() const { return rounds.empty(); }
};

/** Chooses an algorithm for `work` on `topology` (as real systems do) and produces its traffic:
 *  - all-to-all: dimension-ordered on a torus (one round per dimension, ring traffic only), hierarchical
 *    on GPU clusters (NVLink round inside nodes, then one rail round between nodes; DeepSpeed/Tutel 2DH),
 *    direct pairwise otherwise; across datacenters the share for other sites crosses the WAN between borders.
 *  - all-reduce: bidirectional ring per torus dimension (reduce-scatter rounds, then all-gather rounds);
 *    on GPU clusters reduce-scatter in the node, ring all-reduce along rails, all-gather in the node;
 *    across datacenters a ring between site borders after the intra-site reduce-scatter.
 *  - reduce-scatter / all-gather: the corresponding halves; send_recv: direct flows.
 *  Torus rings carry hop-by-hop neighbour flows whose bytes are the ring's per-link load under
 *  shortest-direction routing, the same bottleneck as end-to-end flows at a fraction of the cost. */
TrafficPlan plan_collective(const workload::CollectiveWork& work, const Topology& topology,
                            const workload::DeviceMesh& mesh);

/** Load on each directed link of a bidirectional ring of n nodes, in units of the pair volume, when
 *  every node sends the same volume to every other node along the shorter direction. */
double ring_all_to_all_link_load(int n);

/** The fraction of an all-to-all's network bytes that a per-node dispatch sends (CollectiveWork::per_node), over a
 *  group spread evenly over `nodes` nodes: a token's k copies go to k distinct experts of `experts`, experts / nodes
 *  per node, so a node other than its own holds at least one of them with probability 1 - H, H the hypergeometric
 *  probability that it holds none (prod_{i<k} (E - E/N - i) / (E - i)); the token crosses the network once per such
 *  node, (N - 1)(1 - H) times, instead of once per remote copy, k (N - 1) / N times. Node-limited routing to at most
 *  M nodes, chosen alike among the N, caps the crossings at M (N - 1) / N. 1 when top_k is 0 (per copy) or N = 1. */
double per_node_network_fraction(const workload::CollectiveWork::PerNode& p, int nodes);

}  // namespace moesim::system
