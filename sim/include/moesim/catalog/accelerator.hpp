// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moesim::catalog {

/** Kind of accelerator: decides the default topology family and the MoE dispatch implementation. */
enum class AcceleratorKind { tpu, gpu };

/** How tokens reach experts on this hardware: TPU MoE code (GShard, Mesh-TF, T5X) uses one-hot
 *  dispatch/combine einsums (FLOPs); GPU frameworks gather/scatter rows (bytes). */
enum class DispatchStyle { einsum, gather };

/** Which watts a power figure covers. `chip`: the accelerator package only (datasheet TDP, nvidia-smi
 *  board power); `system`: chip plus its share of host CPU, DRAM, NIC and fans, as in Patterson et
 *  al. 2021's "measured system power". The energy layer adds host_overhead_w only for `chip`. */
enum class PowerConvention { chip, system };

/** A chip's power while it computes, as a function of what its matrix units and its HBM achieve (W):
 *
 *    P(u_flop, u_hbm) = active_w + min(full_w - active_w,
 *                                      (full_w - active_w) u_flop / flop_utilisation_at_full_w
 *                                      + (memory_bound_w - active_w) u_hbm / hbm_utilisation_at_memory_bound_w)
 *
 *  u_flop: matrix-unit FLOPs achieved / datasheet peak; u_hbm: HBM bytes achieved / datasheet bandwidth, both
 *  averaged over the time the chip is busy. Dynamic power grows with the work the matrix units and the memory
 *  do (an energy per FLOP and one per byte, which add) up to the measured maximum. End points: P(0, 0) =
 *  active_w (a job on the chip, nothing achieved); P = full_w from u_flop = flop_utilisation_at_full_w on;
 *  P(0, hbm_utilisation_at_memory_bound_w) = memory_bound_w. Monotone in both; negative inputs count as 0. */
struct PowerCurve {
  double active_w = 0.0;
  double full_w = 0.0;
  double memory_bound_w = 0.0;
  double flop_utilisation_at_full_w = 1.0;
  double hbm_utilisation_at_memory_bound_w = 1.0;

  double power_w(double flop_utilisation, double hbm_utilisation) const;
  /** The same curve with `w` added to every figure (a per-chip host overhead). */
  PowerCurve shifted(double w) const;
};

/** One accelerator of the catalog (profiles/accelerators/NAME.yaml). All figures are per chip and SI.
 *  Every numeric field has an entry in `sources` (field name -> citation). */
struct AcceleratorSpec {
  std::string name;          ///< catalog key, e.g. "tpu_v3"
  std::string display_name;  ///< e.g. "Google TPU v3"
  AcceleratorKind kind = AcceleratorKind::gpu;
  DispatchStyle dispatch = DispatchStyle::gather;
  /** Whether it serves MoE models dropless: GPU engines (vLLM, SGLang, TensorRT-LLM) route every token to its
   *  experts with no capacity limit; TPU einsum dispatch keeps its capacity-padded buffers, as in training. */
  bool serves_dropless() const { return dispatch != DispatchStyle::einsum; }

  int devices_per_chip = 1;  ///< devices the programming model sees per chip (TPU v2/v3: 2 cores)

  /** Datasheet dense matrix-unit peak per chip, by dtype name ("fp32", "tf32", "bf16", "fp16",
   *  "fp8"). A dtype missing here is not supported by the matrix unit. */
  std::map<std::string, double> peak_matmul_flops_per_s;
  /** Peak of the vector/scalar units per chip (non-matmul work), FLOP/s. */
  double peak_vector_flops_per_s = 0.0;
  /** Measured ceilings where known (e.g. H100: 798 TFLOP/s bf16 8192^3, 3.0 TB/s copy); absent = unknown. */
  std::optional<double> measured_matmul_flops_per_s;  ///< bf16 dense GEMM ceiling
  std::optional<double> measured_hbm_bandwidth_bytes_per_s;

  double hbm_bytes = 0.0;                      ///< device memory per chip
  double hbm_bandwidth_bytes_per_s = 0.0;      ///< datasheet
  int matmul_tile = 1;                          ///< matrix dims are padded to this (TPU MXU: 128)
  /** GPU wave quantisation: streaming multiprocessors, and the output tile [rows, columns] one of them computes
   *  at a time in a large GEMM. A GEMM's output tiles run in waves of sm_count; the last wave may leave SMs
   *  idle (perf::wave_efficiency). 0 / empty = not modelled (TPUs: one matrix unit runs the tiles in turn). */
  int sm_count = 0;
  std::vector<int> gemm_block_tile;

  // --- Interconnect -------------------------------------------------------------------------
  /** TPU inter-chip interconnect: links per chip, bandwidth per link per direction, hop latency. */
  int ici_links_per_chip = 0;
  double ici_link_bandwidth_bytes_per_s = 0.0;
  double ici_latency_s = 0.0;
  /** Fraction of the ICI line rate a collective's payload gets (measured against the line rate); 1 when not given. */
  double ici_efficiency = 1.0;
  /** Largest pod: torus dimensions in chips (v3: [32, 32]; v4: [16, 16, 16]). */
  std::vector<int> pod_dims;
  /** GPU scale-up: NVLink bandwidth per GPU per direction through the node's switch, and latency. */
  double nvlink_bandwidth_bytes_per_s = 0.0;
  /** Fraction of the NVLink line rate a collective's payload gets (the protocol's overhead); 1 when not given. */
  double nvlink_efficiency = 1.0;
  double nvlink_latency_s = 0.0;
  int gpus_per_node = 0;
  /** GPU scale-out: NIC bandwidth per GPU per direction (one NIC per GPU, rail-optimised), latency. */
  double nic_bandwidth_bytes_per_s = 0.0;
  double nic_latency_s = 0.0;
  /** Fixed software cost of launching one collective (kernel launch, synchronisation), paid once per
   *  collective on top of its rounds' link latencies and transfer times; 0 = not modelled. */
  double collective_overhead_s = 0.0;

  // --- Power ----------------------------------------------------------------------------------
  // The chip's power curve (PowerCurve): while a job runs, a chip draws active_w plus a term for what its
  // matrix units and its HBM achieve, up to full_w. A chip outside any job draws idle_w.
  PowerConvention power_convention = PowerConvention::chip;
  double tdp_w = 0.0;      ///< thermal design power of the chip (datasheet)
  double idle_w = 0.0;     ///< powered on, no job on the chip
  /** A job on the chip, zero achieved utilisation (communicating, waiting at a barrier): the curve's
   *  low end, compute_power_w(0, 0). */
  double active_w = 0.0;
  /** The measured maximum: the curve's high end, reached at flop_utilisation_at_full_w. */
  double full_w = 0.0;
  /** Memory-bound kernels at hbm_utilisation_at_memory_bound_w of the HBM bandwidth with idle matrix
   *  units (decode attention, small-batch GEMMs, elementwise). = full_w when no measurement distinguishes
   *  the two. */
  double memory_bound_w = 0.0;
  /** Achieved matrix-unit utilisation (of the datasheet peak) at which the chip draws full_w; the
   *  curve rises linearly to it. 1 = full_w only at the datasheet peak. */
  double flop_utilisation_at_full_w = 1.0;
  /** Achieved HBM utilisation (of the datasheet bandwidth) at which memory-bound kernels draw
   *  memory_bound_w. */
  double hbm_utilisation_at_memory_bound_w = 1.0;
  double host_overhead_w = 0.0;  ///< host CPU/DRAM/NIC/fans per chip, added when convention is `chip`

  // --- Embodied carbon inputs (LLMCarbon's method) -------------------------------------------
  std::optional<double> die_area_mm2;
  std::optional<double> lifetime_years;

  std::map<std::string, std::string> sources;  ///< field name -> citation
  std::string notes;

  /** Matrix-unit peak for `dtype`; throws moesim::Error naming the supported dtypes. */
  double peak_flops_for(const std::string& dtype) const;

  /** The chip's power curve (PowerCurve) in this spec's convention, host overhead not added. */
  PowerCurve power_curve() const;
  /** power_curve().power_w(flop_utilisation, hbm_utilisation). */
  double compute_power_w(double flop_utilisation, double hbm_utilisation) const;
  /** Whether a board power limit of `limit_w` (chip watts) can be set: above active_w (a job on the chip doing
   *  nothing draws that much at any clock) and at most full_w (the curve's maximum). The scenario resolver and the
   *  power-limited compute model (perf/power_limit.hpp) both hold a limit to this. */
  bool power_limit_allowed(double limit_w) const { return limit_w > active_w && limit_w <= full_w; }
};

}  // namespace moesim::catalog
