// SPDX-License-Identifier: Apache-2.0
#include "moesim/catalog/accelerator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "loaders.hpp"
#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "yaml_fields.hpp"

namespace moesim::catalog {

namespace {

/** Matrix-unit dtypes a profile may list (AcceleratorSpec::peak_matmul_flops_per_s keys). */
const std::vector<std::string>& known_dtypes() {
  static const std::vector<std::string> dtypes = {"fp32", "tf32", "bf16", "fp16", "fp8"};
  return dtypes;
}

std::vector<std::string> supported_dtypes(const AcceleratorSpec& spec) {
  std::vector<std::string> out;
  for (const auto& kv : spec.peak_matmul_flops_per_s) out.push_back(kv.first);
  return out;
}

}  // namespace

double AcceleratorSpec::peak_flops_for(const std::string& dtype) const {
  const auto it = peak_matmul_flops_per_s.find(dtype);
  if (it != peak_matmul_flops_per_s.end()) return it->second;
  throw Error(fmt::format("accelerator '{}' has no matrix-unit peak for dtype '{}'; supported dtypes: {}", name, dtype,
                          text::join(supported_dtypes(*this))));
}

double PowerCurve::power_w(double flop_utilisation, double hbm_utilisation) const {
  const double span = full_w - active_w;
  const double flop = std::max(0.0, flop_utilisation) / flop_utilisation_at_full_w;
  const double hbm = std::max(0.0, hbm_utilisation) / hbm_utilisation_at_memory_bound_w;
  return active_w + std::min(span, span * flop + (memory_bound_w - active_w) * hbm);
}

PowerCurve PowerCurve::shifted(double w) const {
  PowerCurve c = *this;
  c.active_w += w;
  c.full_w += w;
  c.memory_bound_w += w;
  return c;
}

PowerCurve AcceleratorSpec::power_curve() const {
  return {active_w, full_w, memory_bound_w > 0.0 ? memory_bound_w : full_w, flop_utilisation_at_full_w,
          hbm_utilisation_at_memory_bound_w};
}

double AcceleratorSpec::compute_power_w(double flop_utilisation, double hbm_utilisation) const {
  return power_curve().power_w(flop_utilisation, hbm_utilisation);
}

namespace detail {

namespace {

const std::vector<std::string> kAcceleratorKeys = {
    "name", "display_name", "kind", "dispatch", "devices_per_chip", "peak_matmul_flops_per_s",
    "peak_vector_flops_per_s", "measured_matmul_flops_per_s", "measured_hbm_bandwidth_bytes_per_s", "hbm_bytes",
    "hbm_bandwidth_bytes_per_s", "matmul_tile", "sm_count", "gemm_block_tile", "ici_links_per_chip", "ici_link_bandwidth_bytes_per_s",
    "ici_latency_s", "ici_efficiency", "pod_dims", "nvlink_bandwidth_bytes_per_s", "nvlink_efficiency", "nvlink_latency_s", "gpus_per_node",
    "nic_bandwidth_bytes_per_s", "nic_latency_s", "collective_overhead_s", "power_convention", "tdp_w", "idle_w",
    "active_w", "full_w", "memory_bound_w", "flop_utilisation_at_full_w", "hbm_utilisation_at_memory_bound_w",
    "host_overhead_w", "die_area_mm2", "lifetime_years", "notes"};

/** Keys that only make sense on one kind of accelerator. */
const std::vector<std::string> kTpuOnlyKeys = {"ici_links_per_chip", "ici_link_bandwidth_bytes_per_s", "ici_latency_s",
                                               "ici_efficiency", "pod_dims"};
const std::vector<std::string> kGpuOnlyKeys = {"sm_count", "gemm_block_tile", "nvlink_bandwidth_bytes_per_s", "nvlink_efficiency", "nvlink_latency_s", "gpus_per_node",
                                               "nic_bandwidth_bytes_per_s", "nic_latency_s"};

void record(AcceleratorSpec& spec, const std::string& field, const Sourced& s) { spec.sources[field] = s.source; }

double take(AcceleratorSpec& spec, const MapReader& r, const std::string& key, Range range) {
  const Sourced s = r.required_number(key, range);
  record(spec, key, s);
  return s.value;
}

std::optional<double> take_optional(AcceleratorSpec& spec, const MapReader& r, const std::string& key, Range range) {
  const auto s = r.optional_number(key, range);
  if (!s) return std::nullopt;
  record(spec, key, *s);
  return s->value;
}

/** An optional link efficiency: the fraction of the line rate collectives get, in (0, 1]; 1 when not given. */
double take_efficiency(AcceleratorSpec& spec, const MapReader& r, const std::string& key) {
  const double e = take_optional(spec, r, key, Range::fraction).value_or(1.0);
  if (!(e > 0.0)) r.fail(r.node(key), key, "must be > 0 (a fraction of the line rate, at most 1)");
  return e;
}

int take_int(AcceleratorSpec& spec, const MapReader& r, const std::string& key, Range range) {
  const int v = r.required_int(key, range);
  spec.sources[key] = r.node(key)["source"].Scalar();
  return v;
}

}  // namespace

AcceleratorSpec parse_accelerator_file(const std::string& file) {
  const YAML::Node root = load_yaml_file(file);
  const MapReader r(root, file, "", kAcceleratorKeys);
  AcceleratorSpec spec;

  spec.name = r.required_string("name");
  const std::string stem = std::filesystem::path(file).stem().string();
  if (spec.name != stem)
    r.fail(r.node("name"), "name", fmt::format("'{}' must equal the file name '{}' (without .yaml)", spec.name, stem));
  spec.display_name = r.required_string("display_name");
  spec.kind = r.required_choice("kind", {"tpu", "gpu"}) == "tpu" ? AcceleratorKind::tpu : AcceleratorKind::gpu;
  spec.dispatch =
      r.required_choice("dispatch", {"einsum", "gather"}) == "einsum" ? DispatchStyle::einsum : DispatchStyle::gather;
  spec.devices_per_chip = take_int(spec, r, "devices_per_chip", Range::positive);

  // Matrix-unit peaks, one sourced entry per dtype.
  const YAML::Node peaks = r.node("peak_matmul_flops_per_s");
  if (!peaks) r.fail(root, "peak_matmul_flops_per_s", "missing required field (expected a mapping dtype -> {value, source})");
  const MapReader pr(peaks, file, "peak_matmul_flops_per_s", known_dtypes());
  for (const auto& dtype : known_dtypes()) {
    if (const auto s = pr.optional_number(dtype, Range::positive)) {
      spec.peak_matmul_flops_per_s[dtype] = s->value;
      spec.sources["peak_matmul_flops_per_s." + dtype] = s->source;
    }
  }
  if (spec.peak_matmul_flops_per_s.empty())
    r.fail(peaks, "peak_matmul_flops_per_s", fmt::format("needs at least one dtype of: {}", text::join(known_dtypes())));

  spec.peak_vector_flops_per_s = take(spec, r, "peak_vector_flops_per_s", Range::positive);
  spec.measured_matmul_flops_per_s = take_optional(spec, r, "measured_matmul_flops_per_s", Range::positive);
  spec.measured_hbm_bandwidth_bytes_per_s = take_optional(spec, r, "measured_hbm_bandwidth_bytes_per_s", Range::positive);
  spec.hbm_bytes = take(spec, r, "hbm_bytes", Range::positive);
  spec.hbm_bandwidth_bytes_per_s = take(spec, r, "hbm_bandwidth_bytes_per_s", Range::positive);
  spec.matmul_tile = take_int(spec, r, "matmul_tile", Range::positive);

  const auto& foreign = spec.kind == AcceleratorKind::tpu ? kGpuOnlyKeys : kTpuOnlyKeys;
  for (const auto& key : foreign) {
    if (r.has(key))
      r.fail(r.node(key), key,
             fmt::format("not used for kind '{}'", spec.kind == AcceleratorKind::tpu ? "tpu" : "gpu"));
  }
  if (spec.kind == AcceleratorKind::tpu) {
    spec.ici_links_per_chip = take_int(spec, r, "ici_links_per_chip", Range::positive);
    spec.ici_link_bandwidth_bytes_per_s = take(spec, r, "ici_link_bandwidth_bytes_per_s", Range::positive);
    spec.ici_latency_s = take_optional(spec, r, "ici_latency_s", Range::non_negative).value_or(0.0);
    spec.ici_efficiency = take_efficiency(spec, r, "ici_efficiency");
    const SourcedInts dims = r.required_int_list("pod_dims", Range::positive);
    spec.pod_dims = dims.value;
    spec.sources["pod_dims"] = dims.source;
  } else {
    spec.nvlink_bandwidth_bytes_per_s = take(spec, r, "nvlink_bandwidth_bytes_per_s", Range::positive);
    spec.nvlink_efficiency = take_efficiency(spec, r, "nvlink_efficiency");
    spec.nvlink_latency_s = take_optional(spec, r, "nvlink_latency_s", Range::non_negative).value_or(0.0);
    spec.gpus_per_node = take_int(spec, r, "gpus_per_node", Range::positive);
    spec.nic_bandwidth_bytes_per_s = take(spec, r, "nic_bandwidth_bytes_per_s", Range::positive);
    spec.nic_latency_s = take_optional(spec, r, "nic_latency_s", Range::non_negative).value_or(0.0);
    // Wave quantisation: both keys or neither.
    if (r.has("sm_count") != r.has("gemm_block_tile"))
      r.fail(r.node(r.has("sm_count") ? "sm_count" : "gemm_block_tile"), r.has("sm_count") ? "gemm_block_tile" : "sm_count",
             "sm_count and gemm_block_tile go together (the GEMM's output tiles run in waves of sm_count); give both or neither");
    if (r.has("sm_count")) {
      spec.sm_count = take_int(spec, r, "sm_count", Range::positive);
      const SourcedInts tile = r.required_int_list("gemm_block_tile", Range::positive);
      if (tile.value.size() != 2)
        r.fail(r.node("gemm_block_tile"), "gemm_block_tile",
               fmt::format("expected [rows, columns] of one SM's output tile, got {} numbers", tile.value.size()));
      spec.gemm_block_tile = tile.value;
      spec.sources["gemm_block_tile"] = tile.source;
    }
  }
  spec.collective_overhead_s = take_optional(spec, r, "collective_overhead_s", Range::non_negative).value_or(0.0);

  spec.power_convention =
      r.required_choice("power_convention", {"chip", "system"}) == "chip" ? PowerConvention::chip : PowerConvention::system;
  spec.tdp_w = take_optional(spec, r, "tdp_w", Range::positive).value_or(0.0);
  spec.idle_w = take(spec, r, "idle_w", Range::non_negative);
  spec.active_w = take(spec, r, "active_w", Range::non_negative);
  spec.full_w = take(spec, r, "full_w", Range::positive);
  spec.host_overhead_w = take(spec, r, "host_overhead_w", Range::non_negative);
  if (spec.power_convention == PowerConvention::system && spec.host_overhead_w != 0.0)
    r.fail(r.node("host_overhead_w"), "host_overhead_w",
           "must be 0 when power_convention is 'system' (the host share is already inside the figures)");
  // A chip cannot draw less computing than waiting, nor less waiting than idle.
  if (spec.idle_w > spec.active_w)
    r.fail(r.node("idle_w"), "idle_w", fmt::format("idle_w ({}) exceeds active_w ({})", spec.idle_w, spec.active_w));
  if (spec.active_w > spec.full_w)
    r.fail(r.node("active_w"), "active_w", fmt::format("active_w ({}) exceeds full_w ({})", spec.active_w, spec.full_w));

  spec.memory_bound_w = take_optional(spec, r, "memory_bound_w", Range::positive).value_or(spec.full_w);
  if (spec.memory_bound_w > spec.full_w || spec.memory_bound_w < spec.active_w)
    r.fail(r.node("memory_bound_w"), "memory_bound_w",
           fmt::format("memory_bound_w ({}) must lie between active_w ({}) and full_w ({})", spec.memory_bound_w,
                       spec.active_w, spec.full_w));
  // The power curve's two utilisation anchors (AcceleratorSpec::compute_power_w), each in (0, 1].
  for (auto [key, field] : {std::pair<const char*, double*>{"flop_utilisation_at_full_w", &spec.flop_utilisation_at_full_w},
                            std::pair<const char*, double*>{"hbm_utilisation_at_memory_bound_w",
                                                            &spec.hbm_utilisation_at_memory_bound_w}}) {
    const auto u = take_optional(spec, r, key, Range::positive);
    if (!u) continue;
    if (*u > 1.0)
      r.fail(r.node(key), key,
             fmt::format("{} is a utilisation of the datasheet peak: it must lie in (0, 1], got {}", key, *u));
    *field = *u;
  }
  spec.die_area_mm2 = take_optional(spec, r, "die_area_mm2", Range::positive);
  spec.lifetime_years = take_optional(spec, r, "lifetime_years", Range::positive);
  spec.notes = r.optional_string("notes").value_or("");
  return spec;
}

}  // namespace detail
}  // namespace moesim::catalog
