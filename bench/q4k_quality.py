#!/usr/bin/python3
"""q4k_quality.py - does q4_k (ggml's 4-bit k-quant layout) lose less than
q4_0 on our models? Issue 10 item 1 asks for q4_k only if it measurably does.

This script quantizes every matrix that `aria quantize` quantizes (the
layers' and heads' matrices; not the token embedding, not the vectors:
docs/quantization.md "What is quantized") and writes float32 safetensors
files of the DEQUANTIZED weights, so that `ARIA_PRECISION=exact aria
eval-loss` / `aria embed` compute with exactly those weights and the
difference from the original measures the quantization alone (no int8
activations, no bfloat16 rounding of the matrices). Everything else of the
file (token embedding, vectors, metadata) is copied as it was.

  q4_0  reproduces src/kernels/quant.c bit for bit (--check compares with a
        file `aria quantize --type q4_0` wrote).
  q4_k  super-blocks of 256 weights = 8 sub-blocks of 32; each sub-block has
        a 6-bit scale sc and a 6-bit min m, the super-block a float16 d and
        dmin; w ~= d*sc*q - dmin*m with q in 0..15 (4.5 bits a weight, the
        same bytes as q4_0). The quantizer fits each sub-block's (scale, min)
        by trying a range of candidate scales, each followed by a least-squares
        refit of scale and min for the integers it picked, and keeps the pair
        of smallest squared error; then d and dmin are the largest fitted
        scale and min over 63, the 6-bit codes round to them, and the final
        integers are picked for the stored (float16, 6-bit) values.

Usage:
  bench/q4k_quality.py IN.safetensors OUTDIR            # writes OUTDIR/q4_0.safetensors, q4_k.safetensors
  bench/q4k_quality.py --check IN.safetensors C_Q4_0.safetensors   # numpy q4_0 == C q4_0 ?
  bench/q4k_quality.py --cosine BF16.npy OTHER.npy     # per-row cosine of two `aria embed -o` files
It prints the relative weight error ||W - Wq|| / ||W|| over all quantized
matrices for each type.
"""
import json
import os
import struct
import sys

import numpy as np

QUANTIZED = ("mixed_qkv", "att_proj_linear", "ff_gate_proj", "ff_up_proj", "ff_down_proj",
             "lm_head", "emb_head", "class_head", "embedding_adapter")


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        body = f.read()
    meta = head.pop("__metadata__", {})
    out = {}
    for name, h in head.items():
        a, b = h["data_offsets"]
        raw = body[a:b]
        dt = h["dtype"]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype={"F32": np.float32, "F16": np.float16, "U8": np.uint8,
                                            "I8": np.int8}[dt])
        out[name] = (dt, arr.reshape(h["shape"]), raw)
    return meta, out


def write_st(path, meta, tensors):
    """tensors: name -> (dtype string, shape, raw bytes); written atomically."""
    head, off, blobs = {"__metadata__": meta}, 0, []
    for name in sorted(tensors):
        dt, shape, raw = tensors[name]
        head[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hj = json.dumps(head, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def is_quantized(name, arr):
    return arr.ndim == 2 and any(k in name for k in QUANTIZED) and arr.shape[1] % 32 == 0


def round_away(v):
    """C roundf (ties away from zero) of float32 values, exact in float64."""
    v = v.astype(np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def q4_0(w):
    """src/kernels/quant.c quant_block_q4_0 + kern_dequant_row, vectorised."""
    rows, cols = w.shape
    x = w.astype(np.float32).reshape(rows, cols // 32, 32)
    idx = np.argmax(np.abs(x), axis=2)  # first of the largest magnitudes, as the C loop's strict >
    m = np.take_along_axis(x, idx[..., None], axis=2)[..., 0]
    h = (m / np.float32(-8.0)).astype(np.float32).astype(np.float16)
    d = h.astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    v = round_away((x * inv[..., None]).astype(np.float32)) + 8.0
    n = np.clip(v, 0, 15)
    return ((n - 8.0).astype(np.float32) * d[..., None]).astype(np.float32).reshape(rows, cols)


def fit_sub(x, nmax=15, steps=np.arange(-8, 9) * 0.1):
    """Best (scale, min) per sub-block of x [..., 32] with x ~= scale*q - min,
    q in 0..nmax, min >= 0: candidate scales around (max-lo)/nmax, each
    refitted by least squares on the integers it picks; smallest error wins."""
    lo = np.minimum(x.min(axis=-1), 0.0)
    hi = x.max(axis=-1)
    rng = np.maximum(hi - lo, 1e-30)
    best_s = rng / nmax
    best_m = -lo
    qq = np.clip(np.round((x - lo[..., None]) / best_s[..., None]), 0, nmax)
    best_e = ((best_s[..., None] * qq - best_m[..., None] - x) ** 2).sum(-1)
    n = x.shape[-1]
    for st in steps:
        iscale = (nmax + st) / rng
        q = np.clip(np.round((x - lo[..., None]) * iscale[..., None]), 0, nmax)
        # least squares for s, b in x ~= s*q + b
        sq, sq2, sx, sqx = q.sum(-1), (q * q).sum(-1), x.sum(-1), (q * x).sum(-1)
        det = n * sq2 - sq * sq
        ok = det > 0
        s = np.where(ok, (n * sqx - sq * sx) / np.where(ok, det, 1), best_s)
        b = np.where(ok, (sq2 * sx - sq * sqx) / np.where(ok, det, 1), lo)
        # the format wants min >= 0 (b <= 0): refit s alone with b = 0 otherwise
        pos = b > 0
        s = np.where(pos, sqx / np.maximum(sq2, 1e-30), s)
        b = np.where(pos, 0.0, b)
        s = np.maximum(s, 0.0)
        e = ((s[..., None] * q + b[..., None] - x) ** 2).sum(-1)
        better = e < best_e
        best_e = np.where(better, e, best_e)
        best_s = np.where(better, s, best_s)
        best_m = np.where(better, -b, best_m)
    return best_s, best_m


def q4_k(w):
    """Dequantized q4_k of w [rows, cols], cols a multiple of 256."""
    rows, cols = w.shape
    x = w.astype(np.float64).reshape(rows, cols // 256, 8, 32)
    s, m = fit_sub(x)
    # super-block d, dmin (float16) and the 6-bit codes
    d = (s.max(-1) / 63.0).astype(np.float16).astype(np.float64)
    dmin = (m.max(-1) / 63.0).astype(np.float16).astype(np.float64)
    sc = np.clip(np.round(s / np.where(d > 0, d, 1)[..., None]), 0, 63)
    mc = np.clip(np.round(m / np.where(dmin > 0, dmin, 1)[..., None]), 0, 63)
    es = d[..., None] * sc  # the effective sub-block scale and min, as stored
    em = dmin[..., None] * mc
    q = np.clip(np.round((x + em[..., None]) / np.where(es > 0, es, 1)[..., None]), 0, 15)
    q = np.where(es[..., None] > 0, q, 0)
    # what a float32 reader computes: d*sc as float32, times q, minus dmin*m
    es32 = (d.astype(np.float32)[..., None] * sc.astype(np.float32)).astype(np.float32)
    em32 = (dmin.astype(np.float32)[..., None] * mc.astype(np.float32)).astype(np.float32)
    out = es32[..., None] * q.astype(np.float32) - em32[..., None]
    return out.astype(np.float32).reshape(rows, cols)


def rel_err(pairs):
    num = sum(float(((a.astype(np.float64) - b) ** 2).sum()) for a, b in pairs)
    den = sum(float((a.astype(np.float64) ** 2).sum()) for a, _ in pairs)
    return (num / den) ** 0.5


def check(src, cfile):
    _, t = read_st(src)
    cmeta, c = read_st(cfile)
    assert cmeta.get("aria_quant") == "q4_0", cmeta
    n, bad = 0, 0
    for name, (dt, arr, _) in t.items():
        if not is_quantized(name, arr):
            continue
        q = c[name][1]
        sc = c[name + ".scale"][1].astype(np.float32)
        rows = q.shape[0]
        qb = q.reshape(rows, -1, 16)
        nib = np.concatenate([qb & 15, qb >> 4], axis=2).astype(np.float32) - 8.0
        deq = (nib * sc[..., None]).astype(np.float32).reshape(rows, -1)
        mine = q4_0(arr)
        n += 1
        diff = int((mine.view(np.uint32) != deq.view(np.uint32)).sum())
        bad += diff
        if diff:
            print(f"{name}: {diff} weights differ")
    print(f"q4_0 check: {n} matrices, {bad} weights differ from {cfile}")
    return bad == 0


def main(argv):
    if len(argv) == 4 and argv[1] == "--check":
        return 0 if check(argv[2], argv[3]) else 1
    if len(argv) == 4 and argv[1] == "--cosine":
        a, b = (np.load(p).astype(np.float64) for p in argv[2:4])
        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(f"{len(c)} rows: cosine min {c.min():.5f} median {np.median(c):.5f}")
        return 0
    if len(argv) != 3:
        print(__doc__)
        return 2
    src, outdir = argv[1], argv[2]
    os.makedirs(outdir, exist_ok=True)
    meta, t = read_st(src)
    for typ, fn in (("q4_0", q4_0), ("q4_k", q4_k)):
        out, pairs = {}, []
        for name, (dt, arr, raw) in t.items():
            if is_quantized(name, arr):
                if typ == "q4_k" and arr.shape[1] % 256:
                    raise SystemExit(f"{name}: {arr.shape[1]} columns, not a multiple of 256")
                deq = fn(arr)
                pairs.append((arr, deq))
                out[name] = ("F32", arr.shape, deq.astype("<f4").tobytes())
            else:
                out[name] = (dt, arr.shape, raw)
        path = os.path.join(outdir, typ + ".safetensors")
        write_st(path, meta, out)
        print(f"{typ}: {len(pairs)} matrices, relative weight error {rel_err(pairs):.5f} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
