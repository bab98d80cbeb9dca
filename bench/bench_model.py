#!/usr/bin/python3
"""bench_model.py - the PyTorch peer of bench_model.c: a standard PyTorch
decoder written from spec/aria.md section 2.2 (our own code, not the
reference repository's), timed on the same shapes as the C benchmark.

    /usr/bin/python3 bench/bench_model.py [--dtype f32|bf16] [--model FILE]
        [--reps N] [--prompt N] [--steps N] [--threads N] [--check-only]

Model: pre-norm blocks of LayerNorm (weight + bias, eps 1e-5), fused QKV
(no bias), RoPE base 500000 in the half-split layout over the 64 head
dimensions (computed in float32, as the reference casts), causal multi-head
attention through an explicit softmax (torch 1.13 has no
scaled_dot_product_attention), output projection, SwiGLU feed-forward,
final LayerNorm, untied lm_head. Decoding uses a preallocated KV cache.

--dtype bf16 builds the whole module in torch.bfloat16 (as .to(bfloat16)
would): weights and activations in bfloat16 (RoPE and softmax in float32),
which is how a PyTorch user runs bf16 weights on a CPU.

Weights: --model FILE (default: the file bench_model.c wrote,
/tmp/aria-bench-medium-<dtype>.safetensors, else random normal std 0.02),
read with a small safetensors parser (struct + json; no safetensors
package). Before timing, the module is loaded with the tiny reference
weights (../shared/vectors/model/tiny_lm_f32.safetensors) and its logits on
inputs "nocturne_200" are compared with fwd/nocturne/logits.bin, to show it
is the same model (printed as max abs diff).

Output: a table and lines "RESULT <metric> <median> <unit> min= max= n="
with the same metric names as bench_model.c.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
VEC = os.path.join(HERE, "..", "..", "shared", "vectors", "model")

MEDIUM = dict(d_model=1536, n_heads=24, n_layers=16, ff_mult=4, vocab_size=17727, max_seq_len=8192)


# ---------------------------------------------------------------------------
# safetensors


def read_safetensors(path, names=None):
    """Yields (name, tensor) in file order, one tensor read at a time (so a
    large file never sits in memory whole), and returns nothing else; the
    tensor is a copy in the file's dtype."""
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        header.pop("__metadata__", None)
        for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if names is not None and name not in names:
                continue
            a, b = t["data_offsets"]
            f.seek(base + a)
            buf = bytearray(f.read(b - a))
            x = torch.frombuffer(buf, dtype=dtypes[t["dtype"]]) if b > a else torch.empty(0, dtype=dtypes[t["dtype"]])
            yield name, x.reshape(t["shape"])


# ---------------------------------------------------------------------------
# the model (spec/aria.md 2.2)


def rope_table(max_pos, hd, base=500000.0):
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv)
    return torch.cos(ang), torch.sin(ang)  # [max_pos, hd/2]


def apply_rope(x, cos, sin):
    """x: [B, T, H, hd]; cos, sin: [T, hd/2]. Half-split (NeoX) layout."""
    dt = x.dtype
    x = x.float()
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(dt)


class Block(nn.Module):
    def __init__(self, d, n_heads, ff, dtype):
        super().__init__()
        kw = dict(dtype=dtype)
        self.h, self.hd = n_heads, d // n_heads
        self.norm1 = nn.LayerNorm(d, eps=1e-5, **kw)
        self.mixed_qkv = nn.Linear(d, 3 * d, bias=False, **kw)
        self.att_proj_linear = nn.Linear(d, d, bias=False, **kw)
        self.norm2 = nn.LayerNorm(d, eps=1e-5, **kw)
        self.ff_gate_proj = nn.Linear(d, ff, bias=False, **kw)
        self.ff_up_proj = nn.Linear(d, ff, bias=False, **kw)
        self.ff_down_proj = nn.Linear(ff, d, bias=False, **kw)

    def forward(self, x, cos, sin, kc, vc, pos0):
        B, T, d = x.shape
        q, k, v = self.mixed_qkv(self.norm1(x)).split(d, dim=-1)
        q = apply_rope(q.reshape(B, T, self.h, self.hd), cos, sin).transpose(1, 2)  # [B, H, T, hd]
        k = apply_rope(k.reshape(B, T, self.h, self.hd), cos, sin).transpose(1, 2)
        v = v.reshape(B, T, self.h, self.hd).transpose(1, 2)
        kc[:, :, pos0 : pos0 + T] = k
        vc[:, :, pos0 : pos0 + T] = v
        keys, vals = kc[:, :, : pos0 + T], vc[:, :, : pos0 + T]
        s = torch.matmul(q, keys.transpose(-1, -2)).float() * (1.0 / math.sqrt(self.hd))
        if T > 1:  # key j is visible to query t when j <= pos0 + t
            mask = torch.ones(T, pos0 + T, dtype=torch.bool).tril(diagonal=pos0)
            s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, dim=-1).to(vals.dtype)
        o = torch.matmul(p, vals).transpose(1, 2).reshape(B, T, d)
        x = x + self.att_proj_linear(o)
        f = self.norm2(x)
        return x + self.ff_down_proj(F.silu(self.ff_gate_proj(f)) * self.ff_up_proj(f))


class AriaLM(nn.Module):
    def __init__(self, d_model, n_heads, n_layers, ff_mult, vocab_size, max_seq_len, dtype=torch.float32):
        super().__init__()
        self.d, self.h, self.n_layers = d_model, n_heads, n_layers
        self.tok_embeddings = nn.Embedding(vocab_size, d_model, dtype=dtype)
        self.encode_layers = nn.ModuleList([Block(d_model, n_heads, ff_mult * d_model, dtype) for _ in range(n_layers)])
        self.out_layer_norm = nn.LayerNorm(d_model, eps=1e-5, dtype=dtype)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False, dtype=dtype)
        self.cos, self.sin = rope_table(max_seq_len, d_model // n_heads)

    def new_cache(self, B, cap):
        dt = self.lm_head.weight.dtype
        shape = (self.n_layers, B, self.h, cap, self.d // self.h)
        return torch.zeros(shape, dtype=dt), torch.zeros(shape, dtype=dt)

    def forward(self, ids, cache, pos0, last_only=True):
        kc, vc = cache
        T = ids.shape[1]
        x = self.tok_embeddings(ids)
        cos, sin = self.cos[pos0 : pos0 + T], self.sin[pos0 : pos0 + T]
        for i, blk in enumerate(self.encode_layers):
            x = blk(x, cos, sin, kc[i], vc[i], pos0)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.out_layer_norm(x))

    @torch.no_grad()
    def load(self, path):
        """Copies every parameter from a safetensors file with the official
        names ("model." prefix on the trunk), converting to our dtype."""
        params = dict(self.named_parameters())
        seen = set()
        for name, t in read_safetensors(path):
            key = name[len("model."):] if name.startswith("model.") else name
            if key in params:
                params[key].copy_(t)
                seen.add(key)
        missing = sorted(set(params) - seen)
        if missing:
            raise SystemExit("%s: missing tensors %s" % (path, missing[:5]))


# ---------------------------------------------------------------------------
# benchmark


def stats(v):
    v = sorted(v)
    n = len(v)
    med = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return med, v[0], v[-1], n


def result(metric, v, unit):
    med, lo, hi, n = stats(v)
    print("RESULT %s %.6g %s min=%.6g max=%.6g n=%d" % (metric, med, unit, lo, hi, n), flush=True)


def result1(metric, v, unit):
    print("RESULT %s %.6g %s" % (metric, v, unit), flush=True)


def results(rows):
    """RESULT lines of (metric, value, unit) rows in order: a list of
    repetitions as result (median, min, max), a number as result1"""
    for metric, v, unit in rows:
        (result if isinstance(v, list) else result1)(metric, v, unit)


def check_reference():
    path = os.path.join(VEC, "tiny_lm_f32.safetensors")
    if not os.path.exists(path):
        print("reference check: skipped (no %s)" % path)
        return
    cfg = json.load(open(os.path.join(VEC, "config.json")))
    m = AriaLM(cfg["d_model"], cfg["n_heads"], cfg["n_layers"], cfg["ff_mult"], cfg["vocab_size"], cfg["max_seq_len"])
    m.load(path)
    ids = json.load(open(os.path.join(VEC, "inputs.json")))["nocturne_200"]
    with torch.inference_mode():
        got = m(torch.tensor([ids]), m.new_cache(1, len(ids)), 0, last_only=False)[0]
    with open(os.path.join(VEC, "fwd", "nocturne", "logits.bin"), "rb") as f:
        ref = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(len(ids), -1)
    diff = (got - ref).abs().max().item()
    print("reference check: tiny model, nocturne_200 logits, max |diff| %.3g (max |ref| %.3g)" % (diff, ref.abs().max().item()))
    result1("peer_ref_logits_max_abs_diff", diff, "abs")
    # the KV-cache path: the last 20 positions one token at a time
    n = len(ids) - 20
    with torch.inference_mode():
        cache = m.new_cache(1, len(ids))
        m(torch.tensor([ids[:n]]), cache, 0)
        step = torch.cat([m(torch.tensor([[ids[t]]]), cache, t)[0] for t in range(n, len(ids))])
    diff = (step - ref[n:]).abs().max().item()
    print("reference check: same logits through the KV cache, one token at a time: max |diff| %.3g" % diff)
    result1("peer_ref_decode_max_abs_diff", diff, "abs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bf16", choices=["f32", "bf16"])
    ap.add_argument("--model")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--check-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("bench_model.py: torch %s, dtype %s, threads %d, reps %d, prompt %d, steps %d"
          % (torch.__version__, a.dtype, torch.get_num_threads(), a.reps, a.prompt, a.steps))
    check_reference()
    if a.check_only:
        return
    torch.manual_seed(0)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    t0 = time.time()
    with torch.no_grad():
        m = AriaLM(**MEDIUM, dtype=dt)
        path = a.model or "/tmp/aria-bench-medium-%s.safetensors" % a.dtype
        if os.path.exists(path):
            m.load(path)
            src = path
        else:
            for p in m.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.02)
            src = "random normal std 0.02"
        m = m.eval()
    print("model: medium, %s, weights from %s, ready in %.1f s" % (a.dtype, src, time.time() - t0))

    g = torch.Generator().manual_seed(1)
    P, S = a.prompt, a.steps
    pf, d1 = [], []
    with torch.inference_mode():
        cache = m.new_cache(1, P + S)
        for r in range(-1, a.reps):  # r = -1: warm-up
            ids = torch.randint(3, 17003, (1, P + S), generator=g)
            t = time.perf_counter()
            m(ids[:, :P], cache, 0)
            t = time.perf_counter() - t
            t1 = time.perf_counter()
            for k in range(S):
                m(ids[:, P + k : P + k + 1], cache, P + k)
            dt1 = (time.perf_counter() - t1) / S
            if r >= 0:
                pf.append(t)
                d1.append(dt1)
        del cache
        d4 = []
        cache = m.new_cache(4, P + S)
        for r in range(a.reps):
            ids = torch.randint(3, 17003, (4, P + S), generator=g)
            m(ids[:, :P], cache, 0)
            t1 = time.perf_counter()
            for k in range(S):
                m(ids[:, P + k : P + k + 1], cache, P + k)
            d4.append((time.perf_counter() - t1) / S)
    d, L, ff, V = MEDIUM["d_model"], MEDIUM["n_layers"], MEDIUM["ff_mult"] * MEDIUM["d_model"], MEDIUM["vocab_size"]
    gemm = 2.0 * P * (4 * d * d + 3 * d * ff) * L + 2.0 * d * V
    attn = 4.0 * d * L * P * (P + 1) / 2
    result("prefill_tok_s", [P / t for t in pf], "tok/s")
    result("prefill_gflops", [(gemm + attn) / t / 1e9 for t in pf], "GFLOP/s")
    result("decode_b1_tok_s", [1 / t for t in d1], "tok/s")
    result("decode_b4_tok_s", [4 / t for t in d4], "tok/s")
    result1("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "MB")


if __name__ == "__main__":
    main()
