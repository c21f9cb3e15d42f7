// SPDX-License-Identifier: Apache-2.0
#include "moesim/system/collectives.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/probe_table.hpp"

namespace moesim::system {

double per_node_network_fraction(const workload::CollectiveWork::PerNode& p, int nodes) {
  if (p.top_k <= 0 || nodes <= 1 || p.experts <= 0) return 1.0;
  const double N = nodes, k = p.top_k, E = p.experts, per_node = E / N;
  double none = 1.0;  // H: a given node holds none of the token's k distinct experts
  for (int i = 0; i < p.top_k; ++i) none *= std::max(0.0, E - per_node - i) / (E - i);
  double crossings = (N - 1.0) * (1.0 - none);
  if (p.max_nodes > 0) crossings = std::min(crossings, p.max_nodes * (N - 1.0) / N);
  const double copies = k * (N - 1.0) / N;
  return std::min(1.0, crossings / copies);
}

double ring_all_to_all_link_load(int n) {
  if (n <= 1) return 0.0;
  if (n == 2) return 1.0;
  // Pairs at distance d (1 <= d < n/2) cross d links in one direction; n even: the antipodal pairs
  // (distance n/2) split evenly between the two directions.
  const int h = (n - 1) / 2;
  double load = static_cast<double>(h) * (h + 1) / 2.0;
  if (n % 2 == 0) load += (n / 2) / 2.0;
  return load;
}

namespace {

using workload::CollectiveOp;
using workload::CollectiveWork;

/** Accumulates flows per round and batch; equal (src, dst) flows of a batch are merged. */
class PlanBuilder {
 public:
  explicit PlanBuilder(const Topology& topo) : topo_(topo) {}
  void add(std::size_t round, const std::string& name, long long batch, int src, int dst, double bytes) {
    if (!(bytes > 0.0) || src == dst) return;
    if (names_.size() <= round) names_.resize(round + 1);
    if (names_[round].empty()) names_[round] = name;
    // Groups that share a torus line add to the same flows: one entry per (round, batch, source, destination), its
    // bytes summed in the order they come.
    const Key k{static_cast<std::uint32_t>(round), batch, src, dst};
    std::uint32_t& slot = slots_.find(
        KeyHash{}(k), entries_.size(), [&](std::uint32_t e) { return entries_[e - 1].k == k; },
        [&](std::uint32_t e) { return KeyHash{}(entries_[e - 1].k); });
    if (slot != 0) {
      entries_[slot - 1].bytes += bytes;
      return;
    }
    entries_.push_back({k, bytes});
    slot = static_cast<std::uint32_t>(entries_.size());
  }
  /** A group's latency in `round`: `steps` sequential steps of `step_s` each; the round keeps the largest. */
  void latency(std::size_t round, int steps, double step_s) {
    if (steps <= 0) return;
    if (alpha_.size() <= round) alpha_.resize(round + 1);
    auto& [a, n] = alpha_[round];
    if (steps * step_s > a || (steps * step_s == a && steps > n)) {
      a = steps * step_s;
      n = steps;
    }
  }
  /** A torus line's ring loads (emit_ring): up[x] on ring[x] -> ring[x+1], down[x] on ring[x] -> ring[x-1]. Groups on the
   *  same line (same round and batch) are summed per link here and the line's flows entered once, in finish(): each
   *  flow receives the same additions in the same order as if every group entered its own (on a line of more than 2
   *  chips each flow is one link of the line), at one look-up per line instead of one per group and link. */
  void ring(std::size_t round, const std::string& name, long long batch, const std::vector<int>& ring, const std::vector<double>& up,
            const std::vector<double>& down) {
    const std::size_t n = ring.size();
    if (n <= 2) {  // both directions are one flow: entered as they come
      neighbour_flows(ring, up, down, [&](int src, int dst, double bytes) { add(round, name, batch, src, dst, bytes); });
      return;
    }
    bool any = false;
    for (std::size_t x = 0; x < n && !any; ++x) any = up[x] > 0.0 || down[x] > 0.0;
    if (!any) return;
    if (names_.size() <= round) names_.resize(round + 1);
    if (names_[round].empty()) names_[round] = name;  // as the first flow entered in the round would name it
    auto [it, fresh] = line_index_.emplace(std::make_pair(round, batch), lines_.size());
    if (fresh) lines_.push_back({round, batch, ring, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)});
    Line& line = lines_[it->second];
    if (line.ring != ring) throw Error("internal error: two rings with one batch key");
    for (std::size_t x = 0; x < n; ++x) {
      line.up[x] += up[x];
      line.down[x] += down[x];
    }
  }
  int border(int site) const { return topo_.chips() + site; }
  TrafficPlan finish(std::string algorithm, double intra_chip) {
    // A line's flows are distinct (a ring of more than 2 chips has no two equal neighbour pairs). Where no flow entered
    // by add() has the line's (round, batch), they need neither the hash table nor the global sort: each line's flows
    // are sorted on their own and merged, in order, with the others. A line sharing its batch with such flows enters
    // them through add(), which sums equal flows.
    std::vector<std::pair<std::uint32_t, long long>> direct;
    direct.reserve(entries_.size());
    for (const Entry& e : entries_) direct.emplace_back(e.k.round, e.k.batch);
    std::sort(direct.begin(), direct.end());
    direct.erase(std::unique(direct.begin(), direct.end()), direct.end());
    std::vector<const Line*> alone;
    for (const Line& line : lines_) {
      if (!std::binary_search(direct.begin(), direct.end(), std::make_pair(static_cast<std::uint32_t>(line.round), line.batch))) {
        alone.push_back(&line);
        continue;
      }
      const std::string& name = names_[line.round];
      neighbour_flows(line.ring, line.up, line.down,
                      [&](int src, int dst, double bytes) { add(line.round, name, line.batch, src, dst, bytes); });
    }
    TrafficPlan p;
    p.algorithm = std::move(algorithm);
    p.intra_chip_bytes = intra_chip;
    // Rounds in order, batches by key, each batch's flows by (source, destination).
    const auto before = [](const Entry& a, const Entry& b) {
      return std::tie(a.k.round, a.k.batch, a.k.src, a.k.dst) < std::tie(b.k.round, b.k.batch, b.k.src, b.k.dst);
    };
    std::sort(entries_.begin(), entries_.end(), before);
    std::sort(alone.begin(), alone.end(), [](const Line* a, const Line* b) { return std::tie(a->round, a->batch) < std::tie(b->round, b->batch); });
    const auto direct_end = static_cast<std::ptrdiff_t>(entries_.size());
    for (const Line* line : alone) {
      const std::size_t first = entries_.size();
      const auto round = static_cast<std::uint32_t>(line->round);
      neighbour_flows(line->ring, line->up, line->down, [&](int src, int dst, double bytes) {
        if (bytes > 0.0) entries_.push_back({{round, line->batch, src, dst}, bytes});
      });
      std::sort(entries_.begin() + static_cast<std::ptrdiff_t>(first), entries_.end(), before);
    }
    std::inplace_merge(entries_.begin(), entries_.begin() + direct_end, entries_.end(), before);
    lines_.clear();
    line_index_.clear();
    for (std::size_t i = 0; i < entries_.size();) {
      const std::uint32_t r = entries_[i].k.round;
      Round round;
      round.name = names_[r];
      if (r < alpha_.size()) std::tie(round.alpha_s, round.steps) = alpha_[r];
      while (i < entries_.size() && entries_[i].k.round == r) {
        Batch b;
        const long long key = entries_[i].k.batch;
        for (; i < entries_.size() && entries_[i].k.round == r && entries_[i].k.batch == key; ++i)
          b.flows.push_back({entries_[i].k.src, entries_[i].k.dst, entries_[i].bytes});
        round.batches.push_back(std::move(b));
      }
      p.rounds.push_back(std::move(round));
    }
    return p;
  }

 private:
  /** f(source, destination, bytes) for a ring's neighbour flows: ring[x] -> ring[x+1] carrying up[x], then
   *  ring[x] -> ring[x-1] carrying down[x], for x in order. */
  template <class F>
  static void neighbour_flows(const std::vector<int>& ring, const std::vector<double>& up, const std::vector<double>& down, F&& f) {
    const std::size_t n = ring.size();
    for (std::size_t x = 0; x < n; ++x) {
      f(ring[x], ring[(x + 1) % n], up[x]);
      f(ring[x], ring[(x + n - 1) % n], down[x]);
    }
  }
  struct Key {
    std::uint32_t round;
    long long batch;
    int src;
    int dst;
    bool operator==(const Key& o) const { return round == o.round && batch == o.batch && src == o.src && dst == o.dst; }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      std::uint64_t h = static_cast<std::uint64_t>(k.batch) * 0x9E3779B97F4A7C15ULL;
      h ^= (static_cast<std::uint64_t>(k.round) << 40) ^ (static_cast<std::uint64_t>(static_cast<std::uint32_t>(k.src)) << 20) ^
           static_cast<std::uint32_t>(k.dst);
      h ^= h >> 29;
      h *= 0xBF58476D1CE4E5B9ULL;
      return static_cast<std::size_t>(h ^ (h >> 32));
    }
  };
  struct Entry {
    Key k;
    double bytes;
  };
  const Topology& topo_;
  std::vector<Entry> entries_;        ///< one per flow, in order of arrival
  ProbeTable<std::uint32_t> slots_;   ///< hash table of entries_: 1 + index, 0 empty
  std::vector<std::string> names_;
  std::vector<std::pair<double, int>> alpha_;  ///< per round: (alpha_s, steps)
  struct Line {
    std::size_t round;
    long long batch;
    std::vector<int> ring;
    std::vector<double> up, down;
  };
  std::vector<Line> lines_;  ///< ring(): torus lines' summed loads, in order of first arrival
  std::map<std::pair<std::size_t, long long>, std::size_t> line_index_;
};

/** Batching on GPU clusters. A round's batches run as concurrent parallel tasks; SimGrid re-solves its
 *  sharing system at every task completion, so hundreds of small tasks per round cost far more than a
 *  few larger ones. A round ends when its slowest batch does (the next phase waits for all groups), so
 *  merging independent groups into one batch does not change the round's duration when they are
 *  equally loaded, and only slightly when they are not. */
constexpr long long kNodesPerBatch = 16;  ///< NVLink rounds: nodes per batch
constexpr long long kRailBatches = 8;     ///< ring-across-nodes rounds: batches per rail index

/** Batch keys: kind in the top bits so different structures never merge by accident. Torus rings are
 *  keyed by their first chip, so groups sharing a physical ring share one parallel task (their traffic
 *  adds up on the same links anyway, and fewer tasks keep SimGrid's solver fast). */
long long key(int kind, long long a, long long b = 0, long long c = 0) {
  return (static_cast<long long>(kind) << 56) ^ (a << 36) ^ (b << 18) ^ c;
}

/** Members of one group inside one site, by chip. */
struct SiteMembers {
  int site = 0;
  std::vector<int> chips;                 ///< distinct chips, ascending
  std::map<int, std::vector<int>> on_chip;  ///< chip -> member indices (into the group)
  int members = 0;
};

std::map<int, SiteMembers> by_site(const std::vector<int>& group, const Topology& topo, const workload::DeviceMesh& mesh) {
  std::map<int, SiteMembers> out;
  for (std::size_t i = 0; i < group.size(); ++i) {
    const int chip = mesh.chip_of(group[i]);
    SiteMembers& sm = out[topo.site_of(chip)];
    sm.site = topo.site_of(chip);
    auto& v = sm.on_chip[chip];
    if (v.empty()) sm.chips.push_back(chip);
    v.push_back(static_cast<int>(i));
    ++sm.members;
  }
  for (auto& [s, sm] : out) std::sort(sm.chips.begin(), sm.chips.end());
  return out;
}

/** A group's chips as a Cartesian product of coordinate sets on their torus (whole or partial rings),
 *  every chip holding the same number of members. Mesh-TensorFlow-style layouts give such groups. */
struct ProductGrid {
  std::vector<int> spanned;                ///< dimensions with more than one coordinate
  std::vector<std::vector<int>> coords;    ///< per dimension: the coordinates used, ascending
};

std::optional<ProductGrid> product_grid(const SiteMembers& sm, const Topology& topo) {
  const Site& site = topo.sites()[static_cast<std::size_t>(sm.site)];
  if (site.kind != SiteKind::torus) return std::nullopt;
  const std::size_t per_chip = sm.on_chip.begin()->second.size();
  for (const auto& [c, v] : sm.on_chip)
    if (v.size() != per_chip) return std::nullopt;
  ProductGrid g;
  g.coords.resize(site.dims.size());
  std::size_t expected = 1;
  for (std::size_t d = 0; d < site.dims.size(); ++d) {
    std::vector<bool> seen(static_cast<std::size_t>(site.dims[d]), false);
    for (int c : sm.chips) seen[static_cast<std::size_t>(topo.coord(c, d))] = true;
    for (int x = 0; x < site.dims[d]; ++x)
      if (seen[static_cast<std::size_t>(x)]) g.coords[d].push_back(x);
    if (g.coords[d].size() > 1) g.spanned.push_back(static_cast<int>(d));
    expected *= g.coords[d].size();
  }
  if (expected != sm.chips.size()) return std::nullopt;  // not every combination is present
  return g;
}

/** The torus rings along dimension `dim` through the group's chips: one per combination of the other
 *  dimensions' coordinates; each ring lists every chip of the torus line in coordinate order (flows
 *  between members pass through the chips in between). */
std::vector<std::vector<int>> torus_lines(const SiteMembers& sm, const Topology& topo, const ProductGrid& g, int dim) {
  const Site& site = topo.sites()[static_cast<std::size_t>(sm.site)];
  std::vector<int> stride(site.dims.size());
  for (std::size_t d = 0; d < stride.size(); ++d) stride[d] = site.stride(d);
  const auto along = static_cast<std::size_t>(dim);
  std::vector<std::vector<int>> lines;
  std::vector<std::size_t> idx(site.dims.size(), 0);
  while (true) {
    int base = 0;
    for (std::size_t d = 0; d < idx.size(); ++d)
      if (d != along) base += g.coords[d][idx[d]] * stride[d];
    std::vector<int> ring(static_cast<std::size_t>(site.dims[along]));
    for (int x = 0; x < site.dims[along]; ++x) ring[static_cast<std::size_t>(x)] = site.chips[static_cast<std::size_t>(base + x * stride[along])];
    lines.push_back(std::move(ring));
    std::size_t d = 0;
    for (; d < idx.size(); ++d) {
      if (d == along) continue;
      if (++idx[d] < g.coords[d].size()) break;
      idx[d] = 0;
    }
    if (d == idx.size()) break;
  }
  return lines;
}

/** Loads on the directed links of a ring of n positions: up[x] on x -> x+1, down[x] on x -> x-1. */
struct RingLoads {
  std::vector<double> up, down;
  explicit RingLoads(int n) : up(static_cast<std::size_t>(n), 0.0), down(static_cast<std::size_t>(n), 0.0) {}
  /** Adds `v` on the links from position a going up (+1) `hops` steps. */
  void add_up(int a, int hops, double v) {
    const int n = static_cast<int>(up.size());
    for (int h = 0; h < hops; ++h) up[static_cast<std::size_t>((a + h) % n)] += v;
  }
  void add_down(int a, int hops, double v) {
    const int n = static_cast<int>(down.size());
    for (int h = 0; h < hops; ++h) down[static_cast<std::size_t>(((a - h) % n + n) % n)] += v;
  }
};

/** Adds `v` from position a to position b of a ring of n along the shorter direction (ties split evenly),
 *  as the torus' shortest-direction routing does. */
void add_shortest(RingLoads& l, int n, int a, int b, double v) {
  const int up = ((b - a) % n + n) % n, down = n - up;
  if (up == 0) return;
  if (up < down) l.add_up(a, up, v);
  else if (down < up) l.add_down(a, down, v);
  else {
    l.add_up(a, up, v / 2.0);
    l.add_down(a, down, v / 2.0);
  }
}

/** Sequential steps of a ring collective among member positions `pos` (ascending) of a physical ring of n, and
 *  the hops each step crosses. Members spread evenly round the whole ring run a bidirectional algorithm: data
 *  travels both ways and needs floor(m/2) steps of one member spacing each (jax-ml/scaling-book, sharding.md:
 *  a bidirectional AllGather "over floor(N/2) hops"). A group holding a segment (or an irregular subset) has no
 *  ring of its own: its data crosses the segment, m - 1 steps of up to the largest member gap. The same count
 *  bounds a dimension's all-to-all, which forwards shards hop by hop (scaling-book, "AllToAll"). */
std::pair<int, int> ring_steps(int n, const std::vector<int>& pos) {
  const int m = static_cast<int>(pos.size());
  if (m < 2) return {0, 0};
  if (n % m == 0) {
    const int h = n / m;
    bool even = true;
    for (int i = 0; i + 1 < m; ++i) even = even && pos[static_cast<std::size_t>(i) + 1] - pos[static_cast<std::size_t>(i)] == h;
    if (even) return {m / 2, h};
  }
  // Every gap between consecutive members (the wrap included) but the largest is crossed.
  std::vector<int> gaps;
  for (int i = 0; i < m; ++i) {
    const int a = pos[static_cast<std::size_t>(i)], b = pos[static_cast<std::size_t>((i + 1) % m)];
    gaps.push_back(((b - a) % n + n) % n);
  }
  std::sort(gaps.begin(), gaps.end());
  return {m - 1, gaps[gaps.size() - 2]};
}

/** All-to-all among member positions `pos` of a ring of n: every ordered pair exchanges `v` along the
 *  shorter direction (ties split evenly), as the torus' shortest-direction routing does. */
RingLoads ring_a2a(int n, const std::vector<int>& pos, double v) {
  RingLoads l(n);
  if (static_cast<int>(pos.size()) == n && n > 2) {
    std::fill(l.up.begin(), l.up.end(), v * ring_all_to_all_link_load(n));  // closed form, whole ring
    std::fill(l.down.begin(), l.down.end(), v * ring_all_to_all_link_load(n));
    return l;
  }
  for (int a : pos)
    for (int b : pos)
      if (a != b) add_shortest(l, n, a, b, v);
  return l;
}

/** Bidirectional ring over member positions `pos` (ascending): each member sends `v` to the next member
 *  and `v` to the previous one, each along the shorter way round the physical ring. Members filling the
 *  whole ring (or spread evenly round it) use both directions of every link once per logical ring; a group
 *  holding only a segment of the ring closes its logical ring back through its own segment instead of the
 *  long way round through other groups' links (the ring folds onto the segment's links, a line's ring). */
RingLoads ring_neighbours(int n, const std::vector<int>& pos, double v) {
  RingLoads l(n);
  const std::size_t m = pos.size();
  if (m < 2) return l;
  for (std::size_t i = 0; i < m; ++i) {
    const int a = pos[i], b = pos[(i + 1) % m];
    add_shortest(l, n, a, b, v);  // the "up" logical ring: a -> next member
    add_shortest(l, n, b, a, v);  // the "down" logical ring: next member -> a
  }
  return l;
}

/** Emits a ring's link loads as neighbour flows between consecutive chips of `ring`. */
void emit_ring(PlanBuilder& pb, std::size_t round, const std::string& name, long long batch, const std::vector<int>& ring,
               const RingLoads& l) {
  pb.ring(round, name, batch, ring, l.up, l.down);
}

/** Volume from member i to member j of a group (all-to-all). */
struct A2AVolumes {
  double bytes = 0.0;
  const std::vector<double>* send = nullptr;
  const std::vector<double>* recv = nullptr;
  double recv_sum = 0.0;
  int members = 0;
  double operator()(int i, int j) const {
    if (send == nullptr) return bytes / members;
    return bytes * (*send)[static_cast<std::size_t>(i)] * (*recv)[static_cast<std::size_t>(j)] / recv_sum;
  }
  bool uniform() const { return send == nullptr; }
};

/** Direct all-to-all: every pair of chips at once. With `topo` and cross_node_scale < 1 (a per-node dispatch), the
 *  bytes between chips of different NVLink nodes are scaled by it. */
void a2a_direct(PlanBuilder& pb, std::size_t round, const SiteMembers& src, const SiteMembers& dst, const A2AVolumes& vol,
                double& intra_chip, const Topology* topo = nullptr, double cross_node_scale = 1.0) {
  for (int cs : src.chips)
    for (int cd : dst.chips) {
      double v = 0.0;
      for (int i : src.on_chip.at(cs))
        for (int j : dst.on_chip.at(cd)) v += vol(i, j);
      if (cs == cd) {
        intra_chip += v;
        continue;
      }
      if (topo != nullptr && cross_node_scale != 1.0 && topo->node_of(cs) != topo->node_of(cd)) v *= cross_node_scale;
      // Coarse batches (blocks of 64 source chips): many small parallel tasks finishing at different
      // times would make SimGrid re-solve the whole system at every completion.
      pb.add(round, "direct all-to-all", key(1, cs / 64), cs, cd, v);
    }
}

double route_latency(const Topology& topo, int a, int b);

void all_to_all(PlanBuilder& pb, const CollectiveWork& w, std::size_t g, const Topology& topo,
                const workload::DeviceMesh& mesh, std::string& algo, double& intra_chip) {
  const auto& group = w.groups[g];
  A2AVolumes vol;
  vol.bytes = w.bytes_per_device;
  vol.members = static_cast<int>(group.size());
  if (!w.recv_weight.empty()) {
    vol.send = &w.send_weight[g];
    vol.recv = &w.recv_weight[g];
    vol.recv_sum = std::accumulate(vol.recv->begin(), vol.recv->end(), 0.0);
    if (!(vol.recv_sum > 0.0)) return;
  }
  const auto sites = by_site(group, topo, mesh);
  // Across datacenters: everything for another site crosses the WAN between the two borders.
  for (const auto& [s, a] : sites)
    for (const auto& [t, b] : sites) {
      if (s == t) continue;
      double v = 0.0;
      for (const auto& [ca, ia] : a.on_chip)
        for (int i : ia)
          for (const auto& [cb, ib] : b.on_chip)
            for (int j : ib) v += vol(i, j);
      pb.add(0, "cross-site all-to-all", key(2, s, t), pb.border(s), pb.border(t), v);
      pb.latency(0, 1, topo.wan_latency_s);
      algo = "hierarchical cross-site all-to-all";
    }
  for (const auto& [s, sm] : sites) {
    const Site& site = topo.sites()[static_cast<std::size_t>(s)];
    if (sm.chips.size() == 1) {
      for (int i : sm.on_chip.begin()->second)
        for (int j : sm.on_chip.begin()->second) intra_chip += vol(i, j);
      continue;
    }
    auto grid = vol.uniform() ? product_grid(sm, topo) : std::nullopt;
    if (grid && !grid->spanned.empty()) {
      // Dimension-ordered: one round per spanned dimension. Every chip holds D = k u M bytes and sends
      // D/m to each of the m members of its line, along the shorter direction of the torus ring.
      const double k = static_cast<double>(sm.on_chip.begin()->second.size());
      const double D = k * (vol.bytes / vol.members) * sm.members;
      intra_chip += sm.chips.size() * k * k * (vol.bytes / vol.members);
      for (std::size_t r = 0; r < grid->spanned.size(); ++r) {
        const int dim = grid->spanned[r];
        const auto& pos = grid->coords[static_cast<std::size_t>(dim)];
        const auto lines = torus_lines(sm, topo, *grid, dim);
        const int n = static_cast<int>(lines.front().size());
        const RingLoads loads = ring_a2a(n, pos, D / static_cast<double>(pos.size()));
        const auto [steps, hops] = ring_steps(n, pos);
        pb.latency(r, steps, hops * topo.ici_latency_s);
        const std::string name = fmt::format("all-to-all dim {}", dim);
        for (std::size_t li = 0; li < lines.size(); ++li) emit_ring(pb, r, name, key(3, s, dim, lines[li].front()), lines[li], loads);
      }
      if (algo.empty()) algo = "torus dimension-ordered all-to-all";
      continue;
    }
    if (site.kind == SiteKind::nvlink_fat_tree) {
      // Hierarchical (2DH): group members by node; needs the same number of members per node.
      std::map<int, std::vector<int>> nodes;  // node -> member indices ordered by GPU
      for (int c : sm.chips)
        for (int i : sm.on_chip.at(c)) nodes[topo.node_of(c)].push_back(i);
      const std::size_t per_node = nodes.begin()->second.size();
      bool even = true;
      for (const auto& [n, v] : nodes) even = even && v.size() == per_node;
      if (even && nodes.size() > 1 && mesh.devices_per_chip() == 1) {
        std::vector<std::vector<int>> node_members;
        for (auto& [n, v] : nodes) node_members.push_back(v);
        const std::size_t nn = node_members.size();
        // A per-node dispatch (DeepEP) sends a token once to each node holding its experts, to the GPU of the same
        // in-node index there, which forwards it over NVLink: the rails carry that fraction of the per-copy bytes, the
        // NVLink step every copy. DeepEP forwards chunk by chunk as the network delivers them, so the two run at once
        // on their separate links ("communications via IB and NVLink are fully overlapped", DeepSeek-V3 arXiv
        // 2412.19437 §3.2.2): one round, lasting the slower of the two. NCCL's hierarchical all-to-all (no per-node
        // dispatch) runs its NVLink and network steps one after the other: two rounds.
        const double network_fraction = per_node_network_fraction(w.per_node, static_cast<int>(nn));
        const bool pipelined = w.per_node.top_k > 0;
        const std::size_t rail_round = pipelined ? 0 : 1;
        const std::string nvlink_name = pipelined ? "all-to-all per-node (rails, NVLink forwarding at once)" : "all-to-all intra-node (NVLink)";
        // Round 0 (NVLink): (a,i) -> (a,j) carries everything i sends to rank j of every node.
        for (std::size_t a = 0; a < nn; ++a)
          for (std::size_t i = 0; i < per_node; ++i)
            for (std::size_t j = 0; j < per_node; ++j) {
              if (i == j) continue;
              double v = 0.0;
              for (std::size_t b = 0; b < nn; ++b) v += vol(node_members[a][i], node_members[b][j]);
              pb.add(0, nvlink_name, key(4, s, topo.node_of(mesh.chip_of(group[static_cast<std::size_t>(node_members[a][0])])) / kNodesPerBatch),
                     mesh.chip_of(group[static_cast<std::size_t>(node_members[a][i])]),
                     mesh.chip_of(group[static_cast<std::size_t>(node_members[a][j])]), v);
            }
        // Round 1 (rails): (a,j) -> (b,j) carries what node a's members send to (b,j).
        for (std::size_t j = 0; j < per_node; ++j)
          for (std::size_t a = 0; a < nn; ++a)
            for (std::size_t b = 0; b < nn; ++b) {
              if (a == b) continue;
              double v = 0.0;
              for (std::size_t i = 0; i < per_node; ++i) v += vol(node_members[a][i], node_members[b][j]);
              v *= network_fraction;
              pb.add(rail_round, "all-to-all inter-node (rails)", key(5, s, static_cast<long long>(j)),
                     mesh.chip_of(group[static_cast<std::size_t>(node_members[a][j])]),
                     mesh.chip_of(group[static_cast<std::size_t>(node_members[b][j])]), v);
            }
        // One NVLink step, then one network step (NCCL's per-step latencies; the peers are served concurrently); the
        // per-node dispatch pays both in its one round (a token crosses the network, then is forwarded).
        if (pipelined) {
          pb.latency(0, 1, topo.nvlink_latency_s + topo.nic_latency_s);
        } else {
          pb.latency(0, 1, topo.nvlink_latency_s);
          pb.latency(1, 1, topo.nic_latency_s);
        }
        // Each GPU's share to itself stays on the chip, as in the torus and direct paths.
        for (const auto& members : node_members)
          for (int i : members) intra_chip += vol(i, i);
        if (algo.empty())
          algo = network_fraction < 1.0 ? "per-node all-to-all (rails once per node, NVLink forwarding)"
                                        : "hierarchical all-to-all (NVLink + rails)";
        continue;
      }
    }
    double cross_node_scale = 1.0;
    if (site.kind == SiteKind::nvlink_fat_tree && w.per_node.top_k > 0) {
      std::set<int> nodes;
      for (int c : sm.chips) nodes.insert(topo.node_of(c));
      cross_node_scale = per_node_network_fraction(w.per_node, static_cast<int>(nodes.size()));
    }
    a2a_direct(pb, 0, sm, sm, vol, intra_chip, &topo, cross_node_scale);
    // One step: every member sends to all the others at once, so the round pays the longest route's latency
    // once (as the hierarchical path's one NVLink and one network step).
    double step_s = 0.0;
    for (int a : sm.chips)
      for (int b : sm.chips)
        if (a != b) step_s = std::max(step_s, route_latency(topo, a, b));
    pb.latency(0, 1, step_s);
    if (algo.empty()) algo = "direct all-to-all";
  }
}

/** One-way latency of the route between two chips of one site: hops on the torus (shorter way round each
 *  dimension) x the ICI hop latency; on a fat-tree one NVLink step inside a node, else one network step. */
double route_latency(const Topology& topo, int a, int b) {
  const Site& site = topo.sites()[static_cast<std::size_t>(topo.site_of(a))];
  if (site.kind == SiteKind::torus) {
    const auto ca = topo.coords(a), cb = topo.coords(b);
    int hops = 0;
    for (std::size_t d = 0; d < ca.size(); ++d) {
      const int up = ((cb[d] - ca[d]) % site.dims[d] + site.dims[d]) % site.dims[d];
      hops += std::min(up, site.dims[d] - up);
    }
    return hops * topo.ici_latency_s;
  }
  return topo.node_of(a) == topo.node_of(b) ? topo.nvlink_latency_s : topo.nic_latency_s;
}

enum class Half { reduce_scatter, all_gather };

/** Orders a grid's spanned dimensions widest first, for a reduction: the reduce-scatter shrinks the buffer by the most
 *  members before the narrower dimensions, which are the ones whose partial rings other groups share (a group of 4
 *  chips spaced 8 apart on a 32-ring shares every link with 7 other groups); the all-gather runs the mirror order. */
void widest_first(ProductGrid& grid) {
  std::stable_sort(grid.spanned.begin(), grid.spanned.end(), [&](int a, int b) {
    return grid.coords[static_cast<std::size_t>(a)].size() > grid.coords[static_cast<std::size_t>(b)].size();
  });
}

/** Whether member positions `pos` (ascending) of a physical ring of n are the whole ring or one unbroken segment of it
 *  (the wrap included): every gap between consecutive members but at most one is a single hop. */
bool unbroken(int n, const std::vector<int>& pos) {
  const std::size_t m = pos.size();
  int long_gaps = 0;
  for (std::size_t i = 0; i < m; ++i) {
    const int gap = ((pos[(i + 1) % m] - pos[i]) % n + n) % n;
    if (gap != 1) ++long_gaps;
  }
  return long_gaps <= 1;
}

/** One half (reduce-scatter or all-gather) of a `bytes` buffer among one site's members, from
 *  `first_round`. Returns the number of rounds used. */
std::size_t site_half(PlanBuilder& pb, const SiteMembers& sm, const std::optional<ProductGrid>& site_grid, const Topology& topo,
                      const workload::DeviceMesh& mesh, double bytes, std::size_t first_round, Half half, std::string& algo) {
  const Site& site = topo.sites()[static_cast<std::size_t>(sm.site)];
  std::size_t r = first_round;
  if (sm.chips.size() == 1) return 0;  // devices of one chip reduce locally
  const char* what = half == Half::reduce_scatter ? "reduce-scatter" : "all-gather";
  if (site_grid && !site_grid->spanned.empty()) {
    // The grid's spanned dimensions come widest first (widest_first): the reduce-scatter runs them in that order, the
    // all-gather in the mirror order. Over several dimensions whose links are the group's own (it holds the whole
    // torus line, the scaling-book's mesh axes, or one unbroken segment of it, whose folded ring stays on the links
    // between its members) the collective uses them all at once (jax-ml/scaling-book, sharding.md: gathering over
    // several ICI axes "increases the available bandwidth by a factor of N_axes"): the buffer is split into one part
    // per such dimension, and part j takes those dimensions in the order rotated by j, so that in a round each of
    // them carries a different part. A dimension where the group holds every h-th chip keeps its place in every
    // part's order: its links are shared with the groups in between, which the widest-first order keeps off them
    // until the buffer has shrunk. Each part pays every dimension's ring steps once, so a round's latency is part 0's
    // dimension's (the sum over the rounds is the sum over the dimensions, the scaling-book's longest path).
    const ProductGrid* grid = &*site_grid;
    const std::size_t k = grid->spanned.size();
    std::vector<std::size_t> whole;  // positions in grid->spanned of the dimensions whose links are the group's own
    for (std::size_t i = 0; i < k; ++i) {
      const auto d = static_cast<std::size_t>(grid->spanned[i]);
      if (unbroken(site.dims[d], grid->coords[d])) whole.push_back(i);
    }
    const std::size_t parts = std::max<std::size_t>(1, whole.size());
    const double part = bytes / static_cast<double>(parts);
    for (std::size_t j = 0; j < parts; ++j) {
      std::vector<int> dims(grid->spanned);
      for (std::size_t w = 0; w < whole.size(); ++w) dims[whole[w]] = grid->spanned[whole[(w + j) % whole.size()]];
      // Bidirectional ring per spanned dimension: half the part each way, (m-1)/m of it crosses each hop; the part
      // shrinks by m after each reduce-scatter dimension (the all-gather mirrors it).
      std::vector<double> sizes{part};
      for (int dim : dims) sizes.push_back(sizes.back() / static_cast<double>(grid->coords[static_cast<std::size_t>(dim)].size()));
      for (std::size_t step = 0; step < k; ++step) {
        const std::size_t idx = half == Half::all_gather ? k - 1 - step : step;
        const int dim = dims[idx];
        const auto& pos = grid->coords[static_cast<std::size_t>(dim)];
        const double m = static_cast<double>(pos.size());
        const auto lines = torus_lines(sm, topo, *grid, dim);
        const int n = static_cast<int>(lines.front().size());
        const RingLoads loads = ring_neighbours(n, pos, (m - 1.0) / m * sizes[idx] / 2.0);
        if (j == 0) {
          const auto [steps, hops] = ring_steps(n, pos);
          pb.latency(r + step, steps, hops * topo.ici_latency_s);
        }
        const std::string name = fmt::format("{} dim {}", what, dim);
        for (std::size_t li = 0; li < lines.size(); ++li)
          emit_ring(pb, r + step, name, key(6, sm.site, dim, lines[li].front()), lines[li], loads);
      }
    }
    r += k;
    if (algo.empty()) algo = "torus bidirectional ring per dimension";
    return r - first_round;
  }
  if (site.kind == SiteKind::nvlink_fat_tree && mesh.devices_per_chip() == 1) {
    std::map<int, std::vector<int>> nodes;
    for (int c : sm.chips) nodes[topo.node_of(c)].push_back(c);
    const std::size_t k = nodes.begin()->second.size();
    bool even = true;
    for (const auto& [n, v] : nodes) even = even && v.size() == k;
    if (even) {
      // In the node (NVLink): every GPU sends each peer its 1/k shard; across nodes: a ring along each
      // rail on the node-local shard (Megatron/NCCL-style hierarchical all-reduce).
      const double shard = bytes / static_cast<double>(k);
      auto node_round = [&] {
        if (k < 2) return;
        for (const auto& [n, v] : nodes)
          for (int a : v)
            for (int b : v) pb.add(r, fmt::format("{} intra-node (NVLink)", what), key(7, sm.site, n / kNodesPerBatch), a, b, shard);
        pb.latency(r, static_cast<int>(k) - 1, topo.nvlink_latency_s);  // NCCL ring in the node: k - 1 steps
        ++r;
      };
      auto rail_round = [&] {
        if (nodes.size() < 2) return;
        std::vector<std::vector<int>> node_list;
        for (auto& [n, v] : nodes) node_list.push_back(v);
        const double nn = static_cast<double>(node_list.size());
        for (std::size_t j = 0; j < k; ++j)
          for (std::size_t a = 0; a < node_list.size(); ++a)
            pb.add(r, fmt::format("{} ring across nodes (rails)", what), key(8, sm.site, static_cast<long long>(j), node_list[0][j] % kRailBatches),
                   node_list[a][j], node_list[(a + 1) % node_list.size()][j], (nn - 1.0) / nn * shard);
        pb.latency(r, static_cast<int>(node_list.size()) - 1, topo.nic_latency_s);  // ring along the rail
        ++r;
      };
      if (half == Half::reduce_scatter) {
        node_round();
        rail_round();
      } else {
        rail_round();
        node_round();
      }
      if (algo.empty()) algo = "hierarchical ring (NVLink + rails)";
      return r - first_round;
    }
  }
  // Generic ring over the member chips in order, routed end to end: m - 1 steps, each as slow as the
  // slowest neighbour pair's route.
  const double n = static_cast<double>(sm.chips.size());
  double step_s = 0.0;
  for (std::size_t i = 0; i < sm.chips.size(); ++i) {
    const int a = sm.chips[i], b = sm.chips[(i + 1) % sm.chips.size()];
    pb.add(r, fmt::format("ring {}", what), key(9, sm.site, static_cast<long long>(i / 256)), a, b, (n - 1.0) / n * bytes);
    step_s = std::max(step_s, route_latency(topo, a, b));
  }
  pb.latency(r, static_cast<int>(sm.chips.size()) - 1, step_s);
  if (algo.empty()) algo = "ring";
  return 1;
}

void reduction(PlanBuilder& pb, const CollectiveWork& w, std::size_t g, const Topology& topo,
               const workload::DeviceMesh& mesh, std::string& algo) {
  const auto sites = by_site(w.groups[g], topo, mesh);
  // Each site's members as a product grid (product_grid), found once for both halves.
  std::map<int, std::optional<ProductGrid>> grids;
  for (const auto& [s, sm] : sites) {
    auto& grid = grids.emplace(s, sm.chips.size() > 1 ? product_grid(sm, topo) : std::nullopt).first->second;
    if (grid) widest_first(*grid);
  }
  const bool rs = w.op != CollectiveOp::all_gather, ag = w.op != CollectiveOp::reduce_scatter;
  // Rounds line up across sites: reduce-scatter from round 0, the cross-site ring after the longest
  // reduce-scatter, then the all-gather.
  std::size_t r = 0;
  if (rs) {
    std::size_t longest = 0;
    for (const auto& [s, sm] : sites) longest = std::max(longest, site_half(pb, sm, grids.at(s), topo, mesh, w.bytes_per_device, 0, Half::reduce_scatter, algo));
    r = longest;
  }
  if (sites.size() > 1) {
    const double S = static_cast<double>(sites.size());
    const double factor = (rs && ag) ? 2.0 * (S - 1.0) / S : (S - 1.0) / S;
    std::vector<int> order;
    for (const auto& [s, sm] : sites) order.push_back(s);
    for (std::size_t i = 0; i < order.size(); ++i)
      pb.add(r, "ring across datacenters (WAN)", key(10, order[i]), pb.border(order[i]),
             pb.border(order[(i + 1) % order.size()]), factor * w.bytes_per_device);
    pb.latency(r, (rs && ag ? 2 : 1) * (static_cast<int>(order.size()) - 1), topo.wan_latency_s);
    algo = "hierarchical cross-site ring";
    ++r;
  }
  if (ag)
    for (const auto& [s, sm] : sites) site_half(pb, sm, grids.at(s), topo, mesh, w.bytes_per_device, r, Half::all_gather, algo);
}

void send_recv(PlanBuilder& pb, const CollectiveWork& w, const Topology& topo, const workload::DeviceMesh& mesh,
               double& intra_chip) {
  for (const auto& pair : w.groups) {
    if (pair.size() != 2) throw Error("send_recv groups must be (source, destination) pairs");
    const int a = mesh.chip_of(pair[0]), b = mesh.chip_of(pair[1]);
    if (a == b) {
      intra_chip += w.bytes_per_device;
      continue;
    }
    const int sa = topo.site_of(a), sb = topo.site_of(b);
    if (sa != sb)
      pb.add(0, "send/recv across datacenters", key(11, sa, sb), pb.border(sa), pb.border(sb), w.bytes_per_device);
    else
      pb.add(0, "send/recv", key(12, a / 64), a, b, w.bytes_per_device);
  }
}

}  // namespace

TrafficPlan plan_collective(const CollectiveWork& work, const Topology& topology, const workload::DeviceMesh& mesh) {
  PlanBuilder pb(topology);
  std::string algo;
  double intra_chip = 0.0;
  if (!(work.bytes_per_device > 0.0)) return pb.finish("none", 0.0);
  switch (work.op) {
    case CollectiveOp::all_to_all:
      for (std::size_t g = 0; g < work.groups.size(); ++g)
        if (work.groups[g].size() > 1) all_to_all(pb, work, g, topology, mesh, algo, intra_chip);
      break;
    case CollectiveOp::all_reduce:
    case CollectiveOp::reduce_scatter:
    case CollectiveOp::all_gather:
      for (std::size_t g = 0; g < work.groups.size(); ++g)
        if (work.groups[g].size() > 1) reduction(pb, work, g, topology, mesh, algo);
      break;
    case CollectiveOp::send_recv: send_recv(pb, work, topology, mesh, intra_chip); break;
  }
  TrafficPlan plan = pb.finish(algo.empty() ? "intra-chip" : algo, intra_chip);
  // Point-to-point sends are not collectives: no collective launch cost.
  if (!plan.empty() && work.op != CollectiveOp::send_recv) plan.overhead_s = topology.collective_overhead_s;
  return plan;
}

}  // namespace moesim::system
