// SPDX-License-Identifier: Apache-2.0
#include "moesim/engine/engine.hpp"
#include "moesim/engine/fair_bottleneck_net.hpp"

#include <simgrid/plugins/energy.h>
#include <simgrid/s4u.hpp>
#include <simgrid/simix.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <queue>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

#include <boost/graph/topological_sort.hpp>
#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/probe_table.hpp"
#include "moesim/system/collectives.hpp"
#include "signature.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define MOESIM_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOESIM_ADDRESS_SANITIZER 1
#endif
#endif
#ifndef MOESIM_ADDRESS_SANITIZER
#define MOESIM_ADDRESS_SANITIZER 0
#endif

namespace moesim::engine {

namespace sg4 = simgrid::s4u;
using workload::Phase;
using workload::PhaseId;
using workload::StepGraph;

namespace {

/** A route between two endpoints, looked up once: its links (by the engine's link ids), latency and links per class. */
struct PairRoute {
  std::vector<int> links;
  double latency_s = 0.0;
  std::array<std::uint8_t, system::kLinkClassCount> classes{};
};

/** A traffic plan with its network footprint (bytes x links by site and class). */
struct CachedPlan {
  system::TrafficPlan plan;
  /** The route of every flow, in plan order (rounds, their batches, their flows), looked up once per plan. */
  std::vector<const PairRoute*> flow_routes;
  std::vector<std::size_t> round_first_flow;  ///< per round: the index of its first flow in flow_routes
  std::vector<std::array<double, system::kLinkClassCount>> site_link_bytes;
  std::vector<bool> round_crosses_wan;  ///< per round: has flows between datacenters
  /** Per round: the part of the round's latency (Round::alpha_s) that SimGrid does not charge itself, i.e.
   *  alpha less the longest route latency among the round's flows (ptask_L07 adds each flow's route latency). */
  std::vector<double> round_wait_s;
  double memo_wan_s = 0.0;              ///< WAN-busy time of the memoised (isolated) run
  /** Per round (filled on first use): 1 if, alone on its links, its batches' rates are known (Simulator::Impl::round_alone)
   *  and it lasts round_alone_s after its wait; 0 if not; -1 not yet known. */
  std::vector<signed char> round_disjoint;
  std::vector<double> round_alone_s;
  /** Lower bounds on each round's time after its wait (filled on first use, Simulator::Impl::floors_of): its slowest
   *  batch's route latency plus its heaviest link's bytes at the link's full bandwidth; and on the time from the start of
   *  round r to the collective's end (waits included), suffix_floor_s[r] (suffix_floor_s[0] adds the launch cost). */
  std::vector<double> round_floor_s;
  std::vector<double> suffix_floor_s;
  /** Per round (filled on first use, EngineOptions::own_network_rounds): each batch's link weights and latency
   *  (Simulator::Impl::batch_loads), the tasks FairBottleneckNet runs. */
  std::vector<std::vector<FairBottleneckNet::Weights>> net_load;
  std::vector<std::vector<double>> net_latency_s;
};

/** SimGrid's ptask_L07 scans a task's whole host x host byte matrix, so a sparse batch over many hosts
 *  (a 128-chip torus ring carries 256 flows in a 16384-entry matrix) costs O(hosts^2). Sparse batches are
 *  cut into runs of consecutive flows over at most kSparseBatchHosts hosts, which keeps the cost linear in
 *  the flows; for a ring the pieces carry equal loads and end together, as the whole ring would. */
constexpr std::size_t kSparseBatchHosts = 48;

system::TrafficPlan split_sparse_batches(system::TrafficPlan plan) {
  for (auto& round : plan.rounds) {
    std::vector<system::Batch> out;
    std::vector<int> hosts;
    for (auto& batch : round.batches) {
      std::size_t host_count = 2 * batch.flows.size();  // an upper bound, exact enough where it is small
      if (host_count > kSparseBatchHosts) {
        hosts.clear();
        for (const auto& f : batch.flows) {
          hosts.push_back(f.src);
          hosts.push_back(f.dst);
        }
        std::sort(hosts.begin(), hosts.end());
        host_count = static_cast<std::size_t>(std::unique(hosts.begin(), hosts.end()) - hosts.begin());
      }
      if (host_count <= kSparseBatchHosts || batch.flows.size() > 4 * host_count) {
        out.push_back(std::move(batch));
        continue;
      }
      system::Batch piece;
      std::vector<int> in_piece;  // the piece's hosts: at most kSparseBatchHosts, searched in place
      auto has = [&](int h) { return std::find(in_piece.begin(), in_piece.end(), h) != in_piece.end(); };
      for (const auto& f : batch.flows) {
        const std::size_t extra = (has(f.src) ? 0 : 1) + (has(f.dst) ? 0 : 1);
        if (in_piece.size() + extra > kSparseBatchHosts && !piece.flows.empty()) {
          out.push_back(std::move(piece));
          piece = {};
          in_piece.clear();
        }
        if (!has(f.src)) in_piece.push_back(f.src);
        if (!has(f.dst)) in_piece.push_back(f.dst);
        piece.flows.push_back(f);
      }
      if (!piece.flows.empty()) out.push_back(std::move(piece));
    }
    round.batches = std::move(out);
  }
  return plan;
}

}  // namespace

struct Simulator::Impl {
  const system::Topology& topo;
  const catalog::AcceleratorSpec& accel;
  platform::PowerStates power;
  const workload::DeviceMesh& mesh;
  EngineOptions opt;
  std::unique_ptr<sg4::Engine> engine;
  std::unique_ptr<platform::Platform> plat;
  std::unordered_map<std::uint64_t, CachedPlan> plans;
  /** Shape signature (detail::shape_signature) -> the signature and size of the first plan built for that shape. */
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, double>> plan_shapes;
  std::unordered_map<std::uint64_t, double> memo_s;
  std::vector<sg4::Host*> free_pacers;

  Impl(const system::Topology& t, const catalog::AcceleratorSpec& a, const platform::PowerStates& p,
       const workload::DeviceMesh& m, EngineOptions o)
      : topo(t), accel(a), power(p), mesh(m), opt(o) {
    if (sg4::Engine::has_instance())
      throw Error("internal error: one SimGrid simulation per process (run each simulation in its own process)");
    // ptask_L07 bounds each parallel task's rate by the TCP window, gamma / (2 x max(latency x bytes))
    // (SimGrid 3.32 src/surf/ptask_L07.cpp, calculate_network_bound): with the default 4 MiB window a
    // 30 ms WAN link carries ~70 MB/s whatever its bandwidth. Collectives on accelerator fabrics and
    // dedicated WAN links are not window-limited TCP flows, so the window is made irrelevant (gamma 0
    // would instead block every task with latency).
    static char arg0[] = "moesim";
    static char arg1[] = "--log=root.thres:warning";
    static char arg2[] = "--cfg=host/model:ptask_L07";
    static char arg3[] = "--cfg=network/TCP-gamma:1e30";
#if MOESIM_ADDRESS_SANITIZER
    // Under AddressSanitizer, actors run on threads: ASan cannot follow SimGrid's own stack switching, and reports
    // a false stack-buffer-overflow when an exception unwinds an actor's swapped stack (e.g. SimGrid killing a
    // daemon at the end of a run). Same results, slower; only sanitizer builds.
    static char arg4[] = "--cfg=contexts/factory:thread";
    static int argc = 5;
    static char* argv[] = {arg0, arg1, arg2, arg3, arg4, nullptr};
#else
    static int argc = 4;
    static char* argv[] = {arg0, arg1, arg2, arg3, nullptr};
#endif
    engine = std::make_unique<sg4::Engine>(&argc, argv);
    sg_host_energy_plugin_init();
    plat = platform::Platform::build(topo, accel, power, opt.pacers, opt.lmm_selective_update);
    free_pacers = plat->pacers();
    job_refs.assign(static_cast<std::size_t>(topo.chips()), 0);
  }

  /** Graphs running on each chip (serving runs several at once): a chip is in the job's power state while any is. */
  std::vector<int> job_refs;
  /** Puts the chips into the "running a job" power state (platform::kJobPstate: active power when they compute
   *  nothing) or, when the last graph on them ends, back to idle. Not an activity: it adds nothing to SimGrid's
   *  max-min system, whose every solve (FairBottleneck::do_solve) runs over all live activities. */
  void hold_job_state(const std::vector<sg4::Host*>& chips, const std::vector<int>& ids, bool start) {
    for (int c : ids) {
      int& refs = job_refs[static_cast<std::size_t>(c)];
      if (start ? refs++ == 0 : --refs == 0)
        chips[static_cast<std::size_t>(c)]->set_pstate(start ? platform::kJobPstate : platform::kIdlePstate);
    }
  }

  /** By chip, for moesim's replica of the compute joules (EngineOptions::own_compute_energy): host_energy's slope
   *  (W per unit of load) in the job pstate, and the flop/s that make a load of 1 there (pstate speed x cores).
   *  Filled at the first step; left empty where a chip's job pstate draws other power idle than at the smallest load
   *  (host_energy's idle and epsilon values), where the replica would not be host_energy. */
  std::vector<double> job_slope_w, job_full_flops_per_s;
  bool job_power_read = false;
  bool replica_energy_usable(const std::vector<sg4::Host*>& chips) {
    if (!job_power_read) {
      job_power_read = true;
      const auto pstate = static_cast<int>(platform::kJobPstate);
      bool ok = true;
      for (sg4::Host* h : chips) {
        ok = ok && sg_host_get_idle_consumption_at(h, pstate) == sg_host_get_wattmin_at(h, pstate);
        job_slope_w.push_back(sg_host_get_power_range_slope_at(h, pstate));
        job_full_flops_per_s.push_back(h->get_pstate_speed(platform::kJobPstate) * h->get_core_count());
      }
      if (!ok) job_slope_w.clear(), job_full_flops_per_s.clear();
    }
    return !job_slope_w.empty();
  }

  const CachedPlan& plan_for(std::uint64_t sig, const workload::CollectiveWork& w) {
    auto it = plans.find(sig);
    if (it != plans.end()) return it->second;
    // Another size of a shape already planned: its plan scaled (plan_shapes), the routes kept.
    const std::uint64_t shape = detail::shape_signature(w);
    if (w.bytes_per_device > 0.0)
      if (auto sh = plan_shapes.find(shape); sh != plan_shapes.end()) {
        const CachedPlan& base = plans.at(sh->second.first);
        const double f = w.bytes_per_device / sh->second.second;
        CachedPlan cp;
        cp.plan = base.plan;
        cp.plan.intra_chip_bytes *= f;
        for (auto& round : cp.plan.rounds)
          for (auto& batch : round.batches)
            for (auto& fl : batch.flows) fl.bytes *= f;
        cp.flow_routes = base.flow_routes;
        cp.round_first_flow = base.round_first_flow;
        cp.round_crosses_wan = base.round_crosses_wan;
        cp.round_wait_s = base.round_wait_s;
        cp.site_link_bytes = base.site_link_bytes;
        for (auto& site : cp.site_link_bytes)
          for (double& b : site) b *= f;
        return plans.emplace(sig, std::move(cp)).first->second;
      }
    CachedPlan cp;
    cp.plan = split_sparse_batches(system::plan_collective(w, topo, mesh));
    for (const auto& round : cp.plan.rounds) {
      bool wan = false;
      for (const auto& batch : round.batches)
        for (const auto& f : batch.flows) wan = wan || f.src >= topo.chips() || f.dst >= topo.chips();
      cp.round_crosses_wan.push_back(wan);
    }
    cp.site_link_bytes.assign(topo.sites().size(), {});
    for (const auto& round : cp.plan.rounds) {
      double route_latency = 0.0;
      cp.round_first_flow.push_back(cp.flow_routes.size());
      for (const auto& batch : round.batches)
        for (const auto& f : batch.flows) {
          const PairRoute& route = route_of(f.src, f.dst);
          cp.flow_routes.push_back(&route);
          route_latency = std::max(route_latency, route.latency_s);
          const int site = f.src < topo.chips() ? topo.site_of(f.src) : f.src - topo.chips();
          for (std::size_t c = 0; c < system::kLinkClassCount; ++c)
            cp.site_link_bytes[static_cast<std::size_t>(site)][c] += f.bytes * route.classes[c];
        }
      cp.round_wait_s.push_back(std::max(0.0, round.alpha_s - route_latency));
    }
    if (w.bytes_per_device > 0.0) plan_shapes.emplace(shape, std::make_pair(sig, w.bytes_per_device));
    return plans.emplace(sig, std::move(cp)).first->second;
  }

  // Traffic alone on its links. Two shortcuts take traffic out of SimGrid's max-min system where that cannot change
  // its time or anyone else's, and the engine tracks which collectives hold which links to know where that is:
  // - Rounds alone on their links (EngineOptions::rounds_alone): a round of a collective that is the only one holding
  //   any of its links, whose batches' rates do not depend on each other (each limited by a link of its own, the links
  //   they share too wide to bind: round_alone), is timed from its links' loads exactly as ptask_L07 would run it and
  //   runs as one timed delay. A dimension-ordered all-to-all's rings on a torus are such rounds (disjoint links), and
  //   so is the rail round of a hierarchical all-to-all inside a leaf (a node's rails share its g x NIC cable). With
  //   EngineOptions::rounds_lookahead, it must also be that no other collective sharing its links can start before it
  //   ends (run_step_once, "Lookahead"), so that a round timed alone never meets a conflict.
  // - Pipeline sends (EngineOptions::replay_pipeline_p2p), below.
  // A collective holds its links from its start to its end (the rounds' latencies included); a chain holds those of its
  // replayed collectives for the whole chain. Another collective taking a link of a timed round or a replayed send
  // before it ends is a conflict: the run stops, its figures are dropped and the step runs again without those
  // shortcuts for the phases concerned and the collectives like them (run_step).
  //
  // Pipeline sends. A send (comm.pipeline_p2p) is not a collective of a group that owns its links: sends of other
  // micro-batches, other stage boundaries, data-parallel reductions may use the same NIC and fabric links. It is
  // replayed from its memo only where that cannot change its time or anyone else's: its memo was recorded by a run
  // during which no other collective held any of its links, it starts when none of its links is held, and no other
  // collective takes one of them before it ends. The last cannot be known when it starts: a step in which a replayed
  // send turns out to have shared a link is simulated again without replaying that send and those like it (run_step),
  // and the memos its first run recorded are dropped. A collective holds its links from its start to its end (the
  // rounds' latencies included); a chain holds those of its replayed collectives for the whole chain.
  std::unordered_map<const sg4::Link*, int> link_ids;
  std::vector<double> link_bandwidth;  ///< by link id, B/s
  std::vector<bool> link_fatpipe;      ///< by link id: a FATPIPE link (each flow alone on it), else shared
  std::vector<system::LinkClass> link_class_of;  ///< by link id
  /** The routes looked up so far; a deque, so that the PairRoute pointers plans keep stay valid as it grows. */
  std::deque<PairRoute> pair_routes;
  /** (src << 32 | dst) + 1 -> its route ({0, nullptr}: an empty slot). Every flow of every new plan looks its route up
   *  (hundreds of thousands at thousands of chips): one probe into a flat table. */
  ProbeTable<std::pair<std::uint64_t, PairRoute*>> pair_slots;
  static std::size_t pair_hash(std::uint64_t key) {
    key ^= key >> 31;  // splitmix64's finaliser
    key *= 0x7fb5d329728ea185ULL;
    key ^= key >> 27;
    key *= 0x81dadef4bc2dd44dULL;
    key ^= key >> 33;
    return static_cast<std::size_t>(key);
  }
  std::vector<int> link_sharers;  ///< by link id, scratch for round_alone: batches of the round using the link (0 between calls)
  const PairRoute& route_of(int src, int dst) {
    const std::uint64_t key = ((static_cast<std::uint64_t>(src) << 32) | static_cast<std::uint32_t>(dst)) + 1;
    auto& slot = pair_slots.find(
        pair_hash(key), pair_routes.size(), [key](const auto& s) { return s.first == key; },
        [](const auto& s) { return pair_hash(s.first); });
    if (slot.second != nullptr) return *slot.second;
    std::vector<sg4::Link*> links;
    PairRoute r;
    // Plans have no flow from an endpoint to itself (SimGrid's loopback link, which stays in the max-min system that
    // platform::drop_selective_update replaced).
    if (plat->endpoint(src) == plat->endpoint(dst))
      throw Error(fmt::format("internal error: a flow from endpoint {} to itself (endpoints {} and {})", plat->endpoint(src)->get_name(), src, dst));
    plat->endpoint(src)->route_to(plat->endpoint(dst), links, &r.latency_s);
    for (const sg4::Link* l : links) {
      auto [it, fresh] = link_ids.emplace(l, static_cast<int>(link_ids.size()));
      if (fresh) {
        link_bandwidth.push_back(l->get_bandwidth());
        link_fatpipe.push_back(l->get_sharing_policy() == sg4::Link::SharingPolicy::FATPIPE);
        link_class_of.push_back(platform::Platform::link_class(l));  // from its name: once per link, not per route
      }
      ++r.classes[static_cast<std::size_t>(link_class_of[static_cast<std::size_t>(it->second)])];
      r.links.push_back(it->second);
    }
    pair_routes.push_back(std::move(r));
    slot = {key, &pair_routes.back()};
    return pair_routes.back();
  }
  /** Per batch of round `r`: its links' weights, (link id, weight) sorted by link, one entry per link (the bytes of the
   *  batch's flows over the link, summed in flow order; their largest on a FATPIPE link), and its longest route latency. */
  void batch_loads(const CachedPlan& cp, std::size_t r, std::vector<std::vector<std::pair<int, double>>>& load,
                   std::vector<double>& latency) {
    const auto& batches = cp.plan.rounds[r].batches;
    load.assign(batches.size(), {});
    latency.assign(batches.size(), 0.0);
    std::size_t flow = cp.round_first_flow[r];
    for (std::size_t b = 0; b < batches.size(); ++b) {
      auto& lw = load[b];
      for (const auto& f : batches[b].flows) {
        const PairRoute& route = *cp.flow_routes[flow++];
        if (!(f.bytes > 0.0)) continue;
        latency[b] = std::max(latency[b], route.latency_s);
        for (int l : route.links) lw.emplace_back(l, f.bytes);
      }
      std::stable_sort(lw.begin(), lw.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      std::size_t out = 0;  // merge a link's entries: bytes summed (their largest on a FATPIPE link), in flow order
      for (std::size_t i = 0; i < lw.size(); ++i) {
        if (out > 0 && lw[out - 1].first == lw[i].first) {
          double& w = lw[out - 1].second;
          w = link_fatpipe[static_cast<std::size_t>(lw[i].first)] ? std::max(w, lw[i].second) : w + lw[i].second;
        } else {
          lw[out++] = lw[i];
        }
      }
      lw.resize(out);
    }
  }
  /** The lower bounds of CachedPlan::round_floor_s and suffix_floor_s. ptask_L07 runs a batch as one activity of cost 1
   *  that waits its longest route latency and then progresses at a rate x with weight x x w <= bandwidth on each of its
   *  links (FairBottleneck never exceeds a constraint's bound): it needs at least latency + max over links of
   *  w / bandwidth, whatever else shares them. Rounded down by 1e-9 of itself, so that rounding never lifts it. */
  const CachedPlan& floors_of(std::uint64_t sig) {
    CachedPlan& cp = plans.at(sig);
    if (!cp.round_floor_s.empty() || cp.plan.rounds.empty()) return cp;
    const std::size_t R = cp.plan.rounds.size();
    cp.round_floor_s.assign(R, 0.0);
    cp.suffix_floor_s.assign(R + 1, 0.0);
    std::vector<std::vector<std::pair<int, double>>> load;
    std::vector<double> latency;
    for (std::size_t r = 0; r < R; ++r) {
      batch_loads(cp, r, load, latency);
      double t = 0.0;
      for (std::size_t b = 0; b < load.size(); ++b) {
        double slowest = 0.0;
        for (const auto& [l, w] : load[b]) slowest = std::max(slowest, w / link_bandwidth[static_cast<std::size_t>(l)]);
        if (!load[b].empty()) t = std::max(t, latency[b] + slowest);
      }
      cp.round_floor_s[r] = t * (1.0 - 1e-9);
    }
    for (std::size_t r = R; r-- > 0;)
      cp.suffix_floor_s[r] = cp.suffix_floor_s[r + 1] + cp.round_wait_s[r] + cp.round_floor_s[r];
    cp.suffix_floor_s[0] += cp.plan.overhead_s;
    return cp;
  }
  /** Round `r` of collective `sig` alone on its links. ptask_L07 (SimGrid 3.32 src/surf/ptask_L07.cpp) runs each batch
   *  as one activity of cost 1 that first waits the longest route latency of its flows and then progresses at the
   *  rate FairBottleneck (src/kernel/lmm/fair_bottleneck.cpp) gives its variable; a link's weight in it is the bytes of
   *  the batch's flows over the link, summed (their largest on a FATPIPE link). Where a batch has links of its own and
   *  its rate r = min over them of bandwidth / weight, and on every link it shares with other batches of the round
   *  (n of them) bandwidth / n / weight >= r, the solver's first pass gives it r and saturates one of its own links,
   *  which takes it out of the solve: its rate is r whatever the others do, and stays r as batches end (a shared
   *  link's share only grows). Then the round's flows end at max over batches of latency + 1 / r. Returns false where
   *  a batch has no such rate, a FATPIPE link is shared, or a flow crosses the WAN. */
  bool round_alone(std::uint64_t sig, std::size_t r, double& seconds) {
    CachedPlan& cp = plans.at(sig);
    if (cp.round_disjoint.empty()) {
      cp.round_disjoint.assign(cp.plan.rounds.size(), -1);
      cp.round_alone_s.assign(cp.plan.rounds.size(), 0.0);
    }
    if (cp.round_disjoint[r] < 0) {
      cp.round_disjoint[r] = 0;
      if (cp.round_crosses_wan[r]) return false;
      const auto& batches = cp.plan.rounds[r].batches;
      std::vector<std::vector<std::pair<int, double>>> load;
      std::vector<double> latency;
      batch_loads(cp, r, load, latency);
      link_sharers.resize(link_ids.size(), 0);
      for (const auto& lw : load)
        for (const auto& [l, w] : lw) ++link_sharers[static_cast<std::size_t>(l)];
      // Each batch's rate, from the links it alone uses; nullopt where a shared link could bind.
      auto round_end = [&]() -> std::optional<double> {
        double end = 0.0;
        for (std::size_t b = 0; b < batches.size(); ++b) {
          if (load[b].empty()) continue;
          double rate = std::numeric_limits<double>::infinity();
          for (const auto& [l, w] : load[b])
            if (link_sharers[static_cast<std::size_t>(l)] == 1) rate = std::min(rate, link_bandwidth[static_cast<std::size_t>(l)] / w);
          if (!(rate < std::numeric_limits<double>::infinity())) return std::nullopt;
          for (const auto& [l, w] : load[b]) {
            const int n = link_sharers[static_cast<std::size_t>(l)];
            if (n > 1 && (link_fatpipe[static_cast<std::size_t>(l)] || link_bandwidth[static_cast<std::size_t>(l)] / n / w < rate))
              return std::nullopt;
          }
          end = std::max(end, latency[b] + 1.0 / rate);
        }
        return end;
      };
      const std::optional<double> end = round_end();
      for (const auto& lw : load)
        for (const auto& [l, w] : lw) link_sharers[static_cast<std::size_t>(l)] = 0;
      if (!end) return false;
      cp.round_alone_s[r] = *end;
      cp.round_disjoint[r] = 1;
    }
    seconds = cp.round_alone_s[r];
    return cp.round_disjoint[r] == 1;
  }
  std::unordered_map<std::uint64_t, std::vector<int>> sig_links;   ///< collective signature -> link ids, sorted, unique
  /** (kind, signature) of collectives whose shortcut met a conflict in an earlier run: never shortcut again. */
  std::set<std::pair<std::string, std::uint64_t>> conflicting;
  /** Memos of sends, kept apart from the collectives' (memo_s): recorded only by a send that ran alone on its links. */
  std::unordered_map<std::uint64_t, double> p2p_memo_s;
  const std::vector<int>& links_of(std::uint64_t sig) {
    auto it = sig_links.find(sig);
    if (it != sig_links.end()) return it->second;
    std::vector<int> out;
    for (const PairRoute* route : plans.at(sig).flow_routes) out.insert(out.end(), route->links.begin(), route->links.end());
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return sig_links.emplace(sig, std::move(out)).first->second;
  }

  /** Runs a step DAG from the calling actor. `chips` (nullptr = all) are in the job's power state. `alone`: replay
   *  pipeline sends and time rounds from their links' loads where they run alone on their links (see "Pipeline sends"
   *  and "Rounds alone on their links"; as EngineOptions allow); false: every send and round simulated. */
  StepResult run_step(workload::BuiltStep& step, bool record_power, const std::vector<int>* chips = nullptr, bool alone = false);
  /** One run of the step, without shortcuts for the `excluded` phases; `conflicts` receives the phases whose replayed
   *  send or round timed alone shared a link, `new_memos` the memos recorded (signature, whether a send's). */
  StepResult run_step_once(workload::BuiltStep& step, bool record_power, const std::vector<int>* chips, bool alone,
                           bool own_net, bool own_energy, const std::vector<char>& excluded, std::vector<workload::PhaseId>& conflicts,
                           std::vector<std::pair<std::uint64_t, bool>>& new_memos);
  /** Round `r` of collective `sig` as FairBottleneckNet tasks: each batch's link weights and latency (batch_loads). */
  const CachedPlan& net_loads_of(std::uint64_t sig, std::size_t r) {
    CachedPlan& cp = plans.at(sig);
    if (cp.net_load.empty()) {
      cp.net_load.resize(cp.plan.rounds.size());
      cp.net_latency_s.resize(cp.plan.rounds.size());
    }
    if (cp.net_load[r].empty() && !cp.plan.rounds[r].batches.empty()) batch_loads(cp, r, cp.net_load[r], cp.net_latency_s[r]);
    return cp;
  }
};

namespace {

/** Brings the energy plugin's joules of `hosts` up to date in one simcall (the plugin's own update, run in the
 *  kernel: sg_host_get_consumed_energy updates a stale host through simcall_answered, which maestro runs directly);
 *  returns their sum, taken in the same pass (a second pass over thousands of hosts costs as much in cache misses). */
double update_chips_energy(const std::vector<sg4::Host*>& hosts) {
  double joules = 0.0;
  simgrid::kernel::actor::simcall_answered([&hosts, &joules] {
    for (sg4::Host* h : hosts) joules += sg_host_get_consumed_energy(h);
  });
  return joules;
}

/** State of one vertex while the step runs. */
struct VertexState {
  int indegree = 0;
  int pending = 0;
  std::size_t round = 0;
  double start = -1.0;
  double end = -1.0;
  std::uint64_t sig = 0;
  const CachedPlan* plan = nullptr;
  bool memo_replay = false;
  bool memo_eligible = false;
  bool in_overhead = false;  ///< waiting out the launch cost / the round's latency before its bytes flow
  double round_start = 0.0;  ///< collectives: when the current round started (launch_round), before its wait
  double delay_end = 0.0;  ///< collectives: when its current timed delay (a memo replay, a round timed alone, a wait) ends
  double wan_s = 0.0;  ///< time this collective's rounds with cross-datacenter flows were in flight, waits included
  double power_w = 0.0;  ///< compute phases: the chips' power while they compute (power curve)
  bool prepared = false;  ///< collectives: signature, plan and footprint looked up (once)
  int chain = -1;         ///< first phase of a merged chain: its index in `chains`
  bool p2p = false;       ///< a pipeline send (comm.pipeline_p2p)
  bool net_held = false;  ///< holds its links (Pipeline sends)
  bool net_alone = false; ///< no other collective held any of its links when it took them
  bool round_alone = false;  ///< its current round is timed from its links' loads (Rounds alone on their links)
  std::uint64_t net_mark = 0;  ///< sum of its links' take counts when it took them
  int shared_links = 0;        ///< while it holds its links: how many of them another collective holds too
  std::vector<sg4::ExecPtr> flows;  ///< its current round's batches, when the round is joined (cancelled if the run stops)
};

}  // namespace

StepResult Simulator::Impl::run_step(workload::BuiltStep& step, bool record_power, const std::vector<int>* only_chips,
                                     bool alone) {
  // A conflict (a replayed send's or a round-timed-alone's link taken by another collective before it ended) makes the
  // run's figures unusable: the run stops there (run_step_once) and the step runs again from its start, without the
  // shortcut for the phases that held the links taken and for every collective of the same kind and signature (the
  // same reduction of the next bucket meets the same traffic), and after kExcludingRuns such runs without any
  // shortcut. The memos a discarded run recorded are dropped with it.
  // The kinds and signatures excluded so far stay excluded for the job's later steps, which meet the same traffic.
  constexpr int kExcludingRuns = 3;
  const StepGraph& g = step.graph;
  std::vector<char> excluded(boost::num_vertices(g), 0);
  auto exclude_like = [&] {
    for (PhaseId v = 0; v < excluded.size(); ++v)
      if (g[v].type == Phase::Type::collective && conflicting.count({g[v].kind, detail::signature(g[v].comm)}))
        excluded[v] = 1;
  };
  if (alone && !conflicting.empty()) exclude_like();
  // Only the training driver, the one actor running graphs, puts rounds in moesim's replica of the network model.
  const bool own_net = alone && opt.own_network_rounds;
  // Likewise for the compute phases' joules above the chips' active power (EngineOptions::own_compute_energy).
  const bool own_energy = alone && opt.own_compute_energy;
  for (int run = 0;; ++run) {
    std::vector<PhaseId> conflicts;
    std::vector<std::pair<std::uint64_t, bool>> new_memos;
    const bool shortcuts = alone && run <= kExcludingRuns;
    StepResult res = run_step_once(step, record_power, only_chips, shortcuts, own_net, own_energy, excluded, conflicts, new_memos);
    if (conflicts.empty() || !shortcuts) {
      res.reruns = run;
      return res;
    }
    for (const auto& [sig, p2p] : new_memos) (p2p ? p2p_memo_s : memo_s).erase(sig);
    for (PhaseId v : conflicts) conflicting.emplace(g[v].kind, detail::signature(g[v].comm));
    exclude_like();
  }
}

StepResult Simulator::Impl::run_step_once(workload::BuiltStep& step, bool record_power, const std::vector<int>* only_chips,
                                          bool alone, bool own_net, bool own_energy_asked, const std::vector<char>& excluded, std::vector<PhaseId>& conflicts,
                                          std::vector<std::pair<std::uint64_t, bool>>& new_memos) {
  StepGraph& g = step.graph;
  const std::size_t V = boost::num_vertices(g);
  const auto& chips = plat->chips();
  const double speed = plat->chip_speed_flops_per_s();
  const double pacer_speed = plat->pacer_speed_flops_per_s();
  const double t0 = sg4::Engine::get_clock();

  StepResult res;
  res.stats = step.stats;
  res.phases = static_cast<int>(V);
  res.site_link_bytes.assign(topo.sites().size(), {});
  auto site_energy = [&] {
    std::vector<double> e(topo.sites().size(), 0.0);
    for (std::size_t c = 0; c < chips.size(); ++c) e[static_cast<std::size_t>(topo.site_of(static_cast<int>(c)))] += sg_host_get_consumed_energy(chips[c]);
    return e;
  };
  const std::vector<double> e0 = site_energy();
  // Compute joules in moesim's replica of host_energy (EngineOptions::own_compute_energy). A compute activity's chips
  // keep a constant load from its start to its end: its pacer binds, so SimGrid gives it the rate 1 / duration and chip
  // c the load l_c = min(1, FLOPs_c / (duration x pstate speed x cores)). In the job pstate host_energy draws
  // active + l x slope for a load l > 0 and active for none (platform::PowerStates: idle = epsilon there), so the
  // activity adds slope_c x l_c watts to chip c over its duration and nothing else changes. The activity then runs
  // on its pacer alone, and the plugin integrates the chips at load 0. Each site's added joules are a + r t (t from the
  // step's start): an activity of rate w adds w to r and takes w t_start off a when it starts, and the reverse, with
  // t_end, when it ends; so the power series and the step's joules read the same sums.
  const bool own_energy = own_energy_asked && replica_energy_usable(chips);
  std::vector<double> own_a_j(topo.sites().size(), 0.0), own_r_w(topo.sites().size(), 0.0);
  std::vector<double> own_rates_w;  // by compute activity k: its rate per site, at [k x sites, (k + 1) x sites)
  auto own_joules = [&](double now) {
    double j = 0.0;
    for (std::size_t s = 0; s < own_a_j.size(); ++s) j += own_a_j[s] + own_r_w[s] * now;
    return j;
  };
  auto own_change = [&](std::ptrdiff_t k, double now, double sign) {
    const std::size_t n = own_a_j.size();
    for (std::size_t s = 0; s < n; ++s) {
      const double w = own_rates_w[static_cast<std::size_t>(k) * n + s];
      own_r_w[s] += sign * w;
      own_a_j[s] -= sign * w * now;
    }
  };

  auto take_pacer = [&]() -> sg4::Host* {
    if (free_pacers.empty()) return nullptr;
    sg4::Host* h = free_pacers.back();
    free_pacers.pop_back();
    return h;
  };

  // The chips run the job (see class comment): active power while they compute nothing.
  std::vector<int> job_chips;
  if (only_chips) {
    job_chips = *only_chips;
  } else {
    job_chips.resize(chips.size());
    std::iota(job_chips.begin(), job_chips.end(), 0);
  }
  hold_job_state(chips, job_chips, true);

  std::vector<VertexState> st(V);
  for (PhaseId v = 0; v < V; ++v) st[v].indegree = static_cast<int>(boost::in_degree(v, g));
  std::vector<PhaseId> ready;
  for (PhaseId v = 0; v < V; ++v)
    if (st[v].indegree == 0) ready.push_back(v);

  // Pipeline sends and rounds alone on their links (see Impl): per link, how many collectives hold it, the xor of their
  // ids (the holder's id where there is one), and how often it was taken; per collective, how many of its links another
  // collective holds too (shared_links). A collective whose time was fixed when it started (a replayed send, a round
  // timed alone: fixed_time) must run alone on its links: another collective taking one is a conflict.
  bool replay_sends = false;
  if (alone && opt.memoize && opt.replay_pipeline_p2p)
    for (PhaseId v = 0; v < V && !replay_sends; ++v)
      replay_sends = g[v].type == Phase::Type::collective && g[v].kind == "comm.pipeline_p2p";
  const bool alone_rounds = alone && opt.rounds_alone;
  const bool track = replay_sends || alone_rounds;
  std::vector<int> link_holders;
  std::vector<PhaseId> link_holder_xor;
  std::vector<std::uint64_t> link_takes;
  auto link_state = [&](PhaseId v) -> const std::vector<int>& {
    const std::vector<int>& links = links_of(st[v].sig);
    if (link_holders.size() < link_ids.size()) {
      link_holders.resize(link_ids.size(), 0);
      link_holder_xor.resize(link_ids.size(), 0);
      link_takes.resize(link_ids.size(), 0);
    }
    return links;
  };
  auto links_free = [&](PhaseId v) {
    for (int l : link_state(v))
      if (link_holders[static_cast<std::size_t>(l)] > 0) return false;
    return true;
  };
  auto fixed_time = [&](PhaseId u) { return st[u].round_alone || (st[u].net_held && st[u].p2p && st[u].memo_replay); };
  auto take_links = [&](PhaseId v) {
    if (!track || st[v].net_held || st[v].plan->plan.empty()) return;
    const bool replayed_send = st[v].p2p && st[v].memo_replay;
    bool first = true;
    std::uint64_t mark = 0;
    int shared = 0;
    for (int l : link_state(v)) {
      const auto i = static_cast<std::size_t>(l);
      const int before = link_holders[i];
      if (before == 1) {
        // Its one holder now shares the link. If that holder's time was fixed, the run stops (below). A link with more
        // holders was already shared: a fixed holder among them was reported when the second came (or it was itself
        // reported: a replayed send that started on a held link, below).
        const PhaseId holder = link_holder_xor[i];
        if (fixed_time(holder) && (conflicts.empty() || conflicts.back() != holder)) conflicts.push_back(holder);
        ++st[holder].shared_links;
      }
      if (before > 0) ++shared;
      first = first && before == 0;
      link_holders[i] = before + 1;
      link_holder_xor[i] ^= v;
      mark += ++link_takes[i];
    }
    if (replayed_send && !first) conflicts.push_back(v);  // cannot happen: replays start on free links (memo_for)
    st[v].net_held = true;
    st[v].net_alone = first;
    st[v].net_mark = mark;
    st[v].shared_links = shared;
  };
  // Returns whether v ran alone on its links from start to end (nobody held or took any of them meanwhile).
  auto release_links = [&](PhaseId v) {
    if (!st[v].net_held) return false;
    std::uint64_t mark = 0;
    for (int l : links_of(st[v].sig)) {
      const auto i = static_cast<std::size_t>(l);
      const int after = --link_holders[i];
      link_holder_xor[i] ^= v;
      if (after == 1) --st[link_holder_xor[i]].shared_links;  // its one holder left holds it alone again
      mark += link_takes[i];
    }
    st[v].net_held = false;
    st[v].shared_links = 0;
    return st[v].net_alone && mark == st[v].net_mark;
  };
  // Whether v, which holds its links, is the only collective holding any of them.
  auto only_holder = [&](PhaseId v) { return st[v].net_held && st[v].shared_links == 0; };

  std::vector<sg4::ExecPtr> pending;
  struct Tag {
    PhaseId v;
    sg4::Host* pacer;
    std::ptrdiff_t own = -1;  ///< a compute activity whose joules the replica adds (own_rates_w), else -1
  };
  std::vector<Tag> tags;
  std::size_t events = 0;
  const std::size_t sample_every = std::max<std::size_t>(1, V / static_cast<std::size_t>(std::max(1, opt.power_samples)));
  // The power series is the chips' energy between sample instants divided by the time between them: average
  // power over each interval (an instantaneous reading at an event instant would miss the work that just ended),
  // so the series integrates to the step's joules.
  std::vector<double> sample_t, sample_e;
  // By chip: the clock at which this run last brought its joules up to date (the plugin's last update is then at
  // least as recent). A chip already brought up to date at the current instant is not asked again: its update would
  // do nothing (HostEnergy::get_consumed_energy updates only a host whose last update is older), and asking costs a
  // cache miss per chip on thousands of chips.
  std::vector<double> energy_at(chips.size(), -1.0);
  // With the replica (own_energy), the chips carry no load in SimGrid and keep the job pstate from the step's start to
  // its end, so the plugin's joules grow at the constant sum of their powers then (base_w): the samples between the
  // first and the last read that line instead of every chip's plugin, which the first and last read.
  double base_e0_j = 0.0, base_w = 0.0;
  auto sample_power = [&](bool force) {
    if (!record_power || (!force && events % sample_every != 0)) return;
    const double clock = sg4::Engine::get_clock();
    const double now = clock - t0;
    if (!sample_t.empty() && !(now > sample_t.back())) return;  // one sample per instant
    double e = 0.0;
    if (own_energy && !force) {
      e = base_e0_j + base_w * now + own_joules(now);
    } else {
      e = update_chips_energy(chips) + own_joules(now);  // brought up to date and summed in one pass over the chips
      if (!own_energy) std::fill(energy_at.begin(), energy_at.end(), clock);
      if (own_energy && sample_t.empty()) {
        base_e0_j = e;
        simgrid::kernel::actor::simcall_answered([&] {
          for (sg4::Host* h : chips) base_w += sg_host_get_current_consumption(h);
        });
      }
    }
    sample_t.push_back(now);
    sample_e.push_back(e);
  };
  sample_power(true);

  auto finish = [&](PhaseId v) {
    st[v].end = sg4::Engine::get_clock();
    for (auto [e, eend] = boost::out_edges(v, g); e != eend; ++e) {
      PhaseId u = boost::target(*e, g);
      if (--st[u].indegree == 0) ready.push_back(u);
    }
    ++events;
    sample_power(false);
  };

  // Rounds in moesim's replica of the network model (EngineOptions::own_network_rounds). Every round that is not
  // timed alone nor replayed runs its batches as FairBottleneckNet tasks instead of SimGrid parallel tasks: the same
  // variables, weights, latencies and solver steps (fair_bottleneck_net.hpp), so the same rates. SimGrid keeps the
  // clock: one timed delay on a pacer (net_timer) lasts until the replica's next event (a task's end or the end of its
  // latency), and is replaced when the set of tasks changes before then. A batch that ends is handled as the end of
  // its parallel task was (net_done, then the main loop). Its CPU elements of weight 0 (which FairBottleneck skips)
  // and its hosts' energy updates at its end are the only parts of ptask_L07 left out: host_energy integrates each
  // host's load, which a task that only moves bytes leaves as it is.
  constexpr PhaseId kNetTimer = std::numeric_limits<PhaseId>::max();  // the timer's tag
  std::optional<FairBottleneckNet> net;
  std::vector<PhaseId> net_owner;   // by task id: its phase
  std::vector<PhaseId> net_phases;  // phases that put tasks in the replica (those with pending activities are running)
  std::vector<std::size_t> net_ended;
  std::deque<PhaseId> net_done;     // phases one of whose tasks ended, to handle as an ended activity
  sg4::ExecPtr net_timer;
  double net_timer_at = std::numeric_limits<double>::quiet_NaN();
  // Brings the replica to now (to its next event where its timer fired); the phases of the tasks that ended go to net_done.
  auto net_advance = [&](bool timer_fired) {
    if (!net) return;
    net_ended.clear();
    if (timer_fired) net->advance_to_next_event(sg4::Engine::get_clock(), net_ended);
    else net->advance(sg4::Engine::get_clock(), net_ended);
    for (std::size_t id : net_ended) net_done.push_back(net_owner[id]);
  };

  // WAN-busy time is the union of the intervals in which any round with cross-site flows is in flight: from the round's
  // start (launch_round), its latency wait included, to the end of its last batch.
  int wan_rounds_active = 0;
  double wan_since = 0.0;
  auto launch_round_flows = [&](PhaseId v) {
    const auto& round = st[v].plan->plan.rounds[st[v].round];
    if (own_net) {
      if (!net) net.emplace(link_bandwidth, link_fatpipe, sg4::Engine::get_clock());
      net_advance(false);
      const CachedPlan& cp = net_loads_of(st[v].sig, st[v].round);
      const auto& load = cp.net_load[st[v].round];
      const auto& latency = cp.net_latency_s[st[v].round];
      net_phases.push_back(v);
      for (std::size_t b = 0; b < load.size(); ++b) {
        net_owner.push_back(v);
        net->add(load[b], latency[b]);
        ++st[v].pending;
      }
      if (load.empty()) {  // a round without batches ends where it starts
        ++st[v].pending;
        net_done.push_back(v);
      }
      return;
    }
    struct BatchTask {
      std::vector<sg4::Host*> hosts;
      std::vector<double> bytes;
    };
    std::vector<BatchTask> tasks;
    tasks.reserve(round.batches.size());
    for (const auto& batch : round.batches) {
      std::unordered_map<int, int> index;
      BatchTask t;
      for (const auto& f : batch.flows)
        for (int ep : {f.src, f.dst})
          if (index.emplace(ep, static_cast<int>(t.hosts.size())).second) t.hosts.push_back(plat->endpoint(ep));
      const std::size_t n = t.hosts.size();
      t.bytes.assign(n * n, 0.0);
      for (const auto& f : batch.flows)
        t.bytes[static_cast<std::size_t>(index[f.src]) * n + static_cast<std::size_t>(index[f.dst])] += f.bytes;
      tasks.push_back(std::move(t));
    }
    // A batch is one parallel task of its flows' bytes, computing nothing.
    auto batch_exec = [](BatchTask& t) {
      const std::size_t n = t.hosts.size();
      return sg4::Exec::init()->set_hosts(t.hosts)->set_flops_amounts(std::vector<double>(n, 0.0))->set_bytes_amounts(t.bytes);
    };
    if (opt.join_batches <= 0 || tasks.size() < static_cast<std::size_t>(opt.join_batches)) {
      for (BatchTask& t : tasks) {
        sg4::ExecPtr ex = batch_exec(t);
        ex->vetoable_start();
        pending.push_back(ex);
        tags.push_back({v, nullptr});
        ++st[v].pending;
      }
      return;
    }
    // Joined rounds. SimGrid 3.32 calls an activity's complete(), which releases its successors, only for activities
    // that maestro started (EngineImpl::handle_ended_actions) or that an actor waited for. The batches are created and
    // started inside one simcall, so maestro owns them; each has an empty task on a pacer as its successor, which
    // starts when the last batch ends and ends the instant it starts (no FLOPs). The driver waits for
    // that one task instead of every batch: wait_any registers and unregisters itself on each pending activity, so a
    // round of thousands of batches cost thousands of O(pending) scans. The batches are the same parallel tasks as
    // before, in SimGrid's max-min system as before.
    sg4::ExecPtr joiner = sg4::Exec::init()->set_host(plat->pacers().front())->set_flops_amount(0.0);
    std::vector<sg4::ExecPtr>& flows = st[v].flows;
    flows.clear();
    simgrid::kernel::actor::simcall_answered([&] {
      for (BatchTask& t : tasks) {
        sg4::ExecPtr ex = batch_exec(t);
        ex->add_successor(joiner);
        ex->vetoable_start();
        flows.push_back(ex);
      }
    });
    joiner->vetoable_start();
    pending.push_back(joiner);
    tags.push_back({v, nullptr});
    ++st[v].pending;
  };
  // A timed delay of `seconds` for phase v on a pacer host (latencies, memo replays, chains without compute).
  auto start_delay = [&](PhaseId v, sg4::Host* pacer, double seconds) {
    st[v].delay_end = sg4::Engine::get_clock() + seconds;
    auto ex = sg4::Exec::init()->set_host(pacer)->set_flops_amount(seconds * pacer_speed);
    ex->vetoable_start();
    pending.push_back(ex);
    tags.push_back({v, pacer});
    ++st[v].pending;
  };
  // Whether another collective could take a link of v's before `until` (defined below, with the chains).
  std::function<bool(PhaseId, double)> may_be_joined;
  // A round first waits out its latency (and the first round the collective's launch cost) on a pacer, then
  // its bytes flow. A round crossing the WAN is in flight from here, its wait included (WAN-busy time, above).
  auto launch_round = [&](PhaseId v) {
    st[v].round_start = sg4::Engine::get_clock();
    if (st[v].plan->round_crosses_wan[st[v].round] && wan_rounds_active++ == 0) wan_since = st[v].round_start;
    const double wait = st[v].plan->round_wait_s[st[v].round] + (st[v].round == 0 ? st[v].plan->plan.overhead_s : 0.0);
    double alone_s = 0.0;
    if (alone_rounds && !excluded[v] && round_alone(st[v].sig, st[v].round, alone_s) && only_holder(v) &&
        !(opt.rounds_lookahead && may_be_joined(v, sg4::Engine::get_clock() + wait + alone_s))) {
      if (sg4::Host* pacer = take_pacer()) {
        st[v].round_alone = true;  // fixed_time: another collective taking one of its links is a conflict
        ++res.rounds_alone;
        start_delay(v, pacer, wait + alone_s);
        return;
      }
    }
    if (!(wait > 0.0)) {
      launch_round_flows(v);
      return;
    }
    sg4::Host* pacer = take_pacer();
    if (pacer == nullptr) throw Error("engine: not enough pacer hosts for collective latencies; raise EngineOptions::pacers");
    st[v].in_overhead = true;
    start_delay(v, pacer, wait);
  };

  // Per chip: its devices run in parallel; the chip is busy until its slowest device finishes.
  // By chip, in chip order; scratch by chip id (busy_of, busy_seen) and the chips seen, so that a phase on every chip
  // of a large mesh costs a pass over its devices and chips, not a hash map and a sort.
  std::vector<double> busy_of(static_cast<std::size_t>(mesh.chips()), 0.0);
  std::vector<char> busy_seen(static_cast<std::size_t>(mesh.chips()), 0);
  std::vector<int> busy_chips;
  auto chip_busy = [&](const Phase& ph) {
    busy_chips.clear();
    for (std::size_t i = 0; i < ph.compute.devices.size(); ++i) {
      const int chip = mesh.chip_of(ph.compute.devices[i]);
      const auto c = static_cast<std::size_t>(chip);
      if (!busy_seen[c]) {
        busy_seen[c] = 1;
        busy_of[c] = 0.0;
        busy_chips.push_back(chip);
      }
      busy_of[c] = std::max(busy_of[c], ph.compute.time_s[i]);
    }
    std::vector<std::pair<int, double>> work;
    work.reserve(busy_chips.size());
    if (8 * busy_chips.size() >= busy_seen.size()) {  // many: one pass over the chips, in order
      for (std::size_t c = 0; c < busy_seen.size(); ++c)
        if (busy_seen[c]) work.emplace_back(static_cast<int>(c), busy_of[c]);
    } else {
      std::sort(busy_chips.begin(), busy_chips.end());
      for (int chip : busy_chips) work.emplace_back(chip, busy_of[static_cast<std::size_t>(chip)]);
    }
    for (int chip : busy_chips) busy_seen[static_cast<std::size_t>(chip)] = 0;
    return work;
  };
  // SimGrid 3.32's energy plugin brings a host's joules up to date when one of its activities changes state,
  // and at the start of single-host executions only (src/plugins/host_energy.cpp): a parallel task starting
  // on a chip would have the stretch since the chip's last update charged at the new task's load. Bring the
  // chips a task loads up to date first: the others' loads do not change, and a parallel task's end updates
  // its hosts itself (the plugin's CpuAction::on_state_change). All of them in one simcall (update_chips_energy):
  // a simcall per chip cost x1.12 wall time on GShard-600B at 1024 chips, and sg_host_energy_update_all rebuilds
  // and sorts the list of every host by name each time (11 % of the 4096-chip bench case, perf).
  auto update_energy = [&](const std::vector<std::pair<int, double>>& work) {
    if (own_energy) return;  // the chips' loads stay 0 in SimGrid
    const double clock = sg4::Engine::get_clock();
    std::vector<sg4::Host*> hosts;
    hosts.reserve(work.size());
    for (const auto& [chip, t] : work) {
      const auto c = static_cast<std::size_t>(chip);
      if (t > 0.0 && energy_at[c] != clock) {  // not yet brought up to date at this instant
        hosts.push_back(chips[c]);
        energy_at[c] = clock;
      }
    }
    if (!hosts.empty()) update_chips_energy(hosts);
  };
  // One parallel task per chunk of chips: each chip busy for some time carries its FLOPs at its speed, and a pacer
  // host makes the task last `duration_s` (nullopt: as long as the chunk's busiest chip).
  struct ChipWork {
    int chip;
    double busy_s;
    double flops;
  };
  auto launch_chunks = [&](PhaseId v, const std::vector<ChipWork>& work, std::optional<double> duration_s) {
    for (std::size_t lo = 0; lo < work.size(); lo += static_cast<std::size_t>(opt.chunk_hosts)) {
      const std::size_t hi = std::min(work.size(), lo + static_cast<std::size_t>(opt.chunk_hosts));
      std::vector<sg4::Host*> hosts;
      std::vector<double> flops;
      double longest = 0.0;
      bool any = false;
      for (std::size_t i = lo; i < hi; ++i)
        if (work[i].busy_s > 0.0) {
          any = true;
          if (!own_energy) {
            hosts.push_back(chips[static_cast<std::size_t>(work[i].chip)]);
            flops.push_back(work[i].flops);
          }
          longest = std::max(longest, work[i].busy_s);
        }
      if (!any) continue;
      sg4::Host* pacer = take_pacer();
      if (pacer == nullptr) throw Error("engine: not enough pacer hosts for compute phases; raise EngineOptions::pacers");
      const double duration = duration_s.value_or(longest);
      std::ptrdiff_t own = -1;
      sg4::ExecPtr ex;
      if (own_energy) {
        // The replica (see own_energy): the chunk's chips' added watts by site, and the activity on its pacer alone.
        const std::size_t n = own_a_j.size();
        own = static_cast<std::ptrdiff_t>(own_rates_w.size() / n);
        own_rates_w.resize(own_rates_w.size() + n, 0.0);
        for (std::size_t i = lo; i < hi; ++i)
          if (work[i].busy_s > 0.0) {
            const auto c = static_cast<std::size_t>(work[i].chip);
            const double load = std::min(1.0, work[i].flops / duration / job_full_flops_per_s[c]);
            own_rates_w[static_cast<std::size_t>(own) * n + static_cast<std::size_t>(topo.site_of(work[i].chip))] += job_slope_w[c] * load;
          }
        own_change(own, sg4::Engine::get_clock() - t0, 1.0);
        ex = sg4::Exec::init()->set_host(pacer)->set_flops_amount(duration * pacer_speed);
      } else {
        hosts.push_back(pacer);
        flops.push_back(duration * pacer_speed);
        ex = sg4::Exec::init()->set_hosts(hosts)->set_flops_amounts(flops)->set_bytes_amounts({});
      }
      ex->vetoable_start();
      pending.push_back(ex);
      tags.push_back({v, pacer, own});
      ++st[v].pending;
    }
  };
  // A collective's signature, plan and network footprint, looked up once whether it runs alone or in a chain.
  auto prepare_collective = [&](PhaseId v) {
    if (st[v].prepared) return;
    st[v].prepared = true;
    const Phase& ph = g[v];
    st[v].sig = detail::signature(ph.comm);
    st[v].plan = &plan_for(st[v].sig, ph.comm);
    res.algorithms[ph.kind] = st[v].plan->plan.algorithm;
    for (std::size_t s = 0; s < res.site_link_bytes.size(); ++s)
      for (std::size_t c = 0; c < system::kLinkClassCount; ++c) res.site_link_bytes[s][c] += st[v].plan->site_link_bytes[s][c];
    st[v].p2p = ph.kind == "comm.pipeline_p2p";
    // Sends between datacenters stay in full: the WAN-busy time is a union over concurrent rounds, which a replay
    // cannot rebuild.
    bool wan = false;
    for (bool w : st[v].plan->round_crosses_wan) wan = wan || w;
    st[v].memo_eligible = opt.memoize && !ph.overlaps_grad_reduce && (!st[v].p2p || (replay_sends && !wan));
  };
  auto memo_for = [&](PhaseId v) -> const double* {
    if (!st[v].memo_eligible) return nullptr;
    auto& memos = st[v].p2p ? p2p_memo_s : memo_s;
    auto memo = memos.find(st[v].sig);
    if (memo == memos.end() || (st[v].p2p && (excluded[v] || !links_free(v)))) return nullptr;
    return &memo->second;
  };
  auto start_memo_replay = [&](PhaseId v) {
    st[v].memo_replay = true;
    ++res.collectives_memoized;
    res.wan_busy_s += st[v].plan->memo_wan_s;
  };

  // Chains. A phase whose duration is known when it starts (a compute phase, a collective replayed from its memo,
  // an empty collective, a marker) and whose only successor has no other predecessor and a known duration too starts
  // that successor the instant it ends: nothing else can move it. Such a chain runs as one activity per chunk of its
  // chips, lasting the sum of its phases' durations, each chip carrying the sum of the FLOPs the phases give it.
  // host_energy is linear in a host's load, so each chip's joules are those of the phases one by one; each phase's
  // start and end are known and recorded as they would have been. Pipeline stages under tensor parallelism are such
  // chains (compute, the memoised tensor all-reduce, compute, ...); one activity instead of dozens keeps SimGrid's
  // max-min system small. Exact as long as no other compute phase runs on the chain's chips at the same time (it would
  // share their speed with the chain's average load instead of each phase's own): the step builders give a chip one
  // compute phase at a time, and the tests compare every example, published training run and bench case with the
  // phase-by-phase run (EngineOptions::merge_chains = false).
  std::vector<std::vector<PhaseId>> chains;
  auto known_duration = [&](PhaseId v) -> std::optional<double> {
    const Phase& ph = g[v];
    if (ph.type == Phase::Type::compute) {
      double d = 0.0;
      for (double t : ph.compute.time_s) d = std::max(d, t);
      return d;
    }
    if (ph.type == Phase::Type::collective) {
      prepare_collective(v);
      if (st[v].plan->plan.empty()) return 0.0;
      if (const double* m = memo_for(v)) return *m;
      return std::nullopt;
    }
    return 0.0;  // marker
  };
  auto launch_chain = [&](PhaseId v) -> bool {
    if (!opt.merge_chains || boost::out_degree(v, g) != 1) return false;
    std::vector<PhaseId> chain;
    std::vector<double> dur;
    for (PhaseId x = v;;) {
      const std::optional<double> d = known_duration(x);
      if (!d) break;
      chain.push_back(x);
      dur.push_back(*d);
      if (boost::out_degree(x, g) != 1) break;
      const PhaseId u = boost::target(*boost::out_edges(x, g).first, g);
      if (boost::in_degree(u, g) != 1) break;
      x = u;
    }
    if (chain.size() < 2) return false;
    const double t = sg4::Engine::get_clock();
    double elapsed = 0.0;
    std::map<int, ChipWork> per_chip;
    for (std::size_t i = 0; i < chain.size(); ++i) {
      const PhaseId x = chain[i];
      const Phase& ph = g[x];
      st[x].start = t + elapsed;
      elapsed += dur[i];
      st[x].end = t + elapsed;
      if (ph.type == Phase::Type::compute) {
        const double load = power.load_for(ph.compute.flop_utilisation(), ph.compute.hbm_utilisation());
        st[x].power_w = power.compute_w(ph.compute.flop_utilisation(), ph.compute.hbm_utilisation());
        for (const auto& [chip, busy] : chip_busy(ph)) {
          ChipWork& w = per_chip.try_emplace(chip, ChipWork{chip, 0.0, 0.0}).first->second;
          w.busy_s += busy;
          w.flops += load * busy * speed;
        }
      } else if (ph.type == Phase::Type::collective && !st[x].plan->plan.empty()) {
        start_memo_replay(x);
        take_links(x);
      }
    }
    std::vector<ChipWork> work;
    std::vector<std::pair<int, double>> busy;
    for (const auto& [chip, w] : per_chip) {
      work.push_back(w);
      busy.emplace_back(chip, w.busy_s);
    }
    st[v].chain = static_cast<int>(chains.size());
    chains.push_back(std::move(chain));
    if (!(elapsed > 0.0)) return true;  // finished where it started: the caller's loop sees no pending activity
    update_energy(busy);
    launch_chunks(v, work, elapsed);
    if (st[v].pending == 0) {  // no chip computes: a pacer alone keeps the time
      sg4::Host* pacer = take_pacer();
      if (pacer == nullptr) throw Error("engine: not enough pacer hosts for memoised phases; raise EngineOptions::pacers");
      start_delay(v, pacer, elapsed);
    }
    return true;
  };
  // Lookahead for rounds alone on their links. A round is timed alone only where no other collective that shares a
  // link with its collective can take that link before the round ends; a conflict (run_step) then cannot come from
  // it. A collective takes its links when it starts, or when a chain it belongs to starts (launch_chain). When it can
  // start has a lower bound: compute phases last exactly their known duration, a collective at least its floor
  // (floors_of), a marker nothing; a phase running ends no earlier than now (a compute phase or a chain: at its known
  // end; a collective: running_floor), one ready starts now, and a phase starts no earlier than its last predecessor's
  // earliest end. The search runs forward from the running and
  // ready phases in order of earliest end and stops at `until`; each phase that could start before it is checked with
  // the phases a chain from it could hold (each single successor with no other predecessor, up to a collective that
  // is never replayed from a memo: known_duration). The bound leaves the
  // results as they were: a round is timed alone only where nothing can join it, which the conflict check would have
  // confirmed after the fact; what changes is that a step no longer starts over because a round was timed alone on
  // links that a later collective took (the expert-gradient buckets under the backward all-to-alls).
  std::vector<double> min_duration(V, -1.0);
  auto duration_floor = [&](PhaseId x) {
    if (min_duration[x] < 0.0) {
      double d = 0.0;
      if (g[x].type == Phase::Type::compute) {
        d = *known_duration(x);
      } else if (g[x].type == Phase::Type::collective) {
        prepare_collective(x);
        if (!st[x].plan->plan.empty()) d = floors_of(st[x].sig).suffix_floor_s[0];
      }
      min_duration[x] = d;
    }
    return min_duration[x];
  };
  // A collective under way ends no earlier than this: its timed delay's end (a memo replay's is its end), or now where
  // its round's bytes are in SimGrid, then its later rounds' floors.
  auto running_floor = [&](PhaseId x, double now) {
    const VertexState& s = st[x];
    if (s.memo_replay) return s.delay_end;
    const CachedPlan& cp = floors_of(s.sig);
    double end = now;
    if (s.round_alone) end = s.delay_end;
    else if (s.in_overhead) end = s.delay_end + cp.round_floor_s[s.round];
    return std::max(end, now) + cp.suffix_floor_s[s.round + 1];
  };
  std::map<std::pair<std::uint64_t, std::uint64_t>, bool> sig_overlap;
  auto shares_links = [&](PhaseId u, PhaseId c) {
    if (g[c].type != Phase::Type::collective) return false;
    prepare_collective(c);
    if (st[c].plan->plan.empty()) return false;
    auto [it, fresh] = sig_overlap.try_emplace(std::minmax(st[u].sig, st[c].sig), false);
    if (fresh) {
      const std::vector<int>& a = links_of(st[u].sig);
      const std::vector<int>& b = links_of(st[c].sig);
      std::size_t i = 0, j = 0;
      while (i < a.size() && j < b.size() && !it->second) {
        if (a[i] == b[j]) it->second = true;
        else if (a[i] < b[j]) ++i;
        else ++j;
      }
    }
    return it->second;
  };
  std::vector<double> la_start(V, 0.0);  // scratch, by phase: the latest predecessor end seen
  std::vector<int> la_need(V, -1);       // scratch, by phase: predecessors not yet reached (-1: untouched)
  std::vector<char> la_checked(V, 0);    // scratch, by phase: checked as part of a chain
  std::vector<PhaseId> la_touched;
  may_be_joined = [&](PhaseId u, double until) {
    // Anything that could start at `until` or within rounding of it counts as joining (event order at equal times).
    const double horizon = until + 1e-12 * std::max(1.0, std::abs(until));
    const double now = sg4::Engine::get_clock();
    using Item = std::pair<double, PhaseId>;  // (earliest end, phase)
    std::priority_queue<Item, std::vector<Item>, std::greater<>> ends;
    bool joined = false;
    auto touch = [&](PhaseId x) {
      if (la_need[x] < 0) {
        la_need[x] = st[x].indegree;
        la_start[x] = now;
        la_touched.push_back(x);
      }
    };
    // A phase that could start at `at`: the collectives it and a chain from it could hold.
    auto startable = [&](PhaseId x, double at) {
      for (PhaseId y = x;;) {
        touch(y);
        if (la_checked[y]) break;
        la_checked[y] = 1;
        if (y != u && shares_links(u, y)) {
          joined = true;
          return;
        }
        if (!opt.merge_chains || boost::out_degree(y, g) != 1) break;
        const PhaseId z = boost::target(*boost::out_edges(y, g).first, g);
        if (boost::in_degree(z, g) != 1) break;
        if (g[z].type == Phase::Type::collective) {  // in a chain only if replayed from a memo (known_duration)
          prepare_collective(z);
          if (!st[z].plan->plan.empty() && !st[z].memo_eligible) break;
        }
        y = z;
      }
      ends.emplace(at + duration_floor(x), x);
    };
    for (PhaseId x : ready) {
      touch(x);
      startable(x, now);
      if (joined) break;
    }
    // The running phases: those with activities in SimGrid (tags; not the replica's timer) or tasks in the replica.
    auto running = [&](PhaseId x) {
      if (x == kNetTimer || la_need[x] >= 0) return;  // seen (a phase with several activities)
      touch(x);
      double end = now;
      if (st[x].chain >= 0) {  // a chain's last phase releases its successors at its recorded end
        const PhaseId last = chains[static_cast<std::size_t>(st[x].chain)].back();
        touch(last);
        end = st[last].end;
        x = last;
      } else if (g[x].type == Phase::Type::compute) {
        end = st[x].start + duration_floor(x);
      } else if (g[x].type == Phase::Type::collective) {
        end = running_floor(x, now);
      }
      ends.emplace(std::max(end, now), x);
    };
    for (std::size_t i = 0; i < tags.size() && !joined; ++i) running(tags[i].v);
    for (std::size_t i = 0; i < net_phases.size() && !joined; ++i)
      if (st[net_phases[i]].pending > 0) running(net_phases[i]);
    while (!joined && !ends.empty() && ends.top().first <= horizon) {
      const auto [end, x] = ends.top();
      ends.pop();
      for (auto [e, eend] = boost::out_edges(x, g); e != eend && !joined; ++e) {
        const PhaseId y = boost::target(*e, g);
        touch(y);
        la_start[y] = std::max(la_start[y], end);
        if (--la_need[y] == 0) startable(y, la_start[y]);
      }
    }
    for (PhaseId x : la_touched) {
      la_need[x] = -1;
      la_checked[x] = 0;
    }
    la_touched.clear();
    return joined;
  };

  // The phases of a chain end at their recorded instants; only the last one releases its successors.
  auto finish_chain = [&](PhaseId v) {
    const std::vector<PhaseId>& chain = chains[static_cast<std::size_t>(st[v].chain)];
    st[chain.back()].end = sg4::Engine::get_clock();  // the recorded sum, to the clock's own rounding
    for (PhaseId x : chain) release_links(x);
    for (std::size_t i = 0; i < chain.size(); ++i) {
      for (auto [e, eend] = boost::out_edges(chain[i], g); e != eend; ++e) {
        PhaseId u = boost::target(*e, g);
        if (--st[u].indegree == 0 && i + 1 == chain.size()) ready.push_back(u);
      }
      ++events;
      sample_power(false);
    }
  };

  auto launch = [&](PhaseId v) {
    Phase& ph = g[v];
    if (launch_chain(v)) {
      if (st[v].pending == 0) finish_chain(v);
      return;
    }
    st[v].start = sg4::Engine::get_clock();
    if (ph.type == Phase::Type::compute) {
      const std::vector<std::pair<int, double>> work = chip_busy(ph);
      update_energy(work);
      // The chips draw the power curve at the phase's achieved utilisation: host_energy is linear in a host's load
      // (active + load x (full - active)), so each chip carries load x its busy time x speed FLOPs and a pacer host
      // makes the task last as long as the chunk's slowest chip. A chip busy t_i of the T seconds then draws
      // active + (P - active) t_i / T: P while it computes, active while it waits for the others. Pstates chosen
      // per phase would quantise P and cost more: SimGrid 3.32's ptask_L07 recomputes the bound of every activity
      // on a host at each pstate change (CpuL07::on_speed_change).
      const double load = power.load_for(ph.compute.flop_utilisation(), ph.compute.hbm_utilisation());
      st[v].power_w = power.compute_w(ph.compute.flop_utilisation(), ph.compute.hbm_utilisation());
      std::vector<ChipWork> chunks;
      chunks.reserve(work.size());
      for (const auto& [chip, busy] : work) chunks.push_back({chip, busy, load * busy * speed});
      launch_chunks(v, chunks, std::nullopt);
      if (st[v].pending == 0) finish(v);
      return;
    }
    if (ph.type == Phase::Type::collective) {
      prepare_collective(v);
      if (st[v].plan->plan.empty()) {
        finish(v);
        return;
      }
      if (const double* memo = memo_for(v)) {
        if (sg4::Host* pacer = take_pacer()) {
          start_memo_replay(v);
          take_links(v);
          start_delay(v, pacer, *memo);
          return;
        }
      }
      ++res.collectives_detailed;
      take_links(v);
      st[v].round = 0;
      launch_round(v);
      return;
    }
    finish(v);  // marker
  };

  // The end of one of phase v's activities (a compute chunk, a timed delay, a batch, a joined round).
  auto activity_done = [&](PhaseId v) {
    VertexState& vs = st[v];
    if (--vs.pending > 0) return;
    if (vs.chain >= 0) {
      finish_chain(v);
      return;
    }
    const Phase& ph = g[v];
    vs.flows.clear();
    if (ph.type == Phase::Type::collective && !vs.memo_replay) {
      if (vs.in_overhead) {
        vs.in_overhead = false;
        launch_round_flows(v);
        return;
      }
      vs.round_alone = false;
      if (vs.plan->round_crosses_wan[vs.round]) {
        vs.wan_s += sg4::Engine::get_clock() - vs.round_start;
        if (--wan_rounds_active == 0) res.wan_busy_s += sg4::Engine::get_clock() - wan_since;
      }
      if (vs.round + 1 < vs.plan->plan.rounds.size()) {
        ++vs.round;
        launch_round(v);
        return;
      }
      const bool ran_alone = release_links(v);
      auto& memos = vs.p2p ? p2p_memo_s : memo_s;
      if (vs.memo_eligible && (!vs.p2p || ran_alone) && memos.emplace(vs.sig, sg4::Engine::get_clock() - vs.start).second) {
        plans.at(vs.sig).memo_wan_s = vs.wan_s;  // replayed with the memo
        new_memos.emplace_back(vs.sig, vs.p2p);
      }
    } else if (ph.type == Phase::Type::collective) {
      release_links(v);
    }
    finish(v);
  };
  // The replica's timer lasts until its next event; replaced where that moved (tasks added or ended).
  auto arm_net_timer = [&] {
    if (!net) return;
    const double at = net->next_event_s();
    if (at == net_timer_at) return;
    if (net_timer) {
      for (std::size_t i = 0; i < pending.size(); ++i)
        if (pending[i] == net_timer) {
          free_pacers.push_back(tags[i].pacer);
          pending[i] = pending.back();
          pending.pop_back();
          tags[i] = tags.back();
          tags.pop_back();
          break;
        }
      net_timer->cancel();
      net_timer = nullptr;
    }
    net_timer_at = at;
    if (!(at < std::numeric_limits<double>::infinity())) return;
    sg4::Host* pacer = take_pacer();
    if (pacer == nullptr) throw Error("engine: not enough pacer hosts for the network timer; raise EngineOptions::pacers");
    net_timer = sg4::Exec::init()->set_host(pacer)->set_flops_amount(std::max(0.0, at - sg4::Engine::get_clock()) * pacer_speed);
    net_timer->vetoable_start();
    pending.push_back(net_timer);
    tags.push_back({kNetTimer, pacer});
  };

  while (true) {
    while (!ready.empty()) {
      PhaseId v = ready.back();
      ready.pop_back();
      launch(v);
    }
    if (!conflicts.empty()) {
      // The run's figures are unusable from here on (run_step): stop it rather than simulate the rest.
      for (PhaseId u = 0; u < V; ++u)
        for (const sg4::ExecPtr& ex : st[u].flows)
          if (ex->get_state() != sg4::Activity::State::FINISHED) ex->cancel();
      for (const sg4::ExecPtr& ex : pending) ex->cancel();
      for (const Tag& t : tags)
        if (t.pacer) free_pacers.push_back(t.pacer);
      hold_job_state(chips, job_chips, false);
      res.duration_s = sg4::Engine::get_clock() - t0;
      return res;
    }
    if (!net_done.empty()) {
      const PhaseId v = net_done.front();
      net_done.pop_front();
      activity_done(v);
      continue;
    }
    arm_net_timer();
    net_phases.erase(std::remove_if(net_phases.begin(), net_phases.end(), [&](PhaseId x) { return st[x].pending == 0; }),
                     net_phases.end());
    if (pending.empty()) break;
    const ssize_t idx = sg4::Exec::wait_any(pending);
    if (idx < 0) throw Error("internal error: SimGrid wait_any failed");
    const Tag tag = tags[static_cast<std::size_t>(idx)];
    pending[static_cast<std::size_t>(idx)] = pending.back();
    pending.pop_back();
    tags[static_cast<std::size_t>(idx)] = tags.back();
    tags.pop_back();
    if (tag.pacer) free_pacers.push_back(tag.pacer);
    if (tag.own >= 0) own_change(tag.own, sg4::Engine::get_clock() - t0, -1.0);
    if (tag.v == kNetTimer) {
      net_timer = nullptr;
      net_timer_at = std::numeric_limits<double>::quiet_NaN();
      net_advance(true);
      continue;
    }
    activity_done(tag.v);
  }
  if (net && net->live() > 0) throw Error("internal error: network tasks left at the end of the step");
  for (PhaseId v = 0; v < V; ++v)
    if (st[v].end < 0.0) throw Error(fmt::format("internal error: phase '{}' never ran (the step graph has a cycle?)", g[v].label));

  const double t1 = sg4::Engine::get_clock();
  sample_power(true);
  for (std::size_t i = 0; i + 1 < sample_t.size(); ++i) {
    res.power_t_s.push_back(sample_t[i]);
    res.power_w.push_back((sample_e[i + 1] - sample_e[i]) / (sample_t[i + 1] - sample_t[i]));
  }
  hold_job_state(chips, job_chips, false);
  const std::vector<double> e1 = site_energy();
  res.duration_s = t1 - t0;
  res.site_energy_j.resize(e0.size());
  for (std::size_t s = 0; s < e0.size(); ++s) res.site_energy_j[s] = e1[s] - e0[s] + own_a_j[s] + own_r_w[s] * (t1 - t0);

  // Busy time by kind, and the critical path: from the end, follow the predecessor that finished last.
  auto attribute = [&](PhaseId v, double dt, std::map<std::string, double>& into) {
    const Phase& ph = g[v];
    if (dt <= 0.0) return;
    if (ph.type == Phase::Type::compute) {
      double total = 0.0;
      for (const auto& [k, t] : ph.compute.kind_time_s) total += t;
      for (const auto& [k, t] : ph.compute.kind_time_s) into[k] += total > 0 ? dt * t / total : 0.0;
    } else if (ph.type == Phase::Type::collective) {
      into[ph.kind] += dt;
    } else {
      into["wait"] += dt;
    }
  };
  for (PhaseId v = 0; v < V; ++v) attribute(v, st[v].end - st[v].start, res.busy_s);
  PhaseId cur = step.end;
  while (true) {
    auto [e, eend] = boost::in_edges(cur, g);
    if (e == eend) break;
    PhaseId best = boost::source(*e, g);
    for (; e != eend; ++e)
      if (st[boost::source(*e, g)].end > st[best].end) best = boost::source(*e, g);
    attribute(cur, st[cur].end - st[best].end, res.critical_path_s);
    cur = best;
  }
  attribute(cur, st[cur].end - t0, res.critical_path_s);
  if (opt.trace && record_power) {
    std::vector<bool> critical(V, false);
    for (PhaseId v = step.end;;) {
      critical[v] = true;
      auto [e, eend] = boost::in_edges(v, g);
      if (e == eend) break;
      PhaseId best = boost::source(*e, g);
      for (; e != eend; ++e)
        if (st[boost::source(*e, g)].end > st[best].end) best = boost::source(*e, g);
      v = best;
    }
    for (PhaseId v = 0; v < V; ++v)
      if (g[v].type != Phase::Type::marker) {
        const bool compute = g[v].type == Phase::Type::compute;
        res.trace.push_back({g[v].label, compute ? "compute" : g[v].kind, g[v].stage, st[v].start - t0, st[v].end - t0, critical[v],
                             st[v].memo_replay, compute ? g[v].compute.flop_utilisation() : 0.0,
                             compute ? g[v].compute.hbm_utilisation() : 0.0, compute ? st[v].power_w : power.active_w});
      }
    std::sort(res.trace.begin(), res.trace.end(), [](const PhaseTrace& a, const PhaseTrace& b) { return a.start_s < b.start_s; });
  }
  return res;
}

Simulator::Simulator(const system::Topology& topo, const catalog::AcceleratorSpec& accel, const platform::PowerStates& power,
                     const workload::DeviceMesh& mesh, EngineOptions options)
    : impl_(std::make_unique<Impl>(topo, accel, power, mesh, options)) {}

Simulator::~Simulator() = default;

const platform::Platform& Simulator::platform() const { return *impl_->plat; }

StepResult Simulator::run_graph(workload::BuiltStep& step, const std::vector<int>& chips) {
  return impl_->run_step(step, false, &chips);
}

void Simulator::hold_job(const std::vector<int>& chips) { impl_->hold_job_state(impl_->plat->chips(), chips, true); }

sg4::Host* Simulator::take_pacer() {
  if (impl_->free_pacers.empty()) throw Error("engine: no pacer host left; raise EngineOptions::pacers");
  sg4::Host* h = impl_->free_pacers.back();
  impl_->free_pacers.pop_back();
  return h;
}

void Simulator::release_pacer(sg4::Host* pacer) { impl_->free_pacers.push_back(pacer); }

void Simulator::run_actors() { impl_->engine->run(); }

std::vector<StepResult> Simulator::run(int steps, const std::function<workload::BuiltStep(int)>& build) {
  return run_while([&](const std::vector<StepResult>& done) -> std::optional<NextStep> {
    const int k = static_cast<int>(done.size());
    if (k >= steps) return std::nullopt;
    return NextStep{std::unique_ptr<workload::BuiltStep>(new workload::BuiltStep(build(k))), k == 0};
  });
}

std::vector<StepResult> Simulator::run_while(const std::function<std::optional<NextStep>(const std::vector<StepResult>&)>& next) {
  std::vector<StepResult> results;
  std::exception_ptr failure;
  sg4::Actor::create("driver", impl_->plat->pacers().front(), [&] {
    try {
      while (std::optional<NextStep> n = next(results))
        results.push_back(impl_->run_step(*n->step, n->record_power, nullptr, true));
    } catch (...) {
      failure = std::current_exception();
    }
  });
  impl_->engine->run();
  if (failure) std::rethrow_exception(failure);
  return results;
}

}  // namespace moesim::engine
