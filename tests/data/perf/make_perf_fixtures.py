#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the perf-layer test fixtures under tests/data/perf/. NOT measurements: every time is made
up by the formula below, and every file says so in its provenance ("measured": false,
"synthetic": true). Run from anywhere: python3 tests/data/perf/make_perf_fixtures.py

transfer/device_a.json and transfer/device_b.json: two synthetic devices with the same kernel grid.

    time_s = max(flops / (eta_c(F) * P), bytes / (eta_m(B) * BW)) + T0[class]
    eta_c(F) = EC[class] * F / (F + TH[class] * P[dtype]) * (0.95 if k <= 128 else 1)
    eta_m(B) = EM[class] * B / (B + BH[class])

Device A: P = 7.98e14 FLOP/s bf16 and BW = 3.0e12 B/s, the H100 80GB figures measured on this
project's device (profiles/accelerators/h100.yaml, measured_matmul_flops_per_s and
measured_hbm_bandwidth_bytes_per_s); fp32 P = 5.1e13 FLOP/s (made up). Device B: the same compute
and 1.43x A's bandwidth (4.29e12 B/s; 1.43 = H200 / H100 datasheet bandwidth, 4.8 / 3.35 TB/s,
profiles/accelerators/h200.yaml and h100.yaml). EC, TH, EM, BH, T0 are made up (round numbers); TH makes small GEMMs slow by a fixed
compute latency TH / EC that does not depend on the dtype.
p10 = 0.97 time_s, p90 = 1.05 time_s. Expert-FFN strategies: `grouped` is the formula (fastest),
`loop` 1.25x; skewed distributions 1.15x. FLOP/byte counts follow profiles/measured/README.md.

factory/measured/h100_sxm.json: device A under the H100's device slug (for make_compute_model).
factory_mismatch/measured/h200.json: malformed/valid.json with device h100_sxm, under a name that
does not match its device.
malformed/*.json: a small valid profile (malformed/valid.json) and one broken variant per error.
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

P = {"bf16": 7.98e14, "fp32": 5.1e13}
BW_A = 3.0e12
BW_B = 1.43 * BW_A
S = {"bf16": 2, "fp32": 4}
GEMM_CLASSES = ("gemm", "batched_gemm", "grouped_gemm")
EC = {"gemm": 0.92, "batched_gemm": 0.80, "grouped_gemm": 0.85}
TH = {"gemm": 4e-6, "batched_gemm": 6e-6, "grouped_gemm": 25e-6}  # s
EM = {"gemm": 0.80, "batched_gemm": 0.80, "grouped_gemm": 0.75, "router": 0.50, "permute": 0.55,
      "unpermute": 0.70, "elementwise": 0.85}
BH = {"gemm": 4e6, "batched_gemm": 4e6, "grouped_gemm": 8e6, "router": 1e6, "permute": 2e6,
      "unpermute": 2e6, "elementwise": 4e6}
T0 = {"gemm": 4e-6, "batched_gemm": 5e-6, "grouped_gemm": 10e-6, "router": 8e-6, "permute": 6e-6,
      "unpermute": 6e-6, "elementwise": 3e-6}

MODELS = [  # name, d_model, d_ff, heads, d_head, experts, activation (kernels/ref/sweep.cpp shapes)
    ("switch_base", 768, 2048, 12, 64, 128, "relu"),
    ("gshard_600b", 1024, 8192, 16, 128, 2048, "relu"),
    ("mixtral_like", 4096, 14336, 32, 128, 8, "swiglu"),
]


def gates(act):
    return 2 if act in ("swiglu", "geglu") else 1


def formula_time(e, bw, factor=1.0):
    cls, f, b = e["kernel_class"], e["flops"], e["bytes"]
    t_m = b / (EM[cls] * b / (b + BH[cls]) * bw)
    t_c = 0.0
    if cls in GEMM_CLASSES:
        shape = 0.95 if e.get("k", 1 << 30) <= 128 else 1.0
        p = P[e["dtype"]]
        t_c = f / (EC[cls] * f / (f + TH[cls] * p) * shape * p)
    return (max(t_c, t_m) + T0[cls]) * factor


def finish(e, t):
    e.update(time_s=t, time_p10_s=0.97 * t, time_p90_s=1.05 * t, repeats=20,
             achieved_flops_per_s=e["flops"] / t, achieved_bytes_per_s=e["bytes"] / t)
    return e


def grid():
    """Entries without times: (entry, time factor)."""
    out = []

    def gemm(kernel, dt, m, n, k, out_s=None, **extra):
        out_s = out_s or S[dt]
        e = dict(kernel_class="gemm", kernel=kernel, dtype=dt, **extra, m=m, n=n, k=k,
                 flops=2.0 * m * n * k, bytes=float((m * k + k * n) * S[dt] + m * n * out_s))
        out.append((e, 1.0))

    def ffn_cost(rows, active, d, f, g, dt):
        return (2.0 * rows * d * f * g + 2.0 * rows * f * d, float(active * (d * g * f + f * d) * S[dt] + 2 * rows * d * S[dt]))

    for name, d, f, h, dh, experts, act in MODELS:
        for t in (512, 2048, 8192, 32768):
            gemm("qkv_proj", "bf16", t, 3 * h * dh, d, model=name, tokens=t, d_model=d)
            gemm("out_proj", "bf16", t, d, h * dh, model=name, tokens=t, d_model=d)
            gemm("router_gate", "bf16", t, experts, d, out_s=4, model=name, tokens=t, d_model=d, experts=experts,
                 output_dtype="fp32")
            fl, by = ffn_cost(t, 1, d, f, gates(act), "bf16")
            out.append((dict(kernel_class="gemm", kernel="dense_ffn", dtype="bf16", model=name, tokens=t, d_model=d,
                             d_ff=f, activation=act, flops=fl, bytes=by), 1.0))
        for seq in (512, 2048):
            base = h * (8192 // seq)
            for batch in (base // 4, base, base * 4):
                for values in (False, True):
                    m, n, k = (seq, dh, seq) if values else (seq, seq, dh)
                    out.append((dict(kernel_class="batched_gemm", kernel="attn_values" if values else "attn_scores",
                                     dtype="bf16", model=name, seq=seq, batch=batch, m=m, n=n, k=k, trans_b=not values,
                                     flops=2.0 * batch * m * n * k,
                                     bytes=float(batch * ((m * k + k * n) * 2 + m * n * 2))), 1.0))
    name, d, f, h, dh, experts, act = MODELS[2]
    for t in (512, 2048, 8192):
        gemm("qkv_proj", "fp32", t, 3 * h * dh, d, model=name, tokens=t, d_model=d)
        gemm("out_proj", "fp32", t, d, h * dh, model=name, tokens=t, d_model=d)

    def expert(dt, name, d, f, act, e_local, tpe, dist="balanced", strategies=(("grouped", 1.0), ("loop", 1.25))):
        rows = e_local * tpe
        fl, by = ffn_cost(rows, e_local, d, f, gates(act), dt)
        for strategy, factor in strategies:
            e = dict(kernel_class="grouped_gemm", kernel="expert_ffn", dtype=dt, model=name, tokens=rows, d_model=d,
                     d_ff=f, experts=e_local, tokens_per_expert=tpe, distribution=dist, count_min=tpe, count_max=tpe,
                     activation=act, strategy=strategy, fastest=strategy == "grouped", flops=fl, bytes=by)
            out.append((e, factor * (1.15 if dist == "skewed" else 1.0)))

    tpes = [1 << i for i in range(15)]  # 1 .. 16384
    for tpe in tpes:
        if 8 * tpe <= 131072:
            expert("bf16", "mixtral_like", 4096, 14336, "swiglu", 8, tpe)
            expert("bf16", "switch_base", 768, 2048, "relu", 8, tpe)
        if 64 * tpe <= 131072:
            expert("bf16", "switch_base", 768, 2048, "relu", 64, tpe)
    expert("bf16", "mixtral_like", 4096, 14336, "swiglu", 8, 256, dist="skewed")
    for tpe in (1, 4, 16, 64, 256, 1024, 4096):
        expert("fp32", "switch_base", 768, 2048, "relu", 8, tpe)

    for e_count in (8, 64, 2048):
        for k in (1, 2, 8):
            for t in (1024, 4096, 16384, 65536):
                rows = t * k
                out.append((dict(kernel_class="router", kernel="router", dtype="fp32", tokens=t, experts=e_count,
                                 top_k=k, capacity_factor=1.25, flops=0.0,
                                 bytes=4.0 * t * e_count + 12.0 * t * k + 4.0 * rows + 8.0 * e_count), 1.0))
    for dt in ("bf16", "fp32"):
        for d in (768, 1024, 4096):
            for t in (1024, 4096, 16384, 65536):
                for k in (1, 2, 8):
                    if t * k > 262144:
                        continue
                    rows = t * k
                    common = dict(dtype=dt, tokens=t, d_model=d, top_k=k, experts=64, capacity_factor=2.0, rows=rows,
                                  flops=0.0)
                    out.append((dict(kernel_class="permute", kernel="permute", **common,
                                     bytes=float(2 * rows * d * S[dt] + 4 * rows)), 1.0))
                    out.append((dict(kernel_class="unpermute", kernel="unpermute", **common,
                                     bytes=float(rows * d * S[dt] + 8 * t * k + t * d * S[dt])), 1.0))
        for name, d, f, h, dh, experts, act in MODELS:
            acts = [act] if gates(act) == 2 else [act, "gelu"]
            for a in acts:
                for rows in (4096, 32768):
                    out.append((dict(kernel_class="elementwise", kernel="activation", dtype=dt, model=name, tokens=rows,
                                     d_ff=f, activation=a, flops=0.0,
                                     bytes=float(rows * gates(a) * f * S[dt] + rows * f * S[dt])), 1.0))
    return out


def profile(device, gpu_name, bw, note):
    entries = [finish(copy.deepcopy(e), formula_time(e, bw, factor)) for e, factor in grid()]
    return {
        "format": "moesim-measured-profile",
        "format_version": 1,
        "provenance": {
            "measured": False,
            "synthetic": True,
            "note": note,
            "tool": "tests/data/perf/make_perf_fixtures.py",
            "gpu_name": gpu_name,
            "device": device,
            "formula_peak_bf16_flops_per_s": P["bf16"],
            "formula_peak_fp32_flops_per_s": P["fp32"],
            "formula_bytes_per_s": bw,
        },
        "ceilings": {"matmul_bf16_flops_per_s": P["bf16"], "matmul_fp32_flops_per_s": P["fp32"], "copy_bytes_per_s": bw},
        "entries": entries,
        "skipped": [{"what": "expert_ffn bf16 st_moe_32b E=64", "reason": "example of a skipped shape (synthetic)"}],
    }


def dumps(obj):
    """As the profiler writes (profiles/measured/README.md): 2-space indent, one entry per line."""
    parts = []
    for key, value in obj.items():
        if key in ("entries", "skipped") and value:
            body = ",\n".join("    " + json.dumps(x) for x in value)
            parts.append(f'  "{key}": [\n{body}\n  ]')
        else:
            parts.append(f'  "{key}": ' + json.dumps(value, indent=2).replace("\n", "\n  "))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write(rel, obj):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(dumps(obj))


NOTE = ("Synthetic test fixture, not a measurement: time_s = max(flops/(eta_c(F)*P), bytes/(eta_m(B)*BW)) + T0 "
        "with made-up efficiency curves; see tests/data/perf/make_perf_fixtures.py.")
a = profile("synthetic_a", "synthetic device A", BW_A, NOTE + " Device A: BW 3.0e12 B/s.")
b = profile("synthetic_b", "synthetic device B", BW_B, NOTE + " Device B: same compute as A, 1.43x A's bandwidth.")
write("transfer/device_a.json", a)
write("transfer/device_b.json", b)
h100 = copy.deepcopy(a)
h100["provenance"]["device"] = "h100_sxm"
write("factory/measured/h100_sxm.json", h100)

# --- malformed profiles: one valid base, one error each -----------------------------------------
valid = {
    "format": "moesim-measured-profile",
    "format_version": 1,
    "provenance": {"measured": False, "synthetic": True, "device": "synthetic_small", "gpu_name": "synthetic",
                   "note": "Synthetic test fixture, not a measurement (tests/data/perf/make_perf_fixtures.py)."},
    "ceilings": {"matmul_bf16_flops_per_s": P["bf16"], "copy_bytes_per_s": BW_A, "matmul_fp32_flops_per_s": None},
    "entries": [],
}
for e, factor in grid():
    if (e["kernel"] == "qkv_proj" and e["dtype"] == "bf16" and e["model"] == "mixtral_like") or \
            (e["kernel_class"] == "grouped_gemm" and e["model"] == "mixtral_like" and e["tokens_per_expert"] in (16, 256)
             and e["dtype"] == "bf16" and e["distribution"] == "balanced") or \
            (e["kernel_class"] == "router" and e["experts"] == 64 and e["top_k"] == 2):
        valid["entries"].append(finish(copy.deepcopy(e), formula_time(e, BW_A, factor)))
write("malformed/valid.json", valid)
mismatch = copy.deepcopy(valid)
mismatch["provenance"]["device"] = "h100_sxm"
write("factory_mismatch/measured/h200.json", mismatch)
GEMM = 0  # index of the first qkv_proj entry
GROUPED = next(i for i, e in enumerate(valid["entries"]) if e["kernel_class"] == "grouped_gemm")
ROUTER = next(i for i, e in enumerate(valid["entries"]) if e["kernel_class"] == "router")


def variant(name, mutate):
    v = copy.deepcopy(valid)
    mutate(v)
    write("malformed/" + name + ".json", v)


def set_entry(i, key, value):
    def f(v):
        v["entries"][i][key] = value
    return f


def del_entry(i, key):
    def f(v):
        del v["entries"][i][key]
    return f


variant("bad_format", lambda v: v.update(format="moesim-profile"))
variant("bad_version", lambda v: v.update(format_version=2))
variant("no_provenance", lambda v: v.pop("provenance"))
variant("no_measured_flag", lambda v: v["provenance"].pop("measured"))
variant("measured_and_synthetic", lambda v: v["provenance"].update(measured=True))
variant("no_ceilings", lambda v: v.pop("ceilings"))
variant("no_copy_ceiling", lambda v: v["ceilings"].pop("copy_bytes_per_s"))
variant("empty_entries", lambda v: v.update(entries=[]))
variant("bad_kernel_class", set_entry(GROUPED, "kernel_class", "matmul"))
variant("bad_dtype", set_entry(GROUPED, "dtype", "fp16"))
variant("zero_time", set_entry(ROUTER, "time_s", 0.0))
variant("negative_time", set_entry(ROUTER, "time_s", -1e-5))
variant("null_time", set_entry(ROUTER, "time_s", None))
variant("missing_time", del_entry(ROUTER, "time_s"))
variant("inconsistent_rate", set_entry(GEMM, "achieved_flops_per_s", 1.0e14))
variant("gemm_flops_mismatch", set_entry(GEMM, "m", 1024))
variant("grouped_no_strategy", del_entry(GROUPED, "strategy"))
variant("bad_activation", set_entry(GROUPED, "activation", "tanh"))
with open(os.path.join(HERE, "malformed/bad_syntax.json"), "w") as fh:
    fh.write(dumps(valid).replace('"repeats": 20,', '"repeats": 20,,', 1))
