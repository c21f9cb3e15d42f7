#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes measured_synthetic.json: a hand-made fixture in the measured-profile format
(profiles/measured/README.md) for tests. NOT a measurement: every time is the formula

    time_s = max(flops / P, bytes / BW) + T0

with the round, made-up constants below (they describe no real device). p10 = 0.95·time_s,
p90 = 1.10·time_s. Expert-FFN strategies multiply time_s by a fixed factor per strategy.
FLOP/byte counts follow kernels/include/moesim/kernels/counting.hpp."""
import json

P = {"bf16": 5.0e14, "fp32": 2.5e13, "fp8": 1.0e15}   # FLOP/s, made up
BW = 2.0e12                             # bytes/s, made up
T0 = 5.0e-6                             # s, made up
STRATEGY_FACTOR = {"loop": 1.3, "grouped": 1.1, "padded_strided": 1.2}
S = {"bf16": 2, "fp32": 4, "fp8": 1}


def timed(entry, factor=1.0):
    f, b = entry["flops"], entry["bytes"]
    t = (max(f / P[entry["dtype"]], b / BW) + T0) * factor
    entry.update(time_s=t, time_p10_s=0.95 * t, time_p90_s=1.10 * t, repeats=20,
                 achieved_flops_per_s=f / t, achieved_bytes_per_s=b / t)
    return entry


def gemm(kernel, dt, m, n, k, out=None, **extra):
    out = out or S[dt]
    e = dict(kernel_class="gemm", kernel=kernel, dtype=dt, **extra, m=m, n=n, k=k,
             flops=2.0 * m * n * k, bytes=(m * k + k * n) * S[dt] + m * n * out)
    return timed(e)


def ffn_cost(rows, active, d, f, gated, dt):
    g = 2 if gated else 1
    return (2.0 * rows * d * f * g + 2.0 * rows * f * d,
            active * (d * g * f + f * d) * S[dt] + 2.0 * rows * d * S[dt])


entries = [
    gemm("qkv_proj", "bf16", 2048, 3 * 4096, 4096, model="mixtral_like", tokens=2048, d_model=4096),
    gemm("qkv_proj", "fp8", 2048, 6144, 4096, out=2, model="mixtral_like", tokens=2048, d_model=4096,
         output_dtype="bf16"),
    gemm("router_gate", "bf16", 2048, 8, 4096, out=4, model="mixtral_like", tokens=2048, d_model=4096,
         experts=8, output_dtype="fp32"),
]
b, m, n, k = 256, 512, 512, 128
entries.append(timed(dict(kernel_class="batched_gemm", kernel="attn_scores", dtype="bf16", model="mixtral_like",
                          seq=512, batch=b, m=m, n=n, k=k, trans_b=True, flops=2.0 * b * m * n * k,
                          bytes=b * ((m * k + k * n) * 2 + m * n * 2))))
# Expert FFN, Mixtral-like shape, 8 experts x 256 tokens, SwiGLU.
fl, by = ffn_cost(2048, 8, 4096, 14336, True, "bf16")
for s in ("loop", "grouped", "padded_strided"):
    e = dict(kernel_class="grouped_gemm", kernel="expert_ffn", dtype="bf16", model="mixtral_like", tokens=2048,
             d_model=4096, d_ff=14336, experts=8, tokens_per_expert=256, distribution="balanced", count_min=256,
             count_max=256, activation="swiglu", strategy=s, flops=fl, bytes=by)
    if s == "padded_strided":
        e["padded_rows"] = 2048
    entries.append(timed(e, STRATEGY_FACTOR[s]))
dfl, dby = ffn_cost(2048, 1, 4096, 14336, True, "bf16")
dense = timed(dict(kernel_class="gemm", kernel="dense_ffn", dtype="bf16", model="mixtral_like", tokens=2048,
                   d_model=4096, d_ff=14336, activation="swiglu", flops=dfl, bytes=dby))
for e in entries:
    if e["kernel"] == "expert_ffn":
        e.update(fastest=e["strategy"] == "grouped", dense_equal_time_s=dense["time_s"],
                 ratio_to_dense=dense["time_s"] / e["time_s"])
entries.append(dense)
T, E, K, rows = 4096, 64, 2, 8192
entries.append(timed(dict(kernel_class="router", kernel="router", dtype="fp32", tokens=T, experts=E, top_k=K,
                          capacity_factor=1.25, capacity=160, drop_rate=0.0, flops=0.0,
                          bytes=4.0 * T * E + 12.0 * T * K + 4.0 * rows + 8.0 * E)))
d = 4096
entries.append(timed(dict(kernel_class="permute", kernel="permute", dtype="bf16", tokens=T, d_model=d, top_k=K,
                          experts=E, capacity_factor=2.0, rows=rows, flops=0.0,
                          bytes=rows * d * 2.0 + rows * d * 2.0 + 4.0 * rows)))
entries.append(timed(dict(kernel_class="unpermute", kernel="unpermute", dtype="fp32", tokens=T, d_model=d, top_k=K,
                          experts=E, capacity_factor=2.0, rows=rows, flops=0.0,
                          bytes=rows * d * 4.0 + 8.0 * T * K + T * d * 4.0)))
entries.append(timed(dict(kernel_class="elementwise", kernel="activation", dtype="bf16", model="mixtral_like",
                          tokens=4096, d_ff=14336, activation="swiglu", flops=0.0,
                          bytes=4096 * 2 * 14336 * 2.0 + 4096 * 14336 * 2.0)))
# Decode attention: 64 sequences x 2048 cached tokens, 32 query / 8 KV heads of 128, pages of 16.
B, L, HQ, HKV, D, BS = 64, 2048, 32, 8, 128, 16
for kv in ("bf16", "fp8"):
    entries.append(timed(dict(kernel_class="decode_attention", kernel="decode_attention", dtype=kv, model="mixtral_like",
                              batch=B, tokens=B, kv_len=L, q_heads=HQ, kv_heads=HKV, d_head=D, block_size=BS,
                              query_dtype="bf16", splits=1, flops=4.0 * HQ * D * B * L,
                              bytes=2.0 * HKV * D * B * L * S[kv] + 2.0 * B * HQ * D * 2 + 4.0 * B * (L // BS) + 4.0 * B
                              + (8.0 if kv == "fp8" else 0.0))))
# Prefill attention: 4 causal sequences of 512 tokens, same heads.
lens = [512] * 4
pairs = sum(s * (s + 1) / 2 for s in lens)
entries.append(timed(dict(kernel_class="prefill_attention", kernel="prefill_attention", dtype="bf16", model="mixtral_like",
                          batch=len(lens), seq=512, tokens=sum(lens), seq_lens=",".join(map(str, lens)), causal=True,
                          q_heads=HQ, kv_heads=HKV, d_head=D, causal_pairs=pairs, flops=4.0 * HQ * D * pairs,
                          bytes=(2.0 * HQ + 2.0 * HKV) * sum(lens) * D * 2 + 8.0 * (len(lens) + 1))))
for e in entries:
    if e["kernel_class"] in ("permute", "unpermute", "elementwise"):
        e["ratio_to_copy"] = e["achieved_bytes_per_s"] / BW

doc = {
    "format": "moesim-measured-profile",
    "format_version": 1,
    "provenance": {
        "measured": False,
        "synthetic": True,
        "note": "Hand-made test fixture, not a measurement. Times are generated by "
                "time_s = max(flops / P, bytes / BW) + T0 with the made-up constants below "
                "(p10 = 0.95 time_s, p90 = 1.10 time_s; expert_ffn strategies x1.3 loop, x1.1 grouped, "
                "x1.2 padded_strided). Regenerate with tests/data/kernels/make_measured_synthetic.py.",
        "formula_peak_bf16_flops_per_s": P["bf16"],
        "formula_peak_fp32_flops_per_s": P["fp32"],
        "formula_peak_fp8_flops_per_s": P["fp8"],
        "formula_bytes_per_s": BW,
        "formula_floor_s": T0,
        "gpu_name": "synthetic",
        "device": "synthetic",
        "tool": "tests/data/kernels/make_measured_synthetic.py",
    },
    "ceilings": {"matmul_bf16_flops_per_s": P["bf16"], "matmul_fp32_flops_per_s": P["fp32"],
                 "matmul_fp8_flops_per_s": P["fp8"], "copy_bytes_per_s": BW},
    "entries": entries,
    "skipped": [{"what": "expert_ffn fp32 st_moe_32b E=64 m=1024 balanced",
                 "reason": "example of a skipped shape (synthetic)"}],
}
with open(__file__.rsplit("/", 1)[0] + "/measured_synthetic.json", "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
