// SPDX-License-Identifier: Apache-2.0
// Serving attention: decode over a paged KV cache (split-KV, GQA, bf16 or fp8 KV) and causal varlen
// prefill (FlashAttention-2 tiling on bf16 WMMA tensor cores). CPU side and references:
// moesim/kernels/attention.hpp.
#include <mma.h>

#include <cmath>
#include <string>

#include "device_common.cuh"
#include "moesim/core/error.hpp"
#include "moesim/kernels/attention.hpp"
#include "moesim/kernels/gpu/attention.hpp"
#include "moesim/kernels/gpu/check.hpp"

namespace moesim::kernels::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Decode attention. One CTA per (split, KV head, sequence); it serves the whole query-head group of
// its KV head, so every KV element is read from HBM once. Per tile of kTile tokens: K and V rows
// staged in shared memory (16-byte loads, rows padded by 16 bytes so the score loop's per-token
// row reads are bank-conflict free), scores for (query head, token) pairs, an online-softmax
// update by one warp per query head (kTile = 32 = one lane per token), then p·V accumulated in
// registers, 8 output columns per thread.

constexpr int kDecodeThreads = 128;
constexpr int kTile = static_cast<int>(kDecodeTile);
static_assert(kTile == 32, "the softmax step maps one lane to one token of the tile");
constexpr int kMaxGroupDims = 2048;  // group · d_head: q in shared memory and at most 2 chunks of 8 per thread
constexpr int kMaxChunks = kMaxGroupDims / 8 / kDecodeThreads;

template <class KV>
struct KvTraits;
template <>
struct KvTraits<__nv_bfloat16> {
  static constexpr int kBytes = 2;
  /** 8 consecutive elements at `p` (16-byte aligned) as floats. */
  __device__ static void load8(const unsigned char* p, float (&out)[8]) {
    detail::load_pack(reinterpret_cast<const __nv_bfloat16*>(p), out);
  }
};
template <>
struct KvTraits<__nv_fp8_e4m3> {
  static constexpr int kBytes = 1;
  __device__ static void load8(const unsigned char* p, float (&out)[8]) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    detail::e4m3x4_to_float(raw.x, out);
    detail::e4m3x4_to_float(raw.y, out + 4);
  }
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}

/** split_range() of attention.hpp on the device. */
__device__ __forceinline__ void device_split_range(int len, int splits, int split, int* begin, int* end) {
  const int per = (len + splits - 1) / splits;
  const int chunk = (per + kTile - 1) / kTile * kTile;
  *begin = min(len, split * chunk);
  *end = min(len, (split + 1) * chunk);
}

template <class KV, int D>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_kernel(const __nv_bfloat16* __restrict__ q, const KV* __restrict__ k_cache, const KV* __restrict__ v_cache,
                  const std::int32_t* __restrict__ block_table, const std::int32_t* __restrict__ kv_lens,
                  __nv_bfloat16* __restrict__ out, float* __restrict__ part_o, float* __restrict__ part_ml, int q_heads,
                  int kv_heads, int block_size, int max_blocks, int group, float qk_scale, float v_scale, int splits) {
  constexpr int kRowBytes = D * KvTraits<KV>::kBytes;
  constexpr int kStride = kRowBytes + 16;  // padding: conflict-free 16-byte reads of one column by 8 rows
  constexpr int kVecPerRow = kRowBytes / 16;
  constexpr int kChunksPerHead = D / 8;
  constexpr int kMaxGroup = kMaxGroupDims / D;
  __shared__ __align__(16) float q_s[kMaxGroupDims];
  __shared__ __align__(16) unsigned char k_s[kTile * kStride];
  __shared__ __align__(16) unsigned char v_s[kTile * kStride];
  __shared__ float s_s[kMaxGroup][kTile];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], alpha_s[kMaxGroup];

  const int split = blockIdx.x;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int len = kv_lens[b];
  int begin = 0, end = 0;
  device_split_range(len, splits, split, &begin, &end);

  // Queries of the group, pre-scaled by softmax_scale · k_scale.
  for (int i = tid; i < group * D; i += kDecodeThreads) {
    q_s[i] = qk_scale * __bfloat162float(q[(static_cast<long long>(b) * q_heads + h * group) * D + i]);
  }
  for (int g = tid; g < group; g += kDecodeThreads) {
    m_s[g] = -INFINITY;
    l_s[g] = 0.0f;
  }
  float acc[kMaxChunks][8];
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  __syncthreads();

  const std::int32_t* table = block_table + static_cast<long long>(b) * max_blocks;
  const long long head_stride = static_cast<long long>(block_size) * D;  // one KV head of one page
  for (int t0 = begin; t0 < end; t0 += kTile) {
    const int n_tile = min(kTile, end - t0);
    // Stage K and V rows of the tile.
    for (int v = tid; v < 2 * kTile * kVecPerRow; v += kDecodeThreads) {
      const bool is_v = v >= kTile * kVecPerRow;
      const int idx = is_v ? v - kTile * kVecPerRow : v;
      const int r = idx / kVecPerRow;
      const int c = idx - r * kVecPerRow;
      if (r >= n_tile) continue;
      const int t = t0 + r;
      const long long page = table[t / block_size];
      const long long elem = (page * kv_heads + h) * head_stride + static_cast<long long>(t % block_size) * D;
      const KV* src = (is_v ? v_cache : k_cache) + elem;
      const uint4 raw = reinterpret_cast<const uint4*>(src)[c];
      *reinterpret_cast<uint4*>((is_v ? v_s : k_s) + r * kStride + c * 16) = raw;
    }
    __syncthreads();
    // Scores s[g][t] = q_g · k_t (scales folded into q).
    for (int p = tid; p < group * kTile; p += kDecodeThreads) {
      const int g = p / kTile;
      const int t = p - g * kTile;
      float dot = -INFINITY;
      if (t < n_tile) {
        dot = 0.0f;
        const float* qg = q_s + g * D;
        const unsigned char* kr = k_s + t * kStride;
#pragma unroll 4
        for (int d0 = 0; d0 < D; d0 += 8) {
          float kv[8];
          KvTraits<KV>::load8(kr + d0 * KvTraits<KV>::kBytes, kv);
#pragma unroll
          for (int e = 0; e < 8; ++e) dot = fmaf(qg[d0 + e], kv[e], dot);
        }
      }
      s_s[g][t] = dot;
    }
    __syncthreads();
    // Online softmax: one warp per query head, one lane per token of the tile.
    for (int g = warp; g < group; g += kDecodeThreads / 32) {
      const float s = s_s[g][lane];
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, warp_max(s));  // finite: the tile holds >= 1 token
      const float p = lane < n_tile ? __expf(s - m_new) : 0.0f;
      s_s[g][lane] = p;
      const float tile_sum = warp_sum(p);
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + tile_sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // acc = acc · alpha + Σ_t p_t · v_t over this thread's chunks of 8 output columns.
#pragma unroll
    for (int j = 0; j < kMaxChunks; ++j) {
      const int chunk = tid + j * kDecodeThreads;
      if (chunk >= group * kChunksPerHead) continue;
      const int g = chunk / kChunksPerHead;
      const int d0 = (chunk - g * kChunksPerHead) * 8;
      const float alpha = alpha_s[g];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[j][e] *= alpha;
      for (int t = 0; t < n_tile; ++t) {
        const float p = s_s[g][t];
        float vv[8];
        KvTraits<KV>::load8(v_s + t * kStride + d0 * KvTraits<KV>::kBytes, vv);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] = fmaf(p, vv[e], acc[j][e]);
      }
    }
    __syncthreads();  // the next tile overwrites k_s, v_s and s_s
  }

  // Results: normalized bf16 output, or this split's partial (m, l, unnormalized acc).
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int chunk = tid + j * kDecodeThreads;
    if (chunk >= group * kChunksPerHead) continue;
    const int g = chunk / kChunksPerHead;
    const int d0 = (chunk - g * kChunksPerHead) * 8;
    const long long head = static_cast<long long>(b) * q_heads + h * group + g;
    if (splits == 1) {
      const float inv = v_scale / l_s[g];
      float o[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = acc[j][e] * inv;
      detail::store_pack(out + head * D + d0, o);
    } else {
      float* po = part_o + (head * splits + split) * D + d0;
#pragma unroll
      for (int e = 0; e < 8; ++e) po[e] = acc[j][e];
      if (d0 == 0) {
        part_ml[(head * splits + split) * 2] = m_s[g];
        part_ml[(head * splits + split) * 2 + 1] = l_s[g];
      }
    }
  }
}

// Combines the splits of one (sequence, query head): weights exp(m_s − max m), empty splits (m = −∞) none.
__global__ void decode_combine_kernel(const float* __restrict__ part_o, const float* __restrict__ part_ml,
                                      __nv_bfloat16* __restrict__ out, int d_head, int splits, float v_scale) {
  const long long head = blockIdx.x;
  const float* ml = part_ml + head * splits * 2;
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ml[2 * s]);
  float l = 0.0f;
  for (int s = 0; s < splits; ++s) {
    if (ml[2 * s] != -INFINITY) l += __expf(ml[2 * s] - mx) * ml[2 * s + 1];
  }
  const float inv = v_scale / l;
  for (int d = threadIdx.x; d < d_head; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      if (ml[2 * s] == -INFINITY) continue;
      o = fmaf(__expf(ml[2 * s] - mx), part_o[(head * splits + s) * d_head + d], o);
    }
    out[head * d_head + d] = __float2bfloat16_rn(o * inv);
  }
}

template <class KV, int D>
void launch_decode(const DecodeArgs& a, cudaStream_t stream) {
  const int group = a.q_heads / a.kv_heads;
  const float scale = a.softmax_scale > 0.0f ? a.softmax_scale : 1.0f / std::sqrt(static_cast<float>(D));
  float* part_o = static_cast<float*>(a.workspace);
  float* part_ml =
      a.splits > 1 ? part_o + static_cast<long long>(a.batch) * a.q_heads * a.splits * a.d_head : nullptr;
  const dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(a.kv_heads), static_cast<unsigned>(a.batch));
  decode_kernel<KV, D><<<grid, kDecodeThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(a.q), static_cast<const KV*>(a.k_cache), static_cast<const KV*>(a.v_cache),
      a.block_table, a.kv_lens, static_cast<__nv_bfloat16*>(a.out), part_o, part_ml, a.q_heads, a.kv_heads,
      a.block_size, a.max_blocks, group, scale * a.k_scale, a.v_scale, a.splits);
  MOESIM_CUDA_CHECK_LAUNCH();
  if (a.splits > 1) {
    decode_combine_kernel<<<static_cast<unsigned>(a.batch * a.q_heads), 128, 0, stream>>>(
        part_o, part_ml, static_cast<__nv_bfloat16*>(a.out), a.d_head, a.splits, a.v_scale);
    MOESIM_CUDA_CHECK_LAUNCH();
  }
}

template <class KV>
void dispatch_decode_dim(const DecodeArgs& a, cudaStream_t stream) {
  switch (a.d_head) {
    case 64: launch_decode<KV, 64>(a, stream); break;
    case 128: launch_decode<KV, 128>(a, stream); break;
    case 256: launch_decode<KV, 256>(a, stream); break;
    default: throw Error("gpu::decode_attention: d_head " + std::to_string(a.d_head) + " unsupported (allowed: 64, 128, 256)");
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill attention (FlashAttention-2 work split: a CTA owns kPrefillTileQ query rows of one head,
// 16 per warp, and loops over key tiles; scores and P·V on bf16 tensor cores (WMMA 16×16×16,
// fp32 accumulation); online softmax in fp32 on the warp's own rows, two lanes per row. The
// output accumulator lives in shared memory (WMMA fragments have no documented element-to-row
// mapping, so rows cannot be rescaled in registers).

namespace wmma = nvcuda::wmma;
constexpr int kPrefillThreads = 128;
constexpr int kBq = static_cast<int>(kPrefillTileQ);  // 64: 4 warps × 16 rows
constexpr int kBk = static_cast<int>(kPrefillTileK);  // 32 keys per tile
static_assert(kBq == 16 * (kPrefillThreads / 32), "one 16-row WMMA strip per warp");
static_assert(kBk == 32, "two lanes per row cover the tile's 32 keys in two halves of 16");

template <int D>
struct PrefillSmem {
  static constexpr int kLdq = D + 8;    // bf16, padded
  static constexpr int kLdk = D + 8;
  static constexpr int kLds = kBk + 4;  // float scores
  static constexpr int kLdp = kBk + 8;  // bf16 probabilities
  static constexpr int kLdo = D + 4;    // float output accumulator
  static constexpr int kQBytes = kBq * kLdq * 2;
  static constexpr int kSBytes = kBq * kLds * 4;
  static constexpr int kPBytes = kBq * kLdp * 2;
  // Q is staged once and kept in fragments: its space is then reused for scores and probabilities.
  static constexpr int kQRegion = (kQBytes > kSBytes + kPBytes ? kQBytes : kSBytes + kPBytes);
  static constexpr int kQRegionAligned = (kQRegion + 127) / 128 * 128;
  static constexpr int kKvBytes = kBk * kLdk * 2;
  static constexpr int kOBytes = kBq * kLdo * 4;
  static constexpr int kOffK = kQRegionAligned;
  static constexpr int kOffV = kOffK + kKvBytes;
  static constexpr int kOffO = kOffV + kKvBytes;
  static constexpr int kTotal = kOffO + kOBytes;
  static_assert(kSBytes % 128 == 0, "P after S stays 32-byte aligned");
  static_assert(kKvBytes % 128 == 0, "V and O stay 32-byte aligned");
};

template <int D>
__global__ void __launch_bounds__(kPrefillThreads)
    prefill_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                   const __nv_bfloat16* __restrict__ v, __nv_bfloat16* __restrict__ out,
                   const std::int32_t* __restrict__ cu_q, const std::int32_t* __restrict__ cu_kv, int q_heads,
                   int kv_heads, float scale, bool causal) {
  using L = PrefillSmem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem);
  float* s_s = reinterpret_cast<float*>(smem);  // aliases q_s after the fragments are loaded
  __nv_bfloat16* p_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kSBytes);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kOffK);
  __nv_bfloat16* v_s = reinterpret_cast<__nv_bfloat16*>(smem + L::kOffV);
  float* o_s = reinterpret_cast<float*>(smem + L::kOffO);

  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int q_begin = cu_q[b];
  const int q_len = cu_q[b + 1] - q_begin;
  const int kv_begin = cu_kv[b];
  const int kv_len = cu_kv[b + 1] - kv_begin;
  const int offset = kv_len - q_len;                         // queries are the last q_len positions
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kBq;         // longest (causal: costliest) tiles first
  if (q0 >= q_len) return;                                   // uniform per block
  const int kvh = h / (q_heads / kv_heads);
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  constexpr int kVec = D / 8;  // 16-byte vectors per row

  // Stage the Q tile (zeros past the sequence), clear the output accumulator.
  for (int i = tid; i < kBq * kVec; i += kPrefillThreads) {
    const int r = i / kVec, c = i - (i / kVec) * kVec;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (q0 + r < q_len) {
      val = reinterpret_cast<const uint4*>(q + (static_cast<long long>(q_begin + q0 + r) * q_heads + h) * D)[c];
    }
    *reinterpret_cast<uint4*>(q_s + r * L::kLdq + c * 8) = val;
  }
  for (int i = tid; i < kBq * D; i += kPrefillThreads) o_s[(i / D) * L::kLdo + (i % D)] = 0.0f;
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(qf[kk], q_s + warp * 16 * L::kLdq + kk * 16, L::kLdq);
  __syncthreads();  // q_s space becomes s_s / p_s

  // Two lanes per row: lane pair (2r, 2r+1) owns row r of the warp's strip, columns half·16 … +16.
  const int row = lane >> 1;
  const int half = lane & 1;
  const int q_pos = q0 + warp * 16 + row;  // position of this row's query within its sequence's queries
  float m_run = -INFINITY, l_run = 0.0f;
  float* s_w = s_s + warp * 16 * L::kLds;
  __nv_bfloat16* p_w = p_s + warp * 16 * L::kLdp;
  float* o_w = o_s + warp * 16 * L::kLdo;

  const int kv_end = causal ? min(kv_len, q0 + kBq + offset) : kv_len;
  for (int j0 = 0; j0 < kv_end; j0 += kBk) {
    // K and V tiles (zeros past the sequence).
    for (int i = tid; i < 2 * kBk * kVec; i += kPrefillThreads) {
      const bool is_v = i >= kBk * kVec;
      const int idx = is_v ? i - kBk * kVec : i;
      const int r = idx / kVec, c = idx - (idx / kVec) * kVec;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (j0 + r < kv_len) {
        const __nv_bfloat16* src = (is_v ? v : k) + (static_cast<long long>(kv_begin + j0 + r) * kv_heads + kvh) * D;
        val = reinterpret_cast<const uint4*>(src)[c];
      }
      *reinterpret_cast<uint4*>((is_v ? v_s : k_s) + r * L::kLdk + c * 8) = val;
    }
    __syncthreads();
    // S = Q·Kᵀ for the warp's 16 rows and the tile's 32 keys.
#pragma unroll
    for (int n = 0; n < kBk / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
      wmma::fill_fragment(sf, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, k_s + n * 16 * L::kLdk + kk * 16, L::kLdk);
        wmma::mma_sync(sf, qf[kk], kf, sf);
      }
      wmma::store_matrix_sync(s_w + n * 16, sf, L::kLds, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax on the row's 16 columns of this lane, combined across the lane pair.
    float sv[16];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int key = j0 + half * 16 + c;
      const bool ok = key < kv_len && (!causal || key <= q_pos + offset);
      sv[c] = ok ? s_w[row * L::kLds + half * 16 + c] * scale : -INFINITY;
      mx = fmaxf(mx, sv[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
    const float m_new = fmaxf(m_run, mx);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const float p = m_new == -INFINITY ? 0.0f : __expf(sv[c] - m_new);  // exp(−∞) = 0 for masked keys
      sum += p;
      p_w[row * L::kLdp + half * 16 + c] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
    const float alpha = m_run == -INFINITY ? (m_new == -INFINITY ? 1.0f : 0.0f) : __expf(m_run - m_new);
    l_run = l_run * alpha + sum;
    m_run = m_new;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) o_w[row * L::kLdo + d] *= alpha;
    __syncwarp();
    // O += P·V.
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
      wmma::load_matrix_sync(of, o_w + n * 16, L::kLdo, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBk / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, p_w + kk * 16, L::kLdp);
        wmma::load_matrix_sync(vf, v_s + kk * 16 * L::kLdk + n * 16, L::kLdk);
        wmma::mma_sync(of, pf, vf, of);
      }
      wmma::store_matrix_sync(o_w + n * 16, of, L::kLdo, wmma::mem_row_major);
    }
    __syncthreads();  // the next tile overwrites k_s and v_s
  }

  // out = O / l for the rows inside the sequence.
  if (q_pos < q_len) {
    const float inv = 1.0f / l_run;
    __nv_bfloat16* dst = out + (static_cast<long long>(q_begin + q_pos) * q_heads + h) * D;
    for (int d0 = half * (D / 2); d0 < (half + 1) * (D / 2); d0 += 8) {
      float o[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = o_w[row * L::kLdo + d0 + e] * inv;
      detail::store_pack(dst + d0, o);
    }
  }
}

template <int D>
void launch_prefill(const PrefillArgs& a, cudaStream_t stream) {
  using L = PrefillSmem<D>;
  // More than the default 48 KB of dynamic shared memory: opt in once per process (one device).
  static const bool opted_in = [] {
    MOESIM_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kTotal));
    return true;
  }();
  (void)opted_in;
  const float scale = a.softmax_scale > 0.0f ? a.softmax_scale : 1.0f / std::sqrt(static_cast<float>(D));
  const dim3 grid(static_cast<unsigned>((a.max_q_len + kBq - 1) / kBq), static_cast<unsigned>(a.q_heads),
                  static_cast<unsigned>(a.batch));
  prefill_kernel<D><<<grid, kPrefillThreads, L::kTotal, stream>>>(
      static_cast<const __nv_bfloat16*>(a.q), static_cast<const __nv_bfloat16*>(a.k),
      static_cast<const __nv_bfloat16*>(a.v), static_cast<__nv_bfloat16*>(a.out), a.cu_q, a.cu_kv, a.q_heads,
      a.kv_heads, scale, a.causal);
  MOESIM_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::size_t decode_workspace_bytes(int batch, int q_heads, int d_head, int splits) {
  if (splits <= 1) return 0;
  const std::size_t heads = static_cast<std::size_t>(batch) * static_cast<std::size_t>(q_heads) * static_cast<std::size_t>(splits);
  return heads * (static_cast<std::size_t>(d_head) + 2) * sizeof(float);
}

void decode_attention(const DecodeArgs& a, cudaStream_t stream) {
  if (a.batch < 1 || a.kv_heads < 1 || a.q_heads < 1 || a.q_heads % a.kv_heads != 0) {
    throw Error("gpu::decode_attention: need batch >= 1 and q_heads a positive multiple of kv_heads");
  }
  if (a.block_size < 1 || a.max_blocks < 1) throw Error("gpu::decode_attention: block_size and max_blocks must be >= 1");
  if ((a.q_heads / a.kv_heads) * a.d_head > kMaxGroupDims) {
    throw Error("gpu::decode_attention: (q_heads / kv_heads) · d_head = " +
                std::to_string((a.q_heads / a.kv_heads) * a.d_head) + " exceeds " + std::to_string(kMaxGroupDims));
  }
  if (a.splits < 1 || a.splits > kMaxSplits) throw Error("gpu::decode_attention: splits must lie in [1, 64]");
  if (a.splits > 1 && a.workspace == nullptr) throw Error("gpu::decode_attention: splits > 1 needs a workspace");
  if (a.batch > 65535 || a.kv_heads > 65535) throw Error("gpu::decode_attention: batch and kv_heads must be <= 65535");
  switch (a.kv_dtype) {
    case DType::bf16: dispatch_decode_dim<__nv_bfloat16>(a, stream); break;
    case DType::fp8: dispatch_decode_dim<__nv_fp8_e4m3>(a, stream); break;
    case DType::fp32: throw Error("gpu::decode_attention: KV cache must be bf16 or fp8");
  }
}

void prefill_attention(const PrefillArgs& a, cudaStream_t stream) {
  if (a.batch < 1 || a.kv_heads < 1 || a.q_heads < 1 || a.q_heads % a.kv_heads != 0 || a.max_q_len < 1) {
    throw Error("gpu::prefill_attention: need batch, max_q_len >= 1 and q_heads a positive multiple of kv_heads");
  }
  if (a.batch > 65535 || a.q_heads > 65535) throw Error("gpu::prefill_attention: batch and q_heads must be <= 65535");
  switch (a.d_head) {
    case 64: launch_prefill<64>(a, stream); break;
    case 128: launch_prefill<128>(a, stream); break;
    default:
      throw Error("gpu::prefill_attention: d_head " + std::to_string(a.d_head) + " unsupported (allowed: 64, 128)");
  }
}

}  // namespace moesim::kernels::gpu
