#!/usr/bin/python3
"""Is aria.c's sampler the reference's? (issue 11 item 3)

Rules out the sampler before the model is blamed for how it plays. One
model, one sequence, the same rows of logits; two samplers draw from each
row many times:

  aria.c     aria_sample (src/tasks/generate.c), through bench/sampler_dump.c
  reference  a transcription of the reference's sample_batch (spec 4.2;
             aria/inference/sample_cuda.py with sample_min_p /
             sample_top_p): softmax(logits / temp); min-p keeps probs >=
             min_p * max and renormalises; top-p sorts, zeroes tokens whose
             preceding cumulative mass exceeds top_p, renormalises;
             multinomial; force_end replaces a sampled token that is not an
             onset or a duration with <D> once near the end. PyTorch
             (torch.multinomial) when it is installed, else NumPy.

With the grammar mask on, the reference is given the same logits with
the forbidden ids at -inf (the reference itself has no mask; how much of
its probability the mask removes is printed too).

For each row both samplers' empirical distributions are compared with the
exact one (computed in float64 from the same logits): total-variation
distance (the reference's own draws give the size of the sampling noise)
and a chi-square goodness-of-fit test pooled over rows (bins with an
expected count below 5 merged). Pooled token-type frequencies (note,
onset, duration, special) are compared as well: the note share is the
note density in tokens.

  python3 bench/sampler_check.py                   # bundled model, examples/waltz.mid
  python3 bench/sampler_check.py --model M.safetensors --rows 200 --samples 2000
Needs `make bench-sampler` (BUILD=... for another build folder: --dump).
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import torch
except ImportError:  # the NumPy draws are the same distribution
    torch = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KINDS = ["special", "prefix", "note", "drum", "onset", "dur"]  # aria_token_kind
DIM = 4  # <D>


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        sys.exit(f"sampler_check: {' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def reference_probs(logits, temp, min_p, top_p):
    """The distribution sample_batch draws from, float64 [rows][V]."""
    x = logits.astype(np.float64) / temp
    x -= x.max(axis=1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    if min_p > 0:  # sample_min_p (min-p wins whenever given, as in the reference CLI)
        p = np.where(p >= min_p * p.max(axis=1, keepdims=True), p, 0.0)
    elif top_p > 0:  # sample_top_p
        order = np.argsort(-p, axis=1, kind="stable")
        ps = np.take_along_axis(p, order, axis=1)
        cum = np.cumsum(ps, axis=1)
        ps[cum - ps > top_p] = 0.0
        q = np.zeros_like(p)
        np.put_along_axis(q, order, ps, axis=1)
        p = q
    return p / p.sum(axis=1, keepdims=True)


def reference_draws(p, M, seed):
    """M draws per row: counts [rows][V]."""
    counts = np.zeros(p.shape, dtype=np.int64)
    if torch is not None:
        g = torch.Generator().manual_seed(seed)
        ids = torch.multinomial(torch.from_numpy(p), M, replacement=True, generator=g).numpy()
    else:
        rng = np.random.default_rng(seed)
        ids = np.stack([rng.choice(p.shape[1], size=M, p=row) for row in p])
    for r in range(p.shape[0]):
        counts[r] = np.bincount(ids[r], minlength=p.shape[1])
    return counts


def force_end(counts, types, seen_dim):
    """The reference's post-rule on drawn ids: not an onset or a duration -> <D>."""
    out = counts.copy()
    keep = (types == KINDS.index("onset")) | (types == KINDS.index("dur"))
    for r in range(out.shape[0]):
        if seen_dim[r]:
            continue
        moved = out[r, ~keep].sum()
        out[r, ~keep] = 0
        out[r, DIM] += moved
    return out


def chi2_sf(x, k):
    """P(chi2_k >= x), Wilson-Hilferty (k is large here)."""
    if k <= 0:
        return 1.0
    z = ((x / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def gof(counts, p):
    """Chi-square over all rows, bins with expected < 5 merged per row."""
    stat, dof = 0.0, 0
    for c, q in zip(counts, p):
        M = c.sum()
        e = q * M
        big = e >= 5
        obs = list(c[big]) + [c[~big].sum()]
        exp = list(e[big]) + [e[~big].sum()]
        if exp[-1] < 1e-12:  # nothing small to merge
            obs, exp = obs[:-1], exp[:-1]
        stat += sum((o - x) ** 2 / x for o, x in zip(obs, exp))
        dof += len(obs) - 1
    return stat, dof, chi2_sf(stat, dof)


def tv(counts, p):
    return 0.5 * np.abs(counts / counts.sum(axis=1, keepdims=True) - p).sum(axis=1)


def type_shares(counts, types):
    tot = counts.sum()
    return {k: counts[:, types == i].sum() / tot for i, k in enumerate(KINDS) if (types == i).any()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aria", default=os.path.join(ROOT, "aria"))
    ap.add_argument("--dump", default=os.path.join(ROOT, "build", "sampler_dump"), help="make bench-sampler")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "aria-small-gen", "model.safetensors"))
    ap.add_argument("--prompt", default=os.path.join(ROOT, "examples", "waltz.mid"))
    ap.add_argument("--rows", type=int, default=120)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sampler_check_")
    # one sequence of the model's own, then its logits at every position
    ids = sh([a.aria, "generate", "--model", a.model, "--prompt", a.prompt, "--seed", str(a.seed), "--print-ids",
              "--out-dir", tmp]).split()
    ids_path = os.path.join(tmp, "ids.txt")
    with open(ids_path, "w") as f:
        f.write(" ".join(ids) + "\n")
    lg_path = os.path.join(tmp, "logits.bin")
    sh([a.aria, "logits", "--model", a.model, "--ids", ids_path, "-o", lg_path])
    V = os.path.getsize(lg_path) // 4 // len(ids)
    logits_all = np.fromfile(lg_path, dtype=np.float32).reshape(len(ids), V)
    ids = np.array([int(x) for x in ids])
    print(f"model {os.path.relpath(a.model)}; {len(ids)} ids; {a.rows} rows x {a.samples} draws each; "
          f"reference draws by {'torch ' + torch.__version__ if torch else 'numpy (torch not installed)'}")

    configs = [
        ("temp 0.98, min-p 0.035 (defaults), no mask", dict(temp=0.98, min_p=0.035, top_p=0, mask=0, end=0)),
        ("temp 0.98, min-p 0.035, grammar mask", dict(temp=0.98, min_p=0.035, top_p=0, mask=1, end=0)),
        ("temp 0.98, top-p 0.9, no mask", dict(temp=0.98, min_p=0, top_p=0.9, mask=0, end=0)),
        ("temp 0.98, top-p 0.9, grammar mask", dict(temp=0.98, min_p=0, top_p=0.9, mask=1, end=0)),
        ("temp 1.5, no filter, no mask", dict(temp=1.5, min_p=0, top_p=0, mask=0, end=0)),
        ("temp 0.98, min-p 0.035, force_end, no mask", dict(temp=0.98, min_p=0.035, top_p=0, mask=0, end=1)),
    ]
    print(f"\n| sampler settings | mean TV aria.c | mean TV ref | chi2/dof aria.c (p) | chi2/dof ref (p) "
          f"| note share aria.c / ref / exact | masked mass |")
    print("|---|---|---|---|---|---|---|")
    for ci, (name, c) in enumerate(configs):
        out = os.path.join(tmp, f"c{ci}")
        sh([a.dump, lg_path, ids_path, out, "--rows", str(a.rows), "--samples", str(a.samples), "--temp",
            str(c["temp"]), "--min-p", str(c["min_p"]), "--top-p", str(c["top_p"]), "--mask", str(c["mask"]),
            "--near-end", str(c["end"]), "--seed", str(a.seed + ci)])
        rows = np.loadtxt(out + ".rows", dtype=np.int64).reshape(-1)
        K = len(rows)
        cc = np.fromfile(out + ".counts", dtype=np.uint32).reshape(K, V).astype(np.int64)
        allowed = np.fromfile(out + ".allowed", dtype=np.uint8).reshape(K, V).astype(bool)
        types = np.fromfile(out + ".types", dtype=np.uint8)
        lg = logits_all[rows].astype(np.float64)
        masked_mass = 0.0
        if c["mask"]:
            free = reference_probs(lg, c["temp"], c["min_p"], c["top_p"])
            masked_mass = (free * ~allowed).sum(axis=1).mean()
            lg = np.where(allowed, lg, -np.inf)
        p = reference_probs(lg, c["temp"], c["min_p"], c["top_p"])
        rc = reference_draws(p, a.samples, a.seed + 100 + ci)
        if c["end"]:
            seen_dim = np.array([(ids[: r + 1] == DIM).any() for r in rows])
            rc = force_end(rc, types, seen_dim)
            pe = force_end(p, types, seen_dim)  # the same rule moves probability
            p = pe
        tv_c, tv_r = tv(cc, p).mean(), tv(rc, p).mean()
        s_c, d_c, pv_c = gof(cc, p)
        s_r, d_r, pv_r = gof(rc, p)
        sh_c, sh_r = type_shares(cc, types), type_shares(rc, types)
        sh_e = {k: p[:, types == i].sum() / K for i, k in enumerate(KINDS) if (types == i).any()}
        print(f"| {name} | {tv_c:.4f} | {tv_r:.4f} | {s_c / max(d_c, 1):.3f} ({pv_c:.2f}) | "
              f"{s_r / max(d_r, 1):.3f} ({pv_r:.2f}) | {sh_c['note']:.4f} / {sh_r['note']:.4f} / "
              f"{sh_e['note']:.4f} | {100 * masked_mass:.2f} % |", flush=True)
        print("  token types aria.c " + ", ".join(f"{k} {v:.4f}" for k, v in sh_c.items()) +
              "; ref " + ", ".join(f"{k} {v:.4f}" for k, v in sh_r.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
