// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::workload {

/** Parameter counts of the model (whole model, not per device). */
struct ParamCounts {
  double dense = 0.0;        ///< attention, dense FFN, routers, embedding (replicated over data x expert)
  double expert = 0.0;       ///< all experts of all MoE layers
  double expert_per_layer = 0.0;
  double active_per_token_decoder = 0.0;  ///< parameters touched by one decoder token (top-k experts)
  double active_per_token_encoder = 0.0;
  double total() const { return dense + expert; }
};
ParamCounts count_params(const scenario::ModelSpec& m);

/** Parameters one device holds for one layer (tensor-parallel shards, its share of the experts), in
 *  elements: `dense` is replicated over data x expert (attention, cross-attention, router or dense FFN),
 *  `expert` over data. */
struct LayerParams {
  double dense = 0.0;
  double expert = 0.0;
};
LayerParams layer_params(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p, bool decoder, bool moe);
/** Parameters per device of one multi-token prediction module's projection (model.mtp_depth; DeepSeek-V3 §2.2): a
 *  [2 d_model -> d_model] matrix split over the tensor ranks. Its block counts as a layer (layer_params). */
double mtp_projection_params(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p);

/** The virtual stage (the position along the model a micro-batch runs through, 0 to chain_length - 1) of model chunk
 *  `chunk` of pipeline stage `stage`: chunk x P + stage (Megatron-LM's interleaved order: each chunk visits the stages
 *  in order); with DualPipeV's V shape (parallelism.schedule dualpipev, two chunks) stage for chunk 0 and 2 P - 1 -
 *  stage for chunk 1, so that the micro-batch runs down the stages and back up and stage 0 holds both ends of the
 *  model; with DualPipe (dualpipe), whose chunk is the direction, stage for chunk 0 (the micro-batches fed at stage 0)
 *  and P - 1 - stage for chunk 1 (fed at stage P - 1): each direction runs the whole model over the P stages. */
int virtual_stage(const scenario::ParallelismSpec& p, int stage, int chunk);
/** Virtual stages a micro-batch runs through: P x virtual_stages, or P with DualPipe (two directions of P). */
int chain_length(const scenario::ParallelismSpec& p);
/** The pipeline stage and model chunk that hold virtual stage `vs` (the inverse of virtual_stage) for a micro-batch
 *  of direction `direction` (DualPipe's chunk: the micro-batch's; 0 for every other schedule). */
struct StageChunk {
  int stage = 0;
  int chunk = 0;
};
StageChunk stage_chunk(const scenario::ParallelismSpec& p, int vs, int direction = 0);
/** The direction of micro-batch `mb`: DualPipe feeds micro-batches 0 to M/2 - 1 at stage 0 (direction 0) and the rest
 *  at stage P - 1 (direction 1); 0 for every other schedule. */
int direction_of(const scenario::ParallelismSpec& p, int mb);
/** The last micro-batch that chunk `chunk` runs (M - 1; with DualPipe M/2 - 1 for chunk 0). */
int last_microbatch(const scenario::ParallelismSpec& p, int chunk);
/** The pipeline stage that holds the last virtual stage (the output head and the loss) of direction 0: P - 1, or 0
 *  with DualPipeV. */
int last_stage(const scenario::ParallelismSpec& p);
/** Layers (indices into the stack, encoder first) of model chunk `chunk` of pipeline stage `stage`: its virtual stage
 *  vs (virtual_stage) of P x virtual_stages holds layers [vs L / (P v), (vs + 1) L / (P v)) (integer division), so
 *  floor or ceil of L / (P v) each, never none (the resolver ensures L >= P v). */
std::vector<int> chunk_layers(int layers, const scenario::ParallelismSpec& p, int stage, int chunk);
/** Whether a multi-token prediction module's block is an MoE block: the model's last layer's kind. */
bool mtp_block_moe(const scenario::ModelSpec& m);
/** The blocks model chunk `chunk` of stage `stage` runs: its layers (chunk_layers over the model's total_layers()) and,
 *  on the chunk that holds the output head (the last virtual stage), the multi-token prediction modules' blocks,
 *  numbered after the model's layers (total_layers() + k). The step builder and the memory estimate both use it. */
std::vector<int> chunk_blocks(const scenario::ModelSpec& m, const scenario::ParallelismSpec& p, int stage, int chunk);
/** All layers of a pipeline stage, its chunks in order. */
std::vector<int> stage_layers(int layers, const scenario::ParallelismSpec& p, int stage);
/** One task of a pipeline stage's schedule: the forward or the backward of micro-batch `mb` on model chunk `chunk`. */
struct PipelineTask {
  bool backward = false;
  int mb = 0;
  int chunk = 0;
  /** A steady-state task: a forward and the backward after it, which overlapped expert communication
   *  (parallelism.overlap_expert_comm) runs as one pair. Warm-up forwards and cool-down backwards are not; with
   *  DualPipeV, the forward-backward pairs of its schedule (F&B). */
  bool steady = false;
  /** DualPipeV's zero-bubble backward (its enable_zb): the input gradients only; the weight gradients are left to a
   *  later weights task of this stage, which takes the oldest such backward's. */
  bool defer_weights = false;
  /** DualPipeV's W step (backward is also set): the weight gradients of micro-batch `mb` on chunk `chunk`, deferred by
   *  its backward. */
  bool weights = false;
};
/** The order in which stage `stage` runs its tasks (the step builder's order, and what estimate_memory_need walks to
 *  find the activations a stage holds at its peak). 1F1B (PipeDream-Flush, Narayanan et al. 2021 §2.2.1):
 *  min(P - s - 1, M) warm-up forwards, then one forward and one backward in turn, then the remaining backwards.
 *  Interleaved (v > 1 chunks per stage; Megatron-LM's schedules.py, Narayanan et al. 2021 §2.2.2): a warm-up of
 *  min(2 (P - s - 1) + (v - 1) P, M v) forwards; the k-th forward runs chunk (k / P) mod v of micro-batch
 *  (k / (P v)) P + k mod P, the k-th backward the same micro-batch on chunk v - 1 - (k / P) mod v. With
 *  parallelism.overlap_expert_comm the warm-up is one forward longer (Megatron-Core's combined 1F1B). */
/** DualPipeV (parallelism.schedule dualpipev; deepseek-ai/DualPipe's dualpipev.py, Sea AI Lab's "cut-in-half" of
 *  DualPipe, DeepSeek-V3 arXiv 2412.19437 §3.2.1), on stage r of P with M micro-batches (M >= 2P), chunk 0 going down
 *  the stages and chunk 1 back up, each chunk's forwards and backwards in micro-batch order: 2 (P - r - 1) forwards
 *  of chunk 0; r + 1 times F0 F1; P - r - 1 times B1 F1; M - 2P + r + 1 times (F0&B1) (F1&B0), the two of each pair
 *  overlapped (not the very first on the last stage); P - r - 1 times B1 (F1&B0); r + 1 times B1 B0; P - r - 1 times
 *  B0. Zero bubble (Qi et al. 2024, as dualpipev.py enables it): the B1 of step 3, the second half of step 6's
 *  backwards (from pair (r + 1) / 2, starting with its B1 on odd stages, its B0 on even ones) and the B0 of step 7
 *  compute only input gradients (defer_weights); a W task (weights) after each step-3 B1, before each step-7 B0 and
 *  r + 1 at the end computes the oldest deferred backward's weight gradients.
 *  DualPipe (dualpipe; dualpipe.py), on stage r of P (even) with M micro-batches (even, M >= 2P): DualPipeV's order
 *  for half-stage h = min(r, P - 1 - r) of P/2 with M/2 micro-batches per chunk, its chunk 0 being direction 0 on the
 *  first half of the stages and direction 1 on the second half (chunk 1 the other), direction 1's micro-batches
 *  numbered from M/2. */
std::vector<PipelineTask> stage_schedule(const scenario::ParallelismSpec& p, int stage);
/** Micro-batch-chunks of activations stage `stage` holds at the peak of the schedule (its warm-up forwards and the
 *  first steady-state forward), in micro-batches of a whole stage, when its chunks are of equal size: 1F1B
 *  min(P - s, M) (Narayanan et al. 2021; Korthikanti et al. 2022 §4.2.3); interleaved
 *  min(2 (P - s - 1) + (v - 1) P + 1, M v) chunks of 1/v of the stage, i.e. P + (P - 1) / v micro-batches at
 *  stage 0 when M is large. (estimate_memory_need walks stage_schedule with each chunk's own bytes instead.) */
double inflight_microbatches(const scenario::ParallelismSpec& p, int stage = 0);

/** Bytes of one element of `dtype` ("fp32" 4, "bf16"/"fp16" 2, "fp8" 1); throws on an unknown dtype. */
double dtype_bytes(const std::string& dtype);

/** The dtype training holds the weights in: the model's, except that fp8 training keeps bf16 weights (fp8 is
 *  only the GEMMs' input format: NVIDIA Transformer Engine casts the bf16 weights and activations to fp8 per GEMM;
 *  DeepSeek-V3, arXiv 2412.19437 §3.3: "master weights, weight gradients and optimizer states are stored in higher
 *  precision"). Serving holds fp8 weights as they are and does not use this. */
std::string training_weight_dtype(const std::string& dtype);

/** The dtype training stores its activations in and sends them between devices in: the model's, except bf16 for an
 *  fp8 model. fp8 is only the GEMMs' input format (Transformer Engine casts each GEMM's inputs to fp8 inside the layer;
 *  the layer norms, softmax, activation functions and residual stream stay bf16), so what crosses devices is bf16:
 *  the tensor-parallel all-reduces, all-gathers and reduce-scatters and the pipeline's point-to-point sends
 *  (DeepSeek-V3, arXiv 2412.19437 §3.3.3: fp8 communication only where the activation is quantised for an fp8 GEMM
 *  anyway; the training step sends the MoE dispatch, the input of the experts' up-projection, in the model's dtype).
 *  Stored activations are counted at this width too (workload::estimate_memory_need), except the GEMMs' inputs,
 *  which are stored as the GEMMs' fp8 casts (the model's dtype), and so are the step's elementwise kernels'
 *  (layer norms, softmax, activation functions, residual adds, permutes). */
std::string training_activation_dtype(const std::string& dtype);

/** Bytes of one gradient element (training.grad_dtype): 4 for fp32, or for auto with a bf16 or fp8 model on a GPU
 *  (Megatron-LM's rule; fp8 training accumulates its weight gradients in fp32 too, Transformer Engine's
 *  main_grad); `model`: the training weights' dtype (training_weight_dtype: bf16 for an fp8 model). */
double grad_dtype_bytes(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel);

/** HBM bytes the optimizer step streams per parameter it updates, with weights held in `dtype` (for training the
 *  training_weight_dtype of the model's) and gradients of `grad_bytes` per element.
 *
 *  `fused` (TPUs: XLA compiles the update into one fusion, as Mesh-TensorFlow, Lingvo and JAX programs run): the
 *  gradient is read, the weights (and, with a 16-bit model dtype, their fp32 master copy) and the state are read and
 *  written, once each.
 *
 *  Not fused (GPUs: the eager passes of Megatron-LM's Float16OptimizerWithFloat16Params.step with apex's FusedAdam;
 *  DeepSpeed's FP16_Optimizer makes the same passes): 16-bit gradients are cast to fp32 copies (read 2, write 4;
 *  fp32 gradients are used as they are); with fp16 only, the loss scale is taken out and the copies are
 *  checked for inf/NaN in place (read and write 4; bf16 needs no loss scaling, Kalamkar et al. 2019); the global
 *  gradient norm for clipping reads them (4); the update reads the fp32 gradient, master weight and state and writes
 *  the weight and state; the master weights are copied to the model's (read 4, write 2); the gradient buffer is
 *  zeroed for the next step (write `grad_bytes`). fp32 training has no casts or copies.
 *
 *  State: Adam's m and v (fp32), SGD's momentum, Adafactor's factored moments, O(rows + cols), ~0 per parameter.
 *  Throws on an unknown dtype. */
double optimizer_step_bytes_per_param(scenario::Optimizer optimizer, const std::string& dtype, double grad_bytes, bool fused);

/** Key/value heads one tensor rank holds: kv_heads / tensor, or one (replicated) when there are fewer key/value heads
 *  than tensor ranks (GQA/MQA: Megatron-Core and vLLM replicate each query group's K/V projection over the ranks that
 *  share it). Training's step and memory and serving's pools all use it. */
double kv_heads_per_rank(const scenario::ModelSpec& m, double tensor);

/** Attention parameters of one layer (whole model width): Q and O of `heads`, K and V of `kv_heads`
 *  (grouped-query attention), or multi-head latent attention's projections (DeepSeek-V2 §2.1). */
double attention_params(const scenario::ModelSpec& m);

/** Device-memory need of one device (the most loaded pipeline stage), and the rematerialisation decision. */
struct MemoryEstimate {
  double params_bytes = 0.0;
  double grads_bytes = 0.0;
  double optimizer_bytes = 0.0;
  double activations_bytes = 0.0;         ///< with the chosen rematerialisation
  double activations_no_remat_bytes = 0.0;
  double capacity_bytes = 0.0;            ///< device memory (chip HBM / devices per chip)
  bool remat = false;      ///< full rematerialisation (each layer's forward recomputed)
  bool selective = false;  ///< selective recomputation (only the attention core recomputed)
  double total_bytes() const { return params_bytes + grads_bytes + optimizer_bytes + activations_bytes; }
};

/** As estimate_memory, without the check: the estimate of the most loaded stage (with the heaviest
 *  rematerialisation the scenario allows when nothing fits), whose total_bytes() may exceed capacity_bytes. */
MemoryEstimate estimate_memory_need(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel);

/** Estimates per-device memory and decides rematerialisation (auto: none, else selective, else full: the first
 *  that fits).
 *  Throws moesim::Error with the numbers when the model cannot fit even with rematerialisation. */
MemoryEstimate estimate_memory(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel);

}  // namespace moesim::workload
