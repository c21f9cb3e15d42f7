// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "moesim/perf/compute_model.hpp"

namespace moesim::perf {

/** One timed kernel at one shape of a measured profile (profiles/measured/README.md, `entries`).
 *  Required fields are validated on load; shape fields are 0 / empty where the entry has none. */
struct ProfileEntry {
  KernelClass cls = KernelClass::gemm;  ///< never optimizer (the profiler does not measure it)
  std::string kernel;                   ///< e.g. "qkv_proj", "expert_ffn", "router", "decode_attention"
  std::string dtype;                    ///< "bf16", "fp32" or "fp8" (decode_attention: the KV-cache type)
  double flops = 0.0;                   ///< FLOPs of one call (0 for data-movement kernels)
  double bytes = 0.0;                   ///< minimum device-memory bytes of one call
  double time_s = 0.0;                  ///< median time of one call, > 0
  double time_p10_s = 0.0;
  double time_p90_s = 0.0;
  long repeats = 0;
  // Shape and context (0 / "" = absent in the file).
  double m = 0.0, n = 0.0, k = 0.0, batch = 0.0;
  double tokens = 0.0, d_model = 0.0, d_ff = 0.0, experts = 0.0, top_k = 0.0, tokens_per_expert = 0.0, seq = 0.0;
  double kv_len = 0.0, q_heads = 0.0, kv_heads = 0.0, d_head = 0.0, block_size = 0.0;  ///< attention
  std::string model, activation, strategy, distribution;
  std::optional<bool> fastest;  ///< expert_ffn: the strategy that is the expert-FFN time
  int line = 0;                 ///< where the entry starts in the file (1-based; 0 = unknown)

  /** Achieved FLOP/s (flops / time_s). */
  double flops_per_s() const { return flops / time_s; }
  /** Achieved bytes/s (bytes / time_s). */
  double bytes_per_s() const { return bytes / time_s; }
};

/** The device's own measured ceilings (`ceilings` of the profile), SI. */
struct ProfileCeilings {
  double matmul_bf16_flops_per_s = 0.0;                 ///< dense bf16 GEMM 8192^3 (required)
  std::optional<double> matmul_fp32_flops_per_s;        ///< dense true-fp32 GEMM (absent or null = unknown)
  std::optional<double> matmul_fp8_flops_per_s;         ///< dense fp8 (E4M3) GEMM via cuBLASLt (absent = no fp8 GEMM)
  double copy_bytes_per_s = 0.0;                        ///< device-to-device copy, read + write (required)
};

/** A measured kernel profile, profiles/measured/<device>.json, written by kernels/ (moesim-profile).
 *  Format: profiles/measured/README.md (format "moesim-measured-profile", version 1).
 *
 *  A profile whose provenance says `"measured": false` (the synthetic test fixtures) loads, but
 *  measured() is false and label() says so; every model built from it marks its times synthetic
 *  (KernelTime::synthetic, compute_paths(), describe()). make_compute_model() refuses such a file
 *  under profiles/measured/. */
class MeasuredProfile {
 public:
  /** Reads and validates `file`. Throws moesim::Error if it cannot be read and moesim::InputError
   *  (file:line:column, the key, what is allowed) on malformed content: JSON syntax, wrong format
   *  or version, missing provenance / ceilings / entries or required keys, an unknown kernel_class
   *  or dtype, non-positive or non-finite times, counts inconsistent with the achieved rates. */
  static MeasuredProfile load(const std::string& file);
  /** As load(), from text; `file` names it in errors. */
  static MeasuredProfile parse(const std::string& text, const std::string& file);

  const std::string& file() const { return file_; }
  /** provenance.measured: true only for a real profiler run. */
  bool measured() const { return measured_; }
  /** provenance.synthetic: true for hand-made fixtures. */
  bool synthetic() const { return synthetic_; }
  /** "measured" or "SYNTHETIC, not a measurement": how every use of this profile is labelled. */
  std::string label() const;
  /** provenance.device: the file-name slug ("h100_sxm", "h200", ...). */
  const std::string& device() const { return device_; }
  const std::string& gpu_name() const { return gpu_name_; }
  /** "<file> (<gpu_name>, <date_utc>, git <hash>; measured|SYNTHETIC...)" for provenance strings. */
  std::string citation() const;
  const ProfileCeilings& ceilings() const { return ceilings_; }
  const std::vector<ProfileEntry>& entries() const { return entries_; }
  /** Entries that stand for a kernel time of the simulator: all but the composite `dense_ffn`
   *  (GEMM + activation + GEMM, which the simulator times as three ops), and of each expert-FFN shape
   *  only its fastest strategy (the minimum time; README: the fastest entry is the expert-FFN time). */
  std::vector<const ProfileEntry*> kernel_entries() const;
  /** Number of `skipped` shapes the file lists (unmeasured, never zero time). */
  std::size_t skipped_count() const { return skipped_; }

 private:
  std::string file_;
  bool measured_ = false;
  bool synthetic_ = false;
  std::string device_, gpu_name_, date_utc_, git_hash_;
  ProfileCeilings ceilings_;
  std::vector<ProfileEntry> entries_;
  std::size_t skipped_ = 0;
};

/** The op of a profile entry as one call with the entry's class, name, dtype, FLOPs, bytes and GEMM
 *  shape (batch 1 when absent); no per-expert group sizes. */
KernelOp entry_op(const ProfileEntry& e);

/** 2 for gated FFN activations (swiglu, geglu: W1 and W3), 1 for relu and gelu; throws moesim::Error
 *  naming the allowed activations. */
int activation_gates(const std::string& activation);

}  // namespace moesim::perf
