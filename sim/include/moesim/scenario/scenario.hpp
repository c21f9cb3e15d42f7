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
/** Element type of the gradient buffers the backward accumulates into and the data-parallel reduction carries:
 *  automatic = fp32 for a bf16 model on GPUs (Megatron-LM turns on --accumulate-allreduce-grads-in-fp32 whenever
 *  --bf16 is given), else the model's dtype; model = the model's dtype; fp32 = always fp32. */
enum class GradDtype { automatic, model, fp32 };
/** Activation rematerialisation: none; selective = recompute only the attention core (QK^T, softmax, dropout,
 *  attention over V; Korthikanti et al. 2022 §5); full = recompute each layer's forward in the backward pass;
 *  automatic = the first of none, selective, full whose activations fit in device memory. */
enum class Remat { none, full, automatic, selective };

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
  std::string dtype;       ///< weights/activations dtype: "fp32", "bf16", "fp16", "fp8"
  Activation activation = Activation::gelu;
  /** Key/value heads (grouped-query attention: kv_heads < heads; multi-query: 1). = heads by default. */
  int kv_heads = 0;
  /** Experts every token passes through in each MoE layer besides its top-k routed ones (DeepSeek-MoE's
   *  shared experts), each of expert_d_ff. */
  int shared_experts = 0;
  /** The first n layers of each stack have a dense FFN whatever moe_every says (DeepSeek's
   *  first_k_dense_replace). */
  int first_dense_layers = 0;
  /** Multi-token prediction modules (DeepSeek-V3 §2.2), training only: each an embedding, a [2d -> d] projection, one
   *  transformer block like the model's last layer and the shared output head, on the output head's stage. */
  int mtp_depth = 0;
  /** Multi-head latent attention (DeepSeek-V2/V3): 0 = standard attention. The KV cache holds one
   *  compressed latent of kv_lora_rank plus a decoupled RoPE key of qk_rope_head_dim per token and layer. */
  int mla_kv_lora_rank = 0;
  int mla_qk_rope_head_dim = 0;
  int mla_q_lora_rank = 0;  ///< 0 = queries projected directly from d_model

  bool is_moe() const { return experts > 0; }
  bool is_mla() const { return mla_kv_lora_rank > 0; }
  bool gated() const { return activation == Activation::swiglu || activation == Activation::geglu; }
  int total_layers() const { return encoder_layers + decoder_layers; }
  /** Whether FFN `index_in_stack` (0-based, within the encoder or the decoder) is an MoE layer. */
  bool is_moe_layer(int index_in_stack) const {
    return is_moe() && moe_every > 0 && index_in_stack >= first_dense_layers && (index_in_stack + 1) % moe_every == 0;
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
  /** Dropout on the attention probabilities as its own kernel over the materialised scores (Megatron-LM);
   *  0 = none or fused into the softmax. Only whether it is above 0 changes the cost. */
  double attention_dropout = 0.0;
  /** The attention core's kernels: false = materialised scores and probabilities (batched GEMMs, a softmax kernel,
   *  [heads, s, s] stored for the backward); true = one fused FlashAttention kernel per pass (Dao et al. 2022). */
  bool fused_attention = false;
  GradDtype grad_dtype = GradDtype::automatic;  ///< gradient buffers and their data-parallel reduction
  /** What selective recomputation drops and recomputes (training.recompute_modules; Megatron-Core's
   *  --recompute-modules): the attention core (Korthikanti et al. 2022 §5), the layer norms' outputs, MLA's
   *  up-projected queries, keys and values (DeepSeek-V3 §3.3.3: "Recomputation of RMSNorm and MLA Up-Projection"),
   *  the routed experts' activation-function outputs. */
  struct RecomputeModules {
    bool core_attn = true;
    bool layernorm = false;
    bool mla_up_proj = false;
    bool moe_act = false;
  } recompute;
};

/** Whether a token's second-choice expert is used (top-2 gating). Mesh-TensorFlow's `moe_second_policy`
 *  (tensorflow/mesh transformer/moe.py, _top_2_gating) and lingvo's `second_expert_policy`
 *  (lingvo/core/gshard_layers.py, Top2GatingOnLogits), with g2 = the second gate normalised by g1 + g2. */
enum class SecondExpertPolicy {
  all,        ///< always
  none,       ///< never
  threshold,  ///< if g2 > threshold
  random,     ///< with probability min(1, g2 / threshold)
};

/** How the tokens of a device are cut into routing groups. */
enum class GroupSplit {
  fixed,            ///< groups of group_size_tokens (or one group of the device's tokens)
  mesh_tensorflow,  ///< Mesh-TensorFlow's _split_into_groups (group_size_tokens = moe_group_size, the maximum)
};

struct RoutingSpec {
  std::string type;              ///< "uniform", "zipf", "load_vector", "task"
  int tasks = 0;                 ///< task routing: number of tasks (each routes to its own top_k experts)
  double skew = 0.0;             ///< Zipf exponent (zipf)
  std::vector<double> load;      ///< relative expert loads (load_vector), length = experts
  int group_size_tokens = 0;     ///< tokens per routing group; 0 = the tokens of one device
  GroupSplit group_split = GroupSplit::fixed;
  bool dropless = false;         ///< no capacity limit (tokens never dropped)
  /** Node-limited routing: a token's experts on at most this many NVLink nodes (DeepSeek-V3 §2.1.2); 0 = no limit.
   *  Changes the network bytes of a per-node dispatch (ParallelismSpec::expert_dispatch). */
  int max_nodes = 0;
  bool capacity_counts_top_k = true;  ///< capacity = ceil(cf k S / E); false: floor(cf S / E) (Mesh-TF)
  int min_expert_capacity = 0;   ///< lower bound on the per-group capacity
  SecondExpertPolicy second_expert_policy = SecondExpertPolicy::all;  ///< top-2 only
  double second_expert_threshold = 0.0;  ///< threshold / random policies (Mesh-TF default 0.2; GShard 0.5)
  /** Normalised second gate g2 / (g1 + g2) of every token, in [0, 0.5]: a property of a trained router that
   *  moesim's random router does not have. 0.5 (g1 = g2) = no preference between the two choices. */
  double second_gate = 0.5;
};

struct ParallelismSpec {
  int data = 1;      ///< data-parallel replicas of the experts (dense part is replicated over data x expert)
  int expert = 1;    ///< expert-parallel degree (experts sharded over it)
  int tensor = 1;    ///< tensor (Megatron) parallel degree
  int pipeline = 1;  ///< pipeline stages (1F1B schedule)
  int microbatches = 1;
  /** Pipeline schedule: "1f1b", "interleaved_1f1b" (virtual_stages > 1), "dualpipev" (DualPipeV: two chunks per
   *  stage in a V, virtual stage s and 2P - 1 - s on stage s) or "dualpipe" (DualPipe: two directions, each the whole
   *  model over the P stages, stage s holding stage s of one and P - 1 - s of the other); workload::stage_schedule. */
  std::string schedule = "1f1b";
  bool dualpipev() const { return schedule == "dualpipev"; }
  bool dualpipe() const { return schedule == "dualpipe"; }
  int zero_stage = 0;  ///< ZeRO: 1 shards optimizer state, 2 also gradients, 3 also parameters
  /** Megatron sequence parallelism (Korthikanti et al. 2022 §4.2.2; tensor > 1 only): the layer norms, dropouts and
   *  residuals run on 1/tensor of the tokens, so their activations are sharded, and each tensor all-reduce becomes a
   *  reduce-scatter after the block plus an all-gather before the next one (the same bytes). */
  bool sequence_parallel = false;
  bool overlap_tensor_comm = false;  ///< tensor-parallel all-gathers / reduce-scatters beside their GEMMs
  /** The expert all-to-all across GPU nodes: "all_to_all" (one network copy per token and expert, NCCL) or "per_node"
   *  (DeepEP: once per destination node, NVLink forwarding there; workload::CollectiveWork::PerNode). */
  std::string expert_dispatch = "all_to_all";
  /** Overlap of the expert all-to-alls with the compute of another micro-batch (DualPipe's forward-backward chunk
   *  overlap, DeepSeek-V3 §3.2.1; Megatron-Core's --overlap-moe-expert-parallel-comm): 1F1B with one more warm-up
   *  forward per stage, each steady-state forward paired with the backward after it, their compute and
   *  collectives interleaved, the compute on sm_count - comm_sms SMs. */
  bool overlap_expert_comm = false;
  /** SMs the communication kernels hold while a pair overlaps (DeepSeek-V3 §3.2.2: 20 of the H800's 132). */
  int comm_sms = 20;
  /** Shared experts computed beside the dispatch all-to-all instead of after the combine (Megatron-Core's
   *  --moe-shared-expert-overlap). */
  bool overlap_shared_experts = false;
  /** Model chunks per pipeline stage: 1 = plain 1F1B; v > 1 = Megatron-LM's interleaved 1F1B (Narayanan et al. 2021
   *  §2.2.2): stage s holds virtual stages s, s + P, ..., s + (v - 1) P, the bubble shrinks v-fold and each micro-batch
   *  crosses v times as many stage boundaries. */
  int virtual_stages = 1;
  /** Layers of the first and of the last pipeline stage (Megatron-Core's --decoder-first-pipeline-num-layers and
   *  --decoder-last-pipeline-num-layers), 0 = the even split; the other stages split the rest evenly. One model
   *  chunk per stage. Lets the stages holding the embedding and the output head carry fewer layers. */
  int first_stage_layers = 0;
  int last_stage_layers = 0;
  /** Order in which the parallel axes are laid out over consecutive devices (and so chips), innermost
   *  first: the default puts tensor ranks on neighbouring chips (the fastest links: one NVLink node, one
   *  torus line), then expert, data and pipeline (Megatron-LM's and GSPMD's launch order). */
  std::vector<std::string> placement{"tensor", "expert", "data", "pipeline"};
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
  /** GPU board power limit, chip watts (perf/power_limit.hpp); unset = the accelerator's full power. */
  std::optional<double> power_limit_w;
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

/** A distribution of a request length in tokens. */
struct LengthSpec {
  std::string type;     ///< "fixed", "uniform", "lognormal", "trace"
  double value = 0.0;   ///< fixed
  double min = 1.0;     ///< uniform (inclusive), and the clamp of lognormal
  double max = 0.0;     ///< uniform (inclusive), and the clamp of lognormal (0 = none)
  double mean = 0.0;    ///< lognormal: mean of the tokens
  double sigma = 0.0;   ///< lognormal: standard deviation of ln(tokens)
};

/** Request arrivals. */
struct ArrivalSpec {
  std::string type;         ///< "poisson", "gamma", "constant", "bursts", "offline", "trace"
  double rate_per_s = 0.0;  ///< mean arrival rate
  double cv = 1.0;          ///< gamma: coefficient of variation of the inter-arrival times
  int burst_size = 1;       ///< bursts: requests that arrive together
  std::string trace_csv;    ///< trace: resolved path of the request trace CSV
};

/** Which phases a pool of replicas runs (Splitwise / DistServe disaggregation). */
enum class PoolRole { colocated, prefill, decode };

/** A pool of identical serving replicas. One replica is data x tensor x pipeline devices: attention and
 *  dense layers are tensor-parallel over `tensor` and data-parallel over `data` (each data rank holds its
 *  own sequences: DP attention); experts are either in every rank's tensor group (expert = 1, experts
 *  tensor-parallel like the dense FFN) or spread whole over all data x tensor ranks of a stage
 *  (expert = data x tensor: vLLM / SGLang expert parallelism, with token all-to-alls). */
struct PoolSpec {
  PoolRole role = PoolRole::colocated;
  int replicas = 1;
  int data = 1;
  int tensor = 1;
  int expert = 1;
  int pipeline = 1;
  std::string datacenter;       ///< placement datacenter of every replica; "" = spread by placement shares
  int devices_per_replica() const { return data * tensor * pipeline; }
};

/** The serving workload and deployment (a scenario has either this or `training`). */
struct ServingSpec {
  ArrivalSpec arrival;
  LengthSpec prompt_tokens;
  LengthSpec output_tokens;
  long long requests = 0;        ///< 0 = unbounded (duration_s bounds the arrivals)
  double duration_s = 0.0;       ///< 0 = unbounded (requests bounds the arrivals)
  double warmup_s = 0.0;         ///< requests arriving earlier are simulated but not measured
  std::vector<PoolSpec> pools;
  std::string router = "round_robin";  ///< "round_robin", "least_outstanding", "least_kv"
  std::string scheduler = "continuous";  ///< "static", "continuous", "chunked_prefill"
  int max_sequences = 256;       ///< sequences in a batch at once
  int max_batched_tokens = 8192; ///< tokens computed in one iteration (prefill + decode)
  int chunk_tokens = 512;        ///< chunked_prefill: prefill tokens per iteration (Sarathi's chunk)
  bool separate_prefill = false; ///< continuous: prefill-only iterations (vLLM v0) instead of mixed (Orca)
  double iteration_overhead_s = 0.0;  ///< host time per iteration that the devices wait through (0: overlapped)
  double kv_memory_fraction = 0.9;
  bool kv_fraction_of_free = false;  ///< fraction of the memory weights and workspace leave (TensorRT-LLM), not of all
  int kv_block_tokens = 16;
  std::string kv_dtype;          ///< dtype of the KV cache
  double slo_ttft_s = 2.0;       ///< per-request and P99 limits (MLPerf Mixtral-8x7B server defaults)
  double slo_tpot_s = 0.2;
  bool task_experts_only = false;  ///< replicas hold only their task's experts (Task-MoE extraction)
  bool record_requests = false;  ///< store every measured request's timings
  int memo_buckets_per_octave = 32;  ///< iteration-shape memo resolution; 0 = exact shapes
  double sample_interval_s = 0.0;  ///< series sampling interval; 0 = automatic (about 400 points)
};

std::string to_string(PoolRole r);

/** The replicas of a pool spread by placement shares: site k gets those from round(cumulative share before k x
 *  replicas) to round(cumulative share through k x replicas), the last site the rest. The one rule by which the
 *  resolver checks the sites' chips and the engine places the replicas. */
std::vector<long long> replicas_per_site(const std::vector<double>& shares, long long replicas);

/** A fully resolved scenario: every field present, defaults filled in, cross-field checks done. */
struct Scenario {
  std::string name;
  std::string description;
  std::uint64_t seed = 1;
  std::string source_file;  ///< the YAML it came from (empty if built in code)
  ModelSpec model;
  TrainingSpec training;           ///< unused by serving scenarios
  std::optional<ServingSpec> serving;  ///< set for a serving scenario (then there is no training section)
  RoutingSpec routing;
  ParallelismSpec parallelism;
  ClusterSpec cluster;
  std::vector<PlacementEntry> placement;
  SplitKind split = SplitKind::data;
  WanSpec wan;
  EnergySpec energy;
  nlohmann::json resolved;  ///< the same scenario as JSON (what the store keeps)
  nlohmann::json compare;   ///< the raw `compare:` alternatives (overlays), if any

  bool is_serving() const { return serving.has_value(); }
  /** Optimizer steps of the run when the tokens are given (0 when derived from hardware_flops). */
  double steps() const { return training.tokens / training.batch_tokens; }
};

std::string to_string(Architecture a);
std::string to_string(Activation a);
std::string to_string(Optimizer o);
std::string to_string(Remat r);
std::string to_string(SplitKind s);

}  // namespace moesim::scenario
