// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "moesim/kernels/counting.hpp"
#include "moesim/kernels/types.hpp"

/** The measured-profile file the profiler writes (profiles/measured/<device>.json), its summary
 *  statistics, and the device naming. Format spec: profiles/measured/README.md. Plain C++ so that
 *  it is unit-tested without a GPU. */
namespace moesim::kernels::profile {

/** Identifies the format in the file's "format" field; bump kFormatVersion on incompatible change. */
inline constexpr const char* kFormatName = "moesim-measured-profile";
inline constexpr int kFormatVersion = 1;

/** Summary of repeated timings, in seconds. Percentiles interpolate linearly between the closest
 *  ranks (rank = p·(n−1), the common "linear" definition). */
struct Stats {
  double median_s = 0.0;
  double p10_s = 0.0;
  double p90_s = 0.0;
  std::int64_t repeats = 0;
};

/** Median, p10 and p90 of the samples; throws moesim::Error for an empty sample or a
 *  non-finite / negative time. */
Stats summarize(std::vector<double> samples_s);

/** Percentile p in [0, 1] of sorted samples (linear interpolation). */
double percentile_sorted(const std::vector<double>& sorted, double p);

/** File-name slug of a GPU from its CUDA device name: "NVIDIA H100 80GB HBM3" → "h100_sxm"
 *  (the SXM5 board reports HBM3 without a form factor), "NVIDIA H100 PCIe" → "h100_pcie",
 *  "NVIDIA H100 NVL" → "h100_nvl", "NVIDIA H200" → "h200"; any other name: lower case, a leading
 *  "nvidia" dropped, every run of other characters than [a-z0-9] turned into one '_'.
 *  Throws for a name that leaves an empty slug. */
std::string device_slug(const std::string& gpu_name);

/** A JSON scalar. */
using Value = std::variant<std::int64_t, double, std::string, bool>;
/** Ordered key/value fields (written in insertion order). */
using Fields = std::vector<std::pair<std::string, Value>>;

/** One timed kernel at one shape. Required fields are members; shape fields and extras go in
 *  `fields` (e.g. tokens, d_model, m, n, k, batch, experts, top_k, strategy, fastest). */
struct Entry {
  KernelClass kernel_class = KernelClass::gemm;
  std::string kernel;
  DType dtype = DType::bf16;
  Fields fields;
  Cost cost;
  Stats stats;
};

/** A planned measurement that was not taken, and why (memory, time budget, unsupported). */
struct Skipped {
  std::string what;
  std::string reason;
};

/** A whole profile. `ceilings` must hold matmul_bf16_flops_per_s and copy_bytes_per_s. */
struct Profile {
  Fields provenance;
  Fields ceilings;
  std::vector<Entry> entries;
  std::vector<Skipped> skipped;
};

/** Serializes the profile as JSON (2-space indent, one entry per line). Each entry gets
 *  achieved_flops_per_s = flops / time_s and achieved_bytes_per_s = bytes / time_s.
 *  Non-finite numbers are written as null. */
std::string to_json(const Profile& profile);

/** Escapes a string for a JSON string literal (without the quotes). */
std::string json_escape(const std::string& text);
/** A number as JSON: integral values below 2⁵³ without exponent, others with 9 significant
 *  digits; NaN/∞ → null. */
std::string json_number(double value);

}  // namespace moesim::kernels::profile
