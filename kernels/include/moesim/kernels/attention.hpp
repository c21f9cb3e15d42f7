// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <vector>

#include "moesim/kernels/types.hpp"

/** Serving attention, CPU side: the paged KV-cache layout of decode attention, the varlen batch of
 *  prefill attention, the split-KV plan the GPU kernel follows, and fp64 references (plain C++17,
 *  no CUDA headers, unit-tested without a GPU).
 *
 *  Decode attention (one query token per sequence) reads a KV cache kept in fixed-size pages
 *  ("blocks") addressed through a per-sequence block table (vLLM's PagedAttention: Kwon et al. 2023,
 *  arXiv:2309.06180). Page layout "HND" (FlashInfer's name: page, head, slot, dim), so one KV head
 *  of one page is block_size·d_head contiguous elements. Grouped-query attention (Ainslie et al.
 *  2023, arXiv:2305.13245): query head h reads KV head h / (q_heads / kv_heads). */
namespace moesim::kernels {

/** A paged KV cache. k and v hold the *stored* element values ([num_blocks × kv_heads ×
 *  block_size × d_head], as floats; bf16- or E4M3-representable); the real value is the stored
 *  value times k_scale / v_scale (1 for bf16, the per-tensor fp8 scale otherwise). */
struct PagedKvCache {
  std::int64_t num_blocks = 0;
  std::int64_t block_size = 0;  ///< tokens per page
  std::int64_t kv_heads = 0;
  std::int64_t d_head = 0;
  std::vector<float> k;
  std::vector<float> v;
  double k_scale = 1.0;
  double v_scale = 1.0;
  /** Flat index of (block, KV head, slot, dim) in k / v. */
  std::int64_t index(std::int64_t block, std::int64_t head, std::int64_t slot, std::int64_t dim) const {
    return ((block * kv_heads + head) * block_size + slot) * d_head + dim;
  }
};

/** One decode step: B sequences, each with one new query token of q_heads heads, attending its
 *  kv_lens[b] cached tokens (the new token's own K/V already appended). Token t of sequence b is
 *  slot t % block_size of page block_table[b·max_blocks + t / block_size]. */
struct DecodeBatch {
  std::int64_t q_heads = 0;
  std::vector<std::int32_t> kv_lens;      ///< [B], each >= 1
  std::int64_t max_blocks = 0;            ///< columns of block_table
  std::vector<std::int32_t> block_table;  ///< [B × max_blocks]; entries past a sequence's pages are unused
  double softmax_scale = 0.0;             ///< 0 means 1/√d_head

  std::int64_t batch() const { return static_cast<std::int64_t>(kv_lens.size()); }
  std::int64_t max_len() const;
};

/** Checks that a decode batch fits its cache: q_heads a multiple of kv_heads, lengths >= 1, every
 *  page a sequence uses inside the block table and naming a block in [0, num_blocks), k and v of
 *  the cache's size, scales finite and > 0. Throws moesim::Error naming what is wrong. */
void validate(const DecodeBatch& batch, const PagedKvCache& cache);

/** Tokens one CTA of the decode kernel stages per step (a tile of K and of V in shared memory). */
inline constexpr std::int64_t kDecodeTile = 32;
/** Smallest KV range worth a split of its own (fewer tokens do not pay for the extra partial
 *  result and the combine step). Chosen, as FlashInfer's split-KV planner bounds splits from below. */
inline constexpr std::int64_t kMinSplitTokens = 256;
/** Most KV splits per (sequence, KV head). */
inline constexpr std::int64_t kMaxSplits = 64;

/** Split-KV plan (Flash-Decoding; Dao et al. 2023, crfm.stanford.edu/2023/10/12/flashdecoding.html;
 *  FlashInfer's "split-K"): one CTA per (sequence, KV head, split). Splits are added only while
 *  B·kv_heads CTAs would not fill `waves`·sm_count CTAs, each split keeping >= kMinSplitTokens of
 *  the longest sequence, at most kMaxSplits. Returns >= 1. Throws for batch, kv_heads,
 *  max_len or sm_count < 1. */
std::int64_t decode_splits(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_len, std::int64_t sm_count,
                           std::int64_t waves = 2);

/** Tokens of split s for a sequence of `len` tokens in `splits` splits: [begin, end), possibly
 *  empty (begin >= end). The split length is ceil(len / splits) rounded up to a multiple of `tile`,
 *  so tiles never straddle splits. */
struct TokenRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};
TokenRange split_range(std::int64_t len, std::int64_t splits, std::int64_t split, std::int64_t tile = kDecodeTile);

/** A prefill (or chunked-prefill) batch of variable-length sequences packed back to back:
 *  q [ΣQ × q_heads × d_head], k and v [ΣK × kv_heads × d_head], out like q. Sequence b's queries
 *  are the last q_lens[b] of its kv_lens[b] positions (q_len == kv_len for a plain prefill); with
 *  `causal`, query i attends keys 0 … i + kv_len − q_len. */
struct VarlenBatch {
  std::vector<std::int32_t> q_lens;
  std::vector<std::int32_t> kv_lens;
  std::int64_t q_heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t d_head = 0;
  bool causal = true;
  double softmax_scale = 0.0;  ///< 0 means 1/√d_head

  std::int64_t batch() const { return static_cast<std::int64_t>(q_lens.size()); }
  /** Prefix sums [B+1]: cu_q()[b] is the first query row of sequence b. */
  std::vector<std::int32_t> cu_q() const;
  std::vector<std::int32_t> cu_kv() const;
  std::int64_t total_q() const;
  std::int64_t total_kv() const;
};

/** Checks head counts, lengths (1 <= q_len <= kv_len, sums below 2^31) and list sizes; throws
 *  moesim::Error naming what is wrong. */
void validate(const VarlenBatch& batch);

/** Rows of query positions one CTA of the prefill kernel handles, and keys per K/V tile. */
inline constexpr std::int64_t kPrefillTileQ = 64;
inline constexpr std::int64_t kPrefillTileK = 32;

namespace ref {

/** Decode attention in fp64: out[b, h] = Σ_t softmax_t(scale·k_scale·q[b,h]·k_t)·v_scale·v_t over the
 *  kv_lens[b] tokens of sequence b, k_t and v_t from KV head h / (q_heads / kv_heads). q is
 *  [B × q_heads × d_head]; returns [B × q_heads × d_head]. Validates first (see validate()). */
std::vector<double> decode_attention(const std::vector<float>& q, const DecodeBatch& batch, const PagedKvCache& cache);

/** The GPU kernel's algorithm in fp64: per (sequence, KV head, split) an online softmax over tiles of
 *  `tile` tokens of split_range() (running max m, sum l and unnormalized accumulator, rescaled by
 *  exp(m_old − m_new) per tile), then the splits combined with weights exp(m_s − max m). Equals
 *  decode_attention() up to rounding; tests use it to check the split/combine arithmetic without a GPU. */
std::vector<double> decode_attention_tiled(const std::vector<float>& q, const DecodeBatch& batch,
                                           const PagedKvCache& cache, std::int64_t splits,
                                           std::int64_t tile = kDecodeTile);

/** Prefill attention in fp64 over a packed varlen batch (see VarlenBatch); returns [ΣQ × q_heads ×
 *  d_head]. Validates first. */
std::vector<double> prefill_attention(const std::vector<float>& q, const std::vector<float>& k,
                                      const std::vector<float>& v, const VarlenBatch& batch);

}  // namespace ref
}  // namespace moesim::kernels
