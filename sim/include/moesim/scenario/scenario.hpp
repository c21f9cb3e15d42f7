// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/datacenter.hpp"

namespace moesim::scenario {

/** Transformer stack layout. */
enum class Architecture { decoder_only, encoder_decoder };
/** FFN activation: gated variants (GLU family) have three weight matrices instead of two. */
enum class Activation { relu, gelu, swiglu, geglu };
enum class Optimizer { adam, adamw, adafactor, sgd };
/** Activation rematerialisation (recompute the forward pass during the backward pass). */
enum class Remat { none, full, automatic };

/** The model: a (Mixture-of-Experts) transformer. A dense model is the experts = 0 case. */
struct ModelSpec {
  std::string type;  ///< registry name, e.g. "moe_transformer"
  Architecture architecture = Architecture::decoder_only;
  int encoder_layers = 0;  ///< 0 for decoder-only
  int decoder_layers = 0;
  int d_model = 0;
  int d_ff = 0;            ///< dense FFN hidden size
  int expert_d_ff = 0;     ///< expert FFN hidden size (defaults to d_ff)
  int heads = 0;
  int d_head = 0;
  int experts = 0;         ///< experts per MoE layer; 0 = dense model
  int moe_every = 1;       ///< every n-th FFN is an MoE layer (1 = all, 2 = every other)
  int top_k = 1;
  /** Expert capacity = ceil(capacity_factor x top_k x group_tokens / experts): 1.0 is exactly enough
   *  for a perfectly balanced top-k load. */
  double capacity_factor = 1.0;
  int vocab = 0;
  int seq_len = 0;         ///< tokens per sequence (encoder input for encoder-decoder)
  int target_seq_len = 0;  ///< decoder tokens per sequence (encoder-decoder); = seq_len if unset
  std::string dtype;       ///< weights/activations dtype: "fp32", "bf16", "fp16"
  Activation activation = Activation::gelu;

  bool is_moe() const { return experts > 0; }
  bool gated() const { return activation == Activation::swiglu || activation == Activation::geglu; }
  int total_layers() const { return encoder_layers + decoder_layers; }
  /** Whether FFN `index_in_stack` (0-based, within the encoder or the decoder) is an MoE layer. */
  bool is_moe_layer(int index_in_stack) const {
    return is_moe() && moe_every > 0 && (index_in_stack + 1) % moe_every == 0;
  }
};

struct TrainingSpec {
  double tokens = 0.0;        ///< training tokens (encoder input tokens for encoder-decoder); 0 if derived
  /** The run's compute as executed on the hardware; when set, tokens = this / simulated FLOPs per token. */
  std::optional<double> hardware_flops;
  double batch_tokens = 0.0;  ///< tokens per optimizer step (global batch)
  Optimizer optimizer = Optimizer::adam;
  Remat rematerialization = Remat::automatic;
  std::optional<double> duration_days;  ///< pins the job length (energy accounting); else simulated
  int steps_simulated = 3;    ///< steps simulated in detail, each with its own routing draw
  bool overlap_grad_reduce = true;  ///< gradient reduction overlaps the backward pass
};

struct RoutingSpec {
  std::string type;              ///< "uniform", "zipf", "load_vector"
  double skew = 0.0;             ///< Zipf exponent (zipf)
  std::vector<double> load;      ///< relative expert loads (load_vector), length = experts
  int group_size_tokens = 0;     ///< tokens per routing group; 0 = the tokens of one device
  bool dropless = false;         ///< no capacity limit (tokens never dropped)
  bool capacity_counts_top_k = true;  ///< capacity = ceil(cf k S / E); false: floor(cf S / E) (Mesh-TF)
  int min_expert_capacity = 0;   ///< lower bound on the per-group capacity
};

struct ParallelismSpec {
  int data = 1;      ///< data-parallel replicas of the experts (dense part is replicated over data x expert)
  int expert = 1;    ///< expert-parallel degree (experts sharded over it)
  int tensor = 1;    ///< tensor (Megatron) parallel degree
  int pipeline = 1;  ///< pipeline stages (1F1B schedule)
  int microbatches = 1;
  std::string schedule = "1f1b";
  int zero_stage = 0;  ///< ZeRO: 1 shards optimizer state, 2 also gradients, 3 also parameters
  int devices() const { return data * expert * tensor * pipeline; }
};

struct TopologySpec {
  std::string type;            ///< "torus_2d", "torus_3d", "nvlink_fat_tree"
  std::vector<int> dims;       ///< torus dimensions in chips
  int gpus_per_node = 0;       ///< nvlink_fat_tree: 0 = the accelerator's default
  int nodes_per_leaf = 0;      ///< fat-tree: nodes under one leaf switch (0 = default)
  double oversubscription = 1.0;  ///< fat-tree: leaf uplink oversubscription (1 = non-blocking)
  /** Overrides of the accelerator's link figures (0 = catalog value). */
  double link_bandwidth_bytes_per_s = 0.0;
  double link_latency_s = 0.0;
};

struct ClusterSpec {
  std::string accelerator;  ///< catalog name
  int count = 0;            ///< chips
  TopologySpec topology;
};

/** How a job spans several datacenters. */
enum class SplitKind { data, expert, pipeline };

struct PlacementEntry {
  std::string datacenter;                       ///< catalog name or inline name
  std::optional<catalog::DatacenterSpec> inline_spec;
  double share = 1.0;                           ///< fraction of the chips
};

struct WanSpec {
  double bandwidth_bytes_per_s = 0.0;
  double latency_s = 0.0;
};

struct EnergySpec {
  bool embodied = false;            ///< also report embodied carbon (LLMCarbon's method)
  std::optional<double> average_chip_power_w;  ///< pins IT power per chip (accounting with published power)
  std::string start_time_utc;       ///< ISO 8601; with hourly intensity series, integrates over the run
};

/** A fully resolved scenario: every field present, defaults filled in, cross-field checks done. */
struct Scenario {
  std::string name;
  std::string description;
  std::uint64_t seed = 1;
  std::string source_file;  ///< the YAML it came from (empty if built in code)
  ModelSpec model;
  TrainingSpec training;
  RoutingSpec routing;
  ParallelismSpec parallelism;
  ClusterSpec cluster;
  std::vector<PlacementEntry> placement;
  SplitKind split = SplitKind::data;
  WanSpec wan;
  EnergySpec energy;
  nlohmann::json resolved;  ///< the same scenario as JSON (what the store keeps)
  nlohmann::json compare;   ///< the raw `compare:` alternatives (overlays), if any

  /** Optimizer steps of the run when the tokens are given (0 when derived from hardware_flops). */
  double steps() const { return training.tokens / training.batch_tokens; }
};

std::string to_string(Architecture a);
std::string to_string(Activation a);
std::string to_string(Optimizer o);
std::string to_string(Remat r);
std::string to_string(SplitKind s);

}  // namespace moesim::scenario
