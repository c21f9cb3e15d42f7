// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/job.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/serving.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "moesim/core/units.hpp"
#include "moesim/perf/compute_model.hpp"
#include "moesim/perf/model_factory.hpp"
#include "moesim/platform/platform.hpp"
#include "moesim/system/topology.hpp"
#include "moesim/workload/training_step.hpp"
#include "training_setup.hpp"

namespace moesim::workload {
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MemoryEstimate, params_bytes, grads_bytes, optimizer_bytes, activations_bytes,
                                   activations_no_remat_bytes, capacity_bytes, remat, selective)
}  // namespace moesim::workload

namespace moesim::engine {

using nlohmann::json;

namespace {
/** Relative step-time spread below which the simulated steps differ only by floating-point rounding. */
constexpr double kStepSpreadResolution = 1e-12;
/** How far from a line (relative to the largest value) the steps of p, p + 1 and p + 2 micro-batches may be and still
 *  be extrapolated: rounding only (the lines seen are straight to ~1e-13). */
constexpr double kSteadyStateLinearity = 1e-9;
}  // namespace

// The JSON that carries a JobResult out of the simulation's child process (engine/isolation): every
// member under its own name, through nlohmann's macros (all keys required when reading back).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PhaseTrace, label, kind, stage, start_s, end_s, on_critical_path, memoized, flop_utilisation,
                                   hbm_utilisation, power_w)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(JobResult, scenario_name, accelerator, chips, devices, memory, step_times_s, step_time_s,
                                   step_time_spread_s, steps, tokens, tokens_derived, train_time_s, tokens_dropped_fraction,
                                   first_choice_dropped_fraction, second_choice_skipped_fraction,
                                   routing_exact, model_flops_per_step, hardware_flops_per_step, mfu, hfu, breakdown_s, busy_s,
                                   collective_bytes_per_step, algorithms, sites, wan_time_per_step_s, power_t_s, power_w,
                                   peak_chip_power_w, power_convention, compute_model, compute_paths, phases_per_step,
                                   collectives_detailed, collectives_memoized, reruns, rounds_alone, sim_wall_s, trace,
                                   steady_state_from_microbatches)

json to_json(const JobResult& r) {
  json j;
  to_json(j, r);
  return j;
}

JobResult job_from_json(const json& j) { return j.get<JobResult>(); }

/** Links of each class within a site (fabric: switch ports), for static network power. */
std::map<std::string, int> site_link_counts(const system::Site& site, int sites) {
  std::map<std::string, int> c;
  const int n = static_cast<int>(site.chips.size());
  if (site.kind == system::SiteKind::torus) {
    c["ici"] = n * static_cast<int>(site.dims.size());  // one link per chip per dimension (wrap-around torus)
  } else {
    const int g = site.gpus_per_node, nodes = site.nodes();
    const int leaves = nodes / std::max(1, site.nodes_per_leaf);
    c["nvlink"] = n;
    c["nic"] = n;
    // Fabric energy is counted per switch port (profiles/network.yaml): a NIC-to-leaf cable ends in one
    // switch port, a leaf-to-spine cable in two.
    const int uplinks = leaves > 1 ? static_cast<int>(std::max(1.0, std::round(site.nodes_per_leaf * g / site.oversubscription))) : 0;
    c["fabric"] = nodes * g + 2 * leaves * uplinks;
  }
  // WAN links are shared between two sites; each site carries half of every link it touches.
  if (sites > 1) c["wan_half"] = sites - 1;
  return c;
}

namespace {

/** "95.2" from the memory error's "95.2 GiB needed per device"; empty when the wording is not found. */
std::string needed_gib(const std::string& message) {
  static const std::regex kNeeded("([0-9.]+) GiB needed per device");
  std::smatch m;
  return std::regex_search(message, m, kNeeded) ? m[1].str() : std::string();
}

/** The memory error of `s` with what would make the model fit: each of the ZeRO stages above the scenario's,
 *  selective (when none was asked for) and full rematerialisation and more micro-batches on its own, then all of them together, each with the memory per
 *  device it gives (workload::estimate_memory on the changed scenario). */
[[noreturn]] void explain_memory_error(const scenario::Scenario& s, const catalog::AcceleratorSpec& accel, const Error& e) {
  const double gib = units::kGiB;
  struct Option {
    std::string change;
    scenario::Scenario variant;
  };
  std::vector<Option> options;
  for (int z = s.parallelism.zero_stage + 1; z <= 3; ++z) {
    Option o{fmt::format("parallelism.zero_stage: {}", z), s};
    o.variant.parallelism.zero_stage = z;
    options.push_back(std::move(o));
  }
  // Rematerialisation only when the estimate did not already use it (auto turns it on when it helps).
  const bool remat_used = std::string(e.what()).find("with rematerialization") != std::string::npos;
  if (s.training.rematerialization == scenario::Remat::none) {  // auto has tried selective already
    Option o{"training.rematerialization: selective", s};
    o.variant.training.rematerialization = scenario::Remat::selective;
    options.push_back(std::move(o));
  }
  // Selective recomputation of every module the model has (training.recompute_modules), when fewer were asked for.
  if (s.training.rematerialization != scenario::Remat::full && !remat_used) {
    scenario::TrainingSpec::RecomputeModules every{true, true, s.model.is_mla(), s.model.is_moe()};
    const auto& now = s.training.recompute;
    if (std::tie(now.core_attn, now.layernorm, now.mla_up_proj, now.moe_act) !=
        std::tie(every.core_attn, every.layernorm, every.mla_up_proj, every.moe_act)) {
      std::vector<std::string> names{"core_attn", "layernorm"};
      if (every.mla_up_proj) names.push_back("mla_up_proj");
      if (every.moe_act) names.push_back("moe_act");
      Option o{"training.rematerialization: selective + training.recompute_modules: " + text::join(names, ","), s};
      o.variant.training.rematerialization = scenario::Remat::selective;
      o.variant.training.recompute = every;
      options.push_back(std::move(o));
    }
  }
  if (s.training.rematerialization != scenario::Remat::full && !remat_used) {
    Option o{"training.rematerialization: full", s};
    o.variant.training.rematerialization = scenario::Remat::full;
    options.push_back(std::move(o));
  }
  // More micro-batches: each must still hold whole sequences of every data-parallel replica's share.
  const long long sequences = std::llround(s.training.batch_tokens / s.model.seq_len);
  const long long replicas = static_cast<long long>(s.parallelism.data) * s.parallelism.expert;
  const long long per_replica = replicas > 0 && sequences % replicas == 0 ? sequences / replicas : 0;
  int most_micro = s.parallelism.microbatches;
  for (long long m = 2LL * s.parallelism.microbatches, added = 0; per_replica > 0 && m <= per_replica && added < 3; m *= 2) {
    if (per_replica % m != 0) continue;
    Option o{fmt::format("parallelism.microbatches: {}", m), s};
    o.variant.parallelism.microbatches = static_cast<int>(m);
    most_micro = static_cast<int>(m);
    options.push_back(std::move(o));
    ++added;
  }
  if (options.size() > 1) {
    Option all{fmt::format("parallelism.zero_stage: 3 + training.rematerialization: full + parallelism.microbatches: {} "
                           "together",
                           most_micro),
               s};
    all.variant.parallelism.zero_stage = 3;
    all.variant.training.rematerialization = scenario::Remat::full;
    all.variant.parallelism.microbatches = most_micro;
    options.push_back(std::move(all));
  }
  std::vector<std::string> fit, still;
  for (const Option& o : options) {
    try {
      const workload::MemoryEstimate m = workload::estimate_memory(o.variant, accel);
      fit.push_back(fmt::format("{} ({:.1f} of {:.1f} GiB)", o.change, m.total_bytes() / gib, m.capacity_bytes / gib));
    } catch (const Error& err) {
      const std::string n = needed_gib(err.what());
      still.push_back(n.empty() ? o.change : fmt::format("{} ({} GiB)", o.change, n));
    }
  }
  // The layer below states the numbers; its generic advice is replaced by what was tried here.
  std::string what = e.what();
  if (const auto cut = what.find("; use more devices"); cut != std::string::npos) what.erase(cut);
  std::string advice;
  if (!fit.empty()) {
    advice = fmt::format("; it fits with {}", text::join(fit, ", or "));
    if (!still.empty()) advice += fmt::format(" (not with {} alone)", text::join(still, ", "));
  } else {
    advice = fmt::format("; {}: give more devices (cluster.count, with more data or expert parallelism) or more tensor or "
                         "pipeline parallelism",
                         still.empty() ? "nothing in this scenario's ZeRO stage, rematerialisation or micro-batches helps"
                                       : fmt::format("it does not fit even with {}", text::join(still, ", ")));
  }
  throw MemoryFitError(what + advice);
}

}  // namespace

void check_feasible(const scenario::Scenario& s, const catalog::Catalog& catalog) {
  if (s.is_serving()) {
    check_serving_feasible(s, catalog);
    return;
  }
  const auto& accel = catalog.accelerator(s.cluster.accelerator);
  workload::step_builder(s.model.type);
  workload::DeviceMesh mesh(s.parallelism, accel.devices_per_chip);
  try {
    workload::estimate_memory(s, accel);
  } catch (const MemoryFitError& e) {
    explain_memory_error(s, accel, e);
  }
  system::Topology::build(s, accel, mesh);
  accel.peak_flops_for(s.model.dtype);
}

namespace {

// ---- The steady state of a 1F1B pipeline (issue 13) --------------------------------------------------------------
// With m >= p micro-batches on p stages, a 1F1B step is a warm-up (stage s runs p - s - 1 forwards), m - p + s + 1
// steady forward/backward pairs and a cool-down: one more micro-batch adds one steady pair to every stage and nothing
// else. When every micro-batch does the same work (a dense model: no routing draw), the step's time, energy, bytes and
// critical path grow by the same amount with each one, so the steps of p, p + 1 and p + 2 micro-batches fix the step
// of any m, exactly where the three lie on a line. That is checked on every run (and the extrapolation tested against
// the full simulation, tests/unit/engine/steady_state_test.cpp); where it fails, every micro-batch is simulated.

/** The micro-batch count the step is extrapolated from (the pipeline depth), or 0: simulate every micro-batch. */
int steady_state_base(const scenario::Scenario& s, const EngineOptions& o) {
  const scenario::ParallelismSpec& p = s.parallelism;
  if (!o.pipeline_steady_state || o.trace) return 0;  // a trace lists every phase of the real step
  // Interleaved 1F1B runs micro-batches in groups of p; MoE layers draw each micro-batch's routing anew.
  if (p.pipeline < 2 || p.virtual_stages != 1 || p.schedule != "1f1b" || s.model.is_moe()) return 0;
  // Worth it only if the three short steps cost less than the step itself.
  if (p.microbatches <= 3 * (p.pipeline + 1)) return 0;
  return p.pipeline;
}

/** The scenario with `m` micro-batches of the same size. */
scenario::Scenario with_microbatches(const scenario::Scenario& s, int m) {
  scenario::Scenario v = s;
  v.training.batch_tokens = s.training.batch_tokens / s.parallelism.microbatches * m;
  v.parallelism.microbatches = m;
  return v;
}

double total(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

bool on_a_line(double a, double b, double c) {
  return std::abs((c - b) - (b - a)) <= kSteadyStateLinearity * std::max({std::abs(a), std::abs(b), std::abs(c)});
}

/** The step of n more micro-batches than `c`, from the steps `a`, `b`, `c` of one micro-batch apart (on a line).
 *  The power series is c's with n steady-state periods, at their mean power, inserted at c's middle sample, so its
 *  integral is the extrapolated chip energy. Simulation counts (collectives detailed and memoised) are what was
 *  simulated: the three steps'. */
StepResult extrapolate(const StepResult& a, const StepResult& b, const StepResult& c, int n, int power_samples) {
  const double k = n;
  auto lin = [k](double y1, double y2) { return y2 + k * (y2 - y1); };
  auto lin_map = [&](const std::map<std::string, double>& m1, const std::map<std::string, double>& m2) {
    std::map<std::string, double> out;
    for (const auto& [key, v2] : m2) {
      const auto it = m1.find(key);
      out[key] = lin(it == m1.end() ? 0.0 : it->second, v2);
    }
    return out;
  };
  StepResult r;
  r.duration_s = lin(b.duration_s, c.duration_s);
  r.busy_s = lin_map(b.busy_s, c.busy_s);
  r.critical_path_s = lin_map(b.critical_path_s, c.critical_path_s);
  r.site_energy_j.resize(c.site_energy_j.size());
  for (std::size_t i = 0; i < c.site_energy_j.size(); ++i) r.site_energy_j[i] = lin(b.site_energy_j[i], c.site_energy_j[i]);
  r.site_link_bytes.resize(c.site_link_bytes.size());
  for (std::size_t i = 0; i < c.site_link_bytes.size(); ++i)
    for (std::size_t l = 0; l < system::kLinkClassCount; ++l) r.site_link_bytes[i][l] = lin(b.site_link_bytes[i][l], c.site_link_bytes[i][l]);
  r.stats.tokens = lin(b.stats.tokens, c.stats.tokens);
  r.stats.model_flops = lin(b.stats.model_flops, c.stats.model_flops);
  r.stats.hardware_flops = lin(b.stats.hardware_flops, c.stats.hardware_flops);
  r.stats.routed_tokens = lin(b.stats.routed_tokens, c.stats.routed_tokens);
  r.stats.assignments = lin(b.stats.assignments, c.stats.assignments);
  r.stats.skipped = lin(b.stats.skipped, c.stats.skipped);
  r.stats.dropped = lin(b.stats.dropped, c.stats.dropped);
  r.stats.first_dropped = lin(b.stats.first_dropped, c.stats.first_dropped);
  r.stats.routing_exact = a.stats.routing_exact && b.stats.routing_exact && c.stats.routing_exact;
  r.stats.bytes_by_op = lin_map(b.stats.bytes_by_op, c.stats.bytes_by_op);
  r.wan_busy_s = lin(b.wan_busy_s, c.wan_busy_s);
  r.phases = c.phases + n * (c.phases - b.phases);
  r.collectives_detailed = a.collectives_detailed + b.collectives_detailed + c.collectives_detailed;
  r.collectives_memoized = a.collectives_memoized + b.collectives_memoized + c.collectives_memoized;
  r.reruns = a.reruns + b.reruns + c.reruns;
  r.rounds_alone = a.rounds_alone + b.rounds_alone + c.rounds_alone;
  r.algorithms = c.algorithms;

  const double period_s = c.duration_s - b.duration_s;
  const double period_w = (total(c.site_energy_j) - total(b.site_energy_j)) / period_s;
  std::size_t mid = 0;  // the sample nearest the middle of c
  for (std::size_t i = 0; i < c.power_t_s.size(); ++i)
    if (std::abs(c.power_t_s[i] - c.duration_s / 2) < std::abs(c.power_t_s[mid] - c.duration_s / 2)) mid = i;
  const int pieces = std::max(1, std::min(n, power_samples));
  const double inserted_s = k * period_s;
  for (std::size_t i = 0; i < c.power_t_s.size(); ++i) {
    if (i == mid)
      for (int q = 0; q < pieces; ++q) {
        r.power_t_s.push_back(c.power_t_s[mid] + inserted_s * q / pieces);
        r.power_w.push_back(period_w);
      }
    r.power_t_s.push_back(c.power_t_s[i] + (i >= mid ? inserted_s : 0.0));
    r.power_w.push_back(c.power_w[i]);
  }
  return r;
}

/** The steps of the job: each simulated in full, or (steady_state_base) extrapolated from three short ones. */
std::vector<StepResult> simulate_steps(Simulator& sim, const detail::TrainingSetup& setup, const scenario::Scenario& s,
                                       const EngineOptions& options, const Progress& progress, int& steady_from) {
  const int steps = s.training.steps_simulated;
  const int base = steady_state_base(s, options);
  steady_from = 0;
  auto full_step = [&](int k) {
    if (progress) progress(k, steps, "building and simulating step");
    return setup.build(s, k);
  };
  if (base == 0) return sim.run(steps, full_step);
  const std::vector<scenario::Scenario> shorter{with_microbatches(s, base), with_microbatches(s, base + 1), with_microbatches(s, base + 2)};
  bool linear = false;
  const std::vector<StepResult> raw = sim.run_while([&](const std::vector<StepResult>& done) -> std::optional<Simulator::NextStep> {
    const std::size_t k = done.size();
    if (k < shorter.size()) {
      if (progress) progress(0, steps, fmt::format("simulating the step with {} micro-batches (pipeline steady state)", base + static_cast<int>(k)));
      return Simulator::NextStep{std::unique_ptr<workload::BuiltStep>(new workload::BuiltStep(setup.build(shorter[k], 0))), k == shorter.size() - 1};
    }
    if (k == shorter.size()) {
      linear = on_a_line(done[0].duration_s, done[1].duration_s, done[2].duration_s) &&
               on_a_line(total(done[0].site_energy_j), total(done[1].site_energy_j), total(done[2].site_energy_j));
      if (linear) return std::nullopt;
    }
    const int full = static_cast<int>(k - shorter.size());  // not on a line: every micro-batch of every step
    if (full >= steps) return std::nullopt;
    return Simulator::NextStep{std::unique_ptr<workload::BuiltStep>(new workload::BuiltStep(full_step(full))), full == 0};
  });
  if (!linear) return {raw.begin() + static_cast<std::ptrdiff_t>(shorter.size()), raw.end()};
  steady_from = base;
  // A dense model's steps are all alike (no routing draw): each simulated step is this one.
  return std::vector<StepResult>(static_cast<std::size_t>(steps),
                                 extrapolate(raw[0], raw[1], raw[2], s.parallelism.microbatches - (base + 2), options.power_samples));
}

}  // namespace

JobResult simulate_job(const scenario::Scenario& s, const catalog::Catalog& catalog, const EngineOptions& options,
                       const Progress& progress) {
  const auto wall0 = std::chrono::steady_clock::now();
  const detail::TrainingSetup setup(s, catalog);
  const catalog::AcceleratorSpec& accel = setup.accel;
  const workload::DeviceMesh& mesh = setup.mesh;
  const workload::MemoryEstimate& mem = setup.mem;
  const perf::ComputeTimeModel& compute = *setup.compute;
  const system::Topology& topo = setup.topo;
  const platform::PowerStates power = platform::power_states(accel);

  auto owned = std::make_unique<Simulator>(topo, accel, power, mesh, options);
  const int steps = s.training.steps_simulated;
  int steady_from = 0;
  const std::vector<StepResult> results = simulate_steps(*owned, setup, s, options, progress, steady_from);
  // In an isolated child, which _exits once its result is written, SimGrid's engine and platform are left to the exit:
  // tearing them down took 8 % of the 4096-chip bench case (perf).
  if (in_isolated_child()) (void)owned.release();
  if (progress) progress(steps, steps, "done");

  JobResult r;
  r.scenario_name = s.name;
  r.accelerator = accel.name;
  r.chips = mesh.chips();
  r.devices = mesh.devices();
  r.memory = mem;
  const double n = static_cast<double>(results.size());
  for (const auto& sr : results) r.step_times_s.push_back(sr.duration_s);
  r.step_time_s = std::accumulate(r.step_times_s.begin(), r.step_times_s.end(), 0.0) / n;
  double var = 0.0;
  for (double t : r.step_times_s) var += (t - r.step_time_s) * (t - r.step_time_s);
  // Steps that differ only in rounding have no spread: e.g. capacity-padded TPU steps, whose time does not depend on
  // the routing draw, sum the same phases in another order and differ in the last bit. Below 1e-12 of the step
  // (sub-picosecond, and far below SimGrid's timing precision) a spread is that rounding: report exactly 0.
  const double spread = results.size() > 1 ? std::sqrt(var / (n - 1.0)) : 0.0;
  r.step_time_spread_s = spread > kStepSpreadResolution * r.step_time_s ? spread : 0.0;
  // Steps: from the tokens, or derived from the run's published hardware compute.
  double hw_per_step = 0.0;
  for (const auto& sr : results) hw_per_step += sr.stats.hardware_flops / static_cast<double>(results.size());
  // Whole steps: the last, partial batch still costs a step (and a published compute budget its last step).
  r.steps = std::ceil(s.training.hardware_flops ? *s.training.hardware_flops / hw_per_step : s.steps());
  r.tokens = r.steps * s.training.batch_tokens;
  r.tokens_derived = s.training.hardware_flops.has_value();
  r.train_time_s = r.steps * r.step_time_s;
  double routed = 0.0, assignments = 0.0, skipped = 0.0, dropped = 0.0, first_dropped = 0.0;
  for (const auto& sr : results) {
    routed += sr.stats.routed_tokens;
    assignments += sr.stats.assignments;
    skipped += sr.stats.skipped;
    dropped += sr.stats.dropped;
    first_dropped += sr.stats.first_dropped;
    r.routing_exact = r.routing_exact && sr.stats.routing_exact;
    r.model_flops_per_step += sr.stats.model_flops / n;
    r.hardware_flops_per_step += sr.stats.hardware_flops / n;
    for (const auto& [k, v] : sr.critical_path_s) r.breakdown_s[k] += v / n;
    for (const auto& [k, v] : sr.busy_s) r.busy_s[k] += v / n;
    for (const auto& [k, v] : sr.stats.bytes_by_op) r.collective_bytes_per_step[k] += v / n;
    for (const auto& [k, v] : sr.algorithms) r.algorithms[k] = v;
    r.collectives_detailed += sr.collectives_detailed;
    r.wan_time_per_step_s += sr.wan_busy_s / n;
    r.collectives_memoized += sr.collectives_memoized;
    r.reruns += sr.reruns;
    r.rounds_alone += sr.rounds_alone;
  }
  // Tokens are dropped whole: less than half a token over the simulated steps is the rounding of the per-group
  // sums, not a drop (e.g. 9e-11 % with a capacity every group fits in). Zero counts give exact zeros.
  constexpr double kHalfToken = 0.5;
  if (dropped < kHalfToken) dropped = 0.0;
  if (first_dropped < kHalfToken) first_dropped = 0.0;
  const double dispatched = assignments - skipped;
  r.tokens_dropped_fraction = dropped > 0.0 && dispatched > 0.0 ? dropped / dispatched : 0.0;
  r.first_choice_dropped_fraction = first_dropped > 0.0 && routed > 0.0 ? first_dropped / routed : 0.0;
  r.second_choice_skipped_fraction = skipped > 0.0 && routed > 0.0 ? skipped / routed : 0.0;
  const double device_peak = accel.peak_flops_for(s.model.dtype) / accel.devices_per_chip;
  r.mfu = r.model_flops_per_step / (r.step_time_s * r.devices * device_peak);
  r.hfu = r.hardware_flops_per_step / (r.step_time_s * r.devices * device_peak);
  for (const auto& site : topo.sites()) {
    SiteStepFigures f;
    f.datacenter = site.datacenter;
    f.chips = static_cast<int>(site.chips.size());
    f.share = s.placement[static_cast<std::size_t>(site.index)].share;
    for (const auto& sr : results) {
      f.chip_energy_per_step_j += sr.site_energy_j[static_cast<std::size_t>(site.index)] / n;
      for (std::size_t c = 0; c < system::kLinkClassCount; ++c)
        f.link_bytes_per_step[c] += sr.site_link_bytes[static_cast<std::size_t>(site.index)][c] / n;
    }
    f.link_counts = site_link_counts(site, static_cast<int>(topo.sites().size()));
    r.sites.push_back(std::move(f));
  }
  r.power_t_s = results.front().power_t_s;
  r.power_w = results.front().power_w;
  r.peak_chip_power_w = power.full_w;
  r.power_convention = power.convention;
  r.compute_model = compute.describe();
  r.compute_paths = perf::compute_paths(compute);
  r.phases_per_step = results.front().phases;
  r.trace = results.front().trace;
  r.steady_state_from_microbatches = steady_from;
  r.sim_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return r;
}

}  // namespace moesim::engine
