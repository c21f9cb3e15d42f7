// SPDX-License-Identifier: Apache-2.0
// parallelism.schedule: dualpipev. DualPipeV (deepseek-ai/DualPipe, dualpipev.py): two model chunks per stage in a V,
// the schedule's eight steps on each stage, its forward-backward pairs, the local turn at the last stage, both ends of
// the model on stage 0, and a step graph whose pipeline timing is the schedule's own (checked against an independent
// list scheduling of the same orders).

#include <catch2/catch.hpp>

#include <boost/graph/topological_sort.hpp>

#include <algorithm>
#include <iterator>
#include <map>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "moesim_test/input_error.hpp"
#include "workload_test_support.hpp"

namespace t = moesim::workload::test;
namespace w = moesim::workload;

namespace {

/** A dense decoder of `layers` uniform layers (a small vocabulary, so that the ends of the model cost little). */
std::string dense(int layers) {
  return "  layers: " + std::to_string(layers) + "\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  vocab: 512\n  seq_len: 512\n";
}

/** P stages, M micro-batches of one sequence each, on P GPUs in one node. */
moesim::scenario::Scenario pipeline(const std::string& model, int P, int M, const std::string& schedule,
                                    std::vector<std::string> sets = {}) {
  sets.push_back("cluster.topology.gpus_per_node=" + std::to_string(P));
  sets.push_back("parallelism.schedule=" + schedule);
  return t::load(t::scenario_yaml(model, "h100", P, "  pipeline: " + std::to_string(P) + "\n  microbatches: " + std::to_string(M) + "\n",
                                  static_cast<double>(M) * 512),
                 sets);
}

/** "F0.3" forward of chunk 0, micro-batch 3; "B" backward; "W" weight gradients; "*" one of an F&B pair; "z" a
 *  zero-bubble backward (input gradients only). */
std::string text(const std::vector<w::PipelineTask>& order) {
  std::string s;
  for (const w::PipelineTask& tk : order)
    s += std::string(tk.weights ? "W" : tk.backward ? "B" : "F") + std::to_string(tk.chunk) + "." + std::to_string(tk.mb) +
         (tk.steady ? "*" : "") + (tk.defer_weights ? "z" : "") + " ";
  return s;
}

/** Finish time of every phase when only compute takes time (each phase its slowest device). */
std::map<w::PhaseId, double> compute_finish(const w::BuiltStep& b) {
  std::vector<w::PhaseId> rev;
  boost::topological_sort(b.graph, std::back_inserter(rev));
  std::map<w::PhaseId, double> finish;
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
    double start = 0.0;
    for (auto e : boost::make_iterator_range(boost::in_edges(*it, b.graph))) start = std::max(start, finish[boost::source(e, b.graph)]);
    double own = 0.0;
    const w::Phase& p = b.graph[*it];
    if (p.type == w::Phase::Type::compute)
      for (double x : p.compute.time_s) own = std::max(own, x);
    finish[*it] = start + own;
  }
  return finish;
}

/** The last forward, backward or weight-gradient compute phase to finish, communication free. */
double pipeline_end(const w::BuiltStep& g) {
  const auto finish = compute_finish(g);
  double end = 0.0;
  for (const auto& [v, x] : finish) {
    const std::string& l = g.graph[v].label;
    if (g.graph[v].type == w::Phase::Type::compute &&
        (l.find(" fwd") != std::string::npos || l.find(" bwd") != std::string::npos || l.find(" wgrad") != std::string::npos))
      end = std::max(end, x);
  }
  return end;
}

/** The end of the step's pipeline by an independent list scheduling of the stages' orders (workload::stage_schedule),
 *  communication free: each stage runs its order; a forward waits for the previous virtual stage's forward of its
 *  micro-batch, a backward for the next one's backward, a W step only for its own stage. Each task's compute time
 *  is read from the graph by its phase's label: the layers are uniform and every micro-batch the same, so a kind of
 *  task (forward, backward, zero-bubble backward, weight gradients) takes one time per (stage, chunk), and the last
 *  micro-batch's full backward, split per layer for the gradient reduction, takes its kind's. Checks B = Bz + W. */
double list_scheduled(const t::StepFixture& f, const w::BuiltStep& b) {
  const auto& par = f.scenario.parallelism;
  const int P = par.pipeline;
  std::map<std::string, double> by_label;
  for (const w::Phase* p : t::all_phases(b.graph))
    if (p->type == w::Phase::Type::compute) by_label[p->label] = *std::max_element(p->compute.time_s.begin(), p->compute.time_s.end());
  auto label = [](int s, const w::PipelineTask& tk) {
    return "stage" + std::to_string(s) + " chunk" + std::to_string(tk.chunk) + " mb" + std::to_string(tk.mb) + " " +
           (tk.weights ? "wgrad" : tk.backward ? "bwd" : "fwd") + " (compute)";
  };
  auto kind = [](const w::PipelineTask& tk) { return tk.weights ? 3 : tk.defer_weights ? 2 : tk.backward ? 1 : 0; };
  std::map<std::tuple<int, int, int>, double> dur;  // (stage, chunk, kind)
  for (int s = 0; s < P; ++s)
    for (const w::PipelineTask& tk : w::stage_schedule(par, s))
      if (!(kind(tk) == 1 && tk.mb == w::last_microbatch(par, tk.chunk))) dur[{s, tk.chunk, kind(tk)}] = by_label.at(label(s, tk));
  REQUIRE(dur.size() == static_cast<std::size_t>(2 * 4 * P));
  // The zero-bubble split moves the weight-gradient GEMMs, nothing else: B = Bz + W.
  for (int s = 0; s < P; ++s)
    for (int c = 0; c < 2; ++c) CHECK(dur.at({s, c, 1}) == Approx(dur.at({s, c, 2}) + dur.at({s, c, 3})).epsilon(1e-9));
  std::vector<std::vector<w::PipelineTask>> order;
  for (int s = 0; s < P; ++s) order.push_back(w::stage_schedule(par, s));
  std::map<std::tuple<int, bool, int>, double> done;  // (virtual stage, backward, mb) -> finish
  std::vector<double> clock(static_cast<std::size_t>(P), 0.0);
  std::vector<std::size_t> next(static_cast<std::size_t>(P), 0);
  const int chain = w::chain_length(par);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < P; ++s) {
      const auto us = static_cast<std::size_t>(s);
      if (next[us] >= order[us].size()) continue;
      const w::PipelineTask& tk = order[us][next[us]];
      const int vs = w::virtual_stage(par, s, tk.chunk);
      double ready = clock[us];
      if (!tk.weights && !tk.backward && vs > 0) {
        auto it = done.find({vs - 1, false, tk.mb});
        if (it == done.end()) continue;
        ready = std::max(ready, it->second);
      }
      if (!tk.weights && tk.backward && vs < chain - 1) {
        auto it = done.find({vs + 1, true, tk.mb});
        if (it == done.end()) continue;
        ready = std::max(ready, it->second);
      }
      clock[us] = ready + dur.at({s, tk.chunk, kind(tk)});
      if (!tk.weights) done[{vs, tk.backward, tk.mb}] = clock[us];
      ++next[us];
      progress = true;
    }
  }
  for (int s = 0; s < P; ++s) REQUIRE(next[static_cast<std::size_t>(s)] == order[static_cast<std::size_t>(s)].size());
  return *std::max_element(clock.begin(), clock.end());
}

/** The step graph is acyclic (a schedule that waited on itself would not build at all). */
void check_graph(const w::BuiltStep& b) {
  std::vector<w::PhaseId> topo;
  REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
}


}  // namespace

TEST_CASE("workload::stage_schedule: DualPipeV's eight steps", "[workload][step][dualpipev]") {
  // P = 2 stages, M = 4 micro-batches, written out from dualpipev.py's steps (F0&B1 and F1&B0 pairs starred, zero-
  // bubble backwards z, each W the oldest z's weight gradients):
  // stage 0: 2 (P - 1) F0; F0 F1; B1z W F1; (F0&B1)(F1&B0); B1 (F1&B0); B1 B0z (zero bubble from pair (r + 1) / 2 = 0,
  //          after its B1 on an even stage); W B0z; W.
  // stage 1: -; 2 x F0 F1; -; 2 x (F0&B1)(F1&B0), the very first pair not overlapped on the last stage; -; 2 x B1 B0,
  //          the second (pair (r + 1) / 2 = 1, its B1 first on an odd stage) zero bubble; -; 2 x W.
  const auto sc = pipeline(dense(4), 2, 4, "dualpipev");
  CHECK(sc.parallelism.virtual_stages == 2);
  CHECK(text(w::stage_schedule(sc.parallelism, 0)) ==
        "F0.0 F0.1 F0.2 F1.0 B1.0z W1.0 F1.1 F0.3* B1.1* F1.2* B0.0* B1.2 F1.3* B0.1* B1.3 B0.2z W0.2 B0.3z W0.3 ");
  CHECK(text(w::stage_schedule(sc.parallelism, 1)) ==
        "F0.0 F1.0 F0.1 F1.1 F0.2 B1.0 F1.2* B0.0* F0.3* B1.1* F1.3* B0.1* B1.2 B0.2 B1.3z B0.3z W1.3 W0.3 ");
  for (int P : {2, 3, 4, 8})
    for (int M : {2 * P, 2 * P + 1, 5 * P}) {
      INFO("P " << P << " M " << M);
      const auto s = pipeline(dense(2 * P), P, M, "dualpipev");
      for (int r = 0; r < P; ++r) {
        // Each chunk's forwards and backwards, every micro-batch once, in micro-batch order; a backward after its forward.
        // Each zero-bubble backward's weight gradients once, after it, oldest first.
        std::map<std::pair<int, bool>, int> next;
        std::map<std::pair<int, int>, bool> forwarded;
        std::vector<std::pair<int, int>> deferred, weighed;
        for (const w::PipelineTask& tk : w::stage_schedule(s.parallelism, r)) {
          if (tk.weights) {
            weighed.emplace_back(tk.chunk, tk.mb);
            CHECK(weighed.size() <= deferred.size());
            continue;
          }
          CHECK(tk.mb == next[{tk.chunk, tk.backward}]++);
          if (tk.backward) CHECK(forwarded[{tk.chunk, tk.mb}]);
          else forwarded[{tk.chunk, tk.mb}] = true;
          if (tk.defer_weights) deferred.emplace_back(tk.chunk, tk.mb);
        }
        CHECK(weighed == deferred);
        CHECK_FALSE(deferred.empty());
        for (int c = 0; c < 2; ++c) {
          CHECK(next[{c, false}] == M);
          CHECK(next[{c, true}] == M);
        }
      }
    }
}

TEST_CASE("workload::chunk_layers: DualPipeV puts virtual stages s and 2P - 1 - s on stage s", "[workload][step][dualpipev]") {
  const auto sc = pipeline(dense(8), 4, 8, "dualpipev");
  const auto& p = sc.parallelism;
  CHECK(w::stage_layers(8, p, 0) == std::vector<int>{0, 7});
  CHECK(w::stage_layers(8, p, 1) == std::vector<int>{1, 6});
  CHECK(w::stage_layers(8, p, 3) == std::vector<int>{3, 4});
  CHECK(w::last_stage(p) == 0);
  for (int vs = 0; vs < 8; ++vs) {
    const w::StageChunk at = w::stage_chunk(p, vs);
    CHECK(w::virtual_stage(p, at.stage, at.chunk) == vs);
  }
  const auto inter = pipeline(dense(8), 4, 8, "interleaved_1f1b", {"parallelism.virtual_stages=2"});
  CHECK(w::stage_layers(8, inter.parallelism, 1) == std::vector<int>{1, 5});
  CHECK(w::last_stage(inter.parallelism) == 3);
}

TEST_CASE("workload::chunk_layers: first_stage_layers and last_stage_layers size the DualPipe schedules' end chunks",
          "[workload][step][dualpipev][dualpipe][stage_layers]") {
  // Every chunk's layers as "[first-last]" by virtual stage of a direction's chain.
  auto chain = [](const moesim::scenario::ParallelismSpec& p, int layers, int direction) {
    std::string out;
    std::vector<int> all;
    for (int vs = 0; vs < w::chain_length(p); ++vs) {
      const w::StageChunk at = w::stage_chunk(p, vs, direction);
      const auto ids = w::chunk_layers(layers, p, at.stage, at.chunk);
      out += ids.empty() ? "[] " : "[" + std::to_string(ids.front()) + "-" + std::to_string(ids.back()) + "] ";
      all.insert(all.end(), ids.begin(), ids.end());
    }
    std::vector<int> want(static_cast<std::size_t>(layers));
    std::iota(want.begin(), want.end(), 0);
    CHECK(all == want);  // every layer once, in order
    return out;
  };
  SECTION("DualPipeV: the 2P chunks of the V; both ends on stage 0") {
    // 12 layers over 8 chunks, 1 and 1 at the ends: the 6 between split 10 as the even split does (floor).
    const auto sc = pipeline(dense(12), 4, 8, "dualpipev", {"parallelism.first_stage_layers=1", "parallelism.last_stage_layers=1"});
    CHECK(chain(sc.parallelism, 12, 0) == "[0-0] [1-1] [2-3] [4-5] [6-6] [7-8] [9-10] [11-11] ");
    CHECK(w::stage_layers(12, sc.parallelism, 0) == std::vector<int>{0, 11});
    CHECK(w::stage_layers(12, sc.parallelism, 1) == std::vector<int>{1, 9, 10});
    const auto even = pipeline(dense(12), 4, 8, "dualpipev");
    CHECK(chain(even.parallelism, 12, 0) == "[0-0] [1-2] [3-3] [4-5] [6-6] [7-8] [9-9] [10-11] ");
  }
  SECTION("DualPipe: each direction's P stages; stage 0 holds one direction's first chunk and the other's last") {
    const auto sc = pipeline(dense(10), 4, 8, "dualpipe", {"parallelism.first_stage_layers=1", "parallelism.last_stage_layers=1"});
    CHECK(chain(sc.parallelism, 10, 0) == "[0-0] [1-4] [5-8] [9-9] ");
    CHECK(chain(sc.parallelism, 10, 1) == "[0-0] [1-4] [5-8] [9-9] ");
    CHECK(w::stage_layers(10, sc.parallelism, 0) == std::vector<int>{0, 9});
    CHECK(w::stage_layers(10, sc.parallelism, 3) == std::vector<int>{9, 0});
    CHECK(w::stage_layers(10, sc.parallelism, 1) == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8});
    // 3 + 3 of 6 layers on a direction's first and last stages leave none for the 2 between.
    const auto e = moesim::testing::expect_input_error(
        [&] { pipeline(dense(6), 4, 8, "dualpipe", {"parallelism.first_stage_layers=3", "parallelism.last_stage_layers=3"}); });
    CHECK(e.key() == "parallelism.first_stage_layers");
    CHECK(t::contains(e.message(), "first and last stages leave 0 for the other 2 stages"));
  }
  SECTION("the step builder takes the same split: lighter end chunks make stage 0's compute lighter") {
    for (const std::string schedule : {"dualpipev", "dualpipe"}) {
      INFO(schedule);
      const t::StepFixture even(pipeline(dense(12), 4, 8, schedule));
      const t::StepFixture light(pipeline(dense(12), 4, 8, schedule, {"parallelism.first_stage_layers=1", "parallelism.last_stage_layers=1"}));
      const w::BuiltStep be = even.build(false), bl = light.build(false);
      auto stage_ffn = [](const w::BuiltStep& b, int stage) {
        double sum = 0.0;
        for (const w::Phase* p : t::all_phases(b.graph))
          if (p->type == w::Phase::Type::compute && p->stage == stage) {
            auto it = p->compute.kind_time_s.find("compute.ffn");
            if (it != p->compute.kind_time_s.end()) sum += it->second;
          }
        return sum;
      };
      // Stage 0 runs 2 of the 12 layers instead of the even split's 3 (V: layer 0 and 10-11) or 6 (DualPipe: 3 of
      // each direction), the same work per layer; the model's FLOPs do not change.
      const double per_layer = stage_ffn(be, 1) / static_cast<double>(w::stage_layers(12, even.scenario.parallelism, 1).size());
      CHECK(stage_ffn(bl, 0) == Approx(2 * per_layer).epsilon(1e-9));
      CHECK(stage_ffn(be, 0) == Approx(static_cast<double>(w::stage_layers(12, even.scenario.parallelism, 0).size()) * per_layer).epsilon(1e-9));
      CHECK(bl.stats.model_flops == Approx(be.stats.model_flops).epsilon(1e-12));
      CHECK(pipeline_end(bl) == Approx(list_scheduled(light, bl)).epsilon(1e-9));
    }
  }
}

/** 8 uniform layers on 4 stages with 8 micro-batches, with `schedule` (f, b) and with 1F1B (plain, a). */
struct AgainstOneFOneB {
  static constexpr int P = 4, M = 8;
  explicit AgainstOneFOneB(const std::string& schedule)
      : f(pipeline(dense(8), P, M, schedule)), plain(pipeline(dense(8), P, M, "1f1b")), b(f.build(false)), a(plain.build(false)) {}
  t::StepFixture f, plain;
  w::BuiltStep b, a;
};

TEST_CASE("workload::StepBuilder: DualPipeV's step graph", "[workload][step][dualpipev]") {
  const AgainstOneFOneB x("dualpipev");
  const int P = x.P, M = x.M;
  const auto &f = x.f, &plain = x.plain;
  const w::BuiltStep &b = x.b, &a = x.a;

  SECTION("sends between neighbouring stages only, none at the turn on the last stage; no tied-embedding sync") {
    std::size_t sends = 0;
    for (const w::Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.pipeline_p2p") continue;
      ++sends;
      const int from = f.mesh.stage_of(p->comm.groups[0][0]), to = f.mesh.stage_of(p->comm.groups[0][1]);
      CHECK(std::abs(from - to) == 1);
    }
    // 2P - 1 boundaries, one of them inside the last stage, each way for every micro-batch.
    CHECK(sends == static_cast<std::size_t>(2 * M * (2 * P - 2)));
    CHECK(t::count_kind(b.graph, "comm.embedding_grad_sync") == 0);
    CHECK(t::count_kind(a.graph, "comm.embedding_grad_sync") == 1);
    CHECK(b.stats.model_flops == Approx(a.stats.model_flops).epsilon(1e-12));
  }

  SECTION("the pipeline's timing is the schedule's: an independent list scheduling of the same orders agrees") {
    CHECK(pipeline_end(b) == Approx(list_scheduled(f, b)).epsilon(1e-9));
    // Half the bubble chunks of 1F1B's, each half as long: shorter than 1F1B on the same work.
    CHECK(pipeline_end(b) < pipeline_end(a));
  }

  SECTION("memory: stage 0 holds both ends of the model and the schedule's peak of micro-batch-chunks") {
    // Stage 0's peak of chunk-micro-batches in flight, by walking its order: 2 (P - 1) + 2 forwards before its first
    // backward (steps 1 and 2), which step 3's B1 F1 keep level, then the first pair's forward: 2P + 1 chunks, i.e.
    // the DualPipe README's PP + 1 activations (PP = 2P half-stage chunks), P + 1/2 micro-batches of a whole stage.
    CHECK(w::inflight_microbatches(f.scenario.parallelism, 0) == Approx(P + 0.5));
    // Stage 0 holds layers 0 and 7 and the one (tied) vocabulary matrix for both ends: the parameters of 1F1B's
    // stage 0 (layers 0 and 1 and the matrix), not the matrix twice.
    const auto e = w::estimate_memory_need(f.scenario, f.accel), e1 = w::estimate_memory_need(plain.scenario, plain.accel);
    CHECK(e.params_bytes == Approx(e1.params_bytes).epsilon(1e-12));
  }
}

TEST_CASE("workload::StepBuilder: DualPipeV with overlapped expert communication pairs its F&B chunks",
          "[workload][step][dualpipev][overlap]") {
  const std::string moe = "  layers: 8\n  d_model: 512\n  d_ff: 2048\n  heads: 8\n  experts: 8\n  top_k: 2\n  vocab: 512\n  seq_len: 512\n";
  for (const std::string schedule : {"dualpipev", "dualpipe"})
  for (int P : {2, 4})
    for (int M : {2 * P, 3 * P + 1}) {
      if (schedule == "dualpipe" && M % 2 != 0) continue;
      INFO(schedule << " P " << P << " M " << M);
      auto load = [&](bool overlap) {
        return t::load(t::scenario_yaml(moe, "h100", 2 * P, "  expert: 2\n  pipeline: " + std::to_string(P) + "\n  microbatches: " +
                                                                 std::to_string(M) + "\n",
                                        2.0 * M * 512),
                       {"parallelism.schedule=" + schedule, "cluster.topology.gpus_per_node=" + std::to_string(2 * P),
                        std::string("parallelism.overlap_expert_comm=") + (overlap ? "true" : "false")});
      };
      const t::StepFixture on(load(true)), off(load(false));
      w::BuiltStep b;
      REQUIRE_NOTHROW(b = on.build(false));
      std::vector<w::PhaseId> topo;
      REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
      const w::BuiltStep c = off.build(false);
      CHECK(t::count_kind(b.graph, "comm.all_to_all") == t::count_kind(c.graph, "comm.all_to_all"));
      CHECK(b.stats.hardware_flops == Approx(c.stats.hardware_flops).epsilon(1e-12));
    }
}

TEST_CASE("scenario: parallelism.schedule dualpipev refuses what it cannot run", "[scenario][dualpipev]") {
  auto err = [](int P, int M, std::vector<std::string> sets) {
    return moesim::testing::expect_input_error([&] { pipeline(dense(8), P, M, "dualpipev", std::move(sets)); });
  };
  {
    const auto e = err(4, 7, {});
    CHECK(e.key() == "parallelism.microbatches");
    CHECK(t::contains(e.message(), "at least 2 x pipeline = 8"));
  }
  {
    const auto e = err(4, 8, {"parallelism.virtual_stages=3"});
    CHECK(e.key() == "parallelism.virtual_stages");
    CHECK(t::contains(e.message(), "must be 2"));
  }
  {
    // The first and last of the V's 2P = 8 chunks take 4 + 3 of the 8 layers: 1 left for the other 6 chunks.
    const auto e = err(4, 8, {"parallelism.first_stage_layers=4", "parallelism.last_stage_layers=3"});
    CHECK(e.key() == "parallelism.first_stage_layers");
    CHECK(t::contains(e.message(), "first and last model chunks of the V leave 1 for the other 6 chunks"));
  }
  {
    const auto e = moesim::testing::expect_input_error([&] { pipeline(dense(6), 4, 8, "dualpipev"); });
    CHECK(t::contains(e.message(), "at least as many layers"));
  }
  // Given 2 (as a resolved scenario writes it) it loads.
  CHECK(pipeline(dense(8), 4, 8, "dualpipev", {"parallelism.virtual_stages=2"}).parallelism.dualpipev());
}

TEST_CASE("workload::StepBuilder: DualPipeV's gradient reductions wait for the weight gradients",
          "[workload][step][dualpipev]") {
  // ZeRO-2: every micro-batch's gradients of each chunk are reduce-scattered after they are complete, i.e. after the
  // W step for a zero-bubble backward; ZeRO-1 and 3 build too.
  const int P = 2, M = 4;
  for (const std::string schedule : {"dualpipev", "dualpipe"})
  for (int zero : {1, 2, 3}) {
    INFO(schedule << " zero_stage " << zero);
    const t::StepFixture f(t::load(t::scenario_yaml(dense(4), "h100", 2 * P, "  data: 2\n  pipeline: 2\n  microbatches: 4\n", 2.0 * M * 512),
                                   {"parallelism.schedule=" + schedule, "cluster.topology.gpus_per_node=4",
                                    "parallelism.zero_stage=" + std::to_string(zero)}));
    const w::BuiltStep b = f.build(false);
    std::vector<w::PhaseId> topo;
    REQUIRE_NOTHROW(boost::topological_sort(b.graph, std::back_inserter(topo)));
    if (zero != 2) continue;
    std::map<std::string, w::PhaseId> wgrad;
    std::vector<std::pair<std::string, w::PhaseId>> reductions;
    for (auto v : boost::make_iterator_range(boost::vertices(b.graph))) {
      const w::Phase& p = b.graph[v];
      if (p.label.find(" wgrad (compute)") != std::string::npos) wgrad[p.label.substr(0, p.label.find(" wgrad"))] = v;
      if (p.kind == "comm.grad_all_reduce") reductions.emplace_back(p.label, v);
    }
    CHECK_FALSE(wgrad.empty());
    std::size_t checked = 0;
    for (const auto& [key, w_phase] : wgrad) {
      // Its reduction ("stage0 chunk1 mb0 dense grads ...") is reachable from it.
      std::vector<char> seen(boost::num_vertices(b.graph), 0);
      std::vector<w::PhaseId> todo{w_phase};
      while (!todo.empty()) {
        const w::PhaseId u = todo.back();
        todo.pop_back();
        for (auto e : boost::make_iterator_range(boost::out_edges(u, b.graph)))
          if (!seen[boost::target(e, b.graph)]) {
            seen[boost::target(e, b.graph)] = 1;
            todo.push_back(boost::target(e, b.graph));
          }
      }
      for (const auto& [label, v] : reductions)
        if (label.rfind(key + " dense grads", 0) == 0) {
          CHECK(seen[v]);
          ++checked;
        }
    }
    CHECK(checked >= wgrad.size());
  }
}

TEST_CASE("workload::stage_schedule: DualPipe is DualPipeV on each half-stage, fed from both ends", "[workload][step][dualpipe]") {
  // P = 4 stages, M = 8 micro-batches (4 per direction): stage r runs DualPipeV's order of half-stage min(r, 3 - r) of
  // 2 with 4 micro-batches; on stages 2 and 3 its chunk 0 is direction 1 (micro-batches 4-7).
  const auto dp = pipeline(dense(8), 4, 8, "dualpipe");
  const auto v = pipeline(dense(4), 2, 4, "dualpipev");
  CHECK(dp.parallelism.virtual_stages == 2);
  CHECK(w::chain_length(dp.parallelism) == 4);
  for (int r = 0; r < 4; ++r) {
    INFO("stage " << r);
    auto mine = w::stage_schedule(dp.parallelism, r);
    const auto half = w::stage_schedule(v.parallelism, std::min(r, 3 - r));
    REQUIRE(mine.size() == half.size());
    for (std::size_t i = 0; i < mine.size(); ++i) {
      const int chunk = half[i].chunk ^ (r >= 2 ? 1 : 0);
      CHECK(mine[i].chunk == chunk);
      CHECK(mine[i].mb == half[i].mb + (chunk == 1 ? 4 : 0));
      CHECK(mine[i].backward == half[i].backward);
      CHECK(mine[i].weights == half[i].weights);
      CHECK(mine[i].defer_weights == half[i].defer_weights);
      CHECK(mine[i].steady == half[i].steady);
      CHECK(w::direction_of(dp.parallelism, mine[i].mb) == chunk);
    }
  }
  // Stage s holds model stage s (direction 0) and P - 1 - s (direction 1): two copies of each.
  CHECK(w::stage_layers(8, dp.parallelism, 0) == std::vector<int>{0, 1, 6, 7});
  CHECK(w::stage_layers(8, dp.parallelism, 2) == std::vector<int>{4, 5, 2, 3});
  CHECK(w::last_stage(dp.parallelism) == 3);
}

TEST_CASE("workload::StepBuilder: DualPipe's step graph", "[workload][step][dualpipe]") {
  const AgainstOneFOneB x("dualpipe");
  const int P = x.P, M = x.M;
  const auto &f = x.f, &plain = x.plain;
  const w::BuiltStep &b = x.b, &a = x.a;
  check_graph(b);
  SECTION("each direction crosses P - 1 boundaries per micro-batch each way; the copies' gradients are summed") {
    std::size_t down = 0, up = 0;
    for (const w::Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.pipeline_p2p") continue;
      const int from = f.mesh.stage_of(p->comm.groups[0][0]), to = f.mesh.stage_of(p->comm.groups[0][1]);
      REQUIRE(std::abs(from - to) == 1);
      (to > from ? down : up) += 1;
    }
    // M/2 micro-batches run down (forwards of direction 0, backwards of direction 1), M/2 up: M (P - 1) sends each way.
    CHECK(down == static_cast<std::size_t>(M * (P - 1)));
    CHECK(up == static_cast<std::size_t>(M * (P - 1)));
    CHECK(t::count_kind(b.graph, "comm.embedding_grad_sync") == 0);
    // One all-reduce per mirror pair (s, P - 1 - s) of every gradient the stage holds.
    std::size_t syncs = 0;
    for (const w::Phase* p : t::all_phases(b.graph)) {
      if (p->kind != "comm.dualpipe_grad_sync") continue;
      ++syncs;
      const int s0 = f.mesh.stage_of(p->comm.groups[0][0]), s1 = f.mesh.stage_of(p->comm.groups[0][1]);
      CHECK(s0 + s1 == P - 1);
      // Two model stages of 2 layers (12 d^2 + 13 d parameters each, d = 512) and the vocabulary matrix on the ends,
      // fp32 gradients.
      const double layer = 12.0 * 512 * 512 + 13.0 * 512, vocab = (s0 == 0 ? 512.0 * 512 : 0.0);
      CHECK(p->comm.bytes_per_device == Approx((4 * layer + vocab) * 4.0).epsilon(0.02));
    }
    CHECK(syncs == static_cast<std::size_t>(P / 2));
    CHECK(b.stats.model_flops == Approx(a.stats.model_flops).epsilon(1e-12));
  }
  SECTION("the pipeline's timing is the schedule's (list scheduling), shorter than 1F1B's") {
    CHECK(pipeline_end(b) == Approx(list_scheduled(f, b)).epsilon(1e-9));
    CHECK(pipeline_end(b) < pipeline_end(a));
  }
  SECTION("memory: two copies of two stages' parameters, the DualPipe README's PP + 1 micro-batches of activations") {
    const auto e = w::estimate_memory_need(f.scenario, f.accel), e1 = w::estimate_memory_need(plain.scenario, plain.accel);
    // Stage 0: layers 0, 1, 6 and 7 and the vocabulary matrix once, against 1F1B's layers 0 and 1 and the matrix.
    CHECK(e.params_bytes / e1.params_bytes == Approx(2.0).epsilon(0.05));
    CHECK(e.params_bytes < 2.0 * e1.params_bytes);
    CHECK(w::inflight_microbatches(f.scenario.parallelism, 0) == Approx(P + 1));
  }
  SECTION("refused: an odd pipeline, an odd number of micro-batches") {
    CHECK(moesim::testing::expect_input_error([&] { pipeline(dense(9), 3, 6, "dualpipe"); }).key() == "parallelism.pipeline");
    CHECK(moesim::testing::expect_input_error([&] { pipeline(dense(8), 4, 9, "dualpipe"); }).key() == "parallelism.microbatches");
    CHECK(moesim::testing::expect_input_error([&] { pipeline(dense(8), 4, 6, "dualpipe"); }).key() == "parallelism.microbatches");
  }
}
