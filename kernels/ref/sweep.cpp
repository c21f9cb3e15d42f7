// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "moesim/core/error.hpp"
#include "moesim/kernels/attention.hpp"

namespace moesim::kernels::sweep {

const std::vector<ModelShape>& models() {
  // Shapes from the model papers; activations as the papers describe the FFN. Where a paper does
  // not restate the activation the field says "assumed".
  static const std::vector<ModelShape> kModels{
      {"gshard_600b", 1024, 8192, 16, 128, 16, 2048, 2, Activation::relu,
       "GShard 600B (Lepikhin et al. 2021, arXiv:2006.16668): M=1024, H=8192, 2048 experts, top-2, ReLU FFN; "
       "16 heads x 128 as in moesim's GShard scenario (DESIGN.md section 2); multi-head attention (16 KV heads)"},
      {"switch_base", 768, 2048, 12, 64, 12, 128, 1, Activation::relu,
       "Switch-Base (Fedus et al. 2022, arXiv:2101.03961, Table 9): d_model 768, d_ff 2048, 12 heads x d_kv 64, "
       "128 experts, top-1; ReLU FFN of T5 v1.0 (assumed); multi-head attention"},
      {"switch_c", 2080, 6144, 32, 64, 32, 2048, 1, Activation::relu,
       "Switch-C (Fedus et al. 2022, Table 9): d_model 2080, d_ff 6144, 32 heads x d_kv 64, 2048 experts, top-1; "
       "ReLU FFN (assumed); multi-head attention"},
      {"st_moe_32b", 5120, 20480, 64, 128, 64, 64, 2, Activation::geglu,
       "ST-MoE-32B (Zoph et al. 2022, arXiv:2202.08906): d_model 5120, d_ff 20480, 64 heads x d_kv 128, "
       "64 experts, top-2, GEGLU; multi-head attention"},
      {"t5_xxl", 4096, 10240, 64, 64, 64, 0, 0, Activation::geglu,
       "T5-XXL v1.1 (dense baseline of Fedus et al. 2022, Table 9): d_model 4096, d_ff 10240, 64 heads x d_kv 64; "
       "gated-GeLU FFN of T5 v1.1; multi-head attention"},
      {"mixtral_like", 4096, 14336, 32, 128, 8, 8, 2, Activation::swiglu,
       "Mixtral 8x7B (Jiang et al. 2024, arXiv:2401.04088, Table 1): dim 4096, hidden 14336, 32 heads x 128, "
       "8 KV heads (grouped-query attention), 8 experts, top-2, SwiGLU"},
  };
  return kModels;
}

int TimingPolicy::repeats_for(double run_s) const {
  if (!(run_s > 0.0)) return max_repeats;
  const double want = std::ceil(target_s / run_s);
  return static_cast<int>(std::clamp(want, static_cast<double>(min_repeats), static_cast<double>(max_repeats)));
}

std::string Job::describe() const {
  std::ostringstream s;
  s << kernel << ' ' << to_string(dtype);
  if (!model.empty()) s << ' ' << model;
  switch (kernel_class) {
    case KernelClass::gemm:
      if (kernel == "dense_ffn") {
        s << " T=" << tokens << " d=" << d_model << " f=" << d_ff << ' ' << to_string(act);
      } else {
        s << " m=" << m << " n=" << n << " k=" << k;
      }
      break;
    case KernelClass::batched_gemm: s << " batch=" << batch << " m=" << m << " n=" << n << " k=" << k; break;
    case KernelClass::grouped_gemm:
      s << " E=" << experts << " m=" << tokens_per_expert << ' ' << distribution << " d=" << d_model << " f=" << d_ff
        << ' ' << to_string(act);
      break;
    case KernelClass::router: s << " T=" << tokens << " E=" << experts << " k=" << top_k; break;
    case KernelClass::permute:
    case KernelClass::unpermute: s << " T=" << tokens << " k=" << top_k << " d=" << d_model; break;
    case KernelClass::elementwise: s << " rows=" << tokens << " f=" << d_ff << ' ' << to_string(act); break;
    case KernelClass::decode_attention:
      s << " B=" << batch << " L=" << kv_len << " heads=" << q_heads << '/' << kv_heads << 'x' << d_head;
      break;
    case KernelClass::prefill_attention: {
      s << " B=" << seq_lens.size() << " seq=";
      if (seq > 0) {
        s << seq;
      } else {
        s << "mixed";
      }
      s << " T=" << tokens << " heads=" << q_heads << '/' << kv_heads << 'x' << d_head;
      break;
    }
  }
  return s.str();
}

std::vector<std::string> kernel_names() {
  return {"expert_ffn", "decode_attention", "prefill_attention", "router",      "permute",     "unpermute",
          "activation", "dense_ffn",        "qkv_proj",          "out_proj",    "router_gate", "attn_scores",
          "attn_values"};
}

const std::vector<std::int64_t>& decode_batches() {
  static const std::vector<std::int64_t> kBatches{1, 4, 16, 64, 256, 512};
  return kBatches;
}

const std::vector<std::int64_t>& decode_kv_lens() {
  static const std::vector<std::int64_t> kLens{128, 512, 2048, 8192, 32768};
  return kLens;
}

std::vector<std::int64_t> expert_counts(const std::string& distribution, std::int64_t experts,
                                        std::int64_t tokens_per_expert) {
  if (experts < 1 || tokens_per_expert < 1) {
    throw Error("sweep::expert_counts: experts and tokens_per_expert must be >= 1");
  }
  std::vector<std::int64_t> counts(static_cast<std::size_t>(experts), tokens_per_expert);
  if (distribution == "balanced") return counts;
  if (distribution != "skewed") {
    throw Error("sweep::expert_counts: unknown distribution '" + distribution + "' (allowed: balanced, skewed)");
  }
  double harmonic = 0.0;
  for (std::int64_t e = 0; e < experts; ++e) harmonic += 1.0 / static_cast<double>(e + 1);
  const std::int64_t total = experts * tokens_per_expert;
  std::int64_t assigned = 0;
  for (std::int64_t e = 0; e < experts; ++e) {
    counts[e] = static_cast<std::int64_t>(std::llround(static_cast<double>(total) / (harmonic * (e + 1.0))));
    assigned += counts[e];
  }
  counts[0] += total - assigned;
  return counts;
}

namespace {

double sz(DType dt) { return static_cast<double>(dtype_bytes(dt)); }

bool selected(const SweepOptions& o, const std::string& kernel, KernelClass cls) {
  return o.only.empty() || o.only == kernel || o.only == to_string(cls);
}

Job gemm_job(const std::string& kernel, DType dt, const ModelShape& md, std::int64_t m, std::int64_t n,
             std::int64_t k, std::size_t out_bytes) {
  Job j;
  j.kernel_class = KernelClass::gemm;
  j.kernel = kernel;
  j.dtype = dt;
  j.model = md.name;
  j.tokens = m;
  j.d_model = md.d_model;
  j.m = m;
  j.n = n;
  j.k = k;
  j.cost = gemm_cost(m, n, k, dt, out_bytes);
  j.set_bytes = static_cast<double>(m * k + k * n) * sz(dt) + static_cast<double>(m * n * static_cast<std::int64_t>(out_bytes));
  return j;
}

void add_expert_ffn(std::vector<Job>& jobs, DType dt, bool quick) {
  const std::vector<std::int64_t> full_m{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  const std::vector<std::int64_t> skew_m{16, 256, 4096};
  const std::vector<std::int64_t> coarse_m{1, 4, 16, 64, 256, 1024, 4096, 16384};
  const std::vector<std::int64_t> coarse_skew_m{256};
  const std::vector<std::int64_t> fp8_m{1, 4, 16, 64, 256, 1024, 4096};
  constexpr std::int64_t kMaxRows = 131072;  // rows of the permuted buffer (8 experts x 16384 tokens)
  constexpr double kMaxSetBytes = 40e9;      // one buffer set must fit in 0.6 of an 80 GB GPU's free memory
  // Expert weights above this are not planned: with activations and the profiler's 0.6 share of free
  // memory they would not fit on an 80 GB GPU (ST-MoE-32B: 64 experts are 40 GB in bf16).
  constexpr double kMaxWeightBytes = 32e9;
  for (const ModelShape& md : models()) {
    if (md.experts == 0) continue;
    if (quick && md.name != "mixtral_like" && md.name != "switch_base") continue;
    const std::vector<std::int64_t> local = quick ? std::vector<std::int64_t>{8} : std::vector<std::int64_t>{8, 64};
    for (std::int64_t e_local : local) {
      if (e_local > md.experts) continue;
      const double weight_bytes = static_cast<double>(e_local) * static_cast<double>(md.d_model * md.d_ff) *
                                  (is_gated(md.act) ? 3.0 : 2.0) * sz(dt);
      if (weight_bytes > kMaxWeightBytes) continue;
      for (const std::string dist : {"balanced", "skewed"}) {
        // fp32 runs ~15x slower than bf16 on tensor-core GPUs: a coarser (x4) grid keeps the sweep short.
        // fp8 (cuBLASLt, Hopper): balanced only, x4 steps up to 4096 tokens per expert.
        if (dt == DType::fp8 && dist != "balanced") continue;
        const auto& balanced = dt == DType::fp32 ? coarse_m : dt == DType::fp8 ? fp8_m : full_m;
        const auto& skewed = dt == DType::fp32 ? coarse_skew_m : skew_m;
        const auto& grid = quick ? (dist == "balanced" ? std::vector<std::int64_t>{16, 1024}
                                                       : std::vector<std::int64_t>{1024})
                                 : (dist == "balanced" ? balanced : skewed);
        for (std::int64_t m : grid) {
          if (e_local * m > kMaxRows) continue;
          Job j;
          j.kernel_class = KernelClass::grouped_gemm;
          j.kernel = "expert_ffn";
          j.dtype = dt;
          j.model = md.name;
          j.d_model = md.d_model;
          j.d_ff = md.d_ff;
          j.experts = e_local;
          j.tokens_per_expert = m;
          j.act = md.act;
          j.distribution = dist;
          j.counts = expert_counts(dist, e_local, m);
          j.tokens = e_local * m;
          const std::int64_t largest = *std::max_element(j.counts.begin(), j.counts.end());
          // bf16/fp32: loop, grouped, padded_strided (+ fused_small for small experts) and the dense
          // equal-FLOPs reference; fp8: the cuBLASLt loop and its dense reference.
          j.variants = dt == DType::fp8 ? 2 : (largest <= kFusedSmallMaxRows ? 5 : 4);
          const std::int64_t active =
              std::count_if(j.counts.begin(), j.counts.end(), [](std::int64_t c) { return c > 0; });
          j.cost = expert_ffn_cost(j.tokens, active, md.d_model, md.d_ff, md.act, dt);
          const double g = is_gated(md.act) ? 2.0 : 1.0;
          const double padded_rows = static_cast<double>(e_local * largest);
          const double weights = static_cast<double>(e_local + 1) * static_cast<double>(md.d_model * md.d_ff) * (g + 1.0);
          // Activations: x, h (g·f), a (f), y; fp8 keeps h and y in bf16 (2 bytes).
          const double act_s = dt == DType::fp8 ? 2.0 : sz(dt);
          const double acts = padded_rows * (2.0 * static_cast<double>(md.d_model) + (g + 1.0) * static_cast<double>(md.d_ff));
          j.set_bytes = weights * sz(dt) + acts * act_s;
          if (j.set_bytes > kMaxSetBytes) continue;
          jobs.push_back(std::move(j));
        }
      }
    }
  }
}

void add_router(std::vector<Job>& jobs, bool quick) {
  const std::vector<std::int64_t> es = quick ? std::vector<std::int64_t>{8, 2048} : std::vector<std::int64_t>{8, 64, 128, 2048};
  const std::vector<std::int64_t> ks = quick ? std::vector<std::int64_t>{2} : std::vector<std::int64_t>{1, 2, 8};
  const std::vector<std::int64_t> ts =
      quick ? std::vector<std::int64_t>{4096} : std::vector<std::int64_t>{1024, 4096, 16384, 65536};
  constexpr double kCapacityFactor = 1.25;  // a typical training value; Switch Transformer (Fedus et al. 2022) compares 1.0 to 2.0
  for (std::int64_t e : es) {
    for (std::int64_t k : ks) {
      for (std::int64_t t : ts) {
        Job j;
        j.kernel_class = KernelClass::router;
        j.kernel = "router";
        j.dtype = DType::fp32;  // the router reads fp32 logits whatever the model dtype
        j.tokens = t;
        j.experts = e;
        j.top_k = k;
        j.capacity_factor = kCapacityFactor;
        const std::int64_t rows = t * k;
        j.cost = router_cost(t, e, k, rows);
        const double chunks = std::ceil(static_cast<double>(t * k) / 1024.0);
        j.set_bytes = 4.0 * static_cast<double>(t * e) + 12.0 * static_cast<double>(t * k) + 4.0 * static_cast<double>(rows) +
                      4.0 * chunks * static_cast<double>(e) + 16.0 * static_cast<double>(e);
        jobs.push_back(std::move(j));
      }
    }
  }
}

void add_permutes(std::vector<Job>& jobs, DType dt, bool quick, bool want_permute, bool want_unpermute) {
  const std::vector<std::int64_t> ds =
      quick ? std::vector<std::int64_t>{4096} : std::vector<std::int64_t>{768, 1024, 2080, 4096, 5120};
  const std::vector<std::int64_t> ts =
      quick ? std::vector<std::int64_t>{4096} : std::vector<std::int64_t>{1024, 4096, 16384, 65536};
  const std::vector<std::int64_t> ks = quick ? std::vector<std::int64_t>{2} : std::vector<std::int64_t>{1, 2, 8};
  constexpr std::int64_t kMaxAssignments = 262144;
  constexpr std::int64_t kExperts = 64;
  constexpr double kCapacityFactor = 2.0;  // generous, so that few tokens drop and the copy is near T·k rows
  for (bool un : {false, true}) {
    if ((un && !want_unpermute) || (!un && !want_permute)) continue;
    for (std::int64_t d : ds) {
      for (std::int64_t t : ts) {
        for (std::int64_t k : ks) {
          if (t * k > kMaxAssignments) continue;
          Job j;
          j.kernel_class = un ? KernelClass::unpermute : KernelClass::permute;
          j.kernel = un ? "unpermute" : "permute";
          j.dtype = dt;
          j.tokens = t;
          j.d_model = d;
          j.top_k = k;
          j.experts = kExperts;
          j.capacity_factor = kCapacityFactor;
          const std::int64_t rows = t * k;  // nominal: the profiler records the real kept count
          j.cost = un ? unpermute_cost(t, k, rows, d, dt) : permute_cost(rows, rows, d, dt);
          j.set_bytes = static_cast<double>((t + rows) * d) * sz(dt) + 12.0 * static_cast<double>(rows);
          jobs.push_back(std::move(j));
        }
      }
    }
  }
}

void add_activations(std::vector<Job>& jobs, DType dt, bool quick) {
  const std::vector<std::int64_t> rows_grid = quick ? std::vector<std::int64_t>{4096} : std::vector<std::int64_t>{4096, 32768};
  for (const ModelShape& md : models()) {
    if (quick && md.name != "mixtral_like") continue;
    std::vector<Activation> acts{md.act};
    if (!is_gated(md.act)) acts.push_back(Activation::gelu);
    for (Activation act : acts) {
      for (std::int64_t rows : rows_grid) {
        Job j;
        j.kernel_class = KernelClass::elementwise;
        j.kernel = "activation";
        j.dtype = dt;
        j.model = md.name;
        j.tokens = rows;
        j.d_ff = md.d_ff;
        j.act = act;
        j.cost = activation_cost(rows, md.d_ff, act, dt);
        j.set_bytes = j.cost.bytes;
        jobs.push_back(std::move(j));
      }
    }
  }
}

// Decode attention over a paged KV cache: every (batch, KV length) pair of the grid whose cache fits
// kMaxDecodeKvBytes, for a grouped-query model (Mixtral-like, 32 query / 8 KV heads) and a
// multi-head one (GShard, 16 / 16), head size 128. dt is the KV-cache element type.
void add_decode(std::vector<Job>& jobs, DType dt, bool quick) {
  const std::vector<std::int64_t> batches = quick ? std::vector<std::int64_t>{1, 64} : decode_batches();
  const std::vector<std::int64_t> lens = quick ? std::vector<std::int64_t>{512, 8192} : decode_kv_lens();
  for (const ModelShape& md : models()) {
    if (md.name != "mixtral_like" && (quick || md.name != "gshard_600b")) continue;
    for (std::int64_t b : batches) {
      for (std::int64_t len : lens) {
        const double kv_bytes = 2.0 * static_cast<double>(b * len * md.kv_heads * md.d_head) * sz(dt);
        if (kv_bytes > kMaxDecodeKvBytes) continue;
        Job j;
        j.kernel_class = KernelClass::decode_attention;
        j.kernel = "decode_attention";
        j.dtype = dt;
        j.model = md.name;
        j.batch = b;
        j.tokens = b;
        j.kv_len = len;
        j.q_heads = md.heads;
        j.kv_heads = md.kv_heads;
        j.d_head = md.d_head;
        j.block_size = kDecodeBlockSize;
        j.cost = decode_attention_cost(std::vector<std::int64_t>(static_cast<std::size_t>(b), len), md.heads, md.kv_heads,
                                       md.d_head, kDecodeBlockSize, dt);
        const double pages = static_cast<double>(b * ((len + kDecodeBlockSize - 1) / kDecodeBlockSize));
        // KV pages, q and out (bf16), split-KV partials (at most kMaxSplits per head, fp32 + m, l).
        j.set_bytes = kv_bytes + 4.0 * static_cast<double>(b * md.heads * md.d_head) +
                      static_cast<double>(b * md.heads) * static_cast<double>(kMaxSplits) *
                          (4.0 * static_cast<double>(md.d_head) + 8.0) +
                      4.0 * pages;
        jobs.push_back(std::move(j));
      }
    }
  }
}

// Prefill attention (causal, packed varlen batches) of `total` tokens: equal lengths per batch, and
// one mixed batch of halving lengths (8192, 4096, ..., 128, 128 = 16384 tokens).
void add_prefill(std::vector<Job>& jobs, DType dt, bool quick) {
  struct Shape {
    std::int64_t seq;  // 0 = mixed
    std::int64_t total;
  };
  const std::vector<Shape> shapes =
      quick ? std::vector<Shape>{{512, 2048}}
            : std::vector<Shape>{{128, 2048}, {512, 2048},  {2048, 2048},  {128, 16384}, {512, 16384},
                                 {2048, 16384}, {8192, 16384}, {0, 16384}};
  for (const ModelShape& md : models()) {
    if (md.name != "mixtral_like" && (quick || md.name != "switch_base")) continue;
    for (const Shape& sh : shapes) {
      Job j;
      j.kernel_class = KernelClass::prefill_attention;
      j.kernel = "prefill_attention";
      j.dtype = dt;
      j.model = md.name;
      j.seq = sh.seq;
      if (sh.seq > 0) {
        j.seq_lens.assign(static_cast<std::size_t>(sh.total / sh.seq), sh.seq);
      } else {
        for (std::int64_t l = sh.total / 2; l >= 128; l /= 2) j.seq_lens.push_back(l);
        j.seq_lens.push_back(128);
      }
      j.batch = static_cast<std::int64_t>(j.seq_lens.size());
      j.tokens = 0;
      for (std::int64_t l : j.seq_lens) j.tokens += l;
      j.q_heads = md.heads;
      j.kv_heads = md.kv_heads;
      j.d_head = md.d_head;
      j.causal = true;
      j.cost = prefill_attention_cost(j.seq_lens, j.seq_lens, md.heads, md.kv_heads, md.d_head, true, dt);
      j.set_bytes = j.cost.bytes;
      jobs.push_back(std::move(j));
    }
  }
}

void add_dense(std::vector<Job>& jobs, DType dt, const SweepOptions& o) {
  const std::vector<std::int64_t> ts =
      o.quick ? std::vector<std::int64_t>{2048} : std::vector<std::int64_t>{512, 2048, 8192, 32768};
  // Decode-sized token counts (serving): projections only, bf16 and fp8.
  const std::vector<std::int64_t> small_ts =
      o.quick || dt == DType::fp32 ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{1, 16, 128};
  const bool fp8 = dt == DType::fp8;  // fp8: the projections through cuBLASLt (bf16 output); no FFN, gate or attention GEMMs
  const std::vector<std::int64_t> seqs = o.quick ? std::vector<std::int64_t>{512} : std::vector<std::int64_t>{512, 2048};
  constexpr std::int64_t kAttentionTokens = 8192;  // tokens per attention batch: batch = heads · 8192 / seq
  for (const ModelShape& md : models()) {
    if (o.quick && md.name != "mixtral_like") continue;
    const std::int64_t inner = md.heads * md.d_head;
    const std::int64_t qkv_n = (md.heads + 2 * md.kv_heads) * md.d_head;  // Q, K, V columns (GQA: fewer K, V)
    for (std::int64_t t : small_ts) {
      if (selected(o, "qkv_proj", KernelClass::gemm)) jobs.push_back(gemm_job("qkv_proj", dt, md, t, qkv_n, md.d_model, fp8 ? 2 : dtype_bytes(dt)));
      if (selected(o, "out_proj", KernelClass::gemm)) jobs.push_back(gemm_job("out_proj", dt, md, t, md.d_model, inner, fp8 ? 2 : dtype_bytes(dt)));
    }
    for (std::int64_t t : ts) {
      if (fp8) {
        if (selected(o, "qkv_proj", KernelClass::gemm)) jobs.push_back(gemm_job("qkv_proj", dt, md, t, qkv_n, md.d_model, 2));
        if (selected(o, "out_proj", KernelClass::gemm)) jobs.push_back(gemm_job("out_proj", dt, md, t, md.d_model, inner, 2));
        continue;
      }
      if (selected(o, "dense_ffn", KernelClass::gemm)) {
        Job j;
        j.kernel_class = KernelClass::gemm;
        j.kernel = "dense_ffn";
        j.dtype = dt;
        j.model = md.name;
        j.tokens = t;
        j.d_model = md.d_model;
        j.d_ff = md.d_ff;
        j.act = md.act;
        j.variants = 1;
        j.cost = dense_ffn_cost(t, md.d_model, md.d_ff, md.act, dt);
        const double g = is_gated(md.act) ? 2.0 : 1.0;
        j.set_bytes = (static_cast<double>(md.d_model * md.d_ff) * (g + 1.0) +
                       static_cast<double>(t) * (2.0 * static_cast<double>(md.d_model) + (g + 1.0) * static_cast<double>(md.d_ff))) *
                      sz(dt);
        jobs.push_back(std::move(j));
      }
      if (selected(o, "qkv_proj", KernelClass::gemm)) {
        jobs.push_back(gemm_job("qkv_proj", dt, md, t, qkv_n, md.d_model, dtype_bytes(dt)));
      }
      if (selected(o, "out_proj", KernelClass::gemm)) {
        jobs.push_back(gemm_job("out_proj", dt, md, t, md.d_model, inner, dtype_bytes(dt)));
      }
      if (md.experts > 0 && selected(o, "router_gate", KernelClass::gemm)) {
        Job j = gemm_job("router_gate", dt, md, t, md.experts, md.d_model, 4);
        j.experts = md.experts;
        jobs.push_back(std::move(j));
      }
    }
    if (fp8) continue;
    for (std::int64_t s : seqs) {
      const std::int64_t batch = md.heads * std::max<std::int64_t>(1, kAttentionTokens / s);
      for (bool values : {false, true}) {
        const std::string name = values ? "attn_values" : "attn_scores";
        if (!selected(o, name, KernelClass::batched_gemm)) continue;
        Job j;
        j.kernel_class = KernelClass::batched_gemm;
        j.kernel = name;
        j.dtype = dt;
        j.model = md.name;
        j.seq = s;
        j.batch = batch;
        j.m = s;
        j.n = values ? md.d_head : s;
        j.k = values ? s : md.d_head;
        j.trans_b = !values;
        j.cost = batched_gemm_cost(batch, j.m, j.n, j.k, dt);
        j.set_bytes = j.cost.bytes;
        jobs.push_back(std::move(j));
      }
    }
  }
}

}  // namespace

std::vector<Job> plan(const SweepOptions& o) {
  if (!o.only.empty()) {
    const auto names = kernel_names();
    bool known = std::find(names.begin(), names.end(), o.only) != names.end();
    try {
      parse_kernel_class(o.only);
      known = true;
    } catch (const Error&) {
    }
    if (!known) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      std::string classes;
      for (KernelClass c : kernel_classes()) classes += (classes.empty() ? "" : ", ") + to_string(c);
      throw Error("--only: unknown kernel '" + o.only + "' (allowed: " + list + ", or a class: " + classes + ")");
    }
  }
  if (o.dtypes.empty()) throw Error("sweep::plan: no dtype selected");
  std::vector<Job> jobs;
  bool router_done = false;  // the router reads fp32 logits whatever the dtype: planned once
  for (DType dt : o.dtypes) {
    const bool want_decode = selected(o, "decode_attention", KernelClass::decode_attention);
    if (dt == DType::fp8) {
      // fp8: KV cache of decode attention, and the cuBLASLt GEMMs (expert FFN, projections).
      if (want_decode) add_decode(jobs, dt, o.quick);
      if (selected(o, "expert_ffn", KernelClass::grouped_gemm)) add_expert_ffn(jobs, dt, o.quick);
      add_dense(jobs, dt, o);
      continue;
    }
    if (selected(o, "expert_ffn", KernelClass::grouped_gemm)) add_expert_ffn(jobs, dt, o.quick);
    if (dt == DType::bf16) {
      if (want_decode) add_decode(jobs, dt, o.quick);
      if (selected(o, "prefill_attention", KernelClass::prefill_attention)) add_prefill(jobs, dt, o.quick);
    }
    if (!router_done && selected(o, "router", KernelClass::router)) add_router(jobs, o.quick);
    router_done = true;
    add_permutes(jobs, dt, o.quick, selected(o, "permute", KernelClass::permute),
                 selected(o, "unpermute", KernelClass::unpermute));
    if (selected(o, "activation", KernelClass::elementwise)) add_activations(jobs, dt, o.quick);
    add_dense(jobs, dt, o);
  }
  return jobs;
}

double estimate_run_s(const Job& job, const Ceilings& c) {
  double rate = 0.0;
  switch (job.dtype) {
    case DType::bf16: rate = c.bf16_flops_per_s; break;
    case DType::fp32: rate = c.fp32_flops_per_s; break;
    case DType::fp8: rate = c.fp8_flops_per_s > 0.0 ? c.fp8_flops_per_s : c.bf16_flops_per_s; break;
  }
  if (job.kernel_class == KernelClass::decode_attention) rate = c.fp32_flops_per_s;  // CUDA-core FMAs
  if (job.kernel_class == KernelClass::prefill_attention) rate = c.bf16_flops_per_s;
  const double compute = rate > 0.0 ? job.cost.flops / rate : 0.0;
  const double memory = c.bytes_per_s > 0.0 ? job.cost.bytes / c.bytes_per_s : 0.0;
  return std::max(compute, memory) + c.floor_s;
}

double estimate_job_s(const Job& job, const Ceilings& c, const TimingPolicy& p) {
  const double run = estimate_run_s(job, c);
  if (run > p.max_run_s) return 0.0;
  return static_cast<double>(job.variants) * static_cast<double>(p.warmups + 1 + p.repeats_for(run)) * run;
}

double estimate_sweep_s(const std::vector<Job>& jobs, const Ceilings& c, const TimingPolicy& p) {
  double total = 0.0;
  for (const Job& j : jobs) {
    const double t = estimate_job_s(j, c, p);
    if (t > 0.0) total += t + p.setup_s;
  }
  return total;
}

}  // namespace moesim::kernels::sweep
