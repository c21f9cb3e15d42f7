// SPDX-License-Identifier: Apache-2.0
// parallelism.overlap_expert_comm: each steady-state forward is paired with the backward after it (one more warm-up
// forward, as Megatron-Core's combined 1F1B schedules), the pair's compute phases alternate one at a time, its
// collectives likewise, one micro-batch's all-to-all may run during the other's compute, and the pair's compute runs on
// the SMs the communication kernels leave.

#include <catch2/catch.hpp>

#include <boost/graph/topological_sort.hpp>

#include <map>
#include <string>
#include <vector>

#include "workload_test_support.hpp"

using moesim::workload::BuiltStep;
using moesim::workload::Phase;
using moesim::workload::PhaseId;
using moesim::workload::StepGraph;
namespace t = moesim::workload::test;

namespace {

const std::string kModel =
    "  layers: 2\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  experts: 8\n  top_k: 2\n  vocab: 32000\n  seq_len: 512\n";

/** Phases reachable from v (v included). */
std::vector<char> reach_from(const StepGraph& g, PhaseId v) {
  std::vector<char> seen(boost::num_vertices(g), 0);
  std::vector<PhaseId> todo{v};
  seen[v] = 1;
  while (!todo.empty()) {
    const PhaseId u = todo.back();
    todo.pop_back();
    for (auto e : boost::make_iterator_range(boost::out_edges(u, g)))
      if (!seen[boost::target(e, g)]) {
        seen[boost::target(e, g)] = 1;
        todo.push_back(boost::target(e, g));
      }
  }
  return seen;
}

/** reach_from of every phase, by vertex. */
std::vector<std::vector<char>> reach_all(const StepGraph& g) {
  std::vector<std::vector<char>> reach;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) reach.push_back(reach_from(g, v));
  return reach;
}

std::vector<PhaseId> vertices_where(const StepGraph& g, const std::function<bool(const Phase&)>& keep) {
  std::vector<PhaseId> out;
  for (auto v : boost::make_iterator_range(boost::vertices(g)))
    if (keep(g[v])) out.push_back(v);
  return out;
}

bool ordered(const std::vector<std::vector<char>>& reach, PhaseId a, PhaseId b) { return reach[a][b] || reach[b][a]; }

}  // namespace

TEST_CASE("workload::stage_schedule: the overlap adds one warm-up forward, so each forward pairs with a backward",
          "[workload][step][overlap]") {
  auto sched = [](const std::vector<std::string>& sets, int stage) {
    const auto sc = t::load(t::scenario_yaml(kModel, "h100", 8, "  expert: 8\n  microbatches: 3\n", 24 * 512), sets);
    std::string s;
    for (const auto& tk : moesim::workload::stage_schedule(sc.parallelism, stage))
      s += (tk.backward ? "B" : "F") + std::to_string(tk.mb) + " ";
    return s;
  };
  CHECK(sched({}, 0) == "F0 B0 F1 B1 F2 B2 ");
  CHECK(sched({"parallelism.overlap_expert_comm=true"}, 0) == "F0 F1 B0 F2 B1 B2 ");
  // Interleaved, 2 stages x 2 chunks, 4 micro-batches: Megatron-LM's 2 (P - s - 1) + (v - 1) P warm-up chunk forwards,
  // one more with the overlap; the memory estimate walks the same schedule, so one more micro-batch-chunk is held.
  const std::string layers4 = "  layers: 4\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  experts: 8\n  top_k: 2\n  vocab: 32000\n  seq_len: 512\n";
  auto inter = [&](bool overlap) {
    return t::load(t::scenario_yaml(layers4, "h100", 8, "  expert: 4\n  pipeline: 2\n  virtual_stages: 2\n  microbatches: 4\n", 16 * 512),
                   {std::string("parallelism.overlap_expert_comm=") + (overlap ? "true" : "false")});
  };
  for (int s = 0; s < 2; ++s) {
    const auto plain = moesim::workload::stage_schedule(inter(false).parallelism, s);
    const auto over = moesim::workload::stage_schedule(inter(true).parallelism, s);
    auto warm = [](const std::vector<moesim::workload::PipelineTask>& o) {
      std::size_t n = 0;
      while (n < o.size() && !o[n].backward) ++n;
      return n;
    };
    CHECK(warm(plain) == static_cast<std::size_t>(2 * (2 - s - 1) + 2 + 1));  // + the forward that starts the steady state
    CHECK(warm(over) == warm(plain) + 1);
    CHECK(moesim::workload::inflight_microbatches(inter(true).parallelism, s) ==
          Approx(moesim::workload::inflight_microbatches(inter(false).parallelism, s) + 0.5));  // one chunk of v = 2
  }
}

TEST_CASE("workload::StepBuilder: an overlapped pair computes one phase at a time and hides one micro-batch's "
          "all-to-all behind the other's compute", "[workload][step][overlap]") {
  const std::vector<std::string> base{"training.overlap_grad_reduce=false"};
  std::vector<std::string> over = base;
  over.push_back("parallelism.overlap_expert_comm=true");
  const t::StepFixture plain_f(t::load(t::scenario_yaml(kModel, "h100", 8, "  expert: 8\n  microbatches: 3\n", 24 * 512), base));
  const t::StepFixture over_f(t::load(t::scenario_yaml(kModel, "h100", 8, "  expert: 8\n  microbatches: 3\n", 24 * 512), over));
  const BuiltStep plain = plain_f.build(false), b = over_f.build(false);
  const StepGraph& g = b.graph;
  std::vector<PhaseId> topo;
  REQUIRE_NOTHROW(boost::topological_sort(g, std::back_inserter(topo)));  // still a DAG
  const std::vector<std::vector<char>> reach = reach_all(g);

  // The engine's premise (engine.cpp, chains): a chip runs one compute phase at a time. Every two compute phases
  // are ordered, and so are every two all-to-alls (they would share the links).
  const auto computes = vertices_where(g, [](const Phase& p) { return p.type == Phase::Type::compute; });
  const auto a2as = vertices_where(g, [](const Phase& p) { return p.kind == "comm.all_to_all"; });
  REQUIRE(a2as.size() == 2u * 2u * 2u * 3u);  // 2 MoE layers x (dispatch + combine) x (fwd + bwd) x 3 micro-batches
  bool all_ordered = true;
  for (std::size_t i = 0; i < computes.size(); ++i)
    for (std::size_t j = i + 1; j < computes.size(); ++j) all_ordered = all_ordered && ordered(reach, computes[i], computes[j]);
  CHECK(all_ordered);
  bool a2a_ordered = true;
  for (std::size_t i = 0; i < a2as.size(); ++i)
    for (std::size_t j = i + 1; j < a2as.size(); ++j) a2a_ordered = a2a_ordered && ordered(reach, a2as[i], a2as[j]);
  CHECK(a2a_ordered);

  // Within a pair (forward of micro-batch 1, backward of micro-batch 0) some all-to-all of one runs unordered with a
  // compute phase of the other: the overlap. Without the overlap every all-to-all is ordered with every compute.
  auto concurrent = [&](const std::string& comm_of, const std::string& compute_of) {
    for (PhaseId a : a2as) {
      if (!t::contains(g[a].label, comm_of)) continue;
      for (PhaseId c : computes)
        if (t::contains(g[c].label, compute_of) && !ordered(reach, a, c)) return true;
    }
    return false;
  };
  CHECK(concurrent("fwd mb1", "bwd mb0"));
  CHECK(concurrent("bwd mb0", "fwd mb1"));
  CHECK(concurrent("fwd mb2", "bwd mb1"));
  CHECK_FALSE(concurrent("fwd mb0", "bwd mb0"));  // the warm-up forward runs alone
  CHECK_FALSE(concurrent("bwd mb2", "fwd mb2"));  // and the last backward

  // The pair's compute runs on 132 - 20 of the H100's SMs; the unpaired passes keep all of them. Matched by label.
  std::map<std::string, double> plain_s;
  for (const Phase* p : t::all_phases(plain.graph))
    if (p->type == Phase::Type::compute) plain_s[p->label] += p->compute.time_s.at(0);
  std::map<std::string, double> over_s;
  for (PhaseId c : computes) over_s[g[c].label] += g[c].compute.time_s.at(0);
  REQUIRE(over_s.size() == plain_s.size());
  const double slow = 132.0 / 112.0;
  int paired = 0, alone = 0;
  for (const auto& [label, s] : over_s) {
    INFO(label);
    REQUIRE(plain_s.count(label) == 1);
    bool in_pair = false;  // labels name a pass "fwd mb1" inside layers, "mb1 fwd" at the pass's end
    for (const char* pass : {"fwd mb1", "mb1 fwd", "bwd mb0", "mb0 bwd", "fwd mb2", "mb2 fwd", "bwd mb1", "mb1 bwd"})
      in_pair = in_pair || t::contains(label, pass);
    CHECK(s == Approx(plain_s.at(label) * (in_pair ? slow : 1.0)).epsilon(1e-12));
    (in_pair ? paired : alone) += 1;
  }
  CHECK(paired > 0);
  CHECK(alone > 0);
  // The pairing changes neither the work nor the traffic.
  CHECK(b.stats.hardware_flops == Approx(plain.stats.hardware_flops).epsilon(1e-12));
  CHECK(b.stats.bytes_by_op.at("all_to_all") == Approx(plain.stats.bytes_by_op.at("all_to_all")).epsilon(1e-12));
}

TEST_CASE("workload::StepBuilder: overlapped interleaved pipelines build without waiting on themselves",
          "[workload][step][overlap]") {
  // The builder places a pair only when both passes' inputs from other stages are placed; a pairing that made a pass
  // wait on its own pair would stop it ("the 1F1B schedule deadlocked"). Every stage count, chunk count and micro-batch
  // count here must build into a DAG with every pass in it.
  const std::string model = "  layers: 12\n  d_model: 256\n  d_ff: 1024\n  heads: 4\n  experts: 4\n  top_k: 2\n  vocab: 1000\n  seq_len: 128\n";
  for (int P : {2, 3, 4})
    for (int V : {2, 3})
      for (int M : {P, 2 * P, 3 * P}) {
        if (P * V > 12) continue;
        INFO("P " << P << " V " << V << " M " << M);
        const std::string par = "  expert: 2\n  pipeline: " + std::to_string(P) + "\n  virtual_stages: " + std::to_string(V) +
                                "\n  microbatches: " + std::to_string(M) + "\n";
        const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 2 * P, par, 2.0 * M * 128),
                                       {"parallelism.overlap_expert_comm=true", "cluster.topology.gpus_per_node=2"}));
        BuiltStep b;
        REQUIRE_NOTHROW(b = f.build(false));
        std::vector<PhaseId> topo;
        REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
        CHECK(t::count_kind(b.graph, "comm.all_to_all") == static_cast<std::size_t>(12 * 2 * 2 * M));
      }
}

TEST_CASE("workload::StepBuilder: overlapped shared experts run beside the dispatch all-to-all", "[workload][step][overlap]") {
  const std::string model = kModel + "  shared_experts: 1\n  expert_d_ff: 512\n";
  auto build = [&](bool overlap) {
    const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  expert: 8\n", 8 * 512),
                                   {std::string("parallelism.overlap_shared_experts=") + (overlap ? "true" : "false")}));
    return f.build(false);
  };
  const BuiltStep plain = build(false), b = build(true);
  std::vector<PhaseId> topo;
  REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
  // The same work, on a branch.
  CHECK(b.stats.hardware_flops == Approx(plain.stats.hardware_flops).epsilon(1e-12));
  CHECK(t::kind_s(b, "compute.shared_experts") == Approx(t::kind_s(plain, "compute.shared_experts")).epsilon(1e-12));
  auto unordered_pairs = [](const BuiltStep& s) {
    const StepGraph& g = s.graph;
    const std::vector<std::vector<char>> reach = reach_all(g);
    int n = 0;
    const auto shared = vertices_where(g, [](const Phase& p) {
      return p.type == Phase::Type::compute && p.compute.kind_time_s.count("compute.shared_experts") > 0;
    });
    const auto a2as = vertices_where(g, [](const Phase& p) { return p.kind == "comm.all_to_all"; });
    for (PhaseId c : shared)
      for (PhaseId a : a2as) n += ordered(reach, c, a) ? 0 : 1;
    // One compute phase at a time: every two compute phases stay ordered.
    const auto computes = vertices_where(g, [](const Phase& p) { return p.type == Phase::Type::compute; });
    for (std::size_t i = 0; i < computes.size(); ++i)
      for (std::size_t j = i + 1; j < computes.size(); ++j) CHECK(ordered(reach, computes[i], computes[j]));
    return n;
  };
  CHECK(unordered_pairs(plain) == 0);
  CHECK(unordered_pairs(b) == 2 * 2);  // each of 2 layers x (fwd + bwd): its shared experts beside its dispatch
}

TEST_CASE("workload::StepBuilder: overlap_tensor_comm runs the sequence-parallel collectives beside their GEMMs",
          "[workload][step][overlap]") {
  // A dense model, tensor 4 with sequence parallelism, on H100s (two layers; the plain and the overlapped step).
  const std::string model = "  layers: 2\n  d_model: 1024\n  d_ff: 4096\n  heads: 16\n  experts: 0\n  vocab: 32000\n  seq_len: 512\n";
  auto build = [&](bool overlap) {
    const t::StepFixture f(t::load(t::scenario_yaml(model, "h100", 8, "  tensor: 4\n  data: 2\n  sequence_parallel: true\n", 8 * 512),
                                   {std::string("parallelism.overlap_tensor_comm=") + (overlap ? "true" : "false")}));
    return f.build(false);
  };
  const BuiltStep plain = build(false), b = build(true);
  std::vector<PhaseId> topo;
  REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
  // The same work and the same bytes on the links: each collective is split into (tensor - 1) / tensor beside the GEMM
  // and its last 1/tensor after it.
  CHECK(b.stats.hardware_flops == Approx(plain.stats.hardware_flops).epsilon(1e-12));
  CHECK(b.stats.model_flops == Approx(plain.stats.model_flops).epsilon(1e-12));
  for (const char* op : {"all_gather", "reduce_scatter"})
    CHECK(b.stats.bytes_by_op.at(op) == Approx(plain.stats.bytes_by_op.at(op)).epsilon(1e-12));
  const std::size_t blocks = 2 * 2 * 2;  // layers x (attention, FFN) x (forward, backward)
  // Collectives per block: forward all-gather + reduce-scatter, backward the same plus the input re-gather; each is
  // two phases overlapped (the chunks beside the GEMM, the last chunk after it). The embedding's and the output head's
  // stay single.
  const std::size_t block_tp = blocks / 2 * 2 + blocks / 2 * 3;
  const std::size_t plain_tp = t::count_kind(plain.graph, "comm.tensor_parallel");
  CHECK(plain_tp > block_tp);
  CHECK(t::count_kind(b.graph, "comm.tensor_parallel") == plain_tp + block_tp);
  // The overlapped GEMMs lose 16 of the H100's 132 SMs except beside the forward's all-gathers (copy engines): the
  // attention and FFN compute grows, by less than 132 / 116.
  const double plain_s = t::kind_s(plain, "compute.attention") + t::kind_s(plain, "compute.ffn");
  const double over_s = t::kind_s(b, "compute.attention") + t::kind_s(b, "compute.ffn");
  CHECK(over_s > plain_s);
  CHECK(over_s < plain_s * 132.0 / 116.0);
  // Concurrency: in the plain step every compute phase is ordered with every tensor-parallel collective; overlapped,
  // each block has GEMM phases that run beside collectives (input side and output side).
  auto unordered = [](const BuiltStep& s) {
    const StepGraph& g = s.graph;
    const std::vector<std::vector<char>> reach = reach_all(g);
    const auto computes = vertices_where(g, [](const Phase& p) { return p.type == Phase::Type::compute; });
    const auto tps = vertices_where(g, [](const Phase& p) { return p.kind == "comm.tensor_parallel"; });
    int n = 0;
    for (PhaseId c : computes)
      for (PhaseId a : tps) n += ordered(reach, c, a) ? 0 : 1;
    return n;
  };
  CHECK(unordered(plain) == 0);
  // Per block: the input side's GEMM beside its collectives (1 in the forward, 2 in the backward), the output side's
  // beside its reduce-scatter.
  CHECK(unordered(b) == static_cast<int>(blocks / 2 * (1 + 1) + blocks / 2 * (2 + 1)));
}
