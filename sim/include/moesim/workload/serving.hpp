// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/workload/routing.hpp"
#include "moesim/workload/step_graph.hpp"

namespace moesim::workload {

// ---- Requests --------------------------------------------------------------------------------

/** One request of a serving workload. Times in seconds from the start of the simulation. */
struct Request {
  double arrival_s = 0.0;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int task = 0;  ///< task-level routing: the request's task (0 otherwise)
  int line = 0;  ///< the trace CSV's line of the request (0: generated)
};

/** The requests of a serving scenario, in arrival order: generated from the arrival process and the
 *  length distributions with the scenario seed (Poisson: exponential gaps; gamma: Marsaglia-Tsang
 *  gamma gaps of the given coefficient of variation; constant; bursts; offline: all at 0), or read from
 *  the trace CSV. Arrivals stop at serving.requests or serving.duration_s, whichever comes first.
 *  Throws moesim::InputError for a malformed or unsorted trace (file, line, column, what was allowed). */
std::vector<Request> generate_requests(const scenario::Scenario& s);

/** Reads a request trace: a CSV with the header `arrival_s,prompt_tokens,output_tokens` and an optional
 *  fourth column `task`; a line whose first non-blank character is `#` is a comment, blank lines are skipped, a
 *  leading UTF-8 byte order mark is ignored; arrival times ascending, lengths >= 1. */
std::vector<Request> read_request_trace(const std::string& path);

/** Task routing with a trace that has the `task` column: the fraction of the served requests (as
 *  generate_requests() serves them) of each task 0 .. routing.tasks - 1, the router's task mix. Empty (uniform
 *  tasks) otherwise. Iteration costs are memoised by shape, not by batch, so the mix is the trace's frequencies,
 *  not the tasks of each batch. Throws moesim::InputError as generate_requests() does. */
std::vector<double> task_mix(const scenario::Scenario& s);

/** Bounds of a serving workload (for the static scheduler's activation workspace). */
struct WorkloadBounds {
  long long requests = 0;  ///< requests served at most (0: unbounded; a trace: its served rows)
  int longest_prompt = 0;  ///< longest prompt a request can have (at most model.seq_len - 1)
};
/** The served requests' count bound and longest prompt: the length distribution's upper bound (fixed value,
 *  uniform max, log-normal max), or, for a trace, the served rows themselves. */
WorkloadBounds workload_bounds(const scenario::Scenario& s);

// ---- Replica memory and KV cache --------------------------------------------------------------

/** Device memory of one replica of a pool (the most loaded device) and its paged KV cache. */
struct ReplicaMemory {
  double capacity_bytes = 0.0;        ///< device memory (chip HBM / devices per chip)
  double weights_bytes = 0.0;         ///< parameters held by the most loaded device
  double workspace_bytes = 0.0;       ///< activation workspace of the largest iteration (max_batched_tokens; static: its prefill, or a decode pool's decode step)
  double workspace_tokens = 0.0;      ///< the replica's tokens in that iteration (static: batch x longest prompt; static decode pool: batch)
  double kv_bytes = 0.0;              ///< left for the KV cache on that device
  double kv_bytes_per_token = 0.0;    ///< KV bytes one token of one sequence takes on that device (its layers, its heads)
  double kv_bytes_per_token_replica = 0.0;  ///< KV bytes of one token over the whole replica (what a transfer moves)
  long long kv_blocks = 0;            ///< blocks of the replica (all its data-parallel ranks together)
  int block_tokens = 16;
  double kv_tokens() const { return static_cast<double>(kv_blocks) * block_tokens; }
};

/** KV cache bytes of one token in one layer for the whole model width: 2 x kv_heads x d_head values
 *  (keys and values), or MLA's latent + RoPE key (kv_lora_rank + qk_rope_head_dim), times the KV dtype. */
double kv_bytes_per_token_layer(const scenario::ModelSpec& m, const std::string& kv_dtype);

/** Memory of one replica of `pool` and the KV cache it leaves (vLLM's accounting: the memory fraction
 *  of device memory, minus weights and the activation workspace of the largest iteration: max_batched_tokens
 *  tokens, or for the static scheduler its batch's prefill, workload_bounds()). Throws moesim::Error with the numbers
 *  when the weights and workspace do not fit, naming what would make it fit. */
ReplicaMemory replica_memory(const scenario::Scenario& s, const scenario::PoolSpec& pool, const catalog::AcceleratorSpec& accel);

// ---- Iterations ------------------------------------------------------------------------------

/** What one iteration of a replica computes (summed over its data-parallel ranks). */
struct IterationShape {
  double prefill_tokens = 0.0;      ///< prompt tokens computed (whole prompts, or chunks)
  double prefill_pairs = 0.0;       ///< attention query-key pairs of those tokens: sum over chunks of c x (context + (c + 1) / 2)
  double decode_seqs = 0.0;         ///< sequences producing one token each
  double decode_context = 0.0;      ///< sum of their context lengths (KV tokens read)
  double sampled = 0.0;             ///< sequences whose logits are computed (decodes + prompts completed this iteration)
  double tokens() const { return prefill_tokens + decode_seqs; }
};

/** Kernels of one device in one regime: their time, and the time their matrix-unit FLOPs and their HBM
 *  bytes would take at the datasheet peaks (perf::PeakTimes). matrix_s / time_s and hbm_s / time_s are the
 *  achieved utilisations that set the chip's power while it runs them (AcceleratorSpec::compute_power_w). */
struct KernelWork {
  double time_s = 0.0;
  /** The kernels' matrix-unit FLOPs and HBM bytes timed at the datasheet peaks, weighted by their energy per operation
   *  under a power limit (perf::power_peak_times): over time_s, the utilisations that set the chip's power. */
  double matrix_s = 0.0;
  double hbm_s = 0.0;
  double flop_utilisation() const { return time_s > 0.0 ? matrix_s / time_s : 0.0; }
  double hbm_utilisation() const { return time_s > 0.0 ? hbm_s / time_s : 0.0; }
  KernelWork& operator+=(const KernelWork& o) {
    time_s += o.time_s;
    matrix_s += o.matrix_s;
    hbm_s += o.hbm_s;
    return *this;
  }
  KernelWork scaled(double f) const { return {time_s * f, matrix_s * f, hbm_s * f}; }
};

/** Compute of one device in one phase, split by regime: compute-bound kernels (matrix units busy) and
 *  memory-bound kernels (HBM busy), each run as its own phase so that each draws its own power. */
struct DeviceWork {
  KernelWork compute_bound;
  KernelWork memory_bound;
  double total() const { return compute_bound.time_s + memory_bound.time_s; }
  DeviceWork& operator+=(const DeviceWork& o) {
    compute_bound += o.compute_bound;
    memory_bound += o.memory_bound;
    return *this;
  }
  DeviceWork scaled(double f) const { return {compute_bound.scaled(f), memory_bound.scaled(f)}; }
};

/** The layer kinds of a decoder stack, each simulated once per shape and repeated. */
enum class LayerKind { dense, moe };

/** One representative layer (or the stack's ends) for a token count: the compute of each device
 *  between collectives, in order, and the collectives between them. Built by IterationModel; the
 *  engine runs it on SimGrid once per (kind, tokens) and replays it afterwards. */
struct LayerPlan {
  /** Compute segments; segment i runs before collective i (if any). Per local device. */
  std::vector<std::vector<DeviceWork>> segments;
  std::vector<CollectiveWork> collectives;    ///< local device ids (0 .. devices per replica - 1)
  std::vector<std::string> collective_kinds;  ///< "comm.tensor_parallel", "comm.all_to_all", ...
  /** Extra wait of every device for the slowest expert-parallel rank beyond what the per-device means show
   *  (mean over routing draws of the maximum minus the maximum of the means). */
  double imbalance_wait_s = 0.0;
  double model_flops = 0.0;   ///< useful FLOPs of the layer on the replica
};

/** Per-replica iteration cost model: kernels from the perf layer, collectives from the system layer
 *  (through the engine), one layer of each kind at a time.
 *
 *  Devices of a replica: local id = (stage x data + data rank) x tensor + tensor rank. Attention and dense
 *  layers are tensor-parallel within (stage, data rank); the batch is split evenly over the data ranks.
 *  Experts: expert = 1 tensor-splits every expert like the dense FFN (an all-reduce after it); expert =
 *  data x tensor spreads whole experts over the stage, tokens split over the tensor ranks and exchanged
 *  by a dispatch and a combine all-to-all, then all-gathered in the tensor group. The routing draw per
 *  token count is deterministic (seeded by the count) and averaged over several draws. */
class IterationModel {
 public:
  IterationModel(const scenario::Scenario& s, const scenario::PoolSpec& pool, const catalog::AcceleratorSpec& accel,
                 const perf::ComputeTimeModel& compute);

  int devices() const { return pool_.devices_per_replica(); }
  int stages() const { return pool_.pipeline; }
  /** Layers of `kind` on pipeline stage `stage`. */
  int layers(int stage, LayerKind kind) const;
  /** The local devices of a stage. */
  std::vector<int> stage_devices(int stage) const;

  /** The part of one layer that depends only on the iteration's token count (projections, FFN or experts,
   *  norms, collectives), for `tokens` tokens over the replica. */
  LayerPlan layer(LayerKind kind, double tokens) const;
  /** Attention kernels of one layer for the shape (prefill flash attention and decode attention over the
   *  paged KV cache), per device of one stage. */
  std::vector<DeviceWork> attention(const IterationShape& shape) const;
  /** Embedding lookup (first stage) and output projection + sampling (last stage), per device of `stage`. */
  std::vector<DeviceWork> ends(int stage, const IterationShape& shape) const;
  /** Bytes each device of stage s sends to stage s + 1 (the activations of the iteration's tokens). */
  double pipeline_bytes_per_device(double tokens) const;
  /** Useful FLOPs of the attention of one layer and of the ends, for MFU. */
  double attention_flops(const IterationShape& shape) const;
  double ends_flops(const IterationShape& shape) const;

 private:
  DeviceWork kernels(const std::vector<perf::KernelOp>& ops) const;
  perf::KernelOp gemm(const char* name, double m, double n, double k, const std::string& dtype = "") const;
  perf::KernelOp vector_op(perf::KernelClass cls, const char* name, double bytes, double flops) const;

  const scenario::Scenario& s_;
  scenario::PoolSpec pool_;
  const catalog::AcceleratorSpec& accel_;
  const perf::ComputeTimeModel& compute_;
  std::unique_ptr<Router> router_;
  double b_ = 2.0;       ///< bytes per weight element
  double act_b_ = 2.0;   ///< bytes per activation element
  double kv_b_ = 2.0;    ///< bytes per KV element
  std::vector<int> moe_layers_per_stage_, dense_layers_per_stage_;
};

/** Which datacenter (placement index) each replica of each pool sits in, in pool order then replica order:
 *  a pool pinned to a datacenter goes there whole, the others are spread by the placement shares. */
std::vector<std::vector<int>> replica_sites(const scenario::Scenario& s);

}  // namespace moesim::workload
