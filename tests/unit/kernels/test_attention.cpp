// SPDX-License-Identifier: Apache-2.0
// Serving attention references against brute force: decode over a paged KV cache (GQA, bf16 and fp8
// KV), the split-KV algorithm of the GPU kernel, prefill over a causal varlen batch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "moesim/core/error.hpp"
#include "moesim/kernels/attention.hpp"
#include "moesim/kernels/reference.hpp"

using namespace moesim::kernels;

namespace {

/** A random paged cache for `lens`, pages handed out in a shuffled order (as a serving system's
 *  allocator would after some churn), plus `spare` unused pages. */
struct Paged {
  DecodeBatch batch;
  PagedKvCache cache;
};

Paged make_paged(const std::vector<std::int32_t>& lens, std::int64_t q_heads, std::int64_t kv_heads, std::int64_t d,
                 std::int64_t block_size, DType kv_dtype, std::uint64_t seed, std::int64_t spare = 3) {
  Paged p;
  p.batch.q_heads = q_heads;
  p.batch.kv_lens = lens;
  std::int64_t pages = 0;
  for (std::int32_t l : lens) {
    const std::int64_t n = (l + block_size - 1) / block_size;
    pages += n;
    p.batch.max_blocks = std::max(p.batch.max_blocks, n);
  }
  p.cache.num_blocks = pages + spare;
  p.cache.block_size = block_size;
  p.cache.kv_heads = kv_heads;
  p.cache.d_head = d;
  const std::size_t elems = static_cast<std::size_t>(p.cache.num_blocks * kv_heads * block_size * d);
  p.cache.k = random_values(elems, seed, 1.0f, kv_dtype);
  p.cache.v = random_values(elems, seed + 1, 1.0f, kv_dtype);
  std::vector<std::int32_t> order(static_cast<std::size_t>(p.cache.num_blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + 2));
  p.batch.block_table.assign(static_cast<std::size_t>(lens.size() * p.batch.max_blocks), -1);  // unused: invalid
  std::size_t next = 0;
  for (std::size_t b = 0; b < lens.size(); ++b) {
    const std::int64_t n = (lens[b] + block_size - 1) / block_size;
    for (std::int64_t i = 0; i < n; ++i) p.batch.block_table[b * p.batch.max_blocks + i] = order[next++];
  }
  return p;
}

/** Sequence b's keys (or values), KV head h, gathered into a contiguous [len × d] matrix (real values). */
std::vector<float> gather(const Paged& p, bool values, std::int64_t b, std::int64_t h) {
  const std::int64_t len = p.batch.kv_lens[b], d = p.cache.d_head;
  std::vector<float> out(static_cast<std::size_t>(len * d));
  const auto& src = values ? p.cache.v : p.cache.k;
  const double scale = values ? p.cache.v_scale : p.cache.k_scale;
  for (std::int64_t t = 0; t < len; ++t) {
    const std::int64_t blk = p.batch.block_table[b * p.batch.max_blocks + t / p.cache.block_size];
    for (std::int64_t i = 0; i < d; ++i) {
      out[t * d + i] = static_cast<float>(scale * src[p.cache.index(blk, h, t % p.cache.block_size, i)]);
    }
  }
  return out;
}

/** softmax(scale·q·Kᵀ)·V for one query row by matrix products (ref::gemm), independent of the
 *  references' loops. */
std::vector<double> brute_attention(const std::vector<float>& qrow, const std::vector<float>& k,
                                    const std::vector<float>& v, std::int64_t keys, std::int64_t d, double scale) {
  auto s = ref::gemm(qrow, k, 1, keys, d, true);
  const double mx = *std::max_element(s.begin(), s.end());
  double sum = 0.0;
  for (double& x : s) {
    x = std::exp(scale * (x - mx));
    sum += x;
  }
  // P·V in fp64 (not through ref::gemm, which would round p to float).
  std::vector<double> o(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t t = 0; t < keys; ++t) {
    for (std::int64_t i = 0; i < d; ++i) o[i] += s[t] / sum * v[t * d + i];
  }
  return o;
}

std::vector<double> brute_decode(const std::vector<float>& q, const Paged& p) {
  const std::int64_t hq = p.batch.q_heads, d = p.cache.d_head, group = hq / p.cache.kv_heads;
  const double scale = p.batch.softmax_scale > 0.0 ? p.batch.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> out;
  for (std::int64_t b = 0; b < p.batch.batch(); ++b) {
    for (std::int64_t h = 0; h < hq; ++h) {
      const std::vector<float> qrow(q.begin() + (b * hq + h) * d, q.begin() + (b * hq + h + 1) * d);
      const auto o = brute_attention(qrow, gather(p, false, b, h / group), gather(p, true, b, h / group),
                                     p.batch.kv_lens[b], d, scale);
      out.insert(out.end(), o.begin(), o.end());
    }
  }
  return out;
}

std::vector<float> random_q(const DecodeBatch& b, std::int64_t d, std::uint64_t seed) {
  return random_values(static_cast<std::size_t>(b.batch() * b.q_heads * d), seed, 1.0f, DType::bf16);
}

}  // namespace

TEST_CASE("kernels::ref::decode_attention: equals softmax(qKᵀ/√d)V gathered through the block table") {
  SECTION("GQA, bf16 KV, pages shuffled, lengths not multiples of the page") {
    const Paged p = make_paged({1, 17, 64, 100}, 8, 2, 16, 16, DType::bf16, 7);
    const auto q = random_q(p.batch, 16, 8);
    CHECK(ref::relative_frobenius_error(ref::decode_attention(q, p.batch, p.cache), brute_decode(q, p)) < 1e-12);
  }
  SECTION("fp8 KV with per-tensor scales") {
    Paged p = make_paged({40, 5}, 4, 4, 8, 4, DType::fp8, 21);
    p.cache.k_scale = 0.125;
    p.cache.v_scale = 3.0;
    p.batch.softmax_scale = 0.7;
    const auto q = random_q(p.batch, 8, 22);
    const auto got = ref::decode_attention(q, p.batch, p.cache);
    CHECK(ref::relative_frobenius_error(got, brute_decode(q, p)) < 1e-12);
    // The V scale scales the output linearly.
    Paged p2 = p;
    p2.cache.v_scale = 6.0;
    const auto got2 = ref::decode_attention(q, p2.batch, p2.cache);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got2[i] == Approx(2.0 * got[i]).epsilon(1e-12));
  }
}

TEST_CASE("kernels::ref::decode_attention: properties of attention") {
  SECTION("one cached token: the output is that token's value") {
    const Paged p = make_paged({1, 1}, 2, 1, 8, 16, DType::bf16, 3);
    const auto q = random_q(p.batch, 8, 4);
    const auto out = ref::decode_attention(q, p.batch, p.cache);
    for (std::int64_t b = 0; b < 2; ++b) {
      const std::int64_t blk = p.batch.block_table[b * p.batch.max_blocks];
      for (std::int64_t h = 0; h < 2; ++h) {
        for (std::int64_t i = 0; i < 8; ++i) CHECK(out[(b * 2 + h) * 8 + i] == Approx(p.cache.v[p.cache.index(blk, 0, 0, i)]));
      }
    }
  }
  SECTION("the page order does not matter, nor the page size") {
    const Paged a = make_paged({50, 33}, 4, 2, 8, 16, DType::bf16, 5);
    // Same tokens in pages of 4 slots: copy every token to its new place.
    Paged b = make_paged({50, 33}, 4, 2, 8, 4, DType::bf16, 99);
    for (std::int64_t s = 0; s < 2; ++s) {
      for (std::int64_t t = 0; t < a.batch.kv_lens[s]; ++t) {
        for (std::int64_t h = 0; h < 2; ++h) {
          for (std::int64_t i = 0; i < 8; ++i) {
            const auto src = a.cache.index(a.batch.block_table[s * a.batch.max_blocks + t / 16], h, t % 16, i);
            const auto dst = b.cache.index(b.batch.block_table[s * b.batch.max_blocks + t / 4], h, t % 4, i);
            b.cache.k[dst] = a.cache.k[src];
            b.cache.v[dst] = a.cache.v[src];
          }
        }
      }
    }
    const auto q = random_q(a.batch, 8, 6);
    CHECK(ref::relative_frobenius_error(ref::decode_attention(q, b.batch, b.cache), ref::decode_attention(q, a.batch, a.cache)) <
          1e-14);
  }
  SECTION("GQA equals multi-head attention with each KV head repeated for its query heads") {
    const Paged g = make_paged({29, 70}, 6, 2, 8, 8, DType::bf16, 11);
    Paged m = g;
    m.cache.kv_heads = 6;
    m.cache.k.assign(static_cast<std::size_t>(m.cache.num_blocks * 6 * 8 * 8), 0.0f);
    m.cache.v = m.cache.k;
    for (std::int64_t blk = 0; blk < g.cache.num_blocks; ++blk) {
      for (std::int64_t h = 0; h < 6; ++h) {
        for (std::int64_t s = 0; s < 8; ++s) {
          for (std::int64_t i = 0; i < 8; ++i) {
            m.cache.k[m.cache.index(blk, h, s, i)] = g.cache.k[g.cache.index(blk, h / 3, s, i)];
            m.cache.v[m.cache.index(blk, h, s, i)] = g.cache.v[g.cache.index(blk, h / 3, s, i)];
          }
        }
      }
    }
    const auto q = random_q(g.batch, 8, 12);
    CHECK(ref::relative_frobenius_error(ref::decode_attention(q, m.batch, m.cache), ref::decode_attention(q, g.batch, g.cache)) <
          1e-14);
  }
}

TEST_CASE("kernels::ref::decode_attention_tiled: split-KV and combine equal the direct softmax") {
  const Paged p = make_paged({1, 31, 32, 33, 300, 1000}, 8, 2, 16, 16, DType::bf16, 41);
  const auto q = random_q(p.batch, 16, 42);
  const auto want = ref::decode_attention(q, p.batch, p.cache);
  for (std::int64_t splits : {1, 2, 3, 7, 64}) {
    for (std::int64_t tile : {1, 8, 32}) {
      INFO("splits " << splits << " tile " << tile);
      // many splits leave short sequences with empty splits: they must weigh nothing
      CHECK(ref::relative_frobenius_error(ref::decode_attention_tiled(q, p.batch, p.cache, splits, tile), want) < 1e-12);
    }
  }
  SECTION("large logits do not overflow: the running maximum is subtracted") {
    const auto big = random_values(q.size(), 43, 200.0f, DType::bf16);
    const auto w = ref::decode_attention(big, p.batch, p.cache);
    for (double x : w) REQUIRE(std::isfinite(x));
    CHECK(ref::relative_frobenius_error(ref::decode_attention_tiled(big, p.batch, p.cache, 5), w) < 1e-12);
  }
}

TEST_CASE("kernels::decode_attention: bad batches are rejected with the reason") {
  Paged p = make_paged({20, 9}, 4, 2, 8, 8, DType::bf16, 51);
  const auto q = random_q(p.batch, 8, 52);
  SECTION("query heads not a multiple of KV heads") {
    p.batch.q_heads = 3;
    CHECK_THROWS_WITH(ref::decode_attention(random_q(p.batch, 8, 1), p.batch, p.cache), Catch::Contains("multiple of kv_heads"));
  }
  SECTION("a page outside the cache") {
    p.batch.block_table[1] = static_cast<std::int32_t>(p.cache.num_blocks);
    CHECK_THROWS_WITH(ref::decode_attention(q, p.batch, p.cache), Catch::Contains("names block"));
  }
  SECTION("a sequence longer than its block-table row") {
    p.batch.kv_lens[0] = static_cast<std::int32_t>(p.batch.max_blocks * 8 + 1);
    CHECK_THROWS_WITH(ref::decode_attention(q, p.batch, p.cache), Catch::Contains("pages but the block table"));
  }
  SECTION("an empty sequence") {
    p.batch.kv_lens[1] = 0;
    CHECK_THROWS_WITH(ref::decode_attention(q, p.batch, p.cache), Catch::Contains("must be >= 1"));
  }
  SECTION("q of the wrong size, a bad scale") {
    CHECK_THROWS_AS(ref::decode_attention(std::vector<float>(3, 1.0f), p.batch, p.cache), moesim::Error);
    p.cache.k_scale = 0.0;
    CHECK_THROWS_WITH(ref::decode_attention(q, p.batch, p.cache), Catch::Contains("k_scale"));
  }
  SECTION("unused block-table entries past a sequence's pages are not checked") {
    REQUIRE(p.batch.max_blocks == 3);                          // sequence 0: 20 tokens in pages of 8
    CHECK(p.batch.block_table[1 * 3 + 2] == -1);               // sequence 1 (9 tokens) uses 2 of its 3 entries
    p.batch.kv_lens[1] = 8;                                    // now 1 page: entry 1 is unused too
    p.batch.block_table[1 * 3 + 1] = 12345;
    CHECK_NOTHROW(ref::decode_attention(q, p.batch, p.cache));
    p.batch.kv_lens[1] = 9;                                    // and used again: refused
    CHECK_THROWS_AS(ref::decode_attention(q, p.batch, p.cache), moesim::Error);
  }
}

TEST_CASE("kernels::decode_splits and split_range: the split-KV plan") {
  // Enough CTAs without splitting (B·H_kv >= 2 waves of 132 SMs): one split.
  CHECK(decode_splits(64, 8, 32768, 132) == 1);
  CHECK(decode_splits(33, 8, 32768, 132) == 1);  // 264 CTAs = 2 waves
  // One sequence, 8 KV heads, 32k tokens: 264 / 8 = 33 splits of ~1000 tokens.
  CHECK(decode_splits(1, 8, 32768, 132) == 33);
  // Short sequences: bounded by kMinSplitTokens (512 / 256 = 2 splits at most).
  CHECK(decode_splits(1, 8, 512, 132) == 2);
  CHECK(decode_splits(1, 8, 255, 132) == 1);
  CHECK(decode_splits(1, 1, 1 << 20, 132) == kMaxSplits);
  CHECK_THROWS_AS(decode_splits(0, 8, 512, 132), moesim::Error);
  // Ranges tile the sequence exactly, in tile multiples, some possibly empty.
  for (std::int64_t len : {1, 31, 32, 33, 1000}) {
    for (std::int64_t splits : {1, 3, 40}) {
      std::int64_t next = 0;
      for (std::int64_t s = 0; s < splits; ++s) {
        const TokenRange r = split_range(len, splits, s);
        CHECK(r.begin == std::min(next, len));
        if (r.end > r.begin && r.end < len) CHECK((r.end - r.begin) % kDecodeTile == 0);
        next = std::max(next, r.end);
      }
      CHECK(next == len);
    }
  }
  CHECK(split_range(1000, 3, 0).end == 352);  // ceil(1000/3) = 334 → 352 = 11 tiles
  CHECK_THROWS_AS(split_range(10, 2, 2), moesim::Error);
}

namespace {
/** Causal attention of one sequence by matrix products: S = QKᵀ·scale with the future masked. */
std::vector<double> brute_prefill(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  const VarlenBatch& b) {
  const auto cq = b.cu_q();
  const auto ck = b.cu_kv();
  const std::int64_t d = b.d_head, group = b.q_heads / b.kv_heads;
  const double scale = b.softmax_scale > 0.0 ? b.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> out(static_cast<std::size_t>(b.total_q() * b.q_heads * d), 0.0);
  for (std::int64_t s = 0; s < b.batch(); ++s) {
    const std::int64_t ql = b.q_lens[s], kl = b.kv_lens[s];
    for (std::int64_t h = 0; h < b.q_heads; ++h) {
      std::vector<float> qm(static_cast<std::size_t>(ql * d)), km(static_cast<std::size_t>(kl * d)), vm(km.size());
      for (std::int64_t i = 0; i < ql; ++i)
        for (std::int64_t x = 0; x < d; ++x) qm[i * d + x] = q[((cq[s] + i) * b.q_heads + h) * d + x];
      for (std::int64_t j = 0; j < kl; ++j) {
        for (std::int64_t x = 0; x < d; ++x) {
          km[j * d + x] = k[((ck[s] + j) * b.kv_heads + h / group) * d + x];
          vm[j * d + x] = v[((ck[s] + j) * b.kv_heads + h / group) * d + x];
        }
      }
      for (std::int64_t i = 0; i < ql; ++i) {
        const std::int64_t keys = b.causal ? i + (kl - ql) + 1 : kl;
        std::vector<float> row(qm.begin() + i * d, qm.begin() + (i + 1) * d);
        const auto o = brute_attention(row, std::vector<float>(km.begin(), km.begin() + keys * d),
                                       std::vector<float>(vm.begin(), vm.begin() + keys * d), keys, d, scale);
        for (std::int64_t x = 0; x < d; ++x) out[((cq[s] + i) * b.q_heads + h) * d + x] = o[x];
      }
    }
  }
  return out;
}

struct Varlen {
  VarlenBatch batch;
  std::vector<float> q, k, v;
};

Varlen make_varlen(std::vector<std::int32_t> q_lens, std::vector<std::int32_t> kv_lens, std::int64_t hq, std::int64_t hkv,
                   std::int64_t d, std::uint64_t seed) {
  Varlen x;
  x.batch.q_lens = std::move(q_lens);
  x.batch.kv_lens = std::move(kv_lens);
  x.batch.q_heads = hq;
  x.batch.kv_heads = hkv;
  x.batch.d_head = d;
  x.q = random_values(static_cast<std::size_t>(x.batch.total_q() * hq * d), seed, 1.0f, DType::bf16);
  x.k = random_values(static_cast<std::size_t>(x.batch.total_kv() * hkv * d), seed + 1, 1.0f, DType::bf16);
  x.v = random_values(static_cast<std::size_t>(x.batch.total_kv() * hkv * d), seed + 2, 1.0f, DType::bf16);
  return x;
}
}  // namespace

TEST_CASE("kernels::ref::prefill_attention: causal varlen batch equals per-sequence masked attention") {
  SECTION("prefill: q_len == kv_len, GQA") {
    const Varlen x = make_varlen({1, 7, 20}, {1, 7, 20}, 4, 2, 8, 61);
    CHECK(ref::relative_frobenius_error(ref::prefill_attention(x.q, x.k, x.v, x.batch), brute_prefill(x.q, x.k, x.v, x.batch)) <
          1e-12);
  }
  SECTION("chunked prefill: the queries are the last q_len of kv_len positions") {
    const Varlen x = make_varlen({5, 3}, {12, 3}, 2, 1, 8, 62);
    CHECK(ref::relative_frobenius_error(ref::prefill_attention(x.q, x.k, x.v, x.batch), brute_prefill(x.q, x.k, x.v, x.batch)) <
          1e-12);
  }
  SECTION("not causal") {
    Varlen x = make_varlen({4, 6}, {9, 6}, 2, 2, 4, 63);
    x.batch.causal = false;
    CHECK(ref::relative_frobenius_error(ref::prefill_attention(x.q, x.k, x.v, x.batch), brute_prefill(x.q, x.k, x.v, x.batch)) <
          1e-12);
  }
}

TEST_CASE("kernels::ref::prefill_attention: causality and consistency with decode") {
  const Varlen x = make_varlen({16, 9}, {16, 9}, 4, 2, 8, 71);
  const auto base = ref::prefill_attention(x.q, x.k, x.v, x.batch);
  SECTION("changing a later key or value leaves earlier queries unchanged") {
    Varlen y = x;
    const std::int64_t row = 10;  // sequence 0, position 10
    for (std::int64_t i = 0; i < 2 * 8; ++i) {
      y.k[row * 2 * 8 + i] += 1.0f;
      y.v[row * 2 * 8 + i] -= 2.0f;
    }
    const auto got = ref::prefill_attention(y.q, y.k, y.v, y.batch);
    for (std::int64_t i = 0; i < 10 * 4 * 8; ++i) CHECK(got[i] == base[i]);        // positions 0-9
    CHECK(ref::relative_frobenius_error(got, base) > 1e-3);                          // later ones moved
    for (std::int64_t i = 16 * 4 * 8; i < 25 * 4 * 8; ++i) CHECK(got[i] == base[i]);  // other sequence
  }
  SECTION("the last query of a prefill is a decode step over the same keys") {
    DecodeBatch db;
    db.q_heads = 4;
    db.kv_lens = {16};
    db.max_blocks = 4;
    db.block_table = {2, 0, 3, 1};
    PagedKvCache c;
    c.num_blocks = 4;
    c.block_size = 4;
    c.kv_heads = 2;
    c.d_head = 8;
    c.k.assign(4 * 2 * 4 * 8, 0.0f);
    c.v = c.k;
    for (std::int64_t t = 0; t < 16; ++t) {
      for (std::int64_t h = 0; h < 2; ++h) {
        for (std::int64_t i = 0; i < 8; ++i) {
          c.k[c.index(db.block_table[t / 4], h, t % 4, i)] = x.k[(t * 2 + h) * 8 + i];
          c.v[c.index(db.block_table[t / 4], h, t % 4, i)] = x.v[(t * 2 + h) * 8 + i];
        }
      }
    }
    const std::vector<float> q_last(x.q.begin() + 15 * 4 * 8, x.q.begin() + 16 * 4 * 8);
    const auto dec = ref::decode_attention(q_last, db, c);
    const std::vector<double> want(base.begin() + 15 * 4 * 8, base.begin() + 16 * 4 * 8);
    CHECK(ref::relative_frobenius_error(dec, want) < 1e-14);
  }
}

TEST_CASE("kernels::VarlenBatch: offsets, totals and validation") {
  VarlenBatch b;
  b.q_lens = {3, 1, 4};
  b.kv_lens = {3, 5, 4};
  b.q_heads = 8;
  b.kv_heads = 2;
  b.d_head = 64;
  CHECK(b.cu_q() == std::vector<std::int32_t>{0, 3, 4, 8});
  CHECK(b.cu_kv() == std::vector<std::int32_t>{0, 3, 8, 12});
  CHECK(b.total_q() == 8);
  CHECK(b.total_kv() == 12);
  CHECK_NOTHROW(validate(b));
  SECTION("q_len above kv_len") {
    b.q_lens[1] = 6;
    CHECK_THROWS_WITH(validate(b), Catch::Contains("q_len <= kv_len"));
  }
  SECTION("mismatched lists") {
    b.kv_lens.pop_back();
    CHECK_THROWS_WITH(validate(b), Catch::Contains("as many KV lengths"));
  }
  SECTION("heads") {
    b.kv_heads = 3;
    CHECK_THROWS_WITH(validate(b), Catch::Contains("multiple of kv_heads"));
  }
}
