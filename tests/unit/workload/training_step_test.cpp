// SPDX-License-Identifier: Apache-2.0
// The training-step DAG builder: graph shape, all-to-all phases, model FLOPs, 1F1B pipeline schedule.
// Compute times come from the roofline model with the shipped profiles/efficiency.yaml.

#include <catch2/catch.hpp>

#include <boost/graph/topological_sort.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "moesim/core/error.hpp"
#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::CollectiveOp;
using moesim::workload::Phase;
using moesim::workload::PhaseId;
using moesim::workload::StepGraph;
namespace t = moesim::workload::test;

namespace {

/** Decoder-only model block: d_ff = 4 d_model and heads x d_head = d_model unless `extra` says otherwise. */
std::string decoder(int layers, int d_model, int heads, int vocab, int seq_len, const std::string& extra = "") {
  return "  layers: " + std::to_string(layers) + "\n  d_model: " + std::to_string(d_model) +
         "\n  d_ff: " + std::to_string(4 * d_model) + "\n  heads: " + std::to_string(heads) +
         "\n  vocab: " + std::to_string(vocab) + "\n  seq_len: " + std::to_string(seq_len) + "\n" + extra;
}

std::vector<PhaseId> topo_order(const StepGraph& g) {
  std::vector<PhaseId> rev;
  boost::topological_sort(g, std::back_inserter(rev));  // throws boost::not_a_dag on a cycle
  return {rev.rbegin(), rev.rend()};
}

/** The graph is a DAG with exactly one source (start) and one sink (end). */
void check_dag(const BuiltStep& b) {
  const StepGraph& g = b.graph;
  std::vector<PhaseId> order;
  REQUIRE_NOTHROW(order = topo_order(g));
  CHECK(order.size() == boost::num_vertices(g));
  std::vector<PhaseId> sources, sinks;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) {
    if (boost::in_degree(v, g) == 0) sources.push_back(v);
    if (boost::out_degree(v, g) == 0) sinks.push_back(v);
  }
  REQUIRE(sources.size() == 1);
  REQUIRE(sinks.size() == 1);
  CHECK(sources[0] == b.start);
  CHECK(sinks[0] == b.end);
  CHECK(order.front() == b.start);
  CHECK(order.back() == b.end);
}

enum class Pass { fwd, bwd };

/** Forward / backward compute phases are labelled "... fwd ..." / "... bwd ..." by the builder. */
std::optional<Pass> pass_of(const Phase& p) {
  if (p.type != Phase::Type::compute) return std::nullopt;
  if (t::contains(p.label, "fwd")) return Pass::fwd;
  if (t::contains(p.label, "bwd")) return Pass::bwd;
  return std::nullopt;
}

/** Model FLOPs of one training step of a dense decoder (no rematerialisation), Narayanan et al. 2021
 *  ("Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", SC'21, §5.1):
 *  96 B s l h^2 (1 + s / 6h + V / 16 l h) counts 4 passes (activation recomputation); 3 passes are 3/4 of
 *  it: 72 B s l h^2 (1 + s / 6h + V / 12 l h) = 6 N T + 12 l s h T with N = 12 l h^2 + V h, T = B s. */
double megatron_flops(double tokens, double layers, double hidden, double seq, double vocab) {
  return 72.0 * tokens * layers * hidden * hidden * (1.0 + seq / (6.0 * hidden) + vocab / (12.0 * layers * hidden));
}

}  // namespace

TEST_CASE("workload::step_builder: registry", "[workload][step]") {
  CHECK(t::contains(moesim::workload::step_builder_names().front(), "moe_transformer"));
  CHECK_THROWS_WITH(moesim::workload::step_builder("rnn"), Catch::Contains("unknown model type 'rnn'") &&
                                                              Catch::Contains("moe_transformer"));
}

TEST_CASE("workload::StepBuilder: a dense model is a DAG without all-to-all", "[workload][step]") {
  const t::StepFixture f(t::load(t::scenario_yaml(decoder(4, 512, 8, 32000, 512), "h100", 8, "  data: 8\n", 16 * 512)));
  const BuiltStep b = f.build(false);
  check_dag(b);
  CHECK(t::count_kind(b.graph, "comm.all_to_all") == 0);
  for (const Phase* p : t::all_phases(b.graph))
    if (p->type == Phase::Type::collective) CHECK(p->comm.op != CollectiveOp::all_to_all);
  CHECK(t::count_kind(b.graph, "comm.grad_all_reduce") > 0);  // 8 data-parallel replicas
  CHECK(b.stats.assignments == 0.0);
  CHECK(b.stats.tokens == 16 * 512);
}

TEST_CASE("workload::StepBuilder: one dispatch and one combine all-to-all per MoE layer and pass", "[workload][step]") {
  // 4 decoder layers, every 2nd FFN an MoE layer -> 2 MoE layers.
  const std::string model = decoder(4, 512, 8, 32000, 512, "  experts: 8\n  moe_every: 2\n  top_k: 2\n");
  const int moe_layers = 2;
  SECTION("GPU (gather dispatch), one micro-batch") {
    const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  expert: 8\n", 16 * 512)));
    const BuiltStep plain = f.build(false), remat = f.build(true);
    check_dag(plain);
    check_dag(remat);
    CHECK(t::count_kind(plain.graph, "comm.all_to_all") == moe_layers * 2 * 2);  // fwd + bwd
    CHECK(t::count_kind(remat.graph, "comm.all_to_all") == moe_layers * 2 * 3);  // + recomputed fwd
    for (const Phase* p : t::all_phases(plain.graph)) {
      if (p->kind != "comm.all_to_all") continue;
      CHECK(p->comm.op == CollectiveOp::all_to_all);
      REQUIRE(p->comm.groups.size() == 1);  // data 1 x tensor 1
      CHECK(p->comm.groups[0].size() == 8);
      CHECK(p->comm.bytes_per_device > 0.0);
    }
  }
  SECTION("TPU v3 (einsum dispatch, 2 cores per chip), two micro-batches") {
    const t::StepFixture f(t::load(t::scenario_yaml(model, "tpu_v3", 4, "  expert: 8\n  microbatches: 2\n", 16 * 512)));
    const BuiltStep plain = f.build(false), remat = f.build(true);
    check_dag(plain);
    CHECK(t::count_kind(plain.graph, "comm.all_to_all") == moe_layers * 2 * 2 * 2);
    CHECK(t::count_kind(remat.graph, "comm.all_to_all") == moe_layers * 2 * 3 * 2);
  }
  SECTION("data x expert: one all-to-all group per data replica") {
    const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  data: 2\n  expert: 4\n", 16 * 512)));
    const BuiltStep b = f.build(false);
    for (const Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.all_to_all") continue;
      REQUIRE(p->comm.groups.size() == 2);
      CHECK(p->comm.groups[0].size() == 4);
    }
    CHECK(t::count_kind(b.graph, "comm.all_to_all") == moe_layers * 2 * 2);
  }
}

TEST_CASE("workload::StepBuilder: model FLOPs of a dense decoder match 6 N T + attention", "[workload][step]") {
  const int L = 4, d = 512, s = 512, V = 32000;
  const double T = 16.0 * s;
  const double expected = megatron_flops(T, L, d, s, V);
  SECTION("data parallel") {
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, V, s), "h100", 8, "  data: 8\n", T)));
    const BuiltStep b = f.build(false);
    CHECK(b.stats.model_flops == Approx(expected).epsilon(0.02));
    CHECK(b.stats.hardware_flops >= b.stats.model_flops * 0.999);
    SECTION("rematerialisation adds hardware FLOPs, not model FLOPs") {
      const BuiltStep r = f.build(true);
      CHECK(r.stats.model_flops == Approx(b.stats.model_flops).epsilon(1e-9));
      // Remat recomputes the forward of every layer (not the output projection): 2 x (12 d^2 + 2 s d)
      // FLOPs per token and layer (projections 8 d^2, FFN 16 d^2, scores and values 4 s d), plus a
      // little vector work (norms, softmax, activation; < 1 %).
      const double recomputed = T * L * (24.0 * d * d + 4.0 * s * d);
      CHECK(r.stats.hardware_flops - b.stats.hardware_flops == Approx(recomputed).epsilon(0.05));
    }
  }
  SECTION("tensor x pipeline x data with micro-batches: the same total") {
    const t::StepFixture f(
        t::load(t::scenario_yaml(decoder(L, d, 8, V, s), "h100", 8, "  data: 2\n  tensor: 2\n  pipeline: 2\n  microbatches: 4\n", T)));
    const BuiltStep b = f.build(false);
    check_dag(b);
    CHECK(b.stats.model_flops == Approx(expected).epsilon(0.02));
    CHECK(t::count_kind(b.graph, "comm.tensor_parallel") > 0);
  }
}

TEST_CASE("workload::StepBuilder: compute phases carry the utilisation that sets their power", "[workload][step][power]") {
  const int L = 4, d = 512, s = 512, V = 32000;
  const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, V, s, "  experts: 8\n  moe_every: 2\n  top_k: 2\n"), "h100",
                                                  8, "  expert: 8\n", 16.0 * s)));
  const BuiltStep b = f.build(false);
  const double peak = 989e12;  // H100 bf16 datasheet peak per device (profiles/accelerators/h100.yaml)
  double matrix_flops = 0.0;
  int phases = 0;
  for (const Phase* p : t::all_phases(b.graph)) {
    if (p->type != Phase::Type::compute) continue;
    ++phases;
    INFO(p->label);
    // The roofline never runs a kernel faster than its class ceiling (efficiency.yaml gpu: GEMMs 0.807 of
    // the matrix peak, streaming 0.90 of the HBM bandwidth), so neither can a phase.
    CHECK(p->compute.flop_utilisation() >= 0.0);
    CHECK(p->compute.flop_utilisation() <= 0.807 + 1e-9);
    CHECK(p->compute.hbm_utilisation() > 0.0);
    CHECK(p->compute.hbm_utilisation() <= 0.90 + 1e-9);
    matrix_flops += p->compute.matrix_s * peak;
  }
  CHECK(phases > 0);
  // Matrix-unit FLOPs are the hardware FLOPs less the small vector work (norms, softmax, activations, router).
  CHECK(matrix_flops <= b.stats.hardware_flops * (1 + 1e-9));
  CHECK(matrix_flops == Approx(b.stats.hardware_flops).epsilon(0.03));
}

TEST_CASE("workload::StepBuilder: model FLOPs of a dropless MoE decoder count the top-k experts", "[workload][step]") {
  const int L = 4, d = 512, h = 8, s = 512, V = 32000, E = 8, k = 2, fe = 1024;
  const double T = 16.0 * s;
  const std::string model = decoder(L, d, h, V, s, "  experts: 8\n  moe_every: 2\n  top_k: 2\n  expert_d_ff: 1024\n");
  const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  expert: 8\n", T, "routing:\n  dropless: true\n")));
  const BuiltStep b = f.build(false);
  // Forward FLOPs per token: attention projections 8 d^2 and scores/values 4 s d per layer; dense FFN
  // 4 d d_ff on layers 0 and 2; on layers 1 and 3 the router 2 d E and k experts of 4 d fe each;
  // the output projection 2 V d. Training = 3 x forward.
  const double fwd = L * (8.0 * d * d + 4.0 * s * d) + 2 * (4.0 * d * 4 * d) + 2 * (2.0 * d * E + k * 4.0 * d * fe) +
                     2.0 * V * d;
  CHECK(b.stats.model_flops == Approx(3.0 * fwd * T).epsilon(0.02));
  CHECK(b.stats.dropped == 0.0);
  CHECK(b.stats.assignments == 2 * k * T);  // 2 MoE layers x top-2 x every token
}

TEST_CASE("workload::StepBuilder: routing statistics and determinism", "[workload][step]") {
  const std::string model = decoder(4, 512, 8, 32000, 512, "  experts: 8\n  moe_every: 1\n  top_k: 2\n  capacity_factor: 1.0\n");
  const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  data: 2\n  expert: 4\n", 16 * 512,
                                                  "routing:\n  type: zipf\n  skew: 1.0\n")));
  const BuiltStep a = f.build(false, 0), again = f.build(false, 0), next = f.build(false, 1);
  CHECK(a.stats.assignments == 4 * 2 * 16 * 512);  // 4 MoE layers x top-2 x batch tokens
  CHECK(a.stats.dropped > 0.0);                     // Zipf 1.0 at capacity factor 1 overflows the hot experts
  CHECK(a.stats.dropped < a.stats.assignments);
  CHECK(a.stats.dropped == again.stats.dropped);
  CHECK(a.stats.model_flops == again.stats.model_flops);
  CHECK(a.stats.dropped != next.stats.dropped);  // another step, another routing draw
}

TEST_CASE("workload::StepBuilder: 1F1B pipeline schedule", "[workload][step]") {
  // 8 layers over P = 4 stages, M = 6 micro-batches, 2 data-parallel replicas: 8 GPUs.
  const int P = 4, M = 6;
  const t::StepFixture f(t::load(
      t::scenario_yaml(decoder(8, 256, 4, 1000, 256), "h100", 8, "  data: 2\n  pipeline: 4\n  microbatches: 6\n", 24 * 256)));
  const BuiltStep b = f.build(false);
  check_dag(b);
  const auto order = topo_order(b.graph);

  SECTION("point-to-point sends: activations forward and gradients backward at each boundary") {
    std::size_t forward = 0, backward = 0;
    std::set<std::pair<int, int>> fwd_seen, bwd_seen;  // (from stage, micro-batch)
    for (const Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.pipeline_p2p") continue;
      CHECK(p->comm.op == CollectiveOp::send_recv);
      REQUIRE(p->comm.groups.size() == 2);  // one pair per device of a stage (data 2)
      const int from = f.mesh.stage_of(p->comm.groups[0][0]), to = f.mesh.stage_of(p->comm.groups[0][1]);
      for (const auto& g : p->comm.groups) {
        REQUIRE(g.size() == 2);
        CHECK(f.mesh.stage_of(g[0]) == from);
        CHECK(f.mesh.stage_of(g[1]) == to);
        CHECK(f.mesh.data_of(g[0]) == f.mesh.data_of(g[1]));
      }
      CHECK(std::abs(from - to) == 1);
      if (to == from + 1) {
        ++forward;
        fwd_seen.insert({from, p->microbatch});
      } else {
        ++backward;
        bwd_seen.insert({from, p->microbatch});
      }
      CHECK(p->comm.bytes_per_device == Approx(2 * 256 * 256 * 2.0));  // 2 sequences x 256 tokens x d x bf16
    }
    CHECK(forward == static_cast<std::size_t>(M * (P - 1)));
    CHECK(backward == static_cast<std::size_t>(M * (P - 1)));
    CHECK(fwd_seen.size() == static_cast<std::size_t>(M * (P - 1)));
    CHECK(bwd_seen.size() == static_cast<std::size_t>(M * (P - 1)));
  }

  SECTION("each stage runs M forwards and M backwards in 1F1B order") {
    for (int s = 0; s < P; ++s) {
      INFO("stage " << s);
      // Events of the stage in graph order: consecutive compute phases of one (pass, mb) are one event.
      std::vector<std::pair<Pass, int>> events;
      std::map<std::pair<int, int>, int> phases_per;  // (pass, mb) -> compute phases
      for (PhaseId v : order) {
        const Phase& p = b.graph[v];
        const auto pass = pass_of(p);
        if (p.stage != s || !pass) continue;
        ++phases_per[{static_cast<int>(*pass), p.microbatch}];
        if (events.empty() || events.back() != std::make_pair(*pass, p.microbatch))
          events.emplace_back(*pass, p.microbatch);
      }
      REQUIRE(events.size() == static_cast<std::size_t>(2 * M));
      for (int mb = 0; mb < M; ++mb) {
        CHECK(phases_per[{static_cast<int>(Pass::fwd), mb}] == 1);  // dense, no TP: one phase per forward
        CHECK(phases_per[{static_cast<int>(Pass::bwd), mb}] >= 1);
      }
      // PipeDream-Flush / 1F1B (Narayanan et al. 2021, Fig. 4): min(P - s - 1, M) warm-up forwards,
      // then alternate one forward, one backward; the remaining backwards drain at the end.
      std::vector<std::pair<Pass, int>> expected;
      const int warm = std::min(P - s - 1, M);
      int f_next = 0, b_next = 0;
      for (; f_next < warm; ++f_next) expected.emplace_back(Pass::fwd, f_next);
      while (b_next < M) {
        if (f_next < M) expected.emplace_back(Pass::fwd, f_next++);
        expected.emplace_back(Pass::bwd, b_next++);
      }
      CHECK(events == expected);
      // Memory bound of 1F1B: at most P - s micro-batches in flight on stage s.
      int in_flight = 0, peak = 0;
      for (const auto& [pass, mb] : events) {
        in_flight += pass == Pass::fwd ? 1 : -1;
        peak = std::max(peak, in_flight);
      }
      CHECK(peak == std::min(P - s, M));
    }
  }

  SECTION("a micro-batch's forward on stage s precedes its forward on stage s+1") {
    std::map<std::tuple<int, int, int>, std::size_t> first;  // (stage, pass, mb) -> first position
    for (std::size_t i = 0; i < order.size(); ++i) {
      const Phase& p = b.graph[order[i]];
      const auto pass = pass_of(p);
      if (!pass) continue;
      first.emplace(std::make_tuple(p.stage, static_cast<int>(*pass), p.microbatch), i);
    }
    for (int s = 0; s + 1 < P; ++s)
      for (int mb = 0; mb < M; ++mb) {
        CHECK(first.at({s, 0, mb}) < first.at({s + 1, 0, mb}));
        CHECK(first.at({s + 1, 1, mb}) < first.at({s, 1, mb}));
      }
  }

  SECTION("gradients are all-reduced over the data replicas of each stage") {
    std::set<int> stages;
    for (const Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.grad_all_reduce") continue;
      stages.insert(p->stage);
      for (const auto& g : p->comm.groups) {
        CHECK(g.size() == 2);
        for (int dev : g) CHECK(f.mesh.stage_of(dev) == p->stage);
      }
    }
    CHECK(stages.size() == static_cast<std::size_t>(P));
  }
}

TEST_CASE("workload::StepBuilder: pipeline stages hold contiguous, balanced, non-empty layer ranges",
          "[workload][step]") {
  // The builder labels the last micro-batch's backward per layer ("L<i> bwd mb<m> ..."), which shows
  // which layers each stage holds. 5 layers over 4 stages must give 1-2 layers per stage, none empty.
  for (const auto& [layers, stages] : std::vector<std::pair<int, int>>{{5, 4}, {10, 4}, {8, 4}, {3, 2}}) {
    INFO(layers << " layers over " << stages << " stages");
    const int data = 8 / stages;
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(layers, 256, 4, 1000, 256), "h100", 8,
                                                    "  data: " + std::to_string(data) + "\n  pipeline: " +
                                                        std::to_string(stages) + "\n",
                                                    data * 256.0)));
    const BuiltStep b = f.build(false);
    check_dag(b);
    std::map<int, std::set<int>> held;  // stage -> layer ids
    for (const Phase* p : t::all_phases(b.graph)) {
      if (p->type != Phase::Type::compute || p->label.rfind("L", 0) != 0 || !t::contains(p->label, " bwd mb")) continue;
      held[p->stage].insert(std::stoi(p->label.substr(1)));
    }
    std::set<int> all;
    int next = 0;
    for (int s = 0; s < stages; ++s) {
      INFO("stage " << s);
      const auto& ids = held[s];
      REQUIRE_FALSE(ids.empty());
      CHECK(*ids.begin() == next);  // contiguous, in order
      CHECK(*ids.rbegin() == next + static_cast<int>(ids.size()) - 1);
      next += static_cast<int>(ids.size());
      CHECK(static_cast<int>(ids.size()) >= layers / stages);
      CHECK(static_cast<int>(ids.size()) <= (layers + stages - 1) / stages);
      all.insert(ids.begin(), ids.end());
    }
    CHECK(static_cast<int>(all.size()) == layers);
  }
}

TEST_CASE("workload::chunk_layers: first_stage_layers and last_stage_layers fix the end stages, the rest split evenly",
          "[workload][step][stage_layers]") {
  auto ranges = [](int layers, int stages, const std::vector<std::string>& sets) {
    std::vector<std::string> all = sets;
    const int data = 8 / stages;
    const auto sc = t::load(t::scenario_yaml(decoder(layers, 256, 4, 1000, 256), "h100", 8,
                                             "  data: " + std::to_string(data) + "\n  pipeline: " + std::to_string(stages) + "\n",
                                             data * 256.0),
                            all);
    std::string out;
    for (int s = 0; s < stages; ++s) {
      const auto ids = moesim::workload::stage_layers(layers, sc.parallelism, s);
      out += ids.empty() ? "[] " : "[" + std::to_string(ids.front()) + "-" + std::to_string(ids.back()) + "] ";
    }
    return out;
  };
  CHECK(ranges(10, 4, {}) == "[0-1] [2-4] [5-6] [7-9] ");
  CHECK(ranges(10, 4, {"parallelism.last_stage_layers=1"}) == "[0-2] [3-5] [6-8] [9-9] ");
  CHECK(ranges(10, 4, {"parallelism.first_stage_layers=1", "parallelism.last_stage_layers=1"}) == "[0-0] [1-4] [5-8] [9-9] ");
  CHECK(ranges(10, 4, {"parallelism.first_stage_layers=4"}) == "[0-3] [4-5] [6-7] [8-9] ");
  CHECK(ranges(10, 2, {"parallelism.first_stage_layers=3"}) == "[0-2] [3-9] ");
  CHECK(ranges(10, 2, {"parallelism.first_stage_layers=3", "parallelism.last_stage_layers=7"}) == "[0-2] [3-9] ");
  // The step builder and the memory estimate take the same split: the last stage's lighter load shows in its compute.
  const std::string par = "  data: 2\n  pipeline: 4\n  microbatches: 4\n";
  const t::StepFixture even(t::load(t::scenario_yaml(decoder(10, 256, 4, 1000, 256), "h100", 8, par, 8 * 256.0)));
  const t::StepFixture light(t::load(t::scenario_yaml(decoder(10, 256, 4, 1000, 256), "h100", 8, par, 8 * 256.0),
                                     {"parallelism.last_stage_layers=1"}));
  auto stage_ffn = [](const BuiltStep& b, int stage) {
    double sum = 0.0;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::compute && p->stage == stage) {
        auto it = p->compute.kind_time_s.find("compute.ffn");
        if (it != p->compute.kind_time_s.end()) sum += it->second;
      }
    return sum;
  };
  const BuiltStep be = even.build(false), bl = light.build(false);
  CHECK(stage_ffn(bl, 3) == Approx(stage_ffn(be, 3) / 3.0).epsilon(1e-9));  // 1 of the 3 layers
  CHECK(stage_ffn(bl, 0) == Approx(stage_ffn(be, 0) * 3.0 / 2.0).epsilon(1e-9));  // 3 layers instead of 2
}

TEST_CASE("workload::StepBuilder: encoder-decoder MoE models", "[workload][step]") {
  SECTION("small T5-style model on TPU v3: MoE layers in both stacks") {
    // 4 encoder + 4 decoder layers, every 2nd FFN an MoE layer: 2 + 2 MoE layers.
    const std::string model =
        "  architecture: encoder_decoder\n  encoder_layers: 4\n  decoder_layers: 4\n  d_model: 256\n  d_ff: 1024\n"
        "  heads: 4\n  experts: 8\n  moe_every: 2\n  top_k: 2\n  vocab: 1000\n  seq_len: 128\n  target_seq_len: 64\n";
    const t::StepFixture f(t::load(t::scenario_yaml(model, "tpu_v3", 4, "  expert: 8\n", 16 * 128)));
    const BuiltStep b = f.build(false);
    check_dag(b);
    CHECK(t::count_kind(b.graph, "comm.all_to_all") == 4 * 2 * 2);
    // Encoder MoE layers route the 16 x 128 source tokens, decoder MoE layers the 16 x 64 target tokens.
    CHECK(b.stats.assignments == 2 * 2 * (16 * 128) + 2 * 2 * (16 * 64));
  }
  SECTION("the published GShard-600B step builds") {
    const std::string file = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/published/gshard_600b.yaml";
    if (!std::filesystem::exists(file)) {
      WARN("scenarios/published/gshard_600b.yaml not present; skipped");
      return;
    }
    const t::StepFixture f(moesim::scenario::load_file(file, t::real_catalog()));
    const auto mem = moesim::workload::estimate_memory(f.scenario, f.accel);
    const BuiltStep b = f.build(mem.remat);
    check_dag(b);
    const int passes = mem.remat ? 3 : 2;
    CHECK(t::count_kind(b.graph, "comm.all_to_all") == static_cast<std::size_t>(18 * 2 * passes));
    // 18 MoE layers x top-2 x 4M tokens (source and target both 1024 tokens per sequence).
    CHECK(b.stats.assignments == 18.0 * 2 * 4194304);
    CHECK_FALSE(b.stats.routing_exact);  // 8.4M assignments per layer: the normal approximation
    for (const Phase* p : t::all_phases(b.graph))
      if (p->kind == "comm.all_to_all") CHECK(p->comm.groups[0].size() == 2048);
  }
}

TEST_CASE("workload::StepBuilder: the optimizer updates the ZeRO shard, then (stages 1-2) parameters are gathered",
          "[workload][step][zero]") {
  // Dense decoder, 8 data-parallel replicas: with ZeRO each replica updates 1/8 of the parameters.
  auto build = [](int zero) {
    const std::string par = "  data: 8\n  zero_stage: " + std::to_string(zero) + "\n";
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(4, 512, 8, 32000, 512), "h100", 8, par, 16 * 512)));
    return f.build(false);
  };
  auto optimizer_time = [](const BuiltStep& b) {
    double s = 0.0;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::compute)
        for (const auto& [k, v] : p->compute.kind_time_s)
          if (k == "compute.optimizer") s = std::max(s, v);
    return s;
  };
  auto ops = [](const BuiltStep& b, const std::string& kind) {
    std::multiset<CollectiveOp> out;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::collective && p->kind == kind) out.insert(p->comm.op);
    return out;
  };
  const BuiltStep z0 = build(0), z1 = build(1), z3 = build(3);
  REQUIRE(optimizer_time(z0) > 0.0);
  // An eighth of the bytes (the kernel model adds a fixed launch cost, so not exactly an eighth of the time).
  CHECK(optimizer_time(z1) < optimizer_time(z0) / 4.0);
  CHECK(optimizer_time(z3) == optimizer_time(z1));
  // Gradients: all-reduced without ZeRO, reduce-scattered with it.
  for (CollectiveOp op : ops(z0, "comm.grad_all_reduce")) CHECK(op == CollectiveOp::all_reduce);
  for (CollectiveOp op : ops(z1, "comm.grad_all_reduce")) CHECK(op == CollectiveOp::reduce_scatter);
  // ZeRO-1 gathers the updated parameters once after the optimizer; ZeRO-0 gathers nothing.
  CHECK(ops(z0, "comm.zero_all_gather").empty());
  CHECK(ops(z1, "comm.zero_all_gather") == std::multiset<CollectiveOp>{CollectiveOp::all_gather});
}

TEST_CASE("workload::StepBuilder: training.grad_dtype sets the bytes of the data-parallel gradient reduction",
          "[workload][step][zero]") {
  // Dense decoder, 8 data-parallel replicas: bf16 on H100s reduces fp32 gradients by default (Megatron-LM), twice
  // the bytes of grad_dtype: model; an fp16 model reduces fp16 gradients unless fp32 is asked for.
  auto grad_bytes = [](const std::string& dtype, const std::string& grad_dtype) {
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(4, 512, 8, 32000, 512, "  dtype: " + dtype + "\n"), "h100", 8, "  data: 8\n", 16 * 512),
                                   {"training.grad_dtype=" + grad_dtype}));
    const BuiltStep b = f.build(false);
    double sum = 0.0;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->kind == "comm.grad_all_reduce")
        for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
    return sum;
  };
  const double bf16_model = grad_bytes("bf16", "model");
  REQUIRE(bf16_model > 0.0);
  CHECK(grad_bytes("bf16", "auto") == Approx(2.0 * bf16_model));
  CHECK(grad_bytes("bf16", "fp32") == Approx(2.0 * bf16_model));
  CHECK(grad_bytes("fp16", "auto") == Approx(bf16_model));
  CHECK(grad_bytes("fp16", "fp32") == Approx(2.0 * bf16_model));
}

namespace {
/** Tensor-parallel collectives of one kind (all-reduce, reduce-scatter, all-gather) in a step. */
std::size_t tensor_ops(const BuiltStep& b, CollectiveOp op) {
  std::size_t n = 0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == "comm.tensor_parallel" && p->comm.op == op) ++n;
  return n;
}
/** Their buffer bytes summed over the devices. */
double tensor_bytes(const BuiltStep& b, CollectiveOp op) {
  double sum = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == "comm.tensor_parallel" && p->comm.op == op)
      for (const auto& g : p->comm.groups) sum += p->comm.bytes_per_device * static_cast<double>(g.size());
  return sum;
}
}  // namespace

TEST_CASE("workload::StepBuilder: sequence parallelism turns each tensor all-reduce into a reduce-scatter + all-gather "
          "and the backward re-gathers each block's input",
          "[workload][step][sequence_parallel]") {
  // 2 decoder layers x (attention + FFN) on 4 tensor ranks, 2 micro-batches.
  const int L = 2, d = 512, s = 512;
  const double T = 8.0 * s;
  const std::string par = "  tensor: 4\n  data: 2\n  microbatches: 2\n";
  const t::StepFixture plain(t::load(t::scenario_yaml(decoder(L, d, 8, 32000, s), "h100", 8, par, T)));
  const t::StepFixture sp(t::load(t::scenario_yaml(decoder(L, d, 8, 32000, s), "h100", 8, par + "  sequence_parallel: true\n", T)));
  REQUIRE(sp.scenario.parallelism.sequence_parallel);
  const BuiltStep a = plain.build(false), b = sp.build(false);
  check_dag(b);
  // Two blocks per layer, forward and backward, two micro-batches; per micro-batch the vocabulary-parallel embedding
  // (forward) and the output head's input gradient (backward) are one more [tokens, d_model] collective each, and the
  // cross-entropy three small all-reduces of [tokens] fp32 vectors in either layout.
  const std::size_t blocks = static_cast<std::size_t>(L) * 2 * 2 * 2, vocab = 2 * 2, xent = 3 * 2;
  CHECK(tensor_ops(a, CollectiveOp::all_reduce) == blocks + vocab + xent);
  CHECK(tensor_ops(a, CollectiveOp::reduce_scatter) == 0);
  CHECK(tensor_ops(a, CollectiveOp::all_gather) == 0);  // a dense model: no MoE combine all-gather
  CHECK(tensor_ops(b, CollectiveOp::all_reduce) == xent);
  CHECK(tensor_ops(b, CollectiveOp::reduce_scatter) == blocks + vocab);
  // The backward also re-gathers each block's input (stored sharded) for its weight gradients: one more all-gather
  // per block and micro-batch in the backward.
  const std::size_t regathers = blocks / 2;
  CHECK(tensor_ops(b, CollectiveOp::all_gather) == blocks + vocab + regathers);
  std::size_t regather_phases = 0;
  for (const Phase* p : t::all_phases(b.graph))
    if (t::contains(p->label, "SP input re-gather")) {
      ++regather_phases;
      CHECK(t::contains(p->label, " bwd "));
      CHECK(p->comm.op == CollectiveOp::all_gather);
    }
  CHECK(regather_phases == regathers);
  // Each of them over the full [tokens, d_model] buffer of the tensor group (a ring reduce-scatter and all-gather
  // each move half of what a ring all-reduce of that buffer moves); the cross-entropy's over [tokens] fp32.
  double xent_bytes = 0.0;
  for (const Phase* p : t::all_phases(b.graph))
    if (p->kind == "comm.tensor_parallel") {
      REQUIRE(p->comm.groups.size() == 2);
      CHECK(p->comm.groups[0].size() == 4);
      if (t::contains(p->label, "cross-entropy")) {
        CHECK(p->comm.op == CollectiveOp::all_reduce);
        CHECK(p->comm.bytes_per_device == Approx(T / 2 / 2 * 4.0));
        xent_bytes += p->comm.bytes_per_device * 8;
      } else {
        CHECK(p->comm.bytes_per_device == Approx(T / 2 / 2 * d * 2.0));  // tokens per replica and micro-batch, bf16
      }
    }
  CHECK(tensor_bytes(b, CollectiveOp::reduce_scatter) == Approx(tensor_bytes(a, CollectiveOp::all_reduce) - xent_bytes));
  CHECK(tensor_bytes(b, CollectiveOp::all_gather) ==
        Approx((tensor_bytes(a, CollectiveOp::all_reduce) - xent_bytes) * (blocks + vocab + regathers) / (blocks + vocab)));
  SECTION("layer norms and residuals run on 1/tensor of the tokens: fewer executed FLOPs, the same model FLOPs") {
    CHECK(b.stats.model_flops == Approx(a.stats.model_flops).epsilon(1e-12));
    // Norm + residual: 10 FLOPs per element of [tokens, d] per block, forward + backward (x2): 3/4 of it saved,
    // on every device.
    const double saved = 8.0 * T / 2 * L * 2 * (10.0 * d) * (1.0 + 2.0) * 0.75;
    CHECK(a.stats.hardware_flops - b.stats.hardware_flops == Approx(saved).epsilon(0.01));
  }
}

TEST_CASE("workload::StepBuilder: tensor x expert MoE layers all-gather the combined tokens (not under sequence parallelism)",
          "[workload][step][tensor]") {
  // 2 MoE layers (every layer), 2 experts over 2 expert ranks, tensor 2, 1 micro-batch.
  const int L = 2, d = 512, s = 512;
  const double T = 8.0 * s;
  const std::string model = decoder(L, d, 8, 32000, s, "  experts: 2\n  moe_every: 1\n  top_k: 1\n  capacity_factor: 2.0\n");
  const std::string par = "  tensor: 2\n  expert: 2\n  data: 2\n";
  const t::StepFixture plain(t::load(t::scenario_yaml(model, "h100", 8, par, T)));
  const t::StepFixture sp(t::load(t::scenario_yaml(model, "h100", 8, par + "  sequence_parallel: true\n", T)));
  auto combine_gathers = [](const BuiltStep& b) {
    std::vector<const Phase*> out;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::collective && t::contains(p->label, "moe combine TP all-gather")) out.push_back(p);
    return out;
  };
  const BuiltStep a = plain.build(false), b = sp.build(false);
  check_dag(a);
  const auto g = combine_gathers(a);
  REQUIRE(g.size() == static_cast<std::size_t>(L) * 2);  // one per MoE layer and pass
  for (const Phase* p : g) {
    CHECK(p->comm.op == CollectiveOp::all_gather);
    CHECK(p->kind == "comm.tensor_parallel");
    // [tokens of a data x expert replica, d_model] in bf16: 8 sequences over data x expert = 4 replicas.
    CHECK(p->comm.bytes_per_device == Approx(T / 4 * d * 2.0));
    CHECK(p->comm.groups.front().size() == 2);
  }
  CHECK(combine_gathers(b).empty());
}

TEST_CASE("workload::StepBuilder: pipelines sync the tied embedding's gradients - ZeRO-3 gathers the vocabulary matrix",
          "[workload][step][zero][pipeline]") {
  const int L = 4, d = 512, s = 512, V = 32000;
  const double T = 8.0 * s;
  auto tied_syncs = [](const BuiltStep& b) {
    std::vector<const Phase*> out;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::collective && t::contains(p->label, "tied embedding gradients")) out.push_back(p);
    return out;
  };
  {
    // 2 stages x 2 data x 2 tensor: each of the 4 (data, tensor) ranks of stage 0 all-reduces with its peer on stage 1.
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, V, s), "h100", 8, "  pipeline: 2\n  data: 2\n  tensor: 2\n  microbatches: 2\n", T)));
    const BuiltStep b = f.build(false);
    check_dag(b);
    const auto sync = tied_syncs(b);
    REQUIRE(sync.size() == 1);
    CHECK(sync[0]->comm.op == CollectiveOp::all_reduce);
    REQUIRE(sync[0]->comm.groups.size() == 4);
    for (const auto& grp : sync[0]->comm.groups) {
      REQUIRE(grp.size() == 2);
      CHECK(f.mesh.stage_of(grp[0]) == 0);
      CHECK(f.mesh.stage_of(grp[1]) == 1);
      CHECK(f.mesh.tensor_of(grp[0]) == f.mesh.tensor_of(grp[1]));
    }
    // 1/tensor of V x d, in the gradients' dtype: fp32 for a bf16 model on GPUs (training.grad_dtype auto)
    CHECK(sync[0]->comm.bytes_per_device == Approx(static_cast<double>(V) * d / 2 * 4.0));
  }
  {
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, V, s), "h100", 8, "  data: 8\n", T)));
    CHECK(tied_syncs(f.build(false)).empty());  // one stage holds the one matrix
  }
  {
    // ZeRO-3 over 8 replicas: every pass gathers the vocabulary matrix once before the embedding / output head.
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, V, s), "h100", 8, "  data: 8\n  zero_stage: 3\n", T)));
    const BuiltStep b = f.build(false);
    check_dag(b);
    std::size_t gathers = 0;
    for (const Phase* p : t::all_phases(b.graph))
      if (p->type == Phase::Type::collective && t::contains(p->label, "ZeRO-3 vocabulary-matrix all-gather")) {
        ++gathers;
        CHECK(p->comm.op == CollectiveOp::all_gather);
        CHECK(p->comm.bytes_per_device == Approx(static_cast<double>(V) * d * 2.0));
        CHECK(p->comm.groups.front().size() == 8);
      }
    CHECK(gathers == 2);  // forward and backward of the one micro-batch
  }
}

TEST_CASE("workload::StepBuilder: selective recomputation recomputes only the attention core",
          "[workload][step][selective]") {
  const int L = 4, d = 512, s = 512;
  const double T = 16.0 * s;
  SECTION("dense decoder: the scores and values GEMMs (4 s d FLOPs per token and layer) and the softmax again") {
    const t::StepFixture f(t::load(t::scenario_yaml(decoder(L, d, 8, 32000, s), "h100", 8, "  data: 8\n", T)));
    const BuiltStep plain = f.build(false), sel = f.build(false, 0, true), full = f.build(true);
    check_dag(sel);
    CHECK(sel.stats.model_flops == Approx(plain.stats.model_flops).epsilon(1e-12));
    const double core = T * L * 4.0 * s * d;  // + softmax's 5 FLOPs per score: 8 x 512 per token and layer, 2 %
    CHECK(sel.stats.hardware_flops - plain.stats.hardware_flops == Approx(core).epsilon(0.03));
    CHECK(sel.stats.hardware_flops < full.stats.hardware_flops);
    CHECK(t::count_kind(sel.graph, "comm.tensor_parallel") == t::count_kind(plain.graph, "comm.tensor_parallel"));
  }
  SECTION("MoE decoder: no collective is repeated (full rematerialisation repeats the all-to-alls)") {
    const std::string model = decoder(L, d, 8, 32000, s, "  experts: 8\n  moe_every: 2\n  top_k: 2\n");
    const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  expert: 8\n", T)));
    const BuiltStep plain = f.build(false), sel = f.build(false, 0, true), full = f.build(true);
    CHECK(t::count_kind(sel.graph, "comm.all_to_all") == t::count_kind(plain.graph, "comm.all_to_all"));
    CHECK(t::count_kind(full.graph, "comm.all_to_all") > t::count_kind(plain.graph, "comm.all_to_all"));
    bool remat_phase = false;
    for (const Phase* p : t::all_phases(sel.graph))
      if (p->type == Phase::Type::compute && p->compute.kind_time_s.count("compute.remat")) remat_phase = true;
    CHECK(remat_phase);
  }
}

namespace {
/** Longest path through the step graph counting compute phases only (their slowest device): the step time
 *  when communication is free. */
double compute_critical_path_s(const BuiltStep& b) {
  std::map<PhaseId, double> finish;
  double longest = 0.0;
  for (PhaseId v : topo_order(b.graph)) {
    double start = 0.0;
    for (auto e : boost::make_iterator_range(boost::in_edges(v, b.graph))) start = std::max(start, finish[boost::source(e, b.graph)]);
    const Phase& p = b.graph[v];
    double own = 0.0;
    if (p.type == Phase::Type::compute)
      for (double t : p.compute.time_s) own = std::max(own, t);
    finish[v] = start + own;
    longest = std::max(longest, finish[v]);
  }
  return longest;
}
}  // namespace

TEST_CASE("workload::StepBuilder: interleaved 1F1B (virtual stages)", "[workload][step][interleaved]") {
  // 8 layers over P = 4 stages x v = 2 chunks (one layer per chunk), M = 8 micro-batches, 2 data replicas.
  const int P = 4, V = 2, M = 8;
  const std::string par = "  data: 2\n  pipeline: 4\n  microbatches: 8\n";
  const std::string model = decoder(8, 256, 4, 1000, 256);
  const t::StepFixture plain(t::load(t::scenario_yaml(model, "h100", 8, par, 16 * 256)));
  const t::StepFixture inter(t::load(t::scenario_yaml(model, "h100", 8, par + "  virtual_stages: 2\n", 16 * 256)));
  REQUIRE(inter.scenario.parallelism.virtual_stages == V);
  const BuiltStep a = plain.build(false), b = inter.build(false);
  check_dag(b);
  SECTION("every micro-batch crosses P v - 1 boundaries each way, the wrap-around from the last stage to the first included") {
    std::size_t forward = 0, backward = 0, wrap = 0;
    for (const Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.pipeline_p2p") continue;
      const int from = inter.mesh.stage_of(p->comm.groups[0][0]), to = inter.mesh.stage_of(p->comm.groups[0][1]);
      if (to == (from + 1) % P) ++forward;
      else if (from == (to + 1) % P) ++backward;
      else FAIL("a send between stages that are not neighbours on the ring");
      if ((from == P - 1 && to == 0) || (from == 0 && to == P - 1)) ++wrap;
    }
    CHECK(forward == static_cast<std::size_t>(M * (P * V - 1)));
    CHECK(backward == static_cast<std::size_t>(M * (P * V - 1)));
    CHECK(wrap == static_cast<std::size_t>(2 * M * (V - 1)));
    CHECK(t::count_kind(a.graph, "comm.pipeline_p2p") == static_cast<std::size_t>(2 * M * (P - 1)));
  }
  SECTION("each stage runs M v forwards and backwards, chunk by chunk") {
    for (int s = 0; s < P; ++s) {
      // One compute phase per chunk forward (dense, no TP); backwards of the last micro-batch are split per layer
      // (gradient buckets), the others one phase per chunk.
      std::size_t fwd = 0, bwd = 0;
      std::set<int> bwd_mbs;
      for (const Phase* p : t::all_phases(b.graph)) {
        if (p->stage != s || p->type != Phase::Type::compute) continue;
        if (t::contains(p->label, "chunk") && t::contains(p->label, " fwd (compute)")) ++fwd;
        if (t::contains(p->label, "chunk") && t::contains(p->label, " bwd (compute)")) ++bwd;
        if (t::contains(p->label, "bwd")) bwd_mbs.insert(p->microbatch);
      }
      CHECK(fwd == static_cast<std::size_t>(M * V));
      CHECK(bwd >= static_cast<std::size_t>((M - 1) * V));
      CHECK(bwd_mbs.size() == static_cast<std::size_t>(M));
    }
    CHECK(b.stats.model_flops == Approx(a.stats.model_flops).epsilon(1e-12));
  }
  SECTION("the bubble shrinks by v: (M + (P - 1) / v) chunk-times instead of M + P - 1") {
    const double ratio = compute_critical_path_s(b) / compute_critical_path_s(a);
    CHECK(ratio == Approx((M + (P - 1.0) / V) / (M + P - 1.0)).epsilon(0.05));
  }
  SECTION("stage 0 holds P + (P - 1) / v micro-batches of activations at the peak") {
    CHECK(moesim::workload::inflight_microbatches(inter.scenario.parallelism) == Approx(P + (P - 1.0) / V));
    CHECK(moesim::workload::inflight_microbatches(plain.scenario.parallelism) == P);
  }
  SECTION("layers: stage s holds virtual stages s and s + P") {
    CHECK(moesim::workload::stage_layers(8, inter.scenario.parallelism, 1) == std::vector<int>{1, 5});
    CHECK(moesim::workload::stage_layers(8, plain.scenario.parallelism, 1) == std::vector<int>{2, 3});
  }
  SECTION("refused: micro-batches not a multiple of the stages, one stage, fewer layers than chunks") {
    CHECK_THROWS_WITH(t::load(t::scenario_yaml(model, "h100", 8, "  data: 2\n  pipeline: 4\n  microbatches: 6\n  virtual_stages: 2\n", 12 * 256)),
                      Catch::Contains("parallelism.virtual_stages") && Catch::Contains("multiple"));
    CHECK_THROWS_WITH(t::load(t::scenario_yaml(model, "h100", 8, "  data: 8\n  virtual_stages: 2\n", 8 * 256)),
                      Catch::Contains("parallelism.virtual_stages") && Catch::Contains("pipeline > 1"));
    CHECK_THROWS_WITH(t::load(t::scenario_yaml(model, "h100", 8, "  data: 2\n  pipeline: 4\n  microbatches: 8\n  virtual_stages: 4\n", 16 * 256)),
                      Catch::Contains("at least as many layers"));
  }
}

TEST_CASE("workload::StepBuilder: with sequence parallelism each tensor rank routes, dispatches and combines its own tokens",
          "[workload][step][sequence_parallel][moe]") {
  // TPU (one-hot einsum dispatch), 2 MoE layers, 4 experts over 2 expert ranks x tensor 4, 512-token routing groups.
  const int L = 2, d = 512, s = 1024;
  const double T = 8.0 * s;  // 4096 tokens per expert rank; 1024 per tensor rank with sequence parallelism
  const std::string model = decoder(L, d, 8, 32000, s, "  experts: 4\n  moe_every: 1\n  top_k: 2\n  capacity_factor: 2.0\n");
  const std::string par = "  tensor: 4\n  expert: 2\n";
  const std::string routing = "routing:\n  type: uniform\n  group_size_tokens: 512\n";
  const t::StepFixture plain(t::load(t::scenario_yaml(model, "tpu_v4", 8, par, T, routing)));
  const t::StepFixture sp(t::load(t::scenario_yaml(model, "tpu_v4", 8, par + "  sequence_parallel: true\n", T, routing)));
  const BuiltStep a = plain.build(false), b = sp.build(false);
  check_dag(b);
  using t::kind_s;
  auto bytes_of = [](const BuiltStep& bs, const std::string& what) {
    std::vector<double> out;
    for (const Phase* p : t::all_phases(bs.graph))
      if (p->type == Phase::Type::collective && t::contains(p->label, what)) out.push_back(p->comm.bytes_per_device);
    return out;
  };
  // Same groups (512 tokens, so the same capacity), a quarter of them per rank: the dispatch and combine einsums,
  // the gate and the mask cost a quarter; the routing sees the same tokens, so the experts' work is unchanged.
  REQUIRE(kind_s(a, "compute.dispatch") > 0.0);
  CHECK(kind_s(b, "compute.dispatch") == Approx(kind_s(a, "compute.dispatch") / 4.0).epsilon(1e-9));
  // The gate also reads its [d_model, experts] weights, whatever the tokens: a quarter to within 1 %.
  REQUIRE(kind_s(a, "compute.router") > 0.0);
  CHECK(kind_s(b, "compute.router") == Approx(kind_s(a, "compute.router") / 4.0).epsilon(0.01));
  CHECK(kind_s(b, "compute.router") > kind_s(a, "compute.router") / 4.0);
  CHECK(kind_s(b, "compute.expert_ffn") == Approx(kind_s(a, "compute.expert_ffn")).epsilon(1e-12));
  CHECK(a.stats.routed_tokens == Approx(b.stats.routed_tokens));
  CHECK(a.stats.dropped == Approx(b.stats.dropped));
  // The all-to-all moves each rank's own slots: as many bytes as each rank's 1/tensor share of the replicated ones.
  const auto a2a_plain = bytes_of(a, "moe dispatch all-to-all"), a2a_sp = bytes_of(b, "moe dispatch all-to-all");
  REQUIRE(a2a_plain.size() == a2a_sp.size());
  REQUIRE_FALSE(a2a_sp.empty());
  // 4096 tokens in 8 groups of 512, capacity 2 x 2 x 512 / 4 = 512 slots per expert and group, bf16.
  for (std::size_t i = 0; i < a2a_sp.size(); ++i) {
    CHECK(a2a_plain[i] == Approx(8.0 * 4 * 512 * d * 2.0 / 4.0));
    CHECK(a2a_sp[i] == Approx(a2a_plain[i]));
  }
  // The tensor group gathers every slot for the tensor-split experts either way.
  const auto ag_plain = bytes_of(a, "expert TP all-gather"), ag_sp = bytes_of(b, "expert TP all-gather");
  REQUIRE(ag_sp.size() == ag_plain.size());
  for (std::size_t i = 0; i < ag_sp.size(); ++i) CHECK(ag_sp[i] == Approx(8.0 * 4 * 512 * d * 2.0));
  // Memory: the one-hot masks and the dispatched rows of 1/tensor of the tokens per rank.
  const auto mem_plain = moesim::workload::estimate_memory_need(plain.scenario, plain.accel);
  const auto mem_sp = moesim::workload::estimate_memory_need(sp.scenario, sp.accel);
  CHECK(mem_sp.activations_no_remat_bytes < mem_plain.activations_no_remat_bytes);
}

TEST_CASE("workload::StepBuilder: attention dropout is its own kernel over the scores, forward and backward, and its mask is kept",
          "[workload][step][dropout]") {
  // 4 layers, d 512, 8 heads, sequence 512, 16 sequences over 8 data-parallel H100: 2 sequences per device.
  const int L = 4, d = 512, a = 8, s = 512;
  const double T = 16.0 * s;
  const auto plain_s = t::load(t::scenario_yaml(decoder(L, d, a, 32000, s), "h100", 8, "  data: 8\n", T), {"training.rematerialization=none"});
  const auto drop_s = t::load(t::scenario_yaml(decoder(L, d, a, 32000, s), "h100", 8, "  data: 8\n", T),
                              {"training.rematerialization=none", "training.attention_dropout=0.1"});
  const t::StepFixture plain(plain_s), drop(drop_s);
  const BuiltStep p = plain.build(false), q = drop.build(false);
  check_dag(q);
  CHECK(q.stats.model_flops == Approx(p.stats.model_flops).epsilon(1e-12));  // dropout is no model work
  // Per layer and pass: read the 16-bit probabilities (gradient), write the 16-bit output (gradient) and the one-byte
  // mask (read it): 5 bytes per score, streamed at the elementwise class's 0.90 of the 3.35 TB/s, plus its 5 us floor.
  const double scores = 2.0 * a * s * s;  // per device and layer
  const auto& h100 = t::real_catalog().accelerator("h100");
  const double kernel_s = 5.0 * scores / (0.90 * h100.hbm_bandwidth_bytes_per_s) + 5.0e-6;
  CHECK(compute_critical_path_s(q) - compute_critical_path_s(p) == Approx(2.0 * L * kernel_s).epsilon(0.02));
  // The mask stays with the other activations until the backward: one byte per score and layer.
  const auto mp = moesim::workload::estimate_memory(plain_s, h100), mq = moesim::workload::estimate_memory(drop_s, h100);
  CHECK(mq.activations_bytes - mp.activations_bytes == Approx(L * scores));
}
