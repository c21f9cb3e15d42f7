// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "moesim/core/error.hpp"

namespace moesim::kernels {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

void require(bool ok, const char* where, const std::string& what) {
  if (!ok) throw Error(std::string(where) + ": " + what);
}

double scale_or_default(double scale, std::int64_t d_head) {
  return scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(d_head));
}

}  // namespace

std::int64_t DecodeBatch::max_len() const {
  std::int64_t m = 0;
  for (std::int32_t l : kv_lens) m = std::max<std::int64_t>(m, l);
  return m;
}

void validate(const DecodeBatch& batch, const PagedKvCache& cache) {
  constexpr const char* kWhere = "decode attention";
  require(cache.num_blocks >= 1 && cache.block_size >= 1 && cache.kv_heads >= 1 && cache.d_head >= 1, kWhere,
          "the cache needs num_blocks, block_size, kv_heads and d_head >= 1");
  require(batch.q_heads >= 1 && batch.q_heads % cache.kv_heads == 0, kWhere,
          "q_heads = " + str(batch.q_heads) + " must be a positive multiple of kv_heads = " + str(cache.kv_heads));
  require(batch.batch() >= 1, kWhere, "no sequences");
  require(batch.max_blocks >= 1, kWhere, "max_blocks must be >= 1");
  require(static_cast<std::int64_t>(batch.block_table.size()) == batch.batch() * batch.max_blocks, kWhere,
          "block_table holds " + str(static_cast<std::int64_t>(batch.block_table.size())) + " entries, expected B·max_blocks = " +
              str(batch.batch() * batch.max_blocks));
  const std::int64_t elems = cache.num_blocks * cache.kv_heads * cache.block_size * cache.d_head;
  require(static_cast<std::int64_t>(cache.k.size()) == elems && static_cast<std::int64_t>(cache.v.size()) == elems, kWhere,
          "k and v must hold num_blocks·kv_heads·block_size·d_head = " + str(elems) + " elements");
  require(std::isfinite(cache.k_scale) && cache.k_scale > 0.0 && std::isfinite(cache.v_scale) && cache.v_scale > 0.0,
          kWhere, "k_scale and v_scale must be finite and > 0");
  for (std::int64_t b = 0; b < batch.batch(); ++b) {
    const std::int64_t len = batch.kv_lens[b];
    require(len >= 1, kWhere, "sequence " + str(b) + " has KV length " + str(len) + " (must be >= 1)");
    const std::int64_t pages = (len + cache.block_size - 1) / cache.block_size;
    require(pages <= batch.max_blocks, kWhere,
            "sequence " + str(b) + " needs " + str(pages) + " pages but the block table has " + str(batch.max_blocks) +
                " columns");
    for (std::int64_t p = 0; p < pages; ++p) {
      const std::int32_t blk = batch.block_table[b * batch.max_blocks + p];
      require(blk >= 0 && blk < cache.num_blocks, kWhere,
              "sequence " + str(b) + " page " + str(p) + " names block " + str(blk) + " (allowed: 0.." +
                  str(cache.num_blocks - 1) + ")");
    }
  }
}

std::int64_t decode_splits(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_len, std::int64_t sm_count,
                           std::int64_t waves) {
  if (batch < 1 || kv_heads < 1 || max_len < 1 || sm_count < 1 || waves < 1) {
    throw Error("decode_splits: batch, kv_heads, max_len, sm_count and waves must be >= 1");
  }
  const std::int64_t ctas = batch * kv_heads;
  const std::int64_t target = waves * sm_count;
  if (ctas >= target) return 1;
  const std::int64_t want = (target + ctas - 1) / ctas;
  const std::int64_t by_length = std::max<std::int64_t>(1, max_len / kMinSplitTokens);
  return std::clamp<std::int64_t>(std::min(want, by_length), 1, kMaxSplits);
}

TokenRange split_range(std::int64_t len, std::int64_t splits, std::int64_t split, std::int64_t tile) {
  if (len < 0 || splits < 1 || split < 0 || split >= splits || tile < 1) {
    throw Error("split_range: need len >= 0, splits >= 1, 0 <= split < splits, tile >= 1");
  }
  const std::int64_t per = (len + splits - 1) / splits;
  const std::int64_t chunk = (per + tile - 1) / tile * tile;
  TokenRange r;
  r.begin = std::min(len, split * chunk);
  r.end = std::min(len, (split + 1) * chunk);
  return r;
}

std::vector<std::int32_t> VarlenBatch::cu_q() const {
  std::vector<std::int32_t> cu(q_lens.size() + 1, 0);
  for (std::size_t i = 0; i < q_lens.size(); ++i) cu[i + 1] = cu[i] + q_lens[i];
  return cu;
}

std::vector<std::int32_t> VarlenBatch::cu_kv() const {
  std::vector<std::int32_t> cu(kv_lens.size() + 1, 0);
  for (std::size_t i = 0; i < kv_lens.size(); ++i) cu[i + 1] = cu[i] + kv_lens[i];
  return cu;
}

std::int64_t VarlenBatch::total_q() const {
  std::int64_t n = 0;
  for (std::int32_t l : q_lens) n += l;
  return n;
}

std::int64_t VarlenBatch::total_kv() const {
  std::int64_t n = 0;
  for (std::int32_t l : kv_lens) n += l;
  return n;
}

void validate(const VarlenBatch& batch) {
  constexpr const char* kWhere = "prefill attention";
  require(batch.q_heads >= 1 && batch.kv_heads >= 1 && batch.d_head >= 1 && batch.q_heads % batch.kv_heads == 0, kWhere,
          "need q_heads, kv_heads, d_head >= 1 and q_heads a multiple of kv_heads (got " + str(batch.q_heads) + ", " +
              str(batch.kv_heads) + ", " + str(batch.d_head) + ")");
  require(batch.batch() >= 1 && batch.q_lens.size() == batch.kv_lens.size(), kWhere,
          "need >= 1 sequence and as many KV lengths as query lengths");
  for (std::int64_t b = 0; b < batch.batch(); ++b) {
    require(batch.q_lens[b] >= 1 && batch.q_lens[b] <= batch.kv_lens[b], kWhere,
            "sequence " + str(b) + ": need 1 <= q_len <= kv_len (got " + str(batch.q_lens[b]) + ", " +
                str(batch.kv_lens[b]) + ")");
  }
  constexpr std::int64_t kMaxRows = std::numeric_limits<std::int32_t>::max();
  require(batch.total_q() <= kMaxRows && batch.total_kv() <= kMaxRows, kWhere, "more than 2^31-1 packed rows");
}

namespace ref {

namespace {

/** Running state of an online softmax over one query head (Milakov & Gimelshein 2018,
 *  arXiv:1805.02867; FlashAttention's rescaling). */
struct Online {
  double m = -std::numeric_limits<double>::infinity();
  double l = 0.0;
  std::vector<double> acc;
};

}  // namespace

std::vector<double> decode_attention(const std::vector<float>& q, const DecodeBatch& batch, const PagedKvCache& cache) {
  validate(batch, cache);
  const std::int64_t b_n = batch.batch(), hq = batch.q_heads, dh = cache.d_head;
  const std::int64_t group = hq / cache.kv_heads;
  if (static_cast<std::int64_t>(q.size()) != b_n * hq * dh) {
    throw Error("ref::decode_attention: q holds " + str(static_cast<std::int64_t>(q.size())) +
                " elements, expected B·q_heads·d_head = " + str(b_n * hq * dh));
  }
  const double scale = scale_or_default(batch.softmax_scale, dh);
  std::vector<double> out(static_cast<std::size_t>(b_n * hq * dh), 0.0);
  std::vector<double> s;
  for (std::int64_t b = 0; b < b_n; ++b) {
    const std::int64_t len = batch.kv_lens[b];
    s.assign(static_cast<std::size_t>(len), 0.0);
    for (std::int64_t h = 0; h < hq; ++h) {
      const std::int64_t kvh = h / group;
      const float* qv = q.data() + (b * hq + h) * dh;
      double mx = -std::numeric_limits<double>::infinity();
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t blk = batch.block_table[b * batch.max_blocks + t / cache.block_size];
        const std::int64_t base = cache.index(blk, kvh, t % cache.block_size, 0);
        double dot = 0.0;
        for (std::int64_t d = 0; d < dh; ++d) dot += static_cast<double>(qv[d]) * cache.k[base + d];
        s[t] = scale * cache.k_scale * dot;
        mx = std::max(mx, s[t]);
      }
      double sum = 0.0;
      for (std::int64_t t = 0; t < len; ++t) {
        s[t] = std::exp(s[t] - mx);
        sum += s[t];
      }
      double* o = out.data() + (b * hq + h) * dh;
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t blk = batch.block_table[b * batch.max_blocks + t / cache.block_size];
        const std::int64_t base = cache.index(blk, kvh, t % cache.block_size, 0);
        const double p = s[t] / sum * cache.v_scale;
        for (std::int64_t d = 0; d < dh; ++d) o[d] += p * cache.v[base + d];
      }
    }
  }
  return out;
}

std::vector<double> decode_attention_tiled(const std::vector<float>& q, const DecodeBatch& batch,
                                           const PagedKvCache& cache, std::int64_t splits, std::int64_t tile) {
  validate(batch, cache);
  if (splits < 1 || tile < 1) throw Error("ref::decode_attention_tiled: splits and tile must be >= 1");
  const std::int64_t b_n = batch.batch(), hq = batch.q_heads, dh = cache.d_head;
  const std::int64_t group = hq / cache.kv_heads;
  if (static_cast<std::int64_t>(q.size()) != b_n * hq * dh) throw Error("ref::decode_attention_tiled: q has the wrong size");
  const double scale = scale_or_default(batch.softmax_scale, dh);
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  std::vector<double> out(static_cast<std::size_t>(b_n * hq * dh), 0.0);
  for (std::int64_t b = 0; b < b_n; ++b) {
    const std::int64_t len = batch.kv_lens[b];
    for (std::int64_t kvh = 0; kvh < cache.kv_heads; ++kvh) {
      // Phase 1: one partial (m, l, acc) per split and query head of the group.
      std::vector<std::vector<Online>> part(static_cast<std::size_t>(splits), std::vector<Online>(static_cast<std::size_t>(group)));
      for (std::int64_t sp = 0; sp < splits; ++sp) {
        const TokenRange r = split_range(len, splits, sp, tile);
        for (Online& st : part[sp]) st.acc.assign(static_cast<std::size_t>(dh), 0.0);
        for (std::int64_t t0 = r.begin; t0 < r.end; t0 += tile) {
          const std::int64_t t1 = std::min(r.end, t0 + tile);
          for (std::int64_t g = 0; g < group; ++g) {
            Online& st = part[sp][g];
            const float* qv = q.data() + (b * hq + kvh * group + g) * dh;
            std::vector<double> sc;
            double tile_max = kNegInf;
            for (std::int64_t t = t0; t < t1; ++t) {
              const std::int64_t blk = batch.block_table[b * batch.max_blocks + t / cache.block_size];
              const std::int64_t base = cache.index(blk, kvh, t % cache.block_size, 0);
              double dot = 0.0;
              for (std::int64_t d = 0; d < dh; ++d) dot += static_cast<double>(qv[d]) * cache.k[base + d];
              sc.push_back(scale * cache.k_scale * dot);
              tile_max = std::max(tile_max, sc.back());
            }
            const double m_new = std::max(st.m, tile_max);
            const double alpha = st.m == kNegInf ? 0.0 : std::exp(st.m - m_new);
            st.l *= alpha;
            for (double& a : st.acc) a *= alpha;
            for (std::int64_t t = t0; t < t1; ++t) {
              const double p = std::exp(sc[t - t0] - m_new);
              st.l += p;
              const std::int64_t blk = batch.block_table[b * batch.max_blocks + t / cache.block_size];
              const std::int64_t base = cache.index(blk, kvh, t % cache.block_size, 0);
              for (std::int64_t d = 0; d < dh; ++d) st.acc[d] += p * cache.v[base + d];
            }
            st.m = m_new;
          }
        }
      }
      // Phase 2: combine the splits (empty splits have m = −∞, l = 0 and weigh nothing).
      for (std::int64_t g = 0; g < group; ++g) {
        double mx = kNegInf;
        for (std::int64_t sp = 0; sp < splits; ++sp) mx = std::max(mx, part[sp][g].m);
        double l = 0.0;
        std::vector<double> acc(static_cast<std::size_t>(dh), 0.0);
        for (std::int64_t sp = 0; sp < splits; ++sp) {
          const Online& st = part[sp][g];
          if (st.m == kNegInf) continue;
          const double w = std::exp(st.m - mx);
          l += w * st.l;
          for (std::int64_t d = 0; d < dh; ++d) acc[d] += w * st.acc[d];
        }
        double* o = out.data() + (b * hq + kvh * group + g) * dh;
        for (std::int64_t d = 0; d < dh; ++d) o[d] = acc[d] / l * cache.v_scale;
      }
    }
  }
  return out;
}

std::vector<double> prefill_attention(const std::vector<float>& q, const std::vector<float>& k,
                                      const std::vector<float>& v, const VarlenBatch& batch) {
  validate(batch);
  const std::int64_t hq = batch.q_heads, hkv = batch.kv_heads, dh = batch.d_head;
  const std::int64_t group = hq / hkv;
  const std::int64_t tq = batch.total_q(), tk = batch.total_kv();
  if (static_cast<std::int64_t>(q.size()) != tq * hq * dh || static_cast<std::int64_t>(k.size()) != tk * hkv * dh ||
      static_cast<std::int64_t>(v.size()) != tk * hkv * dh) {
    throw Error("ref::prefill_attention: q must hold ΣQ·q_heads·d_head = " + str(tq * hq * dh) +
                " elements and k, v ΣK·kv_heads·d_head = " + str(tk * hkv * dh));
  }
  const double scale = scale_or_default(batch.softmax_scale, dh);
  const auto cq = batch.cu_q();
  const auto ck = batch.cu_kv();
  std::vector<double> out(static_cast<std::size_t>(tq * hq * dh), 0.0);
  std::vector<double> s;
  for (std::int64_t b = 0; b < batch.batch(); ++b) {
    const std::int64_t ql = batch.q_lens[b], kl = batch.kv_lens[b], offset = kl - ql;
    for (std::int64_t i = 0; i < ql; ++i) {
      const std::int64_t keys = batch.causal ? i + offset + 1 : kl;
      s.assign(static_cast<std::size_t>(keys), 0.0);
      for (std::int64_t h = 0; h < hq; ++h) {
        const std::int64_t kvh = h / group;
        const float* qv = q.data() + ((cq[b] + i) * hq + h) * dh;
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < keys; ++j) {
          const float* kv = k.data() + ((ck[b] + j) * hkv + kvh) * dh;
          double dot = 0.0;
          for (std::int64_t d = 0; d < dh; ++d) dot += static_cast<double>(qv[d]) * kv[d];
          s[j] = scale * dot;
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (std::int64_t j = 0; j < keys; ++j) {
          s[j] = std::exp(s[j] - mx);
          sum += s[j];
        }
        double* o = out.data() + ((cq[b] + i) * hq + h) * dh;
        for (std::int64_t j = 0; j < keys; ++j) {
          const float* vv = v.data() + ((ck[b] + j) * hkv + kvh) * dh;
          const double p = s[j] / sum;
          for (std::int64_t d = 0; d < dh; ++d) o[d] += p * vv[d];
        }
      }
    }
  }
  return out;
}

}  // namespace ref
}  // namespace moesim::kernels
