// SPDX-License-Identifier: Apache-2.0
// Cross-field validation, derived defaults, and the typed Scenario.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <numeric>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "moesim/core/utc_time.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim/scenario/loader.hpp"

namespace moesim::scenario {

namespace {

/** The items of a comma-separated list, each trimmed of spaces and tabs (empty items kept). */
std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    const auto b = cur.find_first_not_of(" \t"), e = cur.find_last_not_of(" \t");
    out.push_back(b == std::string::npos ? std::string() : cur.substr(b, e - b + 1));
    cur.clear();
  };
  for (char c : text) {
    if (c == ',') flush();
    else cur += c;
  }
  flush();
  return out;
}

/** parallelism.placement: a comma-separated permutation of tensor, expert, data and pipeline (spaces allowed),
 *  innermost first; empty when the text is not one. */
std::vector<std::string> placement_order(const std::string& text) {
  const std::vector<std::string> out = comma_list(text);
  std::vector<std::string> sorted = out;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != std::vector<std::string>{"data", "expert", "pipeline", "tensor"}) return {};
  return out;
}

using nlohmann::json;
using Locations = std::map<std::string, std::tuple<std::string, int, int>>;

/** Most devices (chips x devices per chip, or a product of parallel degrees) any check below accepts before it
 *  stops multiplying: far above any cluster (cluster.count is bounded at 1e7 chips), far below where int64 wraps. */
constexpr long long kMaxDeviceProduct = 1000000000000LL;  // 1e12

/** The product of user-given counts (each at most INT_MAX after the loader), or nullopt once it passes
 *  `bound`. Checked before every multiplication, so it never overflows. */
std::optional<long long> bounded_product(std::initializer_list<long long> factors, long long bound = kMaxDeviceProduct) {
  long long prod = 1;
  for (long long f : factors) {
    if (f < 0) return std::nullopt;
    if (__builtin_mul_overflow(prod, f, &prod) || prod > bound) return std::nullopt;
  }
  return prod;
}

/** The divisor of n (>= 1) closest to `target`, the smallest of equally close ones; O(sqrt(n)). */
/** The defaults of the `parallelism` keys (fields.cpp), for `parallelism: auto` (a string, so fill_defaults left it). */
void fill_parallelism_defaults(json& p) {
  for (const FieldSpec* f : children_of("parallelism"))
    if (!f->default_value.is_null()) p[f->path.substr(std::string("parallelism.").size())] = f->default_value;
}

long long closest_divisor(long long n, long long target) {
  long long best = 1;
  auto consider = [&](long long d) {
    const long long gap = std::llabs(d - target), best_gap = std::llabs(best - target);
    if (gap < best_gap || (gap == best_gap && d < best)) best = d;
  };
  for (long long d = 1; d <= n / d; ++d) {
    if (n % d != 0) continue;
    consider(d);
    consider(n / d);
  }
  return best;
}

class Resolver {
 public:
  Resolver(json doc, const Locations& locs, std::string file, const catalog::Catalog& catalog, bool plan_base)
      : doc_(std::move(doc)), locs_(locs), file_(std::move(file)), catalog_(catalog), plan_base_(plan_base) {}

  Scenario run();

 private:
  [[noreturn]] void fail(const std::string& path, const std::string& message) const {
    std::string p = path;
    while (true) {
      auto it = locs_.find(p);
      if (it != locs_.end()) {
        const auto& [file, line, col] = it->second;
        throw InputError(file, line, col, path, message);
      }
      if (p.empty()) throw InputError(file_, 1, 1, path, message);
      std::size_t cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
  }
  bool has(const json& section, const char* key) const { return section.contains(key) && !section[key].is_null(); }
  static long long i(const json& v) { return v.get<long long>(); }

  bool given(const std::string& path) const { return locs_.count(path) > 0; }
  /** fail() for a key the section's `type` does not use. When that type came from a --set of the type alone, the
   *  file's other keys of the old type were kept: say how to replace the section instead. */
  [[noreturn]] void fail_unused(const std::string& path, const std::string& message) const {
    const std::string type_path = path.substr(0, path.find_last_of('.')) + ".type";
    const auto it = locs_.find(type_path);
    if (it != locs_.end() && std::get<0>(it->second).rfind("--set " + type_path + "=", 0) == 0)
      fail(path, fmt::format("{} ({} sets only the type and keeps the section's other keys; to replace the section give it "
                             "whole: --set '{}={{type: ..., ...}}')",
                             message, std::get<0>(it->second), type_path.substr(0, type_path.size() - 5)));
    fail(path, message);
  }
  void resolve_model();
  void resolve_training_and_parallelism();
  void resolve_serving();
  void resolve_routing();
  void resolve_cluster();
  void resolve_placement();
  /** Serving: the chips the pools put in each datacenter, checked against the shares and whole nodes. */
  void resolve_serving_sites();
  /** Serving with pinned pools and no share given: each datacenter's share from the pinned pools' chips. */
  void derive_serving_shares();
  /** The datacenter names of `placement`, in order. */
  std::vector<std::string> site_names() const;
  /** Datacenter k's `chips` fill whole GPU nodes and leaf groups (fat-tree clusters); else an error at `key` saying
   *  where the chips come from (`why`) and what to change (`remedy`). */
  void check_site_nodes(std::size_t k, long long chips, const std::string& key, const std::string& why,
                        const std::string& remedy) const;
  void resolve_energy();
  Scenario build() const;
  scenario::ServingSpec build_serving(const json& sv) const;
  /** The training fields' defaults, for a serving scenario's unused TrainingSpec. */
  static const json& training_defaults() {
    static const json t = {{"batch_tokens", 0.0}, {"optimizer", "adam"}, {"rematerialization", "none"},
                           {"steps_simulated", 1}, {"overlap_grad_reduce", false},
                            {"attention_dropout", 0.0}, {"attention_kernel", "materialized"}, {"grad_dtype", "auto"}};
    return t;
  }

  json doc_;
  const Locations& locs_;
  std::string file_;
  const catalog::Catalog& catalog_;
  const catalog::AcceleratorSpec* accel_ = nullptr;
  std::vector<std::optional<catalog::DatacenterSpec>> inline_dcs_;
  /** The planner's base (load_plan_base): the layout is the planner's to choose, so it is not checked here. */
  bool plan_base_ = false;
};

void Resolver::resolve_model() {
  json& m = doc_["model"];
  const bool encdec = m["architecture"] == "encoder_decoder";
  if (encdec) {
    if (has(m, "layers"))
      fail("model.layers", "not used for encoder_decoder; give model.encoder_layers and model.decoder_layers");
    if (!has(m, "encoder_layers") || !has(m, "decoder_layers"))
      fail("model", "encoder_decoder needs model.encoder_layers and model.decoder_layers");
  } else {
    if (has(m, "encoder_layers") || has(m, "decoder_layers"))
      fail(has(m, "encoder_layers") ? "model.encoder_layers" : "model.decoder_layers",
           "only for architecture encoder_decoder; a decoder_only model gives model.layers");
    if (!has(m, "layers")) fail("model", "missing required key model.layers (decoder_only)");
    m["encoder_layers"] = 0;
    m["decoder_layers"] = m["layers"];
  }
  const long long d_model = i(m["d_model"]), heads = i(m["heads"]);
  if (!has(m, "d_head")) {
    if (d_model % heads != 0)
      fail("model.heads", fmt::format("d_model {} is not divisible by heads {}; give model.d_head", d_model, heads));
    m["d_head"] = d_model / heads;
  }
  if (!has(m, "expert_d_ff")) m["expert_d_ff"] = m["d_ff"];
  if (!has(m, "kv_heads")) m["kv_heads"] = m["heads"];
  if (i(m["kv_heads"]) > heads || heads % i(m["kv_heads"]) != 0)
    fail("model.kv_heads", fmt::format("kv_heads {} must divide heads {} (grouped-query attention shares each key/value "
                                       "head among heads / kv_heads query heads)", i(m["kv_heads"]), heads));
  if (has(m, "mla") && has(m, "kv_heads") && given("model.kv_heads") && i(m["kv_heads"]) != heads)
    fail("model.kv_heads", "multi-head latent attention (model.mla) caches one latent per token, not per key/value head; "
                           "drop kv_heads");
  if (!has(m, "target_seq_len")) m["target_seq_len"] = m["seq_len"];
  const long long experts = i(m["experts"]);
  if (experts == 0 && i(m["shared_experts"]) > 0)
    fail("model.shared_experts", "shared experts need an MoE model (model.experts is 0)");
  const long long stack_layers = std::max(i(m["encoder_layers"]), i(m["decoder_layers"]));
  if (i(m["mtp_depth"]) > 0 && i(m["encoder_layers"]) > 0)
    fail("model.mtp_depth", "multi-token prediction modules extend a decoder-only model (DeepSeek-V3); this model has an "
                            "encoder");
  if (i(m["first_dense_layers"]) > 0 && experts == 0)
    fail("model.first_dense_layers", "only for an MoE model (model.experts is 0: every layer is dense)");
  if (i(m["first_dense_layers"]) >= stack_layers && experts > 0)
    fail("model.first_dense_layers", fmt::format("first_dense_layers {} leaves no MoE layer in a stack of {} layers",
                                                 i(m["first_dense_layers"]), stack_layers));
  if (experts > 0) {
    if (i(m["top_k"]) > experts)
      fail("model.top_k", fmt::format("top_k {} exceeds the number of experts {}", i(m["top_k"]), experts));
    const long long max_stack = std::max(i(m["encoder_layers"]), i(m["decoder_layers"]));
    if (i(m["moe_every"]) > max_stack)
      fail("model.moe_every", fmt::format("moe_every {} exceeds the layers of the stack ({}): no MoE layer would exist",
                                          i(m["moe_every"]), max_stack));
  }
}

void Resolver::resolve_cluster() {
  json& c = doc_["cluster"];
  const std::string name = c["accelerator"];
  if (!catalog_.has_accelerator(name)) {
    auto close = text::closest(name, catalog_.accelerator_names());
    fail("cluster.accelerator", fmt::format("unknown accelerator '{}'; closest: {}; all: {}", name, text::join(close),
                                            text::join(catalog_.accelerator_names())));
  }
  accel_ = &catalog_.accelerator(name);
  // The model's dtype runs on the accelerator's matrix units (as the engine's feasibility check requires).
  const std::string dtype = doc_["model"]["dtype"];
  if (accel_->peak_matmul_flops_per_s.count(dtype) == 0) {
    std::vector<std::string> dtypes;
    for (const auto& kv : accel_->peak_matmul_flops_per_s) dtypes.push_back(kv.first);
    fail(given("model.dtype") ? "model.dtype" : "cluster.accelerator",
         fmt::format("accelerator '{}' (cluster.accelerator) has no matrix-unit peak for model.dtype {}; its matrix units take {}",
                     name, dtype, text::join(dtypes)));
  }
  const long long count = i(c["count"]);
  json& t = c["topology"];
  std::string type = t["type"];
  const bool tpu = accel_->kind == catalog::AcceleratorKind::tpu;
  if (has(c, "power_limit_w")) {
    const double limit = c["power_limit_w"].get<double>();
    if (tpu)
      fail("cluster.power_limit_w", fmt::format("a board power limit is a GPU setting (nvidia-smi -pl); {} is a TPU, whose power "
                                                "is not set by its users; remove cluster.power_limit_w",
                                                name));
    if (!accel_->power_limit_allowed(limit))
      fail("cluster.power_limit_w",
           fmt::format("{} W is outside what a {} can be limited to: above its active power {} W (a job on it doing nothing) "
                       "and at most its full power {} W (profiles/accelerators/{}.yaml: active_w, full_w)",
                       limit, name, accel_->active_w, accel_->full_w, name));
  }
  if (type == "auto") type = tpu ? (accel_->pod_dims.size() == 3 ? "torus_3d" : "torus_2d") : "nvlink_fat_tree";
  if (tpu && type == "nvlink_fat_tree")
    fail("cluster.topology.type", fmt::format("{} chips are connected by ICI in a torus; allowed: torus_2d, torus_3d", name));
  if (!tpu && type != "nvlink_fat_tree")
    fail("cluster.topology.type", fmt::format("{} GPUs are connected by NVLink nodes and a fat-tree; allowed: nvlink_fat_tree", name));
  t["type"] = type;
  if (type == "torus_2d" || type == "torus_3d") {
    const std::size_t nd = type == "torus_2d" ? 2 : 3;
    if (!has(t, "dims")) {
      // Near-square factorisation, smallest dimension first.
      std::vector<long long> dims;
      long long rest = count;
      for (std::size_t k = nd; k > 1; --k) {
        long long target = static_cast<long long>(std::llround(std::pow(static_cast<double>(rest), 1.0 / static_cast<double>(k))));
        const long long best = closest_divisor(rest, target);
        dims.push_back(best);
        rest /= best;
      }
      dims.push_back(rest);
      std::sort(dims.begin(), dims.end());
      t["dims"] = dims;
    }
    const json& dims = t["dims"];
    if (dims.size() != nd)
      fail("cluster.topology.dims", fmt::format("{} needs {} dimensions, got {}", type, nd, dims.size()));
    std::optional<long long> prod = 1;
    for (const auto& d : dims) {
      if (i(d) < 1) fail("cluster.topology.dims", "dimensions must be >= 1");
      if (prod) prod = bounded_product({*prod, i(d)});
    }
    if (prod != count)
      fail("cluster.topology.dims", fmt::format("product of dims {} = {} but cluster.count = {}", dims.dump(),
                                                prod ? std::to_string(*prod) : fmt::format("more than {}", kMaxDeviceProduct),
                                                count));
    t.erase("gpus_per_node");
  } else {
    if (has(t, "dims")) fail("cluster.topology.dims", "only for torus topologies");
    if (!has(t, "gpus_per_node")) t["gpus_per_node"] = accel_->gpus_per_node > 0 ? accel_->gpus_per_node : 8;
    const long long gpn = i(t["gpus_per_node"]);
    if (count % gpn != 0)
      fail("cluster.count", fmt::format("{} GPUs do not fill whole nodes of {} GPUs (cluster.topology.gpus_per_node sets the "
                                        "node size: a smaller node, e.g. 1 for a single GPU, or a multiple of {} GPUs)",
                                        count, gpn, gpn));
  }
}

void Resolver::resolve_training_and_parallelism() {
  const json& m = doc_["model"];
  // Multi-head latent attention is DeepSeek-V2/V3's decoder-only self-attention: the step models no cross-attention
  // with it (serving refuses encoder-decoder models altogether).
  if (has(m, "mla") && m["architecture"] == "encoder_decoder")
    fail("model.mla", "multi-head latent attention is modelled for decoder-only models (DeepSeek-V2/V3's self-attention); "
                      "an encoder_decoder model has cross-attention, which it does not model: drop model.mla or use "
                      "architecture decoder_only");
  json& tr = doc_["training"];
  json& p = doc_["parallelism"];
  const std::string remat_kind = tr["rematerialization"];
  if (remat_kind == "none" || remat_kind == "full") {
    if (has(tr, "recompute_modules"))
      fail_unused("training.recompute_modules", fmt::format("only used by selective recomputation (rematerialization "
                                                            "selective or auto), not {}", remat_kind));
  } else {
    // Selective recomputation's modules: known names, each one the model has. Unset: the attention core.
    if (!has(tr, "recompute_modules")) tr["recompute_modules"] = "core_attn";
    const std::string given_modules = tr["recompute_modules"];
    static const std::vector<std::string> known{"core_attn", "layernorm", "mla_up_proj", "moe_act"};
    std::size_t count = 0;
    for (const std::string& n : comma_list(given_modules)) {
      if (n.empty()) continue;
      ++count;
      if (std::find(known.begin(), known.end(), n) == known.end())
        fail("training.recompute_modules", fmt::format("unknown module '{}' (allowed: {})", n, text::join(known)));
      if (n == "mla_up_proj" && !has(m, "mla"))
        fail("training.recompute_modules", "mla_up_proj recomputes multi-head latent attention's up-projections: the model has "
                                           "no model.mla");
      if (n == "moe_act" && i(m["experts"]) == 0)
        fail("training.recompute_modules", "moe_act recomputes the routed experts' activations: the model has no experts");
    }
    if (count == 0)
      fail("training.recompute_modules", fmt::format("give at least one module (allowed: {})", text::join(known)));
  }
  const long long chips = i(doc_["cluster"]["count"]);
  const long long per_chip = accel_->devices_per_chip;
  if (p.is_string()) {
    if (p.get<std::string>() != "auto") {
      std::vector<std::string> keys;
      for (const FieldSpec* f : children_of("parallelism")) keys.push_back(f->path.substr(std::string("parallelism.").size()));
      fail("parallelism", fmt::format("expected a mapping with keys ({}) or `auto` (the planner chooses: moesim plan), got {}",
                                      text::join(keys), p.get<std::string>()));
    }
    if (!plan_base_)
      fail("parallelism", "`parallelism: auto` asks the planner for a layout; this command needs one: run `moesim plan "
                          "FILE` (it enumerates, prunes, simulates and ranks the valid layouts) and give its best as "
                          "parallelism: {data: .., expert: .., tensor: .., pipeline: .., microbatches: .., zero_stage: .., "
                          "virtual_stages: .., schedule: ..}, or as the --set expressions its last line prints (`run the "
                          "best: ...`)");
    p = json::object();
    fill_parallelism_defaults(p);
  }
  if (plan_base_) {
    // Only the model, batch and cluster are read from the base; every layout the planner proposes is resolved
    // (and so checked) on its own. A placeholder layout: every device data-parallel, nothing else split.
    p["data"] = chips * per_chip;
    p["expert"] = 1;
    p["tensor"] = 1;
    p["pipeline"] = 1;
    p["microbatches"] = 1;
    p["virtual_stages"] = 1;
    p["schedule"] = "1f1b";            // the pipeline schedule is the planner's too (a DualPipe one kept where pipelined)
    p["sequence_parallel"] = false;
    p["overlap_tensor_comm"] = false;  // needs sequence parallelism, which the placeholder leaves off
    p["overlap_expert_comm"] = false;  // pairs micro-batches of an expert-parallel layout: the planner's own to choose
    p.erase("first_stage_layers");     // stage sizes of a pipeline the planner chooses
    p.erase("last_stage_layers");
  }
  const long long data = i(p["data"]), expert = i(p["expert"]), tensor = i(p["tensor"]), pipe = i(p["pipeline"]);
  const std::optional<long long> devices = bounded_product({data, expert, tensor, pipe});
  if (devices != chips * per_chip)
    fail("parallelism", fmt::format("data x expert x tensor x pipeline = {} x {} x {} x {} = {} devices, but the cluster "
                                     "has {} chips x {} device{} per chip ({}) = {} devices",
                                     data, expert, tensor, pipe,
                                     devices ? std::to_string(*devices) : fmt::format("more than {}", kMaxDeviceProduct),
                                     chips, per_chip, per_chip == 1 ? "" : "s", accel_->name, chips * per_chip));
  const long long experts = i(m["experts"]);
  if (experts == 0 && expert > 1)
    fail("parallelism.expert", fmt::format("expert parallelism {} needs an MoE model (model.experts is 0)", expert));
  if (experts > 0 && (expert > experts || experts % expert != 0))
    fail("parallelism.expert", fmt::format("expert parallelism {} must divide the {} experts", expert, experts));
  if (i(m["heads"]) % tensor != 0)
    fail("parallelism.tensor", fmt::format("tensor parallelism {} must divide heads {}", tensor, i(m["heads"])));
  // Grouped-query attention: a rank holds whole key/value heads (tensor dividing kv_heads), or each is replicated on
  // tensor / kv_heads ranks, as the serving pools require (vLLM's QKVParallelLinear).
  if (const long long kv = i(m["kv_heads"]); (tensor < kv && kv % tensor != 0) || (tensor > kv && tensor % kv != 0))
    fail("parallelism.tensor", fmt::format("tensor parallelism {} must divide kv_heads {} or be a multiple of it (a rank holds "
                                           "whole key/value heads, or each is replicated on tensor / kv_heads ranks)",
                                           tensor, kv));
  if (i(m["d_ff"]) % tensor != 0 || i(m["expert_d_ff"]) % tensor != 0)
    fail("parallelism.tensor", fmt::format("tensor parallelism {} must divide d_ff {} and expert_d_ff {}", tensor,
                                           i(m["d_ff"]), i(m["expert_d_ff"])));
  const long long layers = i(m["encoder_layers"]) + i(m["decoder_layers"]);
  if (pipe > layers) fail("parallelism.pipeline", fmt::format("{} pipeline stages but only {} layers", pipe, layers));
  const long long virt = i(p["virtual_stages"]);
  // The schedule names what virtual_stages already decides: 1 chunk per stage is 1F1B, more is Megatron-LM's
  // interleaved 1F1B. A name given against the chunks is an error; left out, it follows them. The DualPipe schedules
  // fix two chunks per stage themselves.
  const std::string sched = p["schedule"];
  const bool dual = sched == "dualpipev" || sched == "dualpipe";
  if (dual) {
    // DualPipeV: two chunks per stage in a V; DualPipe: two directions, each the whole model over the stages, so two
    // chunks per stage too (workload::stage_schedule). deepseek-ai/DualPipe's dualpipev.py asserts num_chunks >=
    // num_ranks * 2, dualpipe.py also an even num_ranks and num_chunks.
    if (given("parallelism.virtual_stages") && virt != 2)
      fail("parallelism.virtual_stages", fmt::format("schedule {} holds two model chunks per stage: virtual_stages must be "
                                                     "2 or left out, not {}", sched, virt));
    if (pipe < 2) fail("parallelism.schedule", fmt::format("{} is a pipeline schedule: it needs parallelism.pipeline > 1", sched));
    if (sched == "dualpipe" && pipe % 2 != 0)
      fail("parallelism.pipeline", fmt::format("schedule dualpipe pairs stage s with stage P - 1 - s: it needs an even "
                                               "number of stages, not {}", pipe));
    if (i(p["microbatches"]) < 2 * pipe || (sched == "dualpipe" && i(p["microbatches"]) % 2 != 0))
      fail("parallelism.microbatches", fmt::format("schedule {} needs at least 2 x pipeline = {} micro-batches{}, not {}",
                                                   sched, 2 * pipe,
                                                   sched == "dualpipe" ? ", an even number (half fed at each end)"
                                                                       : " (DualPipeV fills the V from one end)",
                                                   i(p["microbatches"])));
    p["virtual_stages"] = 2;
  }
  const long long virt_now = i(p["virtual_stages"]);
  if (sched == "interleaved_1f1b" && virt < 2)
    fail("parallelism.schedule", "interleaved_1f1b runs several model chunks per stage: set parallelism.virtual_stages "
                                 "to the chunks per stage (2 or more; Narayanan et al. 2021 section 2.2.2)");
  if (sched == "1f1b" && virt > 1 && given("parallelism.schedule"))
    fail("parallelism.schedule", fmt::format("1f1b runs one model chunk per stage but parallelism.virtual_stages is {}: "
                                             "use schedule interleaved_1f1b (or leave schedule out)", virt));
  if (virt > 1 && !dual) p["schedule"] = "interleaved_1f1b";
  if (virt_now > 1 && sched != "dualpipe") {  // DualPipe's two chunks are two directions over the same P stages
    if (pipe < 2) fail("parallelism.virtual_stages", "the interleaved schedule needs parallelism.pipeline > 1");
    if (pipe * virt_now > layers)
      fail(dual ? "parallelism.schedule" : "parallelism.virtual_stages",
           fmt::format("{} stages x {} chunks need at least as many layers, but the model has {}", pipe, virt_now, layers));
  }
  if (virt > 1 && !dual) {
    if (i(p["microbatches"]) % pipe != 0)
      fail("parallelism.virtual_stages", fmt::format("the interleaved schedule needs micro-batches ({}) to be a multiple of "
                                                     "the pipeline stages ({}), as Megatron-LM does",
                                                     i(p["microbatches"]), pipe));
  }
  // Uneven first and last stages (1F1B), or first and last model chunks (DualPipe, DualPipeV): each chunk of the chain
  // keeps at least one layer.
  const bool first_given = has(p, "first_stage_layers"), last_given = has(p, "last_stage_layers");
  if (first_given || last_given) {
    const char* key = first_given ? "parallelism.first_stage_layers" : "parallelism.last_stage_layers";
    if (pipe < 2) fail(key, "sets the layers of a pipeline stage: needs parallelism.pipeline > 1");
    if (virt > 1 && !dual)
      fail(key, fmt::format("is for one model chunk per stage, or the DualPipe schedules; parallelism.virtual_stages is {} "
                            "(use 1)", virt));
    // The chain the layers split over: the P stages, DualPipeV's 2P chunks, or one DualPipe direction's P stages.
    const bool v = sched == "dualpipev";
    const long long chain = v ? 2 * pipe : pipe;
    const long long first = first_given ? i(p["first_stage_layers"]) : 0, last = last_given ? i(p["last_stage_layers"]) : 0;
    const long long others = chain - (first_given ? 1 : 0) - (last_given ? 1 : 0), rest = layers - first - last;
    if (others == 0 ? rest != 0 : rest < others)
      fail(key, fmt::format("{} + {} layers on the first and last {} leave {} for the other {} {}{} of {} layers in all "
                            "(each of them needs at least one{})",
                            first, last, v ? "model chunks of the V" : "stages", rest, others, v ? "chunk" : "stage",
                            others == 1 ? "" : "s", layers,
                            others == 0 ? "; with two stages the two counts must add up to the layers" : ""));
  }
  if (p["sequence_parallel"].get<bool>() && tensor < 2)
    fail("parallelism.sequence_parallel", "sequence parallelism shards activations over the tensor-parallel ranks: it "
                                          "needs parallelism.tensor > 1");
  if (p["overlap_tensor_comm"].get<bool>() && !p["sequence_parallel"].get<bool>())
    fail("parallelism.overlap_tensor_comm", "overlaps the sequence-parallel all-gathers and reduce-scatters with their GEMMs "
                                            "(Transformer Engine's userbuffers need sequence parallelism too): set "
                                            "parallelism.sequence_parallel: true (with tensor > 1), or remove it");
  if (placement_order(p["placement"].get<std::string>()).empty())
    fail("parallelism.placement", fmt::format("'{}' is not an order of the parallel axes: give each of tensor, expert, data "
                                              "and pipeline once, comma-separated, innermost first (e.g. "
                                              "\"tensor,expert,data,pipeline\")", p["placement"].get<std::string>()));

  const bool has_tokens = has(tr, "tokens"), has_flops = has(tr, "hardware_flops");
  if (has_tokens == has_flops)
    fail(has_tokens ? "training.hardware_flops" : "training",
         "give exactly one of training.tokens (tokens to train on) and training.hardware_flops (the run's compute, "
         "from which the tokens are derived)");
  const double batch = tr["batch_tokens"];
  if (has_tokens && batch > tr["tokens"].get<double>())
    fail("training.batch_tokens", fmt::format("batch of {} tokens exceeds training.tokens {}", batch, tr["tokens"].get<double>()));
  const double seq = static_cast<double>(i(m["seq_len"]));
  const double sequences = batch / seq;
  if (std::fabs(sequences - std::round(sequences)) > 1e-6)
    fail("training.batch_tokens", fmt::format("{} tokens is not a whole number of {}-token sequences", batch, i(m["seq_len"])));
  const long long replicas = data * expert;
  const long long micro = i(p["microbatches"]);
  const double per_replica = std::round(sequences) / static_cast<double>(replicas * micro);
  if (!plan_base_ && (per_replica < 1.0 || std::fabs(per_replica - std::round(per_replica)) > 1e-6))
    fail("training.batch_tokens",
         fmt::format("{} sequences per step do not split into whole sequences over {} data-parallel replicas (data x "
                     "expert) x {} micro-batches",
                     std::llround(sequences), replicas, micro));
}

void Resolver::resolve_serving() {
  json& sv = doc_["serving"];
  if (given("parallelism"))
    fail("parallelism", "a serving scenario splits each replica in serving.pools[] (data, tensor, expert, pipeline); "
                        "drop the training `parallelism` section");
  if (given("training")) fail("training", "a serving scenario has no training section");
  const json& m = doc_["model"];
  if (m["architecture"] == "encoder_decoder")
    fail("model.architecture", "serving supports decoder-only models (prefill + autoregressive decode of one stack)");
  // GPU serving is dropless (AcceleratorSpec::serves_dropless): a capacity given for it would be silently unused.
  if (accel_->serves_dropless()) {
    if (given("model.capacity_factor"))
      fail("model.capacity_factor", fmt::format("serving on {} GPUs is dropless (every token reaches its experts, as vLLM, "
                                                "SGLang and TensorRT-LLM serve MoE models): no capacity factor applies; it is "
                                                "used in training and in TPU serving",
                                                accel_->name));
    if (given("routing.dropless") && !doc_["routing"]["dropless"].get<bool>())
      fail("routing.dropless", fmt::format("serving on {} GPUs is dropless (as vLLM, SGLang and TensorRT-LLM serve MoE models); "
                                           "token dropping applies in training and in TPU serving",
                                           accel_->name));
  }

  // Arrivals.
  json& a = sv["arrival"];
  const std::string type = a["type"];
  const bool rated = type == "poisson" || type == "gamma" || type == "constant" || type == "bursts";
  if (rated && !has(a, "rate_per_s")) fail("serving.arrival", fmt::format("arrival type {} needs rate_per_s", type));
  if (!rated && has(a, "rate_per_s")) fail_unused("serving.arrival.rate_per_s", fmt::format("not used by arrival type {}", type));
  if (type != "gamma" && given("serving.arrival.cv")) fail_unused("serving.arrival.cv", "only used by arrival type gamma");
  if (type != "bursts" && given("serving.arrival.burst_size")) fail_unused("serving.arrival.burst_size", "only used by arrival type bursts");
  if (type == "trace") {
    if (!has(a, "trace_csv")) fail("serving.arrival", "arrival type trace needs trace_csv");
    namespace fs = std::filesystem;
    fs::path csv(a["trace_csv"].get<std::string>());
    if (csv.is_relative() && !file_.empty() && file_.rfind("--", 0) != 0)
      csv = fs::path(file_).parent_path() / csv;
    a["trace_csv"] = csv.lexically_normal().string();
  } else if (has(a, "trace_csv")) {
    fail_unused("serving.arrival.trace_csv", "only used by arrival type trace");
  }
  for (const char* which : {"prompt_length", "output_length"}) {
    const std::string base = std::string("serving.") + which;
    json& l = sv[which];
    const std::string lt = l["type"];
    if (lt == "trace" && type != "trace")
      fail(base + ".type", "lengths come from the trace only with serving.arrival.type trace");
    auto need = [&](const char* key) {
      if (!has(l, key)) fail(base, fmt::format("length type {} needs {}.{}", lt, base, key));
    };
    auto forbid = [&](const char* key) {
      if (given(base + "." + key)) fail_unused(base + "." + key, fmt::format("not used by length type {}", lt));
    };
    if (lt == "fixed") {
      need("value");
      for (const char* k : {"min", "max", "mean", "sigma"}) forbid(k);
    } else if (lt == "uniform") {
      need("max");
      for (const char* k : {"value", "mean", "sigma"}) forbid(k);
    } else if (lt == "lognormal") {
      need("mean");
      need("sigma");
      forbid("value");
    } else {
      for (const char* k : {"value", "min", "max", "mean", "sigma"}) forbid(k);
    }
    if (has(l, "max") && l["max"].get<double>() < l["min"].get<double>())
      fail(base + ".max", fmt::format("max {} is below min {}", l["max"].get<double>(), l["min"].get<double>()));
    if (lt == "lognormal" && has(l, "max") && l["mean"].get<double>() > l["max"].get<double>())
      fail(base + ".mean", fmt::format("mean {} is above max {}", l["mean"].get<double>(), l["max"].get<double>()));
  }
  // A request's prompt and output share the model's context window: a serving engine refuses a request whose
  // prompt plus maximum output exceed it (vLLM's max_model_len check). The longest request the lengths allow
  // must fit model.seq_len (a trace's rows are checked when it is read). A log-normal without a max is cut at
  // the context the other length leaves (its max, or its value), and the resolved scenario says so.
  {
    const long long context = i(m["seq_len"]);
    json& pl = sv["prompt_length"];
    json& ol = sv["output_length"];
    auto upper = [&](const json& l) -> std::optional<double> {
      const std::string lt = l["type"];
      if (lt == "fixed") return l["value"].get<double>();
      if (lt == "trace" || !has(l, "max")) return std::nullopt;
      return l["max"].get<double>();
    };
    auto open_tail = [&](const json& l) { return l["type"] == "lognormal" && !has(l, "max"); };
    if (open_tail(pl) && open_tail(ol))
      fail("serving.prompt_length.max", fmt::format("both lengths are unbounded log-normals: give a max for at least one (a "
                                                    "prompt plus its output must fit model.seq_len, {} tokens)",
                                                    context));
    for (const auto& [which, l, other] : {std::tuple<const char*, json*, json*>{"prompt_length", &pl, &ol},
                                          std::tuple<const char*, json*, json*>{"output_length", &ol, &pl}}) {
      if (!open_tail(*l)) continue;
      const auto o = upper(*other);
      const double left = static_cast<double>(context) - (o ? *o : 1.0);
      const std::string base = std::string("serving.") + which;
      if (left < std::max((*l)["mean"].get<double>(), (*l)["min"].get<double>()))
        fail(base + ".mean", fmt::format("the model's context (model.seq_len {}) leaves {} tokens beside the other length's {}, "
                                         "below this log-normal's mean {} or min {}",
                                         context, left, o ? *o : 1.0, (*l)["mean"].get<double>(), (*l)["min"].get<double>()));
      (*l)["max"] = static_cast<long long>(left);
    }
    const auto p = upper(pl), o = upper(ol);
    const double pp = p ? *p : 1.0, oo = o ? *o : 1.0;  // a trace's lengths: at least 1 token each
    if ((p || o) && pp + oo > static_cast<double>(context))
      fail(p ? "serving.prompt_length" : "serving.output_length",
           fmt::format("a request can need {} tokens of context ({} prompt + {} output at most), more than the model's "
                       "context window model.seq_len = {}: a serving engine refuses such requests; lower the lengths' "
                       "bounds or raise model.seq_len",
                       pp + oo, pp, oo, context));
  }
  const bool bounded = has(sv, "requests") || has(sv, "duration_s") || type == "trace";
  if (!bounded)
    fail("serving", "give serving.requests, serving.duration_s or both: when do requests stop arriving?");
  if (type == "offline" && !has(sv, "requests")) fail("serving", "arrival type offline needs serving.requests");
  if (type == "offline" && has(sv, "duration_s"))
    fail("serving.duration_s", "offline sends every request at time 0; give serving.requests only");
  if (has(sv, "duration_s") && sv["warmup_s"].get<double>() >= sv["duration_s"].get<double>())
    fail("serving.warmup_s", fmt::format("warm-up {} s is not shorter than the {} s of arrivals: nothing would be measured",
                                         sv["warmup_s"].get<double>(), sv["duration_s"].get<double>()));
  if (type == "offline" && sv["warmup_s"].get<double>() > 0.0)
    fail("serving.warmup_s", "offline requests all arrive at time 0: a warm-up would exclude them all");

  // Pools: one colocated pool, or prefill and decode pools.
  json& pools = sv["pools"];
  if (pools.empty()) fail("serving.pools", "needs at least one pool");
  int colocated = 0, prefill = 0, decode = 0;
  long long devices = 0;
  const long long experts = i(m["experts"]), heads = i(m["heads"]), kv_heads = i(m["kv_heads"]);
  for (std::size_t k = 0; k < pools.size(); ++k) {
    const std::string path = fmt::format("serving.pools[{}]", k);
    const json& pl = pools[k];
    const std::string role = pl["role"];
    (role == "colocated" ? colocated : role == "prefill" ? prefill : decode)++;
    const long long data = i(pl["data"]), tensor = i(pl["tensor"]), expert = i(pl["expert"]), pipe = i(pl["pipeline"]);
    constexpr long long kMaxReplicaDevices = 1000000;
    const std::optional<long long> replica_devices = bounded_product({data, tensor, pipe}, kMaxReplicaDevices);
    if (!replica_devices)
      fail(path, fmt::format("data x tensor x pipeline = {} x {} x {} is more than {} devices per replica, more than any "
                             "cluster", data, tensor, pipe, kMaxReplicaDevices));
    const long long per_replica = *replica_devices;
    if (heads % tensor != 0)
      fail(path + ".tensor", fmt::format("tensor parallelism {} must divide heads {}", tensor, heads));
    if (tensor > kv_heads && tensor % kv_heads != 0)
      fail(path + ".tensor", fmt::format("tensor parallelism {} must be a multiple of kv_heads {} when larger (each "
                                         "key/value head is replicated on tensor / kv_heads ranks)", tensor, kv_heads));
    // A rank holds whole key/value heads: vLLM's QKVParallelLinear (model_executor/layers/linear.py) takes
    // divide(total_num_kv_heads, tp_size), which asserts divisibility, when tp_size < total_num_kv_heads.
    if (tensor < kv_heads && kv_heads % tensor != 0)
      fail(path + ".tensor", fmt::format("tensor parallelism {} must divide kv_heads {} when smaller (each rank holds whole "
                                         "key/value heads: {} / {} would leave a head split between ranks)",
                                         tensor, kv_heads, kv_heads, tensor));
    if (expert != 1 && expert != data * tensor)
      fail(path + ".expert", fmt::format("expert parallelism {} must be 1 (experts tensor-split in each tensor group) or "
                                         "data x tensor = {} (whole experts spread over the stage)", expert, data * tensor));
    if (expert > 1 && experts == 0) fail(path + ".expert", "expert parallelism needs an MoE model (model.experts is 0)");
    if (expert > 1 && experts % expert != 0)
      fail(path + ".expert", fmt::format("expert parallelism {} must divide the {} experts", expert, experts));
    if (expert == 1 && experts > 0 && (i(m["expert_d_ff"]) % tensor != 0))
      fail(path + ".tensor", fmt::format("tensor parallelism {} must divide expert_d_ff {} (experts are tensor-split "
                                         "when expert is 1)", tensor, i(m["expert_d_ff"])));
    if (i(m["d_ff"]) % tensor != 0)
      fail(path + ".tensor", fmt::format("tensor parallelism {} must divide d_ff {}", tensor, i(m["d_ff"])));
    if (pipe > i(m["decoder_layers"]))
      fail(path + ".pipeline", fmt::format("{} pipeline stages but only {} layers", pipe, i(m["decoder_layers"])));
    if (per_replica % accel_->devices_per_chip != 0)
      fail(path, fmt::format("a replica of {} devices would share a {} chip ({} devices each) with another replica; give each "
                             "replica whole chips (data x tensor x pipeline a multiple of {})",
                             per_replica, accel_->name, accel_->devices_per_chip, accel_->devices_per_chip));
    const long long add = i(pl["replicas"]) * per_replica;
    if (add > 100000000) fail(path + ".replicas", fmt::format("{} devices in one pool is more than any cluster", add));
    devices += add;
  }
  if (colocated > 0 && (prefill > 0 || decode > 0))
    fail("serving.pools", "either colocated pools, or prefill and decode pools (disaggregated), not both");
  if (colocated == 0 && (prefill == 0 || decode == 0))
    fail("serving.pools", "a disaggregated deployment needs a prefill pool and a decode pool");
  if (colocated > 1 || prefill > 1 || decode > 1)
    fail("serving.pools", "one pool per role (give its replica count in `replicas`)");
  const long long chips = i(doc_["cluster"]["count"]);
  const long long per_chip = accel_->devices_per_chip;
  if (devices != chips * per_chip)
    fail("serving.pools", fmt::format("the pools use {} devices (replicas x data x tensor x pipeline, summed), but the "
                                      "cluster has {} chips x {} device{} per chip = {} devices",
                                      devices, chips, per_chip, per_chip == 1 ? "" : "s", chips * per_chip));

  // Scheduler and KV cache.
  json& sc = sv["scheduler"];
  const std::string st = sc["type"];
  if (st != "chunked_prefill" && given("serving.scheduler.chunk_tokens"))
    fail_unused("serving.scheduler.chunk_tokens", "only used by scheduler type chunked_prefill");
  if (st != "continuous" && given("serving.scheduler.prefill_mode"))
    fail_unused("serving.scheduler.prefill_mode", "only used by scheduler type continuous");
  json& kv = sv["kv_cache"];
  if (!has(kv, "dtype")) kv["dtype"] = m["dtype"];
  const json& r = doc_["routing"];
  if (sv["task_experts_only"].get<bool>() && r["type"] != "task")
    fail("serving.task_experts_only", "only with routing.type task (a replica loads the experts of its task)");
  // A replica holding one task's top_k experts per MoE layer spreads those whole experts over its expert-parallel
  // ranks: more ranks than experts, or a share that is not whole, would leave a rank with part of an expert.
  if (sv["task_experts_only"].get<bool>()) {
    const long long top_k = i(m["top_k"]);
    for (std::size_t k = 0; k < pools.size(); ++k) {
      const long long expert = i(pools[k]["expert"]);
      if (expert > 1 && top_k % expert != 0)
        fail(fmt::format("serving.pools[{}].expert", k),
             fmt::format("with serving.task_experts_only a replica holds only its task's top_k = {} experts per MoE layer, "
                         "which whole experts spread over at most {} expert-parallel ranks: expert parallelism {} must divide "
                         "top_k {} (use expert 1, the experts tensor-split, or data x tensor dividing {})",
                         top_k, top_k, expert, top_k, top_k));
    }
  }
  (void)st;
}

void Resolver::resolve_routing() {
  const json& m = doc_["model"];
  json& r = doc_["routing"];
  const std::string type = r["type"];
  const double skew = r["skew"];
  if (type != "zipf" && skew != 0.0) fail("routing.skew", "only used with routing.type zipf");
  if (type == "load_vector") {
    if (!has(r, "load")) fail("routing", "routing.type load_vector needs routing.load (one value per expert)");
    const auto& load = r["load"];
    if (static_cast<long long>(load.size()) != i(m["experts"]))
      fail("routing.load", fmt::format("has {} values but the model has {} experts", load.size(), i(m["experts"])));
    double sum = 0.0;
    for (const auto& v : load) {
      if (v.get<double>() < 0.0) fail("routing.load", "loads must be >= 0");
      sum += v.get<double>();
    }
    if (!(sum > 0.0)) fail("routing.load", "at least one load must be > 0");
  } else if (has(r, "load")) {
    fail("routing.load", "only used with routing.type load_vector");
  }
  if (type == "task") {
    if (i(m["experts"]) == 0) fail("routing.type", "task routing needs an MoE model (model.experts is 0)");
    if (!has(r, "tasks")) fail("routing", "routing.type task needs routing.tasks (the number of tasks)");
  } else if (has(r, "tasks")) {
    fail("routing.tasks", "only used with routing.type task");
  }
  // The per-node dispatch and node-limited routing: GPU fabrics (NVLink nodes), an MoE model.
  const std::string dispatch = doc_["parallelism"]["expert_dispatch"];
  if (dispatch == "per_node") {
    if (accel_ != nullptr && accel_->kind == catalog::AcceleratorKind::tpu)
      fail("parallelism.expert_dispatch", "per_node is DeepEP's dispatch between GPU nodes; a TPU torus has no NVLink nodes "
                                          "(allowed here: all_to_all)");
    if (i(m["experts"]) == 0) fail("parallelism.expert_dispatch", "per_node dispatches routed tokens: the model has no experts");
  }
  // Expert-communication overlap: GPU SMs shared between the communication kernels and the compute; the pairing of a
  // forward with a backward needs one stage or the interleaved schedule, and ZeRO-3's per-layer gathers would need
  // their own stream in the pair.
  json& par = doc_["parallelism"];
  if (par["overlap_expert_comm"].get<bool>()) {
    // DeepSeek-V3 (arXiv 2412.19437 §3.2.2): 20 of the H800's 132 SMs run the dispatch and combine kernels.
    if (!has(par, "comm_sms")) par["comm_sms"] = 20;
    if (i(m["experts"]) == 0) fail("parallelism.overlap_expert_comm", "overlaps expert all-to-alls: the model has no experts");
    if (i(par["expert"]) < 2)
      fail("parallelism.overlap_expert_comm", "overlaps expert all-to-alls: set parallelism.expert above 1 (it is 1)");
    if (accel_ != nullptr && (accel_->kind == catalog::AcceleratorKind::tpu || accel_->sm_count <= 0))
      fail("parallelism.overlap_expert_comm", fmt::format("shares a GPU's SMs between communication and compute; {} has no "
                                                          "sm_count in its profile (a TPU, or a GPU without one)",
                                                          doc_["cluster"]["accelerator"].get<std::string>()));
    // Plain 1F1B over several stages pairs a stage's forward with a backward that waits, through the next stage, for
    // the forward of the pair before: each stage would idle every other pair. Megatron-Core refuses it likewise (its
    // combined 1F1B needs virtual pipeline stages when pipelining). The DualPipe schedules pair their own chunks (two
    // per stage: virtual_stages 2).
    if (i(par["pipeline"]) > 1 && i(par["virtual_stages"]) < 2)
      fail("parallelism.overlap_expert_comm", fmt::format("with {} pipeline stages the overlap needs the interleaved "
                                                          "schedule: set parallelism.virtual_stages to 2 or more (Megatron-"
                                                          "Core's combined 1F1B requires virtual pipeline stages when "
                                                          "pipelining), or schedule dualpipe or dualpipev, or pipeline 1",
                                                          i(par["pipeline"])));
    if (i(par["zero_stage"]) >= 3)
      fail("parallelism.overlap_expert_comm", "is not modelled with zero_stage 3 (its per-layer parameter gathers); use "
                                              "zero_stage 0, 1 or 2");
    if (accel_ != nullptr && i(par["comm_sms"]) >= accel_->sm_count)
      fail("parallelism.comm_sms", fmt::format("{} SMs for communication leave none for compute: {} has {} (allowed: 1 to {})",
                                               i(par["comm_sms"]), doc_["cluster"]["accelerator"].get<std::string>(),
                                               accel_->sm_count, accel_->sm_count - 1));
    if (par["overlap_tensor_comm"].get<bool>())
      fail("parallelism.overlap_tensor_comm", "is not modelled with parallelism.overlap_expert_comm: the paired "
                                              "micro-batch's compute already runs beside every collective of the pair, "
                                              "the tensor-parallel ones included; set one of them");
    if (par["overlap_shared_experts"].get<bool>())
      fail("parallelism.overlap_shared_experts", "is not used with parallelism.overlap_expert_comm (Megatron-Core refuses "
                                                 "the two together: the paired micro-batch's compute already fills the "
                                                 "all-to-all); set one of them");
  } else if (given("parallelism.comm_sms")) {
    fail_unused("parallelism.comm_sms", "only used with parallelism.overlap_expert_comm: true");
  }
  if (par["overlap_shared_experts"].get<bool>() && (!has(m, "shared_experts") || i(m["shared_experts"]) == 0))
    fail("parallelism.overlap_shared_experts", "overlaps the shared experts with the dispatch: the model has none "
                                               "(model.shared_experts is 0)");
  if (has(r, "max_nodes") && dispatch != "per_node")
    fail("routing.max_nodes", "node-limited routing changes what crosses the network only when each token is sent once per "
                              "node: set parallelism.expert_dispatch: per_node (DeepEP, as DeepSeek-V3 does), or remove "
                              "routing.max_nodes");
  if (r["group_split"] == "mesh_tensorflow" && i(r["group_size_tokens"]) == 0)
    fail("routing.group_split", "mesh_tensorflow splits into groups of at most routing.group_size_tokens tokens "
                                "(Mesh-TensorFlow's moe_group_size, e.g. 1024); give routing.group_size_tokens");
  const std::string policy = r["second_expert_policy"];
  const bool gated = policy == "threshold" || policy == "random";
  if (policy != "all" && i(m["top_k"]) != 2)
    fail("routing.second_expert_policy", fmt::format("'{}' is a top-2 gating policy (Mesh-TensorFlow, GShard) but model.top_k "
                                                     "is {}; allowed with top_k {}: all",
                                                     policy, i(m["top_k"]), i(m["top_k"])));
  if (gated && !has(r, "second_expert_threshold"))
    fail("routing", fmt::format("routing.second_expert_policy {} needs routing.second_expert_threshold (Mesh-TensorFlow's "
                                "default 0.2; GShard's Algorithm 1 is random with 0.5)",
                                policy));
  if (!gated && has(r, "second_expert_threshold"))
    fail("routing.second_expert_threshold", "only used with routing.second_expert_policy threshold or random");
  // Compared with the default, as routing.skew is, so that a resolved scenario (every default written out) loads again.
  if (!gated && r["second_gate"] != find_field("routing.second_gate")->default_value)
    fail("routing.second_gate", "only used with routing.second_expert_policy threshold or random");
}

void Resolver::resolve_placement() {
  json& pl = doc_["placement"];
  if (pl.empty()) fail("placement", "needs at least one datacenter");
  const bool serving = has(doc_, "serving");
  std::map<std::string, std::size_t> first_entry;  // datacenter name -> its placement index
  for (std::size_t k = 0; k < pl.size(); ++k) {
    const std::string path = fmt::format("placement[{}]", k);
    json& e = pl[k];
    // Results are kept per datacenter: a site listed twice would be two sites with one name. Refused rather
    // than merged, so the shares a user wrote are the shares simulated.
    const bool named = e["datacenter"].is_string();
    const std::string dc_name = named ? e["datacenter"].get<std::string>() : e["datacenter"]["name"].get<std::string>();
    if (auto [it, fresh] = first_entry.emplace(dc_name, k); !fresh)
      fail(named ? path + ".datacenter" : path + ".datacenter.name",
           fmt::format("datacenter '{}' is already placement[{}]; give each datacenter once, with the sum of its shares",
                       dc_name, it->second));
    if (e["datacenter"].is_string()) {
      const std::string dc = e["datacenter"];
      if (!catalog_.has_datacenter(dc)) {
        auto close = text::closest(dc, catalog_.datacenter_names());
        fail(path + ".datacenter", fmt::format("unknown datacenter '{}'; closest: {} (see profiles/datacenters/)", dc,
                                               text::join(close)));
      }
      inline_dcs_.emplace_back(std::nullopt);
    } else {
      const json& d = e["datacenter"];
      catalog::DatacenterSpec spec;
      spec.name = d["name"];
      spec.display_name = d["display_name"].get<std::string>().empty() ? spec.name : d["display_name"].get<std::string>();
      spec.provider = "inline";
      spec.location = d["region"];
      spec.cloud_region = d["region"];
      spec.country_iso_code = d["country_iso_code"];
      spec.pue = d["pue"];
      spec.hourly_intensity_csv = d["hourly_intensity_csv"];
      spec.sources["pue"] = "scenario file " + file_;
      if (has(d, "grid")) {
        const std::string key = d["grid"];
        if (!catalog_.has_grid(key)) {
          auto close = text::closest(key, catalog_.grid_keys());
          fail(path + ".datacenter.grid", fmt::format("unknown grid key '{}'; closest: {}", key, text::join(close)));
        }
        // As the catalog's grid: datacenters: the source text carries the dataset (the reports' attribution) and
        // its accounting basis; no CFE (a zone's carbon-free generation share is not an operator's CFE).
        catalog::apply_grid_intensity(spec, catalog_.grid(key));
      } else if (!has(d, "gross_kgco2e_per_kwh")) {
        fail(path + ".datacenter", "an inline datacenter needs `grid:` or `gross_kgco2e_per_kwh:`");
      }
      if (has(d, "gross_kgco2e_per_kwh")) {
        spec.gross_kgco2e_per_kwh = d["gross_kgco2e_per_kwh"];
        spec.sources["gross_kgco2e_per_kwh"] = "scenario file " + file_;
        spec.grid_basis.clear();  // the scenario's own number: its basis is not stated
      }
      if (has(d, "net_kgco2e_per_kwh")) spec.net_kgco2e_per_kwh = d["net_kgco2e_per_kwh"].get<double>();
      if (has(d, "cfe_fraction")) spec.cfe_fraction = d["cfe_fraction"].get<double>();
      inline_dcs_.emplace_back(std::move(spec));
    }
  }
  if (serving) {
    // A pool pinned to a datacenter names one of `placement` (checked before the shares: with pinned pools and no
    // shares given, the shares are derived from the pools).
    const json& pools = doc_["serving"]["pools"];
    for (std::size_t k = 0; k < pools.size(); ++k) {
      const std::string dc = pools[k]["datacenter"];
      if (!dc.empty() && first_entry.count(dc) == 0)
        fail(fmt::format("serving.pools[{}].datacenter", k),
             fmt::format("'{}' is not a datacenter of `placement`; allowed: {}", dc, text::join(site_names())));
    }
    if (pl.size() > 1) derive_serving_shares();
  }
  // The shares sum to 1, checked before anything that reads one share (a share that is not a whole number of units
  // is a consequence of shares that do not add up, not the cause).
  double sum = 0.0;
  std::vector<std::string> terms;
  for (std::size_t k = 0; k < pl.size(); ++k) {
    sum += pl[k]["share"].get<double>();
    terms.push_back(given(fmt::format("placement[{}].share", k))
                        ? fmt::format("placement[{}].share {}", k, pl[k]["share"].get<double>())
                        : fmt::format("placement[{}] gives no share: {} by default", k, pl[k]["share"].get<double>()));
  }
  if (std::fabs(sum - 1.0) > 1e-6)
    fail("placement", fmt::format("shares sum to {} but must sum to 1 ({}); each share is the fraction of the chips placed "
                                  "in its datacenter",
                                  sum, text::join(terms, " + ")));
  if (serving) {
    resolve_serving_sites();
  } else if (pl.size() > 1) {
    const std::string split = doc_["split"];
    const json& p = doc_["parallelism"];
    // The unit a site receives whole: a full replica (data), an expert shard (expert), a stage (pipeline).
    const long long split_degree = split == "data" ? i(p["data"]) : split == "expert" ? i(p["expert"]) : i(p["pipeline"]);
    for (std::size_t k = 0; k < pl.size(); ++k) {
      const double share = pl[k]["share"].get<double>();
      const double units = share * static_cast<double>(split_degree);
      if (std::fabs(units - std::round(units)) > 1e-6)
        fail(fmt::format("placement[{}].share", k),
             fmt::format("share {} of the {} split (degree {}) is not a whole number of {} groups ({})", share, split,
                         split_degree, split, units));
    }
    // Each datacenter's GPUs fill whole nodes (and leaf groups), located at the share that puts them there.
    const long long chips = i(doc_["cluster"]["count"]);
    for (std::size_t k = 0; k < pl.size(); ++k) {
      const double share = pl[k]["share"].get<double>();
      check_site_nodes(k, std::llround(share * static_cast<double>(chips)), fmt::format("placement[{}].share", k),
                       fmt::format("share {} of cluster.count {}", share, chips),
                       "give shares whose GPUs fill whole nodes, or a smaller cluster.topology.gpus_per_node");
    }
  }
  if (pl.size() > 1) {
    const json& w = doc_["wan"];
    if (!has(w, "bandwidth_gbps") || !has(w, "latency_ms"))
      fail("wan", "a job in several datacenters needs wan.bandwidth_gbps and wan.latency_ms");
  }
}

std::vector<std::string> Resolver::site_names() const {
  std::vector<std::string> names;
  for (const auto& e : doc_["placement"])
    names.push_back(e["datacenter"].is_string() ? e["datacenter"].get<std::string>() : e["datacenter"]["name"].get<std::string>());
  return names;
}

void Resolver::check_site_nodes(std::size_t k, long long chips, const std::string& key, const std::string& why,
                                const std::string& remedy) const {
  const json& t = doc_["cluster"]["topology"];
  if (t["type"] != "nvlink_fat_tree" || !has(t, "gpus_per_node")) return;  // a torus is cut to any size
  const std::string name = site_names()[k];
  const long long gpn = i(t["gpus_per_node"]);
  if (chips % gpn != 0)
    fail(key, fmt::format("datacenter '{}' (placement[{}]) gets {} GPUs ({}), not whole nodes of {} GPUs "
                          "(cluster.topology.gpus_per_node); {}",
                          name, k, chips, why, gpn, remedy));
  const long long nodes = chips / gpn, per_leaf = std::min(i(t["nodes_per_leaf"]), nodes);
  if (per_leaf > 0 && nodes % per_leaf != 0)
    fail(key, fmt::format("datacenter '{}' (placement[{}]) gets {} nodes of {} GPUs ({}), which do not fill whole leaf groups "
                          "of {} nodes (cluster.topology.nodes_per_leaf); {}, or change cluster.topology.nodes_per_leaf",
                          name, k, nodes, gpn, why, per_leaf, remedy));
}

/** The chips the pools of a serving scenario put in each datacenter, as the engine places them
 *  (workload::replica_sites): a pinned pool's replicas all in its datacenter, another pool's replicas by the shares'
 *  cumulative split. */
struct ServingSites {
  struct Part {
    std::size_t pool = 0;
    bool pinned = false;
    long long replicas = 0;
    long long chips = 0;
  };
  std::vector<long long> chips;         ///< per placement entry
  std::vector<std::vector<Part>> parts; ///< per placement entry: the pools with chips there
  long long total = 0;
  bool any_pinned = false, any_spread = false;
};

void Resolver::derive_serving_shares() {
  json& pl = doc_["placement"];
  for (std::size_t k = 0; k < pl.size(); ++k)
    if (given(fmt::format("placement[{}].share", k))) return;
  const json& pools = doc_["serving"]["pools"];
  const std::vector<std::string> names = site_names();
  std::vector<long long> pinned(pl.size(), 0);
  long long total = 0;
  for (const auto& pool : pools) {
    const std::string dc = pool["datacenter"];
    if (dc.empty()) continue;
    const long long chips = i(pool["replicas"]) * i(pool["data"]) * i(pool["tensor"]) * i(pool["pipeline"]) / accel_->devices_per_chip;
    pinned[static_cast<std::size_t>(std::find(names.begin(), names.end(), dc) - names.begin())] += chips;
    total += chips;
  }
  if (total == 0) return;  // no pool pinned: the shares must be given (the sum check says so)
  for (std::size_t k = 0; k < pl.size(); ++k)
    if (pinned[k] == 0)
      fail(fmt::format("placement[{}]", k),
           fmt::format("no placement[].share is given, and they are derived only from the pools pinned to each datacenter "
                       "(serving.pools[].datacenter), but no pool is pinned to '{}'; pin a pool to it, or give every share",
                       names[k]));
  // Each datacenter's fraction of the pinned chips: with every pool pinned, its fraction of all the chips; with some
  // pools spread, the only shares that spread them in the same proportion.
  for (std::size_t k = 0; k < pl.size(); ++k)
    pl[k]["share"] = static_cast<double>(pinned[k]) / static_cast<double>(total);
}

void Resolver::resolve_serving_sites() {
  const json& pl = doc_["placement"];
  const json& pools = doc_["serving"]["pools"];
  const std::vector<std::string> names = site_names();
  const std::size_t n = pl.size();
  const long long per_chip = accel_->devices_per_chip;
  auto pool_label = [&](std::size_t k) {
    return fmt::format("serving.pools[{}] ({})", k, pools[k]["role"].get<std::string>());
  };
  auto replica_chips = [&](std::size_t k) {
    return i(pools[k]["data"]) * i(pools[k]["tensor"]) * i(pools[k]["pipeline"]) / per_chip;
  };
  // Replicas are placed whole: a pool without a datacenter is spread by the shares, each a whole number of replicas.
  if (n > 1)
    for (std::size_t k = 0; k < pools.size(); ++k) {
      if (!pools[k]["datacenter"].get<std::string>().empty()) continue;
      const long long replicas = i(pools[k]["replicas"]);
      for (std::size_t j = 0; j < n; ++j) {
        const double units = pl[j]["share"].get<double>() * static_cast<double>(replicas);
        if (std::fabs(units - std::round(units)) > 1e-6)
          fail(fmt::format("placement[{}].share", j),
               fmt::format("share {} of the {} replicas of serving pool {} is not a whole number of replicas ({}); "
                           "change the shares or pin the pool with serving.pools[].datacenter",
                           pl[j]["share"].get<double>(), replicas, k, units));
      }
    }

  ServingSites s;
  s.chips.assign(n, 0);
  s.parts.assign(n, {});
  for (std::size_t k = 0; k < pools.size(); ++k) {
    const long long replicas = i(pools[k]["replicas"]), chips = replica_chips(k);
    const std::string dc = pools[k]["datacenter"];
    std::vector<long long> at(n, 0);  // replicas per site
    if (!dc.empty()) {
      at[static_cast<std::size_t>(std::find(names.begin(), names.end(), dc) - names.begin())] = replicas;
      s.any_pinned = true;
    } else {
      s.any_spread = true;
      std::vector<double> shares;
      for (const auto& e : pl) shares.push_back(e["share"].get<double>());
      at = replicas_per_site(shares, replicas);
    }
    for (std::size_t j = 0; j < n; ++j) {
      if (at[j] == 0) continue;
      s.parts[j].push_back({k, !dc.empty(), at[j], at[j] * chips});
      s.chips[j] += at[j] * chips;
    }
    s.total += replicas * chips;
  }
  // What puts the chips in datacenter j, for messages: "serving.pools[0] (prefill) is pinned there: 24 chips; ...".
  auto sources = [&](std::size_t j) {
    std::vector<std::string> out;
    for (const auto& part : s.parts[j])
      out.push_back(part.pinned
                        ? fmt::format("{} is pinned there: {} replicas x {} chips = {}", pool_label(part.pool), part.replicas,
                                      replica_chips(part.pool), part.chips)
                        : fmt::format("{} is spread by the shares: {} of its {} replicas x {} chips = {} (share {})",
                                      pool_label(part.pool), part.replicas, i(pools[part.pool]["replicas"]),
                                      replica_chips(part.pool), part.chips, pl[j]["share"].get<double>()));
    return text::join(out, "; ");
  };
  // Every datacenter gets chips (a site with none has no results to report and is a mistake).
  for (std::size_t j = 0; j < n; ++j) {
    if (s.chips[j] > 0) continue;
    std::vector<std::string> elsewhere;
    for (std::size_t k = 0; k < pools.size(); ++k) {
      const std::string dc = pools[k]["datacenter"];
      elsewhere.push_back(dc.empty() ? fmt::format("{} is spread by the shares and gets none there", pool_label(k))
                                     : fmt::format("{} is pinned to '{}'", pool_label(k), dc));
    }
    fail(fmt::format("placement[{}]", j),
         fmt::format("datacenter '{}' gets no chips: {}; pin a pool to it (serving.pools[].datacenter: {}) or remove it from "
                     "`placement`",
                     names[j], text::join(elsewhere, ", "), names[j]));
  }
  // With a pinned pool, the shares cannot place the chips on their own: each share must then say where the pools put
  // them (the stored and reported share is the share given, so it must be the true one).
  if (s.any_pinned && n > 1)
    for (std::size_t j = 0; j < n; ++j) {
      const double share = pl[j]["share"].get<double>();
      const double actual = static_cast<double>(s.chips[j]) / static_cast<double>(s.total);
      if (std::fabs(share - actual) <= 1e-6) continue;
      // One pool per role, so a pinned pool beside a spread one puts its chips in one datacenter only while the spread
      // one follows the shares: no shares can then be the chips' fractions.
      const std::string remedy =
          s.any_spread ? "a pool without a datacenter is spread by the same shares, so beside a pinned pool no shares can "
                         "be the datacenters' fractions of the chips: pin every pool to a datacenter (each datacenter then "
                         "gets the chips of the pools pinned to it) or pin none"
                       : fmt::format("give share {:g} (the fraction of the chips placed there), or leave every "
                                     "placement[].share out to have them derived from the pinned pools",
                                     actual);
      fail(fmt::format("placement[{}].share", j),
           fmt::format("share {} of the {} chips is {:g} chips in '{}', but the serving pools put {} there ({}); with a pool "
                       "pinned to a datacenter (serving.pools[].datacenter) each share must be the fraction of the chips "
                       "placed in its datacenter: {}",
                       share, s.total, share * static_cast<double>(s.total), names[j], s.chips[j], sources(j), remedy));
    }
  // Whole GPU nodes per datacenter; the key to change is the pinned pool's datacenter when one puts chips there.
  for (std::size_t j = 0; j < n; ++j) {
    std::string key = fmt::format("placement[{}].share", j);
    for (const auto& part : s.parts[j])
      if (part.pinned) {
        key = fmt::format("serving.pools[{}].datacenter", part.pool);
        break;
      }
    if (n == 1) key = "cluster.count";
    check_site_nodes(j, s.chips[j], key, sources(j),
                     "give the pools replicas whose GPUs fill whole nodes in each datacenter (replicas x data x tensor x "
                     "pipeline), or a smaller cluster.topology.gpus_per_node");
  }
}

void Resolver::resolve_energy() {
  namespace fs = std::filesystem;
  const json& pl = doc_["placement"];
  // Every hourly series named must exist, whether or not a start time uses it (a typo is found now, not
  // on the day someone adds energy.start_time_utc).
  bool any_series = false;
  for (std::size_t k = 0; k < pl.size(); ++k) {
    const json& d = pl[k]["datacenter"];
    std::string csv;
    if (d.is_string()) {
      csv = catalog_.datacenter(d.get<std::string>()).hourly_intensity_csv;  // absolute (the catalog resolved it)
    } else {
      csv = d["hourly_intensity_csv"].get<std::string>();
      if (!csv.empty() && fs::path(csv).is_relative() && !file_.empty() && file_.rfind("--", 0) != 0)
        csv = (fs::path(file_).parent_path() / csv).lexically_normal().string();
    }
    if (csv.empty()) continue;
    any_series = true;
    std::error_code ec;
    if (!fs::is_regular_file(csv, ec))
      fail(d.is_string() ? fmt::format("placement[{}].datacenter", k) : fmt::format("placement[{}].datacenter.hourly_intensity_csv", k),
           fmt::format("the hourly intensity CSV '{}' {}", csv,
                       fs::exists(csv, ec) ? "is not a regular file" : "does not exist"));
  }
  const std::string start = doc_["energy"]["start_time_utc"];
  if (start.empty()) return;
  try {
    (void)parse_utc_timestamp_s(start);
  } catch (const Error& e) {
    fail("energy.start_time_utc", e.what());
  }
  if (!any_series)
    fail("energy.start_time_utc",
         "a start time selects the hours of an hourly intensity series, but no datacenter of `placement` has one "
         "(placement[].datacenter.hourly_intensity_csv, or hourly_intensity_csv in its profile); drop the start time "
         "(annual intensities are used) or add a series");
}

ServingSpec Resolver::build_serving(const json& sv) const {
  ServingSpec v;
  const json& a = sv["arrival"];
  v.arrival.type = a["type"];
  if (a.contains("rate_per_s")) v.arrival.rate_per_s = a["rate_per_s"];
  v.arrival.cv = a["cv"];
  v.arrival.burst_size = static_cast<int>(i(a["burst_size"]));
  if (a.contains("trace_csv")) v.arrival.trace_csv = a["trace_csv"];
  auto length = [&](const json& l) {
    LengthSpec x;
    x.type = l["type"];
    if (l.contains("value")) x.value = l["value"];
    x.min = l["min"];
    if (l.contains("max")) x.max = l["max"];
    if (l.contains("mean")) x.mean = l["mean"];
    if (l.contains("sigma")) x.sigma = l["sigma"];
    return x;
  };
  v.prompt_tokens = length(sv["prompt_length"]);
  v.output_tokens = length(sv["output_length"]);
  if (sv.contains("requests")) v.requests = i(sv["requests"]);
  if (sv.contains("duration_s")) v.duration_s = sv["duration_s"];
  v.warmup_s = sv["warmup_s"];
  for (const auto& p : sv["pools"]) {
    PoolSpec ps;
    const std::string role = p["role"];
    ps.role = role == "prefill" ? PoolRole::prefill : role == "decode" ? PoolRole::decode : PoolRole::colocated;
    ps.replicas = static_cast<int>(i(p["replicas"]));
    ps.data = static_cast<int>(i(p["data"]));
    ps.tensor = static_cast<int>(i(p["tensor"]));
    ps.expert = static_cast<int>(i(p["expert"]));
    ps.pipeline = static_cast<int>(i(p["pipeline"]));
    ps.datacenter = p["datacenter"];
    v.pools.push_back(std::move(ps));
  }
  v.router = sv["router"]["type"];
  const json& sc = sv["scheduler"];
  v.scheduler = sc["type"];
  v.max_sequences = static_cast<int>(i(sc["max_sequences"]));
  v.max_batched_tokens = static_cast<int>(i(sc["max_batched_tokens"]));
  v.chunk_tokens = static_cast<int>(i(sc["chunk_tokens"]));
  v.separate_prefill = sc["prefill_mode"] == "separate";
  v.iteration_overhead_s = sc["iteration_overhead_ms"].get<double>() * 1e-3;
  const json& kv = sv["kv_cache"];
  v.kv_memory_fraction = kv["memory_fraction"];
  v.kv_fraction_of_free = kv["memory_fraction_of"] == "free";
  v.kv_block_tokens = static_cast<int>(i(kv["block_tokens"]));
  v.kv_dtype = kv["dtype"];
  v.slo_ttft_s = sv["slo"]["ttft_ms"].get<double>() * 1e-3;
  v.slo_tpot_s = sv["slo"]["tpot_ms"].get<double>() * 1e-3;
  v.task_experts_only = sv["task_experts_only"];
  v.record_requests = sv["record_requests"];
  v.memo_buckets_per_octave = static_cast<int>(i(sv["memo_buckets_per_octave"]));
  v.sample_interval_s = sv["sample_interval_s"];
  return v;
}

Scenario Resolver::build() const {
  Scenario s;
  const json& d = doc_;
  s.name = d["name"];
  s.description = d["description"];
  s.seed = static_cast<std::uint64_t>(i(d["seed"]));
  s.source_file = file_;

  const json& m = d["model"];
  s.model.type = m["type"];
  s.model.architecture = m["architecture"] == "encoder_decoder" ? Architecture::encoder_decoder : Architecture::decoder_only;
  s.model.encoder_layers = static_cast<int>(i(m["encoder_layers"]));
  s.model.decoder_layers = static_cast<int>(i(m["decoder_layers"]));
  s.model.d_model = static_cast<int>(i(m["d_model"]));
  s.model.d_ff = static_cast<int>(i(m["d_ff"]));
  s.model.expert_d_ff = static_cast<int>(i(m["expert_d_ff"]));
  s.model.heads = static_cast<int>(i(m["heads"]));
  s.model.d_head = static_cast<int>(i(m["d_head"]));
  s.model.experts = static_cast<int>(i(m["experts"]));
  s.model.moe_every = static_cast<int>(i(m["moe_every"]));
  s.model.top_k = static_cast<int>(i(m["top_k"]));
  s.model.capacity_factor = m["capacity_factor"];
  s.model.vocab = static_cast<int>(i(m["vocab"]));
  s.model.seq_len = static_cast<int>(i(m["seq_len"]));
  s.model.target_seq_len = static_cast<int>(i(m["target_seq_len"]));
  s.model.dtype = m["dtype"];
  s.model.kv_heads = static_cast<int>(i(m["kv_heads"]));
  s.model.shared_experts = static_cast<int>(i(m["shared_experts"]));
  s.model.first_dense_layers = static_cast<int>(i(m["first_dense_layers"]));
  s.model.mtp_depth = static_cast<int>(i(m["mtp_depth"]));
  if (m.contains("mla")) {
    s.model.mla_kv_lora_rank = static_cast<int>(i(m["mla"]["kv_lora_rank"]));
    s.model.mla_qk_rope_head_dim = static_cast<int>(i(m["mla"]["qk_rope_head_dim"]));
    s.model.mla_q_lora_rank = static_cast<int>(i(m["mla"]["q_lora_rank"]));
  }
  const std::string act = m["activation"];
  s.model.activation = act == "relu" ? Activation::relu : act == "swiglu" ? Activation::swiglu
                     : act == "geglu" ? Activation::geglu : Activation::gelu;

  if (d.contains("serving")) s.serving = build_serving(d["serving"]);
  const json& t = d.contains("training") ? d["training"] : training_defaults();
  if (t.contains("tokens")) s.training.tokens = t["tokens"];
  if (t.contains("hardware_flops")) s.training.hardware_flops = t["hardware_flops"].get<double>();
  s.training.batch_tokens = t["batch_tokens"];
  const std::string opt = t["optimizer"];
  s.training.optimizer = opt == "adamw" ? Optimizer::adamw : opt == "adafactor" ? Optimizer::adafactor
                       : opt == "sgd" ? Optimizer::sgd : Optimizer::adam;
  const std::string remat = t["rematerialization"];
  s.training.rematerialization = remat == "none"        ? Remat::none
                                 : remat == "full"      ? Remat::full
                                 : remat == "selective" ? Remat::selective
                                                        : Remat::automatic;
  if (t.contains("duration_days")) s.training.duration_days = t["duration_days"].get<double>();
  s.training.steps_simulated = static_cast<int>(i(t["steps_simulated"]));
  s.training.overlap_grad_reduce = t["overlap_grad_reduce"];
  s.training.attention_dropout = t["attention_dropout"];
  s.training.fused_attention = t["attention_kernel"] == "fused";
  if (t.contains("recompute_modules") && !t["recompute_modules"].is_null()) {
    TrainingSpec::RecomputeModules r{false, false, false, false};
    for (const std::string& n : comma_list(t["recompute_modules"].get<std::string>())) {
      r.core_attn = r.core_attn || n == "core_attn";
      r.layernorm = r.layernorm || n == "layernorm";
      r.mla_up_proj = r.mla_up_proj || n == "mla_up_proj";
      r.moe_act = r.moe_act || n == "moe_act";
    }
    s.training.recompute = r;
  }
  const std::string grad_dtype = t["grad_dtype"];
  s.training.grad_dtype = grad_dtype == "model" ? GradDtype::model : grad_dtype == "fp32" ? GradDtype::fp32 : GradDtype::automatic;

  const json& r = d["routing"];
  s.routing.type = r["type"];
  s.routing.skew = r["skew"];
  if (r.contains("load")) s.routing.load = r["load"].get<std::vector<double>>();
  if (r.contains("tasks")) s.routing.tasks = static_cast<int>(i(r["tasks"]));
  s.routing.group_size_tokens = static_cast<int>(i(r["group_size_tokens"]));
  s.routing.dropless = r["dropless"];
  if (r.contains("max_nodes") && !r["max_nodes"].is_null()) s.routing.max_nodes = static_cast<int>(i(r["max_nodes"]));
  s.routing.capacity_counts_top_k = r["capacity_counts_top_k"];
  s.routing.min_expert_capacity = static_cast<int>(i(r["min_expert_capacity"]));
  s.routing.group_split = r["group_split"] == "mesh_tensorflow" ? GroupSplit::mesh_tensorflow : GroupSplit::fixed;
  const std::string policy = r["second_expert_policy"];
  s.routing.second_expert_policy = policy == "none"        ? SecondExpertPolicy::none
                                   : policy == "threshold" ? SecondExpertPolicy::threshold
                                   : policy == "random"    ? SecondExpertPolicy::random
                                                           : SecondExpertPolicy::all;
  if (r.contains("second_expert_threshold")) s.routing.second_expert_threshold = r["second_expert_threshold"];
  s.routing.second_gate = r["second_gate"];

  const json& p = d["parallelism"];
  s.parallelism.data = static_cast<int>(i(p["data"]));
  s.parallelism.expert = static_cast<int>(i(p["expert"]));
  s.parallelism.tensor = static_cast<int>(i(p["tensor"]));
  s.parallelism.pipeline = static_cast<int>(i(p["pipeline"]));
  s.parallelism.microbatches = static_cast<int>(i(p["microbatches"]));
  s.parallelism.schedule = p["schedule"];
  s.parallelism.zero_stage = static_cast<int>(i(p["zero_stage"]));
  s.parallelism.sequence_parallel = p["sequence_parallel"];
  s.parallelism.overlap_tensor_comm = p["overlap_tensor_comm"];
  s.parallelism.expert_dispatch = p["expert_dispatch"];
  s.parallelism.overlap_expert_comm = p["overlap_expert_comm"];
  s.parallelism.overlap_shared_experts = p["overlap_shared_experts"];
  if (has(p, "comm_sms")) s.parallelism.comm_sms = static_cast<int>(i(p["comm_sms"]));
  s.parallelism.virtual_stages = static_cast<int>(i(p["virtual_stages"]));
  if (has(p, "first_stage_layers")) s.parallelism.first_stage_layers = static_cast<int>(i(p["first_stage_layers"]));
  if (has(p, "last_stage_layers")) s.parallelism.last_stage_layers = static_cast<int>(i(p["last_stage_layers"]));
  s.parallelism.placement = placement_order(p["placement"].get<std::string>());

  const json& c = d["cluster"];
  s.cluster.accelerator = c["accelerator"];
  s.cluster.count = static_cast<int>(i(c["count"]));
  const json& topo = c["topology"];
  s.cluster.topology.type = topo["type"];
  if (topo.contains("dims")) s.cluster.topology.dims = topo["dims"].get<std::vector<int>>();
  if (topo.contains("gpus_per_node")) s.cluster.topology.gpus_per_node = static_cast<int>(i(topo["gpus_per_node"]));
  s.cluster.topology.nodes_per_leaf = static_cast<int>(i(topo["nodes_per_leaf"]));
  s.cluster.topology.oversubscription = topo["oversubscription"];
  constexpr double kGbps = 1e9 / 8.0;  // Gbit/s -> byte/s
  if (topo.contains("link_bandwidth_gbps")) s.cluster.topology.link_bandwidth_bytes_per_s = topo["link_bandwidth_gbps"].get<double>() * kGbps;
  if (topo.contains("link_latency_us")) s.cluster.topology.link_latency_s = topo["link_latency_us"].get<double>() * 1e-6;
  if (c.contains("power_limit_w") && !c["power_limit_w"].is_null()) s.cluster.power_limit_w = c["power_limit_w"].get<double>();

  const json& pl = d["placement"];
  for (std::size_t k = 0; k < pl.size(); ++k) {
    PlacementEntry e;
    e.share = pl[k]["share"];
    if (pl[k]["datacenter"].is_string()) {
      e.datacenter = pl[k]["datacenter"];
    } else {
      e.datacenter = pl[k]["datacenter"]["name"];
      e.inline_spec = inline_dcs_[k];
    }
    s.placement.push_back(std::move(e));
  }
  const std::string split = d["split"];
  s.split = split == "expert" ? SplitKind::expert : split == "pipeline" ? SplitKind::pipeline : SplitKind::data;
  const json& w = d["wan"];
  if (w.contains("bandwidth_gbps")) s.wan.bandwidth_bytes_per_s = w["bandwidth_gbps"].get<double>() * kGbps;
  if (w.contains("latency_ms")) s.wan.latency_s = w["latency_ms"].get<double>() * 1e-3;
  s.energy.embodied = d["energy"]["embodied"];
  if (d["energy"].contains("average_chip_power_w")) s.energy.average_chip_power_w = d["energy"]["average_chip_power_w"].get<double>();
  s.energy.start_time_utc = d["energy"]["start_time_utc"];
  if (d.contains("compare")) s.compare = d["compare"];

  s.resolved = d;
  s.resolved.erase("compare");
  s.resolved.erase("sweep");  // the sweep definition is not part of any one point's scenario
  return s;
}

Scenario Resolver::run() {
  const bool training = has(doc_, "training"), serving = has(doc_, "serving");
  if (training == serving)
    fail(training ? "serving" : "", training ? "give either `training` (train the model) or `serving` (serve it), not both"
                                             : "missing `training` or `serving`: a scenario either trains the model or serves it");
  resolve_model();
  resolve_cluster();
  if (serving) {
    resolve_serving();
  } else {
    resolve_training_and_parallelism();
  }
  resolve_routing();
  resolve_placement();
  resolve_energy();
  return build();
}

}  // namespace

Scenario resolve_scenario(json doc, const Locations& locations, const std::string& file, const catalog::Catalog& catalog,
                          bool plan_base) {
  Resolver r(std::move(doc), locations, file, catalog, plan_base);
  return r.run();
}

std::string to_string(Architecture a) { return a == Architecture::encoder_decoder ? "encoder_decoder" : "decoder_only"; }
std::string to_string(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::swiglu: return "swiglu";
    case Activation::geglu: return "geglu";
  }
  return "?";
}
std::string to_string(Optimizer o) {
  switch (o) {
    case Optimizer::adam: return "adam";
    case Optimizer::adamw: return "adamw";
    case Optimizer::adafactor: return "adafactor";
    case Optimizer::sgd: return "sgd";
  }
  return "?";
}
std::string to_string(Remat r) {
  switch (r) {
    case Remat::none: return "none";
    case Remat::full: return "full";
    case Remat::selective: return "selective";
    case Remat::automatic: return "auto";
  }
  return "?";
}
std::vector<long long> replicas_per_site(const std::vector<double>& shares, long long replicas) {
  std::vector<long long> out(shares.size(), 0);
  double cum = 0.0;
  long long r = 0;
  for (std::size_t k = 0; k < shares.size(); ++k) {
    cum += shares[k];
    const long long upto = k + 1 == shares.size() ? replicas : std::llround(cum * static_cast<double>(replicas));
    out[k] = std::max(0LL, upto - r);
    r = std::max(r, upto);
  }
  return out;
}

std::string to_string(PoolRole r) { return r == PoolRole::prefill ? "prefill" : r == PoolRole::decode ? "decode" : "colocated"; }
std::string to_string(SplitKind s) { return s == SplitKind::expert ? "expert" : s == SplitKind::pipeline ? "pipeline" : "data"; }

}  // namespace moesim::scenario
