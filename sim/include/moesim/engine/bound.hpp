// SPDX-License-Identifier: Apache-2.0
#pragma once
// A sound lower bound on what the engine simulates, without SimGrid: the longest path of a step's phase DAG with
// each phase at a duration it cannot beat. The planner (`moesim plan`) skips the layouts whose bound is already
// no better than a layout it has simulated.
#include "moesim/catalog/catalog.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::engine {

/** A lower bound on simulate_job(s).train_time_s for a training scenario: every simulated step built as simulate_job
 *  builds it, their bounds averaged, times the steps simulate_job counts. A step's bound is the longest path through
 *  its DAG where
 *  - a compute phase lasts its slowest device's time (the engine's pacer makes it last exactly that, longer only if a
 *    chip is shared);
 *  - a collective lasts its launch overhead plus, per round (rounds run one after another), the larger of the round's
 *    latency (alpha) and the time its bytes need on the most loaded link class of one chip: a torus chip's traffic to
 *    one neighbour over the links between them and its whole traffic over its 2 links per dimension; a GPU's
 *    NVLink and NIC traffic over its NVLink and NIC, each way. Traffic between datacenters is not bounded (0);
 *  - markers take no time. */
double train_time_lower_bound_s(const scenario::Scenario& s, const catalog::Catalog& catalog);

}  // namespace moesim::engine
