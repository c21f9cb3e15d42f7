// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/planner.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "moesim/core/units.hpp"
#include "moesim/workload/memory.hpp"
#include "moesim/workload/serving.hpp"

namespace moesim::engine {

namespace {

std::vector<long long> divisors(long long n) {
  std::vector<long long> out;
  for (long long k = 1; k * k <= n; ++k) {
    if (n % k != 0) continue;
    out.push_back(k);
    if (k != n / k) out.push_back(n / k);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool divides(long long k, long long n) { return k > 0 && n % k == 0; }

}  // namespace

PlanSpace plan_space(const scenario::Scenario& base, const catalog::AcceleratorSpec& accel, int max_microbatch_factor) {
  PlanSpace s;
  const auto& m = base.model;
  s.devices = static_cast<long long>(base.cluster.count) * std::max(1, accel.devices_per_chip);
  s.experts = m.experts;
  s.heads = m.heads;
  s.d_ff = m.d_ff;
  s.expert_d_ff = m.expert_d_ff > 0 ? m.expert_d_ff : m.d_ff;
  s.layers = m.total_layers();
  s.sequences = std::llround(base.training.batch_tokens / m.seq_len);
  s.max_microbatch_factor = std::max(1, max_microbatch_factor);
  const auto& topo = base.cluster.topology;
  if (!topo.dims.empty()) {
    s.max_tensor = topo.dims.front() * std::max(1, accel.devices_per_chip);
    s.max_tensor_basis = fmt::format("one torus row ({} chips x {} devices per chip)", topo.dims.front(),
                                     std::max(1, accel.devices_per_chip));
  } else {
    const int gpn = topo.gpus_per_node > 0 ? topo.gpus_per_node : std::max(1, accel.gpus_per_node);
    s.max_tensor = gpn * std::max(1, accel.devices_per_chip);
    s.max_tensor_basis = fmt::format("one NVLink node ({} GPUs)", gpn);
  }
  return s;
}

std::string Layout::label() const {
  std::string out = fmt::format("d{} e{} t{} p{} m{} z{}", data, expert, tensor, pipeline, microbatches, zero_stage);
  if (schedule == "interleaved_1f1b") out += fmt::format(" v{}", virtual_stages);
  else if (schedule != "1f1b") out += " " + schedule;
  return out;
}

std::vector<std::pair<std::string, nlohmann::json>> Layout::values() const {
  return {{"parallelism.data", data},
          {"parallelism.expert", expert},
          {"parallelism.tensor", tensor},
          {"parallelism.pipeline", pipeline},
          {"parallelism.microbatches", microbatches},
          {"parallelism.zero_stage", zero_stage},
          {"parallelism.virtual_stages", virtual_stages},
          {"parallelism.schedule", schedule}};
}

std::vector<std::string> Layout::overrides() const {
  std::vector<std::string> out;
  for (const auto& [key, value] : values())
    out.push_back(key + "=" + (value.is_string() ? value.get<std::string>() : value.dump()));
  return out;
}

bool Layout::operator==(const Layout& o) const {
  return std::tie(data, expert, tensor, pipeline, microbatches, zero_stage, virtual_stages, schedule) ==
         std::tie(o.data, o.expert, o.tensor, o.pipeline, o.microbatches, o.zero_stage, o.virtual_stages, o.schedule);
}

std::vector<std::string> enumeration_rules(const PlanSpace& s) {
  const std::string others =
      s.stage_layers ? std::string("the scenario's first/last_stage_layers where pipeline > 1, left out where pipeline = 1; "
                                   "the other parallelism keys (placement, overlaps) as the scenario gives them")
                     : std::string("the other parallelism keys (placement, overlaps) as the scenario gives them");
  return {
      fmt::format("data x expert x tensor x pipeline = the {} devices", s.devices),
      s.experts > 0 ? fmt::format("expert divides the {} experts", s.experts) : std::string("expert = 1 (a dense model)"),
      fmt::format("tensor divides heads ({}), d_ff ({}) and expert_d_ff ({}), and is at most {}, {}", s.heads, s.d_ff,
                  s.expert_d_ff, s.max_tensor, s.max_tensor_basis),
      fmt::format("pipeline divides the {} layers ({}){}", s.layers,
                  s.stage_layers ? "the scenario sizes its first or last stage, the others split the rest evenly"
                                 : "stages of equal depth",
                  s.max_pipeline > 0 ? fmt::format(" and is at most {} (--max-pipeline)", s.max_pipeline) : std::string()),
      fmt::format("data x expert divides the {} sequences of a step", s.sequences),
      fmt::format("micro-batches: powers of two dividing the sequences of one replica; with a pipeline, from the "
                  "pipeline stages up to {} times them",
                  s.max_microbatch_factor),
      !s.dual_schedule.empty()
          ? fmt::format("schedule: the scenario's {} where pipeline > 1 (two model chunks per stage), 1F1B's single "
                        "stage where pipeline = 1",
                        s.dual_schedule)
      : s.stage_layers
          ? std::string("schedule: 1F1B (the scenario's first/last_stage_layers size one model chunk per stage: no "
                        "interleaved layouts)")
      : s.max_virtual_stages > 1
          ? fmt::format("schedule: 1F1B, and with a pipeline also Megatron-LM's interleaved 1F1B with v = 2 to {} model "
                        "chunks per stage (v divides the layers per stage; micro-batches a multiple of the stages; "
                        "--max-virtual-stages)",
                        s.max_virtual_stages)
          : std::string("schedule: 1F1B (--max-virtual-stages 1: no interleaved layouts)"),
      s.sequence_parallel
          ? fmt::format("ZeRO stage 0, 1, 2 or 3; sequence parallelism{} where tensor > 1, as the scenario asks, and off "
                        "where tensor = 1 (no tensor group to shard over); {}",
                        s.overlap_tensor_comm ? " and the tensor-parallel overlap" : "", others)
          : "ZeRO stage 0, 1, 2 or 3; " + others,
  };
}

std::vector<Layout> enumerate_layouts(const PlanSpace& s) {
  if (s.devices < 1) throw Error("the plan needs at least one device (cluster.count)");
  std::vector<Layout> out;
  std::vector<std::string> why;
  const std::vector<long long> devs = divisors(s.devices);
  for (long long p : devs) {
    if (!divides(p, s.layers) || (s.max_pipeline > 0 && p > s.max_pipeline)) continue;
    for (long long t : devs) {
      if (t > s.max_tensor || !divides(t, s.heads) || !divides(t, s.d_ff) || !divides(t, s.expert_d_ff)) continue;
      if (!divides(p * t, s.devices)) continue;
      const long long rest = s.devices / (p * t);  // data x expert
      if (!divides(rest, s.sequences)) continue;
      const long long per_replica = s.sequences / rest;
      for (long long e : divisors(rest)) {
        if (s.experts == 0 ? e != 1 : !divides(e, s.experts)) continue;
        const long long d = rest / e;
        for (long long m = 1; m <= per_replica; m *= 2) {
          if (!divides(m, per_replica)) break;  // powers of two: once one does not divide, none larger does
          if (p > 1 && (m < p || m > p * s.max_microbatch_factor)) continue;
          // The schedules of this (pipeline, micro-batches): 1F1B; a DualPipe schedule the scenario names, on a
          // pipeline (the resolver checks its own constraints); or the interleaved 1F1B's chunk counts.
          std::vector<std::pair<int, std::string>> schedules;
          if (p > 1 && !s.dual_schedule.empty()) {
            schedules.emplace_back(2, s.dual_schedule);
          } else {
            schedules.emplace_back(1, "1f1b");
            if (p > 1 && divides(p, m) && !s.stage_layers)
              for (long long v : divisors(s.layers / p))
                if (v >= 2 && v <= s.max_virtual_stages) schedules.emplace_back(static_cast<int>(v), "interleaved_1f1b");
          }
          for (const auto& [v, schedule] : schedules)
            for (int z = 0; z <= 3; ++z) {
              Layout l;
              l.data = static_cast<int>(d);
              l.expert = static_cast<int>(e);
              l.tensor = static_cast<int>(t);
              l.pipeline = static_cast<int>(p);
              l.microbatches = static_cast<int>(m);
              l.zero_stage = z;
              l.virtual_stages = v;
              l.schedule = schedule;
              out.push_back(std::move(l));
            }
        }
      }
    }
  }
  if (out.empty()) {
    // Say which rule leaves nothing: the pipelines and tensor degrees allowed, and the replicas they leave.
    std::vector<std::string> ps, ts;
    for (long long p : devs)
      if (divides(p, s.layers) && (s.max_pipeline <= 0 || p <= s.max_pipeline)) ps.push_back(std::to_string(p));
    for (long long t : devs)
      if (t <= s.max_tensor && divides(t, s.heads) && divides(t, s.d_ff) && divides(t, s.expert_d_ff))
        ts.push_back(std::to_string(t));
    throw Error(fmt::format(
        "no valid layout of the {} devices: pipeline can be {} (divisors of the devices that divide the {} layers), "
        "tensor {} (at most {}, dividing heads {}, d_ff {}, expert_d_ff {}), and data x expert = devices / (tensor x "
        "pipeline) must divide the {} sequences of a step{}; change cluster.count, training.batch_tokens or the model",
        s.devices, ps.empty() ? "nothing" : text::join(ps), s.layers, ts.empty() ? "nothing" : text::join(ts),
        s.max_tensor, s.heads, s.d_ff, s.expert_d_ff, s.sequences,
        s.experts > 0 ? fmt::format(", with expert dividing the {} experts", s.experts) : std::string()));
  }
  return out;
}

std::string to_string(Verdict v) {
  switch (v) {
    case Verdict::simulate: return "simulate";
    case Verdict::invalid: return "invalid";
    case Verdict::out_of_memory: return "out_of_memory";
    case Verdict::dominated: return "dominated";
  }
  return "?";
}

std::vector<Candidate> screen_layouts(const std::vector<Layout>& layouts,
                                      const std::function<scenario::Scenario(const Layout&)>& resolve,
                                      const catalog::AcceleratorSpec& accel) {
  const double gib = units::kGiB;
  std::vector<Candidate> out;
  out.reserve(layouts.size());
  for (const Layout& l : layouts) {
    Candidate c;
    c.layout = l;
    try {
      const scenario::Scenario s = resolve(l);
      const workload::MemoryEstimate m = workload::estimate_memory_need(s, accel);
      c.need_bytes = m.total_bytes();
      c.capacity_bytes = m.capacity_bytes;
      c.remat = m.remat;
      c.selective = m.selective;
      if (c.need_bytes > c.capacity_bytes) {
        c.verdict = Verdict::out_of_memory;
        c.reason = fmt::format("does not fit: {:.1f} GiB needed per device ({:.1f} params + {:.1f} grads + {:.1f} "
                               "optimizer + {:.1f} activations{}), {:.1f} GiB available",
                               c.need_bytes / gib, m.params_bytes / gib, m.grads_bytes / gib, m.optimizer_bytes / gib,
                               m.activations_bytes / gib, m.remat ? " with rematerialization" : m.selective ? " selective" : "",
                               c.capacity_bytes / gib);
      }
    } catch (const Error& e) {
      c.verdict = Verdict::invalid;
      c.reason = e.what();
    }
    out.push_back(std::move(c));
  }
  auto find = [&](Layout l) -> const Candidate* {
    for (const Candidate& c : out)
      if (c.layout == l) return &c;
    return nullptr;
  };
  // (1) ZeRO-1 when ZeRO-2 of the same layout fits.
  for (Candidate& c : out) {
    if (c.verdict != Verdict::simulate || c.layout.zero_stage != 1) continue;
    Layout two = c.layout;
    two.zero_stage = 2;
    if (const Candidate* d = find(two); d && d->verdict == Verdict::simulate) {
      c.verdict = Verdict::dominated;
      auto mode = [](const Candidate& x) { return x.remat ? "full" : x.selective ? "selective" : "none"; };
      if (d->remat == c.remat && d->selective == c.selective)
        c.reason = fmt::format("dominated by {}: ZeRO stages 1 and 2 build the same step, stage 2 needs no more memory "
                               "({:.2f} vs {:.2f} GiB)",
                               two.label(), d->need_bytes / gib, c.need_bytes / gib);
      else  // auto recomputation: stage 2's sharded gradients leave room to keep more activations
        c.reason = fmt::format("dominated by {}: ZeRO stage 2 shards the gradients too, so it fits with less recomputation "
                               "({} vs {}; {:.2f} vs {:.2f} GiB) and its step is no slower",
                               two.label(), mode(*d), mode(c), d->need_bytes / gib, c.need_bytes / gib);
    }
  }
  // (2) Without a pipeline, the fewest micro-batches of each (data, expert, tensor, ZeRO, rematerialisation).
  std::map<std::tuple<int, int, int, int, bool, bool>, std::size_t> fewest;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const Candidate& c = out[i];
    if (c.verdict != Verdict::simulate || c.layout.pipeline != 1) continue;
    const auto key = std::make_tuple(c.layout.data, c.layout.expert, c.layout.tensor, c.layout.zero_stage, c.remat, c.selective);
    auto it = fewest.find(key);
    if (it == fewest.end() || out[it->second].layout.microbatches > c.layout.microbatches) fewest[key] = i;
  }
  for (Candidate& c : out) {
    if (c.verdict != Verdict::simulate || c.layout.pipeline != 1) continue;
    const auto key = std::make_tuple(c.layout.data, c.layout.expert, c.layout.tensor, c.layout.zero_stage, c.remat, c.selective);
    const Candidate& best = out[fewest.at(key)];
    if (&best == &c) continue;
    c.verdict = Verdict::dominated;
    c.reason = fmt::format("dominated by {} (rule): without a pipeline, more micro-batches split the same work, with the "
                           "same recomputation, into smaller pieces",
                           best.layout.label());
  }
  return out;
}

void require_simulable(const std::vector<Candidate>& candidates, const std::string& accelerator) {
  const double gib = units::kGiB;
  const Candidate* smallest = nullptr;
  std::vector<std::string> invalid;
  for (const Candidate& c : candidates) {
    if (c.verdict == Verdict::simulate) return;
    if (c.verdict == Verdict::invalid && invalid.size() < 3) invalid.push_back(c.layout.label() + ": " + c.reason);
    if (c.verdict == Verdict::out_of_memory && (!smallest || c.need_bytes < smallest->need_bytes)) smallest = &c;
  }
  if (smallest)
    throw Error(fmt::format("no layout fits in memory: the smallest need of the {} layouts is {:.1f} GiB per device ({}) "
                            "but one {} device has {:.1f} GiB; give more devices (cluster.count) or devices with more memory",
                            candidates.size(), smallest->need_bytes / gib, smallest->layout.label(), accelerator,
                            smallest->capacity_bytes / gib));
  throw Error(fmt::format("none of the {} layouts resolves to a valid scenario; the first: {}", candidates.size(),
                          invalid.empty() ? std::string("(none)") : text::join(invalid, "; ")));
}

// ---- Serving -----------------------------------------------------------------------------------------------------

std::string ServingLayout::label() const {
  return fmt::format("r{} d{} t{} e{} p{}", replicas, data, tensor, expert, pipeline);
}

nlohmann::json ServingLayout::pool(const std::string& datacenter) const {
  nlohmann::json p{{"replicas", replicas}, {"data", data}, {"tensor", tensor}, {"expert", expert}, {"pipeline", pipeline}};
  if (!datacenter.empty()) p["datacenter"] = datacenter;
  return p;
}

bool ServingLayout::operator==(const ServingLayout& o) const {
  return std::tie(replicas, data, tensor, expert, pipeline) == std::tie(o.replicas, o.data, o.tensor, o.expert, o.pipeline);
}

std::vector<std::string> serving_enumeration_rules(const PlanSpace& s) {
  return {
      fmt::format("one colocated pool: replicas x data x tensor x pipeline = the {} devices", s.devices),
      fmt::format("tensor divides the {} heads and is at most {}, {}", s.heads, s.max_tensor, s.max_tensor_basis),
      fmt::format("pipeline divides the {} layers{}", s.layers,
                  s.max_pipeline > 0 ? fmt::format(" and is at most {} (--max-pipeline)", s.max_pipeline) : std::string()),
      s.experts > 0 ? fmt::format("experts either in every tensor group (expert 1, data 1) or spread whole over a replica's "
                                  "data x tensor ranks (expert = data x tensor, dividing the {} experts; data > 1 is "
                                  "data-parallel attention feeding that expert parallelism)",
                                  s.experts)
                    : std::string("a dense model: expert 1 and data 1 (more data-parallel ranks are more replicas)"),
  };
}

std::vector<ServingLayout> enumerate_serving_layouts(const PlanSpace& s) {
  if (s.devices < 1) throw Error("the plan needs at least one device (cluster.count)");
  std::vector<ServingLayout> out;
  const std::vector<long long> devs = divisors(s.devices);
  for (long long p : devs) {
    if (!divides(p, s.layers) || (s.max_pipeline > 0 && p > s.max_pipeline)) continue;
    for (long long t : devs) {
      if (t > s.max_tensor || !divides(t, s.heads) || !divides(p * t, s.devices)) continue;
      for (long long d : divisors(s.devices / (p * t))) {
        const long long replicas = s.devices / (p * t * d);
        std::vector<long long> experts;
        if (d == 1) experts.push_back(1);
        if (s.experts > 0 && d * t > 1 && divides(d * t, s.experts)) experts.push_back(d * t);
        for (long long e : experts)
          out.push_back({static_cast<int>(replicas), static_cast<int>(d), static_cast<int>(t), static_cast<int>(e),
                         static_cast<int>(p)});
      }
    }
  }
  if (out.empty())
    throw Error(fmt::format("no serving layout of the {} devices: the rules ({}) leave none; change cluster.count or the model",
                            s.devices, text::join(serving_enumeration_rules(s), "; ")));
  return out;
}

std::vector<ServingCandidate> screen_serving_layouts(const std::vector<ServingLayout>& layouts,
                                                     const std::function<scenario::Scenario(const ServingLayout&)>& resolve,
                                                     const catalog::AcceleratorSpec& accel) {
  std::vector<ServingCandidate> out;
  out.reserve(layouts.size());
  for (const ServingLayout& l : layouts) {
    ServingCandidate c;
    c.layout = l;
    try {
      const scenario::Scenario s = resolve(l);
      if (!s.is_serving() || s.serving->pools.size() != 1) throw Error("the layout does not resolve to one serving pool");
      const workload::ReplicaMemory m = workload::replica_memory(s, s.serving->pools.front(), accel);
      c.weights_bytes = m.weights_bytes;
      c.kv_bytes = m.kv_bytes;
      c.capacity_bytes = m.capacity_bytes;
    } catch (const MemoryFitError& e) {
      c.verdict = Verdict::out_of_memory;
      c.reason = e.what();
    } catch (const Error& e) {
      c.verdict = Verdict::invalid;
      c.reason = e.what();
    }
    out.push_back(std::move(c));
  }
  return out;
}

long long replicas_for_load(const ServingLayout& layout, double max_rate_rps, double load_rps) {
  if (!(max_rate_rps > 0.0) || !(load_rps > 0.0) || !std::isfinite(max_rate_rps) || !std::isfinite(load_rps) ||
      layout.replicas < 1)
    return 0;
  const double per_replica = max_rate_rps / layout.replicas;
  // The ratio of two rounded figures can land a hair above an integer (0.1 * 3 / 0.1): round that down first.
  const double need = load_rps / per_replica;
  if (!(need <= kMaxReplicasForLoad)) return 0;
  const double whole = std::round(need);
  return static_cast<long long>(std::abs(need - whole) <= 1e-9 * whole ? whole : std::ceil(need));
}

void require_simulable(const std::vector<ServingCandidate>& candidates) {
  std::vector<std::string> why;
  for (const ServingCandidate& c : candidates) {
    if (c.verdict == Verdict::simulate) return;
    if (why.size() < 3) why.push_back(fmt::format("{} ({}): {}", c.layout.label(), to_string(c.verdict), c.reason));
  }
  throw Error(fmt::format("none of the {} serving layouts can be simulated; the first: {}", candidates.size(),
                          why.empty() ? std::string("(none)") : text::join(why, "; ")));
}

}  // namespace moesim::engine
